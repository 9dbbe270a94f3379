//! Property test: batches of concurrent SRBs on one logical unit, a random mix of tagged (SIMPLE, ORDERED, HEAD OF
//! QUEUE) and untagged, pass-through and class-sized, reads and writes of disjoint extents in random page
//! placements. Every SRB succeeds, every byte matches a shadow copy of the disk, one flush follows every map, and the
//! verifier sees nothing.

mod common;

use common::machine::{Machine, LU0};
use common::*;
use hal::Placement;
use hba::HbaConfig;
use port::{queue_action, DataDirection, PassThrough, Srb, SrbFlags, SrbStatus};
use proptest::prelude::*;

const DISK_BLOCKS: u64 = 8192;
/// Extents are laid out in slots of this many blocks, so that the SRBs of one batch never overlap.
const SLOT_BLOCKS: u32 = 512;

#[derive(Clone, Debug)]
struct Op {
    slot: u32,
    blocks: u32,
    write: bool,
    passthrough: bool,
    tag: Option<u8>,
    place: Placement,
}

fn op() -> impl Strategy<Value = Op> {
    (
        0..(DISK_BLOCKS as u32 / SLOT_BLOCKS),
        1u32..=SLOT_BLOCKS,
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            Just(None),
            Just(Some(queue_action::SIMPLE_TAG)),
            Just(Some(queue_action::SIMPLE_TAG)),
            Just(Some(queue_action::ORDERED_QUEUE_TAG)),
            Just(Some(queue_action::HEAD_OF_QUEUE_TAG)),
        ],
        prop_oneof![
            Just(Placement::Any),
            Just(Placement::Above16M),
            any::<u64>().prop_map(|seed| Placement::Scattered { seed })
        ],
    )
        .prop_map(|(slot, blocks, write, passthrough, tag, place)| Op {
            slot,
            blocks,
            write,
            passthrough,
            tag,
            place,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_tagged_and_untagged_srbs_are_byte_exact(
        depth in prop_oneof![Just(2u8), Just(4), Just(16)],
        batches in proptest::collection::vec(proptest::collection::vec(op(), 1..10), 1..4),
        seed in any::<u64>(),
    ) {
        let m = Machine::with(HbaConfig { queue_depth: depth, ..HbaConfig::default() }, DISK_BLOCKS);
        let mut shadow = vec![0u8; (DISK_BLOCKS * u64::from(BLOCK)) as usize];
        for (b, batch) in batches.into_iter().enumerate() {
            let mut used = std::collections::HashSet::new();
            let batch: Vec<Op> = batch.into_iter().filter(|o| used.insert(o.slot)).collect();
            let mut pending = Vec::new();
            let mut srbs = Vec::new();
            for (i, o) in batch.iter().enumerate() {
                // Class-sized SRBs stay within MaximumTransferLength; pass-through ones take any size.
                let blocks = if o.passthrough { o.blocks } else { o.blocks.min(128) };
                let len = (blocks * BLOCK) as usize;
                let lba = o.slot * SLOT_BLOCKS;
                let buf = m.alloc(len, o.place.clone());
                let data = pattern(len, seed ^ ((b * 64 + i) as u64));
                if o.write {
                    buf.write(0, &data).unwrap();
                }
                let cdb = if o.write { write10(lba, blocks as u16) } else { read10(lba, blocks as u16) };
                let mut srb = if o.passthrough {
                    let req = PassThrough {
                        address: LU0,
                        cdb,
                        direction: if o.write { DataDirection::Out } else { DataDirection::In },
                        buffer: Some(buf.clone()),
                        offset: 0,
                        length: len as u32,
                        timeout_secs: 30,
                        tagged: o.tag.is_some(),
                    };
                    m.handle.pass_through_srb(&req).expect("accepted")
                } else {
                    let flags = if o.write { SrbFlags::DATA_OUT } else { SrbFlags::DATA_IN };
                    let mut srb = Srb::execute_scsi(LU0, &cdb).with_data(&buf, 0, len as u32, flags);
                    if o.tag.is_some() {
                        srb.srb_flags.insert(SrbFlags::QUEUE_ACTION_ENABLE);
                    }
                    srb
                };
                if let Some(action) = o.tag {
                    srb.queue_action = action;
                }
                srbs.push(srb);
                pending.push((buf, data, lba, len));
            }
            for (i, (id, s)) in m.run_all(srbs).into_iter().enumerate() {
                prop_assert_eq!(s.srb_status, SrbStatus::SUCCESS, "{:?}", batch[i]);
                let (buf, data, lba, len) = &pending[i];
                prop_assert_eq!(m.maps(id), m.flushes(id), "one flush per map");
                let at = (*lba * BLOCK) as usize;
                if batch[i].write {
                    shadow[at..at + len].copy_from_slice(data);
                } else {
                    let mut got = vec![0u8; *len];
                    buf.read(0, &mut got).unwrap();
                    prop_assert!(got == shadow[at..at + len], "read of {:?} differs from the shadow copy", batch[i]);
                }
            }
        }
        prop_assert!(m.handle.violations().is_empty(), "{:?}", m.handle.violations());
    }
}
