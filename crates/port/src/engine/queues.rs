//! The per-logical-unit queues: SRBs waiting for the miniport, whether each LU's queue is frozen after an error,
//! how many of its SRBs the miniport holds, and which LU is served next (round robin).

use crate::srb::{Completion, LuAddress, Srb, SrbFlags, SrbFunction, SrbId};
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// An SRB waiting in a logical unit's queue.
pub(crate) struct Queued {
    pub srb: Srb,
    pub id: SrbId,
    pub done: Completion,
}

impl Queued {
    /// An abort the port queued itself (id 0: no caller waits for it).
    pub fn is_port_abort(&self) -> bool {
        self.srb.function == SrbFunction::ABORT_COMMAND && self.id == SrbId(0)
    }

    /// Whether the miniport's share of the LU counts this request (aborts and queue control do not).
    fn counts_active(function: SrbFunction) -> bool {
        function == SrbFunction::EXECUTE_SCSI || function == SrbFunction::IO_CONTROL
    }
}

#[derive(Default)]
struct LuState {
    queue: VecDeque<Queued>,
    frozen: bool,
    /// Requests of this LU the miniport holds.
    active: u32,
    /// `NextLuRequest` received: the miniport takes another request for this LU.
    lu_ready: bool,
    /// An SRB the miniport deferred with `SRB_STATUS_BUSY` waits at the head of the queue until then.
    busy_until: Option<Instant>,
}

/// What the scheduler may start now.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StartPolicy {
    /// The miniport has not asked for its next request: only the port's own aborts go to it.
    pub port_aborts_only: bool,
    /// The adapter queues several tagged requests per LU.
    pub multiple_per_lu: bool,
}

/// The logical units the port has seen, each with its queue.
#[derive(Default)]
pub(crate) struct LuQueues {
    lus: BTreeMap<LuAddress, LuState>,
    /// The LU served last.
    cursor: Option<LuAddress>,
}

impl LuQueues {
    fn lu(&mut self, address: LuAddress) -> &mut LuState {
        self.lus.entry(address).or_default()
    }

    /// Whether the port knows the logical unit (something was queued for it).
    pub fn exists(&self, address: LuAddress) -> bool {
        self.lus.contains_key(&address)
    }

    pub fn push_back(&mut self, q: Queued) {
        self.lu(q.srb.address()).queue.push_back(q);
    }

    /// Ahead of the LU's other work (an abort, a resubmission).
    pub fn push_front(&mut self, q: Queued) {
        self.lu(q.srb.address()).queue.push_front(q);
    }

    /// `SRB_FUNCTION_RELEASE_QUEUE`.
    pub fn release(&mut self, address: LuAddress) {
        self.lu(address).frozen = false;
    }

    #[cfg(test)]
    pub fn is_frozen(&self, address: LuAddress) -> bool {
        self.lus.get(&address).is_some_and(|l| l.frozen)
    }

    /// `SRB_FUNCTION_FLUSH_QUEUE`: release the queue and hand back everything in it.
    pub fn flush(&mut self, address: LuAddress) -> Vec<Queued> {
        let lu = self.lu(address);
        lu.frozen = false;
        lu.queue.drain(..).collect()
    }

    /// Take a queued SRB out by id, wherever it waits.
    pub fn remove(&mut self, id: SrbId) -> Option<Queued> {
        self.lus.values_mut().find_map(|lu| {
            let pos = lu.queue.iter().position(|x| x.id == id)?;
            lu.queue.remove(pos)
        })
    }

    /// Everything queued on every LU (shutdown).
    pub fn drain_all(&mut self) -> Vec<Queued> {
        self.lus.values_mut().flat_map(|lu| lu.queue.drain(..)).collect()
    }

    pub fn all_empty(&self) -> bool {
        self.lus.values().all(|l| l.queue.is_empty())
    }

    /// `NextLuRequest(address)`: the miniport takes another request for that LU.
    pub fn set_lu_ready(&mut self, address: LuAddress) {
        if let Some(lu) = self.lus.get_mut(&address) {
            lu.lu_ready = true;
        }
    }

    /// An SRB of `function` the miniport held came back; `freeze` freezes the LU's queue.
    pub fn finished(&mut self, address: LuAddress, function: SrbFunction, freeze: bool) {
        if let Some(lu) = self.lus.get_mut(&address) {
            if Queued::counts_active(function) {
                lu.active = lu.active.saturating_sub(1);
            }
            if freeze {
                lu.frozen = true;
            }
        }
    }

