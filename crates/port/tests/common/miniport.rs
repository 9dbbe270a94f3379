//! A correct small miniport for [`super::hba::TestHba`], and its deliberately broken variants: each [`Bug`] changes
//! one thing the correct miniport does, once (the bug fires on the first SRB it can, then the miniport behaves).

use super::hba::{self, TestHba};
use hal::{DmaWidth, LogicalAddr};
use port::{
    AdapterResources, FindAdapterStatus, HwInitializationData, InterfaceType, LuAddress, Notification,
    PortConfigurationInformation, PortContext, SrbFlags, SrbFunction, SrbHandle, SrbStatus, SP_UNINITIALIZED_VALUE,
    SP_UNTAGGED,
};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// One deliberate mistake. The comment names what the correct miniport does instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    None,
    /// Registers no `HwDmaStarted` although it asks for system DMA (rule 1; the port refuses to start it).
    NoDmaStartedRoutine,
    /// Configured as a PIO adapter (no DMA channel) but calls `ScsiPortIoMapTransfer` anyway (rule 1).
    MapWithoutSystemDma,
    /// Maps the SRB again after completing it (rule 2).
    MapAfterComplete,
    /// Maps an empty range (rule 2).
    MapEmptyRange,
    /// Maps its last segment 512 bytes past the end of the SRB's buffer (rule 2).
    MapPastBuffer,
    /// Maps the whole transfer at once instead of segments that fit the map registers (rule 2).
    MapWholeTransfer,
    /// Does not resolve `SRB_FLAGS_UNSPECIFIED_DIRECTION` before mapping (rule 2).
    KeepUnspecifiedDirection,
    /// Maps a no-data SRB (rule 2).
    MapNoDataSrb,
    /// Maps the next segment ahead from `HwDmaStarted` (rule 4: maps come from HwStartIo, HwInterrupt or a timer).
    MapFromDmaStarted,
    /// Starts the card's data phase before mapping instead of in `HwDmaStarted` (rule 4).
    StartDataPhaseEarly,
    /// Maps the next segment without flushing the previous one (rule 3).
    MapBeforeFlush,
    /// Completes the SRB without `ScsiPortFlushDma` (rule 5).
    CompleteWithoutFlush,
    /// Its abort handler completes the victim without flushing (rule 5).
    AbortWithoutFlush,
    /// Its `HwResetBus` completes the SRBs with `ScsiPortCompleteRequest` without flushing (rule 5).
    ResetCompletesWithoutFlush,
    /// Its `HwResetBus` forgets the mapped SRB without flushing or completing it (rule 5).
    ResetForgetsTransfer,
    /// Flushes twice (rule 6).
    FlushTwice,
    /// Sets the status of an SRB after completing it (rule 7).
    TouchAfterComplete,
    /// Completes an SRB twice (rule 7).
    CompleteTwice,
    /// Raises `DataTransferLength` above what was submitted (rule 7).
    RaiseTransferLength,
    /// Rewrites the direction bits of an SRB whose direction is specified (rule 7).
    RewriteDirection,
    /// Reads the data buffer although `MapBuffers` is FALSE (rule 7).
    ReadDataWithoutMapBuffers,
    /// Programs the system DMA controller's mask register itself.
    TouchDmaController,
    /// Reads a port outside its access range.
    IoOutsideAccessRange,
    /// Sends `NextLuRequest` from an adapter that does not queue per LU.
    NextLuRequestUnqueued,
    /// Never dismisses the card's interrupt (until the card is reset).
    NeverAckInterrupt,
}

/// What the test can count from outside the engine thread.
#[derive(Default)]
pub struct Counters {
    pub dma_started: AtomicU32,
    pub interrupts: AtomicU32,
    pub resets: AtomicU32,
}

#[derive(Clone, Copy)]
struct Current {
    srb: SrbHandle,
    buffer: LogicalAddr,
    total: u32,
    done: u32,
    segment: u32,
    position: u32,
    to_memory: bool,
    mapped: bool,
    dma_started: bool,
}

