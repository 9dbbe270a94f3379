//! Operating a running `scsiport serve`: a configuration of two adapters, three iSCSI targets with access control on
//! two portals and two NBD exports; `scsiport ctl` listing it and changing LUN maps, exports, faults and verifier
//! modes while real clients (iscsi-perf, fio, qemu-io, nbdinfo) keep working; SIGHUP reload; the metrics endpoint
//! against fio's own count (NBD) and qemu-img bench's (iSCSI); readiness notification. Everything on loopback, every
//! wait bounded.

mod serve_common;

use serde_json::Value;
use serve_common::{free_port, qemu_iscsi_root, run, tool};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_scsiport");

/// A `scsiport serve --config FILE` child; SIGTERM and wait on drop.
struct Serve {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<String>>,
    socket: PathBuf,
    config: PathBuf,
}

impl Serve {
    fn start(dir: &Path, config: &str, env: &[(&str, &str)]) -> Serve {
        let path = dir.join("scsiport.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").arg("--config").arg(&path).current_dir(dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let (o2, e2) = (out.clone(), err.clone());
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                o2.lock().unwrap().push(l);
            }
        });
        std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut b) {
                if n == 0 {
                    break;
                }
                e2.lock().unwrap().push_str(&String::from_utf8_lossy(&b[..n]));
            }
        });
        let s = Serve { child, out, err, socket: dir.join("ctl.sock"), config: path };
        s.wait_line("ready", 60);
        s
    }

    fn wait_line(&self, prefix: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(l) = self.out.lock().unwrap().iter().find(|l| l.starts_with(prefix)) {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no line starting {prefix:?} within {secs} s\nstdout: {:?}\nstderr: {}",
                self.out.lock().unwrap(),
                self.err.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lines(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child, not yet reaped, so the pid is still ours.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// `scsiport ctl --json ARGS`: the answer, or the error text.
    fn ctl(&self, args: &[&str]) -> Result<Value, String> {
        let mut a = vec!["ctl", "--socket", self.socket.to_str().unwrap(), "--json"];
        a.extend_from_slice(args);
        let o = run(60, BIN, &a);
        if o.ok {
            Ok(serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("ctl {args:?}: {e}: {}", o.stdout)))
        } else {
            Err(o.stderr)
        }
    }

    fn ok(&self, args: &[&str]) -> Value {
        self.ctl(args).unwrap_or_else(|e| panic!("ctl {args:?} failed: {e}"))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // SAFETY: as in `signal`.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on the IPv6 loopback, if the machine has one.
fn free_port6() -> Option<u16> {
    std::net::TcpListener::bind("[::1]:0").ok().and_then(|l| l.local_addr().ok()).map(|a| a.port())
}

struct Ports {
    p1: u16,
    p6: Option<u16>,
    p2: u16,
    nbd: u16,
    metrics: u16,
}

fn config(dir: &Path, ports: &Ports) -> String {
    let portals_a = match ports.p6 {
        Some(p6) => format!("[\"127.0.0.1:{}\", \"[::1]:{p6}\"]", ports.p1),
        None => format!("[\"127.0.0.1:{}\"]", ports.p1),
    };
    format!(
        r#"
[memory]
size = "128MiB"

[[adapter]]
name = "scsi0"
[[adapter.disk]]
target = 0
backend = "ram"
size = "64MiB"
[[adapter.disk]]
target = 1
backend = "file"
path = "{dir}/d1.img"
size = "32MiB"

[[adapter]]
name = "scsi1"
io_base = 0x340
irq = 10
dma_channel = 1
[[adapter.disk]]
backend = "ram"
size = "32MiB"
naa = "5000c50000000001"
revision = "R7"
vendor = "ACME"

[iscsi]
listen = "127.0.0.1:{p1}"

[[iscsi_target]]
name = "iqn.2026-12.io.scsiport:a"
portals = {portals_a}
luns = [{{ lun = 0, disk = "scsi0:0:0" }}, {{ lun = 1, disk = "scsi1:0:0" }}]
initiators = ["iqn.2026-12.test:*"]

[[iscsi_target]]
name = "iqn.2026-12.io.scsiport:b"
portals = ["127.0.0.1:{p2}"]
luns = [{{ lun = 0, disk = "scsi0:1:0" }}]
initiators = ["iqn.2026-12.test:only-this-one"]

[[iscsi_target]]
name = "iqn.2026-12.io.scsiport:c"
portals = ["127.0.0.1:{p2}"]
luns = [{{ lun = 3, disk = "scsi1:0:0" }}]
chap_user = "user"
chap_secret = "secret-12345"

[nbd]
listen = "127.0.0.1:{nbd}"
unix = "{dir}/nbd.sock"

[[nbd_export]]
name = "first"
disk = "scsi0:0:0"

[[nbd_export]]
name = "second"
disk = "scsi1:0:0"
read_only = true
description = "the other adapter"

[control]
socket = "{dir}/ctl.sock"

[metrics]
listen = "127.0.0.1:{metrics}"
"#,
        dir = dir.display(),
        p1 = ports.p1,
        p2 = ports.p2,
        nbd = ports.nbd,
        metrics = ports.metrics,
    )
}

fn ports() -> Ports {
    Ports { p1: free_port(), p6: free_port6(), p2: free_port(), nbd: free_port(), metrics: free_port() }
}

fn tools(names: &[&str]) -> Option<Vec<PathBuf>> {
    names.iter().map(|n| tool(n)).collect()
}

/// GET /metrics: every sample as (name with labels, value).
fn scrape(port: u16) -> Vec<(String, f64)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap_or_else(|_| panic!("bad sample {l}")))
        })
        .collect()
}

