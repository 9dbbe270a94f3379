//! Glue between the transports and the storage stack: NBD over the class driver, iSCSI over pass-through SRBs.

pub mod iscsi_lun;
pub mod nbd_disk;
pub mod xcopy;

use bytes::{Bytes, BytesMut};
use hal::{Buffer, HalError};

/// The first `len` bytes of a buffer whose transfer has finished, as `Bytes`: straight from the modelled system
/// memory when they are one physical run (first-fit allocation almost always gives one), else copied. `guard` (a
/// budget permit) lives as long as the bytes.
pub(crate) fn sysmem_bytes<G: Send + Sync + 'static>(buf: Buffer, len: usize, guard: G) -> Result<Bytes, HalError> {
    let mut runs = 0;
    let mut first: Option<(*const u8, usize)> = None;
    buf.with_slices(0, len, |_, s| {
        runs += 1;
        first.get_or_insert((s.as_ptr(), s.len()));
    })?;
    match first {
        Some((ptr, n)) if runs == 1 && n == len => {
            Ok(Bytes::from_owner(SystemMemoryBytes { ptr, len: n, _buffer: buf, _guard: guard }))
        }
        _ => {
            let mut out = BytesMut::with_capacity(len);
            buf.with_slices(0, len, |_, s| out.extend_from_slice(s))?;
            Ok(out.freeze())
        }
    }
}

/// Bytes that live in the modelled system memory: they keep the pages (and the guard) until dropped.
struct SystemMemoryBytes<G> {
    ptr: *const u8,
    len: usize,
    _buffer: Buffer,
    _guard: G,
}

// SAFETY: the pointer is into the SystemMemory allocation that `_buffer` keeps alive; once the transfer completed, no
// DMA targets these pages and nothing else writes them until the buffer is dropped (hal memory ownership rule), so
// shared read-only access from any thread is sound.
unsafe impl<G: Send> Send for SystemMemoryBytes<G> {}
// SAFETY: as above; the bytes are only read.
unsafe impl<G: Sync> Sync for SystemMemoryBytes<G> {}

impl<G> AsRef<[u8]> for SystemMemoryBytes<G> {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` and `len` came from the one run `Buffer::with_slices` handed out for this buffer, which stays
        // alive (and unwritten) as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A write payload's destination in the modelled system memory: the DMA buffer the class driver then writes from,
/// so the payload is received from the socket straight into the pages the DMA model reads. Only a buffer whose first
/// `len` bytes are one physical run (first-fit allocation almost always gives one) is exposed as one slice.
pub(crate) struct SystemMemoryPayload<G> {
    ptr: *mut u8,
    len: usize,
    buffer: Buffer,
    _guard: G,
}

// SAFETY: the pointer is into the SystemMemory allocation that `buffer` keeps alive. Until the buffer is handed to a
// transfer, its owner (whoever holds this value) is the only party touching its pages (hal memory ownership rule);
// during the transfer the owner only lends `buffer` out and does not use the slice.
unsafe impl<G: Send> Send for SystemMemoryPayload<G> {}

impl<G> SystemMemoryPayload<G> {
    /// The first `len` bytes of `buf` as a payload destination, or `None` when they are not one physical run.
    pub(crate) fn new(buf: Buffer, len: usize, guard: G) -> Option<Self> {
        let mut runs = 0;
        let mut first: Option<(*mut u8, usize)> = None;
        buf.with_slices_mut(0, len, |_, s| {
            runs += 1;
            first.get_or_insert((s.as_mut_ptr(), s.len()));
        })
        .ok()?;
        match first {
            Some((ptr, n)) if runs == 1 && n == len => {
                Some(SystemMemoryPayload { ptr, len, buffer: buf, _guard: guard })
            }
            _ => None,
        }
    }

    pub(crate) fn buffer(&self) -> &Buffer {
        &self.buffer
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl<G> AsRef<[u8]> for SystemMemoryPayload<G> {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` and `len` came from the one run `Buffer::with_slices_mut` handed out for this buffer, which
        // stays alive as long as `self`; `&self` excludes a live mutable slice from `as_mut`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<G> AsMut<[u8]> for SystemMemoryPayload<G> {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_ref`; `&mut self` makes this the only slice of the run.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hal::{Placement, SystemMemory};

    #[test]
    fn payload_in_one_physical_run_is_written_in_place() {
        let mem = SystemMemory::new(16 << 20).unwrap();
        let len = 3 * 4096 + 100;
        let buf = mem.alloc(len, Placement::Contiguous { below_16m: true, align: 0 }).unwrap();
        let mut p = SystemMemoryPayload::new(buf.clone(), len, ()).expect("a contiguous buffer is one run");
        let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        p.as_mut().copy_from_slice(&data);
        assert_eq!((p.len(), p.as_ref()), (len, &data[..]));
        let mut back = vec![0u8; len];
        buf.read(0, &mut back).unwrap();
        assert_eq!(back, data, "the payload slice is not the buffer's memory");
    }

    #[test]
    fn buffer_of_several_runs_is_not_a_payload_destination() {
        let mem = SystemMemory::new(16 << 20).unwrap();
        let buf = mem.alloc(3 * 4096, Placement::Scattered { seed: 7 }).unwrap();
        assert!(buf.contiguous_run(0, 3 * 4096).is_none());
        assert!(SystemMemoryPayload::new(buf.clone(), 3 * 4096, ()).is_none());
        // Its first page alone is one run.
        assert!(SystemMemoryPayload::new(buf, 4096, ()).is_some());
    }
}
