//! Task management functions (RFC 7143 §11.5, §11.6), wired to the backend's abort and
//! reset paths. Aborted commands get no response of their own (§11.5.1).

use super::{Connection, End};
use crate::backend::{decode_lun, ScsiBackend, TmfResponse};
use crate::pdu::{TaskMgmtRequest, TaskMgmtResponse};

/// TMF function codes (RFC 7143 §11.5.1).
mod function {
    pub const ABORT_TASK: u8 = 1;
    pub const ABORT_TASK_SET: u8 = 2;
    pub const CLEAR_ACA: u8 = 3;
    pub const CLEAR_TASK_SET: u8 = 4;
    pub const LOGICAL_UNIT_RESET: u8 = 5;
    pub const TARGET_WARM_RESET: u8 = 6;
    pub const TARGET_COLD_RESET: u8 = 7;
    pub const TASK_REASSIGN: u8 = 8;
}

/// Response "task allegiance reassignment not supported" (RFC 7143 §11.6.1), the answer
/// to TASK REASSIGN at ERL 0.
const REASSIGN_NOT_SUPPORTED: u8 = 4;

impl<B: ScsiBackend> Connection<'_, B> {
    /// Drops commands of this connection that are still collecting data or held for a
    /// CmdSN gap, for one LUN or all; returns how many there were.
    fn drop_local(&mut self, lun: Option<u64>) -> usize {
        let victims: Vec<u32> = self
            .collecting
            .iter()
            .filter(|(_, c)| lun.is_none() || lun == Some(c.lun()))
            .map(|(itt, _)| *itt)
            .collect();
        for itt in &victims {
            if let Some(c) = self.collecting.remove(itt) {
                if c.counted() {
                    self.shared.window.finish();
                }
            }
        }
        self.parked.retain(|itt| !victims.contains(itt));
        victims.len()
    }

    /// Marks running commands aborted so that their answers are dropped.
    fn mark_running(&self, lun: Option<u64>) {
        for r in self.shared.running().values_mut() {
            if lun.is_none() || lun == Some(r.lun) {
                r.aborted = true;
            }
        }
    }

    pub(super) async fn on_task_mgmt(&mut self, t: TaskMgmtRequest) -> Option<End> {
        let lun = decode_lun(t.lun);
        let lun_known = self.luns.contains(&lun);
        let backend = self.shared.backend.clone();
        let initiator = self.shared.initiator;
        let mut close_after = false;
        let response = match t.function {
            function::ABORT_TASK
            | function::ABORT_TASK_SET
            | function::CLEAR_TASK_SET
            | function::LOGICAL_UNIT_RESET
                if !lun_known =>
            {
                TmfResponse::NoLun.code()
            }
            function::ABORT_TASK => self.abort_task(&t, lun).await.code(),
            function::ABORT_TASK_SET | function::CLEAR_TASK_SET => {
                self.drop_local(Some(lun));
                self.mark_running(Some(lun));
                settle(backend.abort_task_set(initiator, lun).await).code()
            }
            function::LOGICAL_UNIT_RESET => {
                self.drop_local(Some(lun));
                self.mark_running(Some(lun));
                settle(backend.lun_reset(lun).await).code()
            }
            function::TARGET_WARM_RESET | function::TARGET_COLD_RESET => {
                self.drop_local(None);
                self.mark_running(None);
                // A cold reset also ends every connection (RFC 7143 §11.5.1): this one is
                // closed after the response.
                close_after = t.function == function::TARGET_COLD_RESET;
                settle(backend.target_reset().await).code()
            }
            function::TASK_REASSIGN => REASSIGN_NOT_SUPPORTED,
            function::CLEAR_ACA => TmfResponse::NotSupported.code(),
            _ => TmfResponse::NotSupported.code(),
        };
        let sent = self.send(TaskMgmtResponse { itt: t.itt, response }).await;
        if !sent {
            return Some(End::Closed);
        }
        close_after.then_some(End::Logout)
    }

    async fn abort_task(&mut self, t: &TaskMgmtRequest, lun: u64) -> TmfResponse {
        let rtt = t.referenced_tag;
        if let Some(c) = self.collecting.remove(&rtt) {
            // Still collecting data: the backend never saw it.
            if c.counted() {
                self.shared.window.finish();
            }
            self.parked.retain(|i| *i != rtt);
            return TmfResponse::Complete;
        }
        if let Some(pos) = self.held.iter().position(|h| h.request.itt() == rtt) {
            // It keeps its CmdSN slot (the gap must still be filled) but will not run:
            // its place is taken by an empty NOP.
            let h = &mut self.held[pos];
            h.request = crate::pdu::Request::NopOut(crate::pdu::NopOut {
                immediate: false,
                lun: 0,
                itt: crate::pdu::RESERVED_TAG,
                ttt: crate::pdu::RESERVED_TAG,
                cmd_sn: h.cmd_sn,
                exp_stat_sn: crate::pdu::Sn(0),
                data: bytes::Bytes::new(),
            });
            h.data.clear();
            return TmfResponse::Complete;
        }
        let running = {
            let mut r = self.shared.running();
            match r.get_mut(&rtt) {
                Some(task) if task.lun == lun => {
                    task.aborted = true;
                    true
                }
                _ => false,
            }
        };
        if running {
            // Whatever the backend says, the task's answer is suppressed now, so for
            // the initiator it is aborted.
            let _ = self.shared.backend.abort_task(self.shared.initiator, lun, rtt).await;
            return TmfResponse::Complete;
        }
        // A task never received whose CmdSN is in the window and before the TMF's own:
        // it counts as received and aborted (RFC 7143 §11.5.1).
        if t.ref_cmd_sn.lt(t.cmd_sn) && self.shared.window.contains(t.ref_cmd_sn) {
            return TmfResponse::Complete;
        }
        TmfResponse::NoTask
    }
}

/// "No task" from a set-wide function just means there was nothing to abort.
fn settle(r: TmfResponse) -> TmfResponse {
    match r {
        TmfResponse::NoTask => TmfResponse::Complete,
        other => other,
    }
}
