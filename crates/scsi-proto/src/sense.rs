//! Sense data (SPC-4 §4.5): sense keys, additional sense codes, and the fixed (70h) and
//! descriptor (72h) formats.

use std::fmt;

/// Sense key (SPC-4 table 49).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SenseKey {
    NoSense = 0x0,
    RecoveredError = 0x1,
    NotReady = 0x2,
    MediumError = 0x3,
    HardwareError = 0x4,
    IllegalRequest = 0x5,
    UnitAttention = 0x6,
    DataProtect = 0x7,
    BlankCheck = 0x8,
    VendorSpecific = 0x9,
    CopyAborted = 0xA,
    AbortedCommand = 0xB,
    /// 0Ch: EQUAL in SCSI-2, obsolete since SPC-2; kept so that every key byte decodes to what it says.
    Obsolete = 0xC,
    VolumeOverflow = 0xD,
    Miscompare = 0xE,
    Completed = 0xF,
}

impl SenseKey {
    /// Decode the low nibble of a sense key byte (the high bits of the byte are FILEMARK, EOM, ILI and SDAT_OVFL).
    pub fn from_u8(v: u8) -> Self {
        match v & 0x0F {
            0x0 => Self::NoSense,
            0x1 => Self::RecoveredError,
            0x2 => Self::NotReady,
            0x3 => Self::MediumError,
            0x4 => Self::HardwareError,
            0x5 => Self::IllegalRequest,
            0x6 => Self::UnitAttention,
            0x7 => Self::DataProtect,
            0x8 => Self::BlankCheck,
            0x9 => Self::VendorSpecific,
            0xA => Self::CopyAborted,
            0xB => Self::AbortedCommand,
            0xC => Self::Obsolete,
            0xD => Self::VolumeOverflow,
            0xE => Self::Miscompare,
            _ => Self::Completed,
        }
    }

    /// The key's name in SPC-4 table 49.
    pub fn name(self) -> &'static str {
        match self {
            Self::NoSense => "NO SENSE",
            Self::RecoveredError => "RECOVERED ERROR",
            Self::NotReady => "NOT READY",
            Self::MediumError => "MEDIUM ERROR",
            Self::HardwareError => "HARDWARE ERROR",
            Self::IllegalRequest => "ILLEGAL REQUEST",
            Self::UnitAttention => "UNIT ATTENTION",
            Self::DataProtect => "DATA PROTECT",
            Self::BlankCheck => "BLANK CHECK",
            Self::VendorSpecific => "VENDOR SPECIFIC",
            Self::CopyAborted => "COPY ABORTED",
            Self::AbortedCommand => "ABORTED COMMAND",
            Self::Obsolete => "0Ch (obsolete)",
            Self::VolumeOverflow => "VOLUME OVERFLOW",
            Self::Miscompare => "MISCOMPARE",
            Self::Completed => "COMPLETED",
        }
    }
}

impl fmt::Display for SenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An additional sense code and qualifier pair (SPC-4 table 50).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AscAscq(pub u8, pub u8);

