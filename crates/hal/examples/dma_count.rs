//! A fixed number of 64 KiB DMA operations (the `dma` bench's `channel5_no_bounce`: map,
//! DREQ service on channel 5, flush), for counting instructions with
//! `valgrind --tool=callgrind`, which load on the machine does not change:
//!
//! ```text
//! cargo build --release -p hal --example dma_count
//! valgrind --tool=callgrind target/release/examples/dma_count 200
//! ```

use std::hint::black_box;

use hal::{
    DeviceDescription, Direction, DmaChannel, DmaDevice, DmaSpeed, DmaWidth, Hal, HalConfig, Placement, SystemMemory,
};

const LEN: usize = 64 << 10;

struct Sink {
    out: Vec<u8>,
    at: usize,
}

impl DmaDevice for Sink {
    fn dreq(&self) -> bool {
        self.at < self.out.len()
    }
    fn dma_write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.out.len() - self.at);
        self.out[self.at..self.at + n].copy_from_slice(&data[..n]);
        self.at += n;
        n
    }
    fn dma_read(&mut self, _buf: &mut [u8]) -> usize {
        0
    }
}

fn main() {
    let ops: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let mem = SystemMemory::new(64 << 20).expect("memory");
    let hal = Hal::new(mem.clone(), HalConfig::default()).expect("hal");
    let ch = DmaChannel::new(5).expect("channel");
    let adapter = hal
        .get_adapter(&DeviceDescription {
            master: false,
            dma_channel: ch,
            dma_width: DmaWidth::Bits16,
            dma_speed: DmaSpeed::Compatible,
            demand_mode: true,
            auto_initialize: false,
            maximum_length: 0,
            dma32_bit_addresses: false,
        })
        .expect("adapter");
    let buf = mem.alloc(LEN, Placement::Contiguous { below_16m: true, align: 128 << 10 }).expect("buffer");
    let fill: Vec<u8> = (0..LEN).map(|i| i as u8).collect();
    buf.write(0, &fill).expect("fill");
    let mut grant = adapter.allocate_channel(17, Box::new(|| {})).expect("allocate").expect("free channel");
    let mut sink = Sink { out: vec![0; LEN], at: 0 };
    let mut moved = 0u64;
    for _ in 0..ops {
        sink.at = 0;
        let info = adapter.map_transfer(&mut grant, &buf, 0, LEN, Direction::ToDevice).expect("map");
        assert!(!info.bounced);
        let s = &mut sink;
        let out = hal.with_dma(|ctl, mem| ctl.service(ch, mem, s));
        assert!(out.terminal_count);
        moved += out.bytes;
        adapter.flush_adapter_buffers(&mut grant, &buf, 0, LEN, Direction::ToDevice).expect("flush");
        black_box(&sink.out);
    }
    assert_eq!(sink.out, fill);
    println!("{ops} operations, {moved} bytes");
}
