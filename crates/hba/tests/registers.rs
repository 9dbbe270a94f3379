//! The card at register level: driven directly through its ports and the device side of its DMA channel, as the
//! datasheet (`docs/hba.md`) describes it.

mod common;

use common::*;
use hal::DmaDevice;
use hba::regs::{self, control, flags, int, status};
use hba::{BusDevice, Hba, HbaSettings, ScsiBus};
use port::{HbaHardware, IoWidth};
use std::sync::Arc;

const BASE: u16 = 0x330;

struct Card {
    hw: Hba,
}

impl Card {
    fn new(target: Option<Arc<scsi::Target>>) -> Self {
        let mut bus = ScsiBus::new();
        if let Some(t) = target {
            assert!(bus.attach(0, t as Arc<dyn BusDevice>));
        }
        let mut card = Card { hw: Hba::new(HbaSettings { io_base: BASE, irq: 11, dma_channel: 5 }, bus) };
        card.out(regs::CONTROL, control::INT_ENABLE | control::AUTOSENSE);
        card
    }
    fn inp(&mut self, reg: u16) -> u8 {
        self.hw.io_read(BASE + reg, IoWidth::Byte) as u8
    }
    fn out(&mut self, reg: u16, v: u8) {
        self.hw.io_write(BASE + reg, IoWidth::Byte, u32::from(v))
    }
    fn cmd(&mut self, c: u8) {
        self.out(regs::COMMAND, c)
    }
    fn counter(&mut self) -> u32 {
        u32::from_le_bytes([self.inp(regs::XFER0), self.inp(regs::XFER1), self.inp(regs::XFER2), 0])
    }
    fn set_counter(&mut self, v: u32) {
        let b = v.to_le_bytes();
        self.out(regs::XFER0, b[0]);
        self.out(regs::XFER1, b[1]);
        self.out(regs::XFER2, b[2]);
    }
    fn start(&mut self, target: u8, lun: u8, cdb: &[u8]) {
        self.out(regs::SELECT, target | (lun << 4));
        for &b in cdb {
            self.out(regs::CDB_FIFO, b);
        }
        self.cmd(regs::CMD_START);
    }
    /// Read `blocks` at `lba` through a whole data-in phase.
    fn read_blocks(&mut self, lba: u32, blocks: u16) -> Vec<u8> {
        let mut data = vec![0u8; usize::from(blocks) * BLOCK as usize];
        self.start(0, 0, &read10(lba, blocks));
        self.set_counter(data.len() as u32);
        self.cmd(regs::CMD_START_DMA);
        assert_eq!(self.hw.dma_read(&mut data), data.len());
        assert_eq!(self.take_int(), int::COMMAND_COMPLETE);
        assert_eq!(self.inp(regs::SCSI_STATUS), 0);
        data
    }
    /// `START TAGGED` with queue tag message `message` and `tag`; `disconnect` grants the disconnect privilege.
    fn start_tagged(&mut self, lun: u8, message: u8, tag: u8, disconnect: bool, cdb: &[u8]) {
        let disc = if disconnect { regs::select::DISCONNECT } else { 0 };
        self.out(regs::SELECT, (lun << 4) | disc);
        self.out(regs::CDB_FIFO, message);
        self.out(regs::CDB_FIFO, tag);
        for &b in cdb {
            self.out(regs::CDB_FIFO, b);
        }
        self.cmd(regs::CMD_START_TAGGED);
    }
    /// Let the card's time run until its interrupt line rises (a target that worked off the bus reselects), bounded.
    fn await_irq(&mut self) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.hw.irq() {
            assert!(std::time::Instant::now() < until, "no reselection");
            if self.hw.next_deadline().is_none() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            self.hw.advance(std::time::Instant::now());
        }
    }
    fn take_int(&mut self) -> u8 {
        let c = self.inp(regs::INTCAUSE);
        self.cmd(regs::CMD_CLEAR_INT);
        c
    }
    fn sense(&mut self) -> Vec<u8> {
        let n = self.inp(regs::SENSE_LEN);
        (0..n).map(|_| self.inp(regs::SENSE_FIFO)).collect()
    }
    /// Write `data` at `lba` through a whole data-out phase.
    fn write_blocks(&mut self, lba: u32, data: &[u8]) {
        self.start(0, 0, &write10(lba, (data.len() / BLOCK as usize) as u16));
        self.set_counter(data.len() as u32);
        self.cmd(regs::CMD_START_DMA);
        assert_eq!(self.hw.dma_write(data), data.len());
        assert_eq!(self.take_int(), int::COMMAND_COMPLETE);
        assert_eq!(self.inp(regs::SCSI_STATUS), 0);
    }
}

