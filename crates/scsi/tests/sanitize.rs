//! SANITIZE (SBC-4 §5.30): OVERWRITE, BLOCK ERASE, EXIT FAILURE MODE, the unit's
//! SANITIZE IN PROGRESS state with its progress indication, and the IMMED bit.

mod common;
use common::*;
use scsi::{execute, DiskConfig, LogicalUnit, Outcome};
use std::time::Duration;

const BLOCKS: u64 = 8192;

fn sanitize_cdb(sa: u8, immed: bool, plen: u16) -> [u8; 10] {
    let l = plen.to_be_bytes();
    [0x48, sa | if immed { 0x80 } else { 0 }, 0, 0, 0, 0, 0, l[0], l[1], 0]
}

fn overwrite_list(count: u8, invert: bool, pattern: &[u8]) -> Vec<u8> {
    let mut v = vec![count | if invert { 0x80 } else { 0 }, 0];
    v.extend_from_slice(&(pattern.len() as u16).to_be_bytes());
    v.extend_from_slice(pattern);
    v
}

fn fast() -> DiskConfig {
    DiskConfig { sanitize_bytes_per_second: 0, ..cfg() }
}

fn read_all(lu: &dyn LogicalUnit) -> Vec<u8> {
    let cdb = cdb16(0x88, 0, 0, BLOCKS as u32);
    let (o, data) = run(lu, &cdb);
    good(&o);
    data
}

/// Poll TEST UNIT READY until the sanitize is over (bounded: 600 tries 50 ms apart).
fn wait_ready(lu: &dyn LogicalUnit) -> Outcome {
    for _ in 0..600 {
        let (o, _) = run(lu, &[0, 0, 0, 0, 0, 0]);
        match o.sense.as_ref().map(|s| (s.asc, s.ascq)) {
            Some((0x04, 0x1B)) => std::thread::sleep(Duration::from_millis(50)),
            _ => return o,
        }
    }
    panic!("sanitize never ended");
}

#[test]
fn overwrite_fills_every_block_with_the_pattern() {
    let d = disk_with(fast());
    good(&run_out(&d, &write10(0, 8), &[b'a'; 4096]));
    let list = overwrite_list(1, false, &[0xAA; 512]);
    good(&run_out(&d, &sanitize_cdb(1, false, list.len() as u16), &list));
    assert!(read_all(&d).iter().all(|&b| b == 0xAA));
}

#[test]
fn overwrite_repeats_a_short_pattern_and_inverts_all_but_the_last_pass() {
    let d = disk_with(fast());
    let list = overwrite_list(2, true, &[1, 2, 3]);
    good(&run_out(&d, &sanitize_cdb(1, false, list.len() as u16), &list));
    let data = read_all(&d);
    // Each block starts the pattern again; the last (second) pass is not inverted.
    for block in data.chunks(512) {
        for (i, &b) in block.iter().enumerate() {
            assert_eq!(b, [1, 2, 3][i % 3]);
        }
    }
}

#[test]
fn overwrite_parameter_errors_are_illegal_request() {
    let d = disk_with(fast());
    // Parameter list length 0..=4 and block size + 5: INVALID FIELD IN CDB.
    for plen in [0u16, 1, 4, 517] {
        let list = vec![0u8; usize::from(plen)];
        let o = run_out(&d, &sanitize_cdb(1, false, plen), &list);
        assert_eq!(sense(&o), (0x05, 0x24, 0x00), "plen {plen}");
    }
    // OVERWRITE COUNT 0, pattern length 0, pattern longer than a block or than the list:
    // INVALID FIELD IN PARAMETER LIST.
    let mut bad = vec![overwrite_list(0, false, &[1; 512])];
    let mut zero_len = overwrite_list(1, false, &[1; 512]);
    zero_len[2..4].copy_from_slice(&[0, 0]);
    bad.push(zero_len);
    let mut too_long = overwrite_list(1, false, &[1; 512]);
    too_long[2..4].copy_from_slice(&516u16.to_be_bytes());
    bad.push(too_long);
    let mut past_list = overwrite_list(1, false, &[1; 8]);
    past_list[2..4].copy_from_slice(&9u16.to_be_bytes());
    bad.push(past_list);
    for list in bad {
        let o = run_out(&d, &sanitize_cdb(1, false, list.len() as u16), &list);
        assert_eq!(sense(&o), (0x05, 0x26, 0x00), "list {:?}", &list[..4]);
    }
    // Nothing was overwritten by the refused commands.
    assert!(read_all(&d).iter().all(|&b| b == 0));
}

