//! The port driver's per-adapter state and its scheduler: LU queues, the deferred (DPC) work queue, SRB slots,
//! completion. One engine thread owns one adapter; every miniport routine runs on it, so `HwStartIo`, `HwInterrupt`,
//! `HwDmaStarted` and timer routines are serialized as under the interrupt spinlock. The DMA half of the deferred work
//! is in `dma`, the checks of the DMA calls in `mapping`, timeouts, aborts and resets in `recovery`.

use crate::bus::HbaHardware;
use crate::config::{AccessRange, HwInitializationData, HwTimer, PortConfigurationInformation};
use crate::ddi::PortContext;
use crate::srb::{
    scsi_status, Completion, LuAddress, Srb, SrbFlags, SrbFunction, SrbHandle, SrbId, SrbStatus, SP_UNTAGGED,
};
use crate::stats::StatsCell;
use crate::trace::{EventKind, Trace};
use crate::verifier::{Rule, VerifierMode, Violation};
use crate::Msg;
use crossbeam_channel::Sender;
use hal::{AdapterObject, Buffer, ChannelGrant, DmaChannel, Hal};
use parking_lot::Mutex;
use std::collections::{BTreeMap, VecDeque};
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

/// An SRB waiting in a logical unit's queue.
pub(crate) struct Queued {
    pub srb: Srb,
    pub id: SrbId,
    pub done: Completion,
}

