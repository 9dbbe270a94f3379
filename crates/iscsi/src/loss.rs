//! Ordering of I_T nexus losses against later commands (`docs/nexus-loss.md`).
//!
//! A session's end is an I_T nexus loss (SAM-5): its tasks are aborted and the logical units release what the nexus
//! held (SPC-2 reservations, removal prevention). Turning the end of a connection into that loss takes time — the
//! lost session's commands are aborted through the backend first — while the other sessions' connections go on. A
//! command the server accepts after it saw a session end must find that loss already done at the logical unit:
//! the server records the loss the moment it sees the end ([`NexusLosses::begin`], synchronous, before any await),
//! and a command takes a [`NexusLosses::mark`] when it is accepted and waits ([`NexusLosses::settled`]) for every
//! loss begun before it before it goes to the backend.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default)]
struct State {
    /// Sequence number of the last loss begun.
    last: u64,
    /// Losses begun and not yet done.
    pending: BTreeSet<u64>,
}

/// The nexus losses of one target that are under way.
#[derive(Default)]
pub struct NexusLosses {
    state: Mutex<State>,
    done: Notify,
}

/// Where a command stands among the losses: it waits for those begun up to `0` (`None`: none was pending).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LossMark(Option<u64>);

/// A loss under way; dropping it marks the loss done.
pub struct LossGuard {
    losses: Arc<NexusLosses>,
    seq: u64,
}

impl NexusLosses {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a loss that starts now. Commands marked from now on wait until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> LossGuard {
        let mut s = self.lock();
        s.last += 1;
        let seq = s.last;
        s.pending.insert(seq);
        LossGuard { losses: self.clone(), seq }
    }

    /// The losses a command accepted now must wait for.
    pub fn mark(&self) -> LossMark {
        let s = self.lock();
        LossMark((!s.pending.is_empty()).then_some(s.last))
    }

    /// Whether every loss begun up to `mark` is done.
    pub fn is_settled(&self, mark: LossMark) -> bool {
        match mark.0 {
            None => true,
            Some(last) => self.lock().pending.first().is_none_or(|oldest| *oldest > last),
        }
    }

    /// Waits until every loss begun up to `mark` is done.
    pub async fn settled(&self, mark: LossMark) {
        loop {
            // Registered before the check, so that a loss ending in between still wakes this waiter.
            let mut woken = std::pin::pin!(self.done.notified());
            woken.as_mut().enable();
            if self.is_settled(mark) {
                return;
            }
            woken.await;
        }
    }

    /// Number of losses under way.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }
}

impl Drop for LossGuard {
    fn drop(&mut self) {
        self.losses.lock().pending.remove(&self.seq);
        self.losses.done.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_mark_waits_only_for_losses_begun_before_it() {
        let l = Arc::new(NexusLosses::default());
        assert_eq!(l.mark(), LossMark(None), "nothing pending: nothing to wait for");
        let a = l.begin();
        let before_b = l.mark();
        let b = l.begin();
        let after_b = l.mark();
        assert!(!l.is_settled(before_b));
        drop(a);
        assert!(l.is_settled(before_b), "only A was begun before the first mark");
        assert!(!l.is_settled(after_b), "B is still under way");
        let c = l.begin();
        drop(b);
        assert!(l.is_settled(after_b), "C began after the mark");
        assert_eq!(l.pending(), 1);
        drop(c);
        assert_eq!(l.pending(), 0);
    }

    #[test]
    fn losses_that_end_out_of_order_settle_a_mark_only_when_all_are_done() {
        let l = Arc::new(NexusLosses::default());
        let a = l.begin();
        let b = l.begin();
        let m = l.mark();
        drop(b);
        assert!(!l.is_settled(m), "A, begun first, is still under way");
        drop(a);
        assert!(l.is_settled(m));
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_the_loss_ends() {
        let l = Arc::new(NexusLosses::default());
        let g = l.begin();
        let m = l.mark();
        let l2 = l.clone();
        let waiter = tokio::spawn(async move { l2.settled(m).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(g);
        tokio::time::timeout(Duration::from_secs(30), waiter).await.expect("woken").expect("joined");
        // A mark with nothing pending does not wait at all.
        l.settled(l.mark()).await;
    }
}