impl AscAscq {
    pub const NO_ADDITIONAL: Self = Self(0x00, 0x00);
    /// A third-party copy with this list ID is already running (SPC-4, EXTENDED COPY).
    pub const OPERATION_IN_PROGRESS: Self = Self(0x00, 0x16);
    pub const NOT_READY_BECOMING_READY: Self = Self(0x04, 0x01);
    pub const NOT_READY_INIT_REQUIRED: Self = Self(0x04, 0x02);
    /// COPY TARGET DEVICE NOT REACHABLE: a copy's CSCD names no logical unit the copy manager can reach.
    pub const COPY_TARGET_DEVICE_NOT_REACHABLE: Self = Self(0x0D, 0x02);
    pub const INCORRECT_COPY_TARGET_DEVICE_TYPE: Self = Self(0x0D, 0x03);
    pub const WRITE_ERROR: Self = Self(0x0C, 0x00);
    pub const UNRECOVERED_READ_ERROR: Self = Self(0x11, 0x00);
    pub const RECOVERED_DATA_WITH_RETRIES: Self = Self(0x17, 0x01);
    pub const PARAMETER_LIST_LENGTH_ERROR: Self = Self(0x1A, 0x00);
    pub const MISCOMPARE_DURING_VERIFY: Self = Self(0x1D, 0x00);
    pub const INVALID_COMMAND_OPCODE: Self = Self(0x20, 0x00);
    pub const LBA_OUT_OF_RANGE: Self = Self(0x21, 0x00);
    pub const INVALID_FIELD_IN_CDB: Self = Self(0x24, 0x00);
    pub const LU_NOT_SUPPORTED: Self = Self(0x25, 0x00);
    pub const INVALID_FIELD_IN_PARAMETER_LIST: Self = Self(0x26, 0x00);
    pub const INVALID_RELEASE_OF_PR: Self = Self(0x26, 0x04);
    /// TOO MANY TARGET DESCRIPTORS (CSCD descriptors of an EXTENDED COPY parameter list).
    pub const TOO_MANY_CSCD_DESCRIPTORS: Self = Self(0x26, 0x06);
    /// UNSUPPORTED TARGET DESCRIPTOR TYPE CODE (a CSCD descriptor type the copy manager does not take).
    pub const UNSUPPORTED_CSCD_TYPE: Self = Self(0x26, 0x07);
    pub const TOO_MANY_SEGMENT_DESCRIPTORS: Self = Self(0x26, 0x08);
    pub const UNSUPPORTED_SEGMENT_TYPE: Self = Self(0x26, 0x09);
    pub const WRITE_PROTECTED: Self = Self(0x27, 0x00);
    pub const POWER_ON_RESET: Self = Self(0x29, 0x00);
    pub const MODE_PARAMETERS_CHANGED: Self = Self(0x2A, 0x01);
    pub const RESERVATIONS_PREEMPTED: Self = Self(0x2A, 0x03);
    pub const RESERVATIONS_RELEASED: Self = Self(0x2A, 0x04);
    pub const REGISTRATIONS_PREEMPTED: Self = Self(0x2A, 0x05);
    pub const CAPACITY_DATA_CHANGED: Self = Self(0x2A, 0x09);
    pub const SAVING_PARAMETERS_NOT_SUPPORTED: Self = Self(0x39, 0x00);
    pub const MEDIUM_NOT_PRESENT: Self = Self(0x3A, 0x00);
    pub const REPORTED_LUNS_DATA_CHANGED: Self = Self(0x3F, 0x0E);
    pub const INTERNAL_TARGET_FAILURE: Self = Self(0x44, 0x00);
    pub const SCSI_PARITY_ERROR: Self = Self(0x47, 0x00);
    pub const INSUFFICIENT_RESOURCES: Self = Self(0x55, 0x03);
    pub const INSUFFICIENT_REGISTRATION_RESOURCES: Self = Self(0x55, 0x04);

    /// Whether this is one of the LOGICAL UNIT NOT READY codes (ASC 04h, any qualifier).
    pub fn is_not_ready(self) -> bool {
        self.0 == Self::NOT_READY_BECOMING_READY.0
    }
}

/// `0x11/0x00`: the ASC and ASCQ as the logs and errors print them.
impl fmt::Display for AscAscq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x}/{:#04x}", self.0, self.1)
    }
}

/// Sense data for one command. It remembers which format the logical unit uses
/// (the D_SENSE bit of the control mode page, SPC-4 §7.5.8) so that a transport can
/// render it without knowing the logical unit's mode pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sense {
    pub key: SenseKey,
    pub asc: u8,
    pub ascq: u8,
    /// The INFORMATION field (an LBA, or a byte offset for a miscompare).
    pub info: Option<u64>,
    /// The 3-byte sense-key specific field, SKSV bit included.
    pub sks: Option<[u8; 3]>,
    /// The COMMAND-SPECIFIC INFORMATION field (for a third-party copy: the segment being processed, SPC-4).
    pub command_specific: Option<u64>,
    /// Render as descriptor format (72h) rather than fixed format (70h).
    pub descriptor: bool,
}

impl Sense {
    pub fn new(key: SenseKey, code: AscAscq) -> Self {
        Self { key, asc: code.0, ascq: code.1, info: None, sks: None, command_specific: None, descriptor: false }
    }