    /// The miniport deferred `q` with `SRB_STATUS_BUSY`: it goes back to the head of its queue and waits until
    /// `until`.
    pub fn deferred(&mut self, q: Queued, until: Instant) {
        let lu = self.lu(q.srb.address());
        lu.active = lu.active.saturating_sub(1);
        lu.busy_until = Some(until);
        lu.queue.push_front(q);
    }

    /// Whether an abort of the port's own waits at the head of some queue.
    pub fn port_abort_waiting(&self) -> bool {
        self.lus.values().any(|l| l.queue.front().is_some_and(Queued::is_port_abort))
    }

    /// The earliest moment a deferred SRB may go again.
    pub fn next_busy_deadline(&self) -> Option<Instant> {
        self.lus.values().filter(|l| !l.queue.is_empty()).filter_map(|l| l.busy_until).min()
    }

    /// The next request to give the miniport, round robin over the LUs after the one served last: the head of the
    /// first queue that is not frozen (an abort or a `BYPASS_FROZEN_QUEUE` request passes a frozen queue), not held
    /// back after a BUSY, and whose LU takes another request (none of its requests active, or a tagged request on an
    /// adapter that queues per LU after `NextLuRequest`).
    pub fn next(&mut self, policy: StartPolicy, now: Instant) -> Option<Queued> {
        let keys: Vec<LuAddress> = self.lus.keys().copied().collect();
        if keys.is_empty() {
            return None;
        }
        let start = match self.cursor {
            Some(c) => keys.iter().position(|k| *k > c).unwrap_or(0),
            None => 0,
        };
        for i in 0..keys.len() {
            let key = keys[(start + i) % keys.len()];
            let lu = self.lus.get_mut(&key).expect("key from map");
            let Some(front) = lu.queue.front() else { continue };
            if policy.port_aborts_only && !front.is_port_abort() {
                continue;
            }
            let abort = front.srb.function == SrbFunction::ABORT_COMMAND;
            let bypass = front.srb.srb_flags.contains(SrbFlags::BYPASS_FROZEN_QUEUE) || abort;
            if lu.frozen && !bypass {
                continue;
            }
            let port_abort = front.is_port_abort();
            if lu.busy_until.is_some_and(|t| now < t) && !port_abort {
                continue;
            }
            // The hold belongs to the deferred SRB: an abort of the port's own that passes it leaves it in place.
            if !port_abort {
                lu.busy_until = None;
            }
            let tagged = front.srb.srb_flags.contains(SrbFlags::QUEUE_ACTION_ENABLE);
            if lu.active > 0 && !(policy.multiple_per_lu && tagged && lu.lu_ready) && !abort {
                continue;
            }
            let q = lu.queue.pop_front().expect("front exists");
            if Queued::counts_active(q.srb.function) {
                lu.active += 1;
            }
            lu.lu_ready = false;
            self.cursor = Some(key);
            return Some(q);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LU0: LuAddress = LuAddress { path_id: 0, target_id: 0, lun: 0 };
    const LU1: LuAddress = LuAddress { path_id: 0, target_id: 1, lun: 0 };

    fn q(address: LuAddress, id: u64) -> Queued {
        Queued { srb: Srb::execute_scsi(address, &[0x28]), id: SrbId(id), done: Box::new(|_| {}) }
    }

    fn tagged(address: LuAddress, id: u64) -> Queued {
        let mut x = q(address, id);
        x.srb.srb_flags.insert(SrbFlags::QUEUE_ACTION_ENABLE);
        x
    }

    fn port_abort(address: LuAddress, victim: u64) -> Queued {
        let mut x = q(address, 0);
        x.srb.function = SrbFunction::ABORT_COMMAND;
        x.srb.next_srb = Some(SrbId(victim));
        x
    }

    const ANY: StartPolicy = StartPolicy { port_aborts_only: false, multiple_per_lu: false };
    const TAGGED: StartPolicy = StartPolicy { port_aborts_only: false, multiple_per_lu: true };

    fn ids(qs: &mut LuQueues, policy: StartPolicy, now: Instant) -> Vec<u64> {
        std::iter::from_fn(|| qs.next(policy, now).map(|x| x.id.0)).collect()
    }

    #[test]
    fn lus_are_served_round_robin_one_request_each_until_it_finishes() {
        let mut qs = LuQueues::default();
        for (a, id) in [(LU0, 1), (LU0, 2), (LU1, 3), (LU1, 4)] {
            qs.push_back(q(a, id));
        }
        let now = Instant::now();
        assert_eq!(ids(&mut qs, ANY, now), [1, 3], "one active request per LU");
        qs.finished(LU0, SrbFunction::EXECUTE_SCSI, false);
        qs.finished(LU1, SrbFunction::EXECUTE_SCSI, false);
        assert_eq!(ids(&mut qs, ANY, now), [2, 4], "LU0 again after LU1, in queue order");
        assert!(qs.all_empty());
    }

    #[test]
    fn tagged_requests_share_an_lu_only_after_next_lu_request() {
        let mut qs = LuQueues::default();
        for id in 1..=3 {
            qs.push_back(tagged(LU0, id));
        }
        let now = Instant::now();
        assert_eq!(ids(&mut qs, TAGGED, now), [1]);
        qs.set_lu_ready(LU0);
        assert_eq!(ids(&mut qs, ANY, now), Vec::<u64>::new(), "not on an adapter that does not queue per LU");
        assert_eq!(ids(&mut qs, TAGGED, now), [2], "NextLuRequest admits one more");
        qs.set_lu_ready(LU0);
        qs.push_front(q(LU0, 9));
        assert_eq!(ids(&mut qs, TAGGED, now), Vec::<u64>::new(), "an untagged request waits for the LU to drain");
    }

    #[test]
    fn a_frozen_queue_holds_everything_but_aborts_and_bypass_requests() {
        let mut qs = LuQueues::default();
        qs.push_back(q(LU0, 1));
        qs.next(ANY, Instant::now());
        qs.finished(LU0, SrbFunction::EXECUTE_SCSI, true);
        assert!(qs.is_frozen(LU0));
        qs.push_back(q(LU0, 2));
        assert!(qs.next(ANY, Instant::now()).is_none());
        let mut bypass = q(LU0, 3);
        bypass.srb.srb_flags.insert(SrbFlags::BYPASS_FROZEN_QUEUE);
        qs.push_front(bypass);
        assert_eq!(ids(&mut qs, ANY, Instant::now()), [3]);
        qs.finished(LU0, SrbFunction::EXECUTE_SCSI, false);
        qs.push_front(port_abort(LU0, 7));
        assert_eq!(ids(&mut qs, ANY, Instant::now()), [0], "an abort passes the frozen queue");
        qs.release(LU0);
        assert!(!qs.is_frozen(LU0));
        assert_eq!(ids(&mut qs, ANY, Instant::now()), [2]);
    }

    #[test]
    fn before_next_request_only_port_aborts_go_to_the_miniport() {
        let mut qs = LuQueues::default();
        qs.push_back(q(LU0, 1));
        let only = StartPolicy { port_aborts_only: true, multiple_per_lu: false };
        assert!(!qs.port_abort_waiting());
        assert!(qs.next(only, Instant::now()).is_none());
        qs.push_front(port_abort(LU1, 1));
        assert!(qs.port_abort_waiting());
        assert_eq!(ids(&mut qs, only, Instant::now()), [0]);
    }

    #[test]
    fn a_busy_deferral_holds_the_lu_until_its_time() {
        let mut qs = LuQueues::default();
        qs.push_back(q(LU0, 1));
        let t0 = Instant::now();
        let first = qs.next(ANY, t0).expect("started");
        let until = t0 + Duration::from_millis(10);
        qs.deferred(first, until);
        assert_eq!(qs.next_busy_deadline(), Some(until));
        assert!(qs.next(ANY, t0).is_none(), "held back");
        qs.push_front(port_abort(LU0, 5));
        assert_eq!(ids(&mut qs, ANY, t0), [0], "the port's abort is not held back");
        qs.finished(LU0, SrbFunction::ABORT_COMMAND, false);
        assert_eq!(ids(&mut qs, ANY, until), [1], "resubmitted when due");
        assert_eq!(qs.next_busy_deadline(), None);
    }

    #[test]
    fn remove_flush_and_drain_hand_back_queued_requests() {
        let mut qs = LuQueues::default();
        for (a, id) in [(LU0, 1), (LU0, 2), (LU1, 3), (LU1, 4)] {
            qs.push_back(q(a, id));
        }
        assert!(!qs.exists(LuAddress { path_id: 0, target_id: 5, lun: 0 }));
        assert!(qs.exists(LU1));
        assert_eq!(qs.remove(SrbId(3)).map(|x| x.id), Some(SrbId(3)));
        assert!(qs.remove(SrbId(3)).is_none());
        let flushed: Vec<u64> = qs.flush(LU0).into_iter().map(|x| x.id.0).collect();
        assert_eq!(flushed, [1, 2]);
        let rest: Vec<u64> = qs.drain_all().into_iter().map(|x| x.id.0).collect();
        assert_eq!(rest, [4]);
        assert!(qs.all_empty());
    }
}
