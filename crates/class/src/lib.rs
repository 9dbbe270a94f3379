//! The disk class driver.
//!
//! It learns the adapter's limits (`MaximumTransferLength`, `MaximumPhysicalPages`, `AlignmentMask`), splits each
//! request into partial transfers sized to what the HBA can do as the DDK's class driver does (docs/ddk.md §11), builds
//! the CDBs, sends one SRB per piece through the port driver, releases the LU queue the port froze after an error,
//! retries what is worth retrying a bounded number of times, and turns sense data into typed errors.

mod batch;
pub use scsi_proto::cdb;
pub mod retry;

pub use retry::{RetryPolicy, Verdict, MAX_RETRIES};

use hal::{Buffer, Placement, SystemMemory, PAGE_SIZE};
use port::{AdapterHandle, LuAddress, Srb, SrbFlags, SrbStatus};
use scsi_proto::inquiry::{vpd, CMDQUE};
use scsi_proto::{AscAscq, SenseKey};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why a class request failed.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ClassError {
    /// The medium could not be read or written (MEDIUM ERROR); `lba` is the sense data's INFORMATION.
    #[error("medium error at LBA {lba:?} (ASC/ASCQ {code})")]
    Medium { lba: Option<u64>, code: AscAscq },
    /// The device rejected the command (ILLEGAL REQUEST).
    #[error("illegal request (ASC/ASCQ {code})")]
    IllegalRequest { code: AscAscq },
    /// The device is write protected (DATA PROTECT).
    #[error("the device is write protected")]
    WriteProtected,
    /// COMPARE AND WRITE / VERIFY found different data (MISCOMPARE).
    #[error("miscompare")]
    Miscompare,
    /// Another initiator holds a reservation.
    #[error("reservation conflict")]
    ReservationConflict,
    /// Any other sense the class driver does not retry.
    #[error("device error: sense key {key}, ASC/ASCQ {code}")]
    Sense { key: SenseKey, code: AscAscq },
    /// Retries ran out.
    #[error("gave up after {retries} retries: {last}")]
    RetriesExhausted { retries: u32, last: String },
    /// The port or the adapter failed the SRB.
    #[error("SRB failed with {status:?} (SCSI status {scsi_status:#04x})")]
    Srb { status: SrbStatus, scsi_status: u8 },
    /// The device moved fewer bytes than asked.
    #[error("short transfer: {moved} of {asked} bytes")]
    ShortTransfer { moved: u32, asked: u32 },
    /// The request is outside the disk.
    #[error("LBA range {lba}+{blocks} is outside the disk's {capacity} blocks")]
    OutOfRange { lba: u64, blocks: u64, capacity: u64 },
    /// The request does not meet the adapter's alignment or the block size.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The device reports a block size the class driver cannot use (zero or not a power of two).
    #[error("the device reports a block size of {0}, which is not a power of two")]
    BadBlockSize(u32),
    /// A command buffer in system memory could not be read or written.
    #[error("system memory: {0}")]
    Memory(String),
    /// No memory for a command buffer.
    #[error("no system memory for a {0}-byte command buffer")]
    NoMemory(usize),
}

/// The adapter's limits as the class driver sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub maximum_transfer_length: u32,
    pub maximum_physical_pages: u32,
    pub alignment_mask: u32,
}

impl Limits {
    /// The largest piece for a transfer starting at virtual address `va`: classpnp's
    /// `MAX(MIN(MaxXferLen, (MaxPhysPages − 1) × PAGE_SIZE), PAGE_SIZE)`, with one page back when the buffer is
    /// page-aligned (then N pages hold N pages of data), rounded down to whole blocks.
    pub fn piece_len(&self, va: u64, block_size: u32) -> u32 {
        let pages = self.maximum_physical_pages.saturating_sub(1) as u64
            + u64::from(va.is_multiple_of(PAGE_SIZE) && self.maximum_physical_pages > 0);
        let by_pages = pages.saturating_mul(PAGE_SIZE).min(u32::MAX as u64) as u32;
        let len = self.maximum_transfer_length.min(by_pages).max(PAGE_SIZE as u32);
        let len = len - len % block_size.max(1);
        len.max(block_size)
    }
}