#[test]
fn signature_and_jumpers_read_back() {
    let mut card = Card::new(None);
    assert_eq!([card.inp(regs::SIG0), card.inp(regs::SIG1)], *b"RH");
    assert_eq!(card.inp(regs::CONFIG), 5 | (11 << 4));
    let mut other = Hba::new(HbaSettings { io_base: 0x230, irq: 5, dma_channel: 1 }, ScsiBus::new());
    assert_eq!(other.io_read(0x230 + regs::CONFIG, IoWidth::Byte), 1 | (5 << 4));
    // Ports outside the 16 the card decodes float high.
    assert_eq!(other.io_read(0x230 + regs::PORT_COUNT, IoWidth::Byte), 0xFF);
    assert_eq!(other.io_read(0x22F, IoWidth::Byte), 0xFF);
}

#[test]
fn word_access_reads_two_registers_little_endian() {
    let mut card = Card::new(None);
    assert_eq!(card.hw.io_read(BASE + regs::SIG0, IoWidth::Word), u32::from(u16::from_le_bytes(*b"RH")));
    card.hw.io_write(BASE + regs::XFER0, IoWidth::Dword, 0x0012_3456);
    assert_eq!(card.counter(), 0x12_3456);
}

#[test]
fn write_then_read_moves_data_only_while_dma_is_started() {
    let (t, _) = ram_target(64);
    let mut card = Card::new(Some(t));
    let data = pattern(4096, 1);
    card.start(0, 0, &write10(3, 8));
    let st = card.inp(regs::STATUS);
    assert_eq!(
        st & (status::BUSY | status::DATA_WAIT | status::DATA_OUT),
        status::BUSY | status::DATA_WAIT | status::DATA_OUT
    );
    assert!(!card.hw.dreq(), "no DREQ before START DMA");
    assert_eq!(card.hw.dma_write(&data), 0);
    card.set_counter(4096);
    card.cmd(regs::CMD_START_DMA);
    assert!(card.hw.dreq());
    assert_eq!(card.inp(regs::STATUS) & status::DMA_ACTIVE, status::DMA_ACTIVE);
    assert_eq!(card.hw.dma_write(&data), 4096);
    assert!(!card.hw.dreq());
    assert!(card.hw.irq());
    assert_eq!(card.take_int(), int::COMMAND_COMPLETE);
    assert!(!card.hw.irq());
    assert_eq!(card.inp(regs::SCSI_STATUS), 0);
    assert_eq!(card.inp(regs::FLAGS), 0);
    assert_eq!(card.counter(), 0);
    assert_eq!(card.inp(regs::STATUS) & status::BUSY, 0);

    card.start(0, 0, &read10(3, 8));
    assert_eq!(card.inp(regs::STATUS) & status::DATA_IN, status::DATA_IN);
    card.set_counter(4096);
    card.cmd(regs::CMD_START_DMA);
    let mut back = vec![0u8; 4096];
    assert_eq!(card.hw.dma_read(&mut back), 4096);
    assert_eq!(card.take_int(), int::COMMAND_COMPLETE);
    assert_eq!(back, data);
    assert_eq!(card.hw.counters().bytes_in, 4096);
    assert_eq!(card.hw.counters().bytes_out, 4096);
}

