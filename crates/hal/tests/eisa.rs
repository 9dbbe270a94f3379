//! The EISA system component's DMA extensions, driven through their I/O ports: high page
//! registers (address bits 31–24), count high bytes (count bits 23–16), the extended mode
//! registers (transfer size, timing type), the 32-bit address counter that carries across
//! 64 KiB pages, and adapter objects that use them (`docs/dma.md`, "EISA").

mod common;

use std::sync::Arc;

use common::FakeDevice as Dev;
use hal::{
    DeviceDescription, Direction, DmaChannel, DmaController, DmaSpeed, DmaWidth, Hal, HalConfig, HalError, PhysAddr,
    Placement, SystemBus, SystemMemory,
};

const WRITE: u8 = 0x04;
const READ: u8 = 0x08;
const DEMAND: u8 = 0x00;
const AUTO: u8 = 0x10;
const DEC: u8 = 0x20;

fn ch(n: u8) -> DmaChannel {
    DmaChannel::new(n).unwrap()
}

fn mem() -> Arc<SystemMemory> {
    SystemMemory::new(48 << 20).unwrap()
}

fn phys(m: &SystemMemory, pa: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    m.read_phys(PhysAddr(pa), &mut v).unwrap();
    v
}

/// Programs channel 1 (controller 1) with a 32-bit byte address and a 24-bit count.
fn program1(c: &mut DmaController, mode: u8, ext: Option<u8>, pa: u32, count: u32) {
    c.io_write(0x0A, 0x04 | 1);
    c.io_write(0x0C, 0);
    c.io_write(0x0B, mode | 1);
    if let Some(e) = ext {
        c.io_write(0x40B, e | 1);
    }
    c.io_write(0x02, pa as u8);
    c.io_write(0x02, (pa >> 8) as u8);
    c.io_write(0x83, (pa >> 16) as u8);
    c.io_write(0x483, (pa >> 24) as u8);
    c.io_write(0x03, count as u8);
    c.io_write(0x03, (count >> 8) as u8);
    c.io_write(0x403, (count >> 16) as u8);
    c.io_write(0x0A, 1);
}

#[test]
fn extension_ports_exist_only_on_eisa() {
    let isa = DmaController::new();
    let eisa = DmaController::eisa();
    for p in [0x487, 0x483, 0x481, 0x482, 0x48B, 0x489, 0x48A, 0x401, 0x403, 0x405, 0x407, 0x4C6, 0x4CA, 0x4CE] {
        assert!(!isa.decodes(p), "{p:#x} on a PC/AT");
        assert!(eisa.decodes(p), "{p:#x} on EISA");
    }
    assert!(eisa.decodes(0x40B) && eisa.decodes(0x4D6));
    assert!(!isa.decodes(0x40B));
    // The same answer without a controller at hand (the port driver's DMA-port check).
    for p in [0x481, 0x4CE, 0x40B, 0x00, 0xD4, 0x8B] {
        assert!(DmaController::is_eisa_dma_port(p), "{p:#x}");
    }
    assert!(!DmaController::is_dma_port(0x481));
    assert!(!DmaController::is_eisa_dma_port(0x40A), "chaining registers are not decoded");
    let mut isa = isa;
    isa.io_write(0x481, 0x12);
    assert_eq!(isa.io_read(0x481), 0xFF, "open bus on a PC/AT");
    let mut c = eisa;
    c.io_write(0x481, 0x12);
    assert_eq!(c.io_read(0x481), 0x12);
    assert_eq!(c.channel_state(ch(2)).high_page, 0x12);
    c.io_write(0x4CA, 0x34);
    assert_eq!(c.io_read(0x4CA), 0x34);
    assert_eq!(c.channel_state(ch(6)).count_high, 0x34);
    // Extended mode: write-only; bits 1–0 select the channel of the controller.
    c.io_write(0x4D6, 0x3A | 3);
    assert_eq!(c.io_read(0x4D6), 0xFF);
    assert_eq!(c.channel_state(ch(7)).extended_mode, 0x3B);
    // Reset values: 8-bit on controller 1, 16-bit words (address shifted) on controller 2.
    assert_eq!(c.channel_state(ch(1)).extended_mode & 0x0C, 0x00);
    assert_eq!(c.channel_state(ch(5)).extended_mode & 0x0C, 0x04);
}

#[test]
fn high_page_puts_the_transfer_above_16m() {
    let m = mem();
    let mut c = DmaController::eisa();
    program1(&mut c, WRITE | DEMAND, None, 0x0123_4500, 15);
    let data: Vec<u8> = (0..16).collect();
    let out = c.service(ch(1), &m, &mut Dev::supplying(data.clone()));
    assert!(out.terminal_count);
    assert_eq!(phys(&m, 0x0123_4500, 16), data);
    assert_eq!(phys(&m, 0x0023_4500, 16), vec![0; 16], "not at the 24-bit alias");
}