/// The device extension.
pub struct TestMiniport {
    pub bug: Bug,
    /// The bug has not fired yet.
    pub armed: bool,
    /// Bytes per map (the card's own limit).
    pub segment: u32,
    pub max_transfer: u32,
    pub map_buffers: bool,
    pub counters: Arc<Counters>,
    base: u16,
    current: Option<Current>,
    waiting: VecDeque<SrbHandle>,
}

impl TestMiniport {
    pub fn new(bug: Bug, counters: Arc<Counters>) -> Self {
        TestMiniport {
            bug,
            armed: true,
            segment: 16 << 10,
            max_transfer: 64 << 10,
            map_buffers: true,
            counters,
            base: 0,
            current: None,
            waiting: VecDeque::new(),
        }
    }

    /// Whether `bug` fires now (once).
    fn fire(&mut self, bug: Bug) -> bool {
        if self.bug == bug && self.armed {
            self.armed = false;
            return true;
        }
        false
    }

    fn cmd(&self, ctx: &mut PortContext<'_, Self>, c: u8) {
        ctx.write_port_uchar(self.base + hba::CMD, c);
    }

    fn map_segment(&mut self, ctx: &mut PortContext<'_, Self>) {
        let Some(mut cur) = self.current else { return };
        let len = (cur.total - cur.done).min(self.segment);
        cur.segment = len;
        cur.mapped = true;
        cur.dma_started = false;
        self.current = Some(cur);
        ctx.write_port_ulong(self.base + hba::POSITION, cur.position + cur.done);
        ctx.write_port_ulong(self.base + hba::COUNT, len);
        self.cmd(ctx, if cur.to_memory { hba::SETUP_IN } else { hba::SETUP_OUT });
        if self.fire(Bug::StartDataPhaseEarly) {
            self.cmd(ctx, hba::GO);
        }
        let at = LogicalAddr(cur.buffer.0 + u64::from(cur.done));
        let map_len = if self.fire(Bug::MapEmptyRange) {
            0
        } else if cur.done + len == cur.total && self.fire(Bug::MapPastBuffer) {
            len + 512
        } else if self.fire(Bug::MapWholeTransfer) {
            cur.total - cur.done
        } else {
            len
        };
        ctx.io_map_transfer(cur.srb, at, map_len);
    }

    /// Flush the outstanding segment and count what the card moved (from its own counter: the flush returns nothing).
    fn close_segment(&mut self, ctx: &mut PortContext<'_, Self>) {
        self.count_segment(ctx, true);
    }

    /// Count what the card moved in the outstanding segment; flush it if `flush`.
    fn count_segment(&mut self, ctx: &mut PortContext<'_, Self>, flush: bool) {
        let Some(mut cur) = self.current else { return };
        if !cur.mapped {
            return;
        }
        let left = ctx.read_port_ulong(self.base + hba::COUNT);
        if cur.dma_started {
            cur.done += cur.segment.saturating_sub(left);
        }
        cur.mapped = false;
        cur.dma_started = false;
        self.current = Some(cur);
        if !flush {
            return;
        }
        ctx.flush_dma();
        if self.fire(Bug::FlushTwice) {
            ctx.flush_dma();
        }
    }

    fn complete(&mut self, ctx: &mut PortContext<'_, Self>, h: SrbHandle, status: SrbStatus, moved: Option<u32>) {
        if let Some(mut srb) = ctx.srb(h) {
            if let Some(m) = moved {
                if m < srb.data_transfer_length() {
                    srb.set_data_transfer_length(m);
                }
            }
            srb.set_srb_status(status);
            srb.complete();
        }
    }

