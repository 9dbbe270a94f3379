//! The reference miniport: drives the reference host adapter only through the port driver's DDI (port I/O,
//! `ScsiPortIoMapTransfer`, `ScsiPortFlushDma`, notifications).
//!
//! The card runs one command at a time. `HwStartIo` sends `NextRequest` at once, so that the port can hand over an
//! `ABORT_COMMAND` (or a request for another logical unit) while a command runs; such requests wait in the device
//! extension until the card is free. Each data SRB is walked in sub-ranges of at most `MaximumTransferLength`: a
//! class-driver SRB is never larger, so it takes exactly one map; a pass-through SRB takes one map per sub-range, each
//! flushed before the next is mapped and before the SRB completes (seed rule 7).

mod isr;

use crate::hw::regs::{self, status};
use hal::{DmaWidth, LogicalAddr};
use port::{
    FindAdapterStatus, HwInitializationData, InterfaceType, Notification, PortConfigurationInformation, PortContext,
    SrbFlags, SrbFunction, SrbHandle, SrbStatus,
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
}

impl Default for MiniportConfig {
    fn default() -> Self {
        MiniportConfig { max_transfer: DEFAULT_MAX_TRANSFER, demand_mode: true, application_dedicated: true }
    }
}

/// The command the card is running.
#[derive(Clone, Copy, Debug)]
struct Current {
    srb: SrbHandle,
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

/// The device extension.
pub struct RefMiniport {
    config: MiniportConfig,
    base: u16,
    /// Sub-range size, fixed by `HwFindAdapter` from the configuration and the channel.
    segment: u32,
    current: Option<Current>,
    waiting: VecDeque<SrbHandle>,
}

impl RefMiniport {
    pub fn new(config: MiniportConfig) -> Self {
        let segment = segment_size(config.max_transfer, 0);
        RefMiniport { config, base: regs::DEFAULT_IO_BASE, segment, current: None, waiting: VecDeque::new() }
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

    /// Select, send the CDB, start the command, and map its first sub-range before the card may move data.
    fn start_command(&mut self, ctx: &mut PortContext<'_, Self>, h: SrbHandle) {
        let Some(srb) = ctx.srb(h) else { return };
        let address = srb.address();
        let cdb = srb.cdb();
        let flags = srb.srb_flags();
        let buffer = srb.data_buffer();
        let total = srb.data_transfer_length();
        let identity = srb.requester_nexus();
        let invalid = if address.path_id != 0 {
            Some(SrbStatus::INVALID_PATH_ID)
        } else if address.target_id > 7 {
            Some(SrbStatus::INVALID_TARGET_ID)
        } else if u64::from(address.lun) > crate::hw::MAX_LUN {
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
        ctx.write_port_uchar(self.port(regs::SELECT), address.target_id | (address.lun << 4));
        // The requester's identity first: the card presents it on the bus for this command.
        self.command(ctx, regs::CMD_CLEAR_CDB);
        ctx.write_port_buffer_uchar(self.port(regs::CDB_FIFO), &identity.to_be_bytes());
        self.command(ctx, regs::CMD_SET_IDENTITY);
        self.command(ctx, regs::CMD_CLEAR_CDB);
        ctx.write_port_buffer_uchar(self.port(regs::CDB_FIFO), &cdb);
        self.command(ctx, regs::CMD_START);
        let st = ctx.read_port_uchar(self.port(regs::STATUS));
        let mut direction = flags & SrbFlags::UNSPECIFIED_DIRECTION;
        if direction == SrbFlags::UNSPECIFIED_DIRECTION && st & status::DATA_WAIT != 0 && total > 0 {
            // A subordinate-DMA miniport resolves an unspecified direction from the target's phase (DDK.md §1.8).
            direction = if st & status::DATA_IN != 0 { SrbFlags::DATA_IN } else { SrbFlags::DATA_OUT };
            if let Some(mut srb) = ctx.srb(h) {
                srb.set_direction(direction);
            }
        }
        let has_data = total > 0 && (direction == SrbFlags::DATA_IN || direction == SrbFlags::DATA_OUT);
        self.current = Some(Current {
            srb: h,
            buffer,
            total: if has_data { total } else { 0 },
            data_in: direction == SrbFlags::DATA_IN,
            segment: 0,
            moved: 0,
            mapped: false,
            dma_started: false,
            phase_error: false,
        });
        if has_data {
            // Mapped whatever the card did with the CDB: if the command already ended (CHECK CONDITION before any
            // data), the interrupt routine's flush cancels this map and HwDmaStarted is never called for it.
            self.map_next(ctx);
        } else if st & status::DATA_WAIT != 0 {
            // The host has no buffer for the target's data: end the data phase; the command completes with OVERRUN.
            self.command(ctx, regs::CMD_FINISH_DATA);
        }
    }

    /// Start the next waiting SRB if the card is free.
    fn start_waiting(&mut self, ctx: &mut PortContext<'_, Self>) {
        while self.current.is_none() {
            let Some(h) = self.waiting.pop_front() else { return };
            self.start_command(ctx, h);
        }
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
                    if let Some(mut srb) = ctx.srb(cur.srb) {
                        if cur.moved < cur.total {
                            srb.set_data_transfer_length(cur.moved);
                        }
                        srb.set_srb_status(SrbStatus::ABORTED);
                        srb.complete();
                    }
                }
                SrbStatus::SUCCESS
            }
            Some(v) => match self.waiting.iter().position(|w| *w == v) {
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

    /// Every outstanding SRB ends with `BUS_RESET`, after the flush of a mapped transfer.
    fn drop_all(&mut self, ctx: &mut PortContext<'_, Self>, path_id: u8) {
        if self.current.is_some_and(|c| c.mapped) {
            self.close_segment(ctx);
        }
        self.current = None;
        self.waiting.clear();
        ctx.complete_request(path_id, port::SP_UNTAGGED, port::SP_UNTAGGED, SrbStatus::BUS_RESET);
    }
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
        tagged_queuing: false,
        auto_request_sense: true,
        multiple_request_per_lu: false,
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
    // Controller 2 moves words: buffers must start on a word (DESIGN.md, 8237 pair).
    cfg.alignment_mask = u32::from(wide);
    cfg.demand_mode = ext.config.demand_mode;
    ext.segment = segment_size(ext.config.max_transfer, channel);
    cfg.maximum_transfer_length = ext.segment;
    cfg.number_of_physical_breaks = PHYSICAL_BREAKS;
    cfg.scatter_gather = false;
    cfg.application_dedicated = ext.config.application_dedicated;
    cfg.auto_request_sense = true;
    cfg.caches_data = false;
    cfg.tagged_queuing = false;
    cfg.multiple_request_per_lu = false;
    cfg.number_of_buses = 1;
    cfg.initiator_bus_id[0] = regs::INITIATOR_ID;
    cfg.maximum_number_of_targets = 8;
    cfg.maximum_number_of_logical_units = (crate::hw::MAX_LUN + 1) as u8;
    FindAdapterStatus::Found
}

/// `SRB_IO_CONTROL` signature of the card's application-dedicated requests.
pub const IOCTL_SIGNATURE: [u8; 8] = *b"RHSCSI  ";
/// Control code: the requester whose I_T nexus is in the 8 data bytes (little-endian) is gone.
pub const IOCTL_NEXUS_LOSS: u32 = 1;
/// Size of the `SRB_IO_CONTROL` header (HeaderLength, Signature, Timeout, ControlCode, ReturnCode, Length).
pub const SRB_IO_CONTROL_SIZE: usize = 28;

impl RefMiniport {
    /// `SRB_FUNCTION_IO_CONTROL` (DDK.md §1.12): the application-dedicated path. The buffer is an `SRB_IO_CONTROL`
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
            ext.waiting.push_back(h);
            ext.start_waiting(ctx);
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
    true
}
