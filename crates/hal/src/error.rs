//! The HAL's typed errors.

use thiserror::Error;

/// Errors of system memory, the DMA controller model and adapter objects.
#[derive(Error, Debug, Clone, PartialEq, Eq)]
pub enum HalError {
    /// Not enough free physical pages for the requested placement.
    #[error("out of physical memory: {pages} page(s) requested for this placement")]
    OutOfMemory { pages: usize },
    /// A physical range outside system memory.
    #[error("physical range {addr:#x}+{len:#x} is outside system memory")]
    BadAddress { addr: u64, len: u64 },
    /// A system memory size that is zero, not page-aligned or too large.
    #[error("invalid system memory size {size:#x}: must be a non-zero multiple of 4096")]
    InvalidMemorySize { size: u64 },
    /// A placement request that cannot be honoured as stated.
    #[error("invalid placement: {reason}")]
    InvalidPlacement { reason: &'static str },
    /// A DMA channel number outside 0..=7, or channel 4 (cascade) given to a device.
    #[error("invalid DMA channel {0}")]
    InvalidChannel(u8),
    /// A device description the system DMA controller cannot serve.
    #[error("invalid device description: {reason}")]
    InvalidDescription { reason: &'static str },
    /// A map longer than the grant's map registers or the channel's DMA page allow.
    #[error("map of {len} bytes exceeds the maximum of {max} bytes")]
    MapTooLarge { len: usize, max: usize },
    /// A map whose range is empty or leaves the buffer.
    #[error("mapped range is empty or outside the buffer")]
    MapOutOfBuffer,
    /// A buffer from another system memory than the HAL's.
    #[error("the buffer does not live in this HAL's system memory")]
    ForeignBuffer,
    /// A CPU access outside the buffer.
    #[error("range {offset}+{len} is outside a buffer of {buffer_len} bytes")]
    OutOfBuffer { offset: usize, len: usize, buffer_len: usize },
    /// A grant used with an adapter object that does not own it.
    #[error("the channel grant does not belong to this adapter object")]
    ChannelNotOwned,
    /// A value that must be aligned and is not.
    #[error("{what} {value:#x} is not aligned to {align:#x}")]
    Misaligned { what: &'static str, value: u64, align: u64 },
    /// More map registers asked for than the adapter object or the pool has.
    #[error("{requested} map registers requested, at most {available} available")]
    TooManyMapRegisters { requested: u32, available: u32 },
    /// AllocateAdapterChannel while this adapter already has a request queued or a grant out.
    #[error("this adapter object already has a channel request queued or granted")]
    RequestPending,
    /// MapTransfer while a previous map on this grant has not been flushed.
    #[error("a mapped transfer is still outstanding on this grant")]
    MapOutstanding,
    /// FlushAdapterBuffers with no mapped transfer on this grant.
    #[error("nothing is mapped on this grant")]
    NotMapped,
    /// FlushAdapterBuffers with a range or direction other than the matching map's.
    #[error("flush range or direction differs from the mapped transfer")]
    FlushMismatch,
    /// An access to bytes another party holds (a live slice or run borrow, or a DMA run in progress).
    #[error("physical range {addr:#x}+{len:#x} is held by another access")]
    Busy { addr: u64, len: u64 },
    /// A run borrow of a range that is not one physically contiguous, non-empty run.
    #[error("buffer range {offset}+{len} is not one physically contiguous run")]
    Discontiguous { offset: usize, len: usize },
}
