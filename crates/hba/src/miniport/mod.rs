//! The reference miniport: drives the reference host adapter only through the port driver's DDI (port I/O,
//! `ScsiPortIoMapTransfer`, `ScsiPortFlushDma`, `ScsiPortGetSrb`, notifications).
//!
//! One command owns the card's bus at a time; tagged commands may in addition wait disconnected in their targets' task
//! sets ([`queue`]). `HwStartIo` sends `NextRequest` (or `NextLuRequest` for a tagged SRB while the logical unit's queue
//! depth allows) at once, so that the port can hand over an `ABORT_COMMAND` or further SRBs while a command runs; SRBs
//! the bus cannot take yet wait in the device extension. Each data SRB is walked in sub-ranges of at most
//! `MaximumTransferLength`: a class-driver SRB is never larger, so it takes exactly one map; a pass-through SRB takes
//! one map per sub-range, each flushed before the next is mapped and before the SRB completes (seed rule 7).

mod isr;
mod queue;

use crate::regs::{self, status};
use hal::{DmaSpeed, DmaWidth, LogicalAddr};
use port::{
    FindAdapterStatus, HwInitializationData, InterfaceType, LuAddress, Notification, PortConfigurationInformation,
    PortContext, SrbFlags, SrbFunction, SrbHandle, SrbStatus,
};
use std::collections::VecDeque;

/// Default `MaximumTransferLength`: the 64 KiB an ISA adapter's map registers cover.
pub const DEFAULT_MAX_TRANSFER: u32 = 64 << 10;
/// `NumberOfPhysicalBreaks`: the HAL bounces through map registers, so breaks cost the card nothing.
pub const PHYSICAL_BREAKS: u32 = 16;

/// What the miniport is told besides what it reads from the card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MiniportConfig {
    /// `MaximumTransferLength`; also the size of a pass-through sub-range. Rounded down to whole pages and clamped to
    /// what one programming of the 8237 moves (64 KiB on channels 0-3, 128 KiB on 5-7).
    pub max_transfer: u32,
    /// Program the system DMA controller in demand mode.
    pub demand_mode: bool,
    /// Accept pass-through SRBs of any size (application-dedicated support).
    pub application_dedicated: bool,
    /// Tagged commands outstanding per logical unit (`TaggedQueuing` and `MultipleRequestPerLu`); 1 or less turns
    /// tagged queuing off. At most [`regs::TAG_SLOTS`].
    pub queue_depth: u8,
    /// The machine's system DMA controller is EISA's: report `Dma32BitAddresses` so that
    /// the HAL programs the high page register and no buffer needs bouncing for its address.
    pub eisa_dma: bool,
    /// Grant targets the disconnect privilege (IDENTIFY's DiscPriv): they free the bus while they wait in their task
    /// sets or work (seek, read, write, long operations) and reselect. Off, every command holds the bus from selection
    /// to status.
    pub disconnect: bool,
}

/// Default tagged-queue depth per logical unit.
pub const DEFAULT_QUEUE_DEPTH: u8 = 16;

impl Default for MiniportConfig {
    fn default() -> Self {
        MiniportConfig {
            max_transfer: DEFAULT_MAX_TRANSFER,
            demand_mode: true,
            application_dedicated: true,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            eisa_dma: false,
            disconnect: true,
        }
    }
}

impl MiniportConfig {
    fn tagged_queuing(&self) -> bool {
        self.queue_depth > 1
    }
}

/// An SRB's command at the card: owning the bus, or disconnected at its target.
#[derive(Clone, Copy, Debug)]
struct Current {
    srb: SrbHandle,
    address: LuAddress,
    /// The queue tag it was started with, for a tagged command.
    tag: Option<u8>,
    buffer: LogicalAddr,
    /// `DataTransferLength` as submitted (0 for no data).
    total: u32,
    data_in: bool,
    /// Length of the mapped sub-range (its start is `moved`).
    segment: u32,
    /// Bytes moved in finished sub-ranges.
    moved: u32,
    /// A map is outstanding: it must be flushed before anything else.
    mapped: bool,
    /// `HwDmaStarted` ran for the outstanding map and set the card's transfer counter.
    dma_started: bool,
    /// The target's data phase ran the other way from the SRB's direction.
    phase_error: bool,
}

/// An SRB the miniport holds until the card's bus can take it.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    srb: SrbHandle,
    address: LuAddress,
    tagged: bool,
}

