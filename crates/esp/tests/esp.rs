//! The ESP card with its C miniport under the port driver: exact data through the 8237 (one DMA operation per
//! class-sized SRB, several with a flush after each for a larger one), a missing target as
//! `SRB_STATUS_SELECTION_TIMEOUT` after the select timeout, CHECK CONDITION with the sense the miniport fetched by
//! REQUEST SENSE, abort of a stalled transfer, a bus reset, and no verifier violation throughout.

use hal::Placement;
use port::{EventKind, LuAddress, Srb, SrbFlags, SrbStatus};
use rig::{pattern, read10, write10, Card, Machine, LU0};
use std::time::{Duration, Instant};

const BLOCK: usize = 512;
const BLOCKS: u64 = 8192;

fn esp(channel: u8) -> Machine {
    Machine::card(Card::Esp, channel, BLOCKS)
}

fn rw10(op: u8, lba: u32, blocks: u16) -> Vec<u8> {
    if op == 0x2A {
        write10(lba, blocks)
    } else {
        read10(lba, blocks)
    }
}

#[test]
fn class_sized_and_larger_srbs_move_exact_data() {
    for channel in [1u8, 5] {
        let rig = esp(channel);
        assert_eq!(rig.handle.capabilities().maximum_transfer_length, 64 << 10);
        let (w, r) = rig.round_trip(0, 64 << 10, Placement::Scattered { seed: 1 }, 3);
        for id in [w, r] {
            assert_eq!(rig.count(id, |k| matches!(k, EventKind::Mapped { .. })), 1);
            assert_eq!(rig.count(id, |k| matches!(k, EventKind::Flushed { .. })), 1);
        }
        let (w, r) = rig.round_trip(1000, 200 << 10, Placement::Any, 4);
        for id in [w, r] {
            assert_eq!(rig.count(id, |k| matches!(k, EventKind::Mapped { .. })), 4, "64+64+64+8 KiB");
            assert_eq!(rig.count(id, |k| matches!(k, EventKind::Flushed { .. })), 4);
        }
        rig.assert_no_violations();
    }
}

/// READ(16) / WRITE(16): IDENTIFY and a 16-byte CDB do not fit the FIFO together, so the miniport selects with ATN
/// and stop and sends the CDB in the command phase.
#[test]
fn sixteen_byte_cdbs() {
    let rig = esp(1);
    let len = 8192;
    let data = pattern(len, 8);
    let buf = rig.alloc(len, Placement::Any);
    buf.write(0, &data).unwrap();
    let mut w16 = vec![0x8A, 0];
    w16.extend_from_slice(&77u64.to_be_bytes());
    w16.extend_from_slice(&16u32.to_be_bytes());
    w16.extend_from_slice(&[0, 0]);
    let (_, s) = rig.run(Srb::execute_scsi(LU0, &w16).with_data(&buf, 0, len as u32, SrbFlags::DATA_OUT));
    assert_eq!(s.srb_status, SrbStatus::SUCCESS, "{s:?}");
    let mut r16 = w16.clone();
    r16[0] = 0x88;
    let back = rig.alloc(len, Placement::Any);
    let (_, s) = rig.run(Srb::execute_scsi(LU0, &r16).with_data(&back, 0, len as u32, SrbFlags::DATA_IN));
    assert_eq!(s.srb_status, SrbStatus::SUCCESS, "{s:?}");
    let mut got = vec![0u8; len];
    back.read(0, &mut got).unwrap();
    assert!(got == data);
    let out = rig.alloc(len, Placement::Any);
    let (_, s) = rig.run(Srb::execute_scsi(LU0, &rw10(0x28, 77, 16)).with_data(&out, 0, len as u32, SrbFlags::DATA_IN));
    assert_eq!(s.srb_status, SrbStatus::SUCCESS);
    out.read(0, &mut got).unwrap();
    assert!(got == data, "READ(10) sees what WRITE(16) wrote");
    rig.assert_no_violations();
}

#[test]
fn selection_timeout_check_condition_and_underrun() {
    let rig = esp(1);
    let buf = rig.alloc(4096, Placement::Any);
    let missing = LuAddress { path_id: 0, target_id: 4, lun: 0 };
    let t0 = Instant::now();
    let (_, s) = rig.run(Srb::execute_scsi(missing, &rw10(0x28, 0, 8)).with_data(&buf, 0, 4096, SrbFlags::DATA_IN));
    assert_eq!(s.srb_status.status(), SrbStatus::SELECTION_TIMEOUT);
    assert!(t0.elapsed() >= Duration::from_millis(200), "the select timeout (250 ms) ran out first");
    let (_, s) =
        rig.run(Srb::execute_scsi(LU0, &rw10(0x28, BLOCKS as u32, 8)).with_data(&buf, 0, 4096, SrbFlags::DATA_IN));
    assert_eq!(s.srb_status.status(), SrbStatus::ERROR, "{s:?}");
    assert_eq!(s.scsi_status, 0x02);
    assert!(s.srb_status.autosense_valid(), "the miniport fetched the sense: {s:?}");
    assert_eq!(s.sense()[2] & 0x0F, 0x05, "ILLEGAL REQUEST: {:?}", s.sense());
    rig.release_queue();
    let (_, s) = rig.run(Srb::execute_scsi(LU0, &[0x12, 0, 0, 0x10, 0, 0]).with_data(&buf, 0, 4096, SrbFlags::DATA_IN));
    assert_eq!(s.srb_status.status(), SrbStatus::DATA_OVERRUN, "{s:?}");
    assert!(s.data_transfer_length > 0 && s.data_transfer_length < 4096);
    rig.assert_no_violations();
}

