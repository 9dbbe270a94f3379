//! What users do first with a new NBD export: import a sparse image into it and export it back, with `nbdcopy` and
//! `qemu-img convert`, and check it with `qemu-img compare`. The image has data islands and zero runs of every size
//! from one block up to beyond the largest NBD request (32 MiB), so the clients send WRITE_ZEROES (and TRIM) of every
//! size too, up to the maximum and split above it. Byte-identical round trips through the whole stack.

mod serve_common;

use serve_common::{pattern, run, tool, ServeOptions, Server, MIB};
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
