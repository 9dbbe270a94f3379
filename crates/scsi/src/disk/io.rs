//! Medium access: READ, WRITE, VERIFY, WRITE AND VERIFY, COMPARE AND WRITE, ORWRITE,
//! PRE-FETCH and SYNCHRONIZE CACHE (SBC-3 §5). Bulk data moves straight between the
//! backend and the caller's chunk.

use super::Inner;
use crate::cdb::{be16, be24, be32, be64, get};
use crate::sense::Sense;
use crate::status::Outcome;
use crate::task::{Begin, DataInTask, DataOutTask, Nexus};
use std::sync::Arc;

/// The LBA, block count and byte 1 flags of a CDB in one of the four SBC layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Range {
    pub lba: u64,
    pub blocks: u64,
    pub flags: u8,
}

/// FUA in byte 1 (SBC-3 §5.8): complete only once the data is on the medium.
const FUA: u8 = 0x08;

pub(crate) fn decode(cdb: &[u8]) -> Range {
    match cdb[0] >> 5 {
        0 => {
            // READ(6)/WRITE(6): 21-bit LBA, and a length of 0 means 256 (SBC-3 §5.10).
            let n = u64::from(get(cdb, 4));
            Range { lba: u64::from(be24(cdb, 1) & 0x1F_FFFF), blocks: if n == 0 { 256 } else { n }, flags: 0 }
        }
        1 | 2 => Range { lba: u64::from(be32(cdb, 2)), blocks: u64::from(be16(cdb, 7)), flags: get(cdb, 1) },
        5 => Range { lba: u64::from(be32(cdb, 2)), blocks: u64::from(be32(cdb, 6)), flags: get(cdb, 1) },
        _ => Range { lba: be64(cdb, 2), blocks: u64::from(be32(cdb, 10)), flags: get(cdb, 1) },
    }
}

/// The byte of a READ/WRITE/VERIFY/PRE-FETCH CDB where its TRANSFER LENGTH (or PREFETCH LENGTH) starts.
fn length_field(cdb: &[u8]) -> u16 {
    match cdb[0] >> 5 {
        0 => 4,
        1 | 2 => 7,
        5 => 6,
        _ => 10,
    }
}

/// The largest transfer in blocks, as the Block Limits VPD page reports it (0: no limit).
pub(crate) fn max_transfer_blocks(inner: &Inner) -> u64 {
    u64::from(u32::try_from(inner.cfg.max_transfer_bytes / inner.block_size()).unwrap_or(u32::MAX))
}

/// SBC-3 §6.5.3: a command asking for more blocks than the MAXIMUM TRANSFER LENGTH (or MAXIMUM PREFETCH LENGTH,
/// the same value here) of the Block Limits VPD page is INVALID FIELD IN CDB, pointing at its length field.
/// `docs/limits.md` lists every limit and where it is enforced.
fn within_transfer_limit(inner: &Inner, cdb: &[u8], blocks: u64) -> Result<(), Sense> {
    let max = max_transfer_blocks(inner);
    if max != 0 && blocks > max {
        return Err(Sense::invalid_field_in_cdb(length_field(cdb), None));
    }
    Ok(())
}

/// Byte position and length of a checked range; cannot overflow since the range lies
/// inside a backend whose size is a u64.
fn bytes(inner: &Inner, r: Range) -> (u64, u64) {
    (r.lba << inner.shift, r.blocks << inner.shift)
}

/// The LBAs a byte run of the data stream covers.
fn lbas(inner: &Inner, off: u64, len: usize) -> (u64, u64) {
    let first = off >> inner.shift;
    let last = (off + len as u64).div_ceil(inner.block_size());
    (first, last.saturating_sub(first).max(1))
}

/// Position of a chunk in the data stream, refusing chunks outside it.
fn place(inner: &Inner, base: u64, len: u64, offset: u64, n: usize) -> Result<u64, Outcome> {
    match offset.checked_add(n as u64) {
        Some(end) if end <= len => Ok(base + offset),
        _ => Err(inner.check(Sense::lba_out_of_range())),
    }
}

