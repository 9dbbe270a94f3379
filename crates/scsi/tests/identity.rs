//! Identification and parameters of the disk: INQUIRY and its VPD pages, READ CAPACITY,
//! MODE SENSE / MODE SELECT, and REPORT SUPPORTED OPERATION CODES / TASK MANAGEMENT.

mod common;
use common::*;
use scsi::{execute, Backend, Disk, DiskConfig};
use std::sync::Arc;

#[test]
fn inquiry_does_not_report_or_clear_a_unit_attention() {
    let d = disk_with(DiskConfig::default());
    good(&run(&d, &[0x12, 0, 0, 0, 96, 0]).0);
    assert_eq!(sense(&run(&d, &[0; 6]).0), (6, 0x29, 0x00));
}

#[test]
fn standard_inquiry_identifies_an_spc4_disk() {
    let (o, d) = run(&disk(), &[0x12, 0, 0, 0, 255, 0]);
    good(&o);
    assert_eq!(d.len(), 96);
    assert_eq!(d[0], 0x00);
    assert_eq!(d[2], 0x06);
    assert_eq!(d[3] & 0x0F, 2);
    assert_eq!(usize::from(d[4]) + 5, d.len());
    assert_eq!(&d[8..16], b"SCSIPORT");
    assert_eq!(&d[16..32], b"VIRTUAL DISK    ");
    let versions: Vec<u16> = d[58..74].chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    assert!(versions.contains(&0x0460) && versions.contains(&0x04C0));
}

#[test]
fn inquiry_allocation_length_truncates() {
    let (o, d) = run(&disk(), &[0x12, 0, 0, 0, 5, 0]);
    good(&o);
    assert_eq!(d.len(), 5);
}

#[test]
fn inquiry_page_code_without_evpd_is_invalid() {
    assert_eq!(sense(&run(&disk(), &[0x12, 0, 0x80, 0, 255, 0]).0), (5, 0x24, 0x00));
}

#[test]
fn supported_vpd_pages_are_listed_and_each_answers() {
    let d = disk();
    let (o, p) = run(&d, &[0x12, 1, 0x00, 0, 255, 0]);
    good(&o);
    let pages = &p[4..4 + usize::from(p[3])];
    assert_eq!(pages, &[0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2]);
    for &code in pages {
        let (o, page) = run(&d, &[0x12, 1, code, 0, 255, 0]);
        good(&o);
        assert_eq!(page[1], code);
        assert_eq!(usize::from(u16::from_be_bytes([page[2], page[3]])) + 4, page.len());
    }
    assert_eq!(sense(&run(&d, &[0x12, 1, 0x42, 0, 255, 0]).0), (5, 0x24, 0x00));
}

#[test]
fn unit_serial_and_device_identification_carry_the_configuration() {
    let d = disk_with(DiskConfig { serial: "SN-42".into(), wwn: 0x5000_1234_5678_9ABC, ..cfg() });
    let (_, p) = run(&d, &[0x12, 1, 0x80, 0, 255, 0]);
    assert_eq!(&p[4..], b"SN-42");
    let (_, p) = run(&d, &[0x12, 1, 0x83, 0, 255, 0]);
    // First designator: NAA, binary, LU association, 8 bytes.
    assert_eq!(&p[4..8], &[0x01, 0x03, 0x00, 0x08]);
    assert_eq!(&p[8..16], &0x5000_1234_5678_9ABCu64.to_be_bytes());
    // Second: T10 vendor ID, ASCII, starting with the vendor.
    assert_eq!(&p[16..18], &[0x02, 0x01]);
    assert_eq!(&p[20..28], b"SCSIPORT");
}

