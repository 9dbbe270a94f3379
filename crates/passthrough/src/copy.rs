//! The copy manager in the iSCSI glue: EXTENDED COPY and RECEIVE COPY RESULTS are answered
//! here, above the port driver, and every READ and WRITE of a copy is a pass-through SRB
//! of the initiator's I_T nexus (so reservations, unit attentions and task management
//! apply to it as to any command). The Third-Party Copy VPD page and the two commands'
//! entries in REPORT SUPPORTED OPERATION CODES are added to what the LU reports.
//! `docs/scsi-features.md` describes it; parsing is in [`crate::xcopy`].

use super::{check, PassThroughLuns};
use crate::xcopy::{self, CopyList, CopyState, CopyStatus, ListIdUsage};
use bytes::Bytes;
use iscsi::{DataDirection, ScsiCommand, ScsiResponse, TaskAttr};
use parking_lot::Mutex;
use scsi_proto::inquiry::vpd;
use scsi_proto::opcode::{service_action, EXTENDED_COPY, INQUIRY, MAINTENANCE_IN, RECEIVE_COPY_RESULTS};
use scsi_proto::status::code as status;
use scsi_proto::{cdb, AscAscq, Sense, SenseKey};
use std::collections::{HashMap, HashSet};

/// Bytes moved by one READ / WRITE pair of a segment.
const CHUNK: u64 = 1 << 20;

#[derive(Default)]
pub(super) struct CopyManager {
    /// Held COPY STATUS by (I_T nexus, list ID), for LIST ID USAGE 00b.
    held: Mutex<HashMap<(u64, u8), CopyStatus>>,
    /// List IDs of copies in progress, per I_T nexus.
    running: Mutex<HashSet<(u64, u8)>>,
    /// NAA designators of each LUN (VPD page 83h), read once.
    names: Mutex<HashMap<u64, Vec<Vec<u8>>>>,
}

impl CopyManager {
    /// The I_T nexus is gone: its held results go with it.
    pub(super) fn forget(&self, initiator: u64) {
        self.held.lock().retain(|(i, _), _| *i != initiator);
    }
}

/// CHECK CONDITION with `s` in fixed format; for COPY ABORTED, `segment` (the segment being processed) goes in
/// COMMAND-SPECIFIC INFORMATION (SPC-4).
fn sense_response(s: Sense, segment: Option<u16>) -> ScsiResponse {
    let s = match segment {
        Some(n) => s.with_command_specific(u64::from(n)),
        None => s,
    };
    ScsiResponse {
        status: status::CHECK_CONDITION,
        sense: Some(s.to_fixed()),
        data_in: Bytes::new(),
        residual: iscsi::Residual::None,
    }
}

fn invalid_field_in_cdb() -> Sense {
    Sense::new(SenseKey::IllegalRequest, AscAscq::INVALID_FIELD_IN_CDB)
}

/// COPY ABORTED with `code`.
fn copy_aborted(code: AscAscq) -> Sense {
    Sense::new(SenseKey::CopyAborted, code)
}

fn data_in(mut data: Vec<u8>, alloc: usize) -> ScsiResponse {
    data.truncate(alloc);
    ScsiResponse::good(Bytes::from(data))
}

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
}

/// CDB usage data for REPORT SUPPORTED OPERATION CODES (SPC-4).
const EXTENDED_COPY_USAGE: [u8; 16] = [EXTENDED_COPY, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0];
const RECEIVE_COPY_RESULTS_USAGE: [u8; 16] =
    [RECEIVE_COPY_RESULTS, 0x1F, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0];
/// (opcode, service action) of the commands the copy manager adds.
const COMMANDS: [(u8, u8); 3] = [
    (EXTENDED_COPY, service_action::EXTENDED_COPY_LID1),
    (RECEIVE_COPY_RESULTS, service_action::COPY_STATUS),
    (RECEIVE_COPY_RESULTS, service_action::OPERATING_PARAMETERS),
];

impl PassThroughLuns {
    /// The commands the copy manager answers or amends; `None` for everything else.
    pub(super) async fn copy_manager(&self, cmd: &ScsiCommand) -> Option<ScsiResponse> {
        let cdb = &cmd.cdb;
        match (cdb.first()?, cdb.len()) {
            (&EXTENDED_COPY, 16..) => Some(self.extended_copy(cmd).await),
            (&RECEIVE_COPY_RESULTS, 16..) => Some(self.receive_copy_results(cmd)),
            (&INQUIRY, 6..) if cdb[1] & 0x01 != 0 && matches!(cdb[2], vpd::SUPPORTED_PAGES | vpd::THIRD_PARTY_COPY) => {
                Some(self.inquiry_vpd(cmd).await)
            }
            (&MAINTENANCE_IN, 12..) if cdb[1] & 0x1F == service_action::REPORT_SUPPORTED_OPERATION_CODES => {
                Some(self.report_opcodes(cmd).await)
            }
            _ => None,
        }
    }

