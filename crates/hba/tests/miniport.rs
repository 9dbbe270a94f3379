//! Miniport behaviour beyond the plain data path: SRBs waiting in the device extension while the card is busy, abort
//! of a waiting SRB, direction resolution, a target data phase the SRB has no buffer for, a phase mismatch, SRB
//! functions the miniport does not handle.

mod common;

use common::machine::LU0;
use common::*;
use hal::{Hal, HalConfig, Placement, SystemMemory};
use hba::{start_adapter, HbaConfig};
use port::{AdapterHandle, AdapterOptions, LuAddress, Srb, SrbFlags, SrbFunction, SrbStatus};
use scsi::Disk;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LU1: LuAddress = LuAddress { path_id: 0, target_id: 1, lun: 0 };

struct Bus2 {
    mem: Arc<SystemMemory>,
    handle: AdapterHandle,
    disk0: Arc<Disk>,
}

fn two_targets() -> Bus2 {
    let mem = SystemMemory::new(32 << 20).expect("memory");
    let hal = Hal::new(mem.clone(), HalConfig::default()).expect("hal");
    let (t0, disk0) = ram_target(256);
    let (t1, _) = ram_target(256);
    let cfg = HbaConfig { targets: vec![(0, t0), (1, t1)], ..HbaConfig::default() };
    let handle = start_adapter(hal, cfg, AdapterOptions::default()).expect("adapter");
    Bus2 { mem, handle, disk0 }
}

fn submit(h: &AdapterHandle, srb: Srb) -> (port::SrbId, crossbeam_channel::Receiver<Srb>) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let id = h.submit_with(srb, move |s| {
        let _ = tx.send(s);
    });
    (id, rx)
}

