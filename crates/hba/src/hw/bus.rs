//! The adapter's SCSI bus: up to seven devices at target IDs 0–6 (the adapter is ID 7).

pub use crate::regs::MAX_LUN;
use scsi::{Begin, Nexus};
use std::sync::Arc;

/// A device on the bus, as the adapter's protocol engine sees it: it takes commands per LUN, resets, and tells the
/// adapter which faults the adapter must act out itself (a command that never completes, a DMA stall, a bus reset).
pub trait BusDevice: Send + Sync {
    /// Begin a command on `lun`.
    fn begin(&self, nexus: Nexus, lun: u64, cdb: &[u8]) -> Begin;
    /// A SCSI bus reset reaches the device: every logical unit resets.
    fn reset(&self);
    /// Consume an armed "command never completes" fault for this command, if one applies.
    fn take_hang(&self, _lun: u64, _cdb: &[u8]) -> bool {
        false
    }
    /// Bytes of a data phase after which the adapter stops asserting DREQ, if that fault is armed.
    fn dma_stall_after(&self, _lun: u64) -> Option<u64> {
        None
    }
    /// Consume a requested bus reset (a device asserting RST).
    fn take_bus_reset(&self) -> bool {
        false
    }
    /// The initiator `nexus` is gone from the bus.
    fn nexus_loss(&self, _nexus: Nexus) {}
}

impl BusDevice for scsi::Target {
    fn begin(&self, nexus: Nexus, lun: u64, cdb: &[u8]) -> Begin {
        scsi::Target::begin(self, nexus, lun, cdb)
    }

    fn reset(&self) {
        scsi::Target::reset(self);
    }

    fn nexus_loss(&self, nexus: Nexus) {
        scsi::Target::nexus_loss(self, nexus);
    }

    fn take_hang(&self, lun: u64, cdb: &[u8]) -> bool {
        self.disk(lun).is_some_and(|d| d.faults().take_hang(cdb))
    }

    fn dma_stall_after(&self, lun: u64) -> Option<u64> {
        self.disk(lun).and_then(|d| d.faults().dma_stall_after())
    }

    fn take_bus_reset(&self) -> bool {
        // Every LU is asked (no short circuit), so that one request is consumed wherever it was armed.
        let mut hit = false;
        for lun in self.luns() {
            if let Some(d) = self.disk(lun) {
                hit |= d.faults().take_bus_reset();
            }
        }
        hit
    }
}

/// The devices at target IDs 0–6.
#[derive(Clone, Default)]
pub struct ScsiBus {
    devices: [Option<Arc<dyn BusDevice>>; 7],
}

impl ScsiBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Attach `device` at `target_id` (0–6). Returns false for an ID the bus does not have (7 is the adapter).
    pub fn attach(&mut self, target_id: u8, device: Arc<dyn BusDevice>) -> bool {
        match self.devices.get_mut(usize::from(target_id)) {
            Some(slot) => {
                *slot = Some(device);
                true
            }
            None => false,
        }
    }

    /// The device answering selection at `target_id`.
    pub fn device(&self, target_id: u8) -> Option<&Arc<dyn BusDevice>> {
        self.devices.get(usize::from(target_id)).and_then(Option::as_ref)
    }

    pub(crate) fn devices(&self) -> impl Iterator<Item = &Arc<dyn BusDevice>> {
        self.devices.iter().flatten()
    }
}
