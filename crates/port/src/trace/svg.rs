//! A timeline picture in SVG: one row per DMA channel, per logical unit and per SRB; SRBs queued (grey) and active
//! (blue), transfers mapped direct (green) or bounced (orange) until their flush (black tick), terminal counts
//! (purple), violations (red, with their rule's name), bus resets (dashed). Hovering a bar shows its label.

use super::timeline::{Lane, MarkKind, SpanKind, Timeline};
use std::fmt::Write;

/// Size and content of the picture.
#[derive(Clone, Debug)]
pub struct SvgOptions {
    /// Width of the plot area in pixels (the lane names take 190 more).
    pub width: u32,
    /// SRB lanes beyond this many are left out (channel and LU lanes are always drawn).
    pub max_srb_lanes: usize,
}

impl Default for SvgOptions {
    fn default() -> Self {
        SvgOptions { width: 1100, max_srb_lanes: 24 }
    }
}

const LEFT: f64 = 190.0;
const TOP: f64 = 34.0;
const ROW: f64 = 18.0;
/// Width of a cut-out stretch of idle time.
const GAP_PX: f64 = 14.0;

/// A time axis that leaves out idle stretches (longer than 1/40 of the trace) so the activity fills the picture.
struct Axis {
    /// (start, end, x of start) of each stretch of activity.
    segments: Vec<(u64, u64, f64)>,
    scale: f64,
}

