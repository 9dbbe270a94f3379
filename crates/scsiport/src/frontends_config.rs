//! The operator's sections of the configuration: several iSCSI targets (`[[iscsi_target]]`) with their LUN maps,
//! portals, access control, authentication, digests, NOP-In and limits; several NBD exports (`[[nbd_export]]`); the
//! control socket (`[control]`) and the metrics endpoint (`[metrics]`). `docs/config.md` describes every key.

use crate::config::{err, parse_disk_ref, Config, ConfigError, DiskConfig};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One iSCSI target.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IscsiTargetConfig {
    /// The iSCSI name (`iqn.`, `eui.` or `naa.`).
    pub name: String,
    pub alias: Option<String>,
    /// Listen addresses (IPv4 or IPv6) where this target is offered; default: `iscsi.listen`.
    pub portals: Vec<SocketAddr>,
    /// The LUN map: iSCSI LUN number → disk `adapter:target:lun` (any adapter's).
    pub luns: Vec<LunMapping>,
    /// Initiator names allowed to log in: exact IQNs or patterns with `*` and `?`; empty admits everyone.
    pub initiators: Vec<String>,
    pub chap_user: Option<String>,
    pub chap_secret: Option<String>,
    pub mutual_chap_user: Option<String>,
    pub mutual_chap_secret: Option<String>,
    pub header_digest: DigestChoice,
    pub data_digest: DigestChoice,
    /// Seconds between NOP-In pings on an idle connection; 0 sends none.
    pub nop_in_interval: u64,
    /// Seconds a NOP-In may go unanswered before the connection is dropped.
    pub nop_in_timeout: u64,
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub max_outstanding_r2t: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    /// Commands a session may have outstanding (the CmdSN window).
    pub queue_depth: u32,
}

/// One entry of a target's LUN map.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LunMapping {
    pub lun: u64,
    /// `adapter:target:lun`.
    pub disk: String,
}

/// Which digests a target accepts (RFC 7143 §13.1).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DigestChoice {
    /// None or CRC32C, as the initiator prefers.
    Any,
    /// No digest only.
    None,
    /// CRC32C required.
    Crc32c,
}

impl DigestChoice {
    pub fn policy(self) -> iscsi::DigestPolicy {
        match self {
            DigestChoice::Any => iscsi::DigestPolicy::Any,
            DigestChoice::None => iscsi::DigestPolicy::NoneOnly,
            DigestChoice::Crc32c => iscsi::DigestPolicy::Crc32cOnly,
        }
    }
}

impl Default for IscsiTargetConfig {
    fn default() -> Self {
        let l = iscsi::Limits::default();
        IscsiTargetConfig {
            name: String::new(),
            alias: None,
            portals: Vec::new(),
            luns: Vec::new(),
            initiators: Vec::new(),
            chap_user: None,
            chap_secret: None,
            mutual_chap_user: None,
            mutual_chap_secret: None,
            header_digest: DigestChoice::Any,
            data_digest: DigestChoice::Any,
            nop_in_interval: 0,
            nop_in_timeout: 30,
            max_recv_data_segment_length: l.max_recv_data_segment_length,
            max_burst_length: l.max_burst_length,
            first_burst_length: l.first_burst_length,
            max_outstanding_r2t: l.max_outstanding_r2t,
            initial_r2t: l.initial_r2t,
            immediate_data: l.immediate_data,
            queue_depth: l.queue_depth,
        }
    }
}

