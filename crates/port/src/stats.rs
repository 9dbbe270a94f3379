//! Counters of the data path, readable while the adapter runs.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of an adapter's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PortStats {
    pub srbs_submitted: u64,
    pub srbs_completed: u64,
    /// `ScsiPortIoMapTransfer` calls that were programmed into the DMA controller.
    pub dma_ops: u64,
    pub bounced_maps: u64,
    pub bounced_bytes: u64,
    pub flushes: u64,
    /// Maps cancelled by a flush before `HwDmaStarted`.
    pub cancelled_maps: u64,
    pub channel_waits: u64,
    pub dma_bytes: u64,
    pub timeouts: u64,
    pub bus_resets: u64,
    pub violations: u64,
}

#[derive(Default)]
pub(crate) struct StatsCell {
    srbs_submitted: AtomicU64,
    srbs_completed: AtomicU64,
    dma_ops: AtomicU64,
    bounced_maps: AtomicU64,
    bounced_bytes: AtomicU64,
    flushes: AtomicU64,
    cancelled_maps: AtomicU64,
    channel_waits: AtomicU64,
    dma_bytes: AtomicU64,
    timeouts: AtomicU64,
    bus_resets: AtomicU64,
    violations: AtomicU64,
}

impl StatsCell {
    pub fn add_submitted(&self) {
        self.srbs_submitted.fetch_add(1, Relaxed);
    }
    pub fn add_completed(&self) {
        self.srbs_completed.fetch_add(1, Relaxed);
    }
    pub fn add_map(&self, bounced: bool, bytes: u64) {
        self.dma_ops.fetch_add(1, Relaxed);
        if bounced {
            self.bounced_maps.fetch_add(1, Relaxed);
            self.bounced_bytes.fetch_add(bytes, Relaxed);
        }
    }
    pub fn add_flush(&self) {
        self.flushes.fetch_add(1, Relaxed);
    }
    pub fn add_cancelled(&self) {
        self.cancelled_maps.fetch_add(1, Relaxed);
    }
    pub fn add_channel_wait(&self) {
        self.channel_waits.fetch_add(1, Relaxed);
    }
    pub fn add_dma_bytes(&self, n: u64) {
        self.dma_bytes.fetch_add(n, Relaxed);
    }
    pub fn add_timeout(&self) {
        self.timeouts.fetch_add(1, Relaxed);
    }
    pub fn add_bus_reset(&self) {
        self.bus_resets.fetch_add(1, Relaxed);
    }
    pub fn add_violation(&self) {
        self.violations.fetch_add(1, Relaxed);
    }
    pub fn snapshot(&self) -> PortStats {
        PortStats {
            srbs_submitted: self.srbs_submitted.load(Relaxed),
            srbs_completed: self.srbs_completed.load(Relaxed),
            dma_ops: self.dma_ops.load(Relaxed),
            bounced_maps: self.bounced_maps.load(Relaxed),
            bounced_bytes: self.bounced_bytes.load(Relaxed),
            flushes: self.flushes.load(Relaxed),
            cancelled_maps: self.cancelled_maps.load(Relaxed),
            channel_waits: self.channel_waits.load(Relaxed),
            dma_bytes: self.dma_bytes.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            bus_resets: self.bus_resets.load(Relaxed),
            violations: self.violations.load(Relaxed),
        }
    }
}
