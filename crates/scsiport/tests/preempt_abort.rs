//! PERSISTENT RESERVE OUT / PREEMPT AND ABORT through the iSCSI glue and the whole stack: the registrations change on
//! the disk, and reading them around the command (on the glue's own I_T nexus) leaves every initiator's unit attentions
//! for that initiator.

mod serve_common;

use iscsi::DataDirection;
use passthrough::PassThroughLuns;
use port::AdapterHandle;
use scsi_proto::{AscAscq, Sense, SenseKey};
use scsiport::config::Config;
use scsiport::machine::Machine;
use scsiport::size::ByteSize;
use serve_common::pass_through::{pr_out, run};
use std::sync::Arc;

const A: u64 = 0xA;
const B: u64 = 0xB;

/// A machine with one disk on which A (key AAh) and B (key BBh) are registered and B holds a write-exclusive
/// reservation.
async fn b_holds_the_reservation() -> (Machine, AdapterHandle, Arc<PassThroughLuns>) {
    let m = Machine::build(&Config::in_process(ByteSize(8 << 20), ByteSize(64 << 20))).unwrap();
    let adapter = m.adapter("scsi0").unwrap().clone();
    let luns = Arc::new(PassThroughLuns::new(adapter.clone(), m.memory().clone(), &[(0, 0, 512)]));
    for i in [A, B] {
        let _ = run(&luns, i, &[0; 6], DataDirection::None, &[]).await;
    }
    for (i, key) in [(A, 0xAAu64), (B, 0xBB)] {
        let (cdb, list) = pr_out(0x00, 0, 0, key);
        assert_eq!(run(&luns, i, &cdb, DataDirection::Out, &list).await.status, 0);
    }
    let (cdb, list) = pr_out(0x01, 0x01, 0xBB, 0);
    assert_eq!(run(&luns, B, &cdb, DataDirection::Out, &list).await.status, 0);
    (m, adapter, luns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preempt_and_abort_takes_the_reservation_and_the_victim_sees_its_unit_attention() {
    // B holds a write-exclusive reservation; A preempts it and aborts B's tasks.
    let (m, adapter, luns) = b_holds_the_reservation().await;
    let (cdb, list) = pr_out(0x05, 0x01, 0xAA, 0xBB);
    let r = run(&luns, A, &cdb, DataDirection::Out, &list).await;
    assert_eq!(r.status, 0, "{:?}", r.sense);
    // B's first command reports REGISTRATIONS PREEMPTED: the glue's reads did not take it.
    let r = run(&luns, B, &[0; 6], DataDirection::None, &[]).await;
    let s = Sense::parse(&r.sense.expect("unit attention")).expect("sense data");
    assert_eq!((s.key, s.code()), (SenseKey::UnitAttention, AscAscq::REGISTRATIONS_PREEMPTED));
    // Only A is registered, and A holds the reservation.
    let r = run(&luns, A, &[0x5E, 0x00, 0, 0, 0, 0, 0, 4, 0, 0], DataDirection::In, &[]).await;
    assert_eq!(&r.data_in[4..8], &8u32.to_be_bytes());
    assert_eq!(&r.data_in[8..16], &0xAAu64.to_be_bytes());
    let write = [0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    assert_eq!(run(&luns, B, &write, DataDirection::Out, &[0; 512]).await.status, 0x18);
    assert_eq!(run(&luns, A, &write, DataDirection::Out, &[0; 512]).await.status, 0);
    assert!(adapter.violations().is_empty(), "{:?}", adapter.violations());
    m.shutdown();
}

/// PREEMPT AND ABORT aborts what the preempted initiator has in flight (SPC-4 §5.9.11.5), through the port driver's
/// abort: B's READ hangs in the target (fault injection) until A's PREEMPT AND ABORT ends it, long before the
/// pass-through path's 30 s timeout would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preempt_and_abort_ends_the_preempted_initiators_task_in_flight() {
    let (m, adapter, luns) = b_holds_the_reservation().await;

    // B's next READ(10) never completes on its own.
    let disk = m.disk("scsi0", 0, 0).expect("disk").clone();
    disk.faults().set_opcodes(Some(vec![scsi_proto::opcode::READ_10]));
    disk.faults().set_hang(1);
    let b_luns = luns.clone();
    let read =
        tokio::spawn(async move { run(&b_luns, B, &[0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0], DataDirection::In, &[]).await });
    for _ in 0..500 {
        if !disk.faults().hang_requested() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!disk.faults().hang_requested(), "B's READ never reached the disk");
    assert!(!read.is_finished(), "B's READ completed although the disk holds it");

    let (cdb, list) = pr_out(0x05, 0x01, 0xAA, 0xBB);
    let r = run(&luns, A, &cdb, DataDirection::Out, &list).await;
    assert_eq!(r.status, 0, "{:?}", r.sense);
    let r = tokio::time::timeout(std::time::Duration::from_secs(15), read)
        .await
        .expect("PREEMPT AND ABORT left B's READ running")
        .expect("B's READ task");
    assert_ne!(r.status, 0, "an aborted READ reported GOOD");
    disk.faults().clear_all();
    // The unit goes on.
    let read10 = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    assert_eq!(run(&luns, A, &read10, DataDirection::In, &[]).await.status, 0);
    assert!(adapter.violations().is_empty(), "{:?}", adapter.violations());
    m.shutdown();
}
