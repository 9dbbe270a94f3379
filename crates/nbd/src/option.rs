//! Parsing of handshake-phase client messages: pure functions over byte
//! slices, so they can be fuzzed and property-tested.

use crate::proto::{self, opt};

/// Why a handshake message could not be taken.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The message is shorter than its fixed part.
    #[error("truncated handshake message")]
    Truncated,
    /// The option did not start with `IHAVEOPT`.
    #[error("bad option magic {0:#x}")]
    BadMagic(u64),
    /// The client set flags the server does not know ("Client flags").
    #[error("unknown client flags {0:#x}")]
    UnknownClientFlags(u32),
}

/// Client flags as received after the server greeting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientFlags {
    pub fixed_newstyle: bool,
    pub no_zeroes: bool,
}

/// Decodes the 32-bit client flags; unknown bits are an error, after which
/// the server MUST drop the connection.
pub fn parse_client_flags(bytes: &[u8]) -> Result<ClientFlags, HandshakeError> {
    let raw = be_u32(bytes, 0).ok_or(HandshakeError::Truncated)?;
    if raw & !proto::client_flags::KNOWN != 0 {
        return Err(HandshakeError::UnknownClientFlags(raw));
    }
    Ok(ClientFlags {
        fixed_newstyle: raw & proto::client_flags::FIXED_NEWSTYLE != 0,
        no_zeroes: raw & proto::client_flags::NO_ZEROES != 0,
    })
}

/// The fixed part of a client option: `IHAVEOPT`, option code, data length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionHeader {
    pub option: u32,
    pub length: u32,
}

/// Decodes the 16-byte option header.
pub fn parse_option_header(bytes: &[u8]) -> Result<OptionHeader, HandshakeError> {
    let magic = be_u64(bytes, 0).ok_or(HandshakeError::Truncated)?;
    if magic != proto::IHAVEOPT {
        return Err(HandshakeError::BadMagic(magic));
    }
    let option = be_u32(bytes, 8).ok_or(HandshakeError::Truncated)?;
    let length = be_u32(bytes, 12).ok_or(HandshakeError::Truncated)?;
    Ok(OptionHeader { option, length })
}

/// A client option with its data decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOption<'a> {
    ExportName(&'a str),
    Abort,
    List,
    StartTls,
    /// `NBD_OPT_INFO` (`go == false`) or `NBD_OPT_GO`.
    Info {
        go: bool,
        name: &'a str,
        requests: Vec<u16>,
    },
    StructuredReply,
    /// `NBD_OPT_LIST_META_CONTEXT` (`set == false`) or `..._SET_...`.
    MetaContext {
        set: bool,
        name: &'a str,
        queries: Vec<&'a str>,
    },
    Unknown(u32),
}

/// Why option data was rejected; each maps to an option error reply.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum OptionError {
    /// Syntactically invalid (`NBD_REP_ERR_INVALID`).
    #[error("invalid option data: {0}")]
    Invalid(&'static str),
    /// More queries or information requests than the server handles
    /// (`NBD_REP_ERR_TOO_BIG`).
    #[error("option asks for too much: {0}")]
    TooBig(&'static str),
}

/// Most metadata-context queries taken in one option.
pub const MAX_QUERIES: usize = 64;

/// Decodes the data of option `code` as defined in "Option types".
pub fn parse_option(code: u32, data: &[u8]) -> Result<ClientOption<'_>, OptionError> {
    match code {
        opt::EXPORT_NAME => Ok(ClientOption::ExportName(string(data)?)),
        // The server SHOULD ignore data sent with NBD_OPT_ABORT.
        opt::ABORT => Ok(ClientOption::Abort),
        opt::LIST => no_data(data, ClientOption::List),
        opt::STARTTLS => no_data(data, ClientOption::StartTls),
        opt::STRUCTURED_REPLY => no_data(data, ClientOption::StructuredReply),
        opt::INFO | opt::GO => parse_info(code == opt::GO, data),
        opt::LIST_META_CONTEXT | opt::SET_META_CONTEXT => parse_meta(code == opt::SET_META_CONTEXT, data),
        other => Ok(ClientOption::Unknown(other)),
    }
}

fn no_data(data: &[u8], option: ClientOption<'static>) -> Result<ClientOption<'static>, OptionError> {
    if data.is_empty() {
        Ok(option)
    } else {
        Err(OptionError::Invalid("option takes no data"))
    }
}

/// Data of INFO and GO: name length, name, count of information requests,
/// the requests.
fn parse_info(go: bool, data: &[u8]) -> Result<ClientOption<'_>, OptionError> {
    let mut r = Reader::new(data);
    let name = r.string_u32()?;
    let count = r.u16().ok_or(OptionError::Invalid("missing information count"))?;
    let mut requests = Vec::with_capacity(usize::from(count).min(16));
    for _ in 0..count {
        let item = r.u16().ok_or(OptionError::Invalid("information list too short"))?;
        requests.push(item);
    }
    r.finish()?;
    Ok(ClientOption::Info { go, name, requests })
}

