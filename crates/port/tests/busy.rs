//! "Return from HwScsiStartIo" (DDK.md §1.5): a miniport defers an SRB with `SRB_STATUS_BUSY` (RequestComplete and
//! NextRequest) and the port resubmits it later; the caller sees only the final outcome.

use hal::{Hal, HalConfig, SystemMemory};
use port::{
    AdapterOptions, AdapterResources, FindAdapterStatus, HbaHardware, HwInitializationData, InterfaceType, IoWidth,
    LuAddress, Notification, PortConfigurationInformation, PortContext, Srb, SrbHandle, SrbStatus,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

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

fn find(_: &mut Ext, _: &mut PortContext<'_, Ext>, c: &mut PortConfigurationInformation) -> FindAdapterStatus {
    c.dma_channel = port::SP_UNINITIALIZED_VALUE;
    FindAdapterStatus::Found
}

fn init(_: &mut Ext, _: &mut PortContext<'_, Ext>) -> bool {
    true
}

fn reset(_: &mut Ext, _: &mut PortContext<'_, Ext>, _: u8) -> bool {
    true
}

fn adapter(busy: u32) -> (port::AdapterHandle, Arc<AtomicU32>) {
    let mem = SystemMemory::new(32 << 20).unwrap();
    let hal = Hal::new(mem, HalConfig { map_register_pages: 64 }).unwrap();
    let starts = Arc::new(AtomicU32::new(0));
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
        tagged_queuing: false,
        auto_request_sense: false,
        multiple_request_per_lu: false,
    };
    let res = AdapterResources { io_base: 0x340, io_length: 16, interrupt_level: 10, dma_channel: None };
    let ext = Ext { busy, starts: starts.clone() };
    let h = port::AdapterHandle::start(hal, init_data, ext, Box::new(Quiet), res, AdapterOptions::default()).unwrap();
    (h, starts)
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
