//! Throughput of the whole adapter path (port → miniport → card → 8237 → disk) against a plain memcpy of the same
//! bytes, in the same run.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hal::{Hal, HalConfig, Placement, SystemMemory};
use hba::{start_adapter, HbaConfig};
use port::{AdapterOptions, DataDirection, LuAddress, PassThrough, Srb, SrbFlags, SrbStatus};
use scsi::{Disk, DiskConfig, RamBackend, Target};
use std::sync::Arc;

const LU0: LuAddress = LuAddress { path_id: 0, target_id: 0, lun: 0 };

fn read16(lba: u64, blocks: u32) -> Vec<u8> {
    let mut c = vec![0x88, 0];
    c.extend_from_slice(&lba.to_be_bytes());
    c.extend_from_slice(&blocks.to_be_bytes());
    c.extend_from_slice(&[0, 0]);
    c
}

fn bench(c: &mut Criterion) {
    let mem = SystemMemory::new(64 << 20).expect("memory");
    let hal = Hal::new(mem.clone(), HalConfig::default()).expect("hal");
    let cfg = DiskConfig { blocks: 16384, power_on_unit_attention: false, ..DiskConfig::default() };
    let disk = Arc::new(Disk::new(cfg, Arc::new(RamBackend::new(16384 * 512))).expect("disk"));
    let target = Arc::new(Target::new());
    target.add_lun(0, disk);
    // Written blocks, so that reads copy real data rather than zero-fill thin-provisioned ones.
    let mut cdb = read16(0, 16384);
    cdb[0] = 0x8A;
    let fill = vec![0xA5u8; 16384 * 512];
    let (written, _) = scsi::execute_on_target(&target, scsi::Nexus::new(1), 0, &cdb, &fill, 0);
    assert!(written.is_good());
    let hcfg = HbaConfig { dma_channel: 5, targets: vec![(0, target)], ..HbaConfig::default() };
    let handle = start_adapter(hal, hcfg, AdapterOptions::default()).expect("adapter");

    let mut g = c.benchmark_group("adapter");
    g.throughput(Throughput::Bytes(64 << 10));
    for (name, placement) in [
        ("read_64k_srb_direct", Placement::Contiguous { below_16m: true, align: 128 << 10 }),
        ("read_64k_srb_bounced", Placement::Above16M),
    ] {
        let buf = mem.alloc(64 << 10, placement).expect("buffer");
        g.bench_function(name, |b| {
            b.iter(|| {
                let s = handle.execute(Srb::execute_scsi(LU0, &read16(0, 128)).with_data(
                    &buf,
                    0,
                    64 << 10,
                    SrbFlags::DATA_IN,
                ));
                assert_eq!(s.srb_status, SrbStatus::SUCCESS);
            })
        });
    }
    let src = vec![0x5Au8; 64 << 10];
    let mut dst = vec![0u8; 64 << 10];
    g.bench_function("memcpy_64k", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
    g.throughput(Throughput::Bytes(4 << 20));
    let big = mem.alloc(4 << 20, Placement::Any).expect("buffer");
    g.bench_function("pass_through_read_4m", |b| {
        b.iter(|| {
            let req = PassThrough {
                address: LU0,
                cdb: read16(0, 8192),
                direction: DataDirection::In,
                buffer: Some(big.clone()),
                offset: 0,
                length: 4 << 20,
                timeout_secs: 30,
                tagged: false,
            };
            let s = handle.execute(handle.pass_through_srb(&req).expect("accepted"));
            assert_eq!(s.srb_status, SrbStatus::SUCCESS);
        })
    });
    g.finish();
    handle.shutdown();
}

criterion_group!(benches, bench);
criterion_main!(benches);
