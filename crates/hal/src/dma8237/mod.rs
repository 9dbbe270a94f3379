//! The PC/AT pair of 8237A DMA controllers, at their standard I/O ports.
//!
//! Controller 1 (ports 0x00–0x0F) serves channels 0–3 with byte addresses and counts;
//! controller 2 (ports 0xC0–0xDE, every other port, because it sits on A1–A4) serves
//! channels 4–7 with word addresses and counts, and channel 4 cascades controller 1.
//! The 74LS612 page registers supply the address bits above the 8237's 16.
//! Register behaviour follows the Intel 8237A datasheet: base and current registers,
//! count holds N−1, terminal count on roll-over from 0, self-mask at TC unless
//! auto-initialize, the byte-pointer flip-flop, a status register whose TC bits clear
//! when it is read and whose request bits show the DREQ lines live, software requests
//! that no mask stops, block / demand / single transfer modes, and fixed or rotating
//! priority among requesting channels. `docs/dma.md` lists every command-register bit
//! and what the model does with it.
//!
//! On an EISA machine (`DmaController::eisa`) the system component adds, at its own
//! ports, a high page register (address bits 31–24) and a count high byte (count bits
//! 23–16) per channel and an extended mode register per controller (transfer size and
//! timing type); the address then runs as one 32-bit counter across 64 KiB pages
//! (`docs/dma.md`, "EISA").

mod service;

use crate::clock::{MachineTiming, VirtualClock, VirtualTime};
use crate::HalError;

/// A system DMA channel, 0..=7 (4 is the cascade).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DmaChannel(u8);

impl DmaChannel {
    pub fn new(n: u8) -> Result<Self, HalError> {
        if n <= 7 {
            Ok(Self(n))
        } else {
            Err(HalError::InvalidChannel(n))
        }
    }

    pub fn number(self) -> u8 {
        self.0
    }

    /// Channels 4–7 sit on controller 2, wired for word transfers.
    pub fn is_16bit(self) -> bool {
        self.0 >= 4
    }

    /// Channel 4 carries controller 1's requests and is never given to a device.
    pub fn is_cascade(self) -> bool {
        self.0 == 4
    }

    /// The span one page register value covers: 64 KiB (byte address register) or
    /// 128 KiB (word address register, page bit 0 ignored).
    pub fn page_size(self) -> u64 {
        if self.is_16bit() {
            128 << 10
        } else {
            64 << 10
        }
    }

    /// Bytes per transfer cycle.
    pub(crate) fn unit(self) -> usize {
        if self.is_16bit() {
            2
        } else {
            1
        }
    }

    fn chip(self) -> usize {
        usize::from(self.0 / 4)
    }

    fn bit(self) -> u8 {
        1 << (self.0 % 4)
    }
}

/// Mode register bits 3–2 (8237A datasheet, mode register).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferType {
    /// 00: addresses and counts run, no memory or I/O strobes. 11 (illegal) reads as this.
    Verify,
    /// 01: device → memory.
    Write,
    /// 10: memory → device.
    Read,
}

/// Mode register bits 7–6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaMode {
    Demand,
    Single,
    Block,
    Cascade,
}

/// A snapshot of one channel's registers; reading it disturbs nothing.
#[derive(Clone, Copy, Debug)]
pub struct ChannelState {
    pub base_address: u16,
    pub current_address: u16,
    pub base_count: u16,
    pub current_count: u16,
    pub page: u8,
    pub transfer: TransferType,
    pub mode: DmaMode,
    pub auto_init: bool,
    pub decrement: bool,
    pub masked: bool,
    /// The status register's TC bit for this channel (not cleared by this snapshot).
    pub terminal_count: bool,
    /// The request register's bit for this channel.
    pub request: bool,
    /// The channel's DREQ input as the device drives it (true = asserted).
    pub dreq: bool,
    /// EISA high page register: address bits 31–24 (0 on a PC/AT).
    pub high_page: u8,
    /// EISA count high byte: bits 23–16 of the current count (0 on a PC/AT).
    pub count_high: u8,
    /// EISA extended mode register value for this channel (bits 1–0 hold the channel).
    pub extended_mode: u8,
}

