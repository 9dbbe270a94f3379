//! The catalog of broken miniports: one deliberate mistake per DDI rule (docs/ddi-rules.md) and per other
//! misuse, each caught under its stable name. In `strict` mode the SRB it concerns fails with
//! `SRB_STATUS_INTERNAL_ERROR` (advisory and SRB-less checks refuse the operation but leave the SRB alone); in `warn`
//! mode the port reports and carries on; in `off` mode it reports nothing. After each, the adapter recovers: the next
//! SRBs move exact data through the same channel and map registers.

mod common;

use common::miniport::Bug;
use common::{pattern, read_all, read_srb, test_unit_ready, unspecified_read_srb, Rig, LU0};
use hal::Placement;
use port::{Srb, SrbStatus, VerifierMode};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A READ several segments long (the test miniport maps 16 KiB at a time) that is larger than the map registers of a
/// 64 KiB adapter (17 pages) would cover in one map.
const LEN: usize = 96 << 10;
const AT: usize = 64 << 10;

/// Run the scenario that makes `bug` fire and return the SRB it concerns.
fn trigger(rig: &Rig, bug: Bug) -> Srb {
    match bug {
        Bug::KeepUnspecifiedDirection => {
            let buf = rig.alloc(LEN, Placement::Contiguous { below_16m: true, align: 128 << 10 });
            rig.run(unspecified_read_srb(LU0, &buf, AT, LEN))
        }
        Bug::MapNoDataSrb | Bug::NextLuRequestUnqueued => rig.run(test_unit_ready(LU0)),
        Bug::AbortWithoutFlush | Bug::ResetCompletesWithoutFlush | Bug::ResetForgetsTransfer => {
            // The card stalls with the transfer mapped; the port is asked to abort it or to reset the bus.
            rig.knobs.lock().stall = true;
            let buf = rig.alloc(LEN, Placement::Contiguous { below_16m: true, align: 128 << 10 });
            let (id, rx) = rig.submit(read_srb(LU0, &buf, AT, LEN));
            rig.wait_until("the transfer is started", |r| r.counters.dma_started.load(Ordering::Relaxed) == 1);
            if bug == Bug::AbortWithoutFlush {
                drop(rig.handle.abort(id, LU0));
            } else {
                drop(rig.handle.reset_bus(0));
            }
            let srb = rx.recv_timeout(Duration::from_secs(20)).expect("the stalled SRB comes back");
            rig.knobs.lock().stall = false;
            srb
        }
        _ => {
            // Room past the SRB's range inside the same MDL, so an out-of-range map stays mappable in warn mode.
            let buf = rig.alloc(LEN + 4096, Placement::Contiguous { below_16m: true, align: 128 << 10 });
            rig.run(read_srb(LU0, &buf, AT, LEN))
        }
    }
}

struct Case {
    bug: Bug,
    rule: &'static str,
    strict: SrbStatus,
    /// The SRB's status in warn and off modes (the port carries on as the original port would).
    lenient: SrbStatus,
}

const fn case(bug: Bug, rule: &'static str, strict: SrbStatus, lenient: SrbStatus) -> Case {
    Case { bug, rule, strict, lenient }
}

const FAILED: SrbStatus = SrbStatus::INTERNAL_ERROR;
const OK: SrbStatus = SrbStatus::SUCCESS;

fn check(c: &Case) {
    for mode in [VerifierMode::Strict, VerifierMode::Warn, VerifierMode::Off] {
        let rig = Rig::try_with(c.bug, mode, Some(5), |m| {
            if c.bug == Bug::ReadDataWithoutMapBuffers {
                m.map_buffers = false;
            }
        })
        .expect("the adapter starts");
        let srb = trigger(&rig, c.bug);
        let names = rig.names();
        let want = match mode {
            VerifierMode::Strict => c.strict,
            _ => c.lenient,
        };
        assert_eq!(srb.srb_status.status(), want, "{:?} in {mode:?} mode: the SRB's status", c.bug);
        match mode {
            VerifierMode::Off => assert!(names.is_empty(), "{:?}: off mode reports nothing, got {names:?}", c.bug),
            _ => {
                assert_eq!(names.first().copied(), Some(c.rule), "{:?} in {mode:?} mode: {names:?}", c.bug);
                if mode == VerifierMode::Strict {
                    assert!(
                        names.iter().all(|n| *n == c.rule),
                        "{:?}: only {} is reported, got {names:?}",
                        c.bug,
                        c.rule
                    );
                }
                let v = &rig.handle.violations()[0];
                let text = v.to_string();
                assert!(text.contains(c.rule) && text.contains(v.rule.text()), "the message names the rule: {text}");
                if v.srb.is_some() {
                    assert_eq!(v.address, Some(LU0));
                    assert!(v.opcode.is_some() && v.tag.is_some(), "the message names opcode and tag: {text}");
                }
            }
        }
        if c.bug == Bug::MapWithoutSystemDma {
            // A PIO adapter cannot move data by DMA at all; the adapter still takes requests.
            assert_eq!(rig.run(test_unit_ready(LU0)).srb_status.status(), OK);
        } else {
            rig.assert_recovered(Placement::Scattered { seed: 11 });
            rig.assert_recovered(Placement::Contiguous { below_16m: true, align: 4096 });
        }
        if mode == VerifierMode::Strict {
            let later: Vec<_> = rig.names().into_iter().skip(names.len()).collect();
            assert!(later.is_empty(), "{:?}: recovery reported {later:?}", c.bug);
        }
        rig.shutdown();
    }
}

