//! The trace laid out for people: lanes (one per DMA channel, per logical unit, per SRB) holding spans (an SRB
//! queued or active, a transfer mapped on a channel) and marks (flushes, terminal counts, bounce copies, violations).
//! Both exporters (Chrome JSON, SVG) draw this one model.

use super::{Event, EventKind};
use crate::srb::{LuAddress, SrbId};
use std::collections::BTreeMap;

/// A row of the picture.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// A system DMA channel (shared by every adapter on it).
    Channel(u8),
    /// A logical unit of an adapter.
    Lu { adapter: String, address: LuAddress },
    /// One SRB.
    Srb { adapter: String, id: SrbId },
}

impl Lane {
    pub fn name(&self) -> String {
        match self {
            Lane::Channel(c) => format!("DMA channel {c}"),
            Lane::Lu { adapter, address } => format!("{adapter} LU {address}"),
            Lane::Srb { adapter, id } => format!("{adapter} SRB #{}", id.0),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// Submitted, waiting in its LU queue.
    Queued,
    /// Given to the miniport, not yet returned.
    Active,
    /// A transfer mapped (channel programmed) until its flush.
    Dma { bounced: bool, to_device: bool },
    /// A transfer mapped and cancelled by a flush before `HwDmaStarted`.
    Cancelled,
}

/// An interval on a lane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub lane: usize,
    pub start_ns: u64,
    pub end_ns: u64,
    pub kind: SpanKind,
    pub label: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkKind {
    Flush,
    DmaStarted,
    TerminalCount,
    ChannelMasked,
    BounceIn,
    BounceOut,
    Interrupt,
    ChannelWait,
    Timeout,
    BusReset,
    Violation,
}

/// A moment on a lane (`lane: None`: the whole picture, as for a violation that names no SRB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub lane: Option<usize>,
    pub t_ns: u64,
    pub kind: MarkKind,
    pub label: String,
}

/// Lanes, spans and marks of one trace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    pub lanes: Vec<Lane>,
    pub spans: Vec<Span>,
    pub marks: Vec<Mark>,
    pub end_ns: u64,
}

#[derive(Default)]
struct SrbLife {
    queued: Option<u64>,
    started: Option<u64>,
    completed: Option<(u64, u8)>,
    opcode: u8,
    address: Option<LuAddress>,
}

struct OpenMap {
    start: u64,
    srb: Option<(String, SrbId)>,
    bounced: bool,
    to_device: bool,
    length: u32,
}

