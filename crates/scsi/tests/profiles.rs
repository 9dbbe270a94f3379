//! LU profiles: a removable medium, a write-protected unit, and 512-byte logical blocks
//! on 4096-byte physical blocks.

mod common;
use common::*;
use scsi::{execute, Disk, DiskConfig, LogicalUnit, RamBackend};
use std::sync::Arc;

const TUR: [u8; 6] = [0, 0, 0, 0, 0, 0];

fn removable() -> Disk {
    disk_with(DiskConfig { removable: true, ..cfg() })
}

fn prevent(lu: &dyn LogicalUnit, nexus: scsi::Nexus, on: bool) {
    good(&execute(lu, nexus, &[0x1E, 0, 0, 0, u8::from(on), 0], &[], 0).0);
}

fn start_stop(lu: &dyn LogicalUnit, nexus: scsi::Nexus, loej: bool, start: bool) -> scsi::Outcome {
    let b4 = (u8::from(loej) << 1) | u8::from(start);
    execute(lu, nexus, &[0x1B, 0, 0, 0, b4, 0], &[], 0).0
}

#[test]
fn removable_unit_reports_rmb() {
    let (o, d) = run(&removable(), &[0x12, 0, 0, 0, 36, 0]);
    good(&o);
    assert_eq!(d[1] & 0x80, 0x80);
    let (_, d) = run(&disk(), &[0x12, 0, 0, 0, 36, 0]);
    assert_eq!(d[1] & 0x80, 0);
}

#[test]
fn eject_then_load() {
    let d = removable();
    good(&start_stop(&d, A, true, false));
    assert_eq!(sense(&run(&d, &TUR).0), (2, 0x3A, 0));
    assert_eq!(sense(&run(&d, &read10(0, 1)).0), (2, 0x3A, 0));
    // REQUEST SENSE tells why; INQUIRY still works.
    let (_, s) = run(&d, &[0x03, 0, 0, 0, 18, 0]);
    assert_eq!((s[2] & 0x0F, s[12]), (2, 0x3A));
    good(&run(&d, &[0x12, 0, 0, 0, 36, 0]).0);
    good(&start_stop(&d, A, true, true));
    good(&run(&d, &TUR).0);
}

#[test]
fn prevention_blocks_eject_and_load_from_every_nexus() {
    let d = removable();
    prevent(&d, A, true);
    assert_eq!(sense(&start_stop(&d, A, true, false)), (5, 0x53, 0x02));
    assert_eq!(sense(&start_stop(&d, B, true, false)), (5, 0x53, 0x02));
    assert_eq!(sense(&start_stop(&d, A, true, true)), (5, 0x53, 0x02));
    good(&run(&d, &TUR).0);
    // B's allow does not undo A's prevent.
    prevent(&d, B, false);
    assert_eq!(sense(&start_stop(&d, B, true, false)), (5, 0x53, 0x02));
    prevent(&d, A, false);
    good(&start_stop(&d, B, true, false));
    assert_eq!(sense(&run(&d, &TUR).0), (2, 0x3A, 0));
}

#[test]
fn prevention_ends_with_the_nexus_or_a_reset() {
    let d = removable();
    prevent(&d, A, true);
    d.nexus_loss(A);
    good(&start_stop(&d, B, true, false));
    good(&start_stop(&d, B, true, true));
    prevent(&d, B, true);
    d.reset();
    // The reset's unit attention first, then the eject goes through.
    assert_eq!(sense(&start_stop(&d, B, true, false)), (6, 0x29, 0));
    good(&start_stop(&d, B, true, false));
}

#[test]
fn stop_without_loej_keeps_a_removable_medium_ready() {
    let d = removable();
    good(&start_stop(&d, A, false, false));
    good(&run(&d, &TUR).0);
    // A fixed disk stops.
    let f = disk();
    good(&start_stop(&f, A, false, false));
    assert_eq!(sense(&run(&f, &TUR).0), (2, 0x04, 0x02));
}

#[test]
fn write_protected_unit_sets_wp_and_refuses_every_write() {
    let d = disk_with(DiskConfig { read_only: true, ..cfg() });
    let (o, ms) = run(&d, &[0x1A, 0, 0x3F, 0, 0xFF, 0]);
    good(&o);
    assert_eq!(ms[2] & 0x80, 0x80, "WP in the device-specific parameter");
    let mut unmap_list = vec![0, 22, 0, 16, 0, 0, 0, 0];
    unmap_list.extend_from_slice(&0u64.to_be_bytes());
    unmap_list.extend_from_slice(&1u32.to_be_bytes());
    unmap_list.extend_from_slice(&[0; 4]);
    let block = [0xA6u8; 512];
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (write10(0, 1).to_vec(), block.to_vec()),
        (cdb16(0x8A, 0, 0, 1).to_vec(), block.to_vec()),
        (vec![0x41, 0, 0, 0, 0, 0, 0, 0, 1, 0], block.to_vec()),
        (vec![0x41, 0x08, 0, 0, 0, 0, 0, 0, 1, 0], block.to_vec()),
        (cdb16(0x93, 0x08, 0, 1).to_vec(), block.to_vec()),
        (vec![0x2E, 0, 0, 0, 0, 0, 0, 0, 1, 0], block.to_vec()),
        (cdb16(0x8B, 0, 0, 1).to_vec(), block.to_vec()),
        (vec![0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], [block, block].concat()),
        (vec![0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], unmap_list),
    ];
    for (cdb, data) in cases {
        let o = run_out(&d, &cdb, &data);
        assert_eq!(sense(&o), (7, 0x27, 0), "{cdb:02x?}");
    }
}

#[test]
fn logical_blocks_per_physical_block_exponent_and_granularity() {
    let d = disk_with(DiskConfig { physical_block_size: 4096, ..cfg() });
    let (o, rc) = run(&d, &[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]);
    good(&o);
    assert_eq!(u32::from_be_bytes([rc[8], rc[9], rc[10], rc[11]]), 512);
    assert_eq!(rc[13] & 0x0F, 3, "2^3 logical blocks per physical block");
    let (_, bl) = run(&d, &[0x12, 1, 0xB0, 0, 64, 0]);
    assert_eq!(u16::from_be_bytes([bl[6], bl[7]]), 8, "optimal transfer length granularity");
    assert_eq!(u32::from_be_bytes([bl[28], bl[29], bl[30], bl[31]]), 8, "optimal unmap granularity");
    // The default profile: one logical block per physical block.
    let (_, rc) = run(&disk(), &[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]);
    assert_eq!(rc[13] & 0x0F, 0);
}

#[test]
fn physical_block_size_must_be_a_power_of_two_multiple() {
    for bad in [1000u32, 1536, 256] {
        let cfg = DiskConfig { physical_block_size: bad, ..cfg() };
        let e = Disk::new(cfg, Arc::new(RamBackend::new(1 << 20))).err().expect("refused");
        assert!(e.to_string().contains("physical_block_size"), "{e}");
    }
}
