//! SANITIZE (SBC-4): OVERWRITE, BLOCK ERASE (with logical block provisioning, by
//! deallocating every block), CRYPTOGRAPHIC ERASE (on an encrypted medium, by replacing its
//! key) and EXIT FAILURE MODE. `docs/scsi-features.md` describes the
//! behaviour.
//!
//! The operation runs on its own thread and survives task aborts, resets and the loss of
//! the I_T nexus that started it (SBC-4). While it runs every command except
//! INQUIRY, REPORT LUNS and REQUEST SENSE ends NOT READY / SANITIZE IN PROGRESS with the
//! progress in the sense-key specific field; with IMMED set the command itself completes
//! once its parameters are checked, otherwise when the operation ends. A failed operation
//! leaves the unit in failure mode (MEDIUM ERROR / SANITIZE COMMAND FAILED) until a
//! sanitize succeeds or, if the failed one allowed it (AUSE), EXIT FAILURE MODE.

use super::Inner;
use crate::cdb::{be16, get};
use crate::sense::{AscAscq, Sense, SenseKey};
use crate::status::Outcome;
use crate::task::{Begin, Nexus};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::opcode::service_action::{BLOCK_ERASE, CRYPTO_ERASE, EXIT_FAILURE_MODE, OVERWRITE};

/// LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS.
const IN_PROGRESS: AscAscq = AscAscq(0x04, 0x1B);
/// SANITIZE COMMAND FAILED.
const FAILED: AscAscq = AscAscq(0x31, 0x03);
/// COMMAND SEQUENCE ERROR.
const SEQUENCE_ERROR: AscAscq = AscAscq(0x2C, 0x00);

/// The medium is written this many bytes at a time; progress moves after each piece.
const CHUNK: u64 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Running,
    /// The last operation failed; `ause`: EXIT FAILURE MODE may end it.
    Failed {
        ause: bool,
    },
}

/// The unit's sanitize state.
pub(crate) struct SanitizeState {
    phase: Mutex<Phase>,
    done: Condvar,
    /// Progress of the running operation, in 65536ths (SPC-4).
    progress: AtomicU32,
}

impl SanitizeState {
    pub(crate) fn new() -> Self {
        Self { phase: Mutex::new(Phase::Idle), done: Condvar::new(), progress: AtomicU32::new(0) }
    }

    /// Why the unit cannot run a medium command now, if it cannot.
    pub(crate) fn blocking_sense(&self) -> Option<Sense> {
        match *self.phase.lock() {
            Phase::Idle => None,
            Phase::Running => Some(self.in_progress()),
            Phase::Failed { .. } => Some(Sense::new(SenseKey::MediumError, FAILED)),
        }
    }

    /// Like [`Self::blocking_sense`], but a failed unit still takes another SANITIZE.
    fn blocks_sanitize(&self) -> Option<Sense> {
        match *self.phase.lock() {
            Phase::Running => Some(self.in_progress()),
            _ => None,
        }
    }

    fn in_progress(&self) -> Sense {
        let p = self.progress.load(Ordering::Relaxed).min(0xFFFF) as u16;
        let [hi, lo] = p.to_be_bytes();
        let mut s = Sense::new(SenseKey::NotReady, IN_PROGRESS);
        s.sks = Some([0x80, hi, lo]);
        s
    }

    /// Wait for the running operation to end: GOOD, or the failure it left.
    fn wait(&self) -> Result<(), Sense> {
        let mut phase = self.phase.lock();
        while *phase == Phase::Running {
            self.done.wait(&mut phase);
        }
        match *phase {
            Phase::Failed { .. } => Err(Sense::new(SenseKey::MediumError, FAILED)),
            _ => Ok(()),
        }
    }

    fn set_progress(&self, done: u64, total: u64) {
        let p = if total == 0 { 0 } else { (u128::from(done) * 65536 / u128::from(total)) as u32 };
        self.progress.store(p.min(0xFFFF), Ordering::Relaxed);
    }
}

/// What one operation does to the medium.
#[derive(Clone, Debug)]
enum Method {
    /// Write the pattern `count` times over every block, inverting it between passes if
    /// `invert` (the last pass writes the pattern as given).
    Overwrite {
        pattern: Vec<u8>,
        count: u8,
        invert: bool,
    },
    BlockErase,
    /// Replace the media key (`EncryptedBackend`).
    CryptoErase,
}

/// The OVERWRITE parameter list (SBC-4): at least one pattern byte, a pattern no
/// longer than a block and no longer than the list.
fn overwrite_params(inner: &Inner, list: &[u8]) -> Result<Method, Sense> {
    let count = list[0] & 0x1F;
    let invert = list[0] & 0x80 != 0;
    let test = (list[0] >> 5) & 0x03;
    if test != 0 {
        return Err(Sense::invalid_field_in_param(0, Some(6)));
    }
    if count == 0 {
        return Err(Sense::invalid_field_in_param(0, Some(4)));
    }
    let plen = usize::from(be16(list, 2));
    if plen == 0 || plen as u64 > inner.block_size() || plen > list.len() - 4 {
        return Err(Sense::invalid_field_in_param(2, None));
    }
    let mut block = Vec::with_capacity(inner.block_size() as usize);
    while block.len() < inner.block_size() as usize {
        let take = plen.min(inner.block_size() as usize - block.len());
        block.extend_from_slice(&list[4..4 + take]);
    }
    Ok(Method::Overwrite { pattern: block, count, invert })
}