#[test]
fn counter_zero_pauses_the_data_phase_and_start_dma_resumes_it() {
    let (t, _) = ram_target(64);
    let mut card = Card::new(Some(t));
    let data = pattern(4096, 2);
    card.write_blocks(0, &data);
    card.start(0, 0, &read10(0, 8));
    card.set_counter(1000);
    card.cmd(regs::CMD_START_DMA);
    let mut back = vec![0u8; 4096];
    assert_eq!(card.hw.dma_read(&mut back), 1000, "the card stops at its counter");
    assert!(!card.hw.dreq());
    assert_eq!(card.take_int(), int::DATA_PAUSED);
    assert_eq!(card.inp(regs::STATUS) & (status::DATA_WAIT | status::DATA_IN), status::DATA_WAIT | status::DATA_IN);
    card.set_counter(3096);
    card.cmd(regs::CMD_START_DMA);
    assert_eq!(card.hw.dma_read(&mut back[1000..]), 3096);
    assert_eq!(card.take_int(), int::COMMAND_COMPLETE);
    assert_eq!(back, data);
}

#[test]
fn terminal_count_from_the_dma_controller_pauses_with_the_residue_in_the_counter() {
    let (t, _) = ram_target(64);
    let mut card = Card::new(Some(t));
    card.start(0, 0, &read10(0, 8));
    card.set_counter(4096);
    card.cmd(regs::CMD_START_DMA);
    let mut buf = vec![0u8; 512];
    assert_eq!(card.hw.dma_read(&mut buf), 512);
    card.hw.terminal_count();
    assert_eq!(card.take_int(), int::DATA_PAUSED);
    assert_eq!(card.counter(), 4096 - 512);
}

#[test]
fn short_data_completes_with_the_residue_in_the_counter() {
    let (t, _) = ram_target(64);
    let mut card = Card::new(Some(t));
    card.start(0, 0, &inquiry(255));
    card.set_counter(1024);
    card.cmd(regs::CMD_START_DMA);
    let mut buf = vec![0u8; 1024];
    let n = card.hw.dma_read(&mut buf);
    assert!(n > 0 && n < 1024, "standard INQUIRY data is shorter than the counter, got {n}");
    assert_eq!(card.take_int(), int::COMMAND_COMPLETE);
    assert_eq!(card.inp(regs::FLAGS), flags::SHORT);
    assert_eq!(card.counter() as usize, 1024 - n);
    assert_eq!(&buf[8..16], b"SCSIPORT");
}

#[test]
fn finishing_a_paused_data_phase_early_is_an_overrun() {
    let (t, _) = ram_target(64);
    let mut card = Card::new(Some(t));
    card.start(0, 0, &read10(0, 8));
    card.set_counter(512);
    card.cmd(regs::CMD_START_DMA);
    let mut buf = vec![0u8; 4096];
    assert_eq!(card.hw.dma_read(&mut buf), 512);
    assert_eq!(card.take_int(), int::DATA_PAUSED);
    card.cmd(regs::CMD_FINISH_DATA);
    assert_eq!(card.take_int(), int::COMMAND_COMPLETE);
    assert_eq!(card.inp(regs::FLAGS) & flags::OVERRUN, flags::OVERRUN);
    assert_eq!(card.inp(regs::STATUS) & status::BUSY, 0);
}

#[test]
fn check_condition_runs_autosense_before_any_data() {
    let (t, _) = ram_target(64);
    let mut card = Card::new(Some(t));
    card.start(0, 0, &read10(64, 1));
    // The command ended in its command phase: no data phase, the interrupt is already up.
    assert!(card.hw.irq());
    assert_eq!(card.inp(regs::STATUS) & status::DATA_WAIT, 0);
    assert!(!card.hw.dreq());
    assert_eq!(card.take_int(), int::COMMAND_COMPLETE);
    assert_eq!(card.inp(regs::SCSI_STATUS), 0x02);
    assert_eq!(card.inp(regs::FLAGS) & flags::AUTOSENSE, flags::AUTOSENSE);
    assert_eq!(card.inp(regs::STATUS) & status::SENSE_VALID, status::SENSE_VALID);
    let sense = card.sense();
    assert_eq!(sense.len(), 18);
    assert_eq!(sense[0] & 0x7F, 0x70);
    assert_eq!((sense[2] & 0x0F, sense[12], sense[13]), (0x05, 0x21, 0x00));
    assert_eq!(card.inp(regs::SENSE_LEN), 0);
}

