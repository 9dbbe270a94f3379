//! The targets' own processors: work a target does while it is disconnected from the bus (`docs/hba.md`,
//! "Disconnect and reselection").
//!
//! A SCSI-2 target that holds the disconnect privilege frees the bus while it seeks, fills its buffer from the medium
//! or writes its buffer out, and reselects the initiator when it is ready for the next phase. In the model that work
//! runs on a small pool of threads beside the port's engine thread: each job is one target's work on one command; its
//! result goes to a mailbox the card reads on the engine thread (in `advance`), after the port's waker was called.
//! Nothing here touches system memory or the DMA channel: data moves only in a data phase, on the bus.

use super::bus::BusDevice;
use port::Waker;
use scsi::{Begin, DataInTask, DataOutTask, Nexus, Outcome};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The most bytes a target buffers for one command; a longer data phase runs on the bus as the task produces or takes
/// it (the target stays connected).
pub(super) const TARGET_BUFFER: u64 = 16 << 20;
/// Threads of the pool: enough for one command per target and LU that the tests and a busy server keep in flight.
const WORKERS: usize = 8;
/// The piece of a buffered read the target asks its task for at a time (a failure keeps the pieces before it).
const READ_PIECE: usize = 64 << 10;

/// Work for a target while it is disconnected.
pub(super) enum Job {
    /// Run the command (its CDB was sent in the command phase): the target's work up to its next phase. A data-in
    /// command's data is read into the target's buffer.
    Begin { device: Arc<dyn BusDevice>, nexus: Nexus, lun: u64, cdb: [u8; 16], cdb_len: usize },
    /// The data-out phase ended: write the target's buffer through the task, then its status.
    FinishOut { task: Box<dyn DataOutTask>, buf: Vec<u8> },
}

/// What a target is ready for when it reselects.
pub(super) enum Ready {
    /// Status (and sense).
    Status(Outcome),
    /// A data-in phase. With `buf`, the target's buffer holds the data (`failed`: the task failed after the bytes in
    /// `buf`); without it, the task produces the data as it moves.
    DataIn { len: u64, task: Box<dyn DataInTask>, buf: Option<Vec<u8>>, failed: Option<Outcome> },
    /// A data-out phase.
    DataOut { len: u64, task: Box<dyn DataOutTask> },
}

impl From<Begin> for Ready {
    /// A command begun on the bus: its task produces or takes the data as it moves.
    fn from(begun: Begin) -> Self {
        match begun {
            Begin::Complete(outcome) => Ready::Status(outcome),
            Begin::DataIn { len, task } => Ready::DataIn { len, task, buf: None, failed: None },
            Begin::DataOut { len, task } => Ready::DataOut { len, task },
        }
    }
}

impl Ready {
    /// The command is gone (aborted, reset) while its target worked: the task ends with nothing moved.
    pub(super) fn discard(self) {
        match self {
            Ready::Status(_) => {}
            Ready::DataIn { task, .. } => {
                let _ = task.finish(0);
            }
            Ready::DataOut { task, .. } => {
                let _ = task.finish(0);
            }
        }
    }
}

fn run(job: Job) -> Ready {
    match job {
        Job::Begin { device, nexus, lun, cdb, cdb_len } => match device.begin(nexus, lun, &cdb[..cdb_len]) {
            Begin::Complete(outcome) => Ready::Status(outcome),
            Begin::DataOut { len, task } => Ready::DataOut { len, task },
            Begin::DataIn { len, task } if len > TARGET_BUFFER => Ready::DataIn { len, task, buf: None, failed: None },
            Begin::DataIn { len, mut task } => {
                let mut buf = vec![0u8; len as usize];
                let mut done = 0usize;
                let mut failed = None;
                while done < buf.len() {
                    let n = (buf.len() - done).min(READ_PIECE);
                    if let Err(outcome) = task.read(done as u64, &mut buf[done..done + n]) {
                        failed = Some(outcome);
                        break;
                    }
                    done += n;
                }
                buf.truncate(done);
                Ready::DataIn { len, task, buf: Some(buf), failed }
            }
        },
        Job::FinishOut { mut task, buf } => {
            let len = buf.len() as u64;
            let outcome = match task.write(0, &buf) {
                Ok(()) => task.finish(len),
                Err(failed) => {
                    let _ = task.finish(0);
                    failed
                }
            };
            Ready::Status(outcome)
        }
    }
}

/// Shared between the card and its pool.
#[derive(Default)]
struct Mailbox {
    done: Mutex<Vec<(u64, Ready)>>,
    pending: AtomicBool,
    /// Jobs submitted whose result has not reached `done` yet.
    in_flight: AtomicUsize,
    waker: Mutex<Option<Waker>>,
}

/// The pool and its mailbox.
pub(super) struct Background {
    mailbox: Arc<Mailbox>,
    jobs: Option<crossbeam_channel::Sender<(u64, Job)>>,
}

impl Default for Background {
    fn default() -> Self {
        Background { mailbox: Arc::new(Mailbox::default()), jobs: None }
    }
}

impl Background {
    pub(super) fn set_waker(&self, waker: Waker) {
        *self.mailbox.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker);
    }

    /// Start `job` for the command `id`.
    pub(super) fn submit(&mut self, id: u64, job: Job) {
        let tx = self.jobs.get_or_insert_with(|| {
            let (tx, rx) = crossbeam_channel::unbounded::<(u64, Job)>();
            for i in 0..WORKERS {
                let rx = rx.clone();
                let mailbox = self.mailbox.clone();
                let spawned = std::thread::Builder::new().name(format!("target-{i}")).spawn(move || {
                    for (id, job) in rx.iter() {
                        let ready = run(job);
                        mailbox.done.lock().unwrap_or_else(|e| e.into_inner()).push((id, ready));
                        mailbox.pending.store(true, Ordering::Release);
                        mailbox.in_flight.fetch_sub(1, Ordering::AcqRel);
                        let waker = mailbox.waker.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        if let Some(w) = waker {
                            w();
                        }
                    }
                });
                // A pool that could not start every thread still works with the threads it has; with none, the job
                // waits in the channel until the card drops it (its command then ends with a bus reset or abort).
                drop(spawned);
            }
            tx
        });
        self.mailbox.in_flight.fetch_add(1, Ordering::AcqRel);
        if tx.send((id, job)).is_err() {
            self.mailbox.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Whether jobs are still running (their results will arrive by themselves).
    pub(super) fn busy(&self) -> bool {
        self.mailbox.in_flight.load(Ordering::Acquire) > 0
    }

    /// Whether results wait in the mailbox.
    pub(super) fn pending(&self) -> bool {
        self.mailbox.pending.load(Ordering::Acquire)
    }

    /// The results that arrived, in arrival order.
    pub(super) fn take(&self) -> Vec<(u64, Ready)> {
        self.mailbox.pending.store(false, Ordering::Release);
        std::mem::take(&mut *self.mailbox.done.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
