//! A programmed-I/O adapter for port tests that need no DMA: a card with nothing but ports, and a builder that starts
//! a miniport on it with the given `HwStartIo` and per-LU queuing.

#![allow(dead_code)]

use hal::{Hal, HalConfig, SystemMemory};
use port::{
    AdapterHandle, AdapterOptions, AdapterResources, FindAdapterStatus, HbaHardware, HwInitializationData,
    InterfaceType, IoWidth, PortConfigurationInformation, PortContext, SrbHandle,
};

/// A card with nothing but ports: no DMA, no interrupts.
pub struct Quiet;

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

fn find<E>(_: &mut E, _: &mut PortContext<'_, E>, c: &mut PortConfigurationInformation) -> FindAdapterStatus {
    // A PIO adapter: no DMA channel.
    c.dma_channel = port::SP_UNINITIALIZED_VALUE;
    FindAdapterStatus::Found
}

fn init<E>(_: &mut E, _: &mut PortContext<'_, E>) -> bool {
    true
}

fn reset<E>(_: &mut E, _: &mut PortContext<'_, E>, _: u8) -> bool {
    true
}

/// Start a PIO miniport with extension `ext` and `start_io`; `queued` turns on tagged queuing and several requests
/// per LU.
pub fn start<E: Send + 'static>(
    ext: E,
    start_io: fn(&mut E, &mut PortContext<'_, E>, SrbHandle) -> bool,
    queued: bool,
) -> AdapterHandle {
    let mem = SystemMemory::new(32 << 20).expect("memory");
    let hal = Hal::new(mem, HalConfig { map_register_pages: 64, ..HalConfig::default() }).expect("hal");
    let init_data = HwInitializationData {
        adapter_interface_type: InterfaceType::Isa,
        hw_initialize: init::<E>,
        hw_start_io: start_io,
        hw_interrupt: None,
        hw_find_adapter: find::<E>,
        hw_reset_bus: reset::<E>,
        hw_dma_started: None,
        hw_adapter_control: None,
        map_buffers: false,
        need_physical_addresses: false,
        tagged_queuing: queued,
        auto_request_sense: true,
        multiple_request_per_lu: queued,
    };
    let res = AdapterResources { io_base: 0x340, io_length: 16, interrupt_level: 10, dma_channel: None };
    AdapterHandle::start(hal, init_data, ext, Box::new(Quiet), res, AdapterOptions::default()).expect("adapter starts")
}
