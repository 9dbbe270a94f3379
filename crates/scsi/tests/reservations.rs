//! SPC-2 reservations and SPC-4 persistent reservations between initiators.

mod common;
use common::*;
use scsi::{execute, Disk, DiskConfig, LogicalUnit, Nexus, Outcome, RamBackend, ScsiStatus};
use std::sync::Arc;

fn on(d: &dyn LogicalUnit, n: Nexus, cdb: &[u8]) -> Outcome {
    execute(d, n, cdb, &[0; 512], 1 << 16).0
}

fn conflict(o: &Outcome) {
    assert_eq!(o.status, ScsiStatus::RESERVATION_CONFLICT, "{o:?}");
}

fn prout(d: &dyn LogicalUnit, n: Nexus, sa: u8, rtype: u8, key: u64, sa_key: u64, aptpl: bool) -> Outcome {
    let cdb = [0x5F, sa, rtype, 0, 0, 0, 0, 0, 24, 0];
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = u8::from(aptpl);
    execute(d, n, &cdb, &p, 0).0
}

fn prin(d: &dyn LogicalUnit, n: Nexus, sa: u8) -> Vec<u8> {
    let (o, data) = execute(d, n, &[0x5E, sa, 0, 0, 0, 0, 0, 0x10, 0, 0], &[], 1 << 16);
    good(&o);
    data
}

const WR_EX: u8 = 1;
const EX_AC: u8 = 3;
const WR_EX_RO: u8 = 5;
const EX_AC_AR: u8 = 8;

