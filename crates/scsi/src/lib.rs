//! The SCSI layer: status and sense data, the streaming command contract between an HBA
//! (or any transport) and a logical unit, and a SCSI disk logical unit (SPC-4 / SBC-3
//! command set) over a storage [`Backend`], with fault injection.
//!
//! The crate knows nothing of transports, HBAs or DMA: a caller begins a command with
//! [`LogicalUnit::begin`], drives its data phase piecewise through the returned task, then
//! finishes it to learn the final [`Outcome`].

#[cfg(feature = "rbd")]
pub mod alua_peers;
pub mod backend;
mod cdb;
pub mod disk;
mod execute;
pub mod fault;
pub use scsi_proto::{opcode, sense};
pub mod status;
pub mod target;
pub mod task;

pub use backend::{Backend, BackendError, EncryptedBackend, FileBackend, FileOptions, RamBackend};
#[cfg(feature = "rbd")]
pub use backend::{ObjectWatch, RbdBackend, RbdError, RbdOptions};
pub use disk::{AluaState, ConfigError, Disk, DiskConfig, PortGroup, ResetListener};
pub use execute::{drive, execute, execute_on_target};
pub use fault::{FaultConfig, FaultInjector, LbaRange};
pub use sense::{AscAscq, Sense, SenseKey};
pub use status::{Outcome, ScsiStatus};
pub use target::Target;
pub use task::{Begin, DataInTask, DataOutTask, LogicalUnit, Nexus};
