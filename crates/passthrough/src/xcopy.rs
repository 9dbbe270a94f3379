//! The iSCSI target's copy manager (SPC-4): EXTENDED COPY (LID1) with
//! block-to-block segment descriptors (02h) between LUs of this target named by
//! identification-descriptor CSCD descriptors (E4h), and RECEIVE COPY RESULTS (COPY STATUS,
//! OPERATING PARAMETERS). `docs/scsi-features.md` describes it.
//!
//! This module parses and answers; the copy's READs and WRITEs are pass-through SRBs that
//! the pass-through client submits to the port driver like any initiator's command.

use scsi_proto::inquiry::vpd;
use scsi_proto::opcode::{service_action, EXTENDED_COPY, RECEIVE_COPY_RESULTS};
use scsi_proto::{AscAscq, Sense, SenseKey};

/// Limits reported in OPERATING PARAMETERS and the Third-Party Copy VPD page.
pub const MAX_CSCD_DESCRIPTORS: u16 = 8;
pub const MAX_SEGMENT_DESCRIPTORS: u16 = 8;
pub const MAX_DESCRIPTOR_LIST_LENGTH: u32 = 1024;
/// Largest segment in bytes (a segment's NUMBER OF BLOCKS is 16 bits).
pub const MAX_SEGMENT_BYTES: u32 = 64 << 20;
/// Copies one initiator may have in flight at once.
pub const MAX_CONCURRENT_COPIES: u8 = 8;

const HEADER: usize = 16;
/// Identification descriptor CSCD descriptor.
pub const CSCD_IDENTIFICATION: u8 = 0xE4;
const CSCD_LEN: usize = 32;
/// Block device to block device segment descriptor.
pub const SEGMENT_BLOCK_TO_BLOCK: u8 = 0x02;
const SEGMENT_B2B_LEN: usize = 28;

// A parameter list is refused with ILLEGAL REQUEST sense, with a field pointer into the parameter list (SKSV,
// C/D = 0) when one names the bad byte.

fn illegal(code: AscAscq) -> Sense {
    Sense::new(SenseKey::IllegalRequest, code)
}

fn invalid_field(byte: u16) -> Sense {
    Sense::invalid_field_in_param(byte, None)
}

/// PARAMETER LIST LENGTH ERROR.
pub fn parameter_list_length() -> Sense {
    Sense::param_list_length_error()
}

/// An identification-descriptor CSCD: the designator that names the LU, and the block
/// length the initiator expects it to have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cscd {
    /// Designation descriptor: code set, association / type, length, designator.
    pub code_set: u8,
    pub association: u8,
    pub designator_type: u8,
    pub designator: Vec<u8>,
    pub block_length: u32,
}

/// A block-to-block segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub source: u16,
    pub destination: u16,
    /// NUMBER OF BLOCKS counts destination blocks (DC = 1) or source blocks (DC = 0).
    pub dc: bool,
    pub blocks: u16,
    pub source_lba: u64,
    pub destination_lba: u64,
}

/// LIST ID USAGE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListIdUsage {
    /// 00b: hold the status for RECEIVE COPY RESULTS.
    Hold,
    /// 10b: a unique list ID, nothing held.
    Discard,
    /// 11b: no list ID.
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyList {
    pub list_id: u8,
    pub usage: ListIdUsage,
    pub cscds: Vec<Cscd>,
    pub segments: Vec<Segment>,
}

impl Cscd {
    /// The CSCD an initiator names a logical unit with: its NAA designator (binary code set, associated with the
    /// LU), for a block device of `block_length`-byte blocks.
    pub fn naa(designator: &[u8], block_length: u32) -> Self {
        Cscd { code_set: 1, association: 0, designator_type: 3, designator: designator.to_vec(), block_length }
    }

    /// The 32-byte descriptor (peripheral device type 00h, a block device); a designator longer than the 20 bytes
    /// the descriptor holds is cut.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut d = vec![0u8; CSCD_LEN];
        let len = self.designator.len().min(20);
        d[0] = CSCD_IDENTIFICATION;
        d[4] = self.code_set & 0x0F;
        d[5] = ((self.association & 0x03) << 4) | (self.designator_type & 0x0F);
        d[7] = len as u8;
        d[8..8 + len].copy_from_slice(&self.designator[..len]);
        d[29..32].copy_from_slice(&self.block_length.to_be_bytes()[1..]);
        d
    }
}

