//! Transmission-phase requests: decoding of the 28-byte header and the
//! checks that turn it into a typed [`Command`] or an NBD error value. Pure
//! functions over bytes and the negotiated [`Session`].

use crate::handshake::Session;
use crate::option::{be_u32, be_u64};
use crate::proto::{self, cmd, cmd_flags as cf, transmission_flags as tf, Errno};

/// Why a request header could not be decoded; both end the connection.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    #[error("truncated request header")]
    Truncated,
    /// "Request message": the magic is fixed; anything else means the
    /// stream is out of step and cannot be resynchronised.
    #[error("bad request magic {0:#x}")]
    BadMagic(u32),
}

/// A request header as sent by the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    pub flags: u16,
    pub kind: u16,
    pub handle: u64,
    pub offset: u64,
    pub length: u32,
}

impl RequestHeader {
    /// Encodes the header (used by tests and tools that act as clients).
    pub fn encode(&self) -> [u8; proto::REQUEST_HEADER_LEN] {
        let mut b = [0u8; proto::REQUEST_HEADER_LEN];
        b[0..4].copy_from_slice(&proto::REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.kind.to_be_bytes());
        b[8..16].copy_from_slice(&self.handle.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    /// Bytes of payload that follow this header on the wire: only
    /// `NBD_CMD_WRITE` carries data, whatever else is wrong with it.
    pub fn payload_len(&self) -> u32 {
        if self.kind == cmd::WRITE {
            self.length
        } else {
            0
        }
    }
}

/// Decodes a request header.
pub fn parse_request_header(bytes: &[u8]) -> Result<RequestHeader, RequestError> {
    let magic = be_u32(bytes, 0).ok_or(RequestError::Truncated)?;
    if magic != proto::REQUEST_MAGIC {
        return Err(RequestError::BadMagic(magic));
    }
    if bytes.len() < proto::REQUEST_HEADER_LEN {
        return Err(RequestError::Truncated);
    }
    let flags = u16::from_be_bytes([bytes[4], bytes[5]]);
    let kind = u16::from_be_bytes([bytes[6], bytes[7]]);
    let handle = be_u64(bytes, 8).ok_or(RequestError::Truncated)?;
    let offset = be_u64(bytes, 16).ok_or(RequestError::Truncated)?;
    let length = be_u32(bytes, 24).ok_or(RequestError::Truncated)?;
    Ok(RequestHeader { flags, kind, handle, offset, length })
}

/// A request that passed every check; offsets and lengths are in range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Read { offset: u64, length: u32 },
    Write { offset: u64, length: u32, fua: bool },
    Disconnect,
    Flush,
    Trim { offset: u64, length: u32, fua: bool },
    WriteZeroes { offset: u64, length: u32, no_hole: bool, fast: bool, fua: bool },
    BlockStatus { offset: u64, length: u32, req_one: bool },
}

const KNOWN_FLAGS: u16 = cf::FUA | cf::NO_HOLE | cf::DF | cf::REQ_ONE | cf::FAST_ZERO;

/// Checks a request against the session ("Request types", "Error values",
/// "Block size constraints") and returns the command or the error value to
/// reply with.
pub fn validate(h: &RequestHeader, s: &Session) -> Result<Command, Errno> {
    let has = |flag: u16| s.flags & flag != 0;
    let read_only = has(tf::READ_ONLY);
    let fua = h.flags & cf::FUA != 0;
    // Unknown flags, and flags not documented for the command, are EINVAL.
    if h.flags & !KNOWN_FLAGS != 0 || (fua && !has(tf::SEND_FUA)) {
        return Err(Errno::EINVAL);
    }
    let allow = |extra: u16| -> Result<(), Errno> {
        if h.flags & !(cf::FUA | extra) != 0 {
            Err(Errno::EINVAL)
        } else {
            Ok(())
        }
    };
    match h.kind {
        cmd::READ => {
            allow(if s.structured { cf::DF } else { 0 })?;
            range(h, s, Errno::EINVAL)?;
            max_block(h, s)?;
            Ok(Command::Read { offset: h.offset, length: h.length })
        }
        cmd::WRITE => {
            allow(0)?;
            if read_only {
                return Err(Errno::EPERM);
            }
            max_block(h, s)?;
            // A write past the end is ENOSPC ("Error values").
            range(h, s, Errno::ENOSPC)?;
            Ok(Command::Write { offset: h.offset, length: h.length, fua })
        }
        cmd::DISC => Ok(Command::Disconnect),
        cmd::FLUSH => {
            allow(0)?;
            if !has(tf::SEND_FLUSH) {
                return Err(Errno::EINVAL);
            }
            Ok(Command::Flush)
        }
        cmd::TRIM => {
            allow(0)?;
            if read_only {
                return Err(Errno::EPERM);
            }
            if !has(tf::SEND_TRIM) {
                return Err(Errno::EINVAL);
            }
            range(h, s, Errno::EINVAL)?;
            Ok(Command::Trim { offset: h.offset, length: h.length, fua })
        }
        cmd::WRITE_ZEROES => {
            let fast_allowed = if has(tf::SEND_FAST_ZERO) { cf::FAST_ZERO } else { 0 };
            allow(cf::NO_HOLE | fast_allowed)?;
            if read_only {
                return Err(Errno::EPERM);
            }
            if !has(tf::SEND_WRITE_ZEROES) {
                return Err(Errno::EINVAL);
            }
            range(h, s, Errno::ENOSPC)?;
            Ok(Command::WriteZeroes {
                offset: h.offset,
                length: h.length,
                no_hole: h.flags & cf::NO_HOLE != 0,
                fast: h.flags & cf::FAST_ZERO != 0,
                fua,
            })
        }
        cmd::BLOCK_STATUS => {
            allow(cf::REQ_ONE)?;
            // Without a selected context, or for an empty range (there is no
            // descriptor of length zero to answer with), EINVAL.
            if !s.base_allocation || h.length == 0 {
                return Err(Errno::EINVAL);
            }
            range(h, s, Errno::EINVAL)?;
            Ok(Command::BlockStatus { offset: h.offset, length: h.length, req_one: h.flags & cf::REQ_ONE != 0 })
        }
        _ => Err(Errno::EINVAL),
    }
}

/// The range must lie inside the export and, when a minimum block size above
/// one is advertised, be aligned to it.
fn range(h: &RequestHeader, s: &Session, beyond_end: Errno) -> Result<(), Errno> {
    let min = u64::from(s.block.min);
    if !h.offset.is_multiple_of(min) || !u64::from(h.length).is_multiple_of(min) {
        return Err(Errno::EINVAL);
    }
    match h.offset.checked_add(u64::from(h.length)) {
        Some(end) if end <= s.size => Ok(()),
        _ => Err(beyond_end),
    }
}

fn max_block(h: &RequestHeader, s: &Session) -> Result<(), Errno> {
    if h.length > s.block.max {
        Err(Errno::EINVAL)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::BlockSizes;

    fn session(flags: u16, min: u32) -> Session {
        Session {
            export: 0,
            structured: true,
            base_allocation: true,
            flags: tf::HAS_FLAGS | flags,
            block: BlockSizes { min, preferred: 4096, max: 1 << 20 },
            size: 1 << 30,
        }
    }

    fn req(kind: u16, flags: u16, offset: u64, length: u32) -> RequestHeader {
        RequestHeader { flags, kind, handle: 7, offset, length }
    }

    const RW: u16 = tf::SEND_FLUSH | tf::SEND_FUA | tf::SEND_TRIM | tf::SEND_WRITE_ZEROES | tf::SEND_FAST_ZERO;

    #[test]
    fn header_roundtrips_and_bad_magic_is_refused() {
        let h = req(cmd::WRITE, cf::FUA, 4096, 512);
        let b = h.encode();
        assert_eq!(parse_request_header(&b), Ok(h));
        let mut bad = b;
        bad[3] ^= 0xff;
        assert!(matches!(parse_request_header(&bad), Err(RequestError::BadMagic(_))));
        assert_eq!(parse_request_header(&b[..20]), Err(RequestError::Truncated));
    }

    #[test]
    fn read_past_end_is_einval_and_write_past_end_is_enospc() {
        let s = session(RW, 1);
        assert_eq!(validate(&req(cmd::READ, 0, (1 << 30) - 512, 1024), &s), Err(Errno::EINVAL));
        assert_eq!(validate(&req(cmd::WRITE, 0, (1 << 30) - 512, 1024), &s), Err(Errno::ENOSPC));
        assert_eq!(validate(&req(cmd::READ, 0, u64::MAX, 1), &s), Err(Errno::EINVAL));
    }

    #[test]
    fn request_over_max_block_is_einval() {
        let s = session(RW, 1);
        assert_eq!(validate(&req(cmd::READ, 0, 0, (1 << 20) + 1), &s), Err(Errno::EINVAL));
        assert_eq!(validate(&req(cmd::WRITE, 0, 0, (1 << 20) + 1), &s), Err(Errno::EINVAL));
        // Trim is not bound by the maximum block size.
        assert!(validate(&req(cmd::TRIM, 0, 0, 1 << 24), &s).is_ok());
    }

    #[test]
    fn writes_to_read_only_export_are_eperm() {
        let s = session(tf::READ_ONLY | tf::SEND_FLUSH, 1);
        for kind in [cmd::WRITE, cmd::TRIM, cmd::WRITE_ZEROES] {
            assert_eq!(validate(&req(kind, 0, 0, 512), &s), Err(Errno::EPERM));
        }
        assert!(validate(&req(cmd::READ, 0, 0, 512), &s).is_ok());
    }

    #[test]
    fn flags_not_documented_for_the_command_are_einval() {
        let s = session(RW, 1);
        assert_eq!(validate(&req(cmd::READ, cf::REQ_ONE, 0, 512), &s), Err(Errno::EINVAL));
        assert_eq!(validate(&req(cmd::WRITE, cf::NO_HOLE, 0, 512), &s), Err(Errno::EINVAL));
        assert_eq!(validate(&req(cmd::READ, 1 << 9, 0, 512), &s), Err(Errno::EINVAL));
        assert!(validate(&req(cmd::WRITE_ZEROES, cf::NO_HOLE | cf::FAST_ZERO, 0, 512), &s).is_ok());
        let no_fua = session(tf::SEND_FLUSH, 1);
        assert_eq!(validate(&req(cmd::FLUSH, cf::FUA, 0, 0), &no_fua), Err(Errno::EINVAL));
    }

    #[test]
    fn unaligned_request_is_einval_when_min_block_is_set() {
        let s = session(RW, 512);
        assert_eq!(validate(&req(cmd::READ, 0, 100, 512), &s), Err(Errno::EINVAL));
        assert_eq!(validate(&req(cmd::WRITE, 0, 512, 100), &s), Err(Errno::EINVAL));
        assert!(validate(&req(cmd::READ, 0, 512, 1024), &s).is_ok());
    }

    #[test]
    fn block_status_needs_a_selected_context() {
        let mut s = session(RW, 1);
        assert!(validate(&req(cmd::BLOCK_STATUS, cf::REQ_ONE, 0, 4096), &s).is_ok());
        s.base_allocation = false;
        assert_eq!(validate(&req(cmd::BLOCK_STATUS, 0, 0, 4096), &s), Err(Errno::EINVAL));
    }

    #[test]
    fn unknown_command_is_einval() {
        assert_eq!(validate(&req(42, 0, 0, 0), &session(RW, 1)), Err(Errno::EINVAL));
        assert_eq!(validate(&req(cmd::CACHE, 0, 0, 0), &session(RW, 1)), Err(Errno::EINVAL));
    }

    #[test]
    fn only_write_carries_payload() {
        assert_eq!(req(cmd::WRITE, 0, 0, 99).payload_len(), 99);
        assert_eq!(req(cmd::WRITE_ZEROES, 0, 0, 99).payload_len(), 0);
    }
}
