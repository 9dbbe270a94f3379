//! The RBD backend against a real single-node Ceph cluster (`scripts/ceph-start.sh`; `scripts/test.sh` starts one
//! and sets `SCSIPORT_CEPH_CONF`). Without a cluster the tests say so and pass, except under `CI`, where they fail.
#![cfg(feature = "rbd")]

mod ceph_cluster;

use ceph_cluster::{conf, pause_osd, CLUSTER};
use scsi::{Backend, RbdBackend, RbdOptions};
use std::path::Path;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn image_name(what: &str) -> String {
    ceph_cluster::image_name("t", what)
}

fn opts(conf: &Path, image: &str, size: u64) -> RbdOptions {
    RbdOptions {
        ceph_conf: Some(conf.to_path_buf()),
        create_size: size,
        op_timeout: Duration::from_secs(4),
        ..RbdOptions::new("rbd", image)
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8).collect()
}

#[test]
fn data_round_trip_and_another_handle_sees_it() {
    let Some(conf) = conf() else { return };
    let _shared = CLUSTER.read();
    let name = image_name("rt");
    let b = RbdBackend::open(&opts(&conf, &name, 64 * MIB)).expect("create and open");
    assert_eq!(b.size(), 64 * MIB);
    // Aligned, unaligned, and across an object boundary (4 MiB objects).
    let cases: [(u64, usize); 3] = [(0, 65536), (MIB + 123, 10_000), (4 * MIB - 4096, 3 * 4096)];
    for (i, &(off, len)) in cases.iter().enumerate() {
        b.write_at(off, &pattern(i as u8, len)).unwrap();
    }
    b.flush().unwrap();
    let other = RbdBackend::open(&opts(&conf, &name, 0)).expect("open the existing image");
    assert_eq!(other.size(), 64 * MIB, "an existing image keeps its size");
    for (i, &(off, len)) in cases.iter().enumerate() {
        let mut buf = vec![0u8; len];
        other.read_at(off, &mut buf).unwrap();
        assert!(buf == pattern(i as u8, len), "case {i} read back differently through another handle");
    }
    // Never written: zeros.
    let mut buf = vec![0xFFu8; 4096];
    b.read_at(32 * MIB, &mut buf).unwrap();
    assert!(buf.iter().all(|&x| x == 0));
}

#[test]
fn out_of_range_requests_are_errors_not_panics() {
    let Some(conf) = conf() else { return };
    let _shared = CLUSTER.read();
    let b = RbdBackend::open(&opts(&conf, &image_name("oor"), 8 * MIB)).unwrap();
    let mut buf = [0u8; 512];
    assert!(b.read_at(8 * MIB - 256, &mut buf).is_err());
    assert!(b.write_at(u64::MAX - 10, &buf).is_err());
    assert!(b.discard(8 * MIB, 1).is_err());
}

#[test]
fn a_missing_image_without_a_size_is_a_clear_error() {
    let Some(conf) = conf() else { return };
    let _shared = CLUSTER.read();
    let e = RbdBackend::open(&opts(&conf, "no-such-image", 0)).expect_err("must not open");
    let msg = e.to_string();
    assert!(msg.contains("rbd/no-such-image"), "{msg}");
    let e = RbdBackend::open(&RbdOptions { pool: "no-such-pool".into(), ..opts(&conf, "x", MIB) }).unwrap_err();
    assert!(e.to_string().contains("no-such-pool"), "{e}");
}

#[test]
fn flush_and_fua_writes_succeed_and_persist() {
    let Some(conf) = conf() else { return };
    let _shared = CLUSTER.read();
    let name = image_name("flush");
    let b = RbdBackend::open(&opts(&conf, &name, 16 * MIB)).unwrap();
    b.write_at(4096, b"before flush").unwrap();
    b.flush().unwrap();
    b.write_fua(8192, b"forced unit access").unwrap();
    drop(b);
    let b = RbdBackend::open(&opts(&conf, &name, 0)).unwrap();
    let mut one = [0u8; 12];
    let mut two = [0u8; 18];
    b.read_at(4096, &mut one).unwrap();
    b.read_at(8192, &mut two).unwrap();
    assert_eq!(&one, b"before flush");
    assert_eq!(&two, b"forced unit access");
}

#[test]
fn discard_and_write_zeroes_read_back_zero_and_deallocate_whole_objects() {
    let Some(conf) = conf() else { return };
    let _shared = CLUSTER.read();
    let b = RbdBackend::open(&opts(&conf, &image_name("discard"), 32 * MIB)).unwrap();
    let obj = b.object_size();
    assert_eq!(obj, 4 * MIB);
    b.write_at(0, &pattern(7, (3 * obj) as usize)).unwrap();
    assert!(b.is_allocated(0, 3 * obj).unwrap());
    // Part of an object: zeros, the rest of the object untouched.
    b.discard(MIB + 512, 8192).unwrap();
    let mut buf = vec![0xAAu8; 8192 + 1024];
    b.read_at(MIB, &mut buf).unwrap();
    let want = pattern(7, (3 * obj) as usize);
    assert_eq!(&buf[..512], &want[MIB as usize..MIB as usize + 512]);
    assert!(buf[512..512 + 8192].iter().all(|&x| x == 0), "discarded bytes read back as zeros");
    assert_eq!(&buf[512 + 8192..], &want[(MIB + 512 + 8192) as usize..(MIB + 8192 + 1024) as usize]);
    // A whole object: gone from the allocation.
    b.discard(obj, obj).unwrap();
    assert!(!b.is_allocated(obj, obj).unwrap(), "a discarded object is deallocated");
    assert!(b.is_allocated(0, obj).unwrap());
    let mut one = vec![1u8; 4096];
    b.read_at(obj + 100 * 4096, &mut one).unwrap();
    assert!(one.iter().all(|&x| x == 0));
    // WRITE ZEROES over the last written object: zeros, deallocated.
    b.write_zeroes(2 * obj, obj).unwrap();
    b.read_at(2 * obj + 4096, &mut one).unwrap();
    assert!(one.iter().all(|&x| x == 0));
    assert!(!b.is_allocated(2 * obj, obj).unwrap());
}

