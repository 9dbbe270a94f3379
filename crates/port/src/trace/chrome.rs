//! Export to the Chrome trace-event format ("JSON Object Format": `traceEvents`, complete events `X`, instant events
//! `i`, metadata `M`), which Perfetto and chrome://tracing open. Timestamps are in microseconds.

use super::timeline::{Lane, MarkKind, SpanKind, Timeline};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One process per adapter (its LUs and SRBs as threads) and one for the system DMA controller (its channels).
const DMA_PID: u64 = 1;

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

pub(super) fn document(t: &Timeline) -> Value {
    let mut adapters: BTreeMap<&str, u64> = BTreeMap::new();
    for lane in &t.lanes {
        if let Lane::Lu { adapter, .. } | Lane::Srb { adapter, .. } = lane {
            let n = adapters.len() as u64;
            adapters.entry(adapter.as_str()).or_insert(DMA_PID + 1 + n);
        }
    }
    let place = |lane: &Lane, i: usize| -> (u64, u64) {
        match lane {
            Lane::Channel(c) => (DMA_PID, u64::from(*c)),
            Lane::Lu { adapter, .. } | Lane::Srb { adapter, .. } => (adapters[adapter.as_str()], 100 + i as u64),
        }
    };
    let mut ev = Vec::new();
    ev.push(json!({"name": "process_name", "ph": "M", "pid": DMA_PID, "args": {"name": "8237 system DMA"}}));
    for (name, pid) in &adapters {
        ev.push(json!({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": format!("adapter {name}")}}));
    }
    for (i, lane) in t.lanes.iter().enumerate() {
        let (pid, tid) = place(lane, i);
        ev.push(json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": lane.name()}}));
        ev.push(json!({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": i}}));
    }
    for s in &t.spans {
        let (pid, tid) = place(&t.lanes[s.lane], s.lane);
        let cat = match s.kind {
            SpanKind::Queued => "queued",
            SpanKind::Active => "srb",
            SpanKind::Dma { bounced: true, .. } => "dma,bounced",
            SpanKind::Dma { .. } => "dma",
            SpanKind::Cancelled => "dma,cancelled",
        };
        ev.push(json!({
            "name": s.label, "cat": cat, "ph": "X", "pid": pid, "tid": tid,
            "ts": us(s.start_ns), "dur": us(s.end_ns.saturating_sub(s.start_ns)),
        }));
    }
    for m in &t.marks {
        let cat = match m.kind {
            MarkKind::Violation => "violation",
            MarkKind::Flush => "flush",
            _ => "event",
        };
        let mut e = json!({"name": m.label, "cat": cat, "ph": "i", "ts": us(m.t_ns)});
        match m.lane {
            Some(l) => {
                let (pid, tid) = place(&t.lanes[l], l);
                e["pid"] = json!(pid);
                e["tid"] = json!(tid);
                e["s"] = json!("t");
            }
            None => {
                e["pid"] = json!(DMA_PID);
                e["s"] = json!("g");
            }
        }
        ev.push(e);
    }
    json!({"traceEvents": ev, "displayTimeUnit": "ns"})
}
