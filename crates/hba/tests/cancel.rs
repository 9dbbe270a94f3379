//! Every way a transfer is cancelled (issue #4): abort, bus reset asked for by the port, bus reset seen by the card,
//! timeout of a command that never completes, and a flush while the data phase is stalled mid-transfer. Each checks
//! the SRB status, the bytes moved, whether HwDmaStarted ran, and that the next SRB runs normally, on both cards (the
//! reference card with its Rust miniport, the ESP with its C miniport).

mod common;

use common::machine::{Card, Machine, LU0};
use common::*;
use hal::Placement;
use port::{EventKind, Srb, SrbFlags, SrbId, SrbStatus};
use std::time::{Duration, Instant};

const LEN: usize = 64 << 10;
const STALL: u64 = 8192;

/// Fill the disk's first 64 KiB with a known pattern and return it.
fn seed_disk(m: &Machine) -> Vec<u8> {
    let data = pattern(LEN, 77);
    let buf = m.alloc(LEN, Placement::Any);
    buf.write(0, &data).expect("fill");
    let (_, s) = m.run(Srb::execute_scsi(LU0, &write10(0, 128)).with_data(&buf, 0, LEN as u32, SrbFlags::DATA_OUT));
    assert_eq!(s.srb_status, SrbStatus::SUCCESS);
    data
}

