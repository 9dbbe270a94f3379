//! CHAP authentication with MD5 (RFC 1994, as used by RFC 7143 §12.1.3), one-way or mutual.

use base64::Engine;
use md5::{Digest, Md5};
use rand::RngCore;

use crate::config::Chap;

/// CHAP_A value for MD5 (RFC 1994 §4.1, IANA PPP authentication algorithm 5).
const CHAP_MD5: &str = "5";
/// Challenge length we send: 16 bytes, as large as the MD5 output.
const CHALLENGE_LEN: usize = 16;
/// Longest challenge we accept from the initiator for mutual CHAP (RFC 7143 §12.1.3
/// bounds binary values at 1024 bytes).
const MAX_PEER_CHALLENGE: usize = 1024;

/// Why authentication failed; every variant ends the login with status 0x0201.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// the initiator offers no CHAP algorithm we implement
    #[error("no supported CHAP algorithm offered")]
    NoAlgorithm,
    /// a CHAP key is missing or malformed
    #[error("malformed or missing CHAP key {0}")]
    Malformed(&'static str),
    /// wrong CHAP name or response
    #[error("CHAP credentials do not match")]
    BadCredentials,
    /// the initiator asked for mutual CHAP but the target has no secret for it
    #[error("mutual CHAP requested but not configured")]
    MutualNotConfigured,
    /// the initiator sent back our own challenge (RFC 7143 §12.1.3 reflection check)
    #[error("initiator reflected the target's challenge")]
    ReflectedChallenge,
    /// CHAP keys out of order
    #[error("unexpected CHAP step")]
    OutOfOrder,
}

/// The CHAP response value: MD5 over identifier, secret and challenge (RFC 1994 §4.1).
pub fn chap_response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

/// Decodes a binary value: `0x` hex or `0b` base64 (RFC 7143 §6.1 binary-value).
pub fn decode_binary(v: &str) -> Option<Vec<u8>> {
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        // An odd number of digits has an implied leading zero.
        let padded = if hex.len() % 2 == 1 { format!("0{hex}") } else { hex.to_owned() };
        (0..padded.len()).step_by(2).map(|i| u8::from_str_radix(padded.get(i..i + 2)?, 16).ok()).collect()
    } else if let Some(b64) = v.strip_prefix("0b").or_else(|| v.strip_prefix("0B")) {
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    } else {
        None
    }
}

pub fn encode_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Equality that does not stop at the first difference, so timing says nothing about
/// how much of a response was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[derive(Debug)]
enum State {
    AwaitAlgorithm,
    AwaitResponse { id: u8, challenge: Vec<u8> },
    Done,
}

/// The target's side of one CHAP exchange.
#[derive(Debug)]
pub struct ChapAuth {
    creds: Chap,
    state: State,
}

/// Result of feeding one batch of keys to [`ChapAuth`].
#[derive(Debug, PartialEq, Eq)]
pub enum ChapStep {
    /// Keys to send; the exchange goes on.
    Continue(Vec<(String, String)>),
    /// The initiator proved itself; keys to send (the mutual response, if asked).
    Authenticated(Vec<(String, String)>),
}

