//! Shared test fixtures: RAM-backed disks on a target, and CDB builders.
#![allow(dead_code)]

pub mod machine;

use scsi::{Disk, DiskConfig, RamBackend, Target};
use std::sync::Arc;

pub const BLOCK: u32 = 512;

/// A target with one RAM disk of `blocks` 512-byte blocks at LUN 0 (no power-on unit attention, so the first command
/// runs as sent).
pub fn ram_target(blocks: u64) -> (Arc<Target>, Arc<Disk>) {
    let cfg = DiskConfig { block_size: BLOCK, blocks, power_on_unit_attention: false, ..DiskConfig::default() };
    let backend = Arc::new(RamBackend::new(blocks * u64::from(BLOCK)));
    let disk = Arc::new(Disk::new(cfg, backend).expect("valid disk configuration"));
    let target = Arc::new(Target::new());
    target.add_lun(0, disk.clone());
    (target, disk)
}

pub fn read10(lba: u32, blocks: u16) -> Vec<u8> {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    vec![0x28, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0]
}

pub fn write10(lba: u32, blocks: u16) -> Vec<u8> {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    vec![0x2A, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0]
}

pub fn read16(lba: u64, blocks: u32) -> Vec<u8> {
    let mut c = vec![0x88, 0];
    c.extend_from_slice(&lba.to_be_bytes());
    c.extend_from_slice(&blocks.to_be_bytes());
    c.extend_from_slice(&[0, 0]);
    c
}

pub fn write16(lba: u64, blocks: u32) -> Vec<u8> {
    let mut c = read16(lba, blocks);
    c[0] = 0x8A;
    c
}

pub fn inquiry(alloc: u16) -> Vec<u8> {
    let a = alloc.to_be_bytes();
    vec![0x12, 0, 0, a[0], a[1], 0]
}

pub const TEST_UNIT_READY: [u8; 6] = [0; 6];

/// A deterministic pattern that differs per byte position and per seed.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
