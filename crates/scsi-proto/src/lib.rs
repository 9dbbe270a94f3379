//! The SCSI vocabulary, defined once for every layer: status codes (SAM-5), sense keys, additional sense codes and
//! sense data (SPC-4), the direction of a command's data phase, the operation codes the stack sends or answers, and
//! typed CDB builders and decoders (SBC-4). The crate has no dependencies and knows nothing of ports, HBAs or
//! transports; the disk logical unit and its command table live in the `scsi` crate.
//!
//! Standards (T10 working drafts, freely available from t10.org): SAM-5 (T10/2104-D), SPC-4 (T10/1731-D),
//! SBC-4 (T10/BSR INCITS 506).

pub mod cdb;
pub mod direction;
pub mod inquiry;
pub mod opcode;
pub mod sense;
pub mod status;
pub mod transport_id;

pub use direction::DataDirection;
pub use sense::{AscAscq, Sense, SenseKey};
pub use status::ScsiStatus;
