//! 64 KiB through a DMA channel (no bounce, contiguous below 16 MiB, a device that
//! memcpys into a Vec) against a plain memcpy of the same bytes, in the same run.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use hal::{
    AdapterObject, Buffer, ChannelGrant, DeviceDescription, Direction, DmaChannel, DmaDevice, DmaSpeed, DmaWidth, Hal,
    HalConfig, Placement, SystemMemory,
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

struct Rig {
    hal: Arc<Hal>,
    adapter: AdapterObject,
    grant: ChannelGrant,
    buf: Buffer,
    sink: Sink,
}

fn rig() -> Rig {
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
    let grant = adapter.allocate_channel(17, Box::new(|| {})).expect("allocate").expect("free channel");
    Rig { hal, adapter, grant, buf, sink: Sink { out: vec![0; LEN], at: 0 } }
}

/// One whole DMA operation: map (programs the 8237), DREQ service, flush.
fn dma_once(r: &mut Rig) {
    r.sink.at = 0;
    let info = r.adapter.map_transfer(&mut r.grant, &r.buf, 0, LEN, Direction::ToDevice).expect("map");
    debug_assert!(!info.bounced);
    let ch = r.adapter.channel();
    let sink = &mut r.sink;
    let out = r.hal.with_dma(|ctl, mem| ctl.service(ch, mem, sink));
    debug_assert!(out.terminal_count);
    r.adapter.flush_adapter_buffers(&mut r.grant, &r.buf, 0, LEN, Direction::ToDevice).expect("flush");
    black_box(&r.sink.out);
}

fn memcpy_once(src: &[u8], dst: &mut [u8]) {
    dst.copy_from_slice(black_box(src));
    black_box(dst);
}

fn bench(c: &mut Criterion) {
    let mut r = rig();
    let src: Vec<u8> = (0..LEN).map(|i| i as u8).collect();
    let mut dst = vec![0u8; LEN];
    let mut g = c.benchmark_group("dma_64k");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.bench_function("channel5_no_bounce", |b| b.iter(|| dma_once(&mut r)));
    g.bench_function("memcpy", |b| b.iter(|| memcpy_once(&src, &mut dst)));
    g.finish();
}

/// Time per operation of `iters` calls.
fn per_op(f: &mut impl FnMut(), iters: u32) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed() / iters
}

/// The ratio, from interleaved rounds (so both sides see the same machine load), keeping
/// each side's best round.
fn ratio() {
    let mut r = rig();
    let src: Vec<u8> = (0..LEN).map(|i| i as u8).collect();
    let mut dst = vec![0u8; LEN];
    let mut dma_op = || dma_once(&mut r);
    let mut copy_op = || memcpy_once(&src, &mut dst);
    let (mut dma, mut copy) = (Duration::MAX, Duration::MAX);
    for _ in 0..40 {
        dma = dma.min(per_op(&mut dma_op, 1000));
        copy = copy.min(per_op(&mut copy_op, 1000));
    }
    let gib = |d: Duration| LEN as f64 / d.as_secs_f64() / f64::from(1 << 30);
    println!(
        "64 KiB: DMA {:?} ({:.2} GiB/s), memcpy {:?} ({:.2} GiB/s), ratio {:.3} (target >= 0.8)",
        dma,
        gib(dma),
        copy,
        gib(copy),
        copy.as_secs_f64() / dma.as_secs_f64()
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratio();
}
