//! Commands straight into the pass-through client (`passthrough::PassThroughLuns`), as the iSCSI target hands them
//! down, without a network in between: for tests that drive several initiators' I_T nexuses at once.

use bytes::Bytes;
use iscsi::{DataDirection, ScsiBackend, ScsiCommand, ScsiResponse, TaskAttr};
use passthrough::PassThroughLuns;

/// Run `cdb` on LUN 0 for `initiator`: data-in up to 1 KiB, or `out` as its data-out.
pub async fn run(luns: &PassThroughLuns, initiator: u64, cdb: &[u8], dir: DataDirection, out: &[u8]) -> ScsiResponse {
    let len = if dir == DataDirection::In { 1024 } else { out.len() as u32 };
    let cmd = ScsiCommand {
        initiator,
        lun: 0,
        task_tag: 1,
        cdb: cdb.to_vec(),
        attr: TaskAttr::Simple,
        direction: dir,
        expected_len: len,
        data_out: Bytes::copy_from_slice(out),
    };
    luns.execute(cmd).await
}

/// PERSISTENT RESERVE OUT with the basic 24-byte parameter list (SPC-4 §6.16.3): service action, TYPE, reservation
/// key and service action reservation key.
pub fn pr_out(sa: u8, rtype: u8, key: u64, sa_key: u64) -> ([u8; 10], Vec<u8>) {
    let mut list = vec![0u8; 24];
    list[0..8].copy_from_slice(&key.to_be_bytes());
    list[8..16].copy_from_slice(&sa_key.to_be_bytes());
    ([0x5F, sa, rtype, 0, 0, 0, 0, 0, 24, 0], list)
}
