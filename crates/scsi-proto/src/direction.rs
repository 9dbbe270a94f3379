//! The direction of a command's data phase.

/// Which way a command's data moves, seen from the initiator: the iSCSI R and W bits (RFC 7143 §11.3.1.1), an
/// SRB's `SRB_FLAGS_DATA_IN` / `SRB_FLAGS_DATA_OUT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataDirection {
    /// No data phase.
    None,
    /// Device to initiator (READ).
    In,
    /// Initiator to device (WRITE).
    Out,
}