    fn start(&mut self, ctx: &mut PortContext<'_, Self>, h: SrbHandle) {
        let Some(mut srb) = ctx.srb(h) else { return };
        let cdb = srb.cdb();
        let flags = srb.srb_flags();
        let buffer = srb.data_buffer();
        let total = srb.data_transfer_length();
        match cdb.first().copied() {
            Some(op @ (0x28 | 0x2A)) if cdb.len() >= 6 => {
                let to_memory = op == 0x28;
                let wanted = if to_memory { SrbFlags::DATA_IN } else { SrbFlags::DATA_OUT };
                let dir = flags & SrbFlags::UNSPECIFIED_DIRECTION;
                if dir == SrbFlags::UNSPECIFIED_DIRECTION {
                    if !self.fire(Bug::KeepUnspecifiedDirection) {
                        srb.set_direction(wanted);
                    }
                } else if self.bug == Bug::RewriteDirection && self.armed {
                    self.armed = false;
                    srb.set_direction(wanted);
                }
                let lba = u32::from_be_bytes([cdb[2], cdb[3], cdb[4], cdb[5]]);
                let mut probe = [0u8; 4];
                if self.fire(Bug::ReadDataWithoutMapBuffers) {
                    let _ = srb.read_data(0, &mut probe);
                }
                if self.fire(Bug::RaiseTransferLength) {
                    srb.set_data_transfer_length(total + 512);
                }
                self.current = Some(Current {
                    srb: h,
                    buffer,
                    total,
                    done: 0,
                    segment: 0,
                    position: lba.saturating_mul(512),
                    to_memory,
                    mapped: false,
                    dma_started: false,
                });
                if self.fire(Bug::TouchDmaController) {
                    ctx.write_port_uchar(0xD4, 0x05);
                }
                if self.fire(Bug::IoOutsideAccessRange) {
                    ctx.read_port_uchar(self.base + 0x40);
                }
                self.map_segment(ctx);
            }
            Some(0x00) => {
                self.current = Some(Current {
                    srb: h,
                    buffer,
                    total: 0,
                    done: 0,
                    segment: 0,
                    position: 0,
                    to_memory: false,
                    mapped: false,
                    dma_started: false,
                });
                self.cmd(ctx, hba::NO_DATA);
                if self.fire(Bug::MapNoDataSrb) {
                    ctx.io_map_transfer(h, LogicalAddr(0), 512);
                }
            }
            _ => {
                srb.set_srb_status(SrbStatus::INVALID_REQUEST);
                srb.complete();
            }
        }
    }

    fn finish(&mut self, ctx: &mut PortContext<'_, Self>, status: SrbStatus) {
        let flush = !self.fire(Bug::CompleteWithoutFlush);
        self.count_segment(ctx, flush);
        let Some(cur) = self.current.take() else { return };
        let moved = (cur.total > 0).then_some(cur.done);
        self.complete(ctx, cur.srb, status, moved);
        if self.fire(Bug::CompleteTwice) {
            ctx.notification(Notification::RequestComplete(cur.srb));
        }
        if self.fire(Bug::TouchAfterComplete) {
            if let Some(mut srb) = ctx.srb(cur.srb) {
                srb.set_srb_status(SrbStatus::ERROR);
            }
        }
        if self.fire(Bug::MapAfterComplete) {
            ctx.io_map_transfer(cur.srb, cur.buffer, cur.total.min(self.segment));
        }
        self.start_waiting(ctx);
    }

    fn start_waiting(&mut self, ctx: &mut PortContext<'_, Self>) {
        while self.current.is_none() {
            let Some(h) = self.waiting.pop_front() else { break };
            self.start(ctx, h);
        }
    }

