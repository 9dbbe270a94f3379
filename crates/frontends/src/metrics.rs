//! What one logical unit did through one front end: requests, bytes, errors, latency histograms and requests in
//! flight. Every counter is an atomic that the data path bumps without a lock; the server's metrics endpoint reads
//! them when scraped.

use serde::Serialize;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the latency histogram's buckets; the last bucket is `+Inf`.
pub const LATENCY_BUCKETS: [f64; 14] =
    [50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1.0, 5.0];

/// A Prometheus histogram of durations: cumulative buckets are computed at exposition from per-bucket counts.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS.iter().position(|b| s <= *b).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// The histogram in the Prometheus text format: `name_bucket{labels,le="…"}` (cumulative), `name_sum`,
    /// `name_count`.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut acc = 0u64;
        for (i, b) in self.buckets.iter().enumerate() {
            acc += b.load(Relaxed);
            let le = LATENCY_BUCKETS.get(i).map_or("+Inf".to_string(), |v| format!("{v}"));
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {acc}");
        }
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_ns.load(Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count.load(Relaxed));
    }
}

/// What one logical unit did through one front end.
#[derive(Default)]
pub struct LuStats {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub read_bytes: AtomicU64,
    pub write_bytes: AtomicU64,
    /// Flushes, trims, zeroing, and (iSCSI) every command that is neither a read nor a write.
    pub other: AtomicU64,
    /// Requests that ended in an error (NBD error reply, iSCSI status other than GOOD).
    pub errors: AtomicU64,
    pub in_flight: AtomicI64,
    pub read_latency: Histogram,
    pub write_latency: Histogram,
}

/// The kind of a request, for [`LuStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Other,
}

/// A request being counted: created when it starts, finished with its outcome.
pub struct InFlight<'a> {
    stats: &'a LuStats,
    start: Instant,
}

impl LuStats {
    pub fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight { stats: self, start: Instant::now() }
    }

    pub fn snapshot(&self) -> LuSnapshot {
        LuSnapshot {
            reads: self.reads.load(Relaxed),
            writes: self.writes.load(Relaxed),
            read_bytes: self.read_bytes.load(Relaxed),
            write_bytes: self.write_bytes.load(Relaxed),
            other: self.other.load(Relaxed),
            errors: self.errors.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
        }
    }
}

impl InFlight<'_> {
    /// The request ended: `bytes` moved, `ok` whether it succeeded.
    pub fn finish(self, op: Op, bytes: u64, ok: bool) {
        let s = self.stats;
        let d = self.start.elapsed();
        match op {
            Op::Read => {
                s.reads.fetch_add(1, Relaxed);
                s.read_bytes.fetch_add(bytes, Relaxed);
                s.read_latency.observe(d);
            }
            Op::Write => {
                s.writes.fetch_add(1, Relaxed);
                s.write_bytes.fetch_add(bytes, Relaxed);
                s.write_latency.observe(d);
            }
            Op::Other => {
                s.other.fetch_add(1, Relaxed);
            }
        }
        if !ok {
            s.errors.fetch_add(1, Relaxed);
        }
        // Dropping decrements in_flight.
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A snapshot of [`LuStats`] for `ctl counters`.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct LuSnapshot {
    pub reads: u64,
    pub writes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub other: u64,
    pub errors: u64,
    pub in_flight: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_everything() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_secs(9));
        let mut s = String::new();
        h.render(&mut s, "x", "a=\"b\"");
        assert!(s.contains("x_bucket{a=\"b\",le=\"0.00005\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{a=\"b\",le=\"0.0005\"} 2\n"), "{s}");
        assert!(s.contains("x_bucket{a=\"b\",le=\"5\"} 2\n"), "{s}");
        assert!(s.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("x_count{a=\"b\"} 3\n"), "{s}");
    }

    #[test]
    fn in_flight_requests_are_counted_until_they_finish() {
        let s = LuStats::default();
        let a = s.begin();
        let b = s.begin();
        assert_eq!(s.snapshot().in_flight, 2);
        a.finish(Op::Read, 4096, true);
        b.finish(Op::Write, 512, false);
        let snap = s.snapshot();
        assert_eq!(
            (snap.in_flight, snap.reads, snap.writes, snap.read_bytes, snap.write_bytes, snap.errors),
            (0, 1, 1, 4096, 512, 1)
        );
    }
}
