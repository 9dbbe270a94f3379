//! When a request goes wrong: the port's own aborts (after a timeout, or at once after a strict-mode refusal), the
//! escalation to a bus reset, the checks the port makes after `HwResetBus`, and the deadlines that drive them.

use super::{ActiveState, Core, Queued, Routine};
use crate::srb::{Srb, SrbHandle, SrbId, SrbStatus};
use crate::trace::EventKind;
use crate::verifier::{Rule, VerifierMode};
use std::time::Instant;

impl<E> Core<E> {
    /// A strict-mode refusal left an active SRB without the transfer it asked for: the card would wait for DMA that
    /// never comes. Rather than let the request time out, the port aborts it now (the same path a timeout takes, with
    /// a bus reset if the abort does not end it in time), so the SRB fails promptly and the channel is reclaimed.
    pub fn abort_refused(&mut self, h: SrbHandle) {
        if self.mode != VerifierMode::Strict {
            return;
        }
        let now = Instant::now();
        let abort_timeout = self.options.abort_timeout;
        let Some(a) = self.active_mut(h) else { return };
        if a.state != ActiveState::Started || a.abort_sent || a.internal {
            return;
        }
        a.abort_sent = true;
        a.failed_by_verifier = true;
        let (id, address) = (a.id, a.srb.address());
        let abort = Srb::abort(address, id);
        self.lus.push_front(Queued { srb: abort, id: SrbId(0), done: Box::new(|_| {}) });
        self.pending_aborts.push((id, now + abort_timeout, address.path_id));
    }

