//! Physical system memory and MDL-like buffers.
//!
//! Memory is shared by the CPU side and the DMA engine, on different threads. As with
//! real memory, the rule that keeps it sound is ownership by protocol: a buffer is
//! touched by one party at a time (its owner, or the DMA engine while a request is out).
//! Accesses go through raw pointers into one allocation and copy whole runs with
//! `ptr::copy_nonoverlapping`.

use std::alloc::{self, Layout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::frames::FrameMap;
use crate::{HalError, LogicalAddr, PhysAddr, PAGE_SIZE};

const PAGE: usize = PAGE_SIZE as usize;

/// Where the virtual ranges handed to buffers start: far above any physical address,
/// so a logical address is never mistaken for a physical one.
const VA_BASE: u64 = 0x0000_7f00_0000_0000;

/// The backing store: one zeroed allocation owned through a raw pointer so that both
/// the CPU side and the DMA engine can reach it from `&SystemMemory`.
struct RawMemory {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: RawMemory is a plain heap allocation; concurrent access to the same bytes is
// excluded by the ownership protocol described at the top of this module.
unsafe impl Send for RawMemory {}
// SAFETY: as above.
unsafe impl Sync for RawMemory {}

impl RawMemory {
    /// A zeroed allocation of `len` bytes, or None when the system cannot provide it.
    /// With the allocator's natural alignment `alloc_zeroed` is calloc, which maps fresh
    /// zero pages for a large block: untouched memory costs nothing. (A page alignment
    /// would make it allocate and then clear every byte.)
    fn zeroed(len: usize) -> Option<Self> {
        let layout = Layout::from_size_align(len, 8).ok()?;
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: the layout has a non-zero size (checked above).
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        (!ptr.is_null()).then_some(Self { ptr, layout })
    }
}

impl Drop for RawMemory {
    fn drop(&mut self) {
        // SAFETY: ptr was returned by alloc_zeroed with this layout and is freed once.
        unsafe { alloc::dealloc(self.ptr, self.layout) }
    }
}

/// Physical system memory: one contiguous region, 4 KiB frames tracked in a free bitmap.
pub struct SystemMemory {
    raw: RawMemory,
    size: u64,
    frames: Mutex<FrameMap>,
    next_va: AtomicU64,
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
    /// One physical run aligned to `align` bytes (a power of two; 0 = page).
    Contiguous { below_16m: bool, align: u64 },
    /// Every page a pseudo-random free frame, never adjacent to the previous page's frame:
    /// physically discontiguous at every page boundary.
    Scattered { seed: u64 },
    /// Exactly these frames, in buffer order.
    Frames(Vec<PhysAddr>),
}

impl SystemMemory {
    /// System memory of `size` bytes (a non-zero multiple of the page size), all free.
    pub fn new(size: u64) -> Result<Arc<Self>, HalError> {
        let len = usize::try_from(size).map_err(|_| HalError::InvalidMemorySize { size })?;
        if size == 0 || !size.is_multiple_of(PAGE_SIZE) {
            return Err(HalError::InvalidMemorySize { size });
        }
        let raw = RawMemory::zeroed(len).ok_or(HalError::OutOfMemory { pages: len / PAGE })?;
        Ok(Arc::new(Self {
            raw,
            size,
            frames: Mutex::new(FrameMap::new(len / PAGE)),
            next_va: AtomicU64::new(VA_BASE),
        }))
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn free_bytes(&self) -> u64 {
        self.frames.lock().free_frames() as u64 * PAGE_SIZE
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
        if page_offset >= PAGE {
            return Err(HalError::InvalidPlacement { reason: "page offset must be below the page size" });
        }
        let span = len.checked_add(page_offset).ok_or(HalError::OutOfMemory { pages: usize::MAX })?;
        let n = span.div_ceil(PAGE);
        let frames = self.frames.lock().allocate(n, &placement)?;
        let pages: Vec<PhysAddr> = frames.iter().map(|&f| PhysAddr(f as u64 * PAGE_SIZE)).collect();
        // A guard page between virtual ranges keeps every buffer's range unique and apart.
        let va_pages = n as u64 + 1;
        let base = self.next_va.fetch_add(va_pages * PAGE_SIZE, Ordering::Relaxed);
        Ok(Buffer {
            inner: Arc::new(BufferInner {
                mem: Arc::clone(self),
                va: LogicalAddr(base + page_offset as u64),
                len,
                offset: page_offset,
                pages,
            }),
        })
    }

    /// Pointer to `len` bytes at `pa`, or None if the range leaves memory.
    pub(crate) fn phys_ptr(&self, pa: u64, len: usize) -> Option<*mut u8> {
        let end = pa.checked_add(len as u64)?;
        if end > self.size {
            return None;
        }
        // SAFETY: pa + len <= size, so the offset stays inside the allocation.
        Some(unsafe { self.raw.ptr.add(pa as usize) })
    }

    pub fn read_phys(&self, pa: PhysAddr, out: &mut [u8]) -> Result<(), HalError> {
        let src = self.phys_ptr(pa.0, out.len()).ok_or(HalError::BadAddress { addr: pa.0, len: out.len() as u64 })?;
        // SAFETY: src is valid for out.len() bytes (checked above); out is a distinct
        // Rust slice, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    pub fn write_phys(&self, pa: PhysAddr, data: &[u8]) -> Result<(), HalError> {
        let dst = self.phys_ptr(pa.0, data.len()).ok_or(HalError::BadAddress { addr: pa.0, len: data.len() as u64 })?;
        // SAFETY: dst is valid for data.len() bytes (checked above) and is not data.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }

    fn release(&self, pages: &[PhysAddr]) {
        let mut map = self.frames.lock();
        for pa in pages {
            map.release((pa.0 / PAGE_SIZE) as usize);
        }
    }
}

/// An MDL: a logical (virtual) address range and the physical pages behind it. Cheap to
/// clone; the pages return to the allocator when the last clone drops.
#[derive(Clone)]
pub struct Buffer {
    inner: Arc<BufferInner>,
}

struct BufferInner {
    mem: Arc<SystemMemory>,
    va: LogicalAddr,
    len: usize,
    /// Byte offset of `va` inside the first page.
    offset: usize,
    pages: Vec<PhysAddr>,
}

impl Drop for BufferInner {
    fn drop(&mut self) {
        self.mem.release(&self.pages);
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("va", &self.inner.va)
            .field("len", &self.inner.len)
            .field("pages", &self.inner.pages.len())
            .finish()
    }
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

    /// `va`'s offset inside its first page.
    pub fn byte_offset(&self) -> usize {
        self.inner.offset
    }

    pub fn pages(&self) -> &[PhysAddr] {
        &self.inner.pages
    }

    /// The physical address of byte `offset`, or None past the buffer's pages.
    pub fn try_phys_addr(&self, offset: usize) -> Option<PhysAddr> {
        let at = offset.checked_add(self.inner.offset)?;
        let page = self.inner.pages.get(at / PAGE)?;
        Some(PhysAddr(page.0 + (at % PAGE) as u64))
    }

    /// The physical address of byte `offset`; `PhysAddr(u64::MAX)` past the buffer's pages.
    pub fn phys_addr(&self, offset: usize) -> PhysAddr {
        self.try_phys_addr(offset).unwrap_or(PhysAddr(u64::MAX))
    }

    /// Maximal physically contiguous runs covering [offset, offset+len), clipped to the buffer.
    pub fn phys_runs(&self, offset: usize, len: usize) -> Vec<(PhysAddr, usize)> {
        let mut runs: Vec<(PhysAddr, usize)> = Vec::new();
        self.for_each_page_piece(offset, len, |_, pa, n| match runs.last_mut() {
            Some((start, run)) if start.0 + *run as u64 == pa => *run += n,
            _ => runs.push((PhysAddr(pa), n)),
        });
        runs
    }

    /// The physical start of [offset, offset+len) if that range is one physically
    /// contiguous run inside the buffer (no allocation: used on every map).
    pub fn contiguous_run(&self, offset: usize, len: usize) -> Option<PhysAddr> {
        let end = offset.checked_add(len)?;
        if len == 0 || end > self.inner.len {
            return None;
        }
        let first = self.inner.offset + offset;
        let last = self.inner.offset + end - 1;
        let pages = self.inner.pages.get(first / PAGE..=last / PAGE)?;
        let start = pages[0].0;
        pages
            .iter()
            .enumerate()
            .all(|(i, p)| p.0 == start + (i * PAGE) as u64)
            .then_some(PhysAddr(start + (first % PAGE) as u64))
    }

    /// Calls `f(buffer_offset, phys, len)` for each page-bounded piece of the clipped range.
    fn for_each_page_piece(&self, offset: usize, len: usize, mut f: impl FnMut(usize, u64, usize)) {
        let end = offset.saturating_add(len).min(self.inner.len);
        let mut at = offset;
        while at < end {
            let abs = at + self.inner.offset;
            let in_page = abs % PAGE;
            let n = (PAGE - in_page).min(end - at);
            let Some(page) = self.inner.pages.get(abs / PAGE) else {
                return;
            };
            f(at, page.0 + in_page as u64, n);
            at += n;
        }
    }

    fn check_range(&self, offset: usize, len: usize) -> Result<(), HalError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.inner.len => Ok(()),
            _ => Err(HalError::OutOfBuffer { offset, len, buffer_len: self.inner.len }),
        }
    }

    /// Visits the range's physically contiguous runs as raw pointers.
    fn for_each_run(
        &self,
        offset: usize,
        len: usize,
        mut f: impl FnMut(usize, *mut u8, usize),
    ) -> Result<(), HalError> {
        self.check_range(offset, len)?;
        let mut at = offset;
        for (pa, n) in self.phys_runs(offset, len) {
            // Every page of a live buffer lies inside memory (the allocator hands out
            // only existing frames), so this lookup cannot fail for a checked range.
            let ptr = self.inner.mem.phys_ptr(pa.0, n).ok_or(HalError::BadAddress { addr: pa.0, len: n as u64 })?;
            f(at, ptr, n);
            at += n;
        }
        Ok(())
    }

    /// CPU read of `out.len()` bytes at `offset`.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), HalError> {
        let dst = out.as_mut_ptr();
        self.for_each_run(offset, out.len(), |at, src, n| {
            // SAFETY: src is valid for n bytes of system memory; dst + (at - offset) .. + n
            // lies inside `out`; the two never overlap.
            unsafe { std::ptr::copy_nonoverlapping(src, dst.add(at - offset), n) }
        })
    }

    /// CPU write of `data` at `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), HalError> {
        let src = data.as_ptr();
        self.for_each_run(offset, data.len(), |at, dst, n| {
            // SAFETY: as in `read`, with the roles swapped.
            unsafe { std::ptr::copy_nonoverlapping(src.add(at - offset), dst, n) }
        })
    }

    /// Visits [offset, offset+len) run by run without copying.
    pub fn with_slices(&self, offset: usize, len: usize, mut f: impl FnMut(usize, &[u8])) -> Result<(), HalError> {
        self.for_each_run(offset, len, |at, ptr, n| {
            // SAFETY: ptr is valid for n bytes; the buffer's owner is the only party
            // touching these pages now (module invariant).
            f(at, unsafe { std::slice::from_raw_parts(ptr, n) })
        })
    }

    /// Visits [offset, offset+len) run by run, mutably, without copying.
    pub fn with_slices_mut(
        &self,
        offset: usize,
        len: usize,
        mut f: impl FnMut(usize, &mut [u8]),
    ) -> Result<(), HalError> {
        self.for_each_run(offset, len, |at, ptr, n| {
            // SAFETY: as in `with_slices`; the runs of one buffer never overlap, so no
            // two live slices alias.
            f(at, unsafe { std::slice::from_raw_parts_mut(ptr, n) })
        })
    }

    pub fn memory(&self) -> &Arc<SystemMemory> {
        &self.inner.mem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> Arc<SystemMemory> {
        SystemMemory::new(32 << 20).unwrap()
    }

    #[test]
    fn placement_below_and_above_16m() {
        let m = mem();
        let lo = m.alloc(3 * PAGE, Placement::Below16M).unwrap();
        assert!(lo.pages().iter().all(|p| p.0 < 16 << 20));
        let hi = m.alloc(3 * PAGE, Placement::Above16M).unwrap();
        assert!(hi.pages().iter().all(|p| p.0 >= 16 << 20));
        assert_eq!(hi.phys_runs(0, hi.len()).len(), 1);
    }

    #[test]
    fn contiguous_alignment_is_honoured() {
        let m = mem();
        let _pad = m.alloc(PAGE, Placement::Any).unwrap();
        let b = m.alloc(64 << 10, Placement::Contiguous { below_16m: true, align: 128 << 10 }).unwrap();
        assert_eq!(b.pages()[0].0 % (128 << 10), 0);
        assert_eq!(b.phys_runs(0, b.len()), vec![(b.pages()[0], 64 << 10)]);
    }

    #[test]
    fn scattered_buffer_breaks_at_every_page() {
        let m = mem();
        let b = m.alloc_at(5 * PAGE, 100, Placement::Scattered { seed: 3 }).unwrap();
        assert_eq!(b.pages().len(), 6);
        let runs = b.phys_runs(0, b.len());
        assert_eq!(runs.len(), 6);
        assert_eq!(runs[0], (PhysAddr(b.pages()[0].0 + 100), PAGE - 100));
        assert_eq!(runs.iter().map(|r| r.1).sum::<usize>(), 5 * PAGE);
    }

    #[test]
    fn frames_return_to_allocator_on_last_drop() {
        let m = mem();
        let before = m.free_bytes();
        let b = m.alloc(10 * PAGE, Placement::Scattered { seed: 1 }).unwrap();
        let c = b.clone();
        drop(b);
        assert_eq!(m.free_bytes(), before - 10 * PAGE_SIZE);
        drop(c);
        assert_eq!(m.free_bytes(), before);
    }

    #[test]
    fn exact_frames_and_conflicts() {
        let m = mem();
        let f = vec![PhysAddr(0x5000), PhysAddr(0x2000)];
        let b = m.alloc(2 * PAGE, Placement::Frames(f.clone())).unwrap();
        assert_eq!(b.pages(), &f[..]);
        assert_eq!(b.phys_addr(PAGE + 7), PhysAddr(0x2007));
        assert!(matches!(
            m.alloc(PAGE, Placement::Frames(vec![PhysAddr(0x5000)])),
            Err(HalError::InvalidPlacement { .. })
        ));
        assert!(matches!(m.alloc(PAGE, Placement::Frames(vec![PhysAddr(0x5001)])), Err(HalError::Misaligned { .. })));
    }

    #[test]
    fn read_write_cross_pages_and_reach_physical_memory() {
        let m = mem();
        let b = m.alloc_at(3 * PAGE, 4000, Placement::Scattered { seed: 9 }).unwrap();
        let data: Vec<u8> = (0..3 * PAGE).map(|i| (i * 7 % 251) as u8).collect();
        b.write(0, &data).unwrap();
        let mut back = vec![0; data.len()];
        b.read(0, &mut back).unwrap();
        assert_eq!(back, data);
        let mut one = [0u8; 1];
        m.read_phys(b.phys_addr(PAGE), &mut one).unwrap();
        assert_eq!(one[0], data[PAGE]);
        assert!(matches!(b.read(1, &mut back), Err(HalError::OutOfBuffer { .. })));
    }

    #[test]
    fn with_slices_visits_runs_in_order() {
        let m = mem();
        let b = m.alloc(4 * PAGE, Placement::Scattered { seed: 5 }).unwrap();
        b.with_slices_mut(10, 3 * PAGE, |at, s| {
            for (i, x) in s.iter_mut().enumerate() {
                *x = ((at + i) % 256) as u8;
            }
        })
        .unwrap();
        let mut seen = Vec::new();
        b.with_slices(10, 3 * PAGE, |at, s| seen.push((at, s.len(), s[0]))).unwrap();
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[0], (10, PAGE - 10, 10));
        assert_eq!(seen[1].0, PAGE);
    }

    #[test]
    fn contiguous_run_matches_phys_runs() {
        let m = mem();
        let f = [0x9000u64, 0xA000, 0xC000].map(PhysAddr).to_vec();
        let b = m.alloc_at(2 * PAGE + 50, 100, Placement::Frames(f)).unwrap();
        assert_eq!(b.contiguous_run(0, PAGE), Some(PhysAddr(0x9064)));
        assert_eq!(b.contiguous_run(PAGE, PAGE), None);
        assert_eq!(b.phys_runs(PAGE, PAGE).len(), 2);
        assert_eq!(b.contiguous_run(2 * PAGE - 100, 50), Some(PhysAddr(0xC000)));
        assert_eq!(b.contiguous_run(0, 0), None);
        assert_eq!(b.contiguous_run(1, 2 * PAGE + 50), None);
    }

    #[test]
    fn virtual_ranges_are_unique() {
        let m = mem();
        let a = m.alloc(PAGE, Placement::Any).unwrap();
        let b = m.alloc(PAGE, Placement::Any).unwrap();
        assert!(b.va().0 >= a.va().0 + PAGE_SIZE || a.va().0 >= b.va().0 + PAGE_SIZE);
    }

    #[test]
    fn bad_sizes_and_out_of_memory() {
        assert!(SystemMemory::new(0).is_err());
        assert!(SystemMemory::new(4097).is_err());
        // Far more than the host has: an error, not an abort.
        assert!(matches!(SystemMemory::new(1 << 60), Err(HalError::OutOfMemory { .. })));
        let m = SystemMemory::new(16 * PAGE_SIZE).unwrap();
        assert_eq!(m.alloc(17 * PAGE, Placement::Any).err(), Some(HalError::OutOfMemory { pages: 17 }));
        assert!(m.alloc(PAGE, Placement::Above16M).is_err());
        assert!(m.read_phys(PhysAddr(16 * PAGE_SIZE - 1), &mut [0; 2]).is_err());
    }
}
