//! Where a WRITE payload is received. A device may hand out its own
//! destination for it (memory the data has to reach anyway), so the payload
//! is read off the socket once and never copied again; otherwise the server
//! receives it into a pooled buffer.

use std::any::Any;

use bytes::Bytes;

use crate::pool::PoolBuf;

/// A destination a device hands out for one WRITE payload. Its slices are
/// exactly as long as the payload. Every `AsRef<[u8]> + AsMut<[u8]> + Send`
/// type with no borrowed data is one.
pub trait PayloadBuf: AsRef<[u8]> + AsMut<[u8]> + Send + 'static {
    /// The buffer as [`Any`], so its device can tell its own type.
    fn as_any(&self) -> &dyn Any;
    /// The buffer as a boxed [`Any`], so its device can take it back.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl<T: AsRef<[u8]> + AsMut<[u8]> + Send + 'static> PayloadBuf for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// A WRITE payload the server has received in full.
pub struct WritePayload(Kind);

enum Kind {
    Pooled(PoolBuf),
    Device(Box<dyn PayloadBuf>),
}

impl WritePayload {
    /// A payload in a buffer from the server's pool.
    pub fn pooled(buf: PoolBuf) -> Self {
        WritePayload(Kind::Pooled(buf))
    }

    /// A payload in a buffer a device handed out.
    pub fn device(buf: Box<dyn PayloadBuf>) -> Self {
        WritePayload(Kind::Device(buf))
    }

    /// Where the socket's bytes go.
    pub(crate) fn destination(&mut self) -> &mut [u8] {
        match &mut self.0 {
            Kind::Pooled(b) => b.as_mut(),
            Kind::Device(b) => AsMut::<[u8]>::as_mut(&mut **b),
        }
    }

    /// The payload's bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Kind::Pooled(b) => b.as_ref(),
            Kind::Device(b) => AsRef::<[u8]>::as_ref(&**b),
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the payload sits in a buffer its device handed out.
    pub fn in_device_buffer(&self) -> bool {
        matches!(self.0, Kind::Device(_))
    }

    /// The payload as shared bytes, without a copy.
    pub fn into_bytes(self) -> Bytes {
        match self.0 {
            Kind::Pooled(b) => b.freeze(),
            Kind::Device(b) => Bytes::from_owner(DeviceBytes(b)),
        }
    }

    /// True when the payload sits in a device buffer of type `T`.
    pub fn is<T: PayloadBuf>(&self) -> bool {
        matches!(&self.0, Kind::Device(b) if b.as_any().is::<T>())
    }

    /// The device's own buffer back when the payload was received into a
    /// `T` (see [`WritePayload::is`]); `None`, and the payload dropped,
    /// otherwise.
    pub fn into_device_buffer<T: PayloadBuf>(self) -> Option<T> {
        match self.0 {
            Kind::Device(b) => b.into_any().downcast::<T>().ok().map(|t| *t),
            Kind::Pooled(_) => None,
        }
    }
}

/// A device buffer shared as [`Bytes`].
struct DeviceBytes(Box<dyn PayloadBuf>);

impl AsRef<[u8]> for DeviceBytes {
    fn as_ref(&self) -> &[u8] {
        AsRef::<[u8]>::as_ref(&*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::BufferPool;

    struct Mine(Vec<u8>);

    impl AsRef<[u8]> for Mine {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl AsMut<[u8]> for Mine {
        fn as_mut(&mut self) -> &mut [u8] {
            &mut self.0
        }
    }

    #[test]
    fn device_buffer_is_filled_in_place_and_given_back_to_its_type() {
        let mut p = WritePayload::device(Box::new(Mine(vec![0; 4])));
        p.destination().copy_from_slice(b"abcd");
        assert!(p.in_device_buffer());
        assert_eq!(p.as_slice(), b"abcd");
        assert!(!p.is::<Vec<u8>>());
        assert!(p.is::<Mine>());
        let mine = p.into_device_buffer::<Mine>().map(|m| m.0);
        assert_eq!(mine.as_deref(), Some(&b"abcd"[..]));
    }

    #[test]
    fn pooled_payload_is_not_a_device_buffer_and_becomes_bytes() {
        let pool = BufferPool::new(1 << 20);
        let mut p = WritePayload::pooled(pool.take(3));
        p.destination().copy_from_slice(b"xyz");
        assert!(!p.in_device_buffer());
        assert!(!p.is::<Mine>());
        assert_eq!(&p.into_bytes()[..], b"xyz");
    }

    #[test]
    fn device_payload_becomes_bytes_without_a_copy() {
        let mut p = WritePayload::device(Box::new(Mine(vec![0; 3])));
        p.destination().copy_from_slice(b"123");
        let ptr = p.as_slice().as_ptr();
        let b = p.into_bytes();
        assert_eq!((&b[..], b.as_ptr()), (&b"123"[..], ptr));
    }
}
