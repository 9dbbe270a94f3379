//! CDBs the disk class driver sends (SBC-3).

/// READ or WRITE of `blocks` blocks at `lba`: the 10-byte form when it fits, else the 16-byte form.
pub fn read_write(write: bool, lba: u64, blocks: u32, fua: bool) -> Vec<u8> {
    let fua_bit = if fua { 0x08 } else { 0 };
    if lba <= u32::MAX as u64 && blocks <= u16::MAX as u32 {
        let mut c = vec![if write { 0x2A } else { 0x28 }, fua_bit, 0, 0, 0, 0, 0, 0, 0, 0];
        c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
        c[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
        c
    } else {
        let mut c = vec![0u8; 16];
        c[0] = if write { 0x8A } else { 0x88 };
        c[1] = fua_bit;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[10..14].copy_from_slice(&blocks.to_be_bytes());
        c
    }
}

pub fn test_unit_ready() -> Vec<u8> {
    vec![0; 6]
}

pub fn inquiry(alloc: u16) -> Vec<u8> {
    let a = alloc.to_be_bytes();
    vec![0x12, 0, 0, a[0], a[1], 0]
}

/// INQUIRY of VPD page `page` (EVPD = 1).
pub fn inquiry_vpd(page: u8, alloc: u16) -> Vec<u8> {
    let a = alloc.to_be_bytes();
    vec![0x12, 1, page, a[0], a[1], 0]
}

pub fn read_capacity10() -> Vec<u8> {
    vec![0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

pub fn read_capacity16(alloc: u32) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = 0x9E;
    c[1] = 0x10;
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

pub fn synchronize_cache10() -> Vec<u8> {
    vec![0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// UNMAP with a parameter list of `len` bytes.
pub fn unmap(len: u16) -> Vec<u8> {
    let l = len.to_be_bytes();
    vec![0x42, 0, 0, 0, 0, 0, 0, l[0], l[1], 0]
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
    c[0] = 0x93;
    c[1] = if unmap { 0x08 } else { 0 };
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// GET LBA STATUS (SERVICE ACTION IN(16), 12h).
pub fn get_lba_status(lba: u64, alloc: u32) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = 0x9E;
    c[1] = 0x12;
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
    fn large_lba_uses_sixteen_byte_cdb_with_fua() {
        let c = read_write(true, 1 << 33, 8, true);
        assert_eq!(c[0], 0x8A);
        assert_eq!(c[1], 0x08);
        assert_eq!(u64::from_be_bytes(c[2..10].try_into().unwrap()), 1 << 33);
        assert_eq!(u32::from_be_bytes(c[10..14].try_into().unwrap()), 8);
    }
}
