use super::*;
use crate::chap::{chap_response, decode_binary, encode_hex};
use crate::config::Chap;
use crate::text::parse_text;

const TARGET: &str = "iqn.2026-11.io.scsiport:t0";

fn targets(chap: Option<Chap>) -> Vec<TargetConfig> {
    let mut t = TargetConfig::new(TARGET, "127.0.0.1:3260".parse().expect("addr"));
    t.chap = chap;
    t.allowed_initiators = Some(vec!["iqn.i:allowed".into(), "iqn.i:a".into()]);
    vec![t]
}

fn req(csg: Stage, nsg: Option<Stage>, text: &str) -> LoginRequest {
    LoginRequest {
        transit: nsg.is_some(),
        cont: false,
        csg,
        nsg,
        version_max: 0,
        version_min: 0,
        isid: [0x80, 0, 0, 0, 0, 1],
        tsih: 0,
        itt: 1,
        cid: 0,
        cmd_sn: Sn(5),
        exp_stat_sn: Sn(0),
        data: Bytes::from(text.replace('|', "\0")),
    }
}

fn keys(r: &LoginResponse) -> Vec<(String, String)> {
    parse_text(&r.data).unwrap_or_default()
}

fn key(r: &LoginResponse, k: &str) -> Option<String> {
    keys(r).into_iter().find(|(n, _)| n == k).map(|(_, v)| v)
}

fn no_session(_: u16) -> bool {
    false
}

#[test]
fn auth_none_then_operational_reaches_full_feature() {
    let t = targets(None);
    let mut m = LoginMachine::new(&t);
    let first = format!("InitiatorName=iqn.i:a|SessionType=Normal|TargetName={TARGET}|AuthMethod=None|");
    let LoginStep::Continue(r) = m.on_request(&req(Stage::Security, Some(Stage::Operational), &first), no_session)
    else {
        panic!("security stage failed");
    };
    assert!(r.transit);
    assert_eq!(r.nsg, Stage::Operational);
    assert_eq!(key(&r, "AuthMethod").as_deref(), Some("None"));
    assert_eq!(key(&r, "TargetPortalGroupTag").as_deref(), Some("1"));
    let op = "HeaderDigest=None|DataDigest=None|InitialR2T=No|ImmediateData=Yes|MaxBurstLength=262144|FirstBurstLength=65536|MaxRecvDataSegmentLength=65536|";
    let LoginStep::Complete(r, outcome) =
        m.on_request(&req(Stage::Operational, Some(Stage::FullFeature), op), no_session)
    else {
        panic!("operational stage did not complete");
    };
    assert_eq!((r.csg, r.nsg, r.transit), (Stage::Operational, Stage::FullFeature, true));
    assert_eq!(outcome.target, Some(0));
    assert_eq!(outcome.initial_cmd_sn, Sn(5));
    assert!(!outcome.params.initial_r2t);
    assert_eq!(outcome.params.initiator_mrdsl, 65536);
    assert_eq!(outcome.params.max_burst_length, 262144);
}

#[test]
fn discovery_session_needs_no_target_name() {
    let t = targets(None);
    let mut m = LoginMachine::new(&t);
    let step = m.on_request(
        &req(Stage::Operational, Some(Stage::FullFeature), "InitiatorName=iqn.i:x|SessionType=Discovery|"),
        no_session,
    );
    let LoginStep::Complete(_, outcome) = step else {
        panic!("discovery login failed: {step:?}");
    };
    assert_eq!(outcome.session_type, SessionType::Discovery);
    assert_eq!(outcome.target, None);
}

fn failure(step: LoginStep) -> (u8, u8) {
    match step {
        LoginStep::Fail(r) => (r.status_class, r.status_detail),
        other => panic!("expected failure, got {other:?}"),
    }
}

#[test]
fn identity_errors_have_their_status() {
    let t = targets(None);
    let op = Some(Stage::FullFeature);
    let cases = [
        ("SessionType=Normal|", status::MISSING_PARAMETER),
        ("InitiatorName=iqn.i:a|TargetName=iqn.nope|", status::NOT_FOUND),
        (&*format!("InitiatorName=iqn.i:other|TargetName={TARGET}|"), status::AUTHORIZATION_FAILURE),
    ];
    for (text, want) in cases {
        let mut m = LoginMachine::new(&t);
        assert_eq!(failure(m.on_request(&req(Stage::Operational, op, text), no_session)), want, "{text}");
    }
}

#[test]
fn nonzero_tsih_is_refused() {
    let t = targets(None);
    let mut r =
        req(Stage::Operational, Some(Stage::FullFeature), &format!("InitiatorName=iqn.i:a|TargetName={TARGET}|"));
    r.tsih = 9;
    assert_eq!(failure(LoginMachine::new(&t).on_request(&r, no_session)), status::SESSION_DOES_NOT_EXIST);
    assert_eq!(failure(LoginMachine::new(&t).on_request(&r, |ts| ts == 9)), status::TOO_MANY_CONNECTIONS);
}

fn creds() -> Chap {
    Chap { user: "u".into(), secret: "s3cret-s3cret".into(), mutual: None }
}

