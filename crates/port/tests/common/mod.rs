//! A test rig: system memory, the HAL, one [`hba::TestHba`] driven by one [`miniport::TestMiniport`] (correct or with
//! one deliberate bug), a RAM disk, and helpers that submit SRBs with bounded waits.
#![allow(dead_code)]

pub mod hba;
pub mod miniport;

use hal::{Buffer, Hal, HalConfig, Placement, SystemMemory};
use miniport::{Bug, Counters, TestMiniport};
use parking_lot::Mutex;
use port::{AdapterHandle, AdapterOptions, LuAddress, PortError, Srb, SrbFlags, SrbId, SrbStatus, Trace, VerifierMode};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const LU0: LuAddress = LuAddress { path_id: 0, target_id: 0, lun: 0 };
pub const LU1: LuAddress = LuAddress { path_id: 0, target_id: 1, lun: 0 };
pub const DISK_BYTES: usize = 1 << 20;
pub const IO_BASE: u16 = 0x330;

pub struct Rig {
    pub mem: Arc<SystemMemory>,
    pub hal: Arc<Hal>,
    pub handle: AdapterHandle,
    pub disk: Arc<Mutex<Vec<u8>>>,
    pub knobs: Arc<Mutex<hba::Knobs>>,
    pub counters: Arc<Counters>,
    pub trace: Trace,
}

/// Options that keep recovery quick in tests.
pub fn options(name: &str, mode: VerifierMode, trace: &Trace) -> AdapterOptions {
    AdapterOptions {
        name: name.into(),
        verifier: mode,
        trace: Some(trace.clone()),
        reset_hold: Duration::from_millis(5),
        abort_timeout: Duration::from_millis(300),
    }
}

impl Rig {
    /// A rig on DMA channel 5 whose disk holds a known pattern.
    pub fn new(bug: Bug, mode: VerifierMode) -> Rig {
        Self::try_with(bug, mode, Some(5), |_| {}).expect("the adapter starts")
    }

    pub fn try_with(
        bug: Bug,
        mode: VerifierMode,
        channel: Option<u8>,
        tweak: impl FnOnce(&mut TestMiniport),
    ) -> Result<Rig, PortError> {
        let mem = SystemMemory::new(64 << 20).expect("system memory");
        let hal = Hal::new(mem.clone(), HalConfig::default()).expect("hal");
        Self::on(mem, hal, bug, mode, channel, IO_BASE, "test0", tweak)
    }

    /// A rig on an existing HAL (several adapters on one machine).
    #[allow(clippy::too_many_arguments)]
    pub fn on(
        mem: Arc<SystemMemory>,
        hal: Arc<Hal>,
        bug: Bug,
        mode: VerifierMode,
        channel: Option<u8>,
        io_base: u16,
        name: &str,
        tweak: impl FnOnce(&mut TestMiniport),
    ) -> Result<Rig, PortError> {
        let (card, disk, knobs) = miniport::card(io_base, DISK_BYTES);
        *disk.lock() = pattern(DISK_BYTES, 7);
        let counters = Arc::new(Counters::default());
        let mut ext = TestMiniport::new(bug, counters.clone());
        tweak(&mut ext);
        let trace = Trace::new(1_000_000);
        let handle = AdapterHandle::start(
            hal.clone(),
            miniport::init_data(bug),
            ext,
            Box::new(card),
            miniport::resources(io_base, channel),
            options(name, mode, &trace),
        )?;
        Ok(Rig { mem, hal, handle, disk, knobs, counters, trace })
    }

    pub fn alloc(&self, len: usize, placement: Placement) -> Buffer {
        self.mem.alloc(len, placement).expect("buffer")
    }

    /// Submit without waiting; the receiver gets the SRB back.
    pub fn submit(&self, srb: Srb) -> (SrbId, crossbeam_channel::Receiver<Srb>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let id = self.handle.submit_with(srb, move |s| {
            let _ = tx.send(s);
        });
        (id, rx)
    }

