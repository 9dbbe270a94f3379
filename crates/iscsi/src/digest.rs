//! CRC32C digests (RFC 7143 §13.1, Castagnoli polynomial; RFC 3385 for the choice).

/// CRC32C of `data`. On the wire the digest is sent least significant byte first, which
/// is what every initiator and tgtd do (RFC 7143 §11.1, "the digest ... are in little
/// endian byte order" of the reflected CRC).
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// CRC32C over several pieces as if they were one buffer.
pub fn crc32c_parts(parts: &[&[u8]]) -> u32 {
    parts.iter().fold(0, |crc, p| crc32c::crc32c_append(crc, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc_3720_appendix_b4_vector() {
        // 32 bytes of zeros: CRC 0x8a9136aa (RFC 3720 B.4).
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        // 32 bytes of 0xff: CRC 0x62a8ab43 (RFC 3720 B.4).
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
    }

    #[test]
    fn parts_equal_whole() {
        let data: Vec<u8> = (0u8..100).collect();
        assert_eq!(crc32c_parts(&[&data[..33], &data[33..]]), crc32c(&data));
    }
}