    pub fn code(&self) -> AscAscq {
        AscAscq(self.asc, self.ascq)
    }

    pub fn with_info(mut self, info: u64) -> Self {
        self.info = Some(info);
        self
    }

    pub fn with_command_specific(mut self, value: u64) -> Self {
        self.command_specific = Some(value);
        self
    }

    pub fn with_descriptor(mut self, descriptor: bool) -> Self {
        self.descriptor = descriptor;
        self
    }

    /// Sense-key specific field pointer (SPC-4 §4.5.2.4.2): which CDB or parameter-list
    /// byte (and optionally bit) was in error.
    pub fn with_field_pointer(mut self, in_cdb: bool, byte: u16, bit: Option<u8>) -> Self {
        let mut b0 = 0x80; // SKSV
        if in_cdb {
            b0 |= 0x40; // C/D
        }
        if let Some(bit) = bit {
            b0 |= 0x08 | (bit & 0x07); // BPV + bit pointer
        }
        let [hi, lo] = byte.to_be_bytes();
        self.sks = Some([b0, hi, lo]);
        self
    }

    pub fn invalid_opcode() -> Self {
        Self::new(SenseKey::IllegalRequest, AscAscq::INVALID_COMMAND_OPCODE).with_field_pointer(true, 0, Some(7))
    }

    pub fn invalid_field_in_cdb(byte: u16, bit: Option<u8>) -> Self {
        Self::new(SenseKey::IllegalRequest, AscAscq::INVALID_FIELD_IN_CDB).with_field_pointer(true, byte, bit)
    }

    pub fn invalid_field_in_param(byte: u16, bit: Option<u8>) -> Self {
        Self::new(SenseKey::IllegalRequest, AscAscq::INVALID_FIELD_IN_PARAMETER_LIST)
            .with_field_pointer(false, byte, bit)
    }

    pub fn param_list_length_error() -> Self {
        Self::new(SenseKey::IllegalRequest, AscAscq::PARAMETER_LIST_LENGTH_ERROR)
    }

    pub fn lba_out_of_range() -> Self {
        Self::new(SenseKey::IllegalRequest, AscAscq::LBA_OUT_OF_RANGE)
    }

    pub fn lu_not_supported() -> Self {
        Self::new(SenseKey::IllegalRequest, AscAscq::LU_NOT_SUPPORTED)
    }

    pub fn write_protected() -> Self {
        Self::new(SenseKey::DataProtect, AscAscq::WRITE_PROTECTED)
    }

    /// MISCOMPARE DURING VERIFY OPERATION; INFORMATION is the offset of the first
    /// differing byte (SBC-3 §5.2, §5.24).
    pub fn miscompare(offset: u64) -> Self {
        Self::new(SenseKey::Miscompare, AscAscq::MISCOMPARE_DURING_VERIFY).with_info(offset)
    }

    pub fn unrecovered_read_error(lba: u64) -> Self {
        Self::new(SenseKey::MediumError, AscAscq::UNRECOVERED_READ_ERROR).with_info(lba)
    }

    pub fn write_error(lba: u64) -> Self {
        Self::new(SenseKey::MediumError, AscAscq::WRITE_ERROR).with_info(lba)
    }

    pub fn aborted_command() -> Self {
        Self::new(SenseKey::AbortedCommand, AscAscq::NO_ADDITIONAL)
    }

    pub fn unit_attention(code: AscAscq) -> Self {
        Self::new(SenseKey::UnitAttention, code)
    }

    pub fn not_ready_init_required() -> Self {
        Self::new(SenseKey::NotReady, AscAscq::NOT_READY_INIT_REQUIRED)
    }

    /// The format the logical unit chose.
    pub fn to_bytes(&self) -> Vec<u8> {
        if self.descriptor {
            self.to_descriptor()
        } else {
            self.to_fixed()
        }
    }

