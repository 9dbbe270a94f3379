//! INQUIRY (SPC-4 §6.6): standard data and the vital product data pages SBC-3 asks of a
//! block device.

use super::atomic::AtomicLimits;
use super::io::MAX_COMPARE_AND_WRITE;
use super::Inner;
use crate::cdb::{be16, len16, set16, PutBe};
use crate::sense::Sense;
use crate::task::{Begin, Nexus};
use scsi_proto::inquiry::{vpd, CMDQUE};
use std::sync::Arc;

/// Peripheral qualifier 000b, device type 00h (direct access block device).
const DISK: u8 = 0x00;

/// VPD pages offered, in ascending order (SPC-4 §7.8.13).
const PAGES: [u8; 6] = [
    vpd::SUPPORTED_PAGES,
    vpd::UNIT_SERIAL_NUMBER,
    vpd::DEVICE_IDENTIFICATION,
    vpd::BLOCK_LIMITS,
    vpd::BLOCK_DEVICE_CHARACTERISTICS,
    vpd::LOGICAL_BLOCK_PROVISIONING,
];

fn padded(s: &str, n: usize) -> Vec<u8> {
    let mut v: Vec<u8> = s.bytes().take(n).collect();
    v.resize(n, b' ');
    v
}

/// Standard INQUIRY data (SPC-4 §6.6.2): SPC-4, HISUP, response format 2, CMDQUE, and
/// version descriptors for SAM-5, SPC-4 and SBC-3.
pub(crate) fn standard(inner: &Inner) -> Vec<u8> {
    let mut d = vec![0u8; 96];
    d[0] = DISK;
    if inner.cfg.removable {
        d[1] = 0x80; // RMB
    }
    d[2] = 0x06; // SPC-4
    d[3] = 0x12; // HISUP, response data format 2
    d[4] = (d.len() - 5) as u8;
    if inner.alua.enabled() {
        d[5] = super::alua::TPGS_IMPLICIT;
    }
    d[7] = CMDQUE;
    d[8..16].copy_from_slice(&padded(&inner.cfg.vendor, 8));
    d[16..32].copy_from_slice(&padded(&inner.cfg.product, 16));
    d[32..36].copy_from_slice(&padded(&inner.cfg.revision, 4));
    // Version descriptors (SPC-4 table 143): SAM-5, SPC-4, SBC-3.
    for (i, v) in [0x00A0u16, 0x0460, 0x04C0].iter().enumerate() {
        set16(&mut d, 58 + 2 * i, *v);
    }
    d
}

fn page(code: u8, body: Vec<u8>) -> Vec<u8> {
    let mut d = vec![DISK, code];
    d.put16(len16(body.len()));
    d.extend(body);
    d
}

/// Device identification (SPC-4 §7.8.6): the NAA name and a T10 vendor ID designator,
/// both associated with the logical unit.
fn device_id(inner: &Inner) -> Vec<u8> {
    let mut b = Vec::new();
    // NAA: code set binary (1), association LU, designator type 3.
    b.extend_from_slice(&[0x01, 0x03, 0x00, 0x08]);
    b.put64(inner.cfg.wwn);
    // T10 vendor ID: code set ASCII (2), designator type 1: vendor then a unique part.
    let mut t10 = padded(&inner.cfg.vendor, 8);
    t10.extend_from_slice(inner.cfg.product.trim_end().as_bytes());
    t10.push(b':');
    t10.extend_from_slice(inner.cfg.serial.as_bytes());
    b.extend_from_slice(&[0x02, 0x01, 0x00, t10.len() as u8]);
    b.extend(t10);
    if inner.alua.enabled() {
        b.extend(super::alua::port_designators(inner.alua.own()));
    }
    b
}

/// Block limits (SBC-3 §6.5.3).
fn block_limits(inner: &Inner) -> Vec<u8> {
    let cfg = &inner.cfg;
    let gran = inner.blocks_per_physical() as u16;
    let mut b = vec![0u8, MAX_COMPARE_AND_WRITE];
    b.put16(gran); // optimal transfer length granularity
    let max_blocks = u32::try_from(cfg.max_transfer_bytes / inner.block_size()).unwrap_or(u32::MAX);
    b.put32(max_blocks);
    b.put32(0); // optimal transfer length: not reported
    b.put32(max_blocks); // maximum prefetch length
    if cfg.thin_provisioning {
        b.put32(cfg.max_unmap_blocks);
        b.put32(cfg.max_unmap_descriptors);
        b.put32(u32::from(gran)); // optimal unmap granularity
        b.put32(0x8000_0000); // UGAVALID, alignment 0
    } else {
        b.resize(b.len() + 16, 0);
    }
    b.put64(u64::from(cfg.max_write_same_blocks));
    b.extend_from_slice(&AtomicLimits::of(inner).vpd_fields());
    debug_assert_eq!(b.len(), 0x3C);
    b
}

/// Block device characteristics (SBC-3 §6.5.2).
fn characteristics(inner: &Inner) -> Vec<u8> {
    let mut b = Vec::new();
    b.put16(inner.cfg.rotation_rate);
    b.push(0); // product type not indicated
               // WABEREQ 01b: after a BLOCK ERASE reads succeed (and return zeros); WACEREQ 01b on an
               // encrypted medium: after a CRYPTOGRAPHIC ERASE reads succeed (with unspecified data), 00b
               // without CRYPTOGRAPHIC ERASE. Nominal form factor not reported.
    let waber = if inner.cfg.thin_provisioning { 0x40 } else { 0 };
    let wacer = if inner.cfg.crypto_erase { 0x10 } else { 0 };
    b.push(waber | wacer);
    b.resize(0x3C, 0);
    b
}

/// Logical block provisioning (SBC-3 §6.5.4): UNMAP, WRITE SAME(16) and (10) with
/// UNMAP, unmapped blocks read as zeros; thin provisioned.
fn provisioning(inner: &Inner) -> Vec<u8> {
    if inner.cfg.thin_provisioning {
        vec![0, 0xE4, 0x02, 0]
    } else {
        vec![0, 0, 0, 0]
    }
}

pub(crate) fn inquiry(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let evpd = cdb[1] & 0x01 != 0;
    let code = cdb[2];
    let alloc = u64::from(be16(cdb, 3));
    if !evpd {
        if code != 0 {
            return Begin::check(Sense::invalid_field_in_cdb(2, None));
        }
        return Begin::data_in(standard(inner), alloc);
    }
    let data = match code {
        vpd::SUPPORTED_PAGES => page(code, PAGES.to_vec()),
        vpd::UNIT_SERIAL_NUMBER => page(code, inner.cfg.serial.as_bytes().to_vec()),
        vpd::DEVICE_IDENTIFICATION => page(code, device_id(inner)),
        vpd::BLOCK_LIMITS => page(code, block_limits(inner)),
        vpd::BLOCK_DEVICE_CHARACTERISTICS => page(code, characteristics(inner)),
        vpd::LOGICAL_BLOCK_PROVISIONING => page(code, provisioning(inner)),
        _ => return Begin::check(Sense::invalid_field_in_cdb(2, None)),
    };
    Begin::data_in(data, alloc)
}

/// Standard INQUIRY for a LUN with no logical unit behind it (SPC-4 §6.6.2): peripheral
/// qualifier 011b, device type 1Fh; the same data the iSCSI side answers for an unmapped LUN.
pub(crate) fn absent_lun() -> Vec<u8> {
    scsi_proto::inquiry::absent_lun(36)
}