/// Data of LIST_META_CONTEXT and SET_META_CONTEXT: export name, query count,
/// length-prefixed queries.
fn parse_meta(set: bool, data: &[u8]) -> Result<ClientOption<'_>, OptionError> {
    let mut r = Reader::new(data);
    let name = r.string_u32()?;
    let count = r.u32().ok_or(OptionError::Invalid("missing query count"))?;
    // Each query takes at least its 4-byte length, so a count larger than
    // the data left is a syntax error, not a reason to allocate.
    if u64::from(count) * 4 > r.remaining() as u64 {
        return Err(OptionError::Invalid("query count exceeds option length"));
    }
    if count as usize > MAX_QUERIES {
        return Err(OptionError::TooBig("too many metadata context queries"));
    }
    let mut queries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        queries.push(r.string_u32()?);
    }
    r.finish()?;
    Ok(ClientOption::MetaContext { set, name, queries })
}

/// A protocol string: UTF-8, no NUL, at most 4096 bytes ("Conventions").
fn string(bytes: &[u8]) -> Result<&str, OptionError> {
    if bytes.len() > proto::MAX_STRING_LEN {
        return Err(OptionError::Invalid("string longer than 4096 bytes"));
    }
    let s = std::str::from_utf8(bytes).map_err(|_| OptionError::Invalid("string is not UTF-8"))?;
    if s.contains('\0') {
        return Err(OptionError::Invalid("string contains NUL"));
    }
    Ok(s)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string_u32(&mut self) -> Result<&'a str, OptionError> {
        let len = self.u32().ok_or(OptionError::Invalid("missing string length"))?;
        let bytes = usize::try_from(len)
            .ok()
            .and_then(|n| self.take(n))
            .ok_or(OptionError::Invalid("string runs past option data"))?;
        string(bytes)
    }

    fn finish(&self) -> Result<(), OptionError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(OptionError::Invalid("trailing bytes in option data"))
        }
    }
}

pub(crate) fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

pub(crate) fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_be_bytes(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_data(name: &str, reqs: &[u16]) -> Vec<u8> {
        let mut v = (name.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(&(reqs.len() as u16).to_be_bytes());
        for r in reqs {
            v.extend_from_slice(&r.to_be_bytes());
        }
        v
    }

    #[test]
    fn unknown_client_flag_is_rejected() {
        assert_eq!(parse_client_flags(&4u32.to_be_bytes()), Err(HandshakeError::UnknownClientFlags(4)));
        let f = parse_client_flags(&3u32.to_be_bytes()).unwrap();
        assert!(f.fixed_newstyle && f.no_zeroes);
    }

    #[test]
    fn option_header_needs_ihaveopt() {
        let mut h = proto::IHAVEOPT.to_be_bytes().to_vec();
        h.extend_from_slice(&7u32.to_be_bytes());
        h.extend_from_slice(&9u32.to_be_bytes());
        assert_eq!(parse_option_header(&h), Ok(OptionHeader { option: 7, length: 9 }));
        assert_eq!(parse_option_header(&h[..10]), Err(HandshakeError::Truncated));
        h[0] ^= 1;
        assert!(matches!(parse_option_header(&h), Err(HandshakeError::BadMagic(_))));
    }

    #[test]
    fn go_data_decodes_name_and_requests() {
        let d = info_data("default", &[3, 1]);
        assert_eq!(
            parse_option(opt::GO, &d),
            Ok(ClientOption::Info { go: true, name: "default", requests: vec![3, 1] })
        );
    }

    #[test]
    fn info_with_trailing_or_short_data_is_invalid() {
        let mut d = info_data("x", &[0]);
        d.push(0);
        assert!(matches!(parse_option(opt::INFO, &d), Err(OptionError::Invalid(_))));
        let d = info_data("x", &[0, 1]);
        assert!(matches!(parse_option(opt::INFO, &d[..d.len() - 1]), Err(OptionError::Invalid(_))));
        // A name length pointing past the data.
        let mut d = 100u32.to_be_bytes().to_vec();
        d.extend_from_slice(b"abc\0\0");
        assert!(matches!(parse_option(opt::INFO, &d), Err(OptionError::Invalid(_))));
    }

    #[test]
    fn list_with_data_is_invalid_and_abort_ignores_data() {
        assert!(matches!(parse_option(opt::LIST, b"x"), Err(OptionError::Invalid(_))));
        assert_eq!(parse_option(opt::ABORT, b"junk"), Ok(ClientOption::Abort));
    }

    #[test]
    fn meta_context_queries_decode() {
        let mut d = 0u32.to_be_bytes().to_vec();
        d.extend_from_slice(&2u32.to_be_bytes());
        for q in ["base:allocation", "qemu:dirty"] {
            d.extend_from_slice(&(q.len() as u32).to_be_bytes());
            d.extend_from_slice(q.as_bytes());
        }
        assert_eq!(
            parse_option(opt::SET_META_CONTEXT, &d),
            Ok(ClientOption::MetaContext { set: true, name: "", queries: vec!["base:allocation", "qemu:dirty"] })
        );
    }

    #[test]
    fn meta_context_huge_query_count_is_rejected_without_allocating() {
        let mut d = 0u32.to_be_bytes().to_vec();
        d.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(parse_option(opt::LIST_META_CONTEXT, &d), Err(OptionError::Invalid(_))));
    }

    #[test]
    fn strings_with_nul_or_bad_utf8_are_invalid() {
        assert!(parse_option(opt::EXPORT_NAME, b"a\0b").is_err());
        assert!(parse_option(opt::EXPORT_NAME, &[0xff, 0xfe]).is_err());
        assert!(parse_option(opt::EXPORT_NAME, &[b'a'; 4097]).is_err());
        assert_eq!(parse_option(opt::EXPORT_NAME, b""), Ok(ClientOption::ExportName("")));
    }
}
