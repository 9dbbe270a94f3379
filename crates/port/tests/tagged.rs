//! Several outstanding SRBs per logical unit: with tagged queuing and `MultipleRequestPerLu`, `NextLuRequest` lets the
//! port start another tagged SRB for an LU whose earlier SRBs are still active, each with its own queue tag; without
//! it the port keeps one SRB per LU (docs/ddk.md §4).

mod pio;

use parking_lot::Mutex;
use port::{LuAddress, Notification, PortContext, Srb, SrbFlags, SrbHandle, SrbStatus};
use std::sync::Arc;
use std::time::Duration;

/// Queue tags of the SRBs the miniport held, and how many were active at once at most.
type Seen = Arc<Mutex<(Vec<u8>, usize)>>;

/// Holds every SRB it is given until it has `batch` of them, then completes them all from its timer.
struct Ext {
    batch: usize,
    queued: bool,
    held: Vec<SrbHandle>,
    seen: Seen,
}

fn complete_all(e: &mut Ext, ctx: &mut PortContext<'_, Ext>) {
    for h in std::mem::take(&mut e.held) {
        if let Some(mut s) = ctx.srb(h) {
            s.set_srb_status(SrbStatus::SUCCESS);
            s.complete();
        }
    }
    ctx.notification(Notification::NextRequest);
}

fn start_io(e: &mut Ext, ctx: &mut PortContext<'_, Ext>, h: SrbHandle) -> bool {
    let Some(s) = ctx.srb(h) else { return true };
    let (tag, address) = (s.queue_tag(), s.address());
    e.held.push(h);
    {
        let mut seen = e.seen.lock();
        seen.0.push(tag);
        seen.1 = seen.1.max(e.held.len());
    }
    if e.held.len() >= e.batch {
        ctx.notification(Notification::RequestTimerCall(complete_all, 1_000));
    } else if e.queued {
        ctx.notification(Notification::NextLuRequest(address));
    } else {
        // An untagged adapter asks for more work in general; the port still keeps one SRB per LU.
        ctx.notification(Notification::NextRequest);
        ctx.notification(Notification::RequestTimerCall(complete_all, 20_000));
    }
    true
}

fn adapter(queued: bool, batch: usize) -> (port::AdapterHandle, Seen) {
    let seen: Seen = Arc::new(Mutex::new((Vec::new(), 0)));
    (pio::start(Ext { batch, queued, held: Vec::new(), seen: seen.clone() }, start_io, queued), seen)
}

fn run_four(h: &port::AdapterHandle) -> Vec<Srb> {
    let (tx, rx) = crossbeam_channel::unbounded();
    for _ in 0..4 {
        let mut srb = Srb::execute_scsi(LuAddress { path_id: 0, target_id: 0, lun: 0 }, &[0; 6]);
        srb.srb_flags.insert(SrbFlags::QUEUE_ACTION_ENABLE);
        let tx = tx.clone();
        h.submit_with(srb, move |s| {
            let _ = tx.send(s);
        });
    }
    (0..4).map(|_| rx.recv_timeout(Duration::from_secs(5)).expect("every SRB completes")).collect()
}

#[test]
fn tagged_srbs_for_one_lu_are_outstanding_together_with_distinct_tags() {
    let (h, seen) = adapter(true, 4);
    let done = run_four(&h);
    assert!(done.iter().all(|s| s.srb_status == SrbStatus::SUCCESS));
    let (tags, most) = seen.lock().clone();
    assert_eq!(most, 4, "all four were active on the LU at once");
    let mut unique = tags.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 4, "each active SRB has its own queue tag: {tags:?}");
    assert!(tags.iter().all(|t| *t != port::SP_UNTAGGED));
    assert!(h.violations().is_empty(), "{:?}", h.violations());
    h.shutdown();
}

#[test]
fn without_per_lu_queuing_the_port_keeps_one_srb_per_lu() {
    let (h, seen) = adapter(false, 4);
    let done = run_four(&h);
    assert!(done.iter().all(|s| s.srb_status == SrbStatus::SUCCESS));
    assert_eq!(seen.lock().1, 1, "never two active SRBs on one LU");
    h.shutdown();
}