    /// A command of the copy manager's own on the initiator's I_T nexus.
    async fn own(
        &self,
        cmd: &ScsiCommand,
        lun: u64,
        cdb: Vec<u8>,
        direction: DataDirection,
        len: u32,
        out: Bytes,
    ) -> ScsiResponse {
        let sub = ScsiCommand {
            initiator: cmd.initiator,
            lun,
            // The copy's commands carry the EXTENDED COPY's tag: ABORT TASK of it aborts the one in flight.
            task_tag: cmd.task_tag,
            cdb,
            attr: TaskAttr::Simple,
            direction,
            expected_len: len,
            data_out: out,
        };
        self.pass_through(sub).await
    }

    /// Supported VPD pages gain 8Fh; page 8Fh itself comes from the copy manager.
    async fn inquiry_vpd(&self, cmd: &ScsiCommand) -> ScsiResponse {
        let alloc = usize::from(u16::from_be_bytes([cmd.cdb[3], cmd.cdb[4]]));
        let mut cdb = cmd.cdb.clone();
        cdb[2] = vpd::SUPPORTED_PAGES;
        cdb[3..5].copy_from_slice(&255u16.to_be_bytes());
        let r = self.own(cmd, cmd.lun, cdb, DataDirection::In, 255, Bytes::new()).await;
        if r.status != status::GOOD || r.data_in.len() < 4 {
            return r;
        }
        let mut pages: Vec<u8> = r.data_in[4..].to_vec();
        if cmd.cdb[2] == vpd::THIRD_PARTY_COPY {
            return data_in(xcopy::third_party_copy_vpd(r.data_in[0]), alloc);
        }
        if !pages.contains(&vpd::THIRD_PARTY_COPY) {
            pages.push(vpd::THIRD_PARTY_COPY);
            pages.sort_unstable();
        }
        let mut d = r.data_in[..2].to_vec();
        d.extend_from_slice(&(pages.len() as u16).to_be_bytes());
        d.extend(pages);
        data_in(d, alloc)
    }