impl Segment {
    /// `blocks` source blocks from `source_lba` of CSCD `source` to `destination_lba` of CSCD `destination`.
    pub fn new(source: u16, destination: u16, blocks: u16, source_lba: u64, destination_lba: u64) -> Self {
        Segment { source, destination, dc: false, blocks, source_lba, destination_lba }
    }

    /// The 28-byte block-to-block segment descriptor.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut d = vec![0u8; SEGMENT_B2B_LEN];
        d[0] = SEGMENT_BLOCK_TO_BLOCK;
        d[1] = u8::from(self.dc) << 1;
        d[2..4].copy_from_slice(&((SEGMENT_B2B_LEN - 4) as u16).to_be_bytes());
        d[4..6].copy_from_slice(&self.source.to_be_bytes());
        d[6..8].copy_from_slice(&self.destination.to_be_bytes());
        d[10..12].copy_from_slice(&self.blocks.to_be_bytes());
        d[12..20].copy_from_slice(&self.source_lba.to_be_bytes());
        d[20..28].copy_from_slice(&self.destination_lba.to_be_bytes());
        d
    }
}

impl ListIdUsage {
    /// The LIST ID USAGE field's two bits.
    pub fn bits(self) -> u8 {
        match self {
            ListIdUsage::Hold => 0b00,
            ListIdUsage::Discard => 0b10,
            ListIdUsage::None => 0b11,
        }
    }
}

impl CopyList {
    /// The EXTENDED COPY (LID1) parameter list an initiator sends for this copy: what [`parse`] reads back.
    pub fn to_bytes(&self) -> Vec<u8> {
        let cscds: Vec<u8> = self.cscds.iter().flat_map(Cscd::to_bytes).collect();
        let segments: Vec<u8> = self.segments.iter().flat_map(Segment::to_bytes).collect();
        let mut h = vec![0u8; HEADER];
        h[0] = self.list_id;
        h[1] = self.usage.bits() << 3;
        h[2..4].copy_from_slice(&(cscds.len() as u16).to_be_bytes());
        h[8..12].copy_from_slice(&(segments.len() as u32).to_be_bytes());
        [h, cscds, segments].concat()
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(v)
}

/// Parse an EXTENDED COPY (LID1) parameter list. `Ok(None)`: an empty list, nothing to do.
pub fn parse(list: &[u8]) -> Result<Option<CopyList>, Sense> {
    if list.is_empty() {
        return Ok(None);
    }
    if list.len() < HEADER {
        return Err(parameter_list_length());
    }
    let list_id = list[0];
    let usage = match (list[1] >> 3) & 0x03 {
        0b00 => ListIdUsage::Hold,
        0b10 => ListIdUsage::Discard,
        0b11 => ListIdUsage::None,
        _ => return Err(invalid_field(1)),
    };
    if list[1] & 0x20 != 0 {
        // STR (sequential striped) is for stream devices.
        return Err(invalid_field(1));
    }
    let cscd_len = usize::from(be16(list, 2));
    let seg_len = be32(list, 8) as usize;
    let inline_len = be32(list, 12) as usize;
    let total = cscd_len as u64 + seg_len as u64 + inline_len as u64;
    if total > u64::from(MAX_DESCRIPTOR_LIST_LENGTH) || HEADER as u64 + total > list.len() as u64 {
        return Err(parameter_list_length());
    }
    if inline_len != 0 {
        // No segment descriptor that reads inline data is supported.
        return Err(invalid_field(12));
    }
    if !cscd_len.is_multiple_of(CSCD_LEN) {
        return Err(invalid_field(2));
    }
    if cscd_len / CSCD_LEN > usize::from(MAX_CSCD_DESCRIPTORS) {
        return Err(illegal(AscAscq::TOO_MANY_CSCD_DESCRIPTORS));
    }
    let mut cscds = Vec::new();
    for (i, d) in list[HEADER..HEADER + cscd_len].chunks_exact(CSCD_LEN).enumerate() {
        let at = (HEADER + i * CSCD_LEN) as u16;
        if d[0] != CSCD_IDENTIFICATION {
            return Err(illegal(AscAscq::UNSUPPORTED_CSCD_TYPE).with_field_pointer(false, at, None));
        }
        // Byte 1: LU ID TYPE (ignored in SPC-4), NUL (obsolete), PERIPHERAL DEVICE TYPE.
        if d[1] & 0x1F != 0 {
            return Err(invalid_field(at + 1));
        }
        let len = usize::from(d[7]);
        if len > 20 {
            return Err(invalid_field(at + 7));
        }
        cscds.push(Cscd {
            code_set: d[4] & 0x0F,
            association: (d[5] >> 4) & 0x03,
            designator_type: d[5] & 0x0F,
            designator: d[8..8 + len].to_vec(),
            block_length: be32(d, 28) & 0x00FF_FFFF,
        });
    }
    let mut segments = Vec::new();
    let mut pos = HEADER + cscd_len;
    let end = pos + seg_len;
    while pos < end {
        if end - pos < 4 {
            return Err(parameter_list_length());
        }
        let d = &list[pos..end];
        let len = 4 + usize::from(be16(d, 2));
        if d[0] != SEGMENT_BLOCK_TO_BLOCK {
            return Err(illegal(AscAscq::UNSUPPORTED_SEGMENT_TYPE).with_field_pointer(false, pos as u16, None));
        }
        if len != SEGMENT_B2B_LEN {
            return Err(invalid_field(pos as u16 + 2));
        }
        if d.len() < len {
            return Err(parameter_list_length());
        }
        if segments.len() == usize::from(MAX_SEGMENT_DESCRIPTORS) {
            return Err(illegal(AscAscq::TOO_MANY_SEGMENT_DESCRIPTORS));
        }
        segments.push(Segment {
            dc: d[1] & 0x02 != 0,
            source: be16(d, 4),
            destination: be16(d, 6),
            blocks: be16(d, 10),
            source_lba: be64(d, 12),
            destination_lba: be64(d, 20),
        });
        pos += len;
    }
    Ok(Some(CopyList { list_id, usage, cscds, segments }))
}

/// COPY MANAGER STATUS of COPY STATUS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyState {
    InProgress,
    Good,
    Failed,
}

