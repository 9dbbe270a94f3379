//! The NCR 53C94/53C96-class SCSI controller ("ESP"), register-level, in initiator mode, with its DMA interface on a
//! system DMA channel (`docs/esp.md` is its data sheet). The bus is instantaneous except selection, which waits out
//! the select timeout when nobody answers.

use hba::{BusDevice, ScsiBus};
use port::{HbaHardware, IoWidth};
use scsi::opcode::REQUEST_SENSE;
use scsi::{Begin, DataInTask, DataOutTask, Nexus, Outcome, ScsiStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Register offsets from the I/O base (read / write names).
pub mod reg {
    /// R: current transfer count, low byte. W: start transfer count, low byte.
    pub const TCLO: u16 = 0x0;
    /// R: current transfer count, middle byte. W: start transfer count, middle byte.
    pub const TCMID: u16 = 0x1;
    /// R/W: the 16-byte FIFO.
    pub const FIFO: u16 = 0x2;
    /// R/W: command register.
    pub const CMD: u16 = 0x3;
    /// R: status. W: destination bus ID.
    pub const STATUS: u16 = 0x4;
    pub const BUSID: u16 = 0x4;
    /// R: interrupt (reading it clears it, the status interrupt bits and the sequence step). W: select timeout.
    pub const INTR: u16 = 0x5;
    pub const TIMEOUT: u16 = 0x5;
    /// R: sequence step (bits 0-2). W: synchronous transfer period.
    pub const SEQSTEP: u16 = 0x6;
    pub const SYNC_PERIOD: u16 = 0x6;
    /// R: FIFO flags (bits 0-4: bytes in the FIFO). W: synchronous offset.
    pub const FIFO_FLAGS: u16 = 0x7;
    pub const SYNC_OFFSET: u16 = 0x7;
    /// R/W: configuration 1 (bits 0-2 own bus ID, bit 6 SCSI reset interrupt disable).
    pub const CFG1: u16 = 0x8;
    /// W: clock conversion factor (bits 0-2).
    pub const CCF: u16 = 0x9;
    /// W: test.
    pub const TEST: u16 = 0xA;
    /// R/W: configuration 2.
    pub const CFG2: u16 = 0xB;
    /// R/W: configuration 3.
    pub const CFG3: u16 = 0xC;
    /// Ports the chip decodes.
    pub const CHIP_PORTS: u16 = 16;
    /// The card's requester identity latch (not the chip's): 8 bytes, big-endian, at offsets 0x10 (most significant)
    /// to 0x17. Selections present the latched identity as the initiator's I_T nexus; 0 is the card's own.
    pub const IDENT: u16 = 0x10;
    /// The card's identity control port (write): [`super::ident::DROP`].
    pub const IDENT_CTL: u16 = 0x18;
    /// Ports the card decodes: the chip's 16 and the card's identity latch and control.
    pub const PORT_COUNT: u16 = 32;
}

/// Identity control port commands (`reg::IDENT_CTL`).
pub mod ident {
    /// The latched identity leaves the bus: every target is told that I_T nexus is gone (SPC-2 reservations it held
    /// are released).
    pub const DROP: u8 = 0x01;
}

/// Command codes; bit 7 (`DMA`) makes a command use the DMA interface and load the counter from the start count.
pub mod cmd {
    pub const DMA: u8 = 0x80;
    pub const NOP: u8 = 0x00;
    pub const FLUSH_FIFO: u8 = 0x01;
    pub const RESET_CHIP: u8 = 0x02;
    pub const RESET_BUS: u8 = 0x03;
    pub const TRANSFER_INFO: u8 = 0x10;
    pub const ICCS: u8 = 0x11;
    pub const MSG_ACCEPTED: u8 = 0x12;
    pub const TRANSFER_PAD: u8 = 0x18;
    pub const SET_ATN: u8 = 0x1A;
    pub const RESET_ATN: u8 = 0x1B;
    pub const SELECT: u8 = 0x41;
    pub const SELECT_ATN: u8 = 0x42;
    pub const SELECT_ATN_STOP: u8 = 0x43;
    pub const ENABLE_SELECTION: u8 = 0x44;
    pub const DISABLE_SELECTION: u8 = 0x45;
    pub const SELECT_ATN3: u8 = 0x46;
}

/// Status register bits (bits 0-2: the bus phase, `phase::*`).
pub mod status {
    pub const PHASE_MASK: u8 = 0x07;
    pub const VGC: u8 = 0x08;
    pub const TC: u8 = 0x10;
    pub const PE: u8 = 0x20;
    pub const GE: u8 = 0x40;
    pub const INT: u8 = 0x80;
}

/// Bus phases as the status register shows them (MSG, C/D, I/O).
pub mod phase {
    pub const DATA_OUT: u8 = 0;
    pub const DATA_IN: u8 = 1;
    pub const COMMAND: u8 = 2;
    pub const STATUS: u8 = 3;
    pub const MSG_OUT: u8 = 6;
    pub const MSG_IN: u8 = 7;
}

/// Interrupt register bits.
pub mod intr {
    pub const SEL: u8 = 0x01;
    pub const SELATN: u8 = 0x02;
    pub const RESEL: u8 = 0x04;
    pub const FC: u8 = 0x08;
    pub const BS: u8 = 0x10;
    pub const DIS: u8 = 0x20;
    pub const ILL: u8 = 0x40;
    pub const SR: u8 = 0x80;
}

/// Configuration 1 bits.
pub mod cfg1 {
    pub const ID_MASK: u8 = 0x07;
    pub const RESET_INT_DISABLE: u8 = 0x40;
}

/// SCSI messages the chip's initiator sends or takes.
pub mod msg {
    pub const COMMAND_COMPLETE: u8 = 0x00;
    pub const ABORT: u8 = 0x06;
    pub const BUS_DEVICE_RESET: u8 = 0x0C;
    pub const ABORT_TAG: u8 = 0x0D;
    pub const IDENTIFY: u8 = 0x80;
}

const FIFO_DEPTH: usize = 16;

/// How the chip is wired on its ISA card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspSettings {
    pub io_base: u16,
    pub irq: u8,
    pub dma_channel: u8,
    /// The chip's input clock in MHz (the clock conversion factor must match it).
    pub clock_mhz: u32,
}