struct ReadTask {
    inner: Arc<Inner>,
    base: u64,
    len: u64,
}

impl DataInTask for ReadTask {
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Outcome> {
        let inner = &*self.inner;
        let off = place(inner, self.base, self.len, offset, buf.len())?;
        let (lba, n) = lbas(inner, off, buf.len());
        if let Some(bad) = inner.faults.medium_error_in(lba, n) {
            return Err(inner.check(Sense::unrecovered_read_error(bad)));
        }
        inner.backend.read_at(off, buf).map_err(|_| inner.check(Sense::unrecovered_read_error(lba)))
    }

    fn finish(self: Box<Self>, _transferred: u64) -> Outcome {
        Outcome::good()
    }
}

pub(crate) fn read(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let r = decode(cdb);
    if let Err(s) = within_transfer_limit(inner, cdb, r.blocks).and_then(|()| inner.check_range(r.lba, r.blocks)) {
        return Begin::check(s);
    }
    if r.blocks == 0 {
        return Begin::good();
    }
    let (base, len) = bytes(inner, r);
    Begin::DataIn { len, task: Box::new(ReadTask { inner: inner.clone(), base, len }) }
}

struct WriteTask {
    inner: Arc<Inner>,
    base: u64,
    len: u64,
    fua: bool,
}

impl DataOutTask for WriteTask {
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Outcome> {
        let inner = &*self.inner;
        let off = place(inner, self.base, self.len, offset, data.len())?;
        let (lba, n) = lbas(inner, off, data.len());
        if let Some(bad) = inner.faults.medium_error_in(lba, n) {
            return Err(inner.check(Sense::write_error(bad)));
        }
        let _shared = inner.gate.read();
        inner.backend.write_at(off, data).map_err(|_| inner.check(Sense::write_error(lba)))
    }

    fn finish(self: Box<Self>, _transferred: u64) -> Outcome {
        let inner = &*self.inner;
        match inner.flush_after_write(self.fua, self.base >> inner.shift) {
            Ok(()) => Outcome::good(),
            Err(s) => inner.check(s),
        }
    }
}

/// Checks shared by every command that writes a range.
fn writable(inner: &Inner, r: Range) -> Result<(), Sense> {
    inner.check_range(r.lba, r.blocks)?;
    if inner.write_protected() {
        return Err(Sense::write_protected());
    }
    Ok(())
}

fn begin_write(inner: &Arc<Inner>, r: Range, fua: bool) -> Begin {
    if let Err(s) = writable(inner, r) {
        return Begin::check(s);
    }
    if r.blocks == 0 {
        return Begin::good();
    }
    let (base, len) = bytes(inner, r);
    Begin::DataOut { len, task: Box::new(WriteTask { inner: inner.clone(), base, len, fua }) }
}

pub(crate) fn write(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let r = decode(cdb);
    if let Err(s) = within_transfer_limit(inner, cdb, r.blocks) {
        return Begin::check(s);
    }
    begin_write(inner, r, r.flags & FUA != 0)
}

/// WRITE AND VERIFY (SBC-3 §5.33): the data must be on the medium before the command
/// completes, so it is written as FUA; the backend reports failures on write.
pub(crate) fn write_and_verify(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let r = decode(cdb);
    if let Err(s) = within_transfer_limit(inner, cdb, r.blocks) {
        return Begin::check(s);
    }
    begin_write(inner, r, true)
}

/// Compares the data-out stream with the medium; the first difference is reported.
struct VerifyTask {
    inner: Arc<Inner>,
    base: u64,
    len: u64,
    scratch: Vec<u8>,
    miscompare: Option<u64>,
}