/// The device side of a DMA channel (the HBA implements it). `service` calls it with the
/// bus lock held, so it must not call back into the HAL.
pub trait DmaDevice {
    /// Is DREQ asserted now?
    fn dreq(&self) -> bool;
    /// Memory → device ("read" transfer). The device takes bytes; returns how many it
    /// accepted (fewer = it dropped DREQ).
    fn dma_write(&mut self, data: &[u8]) -> usize;
    /// Device → memory ("write" transfer). The device fills `buf`; returns how many
    /// bytes it supplied.
    fn dma_read(&mut self, buf: &mut [u8]) -> usize;
    /// A verify transfer: `cycles` DACK cycles with neither I/O nor memory strobes, so no
    /// data moves either way. Returns after how many of them the device dropped DREQ (all
    /// of them by default: a device that keeps DREQ up for the whole verify).
    fn verify_cycles(&mut self, cycles: usize) -> usize {
        cycles
    }
    /// EOP: the channel reached terminal count.
    fn terminal_count(&mut self) {}
}

/// What one `service` call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceOutcome {
    pub bytes: u64,
    pub terminal_count: bool,
}

/// Command register bits (8237A datasheet, command register). Disable, rotating
/// priority, DREQ sense and DACK sense take effect here; compressed timing and extended
/// write change only the timing of a cycle; memory-to-memory and channel 0 address hold
/// are stored and not acted on (`docs/dma.md`).
const CMD_DISABLE: u8 = 0x04;
const CMD_COMPRESSED: u8 = 0x08;
const CMD_ROTATING: u8 = 0x10;
const CMD_DREQ_ACTIVE_LOW: u8 = 0x40;
const CMD_DACK_ACTIVE_HIGH: u8 = 0x80;
/// Mode register fields.
const MODE_DECREMENT: u8 = 0x20;
const MODE_AUTO_INIT: u8 = 0x10;
/// Channel 4's mode as the BIOS leaves it: cascade, channel 0 of controller 2.
const MODE_CASCADE_CH4: u8 = 0xC0;
/// EISA extended mode register, bits 3–2: transfer size (`docs/dma.md`, "EISA").
const EXT_SIZE_8: u8 = 0x00;
const EXT_SIZE_16_WORDS: u8 = 0x04;
const EXT_SIZE_32: u8 = 0x08;
// 0x0C: 16-bit I/O counting bytes, the address not shifted.

/// Per-chip registers.
#[derive(Clone, Copy, Debug, Default)]
struct Chip {
    command: u8,
    /// Status bits 0–3: TC reached per channel.
    tc: u8,
    /// Request register bits 0–3 (software requests).
    request: u8,
    /// Mask bits 0–3.
    mask: u8,
    /// DREQ input levels bits 0–3, as the devices drive them (1 = asserted).
    dreq: u8,
    /// Rotating priority: the channel served last, now lowest (datasheet, priority).
    last_served: u8,
    /// Byte-pointer flip-flop: false = next access is the low byte.
    high_byte: bool,
    temp: u8,
}

impl Chip {
    /// Master clear (datasheet): command, status, request, temporary registers and the
    /// flip-flop cleared, all mask bits set. The DREQ inputs are the devices' and stay.
    fn master_clear(&mut self) {
        *self = Chip { mask: 0x0F, dreq: self.dreq, last_served: 3, ..Chip::default() };
    }

    /// Channels (bits 0–3) whose DREQ input reads as a request under the DREQ sense bit.
    fn hw_requests(&self) -> u8 {
        if self.command & CMD_DREQ_ACTIVE_LOW != 0 {
            !self.dreq & 0x0F
        } else {
            self.dreq
        }
    }
}

/// Per-channel registers.
#[derive(Clone, Copy, Debug, Default)]
struct Regs {
    base_addr: u16,
    cur_addr: u16,
    base_count: u16,
    cur_count: u16,
    mode: u8,
    page: u8,
    /// EISA: the address counter carries into the page registers, so auto-initialize
    /// reloads them from these.
    base_page: u8,
    high_page: u8,
    base_high_page: u8,
    base_count_high: u8,
    cur_count_high: u8,
    ext_mode: u8,
}

/// One decoded I/O port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Port {
    Address(DmaChannel),
    Count(DmaChannel),
    StatusCommand(usize),
    Request(usize),
    SingleMask(usize),
    Mode(usize),
    ClearFlipFlop(usize),
    TempMasterClear(usize),
    ClearMask(usize),
    AllMask(usize),
    Page(DmaChannel),
    HighPage(DmaChannel),
    CountHigh(DmaChannel),
    ExtendedMode(usize),
}