/// What RECEIVE COPY RESULTS / COPY STATUS reports for one held list ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyStatus {
    pub state: CopyState,
    pub segments_processed: u16,
    /// Bytes written to the destinations.
    pub bytes: u64,
}

impl CopyStatus {
    /// COPY STATUS parameter data (SPC-4): the transfer count in the smallest
    /// unit that fits 32 bits.
    pub fn data(&self) -> Vec<u8> {
        let mut d = vec![0u8; 12];
        d[3] = 8;
        d[4] = match self.state {
            CopyState::InProgress => 0x00,
            CopyState::Good => 0x01,
            CopyState::Failed => 0x02,
        };
        d[5..7].copy_from_slice(&self.segments_processed.to_be_bytes());
        let (unit, count) = (0u8..=5)
            .map(|u| (u, self.bytes >> (10 * u32::from(u))))
            .find(|(_, c)| *c <= u64::from(u32::MAX))
            .unwrap_or((5, u64::from(u32::MAX)));
        d[7] = unit;
        d[8..12].copy_from_slice(&(count as u32).to_be_bytes());
        d
    }
}

/// OPERATING PARAMETERS (SPC-4).
pub fn operating_parameters() -> Vec<u8> {
    let mut d = vec![0u8; 44];
    d[4] = 0x01; // SNLID: LIST ID USAGE 11b is supported
    d[8..10].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
    d[10..12].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    d[12..16].copy_from_slice(&MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    d[16..20].copy_from_slice(&MAX_SEGMENT_BYTES.to_be_bytes());
    // Maximum inline data length, held data limit and stream transfer size: 0.
    d[34..36].copy_from_slice(&u16::from(MAX_CONCURRENT_COPIES).to_be_bytes());
    d[36] = MAX_CONCURRENT_COPIES;
    d[37] = 9; // data segment granularity: 512 bytes
    d.extend_from_slice(&[SEGMENT_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION]);
    d[43] = 2;
    let n = (d.len() - 4) as u32;
    d[0..4].copy_from_slice(&n.to_be_bytes());
    d
}

/// The Third-Party Copy VPD page (SPC-4) for an LU of `device_type`: the
/// supported commands, parameter data, and supported descriptors.
pub fn third_party_copy_vpd(device_type: u8) -> Vec<u8> {
    let mut body = Vec::new();
    let mut descriptor = |kind: u16, mut payload: Vec<u8>| {
        while !(payload.len() + 4).is_multiple_of(4) {
            payload.push(0);
        }
        body.extend_from_slice(&kind.to_be_bytes());
        body.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        body.extend(payload);
    };
    // Supported Commands (0001h): EXTENDED COPY (LID1), RECEIVE COPY RESULTS
    // COPY STATUS and OPERATING PARAMETERS.
    let commands = [
        EXTENDED_COPY,
        1,
        service_action::EXTENDED_COPY_LID1,
        RECEIVE_COPY_RESULTS,
        2,
        service_action::COPY_STATUS,
        service_action::OPERATING_PARAMETERS,
    ];
    let mut p = vec![commands.len() as u8];
    p.extend_from_slice(&commands);
    descriptor(0x0001, p);
    // Parameter Data (0008h).
    let mut p = vec![0u8; 28];
    p[4..6].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
    p[6..8].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    p[8..12].copy_from_slice(&MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    descriptor(0x0008, p);
    // Supported Descriptors (0009h).
    descriptor(0x0009, vec![2, SEGMENT_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION]);
    // Supported CSCD Descriptor IDs (000Ch): none (no CSCD descriptor ID is in use).
    let mut page = vec![device_type & 0x1F, vpd::THIRD_PARTY_COPY];
    page.extend_from_slice(&(body.len() as u16).to_be_bytes());
    page.extend(body);
    page
}

/// The NAA designators of a Device Identification VPD page that name the LU itself.
pub fn lu_naa_designators(page83: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let end = page83.len().min(4 + page83.get(2..4).map_or(0, |b| usize::from(be16(b, 0))));
    let mut pos = 4;
    while pos + 4 <= end {
        let d = &page83[pos..];
        let len = usize::from(d[3]);
        if pos + 4 + len > end {
            break;
        }
        let association = (d[1] >> 4) & 0x03;
        if d[1] & 0x0F == 3 && association == 0 {
            out.push(d[4..4 + len].to_vec());
        }
        pos += 4 + len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn header(list_id: u8, usage: u8, cscd_len: u16, seg_len: u32) -> Vec<u8> {
        let mut h = vec![0u8; 16];
        h[0] = list_id;
        h[1] = usage << 3;
        h[2..4].copy_from_slice(&cscd_len.to_be_bytes());
        h[8..12].copy_from_slice(&seg_len.to_be_bytes());
        h
    }

    fn cscd(naa: u64) -> Vec<u8> {
        Cscd::naa(&naa.to_be_bytes(), 512).to_bytes()
    }

    fn b2b(src: u16, dst: u16, n: u16, src_lba: u64, dst_lba: u64) -> Vec<u8> {
        Segment::new(src, dst, n, src_lba, dst_lba).to_bytes()
    }

    #[test]
    fn built_lists_parse_back_to_themselves() {
        let list = CopyList {
            list_id: 9,
            usage: ListIdUsage::Discard,
            cscds: vec![Cscd::naa(&[0x31, 2, 3, 4, 5, 6, 7, 8], 4096), Cscd::naa(&[0x32; 16], 512)],
            segments: vec![
                Segment::new(0, 1, 7, 1 << 33, 12),
                Segment { dc: true, ..Segment::new(1, 0, u16::MAX, 0, u64::MAX) },
            ],
        };
        assert_eq!(parse(&list.to_bytes()), Ok(Some(list)));
        // The bytes an initiator puts on the wire for a NAA CSCD (SPC-4 identification descriptor, E4h).
        let d = Cscd::naa(&[0x31, 2, 3, 4, 5, 6, 7, 8], 512).to_bytes();
        assert_eq!((d[0], d[4], d[5], d[7], &d[29..32]), (0xE4, 0x01, 0x03, 8, &[0, 2, 0][..]));
    }

    #[test]
    fn parses_one_cscd_and_one_segment() {
        let mut l = header(7, 0, 32, 28);
        l.extend(cscd(0x3123_4567_89AB_CDEF));
        l.extend(b2b(0, 0, 2048, 0, 4096));
        let c = parse(&l).unwrap().unwrap();
        assert_eq!((c.list_id, c.usage), (7, ListIdUsage::Hold));
        assert_eq!(c.cscds[0].designator, 0x3123_4567_89AB_CDEFu64.to_be_bytes());
        assert_eq!((c.cscds[0].designator_type, c.cscds[0].block_length), (3, 512));
        assert_eq!(
            c.segments,
            vec![Segment { source: 0, destination: 0, dc: false, blocks: 2048, source_lba: 0, destination_lba: 4096 }]
        );
        assert_eq!(parse(&[]).unwrap(), None);
    }

    #[test]
    fn lengths_past_the_list_or_the_limit_are_parameter_list_length_errors() {
        let mut l = header(1, 0, 32, 28);
        l.extend(cscd(0x3000_0000_0000_0001));
        l.extend(b2b(0, 0, 1, 0, 1));
        assert_eq!(parse(&l[..l.len() - 1]), Err(parameter_list_length()));
        assert_eq!(parse(&l[..15]), Err(parameter_list_length()));
        let big = header(1, 0, 32 * 9, MAX_DESCRIPTOR_LIST_LENGTH);
        assert_eq!(parse(&[big, vec![0; 2048]].concat()), Err(parameter_list_length()));
    }

    #[test]
    fn descriptor_counts_and_types_are_checked() {
        let n = MAX_CSCD_DESCRIPTORS + 1;
        let mut l = header(1, 0, 32 * n, 28);
        for _ in 0..n {
            l.extend(cscd(0x3000_0000_0000_0001));
        }
        l.extend(b2b(0, 0, 1, 0, 1));
        assert_eq!(parse(&l), Err(illegal(AscAscq::TOO_MANY_CSCD_DESCRIPTORS)));
        let n = u32::from(MAX_SEGMENT_DESCRIPTORS) + 1;
        let mut l = header(1, 0, 32, 28 * n);
        l.extend(cscd(0x3000_0000_0000_0001));
        for _ in 0..n {
            l.extend(b2b(0, 0, 1, 0, 1));
        }
        assert_eq!(parse(&l), Err(illegal(AscAscq::TOO_MANY_SEGMENT_DESCRIPTORS)));
        let mut l = header(1, 0, 32, 28);
        let mut fc = cscd(1);
        fc[0] = 0xE0;
        l.extend(fc);
        l.extend(b2b(0, 0, 1, 0, 1));
        assert_eq!(parse(&l).map_err(|e| e.code()), Err(AscAscq::UNSUPPORTED_CSCD_TYPE));
        let mut l = header(1, 0, 32, 20);
        l.extend(cscd(1));
        let mut stream = vec![0u8; 20];
        stream[0] = 0x03;
        stream[2..4].copy_from_slice(&16u16.to_be_bytes());
        l.extend(stream);
        assert_eq!(parse(&l).map_err(|e| e.code()), Err(AscAscq::UNSUPPORTED_SEGMENT_TYPE));
    }

    #[test]
    fn copy_status_picks_a_transfer_count_unit() {
        let s = CopyStatus { state: CopyState::Good, segments_processed: 1, bytes: 1 << 20 };
        let d = s.data();
        assert_eq!((d[4], d[7], be32(&d, 8)), (1, 0, 1 << 20));
        let s = CopyStatus { state: CopyState::Failed, segments_processed: 2, bytes: 1 << 40 };
        let d = s.data();
        assert_eq!((d[4], d[7], be32(&d, 8)), (2, 1, 1 << 30));
    }

    #[test]
    fn vpd_page_lists_the_commands_and_pads_descriptors() {
        let p = third_party_copy_vpd(0);
        assert_eq!(p[1], 0x8F);
        assert_eq!(usize::from(be16(&p, 2)), p.len() - 4);
        assert_eq!(be16(&p, 4), 1);
        let len = usize::from(be16(&p, 6));
        assert!((len + 4).is_multiple_of(4));
        assert_eq!(&p[9..16], &[0x83, 1, 0x00, 0x84, 2, 0x00, 0x03]);
        let op = operating_parameters();
        assert_eq!(be32(&op, 0) as usize, op.len() - 4);
        assert_eq!(op[43], 2);
    }

    #[test]
    fn only_lu_naa_designators_are_taken_from_page_83() {
        let page = [
            0, 0x83, 0, 24, //
            0x01, 0x03, 0, 8, 0x31, 2, 3, 4, 5, 6, 7, 8, // NAA, LU
            0x01, 0x13, 0, 8, 0x32, 2, 3, 4, 5, 6, 7, 8, // NAA, target port
        ];
        assert_eq!(lu_naa_designators(&page), vec![vec![0x31, 2, 3, 4, 5, 6, 7, 8]]);
    }
}