impl DataOutTask for VerifyTask {
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Outcome> {
        let inner = &*self.inner;
        let off = place(inner, self.base, self.len, offset, data.len())?;
        if self.miscompare.is_some() {
            return Ok(());
        }
        self.scratch.resize(data.len(), 0);
        let (lba, _) = lbas(inner, off, data.len());
        inner.backend.read_at(off, &mut self.scratch).map_err(|_| inner.check(Sense::unrecovered_read_error(lba)))?;
        if let Some(i) = data.iter().zip(&self.scratch).position(|(a, b)| a != b) {
            self.miscompare = Some(offset + i as u64);
        }
        Ok(())
    }

    fn finish(self: Box<Self>, _transferred: u64) -> Outcome {
        match self.miscompare {
            Some(at) => self.inner.check(Sense::miscompare(at)),
            None => Outcome::good(),
        }
    }
}

/// VERIFY (SBC-3 §5.29): BYTCHK 00b checks the medium, 01b compares the data-out buffer
/// with it, 11b compares one block with every block of the range; 10b is reserved.
pub(crate) fn verify(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let r = decode(cdb);
    // The CDB's own fields are checked before its range, as for READ and WRITE: a length over the limit is
    // INVALID FIELD IN CDB wherever it starts.
    let bytchk = (r.flags >> 1) & 0x03;
    if bytchk == 2 {
        return Begin::check(Sense::invalid_field_in_cdb(1, Some(2)));
    }
    // Only a byte-by-byte compare moves the range's data.
    if bytchk == 1 {
        if let Err(s) = within_transfer_limit(inner, cdb, r.blocks) {
            return Begin::check(s);
        }
    }
    if let Err(s) = inner.check_range(r.lba, r.blocks) {
        return Begin::check(s);
    }
    if r.blocks == 0 {
        return Begin::good();
    }
    let (base, len) = bytes(inner, r);
    match bytchk {
        0 => match inner.faults.medium_error_in(r.lba, r.blocks) {
            Some(bad) => Begin::check(Sense::unrecovered_read_error(bad)),
            None => Begin::good(),
        },
        1 => Begin::DataOut {
            len,
            task: Box::new(VerifyTask { inner: inner.clone(), base, len, scratch: Vec::new(), miscompare: None }),
        },
        _ => {
            let inner2 = inner.clone();
            Begin::param_out(inner.block_size(), move |block| verify_same(&inner2, base, len, &block))
        }
    }
}

fn verify_same(inner: &Inner, base: u64, len: u64, block: &[u8]) -> Outcome {
    let mut scratch = vec![0u8; block.len()];
    let mut pos = 0u64;
    while pos < len {
        if inner.backend.read_at(base + pos, &mut scratch).is_err() {
            return inner.check(Sense::unrecovered_read_error((base + pos) >> inner.shift));
        }
        if let Some(i) = block.iter().zip(&scratch).position(|(a, b)| a != b) {
            return inner.check(Sense::miscompare(pos + i as u64));
        }
        pos += block.len() as u64;
    }
    Outcome::good()
}

/// Largest COMPARE AND WRITE, in blocks (reported in VPD B0h).
pub(crate) const MAX_COMPARE_AND_WRITE: u8 = 255;

/// COMPARE AND WRITE (SBC-3 §5.2): the data-out buffer holds the verify data then the
/// write data; the compare and the write happen with every other writer held off.
pub(crate) fn compare_and_write(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let lba = be64(cdb, 2);
    let n = get(cdb, 13);
    let r = Range { lba, blocks: u64::from(n), flags: get(cdb, 1) };
    if let Err(s) = writable(inner, r) {
        return Begin::check(s);
    }
    if n == 0 {
        return Begin::good();
    }
    let (base, len) = bytes(inner, r);
    let fua = r.flags & FUA != 0;
    let inner2 = inner.clone();
    let collect = Begin::param_out(2 * len, move |buf| {
        let (verify, data) = buf.split_at(len as usize);
        let _exclusive = inner2.gate.write();
        let mut current = vec![0u8; len as usize];
        if inner2.backend.read_at(base, &mut current).is_err() {
            return inner2.check(Sense::unrecovered_read_error(lba));
        }
        if let Some(i) = verify.iter().zip(&current).position(|(a, b)| a != b) {
            return inner2.check(Sense::miscompare(i as u64));
        }
        if inner2.backend.write_at(base, data).is_err() {
            return inner2.check(Sense::write_error(lba));
        }
        match inner2.flush_after_write(fua, lba) {
            Ok(()) => Outcome::good(),
            Err(s) => inner2.check(s),
        }
    });
    abort_if_short(collect)
}