#[test]
fn autosense_off_leaves_the_sense_fifo_empty() {
    let (t, _) = ram_target(64);
    let mut card = Card::new(Some(t));
    card.out(regs::CONTROL, control::INT_ENABLE);
    card.start(0, 0, &read10(64, 1));
    assert_eq!(card.take_int(), int::COMMAND_COMPLETE);
    assert_eq!(card.inp(regs::SCSI_STATUS), 0x02);
    assert_eq!(card.inp(regs::FLAGS), 0);
    assert_eq!(card.inp(regs::SENSE_LEN), 0);
}

#[test]
fn missing_target_is_a_selection_timeout() {
    let (t, _) = ram_target(64);
    let mut card = Card::new(Some(t));
    card.start(3, 0, &TEST_UNIT_READY);
    assert_eq!(card.take_int(), int::SELECTION_TIMEOUT);
    card.start(7, 0, &TEST_UNIT_READY);
    assert_eq!(card.take_int(), int::SELECTION_TIMEOUT, "ID 7 is the card itself");
    assert_eq!(card.inp(regs::STATUS) & status::BUSY, 0);
    card.start(0, 0, &TEST_UNIT_READY);
    assert_eq!(card.take_int(), int::COMMAND_COMPLETE);
}

#[test]
fn interrupt_line_follows_int_enable() {
    let (t, _) = ram_target(64);
    let mut card = Card::new(Some(t));
    card.out(regs::CONTROL, control::AUTOSENSE);
    card.start(0, 0, &TEST_UNIT_READY);
    assert!(!card.hw.irq());
    assert_eq!(card.inp(regs::STATUS) & status::INT_PENDING, status::INT_PENDING);
    card.out(regs::CONTROL, control::AUTOSENSE | control::INT_ENABLE);
    assert!(card.hw.irq());
}

#[test]
fn commands_in_the_wrong_state_raise_error() {
    let (t, _) = ram_target(64);
    let mut card = Card::new(Some(t));
    card.cmd(regs::CMD_START_DMA);
    assert_eq!(card.take_int(), int::ERROR, "START DMA with no data phase");
    card.cmd(regs::CMD_START);
    assert_eq!(card.take_int(), int::ERROR, "START with an empty CDB FIFO");
    card.start(0, 0, &read10(0, 1));
    card.set_counter(0);
    card.cmd(regs::CMD_START_DMA);
    assert_eq!(card.take_int(), int::ERROR, "START DMA with a zero counter");
    card.start(0, 0, &TEST_UNIT_READY);
    assert_eq!(card.take_int(), int::ERROR, "START while a command owns the bus");
    for _ in 0..=regs::CDB_FIFO_DEPTH {
        card.out(regs::CDB_FIFO, 0);
    }
    assert_eq!(card.take_int(), int::ERROR, "CDB FIFO overflow");
    assert_eq!(usize::from(card.inp(regs::CDB_FIFO)), regs::CDB_FIFO_DEPTH);
    card.cmd(regs::CMD_START);
    assert_eq!(card.take_int(), int::ERROR, "START with more than 16 CDB bytes");
    card.cmd(0x7F);
    assert_eq!(card.take_int(), int::ERROR, "unknown command");
}

