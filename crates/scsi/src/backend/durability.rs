//! A recording layer under a disk's backend for power-loss testing (`durability_log` in a disk's configuration).
//!
//! A process kill leaves every written byte in the kernel's page cache, so killing the server cannot show a missing
//! flush. This layer keeps, beside the real backend, a log of what a power cut would have left on the medium: a write
//! becomes part of it only when a later `flush` (fdatasync, or what FUA, a disabled write cache and SYNCHRONIZE
//! CACHE / NBD_CMD_FLUSH turn into) has completed. Each flush appends the writes it made durable and a commit record
//! stamped with `CLOCK_MONOTONIC`, which every process on the machine shares, so a test can cut the power at any
//! instant afterwards: the medium at time T is every commit group stamped before T, applied in order.
//!
//! Log format (little endian), one record after another:
//! - write: `b'W'`, offset u64, length u32, the bytes;
//! - discard: `b'D'`, offset u64, length u64 (reads as zeros afterwards);
//! - commit: `b'C'`, monotonic nanoseconds u64 — the writes and discards since the previous commit are durable.

use super::Backend;
use parking_lot::Mutex;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

enum Pending {
    Write(u64, Vec<u8>),
    Discard(u64, u64),
}

/// The layer: `inner` does the I/O, the log records what became durable.
pub struct DurabilityLog {
    inner: Arc<dyn Backend>,
    pending: Mutex<Vec<Pending>>,
    /// Held across a whole flush, so commit groups are appended in the order their flushes completed.
    log: Mutex<io::BufWriter<File>>,
}

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl DurabilityLog {
    /// Record durability of `inner` into a new log file at `path` (truncated). The medium starts as `inner` is now.
    pub fn new(inner: Arc<dyn Backend>, path: &Path) -> io::Result<Self> {
        let f = File::create(path)?;
        Ok(DurabilityLog { inner, pending: Mutex::new(Vec::new()), log: Mutex::new(io::BufWriter::new(f)) })
    }
}

impl Backend for DurabilityLog {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(off, buf)
    }

    fn write_at(&self, off: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write_at(off, data)?;
        // Completed: the next flush covers it.
        self.pending.lock().push(Pending::Write(off, data.to_vec()));
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        let mut log = self.log.lock();
        // What completed before the flush began is what the flush makes durable.
        let batch = std::mem::take(&mut *self.pending.lock());
        if let Err(e) = self.inner.flush() {
            // Not durable after all: keep it for the next flush.
            let mut p = self.pending.lock();
            let later = std::mem::replace(&mut *p, batch);
            p.extend(later);
            return Err(e);
        }
        for p in &batch {
            match p {
                Pending::Write(off, data) => {
                    log.write_all(b"W")?;
                    log.write_all(&off.to_le_bytes())?;
                    log.write_all(&(data.len() as u32).to_le_bytes())?;
                    log.write_all(data)?;
                }
                Pending::Discard(off, len) => {
                    log.write_all(b"D")?;
                    log.write_all(&off.to_le_bytes())?;
                    log.write_all(&len.to_le_bytes())?;
                }
            }
        }
        log.write_all(b"C")?;
        log.write_all(&monotonic_ns().to_le_bytes())?;
        // Into the page cache, which survives the process: the log stands for the medium, not for the process.
        log.flush()
    }

    fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        self.inner.discard(off, len)?;
        self.pending.lock().push(Pending::Discard(off, len));
        Ok(())
    }

    fn is_allocated(&self, off: u64, len: u64) -> io::Result<bool> {
        self.inner.is_allocated(off, len)
    }

    fn allocation_run(&self, off: u64, max: u64) -> io::Result<(bool, u64)> {
        self.inner.allocation_run(off, max)
    }
}

/// One commit group of a log: when it became durable and what it holds.
pub struct Commit {
    pub at_ns: u64,
    pub writes: Vec<(u64, Vec<u8>)>,
    pub discards: Vec<(u64, u64)>,
}

/// Read a log back; a torn tail (the process killed while appending) is not a commit and is dropped.
pub fn read_log(bytes: &[u8]) -> Vec<Commit> {
    let mut out = Vec::new();
    let (mut writes, mut discards) = (Vec::new(), Vec::new());
    let mut i = 0;
    let u64_at = |i: usize| bytes.get(i..i + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    while i < bytes.len() {
        match bytes[i] {
            b'W' => {
                let (Some(off), Some(len)) =
                    (u64_at(i + 1), bytes.get(i + 9..i + 13).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                else {
                    break;
                };
                let Some(data) = bytes.get(i + 13..i + 13 + len as usize) else { break };
                writes.push((off, data.to_vec()));
                i += 13 + len as usize;
            }
            b'D' => {
                let (Some(off), Some(len)) = (u64_at(i + 1), u64_at(i + 9)) else { break };
                discards.push((off, len));
                i += 17;
            }
            b'C' => {
                let Some(at_ns) = u64_at(i + 1) else { break };
                out.push(Commit {
                    at_ns,
                    writes: std::mem::take(&mut writes),
                    discards: std::mem::take(&mut discards),
                });
                i += 9;
            }
            _ => break,
        }
    }
    out
}

/// The medium after a power cut at `cut_ns`: `base` with every commit stamped before it applied in order.
pub fn medium_at(base: &[u8], commits: &[Commit], cut_ns: u64) -> Vec<u8> {
    let mut m = base.to_vec();
    for c in commits.iter().take_while(|c| c.at_ns < cut_ns) {
        // Within one group the order does not matter for non-overlapping writes; discards first, then writes, as
        // they are recorded in completion order only per kind.
        for (off, len) in &c.discards {
            let (a, b) = (*off as usize, (*off + *len) as usize);
            if let Some(s) = m.get_mut(a..b) {
                s.fill(0);
            }
        }
        for (off, data) in &c.writes {
            if let Some(s) = m.get_mut(*off as usize..*off as usize + data.len()) {
                s.copy_from_slice(data);
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_flushed_writes_reach_the_medium() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Backend> = Arc::new(crate::RamBackend::new(1 << 16));
        let log = DurabilityLog::new(inner, &dir.path().join("log")).unwrap();
        log.write_at(0, &[1; 512]).unwrap();
        log.flush().unwrap();
        let t1 = monotonic_ns();
        log.write_at(512, &[2; 512]).unwrap();
        drop(log);
        let commits = read_log(&std::fs::read(dir.path().join("log")).unwrap());
        assert_eq!(commits.len(), 1);
        let m = medium_at(&vec![0; 1 << 16], &commits, t1 + 1);
        assert_eq!(&m[..512], &[1; 512][..]);
        assert_eq!(&m[512..1024], &[0; 512][..], "an unflushed write survived the power cut");
        let before = medium_at(&vec![0; 1 << 16], &commits, commits[0].at_ns);
        assert_eq!(&before[..512], &[0; 512][..], "a cut before the flush completed keeps nothing");
    }

    #[test]
    fn a_torn_tail_is_not_a_commit() {
        let mut bytes = vec![b'W'];
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&4u32.to_le_bytes());
        bytes.extend_from_slice(&[9, 9, 9, 9]);
        bytes.push(b'C');
        bytes.extend_from_slice(&5u64.to_le_bytes());
        bytes.extend_from_slice(&[b'W', 1, 2]);
        let c = read_log(&bytes);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].writes, vec![(0, vec![9, 9, 9, 9])]);
    }
}