    /// Fixed format, response code 70h (SPC-4 §4.5.3): 18 bytes.
    pub fn to_fixed(&self) -> Vec<u8> {
        let mut b = vec![0u8; 18];
        b[0] = 0x70;
        b[2] = self.key as u8;
        // INFORMATION is 4 bytes here; VALID only when the value fits (SPC-4 §4.5.3).
        if let Some(info) = self.info.and_then(|i| u32::try_from(i).ok()) {
            b[0] |= 0x80;
            b[3..7].copy_from_slice(&info.to_be_bytes());
        }
        b[7] = 10;
        // COMMAND-SPECIFIC INFORMATION is 4 bytes here, with no VALID bit: a value that does not fit is left out.
        if let Some(csi) = self.command_specific.and_then(|v| u32::try_from(v).ok()) {
            b[8..12].copy_from_slice(&csi.to_be_bytes());
        }
        b[12] = self.asc;
        b[13] = self.ascq;
        if let Some(sks) = self.sks {
            b[15..18].copy_from_slice(&sks);
        }
        b
    }

    /// Descriptor format, response code 72h (SPC-4 §4.5.2), with an information descriptor (§4.5.2.2), a
    /// command-specific information descriptor (§4.5.2.3) and a sense-key specific descriptor (§4.5.2.4) when
    /// present.
    pub fn to_descriptor(&self) -> Vec<u8> {
        let mut b = vec![0u8; 8];
        b[0] = 0x72;
        b[1] = self.key as u8;
        b[2] = self.asc;
        b[3] = self.ascq;
        if let Some(info) = self.info {
            b.extend_from_slice(&[0x00, 0x0A, 0x80, 0x00]);
            b.extend_from_slice(&info.to_be_bytes());
        }
        if let Some(csi) = self.command_specific {
            b.extend_from_slice(&[0x01, 0x0A, 0x00, 0x00]);
            b.extend_from_slice(&csi.to_be_bytes());
        }
        if let Some(sks) = self.sks {
            b.extend_from_slice(&[0x02, 0x06, 0x00, 0x00, sks[0], sks[1], sks[2], 0x00]);
        }
        b[7] = (b.len() - 8) as u8;
        b
    }