/// Page register ports per channel (PC/AT 74LS612 wiring); 0x8F is channel 4's, unused.
const PAGE_PORTS: [u16; 8] = [0x87, 0x83, 0x81, 0x82, 0x8F, 0x8B, 0x89, 0x8A];
/// EISA high page registers: the page port + 0x400 (`docs/dma.md`, "EISA").
const HIGH_PAGE_PORTS: [u16; 8] = [0x487, 0x483, 0x481, 0x482, 0x48F, 0x48B, 0x489, 0x48A];
/// EISA count high bytes: the count port + 0x400 on controller 1, 0x4C2 + 4 × (n − 4)
/// on controller 2 (channel 4, the cascade, has none).
const COUNT_HIGH_PORTS: [u16; 7] = [0x401, 0x403, 0x405, 0x407, 0x4C6, 0x4CA, 0x4CE];
/// EISA extended mode registers of controller 1 and 2.
const EXT_MODE_PORTS: [u16; 2] = [0x40B, 0x4D6];

fn decode(port: u16, eisa: bool) -> Option<Port> {
    let (chip, reg) = match port {
        0x00..=0x0F => (0usize, port),
        0xC0..=0xDE if port.is_multiple_of(2) => (1usize, (port - 0xC0) / 2),
        _ => {
            if let Some(ch) = PAGE_PORTS.iter().position(|&p| p == port) {
                return Some(Port::Page(DmaChannel(ch as u8)));
            }
            if !eisa {
                return None;
            }
            if let Some(ch) = HIGH_PAGE_PORTS.iter().position(|&p| p == port) {
                return Some(Port::HighPage(DmaChannel(ch as u8)));
            }
            if let Some(i) = COUNT_HIGH_PORTS.iter().position(|&p| p == port) {
                let ch = if i < 4 { i } else { i + 1 };
                return Some(Port::CountHigh(DmaChannel(ch as u8)));
            }
            let chip = EXT_MODE_PORTS.iter().position(|&p| p == port)?;
            return Some(Port::ExtendedMode(chip));
        }
    };
    let ch = DmaChannel((chip * 4) as u8 + (reg / 2) as u8);
    Some(match reg {
        0..=7 if reg.is_multiple_of(2) => Port::Address(ch),
        0..=7 => Port::Count(ch),
        8 => Port::StatusCommand(chip),
        9 => Port::Request(chip),
        10 => Port::SingleMask(chip),
        11 => Port::Mode(chip),
        12 => Port::ClearFlipFlop(chip),
        13 => Port::TempMasterClear(chip),
        14 => Port::ClearMask(chip),
        _ => Port::AllMask(chip),
    })
}

/// Largest run one service step moves: a full 128 KiB page of words.
const SCRATCH_BYTES: usize = 128 << 10;

/// How a channel's cycles map onto addresses and counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Bytes one transfer cycle moves.
    pub bytes_per_cycle: usize,
    /// What one cycle subtracts from the count register.
    pub count_step: u32,
    /// The address register holds A16–A1 (word channels): page bit 0 is ignored.
    pub shifted: bool,
}

/// Both chips, the page registers, command/status/request/mask registers.
pub struct DmaController {
    chips: [Chip; 2],
    regs: [Regs; 8],
    /// The EISA system component's DMA extensions are present.
    eisa: bool,
    /// Virtual time: off when None.
    timing: Option<MachineTiming>,
    vtime: VirtualTime,
    /// The machine's clock, moved on by every charged run (with timing on).
    clock: Option<VirtualClock>,
    /// Staging for decrement-mode, verify and out-of-memory runs; allocated once.
    scratch: Vec<u8>,
    port_log: Option<Vec<(u16, u8)>>,
}

impl Default for DmaController {
    fn default() -> Self {
        Self::new()
    }
}

impl DmaController {
    /// Both chips after reset and the BIOS set-up every PC/AT performs: master clear
    /// (all channels masked), then channel 4 in cascade mode and unmasked so that
    /// controller 1's requests reach the bus.
    pub fn new() -> Self {
        let mut c = Self {
            chips: [Chip::default(); 2],
            regs: [Regs::default(); 8],
            eisa: false,
            timing: None,
            vtime: VirtualTime::default(),
            clock: None,
            scratch: vec![0; SCRATCH_BYTES],
            port_log: None,
        };
        c.chips[0].master_clear();
        c.chips[1].master_clear();
        c.regs[4].mode = MODE_CASCADE_CH4;
        c.chips[1].mask &= !1;
        for (n, r) in c.regs.iter_mut().enumerate() {
            // The EISA reset value of the extended mode register: channels 0–3 8-bit,
            // 5–7 16-bit counting words with the address shifted (ISA-compatible).
            r.ext_mode = if n >= 4 { EXT_SIZE_16_WORDS } else { EXT_SIZE_8 } | (n as u8 & 3);
        }
        c
    }