/// The device extension.
pub struct RefMiniport {
    config: MiniportConfig,
    base: u16,
    /// Sub-range size, fixed by `HwFindAdapter` from the configuration and the channel.
    segment: u32,
    /// The command that owns the bus.
    current: Option<Current>,
    /// Tagged commands queued at their targets, waiting for a reselection.
    disconnected: Vec<Current>,
    /// `RESELECT` was issued and its interrupt has not been handled yet: the bus is taken.
    reselecting: bool,
    waiting: VecDeque<Waiting>,
    /// Logical units whose `NextLuRequest` is held back until their queue depth allows another SRB.
    owed: Vec<LuAddress>,
}

impl RefMiniport {
    pub fn new(config: MiniportConfig) -> Self {
        let segment = segment_size(config.max_transfer, 0);
        RefMiniport {
            config,
            base: regs::DEFAULT_IO_BASE,
            segment,
            current: None,
            disconnected: Vec::new(),
            reselecting: false,
            waiting: VecDeque::new(),
            owed: Vec::new(),
        }
    }

    fn port(&self, offset: u16) -> u16 {
        self.base + offset
    }

    fn command(&self, ctx: &mut PortContext<'_, Self>, code: u8) {
        ctx.write_port_uchar(self.port(regs::COMMAND), code);
    }

    fn read_counter(&self, ctx: &mut PortContext<'_, Self>) -> u32 {
        let lo = ctx.read_port_uchar(self.port(regs::XFER0));
        let mid = ctx.read_port_uchar(self.port(regs::XFER1));
        let hi = ctx.read_port_uchar(self.port(regs::XFER2));
        u32::from_le_bytes([lo, mid, hi, 0])
    }

    fn write_counter(&self, ctx: &mut PortContext<'_, Self>, value: u32) {
        let [lo, mid, hi, _] = value.to_le_bytes();
        ctx.write_port_uchar(self.port(regs::XFER0), lo);
        ctx.write_port_uchar(self.port(regs::XFER1), mid);
        ctx.write_port_uchar(self.port(regs::XFER2), hi);
    }

    /// Bytes the card moved in the outstanding sub-range, from its transfer counter (the DDI's flush returns nothing).
    fn segment_moved(&self, ctx: &mut PortContext<'_, Self>, cur: &Current) -> u32 {
        if cur.mapped && cur.dma_started {
            cur.segment.saturating_sub(self.read_counter(ctx))
        } else {
            0
        }
    }

    /// Close the outstanding sub-range: count what moved and flush (a flush before `HwDmaStarted` cancels the map).
    fn close_segment(&mut self, ctx: &mut PortContext<'_, Self>) {
        let Some(mut cur) = self.current else { return };
        if cur.mapped {
            cur.moved = cur.moved.saturating_add(self.segment_moved(ctx, &cur));
            ctx.flush_dma();
            cur.mapped = false;
            cur.dma_started = false;
        }
        self.current = Some(cur);
    }

    /// Map the next sub-range of the current SRB, starting at `moved`.
    fn map_next(&mut self, ctx: &mut PortContext<'_, Self>) {
        let limit = self.segment;
        let Some(cur) = self.current.as_mut() else { return };
        let len = cur.total.saturating_sub(cur.moved).min(limit);
        cur.segment = len;
        cur.mapped = true;
        cur.dma_started = false;
        let (srb, at) = (cur.srb, LogicalAddr(cur.buffer.0 + u64::from(cur.moved)));
        ctx.io_map_transfer(srb, at, len);
    }

