//! What the target asks of its backend: task management reaches the backend with the
//! right nexus, LUN and tag, aborted commands are never answered, and the nexus is
//! released when the session ends.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::client::{bhs, put32, read10, Client, NO_TAG};
use iscsi::{nexus_id, IscsiServer, ScsiBackend, ScsiCommand, ScsiResponse, TargetConfig, TmfResponse};
use tokio::sync::{watch, Notify};

const TARGET: &str = "iqn.2026-11.io.scsiport:contract";
const INITIATOR: &str = "iqn.2026-11.test:contract";
const ISID: [u8; 6] = [0x80, 1, 2, 3, 4, 5];

#[derive(Default)]
struct Recording {
    calls: Mutex<Vec<String>>,
    release: Notify,
}

impl Recording {
    fn log(&self, s: String) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(s);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ScsiBackend for Recording {
    fn luns(&self) -> Vec<u64> {
        vec![0]
    }
    async fn execute(&self, cmd: ScsiCommand) -> ScsiResponse {
        self.log(format!("execute {:#x} tag {}", cmd.cdb[0], cmd.task_tag));
        if cmd.cdb[0] == 0x28 {
            // READ stays in the "device" until a task management function releases it.
            self.release.notified().await;
            return ScsiResponse::good(Bytes::from(vec![0u8; 512]));
        }
        ScsiResponse::good(Bytes::new())
    }
    async fn abort_task(&self, initiator: u64, lun: u64, tag: u32) -> TmfResponse {
        self.log(format!("abort_task {initiator:#x} {lun} {tag}"));
        self.release.notify_one();
        TmfResponse::Complete
    }
    async fn abort_task_set(&self, initiator: u64, lun: u64) -> TmfResponse {
        self.log(format!("abort_task_set {initiator:#x} {lun}"));
        self.release.notify_one();
        TmfResponse::Complete
    }
    async fn lun_reset(&self, lun: u64) -> TmfResponse {
        self.log(format!("lun_reset {lun}"));
        self.release.notify_one();
        TmfResponse::Complete
    }
    async fn target_reset(&self) -> TmfResponse {
        self.log("target_reset".into());
        TmfResponse::Complete
    }
    async fn nexus_loss(&self, initiator: u64) {
        self.log(format!("nexus_loss {initiator:#x}"));
    }
}

async fn tmf(c: &mut Client, function: u8, rtt: u32, ref_sn: u32) -> u8 {
    let itt = c.itt();
    let mut t = bhs(0x40 | 0x02, 0x80 | function);
    put32(&mut t, 16, itt);
    put32(&mut t, 20, rtt);
    put32(&mut t, 24, c.cmd_sn);
    put32(&mut t, 32, ref_sn);
    c.send(t, b"").await;
    let (r, _) = c.recv_until(|p| p.opcode() == 0x22 && p.itt() == itt).await;
    r.bhs[2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_management_reaches_the_backend_and_aborted_commands_stay_silent() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let backend = Arc::new(Recording::default());
    let server = Arc::new(IscsiServer::new(vec![(TargetConfig::new(TARGET, addr), backend.clone())]));
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server.serve(listener, rx));

    let mut c = Client::connect(addr).await;
    assert_eq!(c.login(ISID, INITIATOR, TARGET, "").await.bhs[36], 0);
    let nexus = nexus_id(INITIATOR, &ISID);

    // ABORT TASK of a READ the device holds.
    let read = c.itt();
    let h = c.command(read, &read10(0, 1), true, false, 512, true);
    let read_sn = c.cmd_sn.wrapping_sub(1);
    c.send(h, b"").await;
    // Wait until the backend has the command.
    for _ in 0..200 {
        if backend.calls().iter().any(|s| s == &format!("execute 0x28 tag {read}")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(tmf(&mut c, 1, read, read_sn).await, 0);
    assert!(backend.calls().contains(&format!("abort_task {nexus:#x} 0 {read}")));
    let ping = c.ping(b"p").await;
    let (_, before) = c.recv_until(|p| p.opcode() == 0x20 && p.itt() == ping).await;
    assert!(before.iter().all(|p| p.itt() != read), "aborted READ was answered");

    // LUN RESET and TARGET WARM RESET go to the backend too.
    let read2 = c.itt();
    let h = c.command(read2, &read10(0, 1), true, false, 512, true);
    c.send(h, b"").await;
    assert_eq!(tmf(&mut c, 5, NO_TAG, 0).await, 0);
    assert!(backend.calls().contains(&"lun_reset 0".to_string()));
    assert_eq!(tmf(&mut c, 6, NO_TAG, 0).await, 0);
    assert!(backend.calls().contains(&"target_reset".to_string()));
    let ping = c.ping(b"p").await;
    let (_, before) = c.recv_until(|p| p.opcode() == 0x20 && p.itt() == ping).await;
    assert!(before.iter().all(|p| p.itt() != read2), "READ answered after LUN RESET");

    // An unknown LUN is refused without troubling the backend.
    let mut t = bhs(0x40 | 0x02, 0x80 | 2);
    t[9] = 5;
    put32(&mut t, 16, 0x77);
    put32(&mut t, 20, NO_TAG);
    put32(&mut t, 24, c.cmd_sn);
    c.send(t, b"").await;
    let (r, _) = c.recv_until(|p| p.opcode() == 0x22).await;
    assert_eq!(r.bhs[2], 2);
    assert!(!backend.calls().iter().any(|s| s.starts_with("abort_task_set")));

    // Closing the connection ends the I_T nexus.
    drop(c);
    for _ in 0..200 {
        if backend.calls().contains(&format!("nexus_loss {nexus:#x}")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(backend.calls().contains(&format!("nexus_loss {nexus:#x}")), "{:?}", backend.calls());
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
}
