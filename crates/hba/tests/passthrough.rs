//! Pass-through SRBs larger than `MaximumTransferLength`: one SRB, several subordinate DMA operations, each flushed
//! before the next is mapped, byte-exact in both directions.

mod common;

use common::machine::{Machine, LU0};
use common::*;
use hal::Placement;
use hba::HbaConfig;
use port::{DataDirection, PassThrough, SrbStatus};

const MIB4: usize = 4 << 20;

fn pass_through(
    m: &Machine,
    cdb: Vec<u8>,
    direction: DataDirection,
    buf: &hal::Buffer,
    len: usize,
) -> (port::SrbId, port::Srb) {
    let req = PassThrough {
        address: LU0,
        cdb,
        direction,
        buffer: Some(buf.clone()),
        offset: 0,
        length: len as u32,
        timeout_secs: 30,
        tagged: false,
    };
    let srb = m.handle.pass_through_srb(&req).expect("the adapter accepts pass-through");
    m.run(srb)
}

/// Write `len` bytes at LBA 0 and read them back, each as one pass-through SRB; checks the sub-transfer count.
fn round_trip(cfg: HbaConfig, len: usize, placement: Placement, seed: u64) {
    let max = (cfg.max_transfer as usize).min(if cfg.dma_channel >= 5 { 128 << 10 } else { 64 << 10 });
    let m = Machine::with(cfg, 16384);
    let expected_ops = len.div_ceil(max);
    let blocks = (len / BLOCK as usize) as u32;
    let out = m.alloc(len, placement.clone());
    let data = pattern(len, seed);
    out.write(0, &data).expect("fill");
    let (wid, w) = pass_through(&m, write16(0, blocks), DataDirection::Out, &out, len);
    assert_eq!(w.srb_status, SrbStatus::SUCCESS, "{w:?}");
    let back = m.alloc(len, placement);
    let (rid, r) = pass_through(&m, read16(0, blocks), DataDirection::In, &back, len);
    assert_eq!(r.srb_status, SrbStatus::SUCCESS, "{r:?}");
    assert_eq!(r.data_transfer_length as usize, len);
    let mut got = vec![0u8; len];
    back.read(0, &mut got).expect("read back");
    assert!(got == data, "pass-through data differs");
    for id in [wid, rid] {
        assert_eq!(m.maps(id), expected_ops, "one map per sub-range of at most MaximumTransferLength");
        assert_eq!(m.flushes(id), expected_ops, "one flush after each sub-transfer");
        assert_eq!(m.dma_started(id), expected_ops);
    }
    // Each map is flushed before the next map and the last flush precedes completion (seed rule 7).
    for id in [wid, rid] {
        let mut outstanding = false;
        for e in m.trace.events().iter().filter(|e| e.srb == Some(id)) {
            match e.kind {
                port::EventKind::Mapped { .. } => {
                    assert!(!outstanding, "a map before the previous one was flushed");
                    outstanding = true;
                }
                port::EventKind::Flushed { .. } => outstanding = false,
                port::EventKind::SrbCompleted { .. } => assert!(!outstanding, "completed before the last flush"),
                _ => {}
            }
        }
    }
    let stats = m.handle.stats();
    assert_eq!(stats.dma_ops as usize, 2 * expected_ops);
    assert_eq!(stats.flushes as usize, 2 * expected_ops);
    assert_eq!(stats.dma_bytes as usize, 2 * len);
    m.assert_no_violations();
}

#[test]
fn four_mib_pass_through_on_channel1() {
    round_trip(HbaConfig { dma_channel: 1, ..HbaConfig::default() }, MIB4, Placement::Scattered { seed: 11 }, 21);
}

#[test]
fn four_mib_pass_through_on_channel5() {
    round_trip(HbaConfig { dma_channel: 5, ..HbaConfig::default() }, MIB4, Placement::Scattered { seed: 12 }, 22);
}

