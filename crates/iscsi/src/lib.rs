//! An RFC 7143 iSCSI target on tokio, generic over the SCSI layer behind it
//! ([`ScsiBackend`]).
//!
//! Layers, from the wire up: [`pdu`] frames and parses PDUs as pure functions over bytes;
//! [`text`] parses login and text key=value data; [`negotiate`] and [`chap`] implement
//! the login negotiations; `login`, `session` and `conn` run the login phase and the
//! full-feature phase of one connection; [`IscsiServer`] accepts connections.

pub mod backend;
pub mod chap;
pub mod config;
pub mod digest;
pub mod negotiate;
pub mod pdu;
pub mod ports;
pub mod text;

pub use backend::{DataDirection, Residual, ScsiBackend, ScsiCommand, ScsiResponse, TaskAttr, TmfResponse};
pub use config::{Chap, DigestPolicy, Limits, TargetConfig, DEFAULT_PORTAL, DEFAULT_TARGET_NAME};
mod conn;
#[cfg(feature = "direct")]
mod direct;
pub mod io;
pub mod login;
pub mod loss;
mod server;
pub mod session;
pub mod window;

#[cfg(feature = "direct")]
pub use direct::{run_command, DirectBackend};
pub use server::{nexus_id, IscsiServer};