#[test]
fn spc2_reservation_excludes_other_initiators_until_released() {
    let d = disk();
    good(&on(&d, A, &[0x16, 0, 0, 0, 0, 0]));
    conflict(&on(&d, B, &read10(0, 1)));
    conflict(&on(&d, B, &[0; 6]));
    conflict(&on(&d, B, &[0x16, 0, 0, 0, 0, 0]));
    good(&on(&d, B, &[0x12, 0, 0, 0, 36, 0]));
    good(&on(&d, B, &[0x17, 0, 0, 0, 0, 0])); // another's RELEASE changes nothing
    conflict(&on(&d, B, &read10(0, 1)));
    good(&on(&d, A, &read10(0, 1)));
    good(&on(&d, A, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    good(&on(&d, B, &read10(0, 1)));
}

#[test]
fn spc2_reservation_is_released_by_reset_and_nexus_loss() {
    let d = disk();
    good(&on(&d, A, &[0x16, 0, 0, 0, 0, 0]));
    conflict(&on(&d, B, &[0; 6]));
    d.reset();
    assert_eq!(sense(&on(&d, B, &[0; 6])), (6, 0x29, 0x00));
    good(&on(&d, B, &[0; 6]));
    assert_eq!(sense(&on(&d, A, &[0; 6])), (6, 0x29, 0x00));
    good(&on(&d, A, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    d.nexus_loss(A);
    good(&on(&d, B, &read10(0, 1)));
}

#[test]
fn register_requires_the_current_key() {
    let d = disk();
    good(&prout(&d, A, 0, 0, 0, 0xAA, false));
    conflict(&prout(&d, A, 0, 0, 0xBB, 0xCC, false));
    good(&prout(&d, A, 0, 0, 0xAA, 0xCC, false));
    good(&prout(&d, A, 6, 0, 0x1234, 0xDD, false)); // REGISTER AND IGNORE EXISTING KEY
    let keys = prin(&d, A, 0);
    assert_eq!(u32::from_be_bytes(keys[4..8].try_into().unwrap()), 8);
    assert_eq!(u64::from_be_bytes(keys[8..16].try_into().unwrap()), 0xDD);
    assert_eq!(u32::from_be_bytes(keys[0..4].try_into().unwrap()), 3, "generation counts changes");
}

#[test]
fn write_exclusive_lets_others_read_but_not_write() {
    let d = disk();
    good(&prout(&d, A, 0, 0, 0, 0xA, false));
    good(&prout(&d, A, 1, WR_EX, 0xA, 0, false));
    good(&on(&d, B, &read10(0, 1)));
    conflict(&on(&d, B, &write10(0, 1)));
    good(&on(&d, A, &write10(0, 1)));
    good(&on(&d, B, &[0; 6]));
    conflict(&on(&d, B, &[0x16, 0, 0, 0, 0, 0]));
    let r = prin(&d, B, 1);
    assert_eq!(u32::from_be_bytes(r[4..8].try_into().unwrap()), 16);
    assert_eq!(u64::from_be_bytes(r[8..16].try_into().unwrap()), 0xA);
    assert_eq!(r[21], WR_EX);
}

#[test]
fn exclusive_access_blocks_reads_of_others() {
    let d = disk();
    good(&prout(&d, A, 0, 0, 0, 0xA, false));
    good(&prout(&d, A, 1, EX_AC, 0xA, 0, false));
    conflict(&on(&d, B, &read10(0, 1)));
    good(&on(&d, B, &[0x12, 0, 0, 0, 36, 0]));
    good(&on(&d, A, &read10(0, 1)));
}

#[test]
fn registrants_only_admits_registered_writers() {
    let d = disk();
    good(&prout(&d, A, 0, 0, 0, 0xA, false));
    good(&prout(&d, B, 0, 0, 0, 0xB, false));
    good(&prout(&d, A, 1, WR_EX_RO, 0xA, 0, false));
    good(&on(&d, B, &write10(0, 1)));
    let c = Nexus::new(3);
    conflict(&on(&d, c, &write10(0, 1)));
    good(&on(&d, c, &read10(0, 1)));
}

#[test]
fn reserve_by_another_or_of_another_type_conflicts() {
    let d = disk();
    good(&prout(&d, A, 0, 0, 0, 0xA, false));
    good(&prout(&d, B, 0, 0, 0, 0xB, false));
    good(&prout(&d, A, 1, WR_EX, 0xA, 0, false));
    conflict(&prout(&d, B, 1, WR_EX, 0xB, 0, false));
    conflict(&prout(&d, A, 1, EX_AC, 0xA, 0, false));
    good(&prout(&d, A, 1, WR_EX, 0xA, 0, false));
}

#[test]
fn release_with_the_wrong_type_is_invalid_release() {
    let d = disk();
    good(&prout(&d, A, 0, 0, 0, 0xA, false));
    good(&prout(&d, A, 1, WR_EX, 0xA, 0, false));
    assert_eq!(sense(&prout(&d, A, 2, EX_AC, 0xA, 0, false)), (5, 0x26, 0x04));
    good(&prout(&d, A, 2, WR_EX, 0xA, 0, false));
    assert_eq!(u32::from_be_bytes(prin(&d, A, 1)[4..8].try_into().unwrap()), 0);
}

#[test]
fn release_of_registrants_only_notifies_other_registrants() {
    let d = disk();
    good(&prout(&d, A, 0, 0, 0, 0xA, false));
    good(&prout(&d, B, 0, 0, 0, 0xB, false));
    good(&prout(&d, A, 1, WR_EX_RO, 0xA, 0, false));
    good(&prout(&d, A, 2, WR_EX_RO, 0xA, 0, false));
    assert_eq!(sense(&on(&d, B, &[0; 6])), (6, 0x2A, 0x04));
}

#[test]
fn preempt_takes_over_the_reservation_and_removes_the_holder() {
    let d = disk();
    good(&prout(&d, A, 0, 0, 0, 0xA, false));
    good(&prout(&d, B, 0, 0, 0, 0xB, false));
    good(&prout(&d, A, 1, EX_AC, 0xA, 0, false));
    good(&prout(&d, B, 4, WR_EX, 0xB, 0xA, false));
    assert_eq!(sense(&on(&d, A, &[0; 6])), (6, 0x2A, 0x05));
    conflict(&on(&d, A, &write10(0, 1)));
    good(&on(&d, A, &read10(0, 1)));
    let keys = prin(&d, B, 0);
    assert_eq!(u32::from_be_bytes(keys[4..8].try_into().unwrap()), 8);
    conflict(&prout(&d, A, 0, 0, 0xA, 0, false)); // A is no longer registered
}

#[test]
fn preempt_of_an_unknown_key_conflicts() {
    let d = disk();
    good(&prout(&d, A, 0, 0, 0, 0xA, false));
    conflict(&prout(&d, A, 4, WR_EX, 0xA, 0x99, false));
    assert_eq!(sense(&prout(&d, A, 4, WR_EX, 0xA, 0, false)), (5, 0x26, 0x00));
}

#[test]
fn all_registrants_reservation_survives_until_the_last_registrant_leaves() {
    let d = disk();
    good(&prout(&d, A, 0, 0, 0, 0xA, false));
    good(&prout(&d, B, 0, 0, 0, 0xB, false));
    good(&prout(&d, A, 1, EX_AC_AR, 0xA, 0, false));
    good(&on(&d, B, &read10(0, 1)));
    conflict(&on(&d, Nexus::new(3), &read10(0, 1)));
    let r = prin(&d, A, 1);
    assert_eq!(u64::from_be_bytes(r[8..16].try_into().unwrap()), 0, "all-registrants key reads 0");
    good(&prout(&d, A, 0, 0, 0xA, 0, false));
    conflict(&on(&d, Nexus::new(3), &read10(0, 1)));
    good(&prout(&d, B, 0, 0, 0xB, 0, false));
    good(&on(&d, Nexus::new(3), &read10(0, 1)));
}

#[test]
fn clear_removes_everything_and_tells_the_others() {
    let d = disk();
    good(&prout(&d, A, 0, 0, 0, 0xA, false));
    good(&prout(&d, B, 0, 0, 0, 0xB, false));
    good(&prout(&d, A, 1, EX_AC, 0xA, 0, false));
    good(&prout(&d, A, 3, 0, 0xA, 0, false));
    assert_eq!(sense(&on(&d, B, &[0; 6])), (6, 0x2A, 0x03));
    good(&on(&d, B, &write10(0, 1)));
    assert_eq!(u32::from_be_bytes(prin(&d, A, 0)[4..8].try_into().unwrap()), 0);
}

#[test]
fn pr_out_needs_a_24_byte_list_and_a_valid_type() {
    let d = disk();
    let o = execute(&d, A, &[0x5F, 0, 0, 0, 0, 0, 0, 0, 20, 0], &[0; 20], 0).0;
    assert_eq!(sense(&o), (5, 0x1A, 0x00));
    good(&prout(&d, A, 0, 0, 0, 0xA, false));
    assert_eq!(sense(&prout(&d, A, 1, 2, 0xA, 0, false)), (5, 0x24, 0x00));
    assert_eq!(sense(&prout(&d, A, 1, 0x11, 0xA, 0, false)), (5, 0x24, 0x00));
    // Service action 08h is not defined (REGISTER AND MOVE, 07h, has tests of its own).
    let o = execute(&d, A, &[0x5F, 8, 0, 0, 0, 0, 0, 0, 24, 0], &[0; 24], 0).0;
    assert_eq!(sense(&o), (5, 0x24, 0x00));
}

#[test]
fn report_capabilities_lists_every_type() {
    let d = disk();
    let c = prin(&d, A, 2);
    assert_eq!(u16::from_be_bytes([c[0], c[1]]), 8);
    assert_eq!(c[4], 0xEA);
    assert_eq!(c[5], 0x01);
    assert_eq!(c[2] & 0x01, 0, "PTPL_C only with a state file");
}

#[test]
fn read_full_status_describes_each_registration() {
    let d = disk();
    good(&prout(&d, A, 0, 0, 0, 0xA, false));
    good(&prout(&d, A, 1, WR_EX, 0xA, 0, false));
    let f = prin(&d, A, 3);
    assert_eq!(u32::from_be_bytes(f[4..8].try_into().unwrap()) as usize, f.len() - 8);
    assert_eq!(u64::from_be_bytes(f[8..16].try_into().unwrap()), 0xA);
    assert_eq!(f[20] & 0x01, 0x01, "R_HOLDER");
    assert_eq!(f[21], WR_EX);
}

#[test]
fn aptpl_registrations_and_reservation_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pr.json");
    let cfg = DiskConfig { pr_state_file: Some(file.clone()), ..cfg() };
    let backend = Arc::new(RamBackend::new(4 << 20));
    {
        let d = Disk::new(cfg.clone(), backend.clone()).unwrap();
        good(&prout(&d, A, 0, 0, 0, 0xA, true));
        good(&prout(&d, A, 1, WR_EX, 0xA, 0, false));
        assert_eq!(prin(&d, A, 2)[3] & 0x01, 0x01, "PTPL_A");
    }
    let d = Disk::new(cfg.clone(), backend.clone()).unwrap();
    conflict(&on(&d, B, &write10(0, 1)));
    good(&on(&d, A, &write10(0, 1)));
    // Registering again without APTPL forgets the persisted state.
    good(&prout(&d, A, 0, 0, 0xA, 0xA, false));
    assert!(!file.exists());
}

#[test]
fn aptpl_without_a_state_file_is_refused() {
    assert_eq!(sense(&prout(&disk(), A, 0, 0, 0, 0xA, true)), (5, 0x26, 0x00));
}

#[test]
fn a_registration_that_cannot_be_persisted_is_not_made() {
    let dir = tempfile::tempdir().unwrap();
    // The state file's directory does not exist, so saving fails.
    let file = dir.path().join("missing").join("pr.json");
    let d = disk_with(DiskConfig { pr_state_file: Some(file), ..cfg() });
    assert_eq!(sense(&prout(&d, A, 0, 0, 0, 0xA, true)), (5, 0x55, 0x04));
    assert_eq!(u32::from_be_bytes(prin(&d, A, 0)[4..8].try_into().unwrap()), 0);
}
