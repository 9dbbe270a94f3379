//! An NCR 53C94/53C96-class SCSI controller (the "ESP") on an ISA card that pairs it with the system DMA controller,
//! and its miniport, written in C against `include/scsiport/miniport.h` (`c/esp.c`, built by `build.rs`).
//!
//! [`hw`] is the chip at register level (`docs/esp.md`); [`start_adapter`] builds the card and runs the C miniport's
//! `DriverEntry` on it through the C ABI of `miniport-c`.

pub mod hw;

pub use hw::{Esp, EspSettings};

use hal::Hal;
use hba::ScsiBus;
use miniport_c::{Miniport, MiniportError};
use port::{AdapterHandle, AdapterOptions, AdapterResources};
use std::sync::Arc;

extern "C" {
    /// `c/esp.c`: the miniport's entry point.
    fn esp_DriverEntry(driver_object: *mut std::ffi::c_void, argument2: *mut std::ffi::c_void) -> u32;
}

/// The C miniport linked into this crate.
pub fn miniport() -> Miniport {
    // SAFETY: esp_DriverEntry is the DriverEntry of c/esp.c, built against the header by build.rs.
    unsafe { Miniport::linked("esp (c/esp.c)", esp_DriverEntry) }
}

/// One ESP card as a machine builder describes it.
#[derive(Clone)]
pub struct EspConfig {
    pub settings: EspSettings,
    /// Target ID (0–6) and the target at that ID.
    pub targets: Vec<(u8, Arc<scsi::Target>)>,
}

impl EspConfig {
    pub fn build_hardware(&self) -> Result<Esp, MiniportError> {
        let bad = |reason: String| {
            MiniportError::Port(port::PortError::BadDmaConfig {
                name: format!("esp@{:#x}", self.settings.io_base),
                reason,
            })
        };
        if matches!(self.settings.dma_channel, 4) || self.settings.dma_channel > 7 {
            return Err(bad(format!("DMA channel {} cannot be jumpered", self.settings.dma_channel)));
        }
        let mut bus = ScsiBus::new();
        for (id, target) in &self.targets {
            if !bus.attach(*id, target.clone()) {
                return Err(MiniportError::Port(port::PortError::BadRequest(format!(
                    "target ID {id} is not on the bus: targets are 0-6, the chip is ID 7"
                ))));
            }
        }
        Ok(Esp::new(self.settings, bus))
    }

    pub fn resources(&self) -> AdapterResources {
        AdapterResources {
            io_base: self.settings.io_base,
            io_length: hw::reg::PORT_COUNT,
            interrupt_level: u32::from(self.settings.irq),
            dma_channel: Some(self.settings.dma_channel),
        }
    }
}

/// Build the card and start the port driver with the C miniport on it.
pub fn start_adapter(hal: Arc<Hal>, cfg: EspConfig, options: AdapterOptions) -> Result<AdapterHandle, MiniportError> {
    let hw = cfg.build_hardware()?;
    miniport_c::start(&miniport(), hal, Box::new(hw), cfg.resources(), options)
}
