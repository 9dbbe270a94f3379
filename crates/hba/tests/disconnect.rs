//! Targets that disconnect while they work: a long command frees the bus until its status, READs have their backend
//! I/O in flight at the same time (on two LUs, and tagged on one LU) while the DMA channel serves one transfer at a
//! time, and abort and bus reset end commands whose targets are disconnected. Overlap is counted by a backend that
//! holds each I/O until another one is in flight, never measured in time.

mod common;

use common::machine::{Machine, LU0};
use common::*;
use hal::{Placement, SystemBus};
use hba::HbaConfig;
use port::{EventKind, LuAddress, Srb, SrbFlags, SrbStatus};
use scsi::{Backend, Disk, DiskConfig, RamBackend, Target};
use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const LU1: LuAddress = LuAddress { path_id: 0, target_id: 0, lun: 1 };
/// How long a held backend I/O waits for its release before it goes on anyway (a liveness bound: the test then fails
/// on the counts, it never hangs).
const HOLD_LIMIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Gate {
    /// Writes wait until this is cleared.
    hold_writes: bool,
    /// Reads wait until this many are in flight at once (0: reads go at once); then, or when a test sets it,
    /// `release_reads` lets every read go.
    read_rendezvous: usize,
    release_reads: bool,
    reads_in_flight: usize,
    peak_reads: usize,
    writes_held: usize,
}

/// A RAM backend whose I/O can be held: reads until several are in flight at once, writes until released.
struct Held {
    ram: RamBackend,
    gate: Mutex<Gate>,
    cv: Condvar,
}

impl Held {
    fn new(size: u64) -> Arc<Self> {
        Arc::new(Held { ram: RamBackend::new(size), gate: Mutex::new(Gate::default()), cv: Condvar::new() })
    }

    fn set(&self, f: impl FnOnce(&mut Gate)) {
        f(&mut self.gate.lock().unwrap());
        self.cv.notify_all();
    }

    fn get<T>(&self, f: impl FnOnce(&Gate) -> T) -> T {
        f(&self.gate.lock().unwrap())
    }

    /// Wait (bounded) until `f` holds of the gate.
    fn wait_for(&self, what: &str, f: impl Fn(&Gate) -> bool) {
        let until = Instant::now() + HOLD_LIMIT;
        let mut g = self.gate.lock().unwrap();
        while !f(&g) {
            let left = until.checked_duration_since(Instant::now()).unwrap_or_else(|| panic!("timed out: {what}"));
            g = self.cv.wait_timeout(g, left).unwrap().0;
        }
    }
}

impl Backend for Held {
    fn size(&self) -> u64 {
        self.ram.size()
    }

    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let until = Instant::now() + HOLD_LIMIT;
        let mut g = self.gate.lock().unwrap();
        if g.read_rendezvous > 0 {
            g.reads_in_flight += 1;
            g.peak_reads = g.peak_reads.max(g.reads_in_flight);
            self.cv.notify_all();
            if g.reads_in_flight >= g.read_rendezvous {
                // The rendezvous happened: every read from now on goes at once (a command may read in pieces).
                g.release_reads = true;
            }
            while !g.release_reads {
                let Some(left) = until.checked_duration_since(Instant::now()) else { break };
                g = self.cv.wait_timeout(g, left).unwrap().0;
            }
            g.reads_in_flight -= 1;
            self.cv.notify_all();
        }
        drop(g);
        self.ram.read_at(off, buf)
    }

    fn write_at(&self, off: u64, data: &[u8]) -> io::Result<()> {
        let until = Instant::now() + HOLD_LIMIT;
        let mut g = self.gate.lock().unwrap();
        if g.hold_writes {
            g.writes_held += 1;
            self.cv.notify_all();
            while g.hold_writes {
                let Some(left) = until.checked_duration_since(Instant::now()) else { break };
                g = self.cv.wait_timeout(g, left).unwrap().0;
            }
            g.writes_held -= 1;
            self.cv.notify_all();
        }
        drop(g);
        self.ram.write_at(off, data)
    }

    fn flush(&self) -> io::Result<()> {
        self.ram.flush()
    }

    fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        self.ram.discard(off, len)
    }

    fn is_allocated(&self, off: u64, len: u64) -> io::Result<bool> {
        self.ram.is_allocated(off, len)
    }
}

