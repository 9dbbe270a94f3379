//! Class-driver-sized SRBs through the port driver, the miniport and the card, on both cards (the reference card with
//! its Rust miniport, the ESP with its C miniport): one map per SRB, byte-exact data on an 8-bit and a 16-bit channel,
//! CHECK CONDITION with autosense, short transfers.

mod common;

use common::machine::{Card, Machine, Spec, LU0};
use common::*;
use hal::{Placement, SystemBus};
use hba::HbaConfig;
use port::{scsi_status, Srb, SrbFlags, SrbStatus};

/// The round trip on each card.
fn write_read_round_trip(channel: u8, placement: Placement, lba: u32, len: usize, seed: u64) {
    round_trip_at(channel, placement, 0, lba, len, seed)
}

/// The same with buffers starting `page_offset` bytes into their first page (a 64 KiB SRB then spans 17 pages).
fn round_trip_at(channel: u8, placement: Placement, page_offset: usize, lba: u32, len: usize, seed: u64) {
    for card in Card::BOTH {
        round_trip_on(card, SystemBus::Isa, channel, placement.clone(), page_offset, lba, len, seed);
    }
}

/// The round trip on a given card and system bus; returns the machine for further checks.
#[allow(clippy::too_many_arguments)]
fn round_trip_on(
    card: Card,
    bus: SystemBus,
    channel: u8,
    placement: Placement,
    page_offset: usize,
    lba: u32,
    len: usize,
    seed: u64,
) -> Machine {
    let spec = Spec { bus, ..Spec::new(card, channel, 4096) };
    let m = Machine::start(spec).expect("the adapter starts");
    let alloc = |p: Placement| m.mem.alloc_at(len, page_offset, p).expect("buffer");
    let out = alloc(placement.clone());
    let data = pattern(len, seed);
    out.write(0, &data).expect("fill");
    let blocks = (len / BLOCK as usize) as u16;
    let (wid, w) =
        m.run(Srb::execute_scsi(LU0, &write10(lba, blocks)).with_data(&out, 0, len as u32, SrbFlags::DATA_OUT));
    assert_eq!(w.srb_status, SrbStatus::SUCCESS, "{w:?}");
    let back = alloc(placement);
    let (rid, r) =
        m.run(Srb::execute_scsi(LU0, &read10(lba, blocks)).with_data(&back, 0, len as u32, SrbFlags::DATA_IN));
    assert_eq!(r.srb_status, SrbStatus::SUCCESS, "{r:?}");
    assert_eq!(r.data_transfer_length as usize, len);
    let mut got = vec![0u8; len];
    back.read(0, &mut got).expect("read back");
    assert!(got == data, "data differs after a round trip on channel {channel} on the {card:?} card");
    for id in [wid, rid] {
        assert_eq!(m.maps(id), 1, "exactly one map per class-sized SRB");
        assert_eq!(m.flushes(id), 1, "one flush per map");
        assert_eq!(m.dma_started(id), 1);
    }
    let stats = m.handle.stats();
    assert_eq!(stats.dma_ops, 2);
    assert_eq!(stats.flushes, 2);
    assert_eq!(stats.cancelled_maps, 0);
    assert_eq!(stats.dma_bytes, 2 * len as u64);
    m.assert_no_violations();
    m
}

#[test]
fn channel5_64k_round_trip_scattered_pages() {
    write_read_round_trip(5, Placement::Scattered { seed: 7 }, 10, 64 << 10, 1);
}

#[test]
fn channel5_64k_round_trip_above_16m() {
    write_read_round_trip(5, Placement::Above16M, 0, 64 << 10, 2);
}

#[test]
fn channel5_single_block_round_trip() {
    write_read_round_trip(5, Placement::Any, 4095, 512, 3);
}

#[test]
fn channel1_64k_round_trip_scattered_pages() {
    write_read_round_trip(1, Placement::Scattered { seed: 9 }, 100, 64 << 10, 4);
}

#[test]
fn channel1_contiguous_low_round_trip() {
    write_read_round_trip(1, Placement::Contiguous { below_16m: true, align: 64 << 10 }, 7, 32 << 10, 5);
}

#[test]
fn channel5_64k_round_trip_spanning_17_pages() {
    round_trip_at(5, Placement::Scattered { seed: 17 }, 2, 0, 64 << 10, 6);
}

#[test]
fn channel1_64k_round_trip_spanning_17_pages_across_a_dma_page() {
    round_trip_at(1, Placement::Any, 4095, 300, 64 << 10, 7);
}

#[test]
fn capabilities_follow_the_jumpers() {
    let m5 = Machine::new(5, 64);
    let c = m5.handle.capabilities().clone();
    assert_eq!(c.dma_channel, Some(5));
    assert_eq!(c.alignment_mask, 1);
    assert_eq!(c.maximum_transfer_length, 64 << 10);
    assert_eq!(c.maximum_physical_pages, 17);
    assert!(c.application_dedicated);
    assert_eq!(c.initiator_bus_id, 7);
    drop(m5);
    let m1 = Machine::new(1, 64);
    let c = m1.handle.capabilities().clone();
    assert_eq!(c.dma_channel, Some(1));
    assert_eq!(c.alignment_mask, 0);
}

