//! SCSI status codes (SAM-5 §5.3.1, table 27).

/// A SCSI status byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ScsiStatus(pub u8);

impl ScsiStatus {
    pub const GOOD: Self = Self(code::GOOD);
    pub const CHECK_CONDITION: Self = Self(code::CHECK_CONDITION);
    pub const CONDITION_MET: Self = Self(code::CONDITION_MET);
    pub const BUSY: Self = Self(code::BUSY);
    pub const RESERVATION_CONFLICT: Self = Self(code::RESERVATION_CONFLICT);
    pub const TASK_SET_FULL: Self = Self(code::TASK_SET_FULL);
    pub const ACA_ACTIVE: Self = Self(code::ACA_ACTIVE);
    pub const TASK_ABORTED: Self = Self(code::TASK_ABORTED);
}

/// The status codes as bytes, for the places that carry a raw status byte (an SRB's `ScsiStatus`, the iSCSI SCSI
/// Response PDU). The obsolete SCSI-2 codes keep the names `SCSISTAT_*` gives them.
pub mod code {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
    pub const CONDITION_MET: u8 = 0x04;
    pub const BUSY: u8 = 0x08;
    /// INTERMEDIATE (obsolete in SAM-5).
    pub const INTERMEDIATE: u8 = 0x10;
    /// INTERMEDIATE-CONDITION MET (obsolete in SAM-5).
    pub const INTERMEDIATE_CONDITION_MET: u8 = 0x14;
    pub const RESERVATION_CONFLICT: u8 = 0x18;
    /// COMMAND TERMINATED (obsolete in SAM-5).
    pub const COMMAND_TERMINATED: u8 = 0x22;
    pub const TASK_SET_FULL: u8 = 0x28;
    /// TASK SET FULL by its SCSI-2 name (`SCSISTAT_QUEUE_FULL`).
    pub const QUEUE_FULL: u8 = TASK_SET_FULL;
    pub const ACA_ACTIVE: u8 = 0x30;
    pub const TASK_ABORTED: u8 = 0x40;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_and_byte_statuses_are_the_same_values() {
        assert_eq!(ScsiStatus::CHECK_CONDITION.0, 0x02);
        assert_eq!(ScsiStatus::TASK_SET_FULL.0, code::QUEUE_FULL);
        assert_eq!(ScsiStatus::RESERVATION_CONFLICT.0, 0x18);
    }
}
