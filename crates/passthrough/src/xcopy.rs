//! The iSCSI target's copy manager (SPC-4): EXTENDED COPY (LID1) with
//! block-to-block segment descriptors (02h) between LUs of this target named by
//! identification-descriptor CSCD descriptors (E4h), and RECEIVE COPY RESULTS (COPY STATUS,
//! OPERATING PARAMETERS). `docs/scsi-features.md` describes it.
//!
//! This module parses and answers; the copy's READs and WRITEs are pass-through SRBs that
//! the pass-through client submits to the port driver like any initiator's command.

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

/// Sense for a refused or failed copy: key, ASC, ASCQ, and a field pointer into the
/// parameter list when one names the bad byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopySense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
    pub field: Option<u16>,
}

impl CopySense {
    const fn illegal(asc: u8, ascq: u8) -> Self {
        CopySense { key: 0x05, asc, ascq, field: None }
    }
    const fn at(mut self, byte: u16) -> Self {
        self.field = Some(byte);
        self
    }
    pub const PARAMETER_LIST_LENGTH: Self = Self::illegal(0x1A, 0x00);
    pub const INVALID_FIELD_IN_PARAMETER_LIST: Self = Self::illegal(0x26, 0x00);
    pub const TOO_MANY_CSCD_DESCRIPTORS: Self = Self::illegal(0x26, 0x06);
    pub const UNSUPPORTED_CSCD_TYPE: Self = Self::illegal(0x26, 0x07);
    pub const TOO_MANY_SEGMENT_DESCRIPTORS: Self = Self::illegal(0x26, 0x08);
    pub const UNSUPPORTED_SEGMENT_TYPE: Self = Self::illegal(0x26, 0x09);
    pub const INVALID_FIELD_IN_CDB: Self = Self::illegal(0x24, 0x00);
    pub const OPERATION_IN_PROGRESS: Self = Self::illegal(0x00, 0x16);
    /// COPY ABORTED: a CSCD that names no LU of this target, or an index past the list.
    pub const TARGET_NOT_REACHABLE: Self = CopySense { key: 0x0A, asc: 0x0D, ascq: 0x02, field: None };
    /// COPY ABORTED: a READ or WRITE of the copy failed.
    pub const ABORTED: Self = CopySense { key: 0x0A, asc: 0x00, ascq: 0x00, field: None };

