//! Fault injection through the whole stack: how the class driver and the port driver react to each fault the disk
//! or the HBA can be told to produce.

use class::ClassError;
use hal::Placement;
use scsi::LbaRange;
use scsi_proto::AscAscq;
use scsiport::config::Config;
use scsiport::machine::Machine;
use scsiport::size::ByteSize;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn machine() -> Machine {
    Machine::build(&Config::in_process(ByteSize(16 << 20), ByteSize(64 << 20))).expect("machine builds")
}

fn faults(m: &Machine) -> &scsi::FaultInjector {
    m.disk("scsi0", 0, 0).expect("disk 0:0 exists").faults()
}

#[test]
fn a_medium_error_reaches_the_caller_with_its_lba_and_the_queue_is_released() {
    let m = machine();
    let disk = m.open_first_disk().unwrap();
    let buf = m.memory().alloc(64 << 10, Placement::Any).unwrap();
    faults(&m).set_medium_error(Some(LbaRange { start: 300, count: 4 }));
    let e = disk.read(256, &buf, 0, 64 << 10).unwrap_err();
    assert_eq!(e, ClassError::Medium { lba: Some(300), code: AscAscq::UNRECOVERED_READ_ERROR });
    // CHECK CONDITION froze the LU queue; the class driver released it, so the next request runs.
    assert!(disk.stats().queue_releases >= 1);
    disk.read(0, &buf, 0, 64 << 10).unwrap();
    // Writes to the bad range fail too (03/0C/00), reads elsewhere keep working.
    let e = disk.write(300, &buf, 0, 4096, false).unwrap_err();
    assert!(matches!(e, ClassError::Medium { code: AscAscq::WRITE_ERROR, .. }), "{e}");
    faults(&m).set_medium_error(None);
    disk.read(256, &buf, 0, 64 << 10).unwrap();
    assert!(disk.adapter().violations().is_empty());
    m.shutdown();
}

#[test]
fn aborted_commands_busy_and_unit_attentions_are_retried_until_they_pass() {
    let m = machine();
    let disk = m.open_first_disk().unwrap();
    let buf = m.memory().alloc(4096, Placement::Any).unwrap();
    for (what, set) in [
        ("aborted command", (|f: &scsi::FaultInjector| f.set_aborted_command(2)) as fn(&scsi::FaultInjector)),
        ("busy", |f| f.set_busy(3)),
        ("unit attention", |f| f.set_unit_attention(1)),
    ] {
        let before = disk.stats().retries;
        set(faults(&m));
        disk.read(8, &buf, 0, 4096).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(disk.stats().retries > before, "{what}: the class driver retried");
    }
    assert!(disk.adapter().violations().is_empty());
    m.shutdown();
}

#[test]
fn more_failures_than_retries_end_in_a_clear_error() {
    let m = machine();
    let disk = m.open_first_disk().unwrap();
    let buf = m.memory().alloc(4096, Placement::Any).unwrap();
    faults(&m).set_aborted_command(class::MAX_RETRIES + 5);
    let e = disk.read(8, &buf, 0, 4096).unwrap_err();
    assert!(matches!(e, ClassError::RetriesExhausted { .. }), "{e}");
    faults(&m).clear_all();
    disk.read(8, &buf, 0, 4096).unwrap();
    m.shutdown();
}

#[test]
fn a_command_that_never_completes_is_timed_out_aborted_and_retried() {
    let m = machine();
    let mut disk = m.open_first_disk().unwrap();
    disk.set_timeout(1);
    let buf = m.memory().alloc(4096, Placement::Any).unwrap();
    buf.write(0, &[0xA5; 4096]).unwrap();
    disk.write(40, &buf, 0, 4096, false).unwrap();
    faults(&m).set_hang(1);
    let start = Instant::now();
    buf.write(0, &[0; 4096]).unwrap();
    disk.read(40, &buf, 0, 4096).unwrap();
    let mut got = [0u8; 4096];
    buf.read(0, &mut got).unwrap();
    assert!(got.iter().all(|b| *b == 0xA5), "the retried read returned the data");
    let s = disk.adapter().stats();
    assert_eq!(s.timeouts, 1, "the port timed the hung command out");
    assert!(start.elapsed() >= Duration::from_secs(1), "not before its TimeOutValue");
    assert!(disk.stats().retries >= 1);
    assert!(disk.adapter().violations().is_empty(), "{:?}", disk.adapter().violations());
    m.shutdown();
}

#[test]
fn a_dma_stall_is_rescued_by_the_timeout_and_the_next_transfer_runs() {
    let m = Arc::new(machine());
    let mut disk = m.open_first_disk().unwrap();
    disk.set_timeout(1);
    let adapter = disk.adapter().clone();
    let buf = m.memory().alloc(64 << 10, Placement::Any).unwrap();
    faults(&m).set_dma_stall_after(Some(8192));
    // Clear the stall once the port has timed the stalled transfer out, as a repaired cable would.
    let m2 = m.clone();
    let watcher = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while adapter.stats().timeouts == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        faults(&m2).set_dma_stall_after(None);
    });
    disk.read(0, &buf, 0, 64 << 10).unwrap();
    watcher.join().unwrap();
    let s = disk.adapter().stats();
    assert!(s.timeouts >= 1, "the stalled SRB timed out");
    assert_eq!(s.dma_ops, s.flushes, "every map was flushed, the stalled one too");
    assert!(disk.adapter().violations().is_empty(), "{:?}", disk.adapter().violations());
    disk.read(0, &buf, 0, 64 << 10).unwrap();
    drop(disk);
    m.shutdown();
}

#[test]
fn a_bus_reset_from_the_hba_fails_the_running_command_which_is_retried() {
    let m = machine();
    let disk = m.open_first_disk().unwrap();
    let buf = m.memory().alloc(64 << 10, Placement::Any).unwrap();
    let before = disk.stats().retries;
    faults(&m).request_bus_reset();
    disk.read(0, &buf, 0, 64 << 10).unwrap();
    assert!(disk.stats().retries > before, "the reset command (or the unit attention after it) was retried");
    assert!(disk.adapter().violations().is_empty(), "{:?}", disk.adapter().violations());
    m.shutdown();
}