#[test]
fn block_erase_deallocates_and_reads_zeros() {
    let d = disk_with(fast());
    good(&run_out(&d, &write10(0, 8), &[b'a'; 4096]));
    good(&run_out(&d, &write10(BLOCKS as u32 - 8, 8), &[b'a'; 4096]));
    good(&run(&d, &sanitize_cdb(2, false, 0)).0);
    assert!(read_all(&d).iter().all(|&b| b == 0));
    // GET LBA STATUS: LBA 0 is deallocated (provisioning status 1).
    let (o, data) = run(&d, &cdb16(0x9E, 0x12, 0, 64));
    good(&o);
    assert_eq!(data[8 + 12] & 0x0F, 1, "{data:?}");
    // A parameter list with BLOCK ERASE is INVALID FIELD IN CDB.
    let o = run_out(&d, &sanitize_cdb(2, false, 8), &[0; 8]);
    assert_eq!(sense(&o), (0x05, 0x24, 0x00));
}

#[test]
fn block_erase_is_offered_only_with_provisioning() {
    let d = disk_with(DiskConfig { thin_provisioning: false, ..fast() });
    let o = run(&d, &sanitize_cdb(2, false, 0)).0;
    assert_eq!(sense(&o), (0x05, 0x24, 0x00));
    let names: Vec<_> = d.supported_commands().into_iter().map(|c| c.2).collect();
    assert!(names.contains(&"SANITIZE / OVERWRITE"));
    assert!(!names.contains(&"SANITIZE / BLOCK ERASE"));
}

#[test]
fn unknown_service_actions_are_invalid_field() {
    let d = disk_with(fast());
    for sa in (0..=0x1F).filter(|sa| ![1, 2, 0x1F].contains(sa)) {
        let o = run(&d, &sanitize_cdb(sa, false, 0)).0;
        assert_eq!(sense(&o), (0x05, 0x24, 0x00), "service action {sa:#x}");
    }
}

#[test]
fn exit_failure_mode_without_a_failure_is_a_sequence_error() {
    let d = disk_with(fast());
    let o = run(&d, &sanitize_cdb(0x1F, false, 0)).0;
    assert_eq!(sense(&o), (0x05, 0x2C, 0x00));
    let o = run_out(&d, &sanitize_cdb(0x1F, false, 8), &[0; 8]);
    assert_eq!(sense(&o), (0x05, 0x24, 0x00));
}

#[test]
fn write_protected_unit_refuses_sanitize() {
    let d = disk_with(DiskConfig { read_only: true, ..fast() });
    let list = overwrite_list(1, false, &[0xAA; 512]);
    let o = run_out(&d, &sanitize_cdb(1, false, list.len() as u16), &list);
    assert_eq!(sense(&o), (0x07, 0x27, 0x00));
    let o = run(&d, &sanitize_cdb(2, false, 0)).0;
    assert_eq!(sense(&o), (0x07, 0x27, 0x00));
}

