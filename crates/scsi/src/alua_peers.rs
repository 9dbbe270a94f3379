//! Hosts that serve one RBD image as one logical unit (ALUA, one target port group each) learn of each other through
//! the cluster: each publishes a heartbeat — a counter and `up`, or `left` when it stops cleanly — in a small RADOS
//! object of the image's pool, `scsiport.alua.<image>.<group>`, once a second, and reads the others'. A group whose
//! counter has not moved for `peer_timeout`, or that said `left`, is reported unavailable; when no live group is
//! active/optimized, this host's group becomes active/optimized. A peer that comes back gets its configured state
//! again. Each change is a unit attention 06/2A/06 on this host's paths (`docs/ceph.md`). Only counters are compared,
//! never clocks of different machines.
//!
//! A reset of the unit through one host is a reset of the unit on every host: each watches
//! `scsiport.reset.<image>`, and a host whose unit is reset notifies it and waits (bounded) until every other host has
//! applied the reset's effects — unit attention 06/29/00 on all its nexuses — before the reset completes, so the
//! initiator's next command on any path sees it.

use crate::{AluaState, Disk, ObjectWatch, PortGroup, RbdBackend};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_secs(1);
/// How long a reset waits for the other hosts to acknowledge it. A host that died keeps its watch until the cluster
/// drops it (`WATCH_TIMEOUT`); until then a reset waits this long for it.
const RESET_WAIT: Duration = Duration::from_secs(3);
/// After this long without hearing from a host, the cluster drops its watch.
const WATCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The object that carries resets of `image` between hosts.
pub fn reset_object_name(image: &str) -> String {
    format!("scsiport.reset.{image}")
}

/// A reset notification's payload: the target port group of the host it came through.
fn reset_payload(group: u16) -> Vec<u8> {
    format!("reset {group}").into_bytes()
}

/// The group a reset notification came from.
fn reset_from(payload: &[u8]) -> Option<u16> {
    std::str::from_utf8(payload).ok()?.strip_prefix("reset ")?.trim().parse().ok()
}

/// Register the watch that applies other hosts' resets to `disk`.
fn watch_resets(rbd: &Arc<RbdBackend>, disk: &Arc<Disk>, image: &str, own: u16) -> Option<ObjectWatch> {
    let d = disk.clone();
    let on_notify = move |payload: &[u8]| {
        if reset_from(payload).is_some_and(|g| g != own) {
            d.reset_by_peer();
        }
    };
    match rbd.watch(&reset_object_name(image), WATCH_TIMEOUT, on_notify) {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!("{image}: cannot watch for resets through other hosts yet: {e}");
            None
        }
    }
}

/// The heartbeat object of `group` for `image` (in the image's pool).
pub fn object_name(image: &str, group: u16) -> String {
    format!("scsiport.alua.{image}.{group}")
}

/// The states to report: the configured ones, dead groups unavailable, and this host's group active/optimized when
/// no live group is.
pub fn desired(configured: &[PortGroup], own: u16, alive: impl Fn(u16) -> bool) -> Vec<PortGroup> {
    let mut out: Vec<PortGroup> = configured
        .iter()
        .map(|g| PortGroup {
            id: g.id,
            state: if g.id != own && !alive(g.id) { AluaState::Unavailable } else { g.state },
        })
        .collect();
    if !out.iter().any(|g| g.state == AluaState::ActiveOptimized) {
        if let Some(g) = out.iter_mut().find(|g| g.id == own) {
            g.state = AluaState::ActiveOptimized;
        }
    }
    out
}

/// What a heartbeat object says.
fn parse(data: &[u8]) -> Option<(u64, bool)> {
    let text = std::str::from_utf8(data).ok()?;
    let mut f = text.split_whitespace();
    let counter = f.next()?.parse().ok()?;
    Some((counter, f.next()? == "up"))
}

