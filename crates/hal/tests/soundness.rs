//! System memory is reachable from many handles (buffer clones, physical addresses, the DMA engine); these tests
//! pin down that none of them can reach bytes another party holds as a live slice. Run them under Miri
//! (`cargo +nightly miri test -p hal --test soundness`): an aliasing access is undefined behaviour there, not just
//! a wrong answer.

mod common;

use std::sync::Arc;
use std::thread;

use common::*;
use hal::{Direction, HalError, Placement, SystemMemory};

fn busy<T: std::fmt::Debug>(r: Result<T, HalError>) -> bool {
    matches!(r, Err(HalError::Busy { .. }))
}

/// A clone of a buffer writes while a `with_slices_mut` slice of the same bytes is live.
#[test]
fn clone_cannot_write_under_a_live_mutable_slice() {
    let mem = SystemMemory::new(16 * 4096).unwrap();
    let buf = mem.alloc(4096, Placement::Any).unwrap();
    let other = buf.clone();
    buf.with_slices_mut(0, 4096, |_, s| {
        s[0] = 1;
        assert!(other.write(0, &[2]).is_err(), "a clone wrote under a live &mut slice");
        s[0] = 3;
    })
    .unwrap();
    let mut b = [0u8];
    other.read(0, &mut b).unwrap();
    assert_eq!(b, [3]);
}

/// Every other way in is refused while a slice lives, readers share, and everything is free again afterwards.
#[test]
fn every_handle_is_refused_while_a_slice_lives() {
    let mem = SystemMemory::new(16 * 4096).unwrap();
    let buf = mem.alloc_at(2 * 4096, 100, Placement::Scattered { seed: 4 }).unwrap();
    let other = buf.clone();
    let pa = buf.phys_addr(5000);
    buf.with_slices_mut(0, buf.len(), |_, s| {
        s.fill(7);
        assert!(busy(other.read(4095, &mut [0; 2])));
        assert!(busy(other.with_slices(0, 1, |_, _| ())));
        assert!(busy(mem.read_phys(pa, &mut [0])));
        assert!(busy(mem.write_phys(pa, &[0])));
        assert!(busy(other.borrow_run(0, 10)));
    })
    .unwrap();
    buf.with_slices(0, buf.len(), |_, s| {
        // Readers share; a writer is refused, and refused as a whole (nothing written).
        let mut one = [0u8];
        other.read(10, &mut one).unwrap();
        assert_eq!(one, [7]);
        assert!(busy(other.write(0, &vec![9; buf.len()])));
        assert!(s.iter().all(|&b| b == 7));
    })
    .unwrap();
    other.write(0, &vec![9; buf.len()]).unwrap();
    let mut back = vec![0; buf.len()];
    buf.read(0, &mut back).unwrap();
    assert!(back.iter().all(|&b| b == 9));
}

/// A run borrow is the only way to its bytes until it is dropped or turned back into its buffer.
#[test]
fn run_borrow_holds_until_dropped() {
    let mem = SystemMemory::new(16 * 4096).unwrap();
    let buf = mem.alloc(3 * 4096, Placement::Contiguous { below_16m: true, align: 0 }).unwrap();
    let mut run = buf.borrow_run_mut(10, 8000).unwrap();
    run.fill(0x5a);
    assert!(busy(buf.read(9, &mut [0; 2])));
    assert!(busy(buf.borrow_run(0, 4096)));
    // Bytes outside the run's frames stay free.
    buf.write(2 * 4096 + 1, &[1]).unwrap();
    let buf2 = run.into_buffer();
    let view = buf2.borrow_run(10, 8000).unwrap();
    let view2 = buf2.borrow_run(0, 20).unwrap();
    assert!(view.iter().all(|&b| b == 0x5a));
    assert_eq!(&view2[10..], &[0x5a; 10]);
    assert!(busy(buf2.write(0, &[0])));
    drop((view, view2));
    buf2.write(0, &[0]).unwrap();
    let scattered = mem.alloc(2 * 4096, Placement::Scattered { seed: 1 }).unwrap();
    assert!(matches!(scattered.borrow_run(0, 8192), Err(HalError::Discontiguous { .. })));
    assert!(matches!(scattered.borrow_run(0, 0), Err(HalError::Discontiguous { .. })));
    assert!(matches!(scattered.borrow_run(1, 8192), Err(HalError::OutOfBuffer { .. })));
}

/// Run borrows and the buffers they hold move between threads; the frames stay allocated while a borrow lives.
#[test]
fn run_borrow_keeps_its_frames_across_threads() {
    let mem = SystemMemory::new(16 * 4096).unwrap();
    let free = mem.free_bytes();
    let buf = mem.alloc(4096, Placement::Any).unwrap();
    buf.write(0, &[42; 4096]).unwrap();
    let run = buf.borrow_run(0, 4096).unwrap();
    drop(buf);
    assert_eq!(mem.free_bytes(), free - 4096);
    let sum = thread::spawn(move || run.iter().map(|&b| u64::from(b)).sum::<u64>()).join().unwrap();
    assert_eq!(sum, 42 * 4096);
    assert_eq!(mem.free_bytes(), free);
}

/// The DMA engine filling a buffer and the processor reading it from another thread: each access sees the
/// buffer whole (the DMA run and the reads exclude each other), and no access races another.
#[test]
fn dma_and_processor_on_other_threads_do_not_race() {
    let hal = hal_with(1);
    let a = adapter(&hal, 1, 0);
    let buf = hal.memory().alloc(256, Placement::Below16M).unwrap();
    let reader = {
        let buf = buf.clone();
        thread::spawn(move || {
            let mut seen = 0;
            for _ in 0..20 {
                let mut out = [0u8; 256];
                match buf.read(0, &mut out) {
                    Ok(()) => {
                        assert!(out.iter().all(|&b| b == out[0]), "a read saw a DMA run half done");
                        seen += 1;
                    }
                    Err(e) => assert!(matches!(e, HalError::Busy { .. }), "{e}"),
                }
                thread::yield_now();
            }
            seen
        })
    };
    let mut g = a.allocate_channel(1, Box::new(|| {})).unwrap().expect("free channel");
    for round in 1..=4u8 {
        a.map_transfer(&mut g, &buf, 0, 256, Direction::FromDevice).unwrap();
        let out = run(&hal, a.channel(), &mut FakeDevice::supplying(vec![round; 256]));
        assert!(out.terminal_count);
        a.flush_adapter_buffers(&mut g, &buf, 0, 256, Direction::FromDevice).unwrap();
    }
    a.free_adapter_channel(g);
    reader.join().unwrap();
    let mut out = [0u8; 256];
    buf.read(0, &mut out).unwrap();
    assert_eq!(out, [4; 256]);
    assert!(Arc::strong_count(buf.memory()) >= 2);
}