#[test]
fn dma_stall_fault_drops_dreq_until_abort() {
    let (t, disk) = ram_target(64);
    let mut card = Card::new(Some(t));
    disk.faults().set_dma_stall_after(Some(1024));
    card.start(0, 0, &read10(0, 8));
    card.set_counter(4096);
    card.cmd(regs::CMD_START_DMA);
    let mut buf = vec![0u8; 4096];
    assert_eq!(card.hw.dma_read(&mut buf), 1024);
    assert!(!card.hw.dreq());
    assert!(!card.hw.irq(), "a stall raises no interrupt");
    assert_eq!(card.counter(), 3072);
    card.cmd(regs::CMD_ABORT);
    assert_eq!(card.inp(regs::STATUS) & status::BUSY, 0);
    assert!(!card.hw.irq());
    assert_eq!(card.counter(), 3072, "the residue stays readable after the abort");
    disk.faults().set_dma_stall_after(None);
    card.start(0, 0, &TEST_UNIT_READY);
    assert_eq!(card.take_int(), int::COMMAND_COMPLETE);
    assert_eq!(card.inp(regs::SCSI_STATUS), 0);
}

#[test]
fn hang_fault_keeps_the_bus_busy_until_abort() {
    let (t, disk) = ram_target(64);
    let mut card = Card::new(Some(t));
    disk.faults().set_hang(1);
    card.start(0, 0, &read10(0, 1));
    assert_eq!(card.inp(regs::STATUS), status::BUSY);
    assert!(!card.hw.irq());
    assert!(!card.hw.dreq());
    card.cmd(regs::CMD_ABORT);
    assert_eq!(card.inp(regs::STATUS) & status::BUSY, 0);
    assert_eq!(card.hw.counters().aborts, 1);
    card.start(0, 0, &TEST_UNIT_READY);
    assert_eq!(card.take_int(), int::COMMAND_COMPLETE);
}

#[test]
fn bus_reset_drops_the_command_and_resets_every_lu() {
    let (t, _) = ram_target(64);
    let mut card = Card::new(Some(t));
    card.start(0, 0, &read10(0, 8));
    card.set_counter(4096);
    card.cmd(regs::CMD_START_DMA);
    let mut buf = vec![0u8; 512];
    assert_eq!(card.hw.dma_read(&mut buf), 512);
    card.cmd(regs::CMD_BUS_RESET);
    assert_eq!(card.take_int(), int::BUS_RESET);
    assert_eq!(card.inp(regs::STATUS) & status::BUSY, 0);
    assert!(!card.hw.dreq());
    // The LU reports the reset: UNIT ATTENTION 06/29/xx.
    card.start(0, 0, &TEST_UNIT_READY);
    assert_eq!(card.take_int(), int::COMMAND_COMPLETE);
    assert_eq!(card.inp(regs::SCSI_STATUS), 0x02);
    let sense = card.sense();
    assert_eq!((sense[2] & 0x0F, sense[12]), (0x06, 0x29));
}

#[test]
fn bus_reset_fault_resets_instead_of_starting_the_command() {
    let (t, disk) = ram_target(64);
    let mut card = Card::new(Some(t));
    disk.faults().request_bus_reset();
    card.start(0, 0, &TEST_UNIT_READY);
    assert_eq!(card.take_int(), int::BUS_RESET);
    assert_eq!(card.hw.counters().bus_resets, 1);
    card.start(0, 0, &TEST_UNIT_READY);
    assert_eq!(card.take_int(), int::COMMAND_COMPLETE);
}

#[test]
fn wrong_direction_dma_moves_nothing() {
    let (t, _) = ram_target(64);
    let mut card = Card::new(Some(t));
    card.start(0, 0, &read10(0, 1));
    card.set_counter(512);
    card.cmd(regs::CMD_START_DMA);
    assert_eq!(card.hw.dma_write(&[0u8; 512]), 0, "a data-in phase takes no bytes from memory");
    assert_eq!(card.counter(), 512);
}

// ---- tagged queuing -------------------------------------------------------------------------------------------------

const SIMPLE: u8 = regs::tag_message::SIMPLE;

