//! SCSI commands in full-feature phase: collecting Data-Out (immediate, unsolicited and
//! solicited by R2T, RFC 7143 §4.2.5, §11.7, §11.8), running the command, and answering
//! with Data-In and status (§11.4, §11.7).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::OwnedSemaphorePermit;

use super::{Connection, End, Out, Running, Shared};
use crate::backend::{decode_lun, status, DataDirection, Residual, ScsiBackend, ScsiCommand, ScsiResponse, TaskAttr};
use crate::loss::LossMark;
use crate::negotiate::SessionParams;
use crate::pdu::{
    DataIn, DataOut, R2t, RejectReason, ResidualField, ScsiCommandPdu, ScsiResponsePdu, Sn, TargetPdu, BHS_LEN,
    RESERVED_TAG,
};

/// Sense key ILLEGAL REQUEST with INVALID FIELD IN CDB (SPC-4 §4.5.6).
fn invalid_field_in_cdb() -> ScsiResponse {
    ScsiResponse::check_condition(0x05, 0x24, 0x00)
}

/// One R2T the initiator has not fully answered yet.
#[derive(Debug)]
struct Solicited {
    ttt: u32,
    offset: u32,
    len: u32,
    received: u32,
    next_data_sn: Sn,
}

/// A write command collecting its Data-Out.
pub(crate) struct Collect {
    lun_raw: u64,
    cmd: ScsiCommand,
    counted: bool,
    chunks: Vec<Bytes>,
    received: u32,
    /// Bytes the initiator sends without R2T: immediate plus unsolicited Data-Out.
    unsolicited_end: u32,
    unsolicited_sn: Sn,
    next_r2t_offset: u32,
    r2t_sn: u32,
    outstanding: Vec<Solicited>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Collect {
    pub(super) fn lun(&self) -> u64 {
        self.cmd.lun
    }

    pub(super) fn counted(&self) -> bool {
        self.counted
    }
}

impl<B: ScsiBackend> Connection<'_, B> {
    pub(super) async fn on_command(&mut self, bhs: [u8; BHS_LEN], c: ScsiCommandPdu) -> Option<End> {
        let counted = !c.immediate;
        let lun = decode_lun(c.lun);
        let busy = self.collecting.contains_key(&c.itt) || self.shared.running().contains_key(&c.itt);
        if busy || c.itt == RESERVED_TAG {
            if counted {
                self.shared.window.finish();
            }
            return (!self.reject(RejectReason::TaskInProgress, bhs).await).then_some(End::Closed);
        }
        let p = self.params().clone();
        let imm_len = c.immediate_data.len() as u32;
        // Immediate data only when negotiated, only for writes, never more than the
        // first burst or the expected length (RFC 7143 §13.11, §13.14).
        let bad_immediate = imm_len > 0
            && (!p.immediate_data || !c.write || imm_len > c.expected_len || imm_len > p.first_burst_length);
        if bad_immediate {
            if counted {
                self.shared.window.finish();
            }
            return (!self.reject(RejectReason::ProtocolError, bhs).await).then_some(End::Closed);
        }
        let direction = match (c.read, c.write) {
            (false, false) => DataDirection::None,
            (true, false) => DataDirection::In,
            (false, true) => DataDirection::Out,
            (true, true) => {
                // Bidirectional commands are not supported by the backend interface.
                return self.answer_now(c.itt, c.lun, counted, invalid_field_in_cdb()).await;
            }
        };
        let max_cmd = self.info.config.map_or(u32::MAX, |t| t.limits.max_command_bytes);
        if c.expected_len > max_cmd {
            return self.answer_now(c.itt, c.lun, counted, invalid_field_in_cdb()).await;
        }
        let mut cmd = ScsiCommand {
            initiator: self.shared.initiator,
            lun,
            task_tag: c.itt,
            cdb: c.cdb,
            attr: TaskAttr::from_bits(c.attr),
            direction,
            expected_len: c.expected_len,
            data_out: Bytes::new(),
        };
        if direction != DataDirection::Out || c.expected_len == imm_len {
            cmd.data_out = c.immediate_data;
            self.start(c.itt, c.lun, cmd, counted, None, 0);
            return None;
        }
        let unsolicited_end =
            if !p.initial_r2t && !c.final_ { p.first_burst_length.min(c.expected_len).max(imm_len) } else { imm_len };
        let mut col = Collect {
            lun_raw: c.lun,
            cmd,
            counted,
            chunks: Vec::new(),
            received: imm_len,
            unsolicited_end,
            unsolicited_sn: Sn(0),
            next_r2t_offset: unsolicited_end,
            r2t_sn: 0,
            outstanding: Vec::new(),
            permit: None,
        };
        if imm_len > 0 {
            col.chunks.push(c.immediate_data);
        }
        let itt = c.itt;
        self.collecting.insert(itt, col);
        self.parked.push_back(itt);
        (!self.unpark().await).then_some(End::Closed)
    }