impl Default for EspSettings {
    fn default() -> Self {
        EspSettings { io_base: 0x230, irq: 10, dma_channel: 1, clock_mhz: 40 }
    }
}

enum Data {
    In(Box<dyn DataInTask>),
    Out(Box<dyn DataOutTask>),
}

/// The command that owns the bus.
struct Task {
    /// The I_T nexus the command was selected on.
    nexus: Nexus,
    target: u8,
    lun: u64,
    data: Option<Data>,
    len: u64,
    moved: u64,
    outcome: Option<Outcome>,
    stall_at: Option<u64>,
}

/// Where the bus is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bus {
    Free,
    /// Selection of an absent ID: the select timeout runs out at the instant given.
    Selecting(Instant),
    /// The target holds the bus in this phase (`phase::*`).
    Phase(u8),
}

/// The chip.
pub struct Esp {
    settings: EspSettings,
    bus: ScsiBus,
    /// The card's own I_T nexus (identity 0).
    nexus: Nexus,
    /// The requester identity latch (`reg::IDENT`).
    identity: u64,
    /// Sense a target returned with CHECK CONDITION, kept for the next REQUEST SENSE on that I_T_L: SCSI-2 targets
    /// send sense only in answer to REQUEST SENSE (contingent allegiance), the modelled targets hand it over with the
    /// status.
    pending_sense: Vec<(Nexus, u8, u64, Vec<u8>)>,
    start_count: u32,
    counter: u32,
    fifo: std::collections::VecDeque<u8>,
    status: u8,
    intr: u8,
    seqstep: u8,
    busid: u8,
    timeout: u8,
    ccf: u8,
    cfg1: u8,
    cfg2: u8,
    cfg3: u8,
    atn: bool,
    /// A DMA transfer information command runs.
    dma_active: bool,
    /// The DMA command's direction: true = target → memory.
    dma_in: bool,
    bus_state: Bus,
    task: Option<Task>,
    /// A command a message out ended with (ABORT): the bus goes free.
    last_status: u8,
}