#[test]
fn chap_required_cannot_skip_security() {
    let t = targets(Some(creds()));
    let mut m = LoginMachine::new(&t);
    let text = format!("InitiatorName=iqn.i:a|TargetName={TARGET}|");
    assert_eq!(
        failure(m.on_request(&req(Stage::Operational, Some(Stage::FullFeature), &text), no_session)),
        status::AUTH_FAILURE
    );
    let mut m = LoginMachine::new(&t);
    let text = format!("InitiatorName=iqn.i:a|TargetName={TARGET}|AuthMethod=None|");
    assert_eq!(
        failure(m.on_request(&req(Stage::Security, Some(Stage::Operational), &text), no_session)),
        status::AUTH_FAILURE
    );
}

#[test]
fn chap_login_transits_only_after_a_good_response() {
    for (secret, ok) in [("s3cret-s3cret", true), ("bad", false)] {
        let t = targets(Some(creds()));
        let mut m = LoginMachine::new(&t);
        let text = format!("InitiatorName=iqn.i:a|TargetName={TARGET}|AuthMethod=CHAP,None|");
        let sec = Some(Stage::Operational);
        let LoginStep::Continue(r) = m.on_request(&req(Stage::Security, sec, &text), no_session) else {
            panic!("AuthMethod step failed");
        };
        assert!(!r.transit);
        assert_eq!(key(&r, "AuthMethod").as_deref(), Some("CHAP"));
        let LoginStep::Continue(r) = m.on_request(&req(Stage::Security, sec, "CHAP_A=5|"), no_session) else {
            panic!("CHAP_A step failed");
        };
        assert!(!r.transit);
        let id: u8 = key(&r, "CHAP_I").and_then(|v| v.parse().ok()).unwrap_or(0);
        let c = key(&r, "CHAP_C").and_then(|v| decode_binary(&v)).unwrap_or_default();
        let resp = encode_hex(&chap_response(id, secret.as_bytes(), &c));
        let step = m.on_request(&req(Stage::Security, sec, &format!("CHAP_N=u|CHAP_R={resp}|")), no_session);
        match step {
            LoginStep::Continue(r) if ok => assert!(r.transit && r.nsg == Stage::Operational),
            LoginStep::Fail(r) if !ok => assert_eq!((r.status_class, r.status_detail), status::AUTH_FAILURE),
            other => panic!("unexpected {other:?} for ok={ok}"),
        }
    }
}

#[test]
fn continued_text_is_joined() {
    let t = targets(None);
    let mut m = LoginMachine::new(&t);
    let mut first = req(Stage::Operational, None, "InitiatorName=iqn.i:");
    first.cont = true;
    let LoginStep::Continue(r) = m.on_request(&first, no_session) else {
        panic!("continued request failed");
    };
    assert!(r.data.is_empty());
    let rest = format!("a|TargetName={TARGET}|");
    let step = m.on_request(&req(Stage::Operational, Some(Stage::FullFeature), &rest), no_session);
    let LoginStep::Complete(_, o) = step else {
        panic!("joined login failed: {step:?}");
    };
    assert_eq!(o.initiator_name, "iqn.i:a");
}

#[test]
fn unsupported_version_is_refused() {
    let t = targets(None);
    let mut r = req(Stage::Operational, Some(Stage::FullFeature), "InitiatorName=iqn.i:a|");
    r.version_min = 2;
    r.version_max = 2;
    assert_eq!(failure(LoginMachine::new(&t).on_request(&r, no_session)), status::UNSUPPORTED_VERSION);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn any_stage() -> impl Strategy<Value = Stage> {
        prop_oneof![Just(Stage::Security), Just(Stage::Operational), Just(Stage::FullFeature)]
    }

    proptest! {
        /// Whatever an initiator sends, a target that requires CHAP never lets it reach
        /// full-feature phase without a valid CHAP response.
        #[test]
        fn chap_target_is_never_entered_without_the_secret(
            steps in proptest::collection::vec(
                (any_stage(), proptest::option::of(any_stage()), any::<bool>(),
                 proptest::collection::vec(prop_oneof![
                    Just("AuthMethod=None|".to_string()),
                    Just("AuthMethod=CHAP|".to_string()),
                    Just("CHAP_A=5|".to_string()),
                    Just("CHAP_N=u|CHAP_R=0x00112233445566778899aabbccddeeff|".to_string()),
                    Just(format!("InitiatorName=iqn.i:a|TargetName={TARGET}|")),
                    Just("SessionType=Discovery|".to_string()),
                    "[A-Za-z_]{1,8}=[ -~]{0,8}\\|",
                 ], 0..4)),
                1..8)
        ) {
            let t = targets(Some(creds()));
            let mut m = LoginMachine::new(&t);
            for (csg, nsg, cont, parts) in steps {
                let mut r = req(csg, nsg, &parts.concat());
                r.cont = cont && nsg.is_none();
                match m.on_request(&r, no_session) {
                    LoginStep::Complete(_, o) => {
                        // Only a discovery session (no target) may be entered without CHAP.
                        prop_assert_eq!(o.target, None);
                    }
                    LoginStep::Fail(_) => break,
                    LoginStep::Continue(_) => {}
                }
            }
        }
    }
}
