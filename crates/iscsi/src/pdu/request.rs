//! Initiator PDUs parsed into typed values (RFC 7143 §11.3–§11.16).

use bytes::Bytes;

use super::{be16, be32, be64, opcode, RejectReason, Sn, BHS_LEN};

/// Login stages (RFC 7143 §11.12.3: CSG and NSG).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Security,
    Operational,
    FullFeature,
}

impl Stage {
    fn from_bits(v: u8) -> Option<Stage> {
        match v & 3 {
            0 => Some(Stage::Security),
            1 => Some(Stage::Operational),
            3 => Some(Stage::FullFeature),
            _ => None,
        }
    }

    pub fn bits(self) -> u8 {
        match self {
            Stage::Security => 0,
            Stage::Operational => 1,
            Stage::FullFeature => 3,
        }
    }
}

/// Why a framed PDU could not be turned into a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// opcode the target does not implement
    #[error("unsupported opcode {0:#04x}")]
    UnsupportedOpcode(u8),
    /// a field holds a value the RFC does not allow
    #[error("invalid field: {0}")]
    InvalidField(&'static str),
}

impl ParseError {
    /// The Reject reason that reports this error (RFC 7143 §11.17.1).
    pub fn reject_reason(&self) -> RejectReason {
        match self {
            ParseError::UnsupportedOpcode(_) => RejectReason::CommandNotSupported,
            ParseError::InvalidField(_) => RejectReason::InvalidPduField,
        }
    }
}

/// NOP-Out (RFC 7143 §11.18).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NopOut {
    pub immediate: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub cmd_sn: Sn,
    pub exp_stat_sn: Sn,
    pub data: Bytes,
}

/// SCSI Command (RFC 7143 §11.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScsiCommandPdu {
    pub immediate: bool,
    /// F: no unsolicited Data-Out follows (RFC 7143 §11.3.1.1).
    pub final_: bool,
    pub read: bool,
    pub write: bool,
    /// Task attribute bits (RFC 7143 §11.3.1.2).
    pub attr: u8,
    pub lun: u64,
    pub itt: u32,
    pub expected_len: u32,
    pub cmd_sn: Sn,
    pub exp_stat_sn: Sn,
    /// The CDB: 16 bytes from the BHS plus any extended-CDB AHS (RFC 7143 §11.2.2.3).
    pub cdb: Vec<u8>,
    pub immediate_data: Bytes,
}

/// Task Management Function Request (RFC 7143 §11.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskMgmtRequest {
    pub immediate: bool,
    pub function: u8,
    pub lun: u64,
    pub itt: u32,
    pub referenced_tag: u32,
    pub cmd_sn: Sn,
    pub exp_stat_sn: Sn,
    pub ref_cmd_sn: Sn,
}

/// Login Request (RFC 7143 §11.12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginRequest {
    pub transit: bool,
    pub cont: bool,
    pub csg: Stage,
    pub nsg: Option<Stage>,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: Sn,
    pub exp_stat_sn: Sn,
    pub data: Bytes,
}

/// Text Request (RFC 7143 §11.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextRequest {
    pub immediate: bool,
    pub final_: bool,
    pub cont: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub cmd_sn: Sn,
    pub exp_stat_sn: Sn,
    pub data: Bytes,
}

/// SCSI Data-Out (RFC 7143 §11.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataOut {
    pub final_: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub exp_stat_sn: Sn,
    pub data_sn: Sn,
    pub buffer_offset: u32,
    pub data: Bytes,
}

/// Logout Request (RFC 7143 §11.14).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoutRequest {
    pub immediate: bool,
    pub reason: u8,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: Sn,
    pub exp_stat_sn: Sn,
}

/// SNACK Request (RFC 7143 §11.16); only recognised, since the target runs at ERL 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snack {
    pub kind: u8,
    pub itt: u32,
}

/// Any PDU an initiator may send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    NopOut(NopOut),
    ScsiCommand(ScsiCommandPdu),
    TaskMgmt(TaskMgmtRequest),
    Login(LoginRequest),
    Text(TextRequest),
    DataOut(DataOut),
    Logout(LogoutRequest),
    Snack(Snack),
}

/// Type of the extended-CDB AHS (RFC 7143 §11.2.2.3).
const AHS_EXTENDED_CDB: u8 = 1;
/// Type of the bidirectional read data length AHS (RFC 7143 §11.2.2.4).
const AHS_BIDI_READ_LEN: u8 = 2;