#[test]
fn allocation_runs_follow_the_image() {
    let Some(conf) = conf() else { return };
    let _shared = CLUSTER.read();
    let b = RbdBackend::open(&opts(&conf, &image_name("alloc"), 64 * MIB)).unwrap();
    let obj = b.object_size();
    assert_eq!(b.allocation_run(0, 64 * MIB).unwrap(), (false, 64 * MIB), "a new image is all holes");
    // Objects 2 and 3 written in full, object 5 in part.
    b.write_at(2 * obj, &vec![1u8; (2 * obj) as usize]).unwrap();
    b.write_at(5 * obj, &[2u8; 4096]).unwrap();
    assert_eq!(b.allocation_run(0, 64 * MIB).unwrap(), (false, 2 * obj));
    assert_eq!(b.allocation_run(2 * obj, 64 * MIB).unwrap(), (true, 2 * obj));
    assert_eq!(b.allocation_run(3 * obj, obj / 2).unwrap(), (true, obj / 2), "clipped to max");
    assert_eq!(b.allocation_run(4 * obj, 64 * MIB).unwrap(), (false, obj));
    let (allocated, run) = b.allocation_run(5 * obj, 64 * MIB).unwrap();
    assert!(allocated && (4096..=obj).contains(&run), "object 5: {run}");
    assert!(!b.is_allocated(6 * obj, 10 * obj).unwrap());
    assert!(b.is_allocated(4 * obj, 2 * obj).unwrap());
}

#[test]
fn an_unreachable_cluster_fails_open_with_one_message() {
    let _shared = CLUSTER.read();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
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
    let o = RbdOptions { op_timeout: Duration::from_secs(2), ..opts(&conf, "x", MIB) };
    let e = RbdBackend::open(&o).expect_err("nothing listens there");
    let msg = e.to_string();
    assert!(msg.contains("cannot reach the Ceph cluster"), "{msg}");
    assert!(msg.contains(&conf.display().to_string()), "{msg}");
}

/// The OSD stops answering (SIGSTOP: what a partition looks like to a client), requests fail instead of hanging,
/// and work again once it answers (SIGCONT).
#[test]
fn a_cluster_that_goes_away_gives_errors_then_recovers() {
    let Some(conf) = conf() else { return };
    let _alone = CLUSTER.write();
    let name = image_name("down");
    let b = RbdBackend::open(&opts(&conf, &name, 16 * MIB)).unwrap();
    b.write_at(0, b"acknowledged before").unwrap();
    let resume = pause_osd(&conf);
    let w = b.write_at(MIB, b"while the cluster is away");
    let mut buf = [0u8; 19];
    let r = b.read_at(0, &mut buf);
    assert!(w.is_err(), "a write to a cluster that does not answer fails");
    assert!(r.is_err(), "a read from a cluster that does not answer fails");
    drop(resume);
    // librados resends once the OSD answers again; bounded retries.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match b.write_at(2 * MIB, b"after the cluster came back") {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not back yet: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("the cluster did not come back: {e}"),
        }
    }
    b.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"acknowledged before");
    let mut after = [0u8; 27];
    b.read_at(2 * MIB, &mut after).unwrap();
    assert_eq!(&after, b"after the cluster came back");
}

/// Watch and notify on a RADOS object: a notification reaches every watcher (the notifier's own too) with its
/// payload, and `notify` returns only after each watcher's function has run; a dropped watch hears nothing more.
#[test]
fn notify_returns_after_every_watcher_has_acted() {
    use std::sync::{Arc, Mutex};
    let Some(conf) = conf() else { return };
    let _shared = CLUSTER.read();
    let name = image_name("watch");
    let a = Arc::new(RbdBackend::open(&opts(&conf, &name, 4 * MIB)).unwrap());
    let b = Arc::new(RbdBackend::open(&opts(&conf, &name, 0)).unwrap());
    let oid = format!("scsiport.test.{name}");
    let heard_a = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let heard_b = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let (ha, hb) = (heard_a.clone(), heard_b.clone());
    let wa = a.watch(&oid, Duration::from_secs(10), move |p| ha.lock().unwrap().push(p.to_vec())).unwrap();
    let wb = b
        .watch(&oid, Duration::from_secs(10), move |p| {
            // A slow watcher: the notifier still waits for it.
            std::thread::sleep(Duration::from_millis(200));
            hb.lock().unwrap().push(p.to_vec());
        })
        .unwrap();
    a.notify(&oid, b"first", Duration::from_secs(5)).unwrap();
    assert_eq!(*heard_a.lock().unwrap(), [b"first".to_vec()]);
    assert_eq!(*heard_b.lock().unwrap(), [b"first".to_vec()], "notify returned before the slow watcher acted");
    assert!(!wa.is_lost() && !wb.is_lost());
    drop(wb);
    b.notify(&oid, b"second", Duration::from_secs(5)).unwrap();
    assert_eq!(*heard_a.lock().unwrap(), [b"first".to_vec(), b"second".to_vec()]);
    assert_eq!(heard_b.lock().unwrap().len(), 1, "a dropped watch heard a notification");
    drop(wa);
}