/// A COMPARE AND WRITE whose data-out buffer did not fully arrive is not performed
/// (the atomic operation is all or nothing); report ABORTED COMMAND rather than a
/// parameter-list error, since the CDB carries no parameter list length.
fn abort_if_short(b: Begin) -> Begin {
    struct Whole(Box<dyn DataOutTask>, u64);
    impl DataOutTask for Whole {
        fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Outcome> {
            self.0.write(offset, data)
        }
        fn finish(self: Box<Self>, transferred: u64) -> Outcome {
            if transferred < self.1 {
                return Outcome::check(Sense::aborted_command());
            }
            self.0.finish(transferred)
        }
    }
    match b {
        Begin::DataOut { len, task } => Begin::DataOut { len, task: Box::new(Whole(task, len)) },
        other => other,
    }
}

/// Largest ORWRITE in bytes when no MAXIMUM TRANSFER LENGTH is configured: its data is held in memory for the
/// read-modify-write.
const MAX_ORWRITE_BYTES: u64 = 8 << 20;

/// ORWRITE (SBC-3 §5.9) with BMOP 000b: OR the data into the medium, atomically.
pub(crate) fn orwrite(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let r = decode(cdb);
    if let Err(s) = writable(inner, r) {
        return Begin::check(s);
    }
    if r.blocks == 0 {
        return Begin::good();
    }
    let (base, len) = bytes(inner, r);
    // The advertised MAXIMUM TRANSFER LENGTH is the limit (an ORWRITE within it must not fail for its size).
    let limit =
        if max_transfer_blocks(inner) == 0 { MAX_ORWRITE_BYTES >> inner.shift } else { max_transfer_blocks(inner) };
    if r.blocks > limit {
        return Begin::check(Sense::invalid_field_in_cdb(length_field(cdb), None));
    }
    let fua = r.flags & FUA != 0;
    let inner2 = inner.clone();
    abort_if_short(Begin::param_out(len, move |data| {
        let _exclusive = inner2.gate.write();
        let mut cur = vec![0u8; data.len()];
        if inner2.backend.read_at(base, &mut cur).is_err() {
            return inner2.check(Sense::unrecovered_read_error(r.lba));
        }
        for (c, d) in cur.iter_mut().zip(&data) {
            *c |= d;
        }
        if inner2.backend.write_at(base, &cur).is_err() {
            return inner2.check(Sense::write_error(r.lba));
        }
        match inner2.flush_after_write(fua, r.lba) {
            Ok(()) => Outcome::good(),
            Err(s) => inner2.check(s),
        }
    }))
}

/// PRE-FETCH (SBC-3 §5.11): nothing to load for a backend without its own cache; GOOD
/// once the range is checked.
pub(crate) fn prefetch(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let r = decode(cdb);
    match within_transfer_limit(inner, cdb, r.blocks).and_then(|()| inner.check_range(r.lba, r.blocks)) {
        Ok(()) => Begin::good(),
        Err(s) => Begin::check(s),
    }
}

/// SYNCHRONIZE CACHE (SBC-3 §5.22): a block count of 0 means through the last LBA.
/// The backend flushes as a whole, which covers any range.
pub(crate) fn synchronize_cache(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let r = decode(cdb);
    let n = if r.blocks == 0 { inner.blocks().saturating_sub(r.lba) } else { r.blocks };
    if r.lba > inner.blocks() {
        return Begin::check(Sense::lba_out_of_range());
    }
    if let Err(s) = inner.check_range(r.lba, n) {
        return Begin::check(s);
    }
    match inner.flush(r.lba) {
        Ok(()) => Begin::good(),
        Err(s) => Begin::check(s),
    }
}
