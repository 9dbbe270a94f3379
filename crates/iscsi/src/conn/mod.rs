//! The full-feature phase of one connection (RFC 7143 §4.2, §11): a reader loop that
//! admits PDUs through the command window and dispatches them, tasks that run SCSI
//! commands against the backend, and a writer that stamps sequence numbers.

mod scsi;
mod text;
mod tmf;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::time::Instant;

use crate::backend::ScsiBackend;
use crate::config::TargetConfig;
use crate::io::{Incoming, PduReader, ReadError, Unusable};
use crate::loss::{LossGuard, NexusLosses};
use crate::negotiate::{SessionParams, SessionType};
use crate::pdu::{
    Digests, LogoutRequest, NopIn, NopOut, RejectPdu, RejectReason, Request, Sn, TargetPdu, BHS_LEN, RESERVED_TAG,
};
use crate::window::{Admit, Window};

pub(crate) use writer::{writer_task, Out};

/// Immediate commands (I bit) a connection may have running at once; more are refused
/// with Reject reason "immediate command reject" (RFC 7143 §11.17.1, 0x06).
const MAX_IMMEDIATE: usize = 16;
/// Commands held for a CmdSN gap; the window bounds their number, this their bytes
/// (immediate data and the Data-Out that arrives for them while they wait).
const MAX_HELD_BYTES: usize = 8 * 1024 * 1024;
/// Longest a logout waits for running commands before it answers.
const LOGOUT_DRAIN: Duration = Duration::from_secs(10);

/// A command handed to the backend and not yet answered.
#[derive(Debug)]
pub(crate) struct Running {
    pub lun: u64,
    /// Set by a task management function: the answer is dropped (RFC 7143 §11.5.1).
    pub aborted: bool,
    /// Whether it occupies a slot of the command window (non-immediate).
    pub counted: bool,
}

/// State shared by the reader and the command tasks of one connection.
pub(crate) struct Shared<B> {
    pub backend: Arc<B>,
    pub tx: mpsc::Sender<Out>,
    pub window: Arc<Window>,
    pub running: Mutex<HashMap<u32, Running>>,
    pub budget: Arc<Semaphore>,
    pub budget_total: u32,
    /// Signalled whenever a task ends: budget was freed or `running` shrank.
    pub changed: Notify,
    pub params: SessionParams,
    pub initiator: u64,
    /// Set when the connection is going away: tasks still running answer nobody, and those that have not reached
    /// the backend yet never do.
    pub closing: AtomicBool,
    /// The I_T nexus losses of the target: a command waits for those begun before it was accepted.
    pub losses: Arc<NexusLosses>,
    /// Whether the session's end is an I_T nexus loss (a normal session, not discovery).
    pub nexus_loss_on_end: bool,
}

impl<B> Shared<B> {
    pub fn running(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How the reader loop ended.
#[derive(Debug)]
pub(crate) enum End {
    Logout,
    Closed,
    Killed,
    ProtocolError,
    PingTimeout,
}

/// Identity of the session a connection serves.
pub(crate) struct SessionInfo<'a> {
    pub config: Option<&'a TargetConfig>,
    pub all_targets: &'a [TargetConfig],
    pub initiator_name: String,
    pub session_type: SessionType,
    pub cid: u16,
}

/// A command whose CmdSN is ahead of ExpCmdSN, with Data-Out that arrived for it.
struct Held {
    cmd_sn: Sn,
    bhs: [u8; BHS_LEN],
    request: Request,
    data: Vec<([u8; BHS_LEN], crate::pdu::DataOut)>,
    /// What it counts against `MAX_HELD_BYTES`.
    bytes: usize,
}

/// Bytes a held request keeps: its data segment, at least one header's worth.
fn held_size(r: &Request) -> usize {
    let data = match r {
        Request::ScsiCommand(c) => c.immediate_data.len(),
        Request::NopOut(n) => n.data.len(),
        Request::Text(t) => t.data.len(),
        _ => 0,
    };
    data + BHS_LEN
}

/// Reader-side state of one connection in full-feature phase.
pub(crate) struct Connection<'a, B> {
    shared: Arc<Shared<B>>,
    info: SessionInfo<'a>,
    collecting: HashMap<u32, scsi::Collect>,
    parked: VecDeque<u32>,
    held: Vec<Held>,
    held_bytes: usize,
    next_ttt: u32,
    text: text::TextState,
    ping_outstanding: Option<(u32, Instant)>,
    luns: Vec<u64>,
    /// The session's own nexus loss, recorded when a logout was answered.
    loss: Option<LossGuard>,
}

