//! `scsiport trace`: run the exercise workload with the trace recording, then write it as Chrome trace-event JSON
//! (Perfetto, chrome://tracing) and as an SVG timeline.

use anyhow::Context;
use port::{SvgOptions, Trace};
use scsiport::config::Config;
use scsiport::exercise::{BufferPlacement, ExerciseOptions, ExerciseReport};
use scsiport::machine::Machine;
use serde::Serialize;
use std::path::PathBuf;

/// What `scsiport trace` does.
pub struct TraceOptions {
    pub out: Option<PathBuf>,
    pub svg: Option<PathBuf>,
    pub size: u64,
    pub block: usize,
    pub channel: u8,
    pub passthrough: bool,
    pub placement: BufferPlacement,
    pub workers: usize,
    pub seed: u64,
    /// Most events kept.
    pub limit: usize,
    pub svg_width: u32,
    pub svg_srb_lanes: usize,
    /// Run the same workload with the trace off (to measure what recording costs).
    pub off: bool,
    /// A miniport built against include/scsiport/miniport.h to drive the card instead of the built-in one.
    pub miniport: Option<PathBuf>,
    /// A timing preset: the machine keeps virtual time and the trace is drawn in it.
    pub timing: Option<hal::MachineTiming>,
}

/// What the command prints (as one JSON line with `--json`).
#[derive(Serialize)]
pub struct TraceSummary {
    pub tracing: bool,
    pub events: usize,
    /// Lanes of the timeline (only built when an output was asked for).
    pub lanes: Option<usize>,
    pub violations: u64,
    pub verified: bool,
    /// Seconds the workload took (the write and the read phase).
    pub seconds: f64,
    pub srbs: u64,
    pub dma_ops: u64,
    /// The events carry the modelled machine's virtual time (`--timing`), not wall-clock time.
    pub virtual_time: bool,
    /// With `--timing`: the virtual seconds from the first event to the last.
    pub virtual_s: Option<f64>,
}

pub fn run(o: &TraceOptions) -> anyhow::Result<(TraceSummary, ExerciseReport)> {
    let mut cfg =
        Config::in_process(scsiport::size::ByteSize(o.size), scsiport::exercise::memory_for(o.block, o.workers));
    cfg.adapters[0].dma_channel = o.channel;
    cfg.adapters[0].miniport = o.miniport.clone();
    if let Some(t) = o.timing {
        cfg.machine.timing = Some(t.name.to_string());
        if t.is_eisa() {
            cfg.machine.bus = scsiport::config::BusKind::Eisa;
        }
    }
    cfg.validate()?;
    let trace = (!o.off).then(|| Trace::new(o.limit));
    let machine = Machine::build_with_trace(&cfg, trace.clone())?;
    let opts = ExerciseOptions {
        block: o.block,
        passthrough: o.passthrough,
        placement: o.placement,
        workers: o.workers,
        seed: o.seed,
        progress: false,
    };
    let report = scsiport::exercise::run(&machine, &opts);
    machine.shutdown();
    let report = report?;
    let mut summary = TraceSummary {
        tracing: trace.is_some(),
        events: 0,
        lanes: None,
        violations: report.violations,
        verified: report.verified,
        seconds: report.seconds,
        srbs: report.srbs,
        dma_ops: report.dma_ops,
        virtual_time: trace.as_ref().is_some_and(|t| t.is_virtual()),
        virtual_s: None,
    };
    if let Some(t) = &trace {
        summary.events = t.len();
        if t.is_virtual() {
            let events = t.events();
            let span = events.last().zip(events.first()).map_or(0, |(l, f)| l.t_ns - f.t_ns);
            summary.virtual_s = Some(span as f64 / 1e9);
        }
        if o.out.is_some() || o.svg.is_some() {
            let timeline = t.timeline();
            summary.lanes = Some(timeline.lanes.len());
            if let Some(path) = &o.out {
                let file = std::fs::File::create(path).with_context(|| format!("--out {}", path.display()))?;
                serde_json::to_writer(std::io::BufWriter::new(file), &timeline.to_chrome_json())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = &o.svg {
                let svg = timeline.to_svg(&SvgOptions { width: o.svg_width, max_srb_lanes: o.svg_srb_lanes });
                std::fs::write(path, svg).with_context(|| format!("--svg {}", path.display()))?;
            }
        }
    }
    Ok((summary, report))
}
