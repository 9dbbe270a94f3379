//! Per-command behaviour of the disk logical unit: data and sense.

mod common;
use common::*;
use scsi::{execute, Backend, Disk, DiskConfig, LogicalUnit, RamBackend, ScsiStatus, Sense};
use std::sync::Arc;

#[test]
fn test_unit_ready_is_good() {
    good(&run(&disk(), &[0, 0, 0, 0, 0, 0]).0);
}

#[test]
fn first_command_of_a_nexus_reports_power_on_then_clears() {
    let d = disk_with(DiskConfig::default());
    assert_eq!(sense(&run(&d, &[0; 6]).0), (6, 0x29, 0x00));
    good(&run(&d, &[0; 6]).0);
}

#[test]
fn unknown_opcode_is_invalid_command_operation_code() {
    assert_eq!(sense(&run(&disk(), &[0xC0, 0, 0, 0, 0, 0]).0), (5, 0x20, 0x00));
    assert_eq!(sense(&run(&disk(), &[]).0), (5, 0x20, 0x00));
}

#[test]
fn reserved_cdb_bit_is_invalid_field_with_field_pointer() {
    let mut c = read10(0, 1);
    c[1] = 0x40; // RDPROTECT 010b: no protection information
    let (o, _) = run(&disk(), &c);
    assert_eq!(sense(&o), (5, 0x24, 0x00));
    assert_eq!(o.sense.unwrap().sks, Some([0xCE, 0, 1]));
}

#[test]
fn short_cdb_is_rejected_not_read_past() {
    assert_eq!(sense(&run(&disk(), &[0x28, 0, 0]).0), (5, 0x24, 0x00));
}

#[test]
fn write_then_read_round_trips_in_every_cdb_size() {
    let d = disk();
    let data = pattern(4 * 512, 7);
    good(&run_out(&d, &write10(100, 4), &data));
    let (o, back) = run(&d, &read10(100, 4));
    good(&o);
    assert_eq!(back, data);
    let (o, back) = run(&d, &cdb16(0x88, 0, 100, 4));
    good(&o);
    assert_eq!(back, data);
    let (o, back) = run(&d, &[0xA8, 0, 0, 0, 0, 100, 0, 0, 0, 4, 0, 0]);
    good(&o);
    assert_eq!(back, data);
    let (o, back) = run(&d, &[0x08, 0, 0, 100, 4, 0]);
    good(&o);
    assert_eq!(back, data);
    let data2 = pattern(2 * 512, 99);
    good(&run_out(&d, &[0x0A, 0, 0, 50, 2, 0], &data2));
    good(&run_out(&d, &cdb16(0x8A, 0x08, 200, 2), &data2));
    assert_eq!(run(&d, &read10(50, 2)).1, data2);
    assert_eq!(run(&d, &read10(200, 2)).1, data2);
}

#[test]
fn read6_transfer_length_zero_means_256_blocks() {
    match disk().begin(A, &[0x08, 0, 0, 0, 0, 0]) {
        scsi::Begin::DataIn { len, .. } => assert_eq!(len, 256 * 512),
        other => panic!("{other:?}"),
    }
}

#[test]
fn zero_length_transfers_are_good_up_to_the_capacity() {
    let d = disk();
    good(&run(&d, &read10(8192, 0)).0);
    assert_eq!(sense(&run(&d, &read10(8193, 0)).0), (5, 0x21, 0x00));
}

#[test]
fn access_past_the_end_is_lba_out_of_range() {
    let d = disk();
    assert_eq!(sense(&run(&d, &read10(8191, 2)).0), (5, 0x21, 0x00));
    assert_eq!(sense(&run_out(&d, &write10(8192, 1), &[0; 512])), (5, 0x21, 0x00));
    // lba + length overflows u64: still out of range, never wrapped.
    assert_eq!(sense(&run(&d, &cdb16(0x88, 0, u64::MAX - 1, 4)).0), (5, 0x21, 0x00));
    good(&run(&d, &read10(8191, 1)).0);
}

#[test]
fn read_only_unit_refuses_writes_with_write_protect() {
    let d = disk_with(DiskConfig { read_only: true, ..cfg() });
    assert_eq!(sense(&run_out(&d, &write10(0, 1), &[0; 512])), (7, 0x27, 0x00));
    assert_eq!(sense(&run_out(&d, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &[0; 24])), (7, 0x27, 0x00));
    good(&run(&d, &read10(0, 1)).0);
    let (_, ms) = run(&d, &[0x1A, 0x08, 0x3F, 0, 255, 0]);
    assert_eq!(ms[2] & 0x80, 0x80, "WP in the mode parameter header");
}