#[test]
fn a_tagged_command_with_the_disconnect_privilege_frees_the_bus_and_reselects_later() {
    let (t, _) = ram_target(64);
    let mut card = Card::new(Some(t));
    card.write_blocks(0, &pattern(4096, 1));
    card.start_tagged(0, SIMPLE, 9, true, &read10(0, 8));
    assert_eq!(card.inp(regs::STATUS) & status::BUSY, 0, "the target disconnected after the command phase");
    assert!(!card.hw.irq(), "a disconnect raises no interrupt");
    assert_eq!(card.hw.disconnected_commands(), 1);
    // The bus is free: another command runs meanwhile.
    card.start(0, 0, &TEST_UNIT_READY);
    assert_eq!(card.take_int(), int::COMMAND_COMPLETE);
    card.out(regs::SELECT, 0x55);
    card.cmd(regs::CMD_RESELECT);
    // The target read the blocks into its buffer off the bus; it reselects once that is done.
    card.await_irq();
    assert_eq!(card.take_int(), int::RESELECTED);
    let st = card.inp(regs::STATUS);
    assert_eq!(st & (status::BUSY | status::DATA_WAIT | status::TAGGED | status::DATA_IN), st & !status::INT_PENDING);
    assert_eq!(card.inp(regs::TAG), 9);
    assert_eq!(card.inp(regs::SELECT) & 0x77, 0x00, "SELECT names the reselecting target and LUN");
    assert_eq!(card.hw.disconnected_commands(), 0);
    card.set_counter(4096);
    card.cmd(regs::CMD_START_DMA);
    let mut buf = vec![0u8; 4096];
    assert_eq!(card.hw.dma_read(&mut buf), 4096);
    assert_eq!(buf, pattern(4096, 1));
    assert_eq!(card.take_int(), int::COMMAND_COMPLETE);
    assert_eq!(card.inp(regs::TAG), 9);
    assert_eq!(card.hw.counters().reselections, 1);
}

#[test]
fn without_the_disconnect_privilege_a_tagged_command_keeps_the_bus() {
    let (t, _) = ram_target(64);
    let mut card = Card::new(Some(t));
    card.start_tagged(0, SIMPLE, 3, false, &read10(0, 1));
    let st = card.inp(regs::STATUS);
    assert_ne!(st & status::DATA_WAIT, 0);
    assert_ne!(st & status::TAGGED, 0);
    assert_eq!(card.inp(regs::TAG), 3);
    assert_eq!(card.hw.disconnected_commands(), 0);
    card.cmd(regs::CMD_RESELECT);
    assert_eq!(card.take_int(), int::ERROR, "RESELECT while the bus is owned");
}

#[test]
fn reselection_follows_task_set_order_head_of_queue_first() {
    let (t, _) = ram_target(64);
    let mut card = Card::new(Some(t));
    for (tag, message) in
        [(1, SIMPLE), (2, regs::tag_message::ORDERED), (3, regs::tag_message::HEAD_OF_QUEUE), (4, SIMPLE)]
    {
        card.start_tagged(0, message, tag, true, &TEST_UNIT_READY);
    }
    assert_eq!(card.hw.disconnected_commands(), 4);
    let mut order = Vec::new();
    for _ in 0..4 {
        card.cmd(regs::CMD_RESELECT);
        assert_eq!(card.take_int(), int::COMMAND_COMPLETE, "a command without data reconnects for its status");
        assert_eq!(card.inp(regs::STATUS) & status::TAGGED, status::TAGGED);
        order.push(card.inp(regs::TAG));
    }
    assert_eq!(order, [3, 1, 2, 4]);
    card.cmd(regs::CMD_RESELECT);
    assert!(!card.hw.irq(), "nothing left to reselect");
}