impl IscsiTargetConfig {
    /// The iSCSI crate's view of this target, offered on `portal`.
    pub fn target_config(&self, portal: SocketAddr) -> iscsi::TargetConfig {
        let mut tc = iscsi::TargetConfig::new(self.name.clone(), portal);
        tc.alias = self.alias.clone();
        if let (Some(u), Some(s)) = (&self.chap_user, &self.chap_secret) {
            let mutual = match (&self.mutual_chap_user, &self.mutual_chap_secret) {
                (Some(mu), Some(ms)) => Some((mu.clone(), ms.clone())),
                _ => None,
            };
            tc.chap = Some(iscsi::Chap { user: u.clone(), secret: s.clone(), mutual });
        }
        tc.allowed_initiators = (!self.initiators.is_empty()).then(|| self.initiators.clone());
        let l = &mut tc.limits;
        l.header_digest = self.header_digest.policy();
        l.data_digest = self.data_digest.policy();
        l.max_recv_data_segment_length = self.max_recv_data_segment_length;
        l.max_burst_length = self.max_burst_length;
        l.first_burst_length = self.first_burst_length;
        l.max_outstanding_r2t = self.max_outstanding_r2t;
        l.initial_r2t = self.initial_r2t;
        l.immediate_data = self.immediate_data;
        l.queue_depth = self.queue_depth;
        tc.nop_in_interval = (self.nop_in_interval > 0).then(|| Duration::from_secs(self.nop_in_interval));
        tc.nop_in_timeout = Duration::from_secs(self.nop_in_timeout);
        tc
    }
}

/// One NBD export.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NbdExportConfig {
    pub name: String,
    /// `adapter:target:lun`.
    pub disk: String,
    pub read_only: bool,
    /// Shown by `nbdinfo --list` (NBD_INFO_DESCRIPTION); default: "scsiport disk <disk>".
    pub description: Option<String>,
}

/// `[control]`: the Unix socket `scsiport ctl` talks to.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    pub enabled: bool,
    /// The socket (created with mode 0600). Default: `./scsiport-data/control.sock`.
    pub socket: Option<PathBuf>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig { enabled: true, socket: None }
    }
}

/// Where the control socket is when none is configured.
pub const DEFAULT_CONTROL_SOCKET: &str = "./scsiport-data/control.sock";

impl ControlConfig {
    pub fn path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET))
    }
}

/// `[metrics]`: the Prometheus text endpoint, off unless `listen` is set.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub listen: Option<SocketAddr>,
}

/// The iSCSI targets to serve: the `[[iscsi_target]]` tables, or (when there are none) the one target the `[iscsi]`
/// section describes, with every disk of its adapter as LUN `target * 8 + lun`.
pub fn iscsi_targets(cfg: &Config) -> Vec<IscsiTargetConfig> {
    if !cfg.iscsi.enabled {
        return Vec::new();
    }
    if !cfg.iscsi_targets.is_empty() {
        return cfg
            .iscsi_targets
            .iter()
            .map(|t| {
                let mut t = t.clone();
                if t.portals.is_empty() {
                    t.portals.push(cfg.iscsi.listen);
                }
                t
            })
            .collect();
    }
    let Some(a) = cfg.adapters.iter().find(|a| a.name == cfg.iscsi.adapter) else { return Vec::new() };
    vec![IscsiTargetConfig {
        name: cfg.iscsi.target.clone(),
        portals: vec![cfg.iscsi.listen],
        luns: a
            .disks
            .iter()
            .map(|d| LunMapping {
                lun: d.target as u64 * 8 + d.lun as u64,
                disk: format!("{}:{}:{}", a.name, d.target, d.lun),
            })
            .collect(),
        chap_user: cfg.iscsi.chap_user.clone(),
        chap_secret: cfg.iscsi.chap_secret.clone(),
        mutual_chap_user: cfg.iscsi.mutual_chap_user.clone(),
        mutual_chap_secret: cfg.iscsi.mutual_chap_secret.clone(),
        ..Default::default()
    }]
}

/// The NBD exports to serve: the `[[nbd_export]]` tables, or (when there are none) the one the `[nbd]` section
/// describes.
pub fn nbd_exports(cfg: &Config) -> Vec<NbdExportConfig> {
    if !cfg.nbd.enabled {
        return Vec::new();
    }
    if !cfg.nbd_exports.is_empty() {
        return cfg.nbd_exports.clone();
    }
    vec![NbdExportConfig {
        name: cfg.nbd.export.clone(),
        disk: cfg.nbd.disk.clone(),
        read_only: cfg.nbd.read_only,
        description: None,
    }]
}

/// Whether `name` matches an ACL entry: case-insensitive, `*` any run of characters, `?` one character.
pub fn acl_matches(pattern: &str, name: &str) -> bool {
    iscsi::config::name_matches(pattern, name)
}

