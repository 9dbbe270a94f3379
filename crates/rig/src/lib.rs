//! Test machines shared by the adapter suites (`hba`, `esp`, `miniport-c`): system memory, the HAL, and one host
//! adapter with a RAM disk at target 0, on either card the project models, so the data-path, cancellation and
//! verifier tests run unchanged on both.
//!
//! [`Card::Reference`] is the reference card (`docs/hba.md`) with its Rust miniport, or with a C miniport loaded from
//! a shared library ([`Spec::library`]); [`Card::Esp`] is the NCR 53C94-class card (`docs/esp.md`) with its C
//! miniport linked into the `esp` crate.

use hal::{Buffer, Hal, HalConfig, Placement, SystemBus, SystemMemory};
use hba::{start_with_hardware, HbaConfig, HbaMonitor};
use miniport_c::MiniportError;
use port::{AdapterHandle, AdapterOptions, EventKind, LuAddress, Srb, SrbFlags, SrbId, SrbStatus, Trace, VerifierMode};
use scsi::{Disk, DiskConfig, RamBackend, Target};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub const LU0: LuAddress = LuAddress { path_id: 0, target_id: 0, lun: 0 };
pub const BLOCK: u32 = 512;

/// The host adapter a machine has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Card {
    /// The reference ISA card (`docs/hba.md`).
    Reference,
    /// The NCR 53C94/53C96-class card (`docs/esp.md`) and its C miniport.
    Esp,
}

impl Card {
    /// Both cards, for tests that must hold on each.
    pub const BOTH: [Card; 2] = [Card::Reference, Card::Esp];
}

/// What to build.
#[derive(Clone)]
pub struct Spec {
    pub card: Card,
    /// The reference card's jumpers and options (its `dma_channel` is also the ESP's channel; `targets` is replaced
    /// by the RAM disk's target).
    pub hba: HbaConfig,
    pub bus: SystemBus,
    /// Blocks of the RAM disk at target 0, LUN 0.
    pub blocks: u64,
    pub verifier: VerifierMode,
    /// The card's miniport from a shared library built against the header (`build_c_miniport`) instead of the one
    /// the card comes with.
    pub library: Option<PathBuf>,
    /// The target at ID 0 and the disk of it the tests look at, instead of a RAM disk of `blocks` blocks.
    pub target: Option<(Arc<Target>, Arc<Disk>)>,
    /// The HAL to build instead of a default one on `bus` (e.g. with a timing preset: then the trace records
    /// virtual time).
    pub hal: Option<HalConfig>,
}

