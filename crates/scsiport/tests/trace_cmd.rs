//! `scsiport trace` writes a Chrome trace-event document and an SVG timeline of the workload it ran.

use std::process::Command;

#[test]
fn trace_writes_chrome_json_and_an_svg_timeline() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = dir.path().join("trace.json");
    let svg = dir.path().join("timeline.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_scsiport"))
        .args(["trace", "--passthrough", "--size", "256KiB", "--block", "128KiB", "--json"])
        .arg("--out")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .expect("scsiport runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON summary");
    assert_eq!(summary["verified"], true);
    assert_eq!(summary["violations"], 0);
    assert_eq!(summary["srbs"], 4, "two 128 KiB pass-through writes and two reads");
    assert_eq!(summary["dma_ops"], 8, "each moved in two DMA operations (64 KiB map limit)");

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("trace.json")).expect("valid JSON");
    let events = doc["traceEvents"].as_array().expect("traceEvents");
    let lanes: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .filter_map(|e| e["args"]["name"].as_str())
        .collect();
    assert!(lanes.contains(&"DMA channel 5") && lanes.contains(&"scsi0 LU 0:0:0"), "{lanes:?}");
    assert!(lanes.iter().filter(|l| l.contains("SRB #")).count() >= 4, "{lanes:?}");
    let dma = events.iter().filter(|e| e["ph"] == "X" && e["cat"].as_str().is_some_and(|c| c.starts_with("dma")));
    assert!(dma.count() >= 8, "each DMA operation is a span on the channel's lane");
    let flushes = events.iter().filter(|e| e["ph"] == "i" && e["cat"] == "flush").count();
    assert!(flushes >= 16, "each flush is marked on the channel and on the SRB: {flushes}");

    let picture = std::fs::read_to_string(&svg).expect("timeline.svg");
    assert!(picture.starts_with("<svg") && picture.contains("DMA channel 5") && picture.contains("flush"));
}

/// With `--timing` the timeline is in the modelled machine's virtual time: the same workload gives the same stamps
/// in every run (interrupts aside), and its span is at least what its DMA alone takes on that machine.
#[test]
fn trace_with_timing_draws_the_timeline_in_virtual_time() {
    let run = || {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let json = dir.path().join("trace.json");
        let out = Command::new(env!("CARGO_BIN_EXE_scsiport"))
            .args(["trace", "--passthrough", "--size", "256KiB", "--block", "128KiB", "--json"])
            .args(["--placement", "contiguous", "--timing", "pc-at-8mhz"])
            .arg("--out")
            .arg(&json)
            .output()
            .expect("scsiport runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON summary");
        assert_eq!(summary["verified"], true);
        assert_eq!(summary["virtual_time"], true);
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).expect("trace.json")).expect("valid JSON");
        let stamps: Vec<(String, f64)> = doc["traceEvents"]
            .as_array()
            .expect("traceEvents")
            .iter()
            .filter(|e| e["ph"] != "M")
            .map(|e| (e["name"].as_str().unwrap_or("").to_string(), e["ts"].as_f64().expect("a timestamp")))
            // The card's interrupts are left out: a disconnected target reselects when its work on another thread
            // ends, so how many interrupts the miniport takes, and in which order around the engine's own steps,
            // depends on thread scheduling. Every SRB, DMA and flush event keeps its virtual time.
            .filter(|(name, _)| !name.ends_with(" interrupt"))
            .collect();
        (summary["virtual_s"].as_f64().expect("virtual seconds"), stamps)
    };
    let (virtual_s, stamps) = run();
    // 512 KiB through a 16-bit channel of an 8 MHz AT (2 bytes per 4 clocks of 250 ns): at least 0.262 s.
    assert!(virtual_s >= 0.262, "{virtual_s}");
    assert!(virtual_s < 1.0, "nothing but DMA moves the clock here: {virtual_s}");
    assert_eq!(run(), (virtual_s, stamps), "virtual time is the same in every run");
}
