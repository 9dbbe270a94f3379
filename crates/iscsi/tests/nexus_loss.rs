//! A session whose connection drops without a logout is an I_T nexus loss (RFC 7143 at ErrorRecoveryLevel 0; SAM-5,
//! SPC-4: the logical unit releases the nexus's SPC-2 reservation). What the server accepts after it saw the
//! connection end must find that loss done at the logical unit, however long the backend takes to carry it out
//! (`docs/nexus-loss.md`). The backend here is a real disk (`DirectBackend`) whose nexus loss, or one command, the
//! test holds back, as a port driver with work in flight would.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::client::{bhs, put32, Client, Pdu};
use iscsi::{nexus_id, DirectBackend, IscsiServer, ScsiBackend, ScsiCommand, ScsiResponse, TargetConfig, TmfResponse};
use tokio::sync::{watch, Notify};

const TARGET: &str = "iqn.2026-11.io.scsiport:loss";
const INITIATOR: &str = "iqn.2026-11.test:loss";
const ISID_A: [u8; 6] = [0x80, 0, 0, 0, 0, 0xA];
const ISID_B: [u8; 6] = [0x80, 0, 0, 0, 0, 0xB];
const TEST_UNIT_READY: [u8; 6] = [0; 6];
const RESERVE6: [u8; 6] = [0x16, 0, 0, 0, 0, 0];
const RESERVATION_CONFLICT: u8 = 0x18;

/// A disk whose first nexus loss waits for `proceed` (when `hold_loss`), and whose first RESERVE(6) waits for
/// `proceed` (when `hold_reserve`); every call is logged in order.
struct Held {
    disk: DirectBackend,
    log: Mutex<Vec<String>>,
    proceed: Notify,
    hold_loss: AtomicBool,
    hold_reserve: AtomicBool,
}

impl Held {
    fn new(hold_loss: bool, hold_reserve: bool) -> Held {
        Held {
            disk: DirectBackend::in_place(DirectBackend::ram_disk(8 << 20).expect("RAM disk").target().clone()),
            log: Mutex::new(Vec::new()),
            proceed: Notify::new(),
            hold_loss: AtomicBool::new(hold_loss),
            hold_reserve: AtomicBool::new(hold_reserve),
        }
    }