#[test]
fn count_high_byte_and_the_address_counter_run_past_64k() {
    let m = mem();
    let mut c = DmaController::eisa();
    // 0x1_0010 bytes from 0x01_FFF8: across two 64 KiB page boundaries' worth of count,
    // crossing 0x02_0000 on the way.
    let len = 0x1_0010usize;
    program1(&mut c, WRITE | DEMAND, None, 0x01_FFF8, len as u32 - 1);
    assert_eq!(c.channel_state(ch(1)).count_high, 0x01);
    let data = common::pattern(len, 3);
    let out = c.service(ch(1), &m, &mut Dev::supplying(data.clone()));
    assert_eq!(out.bytes, len as u64);
    assert!(out.terminal_count);
    assert_eq!(phys(&m, 0x01_FFF8, len), data);
    assert_eq!(phys(&m, 0x01_0000, 8), vec![0; 8], "no wrap inside the first page");
    let s = c.channel_state(ch(1));
    let end = 0x01_FFF8 + len as u32;
    assert_eq!((s.page, s.current_address), ((end >> 16) as u8, end as u16), "page register carried");
    assert_eq!((s.current_count, s.count_high), (0xFFFF, 0xFF), "24-bit count rolled over at TC");
    // The count reads back through its three ports.
    c.io_write(0x0C, 0);
    assert_eq!([c.io_read(0x03), c.io_read(0x03), c.io_read(0x403)], [0xFF, 0xFF, 0xFF]);
}

#[test]
fn auto_initialize_reloads_the_carried_page_registers() {
    let m = mem();
    let mut c = DmaController::eisa();
    program1(&mut c, WRITE | DEMAND | AUTO, None, 0x01FF_FFF0, 0x1F);
    let out = c.service(ch(1), &m, &mut Dev::supplying(vec![7; 32]));
    assert!(out.terminal_count);
    assert_eq!(phys(&m, 0x01FF_FFF0, 32), vec![7; 32]);
    let s = c.channel_state(ch(1));
    assert_eq!((s.high_page, s.page, s.current_address, s.count_high), (0x01, 0xFF, 0xFFF0, 0));
}

#[test]
fn word_mode_on_controller2_shifts_the_address_and_carries_into_page_bit_1() {
    let m = mem();
    let mut c = DmaController::eisa();
    // Channel 5 at its reset extended mode (16-bit, words, address shifted): word address
    // 0xFFFC on page 0x12 is byte 0x13_FFF8; four words cross into 0x14_0000.
    c.io_write(0xD4, 0x04 | 1);
    c.io_write(0xD8, 0);
    c.io_write(0xD6, WRITE | DEMAND | 1);
    c.io_write(0xC4, 0xFC);
    c.io_write(0xC4, 0xFF);
    c.io_write(0x8B, 0x12);
    c.io_write(0x48B, 0x01);
    c.io_write(0xC6, 7);
    c.io_write(0xC6, 0);
    c.io_write(0xD4, 1);
    let data = common::pattern(16, 8);
    let out = c.service(ch(5), &m, &mut Dev::supplying(data.clone()));
    assert_eq!(out.bytes, 16);
    assert_eq!(phys(&m, 0x0113_FFF8, 16), data);
    let s = c.channel_state(ch(5));
    assert_eq!((s.high_page, s.page, s.current_address), (0x01, 0x14, 0x0004));
}