#[test]
fn a_disconnected_read_that_fails_reselects_for_status_without_a_map() {
    let m = Machine::new(5, 64);
    let buf = m.alloc(4096, Placement::Any);
    let (id, s) = m.run(Srb::execute_scsi(LU0, &read10(64, 8)).with_data(&buf, 0, 4096, SrbFlags::DATA_IN));
    assert_eq!(s.srb_status.status(), SrbStatus::ERROR, "{s:?}");
    assert!(s.srb_status.autosense_valid());
    let sense = s.sense();
    assert_eq!((sense[2] & 0x0F, sense[12], sense[13]), (0x05, 0x21, 0x00));
    assert_eq!((m.maps(id), m.flushes(id)), (0, 0), "the target reselected straight for its status");
    assert_eq!(m.card.counters().reselections, 1);
    m.release_queue();
    m.assert_no_violations();
}

#[test]
fn check_condition_cancels_the_map_and_returns_autosense() {
    for card in Card::BOTH {
        // Without the disconnect privilege the reference card's target holds the bus from selection to status: its
        // miniport maps as soon as the command owns the bus, and the CHECK CONDITION cancels that map.
        let hba = HbaConfig { dma_channel: 5, disconnect: false, ..HbaConfig::default() };
        let m = Machine::start(Spec { hba, ..Spec::new(card, 5, 64) }).expect("the adapter starts");
        let buf = m.alloc(4096, Placement::Any);
        let (id, s) = m.run(Srb::execute_scsi(LU0, &read10(64, 8)).with_data(&buf, 0, 4096, SrbFlags::DATA_IN));
        assert_eq!(s.srb_status.status(), SrbStatus::ERROR, "{s:?}");
        assert!(s.srb_status.autosense_valid());
        assert_eq!(s.scsi_status, scsi_status::CHECK_CONDITION);
        let sense = s.sense();
        assert!(sense.len() >= 14);
        assert_eq!((sense[2] & 0x0F, sense[12], sense[13]), (0x05, 0x21, 0x00));
        assert_eq!(m.dma_started(id), 0, "HwDmaStarted is never called for a cancelled map");
        // The ESP miniport maps only in a data phase, which this command never has.
        let maps = usize::from(card == Card::Reference);
        assert_eq!(m.count(id, |k| matches!(k, port::EventKind::MapCancelled)), maps);
        assert_eq!(m.handle.stats().cancelled_maps, maps as u64);
        assert_eq!(m.handle.stats().flushes, maps as u64, "the cancelling flush");
        assert_eq!(m.handle.stats().dma_bytes, 0);
        m.release_queue();
        let (_, ok) = m.run(Srb::execute_scsi(LU0, &read10(0, 8)).with_data(&buf, 0, 4096, SrbFlags::DATA_IN));
        assert_eq!(ok.srb_status, SrbStatus::SUCCESS);
        m.assert_no_violations();
    }
}

#[test]
fn a_medium_error_mid_transfer_ends_the_srb_without_waiting_for_a_deadline() {
    for card in Card::BOTH {
        let m = Machine::card(card, 5, 64);
        m.disk.faults().set_medium_error(Some(scsi::LbaRange { start: 20, count: 4 }));
        let buf = m.alloc(32 << 10, Placement::Any);
        let mut srb = Srb::execute_scsi(LU0, &read10(0, 64)).with_data(&buf, 0, 32 << 10, SrbFlags::DATA_IN);
        // No port deadline: only the card's interrupt at the end of the target's data can end the SRB, so an engine that
        // slept with the line asserted would never return it (and `run` fails after its bounded wait).
        srb.time_out_value = 0;
        let (_, s) = m.run(srb);
        assert_eq!(s.srb_status.status(), SrbStatus::ERROR, "{s:?}");
        assert_eq!(s.scsi_status, scsi_status::CHECK_CONDITION);
        let sense = s.sense();
        assert_eq!((sense[2] & 0x0F, sense[12]), (0x03, 0x11), "MEDIUM ERROR, unrecovered read error");
        assert_eq!(m.handle.stats().timeouts, 0);
        m.release_queue();
        m.assert_no_violations();
    }
}

#[test]
fn short_inquiry_is_a_data_overrun_with_the_moved_length() {
    for card in Card::BOTH {
        let (t, _) = ram_target(64);
        let (expect, data) = scsi::execute_on_target(&t, scsi::Nexus::new(1), 0, &inquiry(254), &[], 254);
        assert!(expect.is_good());
        let m = Machine::card(card, 5, 64);
        let buf = m.alloc(254, Placement::Any);
        let (id, s) = m.run(Srb::execute_scsi(LU0, &inquiry(254)).with_data(&buf, 0, 254, SrbFlags::DATA_IN));
        assert_eq!(s.srb_status, SrbStatus::DATA_OVERRUN, "{s:?}");
        assert_eq!(s.data_transfer_length as usize, data.len());
        assert!(data.len() < 254);
        let mut got = vec![0u8; data.len()];
        buf.read(0, &mut got).expect("read");
        assert_eq!(got, data);
        assert_eq!(m.maps(id), 1);
        assert_eq!(m.flushes(id), 1);
        m.assert_no_violations();
    }
}

