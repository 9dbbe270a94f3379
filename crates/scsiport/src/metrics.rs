//! Counters of the running server and their Prometheus text exposition (format 0.0.4): per logical unit and front
//! end (reads, writes, bytes, errors, latency histograms, requests in flight), per adapter (SRBs, DMA operations,
//! bounced bytes, channel waits, verifier violations), the HAL's map-register waits, and per front end sessions and
//! connections. Every counter is an atomic that the data path bumps without a lock; the endpoint reads them when
//! scraped. `docs/control.md` lists the metric names.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

pub use frontends::metrics::{Histogram, InFlight, LuSnapshot, LuStats, Op, LATENCY_BUCKETS};

/// Front-end connection counters.
#[derive(Default)]
pub struct FrontendStats {
    pub connections_total: AtomicU64,
    pub connections_open: AtomicI64,
}

/// All the server's counters.
#[derive(Default)]
pub struct Registry {
    /// (front end, disk reference) → its counters.
    lus: Mutex<BTreeMap<(String, String), Arc<LuStats>>>,
    pub nbd: FrontendStats,
    pub iscsi: FrontendStats,
    pub scrapes: AtomicU64,
}

impl Registry {
    /// The counters of `disk` as reached through `frontend` ("nbd" or "iscsi"), created on first use.
    pub fn lu(&self, frontend: &str, disk: &str) -> Arc<LuStats> {
        self.lus.lock().entry((frontend.to_string(), disk.to_string())).or_default().clone()
    }