#[test]
fn request_sense_without_pending_condition_is_no_sense() {
    let (o, s) = run(&disk(), &[0x03, 0, 0, 0, 252, 0]);
    good(&o);
    assert_eq!(s.len(), 18);
    assert_eq!((s[0], s[2] & 0x0F, s[12], s[13]), (0x70, 0, 0, 0));
}

#[test]
fn request_sense_returns_and_clears_a_unit_attention_in_the_asked_format() {
    let d = disk_with(DiskConfig::default());
    let (o, s) = run(&d, &[0x03, 1, 0, 0, 252, 0]);
    good(&o);
    assert_eq!((s[0], s[1], s[2], s[3]), (0x72, 6, 0x29, 0x00));
    good(&run(&d, &[0; 6]).0);
}

#[test]
fn verify_bytchk_compares_and_reports_the_miscompare_offset() {
    let d = disk();
    let data = pattern(1024, 3);
    good(&run_out(&d, &write10(10, 2), &data));
    let mut v = read10(10, 2);
    v[0] = 0x2F;
    v[1] = 0x02; // BYTCHK 01b
    good(&run_out(&d, &v, &data));
    let mut bad = data.clone();
    bad[700] ^= 1;
    let o = run_out(&d, &v, &bad);
    assert_eq!(sense(&o), (0x0E, 0x1D, 0x00));
    assert_eq!(o.sense.unwrap().info, Some(700));
    v[1] = 0x04; // BYTCHK 10b is reserved
    assert_eq!(sense(&run_out(&d, &v, &data)), (5, 0x24, 0x00));
    v[1] = 0;
    good(&run(&d, &v).0);
}

#[test]
fn verify_bytchk_11_compares_one_block_against_the_range() {
    let d = disk();
    good(&run_out(&d, &write10(0, 3), &[0xAB; 1536]));
    let c = cdb16(0x8F, 0x06, 0, 3);
    good(&run_out(&d, &c, &[0xAB; 512]));
    let o = run_out(&d, &cdb16(0x8F, 0x06, 0, 4), &[0xAB; 512]);
    assert_eq!(sense(&o), (0x0E, 0x1D, 0x00));
    assert_eq!(o.sense.unwrap().info, Some(1536));
}

fn caw(lba: u64, n: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x89;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = n;
    c
}

#[test]
fn compare_and_write_writes_only_on_match() {
    let d = disk();
    good(&run_out(&d, &write10(5, 1), &[1; 512]));
    let mut buf = vec![1u8; 512];
    buf.extend_from_slice(&[2; 512]);
    good(&run_out(&d, &caw(5, 1), &buf));
    assert_eq!(run(&d, &read10(5, 1)).1, vec![2; 512]);
    // Verify data no longer matches: miscompare at the first differing byte, no write.
    let mut buf = vec![2u8; 512];
    buf[17] = 9;
    buf.extend_from_slice(&[3; 512]);
    let o = run_out(&d, &caw(5, 1), &buf);
    assert_eq!(sense(&o), (0x0E, 0x1D, 0x00));
    assert_eq!(o.sense.unwrap().info, Some(17));
    assert_eq!(run(&d, &read10(5, 1)).1, vec![2; 512]);
}

#[test]
fn compare_and_write_whose_data_out_length_contradicts_the_cdb_is_invalid() {
    let d = disk();
    // 256 blocks do not fit the one-byte field: the CDB says 0, the initiator sends 256.
    let (o, _) = scsi::drive(d.begin_expecting(A, &caw(0, 0), 2 * 256 * 512), &[0; 2 * 256 * 512], 0);
    assert_eq!(sense(&o), (5, 0x24, 0x00));
    let mut buf = vec![0u8; 512];
    buf.extend_from_slice(&[6; 512]);
    let (o, _) = scsi::drive(d.begin_expecting(A, &caw(0, 1), 1024), &buf, 0);
    good(&o);
    assert_eq!(run(&d, &read10(0, 1)).1, vec![6; 512]);
}

