//! End to end through the whole stack: class driver → port → miniport → HBA → 8237 → disk, with a shadow copy of the
//! disk to compare against. The data-path tests run on both cards: the reference card with its Rust miniport and the
//! ESP card with its C miniport.

use hal::{Buffer, Placement};
use rand::{Rng, SeedableRng};
use scsiport::config::{Config, HbaKind};
use scsiport::machine::Machine;
use scsiport::size::ByteSize;

const BOTH: [HbaKind; 2] = [HbaKind::Reference, HbaKind::Esp];

/// One adapter on `channel` with a RAM disk of `disk` bytes, no front ends.
fn config(channel: u8, disk: u64) -> Config {
    let mut cfg = Config::in_process(ByteSize(disk), ByteSize(128 << 20));
    cfg.adapters[0].dma_channel = channel;
    cfg
}

fn machine(channel: u8, disk: u64) -> Machine {
    card(HbaKind::Reference, channel, disk)
}

/// The same with the adapter's card chosen.
fn card(kind: HbaKind, channel: u8, disk: u64) -> Machine {
    let mut cfg = config(channel, disk);
    cfg.adapters[0].kind = kind;
    Machine::build(&cfg).expect("machine builds")
}

fn fill_random(buf: &Buffer, len: usize, rng: &mut rand::rngs::StdRng) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    buf.write(0, &v).unwrap();
    v
}

/// Expected class-driver pieces for a request at a page-aligned buffer: MaximumTransferLength each.
fn pieces(len: usize, max: usize) -> u64 {
    len.div_ceil(max) as u64
}

#[test]
fn random_writes_then_reads_with_buffers_above_16m_are_byte_exact() {
    for kind in BOTH {
        const DISK: usize = 64 << 20;
        let m = card(kind, 5, DISK as u64);
        let disk = m.open_first_disk().unwrap();
        let bs = disk.block_size() as usize;
        let max = disk.limits().maximum_transfer_length as usize;
        let mut shadow = vec![0u8; DISK];
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED);
        let before = disk.adapter().stats();
        let mut expected_ops = 0u64;
        let mut written = 0usize;
        // Random extents until the whole disk has been written over at least once on average.
        while written < DISK {
            let blocks = rng.gen_range(1..=(1 << 20) / bs);
            let len = blocks * bs;
            let lba = rng.gen_range(0..=(DISK - len) / bs);
            let buf = m.memory().alloc(len, Placement::Above16M).unwrap();
            let data = fill_random(&buf, len, &mut rng);
            disk.write(lba as u64, &buf, 0, len, false).unwrap();
            shadow[lba * bs..lba * bs + len].copy_from_slice(&data);
            expected_ops += pieces(len, max);
            written += len;
        }
        // Read everything back in 1 MiB requests, again from above 16 MiB.
        let chunk = 1 << 20;
        let buf = m.memory().alloc(chunk, Placement::Above16M).unwrap();
        let mut got = vec![0u8; chunk];
        for off in (0..DISK).step_by(chunk) {
            disk.read((off / bs) as u64, &buf, 0, chunk).unwrap();
            buf.read(0, &mut got).unwrap();
            assert!(got == shadow[off..off + chunk], "data differs in the MiB at {off:#x}");
            expected_ops += pieces(chunk, max);
        }
        let after = disk.adapter().stats();
        let ops = after.dma_ops - before.dma_ops;
        assert_eq!(ops, expected_ops, "one DMA operation per class-driver SRB");
        assert_eq!(after.flushes - before.flushes, ops, "every map flushed once");
        // Memory above 16 MiB is out of the controller's reach: every byte bounced.
        assert_eq!(after.bounced_bytes - before.bounced_bytes, (written + DISK) as u64);
        assert!(disk.adapter().violations().is_empty(), "{:?}", disk.adapter().violations());
        m.shutdown();
    }
}

#[test]
fn contiguous_buffers_below_16m_do_not_bounce_on_either_controller() {
    for kind in BOTH {
        for channel in [1u8, 5] {
            let m = card(kind, channel, 8 << 20);
            let disk = m.open_first_disk().unwrap();
            let len = 1 << 20;
            let buf = m.memory().alloc(len, Placement::Contiguous { below_16m: true, align: 128 << 10 }).unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(channel as u64);
            let data = fill_random(&buf, len, &mut rng);
            let before = disk.adapter().stats();
            disk.write(100, &buf, 0, len, false).unwrap();
            buf.write(0, &vec![0u8; len]).unwrap();
            disk.read(100, &buf, 0, len).unwrap();
            let mut got = vec![0u8; len];
            buf.read(0, &mut got).unwrap();
            assert!(got == data, "{kind:?} channel {channel}: data differs");
            let after = disk.adapter().stats();
            assert_eq!(after.bounced_bytes - before.bounced_bytes, 0, "channel {channel}: nothing needs a bounce");
            assert_eq!(after.dma_ops - before.dma_ops, 2 * (len as u64 / (64 << 10)), "channel {channel}");
            m.shutdown();
        }
    }
}