fn sample(samples: &[(String, f64)], key: &str) -> f64 {
    samples.iter().find(|(k, _)| k == key).map(|(_, v)| *v).unwrap_or_else(|| panic!("no sample {key}"))
}

#[test]
fn a_configuration_of_two_adapters_three_targets_and_two_exports_is_operated_while_clients_work() {
    let Some(t) = tools(&["iscsi-ls", "iscsi-inq", "iscsi-perf", "fio", "nbdinfo", "qemu-io"]) else { return };
    let (iscsi_ls, iscsi_inq, iscsi_perf, fio, nbdinfo, qemu_io) = (&t[0], &t[1], &t[2], &t[3], &t[4], &t[5]);
    let dir = tempfile::tempdir().unwrap();
    let p = ports();
    let s = Serve::start(dir.path(), &config(dir.path(), &p), &[]);
    let a = format!("iscsi://127.0.0.1:{}/iqn.2026-12.io.scsiport:a", p.p1);
    let me = "iqn.2026-12.test:ops";

    // The whole configuration and state, as one JSON object.
    let list = s.ok(&["list"]);
    let targets = list["iscsi"]["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 3);
    assert_eq!(targets[0]["portals"].as_array().unwrap().len(), if p.p6.is_some() { 2 } else { 1 });
    assert_eq!(targets[2]["luns"][0]["lun"], 3);
    assert_eq!(list["nbd"]["exports"].as_array().unwrap().len(), 2);
    assert_eq!(list["adapters"].as_array().unwrap().len(), 2);
    let disks = list["disks"].as_array().unwrap();
    let d = disks.iter().find(|d| d["disk"] == "scsi1:0:0").unwrap();
    assert_eq!(
        (d["naa"].as_str(), d["revision"].as_str(), d["vendor"].as_str()),
        (Some("5000c50000000001"), Some("R7"), Some("ACME"))
    );
    let mode = std::fs::metadata(&s.socket).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.unwrap(), 0o600, "the control socket is for its owner only");

    // Both portals offer target a with both adapters' disks; the NAA id from the configuration is what VPD 83h says.
    let o = run(30, iscsi_ls, &["-s", "-i", me, &format!("iscsi://127.0.0.1:{}", p.p1)]);
    assert!(o.stdout.contains("Lun:0") && o.stdout.contains("Lun:1"), "{}{}", o.stdout, o.stderr);
    if let Some(p6) = p.p6 {
        let o = run(30, iscsi_ls, &["-s", "-i", me, &format!("iscsi://[::1]:{p6}")]);
        assert!(
            o.stdout.contains("iqn.2026-12.io.scsiport:a") && o.stdout.contains("Lun:1"),
            "{}{}",
            o.stdout,
            o.stderr
        );
    }
    let o = run(30, iscsi_inq, &["-i", me, "-e", "1", "-c", "131", &format!("{a}/1")]);
    assert!(o.ok && o.stdout.contains("Designator Type:(3) NAA"), "{}{}", o.stdout, o.stderr);
    // Access control: b admits one initiator name, c wants CHAP.
    let b = format!("iscsi://127.0.0.1:{}/iqn.2026-12.io.scsiport:b/0", p.p2);
    let o = run(30, iscsi_inq, &["-i", me, &b]);
    assert!(!o.ok && o.stderr.contains("Authorization failure"), "{}{}", o.stdout, o.stderr);
    assert!(run(30, iscsi_inq, &["-i", "iqn.2026-12.test:only-this-one", &b]).ok);
    let c = format!("iscsi://127.0.0.1:{}/iqn.2026-12.io.scsiport:c/3", p.p2);
    assert!(!run(30, iscsi_inq, &["-i", me, &c]).ok, "CHAP is required");
    let c_chap = format!("iscsi://user%secret-12345@127.0.0.1:{}/iqn.2026-12.io.scsiport:c/3", p.p2);
    let o = run(30, iscsi_inq, &["-i", me, &c_chap]);
    assert!(o.ok && o.stdout.contains("Vendor:ACME"), "{}{}", o.stdout, o.stderr);

    // Clients that keep working through every change below: an iSCSI session reading LUN 0 of target a, and fio
    // writing and verifying export "first".
    let errors_before = s.ok(&["counters"])["lus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["frontend"] == "iscsi" && x["disk"] == "scsi0:0:0")
        .map_or(0, |x| x["errors"].as_u64().unwrap());
    let perf_url = format!("{a}/0");
    // Without a time limit (iscsi-perf misses its own end when a second passes without a tick on a loaded
    // machine); it is stopped below, after the checks.
    let mut perf = Command::new(iscsi_perf)
        .args(["-n", "-x", "0", "-i", me, &perf_url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let fio_job = {
        let (bin, nbd) = (fio.clone(), p.nbd);
        std::thread::spawn(move || {
            run(
                120,
                &bin,
                &[
                    "--name=keep",
                    "--ioengine=nbd",
                    &format!("--uri=nbd://127.0.0.1:{nbd}/first"),
                    "--rw=randwrite",
                    "--bs=16k",
                    "--size=16m",
                    "--iodepth=8",
                    "--verify=crc32c",
                    "--verify_state_save=0",
                    "--do_verify=1",
                    "--loops=3",
                ],
            )
        })
    };
    let reads = |s: &Serve| {
        s.ok(&["counters"])["lus"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["frontend"] == "iscsi" && x["disk"] == "scsi0:0:0")
            .map_or(0, |x| x["reads"].as_u64().unwrap())
    };
    let perf_session = |s: &Serve| {
        s.ok(&["sessions"])
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["initiator"] == me && x["target"] == "iqn.2026-12.io.scsiport:a")
            .map(|x| x["tsih"].as_u64().unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let perf_tsih = loop {
        if let (Some(t), true) = (perf_session(&s), reads(&s) > 0) {
            break t;
        }
        assert!(Instant::now() < deadline, "iscsi-perf never started reading");
        std::thread::sleep(Duration::from_millis(50));
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.ok(&["connections"])["nbd"].as_array().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "fio never connected");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A LU added to target a at run time.
    s.ok(&["add-lun", "iqn.2026-12.io.scsiport:a", "2", "scsi0:1:0"]);
    let o = run(30, iscsi_ls, &["-s", "-i", me, &format!("iscsi://127.0.0.1:{}", p.p1)]);
    assert!(o.stdout.contains("Lun:2"), "{}", o.stdout);
    assert!(s.ctl(&["add-lun", "iqn.2026-12.io.scsiport:a", "2", "scsi0:0:0"]).unwrap_err().contains("already mapped"));
    // An export added and one removed.
    s.ok(&["add-export", "third", "scsi0:1:0", "--description", "added"]);
    s.ok(&["remove-export", "second"]);
    let o = run(30, nbdinfo, &["--list", &format!("nbd://127.0.0.1:{}", p.nbd)]);
    assert!(o.stdout.contains("export=\"third\"") && !o.stdout.contains("export=\"second\""), "{}", o.stdout);
    // A medium error switched on and off on the disk behind export "third".
    let third = format!("nbd://127.0.0.1:{}/third", p.nbd);
    s.ok(&["fault", "scsi0:1:0", "--medium-error", "0:8"]);
    let o = run(30, qemu_io, &["-f", "raw", "-c", "read 0 4096", &third]);
    assert!(
        !o.ok || o.stderr.contains("error") || o.stdout.contains("error"),
        "the medium error did not reach the client: {}{}",
        o.stdout,
        o.stderr
    );
    s.ok(&["fault", "scsi0:1:0"]);
    let o = run(30, qemu_io, &["-f", "raw", "-c", "read 0 4096", &third]);
    assert!(o.ok && !o.stdout.contains("error"), "{}{}", o.stdout, o.stderr);
    // The verifier mode of one adapter.
    s.ok(&["verifier", "scsi1", "warn"]);
    let ad = s.ok(&["adapters"]);
    assert_eq!(ad[1]["verifier"], "warn");
    assert_eq!(ad[0]["verifier"], "strict");
    s.ok(&["remove-lun", "iqn.2026-12.io.scsiport:a", "2"]);
    // Target a's access list changed at run time: later logins follow it; the running session is not touched.
    let ta = "iqn.2026-12.io.scsiport:a";
    let a0 = format!("{a}/0");
    let guest = "iqn.2027-01.io.example:guest";
    assert!(!run(30, iscsi_inq, &["-i", guest, &a0]).ok, "not admitted yet");
    let now = s.ok(&["acl-add", ta, guest]);
    assert_eq!(now["initiators"], serde_json::json!(["iqn.2026-12.test:*", guest]));
    let o = run(30, iscsi_inq, &["-i", guest, &a0]);
    assert!(o.ok, "the added initiator: {}{}", o.stdout, o.stderr);
    s.ok(&["acl-remove", ta, "iqn.2026-12.test:*"]);
    let o = run(30, iscsi_inq, &["-i", "iqn.2026-12.test:late", &a0]);
    assert!(!o.ok && o.stderr.contains("Authorization failure"), "{}{}", o.stdout, o.stderr);
    assert!(s.ctl(&["acl-remove", ta, guest]).unwrap_err().contains("last entry"));
    assert!(s.ctl(&["acl-add", ta, &guest.to_uppercase()]).unwrap_err().contains("already on the access list"));
    assert!(s.ctl(&["acl-add", "iqn.2026-12.io.scsiport:nope", guest]).unwrap_err().contains("no target"));
    assert_eq!(s.ok(&["targets"])[0]["initiators"], serde_json::json!([guest]));
    s.ok(&["acl-add", ta, "iqn.2026-12.test:*"]);
    assert!(run(30, iscsi_inq, &["-i", "iqn.2026-12.test:late", &a0]).ok, "admitted again");

    // The iSCSI session is the one that logged in before the changes, and it still reads.
    assert_eq!(perf_session(&s), Some(perf_tsih), "the iSCSI session was disturbed");
    let r0 = reads(&s);
    let deadline = Instant::now() + Duration::from_secs(30);
    while reads(&s) == r0 {
        assert!(Instant::now() < deadline, "the iSCSI session stopped reading");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(perf.try_wait().unwrap().is_none(), "iscsi-perf ended");
    let _ = perf.kill();
    let _ = perf.wait();
    let fio_out = fio_job.join().unwrap();
    assert!(fio_out.ok, "fio on export first was disturbed: {}{}", fio_out.stdout, fio_out.stderr);
    assert!(!fio_out.stdout.contains("verify:") || !fio_out.stdout.contains("bad"), "{}", fio_out.stdout);
    // The running session was told once per change of target a's LUN map (REPORTED LUNS DATA HAS CHANGED); the
    // counters see that as failed commands on the LU it was reading.
    let errors_after = s.ok(&["counters"])["lus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["frontend"] == "iscsi" && x["disk"] == "scsi0:0:0")
        .map(|x| x["errors"].as_u64().unwrap())
        .unwrap();
    assert!(errors_after > errors_before, "no unit attention reached the running session");

    // Closing a session: it is gone (libiscsi logs in again as a new session, with a new TSIH).
    let mut perf_b = Command::new(iscsi_perf)
        .args(["-n", "-i", "iqn.2026-12.test:only-this-one", &b])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let b_sessions = |s: &Serve| -> Vec<u64> {
        s.ok(&["sessions"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["target"] == "iqn.2026-12.io.scsiport:b")
            .map(|x| x["tsih"].as_u64().unwrap())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let tsih = loop {
        if let Some(t) = b_sessions(&s).first() {
            break *t;
        }
        assert!(Instant::now() < deadline, "iscsi-perf never logged in to b");
        std::thread::sleep(Duration::from_millis(50));
    };
    s.ok(&["close-session", &tsih.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while b_sessions(&s).contains(&tsih) {
        assert!(Instant::now() < deadline, "the session outlived close-session");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = perf_b.kill();
    let _ = perf_b.wait();
    assert!(s.ctl(&["close-session", "65000"]).unwrap_err().contains("no session"));

    // Bad requests are refused with a reason, and the server carries on.
    assert!(s.ctl(&["add-lun", "iqn.2026-12.io.scsiport:nope", "1", "scsi0:0:0"]).unwrap_err().contains("no target"));
    assert!(s.ctl(&["raw", "{\"cmd\":\"explode\"}"]).unwrap_err().contains("bad request"));
    assert!(s.ctl(&["fault", "scsi7:0:0"]).unwrap_err().contains("no disk"));
    assert!(s.ok(&["list"])["iscsi"]["targets"].as_array().unwrap().len() == 3);
}

#[test]
fn sighup_applies_what_changed_and_refuses_a_bad_file() {
    let Some(t) = tools(&["nbdinfo", "iscsi-inq"]) else { return };
    let (nbdinfo, iscsi_inq) = (&t[0], &t[1]);
    let dir = tempfile::tempdir().unwrap();
    let p = ports();
    let text = config(dir.path(), &p);
    let s = Serve::start(dir.path(), &text, &[]);
    // A LUN, an export, a fault and a verifier mode change; an IRQ change needs a restart.
    let changed = text
        .replace(
            "luns = [{ lun = 0, disk = \"scsi0:1:0\" }]",
            "luns = [{ lun = 0, disk = \"scsi0:1:0\" }, { lun = 4, disk = \"scsi1:0:0\" }]",
        )
        .replace("name = \"second\"", "name = \"renamed\"")
        .replace("revision = \"R7\"", "revision = \"R7\"\nfaults = { busy = 1 }")
        .replace("dma_channel = 1\n", "dma_channel = 1\nverifier = \"off\"\n")
        .replace("irq = 10", "irq = 9")
        .replace(
            "initiators = [\"iqn.2026-12.test:only-this-one\"]",
            "initiators = [\"iqn.2026-12.test:only-this-one\", \"iqn.2026-12.test:reloaded\"]",
        );
    assert_ne!(changed, text);
    std::fs::write(&s.config, &changed).unwrap();
    s.signal(libc::SIGHUP);
    s.wait_line("reload: not applied (needs a restart): adapter", 30);
    let lines = s.lines().join("\n");
    assert!(lines.contains("reload: target iqn.2026-12.io.scsiport:b: LUN 4 is scsi1:0:0"), "{lines}");
    assert!(
        lines.contains("reload: export second removed") && lines.contains("reload: export renamed serves scsi1:0:0"),
        "{lines}"
    );
    assert!(lines.contains("reload: adapter scsi1: verifier Off"), "{lines}");
    assert!(
        lines.contains(
            "reload: target iqn.2026-12.io.scsiport:b: initiators iqn.2026-12.test:only-this-one, iqn.2026-12.test:reloaded"
        ),
        "{lines}"
    );
    assert!(lines.contains("reload: disk scsi1:0:0: faults"), "{lines}");
    let o = run(30, nbdinfo, &["--list", &format!("nbd://127.0.0.1:{}", p.nbd)]);
    assert!(o.stdout.contains("export=\"renamed\"") && !o.stdout.contains("export=\"second\""), "{}", o.stdout);
    // The first command to the disk meets the BUSY the reload armed; the next one finds the new LUN.
    let b4 = format!("iscsi://127.0.0.1:{}/iqn.2026-12.io.scsiport:b/4", p.p2);
    let o = run(30, iscsi_inq, &["-i", "iqn.2026-12.test:only-this-one", &b4]);
    assert!(!o.ok && o.stderr.contains("BUSY"), "{}{}", o.stdout, o.stderr);
    let o = run(30, iscsi_inq, &["-i", "iqn.2026-12.test:only-this-one", &b4]);
    assert!(o.ok && o.stdout.contains("Vendor:ACME"), "{}{}", o.stdout, o.stderr);
    let o = run(30, iscsi_inq, &["-i", "iqn.2026-12.test:reloaded", &b4]);
    assert!(o.ok, "the initiator the reload admitted: {}{}", o.stdout, o.stderr);
    let d = s.ok(&["disks"]);
    assert_eq!(d[2]["faults"]["busy"], 1, "{d}");
    assert_eq!(s.ok(&["adapters"])[1]["verifier"], "off");

    // A bad file: the same message as at start-up, and nothing changes.
    std::fs::write(&s.config, changed.replace("dma_channel = 1\n", "dma_channel = 4\n")).unwrap();
    s.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.stderr().contains("reload refused") {
        assert!(Instant::now() < deadline, "no refusal: {}", s.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(s.stderr().contains("adapter[1].dma_channel: 4 is not a device channel"), "{}", s.stderr());
    assert_eq!(s.ok(&["exports"]).as_array().unwrap().len(), 2, "the server keeps running as it was");
    // `ctl reload` says the same.
    assert!(s.ctl(&["reload"]).unwrap_err().contains("adapter[1].dma_channel"));
}

#[test]
fn metrics_count_what_fio_did() {
    let Some(t) = tools(&["fio"]) else { return };
    let fio = &t[0];
    let dir = tempfile::tempdir().unwrap();
    let p = ports();
    let _server = Serve::start(dir.path(), &config(dir.path(), &p), &[]);
    let key = |m: &str| format!("{m}{{frontend=\"nbd\",disk=\"scsi0:0:0\"}}");
    let before = scrape(p.metrics);
    let o = run(
        180,
        fio,
        &[
            "--name=count",
            "--ioengine=nbd",
            &format!("--uri=nbd://127.0.0.1:{}/first", p.nbd),
            "--rw=randrw",
            "--rwmixread=60",
            "--bsrange=4k-64k",
            "--size=64m",
            "--io_size=96m",
            "--iodepth=16",
            "--output-format=json",
        ],
    );
    assert!(o.ok, "{}{}", o.stdout, o.stderr);
    let after = scrape(p.metrics);
    let j: Value = serde_json::from_str(&o.stdout[o.stdout.find('{').unwrap()..]).unwrap();
    let job = &j["jobs"][0];
    let fio_reads = job["read"]["total_ios"].as_f64().unwrap();
    let fio_writes = job["write"]["total_ios"].as_f64().unwrap();
    let fio_rbytes = job["read"]["io_bytes"].as_f64().unwrap();
    let fio_wbytes = job["write"]["io_bytes"].as_f64().unwrap();
    let d = |m: &str| sample(&after, &key(m)) - before.iter().find(|(k, _)| *k == key(m)).map_or(0.0, |(_, v)| *v);
    let close = |ours: f64, theirs: f64| (ours - theirs).abs() <= theirs * 0.01;
    assert!(fio_reads > 100.0 && fio_writes > 100.0, "{fio_reads} {fio_writes}");
    for (name, ours, theirs) in [
        ("reads", d("scsiport_lu_reads_total"), fio_reads),
        ("writes", d("scsiport_lu_writes_total"), fio_writes),
        ("read bytes", d("scsiport_lu_read_bytes_total"), fio_rbytes),
        ("write bytes", d("scsiport_lu_write_bytes_total"), fio_wbytes),
    ] {
        assert!(close(ours, theirs), "{name}: metrics {ours}, fio {theirs}");
    }
    assert_eq!(d("scsiport_lu_errors_total"), 0.0);
    assert_eq!(sample(&after, &key("scsiport_lu_in_flight")), 0.0);
    // Every read and write is in its latency histogram.
    assert_eq!(d("scsiport_lu_read_latency_seconds_count"), d("scsiport_lu_reads_total"));
    let inf = "scsiport_lu_write_latency_seconds_bucket{frontend=\"nbd\",disk=\"scsi0:0:0\",le=\"+Inf\"}";
    assert_eq!(sample(&after, inf), sample(&after, &key("scsiport_lu_write_latency_seconds_count")));
    // The adapter moved it with the DMA model.
    assert!(sample(&after, "scsiport_adapter_dma_bytes_total{adapter=\"scsi0\"}") >= fio_rbytes + fio_wbytes);
    assert_eq!(sample(&after, "scsiport_adapter_verifier_violations_total{adapter=\"scsi0\"}"), 0.0);
    // Anything but /metrics is 404.
    let mut c = std::net::TcpStream::connect(("127.0.0.1", p.metrics)).unwrap();
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
}

/// The iSCSI side of the count: fio has no iSCSI engine here (Debian builds it without libiscsi), so the initiator is
/// `qemu-img bench` over libiscsi, which issues exactly `-c` requests of `-s` bytes each. Reads and writes of three
/// sizes, some of them larger than the adapter's 64 KiB transfer limit (the port splits those; the LU counts the
/// initiator's commands, not the SRBs).
#[test]
fn metrics_count_what_an_iscsi_initiator_did() {
    let Some(root) = qemu_iscsi_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = ports();
    let _server = Serve::start(dir.path(), &config(dir.path(), &p), &[]);
    let key = |m: &str| format!("{m}{{frontend=\"iscsi\",disk=\"scsi1:0:0\"}}");
    let module_dir = format!("QEMU_MODULE_DIR={}", root.join("usr/lib/x86_64-linux-gnu/qemu").display());
    let qemu_img = root.join("usr/bin/qemu-img");
    let image = format!(
        "driver=iscsi,transport=tcp,portal=127.0.0.1:{},target=iqn.2026-12.io.scsiport:a,lun=1,\
         initiator-name=iqn.2026-12.test:metrics",
        p.p1
    );
    let before = scrape(p.metrics);
    let (mut reads, mut writes, mut rbytes, mut wbytes) = (0.0, 0.0, 0.0, 0.0);
    for (write, count, size, depth) in
        [(true, 3000u32, 4096u32, 16u32), (false, 4000, 8192, 32), (true, 600, 131072, 4), (false, 500, 65536, 8)]
    {
        let (c, s, d) = (count.to_string(), size.to_string(), depth.to_string());
        let mut args = vec![module_dir.as_str(), qemu_img.to_str().unwrap(), "bench", "-c", &c, "-s", &s, "-d", &d];
        if write {
            args.push("-w");
        }
        args.extend_from_slice(&["--image-opts", &image]);
        let o = run(180, "env", &args);
        assert!(o.ok, "qemu-img {args:?}: {}{}", o.stdout, o.stderr);
        assert!(o.stdout.contains("Run completed"), "{}", o.stdout);
        if write {
            writes += f64::from(count);
            wbytes += f64::from(count) * f64::from(size);
        } else {
            reads += f64::from(count);
            rbytes += f64::from(count) * f64::from(size);
        }
    }
    let after = scrape(p.metrics);
    let d = |m: &str| sample(&after, &key(m)) - before.iter().find(|(k, _)| *k == key(m)).map_or(0.0, |(_, v)| *v);
    let close = |ours: f64, theirs: f64| (ours - theirs).abs() <= theirs * 0.01;
    for (name, ours, theirs) in [
        ("reads", d("scsiport_lu_reads_total"), reads),
        ("writes", d("scsiport_lu_writes_total"), writes),
        ("read bytes", d("scsiport_lu_read_bytes_total"), rbytes),
        ("write bytes", d("scsiport_lu_write_bytes_total"), wbytes),
    ] {
        assert!(close(ours, theirs), "{name}: metrics {ours}, qemu-img {theirs}");
    }
    assert_eq!(sample(&after, &key("scsiport_lu_in_flight")), 0.0);
    assert_eq!(d("scsiport_lu_read_latency_seconds_count"), d("scsiport_lu_reads_total"));
    assert_eq!(d("scsiport_lu_write_latency_seconds_count"), d("scsiport_lu_writes_total"));
    // The other adapter carried it, with the DMA model.
    assert!(sample(&after, "scsiport_adapter_dma_bytes_total{adapter=\"scsi1\"}") >= rbytes + wbytes);
    assert_eq!(sample(&after, "scsiport_adapter_verifier_violations_total{adapter=\"scsi1\"}"), 0.0);
}

#[test]
fn readiness_is_notified_to_the_service_manager() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let p = ports();
    let s = Serve::start(dir.path(), &config(dir.path(), &p), &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())]);
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("no notification");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(msg.contains("READY=1"), "{msg}");
    assert!(msg.contains(&format!("MAINPID={}", s.child.id())), "{msg}");
    // Notified only once everything listens: the control socket answers.
    s.ok(&["list"]);
    drop(s);
    let n = sock.recv(&mut buf).expect("no STOPPING notification");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
}

#[test]
fn the_documented_operator_example_is_a_valid_configuration() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md")).unwrap();
    let at = doc.find("## An operator's file").expect("the section");
    let start = at + doc[at..].find("```toml\n").unwrap() + "```toml\n".len();
    let text = &doc[start..start + doc[start..].find("```").unwrap()];
    let cfg = scsiport::config::Config::from_toml(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.adapters.len(), 2);
    let targets = scsiport::frontends_config::iscsi_targets(&cfg);
    assert_eq!(targets.len(), 3);
    assert_eq!(targets[0].portals.len(), 2);
    assert!(targets[0].target_config(targets[0].portals[0]).admits("iqn.2004-10.com.ubuntu:db-7"));
    assert_eq!(scsiport::frontends_config::nbd_exports(&cfg).len(), 2);
    assert!(cfg.metrics.listen.is_some());
    // The unit file beside it is the one the document shows.
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/scsiport.service")).unwrap();
    let control = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/control.md")).unwrap();
    assert!(control.contains(&unit), "docs/scsiport.service and docs/control.md disagree");
    assert!(unit.contains("Type=notify"));
}
