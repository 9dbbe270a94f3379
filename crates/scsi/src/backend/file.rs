//! A disk image file: sparse on creation, optionally preallocated, optionally opened with
//! O_DIRECT. Data moves with pread/pwrite straight between the file and the caller's buffer.

use super::{check_range, Backend};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// How to open an image file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileOptions {
    /// Reserve all blocks up front (fallocate) instead of a sparse image.
    pub preallocate: bool,
    /// Bypass the page cache (O_DIRECT) for aligned transfers.
    pub direct: bool,
    /// Create the file if it does not exist.
    pub create: bool,
}

/// Why an image could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// cannot open disk image {path}: {source}
    #[error("cannot open disk image {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    /// cannot size disk image {path}: {source}
    #[error("cannot size disk image {path} to {size} bytes: {source}")]
    Size { path: PathBuf, size: u64, source: io::Error },
    /// cannot preallocate disk image {path}: {source}
    #[error("cannot preallocate disk image {path}: {source}")]
    Preallocate { path: PathBuf, source: io::Error },
    /// the image is empty and no size was given
    #[error("disk image {path} is empty and no size was given")]
    NoSize { path: PathBuf },
    /// the media key file of an encrypted medium cannot be read or written
    #[error("media key {0}: {1}")]
    Key(PathBuf, io::Error),
    /// an encrypted medium's key file or size is not usable
    #[error("{0}")]
    Encryption(String),
}

/// O_DIRECT needs buffer address, offset and length aligned to the device's logical block
/// size; 4 KiB satisfies every common device.
const DIRECT_ALIGN: u64 = 4096;

pub struct FileBackend {
    /// Buffered descriptor: used for everything when `direct` is off, and for unaligned
    /// transfers when it is on (Linux keeps the page cache coherent with direct I/O on the
    /// same file by writing back and invalidating the range around each direct transfer).
    file: File,
    direct: Option<File>,
    size: u64,
}

fn aligned(off: u64, ptr: *const u8, len: usize) -> bool {
    off.is_multiple_of(DIRECT_ALIGN)
        && (ptr as usize as u64).is_multiple_of(DIRECT_ALIGN)
        && (len as u64).is_multiple_of(DIRECT_ALIGN)
}

impl FileBackend {
    /// Open (or create) an image of `size` bytes; `size` 0 takes the existing file's
    /// length. A shorter file is extended sparsely; a longer one is left as it is.
    pub fn open(path: impl AsRef<Path>, size: u64, opts: FileOptions) -> Result<Self, BackendError> {
        let path = path.as_ref();
        let open = |direct: bool| {
            let mut o = OpenOptions::new();
            o.read(true).write(true).create(opts.create);
            if direct {
                o.custom_flags(libc::O_DIRECT);
            }
            o.open(path).map_err(|source| BackendError::Open { path: path.to_owned(), source })
        };
        let file = open(false)?;
        let current = file.metadata().map_err(|source| BackendError::Open { path: path.to_owned(), source })?.len();
        let size = if size == 0 { current } else { size };
        if size == 0 {
            return Err(BackendError::NoSize { path: path.to_owned() });
        }
        if current < size {
            file.set_len(size).map_err(|source| BackendError::Size { path: path.to_owned(), size, source })?;
        }
        if opts.preallocate {
            let len = libc::off_t::try_from(size).map_err(|_| BackendError::Size {
                path: path.to_owned(),
                size,
                source: io::Error::from(io::ErrorKind::InvalidInput),
            })?;
            // SAFETY: fallocate on a descriptor we own, with no pointers involved.
            let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
            if rc != 0 {
                return Err(BackendError::Preallocate { path: path.to_owned(), source: io::Error::last_os_error() });
            }
        }
        let direct = if opts.direct { Some(open(true)?) } else { None };
        Ok(Self { file, direct, size })
    }

    /// `lseek(SEEK_DATA / SEEK_HOLE)`; None when no such offset exists (ENXIO).
    fn seek(&self, off: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
        let off = libc::off_t::try_from(off).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: lseek on a descriptor we own; all I/O uses pread/pwrite, so moving the
        // shared file offset affects no other operation.
        let r = unsafe { libc::lseek(self.file.as_raw_fd(), off, whence) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENXIO) { Ok(None) } else { Err(e) };
        }
        Ok(Some(r as u64))
    }
}

