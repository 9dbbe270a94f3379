//! Decodes arbitrary request headers and validates them against a session
//! built from the input, checking that anything accepted is in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nbd::handshake::{BlockSizes, Session};
use nbd::proto::transmission_flags as tf;
use nbd::request::{parse_request_header, validate, Command};

fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let (knobs, header) = data.split_at(12);
    let size = u64::from_be_bytes(knobs[..8].try_into().unwrap());
    let flags = u16::from_be_bytes([knobs[8], knobs[9]]) | tf::HAS_FLAGS;
    let min = 1u32 << (knobs[10] % 17);
    let max = (u32::from(knobs[11]) + 1) * min * 16;
    let s = Session {
        export: 0,
        structured: knobs[10] & 0x80 != 0,
        base_allocation: knobs[11] & 1 != 0,
        flags,
        block: BlockSizes { min, preferred: min.max(512), max },
        size,
    };
    let Ok(h) = parse_request_header(header) else { return };
    assert_eq!(parse_request_header(&h.encode()), Ok(h));
    let Ok(cmd) = validate(&h, &s) else { return };
    let in_range = |offset: u64, length: u32| {
        offset.checked_add(u64::from(length)).is_some_and(|end| end <= size)
            && offset % u64::from(min) == 0
            && length % min == 0
    };
    match cmd {
        Command::Read { offset, length } | Command::Write { offset, length, .. } => {
            assert!(in_range(offset, length) && length <= max);
        }
        Command::Trim { offset, length, .. }
        | Command::WriteZeroes { offset, length, .. }
        | Command::BlockStatus { offset, length, .. } => assert!(in_range(offset, length)),
        Command::Disconnect | Command::Flush => {}
    }
    if flags & tf::READ_ONLY != 0 {
        assert!(!matches!(cmd, Command::Write { .. } | Command::Trim { .. } | Command::WriteZeroes { .. }));
    }
});
