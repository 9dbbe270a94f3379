//! libiscsi's conformance suite (`iscsi-test-cu`) against the real `scsiport serve` binary: every command an SRB
//! through the port driver, the miniport, the HBA model and the 8237, as users reach it.
//!
//! `conformance-floor.txt` (next to this file) lists every test that really passes. A test on the floor that fails
//! or is skipped fails this test; a test that passes but is not on the floor is printed as a hint to grow the floor.
//! CUnit counts a skipped test as passed, so each `Test:` line is judged by what follows it.
//!
//! The same floor holds on both host adapters: the reference card (the default configuration) and the ESP card
//! (`kind = "esp"`, its miniport written in C), whose pass-through path carries each initiator's I_T nexus through
//! the card's identity latch as the reference card does through SET IDENTITY.
//!
//! The SCSI group runs as `iscsi-test-cu -d -S -t SCSI URL URL` (destructive and SANITIZE tests allowed, the same
//! URL twice to give the multipath tests a second path), the iSCSI group as `-d -t iSCSI URL`.

mod serve_common;

use serve_common::{free_port, run, tool};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A test's verdict as the output shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Passed,
    Failed,
    Skipped,
}

/// `GROUP.Suite.Test` → verdict, from `iscsi-test-cu` output. A bare `FAILED` (alone on a line or right after the
/// dots) is a failure; `[SKIPPED]` a skip; a trailing `passed` a pass; `[FAILED]` lines inside a test are failures
/// it expects and logs on its way to passing.
fn verdicts(group: &str, output: &str) -> BTreeMap<String, Verdict> {
    let mut out = BTreeMap::new();
    let mut suite = String::from("?");
    let mut current: Option<(String, String)> = None;
    let finish = |cur: Option<(String, String)>, out: &mut BTreeMap<String, Verdict>| {
        if let Some((name, body)) = cur {
            let lines: Vec<&str> = body.lines().map(str::trim).collect();
            let v = if lines.contains(&"FAILED") {
                Verdict::Failed
            } else if body.contains("[SKIPPED]") {
                Verdict::Skipped
            } else if lines.iter().any(|l| l.starts_with("passed") || l.ends_with("passed")) {
                Verdict::Passed
            } else {
                Verdict::Failed
            };
            out.insert(name, v);
        }
    };
    for line in output.lines() {
        if let Some(s) = line.trim_start().strip_prefix("Suite: ") {
            finish(current.take(), &mut out);
            suite = s.trim().to_owned();
        } else if let Some(rest) = line.trim_start().strip_prefix("Test: ") {
            finish(current.take(), &mut out);
            let (name, tail) = rest.split_once(" ...").unwrap_or((rest, ""));
            current = Some((format!("{group}.{suite}.{}", name.trim()), tail.to_owned()));
        } else if line.starts_with("Run Summary") {
            finish(current.take(), &mut out);
        } else if let Some((_, body)) = current.as_mut() {
            body.push('\n');
            body.push_str(line);
        }
    }
    finish(current, &mut out);
    out
}

fn floor() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance-floor.txt");
    let text = std::fs::read_to_string(path).expect("read conformance-floor.txt");
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect()
}

/// The host adapter the LU is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Adapter {
    /// The reference card with its Rust miniport (the embedded default configuration).
    Reference,
    /// The NCR 53C94-class card with its C miniport, alone on DMA channel 5.
    Esp,
}