impl Axis {
    fn new(t: &Timeline, width: f64) -> Axis {
        let mut points: Vec<(u64, u64)> = t.spans.iter().map(|s| (s.start_ns, s.end_ns.max(s.start_ns))).collect();
        points.extend(t.marks.iter().map(|m| (m.t_ns, m.t_ns)));
        points.sort_unstable();
        let (first, last) = (points.first().map_or(0, |p| p.0), t.end_ns);
        let threshold = last.saturating_sub(first) / 40;
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (a, b) in points {
            match merged.last_mut() {
                Some(m) if a <= m.1.saturating_add(threshold) => m.1 = m.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        if merged.is_empty() {
            merged.push((0, 1));
        }
        // Every stretch gets at least 1/200 of the busy time, so a lone instant still has a visible place.
        let busy: u64 = merged.iter().map(|(a, b)| b - a).sum::<u64>().max(1);
        let floor = busy / 200 + 1;
        let total: u64 = merged.iter().map(|(a, b)| (b - a).max(floor)).sum();
        let room = (width - GAP_PX * (merged.len() - 1) as f64).max(width / 4.0);
        let scale = room / total as f64;
        let mut x = LEFT;
        let segments = merged
            .into_iter()
            .map(|(a, b)| {
                let seg = (a, b, x);
                x += (b - a).max(floor) as f64 * scale + GAP_PX;
                seg
            })
            .collect();
        Axis { segments, scale }
    }

    fn x(&self, ns: u64) -> f64 {
        let i = self.segments.partition_point(|s| s.0 <= ns);
        match i.checked_sub(1).map(|k| self.segments[k]) {
            None => self.segments.first().map_or(LEFT, |s| s.2),
            Some((a, b, x0)) if ns <= b => x0 + (ns - a) as f64 * self.scale,
            Some((a, b, x0)) => self.segments.get(i).map_or(x0 + (b - a) as f64 * self.scale, |s| s.2 - GAP_PX / 2.0),
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub(super) fn render(t: &Timeline, o: &SvgOptions) -> String {
    // Which lanes are drawn, and on which row.
    let mut row: Vec<Option<usize>> = Vec::with_capacity(t.lanes.len());
    let (mut rows, mut srb_rows, mut left_out) = (0usize, 0usize, 0usize);
    for lane in &t.lanes {
        let shown = !matches!(lane, Lane::Srb { .. }) || srb_rows < o.max_srb_lanes;
        if matches!(lane, Lane::Srb { .. }) {
            if shown {
                srb_rows += 1;
            } else {
                left_out += 1;
            }
        }
        row.push(shown.then(|| {
            rows += 1;
            rows - 1
        }));
    }
    let w = f64::from(o.width.max(100));
    let axis = Axis::new(t, w);
    let t0 = axis.segments.first().map_or(0, |s| s.0);
    let x = |ns: u64| axis.x(ns);
    let y = |r: usize| TOP + r as f64 * ROW;
    let height = TOP + rows as f64 * ROW + 46.0;
    let total_w = LEFT + w + 20.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.0}" height="{height:.0}" font-family="monospace" font-size="11">"#
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    // Time axis: a label where each stretch of activity starts (microseconds from the first event), and a break mark
    // where idle time was cut out.
    let mut last_label = f64::NEG_INFINITY;
    for (i, &(start, _, x0)) in axis.segments.iter().enumerate() {
        if i > 0 {
            let gx = x0 - GAP_PX / 2.0;
            let _ = writeln!(
                s,
                r##"<path d="M{:.1},{:.1} l4,-8 M{:.1},{:.1} l4,-8" stroke="#999"/><line x1="{gx:.1}" y1="{:.1}" x2="{gx:.1}" y2="{:.1}" stroke="#ddd" stroke-dasharray="2,3"/>"##,
                gx - 4.0,
                TOP - 2.0,
                gx,
                TOP - 2.0,
                TOP,
                y(rows)
            );
        }
        if x0 - last_label >= 70.0 {
            last_label = x0;
            let _ = writeln!(
                s,
                r##"<line x1="{x0:.1}" y1="{:.1}" x2="{x0:.1}" y2="{:.1}" stroke="#e4e4e4"/><text x="{x0:.1}" y="{:.1}" fill="#555">{:.0} µs</text>"##,
                TOP - 6.0,
                y(rows),
                TOP - 10.0,
                (start - t0) as f64 / 1000.0
            );
        }
    }
    for (i, lane) in t.lanes.iter().enumerate() {
        let Some(r) = row[i] else { continue };
        let fill = if r % 2 == 0 { "#f7f7f7" } else { "#ffffff" };
        let _ = writeln!(
            s,
            r##"<rect x="0" y="{:.1}" width="{total_w:.0}" height="{ROW}" fill="{fill}"/><text x="6" y="{:.1}" fill="#222">{}</text>"##,
            y(r),
            y(r) + 13.0,
            esc(&lane.name())
        );
    }
    for sp in &t.spans {
        let Some(r) = row[sp.lane] else { continue };
        let color = match sp.kind {
            SpanKind::Queued => "#c8c8c8",
            SpanKind::Active => "#4e79a7",
            SpanKind::Dma { bounced: false, .. } => "#59a14f",
            SpanKind::Dma { bounced: true, .. } => "#f28e2b",
            SpanKind::Cancelled => "#bab0ac",
        };
        let (x1, x2) = (x(sp.start_ns), x(sp.end_ns));
        let _ = writeln!(
            s,
            r#"<rect x="{x1:.2}" y="{:.1}" width="{:.2}" height="{:.1}" fill="{color}"><title>{}</title></rect>"#,
            y(r) + 3.0,
            (x2 - x1).max(0.8),
            ROW - 6.0,
            esc(&sp.label)
        );
    }
    for m in &t.marks {
        let xx = x(m.t_ns);
        let lane_row = m.lane.and_then(|l| row[l]);
        let label = esc(&m.label);
        match (m.kind, lane_row) {
            (MarkKind::Flush, Some(r)) => {
                let _ = writeln!(
                    s,
                    r##"<line x1="{xx:.2}" y1="{:.1}" x2="{xx:.2}" y2="{:.1}" stroke="#111" stroke-width="1.2"><title>{label}</title></line>"##,
                    y(r) + 1.0,
                    y(r) + ROW - 1.0
                );
            }
            (MarkKind::TerminalCount, Some(r)) => {
                let _ = writeln!(
                    s,
                    r##"<circle cx="{xx:.2}" cy="{:.1}" r="2" fill="#8e44ad"><title>{label}</title></circle>"##,
                    y(r) + 3.0
                );
            }
            (MarkKind::Violation, _) => {
                let (y1, y2) = match lane_row {
                    Some(r) => (y(r), y(r) + ROW),
                    None => (TOP, y(rows)),
                };
                let name = m.label.split(':').next().unwrap_or("violation");
                let _ = writeln!(
                    s,
                    r##"<line x1="{xx:.2}" y1="{y1:.1}" x2="{xx:.2}" y2="{y2:.1}" stroke="#d62728" stroke-width="2"><title>{label}</title></line><path d="M{:.2},{y1:.1} l4,-7 l-8,0 z" fill="#d62728"/><text x="{:.2}" y="{:.1}" fill="#d62728">{}</text>"##,
                    xx,
                    xx + 5.0,
                    y1 - 1.0,
                    esc(name)
                );
            }
            (MarkKind::BusReset | MarkKind::Timeout, _) => {
                let (y1, y2) = match lane_row {
                    Some(r) => (y(r), y(r) + ROW),
                    None => (TOP, y(rows)),
                };
                let _ = writeln!(
                    s,
                    r##"<line x1="{xx:.2}" y1="{y1:.1}" x2="{xx:.2}" y2="{y2:.1}" stroke="#d62728" stroke-dasharray="3,2"><title>{label}</title></line>"##
                );
            }
            _ => {}
        }
    }
    let ly = y(rows) + 22.0;
    let legend = [
        ("#c8c8c8", "queued"),
        ("#4e79a7", "SRB active"),
        ("#59a14f", "DMA mapped (direct)"),
        ("#f28e2b", "DMA mapped (bounced)"),
        ("#bab0ac", "map cancelled"),
        ("#111111", "flush"),
        ("#8e44ad", "terminal count"),
        ("#d62728", "violation / reset"),
    ];
    let mut lx = 6.0;
    for (color, what) in legend {
        let _ = writeln!(
            s,
            r##"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{ly:.1}" fill="#222">{what}</text>"##,
            ly - 9.0,
            lx + 14.0
        );
        lx += 14.0 + 7.0 * what.len() as f64 + 14.0;
    }
    if left_out > 0 {
        let _ =
            writeln!(s, r##"<text x="6" y="{:.1}" fill="#555">{left_out} more SRB lanes not drawn</text>"##, ly + 16.0);
    }
    s.push_str("</svg>\n");
    s
}
