//! What a logical unit keeps and drops when an I_T nexus is lost (SAM-5, SPC-4; `docs/nexus-loss.md`): the SPC-2
//! reservation goes, persistent reservation registrations and the persistent reservation stay, the lost nexus's
//! pending unit attentions give way to one I_T NEXUS LOSS OCCURRED for its initiator port, and other nexuses are
//! untouched.

mod common;
use common::*;
use scsi::{execute, LogicalUnit, Nexus, Outcome, ScsiStatus};

const TUR: [u8; 6] = [0; 6];
const RESERVE6: [u8; 6] = [0x16, 0, 0, 0, 0, 0];
const WR_EX: u8 = 1;

fn on(d: &dyn LogicalUnit, n: Nexus, cdb: &[u8]) -> Outcome {
    execute(d, n, cdb, &[0; 512], 1 << 16).0
}

fn prout(d: &dyn LogicalUnit, n: Nexus, sa: u8, rtype: u8, key: u64, sa_key: u64) -> Outcome {
    let cdb = [0x5F, sa, rtype, 0, 0, 0, 0, 0, 24, 0];
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    execute(d, n, &cdb, &p, 0).0
}

fn write10(lba: u32) -> [u8; 10] {
    let mut c = [0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c
}

#[test]
fn the_spc2_reservation_ends_with_its_nexus() {
    let d = disk();
    good(&on(&d, A, &RESERVE6));
    assert_eq!(on(&d, B, &TUR).status, ScsiStatus::RESERVATION_CONFLICT);
    d.nexus_loss(B);
    assert_eq!(sense(&on(&d, B, &TUR)), (6, 0x29, 0x07), "B's initiator port is told of its loss");
    assert_eq!(on(&d, B, &TUR).status, ScsiStatus::RESERVATION_CONFLICT, "another nexus's loss releases nothing");
    d.nexus_loss(A);
    good(&on(&d, B, &RESERVE6));
}

#[test]
fn persistent_registrations_and_the_persistent_reservation_survive_the_loss() {
    let d = disk();
    good(&prout(&d, A, 0, 0, 0, 0xAA)); // REGISTER
    good(&prout(&d, A, 1, WR_EX, 0xAA, 0)); // RESERVE, WRITE EXCLUSIVE
    d.nexus_loss(A);
    assert_eq!(on(&d, B, &write10(0)).status, ScsiStatus::RESERVATION_CONFLICT, "the reservation holds");
    // The initiator port comes back as the same I_T nexus: told of the loss once, then still the holder.
    assert_eq!(sense(&on(&d, A, &TUR)), (6, 0x29, 0x07));
    good(&on(&d, A, &write10(0)));
    good(&prout(&d, A, 2, WR_EX, 0xAA, 0)); // RELEASE with the key it registered before the loss
    good(&on(&d, B, &write10(0)));
}

#[test]
fn the_lost_nexus_s_unit_attentions_give_way_to_one_nexus_loss_occurred() {
    let d = disk();
    good(&on(&d, A, &TUR));
    good(&on(&d, B, &TUR));
    d.reset(); // 06/29/00 pending for both
    d.nexus_loss(A);
    assert_eq!(sense(&on(&d, A, &TUR)), (6, 0x29, 0x07), "what A had pending went with its nexus");
    good(&on(&d, A, &TUR));
    assert_eq!(sense(&on(&d, B, &TUR)), (6, 0x29, 0x00), "B keeps its own");
    good(&on(&d, B, &TUR));
    // A nexus the unit never saw has nothing to be told of.
    let c = Nexus { initiator: 3 };
    d.nexus_loss(c);
    good(&on(&d, c, &TUR));
}
