//! ALUA on a logical unit that several hosts serve: INQUIRY TPGS, the port designators of VPD page 0x83, REPORT
//! TARGET PORT GROUPS, state transitions with their unit attention, standby refusing media access, and no
//! reservations on a multi-host unit.

mod common;
use common::*;
use scsi::{execute, AluaState, Disk, DiskConfig, LogicalUnit, Nexus, PortGroup};

fn groups(own: u16) -> DiskConfig {
    DiskConfig {
        port_group: own,
        port_groups: vec![
            PortGroup { id: 1, state: AluaState::ActiveOptimized },
            PortGroup { id: 2, state: AluaState::ActiveNonOptimized },
        ],
        serial: "rbd/image".into(),
        ..cfg()
    }
}

fn on(d: &Disk, n: Nexus, cdb: &[u8]) -> (scsi::Outcome, Vec<u8>) {
    execute(d as &dyn LogicalUnit, n, cdb, &[0; 512], 1 << 16)
}

fn rtpg(d: &Disk, format: u8) -> Vec<u8> {
    let (o, data) = on(d, A, &[0xA3, 0x0A | (format << 5), 0, 0, 0, 0, 0, 0, 4, 0, 0, 0]);
    good(&o);
    data
}

/// (id, state, relative target port) of each descriptor after a header of `header` bytes.
fn descriptors(data: &[u8], header: usize) -> Vec<(u16, u8, u16)> {
    let len = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize + 4;
    assert_eq!(len, data.len());
    let mut out = Vec::new();
    let mut i = header;
    while i < len {
        let count = data[i + 7] as usize;
        assert_eq!(count, 1, "one target port per group");
        out.push((
            u16::from_be_bytes([data[i + 2], data[i + 3]]),
            data[i] & 0x0F,
            u16::from_be_bytes([data[i + 10], data[i + 11]]),
        ));
        i += 8 + 4 * count;
    }
    out
}

#[test]
fn two_hosts_report_one_unit_through_their_own_port_groups() {
    let (a, b) = (disk_with(groups(1)), disk_with(groups(2)));
    for (d, own) in [(&a, 1u16), (&b, 2u16)] {
        let (o, std) = on(d, A, &[0x12, 0, 0, 0, 96, 0]);
        good(&o);
        assert_eq!(std[5] & 0x30, 0x10, "TPGS = implicit ALUA");
        let (o, vpd) = on(d, A, &[0x12, 1, 0x83, 0, 255, 0]);
        good(&o);
        // Walk the designators: (association|type, value).
        let mut found = Vec::new();
        let mut i = 4;
        while i + 4 <= vpd.len() {
            let n = vpd[i + 3] as usize;
            found.push((vpd[i + 1] & 0x3F, vpd[i + 4..i + 4 + n].to_vec()));
            i += 4 + n;
        }
        let rel = found.iter().find(|(t, _)| *t == 0x14).expect("relative target port designator");
        assert_eq!(rel.1, [0, 0, 0, own as u8]);
        let tpg = found.iter().find(|(t, _)| *t == 0x15).expect("target port group designator");
        assert_eq!(tpg.1, [0, 0, 0, own as u8]);
    }
    // The same NAA name on both hosts: one logical unit.
    let naa = |d: &Disk| on(d, A, &[0x12, 1, 0x83, 0, 255, 0]).1[4..16].to_vec();
    assert_eq!(naa(&a), naa(&b));
    assert_eq!(descriptors(&rtpg(&a, 0), 4), vec![(1, 0, 1), (2, 1, 2)]);
    let ext = rtpg(&b, 1);
    assert_eq!(ext[4] >> 4, 1, "extended header format");
    assert_eq!(descriptors(&ext, 8), vec![(1, 0, 1), (2, 1, 2)]);
}

#[test]
fn a_transition_posts_a_unit_attention_and_standby_refuses_media_access() {
    let d = disk_with(groups(2));
    good(&on(&d, A, &[0; 6]).0); // clears the power-on unit attention
    assert!(d.set_port_group_state(1, AluaState::Unavailable));
    assert!(d.set_port_group_state(2, AluaState::ActiveOptimized));
    assert!(!d.set_port_group_state(7, AluaState::Standby));
    assert_eq!(sense(&on(&d, A, &read10(0, 1)).0), (0x6, 0x2A, 0x06));
    good(&on(&d, A, &read10(0, 1)).0);
    assert_eq!(descriptors(&rtpg(&d, 0), 4), vec![(1, 3, 1), (2, 0, 2)]);
    d.set_port_group_state(2, AluaState::Standby);
    assert_eq!(sense(&on(&d, A, &read10(0, 1)).0), (0x6, 0x2A, 0x06));
    assert_eq!(sense(&on(&d, A, &read10(0, 1)).0), (0x2, 0x04, 0x0B));
    good(&on(&d, A, &[0x12, 0, 0, 0, 36, 0]).0);
    assert_eq!(descriptors(&rtpg(&d, 0), 4), vec![(1, 3, 1), (2, 2, 2)], "RTPG is served in standby");
}

#[test]
fn reservations_are_not_offered_on_a_multi_host_unit() {
    let d = disk_with(groups(1));
    good(&on(&d, A, &[0; 6]).0);
    for cdb in
        [&[0x16u8, 0, 0, 0, 0, 0][..], &[0x5E, 0, 0, 0, 0, 0, 0, 0x10, 0, 0], &[0x5F, 0, 1, 0, 0, 0, 0, 0, 24, 0]]
    {
        assert_eq!(sense(&on(&d, A, cdb).0), (0x5, 0x20, 0x00), "{:02x}: INVALID COMMAND OPERATION CODE", cdb[0]);
    }
    assert!(!d.supported_commands().iter().any(|c| c.0 == 0x5F));
    // One host: reservations as usual, and no REPORT TARGET PORT GROUPS without ALUA.
    let single = disk();
    good(&on(&single, A, &[0; 6]).0);
    good(&on(&single, A, &[0x5E, 0, 0, 0, 0, 0, 0, 0x10, 0, 0]).0);
    assert_eq!(sense(&on(&single, A, &[0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0]).0).0, 0x5);
}

#[test]
fn a_port_group_outside_the_list_is_a_configuration_error() {
    let bad = DiskConfig { port_group: 3, ..groups(1) };
    assert!(Disk::new(bad, std::sync::Arc::new(scsi::RamBackend::new(1 << 20))).is_err());
}