#[test]
fn four_mib_pass_through_on_channel5_above_16m() {
    round_trip(HbaConfig { dma_channel: 5, ..HbaConfig::default() }, MIB4, Placement::Above16M, 23);
}

#[test]
fn pass_through_with_a_partial_last_sub_range() {
    // 60 KiB sub-ranges do not divide 1 MiB + 512: the last one is short.
    let cfg = HbaConfig { dma_channel: 1, max_transfer: 60 << 10, ..HbaConfig::default() };
    round_trip(cfg, (1 << 20) + 512, Placement::Any, 24);
}

#[test]
fn pass_through_is_refused_without_application_dedicated_support() {
    let m = Machine::with(HbaConfig { application_dedicated: false, ..HbaConfig::default() }, 64);
    assert!(!m.handle.capabilities().application_dedicated);
    let buf = m.alloc(4096, Placement::Any);
    let req = PassThrough {
        address: LU0,
        cdb: read10(0, 8),
        direction: DataDirection::In,
        buffer: Some(buf),
        offset: 0,
        length: 4096,
        timeout_secs: 5,
        tagged: false,
    };
    assert!(matches!(m.handle.pass_through_srb(&req), Err(port::PortError::PassThroughNotSupported(_))));
}

#[test]
fn pass_through_read_longer_than_the_data_is_a_short_transfer() {
    // READ(16) of 2 blocks into a 200 KiB buffer: the target ends after 1 KiB, in the first sub-range.
    let m = Machine::new(5, 64);
    let buf = m.alloc(200 << 10, Placement::Any);
    let (id, s) = pass_through(&m, read16(0, 2), DataDirection::In, &buf, 200 << 10);
    assert_eq!(s.srb_status, SrbStatus::DATA_OVERRUN, "{s:?}");
    assert_eq!(s.data_transfer_length, 1024);
    assert_eq!(m.maps(id), 1);
    assert_eq!(m.flushes(id), 1);
    m.assert_no_violations();
}

#[test]
fn pass_through_read_shorter_than_the_data_is_an_overrun() {
    // READ(16) of 256 blocks (128 KiB) into a 96 KiB buffer: the target has more when the buffer is used up.
    let m = Machine::new(5, 1024);
    let buf = m.alloc(96 << 10, Placement::Any);
    let (id, s) = pass_through(&m, read16(0, 256), DataDirection::In, &buf, 96 << 10);
    assert_eq!(s.srb_status.status(), SrbStatus::DATA_OVERRUN, "{s:?}");
    assert_eq!(s.data_transfer_length, 96 << 10);
    assert_eq!(m.maps(id), 2);
    assert_eq!(m.flushes(id), 2);
    m.assert_no_violations();
}

#[test]
fn four_mib_pass_through_in_128k_sub_ranges_on_channel5() {
    let cfg = HbaConfig { dma_channel: 5, max_transfer: 128 << 10, ..HbaConfig::default() };
    round_trip(cfg, MIB4, Placement::Scattered { seed: 13 }, 25);
}

#[test]
fn sub_ranges_never_exceed_one_8237_programming() {
    // 1 MiB asked for: channel 1 moves at most 64 KiB per programming, channel 5 128 KiB.
    for (channel, limit) in [(1u8, 64u32 << 10), (5, 128 << 10)] {
        let m = Machine::with(HbaConfig { dma_channel: channel, max_transfer: 1 << 20, ..HbaConfig::default() }, 16384);
        assert_eq!(m.handle.capabilities().maximum_transfer_length, limit);
        let buf = m.alloc(MIB4, Placement::Any);
        let (id, s) = pass_through(&m, read16(0, (MIB4 / 512) as u32), DataDirection::In, &buf, MIB4);
        assert_eq!(s.srb_status, SrbStatus::SUCCESS, "{s:?}");
        assert_eq!(m.maps(id), MIB4 / limit as usize);
        m.assert_no_violations();
    }
}