#[test]
fn thirty_two_bit_transfers_count_bytes_four_per_cycle() {
    let m = mem();
    let mut c = DmaController::eisa();
    m.write_phys(PhysAddr(0x0100_0000), &common::pattern(12, 4)).unwrap();
    // Transfer size 10: 32-bit I/O counting bytes; 12 bytes = count 11, three cycles.
    program1(&mut c, READ | DEMAND, Some(0x08), 0x0100_0000, 11);
    let mut d = Dev::taking(6);
    let out = c.service(ch(1), &m, &mut d);
    assert_eq!(out.bytes, 8, "a started dword cycle completes");
    assert_eq!(c.channel_state(ch(1)).current_count, 11 - 8);
    d.budget = 100;
    let out = c.service(ch(1), &m, &mut d);
    assert_eq!(out.bytes, 4);
    assert!(out.terminal_count);
    assert_eq!(d.sink.len(), 10);
    // Decrement mode keeps the byte order inside each dword.
    m.write_phys(PhysAddr(0x0200_0000), &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    program1(&mut c, READ | DEMAND | DEC, Some(0x08), 0x0200_0004, 7);
    let mut d = Dev::taking(100);
    c.service(ch(1), &m, &mut d);
    assert_eq!(d.sink, vec![5, 6, 7, 8, 1, 2, 3, 4]);
}

fn eisa_hal() -> Arc<Hal> {
    Hal::new(mem(), HalConfig { bus: SystemBus::Eisa, ..HalConfig::default() }).unwrap()
}

fn desc(channel: u8, width: DmaWidth, speed: DmaSpeed, dma32: bool) -> DeviceDescription {
    DeviceDescription {
        master: false,
        dma_channel: ch(channel),
        dma_width: width,
        dma_speed: speed,
        demand_mode: true,
        auto_initialize: false,
        maximum_length: 128 << 10,
        dma32_bit_addresses: dma32,
    }
}

#[test]
fn an_eisa_adapter_reaches_all_memory_without_bouncing() {
    let hal = eisa_hal();
    let a = hal.get_adapter(&desc(2, DmaWidth::Bits32, DmaSpeed::TypeC, true)).unwrap();
    let len = 96 << 10;
    let buf = hal.memory().alloc(len, Placement::Above16M).unwrap();
    let pa = buf.contiguous_run(0, len).expect("one run").0;
    let data = common::pattern(len, 21);
    buf.write(0, &data).unwrap();
    let mut g = a.allocate_channel(a.number_of_map_registers(), Box::new(|| {})).unwrap().unwrap();
    hal.with_dma(|c, _| c.record_port_writes(true));
    let info = a.map_transfer(&mut g, &buf, 0, len, Direction::ToDevice).unwrap();
    assert!(!info.bounced);
    assert_eq!(info.programmed.0, pa);
    let log = hal.with_dma(|c, _| c.take_port_writes());
    let count = len as u32 - 1;
    assert_eq!(
        log,
        vec![
            (0x0A, 0x06),
            (0x0C, 0),
            (0x0B, 0x08 | 2),
            (0x40B, 0x38 | 2), // 32-bit counting bytes, type C (burst) timing
            (0x04, pa as u8),
            (0x04, (pa >> 8) as u8),
            (0x81, (pa >> 16) as u8),
            (0x481, (pa >> 24) as u8),
            (0x05, count as u8),
            (0x05, (count >> 8) as u8),
            (0x405, (count >> 16) as u8),
            (0x0A, 2),
        ]
    );
    let mut d = Dev::taking(len);
    let out = hal.with_dma(|c, m| c.service(a.channel(), m, &mut d));
    assert!(out.terminal_count);
    assert_eq!(d.sink, data);
    assert_eq!(a.flush_adapter_buffers(&mut g, &buf, 0, len, Direction::ToDevice).unwrap(), len as u64);
    assert_eq!(hal.stats().bounced_maps, 0);
}

#[test]
fn a_partial_transfer_reads_back_its_24_bit_residue() {
    let hal = eisa_hal();
    let a = hal.get_adapter(&desc(5, DmaWidth::Bits16, DmaSpeed::TypeB, true)).unwrap();
    let len = 128 << 10;
    let buf = hal.memory().alloc(len, Placement::Above16M).unwrap();
    let mut g = a.allocate_channel(a.number_of_map_registers(), Box::new(|| {})).unwrap().unwrap();
    assert!(!a.map_transfer(&mut g, &buf, 0, len, Direction::FromDevice).unwrap().bounced);
    assert_eq!(hal.with_dma(|c, _| c.channel_state(a.channel()).extended_mode), 0x2C | 1);
    let data = common::pattern(1000, 5);
    let mut d = Dev::supplying(data.clone());
    hal.with_dma(|c, m| c.service(a.channel(), m, &mut d));
    assert_eq!(a.read_dma_counter(&g), (len - 1000) as u32);
    assert_eq!(a.flush_adapter_buffers(&mut g, &buf, 0, len, Direction::FromDevice).unwrap(), 1000);
    assert_eq!(common::contents(&buf)[..1000], data[..]);
}

#[test]
fn without_dma32_bit_addresses_the_eisa_adapter_bounces_above_16m() {
    let hal = eisa_hal();
    let a = hal.get_adapter(&desc(1, DmaWidth::Bits8, DmaSpeed::Compatible, false)).unwrap();
    let buf = hal.memory().alloc(8192, Placement::Above16M).unwrap();
    let mut g = a.allocate_channel(3, Box::new(|| {})).unwrap().unwrap();
    let info = a.map_transfer(&mut g, &buf, 0, 8192, Direction::ToDevice).unwrap();
    assert!(info.bounced);
    assert!(info.programmed.0 < 16 << 20);
}

#[test]
fn descriptions_the_bus_cannot_serve_are_refused() {
    let hal = eisa_hal();
    let e = hal.get_adapter(&desc(5, DmaWidth::Bits16, DmaSpeed::TypeF, true));
    assert!(matches!(e, Err(HalError::InvalidDescription { .. })));
    // A PC/AT has no 32-bit DMA at all.
    let isa = Hal::new(mem(), HalConfig::default()).unwrap();
    assert!(isa.get_adapter(&desc(2, DmaWidth::Bits32, DmaSpeed::Compatible, true)).is_err());
    // On the PC/AT Dma32BitAddresses changes nothing: the 8237 drives 24 address bits.
    let a = isa.get_adapter(&desc(5, DmaWidth::Bits16, DmaSpeed::Compatible, true)).unwrap();
    let buf = isa.memory().alloc(4096, Placement::Above16M).unwrap();
    let mut g = a.allocate_channel(1, Box::new(|| {})).unwrap().unwrap();
    assert!(a.map_transfer(&mut g, &buf, 0, 4096, Direction::ToDevice).unwrap().bounced);
}
