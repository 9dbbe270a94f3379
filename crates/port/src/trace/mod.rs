//! Structured events of the data path, with timestamps. Recording costs one branch when the trace is off.

use crate::srb::{LuAddress, SrbId};
use parking_lot::Mutex;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    SrbQueued {
        opcode: u8,
        length: u32,
    },
    SrbStarted,
    MapRequested {
        offset: u64,
        length: u32,
        to_device: bool,
    },
    Mapped {
        physical: u64,
        length: u32,
        bounced: bool,
    },
    MapCancelled,
    /// The 8237 channel was programmed (mask, flip-flop, mode, address, page, count, unmask) for `length` bytes at
    /// `physical`.
    ChannelProgrammed {
        physical: u64,
        length: u32,
        to_device: bool,
        demand: bool,
    },
    /// Memory-to-device data copied into the map registers at map time.
    BounceIn {
        bytes: u64,
    },
    DmaStarted,
    Interrupt,
    FlushRequested,
    /// The flush masked the channel.
    ChannelMasked,
    /// Device-to-memory data copied from the map registers to the caller's buffer at flush time.
    BounceOut {
        bytes: u64,
    },
    Flushed {
        moved: u64,
    },
    DmaService {
        bytes: u64,
        terminal_count: bool,
    },
    /// The channel reached terminal count (and masked itself).
    TerminalCount,
    /// The HAL queued the request: the channel is owned by another adapter or the map registers are in use.
    ChannelWait,
    ChannelGranted,
    ChannelFreed,
    SrbCompleted {
        status: u8,
        scsi_status: u8,
        length: u32,
    },
    BusReset {
        path_id: u8,
    },
    Timeout,
    Violation {
        rule: &'static str,
        detail: String,
    },
}

/// One event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Nanoseconds since the trace started: of wall-clock time, or for a recorder made with [`Trace::in_virtual_time`]
    /// of the modelled machine's virtual time.
    pub t_ns: u64,
    pub adapter: String,
    pub channel: Option<u8>,
    pub srb: Option<SrbId>,
    pub address: Option<LuAddress>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A shared recorder. Clone it into every adapter that should record.
#[derive(Clone)]
pub struct Trace {
    inner: Arc<TraceInner>,
}

struct TraceInner {
    start: Instant,
    /// Stamps in the machine's virtual time: its clock, and its reading when the trace started.
    clock: std::sync::OnceLock<(hal::VirtualClock, hal::Picos)>,
    events: Mutex<Vec<Event>>,
    limit: usize,
}

impl Trace {
    /// A recorder keeping at most `limit` events (older ones are kept, later ones dropped).
    pub fn new(limit: usize) -> Self {
        Trace {
            inner: Arc::new(TraceInner {
                start: Instant::now(),
                clock: std::sync::OnceLock::new(),
                events: Mutex::new(Vec::new()),
                limit,
            }),
        }
    }

    /// A recorder that stamps events with the modelled machine's virtual time (`Hal::virtual_clock`): DMA transfers
    /// and timeouts move it on, so a timeline drawn from it shows what the modelled machine would have taken.
    pub fn in_virtual_time(limit: usize, clock: hal::VirtualClock) -> Self {
        let t = Trace::new(limit);
        t.use_virtual_clock(clock);
        t
    }

    /// From now on stamp events with the machine's virtual time, counted from the clock's reading now. Only a
    /// recorder that has recorded nothing and has no clock yet switches; returns whether it did.
    pub fn use_virtual_clock(&self, clock: hal::VirtualClock) -> bool {
        let events = self.inner.events.lock();
        if !events.is_empty() {
            return false;
        }
        let at = clock.now();
        self.inner.clock.set((clock, at)).is_ok()
    }

    /// Whether events carry virtual time.
    pub fn is_virtual(&self) -> bool {
        self.inner.clock.get().is_some()
    }

    pub fn record(
        &self,
        adapter: &str,
        channel: Option<u8>,
        srb: Option<SrbId>,
        address: Option<LuAddress>,
        kind: EventKind,
    ) {
        let t_ns = match self.inner.clock.get() {
            Some((clock, at)) => (clock.now() - at) / 1000,
            None => self.inner.start.elapsed().as_nanos() as u64,
        };
        let mut ev = self.inner.events.lock();
        if ev.len() < self.inner.limit {
            ev.push(Event { t_ns, adapter: adapter.to_string(), channel, srb, address, kind });
        }
    }

    /// A copy of the events so far.
    pub fn events(&self) -> Vec<Event> {
        self.inner.events.lock().clone()
    }

    pub fn len(&self) -> usize {
        self.inner.events.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

mod chrome;
mod svg;
mod timeline;

pub use svg::SvgOptions;
pub use timeline::{Lane, Mark, MarkKind, Span, SpanKind, Timeline};

impl Timeline {
    /// The Chrome trace-event JSON document (opens in Perfetto and chrome://tracing).
    pub fn to_chrome_json(&self) -> serde_json::Value {
        chrome::document(self)
    }

    /// An SVG picture of the timeline.
    pub fn to_svg(&self, options: &SvgOptions) -> String {
        svg::render(self, options)
    }
}

impl Trace {
    /// The events laid out as lanes (one per DMA channel, per logical unit, per SRB) of spans and marks.
    pub fn timeline(&self) -> Timeline {
        Timeline::from_events(&self.events())
    }

    /// The Chrome trace-event JSON document (opens in Perfetto and chrome://tracing).
    pub fn to_chrome_json(&self) -> serde_json::Value {
        chrome::document(&self.timeline())
    }

    /// An SVG picture of the timeline.
    pub fn to_svg(&self, options: &SvgOptions) -> String {
        svg::render(&self.timeline(), options)
    }
}