    /// Parse fixed (70h/71h) or descriptor (72h/73h) sense data, as an initiator reads what a target returned;
    /// `None` when the bytes are not sense data.
    ///
    /// Sense data cut short by a small buffer still gives what it holds: fixed format needs the sense key
    /// (3 bytes), and ASC/ASCQ read as 00h where the bytes are missing; descriptor format needs its 4-byte header,
    /// and a descriptor that runs past the end is ignored. The INFORMATION field counts only with its VALID bit;
    /// fixed format's COMMAND-SPECIFIC INFORMATION, which has none, only when it is not zero.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        let be = |d: &[u8]| d.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x));
        match b.first()? & 0x7F {
            0x70 | 0x71 if b.len() >= 3 => {
                let mut s = Sense::new(SenseKey::from_u8(b[2]), AscAscq(at(12), at(13)));
                if b[0] & 0x80 != 0 && b.len() >= 7 {
                    s.info = Some(be(&b[3..7]));
                }
                if let Some(csi) = b.get(8..12).map(be).filter(|v| *v != 0) {
                    s.command_specific = Some(csi);
                }
                if b.len() >= 18 && b[15] & 0x80 != 0 {
                    s.sks = Some([b[15], b[16], b[17]]);
                }
                Some(s)
            }
            0x72 | 0x73 if b.len() >= 4 => {
                let mut s = Sense::new(SenseKey::from_u8(b[1]), AscAscq(b[2], b[3]));
                s.descriptor = true;
                let end = (8 + usize::from(at(7))).min(b.len());
                let mut i = 8;
                while let Some(d) = b.get(i..end).filter(|d| d.len() >= 2) {
                    let Some(d) = d.get(..2 + usize::from(d[1])) else { break };
                    match d[0] {
                        0x00 if d.len() >= 12 && d[2] & 0x80 != 0 => s.info = Some(be(&d[4..12])),
                        0x01 if d.len() >= 12 => s.command_specific = Some(be(&d[4..12])),
                        0x02 if d.len() >= 7 => s.sks = Some([d[4], d[5], d[6]]),
                        _ => {}
                    }
                    i += d.len();
                }
                Some(s)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_places_key_asc_ascq_and_info() {
        let s = Sense::unrecovered_read_error(0x1234);
        let b = s.to_fixed();
        assert_eq!(b.len(), 18);
        assert_eq!(b[0], 0xF0);
        assert_eq!(b[2], 0x03);
        assert_eq!(&b[3..7], &[0, 0, 0x12, 0x34]);
        assert_eq!(b[7], 10);
        assert_eq!((b[12], b[13]), (0x11, 0x00));
    }

    #[test]
    fn fixed_format_clears_valid_when_info_exceeds_32_bits() {
        let b = Sense::unrecovered_read_error(1 << 40).to_fixed();
        assert_eq!(b[0], 0x70);
        assert_eq!(&b[3..7], &[0, 0, 0, 0]);
    }

    #[test]
    fn descriptor_format_carries_64_bit_info_and_field_pointer() {
        let s = Sense::invalid_field_in_cdb(2, Some(5)).with_info(1 << 40);
        let b = s.to_descriptor();
        assert_eq!(b[0], 0x72);
        assert_eq!((b[1], b[2], b[3]), (0x05, 0x24, 0x00));
        assert_eq!(usize::from(b[7]), b.len() - 8);
        let back = Sense::parse(&b).expect("parses");
        assert_eq!(back.info, Some(1 << 40));
        assert_eq!(back.sks, Some([0xCD, 0, 2]));
    }

    #[test]
    fn fixed_round_trips_through_parse() {
        let s = Sense::invalid_field_in_param(7, None);
        let back = Sense::parse(&s.to_fixed()).expect("parses");
        assert_eq!(back, s);
        let copy = Sense::new(SenseKey::CopyAborted, AscAscq::NO_ADDITIONAL).with_command_specific(3);
        let b = copy.to_fixed();
        assert_eq!(&b[8..12], &[0, 0, 0, 3], "COMMAND-SPECIFIC INFORMATION");
        assert_eq!(Sense::parse(&b), Some(copy.clone()));
        let back = Sense::parse(&copy.to_descriptor()).expect("parses");
        assert_eq!((back.key, back.command_specific), (SenseKey::CopyAborted, Some(3)));
    }

    #[test]
    fn fixed_sense_cut_short_still_gives_its_key() {
        let b = Sense::unrecovered_read_error(1234).to_fixed();
        let s = Sense::parse(&b[..8]).expect("the key is there");
        assert_eq!((s.key, s.code(), s.info), (SenseKey::MediumError, AscAscq::NO_ADDITIONAL, Some(1234)));
        assert_eq!(Sense::parse(&b[..13]).map(|s| s.code()), Some(AscAscq(0x11, 0)));
        assert_eq!(Sense::parse(&b[..2]), None, "no sense key");
    }

    #[test]
    fn descriptor_sense_cut_short_keeps_the_whole_descriptors() {
        let s = Sense::unrecovered_read_error(1 << 40).with_descriptor(true);
        let b = s.to_descriptor();
        let head = Sense::parse(&b[..4]).expect("the header is enough");
        assert_eq!((head.key, head.code(), head.info), (SenseKey::MediumError, AscAscq(0x11, 0), None));
        assert_eq!(Sense::parse(&b[..b.len() - 1]).map(|s| s.info), Some(None), "a cut descriptor is ignored");
        // An information descriptor without VALID carries nothing.
        let mut invalid = b.clone();
        invalid[10] = 0;
        assert_eq!(Sense::parse(&invalid).map(|s| s.info), Some(None));
    }

    #[test]
    fn not_sense_data_is_refused() {
        assert_eq!(Sense::parse(&[]), None);
        assert_eq!(Sense::parse(&[0x12, 0, 0]), None);
        assert_eq!(Sense::parse(&[0x72, 0x05, 0x24]), None);
    }

    #[test]
    fn every_sense_key_byte_decodes_to_itself() {
        for v in 0u8..16 {
            assert_eq!(SenseKey::from_u8(v) as u8, v);
            assert_eq!(SenseKey::from_u8(v | 0xE0) as u8, v, "FILEMARK, EOM and ILI are not the key");
        }
        assert_eq!(SenseKey::MediumError.to_string(), "MEDIUM ERROR");
        assert_eq!(AscAscq::UNRECOVERED_READ_ERROR.to_string(), "0x11/0x00");
    }
}