impl<'a, B: ScsiBackend> Connection<'a, B> {
    pub fn new(shared: Arc<Shared<B>>, info: SessionInfo<'a>) -> Connection<'a, B> {
        let luns = shared.backend.luns();
        Connection {
            shared,
            info,
            collecting: HashMap::new(),
            parked: VecDeque::new(),
            held: Vec::new(),
            held_bytes: 0,
            next_ttt: 1,
            text: text::TextState::default(),
            ping_outstanding: None,
            luns,
            loss: None,
        }
    }

    /// The session's nexus loss if a logout already recorded it.
    pub fn take_loss(&mut self) -> Option<LossGuard> {
        self.loss.take()
    }

    pub fn backend(&self) -> Arc<B> {
        self.shared.backend.clone()
    }

    fn params(&self) -> &SessionParams {
        &self.shared.params
    }

    /// A fresh Target Transfer Tag, never the reserved value.
    fn ttt(&mut self) -> u32 {
        let t = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == RESERVED_TAG {
            self.next_ttt = 1;
        }
        t
    }

    pub(crate) async fn send(&self, pdu: impl Into<TargetPdu>) -> bool {
        self.shared.tx.send(Out::Pdu(pdu.into())).await.is_ok()
    }

    async fn reject(&self, reason: RejectReason, bhs: [u8; BHS_LEN]) -> bool {
        self.send(RejectPdu { reason, rejected_header: bhs }).await
    }

    /// Runs the reader loop until the connection ends.
    pub async fn run<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut PduReader<R>,
        mut kill: watch::Receiver<bool>,
        mut shutdown: watch::Receiver<bool>,
    ) -> End {
        let digests = Digests { header: self.params().header_digest, data: self.params().data_digest };
        let max_data = self.params().target_mrdsl;
        let cfg = self.info.config;
        let interval = cfg.and_then(|c| c.nop_in_interval);
        let ping_timeout = cfg.map_or(Duration::from_secs(30), |c| c.nop_in_timeout);
        let mut ticker = tokio::time::interval(interval.unwrap_or(Duration::from_secs(3600)));
        ticker.reset();
        let shared = self.shared.clone();
        loop {
            tokio::select! {
                incoming = reader.next(digests, max_data) => {
                    let incoming = match incoming {
                        Ok(i) => i,
                        Err(ReadError::Frame(e)) => {
                            tracing::warn!("closing connection: {e}");
                            return End::ProtocolError;
                        }
                        Err(_) => return End::Closed,
                    };
                    if let Some(end) = self.on_incoming(incoming).await {
                        return end;
                    }
                }
                _ = shared.changed.notified() => {
                    if !self.unpark().await {
                        return End::Closed;
                    }
                }
                _ = ticker.tick(), if interval.is_some() => {
                    if let Some((_, since)) = self.ping_outstanding {
                        if since.elapsed() >= ping_timeout {
                            return End::PingTimeout;
                        }
                    } else {
                        let ttt = self.ttt();
                        self.ping_outstanding = Some((ttt, Instant::now()));
                        let ping = NopIn { lun: 0, itt: RESERVED_TAG, ttt, data: Bytes::new() };
                        if !self.send(ping).await {
                            return End::Closed;
                        }
                    }
                }
                _ = kill.changed() => return End::Killed,
                _ = shutdown.changed() => return End::Killed,
            }
        }
    }

    /// Handles one PDU; `Some` ends the connection.
    async fn on_incoming(&mut self, incoming: Incoming) -> Option<End> {
        let bhs = incoming.bhs;
        let request = match incoming.request {
            Ok(r) => r,
            Err(Unusable::DataDigest) => {
                // RFC 7143 §7.8: a data digest error is answered with a Reject and the
                // PDU is discarded; the connection goes on.
                return (!self.reject(RejectReason::DataDigestError, bhs).await).then_some(End::Closed);
            }
            Err(Unusable::Parse(e)) => {
                tracing::debug!("rejecting PDU: {e}");
                // A rejected non-immediate command still uses up its CmdSN, so that no
                // hole is left in the window (RFC 7143 §11.17.1 note on CmdSN).
                if bhs[0] & 0x40 == 0 && bhs[0] & 0x3f == crate::pdu::opcode::SCSI_COMMAND {
                    let sn = Sn(crate::pdu::be32(&bhs, 24));
                    if self.shared.window.admit(sn, false) == Admit::Now {
                        self.release_held().await;
                    }
                }
                return (!self.reject(e.reject_reason(), bhs).await).then_some(End::Closed);
            }
        };
        self.dispatch(bhs, request).await
    }

