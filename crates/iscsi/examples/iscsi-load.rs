//! A small iSCSI load generator for the write workloads `iscsi-perf` lacks:
//! `iscsi-load --url iscsi://HOST:PORT/IQN/LUN --rw read|write --bs BYTES --qd N
//! --secs S [--span BYTES] [--random]`, over the first `span` bytes (1 GiB by default). It logs in without authentication on one connection, keeps
//! `qd` commands in flight, answers R2Ts, and prints `ops N iops X MB/s Y`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use iscsi::pdu::{frame_layout, padded, Digests, Framing, BHS_LEN};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const NO_TAG: u32 = 0xffff_ffff;

struct Opts {
    host: String,
    target: String,
    lun: u64,
    write: bool,
    bs: u32,
    qd: u32,
    secs: u64,
    /// Bytes of the LUN the workload covers, from LBA 0.
    span: u64,
    random: bool,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        host: String::new(),
        target: String::new(),
        lun: 0,
        write: false,
        bs: 4096,
        qd: 1,
        secs: 5,
        span: 1 << 30,
        random: false,
    };
    let mut url = None;
    let mut it = std::env::args().skip(1);
    while let Some(f) = it.next() {
        if f == "--random" {
            o.random = true;
            continue;
        }
        let v = it.next().ok_or(format!("{f} needs a value"))?;
        match f.as_str() {
            "--url" => url = Some(v),
            "--rw" => o.write = v == "write",
            "--bs" => o.bs = v.parse().map_err(|e| format!("--bs: {e}"))?,
            "--qd" => o.qd = v.parse().map_err(|e| format!("--qd: {e}"))?,
            "--secs" => o.secs = v.parse().map_err(|e| format!("--secs: {e}"))?,
            "--span" => o.span = v.parse().map_err(|e| format!("--span: {e}"))?,
            _ => return Err(format!("unknown option {f}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let rest = url.strip_prefix("iscsi://").ok_or("URL must start with iscsi://")?;
    let mut parts = rest.splitn(3, '/');
    o.host = parts.next().unwrap_or_default().to_owned();
    o.target = parts.next().ok_or("URL lacks the target name")?.to_owned();
    o.lun = parts.next().unwrap_or("0").parse().map_err(|e| format!("LUN: {e}"))?;
    if o.bs == 0 || o.qd == 0 {
        return Err("--bs and --qd must be positive".into());
    }
    Ok(o)
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn encode(mut h: [u8; BHS_LEN], data: &[u8]) -> Vec<u8> {
    let dsl = data.len() as u32;
    h[5..8].copy_from_slice(&dsl.to_be_bytes()[1..]);
    let mut v = Vec::with_capacity(BHS_LEN + padded(data.len()));
    v.extend_from_slice(&h);
    v.extend_from_slice(data);
    v.resize(BHS_LEN + padded(data.len()), 0);
    v
}

struct Session {
    w: OwnedWriteHalf,
    cmd_sn: u32,
    exp_stat_sn: u32,
    lun_field: u64,
    mrdsl: u32,
    first_burst: u32,
    immediate: bool,
    initial_r2t: bool,
}

impl Session {
    async fn send(&mut self, h: [u8; BHS_LEN], data: &[u8]) -> std::io::Result<()> {
        self.w.write_all(&encode(h, data)).await
    }

    async fn command(&mut self, itt: u32, cdb: &[u8], write: bool, len: u32, data: &[u8]) -> std::io::Result<()> {
        let imm = if write && self.immediate { len.min(self.first_burst).min(self.mrdsl) } else { 0 };
        let unsolicited = if write && !self.initial_r2t { len.min(self.first_burst) } else { imm };
        let mut h = [0u8; BHS_LEN];
        h[0] = 0x01;
        h[1] = (if unsolicited > imm { 0 } else { 0x80 }) | (if write { 0x20 } else { 0x40 }) | 1;
        h[8..16].copy_from_slice(&self.lun_field.to_be_bytes());
        h[16..20].copy_from_slice(&itt.to_be_bytes());
        h[20..24].copy_from_slice(&len.to_be_bytes());
        h[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
        h[28..32].copy_from_slice(&self.exp_stat_sn.to_be_bytes());
        h[32..32 + cdb.len()].copy_from_slice(cdb);
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        self.send(h, &data[..imm as usize]).await?;
        if unsolicited > imm {
            self.data_out(itt, NO_TAG, imm, unsolicited - imm, data).await?;
        }
        Ok(())
    }

    /// Sends `len` bytes from `offset` as Data-Out PDUs of at most the target's limit.
    async fn data_out(&mut self, itt: u32, ttt: u32, offset: u32, len: u32, data: &[u8]) -> std::io::Result<()> {
        let mut done = 0;
        let mut sn = 0u32;
        while done < len {
            let n = (len - done).min(self.mrdsl);
            let o = offset + done;
            let mut h = [0u8; BHS_LEN];
            h[0] = 0x05;
            h[1] = if done + n == len { 0x80 } else { 0 };
            h[8..16].copy_from_slice(&self.lun_field.to_be_bytes());
            h[16..20].copy_from_slice(&itt.to_be_bytes());
            h[20..24].copy_from_slice(&ttt.to_be_bytes());
            h[28..32].copy_from_slice(&self.exp_stat_sn.to_be_bytes());
            h[36..40].copy_from_slice(&sn.to_be_bytes());
            h[40..44].copy_from_slice(&o.to_be_bytes());
            self.send(h, &data[o as usize..(o + n) as usize]).await?;
            done += n;
            sn += 1;
        }
        Ok(())
    }
}

/// PDUs from the target: (header, data).
type Incoming = ([u8; BHS_LEN], Vec<u8>);

async fn reader(mut r: tokio::net::tcp::OwnedReadHalf, tx: mpsc::UnboundedSender<Incoming>) {
    let mut buf = BytesMut::with_capacity(1 << 20);
    loop {
        while let Ok(Framing::Complete(l)) = frame_layout(&buf, Digests::default(), 1 << 24) {
            let frame = buf.split_to(l.total);
            let mut h = [0u8; BHS_LEN];
            h.copy_from_slice(&frame[..BHS_LEN]);
            // Read payloads are not kept: only their headers matter for the count.
            let data = if h[0] & 0x3f == 0x25 { Vec::new() } else { frame[l.data].to_vec() };
            if tx.send((h, data)).is_err() {
                return;
            }
        }
        buf.reserve(1 << 20);
        match r.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn key(text: &str, k: &str) -> Option<String> {
    text.split('\0').find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')).map(str::to_owned))
}

async fn run(o: Opts) -> Result<(), String> {
    let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&o.host))
        .await
        .map_err(|_| "connect timed out")?
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (r, w) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(reader(r, tx));
    let lun_field = if o.lun < 256 { o.lun << 48 } else { (0x4000 | (o.lun & 0x3fff)) << 48 };
    let mut s = Session {
        w,
        cmd_sn: 1,
        exp_stat_sn: 0,
        lun_field,
        mrdsl: 8192,
        first_burst: 65536,
        immediate: true,
        initial_r2t: true,
    };

    // Login straight into operational negotiation (no authentication).
    let text = format!(
        "InitiatorName=iqn.2026-11.io.scsiport:load\0TargetName={}\0SessionType=Normal\0HeaderDigest=None\0DataDigest=None\0\
         InitialR2T=No\0ImmediateData=Yes\0MaxRecvDataSegmentLength=262144\0MaxBurstLength=1048576\0FirstBurstLength=262144\0\
         MaxOutstandingR2T=1\0ErrorRecoveryLevel=0\0DefaultTime2Wait=2\0DefaultTime2Retain=0\0MaxConnections=1\0\
         DataPDUInOrder=Yes\0DataSequenceInOrder=Yes\0",
        o.target
    );
    let mut h = [0u8; BHS_LEN];
    h[0] = 0x43;
    h[1] = 0x80 | (1 << 2) | 3;
    h[8..14].copy_from_slice(&[0x80, 0x4c, 0x4f, 0x41, 0x44, 0x01]);
    h[16..20].copy_from_slice(&1u32.to_be_bytes());
    h[24..28].copy_from_slice(&1u32.to_be_bytes());
    s.send(h, text.as_bytes()).await.map_err(|e| e.to_string())?;
    let (lh, ld) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .map_err(|_| "login timed out")?
        .ok_or("connection closed during login")?;
    if lh[0] & 0x3f != 0x23 || lh[36] != 0 || lh[1] & 0x80 == 0 {
        return Err(format!("login failed: status {:#04x}{:02x}", lh[36], lh[37]));
    }
    let resp = String::from_utf8_lossy(&ld).into_owned();
    s.exp_stat_sn = be32(&lh, 24).wrapping_add(1);
    s.cmd_sn = be32(&lh, 28);
    s.mrdsl = key(&resp, "MaxRecvDataSegmentLength").and_then(|v| v.parse().ok()).unwrap_or(8192);
    s.first_burst = key(&resp, "FirstBurstLength").and_then(|v| v.parse().ok()).unwrap_or(65536);
    s.immediate = key(&resp, "ImmediateData").is_none_or(|v| v == "Yes");
    s.initial_r2t = key(&resp, "InitialR2T").is_none_or(|v| v == "Yes");

    // TEST UNIT READY until GOOD: the first command of a nexus may report the
    // power-on unit attention (SAM-5 §6.3.1).
    for itt in 1..4u32 {
        s.command(itt, &[0u8; 6], false, 0, &[]).await.map_err(|e| e.to_string())?;
        let status = loop {
            let (h, _) = rx.recv().await.ok_or("connection closed")?;
            if h[0] & 0x3f == 0x21 {
                s.exp_stat_sn = be32(&h, 24).wrapping_add(1);
                break h[3];
            }
        };
        if status == 0 {
            break;
        }
    }
    // 512-byte blocks over the first `span` bytes: the targets in the comparison are disks
    // of 512-byte blocks and at least that size.
    let block = 512u32;
    let blocks_per_io = (o.bs / block).max(1);
    let span_blocks = o.span / u64::from(block);
    let ios = (span_blocks / u64::from(blocks_per_io)).max(1);
    let data = vec![0x5au8; o.bs as usize];
    let mut rng = rand::thread_rng();
    let mut next_seq = 0u64;
    let mut next_itt = 0x1000u32;
    let mut inflight: HashMap<u32, ()> = HashMap::new();
    let start = Instant::now();
    let end = start + Duration::from_secs(o.secs);
    let mut done = 0u64;
    let mut errors = 0u64;
    loop {
        while inflight.len() < o.qd as usize && Instant::now() < end {
            let io = if o.random {
                rng.gen_range(0..ios)
            } else {
                let v = next_seq % ios;
                next_seq += 1;
                v
            };
            let lba = io * u64::from(blocks_per_io);
            let mut cdb = [0u8; 16];
            cdb[0] = if o.write { 0x8a } else { 0x88 };
            cdb[2..10].copy_from_slice(&lba.to_be_bytes());
            cdb[10..14].copy_from_slice(&blocks_per_io.to_be_bytes());
            next_itt = next_itt.wrapping_add(1);
            s.command(next_itt, &cdb, o.write, o.bs, &data).await.map_err(|e| e.to_string())?;
            inflight.insert(next_itt, ());
        }
        if inflight.is_empty() {
            break;
        }
        let (h, _) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .map_err(|_| "target stalled")?
            .ok_or("connection closed")?;
        let itt = be32(&h, 16);
        match h[0] & 0x3f {
            0x31 => {
                let (ttt, off, len) = (be32(&h, 20), be32(&h, 40), be32(&h, 44));
                s.data_out(itt, ttt, off, len, &data).await.map_err(|e| e.to_string())?;
            }
            0x25 if h[1] & 1 != 0 => {
                s.exp_stat_sn = be32(&h, 24).wrapping_add(1);
                if h[3] != 0 {
                    errors += 1;
                }
                inflight.remove(&itt);
                done += 1;
            }
            0x21 => {
                s.exp_stat_sn = be32(&h, 24).wrapping_add(1);
                if h[3] != 0 {
                    errors += 1;
                }
                inflight.remove(&itt);
                done += 1;
            }
            _ => {}
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let iops = done as f64 / secs;
    println!("ops {done} errors {errors} iops {iops:.0} MB/s {:.1}", iops * f64::from(o.bs) / 1e6);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match parse() {
        Ok(o) => match run(o).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("iscsi-load: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("iscsi-load: {e}");
            ExitCode::from(2)
        }
    }
}