impl Esp {
    pub fn new(settings: EspSettings, bus: ScsiBus) -> Self {
        let mut e = Esp {
            settings,
            bus,
            nexus: Nexus::new((u64::from(settings.io_base) << 8) | 7),
            identity: 0,
            pending_sense: Vec::new(),
            start_count: 0,
            counter: 0,
            fifo: Default::default(),
            status: 0,
            intr: 0,
            seqstep: 0,
            busid: 0,
            timeout: 0,
            ccf: 0,
            cfg1: 0,
            cfg2: 0,
            cfg3: 0,
            atn: false,
            dma_active: false,
            dma_in: false,
            bus_state: Bus::Free,
            task: None,
            last_status: 0,
        };
        e.reset_chip();
        e
    }

    pub fn settings(&self) -> EspSettings {
        self.settings
    }

    /// The I_T nexus a selection made now carries: the card's own while the identity latch holds 0, else the latched
    /// identity (kept apart from every card's own nexus by the top bit, as the reference card does).
    pub fn latched_nexus(&self) -> Nexus {
        Self::identity_nexus(self.nexus, self.identity)
    }

    fn identity_nexus(own: Nexus, identity: u64) -> Nexus {
        if identity == 0 {
            own
        } else {
            Nexus::new(identity | 1 << 63)
        }
    }

    fn reset_chip(&mut self) {
        self.start_count = 0;
        self.counter = 0;
        self.fifo.clear();
        self.status = 0;
        self.intr = 0;
        self.seqstep = 0;
        self.cfg1 &= cfg1::ID_MASK;
        self.cfg2 = 0;
        self.cfg3 = 0;
        self.atn = false;
        self.dma_active = false;
    }

    fn raise(&mut self, bits: u8) {
        self.intr |= bits;
        self.status |= status::INT;
    }

    fn set_phase(&mut self, p: u8) {
        self.bus_state = Bus::Phase(p);
        self.status = (self.status & !status::PHASE_MASK) | p;
    }

    fn free_bus(&mut self) {
        self.bus_state = Bus::Free;
        self.dma_active = false;
        self.atn = false;
    }

    /// The select timeout: register value × 8192 × CCF input clocks (CCF 0 counts as 8).
    fn select_timeout(&self) -> Duration {
        let ccf = if self.ccf & 7 == 0 { 8 } else { u64::from(self.ccf & 7) };
        let reg = if self.timeout == 0 { 256 } else { u64::from(self.timeout) };
        let clocks = reg * 8192 * ccf;
        Duration::from_nanos(clocks * 1000 / u64::from(self.settings.clock_mhz.max(1)))
    }

    fn device(&self, id: u8) -> Option<Arc<dyn BusDevice>> {
        self.bus.device(id).cloned()
    }

