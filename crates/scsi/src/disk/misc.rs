//! Small SPC/SBC commands: TEST UNIT READY, REQUEST SENSE, READ CAPACITY, REPORT LUNS,
//! START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL, READ DEFECT DATA, SEND DIAGNOSTIC,
//! RESERVE / RELEASE (6/10), REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS.

use super::Inner;
use crate::cdb::{be16, be32, be64, get, len32, set32, PutBe};
use crate::sense::Sense;
use crate::status::{Outcome, ScsiStatus};
use crate::task::{Begin, Nexus};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(crate) fn test_unit_ready(_: &Arc<Inner>, _: Nexus, _: &[u8]) -> Begin {
    Begin::good()
}

/// REQUEST SENSE (SPC-4 §6.39): a pending unit attention is returned as data and
/// cleared; otherwise the unit's state (NOT READY when stopped) or NO SENSE.
pub(crate) fn request_sense(inner: &Arc<Inner>, nexus: Nexus, cdb: &[u8]) -> Begin {
    let desc = cdb[1] & 0x01 != 0;
    let alloc = u64::from(cdb[4]);
    // A running sanitize is reported before a unit attention, which stays pending for
    // the first command that can run once it is over (see `Disk::begin_inner`).
    let sense = if let Some(s) = inner.sanitize.blocking_sense() {
        s
    } else if let Some(code) = inner.ua.take(nexus) {
        Sense::unit_attention(code)
    } else if let Some(s) = inner.medium.absent_sense() {
        s
    } else if !inner.started.load(Ordering::Acquire) {
        Sense::not_ready_init_required()
    } else {
        Sense::new(crate::sense::SenseKey::NoSense, crate::sense::AscAscq::NO_ADDITIONAL)
    };
    Begin::data_in(sense.with_descriptor(desc).to_bytes(), alloc)
}

/// SBC-3 §5.16: with PMI = 0 the LOGICAL BLOCK ADDRESS field must be zero.
fn pmi_check(lba: u64, pmi: bool, byte: u16) -> Result<(), Sense> {
    if !pmi && lba != 0 {
        return Err(Sense::invalid_field_in_cdb(byte, None));
    }
    Ok(())
}

/// READ CAPACITY(10) (SBC-3 §5.16): a capacity beyond 32 bits reports FFFFFFFFh, which
/// sends the initiator to READ CAPACITY(16).
pub(crate) fn read_capacity10(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    if let Err(s) = pmi_check(u64::from(be32(cdb, 2)), cdb[8] & 1 != 0, 2) {
        return Begin::check(s);
    }
    let last = inner.blocks() - 1;
    let mut out = Vec::with_capacity(8);
    out.put32(u32::try_from(last).unwrap_or(u32::MAX));
    out.put32(inner.cfg.block_size);
    Begin::data_in(out, 8)
}

/// READ CAPACITY(16) (SBC-3 §5.17), with LBPME / LBPRZ when provisioning is on.
pub(crate) fn read_capacity16(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    if let Err(s) = pmi_check(be64(cdb, 2), cdb[14] & 1 != 0, 2) {
        return Begin::check(s);
    }
    let alloc = u64::from(be32(cdb, 10));
    let mut out = Vec::with_capacity(32);
    out.put64(inner.blocks() - 1);
    out.put32(inner.cfg.block_size);
    out.push(0); // no protection information
                 // LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT; the lowest aligned LBA is 0.
    out.push(inner.blocks_per_physical().trailing_zeros() as u8);
    out.push(if inner.cfg.thin_provisioning { 0xC0 } else { 0 });
    out.push(0);
    out.resize(32, 0);
    Begin::data_in(out, alloc)
}

/// The 8-byte LUN field for a LUN number (SAM-5 §4.7): peripheral device addressing
/// below 256, flat space addressing below 16384, otherwise the number as given.
pub(crate) fn lun_field(lun: u64) -> [u8; 8] {
    if lun < 256 {
        [0, lun as u8, 0, 0, 0, 0, 0, 0]
    } else if lun < 0x4000 {
        [0x40 | (lun >> 8) as u8, lun as u8, 0, 0, 0, 0, 0, 0]
    } else {
        lun.to_be_bytes()
    }
}

/// REPORT LUNS parameter data (SPC-4 §6.33) for a SELECT REPORT field, or the sense for
/// an invalid CDB.
pub(crate) fn report_luns_data(luns: &[u64], cdb: &[u8]) -> Result<(Vec<u8>, u64), Sense> {
    let select = get(cdb, 2);
    let alloc = u64::from(be32(cdb, 6));
    if !matches!(select, 0x00..=0x02 | 0x10..=0x12) {
        return Err(Sense::invalid_field_in_cdb(2, None));
    }
    if alloc < 16 {
        return Err(Sense::invalid_field_in_cdb(6, None));
    }
    // No well-known LUNs and no administrative LUN hierarchy: select 01h and 11h list
    // nothing, the others every LUN.
    let listed: &[u64] = if matches!(select, 0x01 | 0x11) { &[] } else { luns };
    let mut out = Vec::with_capacity(8 + 8 * listed.len());
    out.put32(0);
    out.put32(0);
    for &lun in listed {
        out.extend_from_slice(&lun_field(lun));
    }
    let n = len32(out.len() - 8);
    set32(&mut out, 0, n);
    Ok((out, alloc))
}

