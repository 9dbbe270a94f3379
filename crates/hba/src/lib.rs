//! The reference ISA SCSI host adapter and its miniport.
//!
//! [`hw`] is the card, modelled at register level (`docs/hba.md` is its datasheet): a slave-DMA device on a system
//! DMA channel with a SCSI bus of up to seven targets. [`miniport`] is its driver, which reaches the card only through
//! the port driver's DDI. [`start_adapter`] wires the two to a port driver instance.

pub mod hw;
pub mod miniport;
pub mod regs;

pub use hw::{BusDevice, Hba, HbaCounters, HbaMonitor, HbaSettings, ScsiBus, ScsiTiming};
pub use miniport::{
    hw_initialization_data, MiniportConfig, RefMiniport, DEFAULT_MAX_TRANSFER, DEFAULT_QUEUE_DEPTH, IOCTL_NEXUS_LOSS,
    IOCTL_SIGNATURE, SRB_IO_CONTROL_SIZE,
};

use hal::Hal;
use port::{AdapterHandle, AdapterOptions, AdapterResources, PortError};
use std::sync::Arc;

/// One adapter as a machine builder describes it.
#[derive(Clone)]
pub struct HbaConfig {
    /// I/O base; the card decodes 16 ports from it.
    pub io_base: u16,
    /// IRQ jumper, 0–15.
    pub irq: u8,
    /// DMA channel jumper: 0–3 (8-bit) or 5–7 (16-bit).
    pub dma_channel: u8,
    /// `MaximumTransferLength` and pass-through sub-range size: whole pages, clamped by the miniport to one 8237
    /// programming (64 KiB on channels 0–3, 128 KiB on 5–7).
    pub max_transfer: u32,
    /// Program the system DMA controller in demand mode.
    pub demand_mode: bool,
    /// Offer application-dedicated support (pass-through SRBs of any size).
    pub application_dedicated: bool,
    /// Tagged commands outstanding per logical unit; 1 turns tagged queuing off.
    pub queue_depth: u8,
    /// The card sits in an EISA machine (its miniport reports `Dma32BitAddresses`).
    pub eisa_dma: bool,
    /// The miniport grants targets the disconnect privilege (`docs/hba.md`, "Disconnect and reselection").
    pub disconnect: bool,
    /// Virtual time for the card's SCSI bus phases (off when None).
    pub scsi_timing: Option<ScsiTiming>,
    /// The bus: target ID (0–6) and the target at that ID.
    pub targets: Vec<(u8, Arc<scsi::Target>)>,
}

impl Default for HbaConfig {
    fn default() -> Self {
        HbaConfig {
            io_base: regs::DEFAULT_IO_BASE,
            irq: 11,
            dma_channel: 5,
            max_transfer: DEFAULT_MAX_TRANSFER,
            demand_mode: true,
            application_dedicated: true,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            eisa_dma: false,
            disconnect: true,
            scsi_timing: None,
            targets: Vec::new(),
        }
    }
}

impl HbaConfig {
    /// The miniport's part of the configuration.
    pub fn miniport_config(&self) -> MiniportConfig {
        MiniportConfig {
            max_transfer: self.max_transfer,
            demand_mode: self.demand_mode,
            application_dedicated: self.application_dedicated,
            queue_depth: self.queue_depth,
            eisa_dma: self.eisa_dma,
            disconnect: self.disconnect,
        }
    }

    /// The card as jumpered and cabled, or why it cannot be built.
    pub fn build_hardware(&self) -> Result<Hba, PortError> {
        let name = || format!("hba@{:#x}", self.io_base);
        let jumper = |reason: String| PortError::Jumper { name: name(), reason };
        let setting = |reason: String| PortError::AdapterSetting { name: name(), reason };
        if matches!(self.dma_channel, 4) || self.dma_channel > 7 {
            return Err(jumper(format!(
                "DMA channel {} cannot be jumpered: use 0-3 (8-bit) or 5-7 (16-bit)",
                self.dma_channel
            )));
        }
        if self.irq > 15 {
            return Err(jumper(format!("IRQ {} does not exist on the ISA bus", self.irq)));
        }
        if self.max_transfer < 4096 || self.max_transfer > regs::XFER_MAX {
            return Err(setting(format!(
                "max_transfer {} is outside 4096..={} (whole pages within the 24-bit transfer counter)",
                self.max_transfer,
                regs::XFER_MAX
            )));
        }
        if self.queue_depth == 0 || usize::from(self.queue_depth) > regs::TAG_SLOTS {
            return Err(setting(format!(
                "queue_depth {} is outside 1..={} (the card's table of disconnected commands)",
                self.queue_depth,
                regs::TAG_SLOTS
            )));
        }
        if self.io_base.checked_add(regs::PORT_COUNT).is_none() {
            return Err(jumper(format!("I/O base {:#x} leaves no room for 16 ports", self.io_base)));
        }
        let mut bus = ScsiBus::new();
        for (id, target) in &self.targets {
            if !bus.attach(*id, target.clone()) {
                return Err(setting(format!("target ID {id} is not on the bus: targets are 0-6, the adapter is ID 7")));
            }
        }
        let mut hba =
            Hba::new(HbaSettings { io_base: self.io_base, irq: self.irq, dma_channel: self.dma_channel }, bus);
        hba.set_scsi_timing(self.scsi_timing);
        Ok(hba)
    }

    /// The resources the machine gives the port (what it presets in the configuration).
    pub fn resources(&self) -> AdapterResources {
        AdapterResources {
            io_base: self.io_base,
            io_length: regs::PORT_COUNT,
            interrupt_level: u32::from(self.irq),
            dma_channel: Some(self.dma_channel),
        }
    }
}

/// Build the card, and start a port driver instance with the reference miniport on it.
pub fn start_adapter(hal: Arc<Hal>, cfg: HbaConfig, options: AdapterOptions) -> Result<AdapterHandle, PortError> {
    let hw = cfg.build_hardware()?;
    start_with_hardware(hal, hw, cfg.miniport_config(), cfg.resources(), options)
}

/// Start the reference miniport on a card built by the caller (a bus of [`BusDevice`]s other than `scsi::Target`).
pub fn start_with_hardware(
    hal: Arc<Hal>,
    hw: Hba,
    miniport: MiniportConfig,
    resources: AdapterResources,
    options: AdapterOptions,
) -> Result<AdapterHandle, PortError> {
    AdapterHandle::start(hal, hw_initialization_data(), RefMiniport::new(miniport), Box::new(hw), resources, options)
}
