//! The SCSI pass-through client: iSCSI commands as pass-through SRBs, each command one SRB straight to the miniport
//! (no class driver), which walks it in several DMA operations when it is larger than the HBA's maximum transfer.
//! Beside the commands it keeps what a pass-through requester owes the port: task management (aborts by task tag,
//! bus resets), releasing frozen queues, residuals against the initiator's expected length, SRB status turned back
//! into SCSI status and sense, the copy manager (EXTENDED COPY) and PREEMPT AND ABORT.

use bytes::Bytes;
use hal::{Placement, SystemMemory, PAGE_SIZE};
use iscsi::{DataDirection, ScsiBackend, ScsiCommand, ScsiResponse, TaskAttr, TmfResponse};
use parking_lot::Mutex;
use port::{AdapterHandle, LuAddress, PassThrough, SrbId, SrbStatus};
use scsi_proto::opcode::{COMPARE_AND_WRITE, INQUIRY};
use scsi_proto::status::code as status;
use scsi_proto::{cdb, inquiry, AscAscq, SenseKey};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Semaphore;

mod copy;
mod dataout;
mod preempt;
pub mod sysmem;
pub mod xcopy;

/// The LUNs of one adapter's bus as an iSCSI target: LUN `target * 8 + lun`.
pub struct PassThroughLuns {
    adapter: AdapterHandle,
    memory: Arc<SystemMemory>,
    luns: Vec<u64>,
    /// Logical block size per LUN, to size READ/WRITE data from their CDBs.
    block_sizes: HashMap<u64, u32>,
    /// Commands in flight by (initiator, task tag), for task management.
    tasks: Mutex<HashMap<(u64, u32), (SrbId, LuAddress)>>,
    budget: Arc<Semaphore>,
    /// Pages the budget holds in all.
    budget_pages: u32,
    timeout_secs: u32,
    /// The copy manager's state (EXTENDED COPY, RECEIVE COPY RESULTS).
    copies: copy::CopyManager,
    /// The initiator port behind each I_T nexus, for REGISTER AND MOVE and READ FULL STATUS TransportIDs.
    ports: iscsi::ports::Ports,
}

impl PassThroughLuns {
    pub fn new(adapter: AdapterHandle, memory: Arc<SystemMemory>, disks: &[(u8, u8, u32)]) -> Self {
        let luns = disks.iter().map(|(t, l, _)| *t as u64 * 8 + *l as u64).collect();
        let block_sizes = disks.iter().map(|(t, l, b)| (*t as u64 * 8 + *l as u64, *b)).collect();
        let pages = (memory.size() / PAGE_SIZE / 2) as usize;
        PassThroughLuns {
            adapter,
            memory,
            luns,
            block_sizes,
            tasks: Mutex::new(HashMap::new()),
            budget: Arc::new(Semaphore::new(pages)),
            budget_pages: u32::try_from(pages).unwrap_or(u32::MAX),
            timeout_secs: 30,
            copies: copy::CopyManager::default(),
            ports: iscsi::ports::Ports::new(on_the_bus),
        }
    }

    fn address(lun: u64) -> LuAddress {
        LuAddress { path_id: 0, target_id: (lun / 8) as u8, lun: (lun % 8) as u8 }
    }

    /// The port froze the LU queue after an error: the pass-through caller releases it, as a class driver would.
    async fn release_queue(&self, address: LuAddress) {
        self.adapter.release_queue(address).await;
    }
}

/// The top bit a card sets in a requester's identity when it presents it on the bus, keeping it apart from every
/// card's own identity (`docs/hba.md`, `SET IDENTITY`; the ESP card's identity latch the same): the I_T nexus a disk
/// sees for an SRB with `requester_nexus` `id` is `id | REQUESTER`.
pub const REQUESTER: u64 = 1 << 63;

/// The identity a disk sees for requester identity `id`.
pub fn on_the_bus(id: u64) -> u64 {
    id | REQUESTER
}

/// Bytes and direction of the data a READ/WRITE/WRITE AND VERIFY CDB asks for, from its transfer length.
fn cdb_data(cdb: &[u8], block_size: u32) -> Option<(u64, DataDirection)> {
    let (blocks, dir) = cdb::transfer(cdb)?;
    Some((blocks * u64::from(block_size), dir))
}

