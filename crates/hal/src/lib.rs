//! The hardware abstraction layer of the system-DMA storage stack: physical system memory
//! with MDL-like buffers, the PC/AT pair of 8237A DMA controllers at their standard I/O
//! ports, and HAL adapter objects (channel ownership, map registers, bounce, flush) as the
//! DDK describes them for subordinate (system) DMA devices.
//!
//! One system-DMA operation, as the port driver performs it for a miniport:
//!
//! ```
//! use hal::*;
//!
//! struct Disk(Vec<u8>);
//! impl DmaDevice for Disk {
//!     fn dreq(&self) -> bool { !self.0.is_empty() }
//!     fn dma_write(&mut self, _: &[u8]) -> usize { 0 }
//!     fn dma_read(&mut self, buf: &mut [u8]) -> usize {
//!         let n = buf.len().min(self.0.len());
//!         buf[..n].copy_from_slice(&self.0[..n]);
//!         self.0.drain(..n);
//!         n
//!     }
//! }
//!
//! let mem = SystemMemory::new(DEFAULT_MEMORY_SIZE)?;
//! let hal = Hal::new(mem.clone(), HalConfig::default())?;
//! let adapter = hal.get_adapter(&DeviceDescription {
//!     master: false,
//!     dma_channel: DmaChannel::new(5)?,
//!     dma_width: DmaWidth::Bits16,
//!     dma_speed: DmaSpeed::Compatible,
//!     demand_mode: true,
//!     auto_initialize: false,
//!     maximum_length: 0,
//!     dma32_bit_addresses: false,
//! })?;
//! // A buffer above 16 MiB: out of the controller's reach, so the map bounces.
//! let buf = mem.alloc(8192, Placement::Above16M)?;
//! let regs = adapter.number_of_map_registers();
//! let mut grant = adapter.allocate_channel(regs, Box::new(|| {}))?.expect("channel free");
//! let info = adapter.map_transfer(&mut grant, &buf, 0, 8192, Direction::FromDevice)?;
//! assert!(info.bounced);
//! let mut disk = Disk(vec![0xAB; 8192]);
//! let out = hal.with_dma(|dma, mem| dma.service(adapter.channel(), mem, &mut disk));
//! assert!(out.terminal_count);
//! // The data reaches the buffer only through the flush.
//! let moved = adapter.flush_adapter_buffers(&mut grant, &buf, 0, 8192, Direction::FromDevice)?;
//! assert_eq!(moved, 8192);
//! adapter.free_adapter_channel(grant);
//! let mut first = [0u8; 4];
//! buf.read(0, &mut first)?;
//! assert_eq!(first, [0xAB; 4]);
//! # Ok::<(), HalError>(())
//! ```
//!
//! Locking: `Hal::with_dma` holds the bus lock while its closure runs, and `service`
//! calls the device inside it, so a `DmaDevice` must not call back into the HAL. Wakers
//! passed to `allocate_channel` run with no HAL lock held. The HAL owns the status
//! register: reading it elsewhere consumes TC bits the flush relies on.
//!
//! System memory (`docs/memory.md`): a slice of it exists only inside a hold on its frames. A processor access
//! (`Buffer::read`, `with_slices_mut`, `SystemMemory::write_phys`, a run borrow, ...) that meets another party's hold
//! fails with `HalError::Busy`; the DMA engine waits for it. So a `DmaDevice`, or code holding a slice or run borrow,
//! must not run DMA service over those same frames on its own thread.

mod access;
mod adapter;
mod clock;
mod dma8237;
mod error;
mod frames;
mod memory;

pub use adapter::{
    AdapterObject, ChannelGrant, DeviceDescription, Direction, DmaSpeed, DmaWidth, Hal, HalConfig, HalStats, MapInfo,
    SystemBus,
};
pub use clock::{picos_to_duration, MachineTiming, Picos, VirtualClock, VirtualTime};
pub use dma8237::{ChannelState, DmaChannel, DmaController, DmaDevice, DmaMode, ServiceOutcome, TransferType};
pub use error::HalError;
pub use memory::{Buffer, Placement, RunMut, RunRef, SystemMemory};

/// The page size of the modelled machine (x86, 4 KiB).
pub const PAGE_SIZE: u64 = 4096;
/// The system memory size the stack uses unless configured otherwise.
pub const DEFAULT_MEMORY_SIZE: u64 = 64 << 20;
/// The reach of the PC/AT system DMA controller: 24 address bits.
pub const ISA_DMA_LIMIT: u64 = 16 << 20;
/// The reach of an EISA DMA channel programmed with its high page register: 32 bits.
pub const EISA_DMA_LIMIT: u64 = 1 << 32;

/// A physical (bus) address in system memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysAddr(pub u64);

/// A buffer's virtual address: what an SRB's `DataBuffer` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogicalAddr(pub u64);