    /// Selection: `messages` are the message-out bytes (IDENTIFY, tag), `cdb` the command, if the command phase runs.
    fn select(&mut self, with_identify: bool, stop_after_message: bool, tag_bytes: usize) {
        if self.bus_state != Bus::Free {
            self.raise(intr::ILL);
            return;
        }
        // A device that asserts RST during arbitration resets the bus instead (the disks' bus-reset fault).
        let mut reset_requested = false;
        for id in 0..7 {
            if let Some(d) = self.device(id) {
                reset_requested |= d.take_bus_reset();
            }
        }
        if reset_requested {
            self.fifo.clear();
            self.reset_bus();
            return;
        }
        let target = self.busid & 7;
        if target == self.cfg1 & cfg1::ID_MASK || self.device(target).is_none() {
            self.fifo.clear();
            self.bus_state = Bus::Selecting(Instant::now() + self.select_timeout());
            return;
        }
        let bytes: Vec<u8> = self.fifo.drain(..).collect();
        let lun = if with_identify { u64::from(bytes.first().copied().unwrap_or(msg::IDENTIFY) & 7) } else { 0 };
        let skip = if with_identify { 1 + tag_bytes } else { 0 };
        let nexus = self.latched_nexus();
        self.task = Some(Task { nexus, target, lun, data: None, len: 0, moved: 0, outcome: None, stall_at: None });
        if stop_after_message {
            // The chip stops after the first message byte with ATN still asserted: the target stays in message out.
            self.atn = true;
            self.fifo.extend(bytes.iter().skip(1));
            self.seqstep = 1;
            self.set_phase(phase::MSG_OUT);
            self.raise(intr::FC | intr::BS);
            return;
        }
        let cdb: Vec<u8> = bytes.iter().skip(skip).copied().collect();
        self.seqstep = 4;
        if self.begin(&cdb) {
            self.raise(intr::FC | intr::BS);
        }
    }

    /// The command phase: the target takes the CDB and goes to its data or status phase. False when the target
    /// took the command and never goes on (the disks' "never completes" fault): the bus stays in the command phase,
    /// the chip's sequence never ends, no interrupt; only ATN (abort) or a bus reset end it.
    fn begin(&mut self, cdb: &[u8]) -> bool {
        let Some(task) = self.task.as_mut() else { return true };
        let (nexus, target, lun) = (task.nexus, task.target, task.lun);
        let Some(dev) = self.bus.device(target).cloned() else { return true };
        if dev.take_hang(lun, cdb) {
            self.set_phase(phase::COMMAND);
            return false;
        }
        // A REQUEST SENSE right after a CHECK CONDITION on the same I_T_L returns the sense the target kept.
        let pending = self.pending_sense.iter().position(|(n, t, l, _)| *n == nexus && *t == target && *l == lun);
        let pending = pending.map(|i| self.pending_sense.swap_remove(i).3);
        let begin = match (cdb.first(), pending) {
            (Some(&REQUEST_SENSE), Some(sense)) => {
                let alloc = u64::from(cdb.get(4).copied().unwrap_or(0));
                Begin::data_in(sense, alloc)
            }
            _ if cdb.is_empty() => Begin::good(),
            _ => dev.begin(nexus, lun, cdb),
        };
        let stall_at = dev.dma_stall_after(lun);
        let task = self.task.as_mut().expect("checked above");
        task.stall_at = stall_at;
        match begin {
            Begin::Complete(o) => {
                task.outcome = Some(o);
                self.set_phase(phase::STATUS);
            }
            Begin::DataIn { len, task: t } if len > 0 => {
                task.data = Some(Data::In(t));
                task.len = len;
                self.set_phase(phase::DATA_IN);
            }
            Begin::DataOut { len, task: t } if len > 0 => {
                task.data = Some(Data::Out(t));
                task.len = len;
                self.set_phase(phase::DATA_OUT);
            }
            Begin::DataIn { task: t, .. } => {
                task.outcome = Some(t.finish(0));
                self.set_phase(phase::STATUS);
            }
            Begin::DataOut { task: t, .. } => {
                task.outcome = Some(t.finish(0));
                self.set_phase(phase::STATUS);
            }
        }
        true
    }

    /// The data phase ended (all moved, or the target failed it): the target goes to status.
    fn end_data(&mut self, failed: Option<Outcome>) {
        let Some(task) = self.task.as_mut() else { return };
        let outcome = match (task.data.take(), failed) {
            (Some(Data::In(t)), f) => {
                let o = t.finish(task.moved);
                f.unwrap_or(o)
            }
            (Some(Data::Out(t)), f) => {
                let o = t.finish(task.moved);
                f.unwrap_or(o)
            }
            (None, f) => f.unwrap_or_else(Outcome::good),
        };
        task.outcome = Some(outcome);
        self.dma_active = false;
        self.set_phase(phase::STATUS);
        self.raise(intr::BS);
    }

