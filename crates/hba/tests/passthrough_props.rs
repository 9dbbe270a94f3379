//! Property test: pass-through SRBs of random size, buffer offset, page placement, direction and sub-range size arrive
//! byte-exact, in `ceil(len / MaximumTransferLength)` DMA operations with one flush each.

mod common;

use common::machine::{Machine, LU0};
use common::*;
use hal::Placement;
use hba::HbaConfig;
use port::{DataDirection, PassThrough, SrbStatus};
use proptest::prelude::*;

fn placement() -> impl Strategy<Value = Placement> {
    prop_oneof![
        Just(Placement::Any),
        Just(Placement::Below16M),
        Just(Placement::Above16M),
        any::<u64>().prop_map(|seed| Placement::Scattered { seed }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn pass_through_is_byte_exact_in_the_expected_number_of_operations(
        channel in prop_oneof![Just(1u8), Just(3u8), Just(5u8), Just(7u8)],
        pages in prop_oneof![Just(1u32), Just(4), Just(15), Just(16), Just(32)],
        blocks in 1u32..=600,
        offset_words in 0usize..2048,
        place in placement(),
        write_first in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let max_transfer = pages * 4096;
        let m = Machine::with(HbaConfig { dma_channel: channel, max_transfer, ..HbaConfig::default() }, 1024);
        let len = blocks as usize * BLOCK as usize;
        // Word offsets keep 16-bit channels' AlignmentMask satisfied; on 8-bit channels any offset works.
        let offset = if channel >= 5 { offset_words * 2 } else { offset_words * 2 + 1 };
        let buf = m.alloc(offset + len, place);
        let data = pattern(len, seed);
        let lba = u64::from(seed as u32 % (1024 - blocks));
        let req = |cdb: Vec<u8>, direction| PassThrough {
            address: LU0, cdb, direction, buffer: Some(buf.clone()), offset, length: len as u32,
            timeout_secs: 30, tagged: false,
        };
        // The miniport clamps sub-ranges to one 8237 programming: 64 KiB on controller 1, 128 KiB on controller 2.
        let segment = max_transfer.min(if channel >= 5 { 128 << 10 } else { 64 << 10 });
        let expected_ops = len.div_ceil(segment as usize);
        if write_first {
            buf.write(offset, &data).expect("fill");
            let srb = m.handle.pass_through_srb(&req(write16(lba, blocks), DataDirection::Out)).expect("accepted");
            let (id, s) = m.run(srb);
            prop_assert_eq!(s.srb_status, SrbStatus::SUCCESS);
            prop_assert_eq!(m.maps(id), expected_ops);
            prop_assert_eq!(m.flushes(id), expected_ops);
            let (_, back) = scsi::execute_on_target(
                &target_of(&m), scsi::Nexus::new(9), 0, &read16(lba, blocks), &[], len);
            prop_assert!(back == data, "the disk holds other bytes than were written");
        } else {
            let disk_data = scsi::execute_on_target(
                &target_of(&m), scsi::Nexus::new(9), 0, &write16(lba, blocks), &data, 0);
            prop_assert!(disk_data.0.is_good());
            let srb = m.handle.pass_through_srb(&req(read16(lba, blocks), DataDirection::In)).expect("accepted");
            let (id, s) = m.run(srb);
            prop_assert_eq!(s.srb_status, SrbStatus::SUCCESS);
            prop_assert_eq!(m.maps(id), expected_ops);
            prop_assert_eq!(m.flushes(id), expected_ops);
            let mut got = vec![0u8; len];
            buf.read(offset, &mut got).expect("read");
            prop_assert!(got == data, "the buffer holds other bytes than the disk");
        }
        prop_assert!(m.handle.violations().is_empty(), "{:?}", m.handle.violations());
    }
}

/// The disk behind the machine's adapter, as a target of its own (for checking the medium without the adapter).
fn target_of(m: &Machine) -> scsi::Target {
    let t = scsi::Target::new();
    t.add_lun(0, m.disk.clone());
    t
}
