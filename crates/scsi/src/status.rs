//! SCSI status codes (SAM-5 §5.3.1) and the end of a command.

use crate::sense::Sense;

/// A SCSI status byte (SAM-5 table 27).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ScsiStatus(pub u8);

impl ScsiStatus {
    pub const GOOD: Self = Self(0x00);
    pub const CHECK_CONDITION: Self = Self(0x02);
    pub const CONDITION_MET: Self = Self(0x04);
    pub const BUSY: Self = Self(0x08);
    pub const RESERVATION_CONFLICT: Self = Self(0x18);
    pub const TASK_SET_FULL: Self = Self(0x28);
    pub const ACA_ACTIVE: Self = Self(0x30);
    pub const TASK_ABORTED: Self = Self(0x40);
}

/// The end of a command: its status and, with CHECK CONDITION, its sense data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: ScsiStatus,
    pub sense: Option<Sense>,
}

impl Outcome {
    pub fn good() -> Self {
        Self { status: ScsiStatus::GOOD, sense: None }
    }

    pub fn check(sense: Sense) -> Self {
        Self { status: ScsiStatus::CHECK_CONDITION, sense: Some(sense) }
    }

    /// A status that carries no sense data (BUSY, RESERVATION CONFLICT, TASK SET FULL...).
    pub fn status(status: ScsiStatus) -> Self {
        Self { status, sense: None }
    }

    pub fn is_good(&self) -> bool {
        self.status == ScsiStatus::GOOD
    }
}
