//! The trace: the events of the data path in order, and its two exports (Chrome trace-event JSON, SVG timeline).

mod common;

use common::miniport::Bug;
use common::{pattern, Rig, LU0};
use hal::Placement;
use port::{EventKind, SrbStatus, SvgOptions, VerifierMode};

fn kinds_of(rig: &Rig, id: port::SrbId) -> Vec<EventKind> {
    rig.trace.events().into_iter().filter(|e| e.srb == Some(id)).map(|e| e.kind).collect()
}

fn position(kinds: &[EventKind], f: impl Fn(&EventKind) -> bool) -> usize {
    kinds.iter().position(f).expect("the event is in the trace")
}

#[test]
fn a_bounced_read_records_each_step_in_order() {
    let rig = Rig::new(Bug::None, VerifierMode::Strict);
    let len = 8 << 10;
    let buf = rig.alloc(len, Placement::Scattered { seed: 4 });
    let (id, rx) = rig.submit(common::read_srb(LU0, &buf, 0, len));
    let srb = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("completes");
    assert_eq!(srb.srb_status.status(), SrbStatus::SUCCESS);
    let k = kinds_of(&rig, id);
    let queued = position(&k, |e| matches!(e, EventKind::SrbQueued { opcode: 0x28, .. }));
    let started = position(&k, |e| matches!(e, EventKind::SrbStarted));
    let programmed = position(&k, |e| matches!(e, EventKind::ChannelProgrammed { to_device: false, .. }));
    let mapped = position(&k, |e| matches!(e, EventKind::Mapped { bounced: true, .. }));
    let dma_started = position(&k, |e| matches!(e, EventKind::DmaStarted));
    let tc = position(&k, |e| matches!(e, EventKind::TerminalCount));
    let masked = position(&k, |e| matches!(e, EventKind::ChannelMasked));
    let bounce_out = position(&k, |e| matches!(e, EventKind::BounceOut { bytes } if *bytes == len as u64));
    let flushed = position(&k, |e| matches!(e, EventKind::Flushed { moved } if *moved == len as u64));
    let completed = position(&k, |e| matches!(e, EventKind::SrbCompleted { .. }));
    let order = [queued, started, programmed, mapped, dma_started, tc, masked, bounce_out, flushed, completed];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "events out of order: {k:?}");
    assert!(!k.iter().any(|e| matches!(e, EventKind::BounceIn { .. })), "a read copies nothing in");
    rig.shutdown();
}

#[test]
fn a_bounced_write_copies_in_at_map_time() {
    let rig = Rig::new(Bug::None, VerifierMode::Strict);
    let len = 4096;
    let buf = rig.alloc(len, Placement::Above16M);
    buf.write(0, &pattern(len, 1)).expect("fill");
    let (id, rx) = rig.submit(common::write_srb(LU0, &buf, 0, len));
    rx.recv_timeout(std::time::Duration::from_secs(20)).expect("completes");
    let k = kinds_of(&rig, id);
    let bounce_in = position(&k, |e| matches!(e, EventKind::BounceIn { bytes: 4096 }));
    let programmed = position(&k, |e| matches!(e, EventKind::ChannelProgrammed { to_device: true, .. }));
    assert!(bounce_in < programmed, "the data is in the map registers before the channel runs: {k:?}");
    assert!(!k.iter().any(|e| matches!(e, EventKind::BounceOut { .. })));
    rig.shutdown();
}

#[test]
fn chrome_json_and_svg_show_lanes_flushes_and_violations() {
    let rig = Rig::new(Bug::CompleteWithoutFlush, VerifierMode::Strict);
    let buf = rig.alloc(32 << 10, Placement::Scattered { seed: 2 });
    assert_eq!(rig.read(&buf, 0, 32 << 10).srb_status.status(), SrbStatus::INTERNAL_ERROR);
    assert_eq!(rig.read(&buf, 0, 32 << 10).srb_status.status(), SrbStatus::SUCCESS);

    let timeline = rig.trace.timeline();
    let names: Vec<String> = timeline.lanes.iter().map(|l| l.name()).collect();
    assert_eq!(names, vec!["DMA channel 5", "test0 LU 0:0:0", "test0 SRB #1", "test0 SRB #2"]);

    let doc = rig.trace.to_chrome_json();
    let events = doc["traceEvents"].as_array().expect("traceEvents is an array");
    let dma_spans = events.iter().filter(|e| e["ph"] == "X" && e["cat"] == "dma,bounced").count();
    // The first SRB's last segment was never flushed: it shows as a span that ends unflushed or not at all.
    assert!(dma_spans >= 3, "two 16 KiB segments per read, bounced: {dma_spans}");
    let violation = events.iter().find(|e| e["cat"] == "violation").expect("the violation is an instant event");
    assert!(violation["name"].as_str().is_some_and(|n| n.starts_with("complete-without-flush")));
    assert_eq!(violation["ph"], "i");
    assert!(events.iter().any(|e| e["cat"] == "flush" && e["ph"] == "i"));
    for e in events.iter().filter(|e| e["ph"] == "X") {
        assert!(e["ts"].as_f64().is_some() && e["dur"].as_f64().is_some_and(|d| d >= 0.0), "{e}");
    }
    let text = serde_json::to_string(&doc).expect("serializes");
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());

    let svg = rig.trace.to_svg(&SvgOptions::default());
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("DMA channel 5") && svg.contains("test0 SRB #2"));
    assert!(svg.contains(">complete-without-flush</text>"), "the violation is labelled");
    assert!(svg.contains("#f28e2b"), "bounced transfers are drawn");
    rig.shutdown();
}