#[test]
fn immediate_sanitize_reports_progress_until_done() {
    // 4 MiB at 1 MiB/s: the operation outlasts the checks below by far.
    let d = disk_with(DiskConfig { sanitize_bytes_per_second: 1 << 20, ..cfg() });
    let list = overwrite_list(1, false, &[0x5A; 512]);
    good(&run_out(&d, &sanitize_cdb(1, true, list.len() as u16), &list));
    // Medium and other commands: NOT READY / SANITIZE IN PROGRESS, with progress (SKSV).
    for cdb in [&[0u8, 0, 0, 0, 0, 0][..], &read10(0, 1)[..], &[0x1B, 0, 0, 0, 1, 0][..]] {
        let o = run(&d, cdb).0;
        assert_eq!(sense(&o), (0x02, 0x04, 0x1B), "{cdb:?}");
        let sks = o.sense.as_ref().and_then(|s| s.sks).expect("progress indication");
        assert_eq!(sks[0] & 0x80, 0x80);
    }
    // A second SANITIZE too.
    let o = run_out(&d, &sanitize_cdb(1, true, list.len() as u16), &list);
    assert_eq!(sense(&o), (0x02, 0x04, 0x1B));
    // INQUIRY still works; REQUEST SENSE reports the progress as data.
    good(&run(&d, &[0x12, 0, 0, 0, 36, 0]).0);
    let (o, data) = execute(&d, A, &[0x03, 0, 0, 0, 18, 0], &[], 18);
    good(&o);
    assert_eq!((data[2] & 0x0F, data[12], data[13]), (0x02, 0x04, 0x1B));
    assert_eq!(data[15] & 0x80, 0x80, "SKSV set with the progress");
    // Resets do not stop it.
    d.reset();
    let o = run(&d, &[0, 0, 0, 0, 0, 0]).0;
    assert_eq!(sense(&o), (0x02, 0x04, 0x1B));
    // Once over the unit attention of the reset comes, then the medium holds the pattern.
    let o = wait_ready(&d);
    assert_eq!(sense(&o), (0x06, 0x29, 0x00));
    assert!(read_all(&d).iter().all(|&b| b == 0x5A));
}

#[test]
fn progress_grows_while_the_overwrite_runs() {
    let d = disk_with(DiskConfig { sanitize_bytes_per_second: 2 << 20, ..cfg() });
    let list = overwrite_list(1, false, &[0x11; 512]);
    good(&run_out(&d, &sanitize_cdb(1, true, list.len() as u16), &list));
    let progress = |o: &Outcome| {
        let s = o.sense.as_ref().and_then(|s| s.sks)?;
        Some(u16::from_be_bytes([s[1], s[2]]))
    };
    let first = progress(&run(&d, &[0, 0, 0, 0, 0, 0]).0).expect("in progress");
    let mut later = first;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(20));
        match progress(&run(&d, &[0, 0, 0, 0, 0, 0]).0) {
            Some(p) => later = p,
            None => break,
        }
        if later > first {
            break;
        }
    }
    assert!(later > first, "progress stayed at {first}");
    good(&wait_ready(&d));
}

/// A backend whose writes fail, to drive the unit into sanitize failure mode.
struct Failing(scsi::RamBackend);

impl scsi::Backend for Failing {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.0.read_at(off, buf)
    }
    fn write_at(&self, _: u64, _: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::other("injected"))
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn discard(&self, off: u64, len: u64) -> std::io::Result<()> {
        self.0.discard(off, len)
    }
    fn is_allocated(&self, off: u64, len: u64) -> std::io::Result<bool> {
        self.0.is_allocated(off, len)
    }
}

#[test]
fn a_failed_sanitize_holds_the_unit_until_exit_failure_mode_or_a_good_sanitize() {
    let d = scsi::Disk::new(fast(), std::sync::Arc::new(Failing(scsi::RamBackend::new(4 << 20)))).unwrap();
    let list = overwrite_list(1, false, &[0xAA; 512]);
    // AUSE = 0: the failure may only be cleared by a sanitize that succeeds.
    let o = run_out(&d, &sanitize_cdb(1, false, list.len() as u16), &list);
    assert_eq!(sense(&o), (0x03, 0x31, 0x03));
    assert_eq!(sense(&run(&d, &read10(0, 1)).0), (0x03, 0x31, 0x03));
    assert_eq!(sense(&run(&d, &sanitize_cdb(0x1F, false, 0)).0), (0x05, 0x2C, 0x00));
    good(&run(&d, &sanitize_cdb(2, false, 0)).0);
    good(&run(&d, &read10(0, 1)).0);
    // AUSE = 1: EXIT FAILURE MODE ends it.
    let mut cdb = sanitize_cdb(1, false, list.len() as u16);
    cdb[1] |= 0x20;
    assert_eq!(sense(&run_out(&d, &cdb, &list)), (0x03, 0x31, 0x03));
    good(&run(&d, &sanitize_cdb(0x1F, false, 0)).0);
    good(&run(&d, &read10(0, 1)).0);
}