    fn abort(&mut self, ctx: &mut PortContext<'_, Self>, h: SrbHandle) {
        let victim = ctx.srb(h).and_then(|s| s.next_srb());
        let result = match victim {
            Some(v) if self.current.is_some_and(|c| c.srb == v) => {
                self.cmd(ctx, hba::STOP);
                self.cmd(ctx, hba::ACK);
                let flush = !self.fire(Bug::AbortWithoutFlush);
                self.count_segment(ctx, flush);
                if let Some(cur) = self.current.take() {
                    self.complete(ctx, cur.srb, SrbStatus::ABORTED, Some(cur.done));
                }
                SrbStatus::SUCCESS
            }
            Some(v) => match self.waiting.iter().position(|w| *w == v) {
                Some(pos) => {
                    self.waiting.remove(pos);
                    self.complete(ctx, v, SrbStatus::ABORTED, None);
                    SrbStatus::SUCCESS
                }
                None => SrbStatus::ABORT_FAILED,
            },
            None => SrbStatus::ABORT_FAILED,
        };
        self.complete(ctx, h, result, None);
        self.start_waiting(ctx);
    }
}

fn find_adapter(
    ext: &mut TestMiniport,
    _ctx: &mut PortContext<'_, TestMiniport>,
    cfg: &mut PortConfigurationInformation,
) -> FindAdapterStatus {
    let Some(range) = cfg.access_ranges.first() else { return FindAdapterStatus::BadConfig };
    ext.base = range.start;
    if ext.bug == Bug::MapWithoutSystemDma {
        cfg.dma_channel = SP_UNINITIALIZED_VALUE;
    } else if cfg.dma_channel != SP_UNINITIALIZED_VALUE {
        let wide = cfg.dma_channel >= 5;
        cfg.dma_width = if wide { DmaWidth::Bits16 } else { DmaWidth::Bits8 };
        // Word channels move words: odd starts must bounce or be refused (docs/ddi-rules.md, the 8237 pair).
        cfg.alignment_mask = u32::from(wide);
    }
    cfg.maximum_transfer_length = ext.max_transfer;
    cfg.number_of_physical_breaks = 16;
    cfg.map_buffers = ext.map_buffers;
    cfg.application_dedicated = true;
    cfg.maximum_number_of_targets = 8;
    FindAdapterStatus::Found
}

fn initialize(ext: &mut TestMiniport, ctx: &mut PortContext<'_, TestMiniport>) -> bool {
    ext.cmd(ctx, hba::RESET);
    true
}

fn start_io(ext: &mut TestMiniport, ctx: &mut PortContext<'_, TestMiniport>, h: SrbHandle) -> bool {
    let function = ctx.srb(h).map(|s| s.function());
    match function {
        Some(SrbFunction::ABORT_COMMAND) => ext.abort(ctx, h),
        Some(SrbFunction::EXECUTE_SCSI) => {
            if ext.current.is_some() {
                ext.waiting.push_back(h);
            } else {
                ext.start(ctx, h);
            }
        }
        Some(_) => ext.complete(ctx, h, SrbStatus::INVALID_REQUEST, None),
        None => {}
    }
    if ext.fire(Bug::NextLuRequestUnqueued) {
        ctx.notification(Notification::NextLuRequest(LuAddress { path_id: 0, target_id: 0, lun: 0 }));
    } else {
        ctx.notification(Notification::NextRequest);
    }
    true
}

fn dma_started(ext: &mut TestMiniport, ctx: &mut PortContext<'_, TestMiniport>) {
    ext.counters.dma_started.fetch_add(1, Ordering::Relaxed);
    let Some(mut cur) = ext.current else { return };
    cur.dma_started = true;
    ext.current = Some(cur);
    ext.cmd(ctx, hba::GO);
    if cur.total - cur.done > cur.segment && ext.fire(Bug::MapFromDmaStarted) {
        let at = LogicalAddr(cur.buffer.0 + u64::from(cur.done + cur.segment));
        ctx.io_map_transfer(cur.srb, at, ext.segment.min(cur.total - cur.done - cur.segment));
    }
}

