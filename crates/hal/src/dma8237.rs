//! The PC/AT pair of 8237A DMA controllers.

use crate::{HalError, SystemMemory};

/// A system DMA channel, 0..=7 (4 is the cascade).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DmaChannel(u8);

impl DmaChannel {
    pub fn new(n: u8) -> Result<Self, HalError> {
        if n <= 7 {
            Ok(Self(n))
        } else {
            Err(HalError::InvalidChannel(n))
        }
    }
    pub fn number(self) -> u8 {
        self.0
    }
    pub fn is_16bit(self) -> bool {
        self.0 >= 4
    }
    pub fn is_cascade(self) -> bool {
        self.0 == 4
    }
    pub fn page_size(self) -> u64 {
        if self.is_16bit() {
            128 << 10
        } else {
            64 << 10
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferType {
    Verify,
    /// Device → memory.
    Write,
    /// Memory → device.
    Read,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaMode {
    Demand,
    Single,
    Block,
    Cascade,
}

#[derive(Clone, Copy, Debug)]
pub struct ChannelState {
    pub base_address: u16,
    pub current_address: u16,
    pub base_count: u16,
    pub current_count: u16,
    pub page: u8,
    pub transfer: TransferType,
    pub mode: DmaMode,
    pub auto_init: bool,
    pub decrement: bool,
    pub masked: bool,
    pub terminal_count: bool,
    pub request: bool,
}

/// The device side of a DMA channel (the HBA implements it).
pub trait DmaDevice {
    /// Is DREQ asserted now?
    fn dreq(&self) -> bool;
    /// Memory → device ("read" transfer). Returns how many bytes the device accepted.
    fn dma_write(&mut self, data: &[u8]) -> usize;
    /// Device → memory ("write" transfer). Returns how many bytes the device supplied.
    fn dma_read(&mut self, buf: &mut [u8]) -> usize;
    /// EOP: the channel reached terminal count.
    fn terminal_count(&mut self) {}
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceOutcome {
    pub bytes: u64,
    pub terminal_count: bool,
}

/// Both chips, the page registers, command/status/request/mask registers.
pub struct DmaController {}

impl Default for DmaController {
    fn default() -> Self {
        Self::new()
    }
}

impl DmaController {
    pub fn new() -> Self {
        todo!()
    }
    pub fn is_dma_port(port: u16) -> bool {
        let _ = port;
        todo!()
    }
    pub fn io_read(&mut self, port: u16) -> u8 {
        let _ = port;
        todo!()
    }
    pub fn io_write(&mut self, port: u16, value: u8) {
        let _ = (port, value);
        todo!()
    }
    pub fn channel_state(&self, ch: DmaChannel) -> ChannelState {
        let _ = ch;
        todo!()
    }
    pub fn service(
        &mut self,
        ch: DmaChannel,
        mem: &SystemMemory,
        dev: &mut dyn DmaDevice,
    ) -> ServiceOutcome {
        let _ = (ch, mem, dev);
        todo!()
    }
}