#[test]
fn scattered_pages_bounce_and_stay_exact_on_the_8_bit_channel() {
    for kind in BOTH {
        let m = card(kind, 1, 8 << 20);
        let disk = m.open_first_disk().unwrap();
        let len = 256 << 10;
        // Starting 512 bytes into a page: every piece spans one page more than it holds.
        let buf = m.memory().alloc_at(len, 512, Placement::Scattered { seed: 7 }).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let data = fill_random(&buf, len, &mut rng);
        disk.write(7, &buf, 0, len, true).unwrap();
        let back = m.memory().alloc(len, Placement::Scattered { seed: 8 }).unwrap();
        disk.read(7, &back, 0, len).unwrap();
        let mut got = vec![0u8; len];
        back.read(0, &mut got).unwrap();
        assert!(got == data);
        assert!(disk.adapter().stats().bounced_bytes >= 2 * len as u64);
        assert!(disk.adapter().violations().is_empty());
        m.shutdown();
    }
}

#[test]
fn requests_outside_the_disk_are_refused_before_any_srb() {
    let m = machine(5, 1 << 20);
    let disk = m.open_first_disk().unwrap();
    let buf = m.memory().alloc(4096, Placement::Any).unwrap();
    let before = disk.adapter().stats();
    let e = disk.read(disk.blocks() - 1, &buf, 0, 4096).unwrap_err();
    assert!(matches!(e, class::ClassError::OutOfRange { .. }), "{e}");
    let e = disk.read(u64::MAX - 2, &buf, 0, 4096).unwrap_err();
    assert!(matches!(e, class::ClassError::OutOfRange { .. }), "{e}");
    assert_eq!(disk.adapter().stats().srbs_submitted, before.srbs_submitted);
    m.shutdown();
}

/// The most SRBs the port had handed to the miniport at once.
fn peak_started(trace: &port::Trace) -> usize {
    let (mut now, mut peak) = (0usize, 0usize);
    for e in trace.events() {
        match e.kind {
            port::EventKind::SrbStarted => {
                now += 1;
                peak = peak.max(now);
            }
            port::EventKind::SrbCompleted { .. } => now = now.saturating_sub(1),
            _ => {}
        }
    }
    peak
}

#[test]
fn class_requests_go_tagged_when_adapter_and_disk_both_queue() {
    for (depth, tagged) in [(16u8, true), (1, false)] {
        let mut cfg = config(5, 16 << 20);
        cfg.adapters[0].queue_depth = depth;
        let trace = port::Trace::new(100_000);
        let m = Machine::build_with_trace(&cfg, Some(trace.clone())).expect("machine builds");
        let disk = m.open_first_disk().unwrap();
        assert_eq!(disk.tagged(), tagged, "queue depth {depth}: the disk reports CmdQue");
        let len = 2 << 20;
        let buf = m.memory().alloc(len, Placement::Any).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(depth as u64);
        let data = fill_random(&buf, len, &mut rng);
        disk.write(0, &buf, 0, len, false).unwrap();
        let back = m.memory().alloc(len, Placement::Any).unwrap();
        disk.read(0, &back, 0, len).unwrap();
        let mut got = vec![0u8; len];
        back.read(0, &mut got).unwrap();
        assert!(got == data, "queue depth {depth}: data differs");
        let peak = peak_started(&trace);
        if tagged {
            assert!((2..=16).contains(&peak), "tagged SRBs of one request overlap up to the depth: peak {peak}");
        } else {
            assert_eq!(peak, 1, "untagged SRBs run one at a time per LU");
        }
        assert!(disk.adapter().violations().is_empty());
        m.shutdown();
    }
}

#[test]
fn on_an_eisa_machine_buffers_above_16m_move_without_bounce() {
    let mut cfg = config(5, 8 << 20);
    cfg.machine.bus = scsiport::config::BusKind::Eisa;
    let m = Machine::build(&cfg).expect("machine builds");
    let disk = m.open_first_disk().unwrap();
    let len = 256 << 10;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xE15A);
    let out = m.memory().alloc(len, Placement::Above16M).unwrap();
    let data = fill_random(&out, len, &mut rng);
    let back = m.memory().alloc(len, Placement::Above16M).unwrap();
    // Only the round trip counts: the class driver's start-up commands (INQUIRY pages of odd lengths on a word
    // channel) bounce as they must on any bus.
    let before = m.hal().stats();
    disk.write(8, &out, 0, len, false).unwrap();
    disk.read(8, &back, 0, len).unwrap();
    let mut got = vec![0u8; len];
    back.read(0, &mut got).unwrap();
    assert!(got == data, "data differs after an EISA round trip");
    let s = m.hal().stats();
    assert!(s.maps - before.maps >= 2 * pieces(len, disk.limits().maximum_transfer_length as usize));
    assert_eq!(
        (s.bounced_maps - before.bounced_maps, s.bounced_bytes - before.bounced_bytes),
        (0, 0),
        "{before:?} -> {s:?}"
    );
}
