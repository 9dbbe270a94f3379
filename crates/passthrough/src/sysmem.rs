//! System-memory bytes for the front ends: a finished transfer's buffer handed out as `Bytes` without a copy, and a
//! write payload received straight into its DMA buffer.

use bytes::{Bytes, BytesMut};
use hal::{Buffer, HalError, RunMut, RunRef};

/// The first `len` bytes of a buffer whose transfer has finished, as `Bytes`: straight from the modelled system
/// memory when they are one physical run (first-fit allocation almost always gives one), else copied. `guard` (a
/// budget permit) lives as long as the bytes; so does the run's hold on its frames, which keeps any later access to
/// them waiting or refused until the bytes are gone.
pub fn sysmem_bytes<G: Send + Sync + 'static>(buf: Buffer, len: usize, guard: G) -> Result<Bytes, HalError> {
    match buf.borrow_run(0, len) {
        Ok(run) => Ok(Bytes::from_owner(SystemMemoryBytes { run, _guard: guard })),
        Err(HalError::Discontiguous { .. }) => {
            let mut out = BytesMut::with_capacity(len);
            buf.with_slices(0, len, |_, s| out.extend_from_slice(s))?;
            Ok(out.freeze())
        }
        Err(e) => Err(e),
    }
}

/// Bytes that live in the modelled system memory: a held run of the buffer (and the guard) until dropped.
struct SystemMemoryBytes<G> {
    run: RunRef,
    _guard: G,
}

impl<G> AsRef<[u8]> for SystemMemoryBytes<G> {
    fn as_ref(&self) -> &[u8] {
        &self.run
    }
}

/// A write payload's destination in the modelled system memory: the DMA buffer the class driver then writes from,
/// so the payload is received from the socket straight into the pages the DMA model reads. Only a buffer whose first
/// `len` bytes are one physical run (first-fit allocation almost always gives one) is exposed as one slice; the run
/// is held exclusively until `into_buffer` hands the buffer to its transfer.
pub struct SystemMemoryPayload<G> {
    run: RunMut,
    guard: G,
}

impl<G> SystemMemoryPayload<G> {
    /// The first `len` bytes of `buf` as a payload destination, or `None` when they are not one physical run.
    pub fn new(buf: Buffer, len: usize, guard: G) -> Option<Self> {
        let run = buf.borrow_run_mut(0, len).ok()?;
        Some(SystemMemoryPayload { run, guard })
    }

    pub fn len(&self) -> usize {
        self.run.len()
    }

    pub fn is_empty(&self) -> bool {
        self.run.is_empty()
    }

    /// Ends the payload's hold on its memory: the buffer, ready for the transfer, and the guard.
    pub fn into_buffer(self) -> (Buffer, G) {
        (self.run.into_buffer(), self.guard)
    }
}

impl<G> AsRef<[u8]> for SystemMemoryPayload<G> {
    fn as_ref(&self) -> &[u8] {
        &self.run
    }
}

impl<G> AsMut<[u8]> for SystemMemoryPayload<G> {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.run
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
        assert!(buf.read(0, &mut back).is_err(), "the payload holds its memory until handed on");
        let (held, ()) = p.into_buffer();
        held.read(0, &mut back).unwrap();
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
