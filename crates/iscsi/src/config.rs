//! Per-target configuration: identity, access control, authentication, and the limits
//! the target offers in operational negotiation.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The default portal: loopback, the IANA iSCSI port (RFC 7143 §13.8 default port 3260).
pub const DEFAULT_PORTAL: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 3260);
/// The default target's iSCSI name.
pub const DEFAULT_TARGET_NAME: &str = "iqn.2026-11.io.scsiport:default";

/// CHAP credentials (RFC 7143 §12.1.3). `user`/`secret` authenticate the initiator;
/// `mutual` is the target's own name and secret, used when the initiator asks the target
/// to authenticate itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chap {
    pub user: String,
    pub secret: String,
    pub mutual: Option<(String, String)>,
}

/// Which digest values the target accepts for HeaderDigest or DataDigest
/// (RFC 7143 §13.1); the initiator's order of preference decides among them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestPolicy {
    NoneOnly,
    Crc32cOnly,
    Any,
}

impl DigestPolicy {
    pub fn allows_crc32c(self) -> bool {
        matches!(self, DigestPolicy::Crc32cOnly | DigestPolicy::Any)
    }

    pub fn allows_none(self) -> bool {
        matches!(self, DigestPolicy::NoneOnly | DigestPolicy::Any)
    }
}

/// What the target offers in operational negotiation (RFC 7143 §13) and the bounds it
/// keeps per connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub header_digest: DigestPolicy,
    pub data_digest: DigestPolicy,
    /// Our MaxRecvDataSegmentLength (declarative, RFC 7143 §13.12).
    pub max_recv_data_segment_length: u32,
    /// Upper bound for MaxBurstLength (minimum function, RFC 7143 §13.13).
    pub max_burst_length: u32,
    /// Upper bound for FirstBurstLength (minimum function, RFC 7143 §13.14).
    pub first_burst_length: u32,
    /// Upper bound for MaxOutstandingR2T (minimum function, RFC 7143 §13.17).
    pub max_outstanding_r2t: u32,
    /// Our InitialR2T value (OR function: Yes wins, RFC 7143 §13.10).
    pub initial_r2t: bool,
    /// Our ImmediateData value (AND function, RFC 7143 §13.11).
    pub immediate_data: bool,
    /// DefaultTime2Wait offered (maximum function, RFC 7143 §13.15).
    pub default_time2wait: u16,
    /// DefaultTime2Retain offered (minimum function, RFC 7143 §13.16).
    pub default_time2retain: u16,
    /// Commands a session may have outstanding: the CmdSN window (RFC 7143 §4.2.2.1).
    pub queue_depth: u32,
    /// Largest expected data transfer length one command may ask for; larger commands are
    /// answered with CHECK CONDITION rather than buffered.
    pub max_command_bytes: u32,
    /// Bytes of command data one connection may hold at once (Data-Out being collected
    /// and Data-In being sent). Commands wait for room instead of growing memory.
    pub connection_buffer_bytes: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_digest: DigestPolicy::Any,
            data_digest: DigestPolicy::Any,
            max_recv_data_segment_length: 256 * 1024,
            max_burst_length: 1024 * 1024,
            first_burst_length: 256 * 1024,
            max_outstanding_r2t: 8,
            initial_r2t: false,
            immediate_data: true,
            default_time2wait: 2,
            default_time2retain: 0,
            queue_depth: 128,
            max_command_bytes: 16 * 1024 * 1024,
            connection_buffer_bytes: 64 * 1024 * 1024,
        }
    }
}

/// One iSCSI target served by an [`crate::IscsiServer`].
#[derive(Clone, Debug)]
pub struct TargetConfig {
    /// The iSCSI name, e.g. `iqn.2026-11.io.scsiport:default`.
    pub name: String,
    pub alias: Option<String>,
    pub chap: Option<Chap>,
    /// Initiator names allowed to log in (exact names, or patterns with `*` and `?`, compared
    /// case-insensitively); `None` admits everyone.
    pub allowed_initiators: Option<Vec<String>>,
    /// Address reported in SendTargets (TargetAddress, RFC 7143 §13.8).
    pub portal: SocketAddr,
    /// Target portal group tag reported at login and in SendTargets.
    pub portal_group_tag: u16,
    pub limits: Limits,
    /// Interval of target-initiated NOP-In pings; `None` disables them.
    pub nop_in_interval: Option<Duration>,
    /// How long a NOP-In ping may go unanswered before the connection is dropped.
    pub nop_in_timeout: Duration,
}

impl TargetConfig {
    /// A target with default limits, no authentication and open access.
    pub fn new(name: impl Into<String>, portal: SocketAddr) -> TargetConfig {
        TargetConfig {
            name: name.into(),
            alias: None,
            chap: None,
            allowed_initiators: None,
            portal,
            portal_group_tag: 1,
            limits: Limits::default(),
            nop_in_interval: None,
            nop_in_timeout: Duration::from_secs(30),
        }
    }

    pub fn admits(&self, initiator: &str) -> bool {
        match &self.allowed_initiators {
            None => true,
            Some(list) => list.iter().any(|n| name_matches(n, initiator)),
        }
    }
}

/// Whether an initiator name matches an access-list entry: ASCII case-insensitive, `*` matches any run of
/// characters (also none), `?` exactly one. An entry without wildcards is an exact name.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    // Iterative glob with one backtrack point (the last `*`): linear in practice, never exponential.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi].eq_ignore_ascii_case(&n[ni])) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn access_list_patterns() {
        assert!(name_matches("iqn.1994-05.com.redhat:abc", "IQN.1994-05.com.RedHat:abc"));
        assert!(!name_matches("iqn.1994-05.com.redhat:abc", "iqn.1994-05.com.redhat:abcd"));
        assert!(name_matches("iqn.1994-05.com.redhat:*", "iqn.1994-05.com.redhat:host-1"));
        assert!(name_matches("iqn.*:host-?", "iqn.2004-10.com.ubuntu:host-7"));
        assert!(!name_matches("iqn.*:host-?", "iqn.2004-10.com.ubuntu:host-77"));
        assert!(name_matches("*", ""));
        assert!(!name_matches("iqn.2000-01.org.a:*", "iqn.2000-01.org.b:x"));
        assert!(name_matches("*a*b*", "xxaxxbxx"));
    }
}
