//! Channel ownership and map-register allocation: one owner per channel, FIFO waiters,
//! and a second FIFO for owners waiting on a run of map registers (as AllocateAdapterChannel
//! waits for both before it calls the driver's AdapterControl routine).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::stats::bump;
use super::{AdapterShared, ChannelGrant, Hal};
use crate::{DmaChannel, PAGE_SIZE};

type Waker = Box<dyn FnOnce() + Send>;

/// A queued AllocateAdapterChannel request.
struct Pending {
    adapter: Arc<AdapterShared>,
    map_registers: u32,
    waker: Waker,
}

#[derive(Default)]
struct ChannelQueue {
    owner: Option<u64>,
    waiters: VecDeque<Pending>,
}

pub(crate) struct Allocator {
    channels: [ChannelQueue; 8],
    /// Pool page in use.
    used: Vec<bool>,
    /// Channel owners waiting for map registers, in arrival order.
    pool_waiters: VecDeque<Pending>,
}

/// A run of `n` map registers must keep the part a transfer can use (one DMA page)
/// inside one DMA page of the channel, so the bounce area never crosses it.
fn fits_window(start: usize, n: usize, ch: DmaChannel) -> bool {
    let window = (ch.page_size() / PAGE_SIZE) as usize;
    start % window + n.min(window) <= window
}

/// Work left for after the allocator lock is released: wakers to call, and any grant
/// displaced from a ready slot (dropping a grant takes the allocator lock).
#[derive(Default)]
struct Wake {
    wakers: Vec<Waker>,
    stale: Vec<ChannelGrant>,
}

impl Wake {
    fn deliver(&mut self, p: Pending, grant: ChannelGrant) {
        if let Some(old) = p.adapter.ready.lock().replace(grant) {
            self.stale.push(old);
        }
        self.wakers.push(p.waker);
    }

    fn run(self) {
        drop(self.stale);
        for w in self.wakers {
            w();
        }
    }
}

impl Allocator {
    pub(crate) fn new(pages: usize) -> Self {
        Self { channels: Default::default(), used: vec![false; pages], pool_waiters: VecDeque::new() }
    }

    fn take_run(&mut self, n: usize, ch: DmaChannel) -> Option<usize> {
        let start = (0..self.used.len().saturating_sub(n - 1))
            .find(|&s| fits_window(s, n, ch) && self.used[s..s + n].iter().all(|u| !u))?;
        self.used[start..start + n].fill(true);
        Some(start)
    }

    fn free_run(&mut self, start: usize, n: usize) {
        if let Some(run) = self.used.get_mut(start..start + n) {
            run.fill(false);
        }
    }
}

impl Hal {
    fn make_grant(self: &Arc<Self>, adapter: &Arc<AdapterShared>, pool_start: usize, n: u32) -> ChannelGrant {
        ChannelGrant { hal: Arc::clone(self), adapter: Arc::clone(adapter), pool_start, map_registers: n, mapped: None }
    }

    pub(super) fn request_channel(
        self: &Arc<Self>,
        adapter: &Arc<AdapterShared>,
        map_registers: u32,
        waker: Waker,
    ) -> Option<ChannelGrant> {
        let ch = adapter.channel;
        let pending = Pending { adapter: Arc::clone(adapter), map_registers, waker };
        let mut a = self.alloc.lock();
        let q = &mut a.channels[usize::from(ch.number())];
        if q.owner.is_some() || !q.waiters.is_empty() {
            q.waiters.push_back(pending);
            bump([&self.stats.channel_waits, &adapter.stats.channel_waits], 1);
            return None;
        }
        q.owner = Some(adapter.id);
        if a.pool_waiters.is_empty() {
            if let Some(start) = a.take_run(map_registers as usize, ch) {
                return Some(self.make_grant(adapter, start, map_registers));
            }
        }
        a.pool_waiters.push_back(pending);
        bump([&self.stats.map_register_waits, &adapter.stats.map_register_waits], 1);
        None
    }

    /// Serves waiters in order: first owners waiting for map registers (strict FIFO: the
    /// head blocks those behind it), then free channels' queues. Returns the wakers to
    /// call once the locks are released.
    fn promote(self: &Arc<Self>, a: &mut Allocator) -> Wake {
        let mut wake = Wake::default();
        loop {
            let mut progressed = false;
            while let Some(head) = a.pool_waiters.front() {
                let (n, ch) = (head.map_registers, head.adapter.channel);
                let Some(start) = a.take_run(n as usize, ch) else {
                    break;
                };
                if let Some(p) = a.pool_waiters.pop_front() {
                    let grant = self.make_grant(&p.adapter, start, n);
                    wake.deliver(p, grant);
                    progressed = true;
                }
            }
            for i in 0..a.channels.len() {
                if a.channels[i].owner.is_some() {
                    continue;
                }
                let Some(p) = a.channels[i].waiters.pop_front() else {
                    continue;
                };
                a.channels[i].owner = Some(p.adapter.id);
                progressed = true;
                let taken = if a.pool_waiters.is_empty() {
                    a.take_run(p.map_registers as usize, p.adapter.channel)
                } else {
                    None
                };
                match taken {
                    Some(start) => {
                        let grant = self.make_grant(&p.adapter, start, p.map_registers);
                        wake.deliver(p, grant);
                    }
                    None => {
                        bump([&self.stats.map_register_waits, &p.adapter.stats.map_register_waits], 1);
                        a.pool_waiters.push_back(p);
                    }
                }
            }
            if !progressed {
                return wake;
            }
        }
    }

    /// FreeAdapterChannel (and a dropped grant): mask the channel if a transfer is still
    /// mapped, free the map registers and the channel, grant the next waiters.
    pub(super) fn release_grant(self: &Arc<Self>, grant: &mut ChannelGrant) {
        if grant.mapped.take().is_some() {
            self.mask_channel(grant.adapter.channel);
        }
        let wake = {
            let mut a = self.alloc.lock();
            a.free_run(grant.pool_start, grant.map_registers as usize);
            let q = &mut a.channels[usize::from(grant.adapter.channel.number())];
            if q.owner == Some(grant.adapter.id) {
                q.owner = None;
            }
            grant.adapter.engaged.store(false, Ordering::Release);
            self.promote(&mut a)
        };
        wake.run();
    }

    /// An adapter object going away: withdraw its queued request, if any.
    pub(super) fn cancel_requests(self: &Arc<Self>, adapter: &Arc<AdapterShared>) {
        let (removed, wake) = {
            let mut a = self.alloc.lock();
            let mut removed = Vec::new();
            for q in a.channels.iter_mut() {
                while let Some(pos) = q.waiters.iter().position(|p| p.adapter.id == adapter.id) {
                    removed.extend(q.waiters.remove(pos));
                }
            }
            if let Some(pos) = a.pool_waiters.iter().position(|p| p.adapter.id == adapter.id) {
                removed.extend(a.pool_waiters.remove(pos));
                let q = &mut a.channels[usize::from(adapter.channel.number())];
                if q.owner == Some(adapter.id) {
                    q.owner = None;
                }
            }
            (removed, self.promote(&mut a))
        };
        drop(removed);
        wake.run();
    }
}
