//! The ESP card with its C miniport under the port driver: exact data through the 8237 (one DMA operation per
//! class-sized SRB, several with a flush after each for a larger one), a missing target as
//! `SRB_STATUS_SELECTION_TIMEOUT` after the select timeout, CHECK CONDITION with the sense the miniport fetched by
//! REQUEST SENSE, abort of a stalled transfer, a bus reset, and no verifier violation throughout.

use esp::{EspConfig, EspSettings};
use hal::{Buffer, Hal, HalConfig, Placement, SystemMemory};
use port::{AdapterHandle, AdapterOptions, EventKind, LuAddress, Srb, SrbFlags, SrbId, SrbStatus, Trace};
use scsi::{Disk, DiskConfig, RamBackend, Target};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LU0: LuAddress = LuAddress { path_id: 0, target_id: 0, lun: 0 };
const BLOCK: usize = 512;
const BLOCKS: u64 = 8192;

struct Rig {
    mem: Arc<SystemMemory>,
    handle: AdapterHandle,
    disk: Arc<Disk>,
    trace: Trace,
}

impl Rig {
    fn new(channel: u8) -> Rig {
        let mem = SystemMemory::new(64 << 20).unwrap();
        let hal = Hal::new(mem.clone(), HalConfig::default()).unwrap();
        let cfg = DiskConfig {
            block_size: BLOCK as u32,
            blocks: BLOCKS,
            power_on_unit_attention: false,
            ..DiskConfig::default()
        };
        let disk = Arc::new(Disk::new(cfg, Arc::new(RamBackend::new(BLOCKS * BLOCK as u64))).unwrap());
        let target = Arc::new(Target::new());
        target.add_lun(0, disk.clone());
        let trace = Trace::new(1_000_000);
        let options = AdapterOptions {
            name: format!("esp-ch{channel}"),
            trace: Some(trace.clone()),
            reset_hold: Duration::from_millis(20),
            abort_timeout: Duration::from_millis(500),
            ..AdapterOptions::default()
        };
        let settings = EspSettings { dma_channel: channel, ..EspSettings::default() };
        let handle = esp::start_adapter(hal, EspConfig { settings, targets: vec![(0, target)] }, options)
            .expect("the ESP adapter starts");
        Rig { mem, handle, disk, trace }
    }

    fn alloc(&self, len: usize, placement: Placement) -> Buffer {
        self.mem.alloc(len, placement).unwrap()
    }

    fn run(&self, srb: Srb) -> (SrbId, Srb) {
        let (tx, rx) = std::sync::mpsc::channel();
        let id = self.handle.submit_with(srb, move |s| {
            let _ = tx.send(s);
        });
        (id, rx.recv_timeout(Duration::from_secs(30)).expect("the SRB completes"))
    }

    fn count(&self, id: SrbId, f: impl Fn(&EventKind) -> bool) -> usize {
        self.trace.events().iter().filter(|e| e.srb == Some(id) && f(&e.kind)).count()
    }

    fn release(&self) {
        let mut r = Srb::execute_scsi(LU0, &[]);
        r.function = port::SrbFunction::RELEASE_QUEUE;
        self.run(r);
    }

    fn assert_clean(&self) {
        let v = self.handle.violations();
        assert!(v.is_empty(), "verifier violations: {v:#?}");
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn rw10(op: u8, lba: u32, blocks: u16) -> Vec<u8> {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    vec![op, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0]
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) ^ (i >> 10) as u8).collect()
}

fn round_trip(rig: &Rig, lba: u32, len: usize, placement: Placement, seed: u8) -> (SrbId, SrbId) {
    let data = pattern(len, seed);
    let out = rig.alloc(len, placement.clone());
    out.write(0, &data).unwrap();
    let blocks = (len / BLOCK) as u16;
    let (w, s) =
        rig.run(Srb::execute_scsi(LU0, &rw10(0x2A, lba, blocks)).with_data(&out, 0, len as u32, SrbFlags::DATA_OUT));
    assert_eq!(s.srb_status, SrbStatus::SUCCESS, "write: {s:?}");
    let back = rig.alloc(len, placement);
    back.write(0, &vec![0xEE; len]).unwrap();
    let (r, s) =
        rig.run(Srb::execute_scsi(LU0, &rw10(0x28, lba, blocks)).with_data(&back, 0, len as u32, SrbFlags::DATA_IN));
    assert_eq!(s.srb_status, SrbStatus::SUCCESS, "read: {s:?}");
    let mut got = vec![0u8; len];
    back.read(0, &mut got).unwrap();
    assert!(got == data, "the data read back differs");
    (w, r)
}

#[test]
fn class_sized_and_larger_srbs_move_exact_data() {
    for channel in [1u8, 5] {
        let rig = Rig::new(channel);
        assert_eq!(rig.handle.capabilities().maximum_transfer_length, 64 << 10);
        let (w, r) = round_trip(&rig, 0, 64 << 10, Placement::Scattered { seed: 1 }, 3);
        for id in [w, r] {
            assert_eq!(rig.count(id, |k| matches!(k, EventKind::Mapped { .. })), 1);
            assert_eq!(rig.count(id, |k| matches!(k, EventKind::Flushed { .. })), 1);
        }
        let (w, r) = round_trip(&rig, 1000, 200 << 10, Placement::Any, 4);
        for id in [w, r] {
            assert_eq!(rig.count(id, |k| matches!(k, EventKind::Mapped { .. })), 4, "64+64+64+8 KiB");
            assert_eq!(rig.count(id, |k| matches!(k, EventKind::Flushed { .. })), 4);
        }
        rig.assert_clean();
    }
}

