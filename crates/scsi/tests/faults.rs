//! Fault injection as the logical unit acts it out, and the switches the HBA reads.

mod common;
use common::*;
use scsi::{DiskConfig, FaultConfig, LbaRange, LogicalUnit, ScsiStatus};

#[test]
fn medium_error_range_fails_reads_with_the_first_bad_lba() {
    let d = disk();
    d.faults().set_medium_error(Some(LbaRange { start: 100, count: 4 }));
    let (o, _) = run(&d, &read10(96, 8));
    assert_eq!(sense(&o), (3, 0x11, 0x00));
    assert_eq!(o.sense.unwrap().info, Some(100));
    good(&run(&d, &read10(104, 8)).0);
    assert_eq!(sense(&run_out(&d, &write10(102, 1), &[0; 512])), (3, 0x0C, 0x00));
    d.faults().set_medium_error(None);
    good(&run(&d, &read10(96, 8)).0);
}

#[test]
fn medium_error_midway_ends_the_data_phase_after_good_chunks() {
    let d = disk();
    // The driver moves 64 KiB chunks: blocks 0..128 pass, the chunk holding 200 fails.
    d.faults().set_medium_error(Some(LbaRange { start: 200, count: 1 }));
    let (o, data) = run(&d, &read10(0, 512));
    assert_eq!(sense(&o), (3, 0x11, 0x00));
    assert_eq!(data.len(), 65536);
}

#[test]
fn busy_and_aborted_command_hit_the_next_commands_only() {
    let d = disk();
    d.faults().set_busy(1);
    d.faults().set_aborted_command(1);
    assert_eq!(run(&d, &[0; 6]).0.status, ScsiStatus::BUSY);
    assert_eq!(sense(&run(&d, &[0; 6]).0), (0x0B, 0x00, 0x00));
    good(&run(&d, &[0; 6]).0);
}

#[test]
fn transient_unit_attention_is_reported_once() {
    let d = disk();
    d.faults().set_unit_attention(1);
    assert_eq!(sense(&run(&d, &read10(0, 1)).0), (6, 0x29, 0x00));
    good(&run(&d, &read10(0, 1)).0);
}

#[test]
fn faults_can_be_limited_to_some_opcodes() {
    let d = disk();
    d.faults().set_opcodes(Some(vec![0x2A]));
    d.faults().set_busy(1);
    good(&run(&d, &read10(0, 1)).0);
    assert_eq!(run_out(&d, &write10(0, 1), &[0; 512]).status, ScsiStatus::BUSY);
}

#[test]
fn hba_faults_are_reachable_through_the_logical_unit_trait() {
    let d = disk();
    let lu: &dyn LogicalUnit = &d;
    let f = lu.faults().expect("disk exposes its injector");
    f.set_hang(1);
    f.set_dma_stall_after(Some(4096));
    f.request_bus_reset();
    assert!(f.take_hang(&read10(0, 1)));
    assert!(!f.take_hang(&read10(0, 1)));
    assert_eq!(f.dma_stall_after(), Some(4096));
    assert!(f.take_bus_reset());
    // A hang is the HBA's to act out: the disk itself still answers.
    good(&run(&d, &read10(0, 1)).0);
}

#[test]
fn faults_from_the_configuration_are_armed_at_start() {
    let d = disk_with(DiskConfig {
        faults: FaultConfig {
            aborted_command: 1,
            medium_error: Some(LbaRange { start: 0, count: 1 }),
            ..Default::default()
        },
        ..cfg()
    });
    assert_eq!(sense(&run(&d, &[0; 6]).0), (0x0B, 0x00, 0x00));
    assert_eq!(sense(&run(&d, &read10(0, 1)).0), (3, 0x11, 0x00));
    d.faults().clear_all();
    good(&run(&d, &read10(0, 1)).0);
}

#[test]
fn inquiry_is_spared_by_counted_faults() {
    let d = disk();
    d.faults().set_busy(1);
    good(&run(&d, &[0x12, 0, 0, 0, 36, 0]).0);
    assert_eq!(run(&d, &[0; 6]).0.status, ScsiStatus::BUSY);
}