#[test]
fn rule1_map_from_an_adapter_without_system_dma() {
    check(&case(Bug::MapWithoutSystemDma, "ddi-not-system-dma", FAILED, SrbStatus::TIMEOUT));
}

#[test]
fn rule2_map_after_complete() {
    check(&case(Bug::MapAfterComplete, "map-inactive-srb", FAILED, OK));
}

#[test]
fn rule2_map_empty_range() {
    check(&case(Bug::MapEmptyRange, "map-empty-range", FAILED, SrbStatus::TIMEOUT));
}

#[test]
fn rule2_map_past_the_srb_buffer() {
    check(&case(Bug::MapPastBuffer, "map-outside-srb-buffer", FAILED, OK));
}

#[test]
fn rule2_map_larger_than_the_map_registers() {
    // Never truncated, so refused in every mode: the SRB then times out in warn and off modes.
    check(&case(Bug::MapWholeTransfer, "map-exceeds-map-registers", FAILED, SrbStatus::TIMEOUT));
}

#[test]
fn rule2_map_with_unresolved_direction() {
    check(&case(Bug::KeepUnspecifiedDirection, "map-without-direction", FAILED, OK));
}

#[test]
fn rule2_map_a_no_data_srb() {
    check(&case(Bug::MapNoDataSrb, "map-without-direction", FAILED, OK));
}

#[test]
fn rule3_second_map_before_flush() {
    check(&case(Bug::MapBeforeFlush, "map-before-flush", FAILED, OK));
}

#[test]
fn rule4_map_from_dma_started() {
    let c = case(Bug::MapFromDmaStarted, "map-from-wrong-routine", FAILED, OK);
    // In warn mode the early map also overwrites the running one (map-before-flush): only strict is exact here.
    let rig = Rig::new(c.bug, VerifierMode::Strict);
    let srb = trigger(&rig, c.bug);
    assert_eq!(srb.srb_status.status(), c.strict);
    assert_eq!(rig.names(), vec![c.rule]);
    rig.assert_recovered(Placement::Scattered { seed: 5 });
    rig.shutdown();
    let rig = Rig::new(c.bug, VerifierMode::Warn);
    let srb = trigger(&rig, c.bug);
    assert_ne!(srb.srb_status.status(), FAILED, "warn mode does not fail the SRB");
    assert_eq!(rig.names().first().copied(), Some(c.rule));
    rig.assert_recovered(Placement::Scattered { seed: 5 });
    rig.shutdown();
}

#[test]
fn rule4_data_phase_started_before_dma_started() {
    check(&case(Bug::StartDataPhaseEarly, "data-phase-before-dma-started", FAILED, OK));
}

#[test]
fn rule5_complete_without_flush() {
    check(&case(Bug::CompleteWithoutFlush, "complete-without-flush", FAILED, OK));
}

#[test]
fn rule5_abort_without_flush() {
    check(&case(Bug::AbortWithoutFlush, "complete-without-flush", FAILED, SrbStatus::ABORTED));
}

#[test]
fn rule5_reset_completes_without_flush() {
    check(&case(Bug::ResetCompletesWithoutFlush, "complete-without-flush", FAILED, SrbStatus::BUS_RESET));
}

#[test]
fn rule5_reset_forgets_the_mapped_transfer() {
    check(&case(Bug::ResetForgetsTransfer, "complete-without-flush", FAILED, SrbStatus::BUS_RESET));
}

#[test]
fn rule6_flush_with_nothing_mapped_is_advisory() {
    check(&case(Bug::FlushTwice, "flush-without-map", OK, OK));
}