    fn data_left(&self) -> u64 {
        self.task.as_ref().map_or(0, |t| t.len - t.moved)
    }

    fn in_data_phase(&self) -> bool {
        matches!(self.bus_state, Bus::Phase(phase::DATA_IN) | Bus::Phase(phase::DATA_OUT))
    }

    /// The DMA interface can move bytes now: how many, at most `want`.
    fn dma_room(&self, want: usize) -> usize {
        if !self.dma_active || !self.in_data_phase() || self.counter == 0 {
            return 0;
        }
        let Some(t) = self.task.as_ref() else { return 0 };
        let mut n = (want as u64).min(u64::from(self.counter)).min(t.len - t.moved);
        if let Some(s) = t.stall_at {
            n = n.min(s.saturating_sub(t.moved));
        }
        n as usize
    }

    fn after_dma(&mut self, n: usize) {
        self.counter -= n as u32;
        if let Some(t) = self.task.as_mut() {
            t.moved += n as u64;
        }
        if self.data_left() == 0 {
            if self.counter == 0 {
                self.status |= status::TC;
            }
            self.end_data(None);
        } else if self.counter == 0 {
            // Count exhausted, the target wants more: the data phase stays, the chip interrupts.
            self.status |= status::TC;
            self.dma_active = false;
            self.raise(intr::BS);
        }
    }

    fn transfer_info(&mut self, dma: bool) {
        match self.bus_state {
            Bus::Phase(phase::DATA_IN) | Bus::Phase(phase::DATA_OUT) => {
                let data_in = self.bus_state == Bus::Phase(phase::DATA_IN);
                if dma {
                    self.dma_active = true;
                    self.dma_in = data_in;
                    return;
                }
                // Programmed I/O through the FIFO.
                if data_in {
                    let room = FIFO_DEPTH - self.fifo.len();
                    let n = (room as u64).min(self.data_left()) as usize;
                    let mut buf = vec![0u8; n];
                    let r = match self.task.as_mut().and_then(|t| t.data.as_mut().map(|d| (t.moved, d))) {
                        Some((off, Data::In(task))) => task.read(off, &mut buf),
                        _ => Ok(()),
                    };
                    match r {
                        Ok(()) => {
                            self.fifo.extend(buf);
                            if let Some(t) = self.task.as_mut() {
                                t.moved += n as u64;
                            }
                            if self.data_left() == 0 {
                                self.end_data(None);
                            } else {
                                self.raise(intr::BS);
                            }
                        }
                        Err(o) => self.end_data(Some(o)),
                    }
                } else {
                    let bytes: Vec<u8> = self.fifo.drain(..).collect();
                    let n = (bytes.len() as u64).min(self.data_left()) as usize;
                    let r = match self.task.as_mut().and_then(|t| t.data.as_mut().map(|d| (t.moved, d))) {
                        Some((off, Data::Out(task))) => task.write(off, &bytes[..n]),
                        _ => Ok(()),
                    };
                    match r {
                        Ok(()) => {
                            if let Some(t) = self.task.as_mut() {
                                t.moved += n as u64;
                            }
                            if self.data_left() == 0 {
                                self.end_data(None);
                            } else {
                                self.raise(intr::BS);
                            }
                        }
                        Err(o) => self.end_data(Some(o)),
                    }
                }
            }
            Bus::Phase(phase::MSG_OUT) => {
                let bytes: Vec<u8> = self.fifo.drain(..).collect();
                self.atn = false;
                match bytes.first().copied() {
                    Some(msg::ABORT) | Some(msg::ABORT_TAG) | Some(msg::BUS_DEVICE_RESET) => {
                        // The target ends the task with what moved and leaves the bus.
                        if let Some(mut t) = self.task.take() {
                            match t.data.take() {
                                Some(Data::In(d)) => {
                                    d.finish(t.moved);
                                }
                                Some(Data::Out(d)) => {
                                    d.finish(t.moved);
                                }
                                None => {}
                            }
                            if bytes.first() == Some(&msg::BUS_DEVICE_RESET) {
                                if let Some(dev) = self.device(t.target) {
                                    dev.reset();
                                }
                            }
                        }
                        self.free_bus();
                        self.raise(intr::DIS);
                    }
                    _ => {
                        // Queue tag or other messages: the target goes on to the command phase.
                        self.set_phase(phase::COMMAND);
                        self.raise(intr::BS);
                    }
                }
            }
            Bus::Phase(phase::COMMAND) => {
                let cdb: Vec<u8> = self.fifo.drain(..).collect();
                if self.begin(&cdb) {
                    self.raise(intr::BS);
                }
            }
            Bus::Phase(phase::STATUS) => {
                let s = self.task_status();
                self.fifo.push_back(s);
                self.set_phase(phase::MSG_IN);
                self.raise(intr::BS);
            }
            Bus::Phase(phase::MSG_IN) => {
                self.fifo.push_back(msg::COMMAND_COMPLETE);
                self.raise(intr::FC);
            }
            _ => self.raise(intr::ILL),
        }
    }