const BLOCKS: u64 = 2048;

/// A machine whose target has two LUs on held backends.
fn machine(cfg: HbaConfig) -> (Machine, Arc<Held>, Arc<Held>) {
    let target = Arc::new(Target::new());
    let mut backends = Vec::new();
    let mut disks = Vec::new();
    for lun in 0..2 {
        let backend = Held::new(BLOCKS * u64::from(BLOCK));
        let dcfg =
            DiskConfig { block_size: BLOCK, blocks: BLOCKS, power_on_unit_attention: false, ..DiskConfig::default() };
        let disk = Arc::new(Disk::new(dcfg, backend.clone()).expect("valid disk"));
        target.add_lun(lun, disk.clone());
        backends.push(backend);
        disks.push(disk);
    }
    let m = Machine::with_target(SystemBus::Isa, cfg, target, disks[0].clone());
    let b1 = backends.pop().unwrap();
    let b0 = backends.pop().unwrap();
    (m, b0, b1)
}

fn tagged(mut srb: Srb) -> Srb {
    srb.srb_flags.insert(SrbFlags::QUEUE_ACTION_ENABLE);
    srb
}

/// No two DMA operations were ever mapped at once: each map is flushed (or cancelled) before the next.
fn assert_dma_serialized(m: &Machine) {
    let mut open = HashSet::new();
    let mut maps = 0;
    for e in m.trace.events() {
        match e.kind {
            EventKind::Mapped { .. } => {
                assert!(open.is_empty(), "a map while another is outstanding: {:?} and {:?}", open, e.srb);
                open.insert(e.srb);
                maps += 1;
            }
            EventKind::Flushed { .. } | EventKind::MapCancelled => {
                open.remove(&e.srb);
            }
            _ => {}
        }
    }
    assert!(maps > 0, "the reads moved their data by DMA");
}

fn sanitize_overwrite() -> (Vec<u8>, Vec<u8>) {
    // SANITIZE, OVERWRITE, no IMMED, a parameter list of 8 bytes: one pass, a 4-byte pattern.
    let cdb = vec![0x48, 0x01, 0, 0, 0, 0, 0, 0, 8, 0];
    let list = vec![0x01, 0, 0, 4, 0xA5, 0x5A, 0xC3, 0x3C];
    (cdb, list)
}

#[test]
fn test_unit_ready_reports_sanitize_in_progress_while_a_sanitize_without_immed_runs() {
    let (m, b0, _) = machine(HbaConfig::default());
    b0.set(|g| g.hold_writes = true);
    let (cdb, list) = sanitize_overwrite();
    let params = m.alloc(list.len(), Placement::Any);
    params.write(0, &list).unwrap();
    let (tx, sanitized) = crossbeam_channel::bounded(1);
    m.handle.submit_with(
        tagged(Srb::execute_scsi(LU0, &cdb).with_data(&params, 0, list.len() as u32, SrbFlags::DATA_OUT)),
        move |s| {
            let _ = tx.send(s);
        },
    );
    // The overwrite reaches the medium (and is held there): the sanitize runs.
    b0.wait_for("the overwrite starts", |g| g.writes_held > 0);
    let (tx, tur) = crossbeam_channel::bounded(1);
    m.handle.submit_with(tagged(Srb::execute_scsi(LU0, &TEST_UNIT_READY)), move |s| {
        let _ = tx.send(s);
    });
    let tur = tur.recv_timeout(HOLD_LIMIT / 2).expect("TEST UNIT READY completes while the SANITIZE runs");
    assert_eq!(tur.srb_status.status(), SrbStatus::ERROR, "{tur:?}");
    let sense = tur.sense();
    assert_eq!((sense[2] & 0x0F, sense[12], sense[13]), (0x02, 0x04, 0x1B), "NOT READY, SANITIZE IN PROGRESS");
    assert!(sanitized.try_recv().is_err(), "the SANITIZE is still running");
    b0.set(|g| g.hold_writes = false);
    let s = sanitized.recv_timeout(HOLD_LIMIT).expect("the SANITIZE completes");
    assert_eq!(s.srb_status, SrbStatus::SUCCESS, "{s:?}");
    m.release_queue();
    let buf = m.alloc(512, Placement::Any);
    let (_, r) = m.run(tagged(Srb::execute_scsi(LU0, &read10(7, 1)).with_data(&buf, 0, 512, SrbFlags::DATA_IN)));
    assert_eq!(r.srb_status, SrbStatus::SUCCESS, "{r:?}");
    let mut got = vec![0u8; 512];
    buf.read(0, &mut got).unwrap();
    assert!(got.chunks(4).all(|c| c == [0xA5, 0x5A, 0xC3, 0x3C]), "the medium holds the pattern");
    m.assert_no_violations();
}