/// Submit a 64 KiB READ that stalls after `STALL` bytes; returns its id, the buffer and the completion receiver.
fn start_stalled_read(
    m: &Machine,
    placement: Placement,
    timeout_secs: u32,
) -> (SrbId, hal::Buffer, crossbeam_channel::Receiver<Srb>) {
    m.disk.faults().set_dma_stall_after(Some(STALL));
    let buf = m.alloc(LEN, placement);
    buf.write(0, &vec![0xEE; LEN]).expect("poison");
    let mut srb = Srb::execute_scsi(LU0, &read10(0, 128)).with_data(&buf, 0, LEN as u32, SrbFlags::DATA_IN);
    srb.time_out_value = timeout_secs;
    let before = m.handle.stats().dma_bytes;
    let (tx, rx) = crossbeam_channel::bounded(1);
    let id = m.handle.submit_with(srb, move |s| {
        let _ = tx.send(s);
    });
    let until = Instant::now() + Duration::from_secs(10);
    while m.handle.stats().dma_bytes - before < STALL {
        assert!(Instant::now() < until, "the stalled transfer never moved its first bytes");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(rx.try_recv().is_err(), "a stalled transfer does not complete by itself");
    assert_eq!(m.handle.stats().dma_bytes - before, STALL, "DREQ stays low after the stall point");
    (id, buf, rx)
}

/// After a cancellation: the stall is cleared, the queue released, and a full READ runs and returns the disk's data.
fn next_srb_succeeds(m: &Machine, expect: &[u8]) {
    m.disk.faults().set_dma_stall_after(None);
    m.release_queue();
    let buf = m.alloc(LEN, Placement::Scattered { seed: 3 });
    let mut last = None;
    // A reset leaves a unit attention for the first command (SAM-5 §5.14): at most one retry.
    for _ in 0..2 {
        let (id, s) = m.run(Srb::execute_scsi(LU0, &read10(0, 128)).with_data(&buf, 0, LEN as u32, SrbFlags::DATA_IN));
        if s.srb_status == SrbStatus::SUCCESS {
            let mut got = vec![0u8; LEN];
            buf.read(0, &mut got).expect("read");
            assert!(got == expect, "data after the cancellation differs");
            assert_eq!(m.maps(id), 1);
            assert_eq!(m.flushes(id), 1);
            return;
        }
        assert!(s.srb_status.autosense_valid() && s.sense()[2] & 0x0F == 0x06, "only a unit attention may fail: {s:?}");
        m.release_queue();
        last = Some(s);
    }
    panic!("the SRB after the cancellation failed: {last:?}");
}

fn cancelled_after_stall(m: &Machine, id: SrbId, buf: &hal::Buffer, expect: &[u8]) {
    assert_eq!(m.dma_started(id), 1, "the data phase had started");
    assert_eq!(m.flushes(id), 1, "the mapped transfer is flushed once");
    let mut got = vec![0u8; LEN];
    buf.read(0, &mut got).expect("read");
    assert!(got[..STALL as usize] == expect[..STALL as usize], "the bytes moved before the stall reached the buffer");
    assert!(got[STALL as usize..].iter().all(|&b| b == 0xEE), "no byte past what moved is written");
    let freed = m.trace.events().iter().any(|e| matches!(e.kind, EventKind::ChannelFreed));
    assert!(freed, "the channel and its map registers are released");
}

#[test]
fn abort_flushes_a_stalled_transfer_mid_way() {
    for card in Card::BOTH {
        let m = Machine::card(card, 5, 256);
        let data = seed_disk(&m);
        let (id, buf, rx) = start_stalled_read(&m, Placement::Contiguous { below_16m: true, align: 128 << 10 }, 30);
        let (atx, arx) = crossbeam_channel::bounded(1);
        m.handle.submit_with(port::Srb::abort(LU0, id), move |s| {
            let _ = atx.send(s);
        });
        let abort = arx.recv_timeout(Duration::from_secs(10)).expect("abort completes");
        assert_eq!(abort.srb_status, SrbStatus::SUCCESS);
        let victim = rx.recv_timeout(Duration::from_secs(10)).expect("victim completes");
        assert_eq!(victim.srb_status.status(), SrbStatus::ABORTED);
        assert_eq!(victim.data_transfer_length as u64, STALL, "bytes moved, from the card's transfer counter");
        cancelled_after_stall(&m, id, &buf, &data);
        next_srb_succeeds(&m, &data);
        m.assert_no_violations();
    }
}

#[test]
fn abort_flushes_a_stalled_bounced_transfer() {
    for card in Card::BOTH {
        let m = Machine::card(card, 1, 256);
        let data = seed_disk(&m);
        let (id, buf, rx) = start_stalled_read(&m, Placement::Above16M, 30);
        drop(m.handle.abort(id, LU0));
        let victim = rx.recv_timeout(Duration::from_secs(10)).expect("victim completes");
        assert_eq!(victim.srb_status.status(), SrbStatus::ABORTED);
        assert_eq!(victim.data_transfer_length as u64, STALL);
        cancelled_after_stall(&m, id, &buf, &data);
        next_srb_succeeds(&m, &data);
        m.assert_no_violations();
    }
}

#[test]
fn timeout_rescues_a_stalled_transfer() {
    for card in Card::BOTH {
        let m = Machine::card(card, 5, 256);
        let data = seed_disk(&m);
        let (id, buf, rx) = start_stalled_read(&m, Placement::Contiguous { below_16m: true, align: 128 << 10 }, 1);
        let victim = rx.recv_timeout(Duration::from_secs(15)).expect("the port times the SRB out");
        assert_eq!(victim.srb_status.status(), SrbStatus::TIMEOUT, "{victim:?}");
        assert_eq!(m.handle.stats().timeouts, 1);
        cancelled_after_stall(&m, id, &buf, &data);
        next_srb_succeeds(&m, &data);
        m.assert_no_violations();
    }
}

#[test]
fn timeout_rescues_a_command_that_never_completes() {
    for card in Card::BOTH {
        let m = Machine::card(card, 5, 256);
        let data = seed_disk(&m);
        m.disk.faults().set_hang(1);
        let buf = m.alloc(LEN, Placement::Any);
        let mut srb = Srb::execute_scsi(LU0, &read10(0, 128)).with_data(&buf, 0, LEN as u32, SrbFlags::DATA_IN);
        srb.time_out_value = 1;
        let before = m.handle.stats().dma_bytes;
        let (id, s) = m.run(srb);
        assert_eq!(s.srb_status.status(), SrbStatus::TIMEOUT, "{s:?}");
        assert_eq!(m.handle.stats().dma_bytes, before, "no byte moved");
        // The reference miniport maps right after START, before the target answers (its HwDmaStarted finds the card
        // outside a data phase and leaves it idle), and flushes the map when the port times the SRB out; the ESP
        // miniport maps only once the target is in a data phase, which it never reaches.
        let maps = usize::from(card == Card::Reference);
        assert_eq!(m.maps(id), maps);
        assert_eq!(m.flushes(id), maps);
        assert_eq!(m.dma_started(id), maps);
        next_srb_succeeds(&m, &data);
        m.assert_no_violations();
    }
}

#[test]
fn bus_reset_request_completes_the_stalled_srb_with_bus_reset() {
    for card in Card::BOTH {
        let m = Machine::card(card, 5, 256);
        let data = seed_disk(&m);
        let (id, buf, rx) = start_stalled_read(&m, Placement::Contiguous { below_16m: true, align: 128 << 10 }, 30);
        let (rtx, rrx) = crossbeam_channel::bounded(1);
        m.handle.submit_with(port::Srb::reset_bus(0), move |s| {
            let _ = rtx.send(s);
        });
        let reset = rrx.recv_timeout(Duration::from_secs(10)).expect("reset completes");
        assert_eq!(reset.srb_status, SrbStatus::SUCCESS);
        let victim = rx.recv_timeout(Duration::from_secs(10)).expect("victim completes");
        assert_eq!(victim.srb_status.status(), SrbStatus::BUS_RESET);
        assert_eq!(m.handle.stats().bus_resets, 1);
        cancelled_after_stall(&m, id, &buf, &data);
        next_srb_succeeds(&m, &data);
        m.assert_no_violations();
    }
}

#[test]
fn bus_reset_seen_by_the_card_completes_the_srb_and_cancels_its_map() {
    for card in Card::BOTH {
        let m = Machine::card(card, 5, 256);
        let data = seed_disk(&m);
        m.disk.faults().request_bus_reset();
        let buf = m.alloc(LEN, Placement::Any);
        let (id, s) = m.run(Srb::execute_scsi(LU0, &read10(0, 128)).with_data(&buf, 0, LEN as u32, SrbFlags::DATA_IN));
        assert_eq!(s.srb_status.status(), SrbStatus::BUS_RESET, "{s:?}");
        assert_eq!(m.dma_started(id), 0, "the map was cancelled before HwDmaStarted");
        // The reference miniport had mapped before the reset interrupted; the ESP's selection met the reset, so its
        // miniport never mapped.
        let maps = usize::from(card == Card::Reference);
        assert_eq!(m.count(id, |k| matches!(k, EventKind::MapCancelled)), maps);
        assert!(
            m.trace.events().iter().any(|e| matches!(e.kind, EventKind::BusReset { .. })),
            "ResetDetected reached the port"
        );
        next_srb_succeeds(&m, &data);
        m.assert_no_violations();
    }
}
