//! Framing and parsing of arbitrary bytes as initiator PDUs, with and without digests:
//! must never panic, and a framed PDU must lie inside the input.
#![no_main]

use bytes::Bytes;
use iscsi::pdu::{frame_layout, Digests, Framing, Request, BHS_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let digests = Digests {
        header: flags & 1 != 0,
        data: flags & 2 != 0,
    };
    let mut buf = rest;
    while let Ok(Framing::Complete(layout)) = frame_layout(buf, digests, 1 << 18) {
        assert!(layout.total <= buf.len());
        let mut bhs = [0u8; BHS_LEN];
        bhs.copy_from_slice(&buf[..BHS_LEN]);
        let data = Bytes::copy_from_slice(&buf[layout.data.clone()]);
        let _ = Request::parse(&bhs, &buf[layout.ahs.clone()], data);
        buf = &buf[layout.total..];
    }
});
