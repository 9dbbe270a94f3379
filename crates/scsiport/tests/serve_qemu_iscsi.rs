//! `qemu-img convert` to and from `iscsi://` against `scsiport serve`, checksums compared.
//!
//! Debian's `qemu-img` reaches iSCSI through the `qemu-block-extra` package, which would replace the machine's newer
//! `qemu-utils`. So `scripts/test.sh` unpacks Debian's matching `qemu-utils` and `qemu-block-extra` (without
//! installing them) under `target/qemu-iscsi/`, and this test runs that `qemu-img` with its own module directory.

mod serve_common;

use serve_common::{qemu_img_iscsi, qemu_iscsi_root};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn qemu_img_converts_to_and_from_iscsi_byte_exact() {
    let Some(root) = qemu_iscsi_root() else { return };
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_scsiport"))
        .args(["serve", "--no-nbd", "--ram", "--disk-size", "64MiB", "--iscsi-listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start scsiport serve");
    let out = server.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let ready = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(30)).ok()).any(|l| l.starts_with("ready"));
    assert!(ready, "scsiport serve did not become ready");

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    let back = dir.path().join("back.img");
    let data: Vec<u8> = (0..48u64 << 20).map(|i| (i.wrapping_mul(0x9E37_79B9) >> 13) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let url = format!("iscsi://127.0.0.1:{port}/iqn.2026-11.io.scsiport:default/0");

    let to = qemu_img_iscsi(&root, 120, &["convert", "-n", "-f", "raw", "-O", "raw", src.to_str().unwrap(), &url]);
    assert!(to.ok, "to iSCSI: {}", to.stderr);
    let from = qemu_img_iscsi(&root, 120, &["convert", "-f", "raw", "-O", "raw", &url, back.to_str().unwrap()]);
    assert!(from.ok, "from iSCSI: {}", from.stderr);
    let got = std::fs::read(&back).unwrap();
    assert_eq!(got.len(), 64 << 20, "the whole 64 MiB LUN came back");
    assert!(got[..data.len()] == data[..], "the data written over iSCSI reads back byte-exact");
    assert!(got[data.len()..].iter().all(|b| *b == 0), "the unwritten tail reads as zeros");
    let cmp = qemu_img_iscsi(&root, 120, &["compare", "-f", "raw", "-F", "raw", back.to_str().unwrap(), &url]);
    assert!(cmp.ok, "qemu-img compare: {}", cmp.stdout);

    let _ = server.kill();
    let _ = server.wait();
}
