//! Feeds arbitrary client bytes through the handshake parsers and the
//! option-haggling state machine, and checks that every reply the server
//! would send is well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nbd::handshake::{BlockSizes, DataPolicy, ExportInfo, HandshakeLimits, Negotiation, Step};
use nbd::option::{parse_client_flags, parse_option_header, OptionHeader};
use nbd::proto::{self, rep};
use nbd::Capabilities;

fn exports() -> Vec<ExportInfo> {
    let caps = Capabilities { block_status: true, min_block: 512, ..Capabilities::default() };
    vec![
        ExportInfo {
            name: "default".into(),
            description: "fuzz".into(),
            size: 1 << 30,
            block: BlockSizes::new(&caps, 32 << 20),
            caps,
        },
        ExportInfo {
            name: "ro".into(),
            description: String::new(),
            size: 4096,
            block: BlockSizes::new(&Capabilities::default(), 32 << 20),
            caps: Capabilities { read_only: true, ..Capabilities::default() },
        },
    ]
}

/// Every reply is magic, option, type, length, then exactly that much data.
/// Returns the type of the last reply.
fn check_replies(mut out: &[u8], option: u32) -> Option<u32> {
    let mut last = None;
    while !out.is_empty() {
        assert!(out.len() >= 20);
        assert_eq!(&out[..8], &proto::OPTION_REPLY_MAGIC.to_be_bytes());
        assert_eq!(u32::from_be_bytes(out[8..12].try_into().unwrap()), option);
        let len = u32::from_be_bytes(out[16..20].try_into().unwrap()) as usize;
        assert!(out.len() >= 20 + len);
        last = Some(u32::from_be_bytes(out[12..16].try_into().unwrap()));
        out = &out[20 + len..];
    }
    last
}

fuzz_target!(|data: &[u8]| {
    let Ok(client) = parse_client_flags(data) else { return };
    let mut rest = &data[4.min(data.len())..];
    let ex = exports();
    let limits = HandshakeLimits { max_option_len: 4096, max_discard_len: 8192, max_options: 64 };
    let mut n = Negotiation::new(&ex, client, limits);
    let mut out = Vec::new();
    loop {
        // Framing as on the wire, except the data length is taken from the
        // input that is left so the fuzzer reaches option bodies.
        let Ok(h) = parse_option_header(rest) else { return };
        rest = &rest[16..];
        let len = (h.length as usize).min(rest.len());
        let (body, tail) = rest.split_at(len);
        rest = tail;
        let header = OptionHeader { option: h.option, length: len as u32 };
        out.clear();
        let step = match n.data_policy(header.length) {
            DataPolicy::Read => n.handle(header, body, &mut out),
            DataPolicy::DiscardTooBig => n.too_big(header, &mut out),
            DataPolicy::Close => Step::Close,
        };
        match step {
            Step::Continue => {
                let t = check_replies(&out, h.option).expect("option left unanswered");
                assert!(t == rep::ACK || t & (1 << 31) != 0, "option ended without a final reply");
            }
            Step::Close => return,
            Step::Transmit(s) => {
                assert!(s.export < ex.len());
                assert!(s.block.min.is_power_of_two() && s.block.max % s.block.min == 0);
                assert!(!s.base_allocation || s.structured);
                return;
            }
        }
    }
});