    /// Select, send the CDB, start the command; once it owns the bus, map its first sub-range before the card may move
    /// data. A tagged command is started with the disconnect privilege when other commands wait for the bus or are
    /// already queued at their targets (so that it does not run ahead of them); it then waits for its reselection.
    fn start_command(&mut self, ctx: &mut PortContext<'_, Self>, w: Waiting) {
        let h = w.srb;
        let Some(srb) = ctx.srb(h) else { return };
        let address = srb.address();
        let cdb = srb.cdb();
        let flags = srb.srb_flags();
        let buffer = srb.data_buffer();
        let total = srb.data_transfer_length();
        let identity = srb.requester_nexus();
        let tag = w.tagged.then(|| srb.queue_tag());
        let message = queue::tag_message(srb.queue_action());
        let invalid = if address.path_id != 0 {
            Some(SrbStatus::INVALID_PATH_ID)
        } else if address.target_id > 7 {
            Some(SrbStatus::INVALID_TARGET_ID)
        } else if u64::from(address.lun) > crate::regs::MAX_LUN {
            Some(SrbStatus::INVALID_LUN)
        } else if cdb.is_empty() {
            Some(SrbStatus::INVALID_REQUEST)
        } else {
            None
        };
        if let Some(s) = invalid {
            let mut srb = srb;
            srb.set_srb_status(s);
            srb.complete();
            return;
        }
        // The IDENTIFY message's DiscPriv: the target may free the bus while it works or waits (docs/hba.md,
        // "Disconnect and reselection"), unless the configuration or the SRB says otherwise.
        let disconnect = self.config.disconnect && !flags.contains(SrbFlags::DISABLE_DISCONNECT);
        let mut select = select_bits(address);
        if disconnect {
            select |= regs::select::DISCONNECT;
        }
        ctx.write_port_uchar(self.port(regs::SELECT), select);
        // The requester's identity first: the card presents it on the bus for this command.
        self.command(ctx, regs::CMD_CLEAR_CDB);
        ctx.write_port_buffer_uchar(self.port(regs::CDB_FIFO), &identity.to_be_bytes());
        self.command(ctx, regs::CMD_SET_IDENTITY);
        self.command(ctx, regs::CMD_CLEAR_CDB);
        if let Some(t) = tag {
            ctx.write_port_buffer_uchar(self.port(regs::CDB_FIFO), &[message, t]);
        }
        ctx.write_port_buffer_uchar(self.port(regs::CDB_FIFO), &cdb);
        self.command(ctx, if tag.is_some() { regs::CMD_START_TAGGED } else { regs::CMD_START });
        let has_data = total > 0 && flags.intersects(SrbFlags::UNSPECIFIED_DIRECTION);
        let cmd = Current {
            srb: h,
            address,
            tag,
            buffer,
            total: if has_data { total } else { 0 },
            data_in: flags & SrbFlags::UNSPECIFIED_DIRECTION == SrbFlags::DATA_IN,
            segment: 0,
            moved: 0,
            mapped: false,
            dma_started: false,
            phase_error: false,
        };
        if disconnect {
            // The bus model is instantaneous: with the bus free and no interrupt, the target took the command and
            // disconnected after the command phase (to wait in its task set or to work off the bus). Anything else
            // (data phase, status, selection timeout, bus reset, error) is handled as for a command that owns the bus.
            let st = ctx.read_port_uchar(self.port(regs::STATUS));
            if st & (status::BUSY | status::INT_PENDING) == 0 {
                self.disconnected.push(cmd);
                return;
            }
        }
        self.current = Some(cmd);
        self.connected(ctx);
    }

    /// The current command took the bus (after `START`, or a reselection): resolve an unspecified direction from the
    /// target's phase, then map the first sub-range, or end a data phase the SRB has no buffer for.
    fn connected(&mut self, ctx: &mut PortContext<'_, Self>) {
        let Some(mut cur) = self.current else { return };
        let st = ctx.read_port_uchar(self.port(regs::STATUS));
        if let Some(mut srb) = ctx.srb(cur.srb) {
            let flags = srb.srb_flags();
            if flags & SrbFlags::UNSPECIFIED_DIRECTION == SrbFlags::UNSPECIFIED_DIRECTION && cur.total > 0 {
                if st & status::DATA_WAIT != 0 {
                    // A subordinate-DMA miniport resolves an unspecified direction from the target's phase (docs/ddk.md
                    // §8).
                    cur.data_in = st & status::DATA_IN != 0;
                    srb.set_direction(if cur.data_in { SrbFlags::DATA_IN } else { SrbFlags::DATA_OUT });
                } else {
                    // The command ended without a data phase: nothing to map.
                    cur.total = 0;
                }
            }
        }
        self.current = Some(cur);
        if cur.total > 0 {
            // Mapped whatever the card did with the CDB: if the command already ended (CHECK CONDITION before any
            // data), the interrupt routine's flush cancels this map and HwDmaStarted is never called for it.
            self.map_next(ctx);
        } else if st & status::DATA_WAIT != 0 {
            // The host has no buffer for the target's data: end the data phase; the command completes with OVERRUN.
            self.command(ctx, regs::CMD_FINISH_DATA);
        }
    }

