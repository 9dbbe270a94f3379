//! TransportIDs (SPC-4 §7.6.4): how a PERSISTENT RESERVE OUT parameter list or READ FULL STATUS names an initiator
//! port. Two protocols are spoken here:
//!
//! - **iSCSI** (protocol identifier 5h, SPC-4 §7.6.4.6). FORMAT CODE 00b carries the iSCSI name of the initiator
//!   device; 01b the name of one initiator port: the iSCSI name, the separator `",i,0x"` and the ISID as twelve
//!   hexadecimal digits. Both are null-terminated, null-padded, and the ADDITIONAL LENGTH (bytes 2..3) is at least 20
//!   and a multiple of 4. iSCSI names compare without regard to case (RFC 3722), so a parsed name has its ASCII letters lowercased.
//! - **The stack's own nexus form** (protocol identifier Fh, "no specific protocol"): bytes 8..15 hold the 64-bit
//!   I_T nexus identity the logical unit sees; when ADDITIONAL LENGTH is above 20, bytes 24.. hold the TransportID
//!   (in its own protocol) of the initiator port behind that identity. Only the iSCSI glue and the disk exchange
//!   it; `docs/scsi-features.md` ("REGISTER AND MOVE") describes how identities and names are mapped.

/// PROTOCOL IDENTIFIER values (SPC-4 §7.6.1).
pub const PROTOCOL_ISCSI: u8 = 0x5;
pub const PROTOCOL_NONE: u8 = 0xF;

/// The longest iSCSI name (RFC 7143 §4.2.7.1: 223 bytes).
pub const MAX_ISCSI_NAME: usize = 223;

const SEPARATOR: &[u8] = b",i,0x";

/// One initiator port (or, without an ISID, initiator device) named by an iSCSI TransportID.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IscsiName {
    /// The iSCSI name, ASCII letters lowercased (as the iSCSI target keys its sessions).
    pub name: String,
    /// The initiator session identifier: present in FORMAT CODE 01b, absent in 00b.
    pub isid: Option<[u8; 6]>,
}

/// A parsed TransportID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportId {
    Iscsi(IscsiName),
    /// The stack's nexus form: the identity the logical unit sees, and the initiator port behind it when known.
    Nexus {
        id: u64,
        port: Option<IscsiName>,
    },
}

/// What is wrong with a TransportID; [`TransportIdError::field`] is the byte offset (within the TransportID) the
/// sense-key specific field pointer should name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportIdError {
    /// Fewer bytes than the TransportID says it has (or fewer than its header).
    Truncated,
    /// A protocol identifier this target does not speak.
    Protocol,
    /// A FORMAT CODE the protocol does not define.
    Format,
    /// ADDITIONAL LENGTH below 20 or not a multiple of 4.
    Length,
    /// An empty, overlong or unterminated iSCSI name, or one with characters iSCSI names never hold.
    Name,
    /// FORMAT CODE 01b without the `",i,0x"` separator.
    Separator,
    /// An ISID that is not twelve hexadecimal digits followed by a null.
    Isid,
    /// Non-zero bytes where the format has padding or reserved bytes.
    Reserved,
}

impl std::fmt::Display for TransportIdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Self::Truncated => "TransportID shorter than its length says",
            Self::Protocol => "unsupported protocol identifier",
            Self::Format => "unsupported format code",
            Self::Length => "additional length below 20 or not a multiple of 4",
            Self::Name => "invalid iSCSI name",
            Self::Separator => "missing \",i,0x\" separator",
            Self::Isid => "invalid ISID",
            Self::Reserved => "non-zero reserved or padding byte",
        };
        f.write_str(s)
    }
}

impl std::error::Error for TransportIdError {}