#[test]
fn rule7_touch_after_complete() {
    check(&case(Bug::TouchAfterComplete, "srb-not-active", FAILED, OK));
}

#[test]
fn rule7_complete_twice() {
    check(&case(Bug::CompleteTwice, "srb-completed-twice", FAILED, OK));
}

#[test]
fn rule7_raise_data_transfer_length() {
    check(&case(Bug::RaiseTransferLength, "srb-field-not-writable", FAILED, OK));
}

#[test]
fn rule7_rewrite_a_specified_direction() {
    check(&case(Bug::RewriteDirection, "srb-field-not-writable", FAILED, OK));
}

#[test]
fn rule7_data_buffer_without_map_buffers() {
    check(&case(Bug::ReadDataWithoutMapBuffers, "data-buffer-not-mapped", FAILED, OK));
}

#[test]
fn miniport_programs_the_dma_controller_itself() {
    check(&case(Bug::TouchDmaController, "dma-controller-access", OK, OK));
}

#[test]
fn miniport_reads_outside_its_access_range() {
    check(&case(Bug::IoOutsideAccessRange, "io-outside-access-range", OK, OK));
}

#[test]
fn next_lu_request_from_an_adapter_without_per_lu_queues() {
    check(&case(Bug::NextLuRequestUnqueued, "bad-next-lu-request", OK, OK));
}

#[test]
fn interrupt_never_dismissed_ends_in_a_bus_reset() {
    check(&case(Bug::NeverAckInterrupt, "interrupt-not-dismissed", OK, OK));
}

/// The seed's key case: a bounced device-to-memory transfer completed without `ScsiPortFlushDma` leaves the
/// caller's buffer without the data; the port names it `complete-without-flush`.
#[test]
fn missing_flush_on_a_bounced_read_loses_the_data_and_is_named() {
    for mode in [VerifierMode::Strict, VerifierMode::Warn, VerifierMode::Off] {
        let rig = Rig::new(Bug::CompleteWithoutFlush, mode);
        let len = 8 << 10;
        // Scattered pages are not one physical run: the HAL bounces the transfer through map registers.
        let buf = rig.alloc(len, Placement::Scattered { seed: 21 });
        let srb = rig.read(&buf, 4096, len);
        let want = rig.disk.lock()[4096..4096 + len].to_vec();
        let got = read_all(&buf);
        assert_eq!(got, vec![0u8; len], "{mode:?}: without the flush no byte reaches the caller's buffer");
        assert_ne!(got, want);
        assert!(rig.handle.stats().bounced_maps >= 1, "the transfer bounced");
        let expected = if mode == VerifierMode::Strict { FAILED } else { OK };
        assert_eq!(srb.srb_status.status(), expected, "{mode:?}");
        let names = rig.names();
        if mode == VerifierMode::Off {
            assert!(names.is_empty());
        } else {
            assert_eq!(names, vec!["complete-without-flush"]);
        }
        // The same read with the (now correct) miniport brings the data.
        let again = rig.alloc(len, Placement::Scattered { seed: 22 });
        assert_eq!(rig.read(&again, 4096, len).srb_status.status(), OK);
        assert_eq!(read_all(&again), want);
        rig.shutdown();
    }
}

