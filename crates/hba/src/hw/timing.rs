//! Virtual time of the card's SCSI bus phases (`docs/dma.md`, "Virtual time"): off unless set with
//! [`super::Hba::set_scsi_timing`]; then every phase adds its picoseconds to the card's counters.

/// What each SCSI bus phase costs, in picoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScsiTiming {
    /// Bus free, arbitration and selection (or reselection) of a target.
    pub selection_ps: u64,
    /// One byte in an asynchronous phase (command, status, message).
    pub async_byte_ps: u64,
    /// One byte of data (synchronous transfer).
    pub data_byte_ps: u64,
}

impl ScsiTiming {
    /// A SCSI-2 bus (ANSI X3.131-1994): arbitration delay 2.4 µs plus bus free, settle and clear delays, about
    /// 5 µs to select; 1.5 MB/s for asynchronous bytes; synchronous data at 5 MB/s (200 ns a byte).
    pub const SCSI2_5MB: ScsiTiming =
        ScsiTiming { selection_ps: 5_000_000, async_byte_ps: 667_000, data_byte_ps: 200_000 };
}