#[test]
fn abort_and_bus_reset_of_stalled_transfers() {
    let rig = esp(5);
    let len = 64 << 10;
    for reset in [false, true] {
        rig.disk.faults().set_dma_stall_after(Some(8192));
        let buf = rig.alloc(len, Placement::Any);
        let before = rig.handle.stats().dma_bytes;
        let (tx, rx) = std::sync::mpsc::channel();
        let id = rig.handle.submit_with(
            Srb::execute_scsi(LU0, &rw10(0x28, 0, (len / BLOCK) as u16)).with_data(
                &buf,
                0,
                len as u32,
                SrbFlags::DATA_IN,
            ),
            move |s| {
                let _ = tx.send(s);
            },
        );
        let until = Instant::now() + Duration::from_secs(10);
        while rig.handle.stats().dma_bytes - before < 8192 {
            assert!(Instant::now() < until, "the transfer never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        if reset {
            drop(rig.handle.reset_bus(0));
        } else {
            drop(rig.handle.abort(id, LU0));
        }
        let victim = rx.recv_timeout(Duration::from_secs(10)).expect("the stalled SRB comes back");
        if reset {
            assert_eq!(victim.srb_status.status(), SrbStatus::BUS_RESET, "{victim:?}");
        } else {
            assert_eq!(victim.srb_status.status(), SrbStatus::ABORTED, "{victim:?}");
            assert_eq!(victim.data_transfer_length, 8192);
        }
        assert_eq!(rig.count(id, |k| matches!(k, EventKind::Flushed { .. })), 1);
        rig.disk.faults().set_dma_stall_after(None);
        rig.release_queue();
    }
    // After the reset the first command meets the unit attention; then data moves again.
    let buf = rig.alloc(4096, Placement::Any);
    let (_, s) = rig.run(Srb::execute_scsi(LU0, &[0; 6]));
    if !s.srb_status.is_success() {
        rig.release_queue();
    }
    let _ = buf;
    rig.round_trip(8, 32 << 10, Placement::Any, 6);
    rig.assert_no_violations();
}

/// The card's identity latch: each pass-through SRB reaches the target on its requester's I_T nexus
/// (`ScsiPortGetRequesterNexus`), so a RESERVE(6) made by one requester conflicts for another and for the card's own
/// identity, and the nexus-loss request (`SRB_FUNCTION_IO_CONTROL`) releases it.
#[test]
fn each_requester_is_its_own_nexus_and_a_nexus_loss_releases_its_reservation() {
    let rig = esp(1);
    let buf = rig.alloc(4096, Placement::Any);
    let as_requester = |nexus: u64, cdb: &[u8]| {
        let mut srb = Srb::execute_scsi(LU0, cdb);
        srb.requester_nexus = nexus;
        srb
    };
    let read_as = |nexus: u64| {
        let mut srb = Srb::execute_scsi(LU0, &read10(0, 8)).with_data(&buf, 0, 4096, SrbFlags::DATA_IN);
        srb.requester_nexus = nexus;
        rig.run(srb).1
    };
    const RESERVE6: [u8; 6] = [0x16, 0, 0, 0, 0, 0];
    let (a, b) = (0x11u64, 0x22u64);
    let (_, s) = rig.run(as_requester(a, &RESERVE6));
    assert_eq!(s.srb_status, SrbStatus::SUCCESS, "A reserves: {s:?}");
    assert_eq!(read_as(a).srb_status, SrbStatus::SUCCESS, "the holder reads");
    for other in [b, 0] {
        let s = read_as(other);
        assert_eq!(s.srb_status.status(), SrbStatus::ERROR, "{s:?}");
        assert_eq!(s.scsi_status, 0x18, "RESERVATION CONFLICT for requester {other:#x}");
        rig.release_queue();
    }
    // scsiport's nexus-loss request: SRB_IO_CONTROL (28 bytes) and the identity that left, little-endian.
    let mut p = vec![0u8; 36];
    p[0..4].copy_from_slice(&28u32.to_le_bytes());
    p[4..12].copy_from_slice(&port::requester::SIGNATURE);
    p[16..20].copy_from_slice(&1u32.to_le_bytes());
    p[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    p[24..28].copy_from_slice(&8u32.to_le_bytes());
    p[28..36].copy_from_slice(&a.to_le_bytes());
    let io = rig.alloc(36, Placement::Any);
    io.write(0, &p).unwrap();
    let mut srb = Srb::execute_scsi(LU0, &[]).with_data(&io, 0, 36, SrbFlags::DATA_OUT);
    srb.function = port::SrbFunction::IO_CONTROL;
    let (_, s) = rig.run(srb);
    assert_eq!(s.srb_status, SrbStatus::SUCCESS, "{s:?}");
    let mut back = [0u8; 36];
    io.read(0, &mut back).unwrap();
    assert_eq!(u32::from_le_bytes(back[20..24].try_into().unwrap()), 0, "ReturnCode written by the miniport");
    assert_eq!(read_as(b).srb_status, SrbStatus::SUCCESS, "A's nexus is gone: its reservation with it");
    rig.assert_no_violations();
}

/// A WRITE whose buffer is shorter than the CDB's transfer length: the target wants more than the requester sent, and
/// the miniport ends the command (ATN, ABORT) instead of padding, so the blocks past the buffer keep their data and the
/// SRB is `DATA_OVERRUN` with the bytes that moved.
#[test]
fn a_write_shorter_than_its_cdb_writes_only_what_the_buffer_holds() {
    for channel in [1u8, 5] {
        let rig = esp(channel);
        rig.round_trip(0, 2 * BLOCK, Placement::Any, 11);
        let before = pattern(2 * BLOCK, 11);
        let buf = rig.alloc(BLOCK, Placement::Any);
        buf.write(0, &[0xBB; BLOCK]).unwrap();
        let (_, s) =
            rig.run(Srb::execute_scsi(LU0, &write10(0, 2)).with_data(&buf, 0, BLOCK as u32, SrbFlags::DATA_OUT));
        assert_eq!(s.srb_status.status(), SrbStatus::DATA_OVERRUN, "{s:?}");
        assert_eq!(s.data_transfer_length as usize, BLOCK);
        let back = rig.alloc(2 * BLOCK, Placement::Any);
        let (_, s) =
            rig.run(Srb::execute_scsi(LU0, &read10(0, 2)).with_data(&back, 0, 2 * BLOCK as u32, SrbFlags::DATA_IN));
        assert_eq!(s.srb_status, SrbStatus::SUCCESS, "{s:?}");
        let mut got = vec![0u8; 2 * BLOCK];
        back.read(0, &mut got).unwrap();
        assert!(got[..BLOCK].iter().all(|&b| b == 0xBB), "the first block is what the buffer held");
        assert!(got[BLOCK..] == before[BLOCK..], "the second block was not written");
        rig.assert_no_violations();
    }
}

/// The ESP's C miniport built with one deliberate mistake each (`-DESP_BUG=n`, loaded from a shared library onto the
/// ESP card): the verifier names each by its rule in warn and strict mode, and in strict mode the SRB the mistake
/// concerns fails. The clean build of the same source breaks no rule.
#[test]
fn the_verifier_names_a_broken_esp_miniport() {
    use port::VerifierMode;
    let start = |defines: &[&str], verifier: VerifierMode| {
        let library = Some(rig::build_c_miniport("crates/esp/c/esp.c", defines));
        Machine::start(rig::Spec { library, verifier, ..rig::Spec::new(Card::Esp, 1, BLOCKS) }).expect("starts")
    };
    let len = 96 << 10; // two sub-ranges of at most 64 KiB
    let clean = start(&[], VerifierMode::Strict);
    let (_, s) = clean.run(rig::read_srb(&clean.alloc(len, Placement::Any), 0, (len / BLOCK) as u16));
    assert_eq!(s.srb_status.status(), SrbStatus::SUCCESS);
    clean.assert_no_violations();
    for (define, rule) in [
        ("-DESP_BUG=1", "map-before-flush"),
        ("-DESP_BUG=2", "srb-completed-twice"),
        ("-DESP_BUG=3", "srb-field-not-writable"),
        ("-DESP_BUG=4", "complete-without-flush"),
    ] {
        let warn = start(&[define], VerifierMode::Warn);
        let (_, _) = warn.run(rig::read_srb(&warn.alloc(len, Placement::Any), 0, (len / BLOCK) as u16));
        assert!(warn.rules().contains(&rule), "{define}: expected {rule}, got {:?}", warn.rules());
        let strict = start(&[define], VerifierMode::Strict);
        let (_, s) = strict.run(rig::read_srb(&strict.alloc(len, Placement::Any), 0, (len / BLOCK) as u16));
        assert!(strict.rules().contains(&rule), "{define} strict: {:?}", strict.rules());
        if rule != "srb-completed-twice" {
            assert_eq!(s.srb_status.status(), SrbStatus::INTERNAL_ERROR, "{define}: strict mode fails the SRB");
        }
    }
}