/// What the device's Block Limits VPD page (B0h, SBC-3 §6.5.3) says one command may cover; a field the device
/// does not report (or a device without the page) leaves no limit of its own. See `docs/limits.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceLimits {
    /// MAXIMUM TRANSFER LENGTH in blocks (0: not reported).
    pub max_transfer_blocks: u32,
    /// MAXIMUM WRITE SAME LENGTH in blocks (0: not reported).
    pub max_write_same_blocks: u64,
    /// MAXIMUM UNMAP LBA COUNT (0: UNMAP not implemented, FFFF_FFFFh: no limit).
    pub max_unmap_blocks: u32,
    /// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT (FFFF_FFFFh: no limit).
    pub max_unmap_descriptors: u32,
}

impl Default for DeviceLimits {
    fn default() -> Self {
        DeviceLimits {
            max_transfer_blocks: 0,
            max_write_same_blocks: 0,
            max_unmap_blocks: u32::MAX,
            max_unmap_descriptors: 1,
        }
    }
}

impl DeviceLimits {
    /// Parse the Block Limits page (with its 4-byte header); fields past the end of a short page stay unreported.
    pub fn parse(page: &[u8]) -> Self {
        let be32 = |at: usize| page.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let be64 = |at: usize| {
            page.get(at..at + 8).map(|b| u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        };
        let mut l = DeviceLimits { max_transfer_blocks: be32(8).unwrap_or(0), ..DeviceLimits::default() };
        if let (Some(blocks), Some(descs)) = (be32(20), be32(24)) {
            l.max_unmap_blocks = blocks;
            l.max_unmap_descriptors = descs.max(1);
        }
        l.max_write_same_blocks = be64(36).unwrap_or(0);
        l
    }

    /// Blocks in one WRITE SAME(16): the device's maximum, else what the 32-bit NUMBER OF LOGICAL BLOCKS holds
    /// (0 there would mean "to the end of the medium").
    pub fn write_same_chunk(&self) -> u64 {
        match self.max_write_same_blocks {
            0 => u64::from(u32::MAX),
            n => n.min(u64::from(u32::MAX)),
        }
    }

    /// Blocks in one UNMAP block descriptor.
    pub fn unmap_chunk(&self) -> u64 {
        u64::from(self.max_unmap_blocks.max(1))
    }
}

/// Counters of the class driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    pub requests: u64,
    pub pieces: u64,
    pub retries: u64,
    pub queue_releases: u64,
}

#[derive(Default)]
struct StatsCell {
    requests: AtomicU64,
    pieces: AtomicU64,
    retries: AtomicU64,
    queue_releases: AtomicU64,
}

/// A disk on an adapter, opened by the class driver.
pub struct DiskClass {
    adapter: AdapterHandle,
    address: LuAddress,
    memory: Arc<SystemMemory>,
    block_size: u32,
    blocks: u64,
    limits: Limits,
    device_limits: DeviceLimits,
    timeout_secs: u32,
    vendor: String,
    product: String,
    /// Send tagged SRBs (SIMPLE): the adapter queues per LU and the device reports CmdQue.
    tagged: bool,
    retry: RetryPolicy,
    stats: StatsCell,
}

/// What one command returned.
#[derive(Clone, Debug)]
pub struct CommandResult {
    pub srb: Srb,
}

impl DiskClass {
    /// Claim the disk at `address`: wait for it to be ready, read its identity and capacity.
    pub fn open(adapter: AdapterHandle, address: LuAddress, memory: Arc<SystemMemory>) -> Result<Self, ClassError> {
        let caps = adapter.capabilities().clone();
        let limits = Limits {
            maximum_transfer_length: caps.maximum_transfer_length,
            maximum_physical_pages: caps.maximum_physical_pages,
            alignment_mask: caps.alignment_mask,
        };
        let mut d = DiskClass {
            adapter,
            address,
            memory,
            block_size: 512,
            blocks: 0,
            limits,
            device_limits: DeviceLimits::default(),
            timeout_secs: 30,
            vendor: String::new(),
            product: String::new(),
            tagged: false,
            retry: RetryPolicy::default(),
            stats: StatsCell::default(),
        };
        futures::executor::block_on(d.identify())?;
        // Tagged requests only when both ends queue: the adapter (CommandQueueing in its STORAGE_ADAPTER_DESCRIPTOR)
        // and the device (CmdQue in its standard INQUIRY data, SPC-4 §6.6.2).
        d.tagged &= caps.tagged_queuing && caps.multiple_request_per_lu;
        Ok(d)
    }

