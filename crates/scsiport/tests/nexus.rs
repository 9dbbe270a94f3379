//! Requester identities on the pass-through path: each iSCSI I_T nexus reaches the disk as its own initiator, so
//! reservations hold between them, and a nexus loss releases what that nexus held.

use bytes::Bytes;
use iscsi::{DataDirection, ScsiBackend, ScsiCommand, TaskAttr};
use scsiport::config::Config;
use scsiport::frontends::iscsi_lun::PassThroughLuns;
use scsiport::machine::Machine;
use scsiport::size::ByteSize;

fn command(initiator: u64, cdb: &[u8]) -> ScsiCommand {
    ScsiCommand {
        initiator,
        lun: 0,
        task_tag: 1,
        cdb: cdb.to_vec(),
        attr: TaskAttr::Simple,
        direction: DataDirection::None,
        expected_len: 0,
        data_out: Bytes::new(),
    }
}

const RESERVE6: [u8; 6] = [0x16, 0, 0, 0, 0, 0];
const TEST_UNIT_READY: [u8; 6] = [0; 6];
const RESERVATION_CONFLICT: u8 = 0x18;

/// Clear the power-on unit attention a new nexus sees first.
async fn settle(luns: &PassThroughLuns, initiator: u64) {
    for _ in 0..4 {
        if luns.execute(command(initiator, &TEST_UNIT_READY)).await.status == 0 {
            return;
        }
    }
    panic!("initiator {initiator:#x} never became ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_holds_between_requesters_until_the_holder_s_nexus_is_lost() {
    let m = Machine::build(&Config::in_process(ByteSize(8 << 20), ByteSize(64 << 20))).unwrap();
    let adapter = m.adapter("scsi0").unwrap().clone();
    let luns = PassThroughLuns::new(adapter.clone(), m.memory().clone(), &[(0, 0, 512)]);
    let (a, b) = (0x1111, 0x2222);
    settle(&luns, a).await;
    settle(&luns, b).await;
    assert_eq!(luns.execute(command(a, &RESERVE6)).await.status, 0, "A reserves");
    assert_eq!(luns.execute(command(a, &TEST_UNIT_READY)).await.status, 0, "the holder is not in conflict");
    assert_eq!(luns.execute(command(b, &RESERVE6)).await.status, RESERVATION_CONFLICT, "B conflicts");
    luns.nexus_loss(a).await;
    assert_eq!(luns.execute(command(b, &RESERVE6)).await.status, 0, "A's nexus is gone: B reserves");
    assert!(adapter.violations().is_empty(), "{:?}", adapter.violations());
    m.shutdown();
}