/// COMPARE AND WRITE (SBC-3 §5.3) is all or nothing: its data-out buffer is exactly the 2 × NUMBER OF LOGICAL BLOCKS
/// blocks of its CDB. A parallel SCSI target never learns the initiator's buffer length, so the iSCSI side, which
/// has the Expected Data Transfer Length, refuses any other length with INVALID FIELD IN CDB (the one-byte field
/// holds at most 255 blocks: 256 blocks of data under a CDB that says 0 must not pass as "nothing to compare").
fn compare_and_write_mismatch(cdb: &[u8], block_size: u32, expected_len: u32, direction: DataDirection) -> bool {
    if cdb.first() != Some(&COMPARE_AND_WRITE) || cdb.len() < 16 {
        return false;
    }
    let wanted = 2 * u64::from(cdb[13]) * u64::from(block_size);
    let sent = if direction == DataDirection::Out { u64::from(expected_len) } else { 0 };
    wanted != sent
}

fn check(key: SenseKey, code: AscAscq) -> ScsiResponse {
    ScsiResponse::check_condition(key as u8, code.0, code.1)
}

impl ScsiBackend for PassThroughLuns {
    fn luns(&self) -> Vec<u64> {
        self.luns.clone()
    }

    async fn execute(&self, cmd: ScsiCommand) -> ScsiResponse {
        if self.luns.contains(&cmd.lun) {
            if let Some(response) = self.copy_manager(&cmd).await {
                return response;
            }
            if preempt::is_preempt_and_abort(&cmd.cdb) {
                return self.preempt_and_abort(cmd).await;
            }
            if iscsi::ports::is_register_and_move(&cmd.cdb) || iscsi::ports::is_read_full_status(&cmd.cdb) {
                return self.ports.run(cmd, |cmd| self.pass_through(cmd)).await;
            }
            let bs = self.block_sizes.get(&cmd.lun).copied().unwrap_or(512);
            let sent = if cmd.direction == DataDirection::Out { u64::from(cmd.expected_len) } else { 0 };
            // Without any data-out the LU's own checks (write protection, the CDB) come first and a short
            // transfer ends it; a buffer of another length is refused before it can be taken in part.
            if dataout::required_len(&cmd.cdb, bs).is_some_and(|want| sent != 0 && want != sent) {
                return check(SenseKey::IllegalRequest, AscAscq::INVALID_FIELD_IN_CDB);
            }
        }
        self.pass_through(cmd).await
    }

    fn initiator_port(&self, initiator: u64, name: &str, isid: [u8; 6]) {
        self.ports.login(initiator, name, isid);
    }

    async fn abort_task(&self, initiator: u64, _lun: u64, tag: u32) -> TmfResponse {
        // Task tags are unique per I_T nexus, so the tag alone names the task (its LU is recorded with it).
        let found = self.tasks.lock().get(&(initiator, tag)).copied();
        let Some((id, address)) = found else { return TmfResponse::NoTask };
        // Whether the abort found the task running or it had just finished, the task is gone (RFC 7143 §11.5.1).
        self.adapter.abort(id, address).await;
        TmfResponse::Complete
    }

    async fn abort_task_set(&self, initiator: u64, lun: u64) -> TmfResponse {
        let victims: Vec<(SrbId, LuAddress)> = self
            .tasks
            .lock()
            .iter()
            .filter(|((i, _), (_, a))| *i == initiator && Self::address(lun) == *a)
            .map(|(_, v)| *v)
            .collect();
        for (id, address) in victims {
            self.adapter.abort(id, address).await;
        }
        TmfResponse::Complete
    }

    async fn nexus_loss(&self, initiator: u64) {
        // Held copy results belong to the I_T nexus (SPC-4, third-party copy).
        self.copies.forget(initiator);
        // The port driver's NEXUS LOSS request: that requester's identity leaves the bus, and the targets release
        // what its I_T nexus held (SPC-2 reservations). A miniport without it refuses the request, and nothing else
        // is lost.
        let Some(&first) = self.luns.first() else { return };
        let size = port::requester::SRB_IO_CONTROL_SIZE + 8;
        let Ok(buf) = self.memory.alloc(size, Placement::Any) else { return };
        if let Ok(pending) = self.adapter.nexus_loss(&buf, Self::address(first), initiator) {
            pending.await;
        }
    }