    /// Gives buffer budget to parked writes in arrival order and sends their R2Ts.
    /// Returns false when the writer is gone.
    pub(super) async fn unpark(&mut self) -> bool {
        while let Some(&itt) = self.parked.front() {
            let Some(col) = self.collecting.get_mut(&itt) else {
                self.parked.pop_front();
                continue;
            };
            let need = col.cmd.expected_len.clamp(1, self.shared.budget_total);
            match self.shared.budget.clone().try_acquire_many_owned(need) {
                Ok(permit) => col.permit = Some(permit),
                Err(_) => return true,
            }
            self.parked.pop_front();
            if !self.solicit(itt).await {
                return false;
            }
        }
        true
    }

    /// Sends R2Ts up to MaxOutstandingR2T, each at most MaxBurstLength (RFC 7143 §13.13,
    /// §13.17).
    async fn solicit(&mut self, itt: u32) -> bool {
        let p = self.params().clone();
        loop {
            let ttt = self.ttt();
            let Some(col) = self.collecting.get_mut(&itt) else {
                return true;
            };
            if col.permit.is_none()
                || col.outstanding.len() >= p.max_outstanding_r2t as usize
                || col.next_r2t_offset >= col.cmd.expected_len
            {
                return true;
            }
            let len = (col.cmd.expected_len - col.next_r2t_offset).min(p.max_burst_length);
            let r2t = R2t {
                lun: col.lun_raw,
                itt,
                ttt,
                r2t_sn: col.r2t_sn,
                buffer_offset: col.next_r2t_offset,
                desired_len: len,
            };
            col.outstanding.push(Solicited { ttt, offset: col.next_r2t_offset, len, received: 0, next_data_sn: Sn(0) });
            col.r2t_sn += 1;
            col.next_r2t_offset += len;
            if !self.send(r2t).await {
                return false;
            }
        }
    }

    pub(super) async fn on_data_out(&mut self, bhs: [u8; BHS_LEN], d: DataOut) -> Option<End> {
        let Some(col) = self.collecting.get_mut(&d.itt) else {
            // Data for a command that was aborted or already failed: discard.
            return None;
        };
        let len = d.data.len() as u32;
        let in_order = d.buffer_offset == col.received;
        let fits = col.received.checked_add(len).is_some_and(|e| e <= col.cmd.expected_len);
        let mut sequence_done = false;
        let ok = if !in_order || !fits {
            false
        } else if d.ttt == RESERVED_TAG {
            // Unsolicited data: DataSN from 0 within the first burst (RFC 7143 §11.7.5).
            let ok = d.data_sn == col.unsolicited_sn && col.received + len <= col.unsolicited_end;
            col.unsolicited_sn = col.unsolicited_sn.next();
            ok
        } else if let Some(pos) = col.outstanding.iter().position(|s| s.ttt == d.ttt) {
            let s = &mut col.outstanding[pos];
            let ok =
                d.data_sn == s.next_data_sn && d.buffer_offset == s.offset + s.received && s.received + len <= s.len;
            s.received += len;
            s.next_data_sn = s.next_data_sn.next();
            if ok && s.received == s.len {
                col.outstanding.swap_remove(pos);
                sequence_done = true;
            }
            ok
        } else {
            false
        };
        if !ok {
            // A Data-Out out of sequence cannot be recovered at ERL 0 (RFC 7143 §7.1.4):
            // the PDU is rejected and the command dropped, so the initiator's own
            // timeout and task management take over; later Data-Out for it is
            // discarded, and the connection and its other commands go on.
            tracing::debug!("Data-Out out of sequence for ITT {:#x}", d.itt);
            let counted = col.counted;
            self.collecting.remove(&d.itt);
            self.parked.retain(|i| *i != d.itt);
            if counted {
                self.shared.window.finish();
            }
            return (!self.reject(RejectReason::ProtocolError, bhs).await).then_some(End::Closed);
        }
        if len > 0 {
            col.chunks.push(d.data);
        }
        col.received += len;
        if col.received == col.cmd.expected_len {
            let col = self.collecting.remove(&d.itt)?;
            let mut cmd = col.cmd;
            cmd.data_out = assemble(col.chunks, cmd.expected_len);
            self.start(d.itt, col.lun_raw, cmd, col.counted, col.permit, col.r2t_sn);
            return None;
        }
        if sequence_done && !self.solicit(d.itt).await {
            return Some(End::Closed);
        }
        None
    }

