//! The disk over a file image: data survives reopening, and UNMAP punches holes.

mod common;
use common::*;
use scsi::{Disk, FileBackend, FileOptions};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

fn open(path: &std::path::Path) -> Disk {
    let opts = FileOptions { create: true, ..FileOptions::default() };
    let backend = FileBackend::open(path, 8 << 20, opts).unwrap();
    Disk::new(cfg(), Arc::new(backend)).unwrap()
}

#[test]
fn acknowledged_writes_are_in_the_image_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("disk.img");
    let data = pattern(16 * 512, 42);
    {
        let d = open(&p);
        good(&run_out(&d, &cdb16(0x8A, 0x08, 1000, 16), &data));
    }
    let d = open(&p);
    assert_eq!(run(&d, &read10(1000, 16)).1, data);
}

#[test]
fn unmap_punches_holes_in_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("disk.img");
    let d = open(&p);
    good(&run_out(&d, &write10(0, 2048), &[7; 2048 * 512]));
    good(&run(&d, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]).0);
    let before = std::fs::metadata(&p).unwrap().blocks();
    good(&run_out(&d, &cdb16(0x93, 0x08, 0, 2048), &[0; 512]));
    let after = std::fs::metadata(&p).unwrap().blocks();
    assert!(after < before, "blocks {before} -> {after}");
    assert_eq!(run(&d, &read10(0, 8)).1, vec![0; 8 * 512]);
    let (o, st) = run(&d, &cdb16(0x9E, 0x12, 0, 64));
    good(&o);
    assert_eq!(st[20] & 0x0F, 1, "first extent deallocated");
}
