//! "Return from HwScsiStartIo" (docs/ddk.md §5): a miniport defers an SRB with `SRB_STATUS_BUSY` (RequestComplete and
//! NextRequest) and the port resubmits it later; the caller sees only the final outcome.

mod pio;

use port::{LuAddress, Notification, PortContext, Srb, SrbHandle, SrbStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Defers the first `busy` SRBs it is given, completes the rest.
struct Ext {
    busy: u32,
    starts: Arc<AtomicU32>,
}

fn start_io(e: &mut Ext, ctx: &mut PortContext<'_, Ext>, h: SrbHandle) -> bool {
    e.starts.fetch_add(1, Ordering::SeqCst);
    let status = if e.busy > 0 {
        e.busy -= 1;
        SrbStatus::BUSY
    } else {
        SrbStatus::SUCCESS
    };
    if let Some(mut s) = ctx.srb(h) {
        s.set_srb_status(status);
        s.complete();
    }
    ctx.notification(Notification::NextRequest);
    true
}

fn adapter(busy: u32) -> (port::AdapterHandle, Arc<AtomicU32>) {
    let starts = Arc::new(AtomicU32::new(0));
    (pio::start(Ext { busy, starts: starts.clone() }, start_io, false), starts)
}

fn tur() -> Srb {
    Srb::execute_scsi(LuAddress { path_id: 0, target_id: 0, lun: 0 }, &[0; 6])
}

#[test]
fn an_srb_deferred_with_busy_is_resubmitted_until_the_miniport_takes_it() {
    let (h, starts) = adapter(3);
    let t = Instant::now();
    let s = h.execute(tur());
    assert_eq!(s.srb_status, SrbStatus::SUCCESS, "the caller sees the final outcome");
    assert_eq!(starts.load(Ordering::SeqCst), 4, "three deferrals, then the miniport took it");
    assert!(t.elapsed() >= port::BUSY_RETRY_DELAY * 3, "each resubmission waited");
    assert_eq!(h.stats().srbs_completed, 1, "one SRB returned to its caller");
    assert!(h.violations().is_empty(), "{:?}", h.violations());
    h.shutdown();
}

#[test]
fn an_srb_the_miniport_always_defers_returns_busy_after_the_limit() {
    let (h, starts) = adapter(u32::MAX);
    let s = h.execute(tur());
    assert_eq!(s.srb_status, SrbStatus::BUSY);
    assert_eq!(starts.load(Ordering::SeqCst), port::BUSY_RESUBMIT_LIMIT + 1);
    h.shutdown();
}
