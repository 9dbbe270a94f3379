//! Completions of the SRBs of one request, gathered so that the request's task wakes once for the whole request
//! instead of once per SRB: a success wakes it only when it is the last SRB in flight; a failure, which may need a
//! retry or a queue release now, wakes it at once.

use port::{Srb, SrbStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// One finished SRB: its index in the request, or `None` when the port dropped its completion without calling it.
pub(crate) type Finished = (usize, Option<Srb>);

#[derive(Default)]
pub(crate) struct Batch {
    done: Mutex<Vec<Finished>>,
    in_flight: AtomicUsize,
    wake: Notify,
}

impl Batch {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The completion callback for SRB `i`; counts it in flight.
    pub fn completion(self: &Arc<Self>, i: usize) -> impl FnOnce(Srb) + Send + 'static {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = Guard { batch: self.clone(), i, fired: false };
        move |srb| guard.fire(srb)
    }

    fn finish(&self, i: usize, srb: Option<Srb>) {
        let urgent = srb.as_ref().is_none_or(|s| s.srb_status.status() != SrbStatus::SUCCESS);
        // Pushed before the count drops, so the task that sees the count at zero also sees this entry.
        self.done.lock().unwrap_or_else(|e| e.into_inner()).push((i, srb));
        let last = self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1;
        if urgent || last {
            self.wake.notify_one();
        }
    }

    /// Wait until something needs the task, then take everything finished so far.
    pub async fn next(&self) -> Vec<Finished> {
        loop {
            let taken = std::mem::take(&mut *self.done.lock().unwrap_or_else(|e| e.into_inner()));
            if !taken.is_empty() {
                return taken;
            }
            self.wake.notified().await;
        }
    }
}

/// Reports SRB `i` exactly once: with the SRB when the port calls the completion, as lost when it drops it.
struct Guard {
    batch: Arc<Batch>,
    i: usize,
    fired: bool,
}

impl Guard {
    fn fire(mut self, srb: Srb) {
        self.fired = true;
        self.batch.finish(self.i, Some(srb));
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.fired {
            self.batch.finish(self.i, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use port::LuAddress;

    fn srb(status: SrbStatus) -> Srb {
        let mut s = Srb::execute_scsi(LuAddress { path_id: 0, target_id: 0, lun: 0 }, &[0]);
        s.srb_status = status;
        s
    }

    /// Whether the task was woken (a wake-up is waiting for it), consuming the wake-up.
    fn woken(b: &Batch) -> bool {
        b.wake.notified().now_or_never().is_some()
    }

    #[test]
    fn successes_wake_the_task_only_with_the_last_one() {
        let b = Batch::new();
        let mut c = (0..3).map(|i| b.completion(i)).collect::<Vec<_>>().into_iter();
        c.next().unwrap()(srb(SrbStatus::SUCCESS));
        c.next().unwrap()(srb(SrbStatus::SUCCESS));
        assert!(!woken(&b), "two of three successes do not wake the task");
        c.next().unwrap()(srb(SrbStatus::SUCCESS));
        assert!(woken(&b), "the last one does");
        let got = b.next().now_or_never().expect("ready");
        assert_eq!(got.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn a_failure_wakes_the_task_at_once_and_a_dropped_completion_is_reported() {
        let b = Batch::new();
        let first = b.completion(0);
        let second = b.completion(1);
        let _third = b.completion(2);
        first(srb(SrbStatus::ERROR));
        assert!(woken(&b), "a failure wakes the task with others still in flight");
        assert_eq!(b.next().now_or_never().expect("ready").len(), 1);
        drop(second);
        assert!(woken(&b), "so does a completion the port dropped");
        let got = b.next().now_or_never().expect("ready");
        assert!(matches!(got[..], [(1, None)]));
        assert!(b.next().now_or_never().is_none(), "nothing else finished");
    }
}
