//! Logical block provisioning (SBC-3 §4.7): UNMAP, WRITE SAME (with UNMAP), GET LBA STATUS.

use super::io::{decode, Range};
use super::Inner;
use crate::cdb::{be16, be32, be64, len32, set32, PutBe};
use crate::sense::Sense;
use crate::status::Outcome;
use crate::task::{Begin, Nexus};
use std::sync::Arc;

/// UNMAP (SBC-3 §5.28): deallocate the ranges of the parameter list; all are checked
/// before any is touched.
pub(crate) fn unmap(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let len = u64::from(be16(cdb, 7));
    if inner.write_protected() {
        return Begin::check(Sense::write_protected());
    }
    if len == 0 {
        return Begin::good();
    }
    // A list too short for its header is PARAMETER LIST LENGTH ERROR (SBC-3 §5.28.2).
    if len < 8 {
        return Begin::check(Sense::param_list_length_error());
    }
    let inner2 = inner.clone();
    Begin::param_out(len, move |list| do_unmap(&inner2, &list))
}

fn do_unmap(inner: &Inner, list: &[u8]) -> Outcome {
    let desc_len = usize::from(be16(list, 2));
    // Only whole descriptors inside the list count (SBC-3 §5.28.2).
    let avail = desc_len.min(list.len().saturating_sub(8)) / 16;
    let max_desc = inner.cfg.max_unmap_descriptors as usize;
    if avail > max_desc {
        return inner.check(Sense::invalid_field_in_param(2, None));
    }
    let mut ranges = Vec::with_capacity(avail);
    for i in 0..avail {
        let at = 8 + 16 * i;
        let lba = be64(list, at);
        let n = u64::from(be32(list, at + 8));
        if let Err(s) = inner.check_range(lba, n) {
            return inner.check(s);
        }
        if n > u64::from(inner.cfg.max_unmap_blocks) {
            return inner.check(Sense::invalid_field_in_param((at + 8) as u16, None));
        }
        ranges.push((lba, n));
    }
    let _shared = inner.gate.read();
    for (lba, n) in ranges {
        if n > 0 && inner.backend.discard(lba << inner.shift, n << inner.shift).is_err() {
            return inner.check(Sense::write_error(lba));
        }
    }
    Outcome::good()
}

/// Bytes written per backend call by WRITE SAME.
const SAME_CHUNK: usize = 1 << 20;

/// WRITE SAME(10/16) (SBC-3 §5.41, §5.42): one block of data (or zeros with NDOB) written
/// to every block of the range; 0 blocks means through the last LBA (WSNZ = 0 in VPD B0h).
/// With UNMAP and provisioning on the range is deallocated whatever the data block holds
/// (SBC-3 §4.7.3.4: the device server unmaps when it can), and reads back as zeros
/// (LBPRZ = 1).
pub(crate) fn write_same(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let mut r = decode(cdb);
    let unmap = r.flags & 0x08 != 0;
    let ndob = cdb[0] == 0x93 && r.flags & 0x01 != 0;
    if r.lba > inner.blocks() {
        return Begin::check(Sense::lba_out_of_range());
    }
    if r.blocks == 0 {
        r.blocks = inner.blocks() - r.lba;
    }
    if let Err(s) = inner.check_range(r.lba, r.blocks) {
        return Begin::check(s);
    }
    // SBC-3 §5.42: more blocks than MAXIMUM WRITE SAME LENGTH is INVALID FIELD IN CDB.
    let max = u64::from(inner.cfg.max_write_same_blocks);
    if max != 0 && r.blocks > max {
        let field = if cdb[0] == 0x41 { 7 } else { 10 };
        return Begin::check(Sense::invalid_field_in_cdb(field, None));
    }
    if inner.write_protected() {
        return Begin::check(Sense::write_protected());
    }
    if r.blocks == 0 {
        return Begin::good();
    }
    let inner2 = inner.clone();
    if ndob {
        let zeros = vec![0u8; inner.block_size() as usize];
        return Begin::Complete(do_write_same(&inner2, r, unmap, &zeros));
    }
    Begin::param_out(inner.block_size(), move |block| do_write_same(&inner2, r, unmap, &block))
}

