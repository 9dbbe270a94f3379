//! A sparse in-memory [`BlockDevice`]: storage is allocated in fixed chunks
//! on first write, and block status reports unallocated chunks as holes
//! that read as zeroes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;

use crate::device::{BlockDevice, Capabilities, DeviceError, Extent};
use crate::pool::BufferPool;

/// Allocation granularity unless told otherwise.
pub const DEFAULT_CHUNK: u64 = 64 * 1024;

/// An in-memory, sparse block device.
pub struct MemDevice {
    size: u64,
    chunk: u64,
    chunks: RwLock<HashMap<u64, Box<[u8]>>>,
    caps: Capabilities,
    flushes: AtomicU64,
    pool: BufferPool,
}

impl MemDevice {
    /// A device of `size` bytes with 64 KiB allocation chunks and every
    /// optional feature on.
    pub fn new(size: u64) -> Self {
        Self::with_chunk_size(size, DEFAULT_CHUNK)
    }

    /// A device whose allocation granularity is `chunk` bytes (rounded up
    /// to a power of two, at least 512).
    pub fn with_chunk_size(size: u64, chunk: u64) -> Self {
        MemDevice {
            size,
            chunk: chunk.clamp(512, 1 << 30).next_power_of_two(),
            chunks: RwLock::new(HashMap::new()),
            caps: Capabilities {
                read_only: false,
                flush: true,
                fua: true,
                trim: true,
                write_zeroes: true,
                fast_zero: true,
                block_status: true,
                multi_conn: true,
                min_block: 1,
                preferred_block: 4096,
                max_block: u32::MAX,
            },
            flushes: AtomicU64::new(0),
            pool: BufferPool::default(),
        }
    }

    /// Replaces the advertised capabilities (to test how the server adapts).
    pub fn with_capabilities(mut self, caps: Capabilities) -> Self {
        self.caps = caps;
        self
    }

    /// How many flushes the device has seen.
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Bytes of backing store allocated.
    pub fn allocated_bytes(&self) -> u64 {
        self.chunks.read().len() as u64 * self.chunk
    }

    /// Copies the contents at `offset` into `buf` (holes read as zeroes).
    pub fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.check(offset, buf.len() as u64)?;
        let map = self.chunks.read();
        let mut done = 0usize;
        for (idx, within, n) in self.pieces(offset, buf.len() as u64) {
            let dst = &mut buf[done..done + n];
            match map.get(&idx) {
                Some(c) => dst.copy_from_slice(&c[within..within + n]),
                None => dst.fill(0),
            }
            done += n;
        }
        Ok(())
    }

    /// Writes `data` at `offset`, allocating chunks as needed.
    pub fn write_from(&self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        self.check(offset, data.len() as u64)?;
        let mut map = self.chunks.write();
        let mut done = 0usize;
        for (idx, within, n) in self.pieces(offset, data.len() as u64) {
            let c = map.entry(idx).or_insert_with(|| self.new_chunk());
            c[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }

    fn new_chunk(&self) -> Box<[u8]> {
        vec![0u8; self.chunk as usize].into_boxed_slice()
    }

    fn check(&self, offset: u64, len: u64) -> Result<(), DeviceError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(DeviceError::Invalid),
        }
    }

    /// Splits a checked range into (chunk index, offset in chunk, length).
    fn pieces(&self, offset: u64, len: u64) -> impl Iterator<Item = (u64, usize, usize)> + '_ {
        let end = offset + len;
        let mut pos = offset;
        std::iter::from_fn(move || {
            if pos >= end {
                return None;
            }
            let idx = pos / self.chunk;
            let within = pos % self.chunk;
            let n = (self.chunk - within).min(end - pos);
            pos += n;
            Some((idx, within as usize, n as usize))
        })
    }

    /// Zeroes a range; whole chunks are deallocated unless `keep` is set.
    fn zero_range(&self, offset: u64, len: u64, keep: bool) -> Result<(), DeviceError> {
        self.check(offset, len)?;
        let mut map = self.chunks.write();
        for (idx, within, n) in self.pieces(offset, len) {
            let whole = within == 0 && n as u64 == self.chunk;
            if whole && !keep {
                map.remove(&idx);
            } else if keep {
                let c = map.entry(idx).or_insert_with(|| self.new_chunk());
                c[within..within + n].fill(0);
            } else if let Some(c) = map.get_mut(&idx) {
                c[within..within + n].fill(0);
            }
        }
        Ok(())
    }
}

