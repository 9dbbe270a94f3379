//! HAL adapter objects: descriptions, channel ownership, map registers, bounce, flush.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use hal::{Direction, DmaChannel, DmaWidth, HalError, PhysAddr, Placement, ISA_DMA_LIMIT, PAGE_SIZE};

const PAGE: usize = PAGE_SIZE as usize;

fn noop() -> Box<dyn FnOnce() + Send> {
    Box::new(|| {})
}

#[test]
fn get_adapter_validates_the_description_and_counts_map_registers() {
    let hal = hal_with(256);
    assert_eq!(adapter(&hal, 5, 0).number_of_map_registers(), 17);
    assert_eq!(adapter(&hal, 1, 8192).number_of_map_registers(), 3);
    assert_eq!(adapter(&hal, 6, 128 << 10).number_of_map_registers(), 33);
    // One programming of a byte channel moves at most 64 KiB.
    assert_eq!(adapter(&hal, 1, 1 << 20).number_of_map_registers(), 17);

    let mut d = desc(5, 0);
    d.master = true;
    assert!(matches!(hal.get_adapter(&d), Err(HalError::InvalidDescription { .. })));
    let mut d = desc(5, 0);
    d.dma_width = DmaWidth::Bits8;
    assert!(matches!(hal.get_adapter(&d), Err(HalError::InvalidDescription { .. })));
    let mut d = desc(1, 0);
    d.dma_width = DmaWidth::Bits16;
    assert!(hal.get_adapter(&d).is_err());
    let mut d = desc(1, 0);
    d.dma_width = DmaWidth::Bits32;
    assert!(hal.get_adapter(&d).is_err());
    let mut d = desc(5, 0);
    d.dma_channel = DmaChannel::new(4).unwrap();
    assert_eq!(hal.get_adapter(&d).err(), Some(HalError::InvalidChannel(4)));

    // A small pool caps the count.
    let small = hal_with(8);
    assert_eq!(adapter(&small, 5, 0).number_of_map_registers(), 8);
}

#[test]
fn channel_owners_are_granted_in_fifo_order() {
    let hal = hal_with(256);
    let a = adapter(&hal, 5, 0);
    let b = Arc::new(adapter(&hal, 5, 0));
    let c = Arc::new(adapter(&hal, 5, 0));
    let order = Arc::new(Mutex::new(Vec::new()));

    let ga = a.allocate_channel(17, noop()).unwrap().expect("free channel");
    for (name, who) in [("b", &b), ("c", &c)] {
        let (order, who2) = (Arc::clone(&order), Arc::clone(who));
        let waker = Box::new(move || {
            // Called without HAL locks held: taking the grant here must not deadlock.
            let g = who2.take_grant().expect("grant ready when woken");
            order.lock().unwrap().push((name, g.map_registers()));
            who2.free_adapter_channel(g);
        });
        assert!(who.allocate_channel(17, waker).unwrap().is_none());
    }
    assert!(order.lock().unwrap().is_empty());
    assert_eq!(hal.stats().channel_waits, 2);
    a.free_adapter_channel(ga);
    // b was granted first; its waker freed the channel, which granted c.
    assert_eq!(*order.lock().unwrap(), vec![("b", 17), ("c", 17)]);
    assert_eq!(b.stats().channel_waits, 1);
    // Everything is free again.
    assert!(a.allocate_channel(1, noop()).unwrap().is_some());
}

#[test]
fn one_request_per_adapter_at_a_time() {
    let hal = hal_with(64);
    let a = adapter(&hal, 1, 0);
    let g = a.allocate_channel(2, noop()).unwrap().unwrap();
    assert_eq!(a.allocate_channel(2, noop()).err(), Some(HalError::RequestPending));
    assert!(matches!(
        a.allocate_channel(18, noop()),
        Err(HalError::TooManyMapRegisters { requested: 18, available: 17 })
    ));
    a.free_adapter_channel(g);
    assert!(a.allocate_channel(2, noop()).unwrap().is_some());
}

#[test]
fn different_channels_are_independent() {
    let hal = hal_with(256);
    let a = adapter(&hal, 5, 0);
    let b = adapter(&hal, 6, 0);
    let _ga = a.allocate_channel(17, noop()).unwrap().unwrap();
    let _gb = b.allocate_channel(17, noop()).unwrap().unwrap();
    assert_eq!(hal.stats().channel_waits, 0);
}