    async fn lun_reset(&self, lun: u64) -> TmfResponse {
        if !self.luns.contains(&lun) {
            return TmfResponse::NoLun;
        }
        // SCSI Port sends no RESET_DEVICE to miniports: a LUN reset becomes a reset of the bus the LU is on.
        self.target_reset().await
    }

    async fn target_reset(&self) -> TmfResponse {
        self.adapter.reset_bus(0).await;
        TmfResponse::Complete
    }
}

impl PassThroughLuns {
    /// One command as one pass-through SRB to the port driver.
    async fn pass_through(&self, cmd: ScsiCommand) -> ScsiResponse {
        if !self.luns.contains(&cmd.lun) {
            // SPC-4 §4.6.4: an absent LUN answers INQUIRY with "not capable", everything else 05/25/00.
            if cmd.cdb.first() == Some(&INQUIRY) {
                return ScsiResponse::good(Bytes::from(inquiry::absent_lun(cmd.expected_len as usize)));
            }
            return check(SenseKey::IllegalRequest, AscAscq::LU_NOT_SUPPORTED);
        }
        let address = Self::address(cmd.lun);
        if let Some(bs) = self.block_sizes.get(&cmd.lun) {
            if compare_and_write_mismatch(&cmd.cdb, *bs, cmd.expected_len, cmd.direction) {
                return check(SenseKey::IllegalRequest, AscAscq::INVALID_FIELD_IN_CDB);
            }
        }
        // What the command itself asks to move (RFC 7143 §11.4.5.1: residuals are against the expected length).
        let wanted = self.block_sizes.get(&cmd.lun).and_then(|bs| cdb_data(&cmd.cdb, *bs));
        let mismatched = wanted.is_some_and(|(_, dir)| cmd.direction != DataDirection::None && dir != cmd.direction);
        let len = if mismatched { 0 } else { cmd.expected_len as usize };
        // A command larger than the whole budget waits for all of it rather than for ever.
        let pages =
            u32::try_from((len as u64).div_ceil(PAGE_SIZE)).unwrap_or(u32::MAX).clamp(1, self.budget_pages.max(1));
        let permit = match self.budget.clone().acquire_many_owned(pages).await {
            Ok(p) => p,
            Err(_) => {
                return ScsiResponse {
                    status: status::BUSY,
                    sense: None,
                    data_in: Bytes::new(),
                    residual: iscsi::Residual::None,
                }
            }
        };
        let direction = cmd.direction;
        let buffer = if len > 0 && direction != DataDirection::None {
            match self.memory.alloc(len, Placement::Any) {
                Ok(b) => Some(b),
                Err(_) => {
                    return ScsiResponse {
                        status: status::TASK_SET_FULL,
                        sense: None,
                        data_in: Bytes::new(),
                        residual: iscsi::Residual::None,
                    }
                }
            }
        } else {
            None
        };
        if let (Some(b), DataDirection::Out) = (&buffer, direction) {
            let n = cmd.data_out.len().min(len);
            if b.write(0, &cmd.data_out[..n]).is_err() {
                return check(SenseKey::HardwareError, AscAscq::INTERNAL_TARGET_FAILURE);
            }
        }
        let req = PassThrough {
            address,
            cdb: cmd.cdb.clone(),
            direction: if buffer.is_some() { direction } else { DataDirection::None },
            buffer: buffer.clone(),
            offset: 0,
            length: if buffer.is_some() { len as u32 } else { 0 },
            timeout_secs: self.timeout_secs,
            tagged: cmd.attr != TaskAttr::Untagged,
        };
        let mut srb = match self.adapter.pass_through_srb(&req) {
            Ok(s) => s,
            Err(_) => return check(SenseKey::IllegalRequest, AscAscq::INVALID_FIELD_IN_CDB),
        };
        // Each iSCSI I_T nexus reaches the disk as its own initiator identity (reservations, unit attentions).
        srb.requester_nexus = cmd.initiator;
        // The task attribute travels as the SRB's QueueAction, which the miniport sends as the queue tag message.
        srb.queue_action = match cmd.attr {
            TaskAttr::Ordered => port::queue_action::ORDERED_QUEUE_TAG,
            TaskAttr::HeadOfQueue => port::queue_action::HEAD_OF_QUEUE_TAG,
            _ => port::queue_action::SIMPLE_TAG,
        };
        let pending = self.adapter.submit(srb);
        self.tasks.lock().insert((cmd.initiator, cmd.task_tag), (pending.id(), address));
        let srb = pending.await;
        self.tasks.lock().remove(&(cmd.initiator, cmd.task_tag));
        if srb.srb_status.queue_frozen() {
            self.release_queue(address).await;
        }
        let moved = (srb.data_transfer_length as usize).min(len);
        let data_in = match (buffer, direction) {
            (Some(b), DataDirection::In) => match sysmem::sysmem_bytes(b, moved, permit) {
                Ok(bytes) => bytes,
                Err(_) => return check(SenseKey::HardwareError, AscAscq::INTERNAL_TARGET_FAILURE),
            },
            _ => Bytes::new(),
        };
        let residual = match wanted {
            // Data flagged the other way than the command moves it: nothing moved.
            _ if mismatched => iscsi::Residual::Underflow(cmd.expected_len),
            Some((want, _)) if want > cmd.expected_len as u64 => {
                iscsi::Residual::Overflow(u32::try_from(want - cmd.expected_len as u64).unwrap_or(u32::MAX))
            }
            _ if moved < len => iscsi::Residual::Underflow((len - moved) as u32),
            _ => iscsi::Residual::None,
        };
        match srb.srb_status.status() {
            SrbStatus::SUCCESS | SrbStatus::DATA_OVERRUN => {
                ScsiResponse { status: srb.scsi_status, sense: None, data_in, residual }
            }
            SrbStatus::ERROR if srb.scsi_status != 0 => {
                let sense = srb.srb_status.autosense_valid().then(|| srb.sense().to_vec());
                ScsiResponse { status: srb.scsi_status, sense, data_in, residual }
            }
            SrbStatus::SELECTION_TIMEOUT
            | SrbStatus::NO_DEVICE
            | SrbStatus::INVALID_LUN
            | SrbStatus::INVALID_TARGET_ID => check(SenseKey::IllegalRequest, AscAscq::LU_NOT_SUPPORTED),
            SrbStatus::BUSY => ScsiResponse { status: status::BUSY, sense: None, data_in: Bytes::new(), residual },
            // Aborted, reset or timed out: the command did not complete (SAM-5: ABORTED COMMAND sense).
            SrbStatus::ABORTED | SrbStatus::BUS_RESET | SrbStatus::TIMEOUT | SrbStatus::REQUEST_FLUSHED => {
                check(SenseKey::AbortedCommand, AscAscq::NO_ADDITIONAL)
            }
            // Anything else is the port's or adapter's failure (including a verifier refusal): internal target failure.
            _ => check(SenseKey::HardwareError, AscAscq::INTERNAL_TARGET_FAILURE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scsi_proto::opcode::{READ_10, WRITE_6};

    #[test]
    fn read_and_write_cdbs_give_their_data_length_and_direction() {
        assert_eq!(cdb_data(&cdb::read_write(false, 0, 2, false), 512), Some((1024, DataDirection::In)));
        assert_eq!(cdb_data(&[WRITE_6, 0, 0, 0, 0, 0], 4096), Some((256 * 4096, DataDirection::Out)));
        assert_eq!(cdb_data(&cdb::read_write16(true, 0, 3, false), 512), Some((1536, DataDirection::Out)));
        assert_eq!(cdb_data(&cdb::inquiry(36), 512), None);
        assert_eq!(cdb_data(&[READ_10, 0], 512), None, "a short CDB is not decoded");
    }

    #[test]
    fn compare_and_write_data_must_be_twice_its_blocks() {
        let mut caw = [0u8; 16];
        caw[0] = COMPARE_AND_WRITE;
        caw[13] = 1;
        assert!(!compare_and_write_mismatch(&caw, 512, 1024, DataDirection::Out));
        assert!(compare_and_write_mismatch(&caw, 512, 512, DataDirection::Out));
        assert!(compare_and_write_mismatch(&caw, 512, 1024, DataDirection::None));
        // 256 blocks do not fit the one-byte field: the CDB says 0, the data says 256.
        caw[13] = 0;
        assert!(compare_and_write_mismatch(&caw, 512, 2 * 256 * 512, DataDirection::Out));
        assert!(!compare_and_write_mismatch(&caw, 512, 0, DataDirection::None));
        assert!(!compare_and_write_mismatch(&cdb::read_write(true, 0, 1, false), 512, 7, DataDirection::Out));
    }
}