impl Spec {
    pub fn new(card: Card, channel: u8, blocks: u64) -> Spec {
        Spec {
            card,
            hba: HbaConfig { dma_channel: channel, ..HbaConfig::default() },
            bus: SystemBus::Isa,
            blocks,
            verifier: VerifierMode::Strict,
            library: None,
            target: None,
            hal: None,
        }
    }
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Build a C miniport of this repository (`source`, relative to its root) with extra `-D` flags into a shared library,
/// once per source and flag set, with the one command `docs/miniport-c.md` gives (and `-Werror`).
pub fn build_c_miniport(source: &str, defines: &[&str]) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let key = format!("{source} {}", defines.join(" "));
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(k, _)| *k == key) {
        return p.clone();
    }
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temporary directory"));
    let out = dir.path().join(format!("libminiport{}.so", built.len()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let o = Command::new(&cc)
        .args(["-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(repo().join("include"))
        .args(defines)
        .arg(repo().join(source))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    assert!(o.status.success(), "{cc} failed:\n{}", String::from_utf8_lossy(&o.stderr));
    built.push((key, out.clone()));
    out
}

/// A target with one RAM disk of `blocks` 512-byte blocks at LUN 0 (no power-on unit attention, so the first command
/// runs as sent).
pub fn ram_target(blocks: u64) -> (Arc<Target>, Arc<Disk>) {
    let cfg = DiskConfig { block_size: BLOCK, blocks, power_on_unit_attention: false, ..DiskConfig::default() };
    let backend = Arc::new(RamBackend::new(blocks * u64::from(BLOCK)));
    let disk = Arc::new(Disk::new(cfg, backend).expect("valid disk configuration"));
    let target = Arc::new(Target::new());
    target.add_lun(0, disk.clone());
    (target, disk)
}

pub struct Machine {
    pub card_kind: Card,
    pub mem: Arc<SystemMemory>,
    pub hal: Arc<Hal>,
    pub handle: AdapterHandle,
    pub disk: Arc<Disk>,
    pub trace: Trace,
    /// The reference card's counters (the ESP keeps none: on it, a monitor no card updates).
    pub card: HbaMonitor,
}

impl Machine {
    /// The reference card with its Rust miniport on `channel`.
    pub fn new(channel: u8, blocks: u64) -> Self {
        Self::card(Card::Reference, channel, blocks)
    }

    /// `card` on `channel` with a RAM disk of `blocks` blocks.
    pub fn card(card: Card, channel: u8, blocks: u64) -> Self {
        Self::start(Spec::new(card, channel, blocks)).expect("the adapter starts")
    }

    pub fn with(cfg: HbaConfig, blocks: u64) -> Self {
        Self::on(SystemBus::Isa, cfg, blocks)
    }

    /// The reference card on a PC/AT (ISA) or an EISA system bus; on EISA the card's miniport reports
    /// `Dma32BitAddresses`.
    pub fn on(bus: SystemBus, cfg: HbaConfig, blocks: u64) -> Self {
        let spec = Spec { hba: cfg, bus, ..Spec::new(Card::Reference, 0, blocks) };
        Self::start(spec).expect("the adapter starts")
    }

    /// The reference card with `target` at ID 0; `disk` is its LUN the tests look at.
    pub fn with_target(bus: SystemBus, cfg: HbaConfig, target: Arc<Target>, disk: Arc<Disk>) -> Self {
        let spec = Spec { hba: cfg, bus, target: Some((target, disk)), ..Spec::new(Card::Reference, 0, 0) };
        Self::start(spec).expect("the adapter starts")
    }

    /// The reference card on a HAL built from `hal_config`; with a timing preset its trace records virtual time.
    pub fn with_hal(hal_config: HalConfig, cfg: HbaConfig, blocks: u64) -> Self {
        let spec =
            Spec { hba: cfg, bus: hal_config.bus, hal: Some(hal_config), ..Spec::new(Card::Reference, 0, blocks) };
        Self::start(spec).expect("the adapter starts")
    }

    pub fn start(spec: Spec) -> Result<Self, MiniportError> {
        let mem = SystemMemory::new(64 << 20).expect("system memory");
        let hal_config = spec.hal.clone().unwrap_or(HalConfig { bus: spec.bus, ..HalConfig::default() });
        let hal = Hal::new(mem.clone(), hal_config).expect("hal");
        let (target, disk) = spec.target.clone().unwrap_or_else(|| ram_target(spec.blocks));
        let mut cfg = spec.hba;
        cfg.eisa_dma = spec.bus == SystemBus::Eisa;
        cfg.targets = vec![(0, target.clone())];
        let channel = cfg.dma_channel;
        let trace = match hal.virtual_clock() {
            Some(clock) => Trace::in_virtual_time(1_000_000, clock.clone()),
            None => Trace::new(1_000_000),
        };
        let options = AdapterOptions {
            name: format!("{:?}-ch{channel}", spec.card).to_lowercase(),
            verifier: spec.verifier,
            trace: Some(trace.clone()),
            reset_hold: Duration::from_millis(20),
            abort_timeout: Duration::from_millis(500),
        };
        let (handle, monitor) = match (spec.card, &spec.library) {
            (Card::Reference, None) => {
                let hw = cfg.build_hardware().expect("the card builds");
                let monitor = hw.monitor();
                let h = start_with_hardware(hal.clone(), hw, cfg.miniport_config(), cfg.resources(), options)
                    .map_err(MiniportError::Port)?;
                (h, Some(monitor))
            }
            (Card::Reference, Some(lib)) => {
                // SAFETY: the tests load only miniports built from this repository against its header.
                let miniport = unsafe { miniport_c::load(lib) }?;
                let hw = cfg.build_hardware().expect("the card builds");
                let monitor = hw.monitor();
                (miniport_c::start(&miniport, hal.clone(), Box::new(hw), cfg.resources(), options)?, Some(monitor))
            }
            (Card::Esp, library) => {
                let settings = esp::EspSettings { dma_channel: channel, ..esp::EspSettings::default() };
                let cfg = esp::EspConfig { settings, targets: vec![(0, target)] };
                let h = match library {
                    None => esp::start_adapter(hal.clone(), cfg, options)?,
                    Some(lib) => {
                        // SAFETY: the tests load only miniports built from this repository against its header.
                        let miniport = unsafe { miniport_c::load(lib) }?;
                        let hw = cfg.build_hardware()?;
                        miniport_c::start(&miniport, hal.clone(), Box::new(hw), cfg.resources(), options)?
                    }
                };
                (h, None)
            }
        };
        Ok(Machine { card_kind: spec.card, mem, hal, handle, disk, trace, card: monitor.unwrap_or_default() })
    }

    pub fn alloc(&self, len: usize, placement: Placement) -> Buffer {
        self.mem.alloc(len, placement).expect("buffer")
    }

    /// Submit and wait (bounded) for the SRB to come back.
    pub fn run(&self, srb: Srb) -> (SrbId, Srb) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let id = self.handle.submit_with(srb, move |s| {
            let _ = tx.send(s);
        });
        let srb = rx.recv_timeout(Duration::from_secs(30)).expect("the SRB completes");
        (id, srb)
    }

    /// Submit every SRB back to back (they reach the port while the first one runs) and wait (bounded) for all of
    /// them; the results come in submission order.
    pub fn run_all(&self, srbs: Vec<Srb>) -> Vec<(SrbId, Srb)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let ids: Vec<SrbId> = srbs
            .into_iter()
            .enumerate()
            .map(|(i, srb)| {
                let tx = tx.clone();
                self.handle.submit_with(srb, move |s| {
                    let _ = tx.send((i, s));
                })
            })
            .collect();
        let mut out: Vec<Option<Srb>> = ids.iter().map(|_| None).collect();
        for _ in 0..ids.len() {
            let (i, s) = rx.recv_timeout(Duration::from_secs(30)).expect("every SRB completes");
            out[i] = Some(s);
        }
        ids.into_iter().zip(out.into_iter().map(|s| s.expect("completed"))).collect()
    }

    /// Events of one SRB matching `f`.
    pub fn count(&self, id: SrbId, f: impl Fn(&EventKind) -> bool) -> usize {
        self.trace.events().iter().filter(|e| e.srb == Some(id) && f(&e.kind)).count()
    }

    pub fn maps(&self, id: SrbId) -> usize {
        self.count(id, |k| matches!(k, EventKind::Mapped { .. }))
    }

    pub fn flushes(&self, id: SrbId) -> usize {
        self.count(id, |k| matches!(k, EventKind::Flushed { .. }))
    }

    pub fn dma_started(&self, id: SrbId) -> usize {
        self.count(id, |k| matches!(k, EventKind::DmaStarted))
    }

    /// The verifier rules the adapter reported, by name.
    pub fn rules(&self) -> Vec<&'static str> {
        self.handle.violations().iter().map(|v| v.rule.name()).collect()
    }

    pub fn release_queue(&self) {
        let mut srb = Srb::execute_scsi(LU0, &[]);
        srb.function = port::SrbFunction::RELEASE_QUEUE;
        let (_, s) = self.run(srb);
        assert!(s.srb_status.is_success());
    }

    pub fn assert_no_violations(&self) {
        let v = self.handle.violations();
        assert!(v.is_empty(), "verifier violations on the {:?} card: {v:#?}", self.card_kind);
    }

    /// Write `len` bytes of `pattern(len, seed)` at `lba` from a `placement` buffer, read them back into a fresh one
    /// (poisoned first) and compare; returns the two SRB ids.
    pub fn round_trip(&self, lba: u32, len: usize, placement: Placement, seed: u64) -> (SrbId, SrbId) {
        let data = pattern(len, seed);
        let out = self.alloc(len, placement.clone());
        out.write(0, &data).expect("fill");
        let blocks = (len / BLOCK as usize) as u16;
        let (w, s) = self.run(write_srb(&out, lba, blocks));
        assert_eq!(s.srb_status, SrbStatus::SUCCESS, "write on the {:?} card: {s:?}", self.card_kind);
        let back = self.alloc(len, placement);
        back.write(0, &vec![0xEE; len]).expect("poison");
        let (r, s) = self.run(read_srb(&back, lba, blocks));
        assert_eq!(s.srb_status, SrbStatus::SUCCESS, "read on the {:?} card: {s:?}", self.card_kind);
        let mut got = vec![0u8; len];
        back.read(0, &mut got).expect("read back");
        assert!(got == data, "the data read back differs from the data written on the {:?} card", self.card_kind);
        (w, r)
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

pub fn write_srb(buf: &Buffer, lba: u32, blocks: u16) -> Srb {
    let len = u32::from(blocks) * BLOCK;
    Srb::execute_scsi(LU0, &write10(lba, blocks)).with_data(buf, 0, len, SrbFlags::DATA_OUT)
}

pub fn read_srb(buf: &Buffer, lba: u32, blocks: u16) -> Srb {
    let len = u32::from(blocks) * BLOCK;
    Srb::execute_scsi(LU0, &read10(lba, blocks)).with_data(buf, 0, len, SrbFlags::DATA_IN)
}

pub fn read10(lba: u32, blocks: u16) -> Vec<u8> {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    vec![0x28, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0]
}

pub fn write10(lba: u32, blocks: u16) -> Vec<u8> {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    vec![0x2A, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0]
}

pub fn read16(lba: u64, blocks: u32) -> Vec<u8> {
    let mut c = vec![0x88, 0];
    c.extend_from_slice(&lba.to_be_bytes());
    c.extend_from_slice(&blocks.to_be_bytes());
    c.extend_from_slice(&[0, 0]);
    c
}

pub fn write16(lba: u64, blocks: u32) -> Vec<u8> {
    let mut c = read16(lba, blocks);
    c[0] = 0x8A;
    c
}

pub fn inquiry(alloc: u16) -> Vec<u8> {
    let a = alloc.to_be_bytes();
    vec![0x12, 0, 0, a[0], a[1], 0]
}

pub const TEST_UNIT_READY: [u8; 6] = [0; 6];

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
