//! Target PDUs (RFC 7143 §11.4–§11.17) built as a 48-byte header plus a data segment.
//!
//! StatSN, ExpCmdSN and MaxCmdSN are stamped in by the connection's writer at the moment
//! the PDU is sent, since StatSN must follow the order of transmission (RFC 7143 §4.2.2.2).

use bytes::{BufMut, Bytes, BytesMut};

use super::{opcode, padded, put32, RejectReason, Sn, Stage, BHS_LEN, RESERVED_TAG};
use crate::digest::crc32c_parts;

/// How a PDU uses the StatSN field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatSnUse {
    /// Field is reserved (Data-In without status).
    Reserved,
    /// Carries the next StatSN without consuming it (R2T, unsolicited NOP-In: RFC 7143
    /// §11.8.3, §11.19.2).
    Current,
    /// Carries a new StatSN, which the writer then advances (responses with status).
    Advance,
}

/// One PDU to send, header fields final except for the sequence numbers.
#[derive(Clone, Debug)]
pub struct TargetPdu {
    pub bhs: [u8; BHS_LEN],
    pub data: Bytes,
    pub stat_sn: StatSnUse,
}

impl TargetPdu {
    fn new(op: u8, flags: u8, data: Bytes, stat_sn: StatSnUse) -> TargetPdu {
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = op;
        bhs[1] = flags;
        let dsl = u32::try_from(data.len()).unwrap_or(u32::MAX) & 0x00ff_ffff;
        bhs[5..8].copy_from_slice(&dsl.to_be_bytes()[1..]);
        TargetPdu { bhs, data, stat_sn }
    }

    /// Fills StatSN (bytes 24..28), ExpCmdSN and MaxCmdSN (28..36), which sit at the
    /// same offsets in every target PDU that has them.
    pub fn stamp(&mut self, stat_sn: Sn, exp_cmd_sn: Sn, max_cmd_sn: Sn) {
        if self.stat_sn != StatSnUse::Reserved {
            put32(&mut self.bhs, 24, stat_sn.0);
        }
        put32(&mut self.bhs, 28, exp_cmd_sn.0);
        put32(&mut self.bhs, 32, max_cmd_sn.0);
    }

    /// Serialises header, header digest, data, padding and data digest.
    pub fn encode_into(&self, out: &mut BytesMut, header_digest: bool, data_digest: bool) {
        out.reserve(BHS_LEN + 8 + padded(self.data.len()));
        out.put_slice(&self.bhs);
        if header_digest {
            out.put_u32_le(crc32c_parts(&[&self.bhs]));
        }
        if !self.data.is_empty() {
            let pad = padded(self.data.len()) - self.data.len();
            out.put_slice(&self.data);
            out.put_bytes(0, pad);
            if data_digest {
                out.put_u32_le(crc32c_parts(&[&self.data, &[0u8; 3][..pad]]));
            }
        }
    }

    pub fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3f
    }
}

fn put_lun_itt(bhs: &mut [u8; BHS_LEN], lun: u64, itt: u32) {
    bhs[8..16].copy_from_slice(&lun.to_be_bytes());
    put32(bhs, 16, itt);
}

/// NOP-In (RFC 7143 §11.19).
#[derive(Clone, Debug)]
pub struct NopIn {
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub data: Bytes,
}

impl From<NopIn> for TargetPdu {
    fn from(p: NopIn) -> TargetPdu {
        // A NOP-In answering a ping advances StatSN; one the target starts (ITT reserved)
        // only shows it (RFC 7143 §11.19.2).
        let use_ = if p.itt == RESERVED_TAG { StatSnUse::Current } else { StatSnUse::Advance };
        let mut pdu = TargetPdu::new(opcode::NOP_IN, 0x80, p.data, use_);
        put_lun_itt(&mut pdu.bhs, p.lun, p.itt);
        put32(&mut pdu.bhs, 20, p.ttt);
        pdu
    }
}

/// Residual flags and count shared by SCSI Response and Data-In (RFC 7143 §11.4.5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResidualField {
    pub overflow: bool,
    pub underflow: bool,
    pub count: u32,
}

impl ResidualField {
    fn flags(self) -> u8 {
        (u8::from(self.overflow) << 2) | (u8::from(self.underflow) << 1)
    }
}

/// SCSI Response (RFC 7143 §11.4).
#[derive(Clone, Debug)]
pub struct ScsiResponsePdu {
    pub itt: u32,
    /// iSCSI response: 0 = command completed at target, 1 = target failure.
    pub response: u8,
    pub status: u8,
    pub residual: ResidualField,
    pub exp_data_sn: u32,
    pub sense: Option<Vec<u8>>,
}

