//! A server with many targets: discovery lists them all across continued Text
//! Responses, and normal sessions reach each one's own backend.

mod common;

use std::sync::Arc;

use common::client::{bhs, put32, read10, Client, NO_TAG};
use iscsi::{DirectBackend, IscsiServer, TargetConfig};
use tokio::sync::watch;

const ISID: [u8; 6] = [0x80, 0, 0, 0, 0, 9];

#[tokio::test]
async fn discovery_lists_many_targets_in_continued_text_and_each_target_has_its_disk() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut targets = Vec::new();
    for i in 0..40u64 {
        let cfg = TargetConfig::new(format!("iqn.2026-11.io.scsiport:disk{i:02}"), addr);
        // Each disk is a different size, so a session can tell which one it reached.
        let backend = DirectBackend::ram_disk((i + 1) << 20).expect("RAM disk");
        targets.push((cfg, Arc::new(backend)));
    }
    let server = Arc::new(IscsiServer::new(targets));
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server.clone().serve(listener, rx));

    let mut c = Client::connect(addr).await;
    let pdu =
        c.login_pdu(ISID, 1, 3, "InitiatorName=iqn.2026-11.test:d|SessionType=Discovery|MaxRecvDataSegmentLength=512|");
    c.send_raw(&pdu).await;
    let r = c.recv().await.expect("closed");
    assert_eq!((r.opcode(), r.bhs[36]), (0x23, 0));
    c.cmd_sn = r.u32_at(28);
    let mut text = String::new();
    let mut ttt = NO_TAG;
    let mut pieces = 0;
    loop {
        let mut t = bhs(0x40 | 0x04, 0x80);
        put32(&mut t, 16, 5);
        put32(&mut t, 20, ttt);
        put32(&mut t, 24, c.cmd_sn);
        let body: &[u8] = if ttt == NO_TAG { b"SendTargets=All\0" } else { b"" };
        c.send(t, body).await;
        let r = c.recv().await.expect("closed");
        assert_eq!(r.opcode(), 0x24);
        assert!(r.data.len() <= 512, "text response above the initiator's limit");
        text.push_str(&String::from_utf8_lossy(&r.data));
        pieces += 1;
        if r.bhs[1] & 0x80 != 0 {
            break;
        }
        assert_eq!(r.bhs[1] & 0x40, 0x40, "a non-final part carries C");
        ttt = r.u32_at(20);
        assert!(pieces < 100, "text response never ended");
    }
    assert!(pieces > 1, "expected a continued response");
    let names: Vec<&str> = text.split('\0').filter_map(|kv| kv.strip_prefix("TargetName=")).collect();
    assert_eq!(names.len(), 40);
    assert_eq!(names[7], "iqn.2026-11.io.scsiport:disk07");

    for i in [3u64, 31] {
        let mut c = Client::connect(addr).await;
        let name = format!("iqn.2026-11.io.scsiport:disk{i:02}");
        let r = c.login(ISID, "iqn.2026-11.test:n", &name, "").await;
        assert_eq!(r.bhs[36], 0);
        // READ CAPACITY(10), retried once past the power-on unit attention.
        let mut last_lba = None;
        for _ in 0..2 {
            let itt = c.itt();
            let mut cdb = read10(0, 0);
            cdb[0] = 0x25;
            let h = c.command(itt, &cdb, true, false, 8, true);
            c.send(h, b"").await;
            let (p, _) = c
                .recv_until(|p| p.itt() == itt && (p.opcode() == 0x21 || (p.opcode() == 0x25 && p.bhs[1] & 1 != 0)))
                .await;
            if p.opcode() == 0x25 {
                last_lba = Some(u32::from_be_bytes([p.data[0], p.data[1], p.data[2], p.data[3]]));
                break;
            }
        }
        assert_eq!(last_lba, Some((((i + 1) << 20) / 512 - 1) as u32), "target {i} reached another disk");
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), task).await;
}
