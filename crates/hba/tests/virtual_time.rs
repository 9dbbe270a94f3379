//! The machine in virtual time (`docs/dma.md`, "Virtual time"): with a timing preset the HAL keeps the modelled
//! machine's clock, DMA transfers move it on, the port runs SRB timeouts on it, and the trace stamps events with it.
//! Nothing here depends on the wall clock: an SRB that times out after 60 virtual seconds comes back at once, and
//! one that waited for 60 wall-clock seconds would fail the 30-second bound `Machine::run` waits.

mod common;

use common::machine::{Machine, LU0};
use common::*;
use hal::{HalConfig, MachineTiming, Placement};
use hba::HbaConfig;
use port::{Event, EventKind, Srb, SrbFlags, SrbId, SrbStatus};

const LEN: usize = 64 << 10;
const NS_PER_S: u64 = 1_000_000_000;

fn timed_machine() -> Machine {
    let hal = HalConfig { timing: Some(MachineTiming::PC_AT_8MHZ), ..HalConfig::default() };
    Machine::with_hal(hal, HbaConfig { dma_channel: 5, ..HbaConfig::default() }, 256)
}

fn event_of(events: &[Event], id: Option<SrbId>, f: impl Fn(&EventKind) -> bool) -> &Event {
    events.iter().find(|e| (id.is_none() || e.srb == id) && f(&e.kind)).expect("the event was recorded")
}

#[test]
fn a_target_that_never_answers_times_out_after_exactly_its_timeout_in_virtual_seconds() {
    let m = timed_machine();
    assert!(m.trace.is_virtual());
    m.disk.faults().set_hang(1);
    let buf = m.alloc(LEN, Placement::Any);
    let mut srb = Srb::execute_scsi(LU0, &read10(0, 128)).with_data(&buf, 0, LEN as u32, SrbFlags::DATA_IN);
    srb.time_out_value = 60;
    let (id, s) = m.run(srb);
    assert_eq!(s.srb_status.status(), SrbStatus::TIMEOUT, "{s:?}");
    let stats = m.handle.stats();
    assert_eq!(stats.timeouts, 1);
    assert_eq!(stats.bus_resets, 0, "the port's abort ends the command on the reference card: no reset needed");

    let events = m.trace.events();
    let started = event_of(&events, Some(id), |k| matches!(k, EventKind::SrbStarted)).t_ns;
    let timed_out = event_of(&events, Some(id), |k| matches!(k, EventKind::Timeout)).t_ns;
    assert_eq!(timed_out - started, 60 * NS_PER_S, "TimeOutValue seconds of virtual time");
    // The abort the port sends at the timeout ends the command in no virtual time.
    let completed = event_of(&events, Some(id), |k| matches!(k, EventKind::SrbCompleted { .. })).t_ns;
    assert_eq!(completed, timed_out);
    assert_eq!(m.hal.virtual_clock().expect("timing is on").now() / 1000, completed, "nothing moved the clock since");
    // Once the class driver releases the frozen queue, the next request runs normally on the same clock.
    m.release_queue();
    let (_, s) = m.run(Srb::execute_scsi(LU0, &read10(0, 8)).with_data(&buf, 0, 4096, SrbFlags::DATA_IN));
    assert!(s.srb_status.is_success() || s.scsi_status == port::scsi_status::CHECK_CONDITION, "{s:?}");
}

#[test]
fn the_same_timeout_gives_the_same_virtual_times_every_run() {
    let run = || {
        let m = timed_machine();
        m.disk.faults().set_hang(1);
        let buf = m.alloc(LEN, Placement::Any);
        let mut srb = Srb::execute_scsi(LU0, &read10(0, 128)).with_data(&buf, 0, LEN as u32, SrbFlags::DATA_IN);
        srb.time_out_value = 7;
        let (id, s) = m.run(srb);
        assert_eq!(s.srb_status.status(), SrbStatus::TIMEOUT);
        let events = m.trace.events();
        let of = |f: &dyn Fn(&EventKind) -> bool| event_of(&events, Some(id), f).t_ns;
        (of(&|k| matches!(k, EventKind::SrbStarted)), of(&|k| matches!(k, EventKind::Timeout)))
    };
    let a = run();
    assert_eq!(a.1 - a.0, 7 * NS_PER_S);
    assert_eq!(run(), a, "virtual time is deterministic");
}

#[test]
fn the_trace_draws_dma_in_virtual_time() {
    let m = timed_machine();
    let clock = m.hal.virtual_clock().expect("timing is on").clone();
    let data = pattern(LEN, 5);
    let buf = m.alloc(LEN, Placement::Contiguous { below_16m: true, align: 128 << 10 });
    buf.write(0, &data).expect("fill");
    let before_dma = m.hal.virtual_time().total;
    let before_clock = clock.now();
    let (id, s) = m.run(Srb::execute_scsi(LU0, &write10(0, 128)).with_data(&buf, 0, LEN as u32, SrbFlags::DATA_OUT));
    assert_eq!(s.srb_status, SrbStatus::SUCCESS);
    let dma_ps = m.hal.virtual_time().total - before_dma;
    // Only DMA moves the clock while no SRB waits for a timeout.
    assert_eq!(clock.now() - before_clock, dma_ps);
    // 64 KiB on a 16-bit channel of an 8 MHz AT: 32 768 transfers of 4 clocks at 250 ns, at least 32.768 ms.
    assert!(dma_ps >= 32_768 * 4 * 250_000, "{dma_ps} ps");

    let events: Vec<Event> = m.trace.events().into_iter().filter(|e| e.srb == Some(id)).collect();
    assert!(events.windows(2).all(|w| w[0].t_ns <= w[1].t_ns), "virtual stamps never go back");
    let started = event_of(&events, Some(id), |k| matches!(k, EventKind::DmaStarted)).t_ns;
    let done = event_of(&events, Some(id), |k| matches!(k, EventKind::SrbCompleted { .. })).t_ns;
    // The SRB's span on the timeline is its DMA time (to the nanosecond the stamps keep).
    assert!((done - started).abs_diff(dma_ps / 1000) <= 1, "span {} ns, DMA {} ns", done - started, dma_ps / 1000);
    // Before the first DMA cycle, mapping and programming the channel take no virtual time.
    let queued = event_of(&events, Some(id), |k| matches!(k, EventKind::SrbStarted)).t_ns;
    assert_eq!(queued, started);
}
