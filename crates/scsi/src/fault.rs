//! Fault injection, in the spirit of scsi_debug's option bits: each fault is armed from
//! the configuration file or switched while running, and acted out either by the logical
//! unit (medium error, aborted command, unit attention, busy) or by the HBA model, which
//! asks here (commands that never complete, DMA stalls, bus resets).

use crate::sense::AscAscq;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// A run of logical blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbaRange {
    pub start: u64,
    pub count: u64,
}

impl LbaRange {
    /// The first LBA of this range inside `[lba, lba + blocks)`, if any.
    pub fn first_overlap(&self, lba: u64, blocks: u64) -> Option<u64> {
        let end = self.start.saturating_add(self.count);
        let req_end = lba.saturating_add(blocks);
        let lo = self.start.max(lba);
        (lo < end.min(req_end)).then_some(lo)
    }
}

/// Faults as written in a LUN's configuration table, e.g.
///
/// ```toml
/// [faults]
/// medium_error = { start = 1000, count = 8 }
/// aborted_command = 1      # the next command ends 0B/00/00
/// busy = 2                 # the next two commands end BUSY
/// hang = 1                 # the next command never completes
/// dma_stall_after = 65536  # the HBA stops asserting DREQ after this many bytes
/// opcodes = [0x28, 0x2a]   # counted faults hit only these commands
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Reads of these blocks end MEDIUM ERROR 03/11/00, writes 03/0C/00.
    pub medium_error: Option<LbaRange>,
    /// Number of coming commands that never complete.
    pub hang: u32,
    /// Number of coming commands that end ABORTED COMMAND 0B/00/00.
    pub aborted_command: u32,
    /// Number of coming commands that end with a transient UNIT ATTENTION 06/29/00.
    pub unit_attention: u32,
    /// Number of coming commands that end with BUSY status.
    pub busy: u32,
    /// The HBA stops asserting DREQ after this many bytes of a data phase.
    pub dma_stall_after: Option<u64>,
    /// The HBA raises a SCSI bus reset at the next opportunity.
    pub bus_reset: bool,
    /// Restrict the counted faults (hang, aborted, unit attention, busy) to these opcodes.
    pub opcodes: Option<Vec<u8>>,
}

/// What the logical unit must do instead of running a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Injected {
    Busy,
    Aborted,
    UnitAttention(AscAscq),
}

/// Runtime fault switches for one logical unit. Every method is safe to call from any
/// thread while commands run.
#[derive(Debug, Default)]
pub struct FaultInjector {
    medium: Mutex<Option<LbaRange>>,
    medium_armed: AtomicBool,
    hang: AtomicU32,
    aborted: AtomicU32,
    unit_attention: AtomicU32,
    busy: AtomicU32,
    /// u64::MAX means no stall.
    dma_stall: AtomicU64,
    bus_reset: AtomicBool,
    opcodes: Mutex<Option<Vec<u8>>>,
    /// Fast path: any counted fault armed.
    counted_armed: AtomicBool,
}

/// Take one from a counter if it is positive.
fn take(counter: &AtomicU32) -> bool {
    counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1)).is_ok()
}

impl FaultInjector {
    pub fn new() -> Self {
        let f = Self::default();
        f.dma_stall.store(u64::MAX, Ordering::Relaxed);
        f
    }

    pub fn from_config(cfg: &FaultConfig) -> Self {
        let f = Self::new();
        f.apply(cfg);
        f
    }

    /// Replace every switch with the configuration's.
    pub fn apply(&self, cfg: &FaultConfig) {
        self.set_medium_error(cfg.medium_error);
        self.hang.store(cfg.hang, Ordering::Release);
        self.aborted.store(cfg.aborted_command, Ordering::Release);
        self.unit_attention.store(cfg.unit_attention, Ordering::Release);
        self.busy.store(cfg.busy, Ordering::Release);
        self.set_dma_stall_after(cfg.dma_stall_after);
        self.bus_reset.store(cfg.bus_reset, Ordering::Release);
        *self.opcodes.lock() = cfg.opcodes.clone();
        self.rearm();
    }

    pub fn clear_all(&self) {
        self.apply(&FaultConfig::default());
    }

    fn rearm(&self) {
        let any =
            [&self.hang, &self.aborted, &self.unit_attention, &self.busy].iter().any(|c| c.load(Ordering::Acquire) > 0);
        self.counted_armed.store(any, Ordering::Release);
    }

    pub fn set_medium_error(&self, range: Option<LbaRange>) {
        *self.medium.lock() = range;
        self.medium_armed.store(range.is_some(), Ordering::Release);
    }

    pub fn medium_error(&self) -> Option<LbaRange> {
        if !self.medium_armed.load(Ordering::Acquire) {
            return None;
        }
        *self.medium.lock()
    }

    /// The first faulty LBA in `[lba, lba + blocks)`.
    pub fn medium_error_in(&self, lba: u64, blocks: u64) -> Option<u64> {
        self.medium_error()?.first_overlap(lba, blocks)
    }

