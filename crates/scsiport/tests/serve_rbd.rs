//! `scsiport serve` with a disk on a Ceph RBD image, against a real single-node cluster (`scripts/ceph-start.sh`;
//! `scripts/test.sh` starts one and sets `SCSIPORT_CEPH_CONF`): NBD and iSCSI clients see one image, flushes,
//! trims and the allocation map reach the cluster, and a cluster that goes away gives errors, not a stuck server.
#![cfg(feature = "rbd")]

mod serve_common;

#[path = "../../scsi/tests/ceph_cluster/mod.rs"]
mod ceph_cluster;

use ceph_cluster::{conf as ceph_conf, pause_osd, CLUSTER};
use serve_common::{free_port, pattern, qemu_iscsi_root, run, tool, NbdClient, MIB};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn image_name(what: &str) -> String {
    ceph_cluster::image_name("s", what)
}

/// A `scsiport serve` with one RBD disk, NBD and iSCSI on ephemeral ports.
struct RbdServer {
    child: Child,
    nbd: u16,
    iscsi: u16,
    _dir: tempfile::TempDir,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// What it prints after "ready" (kept open: a closed pipe would fail its prints).
    lines: std::sync::mpsc::Receiver<String>,
}

type Spawned = (Child, tempfile::TempDir, std::sync::Arc<std::sync::Mutex<String>>, std::sync::mpsc::Receiver<String>);

const IQN: &str = "iqn.2026-11.io.scsiport:rbd";

fn config(conf: &Path, image: &str, size: &str, nbd: u16, iscsi: u16, timeout: u64) -> String {
    config_with(conf, image, size, nbd, iscsi, timeout, "")
}

/// `disk_extra`: more keys of the `[[adapter.disk]]` table.
fn config_with(conf: &Path, image: &str, size: &str, nbd: u16, iscsi: u16, timeout: u64, disk_extra: &str) -> String {
    format!(
        r#"[[adapter]]
name = "scsi0"

[[adapter.disk]]
backend = "rbd"
pool = "rbd"
image = "{image}"
ceph_conf = "{conf}"
size = "{size}"
ceph_timeout = {timeout}
{disk_extra}

[nbd]
listen = "127.0.0.1:{nbd}"
export = "default"
disk = "scsi0:0:0"

[iscsi]
listen = "127.0.0.1:{iscsi}"
target = "{IQN}"
adapter = "scsi0"
"#,
        conf = conf.display()
    )
}

/// Start `serve` on `text` (a configuration); Err(stderr) when it exits before "ready".
fn spawn(text: &str) -> Result<Spawned, String> {
    let dir = tempfile::Builder::new().prefix("scsiport-rbd-").tempdir().expect("temp dir");
    let path = dir.path().join("scsiport.toml");
    std::fs::write(&path, text).expect("write the configuration");
    let mut child = Command::new(env!("CARGO_BIN_EXE_scsiport"))
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start scsiport serve");
    let err = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (e2, mut pipe) = (err.clone(), child.stderr.take().expect("stderr"));
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut t) = e2.lock() {
                t.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) if l.starts_with("ready") => return Ok((child, dir, err, rx)),
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // Let the reader thread take the last of stderr.
                std::thread::sleep(Duration::from_millis(100));
                return Err(err.lock().map(|t| t.clone()).unwrap_or_default());
            }
        }
    }
}

impl RbdServer {
    fn start(conf: &Path, image: &str, size: &str, timeout: u64) -> RbdServer {
        let nbd = free_port();
        let iscsi = (0..100).map(|_| free_port()).find(|p| *p != nbd).expect("a second port");
        Self::start_on(nbd, iscsi, &config(conf, image, size, nbd, iscsi, timeout))
    }

    fn start_on(nbd: u16, iscsi: u16, text: &str) -> RbdServer {
        match spawn(text) {
            Ok((child, dir, stderr, lines)) => RbdServer { child, nbd, iscsi, _dir: dir, stderr, lines },
            Err(e) => panic!("scsiport serve did not become ready: {e}"),
        }
    }