/// READ(16) / WRITE(16): IDENTIFY and a 16-byte CDB do not fit the FIFO together, so the miniport selects with ATN
/// and stop and sends the CDB in the command phase.
#[test]
fn sixteen_byte_cdbs() {
    let rig = Rig::new(1);
    let len = 8192;
    let data = pattern(len, 8);
    let buf = rig.alloc(len, Placement::Any);
    buf.write(0, &data).unwrap();
    let mut w16 = vec![0x8A, 0];
    w16.extend_from_slice(&77u64.to_be_bytes());
    w16.extend_from_slice(&16u32.to_be_bytes());
    w16.extend_from_slice(&[0, 0]);
    let (_, s) = rig.run(Srb::execute_scsi(LU0, &w16).with_data(&buf, 0, len as u32, SrbFlags::DATA_OUT));
    assert_eq!(s.srb_status, SrbStatus::SUCCESS, "{s:?}");
    let mut r16 = w16.clone();
    r16[0] = 0x88;
    let back = rig.alloc(len, Placement::Any);
    let (_, s) = rig.run(Srb::execute_scsi(LU0, &r16).with_data(&back, 0, len as u32, SrbFlags::DATA_IN));
    assert_eq!(s.srb_status, SrbStatus::SUCCESS, "{s:?}");
    let mut got = vec![0u8; len];
    back.read(0, &mut got).unwrap();
    assert!(got == data);
    let out = rig.alloc(len, Placement::Any);
    let (_, s) = rig.run(Srb::execute_scsi(LU0, &rw10(0x28, 77, 16)).with_data(&out, 0, len as u32, SrbFlags::DATA_IN));
    assert_eq!(s.srb_status, SrbStatus::SUCCESS);
    out.read(0, &mut got).unwrap();
    assert!(got == data, "READ(10) sees what WRITE(16) wrote");
    rig.assert_clean();
}

#[test]
fn selection_timeout_check_condition_and_underrun() {
    let rig = Rig::new(1);
    let buf = rig.alloc(4096, Placement::Any);
    let missing = LuAddress { path_id: 0, target_id: 4, lun: 0 };
    let t0 = Instant::now();
    let (_, s) = rig.run(Srb::execute_scsi(missing, &rw10(0x28, 0, 8)).with_data(&buf, 0, 4096, SrbFlags::DATA_IN));
    assert_eq!(s.srb_status.status(), SrbStatus::SELECTION_TIMEOUT);
    assert!(t0.elapsed() >= Duration::from_millis(200), "the select timeout (250 ms) ran out first");
    let (_, s) =
        rig.run(Srb::execute_scsi(LU0, &rw10(0x28, BLOCKS as u32, 8)).with_data(&buf, 0, 4096, SrbFlags::DATA_IN));
    assert_eq!(s.srb_status.status(), SrbStatus::ERROR, "{s:?}");
    assert_eq!(s.scsi_status, 0x02);
    assert!(s.srb_status.autosense_valid(), "the miniport fetched the sense: {s:?}");
    assert_eq!(s.sense()[2] & 0x0F, 0x05, "ILLEGAL REQUEST: {:?}", s.sense());
    rig.release();
    let (_, s) = rig.run(Srb::execute_scsi(LU0, &[0x12, 0, 0, 0x10, 0, 0]).with_data(&buf, 0, 4096, SrbFlags::DATA_IN));
    assert_eq!(s.srb_status.status(), SrbStatus::DATA_OVERRUN, "{s:?}");
    assert!(s.data_transfer_length > 0 && s.data_transfer_length < 4096);
    rig.assert_clean();
}

#[test]
fn abort_and_bus_reset_of_stalled_transfers() {
    let rig = Rig::new(5);
    let len = 64 << 10;
    for reset in [false, true] {
        rig.disk.faults().set_dma_stall_after(Some(8192));
        let buf = rig.alloc(len, Placement::Any);
        let before = rig.handle.stats().dma_bytes;
        let (tx, rx) = std::sync::mpsc::channel();
        let id = rig.handle.submit_with(
            Srb::execute_scsi(LU0, &rw10(0x28, 0, (len / BLOCK) as u16)).with_data(
                &buf,
                0,
                len as u32,
                SrbFlags::DATA_IN,
            ),
            move |s| {
                let _ = tx.send(s);
            },
        );
        let until = Instant::now() + Duration::from_secs(10);
        while rig.handle.stats().dma_bytes - before < 8192 {
            assert!(Instant::now() < until, "the transfer never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        if reset {
            drop(rig.handle.reset_bus(0));
        } else {
            drop(rig.handle.abort(id, LU0));
        }
        let victim = rx.recv_timeout(Duration::from_secs(10)).expect("the stalled SRB comes back");
        if reset {
            assert_eq!(victim.srb_status.status(), SrbStatus::BUS_RESET, "{victim:?}");
        } else {
            assert_eq!(victim.srb_status.status(), SrbStatus::ABORTED, "{victim:?}");
            assert_eq!(victim.data_transfer_length, 8192);
        }
        assert_eq!(rig.count(id, |k| matches!(k, EventKind::Flushed { .. })), 1);
        rig.disk.faults().set_dma_stall_after(None);
        rig.release();
    }
    // After the reset the first command meets the unit attention; then data moves again.
    let buf = rig.alloc(4096, Placement::Any);
    let (_, s) = rig.run(Srb::execute_scsi(LU0, &[0; 6]));
    if !s.srb_status.is_success() {
        rig.release();
    }
    let _ = buf;
    round_trip(&rig, 8, 32 << 10, Placement::Any, 6);
    rig.assert_clean();
}
