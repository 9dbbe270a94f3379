//! What users do first with a new NBD export: import a sparse image into it and export it back, with `nbdcopy` and
//! `qemu-img convert`, and check it with `qemu-img compare`. The image has data islands and zero runs of every size
//! from one block up to beyond the largest NBD request (32 MiB), so the clients send WRITE_ZEROES (and TRIM) of every
//! size too, up to the maximum and split above it. Byte-identical round trips through the whole stack.
//!
//! The same over iSCSI: `qemu-img convert` in and out of the sparse image and `qemu-img compare` through qemu's
//! libiscsi driver (zero runs become WRITE SAME / UNMAP), and fio's verify workload with its libiscsi engine at every
//! transfer size around the limits the target negotiates and advertises (`docs/limits.md`).

mod serve_common;

use serve_common::{fio_iscsi, pattern, qemu_img_iscsi, qemu_iscsi_root, run, tool, ServeOptions, Server, MIB};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// The largest NBD request the export advertises (`nbd_disk::MAX_REQUEST`).
const MAX_REQUEST: u64 = 32 * MIB;
const DISK: u64 = 256 * MIB;

/// Zero runs, in order: one block, around 4 KiB, 64 KiB (the adapter's transfer), 65535 and 65536 blocks (the
/// disk's MAXIMUM WRITE SAME LENGTH and one more), and around the maximum request.
fn zero_runs() -> Vec<u64> {
    vec![
        512,
        4096 - 512,
        4096,
        64 * 1024,
        64 * 1024 + 512,
        MIB,
        65535 * 512,
        MAX_REQUEST - 512,
        MAX_REQUEST,
        MAX_REQUEST + 512,
        2 * MAX_REQUEST + 4096,
    ]
}

/// A sparse image: islands of data (sizes cycling from one block to 1 MiB) separated by the zero runs, the zero
/// runs left as holes in the file. Returns its contents and where the zero runs are.
fn sparse_image(path: &Path) -> (Vec<u8>, Vec<(u64, u64)>) {
    let mut holes = Vec::new();
    let mut whole = vec![0u8; DISK as usize];
    let mut f = std::fs::File::create(path).expect("create image");
    f.set_len(DISK).expect("size the image");
    let islands = [512u64, 4096, 65536 + 512, MIB];
    let mut at = 0u64;
    for (i, gap) in zero_runs().into_iter().enumerate() {
        let len = islands[i % islands.len()];
        let data = pattern(len as usize, 0x1234 + i as u64);
        f.seek(SeekFrom::Start(at)).expect("seek");
        f.write_all(&data).expect("write island");
        whole[at as usize..(at + len) as usize].copy_from_slice(&data);
        holes.push((at + len, gap));
        at += len + gap;
    }
    assert!(at < DISK, "the image holds every run ({at} bytes)");
    // A last island at the very end of the disk.
    let tail = pattern(4096, 0xE0D);
    f.seek(SeekFrom::Start(DISK - 4096)).expect("seek");
    f.write_all(&tail).expect("write the last island");
    whole[(DISK - 4096) as usize..].copy_from_slice(&tail);
    f.sync_all().expect("sync image");
    (whole, holes)
}

/// Fill the whole export with non-zero data, so that zeros must really be written to appear.
fn dirty(qemu_io: &Path, uri: &str) {
    let out = run(300, qemu_io, &["-f", "raw", "-c", &format!("write -P 0xA5 0 {DISK}"), uri]);
    assert!(out.ok, "qemu-io fill: {} {}", out.stdout, out.stderr);
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y).or((a.len() != b.len()).then_some(a.len().min(b.len())))
}

#[test]
fn nbdcopy_imports_and_exports_a_sparse_image_byte_identical() {
    let (Some(nbdcopy), Some(qemu_io)) = (tool("nbdcopy"), tool("qemu-io")) else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("sparse.img");
    let back = dir.path().join("back.img");
    let (want, _) = sparse_image(&src);
    let srv = Server::start(&ServeOptions::ram("256MiB"));
    dirty(&qemu_io, &srv.uri());
    let (s, b) = (src.to_str().expect("utf-8"), back.to_str().expect("utf-8"));
    let out = run(300, &nbdcopy, &[s, &srv.uri()]);
    assert!(out.ok, "nbdcopy into the export: {} {}", out.stdout, out.stderr);
    let out = run(300, &nbdcopy, &[&srv.uri(), b]);
    assert!(out.ok, "nbdcopy out of the export: {} {}", out.stdout, out.stderr);
    let got = std::fs::read(&back).expect("read the copy");
    assert_eq!(first_difference(&got, &want), None, "the round trip changed the image");
}

