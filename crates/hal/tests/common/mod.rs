//! Shared test fixtures: a HAL on 32 MiB of memory and a fake DMA device.

#![allow(dead_code)]

use std::sync::Arc;

use hal::{
    AdapterObject, Buffer, DeviceDescription, DmaChannel, DmaDevice, DmaSpeed, DmaWidth, Hal, HalConfig,
    ServiceOutcome, SystemMemory,
};

pub fn hal_with(pages: u32) -> Arc<Hal> {
    let mem = SystemMemory::new(32 << 20).unwrap();
    Hal::new(mem, HalConfig { map_register_pages: pages, ..HalConfig::default() }).unwrap()
}

pub fn desc(channel: u8, maximum_length: u32) -> DeviceDescription {
    let ch = DmaChannel::new(channel).unwrap();
    DeviceDescription {
        master: false,
        dma_channel: ch,
        dma_width: if ch.is_16bit() { DmaWidth::Bits16 } else { DmaWidth::Bits8 },
        dma_speed: DmaSpeed::Compatible,
        demand_mode: true,
        auto_initialize: false,
        maximum_length,
        dma32_bit_addresses: false,
    }
}

pub fn adapter(hal: &Arc<Hal>, channel: u8, maximum_length: u32) -> AdapterObject {
    hal.get_adapter(&desc(channel, maximum_length)).unwrap()
}

/// A device that supplies `source` (device → memory) or collects into `sink`
/// (memory → device), handling at most `budget` bytes.
#[derive(Default)]
pub struct FakeDevice {
    pub source: Vec<u8>,
    pub pos: usize,
    pub sink: Vec<u8>,
    pub budget: usize,
    pub eop: u32,
}

impl FakeDevice {
    pub fn supplying(source: Vec<u8>) -> Self {
        Self { budget: source.len(), source, ..Self::default() }
    }

    pub fn taking(budget: usize) -> Self {
        Self { budget, ..Self::default() }
    }
}

impl DmaDevice for FakeDevice {
    fn dreq(&self) -> bool {
        self.budget > 0
    }
    fn dma_write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.budget);
        self.sink.extend_from_slice(&data[..n]);
        self.budget -= n;
        n
    }
    fn dma_read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.budget).min(self.source.len() - self.pos);
        buf[..n].copy_from_slice(&self.source[self.pos..self.pos + n]);
        self.pos += n;
        self.budget -= n;
        n
    }
    fn terminal_count(&mut self) {
        self.eop += 1;
    }
}

pub fn run(hal: &Hal, ch: DmaChannel, dev: &mut FakeDevice) -> ServiceOutcome {
    hal.with_dma(|ctl, mem| ctl.service(ch, mem, dev))
}

pub fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn contents(b: &Buffer) -> Vec<u8> {
    let mut v = vec![0; b.len()];
    b.read(0, &mut v).unwrap();
    v
}