impl Timeline {
    pub fn from_events(events: &[Event]) -> Timeline {
        let mut order: Vec<&Event> = events.iter().collect();
        order.sort_by_key(|e| e.t_ns);
        let end_ns = order.last().map_or(0, |e| e.t_ns);
        let mut lanes: BTreeMap<Lane, usize> = BTreeMap::new();
        let mut srbs: BTreeMap<(String, SrbId), SrbLife> = BTreeMap::new();
        let mut open: BTreeMap<u8, OpenMap> = BTreeMap::new();
        let mut direction: BTreeMap<(String, SrbId), bool> = BTreeMap::new();
        // Raw spans and marks, keyed by lane; lane indices are assigned once all lanes are known.
        let mut spans: Vec<(Lane, u64, u64, SpanKind, String)> = Vec::new();
        let mut marks: Vec<(Option<Lane>, u64, MarkKind, String)> = Vec::new();
        for e in order {
            let key = e.srb.map(|id| (e.adapter.clone(), id));
            let srb_lane = key.as_ref().map(|(a, id)| Lane::Srb { adapter: a.clone(), id: *id });
            let channel_lane = e.channel.map(Lane::Channel);
            let mut mark = |lane: Option<Lane>, kind: MarkKind, label: String| marks.push((lane, e.t_ns, kind, label));
            match &e.kind {
                EventKind::SrbQueued { opcode, .. } => {
                    if let Some(k) = key {
                        let life = srbs.entry(k).or_default();
                        life.queued = Some(e.t_ns);
                        life.opcode = *opcode;
                        life.address = e.address;
                    }
                }
                EventKind::SrbStarted => {
                    if let Some(k) = key {
                        let life = srbs.entry(k).or_default();
                        life.started = Some(e.t_ns);
                        life.address = life.address.or(e.address);
                    }
                }
                EventKind::SrbCompleted { status, .. } => {
                    if let Some(k) = key {
                        srbs.entry(k).or_default().completed = Some((e.t_ns, *status));
                    }
                }
                EventKind::MapRequested { to_device, .. } => {
                    if let Some(k) = key {
                        direction.insert(k, *to_device);
                    }
                }
                EventKind::Mapped { length, bounced, .. } => {
                    if let Some(c) = e.channel {
                        let to_device = key.as_ref().and_then(|k| direction.get(k)).copied().unwrap_or(false);
                        open.insert(
                            c,
                            OpenMap { start: e.t_ns, srb: key, bounced: *bounced, to_device, length: *length },
                        );
                    }
                }
                EventKind::Flushed { moved } => {
                    if let Some(m) = e.channel.and_then(|c| open.remove(&c)) {
                        let label = map_label(&m, Some(*moved));
                        let kind = SpanKind::Dma { bounced: m.bounced, to_device: m.to_device };
                        spans.push((Lane::Channel(e.channel.unwrap_or(0)), m.start, e.t_ns, kind, label));
                    }
                    mark(channel_lane.clone(), MarkKind::Flush, format!("flush: {moved} bytes moved"));
                    mark(srb_lane, MarkKind::Flush, format!("flush: {moved} bytes moved"));
                }
                EventKind::MapCancelled => {
                    if let Some(m) = e.channel.and_then(|c| open.remove(&c)) {
                        let label = format!("{} (cancelled)", map_label(&m, None));
                        spans.push((
                            Lane::Channel(e.channel.unwrap_or(0)),
                            m.start,
                            e.t_ns,
                            SpanKind::Cancelled,
                            label,
                        ));
                    }
                    mark(srb_lane, MarkKind::Flush, "map cancelled by a flush before HwDmaStarted".into());
                }
                EventKind::DmaStarted => mark(srb_lane, MarkKind::DmaStarted, "HwDmaStarted".into()),
                EventKind::TerminalCount => mark(channel_lane, MarkKind::TerminalCount, "terminal count".into()),
                EventKind::ChannelMasked => mark(channel_lane, MarkKind::ChannelMasked, "channel masked".into()),
                EventKind::BounceIn { bytes } => {
                    mark(channel_lane, MarkKind::BounceIn, format!("bounce copy in: {bytes} bytes"))
                }
                EventKind::BounceOut { bytes } => {
                    mark(channel_lane, MarkKind::BounceOut, format!("bounce copy out: {bytes} bytes"))
                }
                EventKind::Interrupt => mark(channel_lane, MarkKind::Interrupt, format!("{} interrupt", e.adapter)),
                EventKind::ChannelWait => {
                    mark(srb_lane.or(channel_lane), MarkKind::ChannelWait, "waiting for the channel".into())
                }
                EventKind::Timeout => mark(srb_lane, MarkKind::Timeout, "timeout".into()),
                EventKind::BusReset { path_id } => {
                    mark(None, MarkKind::BusReset, format!("{} bus {path_id} reset", e.adapter))
                }
                EventKind::Violation { rule, detail } => {
                    mark(srb_lane, MarkKind::Violation, format!("{rule}: {detail}"));
                }
                _ => {}
            }
        }
        for (c, m) in std::mem::take(&mut open) {
            let label = format!("{} (not flushed)", map_label(&m, None));
            let kind = SpanKind::Dma { bounced: m.bounced, to_device: m.to_device };
            spans.push((Lane::Channel(c), m.start, end_ns, kind, label));
        }
        for ((adapter, id), life) in &srbs {
            let srb_lane = Lane::Srb { adapter: adapter.clone(), id: *id };
            let name = format!("#{} op {:#04x}", id.0, life.opcode);
            let done = life.completed.map_or(end_ns, |(t, _)| t);
            let status = life.completed.map_or("not completed".to_string(), |(_, s)| format!("status {s:#04x}"));
            if let (Some(q), Some(s)) = (life.queued, life.started) {
                spans.push((srb_lane.clone(), q, s, SpanKind::Queued, format!("{name} queued")));
            }
            if let Some(s) = life.started {
                spans.push((srb_lane, s, done, SpanKind::Active, format!("{name} {status}")));
                if let Some(address) = life.address {
                    let lu = Lane::Lu { adapter: adapter.clone(), address };
                    spans.push((lu, s, done, SpanKind::Active, format!("{name} {status}")));
                }
            }
        }
        for (lane, ..) in &spans {
            let n = lanes.len();
            lanes.entry(lane.clone()).or_insert(n);
        }
        for (lane, ..) in &marks {
            if let Some(l) = lane {
                let n = lanes.len();
                lanes.entry(l.clone()).or_insert(n);
            }
        }
        // Lanes in display order: channels, then logical units, then SRBs (the enum's order).
        let ordered: Vec<Lane> = lanes.keys().cloned().collect();
        let index: BTreeMap<&Lane, usize> = ordered.iter().enumerate().map(|(i, l)| (l, i)).collect();
        let mut out = Timeline { lanes: ordered.clone(), spans: Vec::new(), marks: Vec::new(), end_ns };
        out.spans = spans
            .into_iter()
            .map(|(lane, start_ns, end_ns, kind, label)| Span { lane: index[&lane], start_ns, end_ns, kind, label })
            .collect();
        out.marks = marks
            .into_iter()
            .map(|(lane, t_ns, kind, label)| Mark { lane: lane.map(|l| index[&l]), t_ns, kind, label })
            .collect();
        out
    }
}

fn map_label(m: &OpenMap, moved: Option<u64>) -> String {
    let who = m.srb.as_ref().map_or(String::new(), |(a, id)| format!("{a} #{} ", id.0));
    let dir = if m.to_device { "out" } else { "in" };
    let bounce = if m.bounced { ", bounced" } else { "" };
    match moved {
        Some(b) => format!("{who}{dir} {} bytes{bounce}, {b} moved", m.length),
        None => format!("{who}{dir} {} bytes{bounce}", m.length),
    }
}