    /// Every LU's counters.
    pub fn lus(&self) -> Vec<((String, String), Arc<LuStats>)> {
        self.lus.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Prometheus label value escaping (backslash, double quote, newline).
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// What the exposition needs from the rest of the server besides the registry.
pub struct Sources<'a> {
    pub adapters: Vec<(String, port::PortStats, port::VerifierMode)>,
    pub hal: hal::HalStats,
    pub iscsi_sessions: usize,
    pub registry: &'a Registry,
}

/// The Prometheus text exposition.
pub fn render(src: &Sources<'_>) -> String {
    let mut o = String::with_capacity(16 << 10);
    let reg = src.registry;
    let lus = reg.lus();
    type Get = fn(&LuSnapshot) -> u64;
    let counters: [(&str, &str, Get); 6] = [
        ("scsiport_lu_reads_total", "Read requests completed", |s| s.reads),
        ("scsiport_lu_writes_total", "Write requests completed", |s| s.writes),
        ("scsiport_lu_read_bytes_total", "Bytes read", |s| s.read_bytes),
        ("scsiport_lu_write_bytes_total", "Bytes written", |s| s.write_bytes),
        ("scsiport_lu_other_requests_total", "Requests other than reads and writes", |s| s.other),
        ("scsiport_lu_errors_total", "Requests that ended in an error", |s| s.errors),
    ];
    let snaps: Vec<_> = lus
        .iter()
        .map(|((f, d), s)| (format!("frontend=\"{}\",disk=\"{}\"", label(f), label(d)), s.snapshot(), s))
        .collect();
    for (name, help, get) in counters {
        let _ = writeln!(o, "# HELP {name} {help}.\n# TYPE {name} counter");
        for (l, snap, _) in &snaps {
            let _ = writeln!(o, "{name}{{{l}}} {}", get(snap));
        }
    }
    let _ = writeln!(o, "# HELP scsiport_lu_in_flight Requests being served.\n# TYPE scsiport_lu_in_flight gauge");
    for (l, snap, _) in &snaps {
        let _ = writeln!(o, "scsiport_lu_in_flight{{{l}}} {}", snap.in_flight);
    }
    for (name, which) in [("scsiport_lu_read_latency_seconds", 0), ("scsiport_lu_write_latency_seconds", 1)] {
        let _ = writeln!(o, "# HELP {name} Time from request to completion.\n# TYPE {name} histogram");
        for (l, _, s) in &snaps {
            let h = if which == 0 { &s.read_latency } else { &s.write_latency };
            h.render(&mut o, name, l);
        }
    }
    type GetA = fn(&port::PortStats) -> u64;
    let adapter: [(&str, &str, GetA); 9] = [
        ("scsiport_adapter_srbs_submitted_total", "SRBs submitted to the port driver", |s| s.srbs_submitted),
        ("scsiport_adapter_srbs_completed_total", "SRBs completed", |s| s.srbs_completed),
        ("scsiport_adapter_dma_operations_total", "DMA operations programmed into the 8237", |s| s.dma_ops),
        ("scsiport_adapter_dma_bytes_total", "Bytes moved by the DMA controller", |s| s.dma_bytes),
        ("scsiport_adapter_bounced_bytes_total", "Bytes bounced through map registers", |s| s.bounced_bytes),
        ("scsiport_adapter_flushes_total", "ScsiPortFlushDma calls", |s| s.flushes),
        ("scsiport_adapter_channel_waits_total", "Waits for the DMA channel", |s| s.channel_waits),
        ("scsiport_adapter_timeouts_total", "Requests that timed out", |s| s.timeouts),
        ("scsiport_adapter_verifier_violations_total", "DDI rules broken", |s| s.violations),
    ];
    for (name, help, get) in adapter {
        let _ = writeln!(o, "# HELP {name} {help}.\n# TYPE {name} counter");
        for (a, s, _) in &src.adapters {
            let _ = writeln!(o, "{name}{{adapter=\"{}\"}} {}", label(a), get(s));
        }
    }
    let _ = writeln!(o, "# HELP scsiport_adapter_verifier_mode Verifier mode (1 for the mode in force).\n# TYPE scsiport_adapter_verifier_mode gauge");
    for (a, _, m) in &src.adapters {
        for (name, mode) in [
            ("strict", port::VerifierMode::Strict),
            ("warn", port::VerifierMode::Warn),
            ("off", port::VerifierMode::Off),
        ] {
            let _ = writeln!(
                o,
                "scsiport_adapter_verifier_mode{{adapter=\"{}\",mode=\"{name}\"}} {}",
                label(a),
                (*m == mode) as u8
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP scsiport_hal_map_register_waits_total Waits for map registers (all adapters).\n# TYPE scsiport_hal_map_register_waits_total counter\nscsiport_hal_map_register_waits_total {}",
        src.hal.map_register_waits
    );
    let _ = writeln!(
        o,
        "# HELP scsiport_hal_bounced_bytes_total Bytes bounced by the HAL (all adapters).\n# TYPE scsiport_hal_bounced_bytes_total counter\nscsiport_hal_bounced_bytes_total {}",
        src.hal.bounced_bytes
    );
    let _ = writeln!(
        o,
        "# HELP scsiport_connections_open Open front-end connections.\n# TYPE scsiport_connections_open gauge"
    );
    let _ = writeln!(o, "scsiport_connections_open{{frontend=\"nbd\"}} {}", reg.nbd.connections_open.load(Relaxed));
    let _ = writeln!(o, "scsiport_connections_open{{frontend=\"iscsi\"}} {}", reg.iscsi.connections_open.load(Relaxed));
    let _ = writeln!(
        o,
        "# HELP scsiport_connections_total Front-end connections accepted.\n# TYPE scsiport_connections_total counter"
    );
    let _ = writeln!(o, "scsiport_connections_total{{frontend=\"nbd\"}} {}", reg.nbd.connections_total.load(Relaxed));
    let _ =
        writeln!(o, "scsiport_connections_total{{frontend=\"iscsi\"}} {}", reg.iscsi.connections_total.load(Relaxed));
    let _ = writeln!(
        o,
        "# HELP scsiport_iscsi_sessions Logged-in iSCSI sessions (discovery included).\n# TYPE scsiport_iscsi_sessions gauge\nscsiport_iscsi_sessions {}",
        src.iscsi_sessions
    );
    let _ = writeln!(
        o,
        "# HELP scsiport_metrics_scrapes_total Times this endpoint was read.\n# TYPE scsiport_metrics_scrapes_total counter\nscsiport_metrics_scrapes_total {}",
        reg.scrapes.load(Relaxed)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
