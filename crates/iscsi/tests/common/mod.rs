//! Shared helpers for the integration tests: an in-process server on an ephemeral
//! loopback port over a RAM disk, and bounded runs of external tools.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use iscsi::{DirectBackend, IscsiServer, TargetConfig};
use tokio::sync::watch;

pub mod client;

pub const TARGET: &str = "iqn.2026-11.io.scsiport:test";
pub const DISK_BYTES: u64 = 64 << 20;

pub struct Running {
    pub addr: SocketAddr,
    pub server: Arc<IscsiServer<DirectBackend>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub fn url(&self, lun: u64) -> String {
        format!("iscsi://{}/{TARGET}/{lun}", self.addr)
    }

    /// Stops the server and waits (bounded) for it to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let done = tokio::time::timeout(Duration::from_secs(30), self.task).await;
        assert!(matches!(done, Ok(Ok(Ok(())))), "server did not stop cleanly");
    }
}

/// Starts a server with one target over a fresh RAM disk; `tweak` adjusts the config.
pub async fn start(tweak: impl FnOnce(&mut TargetConfig)) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let mut cfg = TargetConfig::new(TARGET, addr);
    tweak(&mut cfg);
    let backend = DirectBackend::ram_disk(DISK_BYTES).expect("RAM disk");
    let server = Arc::new(IscsiServer::new(vec![(cfg, Arc::new(backend))]));
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server.clone().serve(listener, rx));
    Running { addr, server, stop, task }
}

/// Finds an external tool. When it is missing the test fails under CI and is skipped
/// (with a message) otherwise.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()));
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{name} is required under CI (apt-get install libiscsi-bin)");
        }
        eprintln!("skipping: {name} not installed");
    }
    found
}

/// Runs a tool with a time limit, killing it if it overruns.
pub async fn run(program: &PathBuf, args: &[&str], envs: &[(&str, &str)], limit: Duration) -> Output {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    match tokio::time::timeout(limit, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("cannot run {}: {e}", program.display()),
        Err(_) => panic!("{} {args:?} did not finish within {limit:?}", program.display()),
    }
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Per-test results of an `iscsi-test-cu` run: CUnit counts a skipped test as passed,
/// so each `Test: NAME ...` line is read with what follows it until the next test.
#[derive(Debug, Default)]
pub struct CuResults {
    pub passed: Vec<String>,
    pub failed: Vec<String>,
    pub skipped: Vec<String>,
}

pub fn parse_cu(output: &str) -> CuResults {
    let mut r = CuResults::default();
    let mut current: Option<(String, String)> = None;
    let finish = |cur: Option<(String, String)>, r: &mut CuResults| {
        if let Some((name, body)) = cur {
            // The verdict is a bare FAILED (alone or right after "..."); "[FAILED]"
            // lines inside a test are expected failures it logs on its way to passing.
            let failed = body.lines().any(|l| l.trim() == "FAILED");
            if failed {
                r.failed.push(name);
            } else if body.contains("[SKIPPED]") {
                r.skipped.push(name);
            } else if body.lines().any(|l| l.trim_end().ends_with("passed")) {
                r.passed.push(name);
            } else {
                r.failed.push(name);
            }
        }
    };
    for line in output.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("Test: ") {
            finish(current.take(), &mut r);
            let (name, tail) = rest.split_once(" ...").unwrap_or((rest, ""));
            current = Some((name.trim().to_owned(), tail.to_owned()));
        } else if line.starts_with("Run Summary") || line.starts_with("Suite: ") {
            finish(current.take(), &mut r);
        } else if let Some((_, body)) = current.as_mut() {
            body.push('\n');
            body.push_str(line);
        }
    }
    finish(current, &mut r);
    r
}
