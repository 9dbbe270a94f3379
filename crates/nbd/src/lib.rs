//! An NBD server (fixed newstyle handshake, structured replies,
//! `base:allocation` block status) on tokio, generic over the
//! [`BlockDevice`] it exports.
//!
//! The protocol is the one of `doc/proto.md` in the NetworkBlockDevice
//! project; comments cite its section names. Everything that looks at bytes
//! from the client is a pure function ([`option`], [`handshake`],
//! [`request`]) so it can be fuzzed and property-tested; the connection driver only moves
//! bytes between those functions, the device and the socket.

mod conn;
pub mod device;
pub mod handshake;
pub mod mem;
pub mod option;
pub mod payload;
pub mod pool;
pub mod proto;
pub mod reply;
pub mod request;
mod server;
mod writer;

pub use device::{BlockDevice, Capabilities, DeviceError, Extent};
pub use handshake::{BlockSizes, ExportInfo, HandshakeLimits};
pub use mem::MemDevice;
pub use payload::{PayloadBuf, WritePayload};
pub use pool::{BufferPool, PoolBuf};
pub use proto::Errno;
pub use server::{Export, NbdServer, ServerConfig};
pub use tokio_util::sync::CancellationToken;