fn wait_for_bytes(h: &AdapterHandle, n: u64) {
    let until = Instant::now() + Duration::from_secs(10);
    while h.stats().dma_bytes < n {
        assert!(Instant::now() < until, "no DMA progress");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn an_srb_for_another_target_waits_for_the_card_and_then_runs() {
    let b = two_targets();
    b.disk0.faults().set_dma_stall_after(Some(4096));
    let buf0 = b.mem.alloc(65536, Placement::Any).expect("buffer");
    let (id0, rx0) =
        submit(&b.handle, Srb::execute_scsi(LU0, &read10(0, 128)).with_data(&buf0, 0, 65536, SrbFlags::DATA_IN));
    wait_for_bytes(&b.handle, 4096);
    let buf1 = b.mem.alloc(4096, Placement::Any).expect("buffer");
    let (_, rx1) =
        submit(&b.handle, Srb::execute_scsi(LU1, &read10(0, 8)).with_data(&buf1, 0, 4096, SrbFlags::DATA_IN));
    // The second SRB reached the miniport (NextRequest was sent at once) but the card is busy: it waits.
    assert!(rx1.recv_timeout(Duration::from_millis(100)).is_err(), "the card runs one command at a time");
    drop(b.handle.abort(id0, LU0));
    let victim = rx0.recv_timeout(Duration::from_secs(10)).expect("victim completes");
    assert_eq!(victim.srb_status.status(), SrbStatus::ABORTED);
    let second = rx1.recv_timeout(Duration::from_secs(10)).expect("the waiting SRB runs after the abort");
    assert_eq!(second.srb_status, SrbStatus::SUCCESS);
    assert!(b.handle.violations().is_empty(), "{:?}", b.handle.violations());
    b.handle.shutdown();
}

#[test]
fn abort_of_a_waiting_srb_completes_it_without_touching_the_card() {
    let b = two_targets();
    b.disk0.faults().set_dma_stall_after(Some(4096));
    let buf0 = b.mem.alloc(65536, Placement::Any).expect("buffer");
    let (id0, rx0) =
        submit(&b.handle, Srb::execute_scsi(LU0, &read10(0, 128)).with_data(&buf0, 0, 65536, SrbFlags::DATA_IN));
    wait_for_bytes(&b.handle, 4096);
    let buf1 = b.mem.alloc(4096, Placement::Any).expect("buffer");
    let (id1, rx1) =
        submit(&b.handle, Srb::execute_scsi(LU1, &read10(0, 8)).with_data(&buf1, 0, 4096, SrbFlags::DATA_IN));
    assert!(rx1.recv_timeout(Duration::from_millis(50)).is_err());
    let (atx, arx) = crossbeam_channel::bounded(1);
    b.handle.submit_with(port::Srb::abort(LU1, id1), move |s| {
        let _ = atx.send(s);
    });
    assert_eq!(arx.recv_timeout(Duration::from_secs(10)).expect("abort done").srb_status, SrbStatus::SUCCESS);
    let waiting = rx1.recv_timeout(Duration::from_secs(10)).expect("waiting SRB completes");
    assert_eq!(waiting.srb_status.status(), SrbStatus::ABORTED);
    assert_eq!(b.handle.stats().dma_bytes, 4096, "the aborted waiting SRB moved nothing");
    assert!(rx0.try_recv().is_err(), "the running command is untouched");
    drop(b.handle.abort(id0, LU0));
    assert_eq!(rx0.recv_timeout(Duration::from_secs(10)).expect("done").srb_status.status(), SrbStatus::ABORTED);
    assert!(b.handle.violations().is_empty(), "{:?}", b.handle.violations());
    b.handle.shutdown();
}

#[test]
fn unspecified_direction_is_resolved_from_the_target_phase() {
    let b = two_targets();
    let buf = b.mem.alloc(4096, Placement::Any).expect("buffer");
    let data = pattern(4096, 5);
    buf.write(0, &data).expect("fill");
    let w = b.handle.execute(Srb::execute_scsi(LU0, &write10(0, 8)).with_data(
        &buf,
        0,
        4096,
        SrbFlags::UNSPECIFIED_DIRECTION,
    ));
    assert_eq!(w.srb_status, SrbStatus::SUCCESS, "{w:?}");
    assert_eq!(w.srb_flags & SrbFlags::UNSPECIFIED_DIRECTION, SrbFlags::DATA_OUT);
    buf.write(0, &[0u8; 4096]).expect("clear");
    let r = b.handle.execute(Srb::execute_scsi(LU0, &read10(0, 8)).with_data(
        &buf,
        0,
        4096,
        SrbFlags::UNSPECIFIED_DIRECTION,
    ));
    assert_eq!(r.srb_status, SrbStatus::SUCCESS, "{r:?}");
    assert_eq!(r.srb_flags & SrbFlags::UNSPECIFIED_DIRECTION, SrbFlags::DATA_IN);
    let mut got = vec![0u8; 4096];
    buf.read(0, &mut got).expect("read");
    assert_eq!(got, data);
    assert!(b.handle.violations().is_empty(), "{:?}", b.handle.violations());
    b.handle.shutdown();
}

#[test]
fn target_data_without_an_srb_buffer_is_an_overrun() {
    let b = two_targets();
    let s = b.handle.execute(Srb::execute_scsi(LU0, &inquiry(36)));
    assert_eq!(s.srb_status, SrbStatus::DATA_OVERRUN, "{s:?}");
    assert_eq!(b.handle.stats().dma_ops, 0);
    let ok = b.handle.execute(Srb::execute_scsi(LU0, &TEST_UNIT_READY));
    assert_eq!(ok.srb_status, SrbStatus::SUCCESS);
    assert!(b.handle.violations().is_empty(), "{:?}", b.handle.violations());
    b.handle.shutdown();
}

#[test]
fn srb_direction_against_the_target_phase_is_a_phase_sequence_failure() {
    let b = two_targets();
    let buf = b.mem.alloc(4096, Placement::Any).expect("buffer");
    buf.write(0, &[0x5A; 4096]).expect("fill");
    let mut srb = Srb::execute_scsi(LU0, &read10(0, 8)).with_data(&buf, 0, 4096, SrbFlags::DATA_OUT);
    srb.srb_flags.insert(SrbFlags::NO_QUEUE_FREEZE);
    let s = b.handle.execute(srb);
    assert_eq!(s.srb_status.status(), SrbStatus::PHASE_SEQUENCE_FAILURE, "{s:?}");
    assert_eq!(b.handle.stats().dma_bytes, 0, "no byte moved the wrong way");
    assert_eq!(b.handle.stats().flushes, 1);
    let ok = b.handle.execute(Srb::execute_scsi(LU0, &TEST_UNIT_READY));
    assert_eq!(ok.srb_status, SrbStatus::SUCCESS);
    assert!(b.handle.violations().is_empty(), "{:?}", b.handle.violations());
    b.handle.shutdown();
}

#[test]
fn functions_the_miniport_does_not_handle_are_invalid_requests() {
    let b = two_targets();
    let mut srb = Srb::execute_scsi(LU0, &[]);
    srb.function = SrbFunction::SHUTDOWN;
    let s = b.handle.execute(srb);
    assert_eq!(s.srb_status.status(), SrbStatus::INVALID_REQUEST);
    let ok = b.handle.execute(Srb::execute_scsi(LU0, &TEST_UNIT_READY));
    assert_eq!(ok.srb_status, SrbStatus::SUCCESS);
    b.handle.shutdown();
}

#[test]
fn bus_reset_completes_the_running_and_the_waiting_srb() {
    let b = two_targets();
    b.disk0.faults().set_dma_stall_after(Some(4096));
    let buf0 = b.mem.alloc(65536, Placement::Any).expect("buffer");
    let (_, rx0) =
        submit(&b.handle, Srb::execute_scsi(LU0, &read10(0, 128)).with_data(&buf0, 0, 65536, SrbFlags::DATA_IN));
    wait_for_bytes(&b.handle, 4096);
    let buf1 = b.mem.alloc(4096, Placement::Any).expect("buffer");
    let (_, rx1) =
        submit(&b.handle, Srb::execute_scsi(LU1, &read10(0, 8)).with_data(&buf1, 0, 4096, SrbFlags::DATA_IN));
    assert!(rx1.recv_timeout(Duration::from_millis(50)).is_err());
    drop(b.handle.reset_bus(0));
    for rx in [rx0, rx1] {
        let s = rx.recv_timeout(Duration::from_secs(10)).expect("completed by the reset");
        assert_eq!(s.srb_status.status(), SrbStatus::BUS_RESET, "{s:?}");
    }
    assert_eq!(b.handle.stats().dma_bytes, 4096);
    assert_eq!(b.handle.stats().flushes, 1, "the running transfer was flushed");
    b.disk0.faults().set_dma_stall_after(None);
    // LU 0 had run a command, so the reset leaves it a UNIT ATTENTION 06/29 for its first command; LU 1 had not.
    for (lu, attention) in [(LU0, true), (LU1, false)] {
        let mut release = Srb::execute_scsi(lu, &[]);
        release.function = SrbFunction::RELEASE_QUEUE;
        assert!(b.handle.execute(release).srb_status.is_success());
        let mut tur = Srb::execute_scsi(lu, &TEST_UNIT_READY);
        tur.srb_flags.insert(SrbFlags::NO_QUEUE_FREEZE);
        if attention {
            let ua = b.handle.execute(tur.clone());
            assert_eq!(ua.srb_status.status(), SrbStatus::ERROR, "{ua:?}");
            assert_eq!((ua.sense()[2] & 0x0F, ua.sense()[12]), (0x06, 0x29));
        }
        assert_eq!(b.handle.execute(tur).srb_status, SrbStatus::SUCCESS);
    }
    assert!(b.handle.violations().is_empty(), "{:?}", b.handle.violations());
    b.handle.shutdown();
}
