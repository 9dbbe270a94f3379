//! PERSISTENT RESERVE OUT / PREEMPT AND ABORT in the iSCSI glue: the LU changes the
//! registrations and the reservation; the tasks of the I_T nexuses it preempted are then
//! aborted through the port driver, as ABORT TASK SET of each would (SPC-4).
//! `docs/scsi-features.md` describes it.

use super::PassThroughLuns;
use bytes::Bytes;
use iscsi::{DataDirection, ScsiBackend, ScsiCommand, ScsiResponse, TaskAttr};
use scsi_proto::opcode::{service_action, PERSISTENT_RESERVE_IN, PERSISTENT_RESERVE_OUT};
use scsi_proto::status::code as status;
use std::collections::BTreeMap;

/// The identity the glue reads reservation state with, so that it never takes a unit
/// attention meant for an initiator.
const GLUE_NEXUS: u64 = u64::MAX;

/// Whether `cdb` is PERSISTENT RESERVE OUT with service action PREEMPT AND ABORT.
pub(super) fn is_preempt_and_abort(cdb: &[u8]) -> bool {
    cdb.len() >= 10 && cdb[0] == PERSISTENT_RESERVE_OUT && cdb[1] & 0x1F == service_action::PREEMPT_AND_ABORT
}

/// Registrations (I_T nexus → key) from READ FULL STATUS parameter data: each
/// TransportID carries the nexus id in bytes 8..16 (protocol identifier 0Fh).
pub fn registrants(full_status: &[u8]) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    let Some(len) = full_status.get(4..8) else { return out };
    let end = (8 + u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize).min(full_status.len());
    let mut pos = 8;
    while pos + 24 <= end {
        let d = &full_status[pos..end];
        let key = u64::from_be_bytes(d[0..8].try_into().expect("8 bytes"));
        let tid_len = u32::from_be_bytes(d[20..24].try_into().expect("4 bytes")) as usize;
        if let Some(tid) = d.get(24..24 + tid_len) {
            if tid.len() >= 16 && tid[0] & 0x0F == 0x0F {
                out.insert(u64::from_be_bytes(tid[8..16].try_into().expect("8 bytes")), key);
            }
        }
        pos += 24 + tid_len;
    }
    out
}

impl PassThroughLuns {
    /// The LU's registrations, read on the glue's own nexus (a unit attention it gets is
    /// its own, and reading again clears it).
    async fn registrations(&self, lun: u64) -> Option<BTreeMap<u64, u64>> {
        for _ in 0..4 {
            let cmd = ScsiCommand {
                initiator: GLUE_NEXUS,
                lun,
                task_tag: 0,
                cdb: vec![PERSISTENT_RESERVE_IN, service_action::READ_FULL_STATUS, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0],
                attr: TaskAttr::Simple,
                direction: DataDirection::In,
                expected_len: 0xFFFF,
                data_out: Bytes::new(),
            };
            let r = self.pass_through(cmd).await;
            if r.status == status::GOOD {
                return Some(registrants(&r.data_in));
            }
        }
        None
    }

    /// PREEMPT AND ABORT: run it, then abort what the preempted nexuses have outstanding
    /// on the LU.
    pub(super) async fn preempt_and_abort(&self, cmd: ScsiCommand) -> ScsiResponse {
        let (initiator, lun) = (cmd.initiator, cmd.lun);
        let before = self.registrations(lun).await;
        let r = self.pass_through(cmd).await;
        if r.status != status::GOOD {
            return r;
        }
        let (Some(before), Some(after)) = (before, self.registrations(lun).await) else { return r };
        // The registrations name each nexus as the disk sees it (`super::on_the_bus`); tasks are kept by the
        // requester identity.
        let gone: Vec<u64> =
            before.keys().copied().filter(|&i| i != super::on_the_bus(initiator) && !after.contains_key(&i)).collect();
        let requesters: std::collections::BTreeSet<u64> =
            self.tasks.lock().keys().map(|&(i, _)| i).filter(|&i| gone.contains(&super::on_the_bus(i))).collect();
        for victim in requesters {
            self.abort_task_set(victim, lun).await;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrants_come_from_full_status_transport_ids() {
        let mut d = vec![0u8; 8];
        for (nexus, key) in [(0x11u64, 0xAAu64), (0x22, 0xBB)] {
            d.extend_from_slice(&key.to_be_bytes());
            d.extend_from_slice(&[0; 12]);
            d.extend_from_slice(&24u32.to_be_bytes());
            let mut tid = [0u8; 24];
            tid[0] = 0x0F;
            tid[8..16].copy_from_slice(&nexus.to_be_bytes());
            d.extend_from_slice(&tid);
        }
        let n = (d.len() - 8) as u32;
        d[4..8].copy_from_slice(&n.to_be_bytes());
        assert_eq!(registrants(&d), BTreeMap::from([(0x11, 0xAA), (0x22, 0xBB)]));
        assert!(registrants(&d[..20]).len() <= 1, "a truncated list is read as far as it goes");
        let pr_out = |sa: u8| [PERSISTENT_RESERVE_OUT, sa, 0, 0, 0, 0, 0, 0, 24, 0];
        assert!(is_preempt_and_abort(&pr_out(service_action::PREEMPT_AND_ABORT)));
        assert!(!is_preempt_and_abort(&pr_out(service_action::PREEMPT_AND_ABORT - 1)), "PREEMPT");
    }
}