/// Two READs whose backend I/O must be in flight at once to finish without waiting out the hold.
fn overlapping_reads(m: &Machine, held: &[&Arc<Held>], srbs: Vec<Srb>) {
    for b in held {
        b.set(|g| g.read_rendezvous = 2);
    }
    let before = m.card.counters().background_jobs;
    for (_, s) in m.run_all(srbs) {
        assert_eq!(s.srb_status, SrbStatus::SUCCESS, "{s:?}");
    }
    for b in held {
        assert_eq!(b.get(|g| g.peak_reads), 2, "both reads were in the backend at once");
    }
    assert!(m.card.counters().background_jobs >= before + 2, "the targets read off the bus");
    assert_dma_serialized(m);
    m.assert_no_violations();
}

#[test]
fn reads_on_two_lus_have_their_backend_io_in_flight_together_while_dma_stays_serialized() {
    let (m, b0, b1) = machine(HbaConfig::default());
    let a = m.alloc(4096, Placement::Any);
    let b = m.alloc(4096, Placement::Any);
    // Untagged: one command per I_T_L nexus, on two nexuses.
    let srbs = vec![
        Srb::execute_scsi(LU0, &read10(0, 8)).with_data(&a, 0, 4096, SrbFlags::DATA_IN),
        Srb::execute_scsi(LU1, &read10(0, 8)).with_data(&b, 0, 4096, SrbFlags::DATA_IN),
    ];
    // Each LU's read waits in its backend until a watcher sees the other LU's read in its own backend.
    let watcher = {
        let (b0, b1) = (b0.clone(), b1.clone());
        std::thread::spawn(move || {
            let until = Instant::now() + HOLD_LIMIT;
            while Instant::now() < until {
                let (r0, r1) = (b0.get(|g| g.reads_in_flight), b1.get(|g| g.reads_in_flight));
                if r0 > 0 && r1 > 0 {
                    b0.set(|g| g.release_reads = true);
                    b1.set(|g| g.release_reads = true);
                    return true;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            false
        })
    };
    b0.set(|g| g.read_rendezvous = usize::MAX);
    b1.set(|g| g.read_rendezvous = usize::MAX);
    for (_, s) in m.run_all(srbs) {
        assert_eq!(s.srb_status, SrbStatus::SUCCESS, "{s:?}");
    }
    assert!(watcher.join().unwrap(), "the two LUs' backend reads were never in flight at the same time");
    assert_dma_serialized(&m);
    m.assert_no_violations();
}

#[test]
fn tagged_reads_on_one_lu_have_their_backend_io_in_flight_together_while_dma_stays_serialized() {
    let (m, b0, _) = machine(HbaConfig::default());
    let a = m.alloc(8192, Placement::Any);
    let srbs = (0..2)
        .map(|i| {
            tagged(Srb::execute_scsi(LU0, &read10(8 * i as u32, 8)).with_data(&a, i * 4096, 4096, SrbFlags::DATA_IN))
        })
        .collect();
    overlapping_reads(&m, &[&b0], srbs);
}

#[test]
fn without_the_disconnect_privilege_backend_reads_never_overlap() {
    let (m, b0, _) = machine(HbaConfig { disconnect: false, ..HbaConfig::default() });
    // Reads go at once; the backend only counts.
    b0.set(|g| {
        g.read_rendezvous = 1;
    });
    let a = m.alloc(8192, Placement::Any);
    let srbs = (0..2)
        .map(|i| {
            tagged(Srb::execute_scsi(LU0, &read10(8 * i as u32, 8)).with_data(&a, i * 4096, 4096, SrbFlags::DATA_IN))
        })
        .collect();
    for (_, s) in m.run_all(srbs) {
        assert_eq!(s.srb_status, SrbStatus::SUCCESS, "{s:?}");
    }
    assert_eq!(b0.get(|g| g.peak_reads), 1, "the engine thread read each one in its data phase");
    assert_eq!(m.card.counters().background_jobs, 0);
    m.assert_no_violations();
}

/// A tagged READ whose target is disconnected, its backend read held.
fn held_read(m: &Machine, b0: &Arc<Held>) -> (port::SrbId, crossbeam_channel::Receiver<Srb>) {
    b0.set(|g| g.read_rendezvous = usize::MAX);
    let a = m.alloc(4096, Placement::Any);
    let (tx, rx) = crossbeam_channel::bounded(1);
    let id = m.handle.submit_with(
        tagged(Srb::execute_scsi(LU0, &read10(0, 8)).with_data(&a, 0, 4096, SrbFlags::DATA_IN)),
        move |s| {
            let _ = tx.send(s);
        },
    );
    b0.wait_for("the read reaches the backend", |g| g.reads_in_flight == 1);
    (id, rx)
}

#[test]
fn abort_ends_a_disconnected_read_and_the_bus_stays_usable() {
    let (m, b0, _) = machine(HbaConfig::default());
    let (id, rx) = held_read(&m, &b0);
    let abort = futures_lite_block(m.handle.abort(id, LU0));
    assert_eq!(abort.srb_status, SrbStatus::SUCCESS, "{abort:?}");
    let victim = rx.recv_timeout(HOLD_LIMIT).expect("the victim completes");
    assert_eq!(victim.srb_status.status(), SrbStatus::ABORTED, "{victim:?}");
    // The target's work ends later and finds no command.
    b0.set(|g| g.release_reads = true);
    b0.wait_for("the held read ends", |g| g.reads_in_flight == 0);
    b0.set(|g| g.read_rendezvous = 0);
    // The failed SRB froze the LU's queue.
    m.release_queue();
    let buf = m.alloc(4096, Placement::Any);
    let (_, r) = m.run(tagged(Srb::execute_scsi(LU0, &read10(0, 8)).with_data(&buf, 0, 4096, SrbFlags::DATA_IN)));
    assert_eq!(r.srb_status, SrbStatus::SUCCESS, "{r:?}");
    m.assert_no_violations();
}

#[test]
fn a_bus_reset_ends_a_disconnected_read_with_bus_reset() {
    let (m, b0, _) = machine(HbaConfig::default());
    let (_, rx) = held_read(&m, &b0);
    let reset = futures_lite_block(m.handle.reset_bus(0));
    assert_eq!(reset.srb_status, SrbStatus::SUCCESS, "{reset:?}");
    let victim = rx.recv_timeout(HOLD_LIMIT).expect("the victim completes");
    assert_eq!(victim.srb_status.status(), SrbStatus::BUS_RESET, "{victim:?}");
    b0.set(|g| g.release_reads = true);
    b0.wait_for("the held read ends", |g| g.reads_in_flight == 0);
    b0.set(|g| g.read_rendezvous = 0);
    // The failed SRB froze the LU's queue.
    m.release_queue();
    let buf = m.alloc(4096, Placement::Any);
    // The reset leaves a unit attention; the read after it is retried once.
    let mut last = None;
    for _ in 0..2 {
        let (_, r) = m.run(tagged(Srb::execute_scsi(LU0, &read10(0, 8)).with_data(&buf, 0, 4096, SrbFlags::DATA_IN)));
        if r.srb_status == SrbStatus::SUCCESS {
            last = Some(r);
            break;
        }
        m.release_queue();
    }
    assert!(last.is_some(), "a read after the reset succeeds");
    m.assert_no_violations();
}

/// Wait (bounded) for an SRB future from a plain thread.
fn futures_lite_block(f: port::SrbFuture) -> Srb {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f.wait());
    });
    rx.recv_timeout(HOLD_LIMIT).expect("the request completes")
}
