//! A machine with system memory, the HAL, and one reference adapter with a RAM disk at target 0.

use super::ram_target;
use hal::{Buffer, Hal, HalConfig, Placement, SystemBus, SystemMemory};
use hba::{start_with_hardware, HbaConfig, HbaMonitor};
use port::{AdapterHandle, AdapterOptions, EventKind, LuAddress, Srb, SrbId, Trace};
use scsi::Disk;
use std::sync::Arc;
use std::time::Duration;

pub const LU0: LuAddress = LuAddress { path_id: 0, target_id: 0, lun: 0 };

pub struct Machine {
    pub mem: Arc<SystemMemory>,
    pub hal: Arc<Hal>,
    pub handle: AdapterHandle,
    pub disk: Arc<Disk>,
    pub trace: Trace,
    /// The card's counters.
    pub card: HbaMonitor,
}

impl Machine {
    pub fn new(channel: u8, blocks: u64) -> Self {
        Self::with(HbaConfig { dma_channel: channel, ..HbaConfig::default() }, blocks)
    }

    pub fn with(cfg: HbaConfig, blocks: u64) -> Self {
        Self::on(SystemBus::Isa, cfg, blocks)
    }

    /// The machine on a PC/AT (ISA) or an EISA system bus; on EISA the card's miniport
    /// reports `Dma32BitAddresses`.
    pub fn on(bus: SystemBus, cfg: HbaConfig, blocks: u64) -> Self {
        Self::with_hal(HalConfig { bus, ..HalConfig::default() }, cfg, blocks)
    }

    /// The machine on a HAL built from `hal_config`; with a timing preset its trace records virtual time.
    pub fn with_hal(hal_config: HalConfig, mut cfg: HbaConfig, blocks: u64) -> Self {
        let bus = hal_config.bus;
        let mem = SystemMemory::new(64 << 20).expect("system memory");
        let hal = Hal::new(mem.clone(), hal_config).expect("hal");
        cfg.eisa_dma = bus == SystemBus::Eisa;
        let (target, disk) = ram_target(blocks);
        cfg.targets = vec![(0, target)];
        let trace = match hal.virtual_clock() {
            Some(clock) => Trace::in_virtual_time(1_000_000, clock.clone()),
            None => Trace::new(1_000_000),
        };
        let options = AdapterOptions {
            name: format!("hba-ch{}", cfg.dma_channel),
            trace: Some(trace.clone()),
            reset_hold: Duration::from_millis(20),
            abort_timeout: Duration::from_millis(500),
            ..AdapterOptions::default()
        };
        let hw = cfg.build_hardware().expect("the card builds");
        let card = hw.monitor();
        let handle = start_with_hardware(hal.clone(), hw, cfg.miniport_config(), cfg.resources(), options)
            .expect("adapter starts");
        Machine { mem, hal, handle, disk, trace, card }
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

    pub fn release_queue(&self) {
        let mut srb = Srb::execute_scsi(LU0, &[]);
        srb.function = port::SrbFunction::RELEASE_QUEUE;
        let (_, s) = self.run(srb);
        assert!(s.srb_status.is_success());
    }

    pub fn assert_no_violations(&self) {
        let v = self.handle.violations();
        assert!(v.is_empty(), "verifier violations: {v:#?}");
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}
