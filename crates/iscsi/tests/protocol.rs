//! Protocol behaviour seen from a hand-built initiator: malformed and hostile PDUs,
//! R2T flow, command window, task management, pings, reinstatement, logout.

mod common;

use std::time::Duration;

use common::client::{bhs, put32, read10, write10, Client, NO_TAG};
use common::{start, TARGET};

const ISID: [u8; 6] = [0x80, 0x12, 0x34, 0x56, 0x78, 0x01];
const INITIATOR: &str = "iqn.2026-11.test:initiator";

async fn logged_in(addr: std::net::SocketAddr, keys: &str) -> Client {
    let mut c = Client::connect(addr).await;
    let r = c.login(ISID, INITIATOR, TARGET, keys).await;
    assert_eq!((r.bhs[36], r.bhs[37]), (0, 0), "login failed: {}", r.text());
    assert_eq!(r.bhs[1] & 0x83, 0x83, "login did not reach full-feature phase");
    // The disk reports its power-on unit attention on a nexus's first command
    // (SAM-5 §6.3.1); take it with a TEST UNIT READY.
    let itt = c.itt();
    let h = c.command(itt, &[0u8; 6], false, false, 0, true);
    c.send(h, b"").await;
    let (resp, _) = c.recv_until(|p| p.opcode() == 0x21 && p.itt() == itt).await;
    assert!(resp.bhs[3] == 0 || resp.bhs[3] == 2, "TEST UNIT READY status");
    c
}

#[tokio::test]
async fn unknown_opcode_is_rejected_and_the_connection_goes_on() {
    let srv = start(|_| {}).await;
    let mut c = logged_in(srv.addr, "").await;
    let mut h = bhs(0x40 | 0x1c, 0x80);
    put32(&mut h, 16, 77);
    c.send(h, b"").await;
    let r = c.recv().await.expect("closed instead of Reject");
    assert_eq!(r.opcode(), 0x3f);
    assert_eq!(r.bhs[2], 0x05, "reason: command not supported");
    assert_eq!(&r.data[..], &h[..], "Reject carries the rejected header");
    assert!(c.ping_ok().await);
    srv.stop().await;
}

#[tokio::test]
async fn data_digest_error_is_rejected_and_the_connection_goes_on() {
    let srv = start(|_| {}).await;
    let mut c = logged_in(srv.addr, "HeaderDigest=CRC32C,None|DataDigest=CRC32C,None|").await;
    assert!(c.digests.header && c.digests.data, "digests not negotiated");
    assert!(c.ping_ok().await, "ping with both digests failed");
    let itt = c.itt();
    let mut h = bhs(0x40, 0x80);
    put32(&mut h, 16, itt);
    put32(&mut h, 20, NO_TAG);
    let mut v = c.encode(h, b"payload!");
    let last = v.len() - 1;
    v[last] ^= 0xff;
    c.send_raw(&v).await;
    let r = c.recv().await.expect("closed instead of Reject");
    assert_eq!((r.opcode(), r.bhs[2]), (0x3f, 0x02));
    assert!(c.ping_ok().await);
    srv.stop().await;
}

