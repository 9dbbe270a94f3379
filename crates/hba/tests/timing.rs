//! Virtual time of the card's SCSI bus phases: selection, command, data, status (`docs/dma.md`, "Virtual time").

mod common;

use common::machine::{Machine, LU0};
use common::*;
use hal::Placement;
use hba::{HbaConfig, ScsiTiming};
use port::{Srb, SrbFlags, SrbStatus};

const T: ScsiTiming = ScsiTiming::SCSI2_5MB;

fn read_one(m: &Machine, blocks: u16) -> u64 {
    let len = usize::from(blocks) * BLOCK as usize;
    let buf = m.alloc(len, Placement::Any);
    let before = m.card.counters().scsi_virtual_ps;
    let (_, r) = m.run(Srb::execute_scsi(LU0, &read10(0, blocks)).with_data(&buf, 0, len as u32, SrbFlags::DATA_IN));
    assert_eq!(r.srb_status, SrbStatus::SUCCESS, "{r:?}");
    m.card.counters().scsi_virtual_ps - before
}

#[test]
fn an_untagged_read_costs_selection_command_data_and_status() {
    let m = Machine::with(
        HbaConfig { queue_depth: 1, disconnect: false, scsi_timing: Some(T), ..HbaConfig::default() },
        64,
    );
    // Selection, a 10-byte CDB, 512 data bytes, status and COMMAND COMPLETE.
    let one = T.selection_ps + 10 * T.async_byte_ps + 512 * T.data_byte_ps + 2 * T.async_byte_ps;
    assert_eq!(read_one(&m, 1), one);
    // Eight blocks cost the same phases and eight times the data.
    assert_eq!(read_one(&m, 8), one + 7 * 512 * T.data_byte_ps);
}

#[test]
fn a_read_that_disconnects_costs_a_reselection_and_its_identify_message_more() {
    let m = Machine::with(HbaConfig { queue_depth: 1, scsi_timing: Some(T), ..HbaConfig::default() }, 64);
    // Selection and a 10-byte CDB; the target disconnects, reads, reselects (IDENTIFY); data, status, COMMAND COMPLETE.
    let one = T.selection_ps
        + 10 * T.async_byte_ps
        + T.selection_ps
        + T.async_byte_ps
        + 512 * T.data_byte_ps
        + 2 * T.async_byte_ps;
    assert_eq!(read_one(&m, 1), one);
    assert_eq!(m.card.counters().reselections, 1);
}

#[test]
fn without_timing_the_phases_cost_nothing() {
    let m = Machine::with(HbaConfig { queue_depth: 1, ..HbaConfig::default() }, 64);
    assert_eq!(read_one(&m, 4), 0);
}
