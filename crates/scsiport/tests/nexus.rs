//! Requester identities on the pass-through path: each iSCSI I_T nexus reaches the disk as its own initiator, so
//! reservations hold between them, and a nexus loss releases what that nexus held.

use bytes::Bytes;
use iscsi::{DataDirection, ScsiBackend, ScsiCommand, TaskAttr};
use passthrough::PassThroughLuns;
use scsi_proto::{AscAscq, Sense, SenseKey};
use scsiport::config::Config;
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

/// (key, ASC) of a CHECK CONDITION, or None for GOOD.
fn sense_of(r: &iscsi::ScsiResponse) -> Option<(SenseKey, u8)> {
    if r.status == 0 {
        return None;
    }
    let s = Sense::parse(r.sense.as_ref().expect("sense with CHECK CONDITION")).expect("sense data");
    Some((s.key, s.asc))
}

/// A unit attention of the POWER ON, RESET, OR BUS DEVICE RESET OCCURRED family (ASC 29h, any qualifier).
const UA_RESET: (SenseKey, u8) = (SenseKey::UnitAttention, AscAscq::POWER_ON_RESET.0);

fn data_in(initiator: u64, cdb: &[u8], len: u32) -> ScsiCommand {
    ScsiCommand { direction: DataDirection::In, expected_len: len, ..command(initiator, cdb) }
}

/// A LUN RESET through the full stack (an iSCSI task management function → a bus reset through the port driver and
/// the miniport): SAM-5 §5.14 and the reset's unit attention, per I_T nexus. Every nexus that existed sees it exactly
/// once, on its first command other than INQUIRY and REPORT LUNS (which neither report nor clear it); REQUEST SENSE
/// reports it as its data and clears it; a nexus first seen after the reset sees only its own power-on condition,
/// once; and the class driver's I/O (the NBD path) goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_s_unit_attention_is_reported_once_to_each_nexus_and_not_to_inquiry_or_report_luns() {
    let m = Machine::build(&Config::in_process(ByteSize(8 << 20), ByteSize(64 << 20))).unwrap();
    let adapter = m.adapter("scsi0").unwrap().clone();
    let class = m.open_first_disk().unwrap();
    let luns = PassThroughLuns::new(adapter.clone(), m.memory().clone(), &[(0, 0, 512)]);
    let (a, b, c) = (0xA, 0xB, 0xC);
    settle(&luns, a).await;
    settle(&luns, b).await;
    assert_eq!(luns.lun_reset(0).await, iscsi::TmfResponse::Complete);

    const INQUIRY: [u8; 6] = [0x12, 0, 0, 0, 36, 0];
    const REPORT_LUNS: [u8; 12] = [0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0];
    const REQUEST_SENSE: [u8; 6] = [0x03, 0, 0, 0, 18, 0];
    // A: INQUIRY and REPORT LUNS go through and leave the condition; the next command reports it, once.
    assert_eq!(sense_of(&luns.execute(data_in(a, &INQUIRY, 36)).await), None);
    assert_eq!(sense_of(&luns.execute(data_in(a, &REPORT_LUNS, 16)).await), None);
    assert_eq!(sense_of(&luns.execute(command(a, &TEST_UNIT_READY)).await), Some(UA_RESET));
    assert_eq!(sense_of(&luns.execute(command(a, &TEST_UNIT_READY)).await), None, "reported once");
    // B: REQUEST SENSE returns it as data (GOOD) and clears it.
    let r = luns.execute(data_in(b, &REQUEST_SENSE, 18)).await;
    assert_eq!(r.status, 0);
    let s = Sense::parse(&r.data_in).expect("sense data");
    assert_eq!((s.key, s.asc), UA_RESET, "REQUEST SENSE reports the unit attention");
    assert_eq!(sense_of(&luns.execute(command(b, &TEST_UNIT_READY)).await), None, "and clears it");
    // C, new since the reset: its own power-on condition, once.
    assert_eq!(sense_of(&luns.execute(command(c, &TEST_UNIT_READY)).await), Some(UA_RESET));
    assert_eq!(sense_of(&luns.execute(command(c, &TEST_UNIT_READY)).await), None);
    // The class driver's nexus saw the reset too; its read retries past the condition and succeeds.
    let buf = m.memory().alloc(4096, hal::Placement::Any).unwrap();
    class.read(0, &buf, 0, 4096).expect("class read after the reset");
    assert!(class.stats().retries >= 1, "the class driver met the unit attention and retried");
    assert!(adapter.violations().is_empty(), "{:?}", adapter.violations());
    m.shutdown();
}
