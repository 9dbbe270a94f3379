//! Property tests over the pure parsers, the request checks, the
//! block-status encoding and the in-memory device.

use nbd::handshake::{BlockSizes, DataPolicy, ExportInfo, HandshakeLimits, Negotiation, Session, Step};
use nbd::option::{parse_client_flags, parse_option, ClientFlags, ClientOption, OptionHeader};
use nbd::proto::{self, opt, rep, transmission_flags as tf};
use nbd::request::{parse_request_header, validate, Command, RequestHeader};
use nbd::{BlockDevice, Capabilities, Extent, MemDevice};
use proptest::prelude::*;

fn arb_session() -> impl Strategy<Value = Session> {
    (any::<u64>(), any::<u16>(), 0u32..17, 1u32..64, any::<bool>(), any::<bool>()).prop_map(
        |(size, flags, min_shift, max_mult, structured, base)| {
            let min = 1u32 << min_shift;
            Session {
                export: 0,
                structured,
                base_allocation: base,
                flags: flags | tf::HAS_FLAGS,
                block: BlockSizes { min, preferred: min.max(512), max: min * max_mult },
                size: size >> (size % 64),
            }
        },
    )
}

fn arb_header() -> impl Strategy<Value = RequestHeader> {
    (any::<u16>(), 0u16..10, any::<u64>(), any::<u64>(), any::<u32>())
        .prop_map(|(flags, kind, handle, offset, length)| RequestHeader { flags, kind, handle, offset, length })
}