    async fn identify(&mut self) -> Result<(), ClassError> {
        self.command(&cdb::test_unit_ready(), None, 0).await?;
        let inq = self.command(&cdb::inquiry(96), Some(SrbFlags::DATA_IN), 96).await?;
        self.tagged = inq.get(7).is_some_and(|b| b & CMDQUE != 0);
        if inq.len() >= 32 {
            self.vendor = String::from_utf8_lossy(&inq[8..16]).trim().to_string();
            self.product = String::from_utf8_lossy(&inq[16..32]).trim().to_string();
        }
        let cap = self.command(&cdb::read_capacity10(), Some(SrbFlags::DATA_IN), 8).await?;
        if cap.len() < 8 {
            return Err(ClassError::ShortTransfer { moved: cap.len() as u32, asked: 8 });
        }
        let last = u32::from_be_bytes([cap[0], cap[1], cap[2], cap[3]]);
        let mut block_size = u32::from_be_bytes([cap[4], cap[5], cap[6], cap[7]]);
        let mut blocks = last as u64 + 1;
        if last == u32::MAX {
            let c16 = self.command(&cdb::read_capacity16(32), Some(SrbFlags::DATA_IN), 32).await?;
            if c16.len() >= 12 {
                let mut l = [0u8; 8];
                l.copy_from_slice(&c16[0..8]);
                blocks = u64::from_be_bytes(l).saturating_add(1);
                block_size = u32::from_be_bytes([c16[8], c16[9], c16[10], c16[11]]);
            }
        }
        if block_size == 0 || !block_size.is_power_of_two() {
            return Err(ClassError::BadBlockSize(block_size));
        }
        self.block_size = block_size;
        self.blocks = blocks;
        self.device_limits = self.block_limits().await?;
        Ok(())
    }

    /// The Block Limits VPD page when the device lists it among its supported pages (SPC-4 §7.8.2), as sd and
    /// classpnp read it: WRITE SAME and UNMAP are split by what it says.
    async fn block_limits(&self) -> Result<DeviceLimits, ClassError> {
        let pages = match self.command(&cdb::inquiry_vpd(vpd::SUPPORTED_PAGES, 255), Some(SrbFlags::DATA_IN), 255).await
        {
            Ok(p) => p,
            Err(ClassError::IllegalRequest { .. }) => return Ok(DeviceLimits::default()),
            Err(e) => return Err(e),
        };
        let listed = pages.get(4..).unwrap_or_default();
        let count = pages.get(3).map_or(0, |n| usize::from(*n));
        if !listed.iter().take(count).any(|p| *p == vpd::BLOCK_LIMITS) {
            return Ok(DeviceLimits::default());
        }
        let page = self.command(&cdb::inquiry_vpd(vpd::BLOCK_LIMITS, 64), Some(SrbFlags::DATA_IN), 64).await?;
        Ok(DeviceLimits::parse(&page))
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }
    pub fn blocks(&self) -> u64 {
        self.blocks
    }
    pub fn size_bytes(&self) -> u64 {
        self.blocks * self.block_size as u64
    }
    /// `TimeOutValue` (seconds) of the SRBs this disk sends; the port times them.
    pub fn set_timeout(&mut self, secs: u32) {
        self.timeout_secs = secs.max(1);
    }
    pub fn limits(&self) -> Limits {
        self.limits
    }
    /// The device's own limits, from its Block Limits VPD page.
    pub fn device_limits(&self) -> DeviceLimits {
        self.device_limits
    }
    /// Whether read and write SRBs go out tagged (SIMPLE).
    pub fn tagged(&self) -> bool {
        self.tagged
    }
    pub fn address(&self) -> LuAddress {
        self.address
    }
    pub fn adapter(&self) -> &AdapterHandle {
        &self.adapter
    }
    pub fn memory(&self) -> &Arc<SystemMemory> {
        &self.memory
    }
    pub fn vendor(&self) -> &str {
        &self.vendor
    }
    pub fn product(&self) -> &str {
        &self.product
    }
    pub fn stats(&self) -> ClassStats {
        ClassStats {
            requests: self.stats.requests.load(Ordering::Relaxed),
            pieces: self.stats.pieces.load(Ordering::Relaxed),
            retries: self.stats.retries.load(Ordering::Relaxed),
            queue_releases: self.stats.queue_releases.load(Ordering::Relaxed),
        }
    }

    /// Read `len` bytes at `lba` into `buf[offset..]`.
    pub fn read(&self, lba: u64, buf: &Buffer, offset: usize, len: usize) -> Result<(), ClassError> {
        futures::executor::block_on(self.read_async(lba, buf, offset, len))
    }