#[test]
fn waits_for_map_registers_in_order() {
    let hal = hal_with(48);
    let a = adapter(&hal, 5, 128 << 10);
    let b = Arc::new(adapter(&hal, 6, 128 << 10));
    let woken = Arc::new(AtomicU32::new(0));
    let ga = a.allocate_channel(33, noop()).unwrap().unwrap();
    let w = Arc::clone(&woken);
    let got = b
        .allocate_channel(
            33,
            Box::new(move || {
                w.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .unwrap();
    assert!(got.is_none(), "only 15 pages left in the pool");
    assert_eq!(hal.stats().map_register_waits, 1);
    assert_eq!(b.stats().map_register_waits, 1);
    assert!(b.take_grant().is_none());
    a.free_adapter_channel(ga);
    assert_eq!(woken.load(Ordering::SeqCst), 1);
    let gb = b.take_grant().expect("granted after the free");
    assert_eq!(gb.map_registers(), 33);
    // The run stays inside one 128 KiB DMA page.
    let base = gb.bounce_base().0;
    assert_eq!(base / (128 << 10), (base + 33 * PAGE_SIZE - 1).min(base + (128 << 10) - 1) / (128 << 10));
    b.free_adapter_channel(gb);
}

#[test]
fn map_registers_larger_than_the_pool_are_refused() {
    let hal = hal_with(4);
    let a = adapter(&hal, 5, 0);
    assert_eq!(a.number_of_map_registers(), 4);
    assert!(a.allocate_channel(5, noop()).is_err());
}

#[test]
fn dropping_a_queued_adapter_passes_the_channel_on() {
    let hal = hal_with(64);
    let a = adapter(&hal, 2, 0);
    let b = adapter(&hal, 2, 0);
    let c = adapter(&hal, 2, 0);
    let ga = a.allocate_channel(1, noop()).unwrap().unwrap();
    assert!(b.allocate_channel(1, noop()).unwrap().is_none());
    assert!(c.allocate_channel(1, noop()).unwrap().is_none());
    drop(b);
    a.free_adapter_channel(ga);
    assert!(c.take_grant().is_some());
}

#[test]
fn map_is_refused_not_truncated_when_too_long() {
    let hal = hal_with(64);
    let mem = hal.memory().clone();
    let a = adapter(&hal, 5, 0);
    let buf = mem.alloc(96 << 10, Placement::Below16M).unwrap();
    let mut g = a.allocate_channel(4, noop()).unwrap().unwrap();
    assert_eq!(
        a.map_transfer(&mut g, &buf, 0, 4 * PAGE + 1, Direction::FromDevice).err(),
        Some(HalError::MapTooLarge { len: 4 * PAGE + 1, max: 4 * PAGE })
    );
    assert!(!g.is_mapped());
    a.free_adapter_channel(g);

    let a1 = adapter(&hal, 1, 0);
    let mut g = a1.allocate_channel(17, noop()).unwrap().unwrap();
    assert_eq!(
        a1.map_transfer(&mut g, &buf, 0, (64 << 10) + 2, Direction::ToDevice).err(),
        Some(HalError::MapTooLarge { len: (64 << 10) + 2, max: 64 << 10 })
    );
    assert_eq!(
        a1.map_transfer(&mut g, &buf, 95 << 10, 2 << 10, Direction::ToDevice).err(),
        Some(HalError::MapOutOfBuffer)
    );
    assert_eq!(a1.map_transfer(&mut g, &buf, 0, 0, Direction::ToDevice).err(), Some(HalError::MapOutOfBuffer));
    a1.free_adapter_channel(g);
}

/// Maps `len` bytes at `offset` of `buf` on `channel` and reports whether it bounced.
fn bounces(channel: u8, buf: &hal::Buffer, hal: &Arc<hal::Hal>, offset: usize, len: usize) -> bool {
    let a = adapter(hal, channel, 128 << 10);
    let mut g = a.allocate_channel(a.number_of_map_registers(), noop()).unwrap().unwrap();
    let info = a.map_transfer(&mut g, buf, offset, len, Direction::ToDevice).unwrap();
    if !info.bounced {
        assert_eq!(info.programmed, buf.phys_addr(offset));
    } else {
        assert_eq!(info.programmed, g.bounce_base());
    }
    a.flush_adapter_buffers(&mut g, buf, offset, len, Direction::ToDevice).unwrap();
    a.free_adapter_channel(g);
    info.bounced
}

#[test]
fn bounce_happens_exactly_when_needed() {
    let hal = hal_with(64);
    let mem = hal.memory().clone();
    let aligned = |align| Placement::Contiguous { below_16m: true, align };
    // A contiguous run below 16 MiB starting on a 128 KiB boundary: 64 KiB fits both kinds.
    let low = mem.alloc(256 << 10, aligned(128 << 10)).unwrap();
    assert!(!bounces(1, &low, &hal, 0, 64 << 10));
    assert!(!bounces(5, &low, &hal, 0, 64 << 10));
    // Crossing a 64 KiB boundary: channel 1 must bounce, channel 5 (128 KiB page) need not.
    assert!(bounces(1, &low, &hal, 60 << 10, 8 << 10));
    assert!(!bounces(5, &low, &hal, 60 << 10, 8 << 10));
    // Crossing a 128 KiB boundary bounces on channel 5.
    assert!(bounces(5, &low, &hal, 124 << 10, 8 << 10));
    // Odd start or odd length bounces on a word channel, not on a byte channel.
    assert!(bounces(5, &low, &hal, 1, 100));
    assert!(bounces(5, &low, &hal, 2, 101));
    assert!(!bounces(1, &low, &hal, 1, 101));
    // Scattered pages: every page boundary is a break.
    let scattered = mem.alloc(4 * PAGE, Placement::Scattered { seed: 11 }).unwrap();
    assert!(bounces(5, &scattered, &hal, 0, 2 * PAGE));
    assert!(!bounces(5, &scattered, &hal, 0, PAGE), "one page is one run");
    // Above 16 MiB is out of the controller's reach.
    let high = mem.alloc(4 * PAGE, Placement::Above16M).unwrap();
    assert!(high.pages()[0].0 >= ISA_DMA_LIMIT);
    assert!(bounces(1, &high, &hal, 0, 16));
    assert!(bounces(6, &high, &hal, 0, 16));
    let stats = hal.stats();
    assert_eq!(stats.maps, 12);
    assert_eq!(stats.bounced_maps, 7);
    assert_eq!(stats.flushes, 12);
}

#[test]
fn from_device_data_reaches_the_buffer_only_through_flush() {
    let hal = hal_with(64);
    let mem = hal.memory().clone();
    let a = adapter(&hal, 5, 0);
    let buf = mem.alloc(4 * PAGE, Placement::Above16M).unwrap();
    let sentinel = vec![0x5A; buf.len()];
    buf.write(0, &sentinel).unwrap();
    let data = pattern(4 * PAGE, 1);

    let mut g = a.allocate_channel(17, noop()).unwrap().unwrap();
    let info = a.map_transfer(&mut g, &buf, 0, 4 * PAGE, Direction::FromDevice).unwrap();
    assert!(info.bounced);
    // The device moves only 1000 bytes, then stops.
    let mut dev = FakeDevice::supplying(data[..1000].to_vec());
    let out = run(&hal, a.channel(), &mut dev);
    assert_eq!(out.bytes, 1000);
    assert!(!out.terminal_count);
    assert_eq!(a.read_dma_counter(&g), (4 * PAGE - 1000) as u32);
    assert_eq!(contents(&buf), sentinel, "without a flush the data stays in the map registers");

    let moved = a.flush_adapter_buffers(&mut g, &buf, 0, 4 * PAGE, Direction::FromDevice).unwrap();
    assert_eq!(moved, 1000);
    let got = contents(&buf);
    assert_eq!(&got[..1000], &data[..1000]);
    assert_eq!(&got[1000..], &sentinel[1000..], "nothing past what moved is written");
    assert!(hal.with_dma(|ctl, _| ctl.channel_state(a.channel()).masked), "flush masks");
    assert_eq!(a.stats().dma_bytes, 1000);
    a.free_adapter_channel(g);
}

#[test]
fn to_device_bounce_is_filled_at_map_time_and_tc_ends_the_transfer() {
    let hal = hal_with(64);
    let mem = hal.memory().clone();
    let a = adapter(&hal, 1, 0);
    let buf = mem.alloc_at(3 * PAGE, 123, Placement::Scattered { seed: 4 }).unwrap();
    let data = pattern(3 * PAGE, 2);
    buf.write(0, &data).unwrap();
    let mut g = a.allocate_channel(17, noop()).unwrap().unwrap();
    let info = a.map_transfer(&mut g, &buf, 5, 3 * PAGE - 5, Direction::ToDevice).unwrap();
    assert!(info.bounced);
    let mut dev = FakeDevice::taking(1 << 20);
    let out = run(&hal, a.channel(), &mut dev);
    assert_eq!(out, hal::ServiceOutcome { bytes: (3 * PAGE - 5) as u64, terminal_count: true });
    assert_eq!(dev.sink, data[5..].to_vec());
    assert_eq!(dev.eop, 1);
    assert_eq!(a.read_dma_counter(&g), 0);
    let moved = a.flush_adapter_buffers(&mut g, &buf, 5, 3 * PAGE - 5, Direction::ToDevice).unwrap();
    assert_eq!(moved, (3 * PAGE - 5) as u64);
    a.free_adapter_channel(g);
}

#[test]
fn programming_order_matches_the_design() {
    let hal = hal_with(64);
    let mem = hal.memory().clone();
    let a = adapter(&hal, 5, 0);
    let buf =
        mem.alloc(8 * PAGE, Placement::Frames((0..8).map(|i| PhysAddr(0x23_0000 + i * PAGE_SIZE)).collect())).unwrap();
    let mut g = a.allocate_channel(17, noop()).unwrap().unwrap();
    hal.with_dma(|ctl, _| ctl.record_port_writes(true));
    let info = a.map_transfer(&mut g, &buf, 0x100, 0x2000, Direction::FromDevice).unwrap();
    assert!(!info.bounced);
    let log = hal.with_dma(|ctl, _| ctl.take_port_writes());
    // 0x230100 on channel 5: word address 0x1_8080 → register 0x8080, page 0x22;
    // 0x2000 bytes = 0x1000 words → count 0x0FFF; mode demand | write | channel 1.
    assert_eq!(
        log,
        vec![
            (0xD4, 0x05),
            (0xD8, 0x00),
            (0xD6, 0x05),
            (0xC4, 0x80),
            (0xC4, 0x80),
            (0x8B, 0x22),
            (0xC6, 0xFF),
            (0xC6, 0x0F),
            (0xD4, 0x01),
        ]
    );
    let s = hal.with_dma(|ctl, _| ctl.channel_state(a.channel()));
    assert_eq!((s.current_address, s.page, s.current_count), (0x8080, 0x22, 0x0FFF));
    assert!(!s.masked);
    a.flush_adapter_buffers(&mut g, &buf, 0x100, 0x2000, Direction::FromDevice).unwrap();
    a.free_adapter_channel(g);

    // Single mode without demand, read transfer, auto-init from the description.
    let mut d = desc(2, 0);
    d.demand_mode = false;
    d.auto_initialize = true;
    let b = hal.get_adapter(&d).unwrap();
    let mut g = b.allocate_channel(1, noop()).unwrap().unwrap();
    hal.with_dma(|ctl, _| ctl.record_port_writes(true));
    b.map_transfer(&mut g, &buf, 0, 16, Direction::ToDevice).unwrap();
    let log = hal.with_dma(|ctl, _| ctl.take_port_writes());
    assert_eq!(log[2], (0x0B, 0x40 | 0x10 | 0x08 | 2));
    assert_eq!(log[5], (0x81, 0x23));
    assert_eq!(log[6..8], [(0x05, 15), (0x05, 0)]);
    b.flush_adapter_buffers(&mut g, &buf, 0, 16, Direction::ToDevice).unwrap();
    b.free_adapter_channel(g);
}

#[test]
fn flush_requires_the_matching_map_and_owner() {
    let hal = hal_with(64);
    let mem = hal.memory().clone();
    let a = adapter(&hal, 6, 0);
    let other = adapter(&hal, 7, 0);
    let buf = mem.alloc(PAGE, Placement::Below16M).unwrap();
    let mut g = a.allocate_channel(1, noop()).unwrap().unwrap();
    assert_eq!(a.flush_adapter_buffers(&mut g, &buf, 0, 16, Direction::ToDevice).err(), Some(HalError::NotMapped));
    a.map_transfer(&mut g, &buf, 0, 16, Direction::ToDevice).unwrap();
    assert_eq!(a.map_transfer(&mut g, &buf, 0, 16, Direction::ToDevice).err(), Some(HalError::MapOutstanding));
    assert_eq!(a.flush_adapter_buffers(&mut g, &buf, 0, 32, Direction::ToDevice).err(), Some(HalError::FlushMismatch));
    assert_eq!(
        a.flush_adapter_buffers(&mut g, &buf, 0, 16, Direction::FromDevice).err(),
        Some(HalError::FlushMismatch)
    );
    assert_eq!(
        other.flush_adapter_buffers(&mut g, &buf, 0, 16, Direction::ToDevice).err(),
        Some(HalError::ChannelNotOwned)
    );
    assert_eq!(other.map_transfer(&mut g, &buf, 0, 16, Direction::ToDevice).err(), Some(HalError::ChannelNotOwned));
    // Nothing moved: the flush reports 0 bytes.
    assert_eq!(a.flush_adapter_buffers(&mut g, &buf, 0, 16, Direction::ToDevice), Ok(0));
    a.free_adapter_channel(g);
}

#[test]
fn tc_of_one_channel_survives_the_status_read_of_anothers_flush() {
    let hal = hal_with(64);
    let mem = hal.memory().clone();
    let align = Placement::Contiguous { below_16m: true, align: 64 << 10 };
    let (b1, b2) = (mem.alloc(64 << 10, align.clone()).unwrap(), mem.alloc(64 << 10, align).unwrap());
    let (a1, a2) = (adapter(&hal, 1, 0), adapter(&hal, 2, 0));
    let mut g1 = a1.allocate_channel(17, noop()).unwrap().unwrap();
    let mut g2 = a2.allocate_channel(17, noop()).unwrap().unwrap();
    a1.map_transfer(&mut g1, &b1, 0, 64 << 10, Direction::ToDevice).unwrap();
    a2.map_transfer(&mut g2, &b2, 0, 64 << 10, Direction::ToDevice).unwrap();
    run(&hal, a1.channel(), &mut FakeDevice::taking(1 << 20));
    run(&hal, a2.channel(), &mut FakeDevice::taking(1 << 20));
    // Both counts read 0xFFFF, as for an untouched full page: only TC tells them apart.
    assert_eq!(a1.flush_adapter_buffers(&mut g1, &b1, 0, 64 << 10, Direction::ToDevice), Ok(64 << 10));
    assert_eq!(a2.flush_adapter_buffers(&mut g2, &b2, 0, 64 << 10, Direction::ToDevice), Ok(64 << 10));
    // And an untouched full page reports nothing moved.
    a1.map_transfer(&mut g1, &b1, 0, 64 << 10, Direction::ToDevice).unwrap();
    assert_eq!(a1.read_dma_counter(&g1), 64 << 10);
    assert_eq!(a1.flush_adapter_buffers(&mut g1, &b1, 0, 64 << 10, Direction::ToDevice), Ok(0));
    a1.free_adapter_channel(g1);
    a2.free_adapter_channel(g2);
}

#[test]
fn freeing_a_mapped_grant_masks_the_channel_and_frees_the_pool() {
    let hal = hal_with(17);
    let mem = hal.memory().clone();
    let a = adapter(&hal, 5, 0);
    let buf = mem.alloc(PAGE, Placement::Above16M).unwrap();
    let mut g = a.allocate_channel(17, noop()).unwrap().unwrap();
    a.map_transfer(&mut g, &buf, 0, 64, Direction::FromDevice).unwrap();
    assert!(!hal.with_dma(|ctl, _| ctl.channel_state(a.channel()).masked));
    a.free_adapter_channel(g);
    assert!(hal.with_dma(|ctl, _| ctl.channel_state(a.channel()).masked));
    assert!(a.allocate_channel(17, noop()).unwrap().is_some());
}

#[test]
fn sixteen_bit_odd_length_bounces_and_copies_back_only_the_length() {
    let hal = hal_with(64);
    let mem = hal.memory().clone();
    let a = adapter(&hal, 7, 0);
    let buf = mem.alloc(PAGE, Placement::Below16M).unwrap();
    buf.write(0, &[0xEE; PAGE]).unwrap();
    let mut g = a.allocate_channel(2, noop()).unwrap().unwrap();
    let info = a.map_transfer(&mut g, &buf, 10, 7, Direction::FromDevice).unwrap();
    assert!(info.bounced);
    let out = run(&hal, a.channel(), &mut FakeDevice::supplying(vec![1, 2, 3, 4, 5, 6, 7, 8]));
    assert_eq!(out, hal::ServiceOutcome { bytes: 8, terminal_count: true });
    assert_eq!(a.flush_adapter_buffers(&mut g, &buf, 10, 7, Direction::FromDevice), Ok(7));
    let got = contents(&buf);
    assert_eq!(&got[10..17], &[1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(got[17], 0xEE);
    a.free_adapter_channel(g);
}