/// Runs `method` over the whole medium; `Err` at the first backend failure.
fn run(inner: &Inner, method: &Method) -> Result<(), ()> {
    let state = &inner.sanitize;
    let total = inner.blocks() << inner.shift;
    match method {
        Method::CryptoErase => {
            inner.backend.crypto_erase().map_err(|_| ())?;
            state.set_progress(total, total);
        }
        Method::BlockErase => {
            let mut off = 0;
            while off < total {
                let n = CHUNK.max(total / 64).min(total - off);
                inner.backend.discard(off, n).map_err(|_| ())?;
                off += n;
                state.set_progress(off, total);
            }
        }
        Method::Overwrite { pattern, count, invert } => {
            let rate = inner.cfg.sanitize_bytes_per_second;
            let passes = u64::from(*count);
            let mut chunk = Vec::with_capacity(CHUNK as usize);
            let started = Instant::now();
            for pass in 0..passes {
                // Every pass but the last is inverted when INVERT is set.
                let flip = *invert && pass + 1 < passes;
                chunk.clear();
                while (chunk.len() as u64) < CHUNK {
                    chunk.extend(pattern.iter().map(|b| if flip { !b } else { *b }));
                }
                let mut off = 0;
                while off < total {
                    let n = CHUNK.min(total - off);
                    inner.backend.write_at(off, &chunk[..n as usize]).map_err(|_| ())?;
                    off += n;
                    let written = pass * total + off;
                    state.set_progress(written, passes * total);
                    if rate > 0 {
                        // The modelled medium takes `written / rate` seconds for this much.
                        let due = Duration::from_secs_f64(written as f64 / rate as f64);
                        if let Some(wait) = due.checked_sub(started.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                }
            }
        }
    }
    inner.backend.flush().map_err(|_| ())
}

/// Start `method` on its own thread; the unit is SANITIZE IN PROGRESS until it ends.
fn start(inner: &Arc<Inner>, method: Method, ause: bool) -> Result<(), Sense> {
    {
        let mut phase = inner.sanitize.phase.lock();
        if *phase == Phase::Running {
            return Err(inner.sanitize.in_progress());
        }
        *phase = Phase::Running;
        inner.sanitize.progress.store(0, Ordering::Relaxed);
    }
    let worker = inner.clone();
    let spawned = std::thread::Builder::new().name("sanitize".into()).spawn(move || {
        let ok = run(&worker, &method).is_ok();
        let mut phase = worker.sanitize.phase.lock();
        *phase = if ok { Phase::Idle } else { Phase::Failed { ause } };
        worker.sanitize.done.notify_all();
    });
    if spawned.is_err() {
        let mut phase = inner.sanitize.phase.lock();
        *phase = Phase::Failed { ause };
        inner.sanitize.done.notify_all();
        return Err(Sense::new(SenseKey::MediumError, FAILED));
    }
    Ok(())
}

fn begin_operation(inner: &Arc<Inner>, method: Method, immed: bool, ause: bool) -> Outcome {
    if let Err(s) = start(inner, method, ause) {
        return inner.check(s);
    }
    if immed {
        return Outcome::good();
    }
    match inner.sanitize.wait() {
        Ok(()) => Outcome::good(),
        Err(s) => inner.check(s),
    }
}

/// SANITIZE (SBC-4).
pub(crate) fn sanitize(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let immed = get(cdb, 1) & 0x80 != 0;
    let ause = get(cdb, 1) & 0x20 != 0;
    let sa = get(cdb, 1) & 0x1F;
    let plen = u64::from(be16(cdb, 7));
    if let Some(s) = inner.sanitize.blocks_sanitize() {
        return Begin::check(s);
    }
    if inner.write_protected() {
        return Begin::check(Sense::write_protected());
    }
    match sa {
        OVERWRITE => {
            // SBC-4: the list holds the 4-byte header and 1 to a block's worth of pattern.
            if plen < 5 || plen > inner.block_size() + 4 {
                return Begin::check(Sense::invalid_field_in_cdb(7, None));
            }
            let inner2 = inner.clone();
            Begin::param_out(plen, move |list| match overwrite_params(&inner2, &list) {
                Ok(method) => begin_operation(&inner2, method, immed, ause),
                Err(s) => inner2.check(s),
            })
        }
        BLOCK_ERASE if plen == 0 => Begin::Complete(begin_operation(inner, Method::BlockErase, immed, ause)),
        // Offered only on an encrypted medium: the command table refuses it on any other (`opcodes::offered`).
        CRYPTO_ERASE if plen == 0 => Begin::Complete(begin_operation(inner, Method::CryptoErase, immed, ause)),
        EXIT_FAILURE_MODE if plen == 0 => {
            let mut phase = inner.sanitize.phase.lock();
            match *phase {
                Phase::Failed { ause: true } => {
                    *phase = Phase::Idle;
                    Begin::good()
                }
                _ => Begin::check(Sense::new(SenseKey::IllegalRequest, SEQUENCE_ERROR)),
            }
        }
        BLOCK_ERASE | CRYPTO_ERASE | EXIT_FAILURE_MODE => Begin::check(Sense::invalid_field_in_cdb(7, None)),
        _ => Begin::check(Sense::invalid_field_in_cdb(1, Some(4))),
    }
}
