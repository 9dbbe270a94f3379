//! The SCSI disk logical unit (SPC-4 / SBC-3).
//!
//! `begin` runs the checks SAM-5 orders before any command (injected faults, the command
//! table's CDB checks, unit attentions, reservations, readiness), then the command's handler
//! from the table in [`opcodes`].

mod alua;
mod atomic;
mod config;
mod descriptor;
mod inquiry;
mod io;
mod medium;
mod misc;
mod mode;
mod opcodes;
mod pr;
mod provisioning;
mod rsoc;
mod sanitize;
mod ua;

pub use alua::{AluaState, PortGroup};
pub use config::{ConfigError, DiskConfig};

use crate::backend::Backend;
use crate::fault::{FaultInjector, Injected};
use crate::sense::{AscAscq, Sense};
use crate::status::{Outcome, ScsiStatus};
use crate::task::{Begin, LogicalUnit, Nexus};
use opcodes::{Class, Lookup};
use parking_lot::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A SCSI direct-access block device over a [`Backend`].
pub struct Disk {
    inner: Arc<Inner>,
    /// Told of every reset of the unit through this host (hosts that share the unit pass it on, `docs/ceph.md`).
    reset_listener: RwLock<Option<ResetListener>>,
}

/// A function told of a reset of a logical unit.
pub type ResetListener = Arc<dyn Fn() + Send + Sync>;

/// Everything a command (and its data-phase task, which outlives `begin`) needs.
pub(crate) struct Inner {
    cfg: DiskConfig,
    /// log2 of the block size.
    shift: u32,
    blocks: AtomicU64,
    backend: Arc<dyn Backend>,
    faults: FaultInjector,
    /// Plain writes hold it shared per chunk; COMPARE AND WRITE and ORWRITE hold it
    /// exclusively across read-compare-write, which makes them atomic against every other
    /// writer (SBC-3 §5.2).
    gate: RwLock<()>,
    /// Caching mode page WCE (SBC-3 §6.4.5).
    wce: AtomicBool,
    /// Control mode page SWP (SPC-4 §7.5.8).
    swp: AtomicBool,
    /// Control mode page D_SENSE: sense data in descriptor format.
    dsense: AtomicBool,
    /// START STOP UNIT state (SBC-3 §5.25).
    started: AtomicBool,
    mode: mode::ModePages,
    ua: ua::UnitAttentions,
    pr: pr::Reservations,
    sanitize: sanitize::SanitizeState,
    /// Load state and removal prevention of a removable medium.
    medium: medium::Medium,
    alua: alua::Alua,
}

impl Inner {
    pub(crate) fn blocks(&self) -> u64 {
        self.blocks.load(Ordering::Acquire)
    }

    pub(crate) fn block_size(&self) -> u64 {
        1 << self.shift
    }

    /// Logical blocks per physical block (a power of two, checked by the configuration).
    pub(crate) fn blocks_per_physical(&self) -> u32 {
        (self.cfg.physical_block_size / self.cfg.block_size).max(1)
    }

    /// CHECK CONDITION in the format the control mode page selects.
    pub(crate) fn check(&self, sense: Sense) -> Outcome {
        Outcome::check(sense.with_descriptor(self.dsense.load(Ordering::Relaxed)))
    }

    pub(crate) fn write_protected(&self) -> bool {
        self.cfg.read_only || self.swp.load(Ordering::Relaxed)
    }

    /// SBC-3 §4.5: a command may touch blocks `[lba, lba + n)` only inside the capacity;
    /// the sum is checked, never wrapped.
    pub(crate) fn check_range(&self, lba: u64, n: u64) -> Result<(), Sense> {
        match lba.checked_add(n) {
            Some(end) if end <= self.blocks() => Ok(()),
            _ => Err(Sense::lba_out_of_range()),
        }
    }

    /// Make writes durable: after FUA writes, with the write cache off, and on
    /// SYNCHRONIZE CACHE (SBC-3 §4.15).
    pub(crate) fn flush(&self, lba: u64) -> Result<(), Sense> {
        self.backend.flush().map_err(|_| Sense::write_error(lba))
    }

    pub(crate) fn flush_after_write(&self, fua: bool, lba: u64) -> Result<(), Sense> {
        if fua || !self.wce.load(Ordering::Relaxed) {
            self.flush(lba)
        } else {
            Ok(())
        }
    }
}