impl ChapAuth {
    pub fn new(creds: Chap) -> ChapAuth {
        ChapAuth { creds, state: State::AwaitAlgorithm }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Processes the CHAP keys of one login request.
    pub fn step(&mut self, pairs: &[(String, String)]) -> Result<ChapStep, AuthError> {
        match &self.state {
            State::AwaitAlgorithm => {
                let Some(algs) = get(pairs, "CHAP_A") else {
                    // AuthMethod may arrive alone first; wait for CHAP_A.
                    return Ok(ChapStep::Continue(Vec::new()));
                };
                if !algs.split(',').any(|a| a == CHAP_MD5) {
                    return Err(AuthError::NoAlgorithm);
                }
                let mut rng = rand::thread_rng();
                let id = (rng.next_u32() & 0xff) as u8;
                let mut challenge = vec![0u8; CHALLENGE_LEN];
                rng.fill_bytes(&mut challenge);
                let reply = vec![
                    ("CHAP_A".to_owned(), CHAP_MD5.to_owned()),
                    ("CHAP_I".to_owned(), id.to_string()),
                    ("CHAP_C".to_owned(), encode_hex(&challenge)),
                ];
                self.state = State::AwaitResponse { id, challenge };
                Ok(ChapStep::Continue(reply))
            }
            State::AwaitResponse { id, challenge } => {
                let name = get(pairs, "CHAP_N").ok_or(AuthError::Malformed("CHAP_N"))?;
                let resp = get(pairs, "CHAP_R").and_then(decode_binary).ok_or(AuthError::Malformed("CHAP_R"))?;
                let expected = chap_response(*id, self.creds.secret.as_bytes(), challenge);
                let name_ok = name == self.creds.user;
                if !(same(&resp, &expected) && name_ok) {
                    return Err(AuthError::BadCredentials);
                }
                let reply = match (get(pairs, "CHAP_I"), get(pairs, "CHAP_C")) {
                    (None, None) => Vec::new(),
                    (Some(peer_id), Some(peer_challenge)) => {
                        let peer_id: u8 = peer_id.parse().map_err(|_| AuthError::Malformed("CHAP_I"))?;
                        let peer_challenge = decode_binary(peer_challenge)
                            .filter(|c| !c.is_empty() && c.len() <= MAX_PEER_CHALLENGE)
                            .ok_or(AuthError::Malformed("CHAP_C"))?;
                        if same(&peer_challenge, challenge) {
                            return Err(AuthError::ReflectedChallenge);
                        }
                        let (user, secret) = self.creds.mutual.as_ref().ok_or(AuthError::MutualNotConfigured)?;
                        let r = chap_response(peer_id, secret.as_bytes(), &peer_challenge);
                        vec![("CHAP_N".to_owned(), user.clone()), ("CHAP_R".to_owned(), encode_hex(&r))]
                    }
                    _ => return Err(AuthError::Malformed("CHAP_I/CHAP_C")),
                };
                self.state = State::Done;
                Ok(ChapStep::Authenticated(reply))
            }
            State::Done => Err(AuthError::OutOfOrder),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn creds(mutual: bool) -> Chap {
        Chap {
            user: "alice".into(),
            secret: "alicesecret1".into(),
            mutual: mutual.then(|| ("tgt".into(), "targetsecret".into())),
        }
    }

    fn challenge(reply: &[(String, String)]) -> (u8, Vec<u8>) {
        let id = get(reply, "CHAP_I").and_then(|v| v.parse().ok()).unwrap_or(0);
        let c = get(reply, "CHAP_C").and_then(decode_binary).unwrap_or_default();
        (id, c)
    }

    #[test]
    fn rfc_1994_md5_vector() {
        // MD5 of id 0x01, "secret", challenge 0x00..0x0f, computed independently.
        let c: Vec<u8> = (0u8..16).collect();
        let mut h = Md5::new();
        h.update([1u8]);
        h.update(b"secret");
        h.update(&c);
        let direct: [u8; 16] = h.finalize().into();
        assert_eq!(chap_response(1, b"secret", &c), direct);
        assert_ne!(chap_response(2, b"secret", &c), direct);
    }

    #[test]
    fn binary_values_hex_and_base64() {
        assert_eq!(decode_binary("0x0a0B"), Some(vec![10, 11]));
        assert_eq!(decode_binary("0xabc"), Some(vec![0x0a, 0xbc]));
        assert_eq!(decode_binary("0bAQID"), Some(vec![1, 2, 3]));
        assert_eq!(decode_binary("0xzz"), None);
        assert_eq!(decode_binary("1234"), None);
    }

    #[test]
    fn one_way_chap_accepts_right_secret_and_rejects_wrong() {
        for (secret, ok) in [("alicesecret1", true), ("wrong", false)] {
            let mut a = ChapAuth::new(creds(false));
            let Ok(ChapStep::Continue(reply)) = a.step(&kv(&[("CHAP_A", "7,5")])) else {
                panic!("no challenge");
            };
            let (id, c) = challenge(&reply);
            assert_eq!(c.len(), CHALLENGE_LEN);
            let r = encode_hex(&chap_response(id, secret.as_bytes(), &c));
            let res = a.step(&kv(&[("CHAP_N", "alice"), ("CHAP_R", &r)]));
            assert_eq!(res.is_ok(), ok);
            assert_eq!(a.is_done(), ok);
        }
    }

    #[test]
    fn mutual_chap_answers_initiator_challenge() {
        let mut a = ChapAuth::new(creds(true));
        let Ok(ChapStep::Continue(reply)) = a.step(&kv(&[("CHAP_A", "5")])) else {
            panic!("no challenge");
        };
        let (id, c) = challenge(&reply);
        let r = encode_hex(&chap_response(id, b"alicesecret1", &c));
        let mine = [9u8; 16];
        let res = a.step(&kv(&[("CHAP_N", "alice"), ("CHAP_R", &r), ("CHAP_I", "77"), ("CHAP_C", &encode_hex(&mine))]));
        let Ok(ChapStep::Authenticated(reply)) = res else {
            panic!("mutual step failed: {res:?}");
        };
        assert_eq!(get(&reply, "CHAP_N"), Some("tgt"));
        let expect = encode_hex(&chap_response(77, b"targetsecret", &mine));
        assert_eq!(get(&reply, "CHAP_R"), Some(expect.as_str()));
    }

    #[test]
    fn reflected_challenge_is_refused() {
        let mut a = ChapAuth::new(creds(true));
        let Ok(ChapStep::Continue(reply)) = a.step(&kv(&[("CHAP_A", "5")])) else {
            panic!("no challenge");
        };
        let (id, c) = challenge(&reply);
        let r = encode_hex(&chap_response(id, b"alicesecret1", &c));
        let res = a.step(&kv(&[("CHAP_N", "alice"), ("CHAP_R", &r), ("CHAP_I", "1"), ("CHAP_C", &encode_hex(&c))]));
        assert_eq!(res, Err(AuthError::ReflectedChallenge));
    }

    #[test]
    fn md5_must_be_offered() {
        let mut a = ChapAuth::new(creds(false));
        assert_eq!(a.step(&kv(&[("CHAP_A", "6,7")])), Err(AuthError::NoAlgorithm));
    }
}
