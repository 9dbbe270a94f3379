//! The reference ISA SCSI host adapter, modelled at register level (`docs/hba.md` is its datasheet).
//!
//! The card is a slave-DMA device: it never addresses memory. During a data phase it asserts DREQ on its jumpered
//! channel while its transfer counter is non-zero and the target has data (or room) left; the system DMA controller
//! then hands it whole runs of memory, which go straight to or from the target's task without a copy in between.

mod background;
mod bus;
mod data;
mod tagged;
mod timing;

/// The register file, re-exported where the model's users have always found it; it lives in [`crate::regs`].
pub use crate::regs;

pub use bus::{BusDevice, ScsiBus, MAX_LUN};
pub use timing::ScsiTiming;

use port::{HbaHardware, IoWidth};
use regs::{control, flags, int, status};
use scsi::{Begin, DataInTask, DataOutTask, Nexus, Outcome, ScsiStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How the card is jumpered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HbaSettings {
    pub io_base: u16,
    pub irq: u8,
    pub dma_channel: u8,
}

impl Default for HbaSettings {
    fn default() -> Self {
        HbaSettings { io_base: regs::DEFAULT_IO_BASE, irq: 11, dma_channel: 5 }
    }
}

/// The target's side of a data phase.
enum Data {
    /// The task produces the data as it moves.
    In(Box<dyn DataInTask>),
    /// The task takes the data as it moves.
    Out(Box<dyn DataOutTask>),
    /// The data comes from the target's buffer, filled while it was disconnected; `failed`: the task failed after the
    /// bytes in the buffer.
    InBuffered { task: Box<dyn DataInTask>, buf: Vec<u8>, failed: Option<Outcome> },
    /// The data goes to the target's buffer; the task takes it once the data phase ended.
    OutBuffered { task: Box<dyn DataOutTask>, buf: Vec<u8> },
}

impl Data {
    /// The target's task ends with what moved.
    fn finish(self, moved: u64) -> Outcome {
        match self {
            Data::In(task) | Data::InBuffered { task, .. } => task.finish(moved),
            Data::Out(task) => task.finish(moved),
            Data::OutBuffered { mut task, buf } => match task.write(0, &buf) {
                Ok(()) => task.finish(moved),
                Err(failed) => {
                    let _ = task.finish(0);
                    failed
                }
            },
        }
    }

    fn is_in(&self) -> bool {
        matches!(self, Data::In(_) | Data::InBuffered { .. })
    }
}

/// How a command came to the target: what it needs to disconnect and be found again at reselection.
#[derive(Clone, Copy, Debug, Default)]
struct Arrival {
    /// The IDENTIFY message granted the disconnect privilege.
    disc_priv: bool,
    /// Queue tag (None: an untagged, I_T_L, command).
    tag: Option<u8>,
    head_of_queue: bool,
    ordered: bool,
}

/// The command that owns the bus.
struct Command {
    target: u8,
    lun: u64,
    /// The I_T nexus it arrived on (autosense asks on the same one).
    nexus: Nexus,
    data: Data,
    /// Bytes the target wants to move in its data phase.
    len: u64,
    /// Bytes moved so far.
    moved: u64,
    /// The DMA-stall fault: DREQ stays low once this many bytes moved.
    stall_at: Option<u64>,
    arrival: Arrival,
}

impl Command {
    fn left(&self) -> u64 {
        self.len - self.moved
    }
}

/// Where the protocol engine is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Bus free.
    Idle,
    /// Selected, and the target never answers (the "hang" fault): only abort or a bus reset end it.
    Hung,
    /// The target is in its data phase; the card waits for `START DMA` or `FINISH DATA`.
    DataWait,
    /// The data phase runs.
    DataActive,
}

