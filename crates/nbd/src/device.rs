//! The block device an export serves. The server knows nothing of what is
//! behind it (the disk class driver in the full stack, memory in tests).

use std::future::Future;

use bytes::Bytes;

use crate::payload::{PayloadBuf, WritePayload};
use crate::proto::Errno;

/// One run of a block-status answer (`base:allocation` context).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Length in bytes; an extent of length zero is dropped by the server.
    pub length: u64,
    /// The run is not allocated (`NBD_STATE_HOLE`).
    pub hole: bool,
    /// The run reads as zeroes (`NBD_STATE_ZERO`).
    pub zero: bool,
}

impl Extent {
    /// The `base:allocation` status flags of this extent.
    pub fn flags(&self) -> u32 {
        use crate::proto::state;
        (if self.hole { state::HOLE } else { 0 }) | (if self.zero { state::ZERO } else { 0 })
    }
}

/// Why a device operation failed; each variant maps to one NBD error value.
#[derive(thiserror::Error, Debug)]
pub enum DeviceError {
    /// The device failed to move the data.
    #[error("I/O error: {0}")]
    Io(String),
    /// No space left to allocate backing store.
    #[error("no space left on device")]
    NoSpace,
    /// The request is malformed for this device (alignment, range).
    #[error("invalid request")]
    Invalid,
    /// The device refuses writes.
    #[error("device is read-only")]
    ReadOnly,
    /// The operation is not available (a fast zero that would not be fast).
    #[error("operation not supported")]
    NotSupported,
    /// A value does not fit.
    #[error("value too large")]
    Overflow,
    /// The device is shutting down.
    #[error("device is shutting down")]
    Shutdown,
}

impl DeviceError {
    /// The NBD error value sent for this failure ("Error values").
    pub fn errno(&self) -> Errno {
        match self {
            DeviceError::Io(_) => Errno::EIO,
            DeviceError::NoSpace => Errno::ENOSPC,
            DeviceError::Invalid => Errno::EINVAL,
            DeviceError::ReadOnly => Errno::EPERM,
            DeviceError::NotSupported => Errno::ENOTSUP,
            DeviceError::Overflow => Errno::EOVERFLOW,
            DeviceError::Shutdown => Errno::ESHUTDOWN,
        }
    }
}

impl From<std::io::Error> for DeviceError {
    fn from(e: std::io::Error) -> Self {
        DeviceError::Io(e.to_string())
    }
}

/// What a device can do; the server advertises only what is set here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub read_only: bool,
    /// The device has a volatile cache that `flush` persists.
    pub flush: bool,
    /// `write`/`trim`/`write_zeroes` honour their `fua` argument.
    pub fua: bool,
    pub trim: bool,
    /// `write_zeroes` is implemented by the device (otherwise the server
    /// writes zero buffers itself).
    pub write_zeroes: bool,
    /// `write_zeroes` is faster than writing zeroes.
    pub fast_zero: bool,
    /// `block_status` says something useful.
    pub block_status: bool,
    /// Cache (if any) is shared by all connections, so a flush on one
    /// connection covers writes completed on all ("NBD_FLAG_CAN_MULTI_CONN").
    pub multi_conn: bool,
    /// Smallest addressable length and alignment: power of two, ≤ 64 KiB.
    pub min_block: u32,
    /// Size from which aligned requests are efficient: power of two ≥ 512.
    pub preferred_block: u32,
    /// Largest request the device takes in one call.
    pub max_block: u32,
}

impl Default for Capabilities {
    /// The protocol's default block sizes ("Block size constraints") and no
    /// optional features.
    fn default() -> Self {
        Capabilities {
            read_only: false,
            flush: false,
            fua: false,
            trim: false,
            write_zeroes: false,
            fast_zero: false,
            block_status: false,
            multi_conn: false,
            min_block: 1,
            preferred_block: 4096,
            max_block: u32::MAX,
        }
    }
}

/// A device an export serves. Offsets and lengths reaching these methods are
/// already checked against `size()` and the advertised block sizes.
pub trait BlockDevice: Send + Sync + 'static {
    /// Size in bytes.
    fn size(&self) -> u64;
    fn capabilities(&self) -> Capabilities;
    /// Reads exactly `len` bytes at `offset`.
    fn read(&self, offset: u64, len: u32) -> impl Future<Output = Result<Bytes, DeviceError>> + Send;
    /// Writes `data` at `offset`; with `fua` the data is persistent when
    /// this returns.
    fn write(&self, offset: u64, data: Bytes, fua: bool) -> impl Future<Output = Result<(), DeviceError>> + Send;
    /// A destination for the payload of a WRITE of `len` bytes (at least
    /// one), which the server fills from the socket and then hands to
    /// [`BlockDevice::write_payload`]: a device that has to move the data
    /// into memory of its own anyway receives it there directly. `None`
    /// (what this default gives) lets the server receive it into a pooled
    /// buffer. An error is the WRITE's answer; its payload is then skipped.
    fn payload_buffer(
        &self,
        len: u32,
    ) -> impl Future<Output = Result<Option<Box<dyn PayloadBuf>>, DeviceError>> + Send {
        let _ = len;
        std::future::ready(Ok(None))
    }
    /// Writes a received payload at `offset`, as [`BlockDevice::write`];
    /// the payload lies in a buffer from [`BlockDevice::payload_buffer`] or
    /// in the server's own. The default passes it to `write` as bytes.
    fn write_payload(
        &self,
        offset: u64,
        payload: WritePayload,
        fua: bool,
    ) -> impl Future<Output = Result<(), DeviceError>> + Send {
        self.write(offset, payload.into_bytes(), fua)
    }
    /// Persists every write that has completed, on any connection.
    fn flush(&self) -> impl Future<Output = Result<(), DeviceError>> + Send;
    /// Discards the range (a hint; contents afterwards are unspecified).
    fn trim(&self, offset: u64, len: u64, fua: bool) -> impl Future<Output = Result<(), DeviceError>> + Send;
    /// Makes the range read as zeroes; with `no_hole` it stays allocated.
    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        no_hole: bool,
        fua: bool,
    ) -> impl Future<Output = Result<(), DeviceError>> + Send;
    /// Allocation status of the range, as consecutive extents from `offset`.
    fn block_status(&self, offset: u64, len: u32) -> impl Future<Output = Result<Vec<Extent>, DeviceError>> + Send;
}