#[test]
fn a_system_dma_adapter_without_hw_dma_started_is_refused_at_start() {
    let err = Rig::try_with(Bug::NoDmaStartedRoutine, VerifierMode::Strict, Some(5), |_| {})
        .err()
        .expect("the port refuses the adapter");
    assert!(matches!(err, port::PortError::NoDmaStarted { channel: 5, .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("HwDmaStarted") && text.contains("DmaChannel = 5"), "a clear message: {text}");
}

/// Rule 4 is the port's own promise: a transfer flushed (cancelled) before `HwDmaStarted` never gets it.
#[test]
fn flush_before_dma_started_cancels_the_transfer_and_hw_dma_started_is_not_called() {
    let rig = Rig::new(Bug::None, VerifierMode::Strict);
    rig.knobs.lock().fail_next_setup = true;
    let buf = rig.alloc(4096, Placement::Any);
    let srb = rig.read(&buf, 0, 4096);
    assert_eq!(srb.srb_status.status(), SrbStatus::PHASE_SEQUENCE_FAILURE, "the card's error is reported");
    assert_eq!(rig.counters.dma_started.load(Ordering::Relaxed), 0, "HwDmaStarted was never called");
    assert_eq!(rig.handle.stats().cancelled_maps, 1);
    assert!(rig.names().is_empty(), "{:?}", rig.names());
    rig.assert_recovered(Placement::Any);
    rig.shutdown();
}

/// The correct miniport: reads and writes of every shape, zero violations.
#[test]
fn the_correct_test_miniport_reports_nothing() {
    for channel in [1u8, 5] {
        let rig = Rig::try_with(Bug::None, VerifierMode::Strict, Some(channel), |_| {}).expect("starts");
        for (i, placement) in [
            Placement::Contiguous { below_16m: true, align: 128 << 10 },
            Placement::Scattered { seed: 9 },
            Placement::Above16M,
        ]
        .into_iter()
        .enumerate()
        {
            let len = (20 << 10) + i * 4096;
            let data = pattern(len, i as u64);
            let buf = rig.alloc(len, placement.clone());
            buf.write(0, &data).expect("fill");
            assert_eq!(rig.write(&buf, 0, len).srb_status.status(), OK);
            let back = rig.alloc(len, placement);
            assert_eq!(rig.read(&back, 0, len).srb_status.status(), OK);
            assert_eq!(read_all(&back), data);
        }
        assert!(rig.names().is_empty(), "channel {channel}: {:?}", rig.names());
        rig.shutdown();
    }
}

/// A violation on one adapter does not keep the DMA channel it shares with another: the port drops the unflushed
/// mapping and frees the channel, so the other adapter's transfers go on.
#[test]
fn a_violation_on_one_adapter_leaves_the_shared_channel_to_the_other() {
    let mem = hal::SystemMemory::new(64 << 20).expect("memory");
    let hal = hal::Hal::new(mem.clone(), hal::HalConfig::default()).expect("hal");
    let on = |bug, io, name| {
        Rig::on(mem.clone(), hal.clone(), bug, VerifierMode::Strict, Some(5), io, name, |_| {}).expect("starts")
    };
    let broken = on(Bug::CompleteWithoutFlush, 0x330, "broken");
    let good = on(Bug::None, 0x230, "good");
    // The broken adapter's SRB stalls on the card with its transfer mapped: the channel is its own meanwhile.
    broken.knobs.lock().stall = true;
    let buf = broken.alloc(8 << 10, Placement::Scattered { seed: 1 });
    let (_, rx) = broken.submit(read_srb(LU0, &buf, 0, 8 << 10));
    broken.wait_until("the broken adapter holds the channel", |r| r.counters.dma_started.load(Ordering::Relaxed) == 1);
    let other = good.alloc(8 << 10, Placement::Scattered { seed: 2 });
    let (_, good_rx) = good.submit(read_srb(LU0, &other, 0, 8 << 10));
    good.wait_until("the good adapter waits for the channel", |r| r.handle.stats().channel_waits == 1);
    // The card resumes; the broken miniport completes without flushing.
    broken.knobs.lock().stall = false;
    let srb = rx.recv_timeout(Duration::from_secs(20)).expect("the broken SRB comes back");
    assert_eq!(srb.srb_status.status(), FAILED);
    assert_eq!(broken.names(), vec!["complete-without-flush"]);
    let srb = good_rx.recv_timeout(Duration::from_secs(20)).expect("the good adapter gets the channel");
    assert_eq!(srb.srb_status.status(), OK);
    assert_eq!(read_all(&other), good.disk.lock()[..8 << 10].to_vec());
    assert!(good.names().is_empty());
    good.assert_recovered(Placement::Scattered { seed: 3 });
    broken.assert_recovered(Placement::Scattered { seed: 4 });
    good.shutdown();
    broken.shutdown();
}

/// A strict-mode violation fails only the SRB it concerns: a request for another logical unit queued behind it runs.
#[test]
fn a_violation_on_one_logical_unit_leaves_the_others_working() {
    let rig = Rig::new(Bug::MapBeforeFlush, VerifierMode::Strict);
    let a = rig.alloc(LEN, Placement::Any);
    let b = rig.alloc(8 << 10, Placement::Any);
    let (_, first) = rig.submit(read_srb(common::LU1, &a, AT, LEN));
    let (_, second) = rig.submit(read_srb(LU0, &b, 0, 8 << 10));
    let first = first.recv_timeout(Duration::from_secs(20)).expect("the LU 1 SRB comes back");
    let second = second.recv_timeout(Duration::from_secs(20)).expect("the LU 0 SRB comes back");
    assert_eq!(first.srb_status.status(), FAILED);
    assert_eq!(second.srb_status.status(), OK);
    assert_eq!(read_all(&b), rig.disk.lock()[..8 << 10].to_vec());
    assert_eq!(rig.names(), vec!["map-before-flush"]);
    rig.shutdown();
}