/// The per-disk keys this module adds.
pub(crate) fn validate_disk(d: &DiskConfig, g: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    for (field, value, max) in [("vendor", &d.vendor, 8), ("product", &d.product, 16), ("revision", &d.revision, 4)] {
        if value.len() > max || !value.bytes().all(|b| (0x20..0x7F).contains(&b)) {
            return Err(err(g(field), format!("'{value}' must be printable ASCII of at most {max} characters")));
        }
    }
    if let Some(s) = &d.serial {
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| (0x20..0x7F).contains(&b)) {
            return Err(err(g("serial"), format!("'{s}' must be 1 to 64 printable ASCII characters")));
        }
    }
    if let Some(n) = &d.naa {
        parse_naa(n).map_err(|m| err(g("naa"), m))?;
    }
    Ok(())
}

/// An NAA name written as 16 hex digits (an optional `0x` or `naa.` first); its first digit is the NAA (2, 3 or 5).
pub fn parse_naa(s: &str) -> Result<u64, String> {
    let hex = s.trim_start_matches("0x").trim_start_matches("naa.");
    let v = (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok()).flatten();
    match v {
        Some(v) if matches!(v >> 60, 2 | 3 | 5) => Ok(v),
        _ => Err(format!("'{s}' is not an 8-byte NAA name: 16 hex digits starting with 2, 3 or 5")),
    }
}

fn is_iscsi_name(t: &str) -> bool {
    (t.starts_with("iqn.") || t.starts_with("eui.") || t.starts_with("naa.")) && t.len() <= 223
}

fn disk_exists(cfg: &Config, r: &str) -> bool {
    parse_disk_ref(r).is_some_and(|(a, t, l)| {
        cfg.adapters.iter().any(|x| x.name == a && x.disks.iter().any(|d| d.target == t && d.lun == l))
    })
}