    /// Start waiting SRBs while the bus is free, then let a disconnected command reconnect.
    fn start_waiting(&mut self, ctx: &mut PortContext<'_, Self>) {
        while self.current.is_none() && !self.reselecting {
            let Some(&w) = self.waiting.front() else { break };
            if (w.tagged || self.config.disconnect) && self.disconnected.len() >= regs::TAG_SLOTS {
                // The card's table of disconnected commands is full: a completion makes room.
                break;
            }
            self.waiting.pop_front();
            self.start_command(ctx, w);
        }
        self.reselect(ctx);
    }

    /// Complete the current SRB with `status` (after its last flush) and start the next one.
    fn finish_current(&mut self, ctx: &mut PortContext<'_, Self>, status: SrbStatus) {
        self.close_segment(ctx);
        let Some(cur) = self.current.take() else { return };
        if let Some(mut srb) = ctx.srb(cur.srb) {
            srb.set_srb_status(status);
            srb.complete();
        }
        self.start_waiting(ctx);
    }

    fn abort(&mut self, ctx: &mut PortContext<'_, Self>, h: SrbHandle) {
        let victim = ctx.srb(h).and_then(|s| s.next_srb());
        let result = match victim {
            Some(v) if self.current.is_some_and(|c| c.srb == v) => {
                self.command(ctx, regs::CMD_ABORT);
                self.close_segment(ctx);
                if let Some(cur) = self.current.take() {
                    aborted(ctx, cur);
                }
                SrbStatus::SUCCESS
            }
            Some(v) if self.disconnected.iter().any(|c| c.srb == v) => {
                self.abort_disconnected(ctx, v);
                SrbStatus::SUCCESS
            }
            Some(v) => match self.waiting.iter().position(|w| w.srb == v) {
                Some(pos) => {
                    self.waiting.remove(pos);
                    if let Some(mut srb) = ctx.srb(v) {
                        srb.set_srb_status(SrbStatus::ABORTED);
                        srb.complete();
                    }
                    SrbStatus::SUCCESS
                }
                None => SrbStatus::ABORT_FAILED,
            },
            None => SrbStatus::ABORT_FAILED,
        };
        if let Some(mut srb) = ctx.srb(h) {
            srb.set_srb_status(result);
            srb.complete();
        }
        self.start_waiting(ctx);
    }

    /// Every outstanding SRB ends with `BUS_RESET`, after the flush of a mapped transfer. The reset cleared the
    /// targets' task sets, so disconnected commands are gone too.
    fn drop_all(&mut self, ctx: &mut PortContext<'_, Self>, path_id: u8) {
        if self.current.is_some_and(|c| c.mapped) {
            self.close_segment(ctx);
        }
        self.current = None;
        self.disconnected.clear();
        self.reselecting = false;
        self.waiting.clear();
        ctx.complete_request(path_id, port::SP_UNTAGGED, port::SP_UNTAGGED, SrbStatus::BUS_RESET);
    }
}

/// Complete an aborted command's SRB with what moved before the abort.
fn aborted(ctx: &mut PortContext<'_, RefMiniport>, cur: Current) {
    if let Some(mut srb) = ctx.srb(cur.srb) {
        if cur.moved < cur.total {
            srb.set_data_transfer_length(cur.moved);
        }
        srb.set_srb_status(SrbStatus::ABORTED);
        srb.complete();
    }
}

/// The `SELECT` register's target ID and LUN for `address`.
fn select_bits(address: LuAddress) -> u8 {
    address.target_id | (address.lun << 4)
}

/// The sub-range size: whole pages (so every sub-range but the last keeps a 16-bit channel's word alignment), no more
/// than one programming of the 8237 can move (its 16-bit count: 64 KiB on channels 0-3, 128 KiB of words on 5-7) and
/// within the card's 24-bit counter.
fn segment_size(max_transfer: u32, channel: u8) -> u32 {
    let dma_page: u32 = if channel >= 4 { 128 << 10 } else { 64 << 10 };
    let pages = (max_transfer.min(dma_page).min(regs::XFER_MAX) / 4096).max(1);
    pages * 4096
}

