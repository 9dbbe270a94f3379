//! Virtual time: each transfer charged the 8237A data sheet's clock states at the
//! modelled machine's DMA clock (`docs/dma.md`, "Virtual time"). All figures exact.

mod common;

use common::FakeDevice as Dev;
use hal::{DmaChannel, DmaController, MachineTiming, SystemMemory};

fn ch(n: u8) -> DmaChannel {
    DmaChannel::new(n).unwrap()
}

/// Programs a channel through its ports (PC/AT layout).
fn program(c: &mut DmaController, n: u8, mode: u8, page: u8, addr: u16, count: u16) {
    let (base, stride) = if n < 4 { (0u16, 1u16) } else { (0xC0, 2) };
    let reg = |r: u16| base + r * stride;
    let k = u16::from(n % 4);
    const PAGE: [u16; 8] = [0x87, 0x83, 0x81, 0x82, 0x8F, 0x8B, 0x89, 0x8A];
    c.io_write(reg(10), 0x04 | (n & 3));
    c.io_write(reg(12), 0);
    c.io_write(reg(11), mode | (n & 3));
    c.io_write(reg(2 * k), addr as u8);
    c.io_write(reg(2 * k), (addr >> 8) as u8);
    c.io_write(PAGE[usize::from(n)], page);
    c.io_write(reg(2 * k + 1), count as u8);
    c.io_write(reg(2 * k + 1), (count >> 8) as u8);
    c.io_write(reg(10), n & 3);
}

const DEMAND_READ: u8 = 0x08;
const SINGLE_READ: u8 = 0x48;
const BLOCK_READ: u8 = 0x88;

/// 250 ns: one 4 MHz DMA clock of an 8 MHz PC/AT, in picoseconds.
const CLK8: u64 = 250_000;

fn timed() -> DmaController {
    let mut c = DmaController::new();
    c.set_timing(Some(MachineTiming::PC_AT_8MHZ));
    c
}

#[test]
fn timing_is_off_by_default() {
    let m = SystemMemory::new(1 << 20).unwrap();
    let mut c = DmaController::new();
    program(&mut c, 1, DEMAND_READ, 0, 0, 4095);
    c.service(ch(1), &m, &mut Dev::taking(4096));
    assert_eq!(c.virtual_time().total, 0);
}

#[test]
fn demand_mode_64k_on_an_8_bit_channel() {
    let m = SystemMemory::new(1 << 20).unwrap();
    let mut c = timed();
    program(&mut c, 1, DEMAND_READ, 0, 0, 0xFFFF);
    assert!(c.service(ch(1), &m, &mut Dev::taking(1 << 16)).terminal_count);
    // 65536 transfers of S2 S3 Sw S4, an S1 at the grant and at each of the 255 crossings
    // of a 256-byte boundary, one hand-over of 3 clocks.
    let clocks = 65536 * 4 + 256 + 3;
    let vt = c.virtual_time();
    assert_eq!(vt.total, clocks * CLK8);
    assert_eq!(vt.per_channel[1], vt.total);
    assert_eq!(vt.per_channel[5], 0);
}

#[test]
fn a_16_bit_channel_moves_twice_the_bytes_per_cycle() {
    let m = SystemMemory::new(1 << 20).unwrap();
    let mut c = timed();
    program(&mut c, 5, DEMAND_READ, 0, 0, 0x7FFF);
    assert_eq!(c.service(ch(5), &m, &mut Dev::taking(1 << 16)).bytes, 1 << 16);
    assert_eq!(c.virtual_time().total, (32768 * 4 + 128 + 3) * CLK8);
}

#[test]
fn single_mode_pays_a_grant_and_an_s1_per_transfer_block_mode_one_grant() {
    let m = SystemMemory::new(1 << 20).unwrap();
    let mut c = timed();
    program(&mut c, 2, SINGLE_READ, 0, 0, 999);
    c.service(ch(2), &m, &mut Dev::taking(1000));
    assert_eq!(c.virtual_time().total, 1000 * (4 + 1 + 3) * CLK8);
    let mut c = timed();
    program(&mut c, 2, BLOCK_READ, 0, 0x80, 999);
    c.service(ch(2), &m, &mut Dev::taking(1000));
    // From 0x80: 1000 transfers cross 0x100, 0x200, 0x300 and 0x400.
    assert_eq!(c.virtual_time().total, (1000 * 4 + 1 + 4 + 3) * CLK8);
}

#[test]
fn compressed_timing_drops_s3() {
    let m = SystemMemory::new(1 << 20).unwrap();
    let mut c = timed();
    c.io_write(0x08, 0x08);
    program(&mut c, 3, DEMAND_READ, 0, 0, 255);
    c.service(ch(3), &m, &mut Dev::taking(256));
    assert_eq!(c.virtual_time().total, (256 * 3 + 1 + 3) * CLK8);
    // Extended write changes no state count.
    let mut c = timed();
    c.io_write(0x08, 0x20);
    program(&mut c, 3, DEMAND_READ, 0, 0, 255);
    c.service(ch(3), &m, &mut Dev::taking(256));
    assert_eq!(c.virtual_time().total, (256 * 4 + 1 + 3) * CLK8);
}

#[test]
fn each_return_of_dreq_in_demand_mode_is_a_new_grant() {
    let m = SystemMemory::new(1 << 20).unwrap();
    let mut c = timed();
    program(&mut c, 1, DEMAND_READ, 0, 0, 99);
    let mut d = Dev::taking(50);
    c.service(ch(1), &m, &mut d);
    d.budget = 50;
    c.service(ch(1), &m, &mut d);
    assert_eq!(c.virtual_time().total, (100 * 4 + 2 * (1 + 3)) * CLK8);
}

#[test]
fn a_6_mhz_at_counts_the_same_clocks_at_3_mhz() {
    let m = SystemMemory::new(1 << 20).unwrap();
    let mut c = DmaController::new();
    c.set_timing(MachineTiming::preset("pc-at-6mhz"));
    program(&mut c, 1, DEMAND_READ, 0, 0, 255);
    c.service(ch(1), &m, &mut Dev::taking(256));
    // 3 MHz: 333 333 ps per clock, the clocks as at 8 MHz.
    assert_eq!(c.virtual_time().total, (256 * 4 + 1 + 3) * 1_000_000_000_000 / 3_000_000);
}

#[test]
fn eisa_timing_types_set_the_cycle_length() {
    let m = SystemMemory::new(1 << 20).unwrap();
    let mut totals = Vec::new();
    for timing in 0..4u8 {
        let mut c = DmaController::eisa();
        c.set_timing(MachineTiming::preset("eisa-8mhz"));
        program(&mut c, 1, DEMAND_READ, 0, 0, 1023);
        // 32-bit, counting bytes: 256 transfers of 4 bytes.
        c.io_write(0x40B, (timing << 4) | 0x08 | 1);
        assert_eq!(c.service(ch(1), &m, &mut Dev::taking(1024)).bytes, 1024);
        totals.push(c.virtual_time().total);
    }
    let per = [8u64, 6, 4, 1];
    for (t, p) in totals.iter().zip(per) {
        assert_eq!(*t, (256 * p + 4) * 1_000_000_000_000 / 8_250_000, "{totals:?}");
    }
}

#[test]
fn presets_are_found_by_name() {
    for name in ["pc-at-8mhz", "pc-at-6mhz", "eisa-8mhz"] {
        assert_eq!(MachineTiming::preset(name).map(|p| p.name), Some(name));
    }
    assert_eq!(MachineTiming::preset("pc-xt"), None);
}
