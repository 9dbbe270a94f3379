//! `ScsiPortNotification(RequestTimerCall)` (docs/ddk.md §4): one outstanding timer per miniport, a new request replaces
//! the pending one, an interval of 0 cancels it, and the routine runs on the engine thread (serialized with
//! `HwInterrupt`). Driven by a PIO miniport whose SRBs say what to do with the timer.

mod pio;

use port::{LuAddress, Notification, PortContext, Srb, SrbHandle, SrbStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Counters {
    a: AtomicU32,
    b: AtomicU32,
}

struct Ext {
    counters: Arc<Counters>,
}

fn timer_a(e: &mut Ext, _: &mut PortContext<'_, Ext>) {
    e.counters.a.fetch_add(1, Ordering::SeqCst);
}

fn timer_b(e: &mut Ext, _: &mut PortContext<'_, Ext>) {
    e.counters.b.fetch_add(1, Ordering::SeqCst);
}

/// CDB byte 0 picks the timer action: 1 = arm A in 20 ms, 2 = arm B in 20 ms, 3 = cancel, 4 = arm A then replace it
/// with B at once.
fn start_io(_: &mut Ext, ctx: &mut PortContext<'_, Ext>, h: SrbHandle) -> bool {
    let op = ctx.srb(h).map(|s| s.cdb().first().copied().unwrap_or(0)).unwrap_or(0);
    match op {
        1 => ctx.notification(Notification::RequestTimerCall(timer_a, 20_000)),
        2 => ctx.notification(Notification::RequestTimerCall(timer_b, 20_000)),
        3 => ctx.notification(Notification::RequestTimerCall(timer_a, 0)),
        4 => {
            ctx.notification(Notification::RequestTimerCall(timer_a, 20_000));
            ctx.notification(Notification::RequestTimerCall(timer_b, 20_000));
        }
        _ => {}
    }
    if let Some(mut s) = ctx.srb(h) {
        s.set_srb_status(SrbStatus::SUCCESS);
        s.complete();
    }
    ctx.notification(Notification::NextRequest);
    true
}

fn adapter() -> (port::AdapterHandle, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    (pio::start(Ext { counters: counters.clone() }, start_io, false), counters)
}

fn send(h: &port::AdapterHandle, op: u8) {
    let s = h.execute(Srb::execute_scsi(LuAddress { path_id: 0, target_id: 0, lun: 0 }, &[op, 0, 0, 0, 0, 0]));
    assert_eq!(s.srb_status, SrbStatus::SUCCESS);
}

/// Wait until `f` holds or 2 s pass.
fn eventually(f: impl Fn() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

#[test]
fn a_requested_timer_fires_once_after_its_interval() {
    let (h, c) = adapter();
    let armed = Instant::now();
    send(&h, 1);
    assert!(eventually(|| c.a.load(Ordering::SeqCst) == 1), "timer A fired");
    assert!(armed.elapsed() >= Duration::from_millis(20), "not before its interval");
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(c.a.load(Ordering::SeqCst), 1, "a timer fires once per request");
    assert!(h.violations().is_empty());
    h.shutdown();
}

#[test]
fn a_new_request_replaces_the_pending_timer() {
    let (h, c) = adapter();
    send(&h, 4);
    assert!(eventually(|| c.b.load(Ordering::SeqCst) == 1), "the replacing timer fired");
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(c.a.load(Ordering::SeqCst), 0, "the replaced timer never fires");
    h.shutdown();
}

#[test]
fn an_interval_of_zero_cancels_the_pending_timer() {
    let (h, c) = adapter();
    send(&h, 2);
    send(&h, 3);
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(c.b.load(Ordering::SeqCst), 0, "cancelled before it was due");
    send(&h, 2);
    assert!(eventually(|| c.b.load(Ordering::SeqCst) == 1), "a timer requested after the cancel still fires");
    h.shutdown();
}