impl Queued {
    /// An abort the port queued itself (id 0: no caller waits for it).
    pub fn is_port_abort(&self) -> bool {
        self.srb.function == SrbFunction::ABORT_COMMAND && self.id == SrbId(0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActiveState {
    /// Given to `HwStartIo`; the miniport owns it.
    Started,
    /// The miniport completed it; the completion DPC returns it.
    Completed,
}

/// An SRB the miniport was given.
pub(crate) struct Active {
    pub srb: Srb,
    pub id: SrbId,
    pub done: Option<Completion>,
    pub state: ActiveState,
    pub deadline: Option<Instant>,
    /// A strict-mode violation concerned this SRB: it completes with `SRB_STATUS_INTERNAL_ERROR`.
    pub failed_by_verifier: bool,
    /// The port timed it out: it completes with `SRB_STATUS_TIMEOUT`.
    pub timed_out: bool,
    /// An abort the port generated itself (no caller waits for it).
    pub internal: bool,
    /// Data transfer length as submitted (the miniport may only lower it).
    pub original_length: u32,
    pub maps: u32,
    pub flushes: u32,
    /// The port already sent an abort for it (after a refused map or a timeout).
    pub abort_sent: bool,
}

pub(crate) struct Slot {
    pub generation: u32,
    pub active: Option<Active>,
}

#[derive(Default)]
pub(crate) struct LuState {
    pub queue: VecDeque<Queued>,
    pub frozen: bool,
    pub active: u32,
    /// `NextLuRequest` received: the miniport takes another request for this LU.
    pub lu_ready: bool,
    /// An SRB the miniport deferred with `SRB_STATUS_BUSY` waits at the head of the queue until then.
    pub busy_until: Option<Instant>,
}

/// A transfer the miniport asked for with `ScsiPortIoMapTransfer`, not yet programmed.
#[derive(Clone)]
pub(crate) struct MapRequest {
    pub srb: SrbHandle,
    pub id: SrbId,
    pub buffer: Buffer,
    pub offset: usize,
    pub length: usize,
    pub direction: hal::Direction,
}

/// A transfer programmed into the channel and not yet flushed.
#[derive(Clone)]
pub(crate) struct Mapping {
    pub request: MapRequest,
    pub dma_started: bool,
    /// The HAL went through map registers: a device-to-memory flush copies back from them.
    pub bounced: bool,
}

/// Deferred work, run in order after the miniport routine that queued it returns.
pub(crate) enum Dpc {
    Map,
    Flush(Mapping),
    Complete(SrbHandle),
}

#[derive(Default)]
pub(crate) struct DmaState {
    pub grant: Option<ChannelGrant>,
    pub waiting_for_grant: bool,
    pub request: Option<MapRequest>,
    pub mapped: Option<Mapping>,
    /// A map the verifier refused: the miniport believes it mapped, and its next flush pairs with this refusal
    /// (rule 5 pairs every map with one flush) instead of being reported as a flush with nothing mapped.
    pub refused: Option<SrbHandle>,
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

pub(crate) struct Core<E> {
    pub name: String,
    pub hal: Arc<Hal>,
    pub hw: Box<dyn HbaHardware>,
    pub init: HwInitializationData<E>,
    pub config: PortConfigurationInformation,
    pub access: Vec<AccessRange>,
    pub adapter: Option<AdapterObject>,
    pub channel: Option<DmaChannel>,
    pub slots: Vec<Slot>,
    pub free_slots: Vec<u32>,
    pub lus: BTreeMap<LuAddress, LuState>,
    pub rr_cursor: Option<LuAddress>,
    pub ready: bool,
    pub dma: DmaState,
    pub dpcs: VecDeque<Dpc>,
    pub timer: Option<(HwTimer<E>, Instant)>,
    pub mode: VerifierMode,
    pub violations: Arc<Mutex<Vec<Violation>>>,
    pub trace: Option<Trace>,
    pub stats: Arc<StatsCell>,
    pub done: Vec<(Srb, Completion)>,
    pub routine: Routine,
    pub reset_hold_until: Option<Instant>,
    pub options: AdapterOptions,
    pub inbox: Sender<Msg>,
    pub next_tag: u8,
    /// Aborts the port sent after a timeout: victim → deadline for the abort.
    pub pending_aborts: Vec<(SrbId, Instant, u8)>,
    /// How often each SRB was deferred with `SRB_STATUS_BUSY` and resubmitted.
    pub busy_resubmits: std::collections::HashMap<SrbId, u32>,
    /// The card's interrupt line stayed asserted even across a bus reset: the port no longer calls `HwInterrupt`.
    pub irq_masked: bool,
}

/// Consecutive `HwInterrupt` calls with the line still asserted that count as an interrupt the miniport does not
/// dismiss.
const INTERRUPT_STORM: u32 = 10_000;

impl<E> Core<E> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        hal: Arc<Hal>,
        hw: Box<dyn HbaHardware>,
        init: HwInitializationData<E>,
        config: PortConfigurationInformation,
        options: AdapterOptions,
        violations: Arc<Mutex<Vec<Violation>>>,
        stats: Arc<StatsCell>,
        inbox: Sender<Msg>,
    ) -> Self {
        let access = config.access_ranges.clone();
        Core {
            name: options.name.clone(),
            hal,
            hw,
            init,
            config,
            access,
            adapter: None,
            channel: None,
            slots: Vec::new(),
            free_slots: Vec::new(),
            lus: BTreeMap::new(),
            rr_cursor: None,
            ready: true,
            dma: DmaState::default(),
            dpcs: VecDeque::new(),
            timer: None,
            mode: options.verifier,
            violations,
            trace: options.trace.clone(),
            stats,
            done: Vec::new(),
            routine: Routine::None,
            reset_hold_until: None,
            options,
            inbox,
            next_tag: 1,
            pending_aborts: Vec::new(),
            busy_resubmits: std::collections::HashMap::new(),
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

    pub fn active(&self, h: SrbHandle) -> Option<&Active> {
        let slot = self.slots.get(h.slot as usize)?;
        if slot.generation != h.generation {
            return None;
        }
        slot.active.as_ref()
    }

    pub fn active_mut(&mut self, h: SrbHandle) -> Option<&mut Active> {
        let slot = self.slots.get_mut(h.slot as usize)?;
        if slot.generation != h.generation {
            return None;
        }
        slot.active.as_mut()
    }

    /// The handle of an active SRB by id.
    pub fn handle_of(&self, id: SrbId) -> Option<SrbHandle> {
        self.slots.iter().enumerate().find_map(|(i, s)| {
            s.active.as_ref().filter(|a| a.id == id).map(|_| SrbHandle { slot: i as u32, generation: s.generation })
        })
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

    fn alloc_slot(&mut self, active: Active) -> SrbHandle {
        if let Some(i) = self.free_slots.pop() {
            let s = &mut self.slots[i as usize];
            s.active = Some(active);
            SrbHandle { slot: i, generation: s.generation }
        } else {
            self.slots.push(Slot { generation: 0, active: Some(active) });
            SrbHandle { slot: (self.slots.len() - 1) as u32, generation: 0 }
        }
    }

    fn release_slot(&mut self, h: SrbHandle) -> Option<Active> {
        let s = self.slots.get_mut(h.slot as usize)?;
        if s.generation != h.generation {
            return None;
        }
        let a = s.active.take();
        s.generation = s.generation.wrapping_add(1);
        self.free_slots.push(h.slot);
        a
    }

    fn deliver(&mut self, srb: Srb, done: Completion) {
        self.done.push((srb, done));
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
                let lu = self.lus.entry(address).or_default();
                lu.frozen = false;
                let mut srb = q.srb;
                srb.srb_status = SrbStatus::SUCCESS;
                self.deliver(srb, q.done);
            }
            SrbFunction::FLUSH_QUEUE => {
                let lu = self.lus.entry(address).or_default();
                lu.frozen = false;
                let flushed: Vec<Queued> = lu.queue.drain(..).collect();
                for f in flushed {
                    let mut s = f.srb;
                    s.srb_status = SrbStatus::REQUEST_FLUSHED;
                    self.deliver(s, f.done);
                }
                let mut srb = q.srb;
                srb.srb_status = SrbStatus::SUCCESS;
                self.deliver(srb, q.done);
            }
            SrbFunction::ABORT_COMMAND => self.submit_abort(q),
            SrbFunction::RESET_BUS => {
                let path = q.srb.path_id;
                self.reset_bus(path);
                let mut srb = q.srb;
                srb.srb_status = SrbStatus::SUCCESS;
                self.deliver(srb, q.done);
            }
            _ => {
                let lu = self.lus.entry(address).or_default();
                lu.queue.push_back(q);
            }
        }
    }

    fn submit_abort(&mut self, q: Queued) {
        let Some(victim) = q.srb.next_srb else {
            let mut srb = q.srb;
            srb.srb_status = SrbStatus::INVALID_REQUEST;
            self.deliver(srb, q.done);
            return;
        };
        // A victim still in a queue never reached the miniport: the port aborts it itself.
        for lu in self.lus.values_mut() {
            if let Some(pos) = lu.queue.iter().position(|x| x.id == victim) {
                let v = lu.queue.remove(pos).expect("position is in range");
                let mut vs = v.srb;
                vs.srb_status = SrbStatus::ABORTED;
                self.done.push((vs, v.done));
                let mut srb = q.srb;
                srb.srb_status = SrbStatus::SUCCESS;
                self.deliver(srb, q.done);
                return;
            }
        }
        if self.handle_of(victim).is_none() {
            // Already finished: nothing to abort.
            let mut srb = q.srb;
            srb.srb_status = SrbStatus::ABORT_FAILED;
            self.deliver(srb, q.done);
            return;
        }
        // The miniport owns the victim: the abort goes to it, ahead of other queued work for that LU.
        let lu = self.lus.entry(q.srb.address()).or_default();
        lu.queue.push_front(q);
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
        let Some(dpc) = self.dpcs.front() else { return false };
        match dpc {
            Dpc::Map => {
                if self.dma.waiting_for_grant {
                    return false;
                }
                self.dpcs.pop_front();
                self.dpc_map(ext);
            }
            Dpc::Flush(_) => {
                let Some(Dpc::Flush(m)) = self.dpcs.pop_front() else { unreachable!() };
                self.dpc_flush(m);
            }
            Dpc::Complete(_) => {
                let Some(Dpc::Complete(h)) = self.dpcs.pop_front() else { unreachable!() };
                self.dpc_complete(h);
            }
        }
        true
    }

    /// Return a completed SRB to its caller.
    fn dpc_complete(&mut self, h: SrbHandle) {
        let Some(mut a) = self.release_slot(h) else { return };
        if self.dma.refused == Some(h) {
            self.dma.refused = None;
        }
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
        if let Some(lu) = self.lus.get_mut(&address) {
            if a.srb.function == SrbFunction::EXECUTE_SCSI || a.srb.function == SrbFunction::IO_CONTROL {
                lu.active = lu.active.saturating_sub(1);
            }
            if freeze {
                lu.frozen = true;
            }
        }
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
        if let Some(done) = a.done.take() {
            self.deliver(a.srb, done);
        }
        self.maybe_free_channel();
    }

    /// "Return from HwScsiStartIo" (DDK.md §1.5): a miniport defers an SRB it cannot take now by completing it with
    /// `SRB_STATUS_BUSY`, and the port resubmits it later. It goes back to the head of its LU queue and waits
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
        let lu = self.lus.entry(address).or_default();
        lu.active = lu.active.saturating_sub(1);
        lu.busy_until = Some(Instant::now() + BUSY_RETRY_DELAY);
        lu.queue.push_front(Queued { srb, id: a.id, done });
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
        let outstanding = self.dma.request.as_ref().is_some_and(|r| r.srb == h)
            || self.dma.mapped.as_ref().is_some_and(|m| m.request.srb == h);
        if outstanding {
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
        if port_aborts_only && !self.lus.values().any(|l| l.queue.front().is_some_and(Queued::is_port_abort)) {
            return false;
        }
        if let Some(until) = self.reset_hold_until {
            if Instant::now() < until {
                return false;
            }
            self.reset_hold_until = None;
        }
        let multiple = self.config.multiple_request_per_lu && self.config.tagged_queuing;
        let keys: Vec<LuAddress> = self.lus.keys().copied().collect();
        if keys.is_empty() {
            return false;
        }
        let start = match self.rr_cursor {
            Some(c) => keys.iter().position(|k| *k > c).unwrap_or(0),
            None => 0,
        };
        for i in 0..keys.len() {
            let key = keys[(start + i) % keys.len()];
            let lu = self.lus.get_mut(&key).expect("key from map");
            let Some(front) = lu.queue.front() else { continue };
            if port_aborts_only && !front.is_port_abort() {
                continue;
            }
            let bypass = front.srb.srb_flags.contains(SrbFlags::BYPASS_FROZEN_QUEUE)
                || front.srb.function == SrbFunction::ABORT_COMMAND;
            if lu.frozen && !bypass {
                continue;
            }
            if lu.busy_until.is_some_and(|t| Instant::now() < t) && !front.is_port_abort() {
                continue;
            }
            lu.busy_until = None;
            let tagged = front.srb.srb_flags.contains(SrbFlags::QUEUE_ACTION_ENABLE);
            if lu.active > 0 && !(multiple && tagged && lu.lu_ready) && front.srb.function != SrbFunction::ABORT_COMMAND
            {
                continue;
            }
            let q = lu.queue.pop_front().expect("front exists");
            if q.srb.function == SrbFunction::EXECUTE_SCSI || q.srb.function == SrbFunction::IO_CONTROL {
                lu.active += 1;
            }
            lu.lu_ready = false;
            self.rr_cursor = Some(key);
            self.start(ext, q);
            return true;
        }
        false
    }

    fn start(&mut self, ext: &mut E, q: Queued) {
        let mut srb = q.srb;
        srb.srb_status = SrbStatus::PENDING;
        srb.srb_flags.insert(SrbFlags::IS_ACTIVE);
        if srb.srb_flags.contains(SrbFlags::QUEUE_ACTION_ENABLE) && self.config.tagged_queuing {
            srb.queue_tag = self.allocate_tag();
        } else if srb.function == SrbFunction::EXECUTE_SCSI {
            srb.queue_tag = SP_UNTAGGED;
        }
        let deadline =
            (srb.time_out_value > 0).then(|| Instant::now() + Duration::from_secs(srb.time_out_value as u64));
        let id = q.id;
        let address = srb.address();
        let original_length = srb.data_transfer_length;
        let internal = srb.function == SrbFunction::ABORT_COMMAND && q.id.0 == 0;
        let h = self.alloc_slot(Active {
            srb,
            id,
            done: Some(q.done),
            state: ActiveState::Started,
            deadline,
            failed_by_verifier: false,
            timed_out: false,
            internal,
            original_length,
            maps: 0,
            flushes: 0,
            abort_sent: false,
        });
        self.ready = false;
        self.event(Some(id), Some(address), EventKind::SrbStarted);
        let start_io = self.init.hw_start_io;
        self.call(ext, Routine::StartIo, |e, ctx| start_io(e, ctx, h));
    }

    /// The next queue tag (1..=0xFE, round robin) that no active SRB holds: a command that stays outstanding while
    /// the tags wrap around (a target that never answers) keeps its tag to itself.
    fn allocate_tag(&mut self) -> u8 {
        for _ in 0..0xFE {
            let tag = self.next_tag;
            self.next_tag = if self.next_tag >= 0xFE { 1 } else { self.next_tag + 1 };
            let held = self.slots.iter().any(|s| s.active.as_ref().is_some_and(|a| a.srb.queue_tag == tag));
            if !held {
                return tag;
            }
        }
        // Every tag is held: impossible while fewer than 254 SRBs are active, which the queue depths bound.
        self.next_tag
    }

    /// Drop everything at shutdown: queued SRBs complete with `REQUEST_FLUSHED`.
    pub fn flush_all_queues(&mut self) {
        let mut out = Vec::new();
        for lu in self.lus.values_mut() {
            out.extend(lu.queue.drain(..));
        }
        for q in out {
            let mut s = q.srb;
            s.srb_status = SrbStatus::REQUEST_FLUSHED;
            self.deliver(s, q.done);
        }
    }

    pub fn take_done(&mut self) -> Vec<(Srb, Completion)> {
        std::mem::take(&mut self.done)
    }

    pub fn is_idle(&self) -> bool {
        self.slots.iter().all(|s| s.active.is_none()) && self.lus.values().all(|l| l.queue.is_empty())
    }
}
