//! The port driver's per-adapter engine. One engine thread owns one adapter; every miniport routine runs on it, so
//! `HwStartIo`, `HwInterrupt`, `HwDmaStarted` and timer routines are serialized as under the interrupt spinlock.
//!
//! [`Core`] holds three parts, each a small state machine with private state and its own tests:
//! - [`slots::SrbSlots`]: the SRBs the miniport was given, named by generation-checked handles, and their queue tags;
//! - [`queues::LuQueues`]: the per-LU queues, frozen or not, and the round robin that picks the next request;
//! - [`dma_path::DmaPath`]: the one system-DMA transfer (idle → requested → waiting for the channel → mapped →
//!   started → flushed, or cancelled / refused) and the channel grant.
//!
//! Around them: the scheduler and the completion DPC (this file), the miniport's DMA calls checked against the DDI
//! rules (`mapping`), their deferred halves through the HAL (`dma`), timeouts, aborts and resets (`recovery`),
//! `HwScsiFindAdapter` / `HwScsiInitialize` (`bring_up`) and the engine thread (`thread`). The DDI (`crate::ddi`)
//! reaches the engine only through the methods below.

mod bring_up;
mod dma;
mod dma_path;
mod mapping;
mod queues;
mod recovery;
mod slots;
mod thread;

pub(crate) use queues::Queued;
pub(crate) use slots::ActiveState;
pub(crate) use thread::{spawn, Msg};