/// The miniport's entry points.
pub fn hw_initialization_data() -> HwInitializationData<RefMiniport> {
    HwInitializationData {
        adapter_interface_type: InterfaceType::Isa,
        hw_initialize,
        hw_start_io,
        hw_interrupt: Some(isr::hw_interrupt),
        hw_find_adapter,
        hw_reset_bus,
        hw_dma_started: Some(hw_dma_started),
        hw_adapter_control: None,
        map_buffers: false,
        need_physical_addresses: false,
        tagged_queuing: true,
        auto_request_sense: true,
        multiple_request_per_lu: true,
    }
}

fn hw_find_adapter(
    ext: &mut RefMiniport,
    ctx: &mut PortContext<'_, RefMiniport>,
    cfg: &mut PortConfigurationInformation,
) -> FindAdapterStatus {
    let Some(range) = cfg.access_ranges.first_mut() else { return FindAdapterStatus::BadConfig };
    if range.length < regs::PORT_COUNT || range.start.checked_add(regs::PORT_COUNT).is_none() {
        return FindAdapterStatus::BadConfig;
    }
    range.length = regs::PORT_COUNT;
    let base = range.start;
    let sig = [ctx.read_port_uchar(base + regs::SIG0), ctx.read_port_uchar(base + regs::SIG1)];
    if sig != regs::SIGNATURE {
        return FindAdapterStatus::NotFound;
    }
    ext.base = base;
    // The jumpers are the truth: DMA channel in bits 0-2, IRQ in bits 4-7.
    let conf = ctx.read_port_uchar(base + regs::CONFIG);
    let channel = conf & 0x07;
    if channel == 4 {
        return FindAdapterStatus::BadConfig;
    }
    cfg.dma_channel = u32::from(channel);
    cfg.bus_interrupt_level = u32::from(conf >> 4);
    cfg.master = false;
    let wide = channel >= 5;
    cfg.dma_width = if wide { DmaWidth::Bits16 } else { DmaWidth::Bits8 };
    // Controller 2 moves words: buffers must start on a word (docs/ddi-rules.md, the 8237 pair).
    cfg.alignment_mask = u32::from(wide);
    cfg.demand_mode = ext.config.demand_mode;
    // On EISA the system DMA controller drives all 32 address lines itself (the card only
    // sees DACK and the I/O strobes); the card keeps ISA-compatible cycle timing.
    cfg.dma_32bit_addresses = ext.config.eisa_dma;
    cfg.dma_speed = DmaSpeed::Compatible;
    ext.segment = segment_size(ext.config.max_transfer, channel);
    cfg.maximum_transfer_length = ext.segment;
    cfg.number_of_physical_breaks = PHYSICAL_BREAKS;
    cfg.scatter_gather = false;
    cfg.application_dedicated = ext.config.application_dedicated;
    cfg.auto_request_sense = true;
    cfg.caches_data = false;
    // The card queues tagged commands at their targets (disconnect and reselection) and autosenses: it can take
    // several requests per logical unit (docs/ddk.md §4, NextLuRequest).
    cfg.tagged_queuing = ext.config.tagged_queuing();
    cfg.multiple_request_per_lu = ext.config.tagged_queuing();
    cfg.number_of_buses = 1;
    cfg.initiator_bus_id[0] = regs::INITIATOR_ID;
    cfg.maximum_number_of_targets = 8;
    cfg.maximum_number_of_logical_units = (crate::regs::MAX_LUN + 1) as u8;
    FindAdapterStatus::Found
}

/// The port driver's requests for every miniport (`port::requester`): the card implements NEXUS LOSS.
pub use port::requester::{NEXUS_LOSS as IOCTL_NEXUS_LOSS, SIGNATURE as IOCTL_SIGNATURE, SRB_IO_CONTROL_SIZE};

impl RefMiniport {
    /// `SRB_FUNCTION_IO_CONTROL` (docs/ddk.md §12): the application-dedicated path. The buffer is an `SRB_IO_CONTROL`
    /// header and its data, readable whatever MapBuffers says.
    fn io_control(&mut self, ctx: &mut PortContext<'_, Self>, h: SrbHandle) {
        let mut header = [0u8; SRB_IO_CONTROL_SIZE + 8];
        let ok = match ctx.srb(h) {
            Some(mut srb) => srb.data_transfer_length() as usize >= header.len() && srb.read_data(0, &mut header),
            None => return,
        };
        let u32_at = |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let nexus_loss = ok && header[4..12] == IOCTL_SIGNATURE && u32_at(16) == IOCTL_NEXUS_LOSS && u32_at(24) >= 8;
        let status = if nexus_loss {
            let mut id = [0u8; 8];
            id.copy_from_slice(&header[SRB_IO_CONTROL_SIZE..]);
            // The FIFO holds a CDB only inside start_command, which is not running now.
            self.command(ctx, regs::CMD_CLEAR_CDB);
            ctx.write_port_buffer_uchar(self.port(regs::CDB_FIFO), &u64::from_le_bytes(id).to_be_bytes());
            self.command(ctx, regs::CMD_DROP_IDENTITY);
            SrbStatus::SUCCESS
        } else {
            SrbStatus::INVALID_REQUEST
        };
        if let Some(mut srb) = ctx.srb(h) {
            srb.set_srb_status(status);
            srb.complete();
        }
    }
}