#[tokio::test]
async fn hostile_pdus_close_only_their_own_connection() {
    let srv = start(|_| {}).await;
    let mut bystander = logged_in(srv.addr, "").await;
    let mut isid = ISID;
    isid[5] = 2;
    // A header digest error makes lengths untrustworthy: the connection is closed.
    let mut a = Client::connect(srv.addr).await;
    let r = a.login(isid, INITIATOR, TARGET, "HeaderDigest=CRC32C|").await;
    assert_eq!(r.bhs[36], 0);
    let mut h = bhs(0x40, 0x80);
    put32(&mut h, 16, 1);
    let mut v = a.encode(h, b"");
    v[48] ^= 1;
    a.send_raw(&v).await;
    assert!(a.recv().await.is_none(), "connection survived a header digest error");
    // A data segment above our MaxRecvDataSegmentLength is never buffered.
    isid[5] = 3;
    let mut b = Client::connect(srv.addr).await;
    assert_eq!(b.login(isid, INITIATOR, TARGET, "").await.bhs[36], 0);
    let mut h = bhs(0x40, 0x80);
    h[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    b.send_raw(&h).await;
    assert!(b.recv().await.is_none(), "connection survived a 16 MiB data segment");
    // Garbage instead of a login request.
    let mut g = Client::connect(srv.addr).await;
    g.send_raw(&[0xa5; 100]).await;
    assert!(g.recv().await.is_none(), "garbage before login was answered");
    assert!(bystander.ping_ok().await, "other session was affected");
    srv.stop().await;
}

#[tokio::test]
async fn write_through_r2t_then_read_back_in_bursts() {
    let srv = start(|_| {}).await;
    let keys = "InitialR2T=Yes|ImmediateData=No|MaxBurstLength=4096|FirstBurstLength=4096|MaxOutstandingR2T=2|MaxRecvDataSegmentLength=2048|";
    let mut c = logged_in(srv.addr, keys).await;
    let len = 64 * 1024u32;
    let pattern: Vec<u8> = (0..len).map(|i| (i * 7 + i / 512) as u8).collect();
    let itt = c.itt();
    let h = c.command(itt, &write10(8, (len / 512) as u16), false, true, len, true);
    c.send(h, b"").await;
    let mut offsets = Vec::new();
    let mut r2t_sns = Vec::new();
    let mut sent = 0u32;
    while sent < len {
        let r = c.recv().await.expect("closed while waiting for R2T");
        assert_eq!(r.opcode(), 0x31, "expected R2T, got {:#x}", r.opcode());
        let (ttt, off, want) = (r.u32_at(20), r.u32_at(40), r.u32_at(44));
        r2t_sns.push(r.u32_at(36));
        offsets.push(off);
        assert!(want <= 4096, "R2T larger than MaxBurstLength");
        // Answer each R2T in PDUs of the target's declared limit or less.
        let mut done = 0;
        let mut sn = 0;
        while done < want {
            let n = (want - done).min(1024);
            let o = off + done;
            let last = done + n == want;
            let d = c.data_out(itt, ttt, sn, o, last);
            c.send(d, &pattern[o as usize..(o + n) as usize]).await;
            done += n;
            sn += 1;
        }
        sent += want;
    }
    assert_eq!(offsets, (0..16).map(|i| i * 4096).collect::<Vec<_>>());
    assert_eq!(r2t_sns, (0..16).collect::<Vec<_>>());
    let (resp, _) = c.recv_until(|p| p.opcode() == 0x21).await;
    assert_eq!((resp.itt(), resp.bhs[2], resp.bhs[3]), (itt, 0, 0));
    assert_eq!(resp.u32_at(36), 16, "ExpDataSN counts the R2Ts");

    let itt = c.itt();
    let h = c.command(itt, &read10(8, (len / 512) as u16), true, false, len, true);
    c.send(h, b"").await;
    let mut got = vec![0u8; len as usize];
    let mut next_sn = 0;
    loop {
        let p = c.recv().await.expect("closed during read");
        assert_eq!(p.opcode(), 0x25, "expected Data-In");
        assert!(p.data.len() <= 2048, "Data-In above the initiator's MaxRecvDataSegmentLength");
        assert_eq!(p.u32_at(36), next_sn);
        next_sn += 1;
        let off = p.u32_at(40) as usize;
        got[off..off + p.data.len()].copy_from_slice(&p.data);
        // F closes each 4 KiB sequence (MaxBurstLength).
        assert_eq!(p.bhs[1] & 0x80 != 0, (off + p.data.len()).is_multiple_of(4096));
        if p.bhs[1] & 0x01 != 0 {
            assert_eq!(p.bhs[3], 0, "status GOOD collapsed into the last Data-In");
            break;
        }
    }
    assert_eq!(got, pattern);
    srv.stop().await;
}

#[tokio::test]
async fn immediate_and_unsolicited_data_fill_the_first_burst() {
    let srv = start(|_| {}).await;
    let keys = "InitialR2T=No|ImmediateData=Yes|FirstBurstLength=8192|MaxBurstLength=16384|";
    let mut c = logged_in(srv.addr, keys).await;
    let len = 12 * 1024u32;
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let itt = c.itt();
    let h = c.command(itt, &write10(100, 24), false, true, len, false);
    c.send(h, &data[..2048]).await;
    let d = c.data_out(itt, NO_TAG, 0, 2048, true);
    c.send(d, &data[2048..8192]).await;
    let r = c.recv().await.expect("closed");
    assert_eq!((r.opcode(), r.u32_at(40), r.u32_at(44)), (0x31, 8192, 4096), "R2T for the rest");
    let d = c.data_out(itt, r.u32_at(20), 0, 8192, true);
    c.send(d, &data[8192..]).await;
    let (resp, _) = c.recv_until(|p| p.opcode() == 0x21).await;
    assert_eq!(resp.bhs[3], 0);
    let itt = c.itt();
    let h = c.command(itt, &read10(100, 24), true, false, len, true);
    c.send(h, b"").await;
    let mut got = Vec::new();
    loop {
        let p = c.recv().await.expect("closed");
        got.extend_from_slice(&p.data);
        if p.bhs[1] & 1 != 0 {
            break;
        }
    }
    assert_eq!(got, data);
    srv.stop().await;
}

#[tokio::test]
async fn commands_outside_the_window_are_ignored() {
    let srv = start(|_| {}).await;
    let mut c = logged_in(srv.addr, "").await;
    let tur = [0u8; 6];
    let stale = c.itt();
    let good_sn = c.cmd_sn;
    let mut h = c.command(stale, &tur, false, false, 0, true);
    put32(&mut h, 24, good_sn.wrapping_add(100_000));
    c.cmd_sn = good_sn;
    c.send(h, b"").await;
    let good = c.itt();
    let h = c.command(good, &tur, false, false, 0, true);
    c.send(h, b"").await;
    let (resp, before) = c.recv_until(|p| p.opcode() == 0x21 && p.itt() == good).await;
    assert!(before.iter().all(|p| p.itt() != stale), "ignored command was answered");
    assert_eq!(resp.u32_at(28), good_sn.wrapping_add(1), "ExpCmdSN counts only the good command");
    let max = resp.u32_at(32);
    assert!(max.wrapping_sub(good_sn.wrapping_add(1)) < 1 << 31, "window open");
    assert!(c.ping_ok().await);
    srv.stop().await;
}

#[tokio::test]
async fn abort_task_stops_a_write_waiting_for_data() {
    let srv = start(|_| {}).await;
    let mut c = logged_in(srv.addr, "InitialR2T=Yes|ImmediateData=No|").await;
    let itt = c.itt();
    let h = c.command(itt, &write10(0, 16), false, true, 8192, true);
    let cmd_sn = c.cmd_sn.wrapping_sub(1);
    c.send(h, b"").await;
    let r = c.recv().await.expect("closed");
    assert_eq!(r.opcode(), 0x31);
    let tmf_itt = c.itt();
    let mut t = bhs(0x40 | 0x02, 0x80 | 1);
    put32(&mut t, 16, tmf_itt);
    put32(&mut t, 20, itt);
    put32(&mut t, 24, c.cmd_sn);
    put32(&mut t, 32, cmd_sn);
    c.send(t, b"").await;
    let (resp, before) = c.recv_until(|p| p.opcode() == 0x22).await;
    assert_eq!((resp.itt(), resp.bhs[2]), (tmf_itt, 0), "function complete");
    assert!(before.iter().all(|p| p.itt() != itt));
    // The aborted task never answers; a later one does.
    let d = c.data_out(itt, r.u32_at(20), 0, 0, true);
    c.send(d, &[0u8; 8192]).await;
    assert!(c.ping_ok().await);
    // ABORT TASK for a tag nobody used: "task does not exist".
    let mut t = bhs(0x40 | 0x02, 0x80 | 1);
    let tmf_itt = c.itt();
    put32(&mut t, 16, tmf_itt);
    put32(&mut t, 20, 0xdead);
    put32(&mut t, 24, c.cmd_sn);
    put32(&mut t, 32, c.cmd_sn.wrapping_sub(50));
    c.send(t, b"").await;
    let (resp, _) = c.recv_until(|p| p.opcode() == 0x22).await;
    assert_eq!(resp.bhs[2], 1);
    srv.stop().await;
}

#[tokio::test]
async fn lun_reset_on_missing_lun_says_so() {
    let srv = start(|_| {}).await;
    let mut c = logged_in(srv.addr, "").await;
    let mut t = bhs(0x40 | 0x02, 0x80 | 5);
    put32(&mut t, 16, 9);
    t[8] = 0;
    t[9] = 7;
    put32(&mut t, 20, NO_TAG);
    put32(&mut t, 24, c.cmd_sn);
    c.send(t, b"").await;
    let (resp, _) = c.recv_until(|p| p.opcode() == 0x22).await;
    assert_eq!(resp.bhs[2], 2, "LUN does not exist");
    let mut t = bhs(0x40 | 0x02, 0x80 | 5);
    put32(&mut t, 16, 10);
    put32(&mut t, 20, NO_TAG);
    put32(&mut t, 24, c.cmd_sn);
    c.send(t, b"").await;
    let (resp, _) = c.recv_until(|p| p.opcode() == 0x22).await;
    assert_eq!(resp.bhs[2], 0, "LUN 0 reset completes");
    srv.stop().await;
}

#[tokio::test]
async fn same_isid_reinstates_the_session() {
    let srv = start(|_| {}).await;
    let mut old = logged_in(srv.addr, "").await;
    let old_tsih = old.tsih;
    let mut new = logged_in(srv.addr, "").await;
    assert_ne!(new.tsih, old_tsih);
    // The old connection is closed by the reinstatement.
    loop {
        match old.recv().await {
            None => break,
            Some(p) => assert_ne!(p.opcode(), 0x21, "old session still answering"),
        }
    }
    assert!(new.ping_ok().await);
    assert_eq!(srv.server.session_count(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn target_pings_and_drops_a_silent_initiator() {
    let srv = start(|c| {
        c.nop_in_interval = Some(Duration::from_millis(100));
        c.nop_in_timeout = Duration::from_millis(300);
    })
    .await;
    let mut c = logged_in(srv.addr, "").await;
    for _ in 0..2 {
        let p = c.recv().await.expect("closed while answering pings");
        assert_eq!((p.opcode(), p.itt()), (0x20, NO_TAG), "expected a NOP-In ping");
        let ttt = p.u32_at(20);
        assert_ne!(ttt, NO_TAG);
        let mut h = bhs(0x40, 0x80);
        put32(&mut h, 16, NO_TAG);
        put32(&mut h, 20, ttt);
        put32(&mut h, 24, c.cmd_sn);
        c.send(h, b"").await;
    }
    // Now stay silent: the target gives up on the connection.
    loop {
        match c.recv().await {
            None => break,
            Some(p) => assert_eq!(p.opcode(), 0x20),
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn discovery_session_lists_targets_and_refuses_commands() {
    let srv = start(|_| {}).await;
    let mut c = Client::connect(srv.addr).await;
    let pdu = c.login_pdu(ISID, 1, 3, &format!("InitiatorName={INITIATOR}|SessionType=Discovery|"));
    c.send_raw(&pdu).await;
    let r = c.recv().await.expect("closed");
    assert_eq!((r.opcode(), r.bhs[36]), (0x23, 0));
    c.cmd_sn = r.u32_at(28);
    let mut t = bhs(0x40 | 0x04, 0x80);
    put32(&mut t, 16, 5);
    put32(&mut t, 20, NO_TAG);
    put32(&mut t, 24, c.cmd_sn);
    c.send(t, b"SendTargets=All\0").await;
    let r = c.recv().await.expect("closed");
    assert_eq!(r.opcode(), 0x24);
    assert_eq!(r.text(), format!("TargetName={TARGET}|TargetAddress={},1|", srv.addr));
    let h = c.command(6, &[0u8; 6], false, false, 0, true);
    c.send(h, b"").await;
    let r = c.recv().await.expect("closed");
    assert_eq!((r.opcode(), r.bhs[2]), (0x3f, 0x04), "protocol error");
    srv.stop().await;
}

#[tokio::test]
async fn logout_answers_then_closes() {
    let srv = start(|_| {}).await;
    let mut c = logged_in(srv.addr, "").await;
    let mut h = bhs(0x40 | 0x06, 0x80);
    put32(&mut h, 16, 3);
    put32(&mut h, 24, c.cmd_sn);
    c.send(h, b"").await;
    let r = c.recv().await.expect("closed before logout response");
    assert_eq!((r.opcode(), r.bhs[2], r.itt()), (0x26, 0, 3));
    assert!(c.recv().await.is_none());
    srv.stop().await;
}

#[tokio::test]
async fn unknown_target_and_missing_name_fail_login() {
    let srv = start(|c| c.allowed_initiators = Some(vec![INITIATOR.into()])).await;
    let mut c = Client::connect(srv.addr).await;
    let r = c.login(ISID, INITIATOR, "iqn.2026-11.nope:x", "").await;
    assert_eq!((r.bhs[36], r.bhs[37]), (2, 3), "target not found");
    let mut c = Client::connect(srv.addr).await;
    let r = c.login(ISID, "iqn.2026-11.other:one", TARGET, "").await;
    assert_eq!((r.bhs[36], r.bhs[37]), (2, 2), "authorization failure");
    srv.stop().await;
}

#[tokio::test]
async fn an_access_list_changed_at_run_time_decides_later_logins_and_leaves_sessions_alone() {
    let srv = start(|c| c.allowed_initiators = Some(vec![INITIATOR.into()])).await;
    let mut first = logged_in(srv.addr, "").await;
    let other = "iqn.2026-11.other:one";
    let mut c = Client::connect(srv.addr).await;
    assert_eq!(c.login(ISID, other, TARGET, "").await.bhs[36..38], [2, 2], "not on the list yet");
    assert!(srv.server.set_allowed_initiators(TARGET, Some(vec!["iqn.2026-11.other:*".into()])));
    assert!(!srv.server.set_allowed_initiators("iqn.2026-11.nope:x", None), "no such target");
    let mut c = Client::connect(srv.addr).await;
    assert_eq!(c.login(ISID, other, TARGET, "").await.bhs[36..38], [0, 0], "admitted by the new pattern");
    let mut c = Client::connect(srv.addr).await;
    let mut isid = ISID;
    isid[5] = 0x02;
    assert_eq!(c.login(isid, INITIATOR, TARGET, "").await.bhs[36..38], [2, 2], "taken off the list");
    // The session that logged in before the change still works.
    let itt = first.itt();
    let h = first.command(itt, &read10(0, 8), true, false, 4096, true);
    first.send(h, b"").await;
    let mut read = 0;
    let status = loop {
        let p = first.recv().await.expect("closed during read");
        match p.opcode() {
            0x25 if p.itt() == itt => {
                read += p.data.len();
                // Status in the last Data-In (S bit) ends the command without a SCSI Response.
                if p.bhs[1] & 0x01 != 0 {
                    break p.bhs[3];
                }
            }
            0x21 if p.itt() == itt => break p.bhs[3],
            _ => {}
        }
    };
    assert_eq!((status, read), (0, 4096), "READ after the change");
    assert_eq!(srv.server.targets()[0].allowed_initiators.as_deref(), Some(&["iqn.2026-11.other:*".to_string()][..]));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_sessions_write_and_read_their_own_regions_at_once() {
    let srv = start(|_| {}).await;
    let mut jobs = Vec::new();
    for n in 0u8..6 {
        let addr = srv.addr;
        jobs.push(tokio::spawn(async move {
            let mut isid = ISID;
            isid[5] = 0x40 + n;
            let mut c = Client::connect(addr).await;
            let initiator = format!("{INITIATOR}-{n}");
            let r = c.login(isid, &initiator, TARGET, "InitialR2T=Yes|ImmediateData=Yes|FirstBurstLength=4096|").await;
            assert_eq!(r.bhs[36], 0, "login {n} failed");
            let lba = 1024 * u32::from(n);
            let data: Vec<u8> = (0..32768u32).map(|i| (i as u8) ^ n).collect();
            for round in 0..4u32 {
                let itt = c.itt();
                let h = c.command(itt, &write10(lba + round * 64, 64), false, true, 32768, true);
                c.send(h, &data[..4096]).await;
                let mut status = None;
                while status.is_none() {
                    let p = c.recv().await.expect("closed during write");
                    match p.opcode() {
                        0x31 => {
                            let (ttt, off, len) = (p.u32_at(20), p.u32_at(40), p.u32_at(44));
                            let d = c.data_out(itt, ttt, 0, off, true);
                            c.send(d, &data[off as usize..(off + len) as usize]).await;
                        }
                        0x21 if p.itt() == itt => status = Some(p.bhs[3]),
                        _ => {}
                    }
                }
                // The first command of each nexus may report the power-on unit attention.
                if status == Some(2) {
                    let itt = c.itt();
                    let h = c.command(itt, &write10(lba + round * 64, 64), false, true, 32768, true);
                    c.send(h, &data[..4096]).await;
                    loop {
                        let p = c.recv().await.expect("closed during retry");
                        if p.opcode() == 0x31 {
                            let (ttt, off, len) = (p.u32_at(20), p.u32_at(40), p.u32_at(44));
                            let d = c.data_out(itt, ttt, 0, off, true);
                            c.send(d, &data[off as usize..(off + len) as usize]).await;
                        } else if p.opcode() == 0x21 && p.itt() == itt {
                            assert_eq!(p.bhs[3], 0, "retried write failed");
                            break;
                        }
                    }
                }
            }
            for round in 0..4u32 {
                let itt = c.itt();
                let h = c.command(itt, &read10(lba + round * 64, 64), true, false, 32768, true);
                c.send(h, b"").await;
                let mut got = vec![0u8; 32768];
                loop {
                    let p = c.recv().await.expect("closed during read");
                    if p.opcode() == 0x25 {
                        let off = p.u32_at(40) as usize;
                        got[off..off + p.data.len()].copy_from_slice(&p.data);
                        if p.bhs[1] & 1 != 0 {
                            break;
                        }
                    }
                }
                assert_eq!(got, data, "session {n} read back other data");
            }
        }));
    }
    for j in jobs {
        let joined = tokio::time::timeout(Duration::from_secs(60), j).await;
        assert!(matches!(joined, Ok(Ok(()))), "a session failed: {joined:?}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_command_ahead_of_the_window_start_waits_for_the_gap() {
    let srv = start(|_| {}).await;
    let mut c = logged_in(srv.addr, "").await;
    let first_sn = c.cmd_sn;
    let (a, b) = (c.itt(), c.itt());
    // B carries CmdSN first+1 and arrives first: it must wait until A (first) arrives.
    let mut hb = c.command(b, &read10(0, 1), true, false, 512, true);
    put32(&mut hb, 24, first_sn.wrapping_add(1));
    c.send(hb, b"").await;
    let itt = c.ping(b"x").await;
    let (_, before) = c.recv_until(|p| p.opcode() == 0x20 && p.itt() == itt).await;
    assert!(before.iter().all(|p| p.itt() != b), "held command ran before the gap was filled");
    let mut ha = c.command(a, &read10(1, 1), true, false, 512, true);
    put32(&mut ha, 24, first_sn);
    c.send(ha, b"").await;
    let mut done = Vec::new();
    while done.len() < 2 {
        let p = c.recv().await.expect("closed");
        if p.opcode() == 0x25 && p.bhs[1] & 1 != 0 {
            assert_eq!(p.bhs[3], 0);
            done.push(p.itt());
            // ExpCmdSN has moved past both.
            assert!(done.len() < 2 || p.u32_at(28) == first_sn.wrapping_add(2));
        }
    }
    done.sort_unstable();
    assert_eq!(done, vec![a, b]);
    srv.stop().await;
}

/// RFC 7143 §11.7.5: a Data-Out PDU's DataSN counts from 0 within its R2T's sequence (and within the unsolicited
/// burst). Out of order at ERL 0 (libiscsi's iSCSIdatasn.iSCSIDataSnInvalid: two PDUs numbered 0, one numbered 27,
/// one numbered FFFFFFFFh, the pair in reverse order) the PDU is rejected and the write dropped without touching the
/// medium or answering it; the session goes on, and a write numbered right still works.
#[tokio::test]
async fn data_out_with_a_wrong_data_sn_is_rejected_and_its_write_dropped() {
    let srv = start(|_| {}).await;
    let keys = "InitialR2T=Yes|ImmediateData=No|MaxBurstLength=8192|FirstBurstLength=8192|";
    let mut c = logged_in(srv.addr, keys).await;
    let good: Vec<u8> = (0..1024u32).map(|i| (i % 253) as u8 + 1).collect();
    for (case, sns) in [("0,0", vec![0u32, 0]), ("27", vec![27, 1]), ("-1", vec![u32::MAX, 1]), ("1,0", vec![1, 0])] {
        let itt = c.itt();
        let h = c.command(itt, &write10(100, 2), false, true, 1024, true);
        c.send(h, b"").await;
        let r = c.recv().await.expect("closed while waiting for R2T");
        assert_eq!((r.opcode(), r.u32_at(40), r.u32_at(44)), (0x31, 0, 1024), "{case}: R2T for the whole write");
        let ttt = r.u32_at(20);
        let d = c.data_out(itt, ttt, sns[0], 0, false);
        c.send(d, &[0xEE; 512]).await;
        let d = c.data_out(itt, ttt, sns[1], 512, true);
        c.send(d, &[0xEE; 512]).await;
        let (reject, _) = c.recv_until(|p| p.opcode() == 0x3f).await;
        assert_eq!(reject.bhs[2], 0x04, "{case}: Reject reason protocol error");
        // The dropped write is never answered; a read of its blocks is, and finds them untouched.
        let read = c.itt();
        let h = c.command(read, &read10(100, 2), true, false, 1024, true);
        c.send(h, b"").await;
        let mut got = Vec::new();
        loop {
            let p = c.recv().await.expect("closed during read");
            assert!(!(p.opcode() == 0x21 && p.itt() == itt), "{case}: the dropped write was answered");
            if p.opcode() == 0x25 && p.itt() == read {
                got.extend_from_slice(&p.data);
                if p.bhs[1] & 0x01 != 0 {
                    break;
                }
            }
        }
        assert!(got.iter().all(|b| *b != 0xEE), "{case}: data of the rejected write reached the medium");
    }
    // The same write numbered 0, 1 in its R2T's sequence is written.
    let itt = c.itt();
    let h = c.command(itt, &write10(100, 2), false, true, 1024, true);
    c.send(h, b"").await;
    let (r, _) = c.recv_until(|p| p.opcode() == 0x31).await;
    let ttt = r.u32_at(20);
    let d = c.data_out(itt, ttt, 0, 0, false);
    c.send(d, &good[..512]).await;
    let d = c.data_out(itt, ttt, 1, 512, true);
    c.send(d, &good[512..]).await;
    let (resp, _) = c.recv_until(|p| p.opcode() == 0x21 && p.itt() == itt).await;
    assert_eq!((resp.bhs[2], resp.bhs[3]), (0, 0), "the well-numbered write succeeds");
    srv.stop().await;
}