    fn note(&self, s: String) {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).push(s);
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits (bounded) until an entry from index `from` on satisfies `f`; whether one did.
    async fn seen_from(&self, from: usize, f: impl Fn(&str) -> bool, polls: u32) -> bool {
        for _ in 0..polls {
            if self.log().iter().skip(from).any(|s| f(s)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    async fn seen(&self, f: impl Fn(&str) -> bool, polls: u32) -> bool {
        self.seen_from(0, f, polls).await
    }

    async fn held(&self) {
        // Bounded: a test that never lets go fails on its assertions, not by hanging.
        let _ = tokio::time::timeout(Duration::from_secs(60), self.proceed.notified()).await;
    }
}

impl ScsiBackend for Held {
    fn luns(&self) -> Vec<u64> {
        self.disk.luns()
    }
    async fn execute(&self, cmd: ScsiCommand) -> ScsiResponse {
        let (who, op) = (cmd.initiator, cmd.cdb[0]);
        self.note(format!("execute {who:#x} {op:#04x}"));
        if op == RESERVE6[0] && self.hold_reserve.swap(false, Ordering::SeqCst) {
            self.held().await;
        }
        let r = self.disk.execute(cmd).await;
        self.note(format!("done {who:#x} {op:#04x} {:#04x}", r.status));
        r
    }
    async fn abort_task(&self, initiator: u64, lun: u64, tag: u32) -> TmfResponse {
        self.disk.abort_task(initiator, lun, tag).await
    }
    async fn abort_task_set(&self, initiator: u64, lun: u64) -> TmfResponse {
        self.disk.abort_task_set(initiator, lun).await
    }
    async fn lun_reset(&self, lun: u64) -> TmfResponse {
        self.disk.lun_reset(lun).await
    }
    async fn target_reset(&self) -> TmfResponse {
        self.disk.target_reset().await
    }
    async fn nexus_loss(&self, initiator: u64) {
        self.note(format!("loss begins {initiator:#x}"));
        if self.hold_loss.swap(false, Ordering::SeqCst) {
            self.held().await;
        }
        self.disk.nexus_loss(initiator).await;
        self.note(format!("loss done {initiator:#x}"));
    }
}

struct Server {
    addr: std::net::SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn serve(backend: Arc<Held>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let server = Arc::new(IscsiServer::new(vec![(TargetConfig::new(TARGET, addr), backend)]));
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server.serve(listener, rx));
    Server { addr, stop, task }
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }
}

/// Sends a non-data command and returns its SCSI Response.
async fn send(c: &mut Client, cdb: &[u8]) -> u32 {
    let itt = c.itt();
    let h = c.command(itt, cdb, false, false, 0, true);
    c.send(h, b"").await;
    itt
}

async fn response(c: &mut Client, itt: u32) -> Pdu {
    c.recv_until(|p| p.opcode() == 0x21 && p.itt() == itt).await.0
}

async fn status(c: &mut Client, cdb: &[u8]) -> u8 {
    let itt = send(c, cdb).await;
    response(c, itt).await.bhs[3]
}

/// A logged-in session whose power-on unit attention is already reported.
async fn session(addr: std::net::SocketAddr, isid: [u8; 6]) -> Client {
    let mut c = Client::connect(addr).await;
    assert_eq!(c.login(isid, INITIATOR, TARGET, "").await.bhs[36], 0, "login");
    for _ in 0..4 {
        if status(&mut c, &TEST_UNIT_READY).await == 0 {
            return c;
        }
    }
    panic!("the unit never became ready");
}

/// The initiator's port after a session is gone: no logout, the TCP connection just closes.
fn drop_connection(c: Client) {
    drop(c);
}

/// B (nexus `b`) sends a TEST UNIT READY while the backend holds A's nexus loss: it must not reach the unit until the
/// loss is let go, and then it succeeds.
async fn b_waits_for_the_loss(backend: &Held, cb: &mut Client, b: u64) {
    // B's command reaches the server after it saw A's end; a ping behind it on B's connection proves it was accepted.
    let from = backend.log().len();
    let itt = send(cb, &TEST_UNIT_READY).await;
    assert!(cb.ping_ok().await);
    // Give the command every chance to overtake the loss the backend is still carrying out.
    let overtook = backend.seen_from(from, |s| s == format!("execute {b:#x} 0x00"), 100).await;
    backend.proceed.notify_one();
    let r = response(cb, itt).await;
    assert!(!overtook, "B's command reached the unit before A's nexus loss was done: {:?}", backend.log());
    assert_eq!(r.bhs[3], 0, "B's TEST UNIT READY after A's nexus loss: {:?}", backend.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_accepted_after_a_dropped_session_waits_for_its_nexus_loss() {
    let backend = Arc::new(Held::new(true, false));
    let server = serve(backend.clone()).await;
    let (a, b) = (nexus_id(INITIATOR, &ISID_A), nexus_id(INITIATOR, &ISID_B));
    let mut ca = session(server.addr, ISID_A).await;
    let mut cb = session(server.addr, ISID_B).await;
    assert_eq!(status(&mut ca, &RESERVE6).await, 0, "A reserves");
    assert_eq!(status(&mut cb, &TEST_UNIT_READY).await, RESERVATION_CONFLICT, "B meets A's reservation");

    drop_connection(ca);
    assert!(backend.seen(|s| s == format!("loss begins {a:#x}"), 2000).await, "the server saw A's connection end");
    b_waits_for_the_loss(&backend, &mut cb, b).await;
    let log = backend.log();
    let done = log.iter().position(|s| *s == format!("loss done {a:#x}"));
    let executed = log.iter().rposition(|s| *s == format!("execute {b:#x} 0x00"));
    assert!(done.is_some() && done < executed, "{log:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserve_in_flight_when_the_connection_drops_is_released_by_the_nexus_loss() {
    let backend = Arc::new(Held::new(false, true));
    let server = serve(backend.clone()).await;
    let a = nexus_id(INITIATOR, &ISID_A);
    let mut ca = session(server.addr, ISID_A).await;
    let mut cb = session(server.addr, ISID_B).await;
    // A's RESERVE(6) is in the unit (held there) when A's connection drops.
    send(&mut ca, &RESERVE6).await;
    assert!(backend.seen(|s| s == format!("execute {a:#x} 0x16"), 2000).await, "A's RESERVE reached the unit");
    drop_connection(ca);
    // Let the server turn the end into a nexus loss if it will without waiting for the RESERVE.
    backend.seen(|s| s == format!("loss done {a:#x}"), 100).await;
    backend.proceed.notify_one();
    assert!(backend.seen(|s| s == format!("loss done {a:#x}"), 2000).await, "A's nexus loss happened");
    let log = backend.log();
    let reserved = log.iter().position(|s| *s == format!("done {a:#x} 0x16 0x00"));
    let lost = log.iter().position(|s| *s == format!("loss begins {a:#x}"));
    assert!(reserved.is_some() && reserved < lost, "the loss came before A's RESERVE finished: {log:?}");
    assert_eq!(status(&mut cb, &RESERVE6).await, 0, "A's reservation ended with its nexus: {:?}", backend.log());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_is_answered_with_the_nexus_loss_recorded() {
    let backend = Arc::new(Held::new(true, false));
    let server = serve(backend.clone()).await;
    let (a, b) = (nexus_id(INITIATOR, &ISID_A), nexus_id(INITIATOR, &ISID_B));
    let mut ca = session(server.addr, ISID_A).await;
    let mut cb = session(server.addr, ISID_B).await;
    assert_eq!(status(&mut ca, &RESERVE6).await, 0, "A reserves");
    // Logout (close the session) and its answer.
    let itt = ca.itt();
    let mut h = bhs(0x46, 0x80);
    put32(&mut h, 16, itt);
    put32(&mut h, 24, ca.cmd_sn);
    put32(&mut h, 28, ca.exp_stat_sn);
    ca.send(h, b"").await;
    let (r, _) = ca.recv_until(|p| p.opcode() == 0x26).await;
    assert_eq!(r.bhs[2], 0, "logout accepted");
    // Whatever B sends once A has its answer comes after A's nexus loss.
    b_waits_for_the_loss(&backend, &mut cb, b).await;
    assert!(backend.log().contains(&format!("loss done {a:#x}")));
    server.stop().await;
}