    /// Fixed-format sense (SPC-4); `segment` goes in COMMAND-SPECIFIC INFORMATION
    /// for COPY ABORTED (the segment being processed, SPC-4).
    pub fn to_fixed(self, segment: Option<u16>) -> Vec<u8> {
        let mut s = vec![0u8; 18];
        s[0] = 0x70;
        s[2] = self.key;
        s[7] = 10;
        if let Some(seg) = segment {
            s[8..12].copy_from_slice(&u32::from(seg).to_be_bytes());
        }
        s[12] = self.asc;
        s[13] = self.ascq;
        if let Some(byte) = self.field {
            s[15] = 0x80; // SKSV, C/D = 0: in the parameter list
            s[16..18].copy_from_slice(&byte.to_be_bytes());
        }
        s
    }
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
pub fn parse(list: &[u8]) -> Result<Option<CopyList>, CopySense> {
    if list.is_empty() {
        return Ok(None);
    }
    if list.len() < HEADER {
        return Err(CopySense::PARAMETER_LIST_LENGTH);
    }
    let list_id = list[0];
    let usage = match (list[1] >> 3) & 0x03 {
        0b00 => ListIdUsage::Hold,
        0b10 => ListIdUsage::Discard,
        0b11 => ListIdUsage::None,
        _ => return Err(CopySense::INVALID_FIELD_IN_PARAMETER_LIST.at(1)),
    };
    if list[1] & 0x20 != 0 {
        // STR (sequential striped) is for stream devices.
        return Err(CopySense::INVALID_FIELD_IN_PARAMETER_LIST.at(1));
    }
    let cscd_len = usize::from(be16(list, 2));
    let seg_len = be32(list, 8) as usize;
    let inline_len = be32(list, 12) as usize;
    let total = cscd_len as u64 + seg_len as u64 + inline_len as u64;
    if total > u64::from(MAX_DESCRIPTOR_LIST_LENGTH) || HEADER as u64 + total > list.len() as u64 {
        return Err(CopySense::PARAMETER_LIST_LENGTH);
    }
    if inline_len != 0 {
        // No segment descriptor that reads inline data is supported.
        return Err(CopySense::INVALID_FIELD_IN_PARAMETER_LIST.at(12));
    }
    if !cscd_len.is_multiple_of(CSCD_LEN) {
        return Err(CopySense::INVALID_FIELD_IN_PARAMETER_LIST.at(2));
    }
    if cscd_len / CSCD_LEN > usize::from(MAX_CSCD_DESCRIPTORS) {
        return Err(CopySense::TOO_MANY_CSCD_DESCRIPTORS);
    }
    let mut cscds = Vec::new();
    for (i, d) in list[HEADER..HEADER + cscd_len].chunks_exact(CSCD_LEN).enumerate() {
        let at = (HEADER + i * CSCD_LEN) as u16;
        if d[0] != CSCD_IDENTIFICATION {
            return Err(CopySense::UNSUPPORTED_CSCD_TYPE.at(at));
        }
        // Byte 1: LU ID TYPE (ignored in SPC-4), NUL (obsolete), PERIPHERAL DEVICE TYPE.
        if d[1] & 0x1F != 0 {
            return Err(CopySense::INVALID_FIELD_IN_PARAMETER_LIST.at(at + 1));
        }
        let len = usize::from(d[7]);
        if len > 20 {
            return Err(CopySense::INVALID_FIELD_IN_PARAMETER_LIST.at(at + 7));
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
            return Err(CopySense::PARAMETER_LIST_LENGTH);
        }
        let d = &list[pos..end];
        let len = 4 + usize::from(be16(d, 2));
        if d[0] != SEGMENT_BLOCK_TO_BLOCK {
            return Err(CopySense::UNSUPPORTED_SEGMENT_TYPE.at(pos as u16));
        }
        if len != SEGMENT_B2B_LEN {
            return Err(CopySense::INVALID_FIELD_IN_PARAMETER_LIST.at(pos as u16 + 2));
        }
        if d.len() < len {
            return Err(CopySense::PARAMETER_LIST_LENGTH);
        }
        if segments.len() == usize::from(MAX_SEGMENT_DESCRIPTORS) {
            return Err(CopySense::TOO_MANY_SEGMENT_DESCRIPTORS);
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
    let commands = [0x83u8, 1, 0x00, 0x84, 2, 0x00, 0x03];
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
    let mut page = vec![device_type & 0x1F, 0x8F];
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
        let mut d = vec![0u8; 32];
        d[0] = 0xE4;
        d[4] = 0x01;
        d[5] = 0x03;
        d[7] = 8;
        d[8..16].copy_from_slice(&naa.to_be_bytes());
        d[29..32].copy_from_slice(&[0, 2, 0]);
        d
    }

    fn b2b(src: u16, dst: u16, n: u16, src_lba: u64, dst_lba: u64) -> Vec<u8> {
        let mut d = vec![0u8; 28];
        d[0] = 0x02;
        d[2..4].copy_from_slice(&24u16.to_be_bytes());
        d[4..6].copy_from_slice(&src.to_be_bytes());
        d[6..8].copy_from_slice(&dst.to_be_bytes());
        d[10..12].copy_from_slice(&n.to_be_bytes());
        d[12..20].copy_from_slice(&src_lba.to_be_bytes());
        d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
        d
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
        assert_eq!(parse(&l[..l.len() - 1]), Err(CopySense::PARAMETER_LIST_LENGTH));
        assert_eq!(parse(&l[..15]), Err(CopySense::PARAMETER_LIST_LENGTH));
        let big = header(1, 0, 32 * 9, MAX_DESCRIPTOR_LIST_LENGTH);
        assert_eq!(parse(&[big, vec![0; 2048]].concat()), Err(CopySense::PARAMETER_LIST_LENGTH));
    }

    #[test]
    fn descriptor_counts_and_types_are_checked() {
        let n = MAX_CSCD_DESCRIPTORS + 1;
        let mut l = header(1, 0, 32 * n, 28);
        for _ in 0..n {
            l.extend(cscd(0x3000_0000_0000_0001));
        }
        l.extend(b2b(0, 0, 1, 0, 1));
        assert_eq!(parse(&l), Err(CopySense::TOO_MANY_CSCD_DESCRIPTORS));
        let n = u32::from(MAX_SEGMENT_DESCRIPTORS) + 1;
        let mut l = header(1, 0, 32, 28 * n);
        l.extend(cscd(0x3000_0000_0000_0001));
        for _ in 0..n {
            l.extend(b2b(0, 0, 1, 0, 1));
        }
        assert_eq!(parse(&l), Err(CopySense::TOO_MANY_SEGMENT_DESCRIPTORS));
        let mut l = header(1, 0, 32, 28);
        let mut fc = cscd(1);
        fc[0] = 0xE0;
        l.extend(fc);
        l.extend(b2b(0, 0, 1, 0, 1));
        assert_eq!(parse(&l).map_err(|e| (e.asc, e.ascq)), Err((0x26, 0x07)));
        let mut l = header(1, 0, 32, 20);
        l.extend(cscd(1));
        let mut stream = vec![0u8; 20];
        stream[0] = 0x03;
        stream[2..4].copy_from_slice(&16u16.to_be_bytes());
        l.extend(stream);
        assert_eq!(parse(&l).map_err(|e| (e.asc, e.ascq)), Err((0x26, 0x09)));
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