#[test]
fn qemu_img_converts_a_sparse_image_in_and_out_and_compares_it() {
    let (Some(qemu_img), Some(qemu_io)) = (tool("qemu-img"), tool("qemu-io")) else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("sparse.img");
    let back = dir.path().join("back.img");
    let (want, holes) = sparse_image(&src);
    let srv = Server::start(&ServeOptions::ram("256MiB"));
    dirty(&qemu_io, &srv.uri());
    let (s, b) = (src.to_str().expect("utf-8"), back.to_str().expect("utf-8"));
    let out = run(300, &qemu_img, &["convert", "-n", "-f", "raw", "-O", "raw", s, &srv.uri()]);
    assert!(out.ok, "qemu-img convert into the export: {} {}", out.stdout, out.stderr);
    let out = run(300, &qemu_img, &["compare", "-f", "raw", "-F", "raw", s, &srv.uri()]);
    assert!(out.ok && out.stdout.contains("Images are identical"), "qemu-img compare: {} {}", out.stdout, out.stderr);
    let out = run(300, &qemu_img, &["convert", "-f", "raw", "-O", "raw", &srv.uri(), b]);
    assert!(out.ok, "qemu-img convert out of the export: {} {}", out.stdout, out.stderr);
    let got = std::fs::read(&back).expect("read the copy");
    assert_eq!(first_difference(&got, &want), None, "the round trip changed the image");

    // compare must see a difference inside a zero run: one sector of data in the middle of the largest hole.
    let (start, len) = holes.iter().copied().max_by_key(|h| h.1).expect("holes");
    let at = start + len / 2 / 512 * 512;
    let out = run(60, &qemu_io, &["-f", "raw", "-c", &format!("write -P 0x77 {at} 512"), &srv.uri()]);
    assert!(out.ok, "qemu-io write: {}", out.stderr);
    let out = run(300, &qemu_img, &["compare", "-f", "raw", "-F", "raw", s, &srv.uri()]);
    assert_eq!(out.code, Some(1), "qemu-img compare after a change: {} {}", out.stdout, out.stderr);
}

#[test]
fn qemu_img_converts_a_sparse_image_over_iscsi_in_and_out_and_compares_it() {
    let Some(qemu_io) = tool("qemu-io") else { return };
    let Some(root) = qemu_iscsi_root() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("sparse.img");
    let back = dir.path().join("back.img");
    let (want, holes) = sparse_image(&src);
    let srv = Server::start(&ServeOptions { iscsi: true, ..ServeOptions::ram("256MiB") });
    dirty(&qemu_io, &srv.uri());
    let url = srv.iscsi_url();
    let (s, b) = (src.to_str().expect("utf-8"), back.to_str().expect("utf-8"));
    let out = qemu_img_iscsi(&root, 300, &["convert", "-n", "-f", "raw", "-O", "raw", s, &url]);
    assert!(out.ok, "qemu-img convert into the LU over iSCSI: {} {}", out.stdout, out.stderr);
    let out = qemu_img_iscsi(&root, 300, &["compare", "-f", "raw", "-F", "raw", s, &url]);
    assert!(out.ok && out.stdout.contains("Images are identical"), "qemu-img compare: {} {}", out.stdout, out.stderr);
    let out = qemu_img_iscsi(&root, 300, &["convert", "-f", "raw", "-O", "raw", &url, b]);
    assert!(out.ok, "qemu-img convert out of the LU over iSCSI: {} {}", out.stdout, out.stderr);
    let got = std::fs::read(&back).expect("read the copy");
    assert_eq!(first_difference(&got, &want), None, "the round trip over iSCSI changed the image");
    // What NBD clients see of the same disk is the same image.
    let out = run(300, tool("qemu-img").expect("qemu-img"), &["compare", "-f", "raw", "-F", "raw", s, &srv.uri()]);
    assert!(out.ok && out.stdout.contains("Images are identical"), "compare over NBD: {} {}", out.stdout, out.stderr);

    // compare over iSCSI must see one changed sector inside the largest zero run.
    let (start, len) = holes.iter().copied().max_by_key(|h| h.1).expect("holes");
    let at = start + len / 2 / 512 * 512;
    let out = run(60, &qemu_io, &["-f", "raw", "-c", &format!("write -P 0x77 {at} 512"), &srv.uri()]);
    assert!(out.ok, "qemu-io write: {}", out.stderr);
    let out = qemu_img_iscsi(&root, 300, &["compare", "-f", "raw", "-F", "raw", s, &url]);
    assert_eq!(out.code, Some(1), "qemu-img compare over iSCSI after a change: {} {}", out.stdout, out.stderr);
}