use crate::bus::{HbaHardware, IoWidth};
use crate::config::{AccessRange, HwInitializationData, HwTimer, PortConfigurationInformation};
use crate::ddi::PortContext;
use crate::srb::{scsi_status, Completion, LuAddress, Srb, SrbFlags, SrbFunction, SrbHandle, SrbId, SrbStatus};
use crate::srb::{SENSE_BUFFER_SIZE, SP_UNTAGGED};
use crate::stats::StatsCell;
use crate::trace::{EventKind, Trace};
use crate::verifier::{Rule, VerifierMode, Violation};
use crossbeam_channel::Sender;
use dma_path::{DmaPath, Mapping};
use hal::{AdapterObject, ChannelGrant, DmaChannel, DmaController, Hal};
use parking_lot::Mutex;
use queues::{LuQueues, StartPolicy};
use slots::{Active, SrbSlots};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which miniport routine is running (some DDI calls are legal only from some routines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Routine {
    None,
    FindAdapter,
    Initialize,
    StartIo,
    Interrupt,
    DmaStarted,
    Timer,
    ResetBus,
}

/// Deferred work, run in order after the miniport routine that queued it returns.
enum Dpc {
    Map,
    Flush(Mapping),
    Complete(SrbHandle),
}

/// How long an SRB deferred with `SRB_STATUS_BUSY` waits before the port resubmits it.
pub const BUSY_RETRY_DELAY: Duration = Duration::from_millis(10);
/// How many times the port resubmits one deferred SRB before it returns it to its caller as BUSY.
pub const BUSY_RESUBMIT_LIMIT: u32 = 100;

/// Options the machine builder sets per adapter.
#[derive(Clone)]
pub struct AdapterOptions {
    pub name: String,
    pub verifier: VerifierMode,
    pub trace: Option<Trace>,
    /// How long the port holds new requests after a bus reset.
    pub reset_hold: Duration,
    /// How long the port waits for an abort it sent after a timeout before it resets the bus.
    pub abort_timeout: Duration,
}

impl Default for AdapterOptions {
    fn default() -> Self {
        AdapterOptions {
            name: "scsi0".into(),
            verifier: VerifierMode::Strict,
            trace: None,
            reset_hold: Duration::from_millis(250),
            abort_timeout: Duration::from_secs(1),
        }
    }
}

/// What the engine shares with the adapter's handle.
pub(crate) struct Shared {
    pub violations: Arc<Mutex<Vec<Violation>>>,
    pub stats: Arc<StatsCell>,
    pub inbox: Sender<Msg>,
}

/// One adapter's port driver state.
pub(crate) struct Core<E> {
    name: String,
    hal: Arc<Hal>,
    hw: Box<dyn HbaHardware>,
    init: HwInitializationData<E>,
    config: PortConfigurationInformation,
    access: Vec<AccessRange>,
    adapter: Option<AdapterObject>,
    channel: Option<DmaChannel>,
    slots: SrbSlots,
    lus: LuQueues,
    /// The miniport asked for its next request (`NextRequest`).
    ready: bool,
    dma: DmaPath<ChannelGrant>,
    dpcs: VecDeque<Dpc>,
    timer: Option<(HwTimer<E>, Instant)>,
    mode: VerifierMode,
    violations: Arc<Mutex<Vec<Violation>>>,
    trace: Option<Trace>,
    stats: Arc<StatsCell>,
    done: Vec<(Srb, Completion)>,
    routine: Routine,
    reset_hold_until: Option<Instant>,
    options: AdapterOptions,
    inbox: Sender<Msg>,
    /// Aborts the port sent after a timeout: victim → deadline for the abort.
    pending_aborts: Vec<(SrbId, Instant, u8)>,
    /// RESET_BUS requests waiting for their reset: each completes once `HwResetBus` has run on its bus, so a caller
    /// (an iSCSI LUN reset) answers only after the reset's effects are in place.
    reset_waiters: Vec<(u8, Queued)>,
    /// The machine's virtual clock (a HAL with a timing preset): SRB timeouts and the abort waits after them run on
    /// it (`recovery`).
    vclock: Option<hal::VirtualClock>,
    /// Aborts sent after a virtual-time timeout: victim → virtual deadline for the abort.
    pending_vaborts: Vec<(SrbId, hal::Picos, u8)>,
    /// How often each SRB was deferred with `SRB_STATUS_BUSY` and resubmitted.
    busy_resubmits: HashMap<SrbId, u32>,
    /// The card's interrupt line stayed asserted even across a bus reset: the port no longer calls `HwInterrupt`.
    irq_masked: bool,
}

/// Consecutive `HwInterrupt` calls with the line still asserted that count as an interrupt the miniport does not
/// dismiss.
const INTERRUPT_STORM: u32 = 10_000;

impl<E> Core<E> {
    pub fn new(
        hal: Arc<Hal>,
        hw: Box<dyn HbaHardware>,
        init: HwInitializationData<E>,
        options: AdapterOptions,
        shared: Shared,
    ) -> Self {
        let config = PortConfigurationInformation::default();
        let mut hw = hw;
        let wake_inbox = shared.inbox.clone();
        hw.set_waker(Arc::new(move || {
            let _ = wake_inbox.send(Msg::Wake);
        }));
        let vclock = hal.virtual_clock().cloned();
        Core {
            name: options.name.clone(),
            hal,
            hw,
            init,
            access: config.access_ranges.clone(),
            config,
            adapter: None,
            channel: None,
            slots: SrbSlots::default(),
            lus: LuQueues::default(),
            ready: true,
            dma: DmaPath::default(),
            dpcs: VecDeque::new(),
            timer: None,
            mode: options.verifier,
            violations: shared.violations,
            trace: options.trace.clone(),
            stats: shared.stats,
            done: Vec::new(),
            routine: Routine::None,
            reset_hold_until: None,
            options,
            inbox: shared.inbox,
            pending_aborts: Vec::new(),
            reset_waiters: Vec::new(),
            vclock,
            pending_vaborts: Vec::new(),
            busy_resubmits: HashMap::new(),
            irq_masked: false,
        }
    }

    // ---- bookkeeping helpers -------------------------------------------------------------------------------------

    /// Record a trace event. With no recorder this is one branch; `kind` is built by the caller, so callers whose
    /// event needs work to build (a formatted string, a lookup) test `self.tracing()` first.
    #[inline]
    pub fn event(&self, srb: Option<SrbId>, address: Option<LuAddress>, kind: EventKind) {
        if !self.tracing() {
            return;
        }
        if let Some(t) = &self.trace {
            t.record(&self.name, self.channel.map(|c| c.number()), srb, address, kind);
        }
    }

    /// Whether events are recorded (false when the `no-trace` feature compiles the calls out).
    #[inline]
    pub fn tracing(&self) -> bool {
        !cfg!(feature = "no-trace") && self.trace.is_some()
    }

    /// The SRB in slot `h`, if the handle still names one.
    pub fn active(&self, h: SrbHandle) -> Option<&Active> {
        self.slots.get(h)
    }

    fn active_mut(&mut self, h: SrbHandle) -> Option<&mut Active> {
        self.slots.get_mut(h)
    }

    /// The handle of an active SRB by id.
    pub fn handle_of(&self, id: SrbId) -> Option<SrbHandle> {
        self.slots.handle_of(id)
    }

    /// Switch the verifier mode; requests after the switch are checked in the new mode.
    pub(crate) fn set_verifier_mode(&mut self, mode: VerifierMode) {
        self.mode = mode;
    }

    /// Report a violation. Returns true when the offending operation must be refused (strict mode, non-advisory rule).
    pub fn violation(&mut self, rule: Rule, srb: Option<SrbHandle>, detail: String) -> bool {
        if self.mode == VerifierMode::Off {
            return false;
        }
        let (id, address, tag, opcode) = match srb.and_then(|h| self.active(h)) {
            Some(a) => (Some(a.id), Some(a.srb.address()), Some(a.srb.queue_tag), a.srb.cdb.first().copied()),
            None => (None, None, None, None),
        };
        let v = Violation { rule, adapter: self.name.clone(), srb: id, address, tag, opcode, detail };
        self.stats.add_violation();
        self.event(id, address, EventKind::Violation { rule: rule.name(), detail: v.detail.clone() });
        self.violations.lock().push(v);
        let refuse = self.mode == VerifierMode::Strict && !rule.is_advisory();
        if refuse {
            if let Some(a) = srb.and_then(|h| self.active_mut(h)) {
                a.failed_by_verifier = true;
            }
        }
        refuse
    }

    fn deliver(&mut self, srb: Srb, done: Completion) {
        self.done.push((srb, done));
    }

    // ---- what the DDI reads and changes -------------------------------------------------------------------------

    /// Whether the adapter is a system-DMA adapter with a `HwDmaStarted` routine and an adapter object (DDI rule 1).
    pub fn uses_system_dma(&self) -> bool {
        self.config.uses_system_dma() && self.init.hw_dma_started.is_some() && self.adapter.is_some()
    }

    /// `MapBuffers`: the miniport may touch data buffers with the CPU.
    pub fn map_buffers(&self) -> bool {
        self.config.map_buffers
    }

    /// The SRB behind `h` for the miniport to change (only through `SrbAccess`, which enforces what it may write).
    pub fn srb_mut(&mut self, h: SrbHandle) -> Option<&mut Srb> {
        self.active_mut(h).map(|a| &mut a.srb)
    }

    /// `NextRequest`: the miniport takes another request.
    pub fn next_request(&mut self) {
        self.ready = true;
    }

    /// `NextLuRequest`: the miniport takes another request, also for `address` if it queues per LU.
    pub fn next_lu_request(&mut self, address: LuAddress) {
        if !self.config.multiple_request_per_lu {
            self.violation(
                Rule::BadNextLuRequest,
                None,
                format!("NextLuRequest({address}) from an adapter that does not queue per LU"),
            );
        }
        self.ready = true;
        self.lus.set_lu_ready(address);
    }

    /// `RequestTimerCall`: call `routine` after `micro_seconds` (0 cancels).
    pub fn set_timer(&mut self, routine: HwTimer<E>, micro_seconds: u32) {
        self.timer =
            (micro_seconds != 0).then(|| (routine, Instant::now() + Duration::from_micros(u64::from(micro_seconds))));
    }

    /// `ScsiPortCompleteRequest`: complete every SRB the miniport holds on a bus / target / LU (`SP_UNTAGGED` = any).
    pub fn complete_matching(&mut self, path_id: u8, target_id: u8, lun: u8, status: SrbStatus) {
        let wild = |want: u8, have: u8| want == SP_UNTAGGED || want == have;
        let victims = self.slots.matching(|a| {
            a.is_started() && a.srb.path_id == path_id && wild(target_id, a.srb.target_id) && wild(lun, a.srb.lun)
        });
        for h in victims {
            self.complete_srb(h, Some(status));
        }
    }

    /// `ScsiPortGetSrb`: the SRB the miniport holds for a nexus and queue tag (`SP_UNTAGGED`: any).
    pub fn get_srb(&self, address: LuAddress, queue_tag: u8) -> Option<SrbHandle> {
        self.slots.find(|a| {
            a.is_started()
                && a.srb.address() == address
                && (a.srb.queue_tag == queue_tag || queue_tag == SP_UNTAGGED)
                && matches!(a.srb.function, SrbFunction::EXECUTE_SCSI | SrbFunction::IO_CONTROL)
        })
    }

    /// Whether the port knows the logical unit (it has queued a request for it).
    pub fn logical_unit_exists(&self, address: LuAddress) -> bool {
        self.lus.exists(address)
    }

    /// Copy autosense bytes into the SRB's sense buffer (at most its `SenseInfoBufferLength`).
    pub fn set_sense(&mut self, h: SrbHandle, sense: &[u8]) {
        if let Some(srb) = self.srb_mut(h) {
            let n = sense.len().min(SENSE_BUFFER_SIZE).min(srb.sense_info_buffer_length as usize);
            srb.sense_info_buffer[..n].copy_from_slice(&sense[..n]);
            srb.sense_info_buffer_length = n as u8;
        }
    }

    /// `ScsiPortStallExecution`: busy-wait; the card's own clock runs meanwhile.
    pub fn stall(&mut self, micro_seconds: u32) {
        let until = Instant::now() + Duration::from_micros(u64::from(micro_seconds));
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        self.hw.advance(Instant::now());
    }

    // ---- port I/O ------------------------------------------------------------------------------------------------

    /// Check a port access. `Ok(true)`: the card's port; `Ok(false)`: let through to the system DMA controller (warn
    /// and off modes, as the original port would); `Err(())`: refused.
    fn check_port(&mut self, port: u16, bytes: u16) -> Result<bool, ()> {
        let dma_port = match self.hal.bus() {
            hal::SystemBus::Isa => DmaController::is_dma_port(port),
            hal::SystemBus::Eisa => DmaController::is_eisa_dma_port(port),
        };
        if dma_port {
            let refuse = self.violation(
                Rule::DmaControllerAccess,
                None,
                format!("the miniport accessed port {port:#06x}, which belongs to the system DMA controller"),
            );
            return if refuse { Err(()) } else { Ok(false) };
        }
        let inside = self
            .access
            .iter()
            .any(|r| port >= r.start && (port as u32 + bytes as u32) <= r.start as u32 + r.length as u32);
        if !inside
            && !self.access.is_empty()
            && self.violation(
                Rule::IoOutsideAccessRange,
                None,
                format!("the miniport accessed port {port:#06x}, outside its access ranges {:?}", self.access),
            )
        {
            return Err(());
        }
        Ok(true)
    }

    /// `ScsiPortReadPort*`: a refused read returns all ones, as a read of an undecoded ISA port does.
    pub fn port_read(&mut self, port: u16, width: IoWidth) -> u32 {
        let bytes = width_bytes(width);
        match self.check_port(port, bytes) {
            Ok(true) => self.hw.io_read(port, width),
            Ok(false) => u32::from(self.hal.with_dma(|dma, _| dma.io_read(port))),
            Err(()) => u32::MAX >> (32 - 8 * bytes as u32),
        }
    }

    /// `ScsiPortWritePort*`.
    pub fn port_write(&mut self, port: u16, width: IoWidth, value: u32) {
        match self.check_port(port, width_bytes(width)) {
            Ok(true) => self.hw.io_write(port, width, value),
            Ok(false) => self.hal.with_dma(|dma, _| dma.io_write(port, value as u8)),
            Err(()) => {}
        }
    }

    // ---- submission ----------------------------------------------------------------------------------------------

    /// A new request from a class driver or a pass-through caller.
    pub fn submit(&mut self, q: Queued) {
        let address = q.srb.address();
        self.event(
            Some(q.id),
            Some(address),
            EventKind::SrbQueued { opcode: q.srb.cdb[0], length: q.srb.data_transfer_length },
        );
        match q.srb.function {
            SrbFunction::RELEASE_QUEUE => {
                self.lus.release(address);
                self.deliver_with(q, SrbStatus::SUCCESS);
            }
            SrbFunction::FLUSH_QUEUE => {
                for f in self.lus.flush(address) {
                    self.deliver_with(f, SrbStatus::REQUEST_FLUSHED);
                }
                self.deliver_with(q, SrbStatus::SUCCESS);
            }
            SrbFunction::ABORT_COMMAND => self.submit_abort(q),
            SrbFunction::RESET_BUS => {
                self.reset_bus(q.srb.path_id);
                self.reset_waiters.push((q.srb.path_id, q));
            }
            _ => self.lus.push_back(q),
        }
    }

    fn deliver_with(&mut self, q: Queued, status: SrbStatus) {
        let mut srb = q.srb;
        srb.srb_status = status;
        self.deliver(srb, q.done);
    }

    fn submit_abort(&mut self, q: Queued) {
        let Some(victim) = q.srb.next_srb else {
            self.deliver_with(q, SrbStatus::INVALID_REQUEST);
            return;
        };
        // A victim still in a queue never reached the miniport: the port aborts it itself.
        if let Some(v) = self.lus.remove(victim) {
            self.deliver_with(v, SrbStatus::ABORTED);
            self.deliver_with(q, SrbStatus::SUCCESS);
            return;
        }
        if self.handle_of(victim).is_none() {
            // Already finished: nothing to abort.
            self.deliver_with(q, SrbStatus::ABORT_FAILED);
            return;
        }
        // The miniport owns the victim: the abort goes to it, ahead of other queued work for that LU.
        self.lus.push_front(q);
    }

    // ---- the scheduler -------------------------------------------------------------------------------------------

    /// Run everything that can run now: hardware, interrupts, deferred work, timers, new requests.
    pub fn run(&mut self, ext: &mut E) {
        let mut storm = 0u32;
        loop {
            // Return finished SRBs as soon as they are finished, so callers overlap with the next ones.
            if !self.done.is_empty() {
                for (srb, done) in std::mem::take(&mut self.done) {
                    done(srb);
                }
            }
            let now = Instant::now();
            if self.hw.next_deadline().is_some_and(|d| d <= now) {
                self.hw.advance(now);
            }
            if self.hw.irq() && !self.irq_masked {
                if let Some(isr) = self.init.hw_interrupt {
                    storm += 1;
                    if storm > INTERRUPT_STORM {
                        // The line stays asserted whatever the miniport does. Report it, then reset the bus (the
                        // port's last resort): HwResetBus resets the card, which drops the line. If even that does
                        // not, the line is masked for good rather than spin.
                        storm = 0;
                        if self.irq_masked {
                            break;
                        }
                        self.violation(
                            Rule::InterruptNotDismissed,
                            None,
                            format!(
                                "the interrupt line stayed asserted through {INTERRUPT_STORM} consecutive HwInterrupt \
                                 calls; the port resets the bus"
                            ),
                        );
                        for path in 0..self.config.number_of_buses.max(1) {
                            self.reset_bus_with(ext, path);
                        }
                        if self.hw.irq() {
                            self.irq_masked = true;
                        }
                        continue;
                    }
                    self.event(None, None, EventKind::Interrupt);
                    self.call(ext, Routine::Interrupt, |e, ctx| {
                        isr(e, ctx);
                    });
                    continue;
                }
            }
            if self.run_one_dpc(ext) {
                continue;
            }
            // A miniport that asked for its next request gets it before the hardware moves on: on a real machine the
            // DPC that processes NextRequest runs long before a DMA transfer ends.
            if self.start_next(ext) {
                continue;
            }
            if self.service_dma() {
                continue;
            }
            if self.run_timers(ext, now) {
                continue;
            }
            // The card may raise its line in a step that moved nothing (a DMA service that met the end of the
            // target's data): nothing else would wake the engine for it before the next deadline.
            if self.hw.irq() && !self.irq_masked && self.init.hw_interrupt.is_some() {
                continue;
            }
            break;
        }
    }

    /// Call a miniport routine with a port context.
    pub fn call<R>(
        &mut self,
        ext: &mut E,
        routine: Routine,
        f: impl FnOnce(&mut E, &mut PortContext<'_, E>) -> R,
    ) -> R {
        let previous = self.routine;
        self.routine = routine;
        let r = {
            let mut ctx = PortContext::new(self);
            f(ext, &mut ctx)
        };
        self.routine = previous;
        r
    }

    fn run_one_dpc(&mut self, ext: &mut E) -> bool {
        match self.dpcs.front() {
            None => return false,
            Some(Dpc::Map) if self.dma.waiting_for_channel() => return false,
            Some(_) => {}
        }
        match self.dpcs.pop_front().expect("front exists") {
            Dpc::Map => self.dpc_map(ext),
            Dpc::Flush(m) => self.dpc_flush(m),
            Dpc::Complete(h) => self.dpc_complete(h),
        }
        true
    }

    /// Return a completed SRB to its caller.
    fn dpc_complete(&mut self, h: SrbHandle) {
        let Some(mut a) = self.slots.remove(h) else { return };
        self.dma.srb_finished(h);
        if self.resubmit_if_busy(&mut a) {
            return;
        }
        self.busy_resubmits.remove(&a.id);
        let address = a.srb.address();
        // A strict-mode violation decides the status even when the SRB then timed out waiting for a refused map.
        if a.failed_by_verifier && self.mode == VerifierMode::Strict {
            a.srb.srb_status = SrbStatus::INTERNAL_ERROR;
        } else if a.timed_out {
            a.srb.srb_status = SrbStatus::TIMEOUT;
        }
        let status = a.srb.srb_status.status();
        let freeze_status = matches!(
            status,
            SrbStatus::ERROR
                | SrbStatus::TIMEOUT
                | SrbStatus::BUS_RESET
                | SrbStatus::ABORTED
                | SrbStatus::INTERNAL_ERROR
        ) || (a.srb.scsi_status == scsi_status::CHECK_CONDITION
            || a.srb.scsi_status == scsi_status::COMMAND_TERMINATED);
        let freeze = freeze_status
            && status != SrbStatus::SUCCESS
            && a.srb.function == SrbFunction::EXECUTE_SCSI
            && !a.srb.srb_flags.contains(SrbFlags::NO_QUEUE_FREEZE);
        self.lus.finished(address, a.srb.function, freeze);
        if freeze {
            a.srb.srb_status.0 |= SrbStatus::QUEUE_FROZEN;
        }
        self.stats.add_completed();
        self.event(
            Some(a.id),
            Some(address),
            EventKind::SrbCompleted {
                status: a.srb.srb_status.0,
                scsi_status: a.srb.scsi_status,
                length: a.srb.data_transfer_length,
            },
        );
        self.pending_aborts.retain(|(v, _, _)| *v != a.id);
        self.pending_vaborts.retain(|(v, _, _)| *v != a.id);
        if let Some(done) = a.done.take() {
            self.deliver(a.srb, done);
        }
        self.maybe_free_channel();
    }

    /// A miniport defers an SRB it cannot take now by completing it with `SRB_STATUS_BUSY`, and the port resubmits
    /// it later (`docs/architecture.md`, "Completion"). It goes back to the head of its LU queue and waits
    /// [`BUSY_RETRY_DELAY`]; after [`BUSY_RESUBMIT_LIMIT`] deferrals it returns to its caller as BUSY.
    fn resubmit_if_busy(&mut self, a: &mut Active) -> bool {
        let busy = a.srb.srb_status.status() == SrbStatus::BUSY
            && a.srb.function == SrbFunction::EXECUTE_SCSI
            && !a.internal
            && !a.timed_out
            && !(a.failed_by_verifier && self.mode == VerifierMode::Strict);
        if !busy {
            return false;
        }
        let count = self.busy_resubmits.entry(a.id).or_insert(0);
        if *count >= BUSY_RESUBMIT_LIMIT {
            return false;
        }
        *count += 1;
        let Some(done) = a.done.take() else { return false };
        let mut srb = a.srb.clone();
        srb.srb_status = SrbStatus::PENDING;
        srb.scsi_status = 0;
        srb.srb_flags.remove(SrbFlags::IS_ACTIVE);
        srb.data_transfer_length = a.original_length;
        let address = srb.address();
        self.event(
            Some(a.id),
            Some(address),
            EventKind::SrbQueued { opcode: srb.cdb[0], length: srb.data_transfer_length },
        );
        self.lus.deferred(Queued { srb, id: a.id, done }, Instant::now() + BUSY_RETRY_DELAY);
        self.maybe_free_channel();
        true
    }

    /// Mark an SRB completed by the miniport (from RequestComplete or ScsiPortCompleteRequest).
    pub fn complete_srb(&mut self, h: SrbHandle, status: Option<SrbStatus>) {
        let Some(a) = self.active(h) else {
            // Handles are only made by the port, so a handle that no longer names an active SRB is one whose SRB was
            // completed and already returned to its caller.
            self.violation(
                Rule::CompletedTwice,
                None,
                "RequestComplete for an SRB that was already completed and returned to its caller".into(),
            );
            return;
        };
        if a.state == ActiveState::Completed {
            self.violation(
                Rule::CompletedTwice,
                Some(h),
                "RequestComplete for an SRB the miniport had already completed".into(),
            );
            return;
        }
        if self.dma.outstanding_for(h) {
            self.violation(
                Rule::CompleteWithoutFlush,
                Some(h),
                "the SRB was completed while its DMA transfer was still mapped; the data of a bounced device-to-memory \
                 transfer never reaches the caller's buffer"
                    .into(),
            );
            self.abandon_transfer(Some(h));
        }
        let a = self.active_mut(h).expect("checked active above");
        if let Some(s) = status {
            a.srb.srb_status = s;
        }
        a.state = ActiveState::Completed;
        self.dpcs.push_back(Dpc::Complete(h));
    }

    // ---- starting requests ---------------------------------------------------------------------------------------

    fn start_next(&mut self, ext: &mut E) -> bool {
        // An abort the port generated itself (timeout, refused map) reaches the miniport even before it asks for its
        // next request: the request it concerns may be the reason it never asks.
        let port_aborts_only = !self.ready;
        if port_aborts_only && !self.lus.port_abort_waiting() {
            return false;
        }
        if let Some(until) = self.reset_hold_until {
            if Instant::now() < until {
                return false;
            }
            self.reset_hold_until = None;
        }
        let policy = StartPolicy {
            port_aborts_only,
            multiple_per_lu: self.config.multiple_request_per_lu && self.config.tagged_queuing,
        };
        match self.lus.next(policy, Instant::now()) {
            Some(q) => {
                self.start(ext, q);
                true
            }
            None => false,
        }
    }

    fn start(&mut self, ext: &mut E, q: Queued) {
        let mut srb = q.srb;
        srb.srb_status = SrbStatus::PENDING;
        srb.srb_flags.insert(SrbFlags::IS_ACTIVE);
        if srb.srb_flags.contains(SrbFlags::QUEUE_ACTION_ENABLE) && self.config.tagged_queuing {
            srb.queue_tag = self.slots.allocate_tag();
        } else if srb.function == SrbFunction::EXECUTE_SCSI {
            srb.queue_tag = SP_UNTAGGED;
        }
        let timeout = (srb.time_out_value > 0).then(|| Duration::from_secs(srb.time_out_value as u64));
        let deadline = timeout.filter(|_| self.vclock.is_none()).map(|t| Instant::now() + t);
        let vdeadline = self.virtual_deadline(timeout);
        let id = q.id;
        let address = srb.address();
        let internal = srb.function == SrbFunction::ABORT_COMMAND && q.id.0 == 0;
        let h = self.slots.insert(Active::new(srb, id, q.done, deadline, internal));
        if let Some(a) = self.slots.get_mut(h) {
            a.vdeadline = vdeadline;
        }
        self.ready = false;
        self.event(Some(id), Some(address), EventKind::SrbStarted);
        let start_io = self.init.hw_start_io;
        self.call(ext, Routine::StartIo, |e, ctx| start_io(e, ctx, h));
    }

    /// Drop everything at shutdown: queued SRBs complete with `REQUEST_FLUSHED`.
    pub fn flush_all_queues(&mut self) {
        for q in self.lus.drain_all() {
            self.deliver_with(q, SrbStatus::REQUEST_FLUSHED);
        }
        for (_, q) in std::mem::take(&mut self.reset_waiters) {
            self.deliver_with(q, SrbStatus::REQUEST_FLUSHED);
        }
    }

    pub fn take_done(&mut self) -> Vec<(Srb, Completion)> {
        std::mem::take(&mut self.done)
    }

    pub fn is_idle(&self) -> bool {
        self.slots.is_empty() && self.lus.all_empty()
    }
}

fn width_bytes(width: IoWidth) -> u16 {
    match width {
        IoWidth::Byte => 1,
        IoWidth::Word => 2,
        IoWidth::Dword => 4,
    }
}
