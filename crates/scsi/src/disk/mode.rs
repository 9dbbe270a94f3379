//! MODE SENSE / MODE SELECT (SPC-4 §6.11–6.14) with the read-write error recovery (01h),
//! caching (08h) and control (0Ah) pages. Saved values are not implemented: page control
//! 11b and SP = 1 are refused as SPC-4 §6.11.2 and §6.9 require.

use super::Inner;
use crate::cdb::{be16, get, len16, set16, PutBe};
use crate::sense::{AscAscq, Sense, SenseKey};
use crate::status::Outcome;
use crate::task::{Begin, Nexus};
use parking_lot::Mutex;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One mode page: its current value, its default, and the mask of bits MODE SELECT may change.
struct Page {
    current: Vec<u8>,
    default: Vec<u8>,
    changeable: Vec<u8>,
}

pub(crate) struct ModePages {
    pages: Mutex<Vec<Page>>,
}

const WCE: u8 = 0x04; // caching page byte 2 (SBC-3 §6.4.5)
const D_SENSE: u8 = 0x04; // control page byte 2 (SPC-4 §7.5.8)
const SWP: u8 = 0x08; // control page byte 4

fn error_recovery() -> Page {
    // AWRE and ARRE set: the backend never needs reassignment.
    let mut d = vec![0x01, 0x0A, 0xC0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    d[3] = 0; // read retry count
    Page { current: d.clone(), default: d, changeable: vec![0; 12] }
}

fn caching(wce: bool) -> Page {
    let mut d = vec![0u8; 20];
    d[0] = 0x08;
    d[1] = 0x12;
    let mut default = d.clone();
    default[2] = WCE;
    if wce {
        d[2] |= WCE;
    }
    let mut changeable = vec![0u8; 20];
    changeable[2] = WCE;
    Page { current: d, default, changeable }
}

fn control() -> Page {
    let mut d = vec![0u8; 12];
    d[0] = 0x0A;
    d[1] = 0x0A;
    d[2] = 0x02; // GLTSD: no implicit log saving
    d[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
    set16(&mut d, 8, 0xFFFF); // busy timeout period: unlimited
    let mut changeable = vec![0u8; 12];
    changeable[2] = D_SENSE;
    changeable[4] = SWP;
    Page { current: d.clone(), default: d, changeable }
}

impl ModePages {
    pub(crate) fn new(wce: bool) -> Self {
        Self { pages: Mutex::new(vec![error_recovery(), caching(wce), control()]) }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PageControl {
    Current,
    Changeable,
    Default,
}

/// MODE SENSE(6/10).
pub(crate) fn mode_sense(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let ten = cdb[0] == 0x5A;
    let dbd = cdb[1] & 0x08 != 0;
    let llbaa = ten && cdb[1] & 0x10 != 0;
    let pc = match cdb[2] >> 6 {
        0 => PageControl::Current,
        1 => PageControl::Changeable,
        2 => PageControl::Default,
        _ => return Begin::check(Sense::new(SenseKey::IllegalRequest, AscAscq::SAVING_PARAMETERS_NOT_SUPPORTED)),
    };
    let code = cdb[2] & 0x3F;
    let sub = cdb[3];
    let alloc = if ten { u64::from(be16(cdb, 7)) } else { u64::from(get(cdb, 4)) };
    let mut body = Vec::new();
    {
        let pages = inner.mode.pages.lock();
        let pick = |p: &Page| match pc {
            PageControl::Current => p.current.clone(),
            PageControl::Changeable => {
                let mut c = p.changeable.clone();
                c[0] = p.current[0];
                c[1] = p.current[1];
                c
            }
            PageControl::Default => p.default.clone(),
        };
        match (code, sub) {
            (0x3F, 0x00 | 0xFF) => pages.iter().for_each(|p| body.extend(pick(p))),
            (_, 0x00) => match pages.iter().find(|p| p.current[0] == code) {
                Some(p) => body.extend(pick(p)),
                None => return Begin::check(Sense::invalid_field_in_cdb(2, Some(5))),
            },
            _ => return Begin::check(Sense::invalid_field_in_cdb(3, None)),
        }
    }
    // Device-specific parameter (SBC-3 §6.4.1): WP, and DPOFUA since FUA is honoured.
    let dsp = if inner.write_protected() { 0x90 } else { 0x10 };
    let blocks = inner.blocks();
    let mut bd = Vec::new();
    if !dbd {
        if llbaa {
            bd.put64(blocks);
            bd.put32(0);
            bd.put32(inner.cfg.block_size);
        } else {
            bd.put32(u32::try_from(blocks).unwrap_or(u32::MAX));
            bd.put32(inner.cfg.block_size & 0x00FF_FFFF);
        }
    }
    let mut out = Vec::new();
    if ten {
        out.extend_from_slice(&[0, 0, 0, dsp, u8::from(llbaa && !dbd), 0]);
        out.put16(len16(bd.len()));
    } else {
        out.extend_from_slice(&[0, 0, dsp, bd.len() as u8]);
    }
    out.extend(bd);
    out.extend(body);
    if ten {
        let n = len16(out.len() - 2);
        set16(&mut out, 0, n);
    } else {
        out[0] = u8::try_from(out.len() - 1).unwrap_or(u8::MAX);
    }
    Begin::data_in(out, alloc)
}

/// MODE SELECT(6/10).
pub(crate) fn mode_select(inner: &Arc<Inner>, nexus: Nexus, cdb: &[u8]) -> Begin {
    let ten = cdb[0] == 0x55;
    if cdb[1] & 0x01 != 0 {
        return Begin::check(Sense::invalid_field_in_cdb(1, Some(0)));
    }
    let len = if ten { u64::from(be16(cdb, 7)) } else { u64::from(get(cdb, 4)) };
    let inner2 = inner.clone();
    Begin::param_out(len, move |list| match apply(&inner2, nexus, ten, &list) {
        Ok(()) => Outcome::good(),
        Err(s) => inner2.check(s),
    })
}

fn apply(inner: &Inner, nexus: Nexus, ten: bool, list: &[u8]) -> Result<(), Sense> {
    if list.is_empty() {
        return Ok(());
    }
    let (hdr, bd_len) = if ten { (8, usize::from(be16(list, 6))) } else { (4, usize::from(get(list, 3))) };
    if list.len() < hdr || list.len() < hdr + bd_len {
        return Err(Sense::param_list_length_error());
    }
    // Block descriptor: only the current block length may be selected (SBC-3 §6.4.2).
    match bd_len {
        0 => {}
        8 | 16 => {
            let bl = if bd_len == 8 {
                u32::from_be_bytes([0, list[hdr + 5], list[hdr + 6], list[hdr + 7]])
            } else {
                u32::from_be_bytes([list[hdr + 12], list[hdr + 13], list[hdr + 14], list[hdr + 15]])
            };
            if bl != inner.cfg.block_size {
                return Err(Sense::invalid_field_in_param((hdr + bd_len - 1) as u16, None));
            }
        }
        _ => return Err(Sense::invalid_field_in_param(if ten { 6 } else { 3 }, None)),
    }
    let mut pages = inner.mode.pages.lock();
    // Validate every page before changing any (SPC-4 §6.9: nothing changes on error).
    let mut updates: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut at = hdr + bd_len;
    while at < list.len() {
        let code = list[at] & 0x3F;
        if list[at] & 0x40 != 0 {
            return Err(Sense::invalid_field_in_param(at as u16, Some(6)));
        }
        let plen = usize::from(get(list, at + 1));
        let Some(idx) = pages.iter().position(|p| p.current[0] == code) else {
            return Err(Sense::invalid_field_in_param(at as u16, Some(5)));
        };
        let page = &pages[idx];
        if plen + 2 != page.current.len() {
            return Err(Sense::invalid_field_in_param((at + 1) as u16, None));
        }
        let Some(new) = list.get(at..at + 2 + plen) else {
            return Err(Sense::param_list_length_error());
        };
        let mut fixed = new.iter().zip(&page.current).zip(&page.changeable).skip(2);
        if let Some(i) = fixed.position(|((n, c), m)| (n ^ c) & !m != 0) {
            return Err(Sense::invalid_field_in_param((at + 2 + i) as u16, None));
        }
        let mut value = new.to_vec();
        value[0] = page.current[0];
        updates.push((idx, value));
        at += 2 + plen;
    }
    let mut changed = false;
    for (idx, value) in updates {
        if pages[idx].current != value {
            changed = true;
            pages[idx].current = value;
        }
    }
    for p in pages.iter() {
        match p.current[0] {
            0x08 => inner.wce.store(p.current[2] & WCE != 0, Ordering::Release),
            0x0A => {
                inner.dsense.store(p.current[2] & D_SENSE != 0, Ordering::Release);
                inner.swp.store(p.current[4] & SWP != 0, Ordering::Release);
            }
            _ => {}
        }
    }
    drop(pages);
    // SPC-4 §6.9: other I_T nexuses learn of the change through 06/2A/01.
    if changed {
        inner.ua.post_all(AscAscq::MODE_PARAMETERS_CHANGED, Some(nexus));
    }
    Ok(())
}