#[test]
fn compare_and_write_with_a_short_data_out_commits_nothing() {
    let d = disk();
    let mut buf = vec![0u8; 512];
    buf.extend_from_slice(&[7; 300]);
    let o = run_out(&d, &caw(0, 1), &buf);
    assert_eq!(sense(&o), (0x0B, 0x00, 0x00));
    assert_eq!(run(&d, &read10(0, 1)).1, vec![0; 512]);
}

#[test]
fn compare_and_write_is_atomic_against_concurrent_increments() {
    let d = Arc::new(disk());
    let threads = 4;
    let per = 50u64;
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let d = d.clone();
            std::thread::spawn(move || {
                let me = scsi::Nexus::new(t);
                let mut done = 0;
                let mut tries = 0;
                while done < per && tries < 1_000_000 {
                    tries += 1;
                    let (_, cur) = execute(&*d, me, &read10(7, 1), &[], 512);
                    let v = u64::from_be_bytes(cur[0..8].try_into().unwrap());
                    let mut buf = cur.clone();
                    let mut next = cur.clone();
                    next[0..8].copy_from_slice(&(v + 1).to_be_bytes());
                    buf.extend_from_slice(&next);
                    if execute(&*d, me, &caw(7, 1), &buf, 0).0.is_good() {
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    let total: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, threads * per);
    let (_, cur) = run(&*d, &read10(7, 1));
    assert_eq!(u64::from_be_bytes(cur[0..8].try_into().unwrap()), threads * per);
}

#[test]
fn orwrite_ors_data_into_the_medium() {
    let d = disk();
    good(&run_out(&d, &write10(3, 1), &[0x0F; 512]));
    good(&run_out(&d, &cdb16(0x8B, 0, 3, 1), &[0x30; 512]));
    assert_eq!(run(&d, &read10(3, 1)).1, vec![0x3F; 512]);
}

#[test]
fn prefetch_checks_its_range() {
    let d = disk();
    good(&run(&d, &[0x34, 0, 0, 0, 0, 0, 0, 0, 8, 0]).0);
    assert_eq!(sense(&run(&d, &cdb16(0x90, 0, 8190, 4)).0), (5, 0x21, 0x00));
}

#[test]
fn synchronize_cache_checks_its_range() {
    let d = disk();
    assert_eq!(sense(&run(&d, &cdb16(0x91, 0, 8193, 0)).0), (5, 0x21, 0x00));
    good(&run(&d, &cdb16(0x91, 0, 8000, 0)).0);
}

#[test]
fn write_same_replicates_one_block() {
    let d = disk();
    let block = pattern(512, 11);
    good(&run_out(&d, &[0x41, 0, 0, 0, 0, 20, 0, 0, 5, 0], &block));
    assert_eq!(run(&d, &read10(20, 5)).1, block.repeat(5));
    assert_eq!(run(&d, &read10(25, 1)).1, vec![0; 512]);
}

fn lba_status(d: &dyn LogicalUnit, lba: u64) -> Vec<(u64, u32, u8)> {
    let (o, p) = run(d, &cdb16(0x9E, 0x12, lba, 4096));
    good(&o);
    let n = u32::from_be_bytes(p[0..4].try_into().unwrap()) as usize;
    p[8..4 + n]
        .chunks(16)
        .map(|c| {
            (
                u64::from_be_bytes(c[0..8].try_into().unwrap()),
                u32::from_be_bytes(c[8..12].try_into().unwrap()),
                c[12] & 0x0F,
            )
        })
        .collect()
}

#[test]
fn write_same_with_unmap_deallocates_and_reads_zero() {
    let d = disk();
    good(&run_out(&d, &write10(0, 16), &[9; 16 * 512]));
    good(&run_out(&d, &cdb16(0x93, 0x08, 4, 8), &[0; 512]));
    assert_eq!(run(&d, &read10(4, 8)).1, vec![0; 8 * 512]);
    assert_eq!(lba_status(&d, 0)[..3], [(0, 4, 0), (4, 8, 1), (12, 4, 0)]);
}

#[test]
fn write_same_with_unmap_deallocates_whatever_the_data_block_holds() {
    let d = disk();
    good(&run_out(&d, &write10(0, 8), &[9; 8 * 512]));
    good(&run_out(&d, &[0x41, 0x08, 0, 0, 0, 0, 0, 0, 8, 0], &[0xFF; 512]));
    assert_eq!(run(&d, &read10(0, 8)).1, vec![0; 8 * 512]);
    assert_eq!(lba_status(&d, 0)[0], (0, 8192, 1), "nothing left allocated");
}

#[test]
fn write_same_beyond_its_maximum_length_is_invalid() {
    let d = disk_with(DiskConfig { max_write_same_blocks: 16, ..cfg() });
    assert_eq!(sense(&run_out(&d, &cdb16(0x93, 0, 0, 17), &[1; 512])), (5, 0x24, 0x00));
    good(&run_out(&d, &cdb16(0x93, 0, 0, 16), &[1; 512]));
    let (_, b0) = run(&d, &[0x12, 1, 0xB0, 0, 255, 0]);
    assert_eq!(u64::from_be_bytes(b0[36..44].try_into().unwrap()), 16);
}

#[test]
fn write_same_zero_blocks_runs_to_the_end() {
    let d = disk();
    good(&run_out(&d, &cdb16(0x93, 0, 8000, 0), &[5; 512]));
    assert_eq!(run(&d, &read10(8191, 1)).1, vec![5; 512]);
    assert_eq!(run(&d, &read10(7999, 1)).1, vec![0; 512]);
}

#[test]
fn write_same_ndob_writes_zeros_without_data_out() {
    let d = disk();
    good(&run_out(&d, &write10(0, 2), &[1; 1024]));
    good(&run(&d, &cdb16(0x93, 0x01, 0, 2)).0);
    assert_eq!(run(&d, &read10(0, 2)).1, vec![0; 1024]);
}

fn unmap_list(ranges: &[(u64, u32)]) -> Vec<u8> {
    let mut l = vec![0u8; 8];
    for &(lba, n) in ranges {
        l.extend_from_slice(&lba.to_be_bytes());
        l.extend_from_slice(&n.to_be_bytes());
        l.extend_from_slice(&[0; 4]);
    }
    let dl = (l.len() - 8) as u16;
    let total = (l.len() - 2) as u16;
    l[0..2].copy_from_slice(&total.to_be_bytes());
    l[2..4].copy_from_slice(&dl.to_be_bytes());
    l
}

fn unmap_cdb(len: usize) -> [u8; 10] {
    let l = (len as u16).to_be_bytes();
    [0x42, 0, 0, 0, 0, 0, 0, l[0], l[1], 0]
}

#[test]
fn unmap_deallocates_every_listed_range() {
    let d = disk();
    good(&run_out(&d, &write10(0, 32), &[4; 32 * 512]));
    let l = unmap_list(&[(2, 2), (10, 6)]);
    good(&run_out(&d, &unmap_cdb(l.len()), &l));
    assert_eq!(run(&d, &read10(2, 2)).1, vec![0; 1024]);
    assert_eq!(run(&d, &read10(4, 1)).1, vec![4; 512]);
    let st = lba_status(&d, 0);
    assert_eq!(st[..5], [(0, 2, 0), (2, 2, 1), (4, 6, 0), (10, 6, 1), (16, 16, 0)]);
}

#[test]
fn unmap_out_of_range_touches_nothing() {
    let d = disk();
    good(&run_out(&d, &write10(0, 4), &[4; 2048]));
    let l = unmap_list(&[(0, 2), (8190, 4)]);
    assert_eq!(sense(&run_out(&d, &unmap_cdb(l.len()), &l)), (5, 0x21, 0x00));
    assert_eq!(run(&d, &read10(0, 2)).1, vec![4; 1024]);
}

#[test]
fn unmap_parameter_list_shorter_than_its_header_is_a_length_error() {
    assert_eq!(sense(&run_out(&disk(), &unmap_cdb(4), &[0; 4])), (5, 0x1A, 0x00));
}

#[test]
fn provisioning_commands_are_absent_without_thin_provisioning() {
    let d = disk_with(DiskConfig { thin_provisioning: false, ..cfg() });
    assert_eq!(sense(&run_out(&d, &unmap_cdb(24), &[0; 24])), (5, 0x20, 0x00));
    assert_eq!(sense(&run(&d, &cdb16(0x9E, 0x12, 0, 64)).0), (5, 0x24, 0x00));
}

#[test]
fn get_lba_status_beyond_the_end_is_out_of_range() {
    assert_eq!(sense(&run(&disk(), &cdb16(0x9E, 0x12, 8192, 64)).0), (5, 0x21, 0x00));
}

#[test]
fn stopped_unit_is_not_ready_until_started() {
    let d = disk();
    good(&run(&d, &[0x1B, 0, 0, 0, 0x00, 0]).0);
    assert_eq!(sense(&run(&d, &read10(0, 1)).0), (2, 0x04, 0x02));
    assert_eq!(sense(&run(&d, &[0; 6]).0), (2, 0x04, 0x02));
    good(&run(&d, &[0x12, 0, 0, 0, 36, 0]).0);
    good(&run(&d, &[0x1B, 0, 0, 0, 0x01, 0]).0);
    good(&run(&d, &read10(0, 1)).0);
    assert_eq!(sense(&run(&d, &[0x1B, 0, 0, 0, 0x50, 0]).0), (5, 0x24, 0x00));
}

#[test]
fn prevent_allow_accepts_prevent_and_allow_only() {
    let d = disk();
    good(&run(&d, &[0x1E, 0, 0, 0, 1, 0]).0);
    good(&run(&d, &[0x1E, 0, 0, 0, 0, 0]).0);
    assert_eq!(sense(&run(&d, &[0x1E, 0, 0, 0, 2, 0]).0), (5, 0x24, 0x00));
}

#[test]
fn read_defect_data_returns_an_empty_list() {
    let (o, p) = run(&disk(), &[0x37, 0, 0x0D, 0, 0, 0, 0, 0, 255, 0]);
    good(&o);
    assert_eq!(p, vec![0, 0x0D, 0, 0]);
}

#[test]
fn capacity_change_raises_capacity_data_changed() {
    let d = disk();
    good(&run(&d, &[0; 6]).0);
    d.set_blocks(4096).unwrap();
    assert_eq!(sense(&run(&d, &[0; 6]).0), (6, 0x2A, 0x09));
    let (_, c) = run(&d, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(u32::from_be_bytes([c[0], c[1], c[2], c[3]]), 4095);
    assert!(d.set_blocks(1 << 40).is_err());
}

#[test]
fn reset_raises_power_on_reset_for_every_nexus() {
    let d = disk();
    good(&run(&d, &[0; 6]).0);
    good(&execute(&d, B, &[0; 6], &[], 0).0);
    d.reset();
    assert_eq!(sense(&run(&d, &[0; 6]).0), (6, 0x29, 0x00));
    assert_eq!(sense(&execute(&d, B, &[0; 6], &[], 0).0), (6, 0x29, 0x00));
    good(&run(&d, &[0; 6]).0);
}

#[test]
fn config_errors_name_the_field() {
    let b = || -> Arc<dyn Backend> { Arc::new(RamBackend::new(1 << 20)) };
    let e = Disk::new(DiskConfig { block_size: 1024, ..cfg() }, b()).err().unwrap();
    assert!(e.to_string().contains("block_size"));
    let e = Disk::new(DiskConfig { blocks: 1 << 20, ..cfg() }, b()).err().unwrap();
    assert!(e.to_string().contains("blocks"));
    let e = Disk::new(DiskConfig { vendor: "TOO LONG VENDOR".into(), ..cfg() }, b()).err().unwrap();
    assert!(e.to_string().contains("vendor"));
    let e = Disk::new(DiskConfig { wwn: 0x1234, ..cfg() }, b()).err().unwrap();
    assert!(e.to_string().contains("wwn"));
}

#[test]
fn config_deserializes_from_toml() {
    let c: DiskConfig =
        toml::from_str("block_size = 4096\nread_only = true\nserial = \"X1\"\n[faults]\nbusy = 1\n").unwrap();
    assert_eq!((c.block_size, c.read_only, c.serial.as_str(), c.faults.busy), (4096, true, "X1", 1));
    assert!(toml::from_str::<DiskConfig>("blok_size = 1\n").is_err());
}

#[test]
fn sense_key_parse_agrees_with_rendering() {
    let o = run(&disk(), &read10(9000, 1)).0;
    let s = o.sense.clone().unwrap();
    assert_eq!(Sense::parse(&s.to_fixed()).unwrap().code(), s.code());
    assert_eq!(o.status, ScsiStatus::CHECK_CONDITION);
}

#[test]
fn d_sense_also_covers_sense_from_the_data_phase() {
    let d = disk();
    let p = vec![0, 0, 0, 0, 0x0A, 0x0A, 0x06, 0x10, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0];
    good(&run_out(&d, &[0x15, 0x10, 0, 0, 16, 0], &p));
    d.faults().set_medium_error(Some(scsi::LbaRange { start: 1, count: 1 }));
    let o = run(&d, &read10(0, 2)).0;
    assert_eq!(sense(&o), (3, 0x11, 0x00));
    assert!(o.sense.unwrap().descriptor);
}

#[test]
fn concurrent_writers_on_distinct_ranges_keep_their_data() {
    let d = Arc::new(disk());
    let hs: Vec<_> = (0..4u8)
        .map(|t| {
            let d = d.clone();
            std::thread::spawn(move || {
                let me = scsi::Nexus::new(u64::from(t));
                for round in 0..20u8 {
                    let lba = u32::from(t) * 2048 + u32::from(round) * 64;
                    let data = pattern(64 * 512, t.wrapping_mul(16).wrapping_add(round));
                    assert!(execute(&*d, me, &write10(lba, 64), &data, 0).0.is_good());
                    let (o, back) = execute(&*d, me, &read10(lba, 64), &[], 64 * 512);
                    assert!(o.is_good());
                    assert_eq!(back, data);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

/// SBC-3 §6.5.3: the MAXIMUM TRANSFER LENGTH the Block Limits page reports is what READ, WRITE, WRITE AND VERIFY,
/// VERIFY with BYTCHK = 01b, ORWRITE and PRE-FETCH accept; one block more is INVALID FIELD IN CDB, in every CDB
/// size.
#[test]
fn transfers_up_to_the_reported_maximum_are_good_and_one_block_more_is_an_invalid_field() {
    let d = disk_with(DiskConfig { max_transfer_bytes: 64 * 512, ..cfg() });
    let (o, page) = run(&d, &[0x12, 1, 0xB0, 0, 64, 0]);
    good(&o);
    let max = u32::from_be_bytes([page[8], page[9], page[10], page[11]]);
    assert_eq!(max, 64, "MAXIMUM TRANSFER LENGTH");
    assert_eq!(u32::from_be_bytes([page[16], page[17], page[18], page[19]]), 64, "MAXIMUM PREFETCH LENGTH");
    let data = vec![0x5Au8; (max as usize + 1) * 512];
    for (op, out) in [(0x88u8, false), (0x8A, true), (0x8E, true), (0x8B, true), (0x90, false)] {
        let at_max = cdb16(op, 0, 8, max);
        let o = if out { run_out(&d, &at_max, &data[..max as usize * 512]) } else { run(&d, &at_max).0 };
        good(&o);
        let over = cdb16(op, 0, 8, max + 1);
        let o = if out { run_out(&d, &over, &data) } else { run(&d, &over).0 };
        assert_eq!(sense(&o), (5, 0x24, 0x00), "opcode {op:#04x} one block over the limit");
    }
    // VERIFY(16) with BYTCHK = 01b moves the data; BYTCHK = 00b moves none and is not limited.
    assert_eq!(sense(&run_out(&d, &cdb16(0x8F, 0x02, 0, max + 1), &data)), (5, 0x24, 0x00));
    // The length is a field of the CDB and is checked before the range: over the limit and past the end as well
    // is still INVALID FIELD IN CDB, for every command the limit applies to.
    let past = 8192 - u64::from(max);
    for (op, flags, out) in [(0x88u8, 0, false), (0x8A, 0, true), (0x8E, 0, true), (0x90, 0, false), (0x8F, 0x02, true)]
    {
        let c = cdb16(op, flags, past, max + 1);
        let o = if out { run_out(&d, &c, &data) } else { run(&d, &c).0 };
        assert_eq!(sense(&o), (5, 0x24, 0x00), "opcode {op:#04x} over the limit and past the end");
    }
    good(&run(&d, &cdb16(0x8F, 0, 0, max + 1)).0);
    // The 10-byte forms point at their own length field.
    let mut r10 = [0x28u8, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    r10[7..9].copy_from_slice(&((max + 1) as u16).to_be_bytes());
    let o = run(&d, &r10).0;
    assert_eq!(sense(&o), (5, 0x24, 0x00));
    let sks = o.sense.as_ref().and_then(|s| s.sks).expect("sense-key specific field pointer");
    assert_eq!((sks[0] & 0xC0, u16::from_be_bytes([sks[1], sks[2]])), (0xC0, 7), "SKSV, C/D = CDB, byte 7");
}
