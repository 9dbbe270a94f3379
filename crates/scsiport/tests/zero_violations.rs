//! The reference miniport under a long mixed workload reports zero violations: class-driver and pass-through
//! requests, an adapter on 16-bit channel 5 (two logical units) and one on 8-bit channel 1, buffers physically
//! contiguous (no bounce), scattered (bounce) and above 16 MiB (bounce), all at once; every byte read back is checked
//! against a shadow copy of each disk.

use hal::{Buffer, Placement};
use port::{DataDirection, PassThrough, SrbStatus};
use rand::{Rng, SeedableRng};
use scsiport::config::{AdapterConfig, BackendKind, Config, DiskConfig};
use scsiport::machine::Machine;
use scsiport::size::ByteSize;

const DISK: u64 = 4 << 20;
const OPS_PER_LU: usize = 120;

fn disk(target: u8) -> DiskConfig {
    DiskConfig { target, size: ByteSize(DISK), backend: BackendKind::Ram, ..DiskConfig::default() }
}

fn machine() -> Machine {
    let mut cfg = Config::in_process(ByteSize(DISK), ByteSize(64 << 20));
    cfg.adapters = vec![
        AdapterConfig {
            name: "wide".into(),
            dma_channel: 5,
            disks: vec![disk(0), disk(1)],
            ..AdapterConfig::default()
        },
        AdapterConfig {
            name: "narrow".into(),
            io_base: 0x230,
            irq: 10,
            dma_channel: 1,
            demand_mode: false,
            disks: vec![disk(0)],
            ..AdapterConfig::default()
        },
    ];
    Machine::build(&cfg).expect("the machine builds")
}

fn placement(rng: &mut impl Rng) -> Placement {
    match rng.gen_range(0..3) {
        0 => Placement::Contiguous { below_16m: true, align: 128 << 10 },
        1 => Placement::Scattered { seed: rng.gen() },
        _ => Placement::Above16M,
    }
}

fn passthrough(adapter: &port::AdapterHandle, lu: port::LuAddress, write: bool, lba: u64, buf: &Buffer) -> SrbStatus {
    let req = PassThrough {
        address: lu,
        cdb: class::cdb::read_write(write, lba, (buf.len() / 512) as u32, false),
        direction: if write { DataDirection::Out } else { DataDirection::In },
        buffer: Some(buf.clone()),
        offset: 0,
        length: buf.len() as u32,
        timeout_secs: 30,
        // Half of them tagged: they queue at the target beside the class driver's tagged SRBs.
        tagged: lba.is_multiple_of(2),
    };
    let srb = adapter.pass_through_srb(&req).expect("a valid pass-through request");
    adapter.execute(srb).srb_status.status()
}

/// Random writes and reads on one logical unit, each read checked against the shadow copy.
fn workload(m: &Machine, adapter: &str, target: u8, seed: u64) -> (usize, usize) {
    let class = m.open_disk(adapter, target, 0).expect("the disk opens");
    let handle = class.adapter().clone();
    let lu = class.address();
    let mut shadow = vec![0u8; DISK as usize];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut through_class, mut through_passthrough) = (0, 0);
    for op in 0..OPS_PER_LU {
        let blocks = rng.gen_range(1..=400usize);
        let len = blocks * 512;
        let lba = rng.gen_range(0..(DISK as usize - len) / 512) as u64;
        let at = lba as usize * 512;
        let buf = m.memory().alloc(len, placement(&mut rng)).expect("a buffer");
        let write = op < 8 || rng.gen_bool(0.5);
        let use_passthrough = rng.gen_bool(0.5);
        if write {
            let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            buf.write(0, &data).expect("fill");
            if use_passthrough {
                assert_eq!(passthrough(&handle, lu, true, lba, &buf), SrbStatus::SUCCESS, "{adapter} op {op}");
            } else {
                class.write(lba, &buf, 0, len, false).expect("a class write");
            }
            shadow[at..at + len].copy_from_slice(&data);
        } else {
            if use_passthrough {
                assert_eq!(passthrough(&handle, lu, false, lba, &buf), SrbStatus::SUCCESS, "{adapter} op {op}");
            } else {
                class.read(lba, &buf, 0, len).expect("a class read");
            }
            let mut got = vec![0u8; len];
            buf.read(0, &mut got).expect("read back");
            assert!(got == shadow[at..at + len], "{adapter}:{target} op {op}: data differs at LBA {lba} (+{len})");
        }
        if use_passthrough {
            through_passthrough += 1;
        } else {
            through_class += 1;
        }
    }
    (through_class, through_passthrough)
}

#[test]
fn the_reference_miniport_reports_no_violation_under_a_long_mixed_workload() {
    let m = machine();
    let jobs = [("wide", 0u8, 1u64), ("wide", 1, 2), ("narrow", 0, 3)];
    let m = &m;
    let counts: Vec<(usize, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs.iter().map(|&(a, t, seed)| s.spawn(move || workload(m, a, t, seed))).collect();
        handles.into_iter().map(|h| h.join().expect("the workload thread")).collect()
    });
    assert!(counts.iter().all(|(c, p)| *c > 10 && *p > 10), "both paths were used: {counts:?}");
    for a in m.adapters() {
        let stats = a.stats();
        assert!(a.violations().is_empty(), "{}: {:?}", a.name(), a.violations());
        assert_eq!(stats.violations, 0);
        assert!(stats.bounced_maps > 0, "{}: some transfers bounced", a.name());
        assert!(stats.dma_ops > stats.bounced_maps, "{}: some transfers went direct", a.name());
        assert!(stats.dma_ops > stats.srbs_completed / 2, "{}: pass-through SRBs took several maps", a.name());
        assert_eq!(stats.dma_ops, stats.flushes, "{}: every map was flushed", a.name());
    }
    m.shutdown();
}
