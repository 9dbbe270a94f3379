//! Storage behind a disk logical unit.

pub mod durability;
mod encrypted;
mod file;
mod ram;
#[cfg(feature = "rbd")]
mod rbd;

pub use encrypted::EncryptedBackend;
pub use file::{BackendError, FileBackend, FileOptions};
pub use ram::RamBackend;
#[cfg(feature = "rbd")]
pub use rbd::{ObjectWatch, RbdBackend, RbdError, RbdOptions};

use std::io;

/// Byte-addressed storage. Implementations must allow concurrent calls from many threads.
pub trait Backend: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()>;
    fn write_at(&self, off: u64, data: &[u8]) -> io::Result<()>;
    /// Make every completed write durable (fdatasync for files).
    fn flush(&self) -> io::Result<()>;
    /// Deallocate a range; it reads back as zeros afterwards.
    fn discard(&self, off: u64, len: u64) -> io::Result<()>;
    /// Make a range read back as zeros (WRITE SAME of a zero block, NBD WRITE_ZEROES without a hole). Backends
    /// with a cheaper way than writing zeros override this; they may deallocate the range.
    fn write_zeroes(&self, off: u64, len: u64) -> io::Result<()> {
        check_range(self.size(), off, len)?;
        let zeros = vec![0u8; len.min(1 << 20) as usize];
        let mut pos = 0u64;
        while pos < len {
            let n = (len - pos).min(zeros.len() as u64) as usize;
            self.write_at(off + pos, &zeros[..n])?;
            pos += n as u64;
        }
        Ok(())
    }
    /// Whether the medium is stored encrypted under a key this backend can replace (SANITIZE CRYPTOGRAPHIC ERASE).
    fn can_crypto_erase(&self) -> bool {
        false
    }
    /// Replace the media key: everything written before reads back as unspecified data afterwards.
    fn crypto_erase(&self) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "the medium is not encrypted"))
    }
    /// Whether any byte of the range is allocated.
    fn is_allocated(&self, off: u64, len: u64) -> io::Result<bool>;
    /// From `off`, whether storage is allocated and for how many bytes (at most `max`)
    /// that stays so. Backends with an extent map override this; the default probes in
    /// 4 KiB steps.
    fn allocation_run(&self, off: u64, max: u64) -> io::Result<(bool, u64)> {
        const STEP: u64 = 4096;
        let first = self.is_allocated(off, STEP.min(max))?;
        let mut run = 0u64;
        while run < max {
            let len = STEP.min(max - run);
            if self.is_allocated(off + run, len)? != first {
                break;
            }
            run += len;
        }
        Ok((first, run))
    }
}

/// Check that `[off, off + len)` lies inside a backend of `size` bytes.
pub(crate) fn check_range(size: u64, off: u64, len: u64) -> io::Result<()> {
    match off.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "range beyond the end of the backend")),
    }
}
