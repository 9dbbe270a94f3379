//! A bus target: REPORT LUNS and absent LUNs (SPC-4 §4.6.2).

mod common;
use common::*;
use scsi::{execute_on_target, Disk, RamBackend, Target};
use std::sync::Arc;

fn target() -> Target {
    let t = Target::new();
    t.add_lun(0, Arc::new(disk()));
    t.add_lun(3, Arc::new(disk()));
    t
}

fn report_luns(t: &Target, lun: u64) -> Vec<u64> {
    let (o, d) = execute_on_target(t, A, lun, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[], 256);
    good(&o);
    let n = u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize;
    d[8..8 + n].chunks(8).map(|c| u64::from(c[1]) | (u64::from(c[0] & 0x3F) << 8)).collect()
}

#[test]
fn report_luns_lists_every_lun_from_any_lun() {
    let t = target();
    assert_eq!(report_luns(&t, 0), vec![0, 3]);
    assert_eq!(report_luns(&t, 7), vec![0, 3]);
}

#[test]
fn report_luns_with_a_tiny_allocation_length_is_invalid() {
    let (o, _) = execute_on_target(&target(), A, 0, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], &[], 256);
    assert_eq!(sense(&o), (5, 0x24, 0x00));
}

#[test]
fn absent_lun_inquiry_reports_qualifier_011b() {
    let (o, d) = execute_on_target(&target(), A, 5, &[0x12, 0, 0, 0, 36, 0], &[], 256);
    good(&o);
    assert_eq!(d[0], 0x7F);
}

#[test]
fn absent_lun_rejects_other_commands_with_lu_not_supported() {
    let t = target();
    assert_eq!(sense(&execute_on_target(&t, A, 5, &[0; 6], &[], 0).0), (5, 0x25, 0x00));
    assert_eq!(sense(&execute_on_target(&t, A, 5, &read10(0, 1), &[], 512).0), (5, 0x25, 0x00));
    let (o, s) = execute_on_target(&t, A, 5, &[0x03, 0, 0, 0, 18, 0], &[], 18);
    good(&o);
    assert_eq!((s[2] & 0x0F, s[12], s[13]), (5, 0x25, 0x00));
}

#[test]
fn adding_a_lun_raises_reported_luns_changed_until_report_luns() {
    let t = target();
    good(&execute_on_target(&t, A, 0, &[0; 6], &[], 0).0);
    t.add_lun(9, Arc::new(Disk::new(cfg(), Arc::new(RamBackend::new(1 << 20))).unwrap()));
    assert_eq!(sense(&execute_on_target(&t, A, 0, &[0; 6], &[], 0).0), (6, 0x3F, 0x0E));
    good(&execute_on_target(&t, A, 0, &[0; 6], &[], 0).0);
    t.remove_lun(9);
    assert_eq!(report_luns(&t, 0), vec![0, 3]);
    good(&execute_on_target(&t, A, 0, &[0; 6], &[], 0).0);
}

#[test]
fn commands_reach_the_addressed_lun() {
    let t = target();
    good(&execute_on_target(&t, A, 3, &write10(0, 1), &[0x33; 512], 0).0);
    let (_, d3) = execute_on_target(&t, A, 3, &read10(0, 1), &[], 512);
    let (_, d0) = execute_on_target(&t, A, 0, &read10(0, 1), &[], 512);
    assert_eq!(d3, vec![0x33; 512]);
    assert_eq!(d0, vec![0; 512]);
    assert!(t.lun(3).is_some() && t.lun(4).is_none());
}
