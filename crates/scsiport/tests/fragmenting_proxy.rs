//! Interop through a fragmenting TCP proxy: every byte stream, in both directions, is re-sent in pieces of 1 to 7
//! bytes (Nagle off, so each piece is its own segment), as a congested or small-MTU network delivers it. Loopback
//! hands a reader whole PDUs and requests; this is what finds a parser that assumes a read returns a whole header.
//! The clients run their ordinary workloads through it: NBD (qemu-img, nbdcopy, qemu-io, fio with verification)
//! and iSCSI (discovery, INQUIRY, READ CAPACITY, libiscsi's READ/WRITE tests, iscsi-perf).

mod serve_common;

use serve_common::{free_port, run, tool, Graceful};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The proxy: accepts on an ephemeral loopback port, forwards to `upstream`, splitting everything.
struct Proxy {
    port: u16,
    stop: Arc<AtomicBool>,
    /// Pieces written, both directions.
    pieces: Arc<AtomicU64>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let pieces = Arc::new(AtomicU64::new(0));
        let (s2, p2) = (stop.clone(), pieces.clone());
        std::thread::spawn(move || {
            let mut seed = 0x9E37_79B9_7F4A_7C15u64;
            while !s2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                        for s in [&client, &server] {
                            s.set_nodelay(true).unwrap();
                        }
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        pump(client.try_clone().unwrap(), server.try_clone().unwrap(), seed, p2.clone());
                        pump(server, client, seed ^ 0xFFFF, p2.clone());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy { port, stop, pieces }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copy `from` to `to` in 1–7 byte writes (a small xorshift picks the sizes).
fn pump(mut from: TcpStream, mut to: TcpStream, mut seed: u64, pieces: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut at = 0;
            while at < n {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let k = (1 + (seed % 7) as usize).min(n - at);
                if to.write_all(&buf[at..at + k]).is_err() {
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
                pieces.fetch_add(1, Ordering::Relaxed);
                at += k;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

fn serve(args: &[String]) -> Graceful {
    Graceful::start(args)
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn check(o: &serve_common::Output, what: &str) {
    assert!(o.ok, "{what} through the fragmenting proxy failed:\n{}\n{}", o.stdout, o.stderr);
}

#[test]
fn nbd_clients_work_through_a_fragmenting_proxy() {
    let tools: Option<Vec<PathBuf>> =
        ["qemu-img", "nbdcopy", "qemu-io", "fio", "nbdinfo"].iter().map(|t| tool(t)).collect();
    let Some(t) = tools else { return };
    let nbd = free_port();
    let _server = serve(&[
        "--no-iscsi".into(),
        "--ram".into(),
        "--disk-size".into(),
        "16MiB".into(),
        "--nbd-listen".into(),
        format!("127.0.0.1:{nbd}"),
    ]);
    let proxy = Proxy::start(nbd);
    let uri = format!("nbd://127.0.0.1:{}/default", proxy.port);
    let dir = tempfile::tempdir().unwrap();
    check(&run(60, &t[4], &[&uri]), "nbdinfo");
    // A 3 MiB image (not a multiple of any request size) in, and back out; byte-exact.
    let src = dir.path().join("src.img");
    let data = pattern(3 << 20, 7);
    std::fs::write(&src, &data).unwrap();
    check(
        &run(300, &t[0], &["convert", "-n", "-f", "raw", "-O", "raw", src.to_str().unwrap(), &uri]),
        "qemu-img convert",
    );
    let back = dir.path().join("back.img");
    check(&run(300, &t[1], &[&uri, back.to_str().unwrap()]), "nbdcopy");
    let got = std::fs::read(&back).unwrap();
    assert_eq!(got.len(), 16 << 20);
    assert!(got[..data.len()] == data[..], "the image read back differs");
    // Unaligned small writes, a flush, reads that verify a pattern.
    check(
        &run(
            120,
            &t[2],
            &["-f", "raw", "-c", "write -P 0x5a 1000 3000", "-c", "flush", "-c", "read -P 0x5a 1000 3000", &uri],
        ),
        "qemu-io",
    );
    // fio with several requests in flight, every block verified.
    check(
        &run(
            300,
            &t[3],
            &[
                "--name=frag",
                "--ioengine=nbd",
                &format!("--uri={uri}"),
                "--rw=randwrite",
                "--bsrange=512-32k",
                "--size=2m",
                "--iodepth=8",
                "--verify=crc32c",
                "--verify_state_save=0",
                "--do_verify=1",
            ],
        ),
        "fio",
    );
    assert!(proxy.pieces.load(Ordering::Relaxed) > 100_000, "the proxy did not fragment");
}

#[test]
fn iscsi_clients_work_through_a_fragmenting_proxy() {
    let tools: Option<Vec<PathBuf>> =
        ["iscsi-ls", "iscsi-inq", "iscsi-readcapacity16", "iscsi-test-cu"].iter().map(|t| tool(t)).collect();
    let Some(t) = tools else { return };
    let port = free_port();
    let _server = serve(&[
        "--no-nbd".into(),
        "--ram".into(),
        "--disk-size".into(),
        "16MiB".into(),
        "--iscsi-listen".into(),
        format!("127.0.0.1:{port}"),
    ]);
    let proxy = Proxy::start(port);
    let portal = format!("iscsi://127.0.0.1:{}", proxy.port);
    let lun = format!("{portal}/iqn.2026-11.io.scsiport:default/0");
    let o = run(60, &t[0], &["-s", &portal]);
    check(&o, "iscsi-ls");
    assert!(o.stdout.contains("Lun:0"), "{}", o.stdout);
    let o = run(60, &t[1], &[&lun]);
    check(&o, "iscsi-inq");
    assert!(o.stdout.contains("Vendor:SCSIPORT"), "{}", o.stdout);
    let o = run(60, &t[2], &[&lun]);
    check(&o, "iscsi-readcapacity16");
    assert!(o.stdout.contains("Total size:16777216"), "{}", o.stdout);
    // libiscsi's own READ/WRITE tests: data-in and data-out PDUs of many sizes, immediate data and R2Ts.
    for test in ["SCSI.Read10", "SCSI.Write10", "SCSI.Verify10", "SCSI.Unmap"] {
        let o = run(600, &t[3], &["--dataloss", "-t", test, &lun]);
        check(&o, test);
        assert!(!o.stdout.contains("FAILED"), "{test}: {}", o.stdout);
        // With --dataloss nothing is skipped for want of permission to write.
        assert!(
            o.stdout.contains("passed") && !o.stdout.contains("--dataloss flag is not set"),
            "{test}: {}",
            o.stdout
        );
    }
    assert!(proxy.pieces.load(Ordering::Relaxed) > 100_000, "the proxy did not fragment");
}
