//! Register-level behaviour of the 8237A pair, driven through its I/O ports.

mod common;

use std::sync::Arc;

use hal::{DmaChannel, DmaController, DmaDevice, DmaMode, PhysAddr, SystemMemory, TransferType};

use common::FakeDevice as Dev;

struct Ports {
    addr: u16,
    count: u16,
    page: u16,
    status: u16,
    request: u16,
    single_mask: u16,
    mode: u16,
    clear_ff: u16,
    master_clear: u16,
    clear_mask: u16,
    all_mask: u16,
}

fn ports(ch: u8) -> Ports {
    const PAGE: [u16; 8] = [0x87, 0x83, 0x81, 0x82, 0x8F, 0x8B, 0x89, 0x8A];
    let (base, stride) = if ch < 4 { (0x00u16, 1u16) } else { (0xC0, 2) };
    let reg = |r: u16| base + r * stride;
    let c = u16::from(ch % 4);
    Ports {
        addr: reg(2 * c),
        count: reg(2 * c + 1),
        page: PAGE[usize::from(ch)],
        status: reg(8),
        request: reg(9),
        single_mask: reg(10),
        mode: reg(11),
        clear_ff: reg(12),
        master_clear: reg(13),
        clear_mask: reg(14),
        all_mask: reg(15),
    }
}

fn ch(n: u8) -> DmaChannel {
    DmaChannel::new(n).unwrap()
}

const DEMAND: u8 = 0x00;
const SINGLE: u8 = 0x40;
const BLOCK: u8 = 0x80;
const VERIFY: u8 = 0x00;
const WRITE: u8 = 0x04;
const READ: u8 = 0x08;
const AUTO: u8 = 0x10;
const DEC: u8 = 0x20;

/// Programs a channel the way a driver does: mask, clear flip-flop, mode, address,
/// page, count, unmask.
fn program(c: &mut DmaController, n: u8, mode: u8, page: u8, addr: u16, count: u16) {
    let p = ports(n);
    c.io_write(p.single_mask, 0x04 | (n & 3));
    c.io_write(p.clear_ff, 0);
    c.io_write(p.mode, mode | (n & 3));
    c.io_write(p.addr, addr as u8);
    c.io_write(p.addr, (addr >> 8) as u8);
    c.io_write(p.page, page);
    c.io_write(p.count, count as u8);
    c.io_write(p.count, (count >> 8) as u8);
    c.io_write(p.single_mask, n & 3);
}

fn read16(c: &mut DmaController, n: u8, port: u16) -> u16 {
    c.io_write(ports(n).clear_ff, 0);
    let lo = c.io_read(port);
    let hi = c.io_read(port);
    u16::from_le_bytes([lo, hi])
}

