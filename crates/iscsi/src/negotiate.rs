//! Operational parameter negotiation (RFC 7143 §6.2, §13): the target's side.
//!
//! The target only answers offers; it does not start negotiations of its own except
//! for declaring its MaxRecvDataSegmentLength, which needs no answer (RFC 7143 §13.12).

use crate::config::{DigestPolicy, Limits};

/// Negotiated values in force for a session and its connection. Before negotiation they
/// hold the RFC 7143 §13 defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionParams {
    pub header_digest: bool,
    pub data_digest: bool,
    /// The initiator's MaxRecvDataSegmentLength: the largest data segment we may send.
    pub initiator_mrdsl: u32,
    /// Ours: the largest data segment the initiator may send us.
    pub target_mrdsl: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_outstanding_r2t: u32,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub error_recovery_level: u8,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    pub max_connections: u16,
}

impl Default for SessionParams {
    fn default() -> SessionParams {
        SessionParams {
            header_digest: false,
            data_digest: false,
            initiator_mrdsl: 8192,
            target_mrdsl: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            initial_r2t: true,
            immediate_data: true,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            default_time2wait: 2,
            default_time2retain: 20,
            max_connections: 1,
        }
    }
}

/// Kind of session, which decides which keys are relevant (RFC 7143 §13.22).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionType {
    Discovery,
    Normal,
}

/// Range of the lengths in RFC 7143 §13.12–§13.14: 512 to 2^24 - 1.
const LEN_RANGE: (u64, u64) = (512, 0x00ff_ffff);

/// Answers operational keys over the whole of one login.
#[derive(Debug)]
pub struct Negotiator {
    limits: Limits,
    session_type: SessionType,
    params: SessionParams,
    seen: Vec<String>,
    declared_mrdsl: bool,
}

/// Parses a numerical value.
fn number(value: &str) -> Option<u64> {
    // RFC 7143 §6.1: numerical values are decimal, or hex with 0x, or base64 with 0b.
    if let Some(hex) = value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        None
    } else {
        value.parse().ok()
    }
}