    pub fn set_hang(&self, commands: u32) {
        self.hang.store(commands, Ordering::Release);
        self.rearm();
    }

    pub fn set_aborted_command(&self, commands: u32) {
        self.aborted.store(commands, Ordering::Release);
        self.rearm();
    }

    pub fn set_unit_attention(&self, commands: u32) {
        self.unit_attention.store(commands, Ordering::Release);
        self.rearm();
    }

    pub fn set_busy(&self, commands: u32) {
        self.busy.store(commands, Ordering::Release);
        self.rearm();
    }

    pub fn set_opcodes(&self, opcodes: Option<Vec<u8>>) {
        *self.opcodes.lock() = opcodes;
    }

    fn matches(&self, cdb: &[u8]) -> bool {
        match (&*self.opcodes.lock(), cdb.first()) {
            (None, _) => true,
            (Some(list), Some(op)) => list.contains(op),
            (Some(_), None) => false,
        }
    }

    /// For the HBA: should this command never complete? Consumes one armed hang. The HBA
    /// asks before it hands the command to the logical unit and, on true, keeps the bus
    /// busy until the port driver's timeout resets it.
    pub fn take_hang(&self, cdb: &[u8]) -> bool {
        self.counted_armed.load(Ordering::Acquire) && self.matches(cdb) && {
            let hit = take(&self.hang);
            self.rearm();
            hit
        }
    }

    /// Whether a hang is armed, without consuming it.
    pub fn hang_requested(&self) -> bool {
        self.hang.load(Ordering::Acquire) > 0
    }

    pub fn set_dma_stall_after(&self, bytes: Option<u64>) {
        self.dma_stall.store(bytes.unwrap_or(u64::MAX), Ordering::Release);
    }

    /// For the HBA: stop asserting DREQ after this many bytes of a data phase.
    pub fn dma_stall_after(&self) -> Option<u64> {
        match self.dma_stall.load(Ordering::Acquire) {
            u64::MAX => None,
            n => Some(n),
        }
    }

    pub fn request_bus_reset(&self) {
        self.bus_reset.store(true, Ordering::Release);
    }

    /// For the HBA: a bus reset was requested; clears the request.
    pub fn take_bus_reset(&self) -> bool {
        self.bus_reset.swap(false, Ordering::AcqRel)
    }

    /// The logical unit's per-command check for counted faults.
    pub(crate) fn take_injected(&self, cdb: &[u8]) -> Option<Injected> {
        if !self.counted_armed.load(Ordering::Acquire) || !self.matches(cdb) {
            return None;
        }
        let hit = if take(&self.busy) {
            Some(Injected::Busy)
        } else if take(&self.aborted) {
            Some(Injected::Aborted)
        } else if take(&self.unit_attention) {
            Some(Injected::UnitAttention(AscAscq::POWER_ON_RESET))
        } else {
            None
        };
        self.rearm();
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_fire_the_configured_number_of_times() {
        let f = FaultInjector::new();
        f.set_busy(2);
        assert_eq!(f.take_injected(&[0x28]), Some(Injected::Busy));
        assert_eq!(f.take_injected(&[0x28]), Some(Injected::Busy));
        assert_eq!(f.take_injected(&[0x28]), None);
    }

    #[test]
    fn opcode_filter_spares_other_commands() {
        let f = FaultInjector::new();
        f.set_aborted_command(1);
        f.set_opcodes(Some(vec![0x2A]));
        assert_eq!(f.take_injected(&[0x00]), None);
        assert_eq!(f.take_injected(&[0x2A]), Some(Injected::Aborted));
    }

    #[test]
    fn hang_and_bus_reset_are_consumed_by_the_hba() {
        let f = FaultInjector::new();
        f.set_hang(1);
        assert!(f.hang_requested());
        assert!(f.take_hang(&[0x28]));
        assert!(!f.take_hang(&[0x28]));
        f.request_bus_reset();
        assert!(f.take_bus_reset());
        assert!(!f.take_bus_reset());
    }

    #[test]
    fn config_parses_from_toml() {
        let cfg: FaultConfig = toml::from_str(
            "medium_error = { start = 10, count = 2 }\nbusy = 1\ndma_stall_after = 512\nopcodes = [40]\n",
        )
        .unwrap();
        let f = FaultInjector::from_config(&cfg);
        assert_eq!(f.medium_error_in(0, 11), Some(10));
        assert_eq!(f.medium_error_in(12, 5), None);
        assert_eq!(f.dma_stall_after(), Some(512));
        assert_eq!(f.take_injected(&[40]), Some(Injected::Busy));
    }

    #[test]
    fn medium_range_overlap_is_overflow_safe() {
        let r = LbaRange { start: u64::MAX - 1, count: 10 };
        assert_eq!(r.first_overlap(u64::MAX - 5, 10), Some(u64::MAX - 1));
        assert_eq!(r.first_overlap(0, 3), None);
    }
}
