//! The SCSI port driver for system-DMA host adapters.
//!
//! A miniport registers its routines in [`HwInitializationData`]; the port finds and initializes the adapter, queues
//! SRBs per logical unit, calls `HwStartIo`, performs `ScsiPortIoMapTransfer` and `ScsiPortFlushDma` through the HAL
//! (deferred, in order), calls `HwDmaStarted` once the system DMA controller is programmed, services the HBA's DREQ
//! and interrupt, times requests, and checks every DDI call against the rules of docs/ddi-rules.md (the verifier).

pub mod bus;
mod completion;
pub mod config;
pub mod ddi;
mod engine;
pub mod srb;
pub mod stats;
pub mod trace;
pub mod verifier;

pub use bus::{HbaHardware, IoWidth, Waker};
pub use completion::SrbFuture;
pub use config::{
    AccessRange, AdapterControlStatus, AdapterControlType, AdapterResources, FindAdapterStatus, HwAdapterControl,
    HwInitializationData, HwTimer, InterfaceType, PortConfigurationInformation,
};
pub use ddi::{Notification, PortContext, SrbAccess};
pub use engine::{AdapterOptions, BUSY_RESUBMIT_LIMIT, BUSY_RETRY_DELAY};
pub use srb::{
    queue_action, requester, scsi_status, Completion, LuAddress, Srb, SrbFlags, SrbFunction, SrbHandle, SrbId,
    SrbStatus, SENSE_BUFFER_SIZE, SP_UNINITIALIZED_VALUE, SP_UNTAGGED,
};
pub use stats::PortStats;
pub use trace::{Event, EventKind, SvgOptions, Timeline, Trace};
pub use verifier::{Rule, VerifierMode, Violation};

use crossbeam_channel::Sender;
use engine::{Msg, Queued};
use hal::{Buffer, Hal, HalError};
use parking_lot::Mutex;
use stats::StatsCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

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
    /// The card cannot be jumpered as asked (DMA channel, IRQ, I/O base).
    #[error("adapter {name}: impossible jumper setting: {reason}")]
    Jumper { name: String, reason: String },
    /// A setting of the card or its miniport is out of range (transfer size, queue depth, a target ID).
    #[error("adapter {name}: bad setting: {reason}")]
    AdapterSetting { name: String, reason: String },
    /// The engine thread could not be started.
    #[error("adapter {name}: cannot start the port thread: {source}")]
    Spawn { name: String, source: std::io::Error },
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

/// What a class driver learns of the adapter (`STORAGE_ADAPTER_DESCRIPTOR`, docs/ddk.md §11).
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
pub use scsi_proto::DataDirection;

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
        let stats = Arc::new(StatsCell::default());
        let violations = Arc::new(Mutex::new(Vec::new()));
        let name = options.name.clone();
        let running = engine::spawn(hal, init, ext, hw, resources, options, stats.clone(), violations.clone())?;
        Ok(AdapterHandle {
            inner: Arc::new(Shared {
                name,
                tx: running.tx,
                caps: running.caps,
                stats,
                violations,
                next_id: AtomicU64::new(1),
                thread: Mutex::new(Some(running.thread)),
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn capabilities(&self) -> &AdapterCapabilities {
        &self.inner.caps
    }

    /// Queue an SRB. The future resolves with the SRB when the port has finished it; its [`SrbFuture::id`] is what
    /// an abort names. The SRB runs whether or not the future is awaited.
    pub fn submit(&self, srb: Srb) -> SrbFuture {
        let id = self.next_id();
        let (future, done) = SrbFuture::new(id, &srb);
        self.send(Queued { srb, id, done });
        future
    }

    /// Queue an SRB; `done` gets it back when it is finished (from the engine thread: it must not block). Returns the
    /// id an abort can name. For callers that cannot hold a future, such as a C caller's completion routine.
    pub fn submit_with(&self, srb: Srb, done: impl FnOnce(Srb) + Send + 'static) -> SrbId {
        let id = self.next_id();
        self.send(Queued { srb, id, done: Box::new(done) });
        id
    }

    /// Submit and block until the SRB is finished. Not for async code: await [`AdapterHandle::submit`] there.
    pub fn execute(&self, srb: Srb) -> Srb {
        self.submit(srb).wait()
    }

    fn next_id(&self) -> SrbId {
        SrbId(self.inner.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn send(&self, q: Queued) {
        self.inner.stats.add_submitted();
        if let Err(crossbeam_channel::SendError(Msg::Submit(q))) = self.inner.tx.send(Msg::Submit(q)) {
            let mut s = q.srb;
            s.srb_status = SrbStatus::NO_HBA;
            (q.done)(s);
        }
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
    pub fn pass_through(&self, req: &PassThrough) -> Result<SrbFuture, PortError> {
        let srb = self.pass_through_srb(req)?;
        Ok(self.submit(srb))
    }

    /// A pass-through requester's I_T nexus is gone ([`requester::NEXUS_LOSS`], sent to the logical unit at
    /// `address` with `nexus` as its requester): the miniport tells the bus, and the targets release what the nexus
    /// held. `buffer` holds the request (`requester::nexus_loss_request` is written into it); the future resolves
    /// with the SRB, `SRB_STATUS_INVALID_REQUEST` from a miniport that does not implement it.
    pub fn nexus_loss(&self, buffer: &Buffer, address: LuAddress, nexus: u64) -> Result<SrbFuture, PortError> {
        const TIMEOUT_SECS: u32 = 10;
        let payload = requester::nexus_loss_request(nexus, TIMEOUT_SECS);
        if buffer.len() < payload.len() {
            return Err(PortError::BadRequest(format!("a nexus loss request needs {} bytes", payload.len())));
        }
        buffer.write(0, &payload).map_err(|e| PortError::BadRequest(format!("nexus loss request: {e}")))?;
        let mut srb = Srb::execute_scsi(address, &[]).with_data(buffer, 0, payload.len() as u32, SrbFlags::DATA_OUT);
        srb.function = SrbFunction::IO_CONTROL;
        srb.time_out_value = TIMEOUT_SECS;
        srb.requester_nexus = nexus;
        Ok(self.submit(srb))
    }

    /// Ask the port to abort an SRB (`SRB_FUNCTION_ABORT_COMMAND`); the future resolves with the abort SRB.
    pub fn abort(&self, victim: SrbId, address: LuAddress) -> SrbFuture {
        self.submit(Srb::abort(address, victim))
    }

    /// Release a logical unit's frozen queue (`SRB_FUNCTION_RELEASE_QUEUE`), as the class driver's ReleaseQueue does.
    pub fn release_queue(&self, address: LuAddress) -> SrbFuture {
        self.submit(Srb::release_queue(address))
    }

    /// Reset a bus (`SRB_FUNCTION_RESET_BUS`).
    pub fn reset_bus(&self, path_id: u8) -> SrbFuture {
        self.submit(Srb::reset_bus(path_id))
    }

    /// Switch the verifier mode while the adapter runs; requests after the switch are checked in the new mode.
    pub fn set_verifier(&self, mode: VerifierMode) {
        let _ = self.inner.tx.send(Msg::SetVerifier(mode));
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
