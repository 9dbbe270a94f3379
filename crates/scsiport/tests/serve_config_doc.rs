//! The complete example file of docs/config.md is a configuration `scsiport serve` accepts and starts with.

mod serve_common;

use scsiport::config::{BackendKind, Config};
use serve_common::{free_port, run, NbdClient};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn doc_example() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md");
    let doc = std::fs::read_to_string(path).expect("docs/config.md");
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let len = doc[start..].find("```").expect("the block ends");
    doc[start..start + len].to_string()
}

#[test]
fn the_documented_example_parses_with_every_section() {
    let cfg = Config::from_toml(&doc_example()).expect("the example is valid");
    assert_eq!(cfg.machine.bus, scsiport::config::BusKind::Isa);
    assert_eq!(cfg.machine.timing.as_deref(), Some("pc-at-8mhz"));
    assert_eq!(cfg.memory.size.0, 512 << 20);
    assert_eq!(cfg.adapters.len(), 2);
    assert_eq!(cfg.adapters[0].disks.len(), 2);
    assert_eq!(cfg.adapters[0].disks[1].backend, BackendKind::Ram);
    assert_eq!(cfg.adapters[1].dma_channel, 1);
    assert_eq!(cfg.adapters[1].verifier, Some(port::VerifierMode::Warn));
    assert!(cfg.adapters[1].disks[0].faults.is_some());
    assert!(cfg.nbd.unix.is_some());
    assert_eq!(cfg.iscsi.mutual_chap_user.as_deref(), Some("target"));
}

#[test]
fn serve_starts_on_the_documented_example() {
    let dir = tempfile::Builder::new().prefix("scsiport-doc-").tempdir().expect("temp dir");
    let nbd_port = free_port();
    let iscsi_port = (0..100).map(|_| free_port()).find(|p| *p != nbd_port).expect("a second free port");
    let text = doc_example()
        .replace("./scsiport-data", dir.path().to_str().expect("utf-8 path"))
        .replace("127.0.0.1:10809", &format!("127.0.0.1:{nbd_port}"))
        .replace("127.0.0.1:3260", &format!("127.0.0.1:{iscsi_port}"));
    let cfg_path = dir.path().join("scsiport.toml");
    std::fs::write(&cfg_path, text).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_scsiport"))
        .args(["serve", "--config", cfg_path.to_str().expect("utf-8 path")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start scsiport serve");
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut banner = Vec::new();
    while let Ok(l) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let ready = l.starts_with("ready");
        banner.push(l);
        if ready {
            break;
        }
    }
    let result = std::panic::catch_unwind(|| {
        assert!(banner.iter().any(|l| l.starts_with("ready")), "{banner:?}");
        assert!(banner.iter().any(|l| l.starts_with("adapter scsi1:")), "{banner:?}");
        let c = NbdClient::connect(nbd_port, "default").expect("NBD on the documented export");
        assert_eq!(c.size, 1 << 30);
        assert!(dir.path().join("nbd.sock").exists(), "the Unix socket is there");
        if let Some(inq) = serve_common::tool("iscsi-inq") {
            // The documented CHAP settings are in force: without credentials the login is refused.
            let url = format!("iscsi://127.0.0.1:{iscsi_port}/iqn.2026-11.io.scsiport:default/0");
            let o = run(30, &inq, &[&url]);
            assert!(!o.ok, "login without CHAP credentials must fail: {}", o.stdout);
        }
    });
    // SAFETY: kill(2) on our own, not yet reaped child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exit after SIGTERM");
}
