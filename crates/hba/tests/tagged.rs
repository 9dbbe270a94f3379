//! Tagged queuing through the port driver: several SRBs per logical unit handed over with `NextLuRequest`, queued at
//! the target (disconnect), reconnected one at a time (reselection, `ScsiPortGetSrb`), and every way a disconnected
//! command ends early.

mod common;

use common::machine::{Machine, LU0};
use common::*;
use hal::Placement;
use hba::HbaConfig;
use port::{EventKind, Srb, SrbFlags, SrbId, SrbStatus};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const CHUNK: usize = 4096;

fn tagged(mut srb: Srb) -> Srb {
    srb.srb_flags.insert(SrbFlags::QUEUE_ACTION_ENABLE);
    srb
}

/// The most SRBs of LU0 the port had handed to the miniport at once.
fn peak_started(m: &Machine) -> usize {
    let (mut now, mut peak) = (0usize, 0usize);
    for e in m.trace.events() {
        match e.kind {
            EventKind::SrbStarted if e.address == Some(LU0) => {
                now += 1;
                peak = peak.max(now);
            }
            EventKind::SrbCompleted { .. } if e.address == Some(LU0) => now = now.saturating_sub(1),
            _ => {}
        }
    }
    peak
}

/// Submit a tagged 64 KiB read of `lba` whose data phase stalls after 4 KiB, and wait until those 4 KiB moved: it then
/// holds the bus until it is aborted. Its completion goes to `done`.
fn stalled_read(m: &Machine, lba: u32, flags: SrbFlags, done: impl FnOnce(Srb) + Send + 'static) -> SrbId {
    m.disk.faults().set_dma_stall_after(Some(4096));
    let big = m.alloc(65536, Placement::Any);
    let mut srb = tagged(Srb::execute_scsi(LU0, &read10(lba, 128)).with_data(&big, 0, 65536, SrbFlags::DATA_IN));
    srb.srb_flags.insert(flags);
    let before = m.handle.stats().dma_bytes;
    let id = m.handle.submit_with(srb, done);
    let until = Instant::now() + Duration::from_secs(10);
    while m.handle.stats().dma_bytes < before + 4096 {
        assert!(Instant::now() < until, "no DMA progress");
        std::thread::sleep(Duration::from_millis(1));
    }
    m.disk.faults().set_dma_stall_after(None);
    id
}

fn machine(queue_depth: u8) -> Machine {
    Machine::with(HbaConfig { queue_depth, ..HbaConfig::default() }, 4096)
}

#[test]
fn tagged_srbs_queue_at_the_target_and_move_exact_data() {
    let m = machine(8);
    let n = 32;
    let data = pattern(n * CHUNK, 42);
    let src = m.alloc(n * CHUNK, Placement::Above16M);
    src.write(0, &data).unwrap();
    let writes = (0..n)
        .map(|i| {
            let cdb = write10((i * CHUNK) as u32 / BLOCK, (CHUNK as u32 / BLOCK) as u16);
            tagged(Srb::execute_scsi(LU0, &cdb).with_data(&src, i * CHUNK, CHUNK as u32, SrbFlags::DATA_OUT))
        })
        .collect();
    for (_, s) in m.run_all(writes) {
        assert_eq!(s.srb_status, SrbStatus::SUCCESS);
    }
    let dst = m.alloc(n * CHUNK, Placement::Scattered { seed: 9 });
    let reads = (0..n)
        .map(|i| {
            let cdb = read10((i * CHUNK) as u32 / BLOCK, (CHUNK as u32 / BLOCK) as u16);
            tagged(Srb::execute_scsi(LU0, &cdb).with_data(&dst, i * CHUNK, CHUNK as u32, SrbFlags::DATA_IN))
        })
        .collect();
    let done = m.run_all(reads);
    let mut tags = HashMap::new();
    for (id, s) in &done {
        assert_eq!(s.srb_status, SrbStatus::SUCCESS);
        assert_ne!(s.queue_tag, port::SP_UNTAGGED, "the port tagged the SRB");
        assert_eq!(m.maps(*id), 1, "one DMA operation per class-sized SRB");
        assert_eq!(m.flushes(*id), 1);
        tags.insert(s.queue_tag, *id);
    }
    assert_eq!(tags.len(), n, "no two outstanding SRBs share a tag");
    let mut back = vec![0u8; n * CHUNK];
    dst.read(0, &mut back).unwrap();
    assert!(back == data, "data read back through tagged SRBs differs");
    let peak = peak_started(&m);
    assert!(peak <= 8, "the miniport's queue depth of 8 bounds what it holds per LU (peak {peak})");
    m.assert_no_violations();
}