impl BlockDevice for MemDevice {
    fn size(&self) -> u64 {
        self.size
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, DeviceError> {
        let mut buf = self.pool.take(len as usize);
        self.read_into(offset, buf.as_mut())?;
        Ok(buf.freeze())
    }

    async fn write(&self, offset: u64, data: Bytes, _fua: bool) -> Result<(), DeviceError> {
        if self.caps.read_only {
            return Err(DeviceError::ReadOnly);
        }
        self.write_from(offset, &data)
    }

    async fn flush(&self) -> Result<(), DeviceError> {
        // Memory is as persistent as this device gets; count the call so
        // tests can see that flushes reach the device.
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn trim(&self, offset: u64, len: u64, _fua: bool) -> Result<(), DeviceError> {
        if self.caps.read_only {
            return Err(DeviceError::ReadOnly);
        }
        self.zero_range(offset, len, false)
    }

    async fn write_zeroes(&self, offset: u64, len: u64, no_hole: bool, _fua: bool) -> Result<(), DeviceError> {
        if self.caps.read_only {
            return Err(DeviceError::ReadOnly);
        }
        self.zero_range(offset, len, no_hole)
    }

    async fn block_status(&self, offset: u64, len: u32) -> Result<Vec<Extent>, DeviceError> {
        self.check(offset, u64::from(len))?;
        let map = self.chunks.read();
        let mut out: Vec<Extent> = Vec::new();
        for (idx, _, n) in self.pieces(offset, u64::from(len)) {
            let hole = !map.contains_key(&idx);
            match out.last_mut() {
                Some(e) if e.hole == hole => e.length += n as u64,
                _ => out.push(Extent { length: n as u64, hole, zero: hole }),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unwritten_space_reads_zero_and_is_a_hole() {
        let d = MemDevice::with_chunk_size(1 << 20, 4096);
        assert_eq!(&d.read(100, 10).await.unwrap()[..], &[0u8; 10]);
        let st = d.block_status(0, 1 << 20).await.unwrap();
        assert_eq!(st, vec![Extent { length: 1 << 20, hole: true, zero: true }]);
        assert_eq!(d.allocated_bytes(), 0);
    }

    #[tokio::test]
    async fn write_crossing_chunks_reads_back_and_allocates_both() {
        let d = MemDevice::with_chunk_size(1 << 20, 4096);
        let data: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        d.write(4000, Bytes::from(data.clone()), false).await.unwrap();
        assert_eq!(&d.read(4000, 200).await.unwrap()[..], &data[..]);
        assert_eq!(d.allocated_bytes(), 8192);
        let st = d.block_status(0, 16384).await.unwrap();
        assert_eq!(
            st,
            vec![Extent { length: 8192, hole: false, zero: false }, Extent { length: 8192, hole: true, zero: true }]
        );
    }

    #[tokio::test]
    async fn write_zeroes_punches_whole_chunks_unless_no_hole() {
        let d = MemDevice::with_chunk_size(1 << 20, 4096);
        d.write(0, Bytes::from(vec![1u8; 16384]), false).await.unwrap();
        d.write_zeroes(1000, 10000, false, false).await.unwrap();
        // Chunk 1 (4096..8192) is wholly covered and freed; 0 and 2 keep
        // their storage with the covered parts zeroed.
        assert_eq!(d.allocated_bytes(), 3 * 4096);
        let back = d.read(0, 16384).await.unwrap();
        assert!(back[..1000].iter().all(|&b| b == 1));
        assert!(back[1000..11000].iter().all(|&b| b == 0));
        assert!(back[11000..].iter().all(|&b| b == 1));
        d.write_zeroes(0, 16384, true, false).await.unwrap();
        assert_eq!(d.allocated_bytes(), 4 * 4096);
        assert!(d.read(0, 16384).await.unwrap().iter().all(|&b| b == 0));
    }

    #[tokio::test]
    async fn out_of_range_access_is_invalid() {
        let d = MemDevice::new(4096);
        assert!(matches!(d.read(4000, 200).await, Err(DeviceError::Invalid)));
        assert!(matches!(d.write(u64::MAX, Bytes::from_static(b"x"), false).await, Err(DeviceError::Invalid)));
    }
}