    /// Write `buf[offset..offset + len]` at `lba`; `fua` asks the device to make it durable before it answers.
    pub fn write(&self, lba: u64, buf: &Buffer, offset: usize, len: usize, fua: bool) -> Result<(), ClassError> {
        futures::executor::block_on(self.write_async(lba, buf, offset, len, fua))
    }

    /// SYNCHRONIZE CACHE.
    pub fn flush(&self) -> Result<(), ClassError> {
        futures::executor::block_on(self.flush_async())
    }

    pub async fn read_async(&self, lba: u64, buf: &Buffer, offset: usize, len: usize) -> Result<(), ClassError> {
        self.transfer(false, lba, buf, offset, len, false).await
    }

    pub async fn write_async(
        &self,
        lba: u64,
        buf: &Buffer,
        offset: usize,
        len: usize,
        fua: bool,
    ) -> Result<(), ClassError> {
        self.transfer(true, lba, buf, offset, len, fua).await
    }

    pub async fn flush_async(&self) -> Result<(), ClassError> {
        self.command(&cdb::synchronize_cache10(), None, 0).await.map(|_| ())
    }

    /// UNMAP `blocks` blocks at `lba`: descriptors of at most MAXIMUM UNMAP LBA COUNT blocks, at most MAXIMUM UNMAP
    /// BLOCK DESCRIPTOR COUNT of them per command (SBC-3 §5.28, Block Limits VPD).
    pub async fn unmap_async(&self, lba: u64, blocks: u64) -> Result<(), ClassError> {
        self.check_range(lba, blocks)?;
        let per_desc = self.device_limits.unmap_chunk().min(u64::from(u32::MAX));
        // The parameter list length is 16 bits: (65535 - 8) / 16 descriptors at most.
        let per_cmd = (self.device_limits.max_unmap_descriptors as usize).clamp(1, (u16::MAX as usize - 8) / 16);
        let mut at = lba;
        let end = lba + blocks;
        while at < end {
            let mut ranges = Vec::new();
            while at < end && ranges.len() < per_cmd {
                let n = (end - at).min(per_desc);
                ranges.push((at, n as u32));
                at += n;
            }
            let params = cdb::unmap_parameters(&ranges);
            self.command_out(&cdb::unmap(params.len() as u16), &params).await?;
        }
        Ok(())
    }

    /// Zero `blocks` blocks at `lba` with WRITE SAME(16), each at most the device's MAXIMUM WRITE SAME LENGTH;
    /// `unmap` lets the device deallocate them.
    pub async fn write_zeroes_async(&self, lba: u64, blocks: u64, unmap: bool) -> Result<(), ClassError> {
        self.check_range(lba, blocks)?;
        let zero = vec![0u8; self.block_size as usize];
        let mut at = lba;
        let end = lba + blocks;
        // Keep each WRITE SAME modest so one command does not hold the LU for long, and within the device's limit.
        let chunk = self.device_limits.write_same_chunk().min(1 << 16);
        while at < end {
            let n = (end - at).min(chunk) as u32;
            self.command_out(&cdb::write_same16(at, n, unmap), &zero).await?;
            at += n as u64;
        }
        Ok(())
    }

    /// GET LBA STATUS from `lba`: a list of (lba, blocks, mapped) descriptors.
    pub async fn lba_status_async(&self, lba: u64) -> Result<Vec<(u64, u32, bool)>, ClassError> {
        self.check_range(lba, 1)?;
        let data = self.command(&cdb::get_lba_status(lba, 4096), Some(SrbFlags::DATA_IN), 4096).await?;
        let mut out = Vec::new();
        if data.len() < 8 {
            return Ok(out);
        }
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize + 4;
        let mut i = 8;
        while i + 16 <= len.min(data.len()) {
            let mut l = [0u8; 8];
            l.copy_from_slice(&data[i..i + 8]);
            let start = u64::from_be_bytes(l);
            let n = u32::from_be_bytes([data[i + 8], data[i + 9], data[i + 10], data[i + 11]]);
            let mapped = data[i + 12] & 0x0F == 0;
            out.push((start, n, mapped));
            i += 16;
        }
        Ok(out)
    }

    fn check_range(&self, lba: u64, blocks: u64) -> Result<(), ClassError> {
        match lba.checked_add(blocks) {
            Some(end) if end <= self.blocks => Ok(()),
            _ => Err(ClassError::OutOfRange { lba, blocks, capacity: self.blocks }),
        }
    }

