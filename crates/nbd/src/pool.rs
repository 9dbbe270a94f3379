//! Reusable payload buffers. Every READ reply and WRITE payload needs a
//! buffer of the request's size; allocating megabyte buffers per request
//! makes the allocator hand memory back to the kernel and fault it in
//! again, which costs more than the copy itself. Buffers here are kept in
//! power-of-two size classes and come back when the last [`Bytes`] made
//! from them is dropped, on whatever thread that happens.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

/// Smallest class: 4 KiB.
const MIN_SHIFT: u32 = 12;
/// Largest pooled class: 32 MiB; larger buffers are allocated and freed.
const MAX_SHIFT: u32 = 25;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;

struct Inner {
    classes: [Mutex<Vec<Vec<u8>>>; CLASSES],
    /// Bytes kept idle per class at most.
    keep_bytes: usize,
}

/// A pool of payload buffers; cheap to clone (shared).
#[derive(Clone)]
pub struct BufferPool {
    inner: Arc<Inner>,
}

impl Default for BufferPool {
    fn default() -> Self {
        Self::new(64 << 20)
    }
}

impl BufferPool {
    /// A pool keeping at most `keep_bytes` of idle buffers per size class.
    pub fn new(keep_bytes: usize) -> Self {
        BufferPool { inner: Arc::new(Inner { classes: std::array::from_fn(|_| Mutex::new(Vec::new())), keep_bytes }) }
    }

    fn class(len: usize) -> Option<usize> {
        let shift = len.max(1).next_power_of_two().trailing_zeros().max(MIN_SHIFT);
        (shift <= MAX_SHIFT).then(|| (shift - MIN_SHIFT) as usize)
    }

    /// A buffer of exactly `len` bytes. Its contents are unspecified (a
    /// reused buffer holds old data): the caller overwrites all of it.
    pub fn take(&self, len: usize) -> PoolBuf {
        let Some(class) = Self::class(len) else {
            return PoolBuf { buf: vec![0u8; len], len, home: None };
        };
        let reused = self.inner.classes[class].lock().pop();
        let buf = reused.unwrap_or_else(|| vec![0u8; 1 << (class as u32 + MIN_SHIFT)]);
        PoolBuf { buf, len, home: Some((self.inner.clone(), class)) }
    }
}

/// A buffer on loan from a [`BufferPool`].
pub struct PoolBuf {
    buf: Vec<u8>,
    len: usize,
    home: Option<(Arc<Inner>, usize)>,
}

impl PoolBuf {
    /// Turns the buffer into shared bytes; it returns to the pool when the
    /// last clone is dropped.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PoolBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl AsMut<[u8]> for PoolBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        if let Some((inner, class)) = self.home.take() {
            let size = 1usize << (class as u32 + MIN_SHIFT);
            let mut free = inner.classes[class].lock();
            if (free.len() + 1) * size <= inner.keep_bytes.max(size) {
                free.push(std::mem::take(&mut self.buf));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_has_requested_length_and_is_reused_after_last_drop() {
        let pool = BufferPool::new(1 << 20);
        let mut b = pool.take(5000);
        assert_eq!(b.as_mut().len(), 5000);
        b.as_mut().fill(7);
        let ptr = b.as_ref().as_ptr();
        let bytes = b.freeze();
        let clone = bytes.slice(10..20);
        drop(bytes);
        // Still referenced by the slice: not back in the pool yet.
        assert_ne!(pool.take(5000).as_ref().as_ptr(), ptr);
        drop(clone);
        let again = pool.take(6000);
        assert_eq!(again.as_ref().as_ptr(), ptr, "8 KiB class buffer was not reused");
        assert_eq!(again.as_ref().len(), 6000);
    }

    #[test]
    fn oversized_and_surplus_buffers_are_not_kept() {
        let pool = BufferPool::new(8192);
        let big = pool.take(64 << 20);
        assert_eq!(big.as_ref().len(), 64 << 20);
        let (a, b, c) = (pool.take(4096), pool.take(4096), pool.take(4096));
        drop((a, b, c));
        assert_eq!(pool.inner.classes[0].lock().len(), 2);
    }
}
