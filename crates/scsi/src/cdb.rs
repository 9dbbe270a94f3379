//! Big-endian field access for CDBs and parameter lists. Callers have already checked the
//! CDB length against the command table; a short slice reads as zeros rather than panicking.

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([get(b, at), get(b, at + 1)])
}

pub(crate) fn be24(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([0, get(b, at), get(b, at + 1), get(b, at + 2)])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([get(b, at), get(b, at + 1), get(b, at + 2), get(b, at + 3)])
}

pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    (u64::from(be32(b, at)) << 32) | u64::from(be32(b, at + 4))
}

pub(crate) fn get(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

/// Append big-endian values to a response buffer.
pub(crate) trait PutBe {
    fn put16(&mut self, v: u16);
    fn put32(&mut self, v: u32);
    fn put64(&mut self, v: u64);
}

impl PutBe for Vec<u8> {
    fn put16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
}

/// Write a big-endian u16 / u32 length field in place.
pub(crate) fn set16(b: &mut [u8], at: usize, v: u16) {
    if let Some(d) = b.get_mut(at..at + 2) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

pub(crate) fn set32(b: &mut [u8], at: usize, v: u32) {
    if let Some(d) = b.get_mut(at..at + 4) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

/// Clamp a length to a field's width (a response never exceeds it in practice).
pub(crate) fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

pub(crate) fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