fn mem() -> Arc<SystemMemory> {
    SystemMemory::new(32 << 20).unwrap()
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn phys(m: &SystemMemory, pa: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    m.read_phys(PhysAddr(pa), &mut v).unwrap();
    v
}

#[test]
fn flip_flop_sequences_low_then_high_and_clear_resets_it() {
    let mut c = DmaController::new();
    let p = ports(1);
    c.io_write(p.clear_ff, 0);
    c.io_write(p.addr, 0x34);
    c.io_write(p.addr, 0x12);
    assert_eq!(c.channel_state(ch(1)).base_address, 0x1234);
    // One byte written leaves the pointer on "high"; clearing makes the next write low.
    c.io_write(p.addr, 0x99);
    c.io_write(p.clear_ff, 0);
    c.io_write(p.addr, 0x78);
    assert_eq!(c.channel_state(ch(1)).base_address, 0x1278);
    // The flip-flop is shared by all of a chip's registers: the pointer is on "high"
    // after the single address byte, so the count's first byte is its high byte.
    c.io_write(p.count, 0xCD);
    c.io_write(p.count, 0xAB);
    assert_eq!(c.channel_state(ch(1)).base_count, 0xCDAB);
    assert_eq!(read16(&mut c, 1, p.addr), 0x1278);
    c.io_write(p.clear_ff, 0);
    assert_eq!(c.io_read(p.count), 0xAB);
    assert_eq!(c.io_read(p.count), 0xCD);
}

#[test]
fn address_and_count_read_back_current_values() {
    let m = mem();
    let mut c = DmaController::new();
    program(&mut c, 1, WRITE | DEMAND, 0x10, 0x2000, 99);
    let mut d = Dev::supplying(pattern(40, 1));
    let out = c.service(ch(1), &m, &mut d);
    assert_eq!(out.bytes, 40);
    assert!(!out.terminal_count);
    let p = ports(1);
    assert_eq!(read16(&mut c, 1, p.addr), 0x2000 + 40);
    assert_eq!(read16(&mut c, 1, p.count), 99 - 40);
    let s = c.channel_state(ch(1));
    assert_eq!((s.base_address, s.base_count), (0x2000, 99));
    assert_eq!(phys(&m, 0x10_2000, 40), pattern(40, 1));
}

#[test]
fn count_holds_n_minus_1_and_tc_comes_on_rollover_from_zero() {
    let m = mem();
    let mut c = DmaController::new();
    program(&mut c, 3, READ | SINGLE, 0x01, 0x0000, 9);
    m.write_phys(PhysAddr(0x1_0000), &pattern(64, 7)).unwrap();
    let mut d = Dev::taking(1000);
    let out = c.service(ch(3), &m, &mut d);
    assert_eq!(out.bytes, 10);
    assert!(out.terminal_count);
    assert_eq!(d.sink, pattern(10, 7));
    assert_eq!(d.eop, 1);
    let s = c.channel_state(ch(3));
    assert_eq!(s.current_count, 0xFFFF);
    assert_eq!(s.current_address, 10);
    assert!(s.terminal_count);

    // Count 0 moves exactly one byte.
    program(&mut c, 3, READ | SINGLE, 0x01, 0x0000, 0);
    let mut d = Dev::taking(1000);
    assert_eq!(c.service(ch(3), &m, &mut d).bytes, 1);
}

#[test]
fn channel_masks_itself_at_tc_unless_auto_init() {
    let m = mem();
    let mut c = DmaController::new();
    program(&mut c, 2, WRITE | DEMAND, 0x02, 0x100, 15);
    let mut d = Dev::supplying(pattern(64, 3));
    assert_eq!(c.service(ch(2), &m, &mut d).bytes, 16);
    assert!(c.channel_state(ch(2)).masked);
    // Masked: the device still asserts DREQ, nothing moves.
    assert_eq!(c.service(ch(2), &m, &mut d).bytes, 0);

    program(&mut c, 2, WRITE | DEMAND | AUTO, 0x02, 0x100, 15);
    let out = c.service(ch(2), &m, &mut d);
    assert_eq!(out, hal::ServiceOutcome { bytes: 16, terminal_count: true });
    let s = c.channel_state(ch(2));
    assert!(!s.masked);
    assert_eq!((s.current_address, s.current_count), (0x100, 15));
    // Auto-init reloaded the base registers: the next block lands at the same place.
    assert_eq!(c.service(ch(2), &m, &mut d).bytes, 16);
    assert_eq!(phys(&m, 0x2_0100, 16), pattern(64, 3)[32..48].to_vec());
}

#[test]
fn status_register_tc_bits_set_then_cleared_by_read() {
    let m = mem();
    let mut c = DmaController::new();
    program(&mut c, 1, READ | DEMAND, 0, 0x1000, 3);
    program(&mut c, 6, READ | DEMAND, 0, 0x1000, 3);
    c.service(ch(1), &m, &mut Dev::taking(100));
    c.service(ch(6), &m, &mut Dev::taking(100));
    assert_eq!(c.io_read(0x08) & 0x0F, 0b0010);
    assert_eq!(c.io_read(0x08) & 0x0F, 0, "TC bits clear on read");
    assert!(!c.channel_state(ch(1)).terminal_count);
    // Controller 2's status is separate and still holds channel 6's bit.
    assert!(c.channel_state(ch(6)).terminal_count);
    assert_eq!(c.io_read(0xD0) & 0x0F, 0b0100);
    assert_eq!(c.io_read(0xD0) & 0x0F, 0);
}

#[test]
fn request_register_bits_show_in_status_and_drive_transfers() {
    let m = mem();
    let mut c = DmaController::new();
    let p = ports(2);
    c.io_write(p.request, 0x04 | 2);
    assert_eq!(c.io_read(p.status) >> 4, 0b0100);
    assert!(c.channel_state(ch(2)).request);
    c.io_write(p.request, 2);
    assert!(!c.channel_state(ch(2)).request);

    struct Quiet(Dev);
    impl DmaDevice for Quiet {
        fn dreq(&self) -> bool {
            false
        }
        fn dma_write(&mut self, data: &[u8]) -> usize {
            self.0.dma_write(data)
        }
        fn dma_read(&mut self, buf: &mut [u8]) -> usize {
            self.0.dma_read(buf)
        }
    }
    // Outside block mode a software request does not start a transfer.
    program(&mut c, 2, DEMAND | VERIFY, 0, 0, 7);
    c.io_write(p.request, 0x04 | 2);
    let out = c.service(ch(2), &m, &mut Quiet(Dev::supplying(vec![0; 8])));
    assert_eq!(out.bytes, 0);
    // In block mode it transfers without the device's DREQ; TC clears it.
    program(&mut c, 2, BLOCK | VERIFY, 0, 0, 7);
    let out = c.service(ch(2), &m, &mut Quiet(Dev::supplying(vec![0; 8])));
    assert_eq!(out.bytes, 8);
    assert!(out.terminal_count);
    assert!(!c.channel_state(ch(2)).request);
}

#[test]
fn single_all_and_clear_mask_and_master_clear() {
    let mut c = DmaController::new();
    let (p1, p2) = (ports(1), ports(5));
    // Reset state after BIOS set-up: everything masked but the cascade channel 4.
    for n in [0, 1, 2, 3, 5, 6, 7] {
        assert!(c.channel_state(ch(n)).masked, "channel {n}");
    }
    assert!(!c.channel_state(ch(4)).masked);
    c.io_write(p1.clear_mask, 0);
    assert!((0..4).all(|n| !c.channel_state(ch(n)).masked));
    c.io_write(p1.single_mask, 0x04 | 3);
    assert!(c.channel_state(ch(3)).masked);
    c.io_write(p1.single_mask, 3);
    assert!(!c.channel_state(ch(3)).masked);
    c.io_write(p2.all_mask, 0b1010);
    let masked: Vec<bool> = (4..8).map(|n| c.channel_state(ch(n)).masked).collect();
    assert_eq!(masked, vec![false, true, false, true]);

    // Master clear: all masked, flip-flop low, command, status and requests cleared.
    let m = mem();
    program(&mut c, 1, READ | DEMAND, 0, 0x100, 3);
    assert!(c.service(ch(1), &m, &mut Dev::taking(4)).terminal_count);
    assert!(c.channel_state(ch(1)).terminal_count, "a TC bit is set before the clear");
    c.io_write(p1.request, 0x04 | 1);
    c.io_write(p1.status, 0x04); // command: controller disabled
    c.io_write(p1.addr, 0xAA); // byte pointer now on the high byte
    c.io_write(p1.master_clear, 0);
    assert!((0..4).all(|n| c.channel_state(ch(n)).masked));
    assert!(!c.channel_state(ch(1)).request);
    assert!(!c.channel_state(ch(1)).terminal_count);
    assert_eq!(c.io_read(p1.status), 0, "TC and request bits cleared");
    c.io_write(p1.addr, 0x11);
    assert_eq!(c.channel_state(ch(1)).base_address & 0xFF, 0x11, "flip-flop back on the low byte");
    // The command register was cleared: the controller is enabled again.
    program(&mut c, 1, READ | DEMAND, 0, 0x100, 3);
    assert_eq!(c.service(ch(1), &m, &mut Dev::taking(100)).bytes, 4);
    // Controller 2 was not touched by controller 1's master clear.
    assert!(!c.channel_state(ch(4)).masked);
}

#[test]
fn mode_register_decodes_every_field() {
    let mut c = DmaController::new();
    for value in 0u16..=255 {
        let v = value as u8;
        let n = 4 + (v & 3);
        c.io_write(0xD6, v);
        let s = c.channel_state(ch(n));
        let mode = [DmaMode::Demand, DmaMode::Single, DmaMode::Block, DmaMode::Cascade];
        assert_eq!(s.mode, mode[usize::from(v >> 6)], "mode {v:#x}");
        assert_eq!(s.decrement, v & 0x20 != 0, "mode {v:#x}");
        assert_eq!(s.auto_init, v & 0x10 != 0, "mode {v:#x}");
        let t = match (v >> 2) & 3 {
            1 => TransferType::Write,
            2 => TransferType::Read,
            _ => TransferType::Verify,
        };
        assert_eq!(s.transfer, t, "mode {v:#x}");
    }
    // Writing channel 1's mode on controller 1 leaves channel 5 alone.
    c.io_write(0xD6, 0x45);
    c.io_write(0x0B, 0x89);
    assert_eq!(c.channel_state(ch(5)).mode, DmaMode::Single);
    assert_eq!(c.channel_state(ch(1)).mode, DmaMode::Block);
    assert_eq!(c.channel_state(ch(1)).transfer, TransferType::Read);
}

#[test]
fn channel1_address_wraps_inside_its_64k_page() {
    let m = mem();
    let mut c = DmaController::new();
    program(&mut c, 1, WRITE | DEMAND, 0x12, 0xFFF0, 0x1F);
    let data = pattern(32, 9);
    let out = c.service(ch(1), &m, &mut Dev::supplying(data.clone()));
    assert_eq!(out.bytes, 32);
    assert_eq!(phys(&m, 0x12_FFF0, 16), data[..16].to_vec());
    assert_eq!(phys(&m, 0x12_0000, 16), data[16..].to_vec());
    assert_eq!(phys(&m, 0x13_0000, 16), vec![0; 16], "never carries into the next page");
    let s = c.channel_state(ch(1));
    assert_eq!((s.page, s.current_address), (0x12, 0x0010));
}

#[test]
fn channel5_word_address_wraps_inside_its_128k_page_ignoring_page_bit0() {
    let m = mem();
    let mut c = DmaController::new();
    // Page 0x13: bit 0 is ignored, so the window is 0x120000..0x140000.
    program(&mut c, 5, WRITE | DEMAND, 0x13, 0xFFF8, 15);
    let data = pattern(32, 4);
    let out = c.service(ch(5), &m, &mut Dev::supplying(data.clone()));
    assert_eq!(out.bytes, 32);
    assert_eq!(phys(&m, 0x13_FFF0, 16), data[..16].to_vec());
    assert_eq!(phys(&m, 0x12_0000, 16), data[16..].to_vec());
    assert_eq!(phys(&m, 0x14_0000, 16), vec![0; 16]);
    let s = c.channel_state(ch(5));
    assert_eq!((s.page, s.current_address, s.current_count), (0x13, 0x0008, 0xFFFF));
}

#[test]
fn channel4_cascade_is_never_serviced() {
    let m = mem();
    let mut c = DmaController::new();
    // Channel 4 stays in the cascade mode the BIOS set; its address, page and count
    // registers are loaded as if for a transfer, and it is unmasked.
    let p = ports(4);
    c.io_write(p.clear_ff, 0);
    for b in [0x00, 0x00] {
        c.io_write(p.addr, b);
    }
    c.io_write(p.page, 0x01);
    for b in [0x0F, 0x00] {
        c.io_write(p.count, b);
    }
    let s = c.channel_state(ch(4));
    assert_eq!((s.mode, s.masked, s.base_count), (DmaMode::Cascade, false, 15));
    let mut d = Dev::supplying(pattern(16, 1));
    assert_eq!(c.service(ch(4), &m, &mut d).bytes, 0);
    // Through the priority encoder too: a device on channel 4 asserting DREQ is never
    // acknowledged, and its DREQ input cannot be driven (it is controller 1's HRQ).
    let outs = c.service_all(&m, &mut [(ch(4), &mut d as &mut dyn DmaDevice)]);
    assert_eq!(outs[0].bytes, 0);
    assert_eq!(d.pos, 0, "the device supplied nothing");
    assert_eq!(phys(&m, 0x1_0000, 16), vec![0; 16]);
    let s = c.channel_state(ch(4));
    assert_eq!((s.current_address, s.current_count), (0, 15));
    assert_eq!(c.io_read(0xD0) & 0x11, 0, "no TC and no request on channel 4");
}

#[test]
fn controller1_needs_the_cascade_channel_unmasked() {
    let m = mem();
    let mut c = DmaController::new();
    program(&mut c, 1, WRITE | DEMAND, 0, 0x100, 15);
    c.io_write(0xD4, 0x04); // mask channel 4
    assert_eq!(c.service(ch(1), &m, &mut Dev::supplying(vec![1; 16])).bytes, 0);
    c.io_write(0xD4, 0x00);
    assert_eq!(c.service(ch(1), &m, &mut Dev::supplying(vec![1; 16])).bytes, 16);
}

#[test]
fn command_register_disable_stops_the_controller() {
    let m = mem();
    let mut c = DmaController::new();
    program(&mut c, 6, WRITE | DEMAND, 0, 0x100, 3);
    c.io_write(0xD0, 0x04);
    assert_eq!(c.service(ch(6), &m, &mut Dev::supplying(vec![1; 8])).bytes, 0);
    c.io_write(0xD0, 0x00);
    assert_eq!(c.service(ch(6), &m, &mut Dev::supplying(vec![1; 8])).bytes, 8);
}

#[test]
fn decrement_mode_runs_addresses_downwards() {
    let m = mem();
    let mut c = DmaController::new();
    // 8-bit: the stream's first byte lands at the programmed address, then downwards,
    // wrapping from 0x0000 to 0xFFFF inside the page.
    program(&mut c, 1, WRITE | DEMAND | DEC, 0x05, 0x0003, 7);
    let data = pattern(8, 2);
    c.service(ch(1), &m, &mut Dev::supplying(data.clone()));
    let low = phys(&m, 0x5_0000, 4);
    assert_eq!(low, vec![data[3], data[2], data[1], data[0]]);
    let high = phys(&m, 0x5_FFFC, 4);
    assert_eq!(high, vec![data[7], data[6], data[5], data[4]]);
    assert_eq!(c.channel_state(ch(1)).current_address, 0xFFFB);

    // 16-bit: words go downwards, each word keeps its byte order.
    program(&mut c, 5, WRITE | DEMAND | DEC, 0x06, 0x0002, 2);
    let data = pattern(6, 5);
    c.service(ch(5), &m, &mut Dev::supplying(data.clone()));
    assert_eq!(phys(&m, 0x6_0000, 6), vec![data[4], data[5], data[2], data[3], data[0], data[1]]);

    // Read direction: the device gets memory from the top down.
    m.write_phys(PhysAddr(0x8_0000), &[1, 2, 3, 4, 5, 6]).unwrap();
    program(&mut c, 5, READ | DEMAND | DEC, 0x08, 0x0002, 2);
    let mut d = Dev::taking(100);
    c.service(ch(5), &m, &mut d);
    assert_eq!(d.sink, vec![5, 6, 3, 4, 1, 2]);
}

#[test]
fn partial_decrement_lands_at_the_top_of_the_run() {
    let m = mem();
    let mut c = DmaController::new();
    program(&mut c, 2, WRITE | DEMAND | DEC, 0x08, 0x0100, 15);
    let mut d = Dev::supplying(vec![0xA1, 0xA2, 0xA3]);
    assert_eq!(c.service(ch(2), &m, &mut d).bytes, 3);
    // Addresses 0x100, 0xFF, 0xFE received the stream's bytes in that order.
    assert_eq!(phys(&m, 0x8_00FE, 4), vec![0xA3, 0xA2, 0xA1, 0]);
    assert_eq!(phys(&m, 0x8_00F0, 14), vec![0; 14]);
    assert_eq!(c.channel_state(ch(2)).current_address, 0x00FD);
}

#[test]
fn verify_moves_no_data_but_runs_address_and_count() {
    let m = mem();
    let mut c = DmaController::new();
    m.write_phys(PhysAddr(0x3_0000), &pattern(32, 1)).unwrap();
    program(&mut c, 7, VERIFY | DEMAND, 0x03, 0x0000, 15);
    let out = c.service(ch(7), &m, &mut Dev::supplying(vec![0xEE; 64]));
    assert_eq!(out, hal::ServiceOutcome { bytes: 32, terminal_count: true });
    assert_eq!(phys(&m, 0x3_0000, 32), pattern(32, 1));
    let s = c.channel_state(ch(7));
    assert_eq!((s.current_address, s.current_count), (16, 0xFFFF));
}

/// Residue in transfer units: `(count + 1) & 0xFFFF`, where 0 is ambiguous.
fn residue_units(s: &hal::ChannelState) -> u32 {
    let r = (u32::from(s.current_count) + 1) & 0xFFFF;
    if r == 0 && !s.terminal_count {
        0x1_0000
    } else {
        r
    }
}

#[test]
fn residue_rule_uses_tc_to_tell_done_from_untouched_full_page() {
    let m = mem();
    let mut c = DmaController::new();
    program(&mut c, 1, WRITE | DEMAND, 0x04, 0x0000, 0xFFFF);
    let s = c.channel_state(ch(1));
    assert_eq!((u32::from(s.current_count) + 1) & 0xFFFF, 0);
    assert_eq!(residue_units(&s), 0x1_0000, "untouched: all 64 KiB remain");

    let out = c.service(ch(1), &m, &mut Dev::supplying(pattern(0x1_0000, 3)));
    assert_eq!(out.bytes, 0x1_0000);
    let s = c.channel_state(ch(1));
    assert_eq!((u32::from(s.current_count) + 1) & 0xFFFF, 0);
    assert_eq!(residue_units(&s), 0, "after TC: nothing remains");

    program(&mut c, 1, WRITE | DEMAND, 0x04, 0x0000, 0xFFFF);
    c.io_read(0x08);
    c.service(ch(1), &m, &mut Dev::supplying(pattern(100, 3)));
    assert_eq!(residue_units(&c.channel_state(ch(1))), 0x1_0000 - 100);
}

#[test]
fn device_dropping_dreq_stops_the_transfer_mid_count() {
    let m = mem();
    let mut c = DmaController::new();
    program(&mut c, 1, READ | DEMAND, 0x09, 0, 999);
    let mut d = Dev::taking(300);
    let out = c.service(ch(1), &m, &mut d);
    assert_eq!(out, hal::ServiceOutcome { bytes: 300, terminal_count: false });
    assert_eq!(c.channel_state(ch(1)).current_count, 699);
    d.budget = 10_000;
    let out = c.service(ch(1), &m, &mut d);
    assert_eq!(out, hal::ServiceOutcome { bytes: 700, terminal_count: true });
    assert_eq!(d.sink.len(), 1000);
}

#[test]
fn sixteen_bit_channels_count_whole_words() {
    let m = mem();
    let mut c = DmaController::new();
    // Word address 0x0010 on page 0x0A is byte 0x0A_0020; count 9 is ten words.
    program(&mut c, 6, WRITE | DEMAND, 0x0A, 0x0010, 9);
    let mut d = Dev::supplying(vec![1, 2, 3]);
    let out = c.service(ch(6), &m, &mut d);
    assert_eq!(out.bytes, 4, "a started word cycle completes");
    let s = c.channel_state(ch(6));
    assert_eq!((s.current_address, s.current_count), (0x0012, 7), "address and count move in words");
    // The second word's high byte had nothing driving it: the floating bus.
    assert_eq!(phys(&m, 0x0A_0020, 6), vec![1, 2, 3, 0xFF, 0, 0]);
    assert_eq!(phys(&m, 0x0A_0010, 16), vec![0; 16], "nothing below the word address");
    // The other eight words land right after, twenty bytes in all.
    let rest = pattern(16, 6);
    let out = c.service(ch(6), &m, &mut Dev::supplying(rest.clone()));
    assert_eq!(out, hal::ServiceOutcome { bytes: 16, terminal_count: true });
    assert_eq!(phys(&m, 0x0A_0024, 16), rest);
    assert_eq!(phys(&m, 0x0A_0034, 2), vec![0, 0]);
    // Reading: ten words give the device twenty bytes in memory order.
    program(&mut c, 6, READ | DEMAND, 0x0A, 0x0010, 9);
    let mut d = Dev::taking(100);
    assert_eq!(c.service(ch(6), &m, &mut d).bytes, 20);
    assert_eq!(d.sink, phys(&m, 0x0A_0020, 20));
}

#[test]
fn transfers_beyond_memory_read_open_bus_and_drop_writes() {
    let m = SystemMemory::new(1 << 20).unwrap();
    let mut c = DmaController::new();
    program(&mut c, 1, READ | DEMAND, 0x20, 0, 3);
    let mut d = Dev::taking(10);
    c.service(ch(1), &m, &mut d);
    assert_eq!(d.sink, vec![0xFF; 4]);
    program(&mut c, 1, WRITE | DEMAND, 0x0F, 0xFFFE, 3);
    let out = c.service(ch(1), &m, &mut Dev::supplying(vec![7; 4]));
    assert_eq!(out.bytes, 4);
    assert_eq!(phys(&m, 0xF_FFFE, 2), vec![7, 7]);
}

#[test]
fn port_decoding_and_open_bus() {
    for p in (0x00..=0x0F).chain((0xC0..=0xDE).step_by(2)) {
        assert!(DmaController::is_dma_port(p), "{p:#x}");
    }
    for p in [0x87, 0x83, 0x81, 0x82, 0x8F, 0x8B, 0x89, 0x8A] {
        assert!(DmaController::is_dma_port(p), "{p:#x}");
    }
    for p in [0x10, 0x80, 0x84, 0xC1, 0xDF, 0xE0, 0x3F0] {
        assert!(!DmaController::is_dma_port(p), "{p:#x}");
    }
    let mut c = DmaController::new();
    assert_eq!(c.io_read(0xC1), 0xFF);
    assert_eq!(c.io_read(0x0B), 0xFF, "mode register is write-only");
    c.io_write(0x8B, 0x42);
    assert_eq!(c.io_read(0x8B), 0x42);
    assert_eq!(c.channel_state(ch(5)).page, 0x42);
}

#[test]
fn port_write_log_records_in_order() {
    let mut c = DmaController::new();
    c.record_port_writes(true);
    program(&mut c, 5, WRITE | SINGLE, 0x12, 0x3456, 0x00FF);
    let log = c.take_port_writes();
    assert_eq!(
        log,
        vec![
            (0xD4, 0x05),
            (0xD8, 0x00),
            (0xD6, 0x45),
            (0xC4, 0x56),
            (0xC4, 0x34),
            (0x8B, 0x12),
            (0xC6, 0xFF),
            (0xC6, 0x00),
            (0xD4, 0x01),
        ]
    );
    assert!(c.take_port_writes().is_empty());
}

// ---- 8237A behaviour a program can observe (datasheet: status, request and command
// registers, transfer modes, priority, verify) ----

/// A device that holds DREQ up until it has handled `budget` bytes and logs, for every
/// byte it handles, its channel number into a log shared with the other devices.
struct Logged {
    n: u8,
    budget: usize,
    log: std::rc::Rc<std::cell::RefCell<Vec<u8>>>,
}

impl DmaDevice for Logged {
    fn dreq(&self) -> bool {
        self.budget > 0
    }
    fn dma_write(&mut self, data: &[u8]) -> usize {
        let k = data.len().min(self.budget);
        self.budget -= k;
        self.log.borrow_mut().extend(std::iter::repeat_n(self.n, k));
        k
    }
    fn dma_read(&mut self, buf: &mut [u8]) -> usize {
        let k = buf.len().min(self.budget);
        buf[..k].fill(self.n);
        self.budget -= k;
        self.log.borrow_mut().extend(std::iter::repeat_n(self.n, k));
        k
    }
}

/// A device whose DREQ is held up and which has no data at all: any data strobe is a
/// failure.
struct NoData;

impl DmaDevice for NoData {
    fn dreq(&self) -> bool {
        true
    }
    fn dma_write(&mut self, _: &[u8]) -> usize {
        panic!("IOW strobed during a verify transfer")
    }
    fn dma_read(&mut self, _: &mut [u8]) -> usize {
        panic!("IOR strobed during a verify transfer")
    }
}

fn status(c: &mut DmaController, chip2: bool) -> u8 {
    c.io_read(if chip2 { 0xD0 } else { 0x08 })
}

#[test]
fn status_request_bits_show_hardware_dreq_live() {
    let mut c = DmaController::new();
    c.set_dreq(ch(1), true);
    c.set_dreq(ch(6), true);
    assert_eq!(status(&mut c, false) >> 4, 0b0010);
    assert_eq!(status(&mut c, false) >> 4, 0b0010, "a status read does not clear request bits");
    assert_eq!(status(&mut c, true) >> 4 & 0b1110, 0b0100);
    assert!(c.channel_state(ch(1)).dreq);
    c.set_dreq(ch(1), false);
    assert_eq!(status(&mut c, false) >> 4, 0, "the bit follows the line down");
    // The request register's bits show as well, and both together.
    c.io_write(0x09, 0x04 | 3);
    c.set_dreq(ch(0), true);
    assert_eq!(status(&mut c, false) >> 4, 0b1001);
}

#[test]
fn masked_channel_with_dreq_held_shows_the_request_and_moves_nothing() {
    let m = mem();
    let mut c = DmaController::new();
    program(&mut c, 2, WRITE | DEMAND, 0x03, 0x0000, 15);
    c.io_write(0x0A, 0x04 | 2);
    let mut d = Dev::supplying(pattern(16, 2));
    assert_eq!(c.service(ch(2), &m, &mut d).bytes, 0);
    assert_eq!(d.pos, 0);
    assert_eq!(status(&mut c, false), 0b0100_0000, "DREQ 2 requesting, no TC");
    assert_eq!(phys(&m, 0x3_0000, 16), vec![0; 16]);
    // Unmasked, the held request is served.
    c.io_write(0x0A, 2);
    assert_eq!(c.service(ch(2), &m, &mut d).bytes, 16);
    assert_eq!(phys(&m, 0x3_0000, 16), pattern(16, 2));
}

#[test]
fn channel_at_tc_with_dreq_still_up_shows_both_and_stays_masked() {
    let m = mem();
    let mut c = DmaController::new();
    program(&mut c, 1, WRITE | DEMAND, 0x04, 0x0000, 3);
    // The device has 100 bytes to give and keeps DREQ up after the channel's 4.
    let mut d = Dev::supplying(pattern(100, 1));
    assert_eq!(c.service(ch(1), &m, &mut d), hal::ServiceOutcome { bytes: 4, terminal_count: true });
    assert!(d.dreq());
    assert_eq!(status(&mut c, false), 0b0010_0010, "TC 1 and request 1");
    assert_eq!(status(&mut c, false), 0b0010_0000, "TC cleared by the read, the request is live");
    assert!(c.channel_state(ch(1)).masked);
    assert_eq!(c.service(ch(1), &m, &mut d).bytes, 0);
    assert_eq!(phys(&m, 0x4_0000, 5), [&pattern(4, 1)[..], &[0]].concat());
}

#[test]
fn controller1_requests_show_as_channel4_on_controller2() {
    let m = mem();
    let mut c = DmaController::new();
    program(&mut c, 3, READ | DEMAND, 0, 0, 7);
    c.set_dreq(ch(3), true);
    assert_eq!(status(&mut c, true) >> 4 & 1, 1, "controller 1's HRQ is channel 4's DREQ");
    assert_eq!(c.next_channel(), Some(ch(3)));
    // Masked on controller 1, the DREQ still shows there but raises no HRQ.
    c.io_write(0x0A, 0x04 | 3);
    assert_eq!(status(&mut c, false) >> 4, 0b1000);
    assert_eq!(status(&mut c, true) >> 4 & 1, 0);
    assert_eq!(c.next_channel(), None);
    // A software request (block mode) raises HRQ even on the masked channel.
    program(&mut c, 0, BLOCK | VERIFY, 0, 0, 7);
    c.io_write(0x0A, 0x04);
    c.io_write(0x09, 0x04);
    assert_eq!(status(&mut c, true) >> 4 & 1, 1);
    assert_eq!(c.next_channel(), Some(ch(0)));
    let outs = c.service_all(&m, &mut []);
    assert!(outs.is_empty());
}

#[test]
fn block_mode_runs_to_tc_after_dreq_drops_demand_mode_stops_and_resumes() {
    let m = mem();
    let mut c = DmaController::new();
    // Block: the device supplies 4 bytes then drops DREQ; the channel runs on to TC and
    // the last 12 cycles write the floating bus.
    program(&mut c, 1, WRITE | BLOCK, 0x05, 0x0000, 15);
    let data = pattern(4, 9);
    let out = c.service(ch(1), &m, &mut Dev::supplying(data.clone()));
    assert_eq!(out, hal::ServiceOutcome { bytes: 16, terminal_count: true });
    assert_eq!(phys(&m, 0x5_0000, 16), [&data[..], &[0xFF; 12]].concat());
    assert_eq!(c.channel_state(ch(1)).current_count, 0xFFFF);

    // Demand: the same device stops the transfer after 4; registers hold; it resumes.
    program(&mut c, 1, WRITE | DEMAND, 0x06, 0x0000, 15);
    let out = c.service(ch(1), &m, &mut Dev::supplying(data.clone()));
    assert_eq!(out, hal::ServiceOutcome { bytes: 4, terminal_count: false });
    let s = c.channel_state(ch(1));
    assert_eq!((s.current_address, s.current_count, s.masked), (4, 11, false));
    assert_eq!(status(&mut c, false) >> 4 & 0b10, 0, "DREQ down: no request");
    let more = pattern(12, 3);
    let out = c.service(ch(1), &m, &mut Dev::supplying(more.clone()));
    assert_eq!(out, hal::ServiceOutcome { bytes: 12, terminal_count: true });
    assert_eq!(phys(&m, 0x6_0000, 16), [&data[..], &more[..]].concat());
}

#[test]
fn software_request_runs_on_a_masked_channel_in_block_mode() {
    let m = mem();
    let mut c = DmaController::new();
    m.write_phys(PhysAddr(0x7_0000), &pattern(8, 4)).unwrap();
    program(&mut c, 2, READ | BLOCK, 0x07, 0x0000, 7);
    c.io_write(0x0F, 0x0F); // all masked
    c.io_write(0x09, 0x04 | 2);
    assert_eq!(status(&mut c, false) >> 4, 0b0100);
    // The device never raises DREQ but answers its DACK.
    let mut d = Dev::taking(100);
    d.budget = 100;
    struct Deaf(Dev);
    impl DmaDevice for Deaf {
        fn dreq(&self) -> bool {
            false
        }
        fn dma_write(&mut self, data: &[u8]) -> usize {
            self.0.dma_write(data)
        }
        fn dma_read(&mut self, buf: &mut [u8]) -> usize {
            self.0.dma_read(buf)
        }
    }
    let mut deaf = Deaf(d);
    let out = c.service(ch(2), &m, &mut deaf);
    assert_eq!(out, hal::ServiceOutcome { bytes: 8, terminal_count: true });
    assert_eq!(deaf.0.sink, pattern(8, 4));
    assert_eq!(status(&mut c, false), 0b0000_0100, "TC 2, the request bit cleared at TC");
    // In demand mode the same request does nothing (datasheet: block mode only).
    program(&mut c, 2, READ | DEMAND, 0x07, 0x0000, 7);
    c.io_write(0x09, 0x04 | 2);
    assert_eq!(c.service(ch(2), &m, &mut deaf).bytes, 0);
}

fn logged(n: u8, budget: usize, log: &std::rc::Rc<std::cell::RefCell<Vec<u8>>>) -> Logged {
    Logged { n, budget, log: log.clone() }
}

#[test]
fn fixed_priority_serves_channel_0_first_and_controller1_through_channel4() {
    let m = mem();
    let mut c = DmaController::new();
    for n in [5, 3, 1] {
        program(&mut c, n, WRITE | DEMAND, 0x10 + n, 0, 3);
    }
    let log = Default::default();
    let (mut d5, mut d3, mut d1) = (logged(5, 8, &log), logged(3, 4, &log), logged(1, 4, &log));
    assert_eq!(c.next_channel(), None);
    let outs = c.service_all(&m, &mut [(ch(5), &mut d5), (ch(3), &mut d3), (ch(1), &mut d1)]);
    assert!(outs.iter().all(|o| o.terminal_count));
    // Channel 4 (controller 1) outranks 5 on controller 2; 1 outranks 3 on controller 1.
    let order: Vec<u8> = log.borrow().iter().copied().collect();
    assert_eq!(order, [vec![1; 4], vec![3; 4], vec![5; 8]].concat());
    assert_eq!(phys(&m, 0x11_0000, 4), vec![1; 4]);
    // Page 0x15 on a word channel: bit 0 ignored, the words land at 0x14_0000.
    assert_eq!(phys(&m, 0x14_0000, 8), vec![5; 8]);
}

#[test]
fn single_mode_gives_the_bus_back_after_each_cycle() {
    let m = mem();
    let run = |mode: u8, command: u8| {
        let mut c = DmaController::new();
        c.io_write(0x08, command);
        for n in [1, 2] {
            program(&mut c, n, WRITE | mode, 0x20 + n, 0, 2);
        }
        let log = Default::default();
        let (mut a, mut b) = (logged(1, 3, &log), logged(2, 3, &log));
        c.service_all(&m, &mut [(ch(2), &mut b), (ch(1), &mut a)]);
        let v: Vec<u8> = log.borrow().clone();
        v
    };
    // Rotating priority: the channel just served drops to the lowest, so single-mode
    // channels alternate; demand mode keeps the bus until DREQ drops or TC.
    assert_eq!(run(SINGLE, 0x10), vec![1, 2, 1, 2, 1, 2]);
    assert_eq!(run(DEMAND, 0x10), vec![1, 1, 1, 2, 2, 2]);
    assert_eq!(run(BLOCK, 0x10), vec![1, 1, 1, 2, 2, 2]);
    // Fixed priority: channel 1 wins every re-arbitration while it requests.
    assert_eq!(run(SINGLE, 0x00), vec![1, 1, 1, 2, 2, 2]);
}

#[test]
fn rotating_priority_starts_after_the_channel_served_last() {
    let m = mem();
    let mut c = DmaController::new();
    c.io_write(0x08, 0x10);
    for n in 0..4 {
        program(&mut c, n, WRITE | DEMAND, 0x30 + n, 0, 0);
    }
    // Serve channel 2 alone; it becomes the lowest: 3, 0, 1, 2 is the new order.
    c.service(ch(2), &m, &mut Dev::supplying(vec![9]));
    program(&mut c, 2, WRITE | DEMAND, 0x32, 0, 0);
    let log = Default::default();
    let mut ds: Vec<Logged> = (0..4).map(|n| logged(n, 1, &log)).collect();
    let mut list: Vec<(DmaChannel, &mut dyn DmaDevice)> =
        ds.iter_mut().enumerate().map(|(n, d)| (ch(n as u8), d as &mut dyn DmaDevice)).collect();
    c.service_all(&m, &mut list);
    assert_eq!(*log.borrow(), vec![3, 0, 1, 2]);
}

#[test]
fn dreq_sense_active_low_turns_idle_lines_into_requests() {
    let mut c = DmaController::new();
    c.io_write(0x08, 0x40);
    c.set_dreq(ch(1), true);
    assert_eq!(status(&mut c, false) >> 4, 0b1101, "every channel whose line is low requests");
    c.io_write(0x08, 0x00);
    assert_eq!(status(&mut c, false) >> 4, 0b0010);
}

#[test]
fn dack_active_high_runs_cycles_the_device_never_sees() {
    let m = mem();
    let mut c = DmaController::new();
    c.io_write(0x08, 0x80);
    program(&mut c, 1, WRITE | DEMAND, 0x08, 0x0000, 7);
    let mut d = Dev::supplying(pattern(8, 1));
    let out = c.service(ch(1), &m, &mut d);
    assert_eq!(out, hal::ServiceOutcome { bytes: 8, terminal_count: true });
    assert_eq!(d.pos, 0, "no acknowledge reached the device");
    assert_eq!(phys(&m, 0x8_0000, 8), vec![0xFF; 8]);
}

#[test]
fn verify_moves_no_data_and_needs_none_from_the_device() {
    let m = mem();
    let mut c = DmaController::new();
    m.write_phys(PhysAddr(0x9_0000), &pattern(32, 5)).unwrap();
    for mode in [DEMAND, SINGLE, BLOCK] {
        program(&mut c, 1, VERIFY | mode, 0x09, 0x0000, 31);
        let out = c.service(ch(1), &m, &mut NoData);
        assert_eq!(out, hal::ServiceOutcome { bytes: 32, terminal_count: true }, "mode {mode:#x}");
        assert_eq!(phys(&m, 0x9_0000, 32), pattern(32, 5));
        let s = c.channel_state(ch(1));
        assert_eq!((s.current_address, s.current_count), (32, 0xFFFF));
    }
}

#[test]
fn compressed_timing_and_extended_write_leave_transfers_unchanged() {
    let m = mem();
    for command in [0x08, 0x20] {
        let mut c = DmaController::new();
        c.io_write(0x08, command);
        program(&mut c, 1, WRITE | DEMAND, 0x0B, 0x0000, 7);
        let out = c.service(ch(1), &m, &mut Dev::supplying(pattern(8, command)));
        assert_eq!(out.bytes, 8);
        assert_eq!(phys(&m, 0xB_0000, 8), pattern(8, command));
    }
}
