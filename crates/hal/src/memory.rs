//! Physical system memory and MDL-like buffers.
//!
//! Memory is shared by the CPU side and the DMA engine, on different threads, and reached through many handles
//! (buffer clones, physical addresses). Soundness rests on the frame locks of `access`: a slice over modelled memory
//! exists only inside a hold on every frame it covers (shared for `&[u8]`, exclusive for `&mut [u8]`), and a hold is
//! a value whose drop gives the frames back. Processor-side accesses that meet a conflicting hold fail with
//! `HalError::Busy`; the DMA engine waits for it, as bus cycles wait for the processor's. `docs/memory.md` says why
//! this design and not copy-only access.

use std::alloc::{self, Layout};
use std::ops::{Deref, DerefMut, Range};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::access::{Access, FrameLocks};
use crate::frames::FrameMap;
use crate::{HalError, LogicalAddr, PhysAddr, PAGE_SIZE};

const PAGE: usize = PAGE_SIZE as usize;

/// Where the virtual ranges handed to buffers start: far above any physical address,
/// so a logical address is never mistaken for a physical one.
const VA_BASE: u64 = 0x0000_7f00_0000_0000;

/// The backing store: one zeroed allocation owned through a raw pointer. Only `Hold` turns a range of it into a
/// slice, and only while it holds the range's frame locks.
struct RawMemory {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: RawMemory is a plain heap allocation that hands out no references itself; every slice over it is made by
// a `Hold`, which holds the frame locks of its range for the slice's whole life, so accesses from different threads
// to the same bytes are ordered by those locks (Acquire/Release).
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

/// Physical system memory: one contiguous region, 4 KiB frames tracked in a free bitmap,
/// each with an access lock.
pub struct SystemMemory {
    raw: RawMemory,
    size: u64,
    frames: Mutex<FrameMap>,
    locks: FrameLocks,
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

/// Something that keeps a `SystemMemory` alive and reachable: a borrow for scoped holds, a buffer for owned ones.
trait MemoryOwner {
    fn memory(&self) -> &SystemMemory;
}

impl MemoryOwner for &SystemMemory {
    fn memory(&self) -> &SystemMemory {
        self
    }
}

impl MemoryOwner for Buffer {
    fn memory(&self) -> &SystemMemory {
        &self.inner.mem
    }
}

/// A hold on the frames of one physical range `[pa, pa + len)` inside memory: the only way to a slice of it.
struct Hold<M: MemoryOwner> {
    owner: M,
    pa: u64,
    len: usize,
    access: Access,
}

impl<M: MemoryOwner> Hold<M> {
    /// Takes the range's frames; `wait` waits out conflicting holders instead of failing with `Busy`.
    fn new(owner: M, pa: u64, len: usize, access: Access, wait: bool) -> Result<Self, HalError> {
        let mem = owner.memory();
        let frames = mem.frames_of(pa, len).ok_or(HalError::BadAddress { addr: pa, len: len as u64 })?;
        if wait {
            mem.locks.acquire(frames, access);
        } else if !mem.locks.try_acquire(frames, access) {
            return Err(HalError::Busy { addr: pa, len: len as u64 });
        }
        Ok(Self { owner, pa, len, access })
    }