    /// The controllers of an EISA machine: the PC/AT pair plus the EISA system
    /// component's high page, count high byte and extended mode registers.
    pub fn eisa() -> Self {
        Self { eisa: true, ..Self::new() }
    }

    /// Turns virtual time on (charging every transfer the clocks `timing` gives) or off.
    pub fn set_timing(&mut self, timing: Option<MachineTiming>) {
        self.timing = timing;
    }

    pub fn timing(&self) -> Option<MachineTiming> {
        self.timing
    }

    /// The machine clock the charged transfers move on, besides this controller's own
    /// per-channel totals.
    pub fn set_clock(&mut self, clock: Option<VirtualClock>) {
        self.clock = clock;
    }

    /// The virtual time the transfers since the timing was set would have taken.
    pub fn virtual_time(&self) -> VirtualTime {
        self.vtime
    }

    /// Are the EISA extensions present?
    pub fn is_eisa(&self) -> bool {
        self.eisa
    }

    /// Is `port` decoded by the PC/AT DMA controllers or their page registers?
    pub fn is_dma_port(port: u16) -> bool {
        decode(port, false).is_some()
    }

    /// Is `port` decoded by the DMA controllers of an EISA machine (the PC/AT ports and the
    /// EISA extensions)?
    pub fn is_eisa_dma_port(port: u16) -> bool {
        decode(port, true).is_some()
    }

    /// Is `port` decoded by this controller (with its EISA extensions, if any)?
    pub fn decodes(&self, port: u16) -> bool {
        decode(port, self.eisa).is_some()
    }

    /// Starts (or stops, returning nothing more) recording every `io_write` as (port, value).
    pub fn record_port_writes(&mut self, on: bool) {
        self.port_log = on.then(Vec::new);
    }

