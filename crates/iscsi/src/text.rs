//! Text key=value data as carried by Login and Text PDUs (RFC 7143 §6.1).

use bytes::{BufMut, Bytes, BytesMut};

/// Longest key name (RFC 7143 §6.1: "key names ... MUST NOT exceed 63 bytes").
pub const MAX_KEY_LEN: usize = 63;
/// Longest value we accept. Ordinary values are at most 255 bytes, but CHAP challenges and
/// responses may be longer (RFC 7143 §6.1 allows 8192 for binary values).
pub const MAX_VALUE_LEN: usize = 8192;
/// Most text bytes one negotiation sequence may span across continued PDUs; bounds the
/// memory a single login can make the target hold.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// A malformed text data segment.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// a pair lacks its "=" separator
    #[error("key without '=': {0:?}")]
    MissingEquals(String),
    /// key name empty, too long or with characters outside RFC 7143 §6.1
    #[error("invalid key name {0:?}")]
    BadKey(String),
    /// value too long or not UTF-8
    #[error("invalid value for key {0}")]
    BadValue(String),
    /// the same key appears twice in one request (RFC 7143 §6.2)
    #[error("key {0} sent more than once")]
    Duplicate(String),
    /// the continued text grew past the bound this target keeps
    #[error("text exceeds {MAX_TEXT_BYTES} bytes")]
    TooLong,
}

/// Key characters allowed by RFC 7143 §6.1 ("a-z, A-Z, 0-9, '.', '-', '+', '@', '_'").
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'@' | b'_'))
}

/// Parses NUL-separated `key=value` pairs, in order. A missing NUL after the last pair is
/// accepted; runs of NULs (padding) are skipped.
pub fn parse_text(data: &[u8]) -> Result<Vec<(String, String)>, TextError> {
    if data.len() > MAX_TEXT_BYTES {
        return Err(TextError::TooLong);
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for item in data.split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let Some(eq) = item.iter().position(|&b| b == b'=') else {
            return Err(TextError::MissingEquals(String::from_utf8_lossy(item).into_owned()));
        };
        let key = std::str::from_utf8(&item[..eq])
            .ok()
            .filter(|k| valid_key(k))
            .ok_or_else(|| TextError::BadKey(String::from_utf8_lossy(&item[..eq]).into_owned()))?;
        let raw = &item[eq + 1..];
        let value = std::str::from_utf8(raw)
            .ok()
            .filter(|_| raw.len() <= MAX_VALUE_LEN)
            .ok_or_else(|| TextError::BadValue(key.to_owned()))?;
        if out.iter().any(|(k, _)| k == key) {
            return Err(TextError::Duplicate(key.to_owned()));
        }
        out.push((key.to_owned(), value.to_owned()));
    }
    Ok(out)
}

/// Serialises pairs as `key=value\0` each.
pub fn encode_text<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Bytes {
    let mut b = BytesMut::new();
    for (k, v) in pairs {
        b.put_slice(k.as_ref().as_bytes());
        b.put_u8(b'=');
        b.put_slice(v.as_ref().as_bytes());
        b.put_u8(0);
    }
    b.freeze()
}

/// Collects the data segments of a text exchange that spans PDUs with the C bit set.
#[derive(Debug, Default)]
pub struct TextAccumulator {
    buf: BytesMut,
}

impl TextAccumulator {
    pub fn push(&mut self, data: &[u8]) -> Result<(), TextError> {
        if self.buf.len() + data.len() > MAX_TEXT_BYTES {
            self.buf.clear();
            return Err(TextError::TooLong);
        }
        self.buf.put_slice(data);
        Ok(())
    }

    /// Takes the collected bytes, leaving the accumulator empty.
    pub fn take(&mut self) -> BytesMut {
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_login_keys_in_order() {
        let p = parse_text(b"InitiatorName=iqn.x:y\0SessionType=Normal\0AuthMethod=CHAP,None\0").unwrap_or_default();
        assert_eq!(
            p,
            vec![
                ("InitiatorName".into(), "iqn.x:y".into()),
                ("SessionType".into(), "Normal".into()),
                ("AuthMethod".into(), "CHAP,None".into()),
            ]
        );
    }

    #[test]
    fn empty_value_is_allowed() {
        assert_eq!(parse_text(b"SendTargets=\0"), Ok(vec![("SendTargets".into(), String::new())]));
    }

    #[test]
    fn rejects_duplicates_missing_equals_and_bad_keys() {
        assert!(matches!(parse_text(b"A=1\0A=2\0"), Err(TextError::Duplicate(_))));
        assert!(matches!(parse_text(b"A\0"), Err(TextError::MissingEquals(_))));
        assert!(matches!(parse_text(b"A B=1\0"), Err(TextError::BadKey(_))));
        let long = format!("{}=1", "K".repeat(64));
        assert!(matches!(parse_text(long.as_bytes()), Err(TextError::BadKey(_))));
    }

    #[test]
    fn accumulator_is_bounded() {
        let mut acc = TextAccumulator::default();
        assert!(acc.push(&vec![b'a'; MAX_TEXT_BYTES]).is_ok());
        assert_eq!(acc.push(b"x"), Err(TextError::TooLong));
        assert!(acc.take().is_empty());
    }

    proptest! {
        #[test]
        fn encode_then_parse_roundtrips(pairs in proptest::collection::btree_map("[A-Za-z][A-Za-z0-9.+@_-]{0,20}", "[ -~&&[^=]]{0,40}", 0..10)) {
            let v: Vec<(String, String)> = pairs.into_iter().collect();
            prop_assert_eq!(parse_text(&encode_text(&v)), Ok(v));
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_text(&data);
        }
    }
}
