//! The throwaway single-node Ceph cluster the RBD tests share (`scripts/ceph-start.sh`; `scripts/test.sh` starts
//! one and sets `SCSIPORT_CEPH_CONF`). Used by `crates/scsi/tests/rbd.rs` and `crates/scsiport/tests/serve_rbd.rs`
//! (which includes this file by path).

use parking_lot::RwLock;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Tests that pause the OSD take it for writing and run alone; the others share the cluster.
pub static CLUSTER: RwLock<()> = RwLock::new(());

/// The cluster's `ceph.conf`. Without one the tests say so and pass, except under `CI`, where they fail.
pub fn conf() -> Option<PathBuf> {
    match std::env::var_os("SCSIPORT_CEPH_CONF") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var_os("CI").is_some() => {
            panic!("SCSIPORT_CEPH_CONF is not set and CI is: scripts/test.sh starts a cluster and sets it")
        }
        None => {
            eprintln!("skipping: no Ceph cluster (run scripts/ceph-start.sh and set SCSIPORT_CEPH_CONF)");
            None
        }
    }
}

/// An image name no other test of any process uses: `prefix` tells the test binaries apart.
pub fn image_name(prefix: &str, what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{what}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// SIGSTOP the cluster's OSD and wait (bounded) until every one of its threads is stopped: kill(2) returns before
/// the stop takes effect, and an OSD thread could still answer one request in between. The OSD runs again when the
/// returned guard drops, so a failed assertion never leaves it stopped.
pub fn pause_osd(conf: &Path) -> Resume {
    let pidfile = conf.parent().expect("ceph.conf's folder").join("run/osd.0.pid");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()));
    // SAFETY: kill(2) on the OSD the cluster script started; no memory involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0, "signal the OSD");
    let resume = Resume(pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the OSD's threads");
        let stopped = tasks.filter_map(Result::ok).all(|t| {
            std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('T')))
                .unwrap_or(true)
        });
        if stopped {
            return resume;
        }
        assert!(Instant::now() < deadline, "the OSD did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends the paused OSD SIGCONT when dropped.
pub struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        // SAFETY: kill(2), no memory involved.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}