impl From<ScsiResponsePdu> for TargetPdu {
    fn from(p: ScsiResponsePdu) -> TargetPdu {
        // Sense data is carried with a 2-byte SenseLength prefix (RFC 7143 §11.4.7.2).
        let data = match &p.sense {
            Some(s) if !s.is_empty() => {
                let len = s.len().min(usize::from(u16::MAX));
                let mut b = BytesMut::with_capacity(2 + len);
                b.put_u16(len as u16);
                b.put_slice(&s[..len]);
                b.freeze()
            }
            _ => Bytes::new(),
        };
        let mut pdu = TargetPdu::new(opcode::SCSI_RESPONSE, 0x80 | p.residual.flags(), data, StatSnUse::Advance);
        pdu.bhs[2] = p.response;
        pdu.bhs[3] = p.status;
        put32(&mut pdu.bhs, 16, p.itt);
        put32(&mut pdu.bhs, 36, p.exp_data_sn);
        put32(&mut pdu.bhs, 44, p.residual.count);
        pdu
    }
}

/// SCSI Data-In (RFC 7143 §11.7).
#[derive(Clone, Debug)]
pub struct DataIn {
    pub lun: u64,
    pub itt: u32,
    pub final_: bool,
    /// Status phase-collapsed into this PDU (S bit), only for the last one and only when
    /// no sense data must be sent (RFC 7143 §11.7.4).
    pub status: Option<u8>,
    pub residual: ResidualField,
    pub data_sn: u32,
    pub buffer_offset: u32,
    pub data: Bytes,
}

impl From<DataIn> for TargetPdu {
    fn from(p: DataIn) -> TargetPdu {
        let mut flags = if p.final_ { 0x80 } else { 0 };
        let use_ = match p.status {
            Some(_) => {
                flags |= 0x80 | 0x01 | p.residual.flags();
                StatSnUse::Advance
            }
            None => StatSnUse::Reserved,
        };
        let mut pdu = TargetPdu::new(opcode::DATA_IN, flags, p.data, use_);
        if let Some(s) = p.status {
            pdu.bhs[3] = s;
            put32(&mut pdu.bhs, 44, p.residual.count);
        }
        put_lun_itt(&mut pdu.bhs, p.lun, p.itt);
        put32(&mut pdu.bhs, 20, RESERVED_TAG);
        put32(&mut pdu.bhs, 36, p.data_sn);
        put32(&mut pdu.bhs, 40, p.buffer_offset);
        pdu
    }
}

/// Ready To Transfer (RFC 7143 §11.8).
#[derive(Clone, Debug)]
pub struct R2t {
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub r2t_sn: u32,
    pub buffer_offset: u32,
    pub desired_len: u32,
}

impl From<R2t> for TargetPdu {
    fn from(p: R2t) -> TargetPdu {
        let mut pdu = TargetPdu::new(opcode::R2T, 0x80, Bytes::new(), StatSnUse::Current);
        put_lun_itt(&mut pdu.bhs, p.lun, p.itt);
        put32(&mut pdu.bhs, 20, p.ttt);
        put32(&mut pdu.bhs, 36, p.r2t_sn);
        put32(&mut pdu.bhs, 40, p.buffer_offset);
        put32(&mut pdu.bhs, 44, p.desired_len);
        pdu
    }
}

/// Task Management Function Response (RFC 7143 §11.6).
#[derive(Clone, Debug)]
pub struct TaskMgmtResponse {
    pub itt: u32,
    pub response: u8,
}

impl From<TaskMgmtResponse> for TargetPdu {
    fn from(p: TaskMgmtResponse) -> TargetPdu {
        let mut pdu = TargetPdu::new(opcode::TASK_MGMT_RESPONSE, 0x80, Bytes::new(), StatSnUse::Advance);
        pdu.bhs[2] = p.response;
        put32(&mut pdu.bhs, 16, p.itt);
        pdu
    }
}

/// Login Response (RFC 7143 §11.13).
#[derive(Clone, Debug)]
pub struct LoginResponse {
    pub transit: bool,
    pub cont: bool,
    pub csg: Stage,
    pub nsg: Stage,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub status_class: u8,
    pub status_detail: u8,
    pub data: Bytes,
}

impl From<LoginResponse> for TargetPdu {
    fn from(p: LoginResponse) -> TargetPdu {
        let mut flags = p.csg.bits() << 2;
        if p.transit {
            flags |= 0x80 | p.nsg.bits();
        }
        if p.cont {
            flags |= 0x40;
        }
        let mut pdu = TargetPdu::new(opcode::LOGIN_RESPONSE, flags, p.data, StatSnUse::Advance);
        // Version-max and Version-active are both 0x00 (RFC 7143 §11.13.2).
        pdu.bhs[8..14].copy_from_slice(&p.isid);
        pdu.bhs[14..16].copy_from_slice(&p.tsih.to_be_bytes());
        put32(&mut pdu.bhs, 16, p.itt);
        pdu.bhs[36] = p.status_class;
        pdu.bhs[37] = p.status_detail;
        pdu
    }
}