impl Disk {
    /// A disk over `backend`. Persistent reservations saved with APTPL are loaded from
    /// `cfg.pr_state_file` when it exists.
    pub fn new(mut cfg: DiskConfig, backend: Arc<dyn Backend>) -> Result<Self, ConfigError> {
        let blocks = cfg.validate(backend.size())?;
        if cfg.crypto_erase && !backend.can_crypto_erase() {
            return Err(ConfigError::CryptoErase);
        }
        let pr = pr::Reservations::load(cfg.pr_state_file.as_deref())?;
        let inner = Inner {
            shift: cfg.block_size.trailing_zeros(),
            blocks: AtomicU64::new(blocks),
            faults: FaultInjector::from_config(&cfg.faults),
            gate: RwLock::new(()),
            wce: AtomicBool::new(cfg.write_cache),
            swp: AtomicBool::new(false),
            dsense: AtomicBool::new(false),
            started: AtomicBool::new(true),
            mode: mode::ModePages::new(cfg.write_cache),
            ua: ua::UnitAttentions::new(cfg.power_on_unit_attention),
            pr,
            sanitize: sanitize::SanitizeState::new(),
            medium: medium::Medium::new(),
            alua: alua::Alua::new(cfg.port_group, &cfg.port_groups),
            backend,
            cfg,
        };
        Ok(Self { inner: Arc::new(inner), reset_listener: RwLock::new(None) })
    }

    pub fn faults(&self) -> &FaultInjector {
        &self.inner.faults
    }

    pub fn config(&self) -> &DiskConfig {
        &self.inner.cfg
    }

    pub fn block_size(&self) -> u32 {
        self.inner.cfg.block_size
    }

    /// Capacity in logical blocks.
    pub fn blocks(&self) -> u64 {
        self.inner.blocks()
    }

    /// Whether the write cache is enabled (WCE), as last set by MODE SELECT.
    pub fn write_cache_enabled(&self) -> bool {
        self.inner.wce.load(Ordering::Relaxed)
    }

    /// Change the capacity while running; every I_T nexus then sees 06/2A/09
    /// CAPACITY DATA HAS CHANGED (SBC-3 §4.11).
    pub fn set_blocks(&self, blocks: u64) -> Result<(), ConfigError> {
        let bs = u64::from(self.inner.cfg.block_size);
        let size = self.inner.backend.size();
        if blocks == 0 || blocks.checked_mul(bs).is_none_or(|b| b > size) {
            return Err(ConfigError::Capacity { blocks, block_size: self.inner.cfg.block_size, backend: size });
        }
        self.inner.blocks.store(blocks, Ordering::Release);
        self.inner.ua.post_all(AscAscq::CAPACITY_DATA_CHANGED, None);
        Ok(())
    }

    /// The commands this disk accepts: opcode, service action and name, in opcode order
    /// (the same table REPORT SUPPORTED OPERATION CODES reports).
    pub fn supported_commands(&self) -> Vec<(u8, Option<u8>, &'static str)> {
        opcodes::OPS
            .iter()
            .filter(|op| opcodes::offered(&self.inner.cfg, op))
            .map(|op| (op.opcode, op.sa, op.name))
            .collect()
    }

    /// Move a target port group to `state` (a host of a shared logical unit left or came back). Every I_T nexus
    /// then sees 06/2A/06 ASYMMETRIC ACCESS STATE CHANGED. Returns false when no such group is configured.
    pub fn set_port_group_state(&self, id: u16, state: AluaState) -> bool {
        match self.inner.alua.set(id, state) {
            Some(changed) => {
                if changed {
                    self.inner.ua.post_all(alua::STATE_CHANGED, None);
                }
                true
            }
            None => false,
        }
    }

    /// The target port groups and their states now.
    pub fn port_groups(&self) -> Vec<PortGroup> {
        self.inner.alua.states()
    }

    /// Tell `listener` of every reset of the unit through this host, after its effects and before the reset
    /// completes (None: tell no one).
    pub fn set_reset_listener(&self, listener: Option<ResetListener>) {
        *self.reset_listener.write() = listener;
    }

    /// A reset of the unit through another host that serves it: the same effects as one through this host (SAM-5:
    /// a logical unit reset concerns every I_T nexus of the unit), without telling the listener again.
    pub fn reset_by_peer(&self) {
        self.reset_effects();
    }

    fn reset_effects(&self) {
        self.inner.ua.post_all(AscAscq::POWER_ON_RESET, None);
        self.inner.pr.release_spc2(None);
        self.inner.medium.reset();
    }

    /// Queue a unit attention for every I_T nexus (e.g. 06/3F/0E when LUNs change).
    pub fn post_unit_attention(&self, code: AscAscq) {
        self.inner.ua.post_all(code, None);
    }

    pub(crate) fn clear_unit_attention(&self, nexus: Nexus, code: AscAscq) {
        self.inner.ua.clear(nexus, code);
    }