    fn ptr(&self) -> *mut u8 {
        // SAFETY: `new` checked pa + len <= size, so the offset stays inside the allocation.
        unsafe { self.owner.memory().raw.ptr.add(self.pa as usize) }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the range lies inside the allocation (checked in `new`), which `owner` keeps alive. `self` holds
        // the range's frames (taken in `new`, given back only in `drop`), shared or exclusive, so no holder that
        // could write them exists while the returned slice, which borrows `self`, lives.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        assert_eq!(self.access, Access::Exclusive, "a shared hold gives no mutable slice");
        // SAFETY: as in `bytes`; the hold is exclusive (asserted above), so no other holder of these frames exists,
        // and the slice borrows `self` mutably, so it is the only slice this hold gives out while it lives.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len) }
    }
}

impl<M: MemoryOwner> Drop for Hold<M> {
    fn drop(&mut self) {
        let mem = self.owner.memory();
        if let Some(frames) = mem.frames_of(self.pa, self.len) {
            mem.locks.release(frames, self.access);
        }
    }
}

impl SystemMemory {
    /// System memory of `size` bytes (a non-zero multiple of the page size), all free.
    pub fn new(size: u64) -> Result<Arc<Self>, HalError> {
        let len = usize::try_from(size).map_err(|_| HalError::InvalidMemorySize { size })?;
        if size == 0 || !size.is_multiple_of(PAGE_SIZE) {
            return Err(HalError::InvalidMemorySize { size });
        }
        let raw = RawMemory::zeroed(len).ok_or(HalError::OutOfMemory { pages: len / PAGE })?;
        let locks = FrameLocks::new(len / PAGE).ok_or(HalError::OutOfMemory { pages: len / PAGE })?;
        Ok(Arc::new(Self {
            raw,
            size,
            frames: Mutex::new(FrameMap::new(len / PAGE)),
            locks,
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

    /// The frames `[pa, pa + len)` lies in (empty for `len == 0`), or None if the range leaves memory.
    fn frames_of(&self, pa: u64, len: usize) -> Option<Range<usize>> {
        let end = pa.checked_add(len as u64)?;
        if end > self.size {
            return None;
        }
        if len == 0 {
            return Some(0..0);
        }
        Some((pa / PAGE_SIZE) as usize..end.div_ceil(PAGE_SIZE) as usize)
    }

    /// Copies `out.len()` bytes at `pa` out of memory; `Busy` while another party holds any of them for writing.
    pub fn read_phys(&self, pa: PhysAddr, out: &mut [u8]) -> Result<(), HalError> {
        let hold = Hold::new(self, pa.0, out.len(), Access::Shared, false)?;
        out.copy_from_slice(hold.bytes());
        Ok(())
    }

    /// Copies `data` into memory at `pa`; `Busy` while another party holds any of those bytes.
    pub fn write_phys(&self, pa: PhysAddr, data: &[u8]) -> Result<(), HalError> {
        let mut hold = Hold::new(self, pa.0, data.len(), Access::Exclusive, false)?;
        hold.bytes_mut().copy_from_slice(data);
        Ok(())
    }

    /// The DMA engine's access to memory → device cycles: `f` sees `[pa, pa + len)` once no processor access to it
    /// is under way (it waits for one to end). None if the range leaves memory.
    pub(crate) fn dma_from_memory<R>(&self, pa: u64, len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let hold = Hold::new(self, pa, len, Access::Shared, true).ok()?;
        Some(f(hold.bytes()))
    }

    /// The same for device → memory cycles, with the range writable.
    pub(crate) fn dma_to_memory<R>(&self, pa: u64, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        let mut hold = Hold::new(self, pa, len, Access::Exclusive, true).ok()?;
        Some(f(hold.bytes_mut()))
    }

    fn release(&self, pages: &[PhysAddr]) {
        let mut map = self.frames.lock();
        for pa in pages {
            map.release((pa.0 / PAGE_SIZE) as usize);
        }
    }
}

/// An MDL: a logical (virtual) address range and the physical pages behind it. Cheap to
/// clone; the pages return to the allocator when the last clone (or run borrow) drops.
///
/// A buffer's bytes are reached by copies (`read`, `write`) or inside a hold on their frames (`with_slices`,
/// `with_slices_mut`, `borrow_run`, `borrow_run_mut`). A slice cannot outlive its hold:
///
/// ```compile_fail,E0521
/// # let mem = hal::SystemMemory::new(1 << 20).unwrap();
/// # let buf = mem.alloc(4096, hal::Placement::Any).unwrap();
/// let mut kept: &mut [u8] = &mut [];
/// buf.with_slices_mut(0, 4096, |_, s| kept = s).unwrap(); // the slice may not leave the closure
/// ```
///
/// ```compile_fail,E0505
/// # let mem = hal::SystemMemory::new(1 << 20).unwrap();
/// # let buf = mem.alloc(4096, hal::Placement::Any).unwrap();
/// let mut run = buf.borrow_run_mut(0, 4096).unwrap();
/// let s: &mut [u8] = &mut run;
/// drop(run); // giving the frames back ends the slice
/// s[0] = 1;
/// ```
///
/// and while one lives, no other handle reaches its bytes:
///
/// ```
/// # let mem = hal::SystemMemory::new(1 << 20).unwrap();
/// # let buf = mem.alloc(4096, hal::Placement::Any).unwrap();
/// let other = buf.clone();
/// let mut run = buf.borrow_run_mut(0, 4096)?;
/// run[0] = 1;
/// assert!(matches!(other.write(0, &[2]), Err(hal::HalError::Busy { .. })));
/// assert!(matches!(mem.read_phys(buf.phys_addr(0), &mut [0]), Err(hal::HalError::Busy { .. })));
/// drop(run);
/// other.write(0, &[2])?;
/// # Ok::<(), hal::HalError>(())
/// ```
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

    /// Holds every run of [offset, offset+len) (all or none), with each run's buffer offset.
    fn hold_runs(
        &self,
        offset: usize,
        len: usize,
        access: Access,
    ) -> Result<Vec<(usize, Hold<&SystemMemory>)>, HalError> {
        self.check_range(offset, len)?;
        let mem: &SystemMemory = &self.inner.mem;
        let mut at = offset;
        let mut holds = Vec::new();
        for (pa, n) in self.phys_runs(offset, len) {
            // A failure drops the holds taken so far: nothing stays held.
            holds.push((at, Hold::new(mem, pa.0, n, access, false)?));
            at += n;
        }
        Ok(holds)
    }

    /// CPU read of `out.len()` bytes at `offset`; `Busy` while another party holds any of them for writing.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), HalError> {
        self.with_slices(offset, out.len(), |at, s| out[at - offset..][..s.len()].copy_from_slice(s))
    }

    /// CPU write of `data` at `offset`; `Busy` (and nothing written) while another party holds any of those bytes.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), HalError> {
        self.with_slices_mut(offset, data.len(), |at, s| s.copy_from_slice(&data[at - offset..][..s.len()]))
    }

    /// Visits [offset, offset+len) run by run without copying, holding every run for reading until `f` has seen
    /// the last; `Busy` (and `f` not called) while another party holds any of the bytes for writing.
    pub fn with_slices(&self, offset: usize, len: usize, mut f: impl FnMut(usize, &[u8])) -> Result<(), HalError> {
        for (at, hold) in &self.hold_runs(offset, len, Access::Shared)? {
            f(*at, hold.bytes());
        }
        Ok(())
    }

    /// Visits [offset, offset+len) run by run, mutably, without copying, holding every run exclusively until `f`
    /// has seen the last; `Busy` (and `f` not called) while another party holds any of the bytes.
    pub fn with_slices_mut(
        &self,
        offset: usize,
        len: usize,
        mut f: impl FnMut(usize, &mut [u8]),
    ) -> Result<(), HalError> {
        for (at, hold) in &mut self.hold_runs(offset, len, Access::Exclusive)? {
            f(*at, hold.bytes_mut());
        }
        Ok(())
    }

    /// Physical start of [offset, offset+len) when it is one non-empty run, else `Discontiguous`.
    fn one_run(&self, offset: usize, len: usize) -> Result<u64, HalError> {
        self.check_range(offset, len)?;
        self.contiguous_run(offset, len).map(|pa| pa.0).ok_or(HalError::Discontiguous { offset, len })
    }

    /// [offset, offset+len), one physical run, held for reading as long as the returned value lives (it keeps the
    /// buffer alive): a zero-copy view to hand to I/O. `Discontiguous` when the range is not one non-empty run;
    /// `Busy` while another party holds any of its bytes for writing.
    pub fn borrow_run(&self, offset: usize, len: usize) -> Result<RunRef, HalError> {
        let pa = self.one_run(offset, len)?;
        Ok(RunRef(Hold::new(self.clone(), pa, len, Access::Shared, false)?))
    }

    /// The same, held exclusively and writable: a destination to receive I/O into in place. While it lives, every
    /// other access to these bytes — through any clone, a physical address or the DMA engine — fails or waits.
    pub fn borrow_run_mut(&self, offset: usize, len: usize) -> Result<RunMut, HalError> {
        let pa = self.one_run(offset, len)?;
        Ok(RunMut(Hold::new(self.clone(), pa, len, Access::Exclusive, false)?))
    }

    pub fn memory(&self) -> &Arc<SystemMemory> {
        &self.inner.mem
    }
}

/// One physical run of a buffer, held for reading (`Buffer::borrow_run`); dereferences to its bytes.
pub struct RunRef(Hold<Buffer>);

impl RunRef {
    /// The buffer the run belongs to.
    pub fn buffer(&self) -> &Buffer {
        &self.0.owner
    }
}

impl Deref for RunRef {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.bytes()
    }
}

impl AsRef<[u8]> for RunRef {
    fn as_ref(&self) -> &[u8] {
        self.0.bytes()
    }
}

impl std::fmt::Debug for RunRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunRef").field("pa", &PhysAddr(self.0.pa)).field("len", &self.0.len).finish()
    }
}

