//! A C miniport for the reference card, written from `docs/hba.md` and the header alone (`c/refcard.c`), built with
//! the system's C compiler as a shared library and loaded like an out-of-tree miniport: it moves exact data through
//! the 8237 (one DMA operation per class-sized SRB, several with a flush after each for a larger one), turns a missing
//! target into `SRB_STATUS_SELECTION_TIMEOUT`, returns autosense, aborts a stalled transfer; builds of it with one
//! deliberate mistake each are named by the verifier; a library without `DriverEntry`, a missing file and a
//! `HW_INITIALIZATION_DATA` of the wrong size are clear errors.

use hal::{Buffer, Placement};
use miniport_c::MiniportError;
use port::{LuAddress, Srb, SrbFlags, SrbStatus, VerifierMode};
use rig::{pattern, Card, Machine, Spec, LU0};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BLOCK: usize = 512;
const BLOCKS: u64 = 8192;

/// Build `c/refcard.c` with extra `-D` flags into a shared library (once per flag set).
fn build(defines: &[&str]) -> PathBuf {
    rig::build_c_miniport("crates/miniport-c/c/refcard.c", defines)
}

/// The reference card driven by the C miniport in `lib`, with a RAM disk at target 0.
fn start(lib: &Path, channel: u8, verifier: VerifierMode) -> Machine {
    try_start(lib, channel, verifier).expect("the C miniport starts")
}

fn try_start(lib: &Path, channel: u8, verifier: VerifierMode) -> Result<Machine, MiniportError> {
    Machine::start(Spec { verifier, library: Some(lib.to_path_buf()), ..Spec::new(Card::Reference, channel, BLOCKS) })
}

fn rw10(op: u8, lba: u32, blocks: u16) -> Vec<u8> {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    vec![op, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0]
}

fn write_srb(buf: &Buffer, lba: u32, len: usize) -> Srb {
    Srb::execute_scsi(LU0, &rw10(0x2A, lba, (len / BLOCK) as u16)).with_data(buf, 0, len as u32, SrbFlags::DATA_OUT)
}

fn read_srb(buf: &Buffer, lba: u32, len: usize) -> Srb {
    Srb::execute_scsi(LU0, &rw10(0x28, lba, (len / BLOCK) as u16)).with_data(buf, 0, len as u32, SrbFlags::DATA_IN)
}

#[test]
fn class_sized_srbs_take_one_dma_operation_each() {
    for channel in [1u8, 5] {
        let rig = start(&build(&[]), channel, VerifierMode::Strict);
        assert_eq!(rig.handle.capabilities().maximum_transfer_length, 64 << 10);
        assert_eq!(rig.handle.capabilities().dma_channel, Some(channel));
        for (i, placement) in
            [Placement::Any, Placement::Scattered { seed: 9 }, Placement::Above16M].into_iter().enumerate()
        {
            let (w, r) = rig.round_trip(16 * i as u32, 64 << 10, placement, i as u64);
            for id in [w, r] {
                assert_eq!(rig.maps(id), 1, "one DMA operation per class-sized SRB");
                assert_eq!(rig.flushes(id), 1);
            }
        }
        assert!(rig.handle.violations().is_empty(), "{:#?}", rig.handle.violations());
    }
}

#[test]
fn a_large_srb_is_walked_in_sub_ranges_with_a_flush_after_each() {
    let rig = start(&build(&[]), 1, VerifierMode::Strict);
    let len = 288 << 10; // 4.5 × MaximumTransferLength
    let (w, r) = rig.round_trip(100, len, Placement::Scattered { seed: 4 }, 7);
    for id in [w, r] {
        assert_eq!(rig.maps(id), 5);
        assert_eq!(rig.flushes(id), 5);
    }
    assert!(rig.handle.violations().is_empty(), "{:#?}", rig.handle.violations());
}

#[test]
fn missing_target_check_condition_and_short_transfer() {
    let rig = start(&build(&[]), 5, VerifierMode::Strict);
    let buf = rig.alloc(4096, Placement::Any);
    let missing = LuAddress { path_id: 0, target_id: 3, lun: 0 };
    let (_, s) = rig.run(Srb::execute_scsi(missing, &rw10(0x28, 0, 8)).with_data(&buf, 0, 4096, SrbFlags::DATA_IN));
    assert_eq!(s.srb_status.status(), SrbStatus::SELECTION_TIMEOUT);
    // Beyond the last block: CHECK CONDITION, ILLEGAL REQUEST, with the sense the miniport read from the card.
    let (_, s) = rig.run(read_srb(&buf, BLOCKS as u32, 4096));
    assert_eq!(s.srb_status.status(), SrbStatus::ERROR);
    assert!(s.srb_status.autosense_valid(), "{s:?}");
    assert_eq!(s.scsi_status, 0x02);
    assert_eq!(s.sense()[2] & 0x0F, 0x05, "sense {:?}", s.sense());
    let release = {
        let mut r = Srb::execute_scsi(LU0, &[]);
        r.function = port::SrbFunction::RELEASE_QUEUE;
        r
    };
    rig.run(release);
    // INQUIRY with a 4 KiB allocation: the target sends less; the miniport reports the underrun.
    let (_, s) = rig.run(Srb::execute_scsi(LU0, &[0x12, 0, 0, 0x10, 0, 0]).with_data(&buf, 0, 4096, SrbFlags::DATA_IN));
    assert_eq!(s.srb_status.status(), SrbStatus::DATA_OVERRUN, "{s:?}");
    assert!(s.data_transfer_length > 0 && s.data_transfer_length < 4096);
    assert!(rig.handle.violations().is_empty(), "{:#?}", rig.handle.violations());
}