/// A disk on its own answers as LUN 0; a [`crate::Target`] answers for its LUNs.
pub(crate) fn report_luns(_: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    match report_luns_data(&[0], cdb) {
        Ok((data, alloc)) => Begin::data_in(data, alloc),
        Err(s) => Begin::check(s),
    }
}

/// START STOP UNIT (SBC-3 §5.25). LOEJ loads (START = 1) or ejects a removable medium
/// (see [`super::medium`]); on a fixed medium LOEJ changes nothing. A power condition other
/// than START_VALID (0h) leaves the started state alone.
pub(crate) fn start_stop_unit(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let power = cdb[4] >> 4;
    let start = cdb[4] & 0x01 != 0;
    let loej = cdb[4] & 0x02 != 0;
    let no_flush = cdb[4] & 0x04 != 0;
    match power {
        0 => {
            if !start && !no_flush {
                if let Err(s) = inner.flush(0) {
                    return Begin::check(s);
                }
            }
            if super::medium::removable(inner) {
                // The removable medium has no spindle to stop: START alone is a power
                // hint; with LOEJ it loads or ejects (docs/config.md, `removable`).
                if loej {
                    if let Err(s) = inner.medium.load_eject(start) {
                        return Begin::check(s);
                    }
                }
                return Begin::good();
            }
            inner.started.store(start, Ordering::Release);
            Begin::good()
        }
        0x1 | 0x2 | 0x3 | 0x7 | 0xA | 0xB => Begin::good(),
        _ => Begin::check(Sense::invalid_field_in_cdb(4, Some(7))),
    }
}

/// PREVENT ALLOW MEDIUM REMOVAL (SBC-3 §5.12): locks a removable medium for this I_T
/// nexus; nothing to lock on a fixed medium. PREVENT values 10b and 11b are obsolete and
/// rejected.
pub(crate) fn prevent_allow(inner: &Arc<Inner>, nexus: Nexus, cdb: &[u8]) -> Begin {
    if cdb[4] & 0x03 > 1 {
        return Begin::check(Sense::invalid_field_in_cdb(4, Some(1)));
    }
    if super::medium::removable(inner) {
        inner.medium.prevent(nexus, cdb[4] & 0x01 != 0);
    }
    Begin::good()
}

/// READ DEFECT DATA(10/12) (SBC-3 §5.18, §5.19): an emulated medium has no defects, so
/// the header echoes the request with an empty list.
pub(crate) fn read_defect_data(_: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    if cdb[0] == 0x37 {
        let flags = cdb[2] & 0x1F;
        Begin::data_in(vec![0, flags, 0, 0], u64::from(be16(cdb, 7)))
    } else {
        let flags = cdb[1] & 0x1F;
        Begin::data_in(vec![0, flags, 0, 0, 0, 0, 0, 0], u64::from(be32(cdb, 6)))
    }
}

/// SEND DIAGNOSTIC (SPC-4 §6.42): the default self-test and the background / foreground
/// self-tests pass at once; no diagnostic pages are supported.
pub(crate) fn send_diagnostic(_: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let code = cdb[1] >> 5;
    let selftest = cdb[1] & 0x04 != 0;
    if be16(cdb, 3) != 0 {
        return Begin::check(Sense::invalid_field_in_cdb(3, None));
    }
    match (selftest, code) {
        (true, 0) | (false, 0 | 1 | 2 | 4 | 5 | 6) => Begin::good(),
        _ => Begin::check(Sense::invalid_field_in_cdb(1, Some(7))),
    }
}

/// RESERVE(6/10) (SPC-2 §7.21): the whole logical unit, for this I_T nexus.
pub(crate) fn reserve(inner: &Arc<Inner>, nexus: Nexus, _: &[u8]) -> Begin {
    if inner.pr.reserve_spc2(nexus) {
        Begin::good()
    } else {
        Begin::Complete(Outcome::status(ScsiStatus::RESERVATION_CONFLICT))
    }
}

/// RELEASE(6/10) (SPC-2 §7.19): releases only the caller's own reservation; from anyone
/// else it is GOOD and changes nothing.
pub(crate) fn release(inner: &Arc<Inner>, nexus: Nexus, _: &[u8]) -> Begin {
    inner.pr.release_spc2(Some(nexus));
    Begin::good()
}

/// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-4 §6.37): ABORT TASK, ABORT TASK SET,
/// CLEAR TASK SET, LOGICAL UNIT RESET and TARGET RESET.
pub(crate) fn report_tmf(_: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let repd = cdb[2] & 0x80 != 0;
    let alloc = u64::from(be32(cdb, 6));
    if alloc < 4 {
        return Begin::check(Sense::invalid_field_in_cdb(6, None));
    }
    let mut out = vec![0xDA, 0, 0, 0];
    if repd {
        out[3] = 0x0C;
        out.resize(16, 0);
    }
    Begin::data_in(out, alloc)
}