    /// Applies the command window to requests that carry a CmdSN, then processes them.
    async fn dispatch(&mut self, bhs: [u8; BHS_LEN], request: Request) -> Option<End> {
        let numbered = match &request {
            Request::ScsiCommand(c) => (!c.immediate).then_some((c.cmd_sn, true)),
            Request::NopOut(n) => (!n.immediate).then_some((n.cmd_sn, false)),
            Request::TaskMgmt(t) => (!t.immediate).then_some((t.cmd_sn, false)),
            Request::Text(t) => (!t.immediate).then_some((t.cmd_sn, false)),
            Request::Logout(l) => (!l.immediate).then_some((l.cmd_sn, false)),
            Request::DataOut(d) => {
                if !self.collecting.contains_key(&d.itt) {
                    if let Some(h) = self.held.iter_mut().find(|h| h.request.itt() == d.itt) {
                        if self.held_bytes + d.data.len() <= MAX_HELD_BYTES {
                            self.held_bytes += d.data.len();
                            h.bytes += d.data.len();
                            h.data.push((bhs, d.clone()));
                        }
                        return None;
                    }
                }
                None
            }
            _ => None,
        };
        if let Some((cmd_sn, occupies)) = numbered {
            match self.shared.window.admit(cmd_sn, occupies) {
                Admit::Now => {}
                Admit::Later => {
                    // One PDU per CmdSN: a second one with the same number is a
                    // duplicate and is dropped, as is anything past the byte bound.
                    let size = held_size(&request);
                    let duplicate = self.held.iter().any(|h| h.cmd_sn == cmd_sn);
                    if !duplicate && self.held_bytes + size <= MAX_HELD_BYTES {
                        self.held_bytes += size;
                        self.held.push(Held { cmd_sn, bhs, request, data: Vec::new(), bytes: size });
                    }
                    return None;
                }
                Admit::Ignore => {
                    tracing::debug!("ignoring CmdSN {} outside the window", cmd_sn.0);
                    return None;
                }
            }
        }
        let end = self.process(bhs, request).await;
        if end.is_none() {
            return self.release_held().await;
        }
        end
    }

    /// Processes held commands whose CmdSN has come up.
    async fn release_held(&mut self) -> Option<End> {
        loop {
            let exp = self.shared.window.exp();
            let pos = self.held.iter().position(|h| h.cmd_sn == exp)?;
            let h = self.held.swap_remove(pos);
            self.held_bytes = self
                .held_bytes
                .saturating_sub(held_size(&h.request) + h.data.iter().map(|(_, d)| d.data.len()).sum::<usize>());
            let occupies = matches!(h.request, Request::ScsiCommand(_));
            if self.shared.window.admit(h.cmd_sn, occupies) != Admit::Now {
                return None;
            }
            if let Some(end) = Box::pin(self.process(h.bhs, h.request)).await {
                return Some(end);
            }
            for (bhs, d) in h.data {
                if let Some(end) = self.on_data_out(bhs, d).await {
                    return Some(end);
                }
            }
        }
    }

    async fn process(&mut self, bhs: [u8; BHS_LEN], request: Request) -> Option<End> {
        let discovery = self.info.session_type == SessionType::Discovery;
        match request {
            Request::NopOut(n) => self.on_nop_out(n).await,
            Request::Text(t) => self.on_text(t).await,
            Request::Logout(l) => self.on_logout(l).await,
            // A discovery session carries only Text, NOP and Logout (RFC 7143 §4.3).
            _ if discovery => (!self.reject(RejectReason::ProtocolError, bhs).await).then_some(End::Closed),
            Request::ScsiCommand(c) => {
                if c.immediate {
                    let immediate = self.shared.running().values().filter(|r| !r.counted).count();
                    if immediate >= MAX_IMMEDIATE {
                        return (!self.reject(RejectReason::ImmediateCommandReject, bhs).await).then_some(End::Closed);
                    }
                }
                self.on_command(bhs, c).await
            }
            Request::DataOut(d) => self.on_data_out(bhs, d).await,
            Request::TaskMgmt(t) => self.on_task_mgmt(t).await,
            // Login in full-feature phase and SNACK at ERL 0 are protocol errors
            // (RFC 7143 §6.1, §11.16).
            Request::Login(_) | Request::Snack(_) => {
                (!self.reject(RejectReason::ProtocolError, bhs).await).then_some(End::Closed)
            }
        }
    }

