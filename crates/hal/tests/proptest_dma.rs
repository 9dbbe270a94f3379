//! Property tests: random placement, offset, length, channel and direction; a fake
//! device moves the data through the 8237 model; the data must arrive byte-exact,
//! bounce exactly when the rules require it, and TC must come exactly at the
//! programmed length.

mod common;

use common::*;
use hal::{Direction, PhysAddr, Placement, ISA_DMA_LIMIT, PAGE_SIZE};
use proptest::prelude::*;

const PAGE: usize = PAGE_SIZE as usize;

#[derive(Clone, Debug)]
enum Where {
    Scattered(u64),
    /// Physically contiguous from this frame (below or above 16 MiB).
    ContiguousAt(u64),
}

fn placement() -> impl Strategy<Value = Where> {
    prop_oneof![
        any::<u64>().prop_map(Where::Scattered),
        // Below 16 MiB, clear of the map-register pool at the bottom of memory.
        (256u64..3800).prop_map(Where::ContiguousAt),
        // At or above 16 MiB.
        (4096u64..7900).prop_map(Where::ContiguousAt),
    ]
}

#[derive(Clone, Debug)]
struct Case {
    channel: u8,
    place: Where,
    page_offset: usize,
    buf_len: usize,
    offset: usize,
    len: usize,
    dir: Direction,
    /// Fraction (per mille) of the transfer the device handles before it stops; 1000 = all.
    stop: u32,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(1u8), Just(5u8)],
        placement(),
        0usize..PAGE,
        prop_oneof![Just(Direction::ToDevice), Just(Direction::FromDevice)],
        prop_oneof![Just(1000u32), 0u32..1000],
    )
        .prop_flat_map(|(channel, place, page_offset, dir, stop)| {
            // Under Miri, transfers of a few pages: the same page crossings, at a bearable cost.
            let max = if cfg!(miri) {
                3 * PAGE
            } else if channel == 5 {
                128 << 10
            } else {
                64 << 10
            };
            (1usize..=max, 0usize..(if cfg!(miri) { 2 } else { 8 } * PAGE)).prop_map(move |(len, offset)| Case {
                channel,
                place: place.clone(),
                page_offset,
                buf_len: offset + len + 100,
                offset,
                len,
                dir,
                stop,
            })
        })
}

/// The rule, stated from the pages: bounce unless [offset, offset+len) is one physical
/// run below 16 MiB inside one DMA page (and word-aligned on a word channel).
fn needs_bounce(buf: &hal::Buffer, channel: u8, offset: usize, len: usize) -> bool {
    let start = buf.phys_addr(offset).0;
    let contiguous = (0..len).step_by(1).all(|i| {
        let at = offset + i;
        !(at + buf.byte_offset()).is_multiple_of(PAGE) || buf.phys_addr(at).0 == start + i as u64
    });
    let end = start + len as u64;
    let page = if channel == 5 { 128 << 10 } else { 64 << 10 };
    !contiguous
        || end > ISA_DMA_LIMIT
        || start / page != (end - 1) / page
        || (channel == 5 && (start % 2 == 1 || len % 2 == 1))
}

proptest! {
    // Under Miri, a handful of cases (each runs thousands of times slower) and no regression file (no file system).
    #![proptest_config(if cfg!(miri) {
        ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() }
    } else {
        ProptestConfig { cases: 160, ..ProptestConfig::default() }
    })]

    #[test]
    fn data_arrives_exactly_and_bounces_exactly_when_needed(c in case()) {
        let hal = hal_with(64);
        let mem = hal.memory().clone();
        let pages = (c.page_offset + c.buf_len).div_ceil(PAGE);
        let placement = match c.place {
            Where::Scattered(seed) => Placement::Scattered { seed },
            Where::ContiguousAt(f) => Placement::Frames(
                (0..pages as u64).map(|i| PhysAddr((f + i) * PAGE_SIZE)).collect(),
            ),
        };
        let buf = mem.alloc_at(c.buf_len, c.page_offset, placement).unwrap();
        let a = adapter(&hal, c.channel, if c.channel == 5 { 128 << 10 } else { 64 << 10 });
        let unit = if c.channel == 5 { 2 } else { 1 };
        let units = c.len.div_ceil(unit);
        let programmed_bytes = units * unit;
        let budget = if c.stop == 1000 {
            programmed_bytes
        } else {
            (programmed_bytes * c.stop as usize / 1000) / unit * unit
        };

        let sentinel = pattern(c.buf_len, 99);
        let data = pattern(programmed_bytes, 7);
        match c.dir {
            Direction::ToDevice => buf.write(c.offset, &data[..c.len]).unwrap(),
            Direction::FromDevice => buf.write(0, &sentinel).unwrap(),
        }

        let mut g = a.allocate_channel(a.number_of_map_registers(), Box::new(|| {})).unwrap().unwrap();
        let info = a.map_transfer(&mut g, &buf, c.offset, c.len, c.dir).unwrap();
        prop_assert_eq!(info.bounced, needs_bounce(&buf, c.channel, c.offset, c.len));
        prop_assert!(info.programmed.0 + programmed_bytes as u64 <= ISA_DMA_LIMIT);

        let mut dev = match c.dir {
            Direction::ToDevice => FakeDevice::taking(budget),
            Direction::FromDevice => FakeDevice::supplying(data[..budget].to_vec()),
        };
        let out = run(&hal, a.channel(), &mut dev);
        prop_assert_eq!(out.bytes, budget as u64);
        prop_assert_eq!(out.terminal_count, budget == programmed_bytes);
        prop_assert_eq!(dev.eop, u32::from(budget == programmed_bytes));
        prop_assert_eq!(a.read_dma_counter(&g) as usize, (programmed_bytes - budget).min(c.len));

        let moved = a.flush_adapter_buffers(&mut g, &buf, c.offset, c.len, c.dir).unwrap();
        prop_assert_eq!(moved as usize, budget.min(c.len));
        let got = contents(&buf);
        match c.dir {
            Direction::ToDevice => {
                prop_assert_eq!(&dev.sink[..budget.min(c.len)], &data[..budget.min(c.len)]);
                prop_assert_eq!(&got[c.offset..c.offset + c.len], &data[..c.len]);
            }
            Direction::FromDevice => {
                let n = budget.min(c.len);
                prop_assert_eq!(&got[c.offset..c.offset + n], &data[..n]);
                prop_assert_eq!(&got[..c.offset], &sentinel[..c.offset]);
                prop_assert_eq!(&got[c.offset + n..], &sentinel[c.offset + n..]);
            }
        }
        a.free_adapter_channel(g);
    }
}
