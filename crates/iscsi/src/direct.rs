//! [`DirectBackend`]: the target straight over a `scsi::Target`, without the port driver.
//! Used by the example server and the interop tests.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use scsi::{Begin, Nexus, Outcome};

use crate::backend::{DataDirection, Residual, ScsiBackend, ScsiCommand, ScsiResponse, TmfResponse};
use crate::ports::Ports;

/// Runs each command to completion on a `scsi::Target`.
///
/// The logical units are synchronous, so commands run on tokio's blocking pool by
/// default: disk I/O and large copies then never stall the connections, and commands
/// of one connection run on several threads. [`DirectBackend::in_place`] runs them on
/// the connection's own task instead, which saves a thread hand-off; measured here it
/// helps neither 4 KiB nor 1 MiB commands, so it is not the default. A command cannot be stopped once begun: abort functions
/// report completion and the transport drops the answer, which is what SAM-5 §7.2
/// requires the initiator to observe.
#[derive(Clone)]
pub struct DirectBackend {
    target: Arc<scsi::Target>,
    in_place: bool,
    /// Initiator ports of the sessions, for TransportIDs (`crate::ports`).
    ports: Arc<Ports>,
}

impl DirectBackend {
    /// Commands run on the blocking pool: right for LUNs over files.
    pub fn new(target: Arc<scsi::Target>) -> DirectBackend {
        DirectBackend { target, in_place: false, ports: Arc::default() }
    }

    /// Commands run on the connection's task: only for LUNs whose backend never blocks
    /// (RAM).
    pub fn in_place(target: Arc<scsi::Target>) -> DirectBackend {
        DirectBackend { target, in_place: true, ports: Arc::default() }
    }

    /// A target with one RAM disk of `bytes` bytes (512-byte blocks) at LUN 0.
    pub fn ram_disk(bytes: u64) -> Result<DirectBackend, scsi::ConfigError> {
        let backend: Arc<dyn scsi::Backend> = Arc::new(scsi::RamBackend::new(bytes));
        let disk = scsi::Disk::new(scsi::DiskConfig::default(), backend)?;
        let target = scsi::Target::new();
        target.add_lun(0, Arc::new(disk));
        Ok(DirectBackend::new(Arc::new(target)))
    }

    pub fn target(&self) -> &Arc<scsi::Target> {
        &self.target
    }
}

fn response(outcome: Outcome, data_in: Bytes, residual: Residual) -> ScsiResponse {
    ScsiResponse { status: outcome.status.0, sense: outcome.sense.map(|s| s.to_bytes()), data_in, residual }
}

/// Residual of a data phase the device wanted to be `device` bytes long when the
/// initiator expected `expected` (RFC 7143 §11.4.5).
fn residual(expected: u32, device: u64) -> Residual {
    let expected = u64::from(expected);
    if device > expected {
        Residual::Overflow(u32::try_from(device - expected).unwrap_or(u32::MAX))
    } else if device < expected {
        Residual::Underflow(u32::try_from(expected - device).unwrap_or(u32::MAX))
    } else {
        Residual::None
    }
}

/// Runs one command synchronously.
pub fn run_command(target: &scsi::Target, cmd: &ScsiCommand) -> ScsiResponse {
    let nexus = Nexus::new(cmd.initiator);
    // The initiator's Expected Data Transfer Length goes with a write, so that a command whose data must arrive
    // whole (COMPARE AND WRITE) can refuse a length other than its CDB's.
    let begun = if cmd.direction == DataDirection::Out {
        target.begin_expecting(nexus, cmd.lun, &cmd.cdb, u64::from(cmd.expected_len))
    } else {
        target.begin(nexus, cmd.lun, &cmd.cdb)
    };
    match begun {
        Begin::Complete(o) => {
            let r = if cmd.direction == DataDirection::None { Residual::None } else { residual(cmd.expected_len, 0) };
            response(o, Bytes::new(), r)
        }
        Begin::DataIn { len, mut task } => {
            // Only as much as the initiator expects and only if it expects data in.
            let room = if cmd.direction == DataDirection::In { u64::from(cmd.expected_len) } else { 0 };
            let n = usize::try_from(len.min(room)).unwrap_or(0);
            let mut buf = BytesMut::zeroed(n);
            let (outcome, moved) = match task.read(0, &mut buf) {
                Ok(()) => (task.finish(n as u64), n),
                Err(o) => {
                    let _ = task.finish(0);
                    (o, 0)
                }
            };
            buf.truncate(moved);
            let r = if cmd.direction == DataDirection::In {
                residual(cmd.expected_len, len)
            } else {
                Residual::Overflow(u32::try_from(len).unwrap_or(u32::MAX))
            };
            response(outcome, buf.freeze(), r)
        }
        Begin::DataOut { len, mut task } => {
            let have = if cmd.direction == DataDirection::Out { cmd.data_out.len() as u64 } else { 0 };
            let n = usize::try_from(len.min(have)).unwrap_or(0);
            let outcome = match task.write(0, &cmd.data_out[..n]) {
                Ok(()) => task.finish(n as u64),
                Err(o) => {
                    let _ = task.finish(0);
                    o
                }
            };
            let r = if cmd.direction == DataDirection::Out {
                residual(cmd.expected_len, len)
            } else {
                Residual::Overflow(u32::try_from(len).unwrap_or(u32::MAX))
            };
            response(outcome, Bytes::new(), r)
        }
    }
}

