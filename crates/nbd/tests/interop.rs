//! Interoperability with real NBD clients: libnbd's `nbdinfo` and
//! `nbdcopy`, QEMU's `qemu-img` and `qemu-io`, and `fio`'s nbd engine. Each
//! tool runs under `timeout` against a server on 127.0.0.1.

mod common;

use std::sync::Arc;

use common::{run, start, tool};
use nbd::{Export, MemDevice, ServerConfig};
use rand::{Rng, SeedableRng};

const MIB: u64 = 1 << 20;

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbdinfo_reports_size_exports_and_block_size() {
    let Some(nbdinfo) = tool("nbdinfo") else { return };
    let nbdinfo = nbdinfo.to_str().unwrap();
    let mut ro = Export::new("backup", Arc::new(MemDevice::new(8 * MIB)));
    ro.read_only = true;
    ro.description = "read-only copy".into();
    let srv =
        start(ServerConfig::default(), vec![Export::new("default", Arc::new(MemDevice::new(64 * MIB + 512))), ro])
            .await;
    let (ok, out, err) = run(30, nbdinfo, &["--size", &srv.uri("default")]).await;
    assert!(ok, "nbdinfo --size failed: {err}");
    assert_eq!(out.trim(), (64 * MIB + 512).to_string());

    let (ok, out, err) = run(30, nbdinfo, &["--json", &srv.uri("backup")]).await;
    assert!(ok, "nbdinfo --json failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("nbdinfo json");
    let e = &v["exports"][0];
    assert_eq!(e["export-size"], 8 * MIB);
    assert_eq!(e["is_read_only"], true);
    assert_eq!(e["can_trim"], false);
    assert_eq!(e["description"], "read-only copy");
    assert_eq!(e["block_size_maximum"], 32 * MIB);
    assert_eq!(v["protocol"], "newstyle-fixed");

    let (ok, out, err) = run(30, nbdinfo, &["--list", "--json", &format!("nbd://127.0.0.1:{}", srv.port)]).await;
    assert!(ok, "nbdinfo --list failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("nbdinfo json");
    let names: Vec<&str> =
        v["exports"].as_array().unwrap().iter().map(|e| e["export-name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "backup"]);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbdinfo_map_shows_allocated_and_hole_extents() {
    let Some(nbdinfo) = tool("nbdinfo") else { return };
    let dev = Arc::new(MemDevice::new(16 * MIB));
    dev.write_from(MIB, &vec![7u8; 2 * MIB as usize]).unwrap();
    dev.write_from(10 * MIB, &[1u8; 4096]).unwrap();
    let srv = start(ServerConfig::default(), vec![Export::new("default", dev)]).await;
    let (ok, out, err) = run(30, nbdinfo.to_str().unwrap(), &["--map", &srv.uri("default")]).await;
    assert!(ok, "nbdinfo --map failed: {err}");
    // Lines: offset, length, type (0 data, 3 hole+zero), description.
    let rows: Vec<(u64, u64, u32)> = out
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    let chunk = nbd::mem::DEFAULT_CHUNK;
    assert_eq!(
        rows,
        vec![
            (0, MIB, 3),
            (MIB, 2 * MIB, 0),
            (3 * MIB, 7 * MIB, 3),
            (10 * MIB, chunk, 0),
            (10 * MIB + chunk, 6 * MIB - chunk, 3),
        ]
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbdcopy_round_trip_preserves_every_byte() {
    let Some(nbdcopy) = tool("nbdcopy") else { return };
    let nbdcopy = nbdcopy.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    let back = dir.path().join("back.img");
    let size = 24 * MIB as usize;
    let mut data = pattern(size, 1);
    // A zero run in the middle exercises zeroing and sparse handling.
    data[5 * MIB as usize..9 * MIB as usize].fill(0);
    std::fs::write(&src, &data).unwrap();
    let dev = Arc::new(MemDevice::new(size as u64));
    let srv = start(ServerConfig::default(), vec![Export::new("default", dev.clone())]).await;
    let uri = srv.uri("default");
    let (ok, _, err) = run(120, nbdcopy, &[src.to_str().unwrap(), &uri]).await;
    assert!(ok, "nbdcopy upload failed: {err}");
    let mut on_device = vec![0u8; size];
    dev.read_into(0, &mut on_device).unwrap();
    assert!(on_device == data, "device content differs after upload");
    let (ok, _, err) = run(120, nbdcopy, &[&uri, back.to_str().unwrap()]).await;
    assert!(ok, "nbdcopy download failed: {err}");
    let got = std::fs::read(&back).unwrap();
    assert_eq!(got.len(), data.len());
    assert_eq!(crc(&got), crc(&data), "checksum differs after round trip");
    assert!(got == data);
    srv.stop().await;
}

/// CRC-32 (IEEE), enough to report a mismatch as a checksum.
fn crc(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in b {
        c ^= u32::from(x);
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xedb8_8320 } else { c >> 1 };
        }
    }
    !c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_img_convert_then_compare_matches_and_detects_a_change() {
    let Some(qemu_img) = tool("qemu-img") else { return };
    let qemu_img = qemu_img.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    let size = 16 * MIB as usize;
    let mut data = pattern(size, 2);
    data[..3 * MIB as usize].fill(0);
    std::fs::write(&src, &data).unwrap();
    let dev = Arc::new(MemDevice::new(size as u64));
    // Pre-existing garbage where the source is zero: convert must zero it.
    dev.write_from(0, &[0xeeu8; 8192]).unwrap();
    let srv = start(ServerConfig::default(), vec![Export::new("default", dev.clone())]).await;
    let uri = srv.uri("default");
    let (ok, _, err) =
        run(120, qemu_img, &["convert", "-n", "-f", "raw", "-O", "raw", src.to_str().unwrap(), &uri]).await;
    assert!(ok, "qemu-img convert failed: {err}");
    let (ok, out, err) = run(120, qemu_img, &["compare", "-f", "raw", "-F", "raw", src.to_str().unwrap(), &uri]).await;
    assert!(ok, "qemu-img compare reported a difference: {out} {err}");
    dev.write_from(12345, &[data[12345] ^ 0xff]).unwrap();
    let (ok, out, _) = run(120, qemu_img, &["compare", "-f", "raw", "-F", "raw", src.to_str().unwrap(), &uri]).await;
    assert!(!ok, "qemu-img compare missed a changed byte: {out}");
    // qemu-img reports the start of the differing block it compared.
    let at: u64 = out
        .split("offset ")
        .nth(1)
        .and_then(|t| t.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .expect("mismatch offset");
    assert!(at <= 12345 && 12345 < at + 64 * 1024, "difference reported at the wrong place: {out}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_io_pattern_write_read_verifies() {
    let Some(qemu_io) = tool("qemu-io") else { return };
    let qemu_io = qemu_io.to_str().unwrap();
    let dev = Arc::new(MemDevice::new(8 * MIB));
    let srv = start(ServerConfig::default(), vec![Export::new("default", dev.clone())]).await;
    let uri = srv.uri("default");
    let (ok, out, err) = run(
        60,
        qemu_io,
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0x5a 1M 192k",
            "-c",
            "read -P 0x5a 1M 192k",
            "-c",
            "write -z 1088k 64k",
            "-c",
            "read -P 0 1088k 64k",
            "-c",
            "flush",
            &uri,
        ],
    )
    .await;
    assert!(ok, "qemu-io failed: {out} {err}");
    assert!(!out.contains("Pattern verification failed"), "{out}");
    let mut b = vec![0u8; 192 * 1024];
    dev.read_into(MIB, &mut b).unwrap();
    assert!(b[..64 * 1024].iter().all(|&x| x == 0x5a));
    assert!(b[64 * 1024..128 * 1024].iter().all(|&x| x == 0));
    assert!(b[128 * 1024..].iter().all(|&x| x == 0x5a));
    assert!(dev.flush_count() >= 1);
    // A wrong expected pattern must be caught, so the check above means something.
    let (_, out, _) = run(60, qemu_io, &["-f", "raw", "-c", "read -P 0x33 1M 4k", &uri]).await;
    assert!(out.contains("Pattern verification failed"), "{out}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_io_write_to_read_only_export_fails() {
    let Some(qemu_io) = tool("qemu-io") else { return };
    let dev = Arc::new(MemDevice::new(MIB));
    let mut e = Export::new("ro", dev.clone());
    e.read_only = true;
    let srv = start(ServerConfig::default(), vec![e]).await;
    let (_, out, err) =
        run(60, qemu_io.to_str().unwrap(), &["-f", "raw", "-c", "write -P 1 0 4k", &srv.uri("ro")]).await;
    assert!(
        format!("{out}{err}").to_lowercase().contains("read-only")
            || format!("{out}{err}").to_lowercase().contains("permission"),
        "write was not refused: {out} {err}"
    );
    assert_eq!(dev.allocated_bytes(), 0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fio_nbd_engine_random_write_verify_crc32c() {
    let Some(fio) = tool("fio") else { return };
    let dev = Arc::new(MemDevice::new(64 * MIB));
    let srv = start(ServerConfig::default(), vec![Export::new("default", dev.clone())]).await;
    let uri = format!("--uri={}", srv.uri("default"));
    let (ok, out, err) = run(
        180,
        fio.to_str().unwrap(),
        &[
            "--name=verify",
            "--ioengine=nbd",
            &uri,
            "--rw=randwrite",
            "--bs=4k",
            "--iodepth=32",
            "--size=32M",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            "--verify_state_save=0",
            "--output-format=json",
        ],
    )
    .await;
    assert!(ok, "fio failed: {out} {err}");
    let json = &out[out.find('{').expect("fio json")..];
    let v: serde_json::Value = serde_json::from_str(json).expect("fio json");
    let job = &v["jobs"][0];
    assert_eq!(job["error"], 0);
    assert_eq!(job["write"]["io_bytes"], 32 * MIB);
    // The verify pass read everything back.
    assert_eq!(job["read"]["io_bytes"], 32 * MIB);
    assert!(dev.allocated_bytes() >= 32 * MIB);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbdinfo_over_unix_socket() {
    let Some(nbdinfo) = tool("nbdinfo") else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let server = Arc::new(nbd::NbdServer::new(
        ServerConfig::default(),
        vec![Export::new("default", Arc::new(MemDevice::new(3 * MIB)))],
    ));
    let shutdown = nbd::CancellationToken::new();
    let task = tokio::spawn(server.serve_unix(listener, shutdown.clone()));
    let uri = format!("nbd+unix:///default?socket={}", path.display());
    let (ok, out, err) = run(30, nbdinfo.to_str().unwrap(), &["--size", &uri]).await;
    assert!(ok, "nbdinfo over unix socket failed: {err}");
    assert_eq!(out.trim(), (3 * MIB).to_string());
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