    /// REPORT SUPPORTED OPERATION CODES with the copy manager's commands added.
    async fn report_opcodes(&self, cmd: &ScsiCommand) -> ScsiResponse {
        let c = &cmd.cdb;
        let alloc = be32(c, 6) as usize;
        let rctd = c[2] & 0x80 != 0;
        let options = c[2] & 0x07;
        let (op, sa) = (c[3], u16::from_be_bytes([c[4], c[5]]));
        if matches!(options, 1..=3) && (op == EXTENDED_COPY || op == RECEIVE_COPY_RESULTS) {
            // One command: both have service actions (options 1 is then invalid).
            if options == 1 {
                // INVALID FIELD IN CDB pointing at REPORTING OPTIONS (byte 2, bits 2..0).
                return sense_response(Sense::invalid_field_in_cdb(2, Some(2)), None);
            }
            let supported = COMMANDS.iter().any(|&(o, s)| o == op && u16::from(s) == sa);
            if !supported {
                return data_in(vec![0, 0x01, 0, 0], alloc);
            }
            let usage = if op == EXTENDED_COPY { EXTENDED_COPY_USAGE } else { RECEIVE_COPY_RESULTS_USAGE };
            let mut d = vec![0, u8::from(rctd) << 7 | 0x03, 0, 16];
            d.extend_from_slice(&usage);
            if rctd {
                d.extend_from_slice(&[0, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            }
            return data_in(d, alloc);
        }
        // Everything else from the LU, read whole and then clipped.
        let mut cdb = c.clone();
        cdb[6..10].copy_from_slice(&65535u32.to_be_bytes());
        let r = self.own(cmd, cmd.lun, cdb, DataDirection::In, 65535, Bytes::new()).await;
        if options != 0 || r.status != status::GOOD || r.data_in.len() < 4 {
            return r;
        }
        let step = if rctd { 20 } else { 8 };
        let mut descriptors: Vec<Vec<u8>> = r.data_in[4..].chunks(step).map(<[u8]>::to_vec).collect();
        for (o, s) in COMMANDS {
            let mut d = vec![o, 0, 0, s, 0, 0x01 | u8::from(rctd) << 1, 0, 16];
            if rctd {
                d.extend_from_slice(&[0, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            }
            descriptors.push(d);
        }
        descriptors.sort_by_key(|d| (d[0], u16::from_be_bytes([d[2], d[3]])));
        let body: Vec<u8> = descriptors.concat();
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend(body);
        data_in(out, alloc)
    }

    /// RECEIVE COPY RESULTS (SPC-4): COPY STATUS (00h) and OPERATING PARAMETERS (03h).
    fn receive_copy_results(&self, cmd: &ScsiCommand) -> ScsiResponse {
        let c = &cmd.cdb;
        let alloc = be32(c, 10) as usize;
        match c[1] & 0x1F {
            service_action::COPY_STATUS => {
                let key = (cmd.initiator, c[2]);
                let mut held = self.copies.held.lock();
                let Some(status) = held.get(&key).copied() else {
                    return sense_response(invalid_field_in_cdb(), None);
                };
                // A finished copy's status is reported once (SPC-4).
                if status.state != CopyState::InProgress {
                    held.remove(&key);
                }
                data_in(status.data(), alloc)
            }
            service_action::OPERATING_PARAMETERS => data_in(xcopy::operating_parameters(), alloc),
            _ => sense_response(invalid_field_in_cdb(), None),
        }
    }

    /// The LUN whose Device Identification page names the CSCD's NAA designator.
    async fn resolve(&self, cmd: &ScsiCommand, cscd: &xcopy::Cscd) -> Option<u64> {
        if cscd.designator_type != 3 || cscd.association != 0 {
            return None;
        }
        for &lun in &self.luns {
            let known = self.copies.names.lock().get(&lun).cloned();
            let names = match known {
                Some(n) => n,
                None => {
                    let cdb = cdb::inquiry_vpd(vpd::DEVICE_IDENTIFICATION, 256);
                    let r = self.own(cmd, lun, cdb, DataDirection::In, 256, Bytes::new()).await;
                    if r.status != status::GOOD {
                        continue;
                    }
                    let n = xcopy::lu_naa_designators(&r.data_in);
                    self.copies.names.lock().insert(lun, n.clone());
                    n
                }
            };
            if names.contains(&cscd.designator) {
                return Some(lun);
            }
        }
        None
    }

    /// EXTENDED COPY (LID1, SPC-4).
    async fn extended_copy(&self, cmd: &ScsiCommand) -> ScsiResponse {
        let c = &cmd.cdb;
        if c[1] & 0x1F != service_action::EXTENDED_COPY_LID1 {
            // Only the LID1 parameter list format.
            return sense_response(invalid_field_in_cdb(), None);
        }
        let plen = be32(c, 10) as usize;
        if cmd.data_out.len() < plen {
            return sense_response(xcopy::parameter_list_length(), None);
        }
        let list = match xcopy::parse(&cmd.data_out[..plen]) {
            Ok(Some(list)) => list,
            Ok(None) => return ScsiResponse::good(Bytes::new()),
            Err(s) => return sense_response(s, None),
        };
        let key = (cmd.initiator, list.list_id);
        if list.usage != ListIdUsage::None {
            let mut running = self.copies.running.lock();
            if !running.insert(key) {
                return sense_response(Sense::new(SenseKey::IllegalRequest, AscAscq::OPERATION_IN_PROGRESS), None);
            }
            if running.iter().filter(|(i, _)| *i == cmd.initiator).count() > usize::from(xcopy::MAX_CONCURRENT_COPIES) {
                running.remove(&key);
                // INSUFFICIENT RESOURCES (SPC-4: more concurrent copies than reported).
                return check(SenseKey::IllegalRequest, AscAscq::INSUFFICIENT_RESOURCES);
            }
        }
        if list.usage == ListIdUsage::Hold {
            self.copies
                .held
                .lock()
                .insert(key, CopyStatus { state: CopyState::InProgress, segments_processed: 0, bytes: 0 });
        }
        let (response, status) = self.run_copy(cmd, &list).await;
        if list.usage != ListIdUsage::None {
            self.copies.running.lock().remove(&key);
        }
        if list.usage == ListIdUsage::Hold {
            self.copies.held.lock().insert(key, status);
        }
        response
    }

    /// Resolve the CSCDs, then copy segment by segment.
    async fn run_copy(&self, cmd: &ScsiCommand, list: &CopyList) -> (ScsiResponse, CopyStatus) {
        let mut status = CopyStatus { state: CopyState::Failed, segments_processed: 0, bytes: 0 };
        // Each CSCD a segment uses must name an LU of this target, with the block length it has.
        let mut luns: HashMap<u16, (u64, u32)> = HashMap::new();
        for (i, seg) in list.segments.iter().enumerate() {
            for index in [seg.source, seg.destination] {
                if luns.contains_key(&index) {
                    continue;
                }
                // A CSCD that names no LU of this target, or an index past the list.
                let unreachable = copy_aborted(AscAscq::COPY_TARGET_DEVICE_NOT_REACHABLE);
                let Some(cscd) = list.cscds.get(usize::from(index)) else {
                    return (sense_response(unreachable, Some(i as u16)), status);
                };
                let Some(lun) = self.resolve(cmd, cscd).await else {
                    return (sense_response(unreachable, Some(i as u16)), status);
                };
                let bs = self.block_sizes.get(&lun).copied().unwrap_or(512);
                if cscd.block_length != bs {
                    let s = copy_aborted(AscAscq::INCORRECT_COPY_TARGET_DEVICE_TYPE);
                    return (sense_response(s, Some(i as u16)), status);
                }
                // The LU's state first: a unit attention or NOT READY is the copy's answer too.
                let tur = self.own(cmd, lun, cdb::test_unit_ready(), DataDirection::None, 0, Bytes::new()).await;
                if tur.status != status::GOOD {
                    return (tur, status);
                }
                luns.insert(index, (lun, bs));
            }
        }
        for (i, seg) in list.segments.iter().enumerate() {
            let (src, sbs) = luns[&seg.source];
            let (dst, dbs) = luns[&seg.destination];
            let unit = if seg.dc { dbs } else { sbs };
            let bytes = u64::from(seg.blocks) * u64::from(unit);
            if !bytes.is_multiple_of(u64::from(sbs))
                || !bytes.is_multiple_of(u64::from(dbs))
                || bytes > u64::from(xcopy::MAX_SEGMENT_BYTES)
            {
                let s = Sense::new(SenseKey::IllegalRequest, AscAscq::INVALID_FIELD_IN_PARAMETER_LIST);
                return (sense_response(s, Some(i as u16)), status);
            }
            let chunk = CHUNK - CHUNK % u64::from(sbs.max(dbs));
            let mut off = 0;
            while off < bytes {
                let n = chunk.min(bytes - off);
                let read =
                    cdb::read_write16(false, seg.source_lba + off / u64::from(sbs), (n / u64::from(sbs)) as u32, false);
                let r = self.own(cmd, src, read, DataDirection::In, n as u32, Bytes::new()).await;
                if let Some(fail) = failed(r.status, r.sense.as_deref(), r.data_in.len() as u64, n, i) {
                    return (fail, status);
                }
                let write = cdb::read_write16(
                    true,
                    seg.destination_lba + off / u64::from(dbs),
                    (n / u64::from(dbs)) as u32,
                    false,
                );
                let w = self.own(cmd, dst, write, DataDirection::Out, n as u32, r.data_in).await;
                if let Some(fail) = failed(w.status, w.sense.as_deref(), n, n, i) {
                    return (fail, status);
                }
                off += n;
                status.bytes += n;
            }
            status.segments_processed += 1;
        }
        status.state = CopyState::Good;
        (ScsiResponse::good(Bytes::new()), status)
    }
}

/// How a failed READ or WRITE of segment `segment` ends the copy: a reservation conflict,
/// unit attention or NOT READY is returned as the LU reported it; anything else is COPY
/// ABORTED naming the segment.
fn failed(status: u8, sense: Option<&[u8]>, moved: u64, wanted: u64, segment: usize) -> Option<ScsiResponse> {
    use status::{CHECK_CONDITION, GOOD, RESERVATION_CONFLICT};
    if status == GOOD && moved == wanted {
        return None;
    }
    // Whatever format the LU reports sense in (its D_SENSE bit).
    let key = sense.and_then(Sense::parse).map(|s| s.key);
    if status == RESERVATION_CONFLICT
        || (status == CHECK_CONDITION && matches!(key, Some(SenseKey::NotReady | SenseKey::UnitAttention)))
    {
        return Some(ScsiResponse {
            status,
            sense: sense.map(<[u8]>::to_vec),
            data_in: Bytes::new(),
            residual: iscsi::Residual::None,
        });
    }
    Some(sense_response(copy_aborted(AscAscq::NO_ADDITIONAL), Some(segment as u16)))
}