impl Backend for FileBackend {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(self.size, off, buf.len() as u64)?;
        match &self.direct {
            Some(d) if aligned(off, buf.as_ptr(), buf.len()) => d.read_exact_at(buf, off),
            _ => self.file.read_exact_at(buf, off),
        }
    }

    fn write_at(&self, off: u64, data: &[u8]) -> io::Result<()> {
        check_range(self.size, off, data.len() as u64)?;
        match &self.direct {
            Some(d) if aligned(off, data.as_ptr(), data.len()) => d.write_all_at(data, off),
            _ => self.file.write_all_at(data, off),
        }
    }

    fn flush(&self) -> io::Result<()> {
        // fdatasync: data and the metadata needed to read it back (the file size never
        // changes after open), which is what SYNCHRONIZE CACHE promises (SBC-3 §5.22).
        self.file.sync_data()
    }

    fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        check_range(self.size, off, len)?;
        if len == 0 {
            return Ok(());
        }
        let (o, l) = match (libc::off_t::try_from(off), libc::off_t::try_from(len)) {
            (Ok(o), Ok(l)) => (o, l),
            _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
        };
        // SAFETY: fallocate on a descriptor we own, with no pointers involved.
        let rc = unsafe {
            libc::fallocate(self.file.as_raw_fd(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, o, l)
        };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(e);
        }
        // No hole punching on this file system: zeroes read back the same.
        let zeros = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        while pos < len {
            let n = (len - pos).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], off + pos)?;
            pos += n as u64;
        }
        Ok(())
    }

    fn is_allocated(&self, off: u64, len: u64) -> io::Result<bool> {
        check_range(self.size, off, len)?;
        Ok(matches!(self.seek(off, libc::SEEK_DATA)?, Some(d) if d < off + len))
    }

    fn allocation_run(&self, off: u64, max: u64) -> io::Result<(bool, u64)> {
        let max = max.min(self.size.saturating_sub(off));
        if max == 0 {
            return Ok((false, 0));
        }
        match self.seek(off, libc::SEEK_DATA)? {
            Some(d) if d <= off => {
                let hole = self.seek(off, libc::SEEK_HOLE)?.unwrap_or(self.size);
                Ok((true, hole.saturating_sub(off).clamp(1, max)))
            }
            Some(d) => Ok((false, (d - off).min(max))),
            None => Ok((false, max)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> FileOptions {
        FileOptions { create: true, ..FileOptions::default() }
    }

    #[test]
    fn created_image_is_sparse_and_sized() {
        let dir = tempfile::tempdir().unwrap();
        let b = FileBackend::open(dir.path().join("d.img"), 8 << 20, opts()).unwrap();
        assert_eq!(b.size(), 8 << 20);
        assert!(!b.is_allocated(0, 8 << 20).unwrap());
        let meta = std::fs::metadata(dir.path().join("d.img")).unwrap();
        assert_eq!(meta.len(), 8 << 20);
    }

    #[test]
    fn writes_read_back_and_punched_holes_read_zero() {
        let dir = tempfile::tempdir().unwrap();
        let b = FileBackend::open(dir.path().join("d.img"), 8 << 20, opts()).unwrap();
        b.write_at(1 << 20, &[0x5A; 65536]).unwrap();
        assert!(b.is_allocated(1 << 20, 65536).unwrap());
        b.discard(1 << 20, 65536).unwrap();
        let mut buf = vec![1u8; 65536];
        b.read_at(1 << 20, &mut buf).unwrap();
        assert!(buf.iter().all(|&x| x == 0));
        assert!(!b.is_allocated(1 << 20, 65536).unwrap());
    }

    #[test]
    fn reopening_keeps_data_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.img");
        FileBackend::open(&p, 1 << 20, opts()).unwrap().write_at(4096, b"durable").unwrap();
        let b = FileBackend::open(&p, 0, FileOptions::default()).unwrap();
        assert_eq!(b.size(), 1 << 20);
        let mut buf = [0u8; 7];
        b.read_at(4096, &mut buf).unwrap();
        assert_eq!(&buf, b"durable");
    }

    #[test]
    fn missing_file_without_create_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("absent.img");
        let e = FileBackend::open(&p, 4096, FileOptions::default()).err().expect("fails");
        assert!(e.to_string().contains("absent.img"));
    }

    #[test]
    fn preallocated_image_reserves_its_blocks() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.img");
        let o = FileOptions { preallocate: true, ..opts() };
        FileBackend::open(&p, 1 << 20, o).unwrap();
        // st_blocks counts 512-byte units actually reserved on disk.
        assert!(std::fs::metadata(&p).unwrap().blocks() * 512 >= 1 << 20);
    }
}

#[cfg(test)]
mod direct_tests {
    use super::*;

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    #[test]
    fn direct_io_serves_aligned_and_unaligned_transfers_coherently() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("direct.img");
        let opts = FileOptions { create: true, direct: true, ..FileOptions::default() };
        let b = match FileBackend::open(&p, 1 << 20, opts) {
            Ok(b) => b,
            Err(BackendError::Open { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {
                println!("skipped: {} does not support O_DIRECT", dir.path().display());
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let mut pages = [Page([0x11; 4096]), Page([0x22; 4096])];
        // Aligned: goes through the O_DIRECT descriptor.
        b.write_at(8192, &pages[0].0).unwrap();
        // Unaligned: goes through the buffered one, over part of the same page.
        b.write_at(8192 + 100, &[0x33; 10]).unwrap();
        b.read_at(8192, &mut pages[1].0).unwrap();
        assert_eq!(&pages[1].0[..100], &[0x11; 100][..]);
        assert_eq!(&pages[1].0[100..110], &[0x33; 10][..]);
        assert_eq!(&pages[1].0[110..], &[0x11; 4096 - 110][..]);
        let mut small = [0u8; 3];
        b.read_at(8192 + 99, &mut small).unwrap();
        assert_eq!(small, [0x11, 0x33, 0x33]);
    }
}
