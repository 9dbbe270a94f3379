//! Awaiting SRBs through the engine: `AdapterHandle::submit` returns a future that resolves with the finished SRB,
//! names it for an abort, and resolves as `NO_HBA` once the adapter has shut down.

mod common;

use common::miniport::Bug;
use common::{pattern, read_all, read_srb, Rig, DISK_BYTES, LU0};
use futures::executor::block_on;
use hal::Placement;
use port::{SrbFunction, SrbStatus, VerifierMode};
use std::sync::atomic::Ordering;

#[test]
fn an_awaited_read_brings_the_data_and_the_blocking_form_agrees() {
    let rig = Rig::new(Bug::None, VerifierMode::Strict);
    let len = 16 << 10;
    let a = rig.alloc(len, Placement::Scattered { seed: 3 });
    let b = rig.alloc(len, Placement::Scattered { seed: 3 });
    let first = rig.handle.submit(read_srb(LU0, &a, 4096, len));
    let second = rig.handle.submit(read_srb(LU0, &b, 4096, len));
    assert_ne!(first.id(), second.id(), "each SRB has its own id");
    let (s1, s2) = block_on(async { (first.await, second.await) });
    assert_eq!((s1.srb_status.status(), s2.srb_status.status()), (SrbStatus::SUCCESS, SrbStatus::SUCCESS));
    let want = &pattern(DISK_BYTES, 7)[4096..4096 + len];
    assert_eq!(read_all(&a), want);
    assert_eq!(read_all(&b), want);
    let c = rig.alloc(len, Placement::Any);
    let s3 = rig.handle.submit(read_srb(LU0, &c, 0, len)).wait();
    assert!(s3.srb_status.is_success());
    assert_eq!(read_all(&c), &pattern(DISK_BYTES, 7)[..len]);
    assert!(rig.handle.violations().is_empty(), "{:?}", rig.handle.violations());
    rig.shutdown();
}

#[test]
fn the_future_names_its_srb_for_an_abort() {
    let rig = Rig::new(Bug::None, VerifierMode::Strict);
    rig.knobs.lock().stall = true;
    let len = 64 << 10;
    let buf = rig.alloc(len, Placement::Contiguous { below_16m: true, align: 128 << 10 });
    let victim = rig.handle.submit(read_srb(LU0, &buf, 0, len));
    rig.wait_until("the transfer is started", |r| r.counters.dma_started.load(Ordering::Relaxed) == 1);
    assert!(!victim.is_finished(), "stalled mid-transfer");
    let abort = rig.handle.abort(victim.id(), LU0);
    let abort = abort.wait();
    assert_eq!(abort.function, SrbFunction::ABORT_COMMAND);
    assert_eq!(abort.srb_status, SrbStatus::SUCCESS);
    let victim = block_on(victim);
    assert_eq!(victim.srb_status.status(), SrbStatus::ABORTED);
    rig.knobs.lock().stall = false;
    rig.shutdown();
}

#[test]
fn after_shutdown_a_submitted_srb_resolves_as_no_hba() {
    let rig = Rig::new(Bug::None, VerifierMode::Strict);
    let handle = rig.handle.clone();
    rig.shutdown();
    let buf = handle.submit(common::test_unit_ready(LU0));
    let s = block_on(buf);
    assert_eq!(s.srb_status, SrbStatus::NO_HBA);
    assert_eq!(s.address(), LU0);
    assert_eq!(handle.release_queue(LU0).wait().srb_status, SrbStatus::NO_HBA);
}

/// A RESET_BUS request completes only once `HwResetBus` has run: a caller that answers an iSCSI LUN reset when the
/// future resolves must find the reset's effects (unit attentions, aborted commands) already in place. The check runs
/// in the completion itself, so it sees the order the engine delivered in.
#[test]
fn a_bus_reset_request_completes_after_the_reset() {
    let rig = Rig::new(Bug::None, VerifierMode::Strict);
    for round in 1..=3u32 {
        let counters = rig.counters.clone();
        let (tx, rx) = crossbeam_channel::bounded(1);
        rig.handle.submit_with(port::Srb::reset_bus(0), move |s| {
            let _ = tx.send((s.srb_status.status(), counters.resets.load(Ordering::Relaxed)));
        });
        let (status, resets) = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("the reset comes back");
        assert_eq!(status, SrbStatus::SUCCESS);
        assert_eq!(resets, round, "HwResetBus calls when reset request {round} completed");
    }
    rig.assert_recovered(Placement::Scattered { seed: 5 });
    rig.shutdown();
}