#[test]
fn behind_a_command_that_holds_the_bus_the_port_hands_over_up_to_the_depth_and_they_queue_at_the_target() {
    let m = machine(8);
    let blocker = stalled_read(&m, 3000, SrbFlags::NO_QUEUE_FREEZE, |_| {});
    // The blocker itself disconnected once (to read into its target's buffer) before it took the bus for its data.
    let own = m.card.counters().peak_disconnected;
    let n = 12;
    let data = pattern(n * CHUNK, 5);
    let src = m.alloc(n * CHUNK, Placement::Any);
    src.write(0, &data).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    for i in 0..n {
        let cdb = write10((i * CHUNK) as u32 / BLOCK, (CHUNK as u32 / BLOCK) as u16);
        let tx = tx.clone();
        m.handle.submit_with(
            tagged(Srb::execute_scsi(LU0, &cdb).with_data(&src, i * CHUNK, CHUNK as u32, SrbFlags::DATA_OUT)),
            move |s| {
                let _ = tx.send(s.srb_status);
            },
        );
    }
    // NextLuRequest lets the port hand over SRBs of the busy LU up to the depth: the blocker and 7 writes.
    let until = Instant::now() + Duration::from_secs(10);
    while peak_started(&m) < 8 {
        assert!(Instant::now() < until, "the port handed over only {} SRBs", peak_started(&m));
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(peak_started(&m), 8, "and no more than the depth");
    assert_eq!(m.card.counters().peak_disconnected, own, "nothing reached the target while the bus is held");
    drop(m.handle.abort(blocker, LU0));
    for _ in 0..n {
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).expect("every write completes"), SrbStatus::SUCCESS);
    }
    let card = m.card.counters();
    assert!(card.peak_disconnected >= 7, "the 7 waiting writes were queued at the target at once: {card:?}");
    assert!(card.reselections >= 7, "each reconnected by reselection: {card:?}");
    let dst = m.alloc(n * CHUNK, Placement::Any);
    let (_, back) = m.run(Srb::execute_scsi(LU0, &read10(0, (n * CHUNK) as u16 / BLOCK as u16)).with_data(
        &dst,
        0,
        (n * CHUNK) as u32,
        SrbFlags::DATA_IN,
    ));
    assert_eq!(back.srb_status, SrbStatus::SUCCESS);
    let mut got = vec![0u8; n * CHUNK];
    dst.read(0, &mut got).unwrap();
    assert!(got == data, "the queued writes landed byte-exact");
    m.assert_no_violations();
}

#[test]
fn queue_depth_one_keeps_one_untagged_command_per_lu() {
    let m = machine(1);
    let buf = m.alloc(16 * CHUNK, Placement::Any);
    let reads = (0..16)
        .map(|i| {
            let cdb = read10((i * CHUNK) as u32 / BLOCK, (CHUNK as u32 / BLOCK) as u16);
            tagged(Srb::execute_scsi(LU0, &cdb).with_data(&buf, i * CHUNK, CHUNK as u32, SrbFlags::DATA_IN))
        })
        .collect();
    for (_, s) in m.run_all(reads) {
        assert_eq!(s.srb_status, SrbStatus::SUCCESS);
        assert_eq!(s.queue_tag, port::SP_UNTAGGED, "tagged queuing is off: the port assigns no tag");
    }
    assert_eq!(peak_started(&m), 1);
    let card = m.card.counters();
    assert_eq!(
        (card.peak_disconnected, card.reselections),
        (1, 16),
        "each untagged read disconnects while its target reads, alone on its I_T_L nexus"
    );
    m.assert_no_violations();
    drop(m);
    let m = Machine::with(HbaConfig { queue_depth: 1, disconnect: false, ..HbaConfig::default() }, 4096);
    let buf = m.alloc(16 * CHUNK, Placement::Any);
    let reads = (0..16)
        .map(|i| {
            let cdb = read10((i * CHUNK) as u32 / BLOCK, (CHUNK as u32 / BLOCK) as u16);
            tagged(Srb::execute_scsi(LU0, &cdb).with_data(&buf, i * CHUNK, CHUNK as u32, SrbFlags::DATA_IN))
        })
        .collect();
    for (_, s) in m.run_all(reads) {
        assert_eq!(s.srb_status, SrbStatus::SUCCESS);
    }
    let card = m.card.counters();
    assert_eq!((card.peak_disconnected, card.reselections), (0, 0), "without the privilege nothing disconnects");
    m.assert_no_violations();
}