    /// Submit and wait (bounded).
    pub fn run(&self, srb: Srb) -> Srb {
        let (_, rx) = self.submit(srb);
        rx.recv_timeout(Duration::from_secs(20)).expect("the SRB comes back")
    }

    /// READ(10) of `len` bytes at disk byte `at` into `buf`.
    pub fn read(&self, buf: &Buffer, at: usize, len: usize) -> Srb {
        self.run(read_srb(LU0, buf, at, len))
    }

    /// WRITE(10) of `len` bytes from `buf` to disk byte `at`.
    pub fn write(&self, buf: &Buffer, at: usize, len: usize) -> Srb {
        self.run(write_srb(LU0, buf, at, len))
    }

    /// The names of the violations reported so far.
    pub fn names(&self) -> Vec<&'static str> {
        self.handle.violations().iter().map(|v| v.rule.name()).collect()
    }

    /// Wait (bounded) until `f` holds.
    pub fn wait_until(&self, what: &str, f: impl Fn(&Rig) -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !f(self) {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A full read and write round trip succeeds with exact data: the adapter, its channel and map registers work.
    pub fn assert_recovered(&self, placement: Placement) {
        let len = 40 << 10;
        let buf = self.alloc(len, placement);
        let out = pattern(len, 99);
        buf.write(0, &out).expect("fill");
        let w = self.write(&buf, 8192, len);
        assert_eq!(w.srb_status.status(), SrbStatus::SUCCESS, "the next WRITE succeeds");
        assert_eq!(&self.disk.lock()[8192..8192 + len], &out[..], "the WRITE reached the disk");
        let back = self.alloc(len, Placement::Scattered { seed: 3 });
        let r = self.read(&back, 8192, len);
        assert_eq!(r.srb_status.status(), SrbStatus::SUCCESS, "the next READ succeeds");
        assert_eq!(read_all(&back), out, "the READ brought the data back");
    }

    pub fn shutdown(self) {
        self.handle.shutdown();
    }
}

fn cdb10(op: u8, at: usize, len: usize) -> [u8; 10] {
    let lba = ((at / 512) as u32).to_be_bytes();
    let blocks = (len.div_ceil(512) as u16).to_be_bytes();
    [op, 0, lba[0], lba[1], lba[2], lba[3], 0, blocks[0], blocks[1], 0]
}

fn data_srb(lu: LuAddress, op: u8, buf: &Buffer, at: usize, len: usize, dir: SrbFlags) -> Srb {
    let mut s = Srb::execute_scsi(lu, &cdb10(op, at, len)).with_data(buf, 0, len as u32, dir);
    // A strict-mode failure must not leave the queue frozen for the recovery checks that follow.
    s.srb_flags.insert(SrbFlags::NO_QUEUE_FREEZE);
    s.time_out_value = 2;
    s
}

pub fn read_srb(lu: LuAddress, buf: &Buffer, at: usize, len: usize) -> Srb {
    data_srb(lu, 0x28, buf, at, len, SrbFlags::DATA_IN)
}

pub fn write_srb(lu: LuAddress, buf: &Buffer, at: usize, len: usize) -> Srb {
    data_srb(lu, 0x2A, buf, at, len, SrbFlags::DATA_OUT)
}

/// A READ whose direction the caller left to the miniport (`SRB_FLAGS_UNSPECIFIED_DIRECTION`).
pub fn unspecified_read_srb(lu: LuAddress, buf: &Buffer, at: usize, len: usize) -> Srb {
    data_srb(lu, 0x28, buf, at, len, SrbFlags::UNSPECIFIED_DIRECTION)
}

pub fn test_unit_ready(lu: LuAddress) -> Srb {
    let mut s = Srb::execute_scsi(lu, &[0; 6]);
    s.srb_flags.insert(SrbFlags::NO_QUEUE_FREEZE);
    s.time_out_value = 2;
    s
}

pub fn read_all(buf: &Buffer) -> Vec<u8> {
    let mut v = vec![0u8; buf.len()];
    buf.read(0, &mut v).expect("read back");
    v
}

/// A deterministic pattern that differs per byte position and per seed.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
