//! The engine thread: it brings the adapter up, then takes requests from the adapter's handles and the HAL's channel
//! grants, runs the engine, and returns finished SRBs, until it is told to shut down.

use super::{Core, Queued, Shared};
use crate::bus::HbaHardware;
use crate::config::{AdapterResources, HwInitializationData};
use crate::srb::SrbStatus;
use crate::stats::StatsCell;
use crate::verifier::{VerifierMode, Violation};
use crate::{AdapterCapabilities, AdapterOptions, PortError};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use hal::Hal;
use parking_lot::Mutex;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What reaches the engine thread.
pub(crate) enum Msg {
    Submit(Queued),
    /// The HAL's callback: the adapter channel the engine waits for is free.
    Granted,
    Shutdown(Sender<()>),
    /// The card has something to report from another thread (see `HbaHardware::set_waker`).
    Wake,
    /// Change the verifier mode of a running adapter (between requests, on the engine thread).
    SetVerifier(VerifierMode),
}

/// A running engine.
pub(crate) struct Running {
    pub tx: Sender<Msg>,
    pub thread: JoinHandle<()>,
    pub caps: AdapterCapabilities,
}

/// Start the engine thread and bring the adapter up on it; returns once the adapter runs or failed to start.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn<E: Send + 'static>(
    hal: Arc<Hal>,
    init: HwInitializationData<E>,
    ext: E,
    hw: Box<dyn HbaHardware>,
    resources: AdapterResources,
    options: AdapterOptions,
    stats: Arc<StatsCell>,
    violations: Arc<Mutex<Vec<Violation>>>,
) -> Result<Running, PortError> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let name = options.name.clone();
    let shared = Shared { violations, stats, inbox: tx.clone() };
    let thread = std::thread::Builder::new()
        .name(format!("port-{name}"))
        .spawn(move || {
            let mut ext = ext;
            let mut core = Core::new(hal, hw, init, options, shared);
            match core.bring_up(&mut ext, &resources) {
                Ok(caps) => {
                    let _ = ready_tx.send(Ok(caps));
                    engine_loop(core, ext, rx);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })
        .map_err(|source| PortError::Spawn { name: name.clone(), source })?;
    match ready_rx.recv() {
        Ok(Ok(caps)) => Ok(Running { tx, thread, caps }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        // The thread ended without a word: a miniport routine panicked while the adapter came up.
        Err(_) => {
            let _ = thread.join();
            Err(PortError::ShutDown(name))
        }
    }
}

/// How long an idle engine thread polls for the next request before it sleeps.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(50);

fn engine_loop<E>(mut core: Core<E>, mut ext: E, rx: Receiver<Msg>) {
    let mut shutdown: Option<(Sender<()>, Instant)> = None;
    loop {
        // A busy adapter gets its next request within microseconds: look for it briefly before sleeping, which saves a
        // futex sleep and wake-up per request on both sides.
        let mut msg = None;
        if shutdown.is_none() {
            let spin_until = Instant::now() + SPIN_BEFORE_SLEEP;
            while msg.is_none() && Instant::now() < spin_until {
                match rx.try_recv() {
                    Ok(m) => msg = Some(m),
                    Err(crossbeam_channel::TryRecvError::Empty) => std::thread::yield_now(),
                    Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                }
            }
        }
        let msg = if msg.is_some() {
            msg
        } else if shutdown.is_none() && core.advance_virtual_time() {
            // Virtual time moved on to a timeout: run the engine without waiting.
            None
        } else {
            match core.next_deadline() {
                Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None if shutdown.is_some() => rx.recv_timeout(Duration::from_millis(10)).ok(),
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                },
            }
        };
        let mut next = msg;
        while let Some(m) = next {
            match m {
                Msg::Submit(q) => {
                    if shutdown.is_some() {
                        let mut s = q.srb;
                        s.srb_status = SrbStatus::REQUEST_FLUSHED;
                        (q.done)(s);
                    } else {
                        core.submit(q);
                    }
                }
                Msg::Granted => core.channel_granted(),
                Msg::Wake => {}
                Msg::SetVerifier(mode) => core.set_verifier_mode(mode),
                Msg::Shutdown(ack) => {
                    core.flush_all_queues();
                    shutdown = Some((ack, Instant::now() + Duration::from_secs(5)));
                }
            }
            next = rx.try_recv().ok();
        }
        core.run(&mut ext);
        for (srb, done) in core.take_done() {
            done(srb);
        }
        if let Some((_, until)) = &shutdown {
            if core.is_idle() || Instant::now() >= *until {
                break;
            }
        }
    }
    core.flush_all_queues();
    for (srb, done) in core.take_done() {
        done(srb);
    }
    if let Some((ack, _)) = shutdown {
        let _ = ack.send(());
    }
}