/// A tagged read whose data phase stalls (holding the bus), then a hung tagged read and a write that queue behind it.
/// Once the stalled read is aborted, the two are started with the disconnect privilege: the write reconnects and
/// completes, the hung read stays disconnected at its target.
struct Stuck {
    m: Machine,
    hung: (SrbId, crossbeam_channel::Receiver<Srb>),
}

fn one_hung_disconnected(timeout_secs: u32) -> Stuck {
    let m = machine(8);
    let (tx0, rx0) = crossbeam_channel::bounded(1);
    let stalled = stalled_read(&m, 0, SrbFlags::empty(), move |s| {
        let _ = tx0.send(s);
    });
    m.disk.faults().set_opcodes(Some(vec![0x28]));
    m.disk.faults().set_hang(1);
    let small = m.alloc(2 * CHUNK, Placement::Any);
    let mut hung_srb =
        tagged(Srb::execute_scsi(LU0, &read10(8, 8)).with_data(&small, 0, CHUNK as u32, SrbFlags::DATA_IN));
    hung_srb.time_out_value = timeout_secs;
    let (tx1, rx1) = crossbeam_channel::bounded(1);
    let hung = m.handle.submit_with(hung_srb, move |s| {
        let _ = tx1.send(s);
    });
    let (tx2, rx2) = crossbeam_channel::bounded(1);
    m.handle.submit_with(
        tagged(Srb::execute_scsi(LU0, &write10(16, 8)).with_data(&small, CHUNK, CHUNK as u32, SrbFlags::DATA_OUT)),
        move |s| {
            let _ = tx2.send(s);
        },
    );
    assert!(rx1.recv_timeout(Duration::from_millis(100)).is_err(), "the bus is held by the stalled read");
    drop(m.handle.abort(stalled, LU0));
    let victim = rx0.recv_timeout(Duration::from_secs(10)).expect("the stalled read completes");
    assert_eq!(victim.srb_status.status(), SrbStatus::ABORTED);
    let write = rx2.recv_timeout(Duration::from_secs(10)).expect("the write reconnects past the hung read");
    assert_eq!(write.srb_status, SrbStatus::SUCCESS);
    let card = m.card.counters();
    assert!(card.peak_disconnected >= 2, "both were queued at the target: {card:?}");
    Stuck { m, hung: (hung, rx1) }
}

/// After a disconnected command ended early: no map of it was ever made, and the next SRB runs normally (which needs
/// the channel and map registers back).
fn assert_clean_after(m: &Machine, id: SrbId) {
    assert_eq!(m.maps(id), 0, "a command that never reconnected was never mapped");
    assert_eq!(m.dma_started(id), 0, "HwDmaStarted was never called for it");
    let buf = m.alloc(CHUNK, Placement::Any);
    m.release_queue();
    // A reset leaves a unit attention for the first command (SAM-5 §5.14): at most one retry.
    for _ in 0..2 {
        let srb = Srb::execute_scsi(LU0, &read10(16, 8)).with_data(&buf, 0, CHUNK as u32, SrbFlags::DATA_IN);
        let (_, next) = m.run(tagged(srb));
        if next.srb_status == SrbStatus::SUCCESS {
            return;
        }
        assert!(next.srb_status.autosense_valid() && next.sense()[2] & 0x0F == 0x06, "only a unit attention: {next:?}");
        m.release_queue();
    }
    panic!("the SRB after the cancellation failed");
}

#[test]
fn abort_of_a_disconnected_command_sends_abort_tag() {
    let s = one_hung_disconnected(0);
    let aborts = s.m.card.counters().aborts;
    let (tx, rx) = crossbeam_channel::bounded(1);
    s.m.handle.submit_with(port::Srb::abort(LU0, s.hung.0), move |a| {
        let _ = tx.send(a);
    });
    let abort = rx.recv_timeout(Duration::from_secs(10)).expect("the abort SRB completes");
    assert_eq!(abort.srb_status, SrbStatus::SUCCESS);
    let victim = s.hung.1.recv_timeout(Duration::from_secs(10)).expect("the hung read completes");
    assert_eq!(victim.srb_status.status(), SrbStatus::ABORTED);
    assert_eq!(victim.data_transfer_length, 0, "nothing moved");
    assert_eq!(s.m.card.counters().aborts, aborts + 1, "the card sent ABORT TASK for the tag");
    assert_clean_after(&s.m, s.hung.0);
    s.m.assert_no_violations();
}

