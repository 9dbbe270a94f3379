//! The hardware abstraction layer of the system-DMA storage stack: physical system memory
//! with MDL-like buffers, the PC/AT pair of 8237A DMA controllers at their standard I/O
//! ports, and HAL adapter objects (channel ownership, map registers, bounce, flush) as the
//! DDK describes them for subordinate (system) DMA devices.

mod adapter;
mod dma8237;
mod error;
mod frames;
mod memory;

pub use adapter::{
    AdapterObject, ChannelGrant, DeviceDescription, Direction, DmaSpeed, DmaWidth, Hal, HalConfig, HalStats, MapInfo,
};
pub use dma8237::{ChannelState, DmaChannel, DmaController, DmaDevice, DmaMode, ServiceOutcome, TransferType};
pub use error::HalError;
pub use memory::{Buffer, Placement, SystemMemory};

/// The page size of the modelled machine (x86, 4 KiB).
pub const PAGE_SIZE: u64 = 4096;
/// The system memory size the stack uses unless configured otherwise.
pub const DEFAULT_MEMORY_SIZE: u64 = 64 << 20;
/// The reach of the PC/AT system DMA controller: 24 address bits.
pub const ISA_DMA_LIMIT: u64 = 16 << 20;

/// A physical (bus) address in system memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysAddr(pub u64);

/// A buffer's virtual address: what an SRB's `DataBuffer` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogicalAddr(pub u64);
