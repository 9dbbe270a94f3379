//! INQUIRY: the vital product data pages the stack asks for or answers, and the standard INQUIRY data the target
//! side answers for itself.

/// VPD page codes (SPC-4 §7.8, SBC-4 §6.6).
pub mod vpd {
    pub const SUPPORTED_PAGES: u8 = 0x00;
    pub const UNIT_SERIAL_NUMBER: u8 = 0x80;
    pub const DEVICE_IDENTIFICATION: u8 = 0x83;
    pub const THIRD_PARTY_COPY: u8 = 0x8F;
    pub const BLOCK_LIMITS: u8 = 0xB0;
    pub const BLOCK_DEVICE_CHARACTERISTICS: u8 = 0xB1;
    pub const LOGICAL_BLOCK_PROVISIONING: u8 = 0xB2;
}

/// Byte 7 of standard INQUIRY data: CMDQUE, the logical unit queues tagged commands (SPC-4 §6.6.2).
pub const CMDQUE: u8 = 0x02;

/// Standard INQUIRY data (36 bytes) for a LUN with no logical unit behind it (SPC-4 §4.6.4, §6.6.2): PERIPHERAL
/// QUALIFIER 011b ("not capable of supporting a device"), PERIPHERAL DEVICE TYPE 1Fh, VERSION SPC-4, HISUP (the LUN
/// field is hierarchical, as for the target's logical units), RESPONSE DATA FORMAT 2, cut to the allocation length
/// `alloc`. The SCSI target on the bus and the iSCSI target both answer with it.
pub fn absent_lun(alloc: usize) -> Vec<u8> {
    let mut d = vec![0u8; 36];
    d[0] = 0x7F;
    d[2] = 6;
    d[3] = 0x12;
    d[4] = 31;
    d.truncate(alloc);
    d
}

#[cfg(test)]
mod tests {
    #[test]
    fn absent_lun_says_not_capable_and_honours_the_allocation_length() {
        let d = super::absent_lun(255);
        assert_eq!((d.len(), d[0] >> 5, d[0] & 0x1F, d[3], d[4]), (36, 0b011, 0x1F, 0x12, 31));
        assert_eq!(super::absent_lun(5).len(), 5);
    }
}