    /// The earliest moment something is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut take = |x: Option<Instant>| {
            if let Some(x) = x {
                d = Some(d.map_or(x, |y| y.min(x)));
            }
        };
        take(self.timer.map(|(_, t)| t));
        take(self.hw.next_deadline());
        take(self.reset_hold_until);
        for (_, a) in self.slots.iter() {
            if a.state == ActiveState::Started && !a.timed_out {
                take(a.deadline);
            }
        }
        for (_, t, _) in &self.pending_aborts {
            take(Some(*t));
        }
        take(self.lus.next_busy_deadline());
        d
    }

    pub(super) fn run_timers(&mut self, ext: &mut E, now: Instant) -> bool {
        if let Some((routine, at)) = self.timer {
            if at <= now {
                self.timer = None;
                self.call(ext, Routine::Timer, routine);
                return true;
            }
        }
        // Request timeouts: abort first, then reset the bus if the abort does not finish the request in time.
        let mut expired = Vec::new();
        let vnow = self.vclock.as_ref().map(|c| c.now());
        for (h, a) in self.slots.iter() {
            let due = a.deadline.is_some_and(|d| d <= now) || a.vdeadline.is_some_and(|d| vnow.is_some_and(|v| d <= v));
            if a.state == ActiveState::Started && !a.timed_out && due && !a.internal {
                expired.push((h, a.id, a.srb.address()));
            }
        }
        if !expired.is_empty() {
            for (h, id, address) in expired {
                self.stats.add_timeout();
                self.event(Some(id), Some(address), EventKind::Timeout);
                let already = match self.active_mut(h) {
                    Some(a) => {
                        a.timed_out = true;
                        std::mem::replace(&mut a.abort_sent, true)
                    }
                    None => true,
                };
                if already {
                    continue;
                }
                let abort = Srb::abort(address, id);
                self.lus.push_front(Queued { srb: abort, id: SrbId(0), done: Box::new(|_| {}) });
                match self.virtual_deadline(Some(self.options.abort_timeout)) {
                    Some(v) => self.pending_vaborts.push((id, v, address.path_id)),
                    None => self.pending_aborts.push((id, now + self.options.abort_timeout, address.path_id)),
                }
            }
            return true;
        }
        if let Some(pos) = self.pending_vaborts.iter().position(|(_, t, _)| vnow.is_some_and(|v| *t <= v)) {
            let (_, _, path) = self.pending_vaborts.remove(pos);
            self.reset_bus_with(ext, path);
            return true;
        }
        if let Some(pos) = self.pending_aborts.iter().position(|(_, t, _)| *t <= now) {
            let (_, _, path) = self.pending_aborts.remove(pos);
            self.reset_bus_with(ext, path);
            return true;
        }
        false
    }

    /// `timeout` from now on the machine's virtual clock, in its picoseconds; None without the clock.
    pub(super) fn virtual_deadline(&self, timeout: Option<std::time::Duration>) -> Option<hal::Picos> {
        let clock = self.vclock.as_ref()?;
        Some(clock.now() + timeout?.as_nanos() as u64 * 1000)
    }

    /// The earliest virtual-time deadline: an SRB's timeout or the wait for an abort sent after one.
    pub fn next_virtual_deadline(&self) -> Option<hal::Picos> {
        let srbs = self
            .slots
            .iter()
            .filter(|(_, a)| a.state == ActiveState::Started && !a.timed_out && !a.internal)
            .filter_map(|(_, a)| a.vdeadline);
        srbs.chain(self.pending_vaborts.iter().map(|(_, t, _)| *t)).min()
    }

    /// With the machine's virtual clock, an engine that has nothing left to do but wait for a virtual-time deadline
    /// moves the clock on to it (the modelled machine spends that time waiting for its one-second timer ticks).
    /// Nothing else may be able to happen first: no deferred work, no interrupt, no wait for a channel another
    /// adapter holds, no wall-clock deadline (the card's own, a miniport timer, the reset hold), no work the card has
    /// going on another thread (a disconnected target working, `HbaHardware::busy`). An SRB the card leaves active
    /// then can only end by its timeout. Returns whether the clock moved.
    pub fn advance_virtual_time(&mut self) -> bool {
        let Some(due) = self.next_virtual_deadline() else { return false };
        let Some(clock) = &self.vclock else { return false };
        if !self.dpcs.is_empty()
            || self.dma.waiting_for_channel()
            || (self.hw.irq() && !self.irq_masked)
            || self.hw.busy()
            || self.next_deadline().is_some()
        {
            return false;
        }
        clock.advance_to(due);
        true
    }

    /// A reset asked for by a caller (SRB_FUNCTION_RESET_BUS, an iSCSI LUN/target reset).
    pub fn reset_bus(&mut self, path_id: u8) {
        self.pending_aborts.push((SrbId(u64::MAX), Instant::now(), path_id));
    }

    /// Call `HwResetBus`, then hold the queues for the reset hold time. SRBs the miniport left active on that bus are
    /// completed by the port with `SRB_STATUS_BUS_RESET`.
    pub(super) fn reset_bus_with(&mut self, ext: &mut E, path_id: u8) {
        self.pending_aborts.retain(|(_, _, p)| *p != path_id);
        self.pending_vaborts.retain(|(_, _, p)| *p != path_id);
        self.event(None, None, EventKind::BusReset { path_id });
        self.stats.add_bus_reset();
        let reset = self.init.hw_reset_bus;
        self.call(ext, Routine::ResetBus, |e, ctx| reset(e, ctx, path_id));
        // Rule 5: a bus reset ends the transfers on that bus, and the miniport's HwResetBus flushes the one it mapped.
        let unflushed =
            self.dma.outstanding().map(|r| r.srb).filter(|h| self.active(*h).is_some_and(|a| a.srb.path_id == path_id));
        if let Some(h) = unflushed {
            self.violation(
                Rule::CompleteWithoutFlush,
                Some(h),
                format!(
                    "HwResetBus({path_id}) returned with the SRB's transfer still mapped; the port drops the mapping \
                     and completes the SRB with SRB_STATUS_BUS_RESET"
                ),
            );
            self.abandon_transfer(Some(h));
        }
        let leftovers = self.slots.matching(|a| a.state == ActiveState::Started && a.srb.path_id == path_id);
        for h in leftovers {
            self.abandon_transfer(Some(h));
            self.complete_srb(h, Some(SrbStatus::BUS_RESET));
        }
        self.ready = true;
        self.reset_hold_until = Some(Instant::now() + self.options.reset_hold);
        let (now_done, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.reset_waiters).into_iter().partition(|(p, _)| *p == path_id);
        self.reset_waiters = waiting;
        for (_, q) in now_done {
            self.deliver_with(q, SrbStatus::SUCCESS);
        }
    }

    /// `ResetDetected`: the port handles the bus-reset delay.
    pub fn reset_detected(&mut self) {
        self.event(None, None, EventKind::BusReset { path_id: 0 });
        self.reset_hold_until = Some(Instant::now() + self.options.reset_hold);
    }
}
