//! What the target needs from the SCSI side: one trait, implemented by the port driver's
//! pass-through path in the full system and by [`crate::DirectBackend`] or test doubles.

use std::future::Future;

use bytes::Bytes;

/// Direction of a command's data phase (RFC 7143 §11.3.1.1: R and W bits).
pub use scsi_proto::DataDirection;

/// SAM task attribute (RFC 7143 §11.3.1.2 ATTR field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskAttr {
    Untagged,
    Simple,
    Ordered,
    HeadOfQueue,
    Aca,
}

impl TaskAttr {
    /// Decodes the 3-bit ATTR field; reserved values 5..7 are treated as Simple, the
    /// attribute SAM uses when none is specified.
    pub fn from_bits(bits: u8) -> TaskAttr {
        match bits & 7 {
            0 => TaskAttr::Untagged,
            2 => TaskAttr::Ordered,
            3 => TaskAttr::HeadOfQueue,
            4 => TaskAttr::Aca,
            _ => TaskAttr::Simple,
        }
    }
}

/// One SCSI command with all its Data-Out already collected.
#[derive(Clone, Debug)]
pub struct ScsiCommand {
    /// Stable identifier of the I_T nexus (initiator name + ISID).
    pub initiator: u64,
    /// The LUN as the 8-byte SAM LUN field, decoded to a flat number (see [`decode_lun`]).
    pub lun: u64,
    pub task_tag: u32,
    pub cdb: Vec<u8>,
    pub attr: TaskAttr,
    pub direction: DataDirection,
    pub expected_len: u32,
    pub data_out: Bytes,
}

/// Difference between what the initiator expected and what the command moved
/// (RFC 7143 §11.4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residual {
    None,
    Underflow(u32),
    Overflow(u32),
}

/// Outcome of a command.
#[derive(Clone, Debug)]
pub struct ScsiResponse {
    /// SAM status byte.
    pub status: u8,
    /// Fixed-format sense data, for CHECK CONDITION.
    pub sense: Option<Vec<u8>>,
    pub data_in: Bytes,
    pub residual: Residual,
}

impl ScsiResponse {
    pub fn good(data_in: Bytes) -> ScsiResponse {
        ScsiResponse { status: status::GOOD, sense: None, data_in, residual: Residual::None }
    }

    /// CHECK CONDITION with fixed-format sense (SPC-4 §4.5.3) for `key`/`asc`/`ascq`.
    pub fn check_condition(key: u8, asc: u8, ascq: u8) -> ScsiResponse {
        let sense =
            scsi_proto::Sense::new(scsi_proto::SenseKey::from_u8(key), scsi_proto::AscAscq(asc, ascq)).to_fixed();
        ScsiResponse {
            status: status::CHECK_CONDITION,
            sense: Some(sense),
            data_in: Bytes::new(),
            residual: Residual::None,
        }
    }
}

/// SAM-5 status codes.
pub use scsi_proto::status::code as status;

/// Result of a task management function at the SCSI layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TmfResponse {
    Complete,
    NoTask,
    NoLun,
    NotSupported,
    Rejected,
}

impl TmfResponse {
    /// The iSCSI TMF response code (RFC 7143 §11.6.1).
    pub fn code(self) -> u8 {
        match self {
            TmfResponse::Complete => 0,
            TmfResponse::NoTask => 1,
            TmfResponse::NoLun => 2,
            TmfResponse::NotSupported => 5,
            TmfResponse::Rejected => 255,
        }
    }
}

/// The SCSI device server(s) behind one iSCSI target.
pub trait ScsiBackend: Send + Sync + 'static {
    /// LUNs that exist, as flat numbers.
    fn luns(&self) -> Vec<u64>;
    fn execute(&self, cmd: ScsiCommand) -> impl Future<Output = ScsiResponse> + Send;
    fn abort_task(&self, initiator: u64, lun: u64, tag: u32) -> impl Future<Output = TmfResponse> + Send;
    fn abort_task_set(&self, initiator: u64, lun: u64) -> impl Future<Output = TmfResponse> + Send;
    fn lun_reset(&self, lun: u64) -> impl Future<Output = TmfResponse> + Send;
    fn target_reset(&self) -> impl Future<Output = TmfResponse> + Send;
    /// The I_T nexus is gone (session closed or reinstated): SPC-2 reservations and
    /// similar per-nexus state are released (SPC-4 §6.17).
    fn nexus_loss(&self, initiator: u64) -> impl Future<Output = ()> + Send {
        let _ = initiator;
        async {}
    }
    /// A session's I_T nexus `initiator` is the initiator port `name` (as the initiator wrote it) with `isid`:
    /// called once the login completes, before its first command, so that TransportIDs (SPC-4 §7.6.4.6) can be
    /// mapped to nexuses and back (REGISTER AND MOVE, READ FULL STATUS).
    fn initiator_port(&self, initiator: u64, name: &str, isid: [u8; 6]) {
        let _ = (initiator, name, isid);
    }
}

/// Decodes the 8-byte LUN field into a flat LUN number: peripheral (SAM-5 §4.7.2, method
/// 00b) and flat space (method 01b) addressing both give the 14-bit number; anything else
/// is returned as the raw 64-bit value, which matches no configured LUN.
pub fn decode_lun(raw: u64) -> u64 {
    let b0 = (raw >> 56) as u8;
    let b1 = (raw >> 48) as u8;
    let rest = raw & 0x0000_ffff_ffff_ffff;
    match b0 >> 6 {
        0 if rest == 0 => u64::from(b0 & 0x3f) << 8 | u64::from(b1),
        1 if rest == 0 => u64::from(b0 & 0x3f) << 8 | u64::from(b1),
        _ => raw,
    }
}

/// Encodes a flat LUN for the 8-byte field: peripheral addressing below 256, flat space
/// addressing above (SAM-5 §4.7), as REPORT LUNS does.
pub fn encode_lun(lun: u64) -> u64 {
    if lun < 256 {
        lun << 48
    } else {
        (0x4000 | (lun & 0x3fff)) << 48
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lun_encoding_roundtrips(lun in 0u64..0x4000) {
            prop_assert_eq!(decode_lun(encode_lun(lun)), lun);
        }
    }

    #[test]
    fn peripheral_lun_one() {
        assert_eq!(decode_lun(0x0001_0000_0000_0000), 1);
    }

    #[test]
    fn check_condition_sense_is_fixed_format() {
        let r = ScsiResponse::check_condition(5, 0x24, 0);
        let s = r.sense.unwrap_or_default();
        assert_eq!((s[0], s[2], s[7], s[12]), (0x70, 5, 10, 0x24));
        assert_eq!(r.status, status::CHECK_CONDITION);
    }
}
