//! An NBD export's device as the server runs it: every request counted in the export's [`LuStats`], and a switch
//! that retires the export when it is removed at run time (clients still attached to it get `ESHUTDOWN`, clients of
//! other exports are untouched).

use crate::metrics::{LuStats, Op};
use bytes::Bytes;
use nbd::{BlockDevice, Capabilities, DeviceError, Extent, PayloadBuf, WritePayload};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct Metered<D> {
    inner: Arc<D>,
    stats: Arc<LuStats>,
    retired: AtomicBool,
}

impl<D: BlockDevice> Metered<D> {
    pub fn new(inner: Arc<D>, stats: Arc<LuStats>) -> Self {
        Metered { inner, stats, retired: AtomicBool::new(false) }
    }

    /// From now on every request fails with `ESHUTDOWN`.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    fn check(&self) -> Result<(), DeviceError> {
        if self.is_retired() {
            Err(DeviceError::Shutdown)
        } else {
            Ok(())
        }
    }

    pub fn stats(&self) -> &Arc<LuStats> {
        &self.stats
    }
}

impl<D: BlockDevice> BlockDevice for Metered<D> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, DeviceError> {
        self.check()?;
        let c = self.stats.begin();
        let r = self.inner.read(offset, len).await;
        c.finish(Op::Read, r.as_ref().map_or(0, |b| b.len() as u64), r.is_ok());
        r
    }

    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), DeviceError> {
        self.check()?;
        let c = self.stats.begin();
        let n = data.len() as u64;
        let r = self.inner.write(offset, data, fua).await;
        c.finish(Op::Write, n, r.is_ok());
        r
    }

    async fn payload_buffer(&self, len: u32) -> Result<Option<Box<dyn PayloadBuf>>, DeviceError> {
        self.check()?;
        self.inner.payload_buffer(len).await
    }

    async fn write_payload(&self, offset: u64, payload: WritePayload, fua: bool) -> Result<(), DeviceError> {
        self.check()?;
        let c = self.stats.begin();
        let n = payload.len() as u64;
        let r = self.inner.write_payload(offset, payload, fua).await;
        c.finish(Op::Write, n, r.is_ok());
        r
    }

    async fn flush(&self) -> Result<(), DeviceError> {
        // A retired export's data still reaches the disk: the final flush at shutdown must not be refused.
        let c = self.stats.begin();
        let r = self.inner.flush().await;
        c.finish(Op::Other, 0, r.is_ok());
        r
    }

    async fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), DeviceError> {
        self.check()?;
        let c = self.stats.begin();
        let r = self.inner.trim(offset, len, fua).await;
        c.finish(Op::Other, 0, r.is_ok());
        r
    }

    async fn write_zeroes(&self, offset: u64, len: u64, no_hole: bool, fua: bool) -> Result<(), DeviceError> {
        self.check()?;
        let c = self.stats.begin();
        let r = self.inner.write_zeroes(offset, len, no_hole, fua).await;
        c.finish(Op::Other, 0, r.is_ok());
        r
    }

    async fn block_status(&self, offset: u64, len: u32) -> Result<Vec<Extent>, DeviceError> {
        self.check()?;
        let c = self.stats.begin();
        let r = self.inner.block_status(offset, len).await;
        c.finish(Op::Other, 0, r.is_ok());
        r
    }
}
