//! Property tests: random CDBs against the dispatcher, LBA/length arithmetic at the edges,
//! sense encodings, and the RAM backend against a flat model.

mod common;
use common::*;
use proptest::prelude::*;
use scsi::{drive, Backend, LogicalUnit, Nexus, RamBackend, ScsiStatus, Sense, SenseKey};

const STATUSES: [ScsiStatus; 4] =
    [ScsiStatus::GOOD, ScsiStatus::CHECK_CONDITION, ScsiStatus::BUSY, ScsiStatus::RESERVATION_CONFLICT];

fn opcodes() -> Vec<u8> {
    let mut v: Vec<u8> = disk().supported_commands().iter().map(|c| c.0).collect();
    v.extend_from_slice(&[0x04, 0x3B, 0x4D, 0x7F, 0xFF]);
    v
}

fn cdb_strategy() -> impl Strategy<Value = Vec<u8>> {
    (proptest::sample::select(opcodes()), proptest::collection::vec(any::<u8>(), 0..32)).prop_map(|(op, mut rest)| {
        rest.insert(0, op);
        rest
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 800, ..ProptestConfig::default() })]

    #[test]
    fn random_cdbs_end_in_a_well_formed_outcome(
        cdb in cdb_strategy(),
        initiator in 0u64..3,
        out in proptest::collection::vec(any::<u8>(), 0..1100),
        alloc in 0usize..70_000,
    ) {
        let d = disk();
        let begin = d.begin(Nexus::new(initiator), &cdb);
        if let scsi::Begin::DataIn { len, .. } = &begin {
            prop_assert!(*len > 0);
            prop_assert!(*len <= d.blocks() * 512);
        }
        let (o, data) = drive(begin, &out, alloc);
        prop_assert!(STATUSES.contains(&o.status), "status {:?}", o.status);
        prop_assert_eq!(o.status == ScsiStatus::CHECK_CONDITION, o.sense.is_some());
        if let Some(s) = &o.sense {
            prop_assert!(s.key != SenseKey::NoSense);
            let fixed = s.to_fixed();
            prop_assert_eq!(Sense::parse(&fixed).map(|p| p.code()), Some(s.code()));
        }
        prop_assert!(data.len() <= alloc);
    }

    #[test]
    fn read16_is_good_exactly_when_the_range_fits_and_the_transfer_limit_holds(
        lba in prop_oneof![0u64..8200, (u64::MAX - 10)..=u64::MAX, any::<u64>()],
        n in prop_oneof![0u32..64, any::<u32>()],
    ) {
        let d = disk();
        let fits = lba.checked_add(u64::from(n)).is_some_and(|end| end <= 8192);
        let o = match d.begin(A, &cdb16(0x88, 0, lba, n)) {
            scsi::Begin::Complete(o) => o,
            scsi::Begin::DataIn { len, task } => {
                prop_assert_eq!(len, u64::from(n) * 512);
                task.finish(0)
            }
            scsi::Begin::DataOut { .. } => panic!("READ asked for data-out"),
        };
        // Longer than the Block Limits VPD's MAXIMUM TRANSFER LENGTH (16 MiB of 512-byte blocks) is refused first.
        let max = d.config().max_transfer_bytes / 512;
        if u64::from(n) > max {
            prop_assert_eq!(sense(&o), (5, 0x24, 0x00));
        } else if fits {
            prop_assert_eq!(o.status, ScsiStatus::GOOD);
        } else {
            prop_assert_eq!(sense(&o), (5, 0x21, 0x00));
        }
    }

    #[test]
    fn sense_survives_both_formats(key in 0u8..16, asc in any::<u8>(), ascq in any::<u8>(), info in any::<Option<u64>>()) {
        let mut s = Sense::new(SenseKey::from_u8(key), scsi::AscAscq(asc, ascq));
        s.info = info;
        let d = Sense::parse(&s.to_descriptor()).unwrap();
        prop_assert_eq!((d.key, d.asc, d.ascq, d.info), (s.key, asc, ascq, info));
        let f = Sense::parse(&s.to_fixed()).unwrap();
        prop_assert_eq!(f.info, info.filter(|&i| i <= u64::from(u32::MAX)));
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn ram_backend_matches_a_flat_model(ops in proptest::collection::vec((0u8..3, 0u64..300_000, 1usize..140_000, any::<u8>()), 1..40)) {
        const SIZE: u64 = 300_000;
        let b = RamBackend::new(SIZE);
        let mut model = vec![0u8; SIZE as usize];
        for (kind, off, len, fill) in ops {
            let len = len.min((SIZE - off) as usize);
            let r = off as usize..off as usize + len;
            match kind {
                0 => {
                    let data: Vec<u8> = (0..len).map(|i| fill.wrapping_add(i as u8)).collect();
                    b.write_at(off, &data).unwrap();
                    model[r].copy_from_slice(&data);
                }
                1 => {
                    b.discard(off, len as u64).unwrap();
                    model[r].fill(0);
                }
                _ => {
                    let mut buf = vec![0u8; len];
                    b.read_at(off, &mut buf).unwrap();
                    prop_assert_eq!(&buf[..], &model[r]);
                }
            }
        }
        let mut all = vec![0u8; SIZE as usize];
        b.read_at(0, &mut all).unwrap();
        prop_assert!(all == model);
        // Anything holding data is reported allocated.
        for (i, chunk) in model.chunks(512).enumerate() {
            if chunk.iter().any(|&x| x != 0) {
                prop_assert!(b.is_allocated(i as u64 * 512, chunk.len() as u64).unwrap());
            }
        }
    }
}

#[test]
fn every_table_opcode_with_an_all_zero_cdb_is_answered() {
    let d = disk();
    for (op, sa, name) in d.supported_commands() {
        let mut cdb = [0u8; 16];
        cdb[0] = op;
        cdb[1] = sa.unwrap_or(0);
        let (o, _) = drive(d.begin(A, &cdb), &[0; 512], 4096);
        assert!(STATUSES.contains(&o.status), "{name}: {o:?}");
    }
}
