//! Physical system memory and MDL-like buffers.

use std::sync::Arc;

use crate::{HalError, LogicalAddr, PhysAddr};

/// Physical system memory: one contiguous region, 4 KiB frames tracked in a free bitmap.
pub struct SystemMemory {
    size: u64,
}

/// Where an allocation's physical frames go.
#[derive(Clone, Debug)]
pub enum Placement {
    /// First fit, physically contiguous when it can be.
    Any,
    /// Every page below 16 MiB.
    Below16M,
    /// Every page at or above 16 MiB (out of ISA DMA reach).
    Above16M,
    /// One physical run aligned to `align` bytes.
    Contiguous { below_16m: bool, align: u64 },
    /// Every page a pseudo-random free frame: physically discontiguous.
    Scattered { seed: u64 },
    /// Exactly these frames.
    Frames(Vec<PhysAddr>),
}

impl SystemMemory {
    pub fn new(size: u64) -> Result<Arc<Self>, HalError> {
        let _ = size;
        todo!()
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn free_bytes(&self) -> u64 {
        todo!()
    }
    pub fn alloc(self: &Arc<Self>, len: usize, placement: Placement) -> Result<Buffer, HalError> {
        self.alloc_at(len, 0, placement)
    }
    /// Same, with the buffer starting `page_offset` bytes into its first page (0..4096).
    pub fn alloc_at(
        self: &Arc<Self>,
        len: usize,
        page_offset: usize,
        placement: Placement,
    ) -> Result<Buffer, HalError> {
        let _ = (len, page_offset, placement);
        todo!()
    }
    pub fn read_phys(&self, pa: PhysAddr, out: &mut [u8]) -> Result<(), HalError> {
        let _ = (pa, out);
        todo!()
    }
    pub fn write_phys(&self, pa: PhysAddr, data: &[u8]) -> Result<(), HalError> {
        let _ = (pa, data);
        todo!()
    }
}

/// An MDL: a logical (virtual) address range and the physical pages behind it.
#[derive(Clone)]
pub struct Buffer {
    inner: Arc<BufferInner>,
}

struct BufferInner {
    mem: Arc<SystemMemory>,
    va: LogicalAddr,
    len: usize,
    pages: Vec<PhysAddr>,
}

impl Buffer {
    pub fn va(&self) -> LogicalAddr {
        self.inner.va
    }
    pub fn len(&self) -> usize {
        self.inner.len
    }
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }
    pub fn byte_offset(&self) -> usize {
        todo!()
    }
    pub fn pages(&self) -> &[PhysAddr] {
        &self.inner.pages
    }
    pub fn phys_addr(&self, offset: usize) -> PhysAddr {
        let _ = offset;
        todo!()
    }
    /// Maximal physically contiguous runs covering [offset, offset+len).
    pub fn phys_runs(&self, offset: usize, len: usize) -> Vec<(PhysAddr, usize)> {
        let _ = (offset, len);
        todo!()
    }
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), HalError> {
        let _ = (offset, out);
        todo!()
    }
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), HalError> {
        let _ = (offset, data);
        todo!()
    }
    pub fn with_slices(
        &self,
        offset: usize,
        len: usize,
        f: impl FnMut(usize, &[u8]),
    ) -> Result<(), HalError> {
        let _ = (offset, len, f);
        todo!()
    }
    pub fn with_slices_mut(
        &self,
        offset: usize,
        len: usize,
        f: impl FnMut(usize, &mut [u8]),
    ) -> Result<(), HalError> {
        let _ = (offset, len, f);
        todo!()
    }
    pub fn memory(&self) -> &Arc<SystemMemory> {
        &self.inner.mem
    }
}