    /// The status byte of the task in its status phase, keeping its sense for a REQUEST SENSE.
    fn task_status(&mut self) -> u8 {
        let Some(t) = self.task.as_mut() else { return 0 };
        let o = t.outcome.take().unwrap_or_else(Outcome::good);
        if o.status == ScsiStatus::CHECK_CONDITION {
            if let Some(sense) = o.sense.as_ref() {
                let bytes = sense.to_bytes();
                let (nexus, target, lun) = (t.nexus, t.target, t.lun);
                self.pending_sense.retain(|(n, tt, l, _)| !(*n == nexus && *tt == target && *l == lun));
                self.pending_sense.push((nexus, target, lun, bytes));
            }
        }
        self.last_status = o.status.0;
        o.status.0
    }

    fn reset_bus(&mut self) {
        if let Some(mut t) = self.task.take() {
            match t.data.take() {
                Some(Data::In(d)) => {
                    d.finish(t.moved);
                }
                Some(Data::Out(d)) => {
                    d.finish(t.moved);
                }
                None => {}
            }
        }
        for id in 0..7 {
            if let Some(d) = self.device(id) {
                d.reset();
            }
        }
        self.pending_sense.clear();
        self.fifo.clear();
        self.free_bus();
        if self.cfg1 & cfg1::RESET_INT_DISABLE == 0 {
            self.raise(intr::SR);
        }
    }