fn interrupt(ext: &mut TestMiniport, ctx: &mut PortContext<'_, TestMiniport>) -> bool {
    let status = ctx.read_port_uchar(ext.base + hba::STATUS);
    if status & hba::ST_IRQ == 0 {
        return false;
    }
    ext.counters.interrupts.fetch_add(1, Ordering::Relaxed);
    let never_ack = ext.bug == Bug::NeverAckInterrupt && ext.armed;
    if !never_ack {
        ext.cmd(ctx, hba::ACK);
    }
    let Some(cur) = ext.current else { return true };
    if status & hba::ST_ERROR != 0 {
        ext.finish(ctx, SrbStatus::PHASE_SEQUENCE_FAILURE);
        return true;
    }
    let next_segment = cur.total > 0 && cur.mapped && cur.dma_started && {
        let left = ctx.read_port_ulong(ext.base + hba::COUNT);
        cur.done + cur.segment.saturating_sub(left) < cur.total
    };
    if next_segment {
        let flush = !ext.fire(Bug::MapBeforeFlush);
        ext.count_segment(ctx, flush);
        ext.map_segment(ctx);
    } else {
        ext.finish(ctx, SrbStatus::SUCCESS);
    }
    true
}

fn reset_bus(ext: &mut TestMiniport, ctx: &mut PortContext<'_, TestMiniport>, path_id: u8) -> bool {
    ext.counters.resets.fetch_add(1, Ordering::Relaxed);
    ext.cmd(ctx, hba::RESET);
    if ext.bug == Bug::NeverAckInterrupt {
        // The card reset cleared the condition that made the interrupt stick.
        ext.armed = false;
    }
    let forget = ext.fire(Bug::ResetForgetsTransfer);
    if !forget && !ext.fire(Bug::ResetCompletesWithoutFlush) {
        ext.close_segment(ctx);
    }
    ext.current = None;
    ext.waiting.clear();
    if !forget {
        ctx.complete_request(path_id, SP_UNTAGGED, SP_UNTAGGED, SrbStatus::BUS_RESET);
    }
    ctx.notification(Notification::NextRequest);
    true
}

/// The miniport's `HW_INITIALIZATION_DATA` (without `HwDmaStarted` for [`Bug::NoDmaStartedRoutine`] and
/// [`Bug::MapWithoutSystemDma`]).
pub fn init_data(bug: Bug) -> HwInitializationData<TestMiniport> {
    HwInitializationData {
        adapter_interface_type: InterfaceType::Isa,
        hw_initialize: initialize,
        hw_start_io: start_io,
        hw_interrupt: Some(interrupt),
        hw_find_adapter: find_adapter,
        hw_reset_bus: reset_bus,
        hw_dma_started: (!matches!(bug, Bug::NoDmaStartedRoutine | Bug::MapWithoutSystemDma)).then_some(dma_started),
        hw_adapter_control: None,
        map_buffers: true,
        need_physical_addresses: false,
        tagged_queuing: false,
        auto_request_sense: false,
        multiple_request_per_lu: false,
    }
}

/// Resources for a card at `io_base` on `channel`.
pub fn resources(io_base: u16, channel: Option<u8>) -> AdapterResources {
    AdapterResources { io_base, io_length: hba::PORTS, interrupt_level: 11, dma_channel: channel }
}

/// The disk behind a card, shared with the test.
pub type SharedDisk = Arc<parking_lot::Mutex<Vec<u8>>>;
/// The card's knobs, shared with the test.
pub type SharedKnobs = Arc<parking_lot::Mutex<hba::Knobs>>;

/// A card with a disk of `disk_bytes`.
pub fn card(io_base: u16, disk_bytes: usize) -> (TestHba, SharedDisk, SharedKnobs) {
    let disk = Arc::new(parking_lot::Mutex::new(vec![0u8; disk_bytes]));
    let knobs = Arc::new(parking_lot::Mutex::new(hba::Knobs::default()));
    (TestHba::new(io_base, disk.clone(), knobs.clone()), disk, knobs)
}