    /// Split, send and reassemble one read or write.
    async fn transfer(
        &self,
        write: bool,
        lba: u64,
        buf: &Buffer,
        offset: usize,
        len: usize,
        fua: bool,
    ) -> Result<(), ClassError> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let bs = self.block_size as usize;
        if len == 0 {
            return Ok(());
        }
        if !len.is_multiple_of(bs) {
            return Err(ClassError::BadRequest(format!("{len} bytes is not a multiple of the {bs}-byte block")));
        }
        if offset.checked_add(len).is_none_or(|e| e > buf.len()) {
            return Err(ClassError::BadRequest(format!("{offset}+{len} is outside the {}-byte buffer", buf.len())));
        }
        self.check_range(lba, (len / bs) as u64)?;
        let va = buf.va().0 + offset as u64;
        if va & self.limits.alignment_mask as u64 != 0 {
            return Err(ClassError::BadRequest(format!(
                "buffer address {va:#x} does not meet the adapter's AlignmentMask {:#x}",
                self.limits.alignment_mask
            )));
        }
        let mut piece = self.limits.piece_len(va, self.block_size) as usize;
        // Never more than the device's MAXIMUM TRANSFER LENGTH either.
        let device_max = (self.device_limits.max_transfer_blocks as usize).saturating_mul(bs);
        if device_max > 0 {
            piece = piece.min(device_max);
        }
        let mut pieces = Vec::new();
        let mut at = 0usize;
        while at < len {
            let n = piece.min(len - at);
            pieces.push((lba + (at / bs) as u64, offset + at, n));
            at += n;
        }
        self.stats.pieces.fetch_add(pieces.len() as u64, Ordering::Relaxed);
        let direction = if write { SrbFlags::DATA_OUT } else { SrbFlags::DATA_IN };
        let make = |i: usize| {
            let (plba, poff, plen) = pieces[i];
            let c = cdb::read_write(write, plba, (plen / bs) as u32, fua);
            let mut srb = Srb::execute_scsi(self.address, &c).with_data(buf, poff, plen as u32, direction);
            srb.time_out_value = self.timeout_secs;
            if self.tagged {
                srb.srb_flags.insert(SrbFlags::QUEUE_ACTION_ENABLE);
                srb.queue_action = port::queue_action::SIMPLE_TAG;
            }
            srb
        };
        let batch = batch::Batch::new();
        for i in 0..pieces.len() {
            self.adapter.submit_with(make(i), batch.completion(i));
        }
        let mut outstanding = pieces.len();
        let mut retries = vec![0u32; pieces.len()];
        let mut error: Option<ClassError> = None;
        while outstanding > 0 {
            for (i, srb) in batch.next().await {
                let Some(srb) = srb else {
                    return Err(ClassError::Srb { status: SrbStatus::NO_HBA, scsi_status: 0 });
                };
                if srb.srb_status.queue_frozen() {
                    self.release_queue().await;
                }
                match self.retry.decide(&srb, pieces[i].2 as u32, false, retries[i]) {
                    // Once a piece failed the request fails: the others finish, but are not sent again.
                    Verdict::Retry { delay, .. } if error.is_none() => {
                        retries[i] += 1;
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        sleep(delay).await;
                        self.adapter.submit_with(make(i), batch.completion(i));
                    }
                    Verdict::Retry { why, .. } => {
                        outstanding -= 1;
                        error.get_or_insert(ClassError::RetriesExhausted { retries: retries[i], last: why });
                    }
                    Verdict::Done => outstanding -= 1,
                    Verdict::Fail(e) => {
                        outstanding -= 1;
                        error.get_or_insert(e);
                    }
                }
            }
        }
        error.map_or(Ok(()), Err)
    }

    /// Thaw the LU queue the port froze after an error (the class driver's ReleaseQueue).
    async fn release_queue(&self) {
        self.stats.queue_releases.fetch_add(1, Ordering::Relaxed);
        self.adapter.release_queue(self.address).await;
    }

    /// Send a small command, returning its data-in bytes (fewer than `alloc` when the device returns less).
    pub async fn command(&self, cdb: &[u8], direction: Option<SrbFlags>, alloc: usize) -> Result<Vec<u8>, ClassError> {
        let buf = if alloc > 0 {
            Some(self.memory.alloc(alloc, Placement::Any).map_err(|_| ClassError::NoMemory(alloc))?)
        } else {
            None
        };
        let srb = self.run_with_retries(cdb, direction, buf.as_ref(), alloc, true).await?;
        match buf {
            Some(b) => {
                let n = (srb.data_transfer_length as usize).min(alloc);
                let mut out = vec![0u8; n];
                b.read(0, &mut out).map_err(|e| ClassError::Memory(e.to_string()))?;
                Ok(out)
            }
            None => Ok(Vec::new()),
        }
    }

    /// Send a command with a data-out parameter list.
    pub async fn command_out(&self, cdb: &[u8], data: &[u8]) -> Result<(), ClassError> {
        let buf = self.memory.alloc(data.len(), Placement::Any).map_err(|_| ClassError::NoMemory(data.len()))?;
        buf.write(0, data).map_err(|e| ClassError::Memory(e.to_string()))?;
        self.run_with_retries(cdb, Some(SrbFlags::DATA_OUT), Some(&buf), data.len(), false).await.map(|_| ())
    }

    /// One SRB, sent again as the retry policy says.
    async fn run_with_retries(
        &self,
        cdb: &[u8],
        direction: Option<SrbFlags>,
        buf: Option<&Buffer>,
        len: usize,
        short_ok: bool,
    ) -> Result<Srb, ClassError> {
        let mut retries = 0;
        loop {
            let mut srb = Srb::execute_scsi(self.address, cdb);
            srb.time_out_value = self.timeout_secs;
            if let (Some(d), Some(b)) = (direction, buf) {
                srb = srb.with_data(b, 0, len as u32, d);
            }
            let srb = self.adapter.submit(srb).await;
            if srb.srb_status.queue_frozen() {
                self.release_queue().await;
            }
            match self.retry.decide(&srb, len as u32, short_ok, retries) {
                Verdict::Done => return Ok(srb),
                Verdict::Retry { delay, .. } => {
                    retries += 1;
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    sleep(delay).await;
                }
                Verdict::Fail(e) => return Err(e),
            }
        }
    }
}

