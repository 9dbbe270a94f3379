//! Several outstanding SRBs per logical unit: with tagged queuing and `MultipleRequestPerLu`, `NextLuRequest` lets the
//! port start another tagged SRB for an LU whose earlier SRBs are still active, each with its own queue tag; without
//! it the port keeps one SRB per LU (DDK.md §1.4).

use hal::{Hal, HalConfig, SystemMemory};
use parking_lot::Mutex;
use port::{
    AdapterOptions, AdapterResources, FindAdapterStatus, HbaHardware, HwInitializationData, InterfaceType, IoWidth,
    LuAddress, Notification, PortConfigurationInformation, PortContext, Srb, SrbFlags, SrbHandle, SrbStatus,
};
use std::sync::Arc;
use std::time::Duration;

struct Quiet;

impl hal::DmaDevice for Quiet {
    fn dreq(&self) -> bool {
        false
    }
    fn dma_write(&mut self, _: &[u8]) -> usize {
        0
    }
    fn dma_read(&mut self, _: &mut [u8]) -> usize {
        0
    }
}

impl HbaHardware for Quiet {
    fn io_read(&mut self, _: u16, _: IoWidth) -> u32 {
        0
    }
    fn io_write(&mut self, _: u16, _: IoWidth, _: u32) {}
    fn irq(&self) -> bool {
        false
    }
}

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

fn find(e: &mut Ext, _: &mut PortContext<'_, Ext>, c: &mut PortConfigurationInformation) -> FindAdapterStatus {
    c.dma_channel = port::SP_UNINITIALIZED_VALUE;
    c.tagged_queuing = e.queued;
    c.multiple_request_per_lu = e.queued;
    c.auto_request_sense = true;
    FindAdapterStatus::Found
}

fn init(_: &mut Ext, _: &mut PortContext<'_, Ext>) -> bool {
    true
}

fn reset(_: &mut Ext, _: &mut PortContext<'_, Ext>, _: u8) -> bool {
    true
}

fn adapter(queued: bool, batch: usize) -> (port::AdapterHandle, Seen) {
    let mem = SystemMemory::new(32 << 20).unwrap();
    let hal = Hal::new(mem, HalConfig { map_register_pages: 64 }).unwrap();
    let seen: Seen = Arc::new(Mutex::new((Vec::new(), 0)));
    let init_data = HwInitializationData {
        adapter_interface_type: InterfaceType::Isa,
        hw_initialize: init,
        hw_start_io: start_io,
        hw_interrupt: None,
        hw_find_adapter: find,
        hw_reset_bus: reset,
        hw_dma_started: None,
        hw_adapter_control: None,
        map_buffers: false,
        need_physical_addresses: false,
        tagged_queuing: queued,
        auto_request_sense: true,
        multiple_request_per_lu: queued,
    };
    let res = AdapterResources { io_base: 0x340, io_length: 16, interrupt_level: 10, dma_channel: None };
    let ext = Ext { batch, queued, held: Vec::new(), seen: seen.clone() };
    let h = port::AdapterHandle::start(hal, init_data, ext, Box::new(Quiet), res, AdapterOptions::default()).unwrap();
    (h, seen)
}

fn run_four(h: &port::AdapterHandle) -> Vec<Srb> {
    let (tx, rx) = crossbeam_channel::unbounded();
    for _ in 0..4 {
        let mut srb = Srb::execute_scsi(LuAddress { path_id: 0, target_id: 0, lun: 0 }, &[0; 6]);
        srb.srb_flags.insert(SrbFlags::QUEUE_ACTION_ENABLE);
        let tx = tx.clone();
        h.submit(srb, move |s| {
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
