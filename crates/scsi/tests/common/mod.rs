//! Shared helpers for the disk tests.
#![allow(dead_code)]

use scsi::{execute, Backend, Disk, DiskConfig, LogicalUnit, Nexus, Outcome, RamBackend, ScsiStatus, Sense};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub const A: Nexus = Nexus { initiator: 1 };
pub const B: Nexus = Nexus { initiator: 2 };

/// A RAM backend that counts flushes, to observe durability decisions.
pub struct Counting {
    pub ram: RamBackend,
    pub flushes: AtomicU64,
}

impl Counting {
    pub fn new(size: u64) -> Self {
        Self { ram: RamBackend::new(size), flushes: AtomicU64::new(0) }
    }
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::SeqCst)
    }
}

impl Backend for Counting {
    fn size(&self) -> u64 {
        self.ram.size()
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        self.ram.read_at(off, buf)
    }
    fn write_at(&self, off: u64, data: &[u8]) -> io::Result<()> {
        self.ram.write_at(off, data)
    }
    fn flush(&self) -> io::Result<()> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        self.ram.discard(off, len)
    }
    fn is_allocated(&self, off: u64, len: u64) -> io::Result<bool> {
        self.ram.is_allocated(off, len)
    }
    fn allocation_run(&self, off: u64, max: u64) -> io::Result<(bool, u64)> {
        self.ram.allocation_run(off, max)
    }
}

/// 4 MiB of 512-byte blocks (8192 blocks), no power-on unit attention.
pub fn cfg() -> DiskConfig {
    DiskConfig { power_on_unit_attention: false, ..DiskConfig::default() }
}

pub fn disk() -> Disk {
    disk_with(cfg())
}

pub fn disk_with(cfg: DiskConfig) -> Disk {
    Disk::new(cfg, Arc::new(RamBackend::new(4 << 20))).expect("valid config")
}

pub fn counting_disk(cfg: DiskConfig) -> (Disk, Arc<Counting>) {
    let b = Arc::new(Counting::new(4 << 20));
    (Disk::new(cfg, b.clone()).expect("valid config"), b)
}

pub fn run(lu: &dyn LogicalUnit, cdb: &[u8]) -> (Outcome, Vec<u8>) {
    execute(lu, A, cdb, &[], 1 << 24)
}

pub fn run_out(lu: &dyn LogicalUnit, cdb: &[u8], out: &[u8]) -> Outcome {
    execute(lu, A, cdb, out, 0).0
}

/// (key, asc, ascq) of a CHECK CONDITION.
pub fn sense(o: &Outcome) -> (u8, u8, u8) {
    assert_eq!(o.status, ScsiStatus::CHECK_CONDITION, "expected CHECK CONDITION, got {o:?}");
    let s: &Sense = o.sense.as_ref().expect("sense with CHECK CONDITION");
    (s.key as u8, s.asc, s.ascq)
}

pub fn good(o: &Outcome) {
    assert_eq!(o.status, ScsiStatus::GOOD, "expected GOOD, got {o:?}");
}

pub fn read10(lba: u32, n: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let c = n.to_be_bytes();
    [0x28, 0, l[0], l[1], l[2], l[3], 0, c[0], c[1], 0]
}

pub fn write10(lba: u32, n: u16) -> [u8; 10] {
    let mut c = read10(lba, n);
    c[0] = 0x2A;
    c
}

pub fn cdb16(op: u8, flags: u8, lba: u64, n: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[1] = flags;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&n.to_be_bytes());
    c
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}