#[test]
fn start_tagged_refuses_a_tag_in_use_a_bad_message_and_a_full_table() {
    let (t, _) = ram_target(64);
    let mut card = Card::new(Some(t));
    card.start_tagged(0, SIMPLE, 5, true, &TEST_UNIT_READY);
    card.start_tagged(0, SIMPLE, 5, true, &TEST_UNIT_READY);
    assert_eq!(card.take_int(), int::ERROR, "tag 5 of LUN 0 is in use");
    card.start_tagged(1, SIMPLE, 5, true, &TEST_UNIT_READY);
    assert!(!card.hw.irq(), "the same tag on another LUN is another nexus");
    card.cmd(regs::CMD_CLEAR_CDB);
    card.start_tagged(0, 0x07, 6, true, &TEST_UNIT_READY);
    assert_eq!(card.take_int(), int::ERROR, "0x07 is not a queue tag message");
    card.cmd(regs::CMD_CLEAR_CDB);
    for tag in 10..(10 + regs::TAG_SLOTS as u8 - 2) {
        card.start_tagged(0, SIMPLE, tag, true, &TEST_UNIT_READY);
    }
    assert_eq!(card.hw.disconnected_commands(), regs::TAG_SLOTS);
    assert!(!card.hw.irq());
    card.start_tagged(0, SIMPLE, 200, true, &TEST_UNIT_READY);
    assert_eq!(card.take_int(), int::ERROR, "the table of disconnected commands is full");
}

#[test]
fn abort_tag_drops_a_disconnected_command_and_bus_reset_drops_them_all() {
    let (t, _) = ram_target(64);
    let mut card = Card::new(Some(t));
    card.write_blocks(1, &pattern(BLOCK as usize, 7));
    card.start_tagged(0, SIMPLE, 1, true, &write10(0, 1));
    card.start_tagged(0, SIMPLE, 2, true, &write10(1, 1));
    card.out(regs::SELECT, 0);
    card.out(regs::CDB_FIFO, 1);
    card.cmd(regs::CMD_ABORT_TAG);
    assert!(!card.hw.irq(), "ABORT TAG raises no interrupt");
    assert_eq!(card.hw.disconnected_commands(), 1);
    card.cmd(regs::CMD_RESELECT);
    assert_eq!(card.take_int(), int::RESELECTED);
    assert_eq!(card.inp(regs::TAG), 2, "tag 1 is gone from the task set");
    // ABORT TAG of the command that owns the bus ends it as ABORT does.
    card.out(regs::CDB_FIFO, 2);
    card.cmd(regs::CMD_ABORT_TAG);
    assert_eq!(card.inp(regs::STATUS) & status::BUSY, 0);
    assert_eq!(card.read_blocks(1, 1), pattern(BLOCK as usize, 7), "the aborted write moved nothing");
    card.start_tagged(0, SIMPLE, 3, true, &TEST_UNIT_READY);
    card.start_tagged(0, SIMPLE, 4, true, &TEST_UNIT_READY);
    card.cmd(regs::CMD_BUS_RESET);
    assert_eq!(card.take_int(), int::BUS_RESET);
    assert_eq!(card.hw.disconnected_commands(), 0, "a bus reset clears every task set");
}

#[test]
fn a_hung_tagged_command_never_reselects_but_the_others_do() {
    let (t, disk) = ram_target(64);
    let mut card = Card::new(Some(t));
    disk.faults().set_hang(1);
    card.start_tagged(0, SIMPLE, 1, true, &TEST_UNIT_READY);
    card.start_tagged(0, SIMPLE, 2, true, &TEST_UNIT_READY);
    card.cmd(regs::CMD_RESELECT);
    assert_eq!(card.take_int(), int::COMMAND_COMPLETE);
    assert_eq!(card.inp(regs::TAG), 2);
    card.cmd(regs::CMD_RESELECT);
    assert!(!card.hw.irq(), "the hung command's target never reconnects");
    assert_eq!(card.hw.disconnected_commands(), 1);
    card.out(regs::SELECT, 0);
    card.out(regs::CDB_FIFO, 1);
    card.cmd(regs::CMD_ABORT_TAG);
    assert_eq!(card.hw.disconnected_commands(), 0);
}
