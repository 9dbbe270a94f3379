//! The SCSI port driver for system-DMA host adapters.
//!
//! A miniport registers its routines in [`HwInitializationData`]; the port finds and initializes the adapter, queues
//! SRBs per logical unit, calls `HwStartIo`, performs `ScsiPortIoMapTransfer` and `ScsiPortFlushDma` through the HAL
//! (deferred, in order), calls `HwDmaStarted` once the system DMA controller is programmed, services the HBA's DREQ
//! and interrupt, times requests, and checks every DDI call against the rules of DESIGN.md (the verifier).

pub mod bus;
pub mod config;
pub mod ddi;
mod dma;
mod engine;
mod mapping;
mod recovery;
pub mod srb;
pub mod stats;
pub mod trace;
pub mod verifier;

pub use bus::{HbaHardware, IoWidth};
pub use config::{
    AccessRange, AdapterControlStatus, AdapterControlType, AdapterResources, FindAdapterStatus, HwAdapterControl,
    HwInitializationData, HwTimer, InterfaceType, PortConfigurationInformation,
};
pub use ddi::{Notification, PortContext, SrbAccess};
pub use engine::{AdapterOptions, BUSY_RESUBMIT_LIMIT, BUSY_RETRY_DELAY};
pub use srb::{
    queue_action, scsi_status, Completion, LuAddress, Srb, SrbFlags, SrbFunction, SrbHandle, SrbId, SrbStatus,
    SENSE_BUFFER_SIZE, SP_UNINITIALIZED_VALUE, SP_UNTAGGED,
};
pub use stats::PortStats;
pub use trace::{Event, EventKind, SvgOptions, Timeline, Trace};
pub use verifier::{Rule, VerifierMode, Violation};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use engine::{Core, Queued, Routine};
use hal::{Buffer, DeviceDescription, DmaChannel, Hal, HalError, PAGE_SIZE};
use parking_lot::Mutex;
use stats::StatsCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why an adapter could not start, or a request could not be accepted.
#[derive(thiserror::Error, Debug)]
pub enum PortError {
    /// HwScsiFindAdapter did not report the adapter.
    #[error("adapter {name}: HwScsiFindAdapter returned {status:?}")]
    NotFound { name: String, status: FindAdapterStatus },
    /// The configuration asks for system DMA but there is no HwDmaStarted routine (DDI rule 1).
    #[error(
        "adapter {name}: the configuration asks for system DMA (Master = FALSE, DmaChannel = {channel}) but the \
         miniport registered no HwDmaStarted routine; a miniport of a system-DMA HBA must provide one"
    )]
    NoDmaStarted { name: String, channel: u32 },
    /// The DMA configuration is not one the system DMA controller can serve.
    #[error("adapter {name}: bad DMA configuration: {reason}")]
    BadDmaConfig { name: String, reason: String },
    /// The HAL refused the adapter.
    #[error("adapter {name}: HalGetAdapter failed: {source}")]
    Hal { name: String, source: HalError },
    /// HwScsiInitialize returned FALSE.
    #[error("adapter {0}: HwScsiInitialize failed")]
    InitializeFailed(String),
    /// Pass-through needs an HBA with application-dedicated support.
    #[error("adapter {0} does not offer application-dedicated support: pass-through requests are refused")]
    PassThroughNotSupported(String),
    /// A pass-through buffer that does not meet the adapter's alignment.
    #[error("pass-through buffer at {address:#x} does not meet the adapter's AlignmentMask {mask:#x}")]
    Misaligned { address: u64, mask: u32 },
    /// A malformed request.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The adapter has stopped.
    #[error("adapter {0} has shut down")]
    ShutDown(String),
}

pub(crate) enum Msg {
    Submit(Queued),
    Granted,
    Shutdown(Sender<()>),
}

/// What a class driver learns of the adapter (`STORAGE_ADAPTER_DESCRIPTOR`, DDK.md §1.11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterCapabilities {
    pub maximum_transfer_length: u32,
    /// `NumberOfPhysicalBreaks + 1`, capped by the adapter's map registers.
    pub maximum_physical_pages: u32,
    pub alignment_mask: u32,
    pub application_dedicated: bool,
    pub dma_channel: Option<u8>,
    pub map_registers: u32,
    pub number_of_buses: u8,
    pub maximum_number_of_targets: u8,
    pub maximum_number_of_logical_units: u8,
    pub tagged_queuing: bool,
    pub multiple_request_per_lu: bool,
    pub initiator_bus_id: u8,
}

/// Direction of a pass-through transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataDirection {
    None,
    In,
    Out,
}