fn encrypted(cfg: DiskConfig) -> scsi::Disk {
    let ram: std::sync::Arc<dyn scsi::Backend> = std::sync::Arc::new(scsi::RamBackend::new(BLOCKS * 512));
    let enc = scsi::EncryptedBackend::new(ram, None).expect("encrypted backend");
    scsi::Disk::new(DiskConfig { crypto_erase: true, ..cfg }, std::sync::Arc::new(enc)).expect("disk")
}

#[test]
fn crypto_erase_makes_every_written_block_unreadable_and_new_writes_work() {
    let d = encrypted(fast());
    let a = vec![b'a'; 256 * 512];
    good(&run_out(&d, &cdb16(0x8A, 0, 0, 256), &a));
    good(&run_out(&d, &cdb16(0x8A, 0, BLOCKS - 256, 256), &a));
    good(&run(&d, &sanitize_cdb(3, false, 0)).0);
    let all = read_all(&d);
    for lba in (0..256).chain(BLOCKS - 256..BLOCKS) {
        let block = &all[(lba * 512) as usize..][..512];
        assert_ne!(block, &a[..512], "LBA {lba} still holds what was written before the erase");
    }
    // WACEREQ 01b: reads after the erase are GOOD (above), and the unit takes new data.
    good(&run_out(&d, &write10(7, 1), &[0x5C; 512]));
    let (o, data) = run(&d, &read10(7, 1));
    good(&o);
    assert!(data.iter().all(|&b| b == 0x5C));
    // With IMMED the command returns at once and the unit reports the erase until it is done.
    good(&run(&d, &sanitize_cdb(3, true, 0)).0);
    good(&wait_ready(&d));
    let (o, data) = run(&d, &read10(7, 1));
    good(&o);
    assert!(data.iter().any(|&b| b != 0x5C), "the second erase replaced the key again");
}

#[test]
fn crypto_erase_is_offered_only_on_an_encrypted_medium() {
    // A plain disk: not in the command list, INVALID FIELD IN CDB, WACEREQ 00b.
    let plain = disk_with(fast());
    let names: Vec<_> = plain.supported_commands().into_iter().map(|c| c.2).collect();
    assert!(!names.contains(&"SANITIZE / CRYPTOGRAPHIC ERASE"));
    assert_eq!(sense(&run(&plain, &sanitize_cdb(3, false, 0)).0), (0x05, 0x24, 0x00));
    let (o, vpd) = run(&plain, &[0x12, 1, 0xB1, 0, 0x40, 0]);
    good(&o);
    assert_eq!(vpd[7] & 0x30, 0, "WACEREQ on a plain medium");
    // Asking for it on a backend that cannot: a configuration error.
    let ram: std::sync::Arc<dyn scsi::Backend> = std::sync::Arc::new(scsi::RamBackend::new(BLOCKS * 512));
    assert!(matches!(
        scsi::Disk::new(DiskConfig { crypto_erase: true, ..fast() }, ram),
        Err(scsi::ConfigError::CryptoErase)
    ));
    // An encrypted one: listed, WACEREQ 01b, a parameter list is INVALID FIELD IN CDB, write protection wins.
    let d = encrypted(fast());
    let names: Vec<_> = d.supported_commands().into_iter().map(|c| c.2).collect();
    assert!(names.contains(&"SANITIZE / CRYPTOGRAPHIC ERASE"));
    let (o, vpd) = run(&d, &[0x12, 1, 0xB1, 0, 0x40, 0]);
    good(&o);
    assert_eq!(vpd[7] & 0x30, 0x10, "WACEREQ on an encrypted medium");
    assert_eq!(sense(&run_out(&d, &sanitize_cdb(3, false, 8), &[0; 8])), (0x05, 0x24, 0x00));
    let ro = encrypted(DiskConfig { read_only: true, ..fast() });
    assert_eq!(sense(&run(&ro, &sanitize_cdb(3, false, 0)).0), (0x07, 0x27, 0x00));
}
