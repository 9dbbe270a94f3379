//! Accepting connections: login phase, then the full-feature phase, per connection.

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::backend::ScsiBackend;
use crate::config::TargetConfig;
use crate::conn::{writer_task, Connection, End, Out, SessionInfo, Shared};
use crate::io::{PduReader, PduWriter};
use crate::login::{LoginMachine, LoginStep};
use crate::loss::NexusLosses;
use crate::negotiate::SessionType;
use crate::pdu::{Digests, Request, Sn, TargetPdu};
use crate::session::{SessionKey, SessionTable};
use crate::text::MAX_TEXT_BYTES;
use crate::window::Window;

/// Longest the whole login phase of one connection may take; a client that stalls
/// in login is dropped.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; further ones are closed at accept.
const MAX_CONNECTIONS: usize = 256;
/// PDUs queued for a connection's writer before producers wait.
const WRITER_QUEUE: usize = 256;

/// An iSCSI target server for one or more targets, each over its own backend.
///
/// A target's access list can change while the server runs ([`IscsiServer::set_allowed_initiators`]); each
/// connection works with the targets as they were when it was accepted, so the change decides later logins and
/// leaves sessions that exist alone.
pub struct IscsiServer<B: ScsiBackend> {
    targets: RwLock<Arc<Vec<TargetConfig>>>,
    backends: Vec<Arc<B>>,
    /// Per target (as `backends`): the I_T nexus losses under way, which later commands wait for.
    losses: Vec<Arc<NexusLosses>>,
    sessions: SessionTable,
}

impl<B: ScsiBackend> IscsiServer<B> {
    pub fn new(targets: Vec<(TargetConfig, Arc<B>)>) -> Self {
        let (targets, backends): (Vec<_>, Vec<_>) = targets.into_iter().unzip();
        let losses = backends.iter().map(|_| Arc::new(NexusLosses::default())).collect();
        IscsiServer { targets: RwLock::new(Arc::new(targets)), backends, losses, sessions: SessionTable::default() }
    }

