//! Lock-free counters behind `HalStats`.

use std::sync::atomic::{AtomicU64, Ordering};

use super::HalStats;

#[derive(Default)]
pub(crate) struct StatsCell {
    pub(crate) maps: AtomicU64,
    pub(crate) bounced_maps: AtomicU64,
    pub(crate) bounced_bytes: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) map_register_waits: AtomicU64,
    pub(crate) channel_waits: AtomicU64,
    pub(crate) dma_bytes: AtomicU64,
}

pub(crate) fn bump(counters: [&AtomicU64; 2], by: u64) {
    for c in counters {
        c.fetch_add(by, Ordering::Relaxed);
    }
}

impl StatsCell {
    pub(crate) fn snapshot(&self) -> HalStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HalStats {
            maps: get(&self.maps),
            bounced_maps: get(&self.bounced_maps),
            bounced_bytes: get(&self.bounced_bytes),
            flushes: get(&self.flushes),
            map_register_waits: get(&self.map_register_waits),
            channel_waits: get(&self.channel_waits),
            dma_bytes: get(&self.dma_bytes),
        }
    }
}
