//! Data-path cost of the disk logical unit over the RAM backend: bulk reads and writes
//! moved in 64 KiB chunks (as the HBA's DMA does), and per-command overhead of small reads.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scsi::{Begin, Disk, DiskConfig, LogicalUnit, Nexus, RamBackend};
use std::sync::Arc;

const CHUNK: usize = 64 * 1024;

fn disk() -> Disk {
    let cfg = DiskConfig { power_on_unit_attention: false, ..DiskConfig::default() };
    Disk::new(cfg, Arc::new(RamBackend::new(256 << 20))).expect("valid config")
}

fn rw10(op: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let n = blocks.to_be_bytes();
    [op, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]
}

fn bench_bulk(c: &mut Criterion) {
    let d = disk();
    let n = Nexus::new(1);
    let mut g = c.benchmark_group("bulk");
    for &bytes in &[64 * 1024usize, 1 << 20] {
        let blocks = (bytes / 512) as u16;
        let mut buf = vec![0x5Au8; bytes];
        if let Begin::DataOut { mut task, .. } = d.begin(n, &rw10(0x2A, 0, blocks)) {
            task.write(0, &buf).expect("write");
            task.finish(bytes as u64);
        }
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_with_input(BenchmarkId::new("read", bytes), &bytes, |b, _| {
            b.iter(|| match d.begin(n, &rw10(0x28, 0, blocks)) {
                Begin::DataIn { len, mut task } => {
                    let mut off = 0usize;
                    while (off as u64) < len {
                        let end = (off + CHUNK).min(bytes);
                        task.read(off as u64, &mut buf[off..end]).expect("read");
                        off = end;
                    }
                    task.finish(len)
                }
                other => panic!("{other:?}"),
            })
        });
        g.bench_with_input(BenchmarkId::new("write", bytes), &bytes, |b, _| {
            b.iter(|| match d.begin(n, &rw10(0x2A, 0, blocks)) {
                Begin::DataOut { len, mut task } => {
                    let mut off = 0usize;
                    while (off as u64) < len {
                        let end = (off + CHUNK).min(bytes);
                        task.write(off as u64, &buf[off..end]).expect("write");
                        off = end;
                    }
                    task.finish(len)
                }
                other => panic!("{other:?}"),
            })
        });
    }
    g.finish();
}

fn bench_small(c: &mut Criterion) {
    let d = disk();
    let n = Nexus::new(1);
    let mut buf = vec![0u8; 4096];
    c.bench_function("read_4k_command", |b| {
        let mut lba = 0u32;
        b.iter(|| {
            lba = (lba + 8) % (256 * 2048 - 8);
            match d.begin(n, &rw10(0x28, lba, 8)) {
                Begin::DataIn { mut task, .. } => {
                    task.read(0, &mut buf).expect("read");
                    task.finish(4096)
                }
                other => panic!("{other:?}"),
            }
        })
    });
    c.bench_function("test_unit_ready", |b| b.iter(|| d.begin(n, &[0; 6])));
}

criterion_group!(benches, bench_bulk, bench_small);
criterion_main!(benches);
