//! Two reference adapters jumpered to the same DMA channel: the HAL's channel ownership serializes them and both make
//! progress under concurrent load. Also start-up failures of the card.

mod common;

use common::machine::LU0;
use common::*;
use hal::{Hal, HalConfig, Placement, SystemMemory};
use hba::{start_adapter, start_with_hardware, HbaConfig};
use port::{AdapterOptions, PortError, Srb, SrbFlags, SrbStatus};

#[test]
fn two_adapters_on_one_channel_both_complete_with_exact_data() {
    let mem = SystemMemory::new(64 << 20).expect("memory");
    let hal = Hal::new(mem.clone(), HalConfig::default()).expect("hal");
    let mut handles = Vec::new();
    for (i, base) in [0x330u16, 0x230].into_iter().enumerate() {
        let (target, _) = ram_target(4096);
        let cfg = HbaConfig {
            io_base: base,
            irq: 10 + i as u8,
            dma_channel: 5,
            targets: vec![(0, target)],
            ..HbaConfig::default()
        };
        let opts = AdapterOptions { name: format!("shared{i}"), ..AdapterOptions::default() };
        handles.push(start_adapter(hal.clone(), cfg, opts).expect("adapter starts"));
    }
    const ROUNDS: u32 = 24;
    const LEN: usize = 64 << 10;
    let workers: Vec<_> = handles
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = h.clone();
            let mem = mem.clone();
            std::thread::spawn(move || {
                let buf = mem.alloc(LEN, Placement::Scattered { seed: i as u64 }).expect("buffer");
                for r in 0..ROUNDS {
                    let data = pattern(LEN, (i as u64) << 32 | u64::from(r));
                    buf.write(0, &data).expect("fill");
                    let lba = r * 128;
                    let w = h.execute(Srb::execute_scsi(LU0, &write10(lba, 128)).with_data(
                        &buf,
                        0,
                        LEN as u32,
                        SrbFlags::DATA_OUT,
                    ));
                    assert_eq!(w.srb_status, SrbStatus::SUCCESS, "adapter {i} write {r}");
                    buf.write(0, &vec![0u8; LEN]).expect("clear");
                    let rd = h.execute(Srb::execute_scsi(LU0, &read10(lba, 128)).with_data(
                        &buf,
                        0,
                        LEN as u32,
                        SrbFlags::DATA_IN,
                    ));
                    assert_eq!(rd.srb_status, SrbStatus::SUCCESS, "adapter {i} read {r}");
                    let mut got = vec![0u8; LEN];
                    buf.read(0, &mut got).expect("read");
                    assert!(got == data, "adapter {i} round {r}: data differs");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker finished without a failed assertion");
    }
    for h in &handles {
        let s = h.stats();
        assert_eq!(s.dma_ops, u64::from(2 * ROUNDS), "{}: one DMA operation per SRB", h.name());
        assert_eq!(s.srbs_completed, u64::from(2 * ROUNDS));
        assert!(h.violations().is_empty(), "{:?}", h.violations());
        h.shutdown();
    }
}

#[test]
fn no_card_at_the_configured_base_is_not_found() {
    let mem = SystemMemory::new(16 << 20).expect("memory");
    let hal = Hal::new(mem, HalConfig::default()).expect("hal");
    let cfg = HbaConfig::default();
    let hw = cfg.build_hardware().expect("card");
    let mut resources = cfg.resources();
    resources.io_base = 0x230;
    let err = start_with_hardware(hal, hw, cfg.miniport_config(), resources, AdapterOptions::default())
        .err()
        .expect("no adapter answers at 0x230");
    assert!(matches!(err, PortError::NotFound { .. }), "{err}");
}

#[test]
fn impossible_jumpers_are_refused_with_the_reason() {
    let mem = SystemMemory::new(16 << 20).expect("memory");
    let hal = Hal::new(mem, HalConfig::default()).expect("hal");
    for (cfg, word) in [
        (HbaConfig { dma_channel: 4, ..HbaConfig::default() }, "channel 4"),
        (HbaConfig { irq: 16, ..HbaConfig::default() }, "IRQ 16"),
        (HbaConfig { max_transfer: 1 << 24, ..HbaConfig::default() }, "max_transfer"),
    ] {
        let err = start_adapter(hal.clone(), cfg, AdapterOptions::default()).err().expect("refused");
        assert!(err.to_string().contains(word), "{err}");
    }
    let (t, _) = ram_target(8);
    let cfg = HbaConfig { targets: vec![(7, t)], ..HbaConfig::default() };
    let err = start_adapter(hal, cfg, AdapterOptions::default()).err().expect("refused");
    assert!(err.to_string().contains("target ID 7"), "{err}");
}