impl Request {
    /// Parses a framed PDU: `bhs` is the 48-byte header, `ahs` the additional header
    /// segments, `data` the data segment without padding.
    pub fn parse(bhs: &[u8; BHS_LEN], ahs: &[u8], data: Bytes) -> Result<Request, ParseError> {
        let immediate = bhs[0] & 0x40 != 0;
        let op = bhs[0] & 0x3f;
        let flags = bhs[1];
        let final_ = flags & 0x80 != 0;
        let lun = be64(bhs, 8);
        let itt = be32(bhs, 16);
        let cmd_sn = Sn(be32(bhs, 24));
        let exp_stat_sn = Sn(be32(bhs, 28));
        match op {
            opcode::NOP_OUT => {
                if !final_ {
                    return Err(ParseError::InvalidField("NOP-Out without F bit"));
                }
                Ok(Request::NopOut(NopOut { immediate, lun, itt, ttt: be32(bhs, 20), cmd_sn, exp_stat_sn, data }))
            }
            opcode::SCSI_COMMAND => {
                let mut cdb = bhs[32..48].to_vec();
                for (kind, body) in ahs_segments(ahs)? {
                    match kind {
                        AHS_EXTENDED_CDB => cdb.extend_from_slice(body),
                        AHS_BIDI_READ_LEN => {}
                        _ => return Err(ParseError::InvalidField("unknown AHS type")),
                    }
                }
                Ok(Request::ScsiCommand(ScsiCommandPdu {
                    immediate,
                    final_,
                    read: flags & 0x40 != 0,
                    write: flags & 0x20 != 0,
                    attr: flags & 0x07,
                    lun,
                    itt,
                    expected_len: be32(bhs, 20),
                    cmd_sn,
                    exp_stat_sn,
                    cdb,
                    immediate_data: data,
                }))
            }
            opcode::TASK_MGMT_REQUEST => {
                if !final_ {
                    return Err(ParseError::InvalidField("TMF request without F bit"));
                }
                Ok(Request::TaskMgmt(TaskMgmtRequest {
                    immediate,
                    function: flags & 0x7f,
                    lun,
                    itt,
                    referenced_tag: be32(bhs, 20),
                    cmd_sn,
                    exp_stat_sn,
                    ref_cmd_sn: Sn(be32(bhs, 32)),
                }))
            }
            opcode::LOGIN_REQUEST => {
                let transit = final_;
                let cont = flags & 0x40 != 0;
                if transit && cont {
                    // RFC 7143 §11.12.2: T and C must not both be set.
                    return Err(ParseError::InvalidField("login with both T and C"));
                }
                let csg = Stage::from_bits(flags >> 2).ok_or(ParseError::InvalidField("reserved login CSG"))?;
                let nsg = if transit {
                    Some(Stage::from_bits(flags).ok_or(ParseError::InvalidField("reserved login NSG"))?)
                } else {
                    None
                };
                let mut isid = [0u8; 6];
                isid.copy_from_slice(&bhs[8..14]);
                Ok(Request::Login(LoginRequest {
                    transit,
                    cont,
                    csg,
                    nsg,
                    version_max: bhs[2],
                    version_min: bhs[3],
                    isid,
                    tsih: be16(bhs, 14),
                    itt,
                    cid: be16(bhs, 20),
                    cmd_sn,
                    exp_stat_sn,
                    data,
                }))
            }
            opcode::TEXT_REQUEST => {
                let cont = flags & 0x40 != 0;
                if final_ && cont {
                    // RFC 7143 §11.10.2: F and C must not both be set.
                    return Err(ParseError::InvalidField("text request with both F and C"));
                }
                Ok(Request::Text(TextRequest {
                    immediate,
                    final_,
                    cont,
                    lun,
                    itt,
                    ttt: be32(bhs, 20),
                    cmd_sn,
                    exp_stat_sn,
                    data,
                }))
            }
            opcode::DATA_OUT => Ok(Request::DataOut(DataOut {
                final_,
                lun,
                itt,
                ttt: be32(bhs, 20),
                exp_stat_sn,
                data_sn: Sn(be32(bhs, 36)),
                buffer_offset: be32(bhs, 40),
                data,
            })),
            opcode::LOGOUT_REQUEST => {
                if !final_ {
                    return Err(ParseError::InvalidField("logout request without F bit"));
                }
                Ok(Request::Logout(LogoutRequest {
                    immediate,
                    reason: flags & 0x7f,
                    itt,
                    cid: be16(bhs, 20),
                    cmd_sn,
                    exp_stat_sn,
                }))
            }
            opcode::SNACK_REQUEST => Ok(Request::Snack(Snack { kind: flags & 0x0f, itt })),
            other => Err(ParseError::UnsupportedOpcode(other)),
        }
    }

    /// The Initiator Task Tag, which every request carries at bytes 16..20.
    pub fn itt(&self) -> u32 {
        match self {
            Request::NopOut(p) => p.itt,
            Request::ScsiCommand(p) => p.itt,
            Request::TaskMgmt(p) => p.itt,
            Request::Login(p) => p.itt,
            Request::Text(p) => p.itt,
            Request::DataOut(p) => p.itt,
            Request::Logout(p) => p.itt,
            Request::Snack(p) => p.itt,
        }
    }
}

