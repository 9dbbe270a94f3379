//! Waiting for an SRB: [`SrbFuture`] is what [`AdapterHandle::submit`](crate::AdapterHandle::submit) returns. Await it
//! in async code, or [`SrbFuture::wait`] for it on a thread that may block. Either way it resolves exactly once: with
//! the SRB the port completed, or with the SRB marked `SRB_STATUS_NO_HBA` when the port dropped the request without
//! completing it (the engine thread ended).

use crate::srb::{Completion, LuAddress, Srb, SrbFunction, SrbId, SrbStatus};
use parking_lot::{Condvar, Mutex};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

enum State {
    Pending(Option<Waker>),
    Done(Srb),
    /// The port dropped the request: what the caller gets back instead.
    Lost,
    /// The result was handed out.
    Taken,
}

struct Cell {
    state: Mutex<State>,
    cond: Condvar,
}

impl Cell {
    fn finish(&self, next: State) {
        let waker = {
            let mut state = self.state.lock();
            match std::mem::replace(&mut *state, next) {
                State::Pending(w) => w,
                // Finished once already (cannot happen: the completion is `FnOnce` and its guard fires once).
                other => {
                    *state = other;
                    return;
                }
            }
        };
        self.cond.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// An SRB on its way through the port. Dropping it does not cancel the SRB (ask the port to abort it by [`id`]); its
/// result is then discarded.
///
/// [`id`]: SrbFuture::id
#[must_use = "the SRB runs either way; drop the future explicitly to discard its result"]
pub struct SrbFuture {
    id: SrbId,
    cell: Arc<Cell>,
    /// For the SRB handed back when the port drops the request.
    address: LuAddress,
    function: SrbFunction,
}

impl SrbFuture {
    /// A future and the completion the port calls when the SRB is finished.
    pub(crate) fn new(id: SrbId, srb: &Srb) -> (Self, Completion) {
        let cell = Arc::new(Cell { state: Mutex::new(State::Pending(None)), cond: Condvar::new() });
        let guard = Guard { cell: Some(cell.clone()) };
        let future = SrbFuture { id, cell, address: srb.address(), function: srb.function };
        (future, Box::new(move |srb| guard.complete(srb)))
    }

    /// The id an abort can name.
    pub fn id(&self) -> SrbId {
        self.id
    }

    /// Whether the SRB is finished (awaiting or waiting returns at once).
    pub fn is_finished(&self) -> bool {
        !matches!(*self.cell.state.lock(), State::Pending(_))
    }

    /// Block the calling thread until the SRB is finished. Not for async code: await the future there.
    pub fn wait(self) -> Srb {
        let mut state = self.cell.state.lock();
        while matches!(*state, State::Pending(_)) {
            self.cell.cond.wait(&mut state);
        }
        let taken = std::mem::replace(&mut *state, State::Taken);
        drop(state);
        self.result(taken)
    }

    fn result(&self, state: State) -> Srb {
        match state {
            State::Done(srb) => srb,
            State::Lost => {
                let mut srb = Srb::execute_scsi(self.address, &[]);
                srb.function = self.function;
                srb.srb_status = SrbStatus::NO_HBA;
                srb
            }
            State::Pending(_) | State::Taken => unreachable!("the result is taken once, after the SRB finished"),
        }
    }
}

impl Future for SrbFuture {
    type Output = Srb;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Srb> {
        let mut state = self.cell.state.lock();
        match &mut *state {
            State::Pending(w) => {
                if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *w = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            State::Taken => panic!("SrbFuture polled after it returned its SRB"),
            _ => {
                let taken = std::mem::replace(&mut *state, State::Taken);
                drop(state);
                Poll::Ready(self.result(taken))
            }
        }
    }
}

impl std::fmt::Debug for SrbFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrbFuture").field("id", &self.id).field("finished", &self.is_finished()).finish()
    }
}

/// Finishes the future exactly once: with the SRB when the port calls the completion, as lost when it drops it.
struct Guard {
    cell: Option<Arc<Cell>>,
}

impl Guard {
    fn complete(mut self, srb: Srb) {
        if let Some(cell) = self.cell.take() {
            cell.finish(State::Done(srb));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(cell) = self.cell.take() {
            cell.finish(State::Lost);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker;

    const LU: LuAddress = LuAddress { path_id: 0, target_id: 2, lun: 1 };

    fn srb() -> Srb {
        Srb::execute_scsi(LU, &[0x00])
    }

    fn poll(f: &mut SrbFuture) -> Poll<Srb> {
        let waker = noop_waker();
        Pin::new(f).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn the_future_resolves_with_the_completed_srb() {
        let (mut f, done) = SrbFuture::new(SrbId(7), &srb());
        assert_eq!(f.id(), SrbId(7));
        assert!(poll(&mut f).is_pending());
        assert!(!f.is_finished());
        let mut s = srb();
        s.srb_status = SrbStatus::SUCCESS;
        s.scsi_status = 0x02;
        done(s);
        assert!(f.is_finished());
        let Poll::Ready(got) = poll(&mut f) else { panic!("ready after completion") };
        assert_eq!((got.srb_status, got.scsi_status), (SrbStatus::SUCCESS, 0x02));
    }

    #[test]
    fn a_dropped_completion_resolves_as_no_hba() {
        let (f, done) = SrbFuture::new(SrbId(1), &srb());
        drop(done);
        let got = f.wait();
        assert_eq!(got.srb_status, SrbStatus::NO_HBA);
        assert_eq!(got.address(), LU);
    }

    #[test]
    fn wait_blocks_until_another_thread_completes() {
        let (f, done) = SrbFuture::new(SrbId(2), &srb());
        let t = std::thread::spawn(move || {
            let mut s = srb();
            s.srb_status = SrbStatus::ABORTED;
            done(s);
        });
        assert_eq!(f.wait().srb_status, SrbStatus::ABORTED);
        t.join().expect("completer");
    }

    #[test]
    fn awaiting_wakes_the_task_when_the_port_completes() {
        let (f, done) = SrbFuture::new(SrbId(3), &srb());
        let t = std::thread::spawn(move || {
            let mut s = srb();
            s.srb_status = SrbStatus::SUCCESS;
            done(s);
        });
        let got = futures::executor::block_on(f);
        assert!(got.srb_status.is_success());
        t.join().expect("completer");
    }
}
