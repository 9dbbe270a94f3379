//! Adapter objects used from several threads at once, as the port driver's DPCs and
//! the HBA model's DMA engine do.

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use hal::{AdapterObject, ChannelGrant, Direction, Hal, Placement};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

#[test]
fn adapter_types_cross_threads() {
    assert_send_sync::<AdapterObject>();
    assert_send_sync::<Hal>();
    assert_send_sync::<hal::Buffer>();
    assert_send::<ChannelGrant>();
}

#[test]
fn contending_adapters_all_complete_with_exact_data() {
    const THREADS: u64 = 3;
    const ROUNDS: u64 = if cfg!(miri) { 4 } else { 40 };
    let hal = hal_with(40);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let hal = Arc::clone(&hal);
            thread::spawn(move || {
                let a = adapter(&hal, 5, 0);
                let buf = hal.memory().alloc(3 * 4096, Placement::Scattered { seed: t }).unwrap();
                for round in 0..ROUNDS {
                    let (tx, rx) = mpsc::channel();
                    let mut g = match a.allocate_channel(17, Box::new(move || tx.send(()).unwrap_or(()))).unwrap() {
                        Some(g) => g,
                        None => {
                            rx.recv_timeout(Duration::from_secs(10)).expect("granted within the bound");
                            a.take_grant().expect("grant after wake")
                        }
                    };
                    let data = pattern(3 * 4096 - 6, t * 1000 + round);
                    a.map_transfer(&mut g, &buf, 6, data.len(), Direction::FromDevice).unwrap();
                    let out = run(&hal, a.channel(), &mut FakeDevice::supplying(data.clone()));
                    assert!(out.terminal_count);
                    let moved = a.flush_adapter_buffers(&mut g, &buf, 6, data.len(), Direction::FromDevice).unwrap();
                    assert_eq!(moved as usize, data.len());
                    let mut got = vec![0; data.len()];
                    buf.read(6, &mut got).unwrap();
                    assert_eq!(got, data);
                    a.free_adapter_channel(g);
                }
                a.stats()
            })
        })
        .collect();
    let per: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(per.iter().all(|s| s.maps == ROUNDS && s.flushes == ROUNDS));
    let total = hal.stats();
    assert_eq!(total.maps, THREADS * ROUNDS);
    assert_eq!(total.bounced_maps, THREADS * ROUNDS);
    assert_eq!(total.dma_bytes, THREADS * ROUNDS * (3 * 4096 - 6));
}
