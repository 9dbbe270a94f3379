//! A thin-provisioned RAM disk.
//!
//! Storage is split in 64 KiB regions, each behind its own lock, so threads working on
//! different regions never wait for each other and a chunk costs one memcpy per region it
//! touches. A region's buffer exists only once something was written to it; a bitmap
//! records which 512-byte sectors hold data, so UNMAP at block granularity is exact and
//! GET LBA STATUS can report it.

use super::{check_range, Backend};
use parking_lot::RwLock;
use std::io;

const REGION: u64 = 64 * 1024;
const SECTOR: u64 = 512;
const SECTORS: u64 = REGION / SECTOR; // 128: one bit per sector in a u128

#[derive(Default)]
struct Region {
    data: Option<Box<[u8]>>,
    map: u128,
}

pub struct RamBackend {
    size: u64,
    regions: Box<[RwLock<Region>]>,
}

/// Bits for sectors `lo..hi` of a region (0 <= lo <= hi <= 128).
fn sector_mask(lo: u64, hi: u64) -> u128 {
    if hi <= lo {
        0
    } else if hi - lo >= SECTORS {
        u128::MAX
    } else {
        ((1u128 << (hi - lo)) - 1) << lo
    }
}

impl RamBackend {
    /// A zero-filled disk of `size` bytes that allocates memory only where written.
    pub fn new(size: u64) -> Self {
        let count = size.div_ceil(REGION);
        let regions = (0..count).map(|_| RwLock::new(Region::default())).collect();
        Self { size, regions }
    }

    /// Walk the regions covering `[off, off + len)`: (region, offset in region, pos in range, length).
    fn pieces(off: u64, len: u64) -> impl Iterator<Item = (usize, usize, usize, usize)> {
        let end = off + len;
        let mut pos = off;
        std::iter::from_fn(move || {
            if pos >= end {
                return None;
            }
            let region = pos / REGION;
            let within = pos % REGION;
            let n = (REGION - within).min(end - pos);
            let item = (region as usize, within as usize, (pos - off) as usize, n as usize);
            pos += n;
            Some(item)
        })
    }
}

impl Backend for RamBackend {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(self.size, off, buf.len() as u64)?;
        for (r, within, pos, n) in Self::pieces(off, buf.len() as u64) {
            let region = self.regions[r].read();
            let dst = &mut buf[pos..pos + n];
            match &region.data {
                Some(data) => dst.copy_from_slice(&data[within..within + n]),
                None => dst.fill(0),
            }
        }
        Ok(())
    }

    fn write_at(&self, off: u64, data: &[u8]) -> io::Result<()> {
        check_range(self.size, off, data.len() as u64)?;
        for (r, within, pos, n) in Self::pieces(off, data.len() as u64) {
            let mut region = self.regions[r].write();
            let buf = region.data.get_or_insert_with(|| vec![0u8; REGION as usize].into_boxed_slice());
            buf[within..within + n].copy_from_slice(&data[pos..pos + n]);
            let lo = within as u64 / SECTOR;
            let hi = ((within + n) as u64).div_ceil(SECTOR);
            region.map |= sector_mask(lo, hi);
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        check_range(self.size, off, len)?;
        for (r, within, _, n) in Self::pieces(off, len) {
            let mut region = self.regions[r].write();
            let Region { data, map } = &mut *region;
            let Some(buf) = data else { continue };
            buf[within..within + n].fill(0);
            // Only whole sectors are deallocated; a partial sector keeps its data bit.
            let lo = (within as u64).div_ceil(SECTOR);
            let hi = (within + n) as u64 / SECTOR;
            *map &= !sector_mask(lo, hi);
            if *map == 0 {
                *data = None;
            }
        }
        Ok(())
    }

    fn is_allocated(&self, off: u64, len: u64) -> io::Result<bool> {
        check_range(self.size, off, len)?;
        for (r, within, _, n) in Self::pieces(off, len) {
            let lo = within as u64 / SECTOR;
            let hi = ((within + n) as u64).div_ceil(SECTOR);
            if self.regions[r].read().map & sector_mask(lo, hi) != 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn allocation_run(&self, off: u64, max: u64) -> io::Result<(bool, u64)> {
        let max = max.min(self.size.saturating_sub(off));
        check_range(self.size, off, max)?;
        if max == 0 {
            return Ok((false, 0));
        }
        let first = self.is_allocated(off, 1)?;
        let mut run = 0u64;
        for (r, within, _, n) in Self::pieces(off, max) {
            let map = self.regions[r].read().map;
            let mut s = within as u64 / SECTOR;
            let last = ((within + n) as u64).div_ceil(SECTOR);
            while s < last {
                if (map >> s & 1 != 0) != first {
                    let stop = (r as u64 * REGION + s * SECTOR).max(off);
                    return Ok((first, stop - off));
                }
                s += 1;
            }
            run += n as u64;
        }
        Ok((first, run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritten_storage_reads_zero_and_is_unallocated() {
        let b = RamBackend::new(1 << 20);
        let mut buf = vec![0xAAu8; 4096];
        b.read_at(8192, &mut buf).unwrap();
        assert!(buf.iter().all(|&x| x == 0));
        assert!(!b.is_allocated(0, 1 << 20).unwrap());
    }

    #[test]
    fn write_spanning_regions_reads_back() {
        let b = RamBackend::new(1 << 20);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        b.write_at(REGION - 100, &data).unwrap();
        let mut back = vec![0u8; data.len()];
        b.read_at(REGION - 100, &mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn discard_whole_sectors_deallocates_and_zeroes() {
        let b = RamBackend::new(1 << 20);
        b.write_at(0, &[7u8; 4096]).unwrap();
        b.discard(512, 1024).unwrap();
        assert!(b.is_allocated(0, 512).unwrap());
        assert!(!b.is_allocated(512, 1024).unwrap());
        assert!(b.is_allocated(1536, 512).unwrap());
        let mut buf = [1u8; 1024];
        b.read_at(512, &mut buf).unwrap();
        assert!(buf.iter().all(|&x| x == 0));
        assert_eq!(b.allocation_run(0, 4096).unwrap(), (true, 512));
        assert_eq!(b.allocation_run(512, 4096).unwrap(), (false, 1024));
    }

    #[test]
    fn access_beyond_the_end_is_an_error() {
        let b = RamBackend::new(4096);
        let mut buf = [0u8; 2];
        assert!(b.read_at(4095, &mut buf).is_err());
        assert!(b.write_at(u64::MAX, &buf).is_err());
        assert!(b.discard(4000, 100).is_err());
    }
}