    /// Answers a command without running it.
    pub(super) async fn answer_now(
        &mut self,
        itt: u32,
        lun_raw: u64,
        counted: bool,
        resp: ScsiResponse,
    ) -> Option<End> {
        if counted {
            self.shared.window.finish();
        }
        for pdu in response_pdus(&self.shared.params, lun_raw, itt, 0, DataDirection::None, resp, 0) {
            if !self.send(pdu).await {
                return Some(End::Closed);
            }
        }
        None
    }

    /// Hands a command with all its data to a task that runs it on the backend.
    fn start(
        &mut self,
        itt: u32,
        lun_raw: u64,
        cmd: ScsiCommand,
        counted: bool,
        permit: Option<OwnedSemaphorePermit>,
        r2ts: u32,
    ) {
        self.shared.running().insert(itt, Running { lun: cmd.lun, aborted: false, counted });
        // Accepted now: the nexus losses already begun take effect at the logical unit before it does.
        let mark = self.shared.losses.mark();
        let sh = self.shared.clone();
        tokio::spawn(run_command(sh, itt, lun_raw, cmd, permit, r2ts, mark));
    }
}

/// Joins Data-Out segments that arrived in offset order into one buffer.
fn assemble(mut chunks: Vec<Bytes>, len: u32) -> Bytes {
    if chunks.len() == 1 {
        return chunks.pop().unwrap_or_default();
    }
    let mut b = BytesMut::with_capacity(len as usize);
    for c in chunks {
        b.extend_from_slice(&c);
    }
    b.freeze()
}

async fn run_command<B: ScsiBackend>(
    sh: Arc<Shared<B>>,
    itt: u32,
    lun_raw: u64,
    cmd: ScsiCommand,
    permit: Option<OwnedSemaphorePermit>,
    r2ts: u32,
    mark: LossMark,
) {
    let expected = cmd.expected_len;
    let direction = cmd.direction;
    let permit = match permit {
        Some(p) => Some(p),
        None if direction == DataDirection::In && expected > 0 => {
            let need = expected.clamp(1, sh.budget_total);
            sh.budget.clone().acquire_many_owned(need).await.ok()
        }
        None => None,
    };
    sh.losses.settled(mark).await;
    // Aborted (a task management function, or the session ended) before it reached the backend: it never does.
    let gone = sh.closing.load(Ordering::SeqCst) || sh.running().get(&itt).is_none_or(|r| r.aborted);
    let resp = if gone { None } else { Some(sh.backend.execute(cmd).await) };
    let entry = sh.running().remove(&itt);
    let (aborted, counted) = entry.map_or((true, false), |r| (r.aborted, r.counted));
    if counted {
        sh.window.finish();
    }
    if let Some(resp) = resp.filter(|_| !aborted && !sh.closing.load(Ordering::SeqCst)) {
        for pdu in response_pdus(&sh.params, lun_raw, itt, expected, direction, resp, r2ts) {
            if sh.tx.send(Out::Pdu(pdu)).await.is_err() {
                break;
            }
        }
    }
    drop(permit);
    sh.changed.notify_one();
}

fn residual_field(r: Residual) -> ResidualField {
    match r {
        Residual::None => ResidualField::default(),
        Residual::Underflow(count) => ResidualField { underflow: true, overflow: false, count },
        Residual::Overflow(count) => ResidualField { underflow: false, overflow: true, count },
    }
}