/// Text Response (RFC 7143 §11.11).
#[derive(Clone, Debug)]
pub struct TextResponse {
    pub final_: bool,
    pub cont: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub data: Bytes,
}

impl From<TextResponse> for TargetPdu {
    fn from(p: TextResponse) -> TargetPdu {
        let flags = (if p.final_ { 0x80 } else { 0 }) | (if p.cont { 0x40 } else { 0 });
        let mut pdu = TargetPdu::new(opcode::TEXT_RESPONSE, flags, p.data, StatSnUse::Advance);
        put_lun_itt(&mut pdu.bhs, p.lun, p.itt);
        put32(&mut pdu.bhs, 20, p.ttt);
        pdu
    }
}

/// Logout Response (RFC 7143 §11.15).
#[derive(Clone, Debug)]
pub struct LogoutResponse {
    pub itt: u32,
    pub response: u8,
    pub time2wait: u16,
    pub time2retain: u16,
}

impl From<LogoutResponse> for TargetPdu {
    fn from(p: LogoutResponse) -> TargetPdu {
        let mut pdu = TargetPdu::new(opcode::LOGOUT_RESPONSE, 0x80, Bytes::new(), StatSnUse::Advance);
        pdu.bhs[2] = p.response;
        put32(&mut pdu.bhs, 16, p.itt);
        pdu.bhs[40..42].copy_from_slice(&p.time2wait.to_be_bytes());
        pdu.bhs[42..44].copy_from_slice(&p.time2retain.to_be_bytes());
        pdu
    }
}

/// Reject (RFC 7143 §11.17): carries the complete header of the rejected PDU.
#[derive(Clone, Debug)]
pub struct RejectPdu {
    pub reason: RejectReason,
    pub rejected_header: [u8; BHS_LEN],
}

impl From<RejectPdu> for TargetPdu {
    fn from(p: RejectPdu) -> TargetPdu {
        let data = Bytes::copy_from_slice(&p.rejected_header);
        let mut pdu = TargetPdu::new(opcode::REJECT, 0x80, data, StatSnUse::Advance);
        pdu.bhs[2] = p.reason as u8;
        put32(&mut pdu.bhs, 16, RESERVED_TAG);
        pdu
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::frame::{frame_layout, Framing};
    use crate::pdu::{be32, Digests};

    #[test]
    fn data_in_with_status_sets_s_and_f_and_residual() {
        let mut pdu: TargetPdu = DataIn {
            lun: 0,
            itt: 9,
            final_: true,
            status: Some(0),
            residual: ResidualField { overflow: false, underflow: true, count: 512 },
            data_sn: 3,
            buffer_offset: 8192,
            data: Bytes::from_static(&[1, 2, 3]),
        }
        .into();
        pdu.stamp(Sn(5), Sn(6), Sn(70));
        assert_eq!(pdu.bhs[1], 0x80 | 0x01 | 0x02);
        assert_eq!(be32(&pdu.bhs, 24), 5);
        assert_eq!(be32(&pdu.bhs, 44), 512);
        assert_eq!(pdu.stat_sn, StatSnUse::Advance);
    }

    #[test]
    fn data_in_without_status_leaves_stat_sn_reserved() {
        let mut pdu: TargetPdu = DataIn {
            lun: 0,
            itt: 9,
            final_: false,
            status: None,
            residual: ResidualField::default(),
            data_sn: 0,
            buffer_offset: 0,
            data: Bytes::from_static(&[0; 8]),
        }
        .into();
        pdu.stamp(Sn(5), Sn(6), Sn(70));
        assert_eq!(pdu.bhs[1], 0);
        assert_eq!(be32(&pdu.bhs, 24), 0);
        assert_eq!(be32(&pdu.bhs, 28), 6);
    }

    #[test]
    fn encoded_pdu_frames_back_with_digests() {
        let pdu: TargetPdu = ScsiResponsePdu {
            itt: 1,
            response: 0,
            status: 2,
            residual: ResidualField::default(),
            exp_data_sn: 0,
            sense: Some(vec![0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0]),
        }
        .into();
        let mut out = BytesMut::new();
        pdu.encode_into(&mut out, true, true);
        let d = Digests { header: true, data: true };
        let Ok(Framing::Complete(l)) = frame_layout(&out, d, 8192) else {
            panic!("encoded PDU does not frame");
        };
        assert!(l.data_digest_ok);
        assert_eq!(l.total, out.len());
        assert_eq!(&out[l.data.start..l.data.start + 2], &[0, 14]);
    }
}