    /// The targets as they are now.
    pub fn targets(&self) -> Arc<Vec<TargetConfig>> {
        self.targets.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replace the access list of the target named `target` (`None` admits every initiator). Logins after the call
    /// are checked against the new list. False when no target has that name.
    pub fn set_allowed_initiators(&self, target: &str, allowed: Option<Vec<String>>) -> bool {
        let mut guard = self.targets.write().unwrap_or_else(|e| e.into_inner());
        let Some(i) = guard.iter().position(|t| t.name.eq_ignore_ascii_case(target)) else { return false };
        let mut next = Vec::clone(&guard);
        next[i].allowed_initiators = allowed;
        *guard = Arc::new(next);
        true
    }

    /// The logged-in sessions (discovery included).
    pub fn sessions(&self) -> Vec<crate::session::SessionSummary> {
        self.sessions.list()
    }

    /// End the session with this TSIH; false when there is none.
    pub fn close_session(&self, tsih: u16) -> bool {
        self.sessions.close(tsih)
    }

    /// Number of logged-in sessions (discovery included).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Serves connections from `listener` until `shutdown` becomes true, then ends every
    /// session and returns once their connections have closed.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) -> io::Result<()> {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut conns = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Per-connection accept errors (e.g. the peer reset before
                            // accept) must not stop the server.
                            tracing::warn!("accept failed: {e}");
                            continue;
                        }
                    };
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::warn!("refusing {peer}: too many connections");
                        continue;
                    };
                    let me = self.clone();
                    let sd = shutdown.clone();
                    conns.spawn(async move {
                        if let Err(e) = me.connection(stream, sd).await {
                            tracing::debug!("connection from {peer} ended: {e}");
                        }
                        drop(slot);
                    });
                }
                _ = shutdown.changed() => {}
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        while tokio::time::timeout(Duration::from_secs(15), conns.join_next()).await.ok().flatten().is_some() {}
        conns.abort_all();
        Ok(())
    }

    async fn connection(self: &Arc<Self>, stream: TcpStream, shutdown: watch::Receiver<bool>) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr().ok();
        let targets = self.targets();
        let (rd, wr) = stream.into_split();
        let mut reader = PduReader::new(rd);
        let mut writer = PduWriter::new(wr);
        let logged = tokio::time::timeout(LOGIN_TIMEOUT, self.login(&targets, &mut reader, &mut writer, peer))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "login timed out"))??;
        let Some((LoggedIn { login, guard }, stat_sn)) = logged else {
            writer.shutdown().await.ok();
            return Ok(());
        };
        let key =
            SessionKey { initiator: login.initiator_name.to_ascii_lowercase(), isid: login.isid, target: login.target };
        writer.digests = Digests { header: login.params.header_digest, data: login.params.data_digest };
        let limits = login.target.and_then(|i| targets.get(i)).map(|t| t.limits.clone()).unwrap_or_default();
        let window = Arc::new(Window::new(login.initial_cmd_sn, limits.queue_depth));
        // Never zero: a command waits for at most the whole budget, which must exist.
        let budget = limits.connection_buffer_bytes.max(1);
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let writer_handle = tokio::spawn(writer_task(writer, rx, window.clone(), stat_sn));
        let index = match login.target.filter(|i| *i < self.backends.len()) {
            Some(i) => i,
            None if !self.backends.is_empty() => 0,
            None => return Ok(()),
        };
        let (backend, losses) = (self.backends[index].clone(), self.losses[index].clone());
        let shared = Arc::new(Shared {
            backend,
            tx: tx.clone(),
            window,
            running: Mutex::new(Default::default()),
            budget: Arc::new(Semaphore::new(budget as usize)),
            budget_total: budget,
            changed: Notify::new(),
            params: login.params.clone(),
            initiator: nexus_id(&key.initiator, &key.isid),
            closing: AtomicBool::new(false),
            losses: losses.clone(),
            nexus_loss_on_end: login.session_type == SessionType::Normal,
        });
        if login.session_type == SessionType::Normal {
            shared.backend.initiator_port(nexus_id(&key.initiator, &key.isid), &login.initiator_name, login.isid);
        }
        let info = SessionInfo {
            config: login.target.and_then(|i| targets.get(i)),
            all_targets: &targets,
            initiator_name: login.initiator_name.clone(),
            session_type: login.session_type,
            cid: login.cid,
        };
        let mut conn = Connection::new(shared, info);
        let end = conn.run(&mut reader, guard.kill.clone(), shutdown).await;
        // The session's end is its I_T nexus loss, recorded before anything else happens (a logout recorded it
        // before answering): every command accepted from now on, on any session of the target, reaches the
        // logical unit only after the loss is done (`docs/nexus-loss.md`).
        let loss = conn.take_loss().or_else(|| (login.session_type == SessionType::Normal).then(|| losses.begin()));
        tracing::debug!("session {:#x} ends: {end:?}", guard.tsih);
        if !matches!(end, End::Logout) {
            conn.abort_all().await;
        }
        if login.session_type == SessionType::Normal {
            conn.backend().nexus_loss(nexus_id(&key.initiator, &key.isid)).await;
        }
        drop(loss);
        let _ = tx.send(Out::Close).await;
        drop(tx);
        drop(conn);
        let _ = tokio::time::timeout(Duration::from_secs(10), writer_handle).await;
        drop(guard);
        Ok(())
    }

    /// Runs the login phase. `Ok(None)` means the login failed and a failure response
    /// (if any) was sent.
    async fn login<R, W>(
        &self,
        targets: &[TargetConfig],
        reader: &mut PduReader<R>,
        writer: &mut PduWriter<W>,
        peer: Option<std::net::SocketAddr>,
    ) -> io::Result<Option<(LoggedIn<'_>, Sn)>>
    where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let mut machine = LoginMachine::new(targets);
        let mut stat_sn: Option<Sn> = None;
        loop {
            let incoming = match reader.next(Digests::default(), MAX_TEXT_BYTES as u32).await {
                Ok(i) => i,
                Err(_) => return Ok(None),
            };
            // Only Login Requests are valid before full-feature phase (RFC 7143 §6.1).
            let Ok(Request::Login(req)) = incoming.request else {
                return Ok(None);
            };
            // The first StatSN is the target's choice; following the initiator's
            // ExpStatSN keeps both sides agreeing from the start.
            let sn = *stat_sn.get_or_insert(req.exp_stat_sn);
            let step = machine.on_request(&req, |tsih| self.sessions.tsih_exists(tsih));
            let depth = machine_depth(targets, &step);
            let (resp, done) = match step {
                LoginStep::Continue(r) => (r, None),
                LoginStep::Fail(r) => {
                    send_login(writer, r.into(), sn, req.cmd_sn, req.cmd_sn).await?;
                    return Ok(None);
                }
                LoginStep::Complete(r, outcome) => (r, Some(outcome)),
            };
            let Some(outcome) = done else {
                send_login(writer, resp.into(), sn, req.cmd_sn, req.cmd_sn).await?;
                stat_sn = Some(sn.next());
                continue;
            };
            let key = SessionKey {
                initiator: outcome.initiator_name.to_ascii_lowercase(),
                isid: outcome.isid,
                target: outcome.target,
            };
            let guard = self.sessions.register_from(key, peer).await;
            let mut resp = resp;
            resp.tsih = guard.tsih;
            let max = Sn(outcome.initial_cmd_sn.0.wrapping_add(depth.max(1) - 1));
            send_login(writer, resp.into(), sn, outcome.initial_cmd_sn, max).await?;
            return Ok(Some((LoggedIn { login: outcome, guard }, sn.next())));
        }
    }
}

/// A login that reached full-feature phase, with its place in the session table.
struct LoggedIn<'a> {
    login: crate::login::LoginOutcome,
    guard: crate::session::SessionGuard<'a>,
}

fn machine_depth(targets: &[TargetConfig], step: &LoginStep) -> u32 {
    match step {
        LoginStep::Complete(_, o) => match (o.session_type, o.target) {
            (SessionType::Normal, Some(i)) => targets.get(i).map_or(1, |t| t.limits.queue_depth),
            _ => 1,
        },
        _ => 1,
    }
}

async fn send_login<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut PduWriter<W>,
    mut pdu: TargetPdu,
    stat_sn: Sn,
    exp: Sn,
    max: Sn,
) -> io::Result<()> {
    pdu.stamp(stat_sn, exp, max);
    writer.push(&pdu).await?;
    writer.flush().await
}

/// Stable 64-bit identifier of an I_T nexus from initiator name and ISID (FNV-1a), so
/// the backend can tell initiators apart across reconnects. The same function maps an iSCSI
/// TransportID to its nexus (`scsi_proto::transport_id`).
pub fn nexus_id(initiator: &str, isid: &[u8; 6]) -> u64 {
    scsi_proto::transport_id::nexus_id(initiator, isid)
}