/// fio's `filename` for the libiscsi engine: its option parser takes `:` as a separator, so colons are escaped.
fn fio_filename(url: &str) -> String {
    url.replace(':', "\\:")
}

/// Transfer sizes around every limit a write crosses on its way in over iSCSI (`docs/limits.md`): one block, the
/// card's 64 KiB transfer, FirstBurstLength and the target's MaxRecvDataSegmentLength (256 KiB), MaxBurstLength
/// (1 MiB), each one block below and above, and the disk's MAXIMUM TRANSFER LENGTH (16 MiB).
const FIO_SIZES: &[u64] = &[
    512,
    4096,
    64 * 1024 - 512,
    64 * 1024,
    64 * 1024 + 512,
    256 * 1024 - 512,
    256 * 1024,
    256 * 1024 + 512,
    MIB - 512,
    MIB,
    MIB + 512,
    2 * MIB,
    16 * MIB,
];

fn fio_verify_args(filename: &str, extra: &[&str]) -> Vec<String> {
    // Equal shares of every size, the rounding put on the first.
    let share = 100 / FIO_SIZES.len() as u64;
    let first = 100 - share * (FIO_SIZES.len() as u64 - 1);
    let split: Vec<String> =
        FIO_SIZES.iter().enumerate().map(|(i, b)| format!("{b}/{}", if i == 0 { first } else { share })).collect();
    let mut args = vec![
        "--name=iscsi-verify".to_string(),
        "--ioengine=libiscsi".into(),
        format!("--filename={filename}"),
        "--rw=randwrite".into(),
        format!("--bssplit={}", split.join(":")),
        "--blockalign=512".into(),
        "--size=192m".into(),
        "--randseed=1807".into(),
        "--verify=crc32c".into(),
        "--verify_fatal=1".into(),
        "--output-format=json".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn fio_verifies_every_block_it_wrote_over_iscsi_at_every_limit() {
    let Some(fio) = fio_iscsi() else { return };
    let Some(qemu_io) = tool("qemu-io") else { return };
    let srv = Server::start(&ServeOptions { iscsi: true, ..ServeOptions::ram("256MiB") });
    let filename = fio_filename(&srv.iscsi_url());

    // Write every size at random places, then read all of it back and check each block's checksum and header.
    let args = fio_verify_args(&filename, &["--do_verify=1"]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(600, &fio, &argv);
    assert!(out.ok, "fio write + verify over iSCSI: {}\n{}", out.stdout, out.stderr);
    let json_start = out.stdout.find('{').expect("fio JSON");
    let job: serde_json::Value = serde_json::from_str(&out.stdout[json_start..]).expect("fio JSON");
    let job = &job["jobs"][0];
    assert_eq!(job["error"], 0, "fio reported an error: {job}");
    let written = job["write"]["io_bytes"].as_u64().expect("write bytes");
    assert_eq!(written, 192 * MIB, "fio wrote the whole region");
    let read = job["read"]["io_bytes"].as_u64().expect("read bytes");
    assert_eq!(read, written, "the verify pass read back every byte written");

    // A new session, the data only: the same job in verify-only mode finds every block as it was written.
    let args = fio_verify_args(&filename, &["--verify_only"]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(600, &fio, &argv);
    assert!(out.ok, "fio verify-only over a new iSCSI session: {}\n{}", out.stdout, out.stderr);

    // The check can fail: one sector changed behind fio's back (over NBD, the same disk) is found.
    let out = run(60, &qemu_io, &["-f", "raw", "-c", "write -P 0x5A 1048576 512", &srv.uri()]);
    assert!(out.ok, "qemu-io write: {}", out.stderr);
    let out = run(600, &fio, &argv);
    assert!(!out.ok, "fio verify-only missed a changed sector:\n{}", out.stdout);
}