fn do_write_same(inner: &Inner, r: Range, unmap: bool, block: &[u8]) -> Outcome {
    let base = r.lba << inner.shift;
    let len = r.blocks << inner.shift;
    if let Some(bad) = inner.faults.medium_error_in(r.lba, r.blocks) {
        return inner.check(Sense::write_error(bad));
    }
    if unmap && inner.cfg.thin_provisioning {
        let _shared = inner.gate.read();
        return match inner.backend.discard(base, len) {
            Ok(()) => Outcome::good(),
            Err(_) => inner.check(Sense::write_error(r.lba)),
        };
    }
    if block.iter().all(|&b| b == 0) {
        // A zero block: the backend's own way of zeroing a range (RBD: one write-zeroes request).
        let _shared = inner.gate.read();
        if inner.backend.write_zeroes(base, len).is_err() {
            return inner.check(Sense::write_error(r.lba));
        }
        return match inner.flush_after_write(false, r.lba) {
            Ok(()) => Outcome::good(),
            Err(s) => inner.check(s),
        };
    }
    let reps = (SAME_CHUNK / block.len()).max(1);
    let pattern = block.repeat(reps);
    let mut pos = 0u64;
    while pos < len {
        let n = (len - pos).min(pattern.len() as u64) as usize;
        let _shared = inner.gate.read();
        if inner.backend.write_at(base + pos, &pattern[..n]).is_err() {
            return inner.check(Sense::write_error((base + pos) >> inner.shift));
        }
        pos += n as u64;
    }
    match inner.flush_after_write(false, r.lba) {
        Ok(()) => Outcome::good(),
        Err(s) => inner.check(s),
    }
}

/// Most LBA status descriptors in one response.
const MAX_LBA_STATUS_DESCRIPTORS: usize = 1024;

/// GET LBA STATUS (SBC-3 §5.6): mapped / deallocated extents from the starting LBA.
pub(crate) fn get_lba_status(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let start = be64(cdb, 2);
    let alloc = u64::from(be32(cdb, 10));
    let blocks = inner.blocks();
    if start >= blocks {
        return Begin::check(Sense::lba_out_of_range());
    }
    let room = usize::try_from(alloc.saturating_sub(8) / 16).unwrap_or(usize::MAX);
    let limit = room.clamp(1, MAX_LBA_STATUS_DESCRIPTORS);
    let bs = inner.block_size();
    let mut out = Vec::new();
    out.put32(0);
    out.put32(0);
    let mut lba = start;
    let mut descs: Vec<(u64, u64, bool)> = Vec::new();
    while lba < blocks && descs.len() <= limit {
        let max = (blocks - lba).min(u64::from(u32::MAX)) << inner.shift;
        let (allocated, run) = match inner.backend.allocation_run(lba << inner.shift, max) {
            Ok(v) => v,
            Err(_) => return Begin::check(Sense::unrecovered_read_error(lba)),
        };
        // A block is deallocated only if all of it is (partly written blocks are mapped).
        let n = if allocated { ((lba << inner.shift) + run).div_ceil(bs) - lba } else { run / bs };
        let (n, mapped) = if n == 0 { (1, true) } else { (n, allocated) };
        match descs.last_mut() {
            Some(last) if last.2 == mapped && last.1 + n <= u64::from(u32::MAX) => last.1 += n,
            _ => descs.push((lba, n, mapped)),
        }
        lba += n;
    }
    descs.truncate(limit);
    for (lba, n, mapped) in descs {
        out.put64(lba);
        out.put32(n as u32);
        out.push(if mapped { 0 } else { 1 });
        out.extend_from_slice(&[0, 0, 0]);
    }
    let total = len32(out.len() - 4);
    set32(&mut out, 0, total);
    Begin::data_in(out, alloc)
}