fn boolean(value: &str) -> Option<bool> {
    match value {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yes_no(v: bool) -> String {
    if v { "Yes" } else { "No" }.to_owned()
}

fn in_range(value: &str, (lo, hi): (u64, u64)) -> Option<u64> {
    number(value).filter(|n| (lo..=hi).contains(n))
}

const REJECT: &str = "Reject";
const IRRELEVANT: &str = "Irrelevant";
const NOT_UNDERSTOOD: &str = "NotUnderstood";

impl Negotiator {
    pub fn new(limits: Limits, session_type: SessionType) -> Negotiator {
        let params = SessionParams { target_mrdsl: limits.max_recv_data_segment_length, ..SessionParams::default() };
        Negotiator { limits, session_type, params, seen: Vec::new(), declared_mrdsl: false }
    }

    pub fn session_type(&self) -> SessionType {
        self.session_type
    }

    /// The values in force after everything answered so far.
    pub fn params(&self) -> SessionParams {
        let mut p = self.params.clone();
        // FirstBurstLength must not exceed MaxBurstLength (RFC 7143 §13.14).
        p.first_burst_length = p.first_burst_length.min(p.max_burst_length);
        p
    }

    /// Answers one batch of operational keys; returns the pairs to send back, including
    /// our own declarations the first time.
    pub fn respond(&mut self, pairs: &[(String, String)]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (key, value) in pairs {
            if let Some(answer) = self.answer(key, value) {
                out.push((key.clone(), answer));
            }
        }
        if !self.declared_mrdsl {
            self.declared_mrdsl = true;
            out.push(("MaxRecvDataSegmentLength".to_owned(), self.limits.max_recv_data_segment_length.to_string()));
        }
        out
    }

    fn answer(&mut self, key: &str, value: &str) -> Option<String> {
        // Keys the login layer handles, or that the initiator only declares.
        if matches!(key, "InitiatorName" | "InitiatorAlias" | "SessionType" | "TargetName") {
            return None;
        }
        // Renegotiating a key in the same login is a protocol error; answering Reject
        // keeps the first outcome (RFC 7143 §6.2).
        if self.seen.iter().any(|k| k == key) && key != "MaxRecvDataSegmentLength" {
            return Some(REJECT.to_owned());
        }
        self.seen.push(key.to_owned());
        let discovery = self.session_type == SessionType::Discovery;
        let p = &mut self.params;
        let l = &self.limits;
        let answer = match key {
            "HeaderDigest" => match pick_digest(value, l.header_digest) {
                Some(crc) => {
                    p.header_digest = crc;
                    digest_name(crc)
                }
                None => REJECT.to_owned(),
            },
            "DataDigest" => match pick_digest(value, l.data_digest) {
                Some(crc) => {
                    p.data_digest = crc;
                    digest_name(crc)
                }
                None => REJECT.to_owned(),
            },
            "MaxRecvDataSegmentLength" => {
                // Declarative: the initiator tells us its limit, no answer is due.
                match in_range(value, LEN_RANGE) {
                    Some(n) => {
                        p.initiator_mrdsl = n as u32;
                        return None;
                    }
                    None => REJECT.to_owned(),
                }
            }
            "MaxConnections" if discovery => IRRELEVANT.to_owned(),
            "MaxConnections" => match in_range(value, (1, 65535)) {
                // One connection per session: MC/S is not offered.
                Some(_) => {
                    p.max_connections = 1;
                    "1".to_owned()
                }
                None => REJECT.to_owned(),
            },
            "InitialR2T" | "ImmediateData" | "DataPDUInOrder" | "DataSequenceInOrder" if discovery => {
                IRRELEVANT.to_owned()
            }
            "InitialR2T" => match boolean(value) {
                // OR function (RFC 7143 §13.10).
                Some(v) => {
                    p.initial_r2t = v || l.initial_r2t;
                    yes_no(p.initial_r2t)
                }
                None => REJECT.to_owned(),
            },
            "ImmediateData" => match boolean(value) {
                // AND function (RFC 7143 §13.11).
                Some(v) => {
                    p.immediate_data = v && l.immediate_data;
                    yes_no(p.immediate_data)
                }
                None => REJECT.to_owned(),
            },
            "DataPDUInOrder" | "DataSequenceInOrder" => match boolean(value) {
                // OR function with our Yes: data is expected in order (RFC 7143 §13.18,
                // §13.19), which is all ERL 0 needs.
                Some(_) => yes_no(true),
                None => REJECT.to_owned(),
            },
            "MaxBurstLength" | "FirstBurstLength" | "MaxOutstandingR2T" if discovery => IRRELEVANT.to_owned(),
            "MaxBurstLength" => match in_range(value, LEN_RANGE) {
                Some(n) => {
                    p.max_burst_length = (n as u32).min(l.max_burst_length);
                    p.max_burst_length.to_string()
                }
                None => REJECT.to_owned(),
            },
            "FirstBurstLength" => match in_range(value, LEN_RANGE) {
                Some(n) => {
                    p.first_burst_length = (n as u32).min(l.first_burst_length);
                    p.first_burst_length.to_string()
                }
                None => REJECT.to_owned(),
            },
            "MaxOutstandingR2T" => match in_range(value, (1, 65535)) {
                Some(n) => {
                    p.max_outstanding_r2t = (n as u32).min(l.max_outstanding_r2t.max(1));
                    p.max_outstanding_r2t.to_string()
                }
                None => REJECT.to_owned(),
            },
            "DefaultTime2Wait" => match in_range(value, (0, 3600)) {
                // Maximum function (RFC 7143 §13.15).
                Some(n) => {
                    p.default_time2wait = (n as u16).max(l.default_time2wait);
                    p.default_time2wait.to_string()
                }
                None => REJECT.to_owned(),
            },
            "DefaultTime2Retain" => match in_range(value, (0, 3600)) {
                // Minimum function (RFC 7143 §13.16).
                Some(n) => {
                    p.default_time2retain = (n as u16).min(l.default_time2retain);
                    p.default_time2retain.to_string()
                }
                None => REJECT.to_owned(),
            },
            "ErrorRecoveryLevel" => match in_range(value, (0, 2)) {
                // Minimum function with our 0 (RFC 7143 §13.20).
                Some(_) => {
                    p.error_recovery_level = 0;
                    "0".to_owned()
                }
                None => REJECT.to_owned(),
            },
            // Markers were removed by RFC 7143 (§13 and Appendix); answering the old
            // boolean keys with No and their intervals as Irrelevant is what RFC 3720
            // initiators expect when markers are off.
            "OFMarker" | "IFMarker" => yes_no(false),
            "OFMarkInt" | "IFMarkInt" => IRRELEVANT.to_owned(),
            // Keys only the target may send (RFC 7143 §13.2, §13.8, §13.9).
            "TargetAlias" | "TargetAddress" | "TargetPortalGroupTag" => REJECT.to_owned(),
            _ => NOT_UNDERSTOOD.to_owned(),
        };
        Some(answer)
    }
}

fn digest_name(crc: bool) -> String {
    if crc { "CRC32C" } else { "None" }.to_owned()
}

/// Picks the first value of the initiator's list that we allow (list negotiation,
/// RFC 7143 §6.2.1). `Some(true)` is CRC32C.
fn pick_digest(list: &str, policy: DigestPolicy) -> Option<bool> {
    list.split(',').find_map(|v| match v {
        "CRC32C" if policy.allows_crc32c() => Some(true),
        "None" if policy.allows_none() => Some(false),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn get<'a>(resp: &'a [(String, String)], key: &str) -> Option<&'a str> {
        resp.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn minimum_and_maximum_functions() {
        let limits =
            Limits { max_burst_length: 65536, default_time2wait: 5, default_time2retain: 10, ..Limits::default() };
        let mut n = Negotiator::new(limits, SessionType::Normal);
        let r = n.respond(&kv(&[
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "131072"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "20"),
            ("ErrorRecoveryLevel", "2"),
        ]));
        assert_eq!(get(&r, "MaxBurstLength"), Some("65536"));
        assert_eq!(get(&r, "DefaultTime2Wait"), Some("5"));
        assert_eq!(get(&r, "DefaultTime2Retain"), Some("10"));
        assert_eq!(get(&r, "ErrorRecoveryLevel"), Some("0"));
        let p = n.params();
        assert_eq!(p.max_burst_length, 65536);
        assert!(p.first_burst_length <= p.max_burst_length);
    }

    #[test]
    fn boolean_and_or_functions() {
        let limits = Limits { initial_r2t: false, immediate_data: true, ..Limits::default() };
        let mut n = Negotiator::new(limits.clone(), SessionType::Normal);
        let r = n.respond(&kv(&[("InitialR2T", "No"), ("ImmediateData", "No")]));
        assert_eq!(get(&r, "InitialR2T"), Some("No"));
        assert_eq!(get(&r, "ImmediateData"), Some("No"));
        let mut n = Negotiator::new(Limits { initial_r2t: true, immediate_data: false, ..limits }, SessionType::Normal);
        let r = n.respond(&kv(&[("InitialR2T", "No"), ("ImmediateData", "Yes")]));
        assert_eq!(get(&r, "InitialR2T"), Some("Yes"));
        assert_eq!(get(&r, "ImmediateData"), Some("No"));
    }

    #[test]
    fn digest_list_takes_initiator_preference_among_allowed() {
        let mut n = Negotiator::new(Limits::default(), SessionType::Normal);
        let r = n.respond(&kv(&[("HeaderDigest", "CRC32C,None"), ("DataDigest", "None,CRC32C")]));
        assert_eq!(get(&r, "HeaderDigest"), Some("CRC32C"));
        assert_eq!(get(&r, "DataDigest"), Some("None"));
        let limits = Limits { header_digest: DigestPolicy::NoneOnly, ..Limits::default() };
        let mut n = Negotiator::new(limits, SessionType::Normal);
        let r = n.respond(&kv(&[("HeaderDigest", "CRC32C")]));
        assert_eq!(get(&r, "HeaderDigest"), Some("Reject"));
    }

    #[test]
    fn discovery_session_marks_data_keys_irrelevant() {
        let mut n = Negotiator::new(Limits::default(), SessionType::Discovery);
        let r = n.respond(&kv(&[("MaxBurstLength", "262144"), ("InitialR2T", "Yes")]));
        assert_eq!(get(&r, "MaxBurstLength"), Some("Irrelevant"));
        assert_eq!(get(&r, "InitialR2T"), Some("Irrelevant"));
    }

    #[test]
    fn unknown_keys_are_not_understood_and_bad_values_rejected() {
        let mut n = Negotiator::new(Limits::default(), SessionType::Normal);
        let r = n.respond(&kv(&[("X-com.example.Foo", "1"), ("MaxBurstLength", "100"), ("ImmediateData", "maybe")]));
        assert_eq!(get(&r, "X-com.example.Foo"), Some("NotUnderstood"));
        assert_eq!(get(&r, "MaxBurstLength"), Some("Reject"));
        assert_eq!(get(&r, "ImmediateData"), Some("Reject"));
    }

    #[test]
    fn mrdsl_is_declared_once_and_initiator_value_recorded() {
        let mut n = Negotiator::new(Limits::default(), SessionType::Normal);
        let r = n.respond(&kv(&[("MaxRecvDataSegmentLength", "0x10000")]));
        assert_eq!(
            get(&r, "MaxRecvDataSegmentLength"),
            Some(Limits::default().max_recv_data_segment_length.to_string().as_str())
        );
        assert_eq!(n.params().initiator_mrdsl, 65536);
        let r = n.respond(&kv(&[]));
        assert!(r.is_empty());
    }
}