/// Check the sections this module adds.
pub(crate) fn validate(cfg: &Config) -> Result<(), ConfigError> {
    let mut names = std::collections::HashSet::new();
    for (i, t) in cfg.iscsi_targets.iter().enumerate() {
        let f = |n: &str| format!("iscsi_target[{i}].{n}");
        if !is_iscsi_name(&t.name) {
            return Err(err(
                f("name"),
                format!("'{}' is not an iSCSI name (iqn./eui./naa., at most 223 bytes)", t.name),
            ));
        }
        if !names.insert(t.name.to_ascii_lowercase()) {
            return Err(err(f("name"), format!("'{}' is used twice", t.name)));
        }
        let mut luns = std::collections::HashSet::new();
        for (k, m) in t.luns.iter().enumerate() {
            let g = |n: &str| format!("iscsi_target[{i}].luns[{k}].{n}");
            if m.lun >= 16384 {
                return Err(err(g("lun"), format!("{} is outside 0-16383", m.lun)));
            }
            if !luns.insert(m.lun) {
                return Err(err(g("lun"), format!("LUN {} is mapped twice", m.lun)));
            }
            if parse_disk_ref(&m.disk).is_none() {
                return Err(err(g("disk"), format!("'{}' is not adapter:target:lun", m.disk)));
            }
            if !disk_exists(cfg, &m.disk) {
                return Err(err(g("disk"), format!("no disk {} is configured", m.disk)));
            }
            let a = parse_disk_ref(&m.disk).map(|x| x.0).unwrap_or_default();
            if cfg.adapters.iter().any(|x| x.name == a && !x.application_dedicated) {
                return Err(err(
                    g("disk"),
                    format!("adapter '{a}' has application_dedicated = false; iSCSI needs the pass-through path"),
                ));
            }
        }
        for (k, p) in t.initiators.iter().enumerate() {
            if p.is_empty() || p.len() > 223 {
                return Err(err(f(&format!("initiators[{k}]")), "an initiator name or pattern is 1 to 223 bytes"));
            }
        }
        if t.chap_user.is_some() != t.chap_secret.is_some() {
            return Err(err(f("chap_secret"), "chap_user and chap_secret go together"));
        }
        for (key, s) in [("chap_secret", &t.chap_secret), ("mutual_chap_secret", &t.mutual_chap_secret)] {
            if let Some(s) = s {
                if s.len() < 12 || s.len() > 16 {
                    return Err(err(f(key), "CHAP secrets are 12 to 16 bytes (RFC 7143 §12.1.3)"));
                }
            }
        }
        if t.mutual_chap_user.is_some() != t.mutual_chap_secret.is_some() {
            return Err(err(f("mutual_chap_secret"), "mutual_chap_user and mutual_chap_secret go together"));
        }
        if t.mutual_chap_user.is_some() && t.chap_user.is_none() {
            return Err(err(f("mutual_chap_user"), "mutual CHAP needs chap_user and chap_secret as well"));
        }
        // RFC 7143 §13.12-13.14, §13.17: the ranges the keys allow.
        let ranges: [(&str, u32, u32, u32); 5] = [
            ("max_recv_data_segment_length", t.max_recv_data_segment_length, 512, 16_777_215),
            ("max_burst_length", t.max_burst_length, 512, 16_777_215),
            ("first_burst_length", t.first_burst_length, 512, 16_777_215),
            ("max_outstanding_r2t", t.max_outstanding_r2t, 1, 65_535),
            ("queue_depth", t.queue_depth, 1, 65_535),
        ];
        for (key, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&v) {
                return Err(err(f(key), format!("{v} is outside {lo}-{hi}")));
            }
        }
        if t.first_burst_length > t.max_burst_length {
            return Err(err(f("first_burst_length"), "must not exceed max_burst_length (RFC 7143 §13.14)"));
        }
        if t.nop_in_interval > 3600 {
            return Err(err(f("nop_in_interval"), "at most 3600 seconds (0 turns NOP-In off)"));
        }
        if !(1..=3600).contains(&t.nop_in_timeout) {
            return Err(err(f("nop_in_timeout"), "1 to 3600 seconds"));
        }
        if let Some(a) = &t.alias {
            if a.len() > 255 {
                return Err(err(f("alias"), "at most 255 bytes"));
            }
        }
    }
    let mut exports = std::collections::HashSet::new();
    for (i, e) in cfg.nbd_exports.iter().enumerate() {
        let f = |n: &str| format!("nbd_export[{i}].{n}");
        if e.name.is_empty() || e.name.len() > 4096 {
            return Err(err(f("name"), "the export name must be 1 to 4096 bytes"));
        }
        if !exports.insert(e.name.clone()) {
            return Err(err(f("name"), format!("'{}' is used twice", e.name)));
        }
        if parse_disk_ref(&e.disk).is_none() {
            return Err(err(f("disk"), format!("'{}' is not adapter:target:lun", e.disk)));
        }
        if !disk_exists(cfg, &e.disk) {
            return Err(err(f("disk"), format!("no disk {} is configured", e.disk)));
        }
        if e.description.as_ref().is_some_and(|d| d.len() > 4096) {
            return Err(err(f("description"), "at most 4096 bytes"));
        }
    }
    if cfg.control.socket.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        return Err(err("control.socket", "an empty path"));
    }
    if let Some(p) = &cfg.control.socket {
        // sockaddr_un.sun_path holds 108 bytes with the terminating NUL.
        if p.as_os_str().len() > 107 {
            return Err(err(
                "control.socket",
                format!("{} is longer than a Unix socket path may be (107 bytes)", p.display()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
[[adapter]]
name = "scsi0"
[[adapter.disk]]
backend = "ram"
size = "8MiB"
[[adapter]]
name = "scsi1"
io_base = 0x340
dma_channel = 1
[[adapter.disk]]
backend = "ram"
size = "8MiB"
"#;

    #[test]
    fn targets_and_exports_parse_and_the_legacy_sections_step_aside() {
        let text = format!(
            "{TWO}
[[iscsi_target]]
name = \"iqn.2026-12.io.scsiport:a\"
portals = [\"127.0.0.1:3260\", \"[::1]:3260\"]
luns = [{{ lun = 0, disk = \"scsi0:0:0\" }}, {{ lun = 3, disk = \"scsi1:0:0\" }}]
initiators = [\"iqn.1994-05.com.redhat:*\"]
header_digest = \"crc32c\"
nop_in_interval = 5
[[nbd_export]]
name = \"one\"
disk = \"scsi0:0:0\"
[[nbd_export]]
name = \"two\"
disk = \"scsi1:0:0\"
read_only = true
description = \"the second\"
"
        );
        let c = Config::from_toml(&text).unwrap();
        let t = iscsi_targets(&c);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].portals.len(), 2);
        assert_eq!(t[0].luns[1], LunMapping { lun: 3, disk: "scsi1:0:0".into() });
        let tc = t[0].target_config(t[0].portals[1]);
        assert_eq!(tc.limits.header_digest, iscsi::DigestPolicy::Crc32cOnly);
        assert_eq!(tc.nop_in_interval, Some(Duration::from_secs(5)));
        assert!(tc.admits("iqn.1994-05.com.redhat:host1"));
        assert!(!tc.admits("iqn.2000-01.org.other:host1"));
        let e = nbd_exports(&c);
        assert_eq!(e.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["one", "two"]);
        assert!(e[1].read_only);
    }

    #[test]
    fn without_tables_the_legacy_sections_give_one_target_and_one_export() {
        let c = Config::default();
        let t = iscsi_targets(&c);
        assert_eq!((t.len(), t[0].name.as_str()), (1, "iqn.2026-11.io.scsiport:default"));
        assert_eq!(t[0].luns, vec![LunMapping { lun: 0, disk: "scsi0:0:0".into() }]);
        assert_eq!(nbd_exports(&c)[0].name, "default");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("[[iscsi_target]]\nname = \"bad\"\n", "iscsi_target[0].name"),
            ("[[iscsi_target]]\nname = \"iqn.x\"\nluns = [{ lun = 0, disk = \"scsi9:0:0\" }]\n", "iscsi_target[0].luns[0].disk"),
            (
                "[[iscsi_target]]\nname = \"iqn.x\"\nluns = [{ lun = 0, disk = \"scsi0:0:0\" }, { lun = 0, disk = \"scsi0:0:0\" }]\n",
                "iscsi_target[0].luns[1].lun",
            ),
            ("[[iscsi_target]]\nname = \"iqn.x\"\nchap_user = \"u\"\n", "iscsi_target[0].chap_secret"),
            ("[[iscsi_target]]\nname = \"iqn.x\"\nheader_digest = \"md5\"\n", "iscsi_target[0].header_digest"),
            ("[[iscsi_target]]\nname = \"iqn.x\"\nmax_burst_length = 100\n", "iscsi_target[0].max_burst_length"),
            ("[[iscsi_target]]\nname = \"iqn.x\"\nportals = [\"nowhere\"]\n", "iscsi_target[0].portals[0]"),
            ("[[nbd_export]]\nname = \"a\"\ndisk = \"scsi0:0:0\"\n[[nbd_export]]\nname = \"a\"\ndisk = \"scsi0:0:0\"\n", "nbd_export[1].name"),
            ("[[nbd_export]]\nname = \"a\"\ndisk = \"scsi0:1:0\"\n", "nbd_export[0].disk"),
            ("[[adapter]]\n[[adapter.disk]]\nrevision = \"12345\"\n", "adapter[0].disk[0].revision"),
            ("[[adapter]]\n[[adapter.disk]]\nnaa = \"0x7000000000000001\"\n", "adapter[0].disk[0].naa"),
            ("[control]\nsocket = \"\"\n", "control.socket"),
            ("[metrics]\nlisten = \"x\"\n", "metrics.listen"),
        ];
        for (text, field) in cases {
            let e = Config::from_toml(text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }

    #[test]
    fn naa_names_parse() {
        assert_eq!(parse_naa("0x6001405000000001").ok(), None, "NAA 6 is 16 bytes, not 8");
        assert_eq!(parse_naa("5000c50000000001"), Ok(0x5000_c500_0000_0001));
        assert_eq!(parse_naa("naa.3000000000000001"), Ok(0x3000_0000_0000_0001));
    }
}