    fn command(&mut self, code: u8) {
        let dma = code & cmd::DMA != 0;
        if dma {
            // A DMA command loads the counter from the start count (0 = 65536).
            self.counter = if self.start_count == 0 { 0x1_0000 } else { self.start_count };
            self.status &= !status::TC;
        }
        let base = code & !cmd::DMA;
        if dma && matches!(base, cmd::SELECT | cmd::SELECT_ATN | cmd::SELECT_ATN_STOP | cmd::SELECT_ATN3) {
            // Selection with the command bytes taken by DMA is not modelled.
            self.raise(intr::ILL);
            return;
        }
        match base {
            cmd::NOP => {}
            cmd::FLUSH_FIFO => self.fifo.clear(),
            cmd::RESET_CHIP => self.reset_chip(),
            cmd::RESET_BUS => self.reset_bus(),
            cmd::TRANSFER_INFO => self.transfer_info(dma),
            cmd::ICCS => {
                if self.bus_state == Bus::Phase(phase::STATUS) {
                    let s = self.task_status();
                    self.fifo.push_back(s);
                    self.fifo.push_back(msg::COMMAND_COMPLETE);
                    self.set_phase(phase::MSG_IN);
                    self.raise(intr::FC);
                } else {
                    self.raise(intr::ILL);
                }
            }
            cmd::MSG_ACCEPTED => {
                if self.bus_state == Bus::Phase(phase::MSG_IN) {
                    // COMMAND COMPLETE accepted: the target releases the bus.
                    self.task = None;
                    self.free_bus();
                    self.raise(intr::DIS);
                } else {
                    self.raise(intr::ILL);
                }
            }
            cmd::TRANSFER_PAD => {
                if self.in_data_phase() {
                    // Pad bytes out (zeros) or discard bytes in until the target leaves the data phase.
                    let left = self.data_left();
                    let r = match self.task.as_mut().and_then(|t| t.data.as_mut().map(|d| (t.moved, d))) {
                        Some((off, Data::Out(task))) => task.write(off, &vec![0u8; left as usize]),
                        Some((off, Data::In(task))) => task.read(off, &mut vec![0u8; left as usize]),
                        None => Ok(()),
                    };
                    if let Some(t) = self.task.as_mut() {
                        if r.is_ok() {
                            t.moved = t.len;
                        }
                    }
                    self.end_data(r.err());
                } else {
                    self.raise(intr::ILL);
                }
            }
            cmd::SET_ATN => {
                self.atn = true;
                if let Bus::Phase(p) = self.bus_state {
                    if p != phase::MSG_OUT {
                        // The target answers ATN at its next transfer: message out; a running DMA stops.
                        self.dma_active = false;
                        self.set_phase(phase::MSG_OUT);
                        self.raise(intr::BS);
                    }
                }
            }
            cmd::RESET_ATN => {
                self.atn = false;
                if self.bus_state == Bus::Phase(phase::MSG_OUT) {
                    // No more message bytes: the target goes on to the command phase.
                    self.set_phase(phase::COMMAND);
                    self.raise(intr::BS);
                }
            }
            cmd::SELECT => self.select(false, false, 0),
            cmd::SELECT_ATN => self.select(true, false, 0),
            cmd::SELECT_ATN_STOP => self.select(true, true, 0),
            cmd::SELECT_ATN3 => self.select(true, false, 2),
            cmd::ENABLE_SELECTION | cmd::DISABLE_SELECTION => {}
            _ => self.raise(intr::ILL),
        }
    }

    fn read_reg(&mut self, off: u16) -> u8 {
        match off {
            reg::TCLO => self.counter as u8,
            reg::TCMID => (self.counter >> 8) as u8,
            reg::FIFO => self.fifo.pop_front().unwrap_or(0),
            reg::STATUS => self.status,
            reg::INTR => {
                let v = self.intr;
                self.intr = 0;
                self.seqstep = 0;
                self.status &= !(status::INT | status::GE | status::PE | status::TC);
                v
            }
            reg::SEQSTEP => self.seqstep & 7,
            reg::FIFO_FLAGS => (self.fifo.len() as u8) & 0x1F,
            reg::CFG1 => self.cfg1,
            reg::CFG2 => self.cfg2,
            reg::CFG3 => self.cfg3,
            reg::CMD => 0,
            o if (reg::IDENT..reg::IDENT + 8).contains(&o) => (self.identity >> (8 * (7 - (o - reg::IDENT)))) as u8,
            _ => 0xFF,
        }
    }