/// The running watcher of one logical unit.
pub struct PeerWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PeerWatch {
    pub fn start(
        rbd: Arc<RbdBackend>,
        disk: Arc<Disk>,
        image: String,
        own: u16,
        configured: Vec<PortGroup>,
        peer_timeout: Duration,
    ) -> PeerWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let notifier = rbd.clone();
        let (object, payload) = (reset_object_name(&image), reset_payload(own));
        disk.set_reset_listener(Some(Arc::new(move || {
            if let Err(e) = notifier.notify(&object, &payload, RESET_WAIT) {
                eprintln!("{object}: not every other host acknowledged the reset: {e}");
            }
        })));
        let resets = watch_resets(&rbd, &disk, &image, own);
        let thread = std::thread::Builder::new()
            .name(format!("alua-{own}"))
            .spawn(move || run(&rbd, &disk, &image, own, &configured, peer_timeout, &s, resets))
            .expect("spawn the ALUA peer watcher");
        PeerWatch { stop, thread: Some(thread) }
    }

    /// Say `left` and stop.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PeerWatch {
    fn drop(&mut self) {
        self.stop();
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    rbd: &Arc<RbdBackend>,
    disk: &Arc<Disk>,
    image: &str,
    own: u16,
    configured: &[PortGroup],
    peer_timeout: Duration,
    stop: &AtomicBool,
    mut resets: Option<ObjectWatch>,
) {
    let mine = object_name(image, own);
    let mut counter = 0u64;
    // Per peer: the last counter seen, when it last moved, and whether it said `up`.
    let mut seen: HashMap<u16, (u64, Instant, bool)> = HashMap::new();
    // A peer not heard from yet may still be starting: none is declared gone before a whole timeout has passed.
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if resets.as_ref().is_none_or(ObjectWatch::is_lost) {
            // A lost watch is unregistered before a new one replaces it.
            drop(resets.take());
            resets = watch_resets(rbd, disk, image, own);
        }
        counter += 1;
        let _ = rbd.put_object(&mine, format!("{counter} up").as_bytes());
        let now = Instant::now();
        let mut reachable = true;
        for g in configured.iter().filter(|g| g.id != own) {
            match rbd.get_object(&object_name(image, g.id), 64) {
                Ok(Some(data)) => {
                    if let Some((c, up)) = parse(&data) {
                        let e = seen.entry(g.id).or_insert((c, now, up));
                        if e.0 != c || e.2 != up {
                            *e = (c, now, up);
                        }
                    }
                }
                Ok(None) => {
                    seen.remove(&g.id);
                }
                // The cluster does not answer: nothing can be told about the peers, keep the states.
                Err(_) => reachable = false,
            }
        }
        if reachable {
            let alive = |id: u16| match seen.get(&id) {
                Some((_, moved, up)) => *up && now.duration_since(*moved) < peer_timeout,
                None => now.duration_since(started) < peer_timeout,
            };
            let want = desired(configured, own, alive);
            let have = disk.port_groups();
            for g in want {
                if have.iter().any(|h| h.id == g.id && h.state != g.state) {
                    disk.set_port_group_state(g.id, g.state);
                    println!("{image}: target port group {} is now {:?}", g.id, g.state);
                }
            }
        }
        let until = Instant::now() + INTERVAL;
        while !stop.load(Ordering::Relaxed) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    disk.set_reset_listener(None);
    drop(resets);
    let _ = rbd.put_object(&mine, format!("{counter} left").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> Vec<PortGroup> {
        vec![
            PortGroup { id: 1, state: AluaState::ActiveOptimized },
            PortGroup { id: 2, state: AluaState::ActiveNonOptimized },
            PortGroup { id: 3, state: AluaState::Standby },
        ]
    }

    fn states(v: &[PortGroup]) -> Vec<AluaState> {
        v.iter().map(|g| g.state).collect()
    }

    #[test]
    fn all_alive_keeps_the_configured_states() {
        assert_eq!(desired(&groups(), 2, |_| true), groups());
    }

    #[test]
    fn the_optimized_host_leaving_promotes_this_one() {
        use AluaState::*;
        assert_eq!(states(&desired(&groups(), 2, |id| id != 1)), [Unavailable, ActiveOptimized, Standby]);
        // This host is not the one that left, and another optimized group lives: no promotion.
        assert_eq!(states(&desired(&groups(), 3, |id| id != 2)), [ActiveOptimized, Unavailable, Standby]);
        // Alone: this host serves optimized whatever it was configured as.
        assert_eq!(states(&desired(&groups(), 3, |_| false)), [Unavailable, Unavailable, ActiveOptimized]);
    }

    #[test]
    fn reset_notifications_name_their_group_and_garbage_is_ignored() {
        assert_eq!(reset_from(&reset_payload(2)), Some(2));
        assert_eq!(reset_from(b"reset x"), None);
        assert_eq!(reset_from(b""), None);
        assert_eq!(reset_from(&[0xFF]), None);
    }

    #[test]
    fn heartbeats_parse_and_garbage_is_ignored() {
        assert_eq!(parse(b"17 up"), Some((17, true)));
        assert_eq!(parse(b"18 left"), Some((18, false)));
        assert_eq!(parse(b"x up"), None);
        assert_eq!(parse(&[0xFF, 0x20]), None);
    }
}