    /// One of several hosts serving `image` as one logical unit: port group `own` of groups 1 (active/optimized)
    /// and 2 (active/non-optimized).
    fn host(conf: &Path, image: &str, own: u16) -> (RbdServer, String) {
        Self::host_with(conf, image, own, "")
    }

    fn host_with(conf: &Path, image: &str, own: u16, more: &str) -> (RbdServer, String) {
        let nbd = free_port();
        let iscsi = (0..100).map(|_| free_port()).find(|p| *p != nbd).expect("a second port");
        let extra = format!(
            "port_group = {own}\nport_groups = [{{ id = 1, state = \"active_optimized\" }}, \
             {{ id = 2, state = \"active_non_optimized\" }}]\n{more}"
        );
        let text = config_with(conf, image, "64MiB", nbd, iscsi, 5, &extra);
        (Self::start_on(nbd, iscsi, &text), text)
    }

    fn nbd_uri(&self) -> String {
        format!("nbd://127.0.0.1:{}/default", self.nbd)
    }

    fn iscsi_url(&self) -> String {
        format!("iscsi://127.0.0.1:{}/{IQN}/0", self.iscsi)
    }

    /// Wait (bounded) for a printed line containing `what`.
    fn wait_line(&self, what: &str, secs: u64) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while let Ok(l) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if l.contains(what) {
                return Some(l);
            }
        }
        None
    }

    fn stderr(&self) -> String {
        self.stderr.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

impl RbdServer {
    /// SIGTERM and wait (bounded) for a clean exit.
    fn child_term(mut self) {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RbdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nbdinfo --map` rows: (offset, length, type), type 0 data, 3 hole+zero.
fn map(nbdinfo: &Path, uri: &str) -> Vec<(u64, u64, u32)> {
    let out = run(60, nbdinfo, &["--map", uri]);
    assert!(out.ok, "nbdinfo --map: {}", out.stderr);
    out.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].parse().expect("offset"), f[1].parse().expect("length"), f[2].parse().expect("type"))
        })
        .collect()
}

fn type_at(rows: &[(u64, u64, u32)], offset: u64) -> Option<u32> {
    rows.iter().find(|(o, l, _)| (*o..o + l).contains(&offset)).map(|r| r.2)
}

fn qemu_img(root: &Path, args: &[&str]) -> serve_common::Output {
    let bin = root.join("usr/bin/qemu-img");
    let modules = root.join("usr/lib/x86_64-linux-gnu/qemu");
    std::env::set_var("QEMU_MODULE_DIR", &modules);
    run(120, &bin, args)
}

#[test]
fn nbd_and_iscsi_share_the_image_with_flush_trim_and_allocation() {
    let Some(conf) = ceph_conf() else { return };
    let Some(nbdinfo) = tool("nbdinfo") else { return };
    let Some(qemu_io) = tool("qemu-io") else { return };
    let _shared = CLUSTER.read();
    let image = image_name("share");
    let srv = RbdServer::start(&conf, &image, "64MiB", 5);

    let out = run(30, &nbdinfo, &["--size", &srv.nbd_uri()]);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), (64 * MIB).to_string());
    assert_eq!(type_at(&map(&nbdinfo, &srv.nbd_uri()), 0), Some(3), "a new image is a hole");

    // Objects are 4 MiB: write objects 2 and 3 whole and a piece of object 5.
    let a = pattern(8 * MIB as usize, 11);
    let b = pattern(64 * 1024, 12);
    let mut c = NbdClient::connect(srv.nbd, "default").expect("NBD connect");
    for (i, chunk) in a.chunks(MIB as usize).enumerate() {
        c.write(8 * MIB + i as u64 * MIB, chunk, false).expect("NBD write");
    }
    c.write(20 * MIB + 4096, &b, true).expect("NBD FUA write");
    c.flush().expect("NBD flush");
    assert!(c.read(8 * MIB, MIB as u32).expect("NBD read") == a[..MIB as usize]);
    drop(c);

    // The image itself, through another librbd client: what NBD acknowledged is in the cluster.
    let direct = scsi::RbdBackend::open(&scsi::RbdOptions {
        ceph_conf: Some(conf.clone()),
        ..scsi::RbdOptions::new("rbd", image.clone())
    })
    .expect("open the served image");
    let mut got = vec![0u8; b.len()];
    scsi::Backend::read_at(&direct, 20 * MIB + 4096, &mut got).unwrap();
    assert!(got == b, "the FUA write is in the cluster");

    let rows = map(&nbdinfo, &srv.nbd_uri());
    assert_eq!(rows.iter().map(|r| r.1).sum::<u64>(), 64 * MIB, "{rows:?}");
    assert_eq!(type_at(&rows, 0), Some(3), "{rows:?}");
    assert_eq!(type_at(&rows, 8 * MIB), Some(0), "{rows:?}");
    assert_eq!(type_at(&rows, 16 * MIB - 512), Some(0), "{rows:?}");
    assert_eq!(type_at(&rows, 16 * MIB), Some(3), "{rows:?}");
    assert_eq!(type_at(&rows, 20 * MIB + 4096), Some(0), "{rows:?}");
    assert_eq!(type_at(&rows, 40 * MIB), Some(3), "{rows:?}");

    // Trim object 3 (UNMAP through the class driver, a discard in the cluster): a hole that reads zeros.
    let out = run(60, &qemu_io, &["-f", "raw", &srv.nbd_uri(), "-c", "discard 12M 4M"]);
    assert!(out.ok, "qemu-io discard: {} {}", out.stdout, out.stderr);
    let rows = map(&nbdinfo, &srv.nbd_uri());
    assert_eq!(type_at(&rows, 8 * MIB), Some(0), "{rows:?}");
    assert_eq!(type_at(&rows, 12 * MIB), Some(3), "the trimmed object is a hole: {rows:?}");
    let mut c = NbdClient::connect(srv.nbd, "default").expect("NBD connect");
    assert!(c.read(12 * MIB, 65536).unwrap().iter().all(|&x| x == 0));
    drop(c);
    assert!(!scsi::Backend::is_allocated(&direct, 12 * MIB, 4 * MIB).unwrap(), "deallocated in the cluster");

    // iSCSI, through the pass-through path, reads the same image.
    let Some(root) = qemu_iscsi_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let back = dir.path().join("back.img");
    let out = qemu_img(&root, &["convert", "-f", "raw", "-O", "raw", &srv.iscsi_url(), back.to_str().unwrap()]);
    assert!(out.ok, "qemu-img from iSCSI: {}\n{}", out.stderr, srv.stderr());
    let all = std::fs::read(&back).unwrap();
    assert_eq!(all.len() as u64, 64 * MIB);
    assert!(all[8 * MIB as usize..12 * MIB as usize] == a[..4 * MIB as usize], "object 2 over iSCSI");
    assert!(all[12 * MIB as usize..16 * MIB as usize].iter().all(|&x| x == 0), "the trimmed object over iSCSI");
    assert!(all[(20 * MIB + 4096) as usize..][..b.len()] == b[..]);
    // qemu's iSCSI driver maps allocation with GET LBA STATUS: the same holes as NBD block status.
    let out = qemu_img(&root, &["map", "--output=json", "-f", "raw", &srv.iscsi_url()]);
    assert!(out.ok, "qemu-img map: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("qemu-img map JSON");
    let at = |off: u64| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|e| {
                let (s, l) = (e["start"].as_u64().unwrap(), e["length"].as_u64().unwrap());
                (s..s + l).contains(&off)
            })
            .map(|e| e["data"].as_bool().unwrap())
    };
    assert_eq!(at(0), Some(false), "{v}");
    assert_eq!(at(8 * MIB), Some(true), "{v}");
    assert_eq!(at(12 * MIB), Some(false), "{v}");
}

#[test]
fn an_unreachable_cluster_stops_start_up_with_one_message() {
    let _shared = CLUSTER.read();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("ceph.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\nmon host = v2:127.0.0.1:{port}\nauth client required = none\nms bind msgr1 = false\n\
             [client]\nlog file = {}/client.log\nadmin socket =\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let text = config(&conf, "x", "16MiB", free_port(), free_port(), 2);
    let err = match spawn(&text) {
        Ok(_) => panic!("serve started without a cluster"),
        Err(e) => e,
    };
    assert!(err.contains("cannot reach the Ceph cluster"), "{err}");
    assert!(err.contains("adapter[0].disk[0]"), "the message names the disk: {err}");
}

/// The OSD stops answering (SIGSTOP) while the server runs: NBD requests end in errors (the server stays up and
/// answers), and once the OSD answers again (SIGCONT) writes succeed and what was acknowledged before is there.
#[test]
fn a_cluster_that_goes_away_gives_nbd_errors_and_the_server_recovers() {
    let Some(conf) = ceph_conf() else { return };
    let _alone = CLUSTER.write();
    let srv = RbdServer::start(&conf, &image_name("down"), "32MiB", 3);
    let mut c = NbdClient::connect(srv.nbd, "default").expect("NBD connect");
    let before = pattern(65536, 21);
    c.write(0, &before, true).expect("write before");

    let resume = pause_osd(&conf);
    let t0 = Instant::now();
    let w = c.write(MIB, &pattern(4096, 22), true);
    eprintln!("write while the cluster is away: {w:?} after {:?}", t0.elapsed());
    assert!(w.is_err(), "a write while the cluster is away fails");
    // The server still answers: a second connection is served (its handshake needs no cluster).
    NbdClient::connect(srv.nbd, "default").expect("the server still accepts connections");
    drop(resume);

    let deadline = Instant::now() + Duration::from_secs(90);
    let after = pattern(4096, 23);
    loop {
        let r = NbdClient::connect(srv.nbd, "default").and_then(|mut c| c.write(2 * MIB, &after, true));
        match r {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not back yet: {e:?}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("the server did not recover: {e:?}\n{}", srv.stderr()),
        }
    }
    let mut c = NbdClient::connect(srv.nbd, "default").expect("NBD connect");
    assert!(c.read(0, before.len() as u32).unwrap() == before, "acknowledged before the outage");
    assert!(c.read(2 * MIB, 4096).unwrap() == after);
}

#[test]
fn two_hosts_on_one_image_pass_libiscsi_multipath_tests() {
    let Some(conf) = ceph_conf() else { return };
    let Some(test_cu) = tool("iscsi-test-cu") else { return };
    let _shared = CLUSTER.read();
    let image = image_name("mpath");
    let (a, _) = RbdServer::host(&conf, &image, 1);
    let (b, _) = RbdServer::host(&conf, &image, 2);
    // MultipathIO.Reset resets the unit through each path in turn and expects the unit attention on every path:
    // the hosts pass resets on through the cluster (docs/ceph.md).
    for t in [
        "SCSI.MultipathIO.Simple",
        "SCSI.MultipathIO.Reset",
        "SCSI.MultipathIO.CompareAndWrite",
        "SCSI.MultipathIO.CompareAndWriteAsync",
    ] {
        let out = run(300, &test_cu, &["-d", "-V", "-t", t, &a.iscsi_url(), &b.iscsi_url()]);
        let text = format!("{}\n{}", out.stdout, out.stderr);
        assert!(text.contains("found matching LU device identifier for all (2) paths"), "{t}: {text}");
        let summary = text.lines().find(|l| l.trim_start().starts_with("tests")).unwrap_or_default().to_string();
        let f: Vec<&str> = summary.split_whitespace().collect();
        assert!(
            f.len() >= 5 && f[1] == f[3] && f[4] == "0" && f[1] != "0",
            "{t}: {summary}\n{text}\nhost 1:\n{}\nhost 2:\n{}",
            a.stderr(),
            b.stderr()
        );
    }
}

#[test]
fn a_host_killed_and_restarted_loses_no_acknowledged_write() {
    let Some(conf) = ceph_conf() else { return };
    let _shared = CLUSTER.read();
    let image = image_name("kill");
    let (a, _) = RbdServer::host(&conf, &image, 1);
    let (mut b, b_text) = RbdServer::host(&conf, &image, 2);
    const BLOCK: usize = 4096;
    let block = |i: u64| pattern(BLOCK, 1000 + i);

    // Writes through both hosts at once, each recording what was acknowledged, while B is killed and restarted.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = |port: u16, first: u64, stop: std::sync::Arc<std::sync::atomic::AtomicBool>| {
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut c = NbdClient::connect(port, "default").expect("NBD connect");
            let mut i = first;
            while !stop.load(Ordering::Relaxed) && i < first + 4000 {
                if c.write(i * BLOCK as u64, &pattern(BLOCK, 1000 + i), false).is_err() {
                    break;
                }
                acked.push(i);
                i += 1;
            }
            acked
        })
    };
    let through_a = writer(a.nbd, 0, stop.clone());
    let through_b = writer(b.nbd, 8000, stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    b.child.kill().expect("SIGKILL host B");
    let _ = b.child.wait();
    let acked_b = through_b.join().expect("B's writer");
    let b_nbd = b.nbd;
    let b_iscsi = b.iscsi;
    drop(b);
    let b = RbdServer::start_on(b_nbd, b_iscsi, &b_text);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let acked_a = through_a.join().expect("A's writer");
    assert!(!acked_a.is_empty() && !acked_b.is_empty(), "both hosts acknowledged writes");

    // Every acknowledged write reads back through either host.
    for host in [&a, &b] {
        let mut c = NbdClient::connect(host.nbd, "default").expect("NBD connect");
        for &i in acked_a.iter().chain(&acked_b) {
            let got = c.read(i * BLOCK as u64, BLOCK as u32).expect("read back");
            assert!(got == block(i), "block {i} through port {} differs", host.nbd);
        }
    }
    eprintln!("acknowledged: {} through A, {} through B before it was killed", acked_a.len(), acked_b.len());
}

#[test]
fn when_the_optimized_host_dies_the_other_takes_over_and_hands_back() {
    let Some(conf) = ceph_conf() else { return };
    let _shared = CLUSTER.read();
    let image = image_name("alua");
    let (mut a, a_text) = RbdServer::host_with(&conf, &image, 1, "peer_timeout = 2");
    let (b, _) = RbdServer::host_with(&conf, &image, 2, "peer_timeout = 2");
    // Both alive: no transition is printed for a while.
    assert_eq!(b.wait_line("target port group", 3), None, "no change while both hosts live");
    a.child.kill().expect("SIGKILL host A");
    let _ = a.child.wait();
    let (nbd, iscsi) = (a.nbd, a.iscsi);
    drop(a);
    let l = b.wait_line("target port group 1 is now Unavailable", 30).expect("A's group becomes unavailable");
    eprintln!("{l}");
    b.wait_line("target port group 2 is now ActiveOptimized", 5).expect("B's group becomes active/optimized");
    // A comes back: the configured states return.
    let a = RbdServer::start_on(nbd, iscsi, &a_text);
    b.wait_line("target port group 1 is now ActiveOptimized", 30).expect("A's group is optimized again");
    b.wait_line("target port group 2 is now ActiveNonOptimized", 5).expect("B's group is non-optimized again");
    // A clean stop says so at once.
    a.child_term();
    b.wait_line("target port group 1 is now Unavailable", 10).expect("a host that stops cleanly leaves at once");
}