    fn write_reg(&mut self, off: u16, v: u8) {
        match off {
            reg::TCLO => self.start_count = (self.start_count & 0xFF00) | u32::from(v),
            reg::TCMID => self.start_count = (self.start_count & 0x00FF) | (u32::from(v) << 8),
            reg::FIFO => {
                if self.fifo.len() < FIFO_DEPTH {
                    self.fifo.push_back(v);
                } else {
                    self.status |= status::GE;
                }
            }
            reg::CMD => self.command(v),
            reg::BUSID => self.busid = v & 7,
            reg::TIMEOUT => self.timeout = v,
            reg::SYNC_PERIOD | reg::SYNC_OFFSET | reg::TEST => {}
            reg::CFG1 => self.cfg1 = v,
            reg::CCF => self.ccf = v & 7,
            reg::CFG2 => self.cfg2 = v,
            reg::CFG3 => self.cfg3 = v,
            o if (reg::IDENT..reg::IDENT + 8).contains(&o) => {
                let shift = 8 * (7 - (o - reg::IDENT));
                self.identity = (self.identity & !(0xFF << shift)) | (u64::from(v) << shift);
            }
            reg::IDENT_CTL if v & ident::DROP != 0 && self.identity != 0 => {
                let gone = self.latched_nexus();
                for id in 0..7 {
                    if let Some(d) = self.device(id) {
                        d.nexus_loss(gone);
                    }
                }
                self.pending_sense.retain(|(n, ..)| *n != gone);
            }
            _ => {}
        }
    }

    fn offset(&self, port: u16) -> Option<u16> {
        port.checked_sub(self.settings.io_base).filter(|o| *o < reg::PORT_COUNT)
    }
}

impl hal::DmaDevice for Esp {
    fn dreq(&self) -> bool {
        self.dma_room(usize::MAX) > 0
    }

    fn dma_write(&mut self, data: &[u8]) -> usize {
        if self.dma_in {
            return 0;
        }
        let n = self.dma_room(data.len());
        if n == 0 {
            return 0;
        }
        let r = match self.task.as_mut().and_then(|t| t.data.as_mut().map(|d| (t.moved, d))) {
            Some((off, Data::Out(task))) => task.write(off, &data[..n]),
            _ => return 0,
        };
        match r {
            Ok(()) => {
                self.after_dma(n);
                n
            }
            Err(o) => {
                self.end_data(Some(o));
                0
            }
        }
    }

    fn dma_read(&mut self, buf: &mut [u8]) -> usize {
        if !self.dma_in {
            return 0;
        }
        let n = self.dma_room(buf.len());
        if n == 0 {
            return 0;
        }
        let r = match self.task.as_mut().and_then(|t| t.data.as_mut().map(|d| (t.moved, d))) {
            Some((off, Data::In(task))) => task.read(off, &mut buf[..n]),
            _ => return 0,
        };
        match r {
            Ok(()) => {
                self.after_dma(n);
                n
            }
            Err(o) => {
                self.end_data(Some(o));
                0
            }
        }
    }
}

impl HbaHardware for Esp {
    fn io_read(&mut self, port: u16, width: IoWidth) -> u32 {
        let bytes = match width {
            IoWidth::Byte => 1,
            IoWidth::Word => 2,
            IoWidth::Dword => 4,
        };
        let mut v = 0u32;
        for i in 0..bytes {
            let b = match self.offset(port.wrapping_add(i)) {
                Some(off) => self.read_reg(off),
                None => 0xFF,
            };
            v |= u32::from(b) << (8 * i);
        }
        v
    }

    fn io_write(&mut self, port: u16, width: IoWidth, value: u32) {
        let bytes = match width {
            IoWidth::Byte => 1,
            IoWidth::Word => 2,
            IoWidth::Dword => 4,
        };
        for i in 0..bytes {
            if let Some(off) = self.offset(port.wrapping_add(i)) {
                self.write_reg(off, (value >> (8 * i)) as u8);
            }
        }
    }

    fn irq(&self) -> bool {
        self.intr != 0
    }

    fn next_deadline(&self) -> Option<Instant> {
        match self.bus_state {
            Bus::Selecting(at) => Some(at),
            _ => None,
        }
    }

    fn advance(&mut self, now: Instant) {
        if let Bus::Selecting(at) = self.bus_state {
            if now >= at {
                // Nobody answered: the chip gives up selection and reports a disconnect, sequence step 0.
                self.bus_state = Bus::Free;
                self.seqstep = 0;
                self.raise(intr::DIS);
            }
        }
    }
}
