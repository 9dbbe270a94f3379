//! WRITE ATOMIC(16) (SBC-4) and the atomic fields of the Block Limits VPD page
//! (SBC-4). `docs/scsi-features.md` describes the limits and where they are enforced.
//!
//! The whole data-out buffer is collected first and written with every other writer held
//! off (the same gate COMPARE AND WRITE takes), so a reader never sees part of it and an
//! interrupted transfer writes nothing.

use super::io::Range;
use super::Inner;
use crate::cdb::{be16, be64, get};
use crate::sense::Sense;
use crate::status::Outcome;
use crate::task::{Begin, DataOutTask, Nexus};
use std::sync::Arc;

/// Largest atomic write in bytes: the data is held in memory until all of it arrived.
const MAX_ATOMIC_BYTES: u64 = 1 << 20;

/// The atomic limits of a logical unit, in logical blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AtomicLimits {
    /// MAXIMUM ATOMIC TRANSFER LENGTH.
    pub max_len: u32,
    /// ATOMIC ALIGNMENT: the LBA must be a multiple of it (0: any LBA).
    pub alignment: u32,
    /// ATOMIC TRANSFER LENGTH GRANULARITY: the length must be a multiple of it (0: any).
    pub granularity: u32,
    /// MAXIMUM ATOMIC TRANSFER LENGTH WITH ATOMIC BOUNDARY.
    pub max_len_with_boundary: u32,
    /// MAXIMUM ATOMIC BOUNDARY SIZE.
    pub max_boundary: u32,
}

impl AtomicLimits {
    /// Atomic units are whole physical blocks: on 512-byte logical blocks over 4096-byte
    /// physical blocks both alignment and granularity are 8 (a partial physical block would
    /// need a read-modify-write a power loss could tear). The whole command is written in
    /// one piece, so any atomic boundary up to the maximum length is honoured.
    pub(crate) fn of(inner: &Inner) -> Self {
        let max_len = u32::try_from(MAX_ATOMIC_BYTES / inner.block_size()).unwrap_or(u32::MAX);
        let max_len = match u32::try_from(inner.cfg.max_transfer_bytes / inner.block_size()) {
            Ok(0) | Err(_) => max_len,
            Ok(t) => max_len.min(t),
        };
        let per_physical = inner.blocks_per_physical();
        let unit = if per_physical > 1 { per_physical } else { 0 };
        let max_len = if unit > 1 { max_len - max_len % unit } else { max_len };
        Self { max_len, alignment: unit, granularity: unit, max_len_with_boundary: max_len, max_boundary: max_len }
    }

    /// Bytes 44..64 of the Block Limits page.
    pub(crate) fn vpd_fields(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        for (i, v) in [self.max_len, self.alignment, self.granularity, self.max_len_with_boundary, self.max_boundary]
            .iter()
            .enumerate()
        {
            b[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
        }
        b
    }
}

/// Checks SBC-4 orders for a WRITE ATOMIC(16), before any data moves.
fn check(inner: &Inner, r: Range, boundary: u16) -> Result<(), Sense> {
    let lim = AtomicLimits::of(inner);
    inner.check_range(r.lba, r.blocks)?;
    if inner.write_protected() {
        return Err(Sense::write_protected());
    }
    if lim.alignment > 1 && !r.lba.is_multiple_of(u64::from(lim.alignment)) {
        return Err(Sense::invalid_field_in_cdb(2, None));
    }
    if lim.granularity > 1 && !r.blocks.is_multiple_of(u64::from(lim.granularity)) {
        return Err(Sense::invalid_field_in_cdb(12, None));
    }
    if boundary == 0 {
        if r.blocks > u64::from(lim.max_len) {
            return Err(Sense::invalid_field_in_cdb(12, None));
        }
    } else {
        if u32::from(boundary) > lim.max_boundary {
            return Err(Sense::invalid_field_in_cdb(10, None));
        }
        if r.blocks > u64::from(lim.max_len_with_boundary) {
            return Err(Sense::invalid_field_in_cdb(12, None));
        }
    }
    Ok(())
}

/// Collects the data-out buffer; writes it in one piece only when all of it arrived.
struct AtomicWrite {
    inner: Arc<Inner>,
    r: Range,
    fua: bool,
    buf: Vec<u8>,
}

impl DataOutTask for AtomicWrite {
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Outcome> {
        let dst = usize::try_from(offset)
            .ok()
            .and_then(|o| self.buf.get_mut(o..o.checked_add(data.len())?))
            .ok_or_else(|| self.inner.check(Sense::lba_out_of_range()))?;
        dst.copy_from_slice(data);
        Ok(())
    }

    fn finish(self: Box<Self>, transferred: u64) -> Outcome {
        let inner = &*self.inner;
        if transferred < self.buf.len() as u64 {
            // Nothing was written: the atomic write is all or nothing.
            return inner.check(Sense::aborted_command());
        }
        let lba = self.r.lba;
        if let Some(bad) = inner.faults.medium_error_in(lba, self.r.blocks) {
            return inner.check(Sense::write_error(bad));
        }
        {
            let _exclusive = inner.gate.write();
            if inner.backend.write_at(lba << inner.shift, &self.buf).is_err() {
                return inner.check(Sense::write_error(lba));
            }
        }
        match inner.flush_after_write(self.fua, lba) {
            Ok(()) => Outcome::good(),
            Err(s) => inner.check(s),
        }
    }
}

/// The range, byte 1 flags and ATOMIC BOUNDARY of a WRITE ATOMIC(16) CDB: LBA in bytes
/// 2..10, ATOMIC BOUNDARY in 10..12, TRANSFER LENGTH in 12..14.
fn decode_atomic(cdb: &[u8]) -> (Range, u16) {
    (Range { lba: be64(cdb, 2), blocks: u64::from(be16(cdb, 12)), flags: get(cdb, 1) }, be16(cdb, 10))
}

/// WRITE ATOMIC(16) (SBC-4).
pub(crate) fn write_atomic16(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let (r, boundary) = decode_atomic(cdb);
    if let Err(s) = check(inner, r, boundary) {
        return Begin::check(s);
    }
    if r.blocks == 0 {
        return Begin::good();
    }
    let len = r.blocks << inner.shift;
    let fua = r.flags & 0x08 != 0;
    let buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    Begin::DataOut { len, task: Box::new(AtomicWrite { inner: inner.clone(), r, fua, buf }) }
}