#[test]
fn a_disconnected_command_that_never_reconnects_times_out() {
    let s = one_hung_disconnected(1);
    let victim = s.hung.1.recv_timeout(Duration::from_secs(20)).expect("the timeout ends the hung read");
    assert_eq!(victim.srb_status.status(), SrbStatus::TIMEOUT);
    assert_clean_after(&s.m, s.hung.0);
    s.m.assert_no_violations();
}

#[test]
fn a_bus_reset_ends_disconnected_commands_with_bus_reset_status() {
    let s = one_hung_disconnected(0);
    let resets = s.m.card.counters().bus_resets;
    drop(s.m.handle.reset_bus(0));
    let victim = s.hung.1.recv_timeout(Duration::from_secs(10)).expect("the reset ends the hung read");
    assert_eq!(victim.srb_status.status(), SrbStatus::BUS_RESET);
    assert_eq!(s.m.card.counters().bus_resets, resets + 1);
    assert_clean_after(&s.m, s.hung.0);
    s.m.assert_no_violations();
}

#[test]
fn a_head_of_queue_srb_reconnects_before_the_simple_ones_queued_ahead_of_it() {
    let m = machine(8);
    let stalled = stalled_read(&m, 0, SrbFlags::empty(), |_| {});
    let small = m.alloc(3 * CHUNK, Placement::Any);
    let (tx, rx) = crossbeam_channel::unbounded();
    for (i, action) in
        [port::queue_action::SIMPLE_TAG, port::queue_action::SIMPLE_TAG, port::queue_action::HEAD_OF_QUEUE_TAG]
            .into_iter()
            .enumerate()
    {
        // INQUIRY: a command its target runs on the bus, so the three wait in its task set until reselection (a READ
        // would start its read at once, ahead of a HEAD OF QUEUE command that arrives after it).
        let cdb = [0x12, 0, 0, 0, 36, 0];
        let mut srb = tagged(Srb::execute_scsi(LU0, &cdb).with_data(&small, i * CHUNK, 36, SrbFlags::DATA_IN));
        srb.queue_action = action;
        let tx = tx.clone();
        m.handle.submit_with(srb, move |s| {
            let _ = tx.send((i, s.srb_status));
        });
    }
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err(), "the stalled read holds the bus");
    drop(m.handle.abort(stalled, LU0));
    let order: Vec<usize> = (0..3)
        .map(|_| {
            let (i, status) = rx.recv_timeout(Duration::from_secs(10)).expect("completes");
            assert_eq!(status, SrbStatus::SUCCESS);
            i
        })
        .collect();
    assert_eq!(order, [2, 0, 1], "HEAD OF QUEUE first, then the SIMPLE ones in the order they were queued");
    m.assert_no_violations();
}

#[test]
fn tagged_pass_through_srbs_walk_their_sub_ranges_after_each_reselection() {
    let m = machine(8);
    const LEN: usize = 512 << 10;
    let n = 4;
    let data = pattern(n * LEN, 77);
    let src = m.alloc(n * LEN, Placement::Scattered { seed: 4 });
    src.write(0, &data).unwrap();
    let request = |i: usize, direction: port::DataDirection, buf: &hal::Buffer| port::PassThrough {
        address: LU0,
        cdb: if direction == port::DataDirection::Out {
            write10((i * LEN) as u32 / BLOCK, (LEN as u32 / BLOCK) as u16)
        } else {
            read10((i * LEN) as u32 / BLOCK, (LEN as u32 / BLOCK) as u16)
        },
        direction,
        buffer: Some(buf.clone()),
        offset: i * LEN,
        length: LEN as u32,
        timeout_secs: 30,
        tagged: true,
    };
    let writes =
        (0..n).map(|i| m.handle.pass_through_srb(&request(i, port::DataDirection::Out, &src)).unwrap()).collect();
    let sub_ranges = LEN / (64 << 10);
    for (id, s) in m.run_all(writes) {
        assert_eq!(s.srb_status, SrbStatus::SUCCESS);
        assert_eq!(m.maps(id), sub_ranges, "one map per 64 KiB sub-range");
        assert_eq!(m.flushes(id), sub_ranges, "each flushed before the next");
    }
    let dst = m.alloc(n * LEN, Placement::Above16M);
    let reads =
        (0..n).map(|i| m.handle.pass_through_srb(&request(i, port::DataDirection::In, &dst)).unwrap()).collect();
    for (_, s) in m.run_all(reads) {
        assert_eq!(s.srb_status, SrbStatus::SUCCESS);
    }
    let mut back = vec![0u8; n * LEN];
    dst.read(0, &mut back).unwrap();
    assert!(back == data, "tagged pass-through data differs");
    assert!(m.card.counters().reselections >= 2, "{:?}", m.card.counters());
    m.assert_no_violations();
}