/// One physical run of a buffer, held exclusively (`Buffer::borrow_run_mut`); dereferences to its bytes, mutably.
pub struct RunMut(Hold<Buffer>);

impl RunMut {
    /// The buffer the run belongs to.
    pub fn buffer(&self) -> &Buffer {
        &self.0.owner
    }

    /// Gives the run's frames back and returns the buffer, ready to be handed to a transfer.
    pub fn into_buffer(self) -> Buffer {
        self.0.owner.clone()
    }
}

impl Deref for RunMut {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.bytes()
    }
}

impl DerefMut for RunMut {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.0.bytes_mut()
    }
}

impl AsRef<[u8]> for RunMut {
    fn as_ref(&self) -> &[u8] {
        self.0.bytes()
    }
}

impl AsMut<[u8]> for RunMut {
    fn as_mut(&mut self) -> &mut [u8] {
        self.0.bytes_mut()
    }
}

impl std::fmt::Debug for RunMut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunMut").field("pa", &PhysAddr(self.0.pa)).field("len", &self.0.len).finish()
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
        // Far more than the host has: an error, not an abort. (Miri stops at such an allocation instead.)
        #[cfg(not(miri))]
        assert!(matches!(SystemMemory::new(1 << 60), Err(HalError::OutOfMemory { .. })));
        let m = SystemMemory::new(16 * PAGE_SIZE).unwrap();
        assert_eq!(m.alloc(17 * PAGE, Placement::Any).err(), Some(HalError::OutOfMemory { pages: 17 }));
        assert!(m.alloc(PAGE, Placement::Above16M).is_err());
        assert!(m.read_phys(PhysAddr(16 * PAGE_SIZE - 1), &mut [0; 2]).is_err());
    }
}