#[test]
fn block_limits_and_provisioning_pages_report_unmap_support() {
    let d = disk();
    let (_, b0) = run(&d, &[0x12, 1, 0xB0, 0, 255, 0]);
    assert_eq!(u16::from_be_bytes([b0[2], b0[3]]), 0x3C);
    assert_eq!(b0[5], 255, "maximum COMPARE AND WRITE length");
    assert!(u32::from_be_bytes([b0[20], b0[21], b0[22], b0[23]]) > 0, "maximum unmap LBA count");
    let (_, b2) = run(&d, &[0x12, 1, 0xB2, 0, 255, 0]);
    assert_eq!(b2[5] & 0xE4, 0xE4, "LBPU, LBPWS, LBPWS10, LBPRZ");
    let (_, b1) = run(&d, &[0x12, 1, 0xB1, 0, 255, 0]);
    assert_eq!(u16::from_be_bytes([b1[4], b1[5]]), 1, "non-rotating");
}

#[test]
fn read_capacity_reports_last_lba_and_block_size() {
    let d = disk_with(DiskConfig { block_size: 4096, ..cfg() });
    let (o, c) = run(&d, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    good(&o);
    assert_eq!(u32::from_be_bytes([c[0], c[1], c[2], c[3]]), 1023);
    assert_eq!(u32::from_be_bytes([c[4], c[5], c[6], c[7]]), 4096);
    let (o, c) = run(&d, &cdb16(0x9E, 0x10, 0, 32));
    good(&o);
    assert_eq!(c.len(), 32);
    assert_eq!(u64::from_be_bytes(c[0..8].try_into().unwrap()), 1023);
    assert_eq!(c[14] & 0xC0, 0xC0, "LBPME and LBPRZ");
}

#[test]
fn read_capacity_without_pmi_rejects_a_nonzero_lba() {
    assert_eq!(sense(&run(&disk(), &[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0]).0), (5, 0x24, 0x00));
}

/// Zeros everywhere, of any size: for capacities beyond what RAM could hold.
struct Huge(u64);
impl Backend for Huge {
    fn size(&self) -> u64 {
        self.0
    }
    fn read_at(&self, _: u64, buf: &mut [u8]) -> std::io::Result<()> {
        buf.fill(0);
        Ok(())
    }
    fn write_at(&self, _: u64, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn discard(&self, _: u64, _: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn is_allocated(&self, _: u64, _: u64) -> std::io::Result<bool> {
        Ok(false)
    }
}

#[test]
fn read_capacity10_saturates_beyond_32_bits() {
    let d = Disk::new(cfg(), Arc::new(Huge(1 << 45))).unwrap();
    let (_, c) = run(&d, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&c[0..4], &[0xFF; 4]);
    let (_, c) = run(&d, &cdb16(0x9E, 0x10, 0, 32));
    assert_eq!(u64::from_be_bytes(c[0..8].try_into().unwrap()), (1 << 36) - 1);
}

#[test]
fn mode_sense6_all_pages_has_header_descriptor_and_three_pages() {
    let (o, m) = run(&disk(), &[0x1A, 0, 0x3F, 0, 255, 0]);
    good(&o);
    assert_eq!(usize::from(m[0]) + 1, m.len());
    assert_eq!(m[2] & 0x10, 0x10, "DPOFUA");
    assert_eq!(m[3], 8);
    assert_eq!(u32::from_be_bytes([m[4], m[5], m[6], m[7]]), 8192);
    let mut at = 12;
    let mut codes = Vec::new();
    while at < m.len() {
        codes.push(m[at] & 0x3F);
        at += 2 + usize::from(m[at + 1]);
    }
    assert_eq!(codes, vec![0x01, 0x08, 0x0A]);
    assert_eq!(at, m.len());
}

#[test]
fn mode_sense10_long_lba_block_descriptor() {
    let (o, m) = run(&disk(), &[0x5A, 0x10, 0x08, 0, 0, 0, 0, 0, 255, 0]);
    good(&o);
    assert_eq!(m[4] & 1, 1, "LONGLBA");
    assert_eq!(u16::from_be_bytes([m[6], m[7]]), 16);
    assert_eq!(u64::from_be_bytes(m[8..16].try_into().unwrap()), 8192);
    assert_eq!(u32::from_be_bytes(m[20..24].try_into().unwrap()), 512);
    assert_eq!(m[24], 0x08);
}

#[test]
fn mode_sense_changeable_values_show_wce_dsense_swp() {
    let (_, m) = run(&disk(), &[0x1A, 0x08, 0x7F, 0, 255, 0]);
    // Pages follow the 4-byte header: 01h (12 bytes), 08h (20), 0Ah (12).
    assert!(m[4 + 2..4 + 12].iter().all(|&b| b == 0));
    assert_eq!(m[16 + 2], 0x04);
    assert_eq!(m[36 + 2], 0x04);
    assert_eq!(m[36 + 4], 0x08);
}

#[test]
fn mode_sense_saved_values_are_not_supported() {
    assert_eq!(sense(&run(&disk(), &[0x1A, 0, 0xFF, 0, 255, 0]).0), (5, 0x39, 0x00));
}

#[test]
fn mode_sense_unknown_page_or_subpage_is_invalid_field() {
    assert_eq!(sense(&run(&disk(), &[0x1A, 0, 0x19, 0, 255, 0]).0), (5, 0x24, 0x00));
    assert_eq!(sense(&run(&disk(), &[0x1A, 0, 0x08, 0x01, 255, 0]).0), (5, 0x24, 0x00));
}

fn caching_page(wce: bool) -> Vec<u8> {
    let mut p = vec![0, 0, 0, 0, 0x08, 0x12];
    p.resize(4 + 20, 0);
    if wce {
        p[6] = 0x04;
    }
    p
}

#[test]
fn wce_off_makes_every_write_durable_and_on_defers_to_sync_cache() {
    let (d, b) = counting_disk(cfg());
    good(&run_out(&d, &write10(0, 1), &[1; 512]));
    assert_eq!(b.flushes(), 0, "write-back cache: no flush per write");
    good(&run(&d, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]).0);
    assert_eq!(b.flushes(), 1, "SYNCHRONIZE CACHE flushes");
    good(&run_out(&d, &cdb16(0x8A, 0x08, 0, 1), &[2; 512]));
    assert_eq!(b.flushes(), 2, "FUA flushes");
    good(&run_out(&d, &[0x15, 0x10, 0, 0, 24, 0], &caching_page(false)));
    assert!(!d.write_cache_enabled());
    good(&run_out(&d, &write10(1, 1), &[3; 512]));
    assert_eq!(b.flushes(), 3, "WCE off: write-through");
    let (_, m) = run(&d, &[0x1A, 0x08, 0x08, 0, 255, 0]);
    assert_eq!(m[4 + 2] & 0x04, 0);
}

#[test]
fn mode_select_of_an_unchangeable_bit_is_refused_and_changes_nothing() {
    let d = disk();
    let mut p = caching_page(false);
    p[6] |= 0x01; // RCD is not changeable
    assert_eq!(sense(&run_out(&d, &[0x15, 0x10, 0, 0, 24, 0], &p)), (5, 0x26, 0x00));
    assert!(d.write_cache_enabled());
}

#[test]
fn mode_select_short_parameter_list_is_a_length_error() {
    let d = disk();
    let o = execute(&d, A, &[0x15, 0x10, 0, 0, 24, 0], &[0; 10], 0).0;
    assert_eq!(sense(&o), (5, 0x1A, 0x00));
}

#[test]
fn mode_select_tells_other_nexuses_parameters_changed() {
    let d = disk();
    good(&execute(&d, B, &[0; 6], &[], 0).0);
    good(&run_out(&d, &[0x15, 0x10, 0, 0, 24, 0], &caching_page(false)));
    good(&run(&d, &[0; 6]).0);
    assert_eq!(sense(&execute(&d, B, &[0; 6], &[], 0).0), (6, 0x2A, 0x01));
}

#[test]
fn d_sense_switches_to_descriptor_format() {
    let d = disk();
    let mut p = vec![0, 0, 0, 0, 0x0A, 0x0A, 0x06, 0x10, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0];
    p.truncate(16);
    good(&run_out(&d, &[0x15, 0x10, 0, 0, 16, 0], &p));
    let o = run(&d, &read10(9000, 1)).0;
    let s = o.sense.expect("sense");
    assert!(s.descriptor);
    assert_eq!(s.to_bytes()[0], 0x72);
}

#[test]
fn software_write_protect_blocks_writes_until_cleared() {
    let d = disk();
    let ctl =
        |swp: bool| vec![0, 0, 0, 0, 0x0A, 0x0A, 0x02, 0x10, if swp { 0x08 } else { 0 }, 0, 0, 0, 0xFF, 0xFF, 0, 0];
    good(&run_out(&d, &[0x15, 0x10, 0, 0, 16, 0], &ctl(true)));
    assert_eq!(sense(&run_out(&d, &write10(0, 1), &[0; 512])), (7, 0x27, 0x00));
    good(&run_out(&d, &[0x15, 0x10, 0, 0, 16, 0], &ctl(false)));
    good(&run_out(&d, &write10(0, 1), &[0; 512]));
}

#[test]
fn report_supported_opcodes_lists_the_table() {
    let d = disk();
    let (o, p) = run(&d, &[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0]);
    good(&o);
    let n = u32::from_be_bytes(p[0..4].try_into().unwrap()) as usize;
    assert_eq!(n + 4, p.len());
    let descs: Vec<(u8, u16, u16)> =
        p[4..].chunks(8).map(|c| (c[0], u16::from_be_bytes([c[2], c[3]]), u16::from_be_bytes([c[6], c[7]]))).collect();
    assert!(descs.contains(&(0x28, 0, 10)));
    assert!(descs.contains(&(0x9E, 0x10, 16)));
    assert_eq!(descs.len(), d.supported_commands().len());
}

#[test]
fn report_supported_opcodes_one_command_gives_its_usage_mask() {
    let d = disk();
    let (o, p) = run(&d, &[0xA3, 0x0C, 0x01, 0x28, 0, 0, 0, 0, 0x01, 0, 0, 0]);
    good(&o);
    assert_eq!(p[1] & 0x07, 0x03, "supported as the standard says");
    assert_eq!(u16::from_be_bytes([p[2], p[3]]), 10);
    assert_eq!(p[4], 0x28);
    // The advertised mask is what the dispatcher enforces: a bit outside it is refused.
    let mut c = read10(0, 1);
    c[1] = !p[5] & 0xFE;
    assert_eq!(sense(&run(&d, &c).0), (5, 0x24, 0x00));
    let (_, p) = run(&d, &[0xA3, 0x0C, 0x01, 0xC0, 0, 0, 0, 0, 0x01, 0, 0, 0]);
    assert_eq!(p[1] & 0x07, 0x01, "not supported");
    // Options 01b on an opcode with service actions is an invalid field.
    assert_eq!(sense(&run(&d, &[0xA3, 0x0C, 0x01, 0x9E, 0, 0, 0, 0, 0x01, 0, 0, 0]).0), (5, 0x24, 0x00));
    let (o, p) = run(&d, &[0xA3, 0x0C, 0x82, 0x9E, 0, 0x10, 0, 0, 0x01, 0, 0, 0]);
    good(&o);
    assert_eq!(u16::from_be_bytes([p[2], p[3]]), 16);
    assert_eq!(p[1] & 0x80, 0x80, "CTDP with RCTD");
    assert_eq!(p.len(), 4 + 16 + 12);
}

#[test]
fn report_supported_tmf_reports_abort_and_reset_functions() {
    let (o, p) = run(&disk(), &[0xA3, 0x0D, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0]);
    good(&o);
    assert_eq!(p.len(), 4);
    assert_eq!(p[0] & 0xC8, 0xC8, "ATS, ATSS, LURS");
}
