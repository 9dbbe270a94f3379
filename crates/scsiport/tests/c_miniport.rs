//! An out-of-tree miniport written in C (`crates/miniport-c/c/refcard.c`, built with the documented one-line `cc`
//! command) under the real binary: `exercise --miniport` verifies every byte through the class driver (one DMA
//! operation per SRB) and pass-through SRBs (several, a flush after each); `serve --miniport` round-trips data over
//! NBD (our client and libnbd's `nbdcopy`); a build with a deliberate mistake is named by the verifier on stderr; a
//! missing library stops start-up naming the field.

mod serve_common;

use serve_common::{pattern, run, tool, NbdClient, ServeOptions, Server, MIB};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `cc -shared -fPIC -I include refcard.c -o librefcard.so` (plus `defines`), once per flag set.
fn build(defines: &[&str]) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let key = defines.join(" ");
    let mut built = BUILT.lock().unwrap();
    if let Some((_, p)) = built.iter().find(|(k, _)| *k == key) {
        return p.clone();
    }
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let out = dir.path().join(format!("librefcard{}.so", built.len()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let o = Command::new(&cc)
        .args(["-shared", "-fPIC", "-I"])
        .arg(repo().join("include"))
        .args(defines)
        .arg(repo().join("crates/miniport-c/c/refcard.c"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    assert!(o.status.success(), "{cc} failed:\n{}", String::from_utf8_lossy(&o.stderr));
    built.push((key, out.clone()));
    out
}

fn exercise(lib: &Path, extra: &[&str]) -> serve_common::Output {
    let lib = lib.to_str().unwrap();
    let mut args = vec!["exercise", "--miniport", lib, "--size", "16MiB", "--json"];
    args.extend_from_slice(extra);
    run(120, env!("CARGO_BIN_EXE_scsiport"), &args)
}

#[test]
fn exercise_verifies_every_byte_through_a_c_miniport() {
    let lib = build(&[]);
    let out = exercise(&lib, &[]);
    assert!(out.ok, "exercise failed: {}\n{}", out.stdout, out.stderr);
    let r: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(r["verified"], true);
    assert_eq!(r["violations"], 0);
    assert_eq!(r["dma_ops"], r["srbs"], "one DMA operation per class-driver SRB: {r}");

    let out = exercise(&lib, &["--passthrough", "--channel", "1"]);
    assert!(out.ok, "exercise --passthrough failed: {}\n{}", out.stdout, out.stderr);
    let r: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(r["verified"], true);
    assert_eq!(r["violations"], 0);
    assert_eq!(r["channel"], 1);
    let (ops, srbs) = (r["dma_ops"].as_u64().unwrap(), r["srbs"].as_u64().unwrap());
    assert_eq!(ops, srbs * 16, "1 MiB pass-through SRBs in 64 KiB sub-ranges: {r}");
    assert_eq!(r["flushes"].as_u64().unwrap(), ops, "a flush after each DMA operation");
}

#[test]
fn the_verifier_names_the_mistake_of_a_broken_c_miniport() {
    let out = exercise(&build(&["-DREFCARD_BUG=1"]), &["--passthrough", "--channel", "1"]);
    assert!(!out.ok, "a miniport that maps before flushing must not pass");
    assert!(out.stderr.contains("verifier: scsi0: map-before-flush"), "{}", out.stderr);
    let out = exercise(&build(&["-DREFCARD_BUG=3"]), &[]);
    assert!(!out.ok);
    assert!(out.stderr.contains("srb-field-not-writable"), "{}", out.stderr);
    assert!(out.stderr.contains("Cdb"), "the field is named: {}", out.stderr);
}

#[test]
fn a_missing_miniport_stops_start_up_naming_the_field() {
    let out = run(30, env!("CARGO_BIN_EXE_scsiport"), &["exercise", "--miniport", "/nonexistent/libx.so"]);
    assert!(!out.ok);
    assert!(out.stderr.contains("adapter[0].miniport") && out.stderr.contains("no such file"), "{}", out.stderr);
}

#[test]
fn serve_with_a_c_miniport_round_trips_nbd_data() {
    let lib = build(&[]);
    let mut opts = ServeOptions::ram("64MiB");
    opts.extra = vec!["--miniport".into(), lib.to_str().unwrap().into()];
    let srv = Server::start(&opts);
    let mut c = NbdClient::connect(srv.nbd_port, "default").expect("connect");
    let data = pattern(3 * MIB as usize + 4096, 11);
    c.write(5 * MIB + 512, &data, false).expect("write");
    c.flush().expect("flush");
    let back = c.read(5 * MIB + 512, data.len() as u32).expect("read");
    assert!(back == data, "NBD read-back differs");
    drop(c);

    let Some(nbdcopy) = tool("nbdcopy") else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    let dst = dir.path().join("dst.img");
    std::fs::write(&src, pattern(16 * MIB as usize, 5)).unwrap();
    let uri = srv.uri();
    let out = run(120, &nbdcopy, &[src.to_str().unwrap(), &uri]);
    assert!(out.ok, "nbdcopy to the server: {}", out.stderr);
    let out = run(120, &nbdcopy, &[&uri, dst.to_str().unwrap()]);
    assert!(out.ok, "nbdcopy from the server: {}", out.stderr);
    let got = std::fs::read(&dst).unwrap();
    assert_eq!(got.len() as u64, 64 * MIB);
    assert!(got[..16 * MIB as usize] == pattern(16 * MIB as usize, 5)[..], "nbdcopy round trip differs");
}

/// `scsiport serve` with `args`, NBD and iSCSI on free ports of 127.0.0.1, once it printed "ready".
struct Serving {
    child: std::process::Child,
    nbd_port: u16,
    iscsi_port: u16,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(args: &[&str]) -> Serving {
    for _ in 0..5 {
        let (nbd, iscsi) = (serve_common::free_port(), serve_common::free_port());
        if nbd == iscsi {
            continue;
        }
        let mut c = Command::new(env!("CARGO_BIN_EXE_scsiport"))
            .arg("serve")
            .args(args)
            .args(["--nbd-listen", &format!("127.0.0.1:{nbd}"), "--iscsi-listen", &format!("127.0.0.1:{iscsi}")])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start scsiport serve");
        let out = c.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let ready = loop {
            match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok(l) if l.starts_with("ready") => break true,
                Ok(_) => {}
                Err(_) => break false,
            }
        };
        if ready {
            return Serving { child: c, nbd_port: nbd, iscsi_port: iscsi };
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    panic!("scsiport serve {args:?} did not become ready");
}

/// Run `iscsi-test-cu` suites against the server; assert none fails and at least `min` ran.
fn conformance(srv: &Serving, suites: &str, min: u32) {
    let Some(cu) = tool("iscsi-test-cu") else { return };
    let url = format!("iscsi://127.0.0.1:{}/iqn.2026-11.io.scsiport:default/0", srv.iscsi_port);
    let out = run(600, &cu, &["-t", suites, "-d", &url]);
    let summary = out.stdout.lines().find(|l| l.trim_start().starts_with("tests")).unwrap_or("").to_string();
    let f: Vec<&str> = summary.split_whitespace().collect();
    assert!(f.len() >= 5, "no run summary:\n{}\n{}", out.stdout, out.stderr);
    assert_eq!(f[4], "0", "failed tests: {summary}\n{}", out.stdout);
    assert!(f[3].parse::<u32>().unwrap() >= min, "{summary}");
}

/// NBD: our client, then `nbdcopy` both ways, through the server's default export.
fn nbd_round_trips(nbd_port: u16) {
    let mut c = NbdClient::connect(nbd_port, "default").expect("connect");
    let data = pattern(3 * MIB as usize + 4096, 11);
    c.write(5 * MIB + 512, &data, false).expect("write");
    c.flush().expect("flush");
    let back = c.read(5 * MIB + 512, data.len() as u32).expect("read");
    assert!(back == data, "NBD read-back differs");
    drop(c);
    let Some(nbdcopy) = tool("nbdcopy") else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    let dst = dir.path().join("dst.img");
    std::fs::write(&src, pattern(16 * MIB as usize, 5)).unwrap();
    let uri = format!("nbd://127.0.0.1:{nbd_port}/default");
    let out = run(120, &nbdcopy, &[src.to_str().unwrap(), &uri]);
    assert!(out.ok, "nbdcopy to the server: {}", out.stderr);
    let out = run(120, &nbdcopy, &[&uri, dst.to_str().unwrap()]);
    assert!(out.ok, "nbdcopy from the server: {}", out.stderr);
    let got = std::fs::read(&dst).unwrap();
    assert!(got[..16 * MIB as usize] == pattern(16 * MIB as usize, 5)[..], "nbdcopy round trip differs");
}

/// libiscsi's `iscsi-test-cu` against `serve` with the C miniport: the data commands and the persistent reservation
/// suites (which need each initiator's own I_T nexus on the bus: `ScsiPortGetRequesterNexus` and SET IDENTITY) pass.
#[test]
fn serve_with_a_c_miniport_passes_iscsi_conformance_suites() {
    let lib = build(&[]);
    let srv = serve(&["--ram", "--disk-size", "64MiB", "--miniport", lib.to_str().unwrap()]);
    conformance(
        &srv,
        "SCSI.Read10,SCSI.Write10,SCSI.Read16,SCSI.Write16,SCSI.ProutRegister,SCSI.ProutReserve,SCSI.ProutClear,\
         SCSI.ProutPreempt,SCSI.PrinReadKeys,SCSI.Reserve6",
        20,
    );
}

/// The ESP card, driven by its C miniport: `exercise --hba esp` verifies every byte (one DMA operation per class
/// SRB; pass-through SRBs on channel 1 in 64 KiB sub-ranges, a flush after each).
#[test]
fn exercise_on_the_esp_adapter() {
    let out = run(120, env!("CARGO_BIN_EXE_scsiport"), &["exercise", "--hba", "esp", "--size", "16MiB", "--json"]);
    assert!(out.ok, "exercise --hba esp: {}\n{}", out.stdout, out.stderr);
    let r: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(r["verified"], true);
    assert_eq!(r["violations"], 0);
    assert_eq!(r["dma_ops"], r["srbs"], "{r}");
    let args = ["exercise", "--hba", "esp", "--passthrough", "--channel", "1", "--size", "16MiB", "--json"];
    let out = run(120, env!("CARGO_BIN_EXE_scsiport"), &args);
    assert!(out.ok, "exercise --hba esp --passthrough: {}\n{}", out.stdout, out.stderr);
    let r: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(r["verified"], true);
    assert_eq!(r["violations"], 0);
    assert_eq!(r["channel"], 1);
    assert_eq!(r["dma_ops"].as_u64().unwrap(), r["srbs"].as_u64().unwrap() * 16, "{r}");
    assert_eq!(r["flushes"], r["dma_ops"]);
}

/// `serve` with an ESP adapter (`kind = "esp"`) sharing DMA channel 5 with a reference card: NBD round trips and
/// `nbdcopy` through the ESP's disk, iSCSI data suites through its pass-through path.
#[test]
fn serve_with_an_esp_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("esp.toml");
    std::fs::write(
        &cfg,
        "[[adapter]]\nname = \"esp0\"\nkind = \"esp\"\nio_base = 0x230\nirq = 10\ndma_channel = 5\n\
         [[adapter.disk]]\nbackend = \"ram\"\nsize = \"64MiB\"\n\
         [[adapter]]\nname = \"ref0\"\nio_base = 0x330\ndma_channel = 5\n\
         [[adapter.disk]]\nbackend = \"ram\"\nsize = \"16MiB\"\n\
         [nbd]\ndisk = \"esp0:0:0\"\n[iscsi]\nadapter = \"esp0\"\n",
    )
    .unwrap();
    let srv = serve(&["--config", cfg.to_str().unwrap()]);
    nbd_round_trips(srv.nbd_port);
    conformance(&srv, "SCSI.Read10,SCSI.Write10,SCSI.Read16,SCSI.Write16,SCSI.Verify10,SCSI.WriteSame10", 15);
}