fn hw_initialize(ext: &mut RefMiniport, ctx: &mut PortContext<'_, RefMiniport>) -> bool {
    ctx.write_port_uchar(ext.port(regs::CONTROL), regs::control::INT_ENABLE | regs::control::AUTOSENSE);
    ext.command(ctx, regs::CMD_CLEAR_INT);
    ctx.read_port_uchar(ext.port(regs::CONTROL)) & regs::control::INT_ENABLE != 0
}

fn hw_start_io(ext: &mut RefMiniport, ctx: &mut PortContext<'_, RefMiniport>, h: SrbHandle) -> bool {
    let Some(function) = ctx.srb(h).map(|s| s.function()) else { return true };
    match function {
        SrbFunction::EXECUTE_SCSI => {
            let Some(srb) = ctx.srb(h) else { return true };
            let address = srb.address();
            let tagged = ext.config.tagged_queuing() && srb.queue_tag() != port::SP_UNTAGGED;
            ext.waiting.push_back(Waiting { srb: h, address, tagged });
            ext.start_waiting(ctx);
            if tagged {
                // Another tagged SRB for this logical unit is welcome while its queue depth allows.
                ext.next_lu_request(ctx, address);
                return true;
            }
        }
        SrbFunction::ABORT_COMMAND => ext.abort(ctx, h),
        SrbFunction::IO_CONTROL => ext.io_control(ctx, h),
        SrbFunction::RESET_BUS => {
            let path = ctx.srb(h).map_or(0, |s| s.address().path_id);
            ext.command(ctx, regs::CMD_BUS_RESET);
            ext.command(ctx, regs::CMD_CLEAR_INT);
            if let Some(mut srb) = ctx.srb(h) {
                srb.set_srb_status(SrbStatus::SUCCESS);
                srb.complete();
            }
            ext.drop_all(ctx, path);
        }
        _ => {
            if let Some(mut srb) = ctx.srb(h) {
                srb.set_srb_status(SrbStatus::INVALID_REQUEST);
                srb.complete();
            }
        }
    }
    // The card queues in the extension, so the port may send more at once (an abort in particular).
    ctx.notification(Notification::NextRequest);
    ext.pay_owed(ctx);
    true
}

/// The system DMA controller is programmed: set the card's transfer counter and let it assert DREQ.
fn hw_dma_started(ext: &mut RefMiniport, ctx: &mut PortContext<'_, RefMiniport>) {
    let Some(mut cur) = ext.current else { return };
    if !cur.mapped || cur.dma_started {
        return;
    }
    let st = ctx.read_port_uchar(ext.port(regs::STATUS));
    if st & status::DATA_WAIT == 0 {
        // The command already left its data phase; its interrupt follows and flushes this map.
        return;
    }
    let target_in = st & status::DATA_IN != 0;
    if target_in != cur.data_in {
        cur.phase_error = true;
        ext.current = Some(cur);
        ext.command(ctx, regs::CMD_FINISH_DATA);
        return;
    }
    ext.write_counter(ctx, cur.segment);
    ext.command(ctx, regs::CMD_START_DMA);
    cur.dma_started = true;
    ext.current = Some(cur);
}

fn hw_reset_bus(ext: &mut RefMiniport, ctx: &mut PortContext<'_, RefMiniport>, path_id: u8) -> bool {
    ext.command(ctx, regs::CMD_BUS_RESET);
    // The card reports its own reset as an interrupt; this routine handles it here.
    ext.command(ctx, regs::CMD_CLEAR_INT);
    ext.drop_all(ctx, path_id);
    ctx.notification(Notification::NextRequest);
    ext.pay_owed(ctx);
    true
}
