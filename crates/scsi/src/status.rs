//! The end of a command; status codes (SAM-5 §5.3.1) are `scsi_proto`'s.

use crate::sense::Sense;
pub use scsi_proto::ScsiStatus;

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
