//! Transmission-phase replies: simple replies and structured reply chunks,
//! encoded into a fixed header buffer plus a shared payload, so a reply is
//! built without copying its data or allocating for its header.

use bytes::Bytes;

use crate::device::Extent;
use crate::proto::{self, reply as r, Errno};

/// The longest header part: a structured chunk (20) plus an
/// `OFFSET_HOLE` offset and size (12).
const HEAD_CAP: usize = 32;

/// One reply ready for the socket: header bytes, then `body`. `hold` keeps
/// whatever must live until the reply is written (the connection's budget).
pub struct Outgoing<H = ()> {
    head: [u8; HEAD_CAP],
    head_len: u8,
    body: Bytes,
    pub(crate) _hold: Option<H>,
}

impl<H> Outgoing<H> {
    pub fn head(&self) -> &[u8] {
        &self.head[..usize::from(self.head_len)]
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    pub fn len(&self) -> usize {
        self.head().len() + self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Attaches something to release once the reply has been written.
    pub fn holding<H2>(self, hold: H2) -> Outgoing<H2> {
        Outgoing { head: self.head, head_len: self.head_len, body: self.body, _hold: Some(hold) }
    }

    /// The whole reply as one buffer (for tests).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = self.head().to_vec();
        v.extend_from_slice(&self.body);
        v
    }
}

struct Head {
    buf: [u8; HEAD_CAP],
    len: usize,
}

impl Head {
    fn new() -> Self {
        Head { buf: [0; HEAD_CAP], len: 0 }
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn finish(self, body: Bytes) -> Outgoing {
        Outgoing { head: self.buf, head_len: self.len as u8, body, _hold: None }
    }
}

/// A simple reply; `data` follows only for a successful read.
pub fn simple(handle: u64, error: Option<Errno>, data: Bytes) -> Outgoing {
    let mut h = Head::new();
    h.put(&proto::SIMPLE_REPLY_MAGIC.to_be_bytes());
    h.put(&error.map_or(0, Errno::value).to_be_bytes());
    h.put(&handle.to_be_bytes());
    h.finish(data)
}

fn chunk_header(h: &mut Head, flags: u16, kind: u16, handle: u64, length: u32) {
    h.put(&proto::STRUCTURED_REPLY_MAGIC.to_be_bytes());
    h.put(&flags.to_be_bytes());
    h.put(&kind.to_be_bytes());
    h.put(&handle.to_be_bytes());
    h.put(&length.to_be_bytes());
}

/// A final `NBD_REPLY_TYPE_OFFSET_DATA` chunk. `data` must be non-empty and
/// no longer than `u32::MAX - 8` (requests are capped far below that).
pub fn offset_data(handle: u64, offset: u64, data: Bytes) -> Outgoing {
    let mut h = Head::new();
    let len = u32::try_from(data.len() + 8).unwrap_or(u32::MAX);
    chunk_header(&mut h, r::FLAG_DONE, r::TYPE_OFFSET_DATA, handle, len);
    h.put(&offset.to_be_bytes());
    h.finish(data)
}

/// A final `NBD_REPLY_TYPE_OFFSET_HOLE` chunk: `size` (non-zero) bytes at
/// `offset` read as zeroes.
pub fn offset_hole(handle: u64, offset: u64, size: u32) -> Outgoing {
    let mut h = Head::new();
    chunk_header(&mut h, r::FLAG_DONE, r::TYPE_OFFSET_HOLE, handle, 12);
    h.put(&offset.to_be_bytes());
    h.put(&size.to_be_bytes());
    h.finish(Bytes::new())
}

/// The final `NBD_REPLY_TYPE_NONE` chunk: success with no payload.
pub fn none(handle: u64) -> Outgoing {
    let mut h = Head::new();
    chunk_header(&mut h, r::FLAG_DONE, r::TYPE_NONE, handle, 0);
    h.finish(Bytes::new())
}

/// A final `NBD_REPLY_TYPE_ERROR` chunk with a short message.
pub fn error_chunk(handle: u64, error: Errno, message: &'static str) -> Outgoing {
    let msg = &message.as_bytes()[..message.len().min(proto::MAX_STRING_LEN)];
    let mut h = Head::new();
    chunk_header(&mut h, r::FLAG_DONE, r::TYPE_ERROR, handle, 6 + msg.len() as u32);
    h.put(&error.value().to_be_bytes());
    h.put(&(msg.len() as u16).to_be_bytes());
    h.finish(Bytes::from_static(msg))
}

/// Most descriptors in one block-status chunk; the protocol lets the
/// server answer fewer than the whole range, and clients ask again.
pub const MAX_DESCRIPTORS: usize = 4096;

/// Turns device extents into `base:allocation` descriptors for a request of
/// `length` bytes: zero-length extents dropped, equal neighbours merged,
/// the total clipped to the request, and a single descriptor with REQ_ONE
/// ("NBD_REPLY_TYPE_BLOCK_STATUS").
pub fn descriptors(extents: &[Extent], length: u32, req_one: bool) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    let mut left = u64::from(length);
    for e in extents {
        if left == 0 {
            break;
        }
        let take = e.length.min(left);
        if take == 0 {
            continue;
        }
        left -= take;
        // `take` ≤ `length`, a u32.
        let take = take as u32;
        match out.last_mut() {
            Some((len, flags)) if *flags == e.flags() => *len += take,
            _ => {
                if out.len() == MAX_DESCRIPTORS {
                    break;
                }
                out.push((take, e.flags()));
            }
        }
    }
    if out.is_empty() {
        // A device that says nothing: status 0 ("allocated or unknown") is
        // always a safe answer.
        out.push((length, 0));
    }
    if req_one {
        out.truncate(1);
    }
    out
}

/// A final `NBD_REPLY_TYPE_BLOCK_STATUS` chunk for one context.
pub fn block_status(handle: u64, context: u32, descriptors: &[(u32, u32)]) -> Outgoing {
    let mut body = Vec::with_capacity(descriptors.len() * 8);
    for (len, flags) in descriptors {
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(&flags.to_be_bytes());
    }
    let mut h = Head::new();
    chunk_header(&mut h, r::FLAG_DONE, r::TYPE_BLOCK_STATUS, handle, 4 + body.len() as u32);
    h.put(&context.to_be_bytes());
    h.finish(Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(length: u64, hole: bool) -> Extent {
        Extent { length, hole, zero: hole }
    }

    #[test]
    fn simple_reply_layout() {
        let o = simple(0x1122, Some(Errno::EIO), Bytes::new());
        assert_eq!(o.to_vec(), [0x67, 0x44, 0x66, 0x98, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0x11, 0x22]);
    }

    #[test]
    fn offset_data_length_counts_offset_and_data() {
        let o = offset_data(1, 512, Bytes::from_static(b"abcd"));
        let v = o.to_vec();
        assert_eq!(&v[0..4], &proto::STRUCTURED_REPLY_MAGIC.to_be_bytes());
        assert_eq!(&v[4..6], &r::FLAG_DONE.to_be_bytes());
        assert_eq!(&v[6..8], &r::TYPE_OFFSET_DATA.to_be_bytes());
        assert_eq!(&v[16..20], &12u32.to_be_bytes());
        assert_eq!(&v[20..28], &512u64.to_be_bytes());
        assert_eq!(&v[28..], b"abcd");
    }

    #[test]
    fn offset_hole_layout() {
        let v = offset_hole(3, 4096, 8192).to_vec();
        assert_eq!(v.len(), 32);
        assert_eq!(&v[6..8], &r::TYPE_OFFSET_HOLE.to_be_bytes());
        assert_eq!(&v[16..20], &12u32.to_be_bytes());
        assert_eq!(&v[20..28], &4096u64.to_be_bytes());
        assert_eq!(&v[28..32], &8192u32.to_be_bytes());
    }

    #[test]
    fn error_chunk_carries_errno_and_message() {
        let v = error_chunk(9, Errno::EINVAL, "bad").to_vec();
        assert_eq!(&v[6..8], &r::TYPE_ERROR.to_be_bytes());
        assert_eq!(&v[16..20], &9u32.to_be_bytes());
        assert_eq!(&v[20..24], &22u32.to_be_bytes());
        assert_eq!(&v[24..26], &3u16.to_be_bytes());
        assert_eq!(&v[26..], b"bad");
    }

    #[test]
    fn descriptors_merge_clip_and_respect_req_one() {
        let e = [ext(100, false), ext(0, true), ext(50, false), ext(1000, true)];
        assert_eq!(descriptors(&e, 400, false), vec![(150, 0), (250, 3)]);
        assert_eq!(descriptors(&e, 400, true), vec![(150, 0)]);
        assert_eq!(descriptors(&e, 120, true), vec![(120, 0)]);
        assert_eq!(descriptors(&[], 64, false), vec![(64, 0)]);
    }
}