    async fn on_nop_out(&mut self, n: NopOut) -> Option<End> {
        if n.itt == RESERVED_TAG {
            // The answer to our ping, or a one-way ping; neither is answered
            // (RFC 7143 §11.18.3).
            if n.ttt != RESERVED_TAG && self.ping_outstanding.map(|(t, _)| t) == Some(n.ttt) {
                self.ping_outstanding = None;
            }
            return None;
        }
        // The echoed ping data waits in the writer's queue: it counts against the
        // connection's buffer budget, and a ping that finds no room is refused rather
        // than buffered (RFC 7143 §11.17.1, reasons 0x06 and 0x0a).
        let need = u32::try_from(n.data.len()).unwrap_or(u32::MAX).max(1);
        let Ok(permit) = self.shared.budget.clone().try_acquire_many_owned(need) else {
            let reason =
                if n.immediate { RejectReason::ImmediateCommandReject } else { RejectReason::LongOperationReject };
            let mut bhs = [0u8; BHS_LEN];
            bhs[0] = crate::pdu::opcode::NOP_OUT;
            bhs[16..20].copy_from_slice(&n.itt.to_be_bytes());
            return (!self.reject(reason, bhs).await).then_some(End::Closed);
        };
        let pong = NopIn { lun: n.lun, itt: n.itt, ttt: RESERVED_TAG, data: n.data };
        let sent = self.shared.tx.send(Out::Budgeted(pong.into(), permit)).await.is_ok();
        (!sent).then_some(End::Closed)
    }

    async fn on_logout(&mut self, l: LogoutRequest) -> Option<End> {
        // Reasons: 0 close session, 1 close connection, 2 remove connection for recovery
        // (RFC 7143 §11.14.1); responses per §11.15.1.
        let response = match l.reason {
            0 => 0,
            1 if l.cid == self.info.cid => 0,
            1 => 1,
            2 => 2,
            _ => {
                let mut bhs = [0u8; BHS_LEN];
                bhs[0] = crate::pdu::opcode::LOGOUT_REQUEST;
                return (!self.reject(RejectReason::InvalidPduField, bhs).await).then_some(End::Closed);
            }
        };
        if response == 0 {
            self.drain().await;
            // The session ends with this answer: its nexus loss is recorded before the initiator can learn of it,
            // so that whatever it sends next on another session finds the loss done (`docs/nexus-loss.md`).
            if self.shared.nexus_loss_on_end {
                self.loss = Some(self.shared.losses.begin());
            }
        }
        let resp = crate::pdu::LogoutResponse { itt: l.itt, response, time2wait: 0, time2retain: 0 };
        if !self.send(resp).await {
            return Some(End::Closed);
        }
        (response == 0).then_some(End::Logout)
    }

    /// Waits (bounded) until no command of this connection is running.
    async fn drain(&mut self) {
        self.collecting.clear();
        self.parked.clear();
        let deadline = Instant::now() + LOGOUT_DRAIN;
        while !self.shared.running().is_empty() && Instant::now() < deadline {
            let _ = tokio::time::timeout_at(deadline, self.shared.changed.notified()).await;
        }
    }

    /// Ends every command of the connection: those still collecting data are dropped,
    /// running ones are aborted in the backend and their answers suppressed.
    pub async fn abort_all(&mut self) {
        self.collecting.clear();
        self.parked.clear();
        self.shared.closing.store(true, Ordering::SeqCst);
        let luns: Vec<u64> = {
            let mut running = self.shared.running();
            running.values_mut().for_each(|r| r.aborted = true);
            let mut l: Vec<u64> = running.values().map(|r| r.lun).collect();
            l.sort_unstable();
            l.dedup();
            l
        };
        for lun in luns {
            let _ = self.shared.backend.abort_task_set(self.shared.initiator, lun).await;
        }
        // The nexus loss follows only once every command of the session has left the backend (bounded as a
        // logout's drain is): a command that was on its way in when the connection ended would otherwise reach the
        // logical unit after the loss, and a RESERVE among them would hold the unit for a nexus that is gone.
        // Commands that had not reached the backend see `closing` and never do.
        let deadline = Instant::now() + LOGOUT_DRAIN;
        while !self.shared.running().is_empty() && Instant::now() < deadline {
            let _ = tokio::time::timeout_at(deadline, self.shared.changed.notified()).await;
        }
    }
}