    fn begin_inner(&self, nexus: Nexus, cdb: &[u8], data_out_len: Option<u64>) -> Begin {
        let inner = &self.inner;
        let looked = opcodes::lookup(&inner.cfg, cdb);
        let class = match &looked {
            Lookup::Found(op) => op.class,
            Lookup::Invalid(_) => Class::Service,
        };
        // SAM-5 §5.14: a pending unit attention ends any command other than INQUIRY,
        // REPORT LUNS and REQUEST SENSE, and is cleared by being reported.
        if class != Class::Info {
            // SBC-4 §4.11: while a sanitize runs (or after it failed) the unit is not ready
            // for anything but INQUIRY, REPORT LUNS and REQUEST SENSE; a SANITIZE itself
            // decides (EXIT FAILURE MODE, a new sanitize after a failure). Unit attentions
            // stay pending meanwhile.
            if cdb.first() != Some(&0x48) {
                if let Some(sense) = inner.sanitize.blocking_sense() {
                    return Begin::check(sense);
                }
            }
            if let Some(injected) = inner.faults.take_injected(cdb) {
                return match injected {
                    Injected::Busy => Begin::Complete(Outcome::status(ScsiStatus::BUSY)),
                    Injected::Aborted => Begin::check(Sense::aborted_command()),
                    Injected::UnitAttention(code) => Begin::check(Sense::unit_attention(code)),
                };
            }
            if let Some(code) = inner.ua.take(nexus) {
                return Begin::check(Sense::unit_attention(code));
            }
        } else {
            inner.ua.touch(nexus);
        }
        let op = match looked {
            Lookup::Found(op) => op,
            Lookup::Invalid(sense) => return Begin::check(sense),
        };
        if inner.pr.conflicts(nexus, op.class, cdb) {
            return Begin::Complete(Outcome::status(ScsiStatus::RESERVATION_CONFLICT));
        }
        if let Some(sense) = inner.medium.absent_sense().filter(|_| op.media) {
            return Begin::check(sense);
        }
        if op.media && !inner.started.load(Ordering::Acquire) {
            return Begin::check(Sense::not_ready_init_required());
        }
        if op.media {
            if let Some(sense) = inner.alua.refuses_media_access() {
                return Begin::check(sense);
            }
        }
        if let (0x89, Some(len)) = (op.opcode, data_out_len) {
            if len != 2 * u64::from(cdb[13]) * inner.block_size() {
                return Begin::check(Sense::invalid_field_in_cdb(13, None));
            }
        }
        (op.run)(inner, nexus, cdb)
    }
}

fn descriptor_if(inner: &Inner, begun: Begin) -> Begin {
    if inner.dsense.load(Ordering::Relaxed) {
        descriptor::wrap(begun)
    } else {
        begun
    }
}

impl LogicalUnit for Disk {
    fn begin(&self, nexus: Nexus, cdb: &[u8]) -> Begin {
        descriptor_if(&self.inner, self.begin_inner(nexus, cdb, None))
    }

    /// COMPARE AND WRITE is all or nothing, so a data-out length other than the 2 × NUMBER
    /// OF LOGICAL BLOCKS blocks its CDB asks for is INVALID FIELD IN CDB rather than a
    /// compare of part of the data (the field is one byte: 256 blocks written as 0 must
    /// not pass as "nothing to do").
    fn begin_expecting(&self, nexus: Nexus, cdb: &[u8], data_out_len: u64) -> Begin {
        descriptor_if(&self.inner, self.begin_inner(nexus, cdb, Some(data_out_len)))
    }

    fn reset(&self) {
        self.reset_effects();
        let listener = self.reset_listener.read().clone();
        if let Some(tell) = listener {
            tell();
        }
    }

    /// SAM-5 I_T nexus loss (`docs/nexus-loss.md`): the nexus's SPC-2 reservation and removal prevention end, its
    /// pending unit attentions become I_T NEXUS LOSS OCCURRED; persistent reservations stay (SPC-4).
    fn nexus_loss(&self, nexus: Nexus) {
        self.inner.pr.release_spc2(Some(nexus));
        self.inner.medium.nexus_loss(nexus);
        self.inner.ua.nexus_loss(nexus);
    }

    fn faults(&self) -> Option<&FaultInjector> {
        Some(&self.inner.faults)
    }
}

/// Pieces the target needs without a logical unit behind it.
pub(crate) mod misc_export {
    pub(crate) use super::inquiry::absent_lun as absent_lun_inquiry;
    pub(crate) use super::misc::report_luns_data;
}