proptest! {
    #[test]
    fn request_header_round_trips(h in arb_header()) {
        prop_assert_eq!(parse_request_header(&h.encode()), Ok(h));
    }

    #[test]
    fn accepted_requests_lie_inside_the_export(h in arb_header(), s in arb_session()) {
        if let Ok(cmd) = validate(&h, &s) {
            let min = u64::from(s.block.min);
            let inside = |off: u64, len: u32| {
                off.checked_add(u64::from(len)).is_some_and(|e| e <= s.size)
                    && off.is_multiple_of(min)
                    && u64::from(len).is_multiple_of(min)
            };
            match cmd {
                Command::Read { offset, length } | Command::Write { offset, length, .. } => {
                    prop_assert!(inside(offset, length));
                    prop_assert!(length <= s.block.max);
                }
                Command::Trim { offset, length, .. }
                | Command::WriteZeroes { offset, length, .. }
                | Command::BlockStatus { offset, length, .. } => prop_assert!(inside(offset, length)),
                Command::Disconnect | Command::Flush => {}
            }
            if s.flags & tf::READ_ONLY != 0 {
                let writes = matches!(cmd, Command::Write { .. } | Command::Trim { .. } | Command::WriteZeroes { .. });
                prop_assert!(!writes);
            }
        }
    }

    #[test]
    fn option_parser_takes_any_bytes(code in 0u32..16, data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_option(code, &data);
        let _ = parse_client_flags(&data);
    }

    #[test]
    fn info_option_round_trips(name in "[a-z0-9/._-]{0,40}", reqs in proptest::collection::vec(any::<u16>(), 0..20)) {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&(reqs.len() as u16).to_be_bytes());
        for r in &reqs {
            d.extend_from_slice(&r.to_be_bytes());
        }
        prop_assert_eq!(
            parse_option(opt::GO, &d),
            Ok(ClientOption::Info { go: true, name: &name, requests: reqs.clone() })
        );
        // Any strict prefix is syntactically invalid.
        for cut in 0..d.len() {
            prop_assert!(parse_option(opt::GO, &d[..cut]).is_err());
        }
    }

    #[test]
    fn negotiation_always_answers_with_well_formed_replies(
        options in proptest::collection::vec((0u32..14, proptest::collection::vec(any::<u8>(), 0..64)), 1..20)
    ) {
        let caps = Capabilities { block_status: true, ..Capabilities::default() };
        let ex = vec![ExportInfo {
            name: "default".into(),
            description: "d".into(),
            size: 1 << 20,
            block: BlockSizes::new(&caps, 1 << 25),
            caps,
        }];
        let client = ClientFlags { fixed_newstyle: true, no_zeroes: true };
        let mut n = Negotiation::new(&ex, client, HandshakeLimits::default());
        for (code, data) in options {
            let header = OptionHeader { option: code, length: data.len() as u32 };
            prop_assert_eq!(n.data_policy(header.length), DataPolicy::Read);
            let mut out = Vec::new();
            match n.handle(header, &data, &mut out) {
                Step::Continue => {
                    let mut rest = &out[..];
                    let mut last = 0;
                    while !rest.is_empty() {
                        prop_assert_eq!(&rest[..8], &proto::OPTION_REPLY_MAGIC.to_be_bytes());
                        prop_assert_eq!(u32::from_be_bytes(rest[8..12].try_into().unwrap()), code);
                        last = u32::from_be_bytes(rest[12..16].try_into().unwrap());
                        let len = u32::from_be_bytes(rest[16..20].try_into().unwrap()) as usize;
                        rest = &rest[20 + len..];
                    }
                    prop_assert!(last == rep::ACK || last & (1 << 31) != 0);
                }
                Step::Close | Step::Transmit(_) => break,
            }
        }
    }

    #[test]
    fn descriptors_are_nonzero_merged_and_within_request(
        extents in proptest::collection::vec((0u64..100_000, any::<bool>()), 0..40),
        length in 1u32..1_000_000,
        req_one in any::<bool>(),
    ) {
        let ex: Vec<Extent> = extents.iter().map(|&(l, h)| Extent { length: l, hole: h, zero: h }).collect();
        let d = nbd::reply::descriptors(&ex, length, req_one);
        prop_assert!(!d.is_empty());
        prop_assert!(d.iter().all(|&(l, _)| l > 0));
        prop_assert!(d.iter().map(|&(l, _)| u64::from(l)).sum::<u64>() <= u64::from(length));
        prop_assert!(d.windows(2).all(|w| w[0].1 != w[1].1));
        if req_one {
            prop_assert_eq!(d.len(), 1);
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    Zero(u64, u64, bool),
    Trim(u64, u64),
}

const DEV: u64 = 64 * 1024;

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..DEV, proptest::collection::vec(any::<u8>(), 1..9000)).prop_map(|(o, d)| {
            let o = o.min(DEV - d.len() as u64);
            Op::Write(o, d)
        }),
        (0..DEV, 1u64..20_000, any::<bool>()).prop_map(|(o, l, k)| Op::Zero(o, l.min(DEV - o), k)),
        (0..DEV, 1u64..20_000).prop_map(|(o, l)| Op::Trim(o, l.min(DEV - o))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mem_device_matches_a_flat_model_and_holes_read_zero(ops in proptest::collection::vec(arb_op(), 1..30)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let dev = MemDevice::with_chunk_size(DEV, 4096);
            let mut model = vec![0u8; DEV as usize];
            for op in &ops {
                match op {
                    Op::Write(o, d) => {
                        dev.write(*o, bytes::Bytes::from(d.clone()), false).await.unwrap();
                        model[*o as usize..*o as usize + d.len()].copy_from_slice(d);
                    }
                    Op::Zero(o, l, keep) => {
                        dev.write_zeroes(*o, *l, *keep, false).await.unwrap();
                        model[*o as usize..(*o + *l) as usize].fill(0);
                    }
                    // This device zeroes what it trims.
                    Op::Trim(o, l) => {
                        dev.trim(*o, *l, false).await.unwrap();
                        model[*o as usize..(*o + *l) as usize].fill(0);
                    }
                }
            }
            let all = dev.read(0, DEV as u32).await.unwrap();
            prop_assert!(all[..] == model[..]);
            let st = dev.block_status(0, DEV as u32).await.unwrap();
            prop_assert_eq!(st.iter().map(|e| e.length).sum::<u64>(), DEV);
            let mut pos = 0usize;
            for e in st {
                if e.zero {
                    prop_assert!(model[pos..pos + e.length as usize].iter().all(|&b| b == 0));
                }
                pos += e.length as usize;
            }
            Ok(())
        })?;
    }
}
