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
