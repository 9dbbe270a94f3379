//! Login text through the text parser, the operational negotiator and the login state
//! machine: must never panic whatever the keys and values.
#![no_main]

use bytes::Bytes;
use iscsi::config::{Limits, TargetConfig};
use iscsi::login::LoginMachine;
use iscsi::negotiate::{Negotiator, SessionType};
use iscsi::pdu::{LoginRequest, Sn, Stage};
use iscsi::text::parse_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = parse_text(data) {
        let mut n = Negotiator::new(Limits::default(), SessionType::Normal);
        let _ = n.respond(&pairs);
        let p = n.params();
        assert!(p.first_burst_length <= p.max_burst_length);
    }
    let targets = vec![TargetConfig::new(
        "iqn.2026-11.io.scsiport:fuzz",
        std::net::SocketAddr::from(([127, 0, 0, 1], 3260)),
    )];
    let mut m = LoginMachine::new(&targets);
    for (i, chunk) in data.chunks(64).enumerate() {
        let req = LoginRequest {
            transit: i % 2 == 0,
            cont: i % 3 == 1,
            csg: if i == 0 { Stage::Security } else { Stage::Operational },
            nsg: Some(Stage::FullFeature),
            version_max: 0,
            version_min: 0,
            isid: [0; 6],
            tsih: 0,
            itt: 1,
            cid: 0,
            cmd_sn: Sn(1),
            exp_stat_sn: Sn(0),
            data: Bytes::copy_from_slice(chunk),
        };
        let _ = m.on_request(&req, |_| false);
    }
});