/// Builds the Data-In PDUs and status for a finished command.
///
/// Data-In PDUs are at most the initiator's MaxRecvDataSegmentLength; the F bit closes
/// each sequence of MaxBurstLength bytes (RFC 7143 §11.7.1). Status rides on the last
/// Data-In only for GOOD, CONDITION MET and INTERMEDIATE-CONDITION MET without sense
/// (§11.7.4); otherwise a SCSI Response follows.
pub(crate) fn response_pdus(
    p: &SessionParams,
    lun_raw: u64,
    itt: u32,
    expected: u32,
    direction: DataDirection,
    resp: ScsiResponse,
    r2ts: u32,
) -> Vec<TargetPdu> {
    let produced = resp.data_in.len().min(u32::MAX as usize) as u32;
    let (data, residual) = if direction == DataDirection::In {
        let residual = match resp.residual {
            Residual::None if produced < expected => Residual::Underflow(expected - produced),
            Residual::None if produced > expected => Residual::Overflow(produced - expected),
            r => r,
        };
        let n = produced.min(expected) as usize;
        (resp.data_in.slice(..n), residual)
    } else if produced > 0 && resp.residual == Residual::None {
        (Bytes::new(), Residual::Overflow(produced))
    } else {
        (Bytes::new(), resp.residual)
    };
    let residual = residual_field(residual);
    let collapsible =
        matches!(resp.status, status::GOOD | status::CONDITION_MET | 0x10 | status::INTERMEDIATE_CONDITION_MET)
            && resp.sense.as_deref().unwrap_or(&[]).is_empty();
    let mut out = Vec::new();
    let seg = p.initiator_mrdsl.max(512) as usize;
    let burst = p.max_burst_length.max(512) as usize;
    let total = data.len();
    let mut offset = 0usize;
    let mut data_sn = 0u32;
    while offset < total {
        let in_burst = burst - offset % burst;
        let n = seg.min(total - offset).min(in_burst);
        let last = offset + n == total;
        let final_ = last || n == in_burst;
        out.push(
            DataIn {
                lun: lun_raw,
                itt,
                final_,
                status: (last && collapsible).then_some(resp.status),
                residual: if last { residual } else { ResidualField::default() },
                data_sn,
                buffer_offset: offset as u32,
                data: data.slice(offset..offset + n),
            }
            .into(),
        );
        data_sn += 1;
        offset += n;
    }
    if total == 0 || !collapsible {
        let exp_data_sn = if direction == DataDirection::In { data_sn } else { r2ts };
        out.push(
            ScsiResponsePdu { itt, response: 0, status: resp.status, residual, exp_data_sn, sense: resp.sense }.into(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{be32, opcode};

    fn params(mrdsl: u32, burst: u32) -> SessionParams {
        SessionParams { initiator_mrdsl: mrdsl, max_burst_length: burst, ..SessionParams::default() }
    }

    #[test]
    fn read_is_split_by_segment_and_burst_with_status_collapsed() {
        let data = Bytes::from(vec![1u8; 5000]);
        let pdus = response_pdus(&params(1024, 2048), 0, 7, 5000, DataDirection::In, ScsiResponse::good(data), 0);
        assert_eq!(pdus.len(), 5);
        let lens: Vec<usize> = pdus.iter().map(|p| p.data.len()).collect();
        assert_eq!(lens, vec![1024, 1024, 1024, 1024, 904]);
        let finals: Vec<bool> = pdus.iter().map(|p| p.bhs[1] & 0x80 != 0).collect();
        assert_eq!(finals, vec![false, true, false, true, true]);
        let last = &pdus[4];
        assert_eq!(last.bhs[1] & 0x01, 0x01, "S bit on last Data-In");
        assert!(pdus[..4].iter().all(|p| p.bhs[1] & 0x01 == 0));
        let offsets: Vec<u32> = pdus.iter().map(|p| be32(&p.bhs, 40)).collect();
        assert_eq!(offsets, vec![0, 1024, 2048, 3072, 4096]);
        let sns: Vec<u32> = pdus.iter().map(|p| be32(&p.bhs, 36)).collect();
        assert_eq!(sns, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn short_read_reports_underflow_on_the_last_data_in() {
        let pdus = response_pdus(
            &params(8192, 65536),
            0,
            1,
            4096,
            DataDirection::In,
            ScsiResponse::good(Bytes::from(vec![0u8; 512])),
            0,
        );
        assert_eq!(pdus.len(), 1);
        assert_eq!(pdus[0].bhs[1], 0x80 | 0x01 | 0x02);
        assert_eq!(be32(&pdus[0].bhs, 44), 3584);
    }

    #[test]
    fn long_read_is_truncated_with_overflow() {
        let pdus = response_pdus(
            &params(8192, 65536),
            0,
            1,
            512,
            DataDirection::In,
            ScsiResponse::good(Bytes::from(vec![0u8; 1024])),
            0,
        );
        assert_eq!(pdus[0].data.len(), 512);
        assert_eq!(pdus[0].bhs[1] & 0x04, 0x04);
        assert_eq!(be32(&pdus[0].bhs, 44), 512);
    }

    #[test]
    fn check_condition_goes_in_a_scsi_response_with_sense() {
        let pdus = response_pdus(
            &params(8192, 65536),
            0,
            1,
            512,
            DataDirection::In,
            ScsiResponse::check_condition(5, 0x21, 0),
            0,
        );
        assert_eq!(pdus.len(), 1);
        assert_eq!(pdus[0].opcode(), opcode::SCSI_RESPONSE);
        assert_eq!(pdus[0].bhs[3], status::CHECK_CONDITION);
        // SenseLength prefix then fixed-format sense.
        assert_eq!(&pdus[0].data[..3], &[0, 18, 0x70]);
    }

    #[test]
    fn write_response_counts_r2ts_in_exp_data_sn() {
        let pdus =
            response_pdus(&params(8192, 65536), 0, 1, 0, DataDirection::Out, ScsiResponse::good(Bytes::new()), 3);
        assert_eq!(pdus.len(), 1);
        assert_eq!(be32(&pdus[0].bhs, 36), 3);
    }
}
