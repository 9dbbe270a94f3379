//! Connection churn: iSCSI connect/login/READ/logout and NBD connect/handshake/READ/disconnect, over and over, against
//! one `scsiport serve`; the server's open file descriptors and resident memory stay flat. The test command runs
//! `SCSIPORT_CHURN_CYCLES` cycles of each (500 by default); `bench/soak.sh churn` runs 10,000.

mod serve_common;

use serve_common::initiator::Initiator;
use serve_common::{free_port, Graceful, NbdClient};
use std::time::{Duration, Instant};

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Wait (bounded) until the server's fd count is at most `want` (connections close asynchronously).
fn settle(pid: u32, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = fds(pid);
        if n <= want || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn connection_churn_leaves_fds_and_memory_flat() {
    let cycles: usize = std::env::var("SCSIPORT_CHURN_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let (nbd, iscsi) = (free_port(), free_port());
    let server = Graceful::start([
        "--ram".to_string(),
        "--disk-size".into(),
        "16MiB".into(),
        "--nbd-listen".into(),
        format!("127.0.0.1:{nbd}"),
        "--iscsi-listen".into(),
        format!("127.0.0.1:{iscsi}"),
    ]);
    let pid = server.0.id();
    let cycle = |i: usize| {
        let mut c =
            Initiator::login(iscsi, "iqn.2026-11.io.scsiport:default", &format!("iqn.2026-12.test:churn-{}", i % 7));
        let (status, data) = c.read10((i % 1000) as u32 * 8, 8);
        assert_eq!((status, data.len()), (0, 4096), "iSCSI READ in cycle {i}");
        c.logout();
        let mut n = NbdClient::connect(nbd, "default").unwrap_or_else(|e| panic!("NBD connect in cycle {i}: {e:?}"));
        assert_eq!(n.read((i % 1000) as u64 * 4096, 4096).expect("NBD read").len(), 4096);
        drop(n);
    };
    let warm = (cycles / 10).max(20);
    for i in 0..warm {
        cycle(i);
    }
    let fds0 = settle(pid, 0);
    let rss0 = rss_kib(pid);
    let started = Instant::now();
    for i in warm..cycles {
        cycle(i);
    }
    let fds1 = settle(pid, fds0);
    let rss1 = rss_kib(pid);
    println!(
        "{} cycles of iSCSI login/READ/logout and NBD connect/READ/disconnect in {:.1} s; fds {fds0} -> {fds1}, RSS {rss0} -> {rss1} KiB",
        cycles - warm,
        started.elapsed().as_secs_f64()
    );
    assert!(fds1 <= fds0, "file descriptors grew from {fds0} to {fds1}");
    // Allocator caches move a little; a leak per connection would move it by the cycle count.
    assert!(rss1 <= rss0 + 16 * 1024, "RSS grew from {rss0} KiB to {rss1} KiB");
}