/// Counters the card keeps for its owner (not visible through ports).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HbaCounters {
    pub commands: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub bus_resets: u64,
    pub aborts: u64,
    /// Disconnected commands whose target reselected the card.
    pub reselections: u64,
    /// The most commands the targets held disconnected at once.
    pub peak_disconnected: u64,
    /// Virtual time the SCSI bus phases took, in picoseconds (0 unless the card has a `ScsiTiming`).
    pub scsi_virtual_ps: u64,
    /// Commands whose target disconnected to work off the bus (seek, read into or write from its buffer, a long
    /// operation).
    pub background_jobs: u64,
}

/// The card's counters, readable by its owner after the card went to a port driver.
#[derive(Default)]
struct Cells {
    commands: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    bus_resets: AtomicU64,
    aborts: AtomicU64,
    reselections: AtomicU64,
    peak_disconnected: AtomicU64,
    scsi_virtual_ps: AtomicU64,
    background_jobs: AtomicU64,
}

/// A handle on a card's counters.
#[derive(Clone, Default)]
pub struct HbaMonitor(Arc<Cells>);

impl HbaMonitor {
    pub fn counters(&self) -> HbaCounters {
        let c = &*self.0;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HbaCounters {
            commands: get(&c.commands),
            bytes_in: get(&c.bytes_in),
            bytes_out: get(&c.bytes_out),
            bus_resets: get(&c.bus_resets),
            aborts: get(&c.aborts),
            reselections: get(&c.reselections),
            peak_disconnected: get(&c.peak_disconnected),
            scsi_virtual_ps: get(&c.scsi_virtual_ps),
            background_jobs: get(&c.background_jobs),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The card.
pub struct Hba {
    settings: HbaSettings,
    bus: ScsiBus,
    nexus: Nexus,
    /// The initiator identity loaded with `CMD_SET_IDENTITY` (0: the card's own).
    identity: u64,
    control: u8,
    select: u8,
    cdb: Vec<u8>,
    counter: u32,
    scsi_status: u8,
    sense: Vec<u8>,
    sense_pos: usize,
    flags: u8,
    intcause: u8,
    /// Target, LUN and (for an I_T_L_Q nexus, as `TAG` and `STATUS.TAGGED` show) queue tag of the nexus that owns,
    /// or last took, the bus.
    owner: (u8, u64, Option<u8>),
    phase: Phase,
    cmd: Option<Command>,
    /// Commands the targets took and disconnected from, oldest first (`docs/hba.md`, "Disconnect and reselection").
    disconnected: std::collections::VecDeque<tagged::Disconnected>,
    /// Names the next disconnected command (what the targets' background work reports back with).
    next_id: u64,
    /// The targets' work while disconnected.
    background: background::Background,
    /// A moment in the past: the deadline the card reports when it has something to do at once.
    epoch: std::time::Instant,
    counters: HbaMonitor,
    /// Virtual time of the SCSI phases: off when None.
    scsi_timing: Option<ScsiTiming>,
}

impl Hba {
    /// A card jumpered as `settings`, cabled to `bus`. At power-on interrupts are disabled and autosense is on.
    pub fn new(settings: HbaSettings, bus: ScsiBus) -> Self {
        Hba {
            settings,
            bus,
            // The initiator port identifier: the card's I/O base names the adapter, its SCSI ID the port on the bus.
            nexus: Nexus::new((u64::from(settings.io_base) << 8) | u64::from(regs::INITIATOR_ID)),
            identity: 0,
            control: control::AUTOSENSE,
            select: 0,
            cdb: Vec::with_capacity(16),
            counter: 0,
            scsi_status: 0,
            sense: Vec::new(),
            sense_pos: 0,
            flags: 0,
            intcause: 0,
            owner: (0, 0, None),
            phase: Phase::Idle,
            cmd: None,
            disconnected: std::collections::VecDeque::new(),
            next_id: 0,
            background: background::Background::default(),
            epoch: std::time::Instant::now(),
            counters: HbaMonitor::default(),
            scsi_timing: None,
        }
    }

    /// Charges every SCSI bus phase from now on the virtual time `timing` gives (None: off).
    pub fn set_scsi_timing(&mut self, timing: Option<ScsiTiming>) {
        self.scsi_timing = timing;
    }

    /// Adds the virtual time of a phase: `selections` arbitrations and selections, `async_bytes` command, status and
    /// message bytes, `data_bytes` bytes of data.
    fn charge(&self, selections: u64, async_bytes: u64, data_bytes: u64) {
        if let Some(t) = self.scsi_timing {
            let ps = selections * t.selection_ps + async_bytes * t.async_byte_ps + data_bytes * t.data_byte_ps;
            HbaMonitor::add(&self.counters.0.scsi_virtual_ps, ps);
        }
    }

    pub fn settings(&self) -> HbaSettings {
        self.settings
    }

    pub fn counters(&self) -> HbaCounters {
        self.counters.counters()
    }

    /// A handle that keeps reading this card's counters after the card is handed to a port driver.
    pub fn monitor(&self) -> HbaMonitor {
        self.counters.clone()
    }

    /// The I_T nexus the card's commands carry: its own, or the identity loaded with `CMD_SET_IDENTITY` (kept apart
    /// from every card's own by the top bit).
    pub fn nexus(&self) -> Nexus {
        if self.identity == 0 {
            self.nexus
        } else {
            Nexus::new(self.identity | 1 << 63)
        }
    }

    fn status(&self) -> u8 {
        let mut s = 0;
        if self.phase != Phase::Idle {
            s |= status::BUSY;
        }
        match self.phase {
            Phase::DataWait => s |= status::DATA_WAIT,
            Phase::DataActive => s |= status::DMA_ACTIVE,
            _ => {}
        }
        if self.intcause != 0 {
            s |= status::INT_PENDING;
        }
        match self.cmd.as_ref().map(|c| c.data.is_in()) {
            Some(true) => s |= status::DATA_IN,
            Some(false) => s |= status::DATA_OUT,
            None => {}
        }
        if self.sense_pos < self.sense.len() {
            s |= status::SENSE_VALID;
        }
        if self.owner.2.is_some() {
            s |= status::TAGGED;
        }
        s
    }

    fn read_reg(&mut self, offset: u16) -> u8 {
        match offset {
            regs::SIG0 => regs::SIGNATURE[0],
            regs::SIG1 => regs::SIGNATURE[1],
            regs::CONFIG => (self.settings.dma_channel & 0x07) | ((self.settings.irq & 0x0F) << 4),
            regs::STATUS => self.status(),
            regs::INTCAUSE => self.intcause,
            regs::TAG => self.owner.2.unwrap_or(0),
            regs::SELECT => self.select,
            regs::CDB_FIFO => self.cdb.len() as u8,
            regs::XFER0 => self.counter as u8,
            regs::XFER1 => (self.counter >> 8) as u8,
            regs::XFER2 => (self.counter >> 16) as u8,
            regs::SCSI_STATUS => self.scsi_status,
            regs::SENSE_FIFO => match self.sense.get(self.sense_pos) {
                Some(&b) => {
                    self.sense_pos += 1;
                    b
                }
                None => 0,
            },
            regs::SENSE_LEN => (self.sense.len() - self.sense_pos).min(255) as u8,
            regs::FLAGS => self.flags,
            regs::CONTROL => self.control,
            // Undecoded: the ISA bus floats high.
            _ => 0xFF,
        }
    }

    fn write_reg(&mut self, offset: u16, value: u8) {
        match offset {
            regs::COMMAND => self.command(value),
            regs::SELECT => self.select = value & 0xF7,
            regs::CDB_FIFO => {
                if self.cdb.len() < regs::CDB_FIFO_DEPTH {
                    self.cdb.push(value);
                } else {
                    self.raise(int::ERROR);
                }
            }
            regs::XFER0 => self.counter = (self.counter & 0xFF_FF00) | u32::from(value),
            regs::XFER1 => self.counter = (self.counter & 0xFF_00FF) | (u32::from(value) << 8),
            regs::XFER2 => self.counter = (self.counter & 0x00_FFFF) | (u32::from(value) << 16),
            regs::CONTROL => self.control = value & (control::INT_ENABLE | control::AUTOSENSE),
            // Read-only registers ignore writes.
            _ => {}
        }
    }

    fn raise(&mut self, cause: u8) {
        self.intcause |= cause;
    }

    fn command(&mut self, code: u8) {
        match code {
            regs::CMD_START => self.start_command(),
            regs::CMD_START_TAGGED => self.start_tagged(),
            regs::CMD_RESELECT => self.reselect(),
            regs::CMD_ABORT_TAG => self.abort_tag(),
            regs::CMD_START_DMA => {
                if self.phase == Phase::DataWait && self.counter > 0 {
                    self.phase = Phase::DataActive;
                } else {
                    self.raise(int::ERROR);
                }
            }
            regs::CMD_ABORT => self.abort(),
            regs::CMD_BUS_RESET => self.bus_reset(),
            regs::CMD_CLEAR_INT => self.intcause = 0,
            regs::CMD_FINISH_DATA => {
                if self.phase == Phase::DataWait {
                    self.flags |= flags::OVERRUN;
                    self.end_data_phase(None);
                } else {
                    self.raise(int::ERROR);
                }
            }
            regs::CMD_CLEAR_CDB => self.cdb.clear(),
            regs::CMD_SET_IDENTITY => match <[u8; 8]>::try_from(self.cdb.as_slice()) {
                Ok(b) if self.phase == Phase::Idle => {
                    self.identity = u64::from_be_bytes(b);
                    self.cdb.clear();
                }
                _ => self.raise(int::ERROR),
            },
            regs::CMD_DROP_IDENTITY => match <[u8; 8]>::try_from(self.cdb.as_slice()) {
                Ok(b) => {
                    let gone = Nexus::new(u64::from_be_bytes(b) | 1 << 63);
                    for d in self.bus.devices() {
                        d.nexus_loss(gone);
                    }
                    self.cdb.clear();
                }
                _ => self.raise(int::ERROR),
            },
            _ => self.raise(int::ERROR),
        }
    }

    /// `START`: selection, command phase, and on to the data phase or the end of the command. The bus is modelled as
    /// instantaneous, so `STATUS` shows where the command went as soon as the write returns.
    fn start_command(&mut self) {
        if self.phase != Phase::Idle || self.cdb.is_empty() || self.cdb.len() > 16 {
            self.raise(int::ERROR);
            return;
        }
        let (target, lun) = self.selected();
        let disc_priv = self.select & regs::select::DISCONNECT != 0;
        let untagged_held = self.disconnected.iter().any(|d| d.holds(target, lun, None));
        if disc_priv && (untagged_held || self.disconnected.len() >= regs::TAG_SLOTS) {
            // An I_T_L nexus has one untagged command at a time, and the table has a limit.
            self.raise(int::ERROR);
            return;
        }
        let (cdb, cdb_len) = self.take_cdb(0);
        self.owner = (target, lun, None);
        let Some(device) = self.select_target() else { return };
        if device.take_hang(lun, &cdb[..cdb_len]) {
            self.phase = Phase::Hung;
            return;
        }
        let arrival = Arrival { disc_priv, ..Arrival::default() };
        let nexus = self.nexus();
        if disc_priv && tagged::works_off_bus(&cdb[..cdb_len]) {
            self.work_disconnected(&device, arrival, nexus, cdb, cdb_len);
            return;
        }
        self.connect(&device, lun, nexus, &cdb[..cdb_len], arrival);
    }

    /// Target ID and LUN in `SELECT`.
    fn selected(&self) -> (u8, u64) {
        (self.select & 0x07, u64::from((self.select >> 4) & 0x07))
    }

    /// A new command takes the bus: the previous one's status, flags and sense are gone.
    fn clear_results(&mut self) {
        self.flags = 0;
        self.scsi_status = 0;
        self.sense.clear();
        self.sense_pos = 0;
    }

    /// The CDB leaves the FIFO as the command phase sends it; the first `skip` bytes are messages.
    fn take_cdb(&mut self, skip: usize) -> ([u8; 16], usize) {
        let mut cdb = [0u8; 16];
        let body = self.cdb.get(skip..).unwrap_or(&[]);
        let len = body.len().min(16);
        cdb[..len].copy_from_slice(&body[..len]);
        // Command phase: the messages (IDENTIFY, tag) and the CDB.
        self.charge(0, self.cdb.len().min(skip + 16) as u64, 0);
        self.cdb.clear();
        (cdb, len)
    }

    /// Arbitration and selection of the target in `SELECT`: the previous command's results are cleared. `None` when
    /// the command cannot go on (a device reset the bus instead, or nobody answered).
    fn select_target(&mut self) -> Option<Arc<dyn BusDevice>> {
        self.clear_results();
        HbaMonitor::add(&self.counters.0.commands, 1);
        self.charge(1, 0, 0);
        // A device that asserts RST at arbitration resets the bus instead (the bus-reset fault).
        let mut reset_requested = false;
        for d in self.bus.devices() {
            reset_requested |= d.take_bus_reset();
        }
        if reset_requested {
            self.bus_reset();
            return None;
        }
        let device = self.bus.device(self.selected().0).cloned();
        if device.is_none() {
            self.raise(int::SELECTION_TIMEOUT);
        }
        device
    }

    /// The target holds the bus for `cdb`: on to its data phase, or its status when it has none. With the disconnect
    /// privilege, a command that writes takes its data into the target's buffer (and disconnects after it).
    fn connect(&mut self, device: &Arc<dyn BusDevice>, lun: u64, nexus: Nexus, cdb: &[u8], arrival: Arrival) -> bool {
        let target = self.selected().0;
        let begun = device.begin(nexus, lun, cdb);
        let buffer_out = arrival.disc_priv && tagged::buffers_data_out(cdb);
        self.enter_phase(device, target, lun, nexus, begun.into(), buffer_out, arrival)
    }

    /// The target is connected and goes to the phase `begun` names. True when it is in a data phase.
    #[allow(clippy::too_many_arguments)]
    fn enter_phase(
        &mut self,
        device: &Arc<dyn BusDevice>,
        target: u8,
        lun: u64,
        nexus: Nexus,
        begun: background::Ready,
        buffer_out: bool,
        arrival: Arrival,
    ) -> bool {
        let stall_at = device.dma_stall_after(lun);
        let (data, len) = match begun {
            background::Ready::Status(outcome) => {
                self.complete(target, lun, nexus, outcome);
                return false;
            }
            background::Ready::DataIn { len, task, buf: None, .. } => (Data::In(task), len),
            background::Ready::DataIn { len, task, buf: Some(buf), failed } => {
                (Data::InBuffered { task, buf, failed }, len)
            }
            background::Ready::DataOut { len, task } if buffer_out && len <= background::TARGET_BUFFER => {
                (Data::OutBuffered { task, buf: Vec::with_capacity(len as usize) }, len)
            }
            background::Ready::DataOut { len, task } => (Data::Out(task), len),
        };
        self.cmd = Some(Command { target, lun, nexus, data, len, moved: 0, stall_at, arrival });
        if len == 0 {
            self.end_data_phase(None);
            false
        } else {
            self.phase = Phase::DataWait;
            true
        }
    }

    /// The data phase is over (target exhausted, host finished it, or the target failed it): the target's task
    /// finishes with the bytes moved, and the command completes.
    fn end_data_phase(&mut self, failed: Option<Outcome>) {
        let Some(cmd) = self.cmd.take() else { return };
        let outcome = cmd.data.finish(cmd.moved);
        self.complete(cmd.target, cmd.lun, cmd.nexus, failed.unwrap_or(outcome));
    }

    /// Status phase: record the status byte, run autosense after CHECK CONDITION, raise `COMMAND_COMPLETE`.
    fn complete(&mut self, target: u8, lun: u64, nexus: Nexus, outcome: Outcome) {
        self.phase = Phase::Idle;
        // Status byte and COMMAND COMPLETE message.
        self.charge(0, 2, 0);
        self.scsi_status = outcome.status.0;
        if outcome.status == ScsiStatus::CHECK_CONDITION && self.control & control::AUTOSENSE != 0 {
            // The sense data the target returned with the status is what REQUEST SENSE reports (SAM-5 autosense);
            // if it returned none, the card asks for it.
            let sense = match outcome.sense {
                Some(s) => s.to_fixed(),
                None => self.request_sense(target, lun, nexus),
            };
            self.flags |= if sense.is_empty() { flags::AUTOSENSE_FAILED } else { flags::AUTOSENSE };
            self.sense = sense;
            self.sense_pos = 0;
        }
        self.raise(int::COMMAND_COMPLETE);
    }

    /// The card's own REQUEST SENSE (SPC-4 §6.37), allocation length [`regs::AUTOSENSE_LENGTH`].
    fn request_sense(&mut self, target: u8, lun: u64, nexus: Nexus) -> Vec<u8> {
        let Some(device) = self.bus.device(target).cloned() else { return Vec::new() };
        let cdb = [scsi::opcode::REQUEST_SENSE, 0, 0, 0, regs::AUTOSENSE_LENGTH, 0];
        match device.begin(nexus, lun, &cdb) {
            Begin::DataIn { len, mut task } => {
                let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0).min(usize::from(regs::AUTOSENSE_LENGTH))];
                let ok = task.read(0, &mut buf).is_ok();
                let outcome = task.finish(if ok { buf.len() as u64 } else { 0 });
                if ok && outcome.is_good() {
                    buf
                } else {
                    Vec::new()
                }
            }
            Begin::DataOut { task, .. } => {
                let _ = task.finish(0);
                Vec::new()
            }
            Begin::Complete(_) => Vec::new(),
        }
    }

    fn abort(&mut self) {
        HbaMonitor::add(&self.counters.0.aborts, 1);
        if let Some(cmd) = self.cmd.take() {
            // The outcome goes nowhere, as the command is gone.
            let _ = cmd.data.finish(cmd.moved);
        }
        self.phase = Phase::Idle;
        self.intcause &= int::BUS_RESET;
    }

    fn bus_reset(&mut self) {
        HbaMonitor::add(&self.counters.0.bus_resets, 1);
        if let Some(cmd) = self.cmd.take() {
            let _ = cmd.data.finish(cmd.moved);
        }
        // Every task set is cleared: the disconnected commands are gone with the rest (work a target still does for
        // one of them finds no command when it reports back).
        for d in self.disconnected.drain(..) {
            d.discard();
        }
        self.owner.2 = None;
        for d in self.bus.devices() {
            d.reset();
        }
        self.phase = Phase::Idle;
        self.cdb.clear();
        self.raise(int::BUS_RESET);
    }
}

impl HbaHardware for Hba {
    fn io_read(&mut self, port: u16, width: IoWidth) -> u32 {
        let bytes = width_bytes(width);
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
        for i in 0..width_bytes(width) {
            if let Some(off) = self.offset(port.wrapping_add(i)) {
                self.write_reg(off, (value >> (8 * i)) as u8);
            }
        }
    }

    fn irq(&self) -> bool {
        self.control & control::INT_ENABLE != 0 && self.intcause != 0
    }

    fn next_deadline(&self) -> Option<std::time::Instant> {
        (self.background.pending() || self.may_reselect()).then_some(self.epoch)
    }

    fn advance(&mut self, _now: std::time::Instant) {
        self.collect_background();
        self.reselect_ready();
    }

    fn busy(&self) -> bool {
        self.background.busy()
    }

    fn set_waker(&mut self, waker: port::Waker) {
        self.background.set_waker(waker);
    }
}

impl Hba {
    /// The register a port decodes to, if it is one of the card's.
    fn offset(&self, port: u16) -> Option<u16> {
        port.checked_sub(self.settings.io_base).filter(|o| *o < regs::PORT_COUNT)
    }
}

fn width_bytes(width: IoWidth) -> u16 {
    match width {
        IoWidth::Byte => 1,
        IoWidth::Word => 2,
        IoWidth::Dword => 4,
    }
}