/// `scsiport serve` with iSCSI only, on a 1 GiB RAM disk (the default's size), until dropped.
struct Target {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Target {
    fn start(adapter: Adapter) -> Target {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut args: Vec<String> = vec!["serve".into(), "--no-nbd".into()];
        if adapter == Adapter::Esp {
            let cfg = dir.path().join("esp.toml");
            std::fs::write(
                &cfg,
                "[[adapter]]\nname = \"esp0\"\nkind = \"esp\"\nio_base = 0x230\nirq = 10\ndma_channel = 5\n\
                 [[adapter.disk]]\nbackend = \"ram\"\nsize = \"1GiB\"\n[iscsi]\nadapter = \"esp0\"\n[nbd]\nenabled = false\n",
            )
            .expect("write the configuration");
            args.extend(["--config".into(), cfg.to_str().expect("UTF-8 path").into()]);
        } else {
            args.extend(["--ram".into(), "--disk-size".into(), "1GiB".into()]);
        }
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(env!("CARGO_BIN_EXE_scsiport"))
                .args(&args)
                .arg("--iscsi-listen")
                .arg(format!("127.0.0.1:{port}"))
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start scsiport serve");
            let out = child.stdout.take().expect("piped stdout");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
            let ready =
                std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(60)).ok()).any(|l| l.starts_with("ready"));
            if ready {
                return Target { child, port, _dir: dir };
            }
            let _ = child.kill();
            let _ = child.wait();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut last);
            }
        }
        panic!("scsiport serve did not become ready: {last}");
    }

    fn url(&self) -> String {
        format!("iscsi://127.0.0.1:{}/iqn.2026-11.io.scsiport:default/0", self.port)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn iscsi_test_cu_through_the_full_stack_keeps_the_floor() {
    keeps_the_floor(Adapter::Reference);
}

/// The ESP adapter passes every test the reference adapter passes (the same floor).
#[test]
fn iscsi_test_cu_through_the_esp_adapter_keeps_the_floor() {
    keeps_the_floor(Adapter::Esp);
}

fn keeps_the_floor(adapter: Adapter) {
    let Some(cu) = tool("iscsi-test-cu") else { return };
    let target = Target::start(adapter);
    let url = target.url();
    let mut got = BTreeMap::new();
    for (group, args) in [
        ("SCSI", vec!["-d", "-S", "-t", "SCSI", url.as_str(), url.as_str()]),
        ("iSCSI", vec!["-d", "-t", "iSCSI", url.as_str()]),
    ] {
        let out = run(900, &cu, &args);
        let v = verdicts(group, &out.stdout);
        assert!(!v.is_empty(), "iscsi-test-cu -t {group} ran no test:\n{}\n{}", out.stdout, out.stderr);
        got.extend(v);
    }
    let count = |want: Verdict| got.values().filter(|v| **v == want).count();
    eprintln!(
        "iscsi-test-cu through scsiport serve ({adapter:?} adapter): {} passed, {} failed, {} skipped",
        count(Verdict::Passed),
        count(Verdict::Failed),
        count(Verdict::Skipped)
    );
    let floor = floor();
    let below: Vec<String> = floor
        .iter()
        .filter(|t| got.get(*t) != Some(&Verdict::Passed))
        .map(|t| format!("{t}: {:?}", got.get(t)))
        .collect();
    let above: Vec<&String> =
        got.iter().filter(|(t, v)| **v == Verdict::Passed && !floor.contains(t)).map(|(t, _)| t).collect();
    if !above.is_empty() {
        eprintln!("{adapter:?}: passing but not on the floor (add them to tests/conformance-floor.txt): {above:?}");
    }
    let failed: Vec<&String> = got.iter().filter(|(_, v)| **v == Verdict::Failed).map(|(t, _)| t).collect();
    if !failed.is_empty() {
        eprintln!("{adapter:?}: failed: {failed:?}");
    }
    assert!(below.is_empty(), "tests on the floor that did not pass on the {adapter:?} adapter: {below:#?}");
}

#[test]
fn the_verdict_parser_does_not_count_a_skip_or_an_expected_failure_as_what_it_is_not() {
    let log = "Suite: CompareAndWrite\n  Test: Simple ...passed\n  Test: Skip ...    [SKIPPED] not here\npassed\n  \
               Test: Expected ...    [FAILED] WRITE10 failed as it should\npassed\n  Test: Bad ...FAILED\n    1. \
               test.c:12 - CU_FAIL\n  Test: Cut ...\nSuite: Other\n  Test: Late ...passed    [FAILED] PRIN \
               command: failed\n\nRun Summary: ...";
    let v = verdicts("SCSI", log);
    assert_eq!(v["SCSI.CompareAndWrite.Simple"], Verdict::Passed);
    assert_eq!(v["SCSI.CompareAndWrite.Skip"], Verdict::Skipped);
    assert_eq!(v["SCSI.CompareAndWrite.Expected"], Verdict::Passed);
    assert_eq!(v["SCSI.CompareAndWrite.Bad"], Verdict::Failed);
    assert_eq!(v["SCSI.CompareAndWrite.Cut"], Verdict::Failed, "no verdict at all is not a pass");
    assert_eq!(v["SCSI.Other.Late"], Verdict::Passed);
}
