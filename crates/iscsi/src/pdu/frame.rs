//! Finding PDU boundaries in a byte stream (RFC 7143 §11.2): BHS, AHS, header digest,
//! data segment with padding, data digest.

use std::ops::Range;

use super::{be32, padded, Digests, BHS_LEN};
use crate::digest::crc32c;

/// Where the parts of one complete PDU lie in the buffer it was found in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    /// Bytes the whole PDU occupies, digests and padding included.
    pub total: usize,
    pub ahs: Range<usize>,
    /// The data segment without its padding.
    pub data: Range<usize>,
    /// False when a data digest was in force and did not match (RFC 7143 §7.8: the PDU is
    /// rejected but the connection survives, since the header and so the length was sound).
    pub data_digest_ok: bool,
}

/// Result of looking at the front of a receive buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    /// The buffer holds less than one PDU; at least `need` bytes in all are required.
    Incomplete {
        need: usize,
    },
    Complete(FrameLayout),
}

/// Conditions after which the stream cannot be trusted to find the next PDU.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// header digest mismatch: the lengths in the header cannot be trusted (RFC 7143 §7.8)
    #[error("header digest mismatch (expected {expected:#010x}, received {received:#010x})")]
    HeaderDigest { expected: u32, received: u32 },
    /// data segment longer than the receiver declared it accepts (RFC 7143 §13.12)
    #[error("data segment of {len} bytes exceeds the limit of {max}")]
    DataTooLong { len: u32, max: u32 },
}

/// Inspects `buf` and, if it starts with a whole PDU, says where its parts are.
///
/// `max_data` is the largest data segment this side accepts (our
/// MaxRecvDataSegmentLength, or the login limit during login).
pub fn frame_layout(buf: &[u8], digests: Digests, max_data: u32) -> Result<Framing, FrameError> {
    if buf.len() < BHS_LEN {
        return Ok(Framing::Incomplete { need: BHS_LEN });
    }
    let ahs_len = usize::from(buf[4]) * 4;
    // DataSegmentLength is bytes 5..8 (RFC 7143 §11.2.1.5).
    let dsl = be32(buf, 4) & 0x00ff_ffff;
    if dsl > max_data {
        return Err(FrameError::DataTooLong { len: dsl, max: max_data });
    }
    let header_end = BHS_LEN + ahs_len;
    let hd_len = if digests.header { 4 } else { 0 };
    let data_start = header_end + hd_len;
    let data_len = dsl as usize;
    let dd_len = if digests.data && data_len > 0 { 4 } else { 0 };
    let total = data_start + padded(data_len) + dd_len;
    if buf.len() < data_start {
        return Ok(Framing::Incomplete { need: total });
    }
    if digests.header {
        // The header digest covers BHS and AHS (RFC 7143 §11.2.4).
        let expected = crc32c(&buf[..header_end]);
        let received =
            u32::from_le_bytes([buf[header_end], buf[header_end + 1], buf[header_end + 2], buf[header_end + 3]]);
        if expected != received {
            return Err(FrameError::HeaderDigest { expected, received });
        }
    }
    if buf.len() < total {
        return Ok(Framing::Incomplete { need: total });
    }
    let data_digest_ok = if dd_len > 0 {
        // The data digest covers the data segment and its padding (RFC 7143 §11.2.4).
        let padded_end = data_start + padded(data_len);
        let expected = crc32c(&buf[data_start..padded_end]);
        let received =
            u32::from_le_bytes([buf[padded_end], buf[padded_end + 1], buf[padded_end + 2], buf[padded_end + 3]]);
        expected == received
    } else {
        true
    };
    Ok(Framing::Complete(FrameLayout {
        total,
        ahs: BHS_LEN..header_end,
        data: data_start..data_start + data_len,
        data_digest_ok,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pdu(ahs_words: u8, data: &[u8], digests: Digests) -> Vec<u8> {
        let mut v = vec![0u8; BHS_LEN];
        v[4] = ahs_words;
        let dsl = data.len() as u32;
        v[5..8].copy_from_slice(&dsl.to_be_bytes()[1..]);
        v.resize(v.len() + usize::from(ahs_words) * 4, 0xaa);
        if digests.header {
            let d = crc32c(&v);
            v.extend_from_slice(&d.to_le_bytes());
        }
        let start = v.len();
        v.extend_from_slice(data);
        v.resize(start + padded(data.len()), 0);
        if digests.data && !data.is_empty() {
            let d = crc32c(&v[start..]);
            v.extend_from_slice(&d.to_le_bytes());
        }
        v
    }

    #[test]
    fn short_buffer_asks_for_a_whole_bhs() {
        assert_eq!(frame_layout(&[0; 10], Digests::default(), 8192), Ok(Framing::Incomplete { need: BHS_LEN }));
    }

    #[test]
    fn data_segment_is_padded_to_four_bytes() {
        let v = pdu(0, b"hello", Digests::default());
        let Ok(Framing::Complete(l)) = frame_layout(&v, Digests::default(), 8192) else {
            panic!("complete PDU not framed");
        };
        assert_eq!(l.total, 48 + 8);
        assert_eq!(&v[l.data], b"hello");
    }

    #[test]
    fn corrupted_header_digest_is_fatal() {
        let d = Digests { header: true, data: false };
        let mut v = pdu(1, b"", d);
        v[20] ^= 1;
        assert!(matches!(frame_layout(&v, d, 8192), Err(FrameError::HeaderDigest { .. })));
    }

    #[test]
    fn corrupted_data_digest_is_reported_not_fatal() {
        let d = Digests { header: true, data: true };
        let mut v = pdu(0, b"abcdefg", d);
        v[48 + 4 + 2] ^= 0x40;
        let Ok(Framing::Complete(l)) = frame_layout(&v, d, 8192) else {
            panic!("complete PDU not framed");
        };
        assert!(!l.data_digest_ok);
        assert_eq!(l.total, v.len());
    }

    #[test]
    fn oversized_data_segment_is_refused_before_it_is_read() {
        let mut v = vec![0u8; BHS_LEN];
        v[5..8].copy_from_slice(&[0x01, 0x00, 0x00]);
        assert_eq!(frame_layout(&v, Digests::default(), 8192), Err(FrameError::DataTooLong { len: 65536, max: 8192 }));
    }

    proptest! {
        #[test]
        fn framing_finds_exactly_the_pdu_that_was_built(
            ahs in 0u8..4, data in proptest::collection::vec(any::<u8>(), 0..300),
            hd in any::<bool>(), dd in any::<bool>(), tail in proptest::collection::vec(any::<u8>(), 0..60)
        ) {
            let d = Digests { header: hd, data: dd };
            let mut v = pdu(ahs, &data, d);
            let len = v.len();
            v.extend_from_slice(&tail);
            for cut in [0, 47, len - 1] {
                let r = frame_layout(&v[..cut], d, 8192);
                let ok = matches!(r, Ok(Framing::Incomplete { need }) if need > cut);
                prop_assert!(ok);
            }
            let Ok(Framing::Complete(l)) = frame_layout(&v, d, 8192) else {
                return Err(TestCaseError::fail("not framed"));
            };
            prop_assert_eq!(l.total, len);
            prop_assert!(l.data_digest_ok);
            prop_assert_eq!(&v[l.data], &data[..]);
        }

        #[test]
        fn framing_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..200), hd in any::<bool>(), dd in any::<bool>()) {
            let _ = frame_layout(&buf, Digests { header: hd, data: dd }, 1 << 24);
        }
    }
}
