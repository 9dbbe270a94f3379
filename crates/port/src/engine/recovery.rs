//! When a request goes wrong: the port's own aborts (after a timeout, or at once after a strict-mode refusal), the
//! escalation to a bus reset, the checks the port makes after `HwResetBus`, and the deadlines that drive them.

use crate::engine::{ActiveState, Core, Queued, Routine};
use crate::srb::{Srb, SrbFunction, SrbHandle, SrbId, SrbStatus};
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
        let mut abort = Srb::execute_scsi(address, &[]);
        abort.function = SrbFunction::ABORT_COMMAND;
        abort.next_srb = Some(id);
        abort.time_out_value = 0;
        let lu = self.lus.entry(address).or_default();
        lu.queue.push_front(Queued { srb: abort, id: SrbId(0), done: Box::new(|_| {}) });
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
        for s in &self.slots {
            if let Some(a) = &s.active {
                if a.state == ActiveState::Started && !a.timed_out {
                    take(a.deadline);
                }
            }
        }
        for (_, t, _) in &self.pending_aborts {
            take(Some(*t));
        }
        for lu in self.lus.values() {
            if !lu.queue.is_empty() {
                take(lu.busy_until);
            }
        }
        d
    }

    pub(crate) fn run_timers(&mut self, ext: &mut E, now: Instant) -> bool {
        if let Some((routine, at)) = self.timer {
            if at <= now {
                self.timer = None;
                self.call(ext, Routine::Timer, routine);
                return true;
            }
        }
        // Request timeouts: abort first, then reset the bus if the abort does not finish the request in time.
        let mut expired = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(a) = &s.active {
                if a.state == ActiveState::Started
                    && !a.timed_out
                    && a.deadline.is_some_and(|d| d <= now)
                    && !a.internal
                {
                    expired.push((SrbHandle { slot: i as u32, generation: s.generation }, a.id, a.srb.address()));
                }
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
                let mut abort = Srb::execute_scsi(address, &[]);
                abort.function = SrbFunction::ABORT_COMMAND;
                abort.next_srb = Some(id);
                abort.time_out_value = 0;
                let lu = self.lus.entry(address).or_default();
                lu.queue.push_front(Queued { srb: abort, id: SrbId(0), done: Box::new(|_| {}) });
                self.pending_aborts.push((id, now + self.options.abort_timeout, address.path_id));
            }
            return true;
        }
        if let Some(pos) = self.pending_aborts.iter().position(|(_, t, _)| *t <= now) {
            let (_, _, path) = self.pending_aborts.remove(pos);
            self.reset_bus_with(ext, path);
            return true;
        }
        false
    }

    /// A reset asked for by a caller (SRB_FUNCTION_RESET_BUS, an iSCSI LUN/target reset).
    pub fn reset_bus(&mut self, path_id: u8) {
        self.pending_aborts.push((SrbId(u64::MAX), Instant::now(), path_id));
    }

    /// Call `HwResetBus`, then hold the queues for the reset hold time. SRBs the miniport left active on that bus are
    /// completed by the port with `SRB_STATUS_BUS_RESET`.
    pub(crate) fn reset_bus_with(&mut self, ext: &mut E, path_id: u8) {
        self.pending_aborts.retain(|(_, _, p)| *p != path_id);
        self.event(None, None, EventKind::BusReset { path_id });
        self.stats.add_bus_reset();
        let reset = self.init.hw_reset_bus;
        self.call(ext, Routine::ResetBus, |e, ctx| reset(e, ctx, path_id));
        // Rule 5: a bus reset ends the transfers on that bus, and the miniport's HwResetBus flushes the one it mapped.
        let unflushed = self
            .dma
            .request
            .as_ref()
            .map(|r| r.srb)
            .or(self.dma.mapped.as_ref().map(|m| m.request.srb))
            .filter(|h| self.active(*h).is_some_and(|a| a.srb.path_id == path_id));
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
        let leftovers: Vec<SrbHandle> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.active
                    .as_ref()
                    .filter(|a| a.state == ActiveState::Started && a.srb.path_id == path_id)
                    .map(|_| SrbHandle { slot: i as u32, generation: s.generation })
            })
            .collect();
        for h in leftovers {
            self.abandon_transfer(Some(h));
            self.complete_srb(h, Some(SrbStatus::BUS_RESET));
        }
        self.ready = true;
        self.reset_hold_until = Some(Instant::now() + self.options.reset_hold);
    }

    /// `ResetDetected`: the port handles the bus-reset delay.
    pub fn reset_detected(&mut self) {
        self.event(None, None, EventKind::BusReset { path_id: 0 });
        self.reset_hold_until = Some(Instant::now() + self.options.reset_hold);
    }
}
