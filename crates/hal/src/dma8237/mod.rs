//! The PC/AT pair of 8237A DMA controllers, at their standard I/O ports.
//!
//! Controller 1 (ports 0x00–0x0F) serves channels 0–3 with byte addresses and counts;
//! controller 2 (ports 0xC0–0xDE, every other port, because it sits on A1–A4) serves
//! channels 4–7 with word addresses and counts, and channel 4 cascades controller 1.
//! The 74LS612 page registers supply the address bits above the 8237's 16.
//! Register behaviour follows the Intel 8237A datasheet: base and current registers,
//! count holds N−1, terminal count on roll-over from 0, self-mask at TC unless
//! auto-initialize, the byte-pointer flip-flop, and a status register whose TC bits
//! clear when it is read.

mod service;

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
}

/// The device side of a DMA channel (the HBA implements it). `service` calls it with the
/// bus lock held, so it must not call back into the HAL. A verify transfer runs the
/// device's cycles through `dma_read` and discards the bytes (no memory strobe).
pub trait DmaDevice {
    /// Is DREQ asserted now?
    fn dreq(&self) -> bool;
    /// Memory → device ("read" transfer). The device takes bytes; returns how many it
    /// accepted (fewer = it dropped DREQ).
    fn dma_write(&mut self, data: &[u8]) -> usize;
    /// Device → memory ("write" transfer). The device fills `buf`; returns how many
    /// bytes it supplied.
    fn dma_read(&mut self, buf: &mut [u8]) -> usize;
    /// EOP: the channel reached terminal count.
    fn terminal_count(&mut self) {}
}

/// What one `service` call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceOutcome {
    pub bytes: u64,
    pub terminal_count: bool,
}

/// Command register bit 2: controller disable. The other command bits (memory-to-memory,
/// compressed timing, rotating priority, DREQ/DACK sense) are stored and read back by
/// nothing: the PC/AT wires neither memory-to-memory transfers nor other polarities, and
/// priority does not arise when one service call serves one channel.
const CMD_DISABLE: u8 = 0x04;
/// Mode register fields.
const MODE_DECREMENT: u8 = 0x20;
const MODE_AUTO_INIT: u8 = 0x10;
/// Channel 4's mode as the BIOS leaves it: cascade, channel 0 of controller 2.
const MODE_CASCADE_CH4: u8 = 0xC0;

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
    /// Byte-pointer flip-flop: false = next access is the low byte.
    high_byte: bool,
    temp: u8,
}

impl Chip {
    /// Master clear (datasheet): command, status, request, temporary registers and the
    /// flip-flop cleared, all mask bits set.
    fn master_clear(&mut self) {
        *self = Chip { mask: 0x0F, ..Chip::default() };
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
}

/// Page register ports per channel (PC/AT 74LS612 wiring); 0x8F is channel 4's, unused.
const PAGE_PORTS: [u16; 8] = [0x87, 0x83, 0x81, 0x82, 0x8F, 0x8B, 0x89, 0x8A];

fn decode(port: u16) -> Option<Port> {
    let (chip, reg) = match port {
        0x00..=0x0F => (0usize, port),
        0xC0..=0xDE if port.is_multiple_of(2) => (1usize, (port - 0xC0) / 2),
        _ => {
            let ch = PAGE_PORTS.iter().position(|&p| p == port)?;
            return Some(Port::Page(DmaChannel(ch as u8)));
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

/// Both chips, the page registers, command/status/request/mask registers.
pub struct DmaController {
    chips: [Chip; 2],
    regs: [Regs; 8],
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
            scratch: vec![0; SCRATCH_BYTES],
            port_log: None,
        };
        c.chips[0].master_clear();
        c.chips[1].master_clear();
        c.regs[4].mode = MODE_CASCADE_CH4;
        c.chips[1].mask &= !1;
        c
    }

    /// Is `port` decoded by the DMA controllers or their page registers?
    pub fn is_dma_port(port: u16) -> bool {
        decode(port).is_some()
    }

    /// Starts (or stops, returning nothing more) recording every `io_write` as (port, value).
    pub fn record_port_writes(&mut self, on: bool) {
        self.port_log = on.then(Vec::new);
    }

    /// The port writes recorded since the last call; recording stays on.
    pub fn take_port_writes(&mut self) -> Vec<(u16, u8)> {
        self.port_log.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// An I/O read; open bus (0xFF) for ports nobody decodes and for write-only registers.
    pub fn io_read(&mut self, port: u16) -> u8 {
        match decode(port) {
            Some(Port::Address(ch)) => {
                let v = self.regs[usize::from(ch.0)].cur_addr;
                self.byte_of(ch.chip(), v)
            }
            Some(Port::Count(ch)) => {
                let v = self.regs[usize::from(ch.0)].cur_count;
                self.byte_of(ch.chip(), v)
            }
            Some(Port::StatusCommand(chip)) => {
                // Status: bits 0–3 TC, 4–7 request; reading clears the TC bits (datasheet).
                let c = &mut self.chips[chip];
                let v = c.tc | (c.request << 4);
                c.tc = 0;
                v
            }
            Some(Port::TempMasterClear(chip)) => self.chips[chip].temp,
            Some(Port::Page(ch)) => self.regs[usize::from(ch.0)].page,
            _ => 0xFF,
        }
    }

    /// An I/O write; ignored for ports nobody decodes.
    pub fn io_write(&mut self, port: u16, value: u8) {
        let Some(decoded) = decode(port) else {
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
            Port::Page(ch) => self.regs[usize::from(ch.0)].page = value,
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
        }
    }

    /// Can the channel win the bus now? Its chip enabled, the channel unmasked and not
    /// in cascade mode; for controller 1 also the cascade path through channel 4.
    fn channel_enabled(&self, ch: DmaChannel) -> bool {
        let c = &self.chips[ch.chip()];
        let r = &self.regs[usize::from(ch.0)];
        let own = c.command & CMD_DISABLE == 0 && c.mask & ch.bit() == 0 && r.mode >> 6 != 3;
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
