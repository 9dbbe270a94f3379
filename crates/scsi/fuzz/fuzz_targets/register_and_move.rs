//! TransportIDs and REGISTER AND MOVE: any bytes as a TransportID parse to an error or to a TransportID that
//! encodes and parses back to itself; any bytes as a REGISTER AND MOVE parameter list, sent by the holder of a
//! reservation, end in GOOD, RESERVATION CONFLICT or CHECK CONDITION with sense, never a panic, and afterwards
//! exactly one registered I_T nexus holds the write-exclusive reservation.
//!
//! Input layout: byte 0 = the parameter list length the CDB gives (times 4), then the parameter list.

#![no_main]

use libfuzzer_sys::fuzz_target;
use scsi::{execute, Disk, DiskConfig, Nexus, RamBackend, ScsiStatus};
use scsi_proto::transport_id;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    if let Ok((t, used)) = transport_id::parse(data) {
        assert!(used <= data.len());
        let again = t.encode();
        assert_eq!(transport_id::parse(&again), Ok((t, again.len())));
    }
    let Some((&head, list)) = data.split_first() else { return };
    let disk = Disk::new(DiskConfig::default(), Arc::new(RamBackend::new(1 << 20))).expect("valid configuration");
    let a = Nexus::new(1);
    let mut reg = [0u8; 24];
    reg[8..16].copy_from_slice(&0xAu64.to_be_bytes());
    let (o, _) = execute(&disk, a, &[0x5F, 0x00, 0, 0, 0, 0, 0, 0, 24, 0], &reg, 0);
    assert_eq!(o.status, ScsiStatus::GOOD);
    let mut res = [0u8; 24];
    res[0..8].copy_from_slice(&0xAu64.to_be_bytes());
    let (o, _) = execute(&disk, a, &[0x5F, 0x01, 0x01, 0, 0, 0, 0, 0, 24, 0], &res, 0);
    assert_eq!(o.status, ScsiStatus::GOOD);
    let len = (u32::from(head) * 4).to_be_bytes();
    let (o, _) = execute(&disk, a, &[0x5F, 0x07, 0x01, 0, 0, len[0], len[1], len[2], len[3], 0], list, 0);
    assert_eq!(o.status == ScsiStatus::CHECK_CONDITION, o.sense.is_some());
    assert!(matches!(o.status, ScsiStatus::GOOD | ScsiStatus::RESERVATION_CONFLICT | ScsiStatus::CHECK_CONDITION));
    // READ RESERVATION: still one write-exclusive reservation, held under a registered key.
    let (o, r) = execute(&disk, a, &[0x5E, 0x01, 0, 0, 0, 0, 0, 0, 24, 0], &[], 24);
    assert_eq!(o.status, ScsiStatus::GOOD);
    assert_eq!((r.len(), r[21]), (24, 0x01));
    let (_, keys) = execute(&disk, a, &[0x5E, 0x00, 0, 0, 0, 0, 0, 0x10, 0, 0], &[], 1 << 12);
    let holder_key = &r[8..16];
    assert!(keys[8..].chunks(8).any(|k| k == holder_key), "the holder is registered");
});
