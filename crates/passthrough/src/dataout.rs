//! Commands whose data-out buffer has exactly one valid length, which the target checks against the initiator's
//! expected data transfer length before the command reaches the LU: over the SCSI bus the LU sees only the bytes the
//! card moves, never how many the initiator meant to send (SBC-4).

use scsi_proto::opcode::{COMPARE_AND_WRITE, WRITE_SAME_10, WRITE_SAME_16};

/// The one data-out length `cdb` allows for LUs of `block_size`-byte blocks, for the commands that have one:
/// COMPARE AND WRITE (verify and write data, 2 × NUMBER OF LOGICAL BLOCKS blocks), WRITE SAME(10) (one block) and
/// WRITE SAME(16) (one block, none with NDOB).
pub(super) fn required_len(cdb: &[u8], block_size: u32) -> Option<u64> {
    let bs = u64::from(block_size);
    match (*cdb.first()?, cdb.len()) {
        (COMPARE_AND_WRITE, 16..) => Some(2 * u64::from(cdb[13]) * bs),
        (WRITE_SAME_10, 10..) => Some(bs),
        (WRITE_SAME_16, 16..) if cdb[1] & 0x01 != 0 => Some(0),
        (WRITE_SAME_16, 16..) => Some(bs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_of_the_commands_with_one_valid_data_out_length() {
        let mut caw = [0u8; 16];
        caw[0] = COMPARE_AND_WRITE;
        caw[13] = 3;
        assert_eq!(required_len(&caw, 4096), Some(6 * 4096));
        assert_eq!(required_len(&[WRITE_SAME_10, 0x08, 0, 0, 0, 0, 0, 0, 1, 0], 512), Some(512));
        let mut ws16 = [0u8; 16];
        ws16[0] = WRITE_SAME_16;
        assert_eq!(required_len(&ws16, 512), Some(512));
        ws16[1] = 0x01;
        assert_eq!(required_len(&ws16, 512), Some(0), "NDOB: no data-out buffer");
        assert_eq!(required_len(&scsi_proto::cdb::read_write(true, 0, 1, false), 512), None);
        assert_eq!(required_len(&[COMPARE_AND_WRITE, 0], 512), None, "a short CDB is the LU's to refuse");
    }
}
