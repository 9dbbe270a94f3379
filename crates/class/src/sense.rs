//! Sense data as the class driver reads it: fixed (70h/71h) or descriptor (72h/73h) format (SPC-4 §4.5).

/// The parts of sense data that decide what the class driver does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenseInfo {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
    /// The INFORMATION field, when valid (for a medium error: the failing LBA).
    pub information: Option<u64>,
}

/// Sense keys (SPC-4 table 51) as bytes.
pub use scsi_proto::sense::key;

impl SenseInfo {
    /// Parse sense bytes; `None` when they are not sense data.
    pub fn parse(b: &[u8]) -> Option<SenseInfo> {
        let code = b.first()? & 0x7F;
        match code {
            0x70 | 0x71 => {
                if b.len() < 14 {
                    return Some(SenseInfo { key: b.get(2)? & 0x0F, asc: 0, ascq: 0, information: None });
                }
                let valid = b[0] & 0x80 != 0;
                let info = u32::from_be_bytes([b[3], b[4], b[5], b[6]]) as u64;
                Some(SenseInfo { key: b[2] & 0x0F, asc: b[12], ascq: b[13], information: valid.then_some(info) })
            }
            0x72 | 0x73 => {
                if b.len() < 4 {
                    return None;
                }
                let mut information = None;
                let add = b.get(7).copied().unwrap_or(0) as usize;
                let mut i = 8;
                let end = (8 + add).min(b.len());
                while i + 2 <= end {
                    let (ty, len) = (b[i], b[i + 1] as usize);
                    if ty == 0x00 && len >= 10 && i + 12 <= end && b[i + 2] & 0x80 != 0 {
                        let mut v = [0u8; 8];
                        v.copy_from_slice(&b[i + 4..i + 12]);
                        information = Some(u64::from_be_bytes(v));
                    }
                    i += 2 + len;
                }
                Some(SenseInfo { key: b[1] & 0x0F, asc: b[2], ascq: b[3], information })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_medium_error_carries_lba() {
        let mut s = [0u8; 18];
        s[0] = 0xF0;
        s[2] = 0x03;
        s[3..7].copy_from_slice(&1234u32.to_be_bytes());
        s[7] = 10;
        s[12] = 0x11;
        let i = SenseInfo::parse(&s).unwrap();
        assert_eq!((i.key, i.asc, i.ascq, i.information), (3, 0x11, 0, Some(1234)));
    }

    #[test]
    fn descriptor_format_reads_key_and_information() {
        let mut s = vec![0x72, 0x05, 0x21, 0x00, 0, 0, 0, 12, 0x00, 0x0A, 0x80, 0];
        s.extend_from_slice(&77u64.to_be_bytes());
        let i = SenseInfo::parse(&s).unwrap();
        assert_eq!((i.key, i.asc, i.ascq, i.information), (5, 0x21, 0, Some(77)));
    }

    #[test]
    fn garbage_is_not_sense() {
        assert_eq!(SenseInfo::parse(&[0x12, 0, 0]), None);
        assert_eq!(SenseInfo::parse(&[]), None);
    }
}
