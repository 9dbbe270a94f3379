//! Virtual time: what the modelled machine's DMA transfers would have taken.
//!
//! Off unless a [`MachineTiming`] is given (`HalConfig::timing`,
//! `DmaController::set_timing`). Each run of transfer cycles the controller performs is
//! charged the clock states the 8237A data sheet gives for it, at the modelled machine's
//! DMA clock, plus the bus hand-over of every grant; on EISA the cycle length of the
//! channel's timing type. `docs/dma.md` ("Virtual time") derives the presets' figures
//! and compares them with published measurements.

use std::time::Duration;

/// Picoseconds: the unit virtual time is kept in, exact for every preset's clock.
pub type Picos = u64;

/// The timing of a modelled machine's DMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineTiming {
    /// The preset's name (`pc-at-8mhz`, …).
    pub name: &'static str,
    /// The clock DMA cycles count in: on a PC/AT the 8237s' clock, half the system clock;
    /// on EISA the bus clock BCLK.
    pub dma_clock_hz: u64,
    /// 8237 transfer cycles: wait states the system board adds to each transfer.
    pub wait_states: u32,
    /// Clocks of one bus hand-over: the controller's S0 state(s) from HRQ until the
    /// processor's HLDA, and giving the bus back.
    pub handover_clocks: u32,
    /// EISA: clocks per transfer for ISA-compatible, type A, type B and type C (burst)
    /// timing; `None` on a PC/AT, whose 8237 cycles follow the data sheet's states.
    pub eisa_cycle_clocks: Option<[u32; 4]>,
}

impl MachineTiming {
    /// An 8 MHz PC/AT: 8237s at 4 MHz, one wait state per DMA transfer.
    pub const PC_AT_8MHZ: MachineTiming = MachineTiming {
        name: "pc-at-8mhz",
        dma_clock_hz: 4_000_000,
        wait_states: 1,
        handover_clocks: 3,
        eisa_cycle_clocks: None,
    };

    /// A 6 MHz PC/AT: 8237s at 3 MHz, one wait state per DMA transfer.
    pub const PC_AT_6MHZ: MachineTiming = MachineTiming {
        name: "pc-at-6mhz",
        dma_clock_hz: 3_000_000,
        wait_states: 1,
        handover_clocks: 3,
        eisa_cycle_clocks: None,
    };

    /// An EISA machine with an 8.25 MHz BCLK: 8, 6, 4 and 1 BCLKs per transfer for
    /// compatible, A, B and C timing.
    pub const EISA_8MHZ: MachineTiming = MachineTiming {
        name: "eisa-8mhz",
        dma_clock_hz: 8_250_000,
        wait_states: 0,
        handover_clocks: 4,
        eisa_cycle_clocks: Some([8, 6, 4, 1]),
    };

    /// Every preset, by name.
    pub const PRESETS: [MachineTiming; 3] = [Self::PC_AT_8MHZ, Self::PC_AT_6MHZ, Self::EISA_8MHZ];

    /// The preset of that name.
    pub fn preset(name: &str) -> Option<MachineTiming> {
        Self::PRESETS.into_iter().find(|p| p.name == name)
    }

    /// Does this machine have the EISA DMA extensions?
    pub fn is_eisa(&self) -> bool {
        self.eisa_cycle_clocks.is_some()
    }

    /// Picoseconds of `clocks` DMA clocks.
    pub fn clocks(&self, clocks: u64) -> Picos {
        clocks * 1_000_000_000_000 / self.dma_clock_hz
    }
}

/// What a run of cycles looks like to the clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunShape {
    /// Transfer cycles in the run.
    pub cycles: u64,
    /// The address register's value before the run (for S1 states: the 8237 outputs the
    /// address's upper byte again whenever it changes).
    pub first_address: u16,
    pub decrement: bool,
    /// Command register bit 3.
    pub compressed: bool,
    /// Mode register bits 7–6 are single mode: a bus grant per cycle.
    pub single: bool,
    /// A new grant starts with this run (the channel was not holding the bus).
    pub new_grant: bool,
    /// EISA extended mode timing (bits 5–4), when the machine is EISA.
    pub eisa_timing: Option<u8>,
}

impl MachineTiming {
    /// The clocks of one run. 8237A data sheet, "Transfer Timing": a transfer takes S2,
    /// S3 and S4 (S3 dropped under compressed timing) plus the wait states inserted
    /// between S3 and S4, and an S1 state first whenever the upper address byte has to
    /// be output: at the start of every grant and each time A8–A15 change. Extended
    /// write moves the write strobe earlier and changes no state count. A grant costs
    /// the hand-over clocks.
    pub(crate) fn run_clocks(&self, r: RunShape) -> u64 {
        let grants = if r.single { r.cycles } else { u64::from(r.new_grant) };
        let handover = grants * u64::from(self.handover_clocks);
        if let (Some(per), Some(t)) = (self.eisa_cycle_clocks, r.eisa_timing) {
            return r.cycles * u64::from(per[usize::from(t & 3)]) + handover;
        }
        let per_cycle = if r.compressed { 2 } else { 3 } + u64::from(self.wait_states);
        // S1: once per grant, and again on each crossing of a 256-unit boundary.
        let low = u64::from(r.first_address & 0xFF);
        let crossings = if r.cycles == 0 {
            0
        } else if r.decrement {
            (255 - low + r.cycles - 1) / 256
        } else {
            (low + r.cycles - 1) / 256
        };
        let s1 = if r.single { r.cycles } else { u64::from(r.new_grant) + crossings };
        r.cycles * per_cycle + s1 + handover
    }
}

/// Virtual time consumed, per channel and in all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtualTime {
    pub per_channel: [Picos; 8],
    pub total: Picos,
}

impl VirtualTime {
    pub fn total_duration(&self) -> Duration {
        picos_to_duration(self.total)
    }

    pub fn channel_duration(&self, ch: crate::DmaChannel) -> Duration {
        picos_to_duration(self.per_channel[usize::from(ch.number())])
    }
}

pub fn picos_to_duration(p: Picos) -> Duration {
    Duration::new(p / 1_000_000_000_000, ((p % 1_000_000_000_000) / 1000) as u32)
}

/// The modelled machine's virtual "now", shared by everything that keeps time in it: the
/// DMA controllers advance it by each run of transfer cycles they charge, the port
/// driver by the time it waits for a timeout when nothing else can happen, and trace
/// recorders read it. Cloning shares the clock. It only moves forward.
#[derive(Clone, Debug, Default)]
pub struct VirtualClock(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl VirtualClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Picoseconds since the machine started.
    pub fn now(&self) -> Picos {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Moves the clock on by `ps`.
    pub fn advance(&self, ps: Picos) {
        self.0.fetch_add(ps, std::sync::atomic::Ordering::AcqRel);
    }

    /// Moves the clock on to `at` if it is not there yet; returns the time now.
    pub fn advance_to(&self, at: Picos) -> Picos {
        self.0.fetch_max(at, std::sync::atomic::Ordering::AcqRel).max(at)
    }
}