impl TransportIdError {
    /// The byte of the TransportID the error is about.
    pub fn field(self) -> u16 {
        match self {
            Self::Truncated | Self::Length => 2,
            Self::Protocol | Self::Format => 0,
            Self::Name | Self::Separator | Self::Isid | Self::Reserved => 4,
        }
    }
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

/// Whether `c` may appear in an iSCSI name as received here: printable, no separator comma, no space (RFC 3722
/// allows letters, digits, '-', '.', ':' and, after stringprep, other Unicode letters; anything printable but ','
/// and ' ' is accepted, so names from tools that do not normalize still work).
fn name_char(c: char) -> bool {
    !c.is_control() && c != ',' && c != ' '
}

fn parse_name(bytes: &[u8]) -> Result<String, TransportIdError> {
    let s = std::str::from_utf8(bytes).map_err(|_| TransportIdError::Name)?;
    if s.is_empty() || s.len() > MAX_ISCSI_NAME || !s.chars().all(name_char) {
        return Err(TransportIdError::Name);
    }
    Ok(s.to_ascii_lowercase())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parse the iSCSI body (bytes 4.. of the TransportID) in `format`.
fn parse_iscsi(format: u8, body: &[u8]) -> Result<IscsiName, TransportIdError> {
    let nul = body.iter().position(|&b| b == 0).ok_or(TransportIdError::Name)?;
    if body[nul..].iter().any(|&b| b != 0) {
        return Err(TransportIdError::Reserved);
    }
    let text = &body[..nul];
    match format {
        0 => Ok(IscsiName { name: parse_name(text)?, isid: None }),
        1 => {
            let sep = text.windows(SEPARATOR.len()).rposition(|w| w.eq_ignore_ascii_case(SEPARATOR));
            let sep = sep.ok_or(TransportIdError::Separator)?;
            let name = parse_name(&text[..sep])?;
            let digits = &text[sep + SEPARATOR.len()..];
            if digits.len() != 12 {
                return Err(TransportIdError::Isid);
            }
            let mut isid = [0u8; 6];
            for (i, pair) in digits.chunks(2).enumerate() {
                let (Some(h), Some(l)) = (hex(pair[0]), hex(pair[1])) else { return Err(TransportIdError::Isid) };
                isid[i] = h << 4 | l;
            }
            Ok(IscsiName { name, isid: Some(isid) })
        }
        _ => Err(TransportIdError::Format),
    }
}

/// Parse the TransportID at the start of `b`: the TransportID and how many bytes it took.
pub fn parse(b: &[u8]) -> Result<(TransportId, usize), TransportIdError> {
    let head = b.get(..4).ok_or(TransportIdError::Truncated)?;
    let format = head[0] >> 6;
    match head[0] & 0x0F {
        PROTOCOL_ISCSI => {
            if head[0] & 0x30 != 0 || head[1] != 0 {
                return Err(TransportIdError::Reserved);
            }
            let add = be16(head, 2);
            if add < 20 || !add.is_multiple_of(4) {
                return Err(TransportIdError::Length);
            }
            let body = b.get(4..4 + add).ok_or(TransportIdError::Truncated)?;
            Ok((TransportId::Iscsi(parse_iscsi(format, body)?), 4 + add))
        }
        PROTOCOL_NONE => {
            if format != 0 {
                return Err(TransportIdError::Format);
            }
            let add = be16(head, 2);
            if add < 20 || !add.is_multiple_of(4) {
                return Err(TransportIdError::Length);
            }
            let all = b.get(..4 + add).ok_or(TransportIdError::Truncated)?;
            let id = u64::from_be_bytes(all[8..16].try_into().expect("8 bytes"));
            let port = if add > 20 {
                match parse(&all[24..])? {
                    (TransportId::Iscsi(p), n) if 24 + n == all.len() => Some(p),
                    (TransportId::Iscsi(_), _) => return Err(TransportIdError::Length),
                    _ => return Err(TransportIdError::Protocol),
                }
            } else {
                None
            };
            Ok((TransportId::Nexus { id, port }, 4 + add))
        }
        _ => Err(TransportIdError::Protocol),
    }
}

impl IscsiName {
    /// The iSCSI TransportID: FORMAT CODE 01b with an ISID, 00b without.
    pub fn encode(&self) -> Vec<u8> {
        let mut text = self.name.as_bytes().to_vec();
        if let Some(isid) = self.isid {
            text.extend_from_slice(SEPARATOR);
            for b in isid {
                text.extend_from_slice(format!("{b:02x}").as_bytes());
            }
        }
        // Null-terminated, then padded to a multiple of 4, at least 20 bytes.
        let body = (text.len() + 1).next_multiple_of(4).max(20);
        let mut out = vec![0u8; 4 + body];
        out[0] = if self.isid.is_some() { 0x40 } else { 0 } | PROTOCOL_ISCSI;
        out[2..4].copy_from_slice(&u16::try_from(body).unwrap_or(u16::MAX).to_be_bytes());
        out[4..4 + text.len()].copy_from_slice(&text);
        out
    }

    /// The 64-bit I_T nexus identity the iSCSI target gives this initiator port (FNV-1a over the lowercased name and
    /// the ISID); without an ISID, that of ISID 0.
    pub fn nexus_id(&self) -> u64 {
        nexus_id(&self.name, &self.isid.unwrap_or_default())
    }
}

/// The 64-bit identity of the I_T nexus of initiator `name` with `isid` (FNV-1a over the lowercased name and the
/// ISID): stable across reconnects and restarts, so registrations made by an initiator port find it again.
pub fn nexus_id(name: &str, isid: &[u8; 6]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.to_ascii_lowercase().bytes().chain(isid.iter().copied()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl TransportId {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            TransportId::Iscsi(p) => p.encode(),
            TransportId::Nexus { id, port } => {
                let embedded = port.as_ref().map(IscsiName::encode).unwrap_or_default();
                let mut out = vec![0u8; 24];
                out[0] = PROTOCOL_NONE;
                out[2..4].copy_from_slice(&u16::try_from(20 + embedded.len()).unwrap_or(u16::MAX).to_be_bytes());
                out[8..16].copy_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&embedded);
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn port(name: &str, isid: Option<[u8; 6]>) -> IscsiName {
        IscsiName { name: name.into(), isid }
    }

    #[test]
    fn iscsi_formats_encode_as_spc4_lays_them_out() {
        let b = port("iqn.a", Some([0x00, 0x02, 0x3d, 0, 0, 1])).encode();
        assert_eq!(b[0], 0x45, "format 01b, protocol 5");
        let add = usize::from(u16::from_be_bytes([b[2], b[3]]));
        assert_eq!(add % 4, 0);
        assert_eq!(b.len(), 4 + add);
        assert_eq!(&b[4..4 + 22], b"iqn.a,i,0x00023d000001");
        assert!(b[26..].iter().all(|&x| x == 0));
        let d = port("iqn.a", None).encode();
        assert_eq!((d[0], d.len()), (0x05, 24), "format 00b, 20 bytes at least");
        assert_eq!(&d[4..10], b"iqn.a\0");
    }

    #[test]
    fn names_compare_without_case_and_parse_back() {
        let mut b = port("iqn.2026-12.test:a", Some([1, 2, 3, 4, 5, 6])).encode();
        b[4] = b'I';
        let (t, n) = parse(&b).unwrap();
        assert_eq!(n, b.len());
        assert_eq!(t, TransportId::Iscsi(port("iqn.2026-12.test:a", Some([1, 2, 3, 4, 5, 6]))));
        assert_eq!(port("IQN.X", Some([0; 6])).nexus_id(), nexus_id("iqn.x", &[0; 6]));
    }

    #[test]
    fn each_malformation_has_its_error() {
        let good = port("iqn.a", Some([0; 6])).encode();
        // `good` with one change made to it.
        let patched = |change: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            change(&mut b);
            b
        };
        let cases: Vec<(Vec<u8>, TransportIdError)> = vec![
            (good[..3].to_vec(), TransportIdError::Truncated),
            (good[..good.len() - 1].to_vec(), TransportIdError::Truncated),
            (patched(&|b| b[0] = 0x46), TransportIdError::Protocol),
            (patched(&|b| b[0] = 0x85), TransportIdError::Format),
            (patched(&|b| b[0] = 0x55), TransportIdError::Reserved),
            (patched(&|b| b[3] = 16), TransportIdError::Length),
            (patched(&|b| b[3] -= 2), TransportIdError::Length),
            (patched(&|b| b[9] = b';'), TransportIdError::Separator),
            (patched(&|b| b[15] = b'g'), TransportIdError::Isid),
            (patched(&|b| b[25] = 0), TransportIdError::Isid),
            (patched(&|b| b[27] = b'x'), TransportIdError::Reserved),
            (patched(&|b| b.iter_mut().skip(4).for_each(|x| *x = b'a')), TransportIdError::Name),
            (patched(&|b| b[4..9].fill(b' ')), TransportIdError::Name),
            (patched(&|b| b[4] = 0xFF), TransportIdError::Name),
        ];
        for (i, (bytes, want)) in cases.into_iter().enumerate() {
            assert_eq!(parse(&bytes).map(|_| ()), Err(want), "case {i}");
        }
        let long = port(&"a".repeat(MAX_ISCSI_NAME + 1), None).encode();
        assert_eq!(parse(&long).map(|_| ()), Err(TransportIdError::Name));
        let longest = port(&"a".repeat(MAX_ISCSI_NAME), Some([9; 6])).encode();
        assert!(parse(&longest).is_ok());
    }

    #[test]
    fn the_nexus_form_carries_the_identity_and_the_port_behind_it() {
        for t in [
            TransportId::Nexus { id: 0x1122_3344_5566_7788, port: None },
            TransportId::Nexus { id: 7, port: Some(port("iqn.b", Some([0, 1, 2, 3, 4, 5]))) },
        ] {
            let b = t.encode();
            assert_eq!(parse(&b), Ok((t.clone(), b.len())));
        }
        let mut nested = TransportId::Nexus { id: 1, port: None }.encode();
        let inner = nested.clone();
        nested[3] += inner.len() as u8;
        nested.extend_from_slice(&inner);
        assert_eq!(parse(&nested).map(|_| ()), Err(TransportIdError::Protocol), "no nesting");
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_reports_what_it_took(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok((t, n)) = parse(&bytes) {
                prop_assert!(n <= bytes.len());
                prop_assert_eq!(parse(&t.encode()).map(|(t, _)| t), Ok(t));
            }
        }

        #[test]
        fn iscsi_names_round_trip(name in "[a-z0-9.:-]{1,223}", isid in proptest::option::of(any::<[u8; 6]>())) {
            let p = IscsiName { name, isid };
            let b = p.encode();
            prop_assert_eq!(b.len() % 4, 0);
            prop_assert_eq!(parse(&b), Ok((TransportId::Iscsi(p.clone()), b.len())));
            let wrapped = TransportId::Nexus { id: p.nexus_id(), port: Some(p) };
            let w = wrapped.encode();
            prop_assert_eq!(parse(&w), Ok((wrapped, w.len())));
        }
    }
}
