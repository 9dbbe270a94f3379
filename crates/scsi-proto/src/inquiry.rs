//! Standard INQUIRY data the target side answers for itself.

/// Standard INQUIRY data (36 bytes) for a LUN with no logical unit behind it (SPC-4 §4.6.4, §6.6.2): PERIPHERAL
/// QUALIFIER 011b ("not capable of supporting a device"), PERIPHERAL DEVICE TYPE 1Fh, VERSION SPC-4, RESPONSE DATA
/// FORMAT 2, cut to the allocation length `alloc`.
pub fn absent_lun(alloc: usize) -> Vec<u8> {
    let mut d = vec![0u8; 36];
    d[0] = 0x7F;
    d[2] = 6;
    d[3] = 2;
    d[4] = 31;
    d.truncate(alloc);
    d
}

#[cfg(test)]
mod tests {
    #[test]
    fn absent_lun_says_not_capable_and_honours_the_allocation_length() {
        let d = super::absent_lun(255);
        assert_eq!((d.len(), d[0] >> 5, d[0] & 0x1F, d[4]), (36, 0b011, 0x1F, 31));
        assert_eq!(super::absent_lun(5).len(), 5);
    }
}