/// Splits the AHS area into (type, body) pairs (RFC 7143 §11.2.2: 2-byte length of the
/// type-specific part, 1-byte type, then the data padded to four bytes).
fn ahs_segments(ahs: &[u8]) -> Result<Vec<(u8, &[u8])>, ParseError> {
    let mut out = Vec::new();
    let mut rest = ahs;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(ParseError::InvalidField("truncated AHS"));
        }
        let len = usize::from(be16(rest, 0));
        let kind = rest[2];
        // The AHS length counts from byte 3 (the reserved byte) on: the extended CDB
        // AHS carries "CDB length - 15" there (RFC 7143 §11.2.2.3).
        let body_len = len.saturating_sub(1);
        let seg = super::padded(3 + len);
        if rest.len() < seg.max(4) {
            return Err(ParseError::InvalidField("AHS longer than TotalAHSLength"));
        }
        out.push((kind, &rest[4..4 + body_len.min(seg - 4)]));
        rest = &rest[seg.max(4)..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(op: u8, flags: u8) -> [u8; BHS_LEN] {
        let mut h = [0u8; BHS_LEN];
        h[0] = op;
        h[1] = flags;
        h
    }

    #[test]
    fn scsi_read_command_fields() {
        let mut h = header(opcode::SCSI_COMMAND, 0x80 | 0x40 | 1);
        h[9] = 2;
        h[16..20].copy_from_slice(&7u32.to_be_bytes());
        h[20..24].copy_from_slice(&4096u32.to_be_bytes());
        h[24..28].copy_from_slice(&11u32.to_be_bytes());
        h[32] = 0x28;
        let Ok(Request::ScsiCommand(c)) = Request::parse(&h, &[], Bytes::new()) else {
            panic!("not a SCSI command");
        };
        assert!(c.read && !c.write && c.final_);
        assert_eq!((c.attr, c.itt, c.expected_len, c.cmd_sn), (1, 7, 4096, Sn(11)));
        assert_eq!(c.lun, 2 << 48);
        assert_eq!(c.cdb.len(), 16);
        assert_eq!(c.cdb[0], 0x28);
    }

    #[test]
    fn extended_cdb_ahs_is_appended() {
        let h = header(opcode::SCSI_COMMAND, 0x80);
        // 32-byte CDB: 16 in the BHS, 16 in an AHS whose length field is 17.
        let mut ahs = vec![0, 17, AHS_EXTENDED_CDB, 0];
        ahs.extend(1u8..=16);
        ahs.resize(20, 0);
        let Ok(Request::ScsiCommand(c)) = Request::parse(&h, &ahs, Bytes::new()) else {
            panic!("not a SCSI command");
        };
        assert_eq!(c.cdb.len(), 32);
        assert_eq!(c.cdb[16..], (1u8..=16).collect::<Vec<_>>()[..]);
    }

    #[test]
    fn login_with_t_and_c_is_invalid() {
        let h = header(opcode::LOGIN_REQUEST | 0x40, 0xc0 | 0x07);
        assert!(matches!(Request::parse(&h, &[], Bytes::new()), Err(ParseError::InvalidField(_))));
    }

    #[test]
    fn login_stage_bits() {
        let h = header(opcode::LOGIN_REQUEST | 0x40, 0x80 | (1 << 2) | 3);
        let Ok(Request::Login(l)) = Request::parse(&h, &[], Bytes::new()) else {
            panic!("not a login");
        };
        assert_eq!((l.csg, l.nsg), (Stage::Operational, Some(Stage::FullFeature)));
    }

    #[test]
    fn unknown_opcode_is_command_not_supported() {
        let h = header(0x1c, 0x80);
        let e = Request::parse(&h, &[], Bytes::new()).unwrap_err();
        assert_eq!(e.reject_reason(), RejectReason::CommandNotSupported);
    }

    proptest! {
        #[test]
        fn parse_never_panics(h in proptest::collection::vec(any::<u8>(), BHS_LEN), ahs in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut bhs = [0u8; BHS_LEN];
            bhs.copy_from_slice(&h);
            let _ = Request::parse(&bhs, &ahs, Bytes::new());
        }

        #[test]
        fn data_out_offset_and_tags_survive(itt in any::<u32>(), ttt in any::<u32>(), off in any::<u32>(), sn in any::<u32>()) {
            let mut h = header(opcode::DATA_OUT, 0x80);
            h[16..20].copy_from_slice(&itt.to_be_bytes());
            h[20..24].copy_from_slice(&ttt.to_be_bytes());
            h[36..40].copy_from_slice(&sn.to_be_bytes());
            h[40..44].copy_from_slice(&off.to_be_bytes());
            let Ok(Request::DataOut(d)) = Request::parse(&h, &[], Bytes::new()) else {
                return Err(TestCaseError::fail("not Data-Out"));
            };
            prop_assert_eq!((d.itt, d.ttt, d.buffer_offset, d.data_sn), (itt, ttt, off, Sn(sn)));
        }
    }
}
