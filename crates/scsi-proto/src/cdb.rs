//! CDBs: builders for the commands the class driver and the copy manager send (SBC-4), and the decoder of what a
//! READ or WRITE asks to move.

use crate::opcode::*;
use crate::DataDirection;

/// What a READ, WRITE or WRITE AND VERIFY CDB asks to move: its TRANSFER LENGTH in blocks (READ(6) and WRITE(6)
/// read 0 as 256, SBC-4 §5.15) and the direction. `None` for any other command or a CDB shorter than its form.
pub fn transfer(cdb: &[u8]) -> Option<(u64, DataDirection)> {
    let be = |b: &[u8]| b.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x));
    let six = |n: u8| if n == 0 { 256 } else { u64::from(n) };
    Some(match (*cdb.first()?, cdb.len()) {
        (READ_6, 6..) => (six(cdb[4]), DataDirection::In),
        (WRITE_6, 6..) => (six(cdb[4]), DataDirection::Out),
        (READ_10, 10..) => (be(&cdb[7..9]), DataDirection::In),
        (WRITE_10 | WRITE_AND_VERIFY_10, 10..) => (be(&cdb[7..9]), DataDirection::Out),
        (READ_12, 12..) => (be(&cdb[6..10]), DataDirection::In),
        (WRITE_12 | WRITE_AND_VERIFY_12, 12..) => (be(&cdb[6..10]), DataDirection::Out),
        (READ_16, 16..) => (be(&cdb[10..14]), DataDirection::In),
        (WRITE_16 | WRITE_AND_VERIFY_16, 16..) => (be(&cdb[10..14]), DataDirection::Out),
        _ => return None,
    })
}

/// Whether the operation code is one of the READs (6, 10, 12, 16).
pub fn is_read(op: u8) -> bool {
    matches!(op, READ_6 | READ_10 | READ_12 | READ_16)
}

/// Whether the operation code is one of the WRITEs or WRITE AND VERIFYs (6, 10, 12, 16).
pub fn is_write(op: u8) -> bool {
    matches!(
        op,
        WRITE_6 | WRITE_10 | WRITE_12 | WRITE_16 | WRITE_AND_VERIFY_10 | WRITE_AND_VERIFY_12 | WRITE_AND_VERIFY_16
    )
}

/// READ(16) or WRITE(16) of `blocks` blocks at `lba`, whatever their size.
pub fn read_write16(write: bool, lba: u64, blocks: u32, fua: bool) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = if write { WRITE_16 } else { READ_16 };
    c[1] = if fua { 0x08 } else { 0 };
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// READ or WRITE of `blocks` blocks at `lba`: the 10-byte form when it fits, else the 16-byte form.
pub fn read_write(write: bool, lba: u64, blocks: u32, fua: bool) -> Vec<u8> {
    let fua_bit = if fua { 0x08 } else { 0 };
    if lba <= u32::MAX as u64 && blocks <= u16::MAX as u32 {
        let mut c = vec![if write { WRITE_10 } else { READ_10 }, fua_bit, 0, 0, 0, 0, 0, 0, 0, 0];
        c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
        c[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
        c
    } else {
        read_write16(write, lba, blocks, fua)
    }
}

pub fn test_unit_ready() -> Vec<u8> {
    vec![0; 6]
}

pub fn inquiry(alloc: u16) -> Vec<u8> {
    let a = alloc.to_be_bytes();
    vec![INQUIRY, 0, 0, a[0], a[1], 0]
}

/// INQUIRY of VPD page `page` (EVPD = 1).
pub fn inquiry_vpd(page: u8, alloc: u16) -> Vec<u8> {
    let a = alloc.to_be_bytes();
    vec![INQUIRY, 1, page, a[0], a[1], 0]
}

pub fn read_capacity10() -> Vec<u8> {
    vec![READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

pub fn read_capacity16(alloc: u32) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = SERVICE_ACTION_IN_16;
    c[1] = service_action::READ_CAPACITY_16;
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

pub fn synchronize_cache10() -> Vec<u8> {
    vec![SYNCHRONIZE_CACHE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// UNMAP with a parameter list of `len` bytes.
pub fn unmap(len: u16) -> Vec<u8> {
    let l = len.to_be_bytes();
    vec![UNMAP, 0, 0, 0, 0, 0, 0, l[0], l[1], 0]
}

/// The UNMAP parameter list for `ranges` of (lba, blocks) (SBC-3 §5.28.2); at most 4095 ranges fit its 16-bit
/// lengths.
pub fn unmap_parameters(ranges: &[(u64, u32)]) -> Vec<u8> {
    let mut p = vec![0u8; 8];
    let descs = (16 * ranges.len()) as u16;
    p[0..2].copy_from_slice(&(descs + 6).to_be_bytes());
    p[2..4].copy_from_slice(&descs.to_be_bytes());
    for (lba, blocks) in ranges {
        p.extend_from_slice(&lba.to_be_bytes());
        p.extend_from_slice(&blocks.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
    }
    p
}

/// WRITE SAME(16) of one block of data over `blocks` blocks; `unmap` lets the target deallocate.
pub fn write_same16(lba: u64, blocks: u32, unmap: bool) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = WRITE_SAME_16;
    c[1] = if unmap { 0x08 } else { 0 };
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// GET LBA STATUS (SERVICE ACTION IN(16), 12h).
pub fn get_lba_status(lba: u64, alloc: u32) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = SERVICE_ACTION_IN_16;
    c[1] = service_action::GET_LBA_STATUS;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_requests_use_ten_byte_cdbs() {
        let c = read_write(false, 0x0102_0304, 0x10, false);
        assert_eq!(c, vec![0x28, 0, 1, 2, 3, 4, 0, 0, 0x10, 0]);
    }

    #[test]
    fn transfer_gives_blocks_and_direction_of_reads_and_writes() {
        assert_eq!(transfer(&[0x28, 0, 0, 0, 0, 0, 0, 0, 2, 0]), Some((2, DataDirection::In)));
        assert_eq!(transfer(&[0x0A, 0, 0, 0, 0, 0]), Some((256, DataDirection::Out)), "WRITE(6) reads 0 as 256");
        assert_eq!(transfer(&read_write16(true, 7, 3, false)), Some((3, DataDirection::Out)));
        assert_eq!(transfer(&[0xAE, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0]), Some((9, DataDirection::Out)));
        assert_eq!(transfer(&inquiry(36)), None);
        assert_eq!(transfer(&[0x28, 0]), None, "a short CDB is not decoded");
        assert!(is_read(READ_12) && !is_read(WRITE_12) && is_write(WRITE_AND_VERIFY_16) && !is_write(INQUIRY));
    }

    #[test]
    fn large_lba_uses_sixteen_byte_cdb_with_fua() {
        let c = read_write(true, 1 << 33, 8, true);
        assert_eq!(c[0], 0x8A);
        assert_eq!(c[1], 0x08);
        assert_eq!(u64::from_be_bytes(c[2..10].try_into().unwrap()), 1 << 33);
        assert_eq!(u32::from_be_bytes(c[10..14].try_into().unwrap()), 8);
    }
}