/// Wait without blocking the thread and without assuming a runtime: the async callers run on tokio, the blocking
/// wrappers on `futures::executor`, and a blocked thread would stall every other request on it.
async fn sleep(d: Duration) {
    if !d.is_zero() {
        futures_timer::Delay::new(d).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> Limits {
        Limits { maximum_transfer_length: 64 * 1024, maximum_physical_pages: 17, alignment_mask: 1 }
    }

    #[test]
    fn page_aligned_pieces_are_the_maximum_transfer_length() {
        assert_eq!(limits().piece_len(0x1000_0000, 512), 64 * 1024);
    }

    #[test]
    fn unaligned_pieces_leave_room_for_the_extra_page() {
        // 17 pages, unaligned start: (17 - 1) pages = 64 KiB still fits MaximumTransferLength.
        assert_eq!(limits().piece_len(0x1000_0200, 512), 64 * 1024);
        let l = Limits { maximum_transfer_length: 1 << 20, maximum_physical_pages: 5, alignment_mask: 0 };
        assert_eq!(l.piece_len(0x1000_0200, 512), 4 * 4096);
        assert_eq!(l.piece_len(0x1000_0000, 512), 5 * 4096);
    }

    #[test]
    fn no_scatter_gather_still_moves_a_page() {
        let l = Limits { maximum_transfer_length: 1 << 20, maximum_physical_pages: 1, alignment_mask: 0 };
        assert_eq!(l.piece_len(0x1000_0200, 512), 4096);
    }

    proptest! {
        #[test]
        fn a_piece_never_spans_more_pages_than_the_adapter_takes(
            max_len in 4096u32..(1 << 20), pages in 1u32..64, va in 0u64..(1 << 30), bs in prop::sample::select(vec![512u32, 4096]),
        ) {
            let l = Limits { maximum_transfer_length: max_len, maximum_physical_pages: pages, alignment_mask: 0 };
            let p = l.piece_len(va, bs) as u64;
            prop_assert!(p.is_multiple_of(bs as u64) && p > 0);
            prop_assert!(p <= (max_len as u64).max(4096));
            let span = ((va % PAGE_SIZE) + p).div_ceil(PAGE_SIZE);
            // The classpnp rule guarantees the span fits MaximumPhysicalPages whenever more than one page is allowed.
            if pages > 1 {
                prop_assert!(span <= pages as u64, "span {} > {}", span, pages);
            }
        }
    }
}
