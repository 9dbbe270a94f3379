//! WRITE ATOMIC(16) (SBC-4 §5.48) and the Block Limits VPD atomic fields.

mod common;
use common::*;
use scsi::{execute, DiskConfig, LogicalUnit};

fn atomic16(flags: u8, lba: u64, boundary: u16, n: u16) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9C;
    c[1] = flags;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..12].copy_from_slice(&boundary.to_be_bytes());
    c[12..14].copy_from_slice(&n.to_be_bytes());
    c
}

/// (max length, alignment, granularity, max length with boundary, max boundary).
fn atomic_vpd(lu: &dyn LogicalUnit) -> [u32; 5] {
    let (o, d) = run(lu, &[0x12, 1, 0xB0, 0, 64, 0]);
    good(&o);
    assert_eq!(d.len(), 64);
    let f = |at: usize| u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]);
    [f(44), f(48), f(52), f(56), f(60)]
}

#[test]
fn block_limits_report_the_atomic_limits() {
    let d = disk();
    let [max, align, gran, max_b, boundary] = atomic_vpd(&d);
    // 1 MiB of 512-byte blocks, no alignment or granularity requirement.
    assert_eq!((max, align, gran, max_b, boundary), (2048, 0, 0, 2048, 2048));
    // Never more than the maximum transfer length.
    let (_, bl) = run(&d, &[0x12, 1, 0xB0, 0, 64, 0]);
    assert!(max <= u32::from_be_bytes([bl[8], bl[9], bl[10], bl[11]]));
}

#[test]
fn atomic_write_lands_and_reads_back() {
    let d = disk();
    let data = pattern(256 * 512, 3);
    good(&run_out(&d, &atomic16(0, 100, 0, 256), &data));
    let (o, back) = run(&d, &read10(100, 256));
    good(&o);
    assert_eq!(back, data);
    // FUA and DPO are accepted (the caching page reports DPOFUA).
    good(&run_out(&d, &atomic16(0x18, 0, 0, 1), &[1; 512]));
}

#[test]
fn atomic_write_limits_are_enforced() {
    let d = disk();
    let blocks = d.blocks();
    // Past the end: LBA OUT OF RANGE, also for a zero length or a wrapping LBA.
    assert_eq!(sense(&run_out(&d, &atomic16(0, blocks - 1, 0, 2), &[0; 1024])), (5, 0x21, 0));
    assert_eq!(sense(&run(&d, &atomic16(0, blocks + 1, 0, 0)).0), (5, 0x21, 0));
    assert_eq!(sense(&run(&d, &atomic16(0, u64::MAX, 0, 1)).0), (5, 0x21, 0));
    // A zero length inside the capacity writes nothing and is GOOD.
    good(&run(&d, &atomic16(0, 0, 0, 0)).0);
    // Longer than MAXIMUM ATOMIC TRANSFER LENGTH: INVALID FIELD IN CDB, nothing written.
    let o = run_out(&d, &atomic16(0, 0, 0, 2049), &vec![0xEE; 2049 * 512]);
    assert_eq!(sense(&o), (5, 0x24, 0));
    // A boundary larger than MAXIMUM ATOMIC BOUNDARY SIZE.
    assert_eq!(sense(&run_out(&d, &atomic16(0, 0, 2049, 1), &[0; 512])), (5, 0x24, 0));
    // WRPROTECT (no protection information): INVALID FIELD IN CDB.
    for wrprotect in 1..8u8 {
        assert_eq!(sense(&run_out(&d, &atomic16(wrprotect << 5, 0, 0, 1), &[0; 512])), (5, 0x24, 0));
    }
    let (_, back) = run(&d, &read10(0, 1));
    assert!(back.iter().all(|&b| b == 0));
}

#[test]
fn atomic_write_on_a_write_protected_unit_is_data_protect() {
    let d = disk_with(DiskConfig { read_only: true, ..cfg() });
    assert_eq!(sense(&run_out(&d, &atomic16(0, 0, 0, 1), &[0; 512])), (7, 0x27, 0));
}

#[test]
fn a_short_data_out_writes_nothing() {
    let d = disk();
    // The initiator sends half of the 8 blocks: all or nothing, so nothing.
    let (o, _) = execute(&d, A, &atomic16(0, 0, 0, 8), &[0xAB; 2048], 0);
    assert_eq!(sense(&o).0, 0x0B);
    let (_, back) = run(&d, &read10(0, 8));
    assert!(back.iter().all(|&b| b == 0));
}

#[test]
fn physical_blocks_set_alignment_and_granularity() {
    let d = disk_with(DiskConfig { physical_block_size: 4096, ..cfg() });
    let [max, align, gran, _, _] = atomic_vpd(&d);
    assert_eq!((align, gran), (8, 8));
    assert_eq!(max % 8, 0);
    good(&run_out(&d, &atomic16(0, 8, 0, 8), &[5; 4096]));
    // Misaligned LBA, or a length that is not a multiple of the granularity.
    assert_eq!(sense(&run_out(&d, &atomic16(0, 1, 0, 8), &[5; 4096])), (5, 0x24, 0));
    assert_eq!(sense(&run_out(&d, &atomic16(0, 0, 0, 1), &[5; 512])), (5, 0x24, 0));
}

#[test]
fn write_atomic_is_listed_in_report_supported_operation_codes() {
    let d = disk();
    let (o, data) = run(&d, &[0xA3, 0x0C, 0x01, 0x9C, 0, 0, 0, 0, 0x01, 0, 0, 0]);
    good(&o);
    assert_eq!(data[1] & 0x07, 0x03, "supported");
    // CDB usage data: DPO and FUA may be set, WRPROTECT not.
    assert_eq!(data[4], 0x9C);
    assert_eq!(data[5], 0x18);
}
