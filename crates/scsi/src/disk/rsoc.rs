//! REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35), generated from the command table.

use super::opcodes::{entries, offered, OPS};
use super::Inner;
use crate::cdb::{be16, be32, len32, set32, PutBe};
use crate::sense::Sense;
use crate::task::{Begin, Nexus};
use std::sync::Arc;

/// Command timeouts descriptor (SPC-4 §6.35.4): no nominal or recommended time.
fn timeouts(out: &mut Vec<u8>) {
    out.put16(0x0A);
    out.extend_from_slice(&[0, 0]);
    out.put32(0);
    out.put32(0);
}

pub(crate) fn report_supported_opcodes(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let rctd = cdb[2] & 0x80 != 0;
    let options = cdb[2] & 0x07;
    let req_op = cdb[3];
    let req_sa = be16(cdb, 4);
    let alloc = u64::from(be32(cdb, 6));
    let cfg = &inner.cfg;
    let mut out = Vec::new();
    match options {
        0 => {
            out.put32(0);
            for op in OPS.iter().filter(|op| offered(cfg, op)) {
                out.push(op.opcode);
                out.push(0);
                out.put16(op.sa.map_or(0, u16::from));
                out.push(0);
                out.push(u8::from(rctd) << 1 | u8::from(op.sa.is_some()));
                out.put16(op.usage.len() as u16);
                if rctd {
                    timeouts(&mut out);
                }
            }
            let n = len32(out.len() - 4);
            set32(&mut out, 0, n);
        }
        1..=3 => {
            let mut list = entries(cfg, req_op).peekable();
            let has_sa = list.peek().is_some_and(|op| op.sa.is_some());
            let op = match (options, has_sa) {
                (1, true) | (2, false) => return Begin::check(Sense::invalid_field_in_cdb(2, Some(2))),
                (_, true) => list.find(|op| op.sa.map(u16::from) == Some(req_sa)),
                (_, false) => list.next(),
            };
            match op {
                Some(op) => {
                    out.push(0);
                    out.push(u8::from(rctd) << 7 | 0x03);
                    out.put16(op.usage.len() as u16);
                    out.extend_from_slice(op.usage);
                    if let Some(sa) = op.sa {
                        out[5] = sa;
                    }
                    if rctd {
                        timeouts(&mut out);
                    }
                }
                None => out.extend_from_slice(&[0, 0x01, 0, 0]),
            }
        }
        _ => return Begin::check(Sense::invalid_field_in_cdb(2, Some(2))),
    }
    Begin::data_in(out, alloc)
}