/// An application's SCSI pass-through (direct) request: one SRB, any size, no class driver.
#[derive(Clone)]
pub struct PassThrough {
    pub address: LuAddress,
    pub cdb: Vec<u8>,
    pub direction: DataDirection,
    pub buffer: Option<Buffer>,
    pub offset: usize,
    pub length: u32,
    pub timeout_secs: u32,
    pub tagged: bool,
}

struct Shared {
    name: String,
    tx: Sender<Msg>,
    caps: AdapterCapabilities,
    stats: Arc<StatsCell>,
    violations: Arc<Mutex<Vec<Violation>>>,
    next_id: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A started adapter: submit SRBs, read counters and violations. Cheap to clone.
#[derive(Clone)]
pub struct AdapterHandle {
    inner: Arc<Shared>,
}

impl AdapterHandle {
    /// Find, configure and initialize an adapter, then run its port engine on a thread of its own.
    pub fn start<E: Send + 'static>(
        hal: Arc<Hal>,
        init: HwInitializationData<E>,
        ext: E,
        hw: Box<dyn HbaHardware>,
        resources: AdapterResources,
        options: AdapterOptions,
    ) -> Result<Self, PortError> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let stats = Arc::new(StatsCell::default());
        let violations = Arc::new(Mutex::new(Vec::new()));
        let name = options.name.clone();
        let (s2, v2, tx2) = (stats.clone(), violations.clone(), tx.clone());
        let thread = std::thread::Builder::new()
            .name(format!("port-{name}"))
            .spawn(move || {
                let mut ext = ext;
                let mut core = Core::new(hal, hw, init, PortConfigurationInformation::default(), options, v2, s2, tx2);
                match bring_up(&mut core, &mut ext, &resources) {
                    Ok(caps) => {
                        let _ = ready_tx.send(Ok(caps));
                        engine_loop(core, ext, rx);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| PortError::BadRequest(format!("cannot start the port thread: {e}")))?;
        let caps = match ready_rx.recv() {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => return Err(PortError::ShutDown(name)),
        };
        Ok(AdapterHandle {
            inner: Arc::new(Shared {
                name,
                tx,
                caps,
                stats,
                violations,
                next_id: AtomicU64::new(1),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn capabilities(&self) -> &AdapterCapabilities {
        &self.inner.caps
    }

    /// Queue an SRB; `done` gets it back when it is finished. Returns the id an abort can name.
    pub fn submit(&self, srb: Srb, done: impl FnOnce(Srb) + Send + 'static) -> SrbId {
        let id = SrbId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        self.inner.stats.add_submitted();
        let q = Queued { srb, id, done: Box::new(done) };
        if let Err(crossbeam_channel::SendError(Msg::Submit(q))) = self.inner.tx.send(Msg::Submit(q)) {
            let mut s = q.srb;
            s.srb_status = SrbStatus::NO_HBA;
            (q.done)(s);
        }
        id
    }

    /// Submit and wait.
    pub fn execute(&self, srb: Srb) -> Srb {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut fallback = srb.clone();
        self.submit(srb, move |s| {
            let _ = tx.send(s);
        });
        rx.recv().unwrap_or_else(|_| {
            fallback.srb_status = SrbStatus::NO_HBA;
            fallback
        })
    }

    /// Build the SRB for a pass-through request (checks application-dedicated support and alignment).
    pub fn pass_through_srb(&self, req: &PassThrough) -> Result<Srb, PortError> {
        let caps = &self.inner.caps;
        if !caps.application_dedicated {
            return Err(PortError::PassThroughNotSupported(self.inner.name.clone()));
        }
        if req.cdb.is_empty() || req.cdb.len() > 16 {
            return Err(PortError::BadRequest(format!("CDB length {} is not 1..=16", req.cdb.len())));
        }
        let mut srb = Srb::execute_scsi(req.address, &req.cdb);
        srb.time_out_value = req.timeout_secs;
        if req.tagged {
            srb.srb_flags.insert(SrbFlags::QUEUE_ACTION_ENABLE);
        }
        match (req.direction, &req.buffer) {
            (DataDirection::None, _) => {}
            (_, None) => return Err(PortError::BadRequest("a data transfer needs a buffer".into())),
            (dir, Some(b)) => {
                let end = req.offset.checked_add(req.length as usize);
                if end.is_none_or(|e| e > b.len()) || req.length == 0 {
                    return Err(PortError::BadRequest(format!(
                        "range {}+{} is outside the {}-byte buffer",
                        req.offset,
                        req.length,
                        b.len()
                    )));
                }
                let address = b.va().0 + req.offset as u64;
                if address & caps.alignment_mask as u64 != 0 {
                    return Err(PortError::Misaligned { address, mask: caps.alignment_mask });
                }
                let flags = if dir == DataDirection::In { SrbFlags::DATA_IN } else { SrbFlags::DATA_OUT };
                srb = srb.with_data(b, req.offset, req.length, flags);
            }
        }
        Ok(srb)
    }

    /// Queue a pass-through request as one SRB.
    pub fn pass_through(&self, req: &PassThrough, done: impl FnOnce(Srb) + Send + 'static) -> Result<SrbId, PortError> {
        let srb = self.pass_through_srb(req)?;
        Ok(self.submit(srb, done))
    }

    /// Ask the port to abort an SRB (`SRB_FUNCTION_ABORT_COMMAND`); `done` gets the abort SRB back.
    pub fn abort(&self, victim: SrbId, address: LuAddress, done: impl FnOnce(Srb) + Send + 'static) -> SrbId {
        let mut srb = Srb::execute_scsi(address, &[]);
        srb.function = SrbFunction::ABORT_COMMAND;
        srb.next_srb = Some(victim);
        srb.time_out_value = 0;
        self.submit(srb, done)
    }

    /// Release a logical unit's frozen queue (`SRB_FUNCTION_RELEASE_QUEUE`), as the class driver's ReleaseQueue does.
    pub fn release_queue(&self, address: LuAddress, done: impl FnOnce(Srb) + Send + 'static) -> SrbId {
        let mut srb = Srb::execute_scsi(address, &[]);
        srb.function = SrbFunction::RELEASE_QUEUE;
        self.submit(srb, done)
    }

    /// Reset a bus (`SRB_FUNCTION_RESET_BUS`).
    pub fn reset_bus(&self, path_id: u8, done: impl FnOnce(Srb) + Send + 'static) -> SrbId {
        let mut srb = Srb::execute_scsi(LuAddress { path_id, target_id: 0, lun: 0 }, &[]);
        srb.function = SrbFunction::RESET_BUS;
        self.submit(srb, done)
    }

    pub fn stats(&self) -> PortStats {
        self.inner.stats.snapshot()
    }

    pub fn violations(&self) -> Vec<Violation> {
        self.inner.violations.lock().clone()
    }

    pub fn take_violations(&self) -> Vec<Violation> {
        std::mem::take(&mut *self.inner.violations.lock())
    }

    /// Stop: requests already started finish (bounded), queued ones complete with `REQUEST_FLUSHED`.
    pub fn shutdown(&self) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.inner.tx.send(Msg::Shutdown(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(10));
        }
        if let Some(t) = self.inner.thread.lock().take() {
            let _ = t.join();
        }
    }
}

fn bring_up<E>(core: &mut Core<E>, ext: &mut E, res: &AdapterResources) -> Result<AdapterCapabilities, PortError> {
    let name = core.name.clone();
    let mut cfg = PortConfigurationInformation {
        adapter_interface_type: core.init.adapter_interface_type,
        bus_interrupt_level: res.interrupt_level,
        dma_channel: res.dma_channel.map_or(SP_UNINITIALIZED_VALUE, u32::from),
        access_ranges: vec![AccessRange { start: res.io_base, length: res.io_length }],
        map_buffers: core.init.map_buffers,
        need_physical_addresses: core.init.need_physical_addresses,
        tagged_queuing: core.init.tagged_queuing,
        auto_request_sense: core.init.auto_request_sense,
        multiple_request_per_lu: core.init.multiple_request_per_lu,
        ..Default::default()
    };
    core.access = cfg.access_ranges.clone();
    let find = core.init.hw_find_adapter;
    let status = core.call(ext, Routine::FindAdapter, |e, ctx| find(e, ctx, &mut cfg));
    if status != FindAdapterStatus::Found {
        return Err(PortError::NotFound { name, status });
    }
    core.access = cfg.access_ranges.clone();
    core.config = cfg.clone();
    let mut map_registers = 0;
    if cfg.uses_system_dma() {
        if core.init.hw_dma_started.is_none() {
            return Err(PortError::NoDmaStarted { name, channel: cfg.dma_channel });
        }
        let channel = u8::try_from(cfg.dma_channel).ok().and_then(|c| DmaChannel::new(c).ok()).ok_or_else(|| {
            PortError::BadDmaConfig {
                name: name.clone(),
                reason: format!("DmaChannel {} does not exist", cfg.dma_channel),
            }
        })?;
        if !matches!(cfg.alignment_mask, 0 | 1 | 3 | 7) {
            return Err(PortError::BadDmaConfig {
                name,
                reason: format!("AlignmentMask {:#x} is not 0, 1, 3 or 7", cfg.alignment_mask),
            });
        }
        let desc = DeviceDescription {
            master: false,
            dma_channel: channel,
            dma_width: cfg.dma_width,
            dma_speed: cfg.dma_speed,
            demand_mode: cfg.demand_mode,
            auto_initialize: false,
            maximum_length: if cfg.maximum_transfer_length == SP_UNINITIALIZED_VALUE {
                0
            } else {
                cfg.maximum_transfer_length
            },
            dma32_bit_addresses: cfg.dma_32bit_addresses,
        };
        let adapter = core.hal.get_adapter(&desc).map_err(|source| PortError::Hal { name: name.clone(), source })?;
        map_registers = adapter.number_of_map_registers();
        core.channel = Some(channel);
        core.adapter = Some(adapter);
    } else if core.init.hw_dma_started.is_some() && !cfg.master && cfg.dma_channel == SP_UNINITIALIZED_VALUE {
        return Err(PortError::BadDmaConfig {
            name,
            reason: "the miniport has a HwDmaStarted routine but set no DmaChannel".into(),
        });
    }
    let initialize = core.init.hw_initialize;
    if !core.call(ext, Routine::Initialize, initialize) {
        return Err(PortError::InitializeFailed(name));
    }
    let map_limit = if map_registers > 0 { map_registers } else { u32::MAX };
    let breaks = if cfg.number_of_physical_breaks == SP_UNINITIALIZED_VALUE {
        u32::MAX
    } else {
        cfg.number_of_physical_breaks.saturating_add(1)
    };
    let mut max_len = cfg.maximum_transfer_length;
    if map_registers > 0 {
        // One map covers at most PAGE_SIZE × map registers bytes (DESIGN.md, HAL adapter object).
        max_len = max_len.min(((map_registers as u64 - 1) * PAGE_SIZE) as u32);
    }
    Ok(AdapterCapabilities {
        maximum_transfer_length: max_len,
        maximum_physical_pages: breaks.min(map_limit),
        alignment_mask: cfg.alignment_mask,
        application_dedicated: cfg.application_dedicated,
        dma_channel: core.channel.map(|c| c.number()),
        map_registers,
        number_of_buses: cfg.number_of_buses,
        maximum_number_of_targets: cfg.maximum_number_of_targets,
        maximum_number_of_logical_units: cfg.maximum_number_of_logical_units,
        tagged_queuing: cfg.tagged_queuing,
        multiple_request_per_lu: cfg.multiple_request_per_lu,
        initiator_bus_id: cfg.initiator_bus_id[0],
    })
}

/// How long an idle engine thread polls for the next request before it sleeps.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(50);

fn engine_loop<E>(mut core: Core<E>, mut ext: E, rx: Receiver<Msg>) {
    let mut shutdown: Option<(Sender<()>, Instant)> = None;
    loop {
        // A busy adapter gets its next request within microseconds: look for it briefly before sleeping, which saves a
        // futex sleep and wake-up per request on both sides.
        let mut msg = None;
        if shutdown.is_none() {
            let spin_until = Instant::now() + SPIN_BEFORE_SLEEP;
            while msg.is_none() && Instant::now() < spin_until {
                match rx.try_recv() {
                    Ok(m) => msg = Some(m),
                    Err(crossbeam_channel::TryRecvError::Empty) => std::thread::yield_now(),
                    Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                }
            }
        }
        let msg = if msg.is_some() {
            msg
        } else {
            match core.next_deadline() {
                Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None if shutdown.is_some() => rx.recv_timeout(Duration::from_millis(10)).ok(),
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                },
            }
        };
        let mut next = msg;
        while let Some(m) = next {
            match m {
                Msg::Submit(q) => {
                    if shutdown.is_some() {
                        let mut s = q.srb;
                        s.srb_status = SrbStatus::REQUEST_FLUSHED;
                        (q.done)(s);
                    } else {
                        core.submit(q);
                    }
                }
                Msg::Granted => {
                    core.dma.waiting_for_grant = false;
                    if let Some(g) = core.adapter.as_ref().and_then(|a| a.take_grant()) {
                        core.dma.grant = Some(g);
                    }
                }
                Msg::Shutdown(ack) => {
                    core.flush_all_queues();
                    shutdown = Some((ack, Instant::now() + Duration::from_secs(5)));
                }
            }
            next = rx.try_recv().ok();
        }
        core.run(&mut ext);
        for (srb, done) in core.take_done() {
            done(srb);
        }
        if let Some((_, until)) = &shutdown {
            if core.is_idle() || Instant::now() >= *until {
                break;
            }
        }
    }
    core.flush_all_queues();
    for (srb, done) in core.take_done() {
        done(srb);
    }
    if let Some((ack, _)) = shutdown {
        let _ = ack.send(());
    }
}