    /// The port writes recorded since the last call; recording stays on.
    pub fn take_port_writes(&mut self) -> Vec<(u16, u8)> {
        self.port_log.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Drives a channel's DREQ input: a device raises it and may hold it as long as it
    /// likes; the status register shows it live. `service` also samples the device's
    /// `dreq()` into this line when it runs. Channel 4's input is controller 1's HRQ and
    /// cannot be driven.
    pub fn set_dreq(&mut self, ch: DmaChannel, asserted: bool) {
        if ch.is_cascade() {
            return;
        }
        let c = &mut self.chips[ch.chip()];
        if asserted {
            c.dreq |= ch.bit();
        } else {
            c.dreq &= !ch.bit();
        }
    }

    /// Status bits 4–7 of a chip: each channel requesting service — its DREQ input
    /// (masked or not) or its request register bit; on controller 2, channel 4's bit is
    /// controller 1's hold request.
    fn status_requests(&self, chip: usize) -> u8 {
        let c = &self.chips[chip];
        let mut req = c.hw_requests() | c.request;
        if chip == 1 {
            req = (req & !1) | u8::from(self.hold_request(0));
        }
        req & 0x0F
    }

    /// A chip's HRQ: enabled, and some channel not in cascade mode with an unmasked DREQ
    /// or a software request.
    fn hold_request(&self, chip: usize) -> bool {
        self.pending(chip) != 0
    }

    /// Channels (bits 0–3) of a chip that would win the bus if it were granted: the chip
    /// enabled, the channel not in cascade mode, and an unmasked DREQ or a block-mode
    /// software request (which no mask stops).
    fn pending(&self, chip: usize) -> u8 {
        let c = &self.chips[chip];
        if c.command & CMD_DISABLE != 0 {
            return 0;
        }
        let mut p = 0;
        for n in 0..4u8 {
            let idx = chip * 4 + usize::from(n);
            let mode = self.regs[idx].mode >> 6;
            if mode == 3 {
                continue;
            }
            let bit = 1 << n;
            let hw = c.hw_requests() & !c.mask & bit != 0;
            let sw = c.request & bit != 0 && mode == 2;
            if hw || sw {
                p |= bit;
            }
        }
        if chip == 1 && self.regs[4].mode >> 6 == 3 && c.mask & 1 == 0 && self.hold_request(0) {
            p |= 1;
        }
        p
    }

    /// The channel (0–3) of a chip that the priority encoder picks among `pending`:
    /// channel 0 first under fixed priority; under rotating priority the one after the
    /// channel served last.
    fn pick(&self, chip: usize, pending: u8) -> Option<u8> {
        if pending == 0 {
            return None;
        }
        let c = &self.chips[chip];
        let first = if c.command & CMD_ROTATING != 0 { (c.last_served + 1) % 4 } else { 0 };
        (0..4).map(|i| (first + i) % 4).find(|&n| pending & (1 << n) != 0)
    }

    /// The channel the controllers would serve next, if any: controller 2 arbitrates
    /// among its channels, and when channel 4 (the cascade) wins, controller 1 among its.
    pub fn next_channel(&self) -> Option<DmaChannel> {
        let n2 = self.pick(1, self.pending(1))?;
        if n2 != 0 {
            return Some(DmaChannel(4 + n2));
        }
        self.pick(0, self.pending(0)).map(DmaChannel)
    }

    /// Rotating priority: the channel just served becomes the lowest of its chip (and,
    /// for controller 1, channel 4 the lowest of controller 2).
    fn served(&mut self, ch: DmaChannel) {
        self.chips[ch.chip()].last_served = ch.0 % 4;
        if ch.chip() == 0 {
            self.chips[1].last_served = 0;
        }
    }

    /// An I/O read; open bus (0xFF) for ports nobody decodes and for write-only registers.
    pub fn io_read(&mut self, port: u16) -> u8 {
        match decode(port, self.eisa) {
            Some(Port::Address(ch)) => {
                let v = self.regs[usize::from(ch.0)].cur_addr;
                self.byte_of(ch.chip(), v)
            }
            Some(Port::Count(ch)) => {
                let v = self.regs[usize::from(ch.0)].cur_count;
                self.byte_of(ch.chip(), v)
            }
            Some(Port::StatusCommand(chip)) => {
                // Status: bits 0–3 TC (cleared by this read), 4–7 requests (live).
                let v = self.chips[chip].tc | (self.status_requests(chip) << 4);
                self.chips[chip].tc = 0;
                v
            }
            Some(Port::TempMasterClear(chip)) => self.chips[chip].temp,
            Some(Port::Page(ch)) => self.regs[usize::from(ch.0)].page,
            Some(Port::HighPage(ch)) => self.regs[usize::from(ch.0)].high_page,
            Some(Port::CountHigh(ch)) => self.regs[usize::from(ch.0)].cur_count_high,
            _ => 0xFF,
        }
    }

    /// An I/O write; ignored for ports nobody decodes.
    pub fn io_write(&mut self, port: u16, value: u8) {
        let Some(decoded) = decode(port, self.eisa) else {
            return;
        };
        if let Some(log) = self.port_log.as_mut() {
            log.push((port, value));
        }
        match decoded {
            Port::Address(ch) => {
                let high = self.toggle(ch.chip());
                let r = &mut self.regs[usize::from(ch.0)];
                r.base_addr = set_byte(r.base_addr, high, value);
                r.cur_addr = r.base_addr;
            }
            Port::Count(ch) => {
                let high = self.toggle(ch.chip());
                let r = &mut self.regs[usize::from(ch.0)];
                r.base_count = set_byte(r.base_count, high, value);
                r.cur_count = r.base_count;
            }
            Port::StatusCommand(chip) => self.chips[chip].command = value,
            Port::Request(chip) => set_bit(&mut self.chips[chip].request, value),
            Port::SingleMask(chip) => set_bit(&mut self.chips[chip].mask, value),
            Port::Mode(chip) => self.regs[chip * 4 + usize::from(value & 3)].mode = value,
            Port::ClearFlipFlop(chip) => self.chips[chip].high_byte = false,
            Port::TempMasterClear(chip) => self.chips[chip].master_clear(),
            Port::ClearMask(chip) => self.chips[chip].mask = 0,
            Port::AllMask(chip) => self.chips[chip].mask = value & 0x0F,
            Port::Page(ch) => {
                let r = &mut self.regs[usize::from(ch.0)];
                r.page = value;
                r.base_page = value;
            }
            Port::HighPage(ch) => {
                let r = &mut self.regs[usize::from(ch.0)];
                r.high_page = value;
                r.base_high_page = value;
            }
            Port::CountHigh(ch) => {
                let r = &mut self.regs[usize::from(ch.0)];
                r.base_count_high = value;
                r.cur_count_high = value;
            }
            Port::ExtendedMode(chip) => self.regs[chip * 4 + usize::from(value & 3)].ext_mode = value,
        }
    }

    /// Returns which byte this access addresses and flips the byte pointer.
    fn toggle(&mut self, chip: usize) -> bool {
        let c = &mut self.chips[chip];
        let high = c.high_byte;
        c.high_byte = !high;
        high
    }

    fn byte_of(&mut self, chip: usize, v: u16) -> u8 {
        let [lo, hi] = v.to_le_bytes();
        if self.toggle(chip) {
            hi
        } else {
            lo
        }
    }

    pub fn channel_state(&self, ch: DmaChannel) -> ChannelState {
        let r = &self.regs[usize::from(ch.0)];
        let c = &self.chips[ch.chip()];
        ChannelState {
            base_address: r.base_addr,
            current_address: r.cur_addr,
            base_count: r.base_count,
            current_count: r.cur_count,
            page: r.page,
            transfer: match (r.mode >> 2) & 3 {
                1 => TransferType::Write,
                2 => TransferType::Read,
                _ => TransferType::Verify,
            },
            mode: match r.mode >> 6 {
                0 => DmaMode::Demand,
                1 => DmaMode::Single,
                2 => DmaMode::Block,
                _ => DmaMode::Cascade,
            },
            auto_init: r.mode & MODE_AUTO_INIT != 0,
            decrement: r.mode & MODE_DECREMENT != 0,
            masked: c.mask & ch.bit() != 0,
            terminal_count: c.tc & ch.bit() != 0,
            request: c.request & ch.bit() != 0,
            dreq: c.dreq & ch.bit() != 0,
            high_page: r.high_page,
            count_high: r.cur_count_high,
            extended_mode: r.ext_mode,
        }
    }

    /// How the channel's cycles step: on a PC/AT by its controller's wiring, on EISA by
    /// the extended mode register's transfer size.
    pub(crate) fn geometry(&self, ch: DmaChannel) -> Geometry {
        let size = if self.eisa {
            self.regs[usize::from(ch.0)].ext_mode & 0x0C
        } else if ch.is_16bit() {
            EXT_SIZE_16_WORDS
        } else {
            EXT_SIZE_8
        };
        match size {
            EXT_SIZE_8 => Geometry { bytes_per_cycle: 1, count_step: 1, shifted: false },
            EXT_SIZE_16_WORDS => Geometry { bytes_per_cycle: 2, count_step: 1, shifted: true },
            EXT_SIZE_32 => Geometry { bytes_per_cycle: 4, count_step: 4, shifted: false },
            // EXT_SIZE_16_BYTES
            _ => Geometry { bytes_per_cycle: 2, count_step: 2, shifted: false },
        }
    }

    /// Is the channel's path to the bus open: its chip enabled, the channel not in
    /// cascade mode, and for controller 1 the cascade through channel 4 (controller 2
    /// enabled, channel 4 unmasked and in cascade mode)? The channel's own mask is
    /// checked by the caller: it stops DREQ but not software requests.
    fn path_open(&self, ch: DmaChannel) -> bool {
        let c = &self.chips[ch.chip()];
        let r = &self.regs[usize::from(ch.0)];
        let own = c.command & CMD_DISABLE == 0 && r.mode >> 6 != 3;
        if ch.chip() == 1 {
            return own;
        }
        let c2 = &self.chips[1];
        own && c2.command & CMD_DISABLE == 0 && c2.mask & 1 == 0 && self.regs[4].mode >> 6 == 3
    }
}

fn set_byte(v: u16, high: bool, b: u8) -> u16 {
    if high {
        (v & 0x00FF) | (u16::from(b) << 8)
    } else {
        (v & 0xFF00) | u16::from(b)
    }
}

/// Request and single-mask writes: bits 1–0 select the channel, bit 2 sets or clears.
fn set_bit(reg: &mut u8, value: u8) {
    let bit = 1 << (value & 3);
    if value & 4 != 0 {
        *reg |= bit;
    } else {
        *reg &= !bit;
    }
}