#[test]
fn abort_of_a_stalled_transfer() {
    let rig = start(&build(&[]), 5, VerifierMode::Strict);
    let len = 64 << 10;
    rig.disk.faults().set_dma_stall_after(Some(8192));
    let buf = rig.alloc(len, Placement::Any);
    let (tx, rx) = std::sync::mpsc::channel();
    let id = rig.handle.submit_with(read_srb(&buf, 0, len), move |s| {
        let _ = tx.send(s);
    });
    let until = Instant::now() + Duration::from_secs(10);
    while rig.handle.stats().dma_bytes < 8192 {
        assert!(Instant::now() < until, "the transfer never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    let abort = rig.handle.abort(id, LU0);
    let victim = rx.recv_timeout(Duration::from_secs(10)).expect("the aborted SRB comes back");
    let abort = abort.wait();
    assert_eq!(victim.srb_status.status(), SrbStatus::ABORTED);
    assert_eq!(victim.data_transfer_length, 8192, "bytes moved before the abort");
    assert_eq!(abort.srb_status.status(), SrbStatus::SUCCESS);
    assert_eq!(rig.flushes(id), 1);
    rig.disk.faults().set_dma_stall_after(None);
    let release = {
        let mut r = Srb::execute_scsi(LU0, &[]);
        r.function = port::SrbFunction::RELEASE_QUEUE;
        r
    };
    rig.run(release);
    rig.round_trip(0, len, Placement::Any, 3);
    assert!(rig.handle.violations().is_empty(), "{:#?}", rig.handle.violations());
}

/// Each deliberate mistake is named by its rule, and the adapter still moves exact data afterwards.
#[test]
fn the_verifier_names_a_broken_c_miniport() {
    for (define, rule) in [
        ("-DREFCARD_BUG=1", "map-before-flush"),
        ("-DREFCARD_BUG=2", "srb-completed-twice"),
        ("-DREFCARD_BUG=3", "srb-field-not-writable"),
        ("-DREFCARD_BUG=4", "complete-without-flush"),
    ] {
        let rig = start(&build(&[define]), 1, VerifierMode::Warn);
        let len = 96 << 10; // two sub-ranges
        let buf = rig.alloc(len, Placement::Any);
        let (_, _s) = rig.run(read_srb(&buf, 0, len));
        let rules = rig.rules();
        assert!(rules.contains(&rule), "{define}: expected {rule}, got {rules:?}");
        let strict = start(&build(&[define]), 1, VerifierMode::Strict);
        let (_, s) = strict.run(read_srb(&strict.alloc(len, Placement::Any), 0, len));
        assert!(strict.rules().contains(&rule), "{define} strict: {:?}", strict.rules());
        if rule != "srb-completed-twice" {
            assert_eq!(s.srb_status.status(), SrbStatus::INTERNAL_ERROR, "{define}: strict mode fails the SRB");
        }
    }
}

#[test]
fn clear_errors_for_a_miniport_that_cannot_run() {
    // SAFETY: the file does not exist; nothing is loaded.
    let e = unsafe { miniport_c::load(Path::new("/nonexistent/libnothing.so")) }.unwrap_err();
    assert!(matches!(e, MiniportError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("no such file"));

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("noentry.c");
    std::fs::write(&src, "int not_a_miniport(void) { return 0; }\n").unwrap();
    let lib = dir.path().join("libnoentry.so");
    let ok = Command::new("cc").args(["-shared", "-fPIC"]).arg(&src).arg("-o").arg(&lib).status().unwrap();
    assert!(ok.success());
    // SAFETY: a library with no initialisers and one plain function.
    let e = unsafe { miniport_c::load(&lib) }.unwrap_err();
    assert!(matches!(e, MiniportError::NoDriverEntry { .. }), "{e}");
    assert!(e.to_string().contains("DriverEntry"), "{e}");

    let e = try_start(&build(&["-DREFCARD_WRONG_SIZE"]), 5, VerifierMode::Strict).err().expect("refused");
    assert!(matches!(e, MiniportError::WrongInitDataSize { got, expected, .. } if got + 8 == expected), "{e}");
    assert!(e.to_string().contains("HW_INITIALIZATION_DATA"), "{e}");
}

/// A bus reset the port asks for (`SRB_FUNCTION_RESET_BUS` → `HwResetBus`) while a transfer is stalled: the stalled
/// SRB comes back with `SRB_STATUS_BUS_RESET` after a flush, and the adapter moves exact data afterwards.
#[test]
fn bus_reset_while_a_transfer_is_stalled() {
    let rig = start(&build(&[]), 1, VerifierMode::Strict);
    let len = 64 << 10;
    rig.disk.faults().set_dma_stall_after(Some(4096));
    let buf = rig.alloc(len, Placement::Any);
    let (tx, rx) = std::sync::mpsc::channel();
    let id = rig.handle.submit_with(read_srb(&buf, 0, len), move |s| {
        let _ = tx.send(s);
    });
    let until = Instant::now() + Duration::from_secs(10);
    while rig.handle.stats().dma_bytes < 4096 {
        assert!(Instant::now() < until, "the transfer never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(rig.handle.reset_bus(0));
    let victim = rx.recv_timeout(Duration::from_secs(10)).expect("the stalled SRB comes back");
    assert_eq!(victim.srb_status.status(), SrbStatus::BUS_RESET, "{victim:?}");
    assert_eq!(rig.flushes(id), 1, "flushed before it was completed");
    rig.disk.faults().set_dma_stall_after(None);
    let mut release = Srb::execute_scsi(LU0, &[]);
    release.function = port::SrbFunction::RELEASE_QUEUE;
    rig.run(release);
    // The reset leaves a unit attention for the first command after it (SAM-5): one retry at most.
    let data = pattern(len, 1);
    buf.write(0, &data).unwrap();
    let mut ok = false;
    for _ in 0..2 {
        let (_, s) = rig.run(write_srb(&buf, 0, len));
        if s.srb_status == SrbStatus::SUCCESS {
            ok = true;
            break;
        }
        assert!(s.srb_status.autosense_valid() && s.sense()[2] & 0x0F == 0x06, "only a unit attention: {s:?}");
        let mut release = Srb::execute_scsi(LU0, &[]);
        release.function = port::SrbFunction::RELEASE_QUEUE;
        rig.run(release);
    }
    assert!(ok, "the write after the reset failed");
    rig.round_trip(32, len, Placement::Scattered { seed: 2 }, 9);
    assert!(rig.handle.violations().is_empty(), "{:#?}", rig.handle.violations());
}

/// `SRB_FUNCTION_IO_CONTROL`: the miniport reads the `SRB_IO_CONTROL` header in `DataBuffer` with the CPU although
/// `MapBuffers` is FALSE, and what it writes there (`ReturnCode`) reaches the caller's buffer.
#[test]
fn io_control_buffer_is_cpu_visible_both_ways() {
    let rig = start(&build(&[]), 5, VerifierMode::Strict);
    let request = |signature: &[u8; 8]| {
        let mut p = vec![0u8; 36];
        p[0..4].copy_from_slice(&28u32.to_le_bytes());
        p[4..12].copy_from_slice(signature);
        p[12..16].copy_from_slice(&10u32.to_le_bytes());
        p[16..20].copy_from_slice(&1u32.to_le_bytes()); // NEXUS_LOSS
        p[20..24].copy_from_slice(&u32::MAX.to_le_bytes()); // ReturnCode, to be overwritten
        p[24..28].copy_from_slice(&8u32.to_le_bytes());
        p[28..36].copy_from_slice(&0x1234_5678_9abc_def0u64.to_le_bytes());
        let buf = rig.alloc(36, Placement::Any);
        buf.write(0, &p).unwrap();
        let mut srb = Srb::execute_scsi(LU0, &[]).with_data(&buf, 0, 36, SrbFlags::DATA_OUT);
        srb.function = port::SrbFunction::IO_CONTROL;
        (srb, buf)
    };
    let (srb, buf) = request(b"SCSIPORT");
    let (_, s) = rig.run(srb);
    assert_eq!(s.srb_status, SrbStatus::SUCCESS);
    let mut back = [0u8; 36];
    buf.read(0, &mut back).unwrap();
    assert_eq!(u32::from_le_bytes(back[20..24].try_into().unwrap()), 0, "ReturnCode written by the miniport");
    let (srb, _) = request(b"SOMEONE ");
    let (_, s) = rig.run(srb);
    assert_eq!(s.srb_status, SrbStatus::INVALID_REQUEST);
    rig.round_trip(0, 4096, Placement::Any, 5);
    assert!(rig.handle.violations().is_empty(), "{:#?}", rig.handle.violations());
}
