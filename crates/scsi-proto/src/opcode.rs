//! Operation codes (SPC-4 annex, SBC-4 table 11) of the commands the stack builds, decodes or answers above the
//! logical unit. The disk logical unit's own command table (`scsi::disk`) lists what it implements.

pub const TEST_UNIT_READY: u8 = 0x00;
pub const REQUEST_SENSE: u8 = 0x03;
pub const READ_6: u8 = 0x08;
pub const WRITE_6: u8 = 0x0A;
pub const INQUIRY: u8 = 0x12;
pub const READ_CAPACITY_10: u8 = 0x25;
pub const READ_10: u8 = 0x28;
pub const WRITE_10: u8 = 0x2A;
pub const WRITE_AND_VERIFY_10: u8 = 0x2E;
pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
pub const WRITE_SAME_10: u8 = 0x41;
pub const UNMAP: u8 = 0x42;
pub const PERSISTENT_RESERVE_IN: u8 = 0x5E;
pub const PERSISTENT_RESERVE_OUT: u8 = 0x5F;
pub const EXTENDED_COPY: u8 = 0x83;
pub const RECEIVE_COPY_RESULTS: u8 = 0x84;
pub const READ_16: u8 = 0x88;
pub const COMPARE_AND_WRITE: u8 = 0x89;
pub const WRITE_16: u8 = 0x8A;
pub const WRITE_AND_VERIFY_16: u8 = 0x8E;
pub const WRITE_SAME_16: u8 = 0x93;
/// SERVICE ACTION IN(16): READ CAPACITY(16) (10h), GET LBA STATUS (12h).
pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
pub const REPORT_LUNS: u8 = 0xA0;
/// MAINTENANCE IN: REPORT SUPPORTED OPERATION CODES (0Ch) among others.
pub const MAINTENANCE_IN: u8 = 0xA3;
pub const READ_12: u8 = 0xA8;
pub const WRITE_12: u8 = 0xAA;
pub const WRITE_AND_VERIFY_12: u8 = 0xAE;

/// Service actions of the commands above that have them.
pub mod service_action {
    /// SERVICE ACTION IN(16).
    pub const READ_CAPACITY_16: u8 = 0x10;
    pub const GET_LBA_STATUS: u8 = 0x12;
    /// MAINTENANCE IN.
    pub const REPORT_SUPPORTED_OPERATION_CODES: u8 = 0x0C;
    /// PERSISTENT RESERVE IN.
    pub const READ_FULL_STATUS: u8 = 0x03;
    /// PERSISTENT RESERVE OUT.
    pub const PREEMPT_AND_ABORT: u8 = 0x05;
    pub const REGISTER_AND_MOVE: u8 = 0x07;
    /// RECEIVE COPY RESULTS.
    pub const COPY_STATUS: u8 = 0x00;
    pub const OPERATING_PARAMETERS: u8 = 0x03;
}