#[test]
fn no_data_command_succeeds_without_a_map() {
    for card in Card::BOTH {
        let m = Machine::card(card, 5, 64);
        let (id, s) = m.run(Srb::execute_scsi(LU0, &TEST_UNIT_READY));
        assert_eq!(s.srb_status, SrbStatus::SUCCESS);
        assert_eq!(m.maps(id), 0);
        assert_eq!(m.handle.stats().flushes, 0);
        m.assert_no_violations();
    }
}

#[test]
fn missing_target_is_a_selection_timeout() {
    for card in Card::BOTH {
        let m = Machine::card(card, 5, 64);
        let lu3 = port::LuAddress { target_id: 3, ..LU0 };
        let buf = m.alloc(512, Placement::Any);
        let (id, s) = m.run(Srb::execute_scsi(lu3, &read10(0, 1)).with_data(&buf, 0, 512, SrbFlags::DATA_IN));
        assert_eq!(s.srb_status.status(), SrbStatus::SELECTION_TIMEOUT);
        assert_eq!(m.dma_started(id), 0);
        // The reference miniport mapped before selection ended and a flush cancels the map; the ESP's never mapped.
        let maps = usize::from(card == Card::Reference);
        assert_eq!(m.count(id, |k| matches!(k, port::EventKind::MapCancelled)), maps, "a flush cancels the map");
        assert_eq!(m.handle.stats().flushes, maps as u64);
        let (_, ok) = m.run(Srb::execute_scsi(LU0, &TEST_UNIT_READY));
        assert_eq!(ok.srb_status, SrbStatus::SUCCESS);
        m.assert_no_violations();
    }
}

#[test]
fn odd_length_inquiry_on_a_16_bit_channel() {
    for card in Card::BOTH {
        let (t, _) = ram_target(64);
        let (_, data) = scsi::execute_on_target(&t, scsi::Nexus::new(1), 0, &inquiry(37), &[], 37);
        assert_eq!(data.len(), 37);
        let m = Machine::card(card, 5, 64);
        let buf = m.alloc(38, Placement::Any);
        let (_, s) = m.run(Srb::execute_scsi(LU0, &inquiry(37)).with_data(&buf, 0, 37, SrbFlags::DATA_IN));
        // The card counts bytes: the last word cycle carries one byte, and the SRB moved exactly what it asked for.
        assert_eq!(s.srb_status, SrbStatus::SUCCESS, "{s:?}");
        assert_eq!(s.data_transfer_length, 37);
        m.assert_no_violations();
        let mut got = vec![0u8; 37];
        buf.read(0, &mut got).expect("read");
        assert_eq!(got, data);
    }
}

/// The same data path on an EISA machine: the controller reaches all of system memory through its high page
/// registers and its address counter runs across 64 KiB pages, so a physically contiguous buffer never bounces,
/// above 16 MiB or not; only physically scattered pages still need the map registers (system DMA has no
/// scatter/gather).
mod eisa {
    use super::*;

    fn round_trip(channel: u8, placement: Placement, page_offset: usize, len: usize, seed: u64) -> Machine {
        round_trip_on(Card::Reference, SystemBus::Eisa, channel, placement, page_offset, 0, len, seed)
    }

    #[test]
    fn channel5_64k_round_trip_above_16m_without_bounce() {
        let m = round_trip(5, Placement::Above16M, 0, 64 << 10, 11);
        let s = m.hal.stats();
        assert_eq!((s.maps, s.bounced_maps, s.bounced_bytes), (2, 0, 0), "{s:?}");
    }

    #[test]
    fn channel1_64k_round_trip_above_16m_across_a_dma_page_without_bounce() {
        // 4095 bytes into a page: the 64 KiB run crosses a 64 KiB boundary, which a PC/AT 8237 cannot.
        let m = round_trip(1, Placement::Above16M, 4095, 64 << 10, 12);
        assert_eq!(m.hal.stats().bounced_maps, 0);
    }

    #[test]
    fn channel6_single_block_above_16m_without_bounce() {
        let m = round_trip(6, Placement::Above16M, 512, 512, 13);
        assert_eq!(m.hal.stats().bounced_maps, 0);
    }

    #[test]
    fn channel5_scattered_pages_still_bounce() {
        let m = round_trip(5, Placement::Scattered { seed: 7 }, 0, 64 << 10, 14);
        assert_eq!(m.hal.stats().bounced_maps, 2);
    }

    #[test]
    fn channel1_contiguous_low_round_trip() {
        let m = round_trip(1, Placement::Contiguous { below_16m: true, align: 64 << 10 }, 7, 32 << 10, 15);
        assert_eq!(m.hal.stats().bounced_maps, 0);
    }

    #[test]
    fn the_same_buffers_bounce_on_a_pc_at() {
        let m = round_trip_on(Card::Reference, SystemBus::Isa, 5, Placement::Above16M, 0, 0, 64 << 10, 16);
        assert_eq!(m.hal.stats().bounced_maps, 2);
    }
}
