//! iSCSI PDUs (RFC 7143 §11): framing over a byte stream, typed initiator requests,
//! and encoding of target responses.
//!
//! Everything here is a pure function over bytes so that it can be fuzzed and
//! property-tested without sockets.

pub mod frame;
mod request;
mod response;
mod sn;

pub use frame::{frame_layout, FrameError, FrameLayout, Framing};
pub use request::{
    DataOut, LoginRequest, LogoutRequest, NopOut, ParseError, Request, ScsiCommandPdu, Snack, Stage, TaskMgmtRequest,
    TextRequest,
};
pub use response::{
    DataIn, LoginResponse, LogoutResponse, NopIn, R2t, RejectPdu, ResidualField, ScsiResponsePdu, StatSnUse, TargetPdu,
    TaskMgmtResponse, TextResponse,
};
pub use sn::Sn;

/// Length of the Basic Header Segment (RFC 7143 §11.2.1).
pub const BHS_LEN: usize = 48;

/// The reserved tag value: "no task" for ITT/TTT (RFC 7143 §11.2.1.8, §11.18.4).
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// Largest data segment length the 24-bit DSL field can carry (RFC 7143 §11.2.1.5).
pub const MAX_DSL: u32 = 0x00ff_ffff;

/// Which digests are in force on a connection (RFC 7143 §13.1): CRC32C or none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digests {
    pub header: bool,
    pub data: bool,
}

/// Opcodes sent by the initiator (RFC 7143 §11.2.1.2).
pub mod opcode {
    pub const NOP_OUT: u8 = 0x00;
    pub const SCSI_COMMAND: u8 = 0x01;
    pub const TASK_MGMT_REQUEST: u8 = 0x02;
    pub const LOGIN_REQUEST: u8 = 0x03;
    pub const TEXT_REQUEST: u8 = 0x04;
    pub const DATA_OUT: u8 = 0x05;
    pub const LOGOUT_REQUEST: u8 = 0x06;
    pub const SNACK_REQUEST: u8 = 0x10;

    pub const NOP_IN: u8 = 0x20;
    pub const SCSI_RESPONSE: u8 = 0x21;
    pub const TASK_MGMT_RESPONSE: u8 = 0x22;
    pub const LOGIN_RESPONSE: u8 = 0x23;
    pub const TEXT_RESPONSE: u8 = 0x24;
    pub const DATA_IN: u8 = 0x25;
    pub const LOGOUT_RESPONSE: u8 = 0x26;
    pub const R2T: u8 = 0x31;
    pub const ASYNC_MESSAGE: u8 = 0x32;
    pub const REJECT: u8 = 0x3f;
}

/// Reject reasons (RFC 7143 §11.17.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RejectReason {
    DataDigestError = 0x02,
    SnackReject = 0x03,
    ProtocolError = 0x04,
    CommandNotSupported = 0x05,
    ImmediateCommandReject = 0x06,
    TaskInProgress = 0x07,
    InvalidDataAck = 0x08,
    InvalidPduField = 0x09,
    LongOperationReject = 0x0a,
    WaitingForLogout = 0x0c,
}

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(v)
}

pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Data segments are padded to a multiple of four bytes (RFC 7143 §11.2.3).
pub const fn padded(len: usize) -> usize {
    (len + 3) & !3
}