impl DirectBackend {
    async fn run(&self, cmd: ScsiCommand) -> ScsiResponse {
        if self.in_place {
            return run_command(&self.target, &cmd);
        }
        let target = self.target.clone();
        match tokio::task::spawn_blocking(move || run_command(&target, &cmd)).await {
            Ok(r) => r,
            // The command panicked inside the logical unit: report a target failure as
            // HARDWARE ERROR / INTERNAL TARGET FAILURE (SPC-4 table 28, 44h/00h).
            Err(_) => ScsiResponse::check_condition(0x04, 0x44, 0x00),
        }
    }
}

impl ScsiBackend for DirectBackend {
    fn luns(&self) -> Vec<u64> {
        self.target.luns()
    }

    async fn execute(&self, cmd: ScsiCommand) -> ScsiResponse {
        self.ports.run(cmd, |cmd| self.run(cmd)).await
    }

    fn initiator_port(&self, initiator: u64, name: &str, isid: [u8; 6]) {
        self.ports.login(initiator, name, isid);
    }

    async fn abort_task(&self, _initiator: u64, _lun: u64, _tag: u32) -> TmfResponse {
        TmfResponse::Complete
    }

    async fn abort_task_set(&self, _initiator: u64, _lun: u64) -> TmfResponse {
        TmfResponse::Complete
    }

    async fn lun_reset(&self, lun: u64) -> TmfResponse {
        match self.target.disk(lun) {
            Some(d) => {
                scsi::LogicalUnit::reset(d.as_ref());
                TmfResponse::Complete
            }
            None => TmfResponse::NoLun,
        }
    }

    async fn target_reset(&self) -> TmfResponse {
        self.target.reset();
        TmfResponse::Complete
    }

    async fn nexus_loss(&self, initiator: u64) {
        self.target.nexus_loss(Nexus::new(initiator));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TaskAttr;
    use scsi_proto::transport_id::{self, nexus_id, IscsiName, TransportId};

    const ISID: [u8; 6] = [0x40, 0, 0, 0, 0, 7];

    fn cmd(initiator: u64, cdb: &[u8], direction: DataDirection, data: &[u8]) -> ScsiCommand {
        ScsiCommand {
            initiator,
            lun: 0,
            task_tag: 1,
            cdb: cdb.to_vec(),
            attr: TaskAttr::Simple,
            direction,
            expected_len: if direction == DataDirection::In { 4096 } else { data.len() as u32 },
            data_out: Bytes::copy_from_slice(data),
        }
    }

    fn basic(key: u64, sa_key: u64) -> Vec<u8> {
        let mut l = vec![0u8; 24];
        l[0..8].copy_from_slice(&key.to_be_bytes());
        l[8..16].copy_from_slice(&sa_key.to_be_bytes());
        l
    }

    #[tokio::test]
    async fn register_and_move_names_ports_by_iscsi_transport_ids() {
        let t = DirectBackend::ram_disk(1 << 20).unwrap();
        let (a, b) = (nexus_id("iqn.x:a", &ISID), nexus_id("iqn.x:b", &ISID));
        t.initiator_port(a, "iqn.x:a", ISID);
        t.initiator_port(b, "iqn.x:b", ISID);
        for n in [a, b] {
            let _ = t.execute(cmd(n, &[0; 6], DataDirection::None, &[])).await;
        }
        let pr = |sa: u8, rtype: u8| vec![0x5F, sa, rtype, 0, 0, 0, 0, 0, 24, 0];
        assert_eq!(t.execute(cmd(a, &pr(0, 0), DataDirection::Out, &basic(0, 0xA))).await.status, 0);
        assert_eq!(t.execute(cmd(a, &pr(1, 1), DataDirection::Out, &basic(0xA, 0))).await.status, 0);
        let b_port = IscsiName { name: "iqn.x:b".into(), isid: Some(ISID) };
        let tid = b_port.encode();
        let mut list = basic(0xA, 0xB);
        list[17] = 0x02; // UNREG
        list[19] = 1;
        list[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
        list.extend_from_slice(&tid);
        let n = (list.len() as u32).to_be_bytes();
        let cdb = [0x5F, 0x07, 0x01, 0, 0, n[0], n[1], n[2], n[3], 0];
        let r = t.execute(cmd(a, &cdb, DataDirection::Out, &list)).await;
        assert_eq!(r.status, 0, "{:?}", r.sense);
        let write = [0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(t.execute(cmd(b, &write, DataDirection::Out, &[1; 512])).await.status, 0);
        assert_eq!(t.execute(cmd(a, &write, DataDirection::Out, &[1; 512])).await.status, 0x18);
        let full = [0x5E, 0x03, 0, 0, 0, 0, 0, 0x10, 0, 0];
        let r = t.execute(cmd(b, &full, DataDirection::In, &[])).await;
        let d = &r.data_in;
        let len = u32::from_be_bytes([d[28], d[29], d[30], d[31]]) as usize;
        assert_eq!(transport_id::parse(&d[32..32 + len]).unwrap().0, TransportId::Iscsi(b_port));
        assert_eq!(d.len(), 32 + len, "one registration: B's");
    }
}
