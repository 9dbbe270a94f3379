//! The configuration file (TOML) and its embedded default.

use crate::size::ByteSize;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The whole machine and its front ends.
/// What a `backend = "rbd"` disk meets in a scsiport built without the RBD backend.
pub const NO_RBD: &str =
    "\"rbd\" needs a scsiport built with `--features rbd` (which links Ceph's librbd and librados: \
                          Debian's librbd-dev and librados-dev)";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub machine: MachineConfig,
    pub memory: MemoryConfig,
    pub verifier: VerifierConfig,
    pub trace: TraceConfig,
    #[serde(rename = "adapter")]
    pub adapters: Vec<AdapterConfig>,
    pub nbd: NbdConfig,
    pub iscsi: IscsiConfig,
    /// iSCSI targets with their own LUN maps, portals and access control (see `frontends_config`).
    #[serde(rename = "iscsi_target")]
    pub iscsi_targets: Vec<crate::frontends_config::IscsiTargetConfig>,
    /// NBD exports (see `frontends_config`).
    #[serde(rename = "nbd_export")]
    pub nbd_exports: Vec<crate::frontends_config::NbdExportConfig>,
    pub control: crate::frontends_config::ControlConfig,
    pub metrics: crate::frontends_config::MetricsConfig,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MachineConfig {
    /// The system bus, which decides the system DMA controller.
    pub bus: BusKind,
    /// Virtual time for DMA: a `hal::MachineTiming` preset name; off when absent.
    pub timing: Option<String>,
}

/// `[machine] bus`: a PC/AT (ISA, the 8237 pair with 24-bit addresses) or an EISA machine
/// (the EISA system component's DMA with 32-bit addresses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    #[default]
    Isa,
    Eisa,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Physical memory of the modelled machine.
    pub size: ByteSize,
    /// Map registers (bounce pages below 16 MiB) the HAL keeps.
    pub map_register_pages: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifierConfig {
    pub mode: port::VerifierMode,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceConfig {
    /// Record trace events (kept in memory, at most `limit`).
    pub enabled: bool,
    pub limit: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdapterConfig {
    pub name: String,
    /// The card model on the ISA bus.
    pub kind: HbaKind,
    /// A miniport built against `include/scsiport/miniport.h` (a shared library) that drives the card instead of the
    /// built-in one.
    pub miniport: Option<PathBuf>,
    pub io_base: u16,
    pub irq: u32,
    pub dma_channel: u8,
    pub max_transfer: ByteSize,
    pub demand_mode: bool,
    pub application_dedicated: bool,
    /// Tagged commands the miniport keeps outstanding per logical unit (1: no tagged queuing).
    pub queue_depth: u8,
    /// The miniport grants targets the disconnect privilege: they free the bus while they read, write or wait.
    pub disconnect: bool,
    /// Verifier mode for this adapter (default: the global one).
    pub verifier: Option<port::VerifierMode>,
    #[serde(rename = "disk")]
    pub disks: Vec<DiskConfig>,
}

/// The host adapter card an `[[adapter]]` table puts on the bus.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HbaKind {
    /// The reference ISA SCSI host adapter (`docs/hba.md`).
    #[default]
    Reference,
    /// An NCR 53C94/53C96-class controller (ESP) on a system DMA channel (`docs/esp.md`), with its C miniport.
    Esp,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    File,
    Ram,
    /// A Ceph RBD image (`docs/ceph.md`).
    Rbd,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskConfig {
    pub target: u8,
    pub lun: u8,
    pub size: ByteSize,
    pub block_size: u32,
    pub backend: BackendKind,
    pub path: PathBuf,
    pub read_only: bool,
    pub preallocate: bool,
    pub direct: bool,
    pub thin_provisioning: bool,
    pub vendor: String,
    pub product: String,
    pub serial: Option<String>,
    /// Fault injection (see the scsi crate's FaultConfig).
    pub faults: Option<scsi::FaultConfig>,
    /// INQUIRY product revision level (at most 4 characters).
    pub revision: String,
    /// NAA world wide name for VPD page 0x83 as 16 hex digits (NAA 2, 3 or 5); default: derived from vendor,
    /// product and serial, so stable across restarts.
    pub naa: Option<String>,
    /// Write cache enabled at start (WCE); off, every write is durable before it completes.
    pub write_cache: bool,
    /// Power-loss testing: record what each flush makes durable into this log (see `durability.rs`).
    pub durability_log: Option<PathBuf>,
    /// Physical block size in bytes (0: the logical block size); see `docs/config.md`.
    pub physical_block_size: u32,
    /// A removable medium (PREVENT ALLOW MEDIUM REMOVAL, load and eject).
    pub removable: bool,
    /// How fast SANITIZE OVERWRITE writes the medium (0: as fast as the backend).
    pub sanitize_rate: ByteSize,
    /// A self-encrypting medium (AES-256-XTS under a key of the disk's own); SANITIZE CRYPTOGRAPHIC ERASE replaces
    /// the key (`docs/scsi-features.md`).
    pub encryption: bool,
    /// Where the media key is kept: default `<path>` with the extension `.key` for a file disk, only in memory for a
    /// RAM disk; an RBD disk needs one.
    pub key_path: Option<PathBuf>,
    /// RBD: the pool and image (`backend = "rbd"`).
    pub pool: String,
    pub image: String,
    /// RBD: the ceph.conf to read (default: Ceph's search path).
    pub ceph_conf: Option<PathBuf>,
    /// RBD: the client id (`admin` is `client.admin`).
    pub client: Option<String>,
    /// RBD: seconds the cluster may take to connect or answer a request before it is an error.
    pub ceph_timeout: u64,
    /// ALUA: this host's target port group (0: none) and every group of the logical unit (`docs/ceph.md`).
    pub port_group: u16,
    pub port_groups: Vec<scsi::PortGroup>,
    /// ALUA on RBD: seconds without a heartbeat after which another host's group is reported unavailable.
    pub peer_timeout: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NbdConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub unix: Option<PathBuf>,
    pub export: String,
    /// Which disk: `adapter:target:lun`.
    pub disk: String,
    pub read_only: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IscsiConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub target: String,
    /// The adapter whose bus the target exposes; each of its disks is a LUN (`target * 8 + lun`... see docs).
    pub adapter: String,
    pub chap_user: Option<String>,
    pub chap_secret: Option<String>,
    pub mutual_chap_user: Option<String>,
    pub mutual_chap_secret: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            machine: MachineConfig::default(),
            memory: MemoryConfig::default(),
            verifier: VerifierConfig::default(),
            trace: TraceConfig::default(),
            adapters: vec![AdapterConfig::default()],
            nbd: NbdConfig::default(),
            iscsi: IscsiConfig::default(),
            iscsi_targets: Vec::new(),
            nbd_exports: Vec::new(),
            control: Default::default(),
            metrics: Default::default(),
        }
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig { size: ByteSize(256 << 20), map_register_pages: 256 }
    }
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig { mode: port::VerifierMode::Strict }
    }
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig { enabled: false, limit: 1_000_000 }
    }
}

impl Default for AdapterConfig {
    fn default() -> Self {
        AdapterConfig {
            name: "scsi0".into(),
            kind: HbaKind::Reference,
            miniport: None,
            io_base: 0x330,
            irq: 11,
            dma_channel: 5,
            max_transfer: ByteSize(64 << 10),
            demand_mode: true,
            application_dedicated: true,
            queue_depth: hba::DEFAULT_QUEUE_DEPTH,
            disconnect: true,
            verifier: None,
            disks: vec![DiskConfig::default()],
        }
    }
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            target: 0,
            lun: 0,
            size: ByteSize(1 << 30),
            block_size: 512,
            backend: BackendKind::File,
            path: PathBuf::from("./scsiport-data/disk0.img"),
            read_only: false,
            preallocate: false,
            direct: false,
            thin_provisioning: true,
            vendor: "SCSIPORT".into(),
            product: "SYSDMA DISK".into(),
            serial: None,
            faults: None,
            revision: "0001".into(),
            naa: None,
            write_cache: true,
            durability_log: None,
            physical_block_size: 0,
            removable: false,
            sanitize_rate: ByteSize(scsi::DiskConfig::default().sanitize_bytes_per_second),
            encryption: false,
            key_path: None,
            pool: String::new(),
            image: String::new(),
            ceph_conf: None,
            client: None,
            ceph_timeout: 10,
            port_group: 0,
            port_groups: Vec::new(),
            peer_timeout: 5,
        }
    }
}

impl Default for NbdConfig {
    fn default() -> Self {
        NbdConfig {
            enabled: true,
            listen: "127.0.0.1:10809".parse().expect("literal address"),
            unix: None,
            export: "default".into(),
            disk: "scsi0:0:0".into(),
            read_only: false,
        }
    }
}

impl Default for IscsiConfig {
    fn default() -> Self {
        IscsiConfig {
            enabled: true,
            listen: "127.0.0.1:3260".parse().expect("literal address"),
            target: "iqn.2026-11.io.scsiport:default".into(),
            adapter: "scsi0".into(),
            chap_user: None,
            chap_secret: None,
            mutual_chap_user: None,
            mutual_chap_secret: None,
        }
    }
}

/// A configuration problem, naming the field.
#[derive(thiserror::Error, Debug)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

pub(crate) fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), message: message.into() }
}

/// A disk reference `adapter:target:lun`.
pub fn parse_disk_ref(s: &str) -> Option<(String, u8, u8)> {
    let mut it = s.split(':');
    let a = it.next()?.to_string();
    let t = it.next()?.parse().ok()?;
    let l = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((a, t, l))
}

impl Config {
    /// The embedded default without front ends: its one adapter with one RAM disk of `disk` bytes, in `memory` of
    /// system memory. What `exercise`, `trace` and in-process tests run on.
    pub fn in_process(disk: ByteSize, memory: ByteSize) -> Self {
        let mut cfg = Config::default();
        cfg.nbd.enabled = false;
        cfg.iscsi.enabled = false;
        cfg.control.enabled = false;
        cfg.memory.size = memory;
        cfg.adapters[0].disks[0].backend = BackendKind::Ram;
        cfg.adapters[0].disks[0].size = disk;
        cfg
    }

    /// Parse a TOML file's text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        // serde_path_to_error keeps the path of the value that failed (`adapter[0].irq`), so a type error names
        // its field as a validation error does.
        let de = toml::Deserializer::new(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // The root has no name (an empty key there even gives an empty path): say where instead.
            let field = match (path.as_str(), inner.span()) {
                ("." | "", Some(s)) => format!("at byte {}", s.start),
                ("." | "", None) => "config".into(),
                (p, _) => p.to_string(),
            };
            // Some syntax errors (a key with no value at the end of the text) come with an empty message.
            let message = match inner.message().trim() {
                "" if inner.span().and_then(|s| text.get(s.start..)).is_some_and(|rest| rest.trim().is_empty()) => {
                    "unexpected end of the file".to_string()
                }
                "" => "malformed TOML".to_string(),
                m => m.to_string(),
            };
            err(field, message)
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check everything that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mem = self.memory.size.0;
        if !(16 << 20..=4 << 30).contains(&mem) || !mem.is_multiple_of(4096) {
            return Err(err(
                "memory.size",
                format!("{} must be a multiple of 4 KiB between 16 MiB and 4 GiB", self.memory.size),
            ));
        }
        if let Some(t) = &self.machine.timing {
            let Some(preset) = hal::MachineTiming::preset(t) else {
                let names: Vec<&str> = hal::MachineTiming::PRESETS.iter().map(|p| p.name).collect();
                return Err(err("machine.timing", format!("'{t}' is not one of {}", names.join(", "))));
            };
            if preset.is_eisa() != (self.machine.bus == BusKind::Eisa) {
                return Err(err("machine.timing", format!("'{t}' does not match machine.bus")));
            }
        }
        if self.memory.map_register_pages < 17 || self.memory.map_register_pages > 2048 {
            return Err(err("memory.map_register_pages", "must be between 17 and 2048"));
        }
        if self.adapters.is_empty() {
            return Err(err("adapter", "at least one adapter is needed"));
        }
        let mut names = std::collections::HashSet::new();
        let mut bases: Vec<(u16, HbaKind, usize)> = Vec::new();
        for (i, a) in self.adapters.iter().enumerate() {
            let f = |n: &str| format!("adapter[{i}].{n}");
            if a.name.is_empty() || !names.insert(a.name.clone()) {
                return Err(err(f("name"), format!("'{}' is empty or used twice", a.name)));
            }
            if a.dma_channel > 7 || a.dma_channel == 4 {
                return Err(err(
                    f("dma_channel"),
                    format!("{} is not a device channel (0-3 8-bit, 5-7 16-bit; 4 is the cascade)", a.dma_channel),
                ));
            }
            if a.io_base < 0x100 || a.io_base > 0xFFF0 {
                return Err(err(f("io_base"), format!("{:#x} is not a free ISA I/O range (0x100-0xFFF0)", a.io_base)));
            }
            // Ports each card decodes: the reference card 16, the ESP card 32 (the chip's 16 and its identity latch).
            let ports = |k: HbaKind| -> u32 {
                match k {
                    HbaKind::Reference => 16,
                    HbaKind::Esp => u32::from(esp::hw::reg::PORT_COUNT),
                }
            };
            let (lo, hi) = (u32::from(a.io_base), u32::from(a.io_base) + ports(a.kind));
            let overlap = bases.iter().find(|(b, k, _)| u32::from(*b) < hi && lo < u32::from(*b) + ports(*k));
            if let Some((_, _, j)) = overlap {
                return Err(err(f("io_base"), format!("{:#x} overlaps adapter[{j}]", a.io_base)));
            }
            bases.push((a.io_base, a.kind, i));
            if a.irq > 15 {
                return Err(err(f("irq"), format!("{} is not an ISA IRQ (0-15)", a.irq)));
            }
            if a.queue_depth == 0 || usize::from(a.queue_depth) > hba::hw::regs::TAG_SLOTS {
                return Err(err(
                    f("queue_depth"),
                    format!(
                        "{} is outside 1-{} (the card's table of disconnected commands)",
                        a.queue_depth,
                        hba::hw::regs::TAG_SLOTS
                    ),
                ));
            }
            let mt = a.max_transfer.0;
            let cap = if a.dma_channel >= 4 { 128 << 10 } else { 64 << 10 };
            if !(4096..=cap).contains(&mt) || mt % 4096 != 0 {
                return Err(err(
                    f("max_transfer"),
                    format!(
                        "{} must be a multiple of 4 KiB from 4 KiB to {} on channel {}",
                        a.max_transfer,
                        crate::size::ByteSize(cap),
                        a.dma_channel
                    ),
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for (k, d) in a.disks.iter().enumerate() {
                let g = |n: &str| format!("adapter[{i}].disk[{k}].{n}");
                if d.target > 6 {
                    return Err(err(g("target"), format!("{} is not a target id (0-6; 7 is the HBA)", d.target)));
                }
                if d.lun > 7 {
                    return Err(err(g("lun"), format!("{} is not a LUN (0-7)", d.lun)));
                }
                if !seen.insert((d.target, d.lun)) {
                    return Err(err(g("lun"), format!("target {} LUN {} is configured twice", d.target, d.lun)));
                }
                if d.block_size != 512 && d.block_size != 4096 {
                    return Err(err(g("block_size"), format!("{} must be 512 or 4096", d.block_size)));
                }
                if d.size.0 == 0 || d.size.0 % d.block_size as u64 != 0 {
                    return Err(err(g("size"), format!("{} must be a non-zero multiple of the block size", d.size)));
                }
                if d.backend == BackendKind::File && d.path.as_os_str().is_empty() {
                    return Err(err(g("path"), "a file backend needs a path"));
                }
                crate::frontends_config::validate_disk(d, &g)?;
                if d.backend == BackendKind::Rbd && !cfg!(feature = "rbd") {
                    return Err(err(g("backend"), NO_RBD));
                }
                if d.key_path.is_some() && !d.encryption {
                    return Err(err(g("key_path"), "a media key is only used with encryption = true"));
                }
                if d.encryption && d.durability_log.is_some() {
                    return Err(err(g("encryption"), "an encrypted medium cannot be combined with durability_log"));
                }
                if d.encryption && d.backend == BackendKind::Rbd && d.key_path.is_none() {
                    return Err(err(g("key_path"), "an encrypted rbd disk needs a key_path"));
                }
                if d.encryption && d.port_groups.len() > 1 {
                    return Err(err(
                        g("encryption"),
                        "a media key cannot be shared with the other hosts of port_groups",
                    ));
                }
                if d.backend == BackendKind::Rbd {
                    if d.pool.is_empty() || d.pool.contains('\0') {
                        return Err(err(g("pool"), "an rbd backend needs a pool"));
                    }
                    if d.image.is_empty() || d.image.contains(['\0', '@', '/']) {
                        return Err(err(g("image"), "an rbd backend needs an image name (without '/' or '@')"));
                    }
                    if !(2..=3600).contains(&d.peer_timeout) {
                        return Err(err(g("peer_timeout"), format!("{} must be 2 to 3600 seconds", d.peer_timeout)));
                    }
                    if !(1..=600).contains(&d.ceph_timeout) {
                        return Err(err(g("ceph_timeout"), format!("{} must be 1 to 600 seconds", d.ceph_timeout)));
                    }
                }
            }
        }
        crate::frontends_config::validate(self)?;
        if self.nbd.enabled && self.nbd_exports.is_empty() {
            let Some((a, t, l)) = parse_disk_ref(&self.nbd.disk) else {
                return Err(err("nbd.disk", format!("'{}' is not adapter:target:lun", self.nbd.disk)));
            };
            let found =
                self.adapters.iter().any(|x| x.name == a && x.disks.iter().any(|d| d.target == t && d.lun == l));
            if !found {
                return Err(err("nbd.disk", format!("no disk {} is configured", self.nbd.disk)));
            }
            if self.nbd.export.is_empty() || self.nbd.export.len() > 4096 {
                return Err(err("nbd.export", "the export name must be 1 to 4096 bytes"));
            }
        }
        if self.iscsi.enabled && self.iscsi_targets.is_empty() {
            if !self.adapters.iter().any(|x| x.name == self.iscsi.adapter) {
                return Err(err("iscsi.adapter", format!("no adapter named '{}'", self.iscsi.adapter)));
            }
            let a = self.adapters.iter().find(|x| x.name == self.iscsi.adapter).expect("checked");
            if !a.application_dedicated {
                return Err(err(
                    "iscsi.adapter",
                    format!(
                        "adapter '{}' has application_dedicated = false; iSCSI needs the pass-through path",
                        a.name
                    ),
                ));
            }
            let t = &self.iscsi.target;
            if !(t.starts_with("iqn.") || t.starts_with("eui.") || t.starts_with("naa.")) || t.len() > 223 {
                return Err(err(
                    "iscsi.target",
                    format!("'{t}' is not an iSCSI name (iqn./eui./naa., at most 223 bytes)"),
                ));
            }
            if self.iscsi.chap_user.is_some() != self.iscsi.chap_secret.is_some() {
                return Err(err("iscsi.chap_secret", "chap_user and chap_secret go together"));
            }
            if let Some(s) = &self.iscsi.chap_secret {
                if s.len() < 12 || s.len() > 16 {
                    return Err(err("iscsi.chap_secret", "CHAP secrets are 12 to 16 bytes (RFC 7143 §12.1.3)"));
                }
            }
            if self.iscsi.mutual_chap_user.is_some() != self.iscsi.mutual_chap_secret.is_some() {
                return Err(err("iscsi.mutual_chap_secret", "mutual_chap_user and mutual_chap_secret go together"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_empty_key_at_the_root_names_where() {
        let e = super::Config::from_toml("''= 0\n").unwrap_err();
        assert_eq!(e.field, "at byte 0");
        assert!(e.message.contains("unknown field"), "{}", e.message);
    }

    #[test]
    fn a_key_without_a_value_at_the_end_of_the_file_names_where() {
        let text = "[memory]\nsize = \"1GiB\"\nblock_size =";
        let e = super::Config::from_toml(text).unwrap_err();
        assert_eq!(e.field, format!("at byte {}", text.len()));
        assert_eq!(e.message, "unexpected end of the file");
    }

    use super::*;

    #[test]
    fn the_embedded_default_is_valid_and_matches_the_design() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.adapters[0].dma_channel, 5);
        assert_eq!(c.adapters[0].max_transfer.0, 64 << 10);
        assert_eq!(c.adapters[0].disks[0].size.0, 1 << 30);
        assert_eq!(c.nbd.listen.to_string(), "127.0.0.1:10809");
        assert_eq!(c.iscsi.listen.to_string(), "127.0.0.1:3260");
        assert_eq!(c.iscsi.target, "iqn.2026-11.io.scsiport:default");
    }

    #[test]
    fn machine_bus_is_isa_by_default_and_takes_eisa() {
        assert_eq!(Config::default().machine.bus, BusKind::Isa);
        let c = Config::from_toml("[machine]\nbus = \"eisa\"\n").unwrap();
        assert_eq!(c.machine.bus, BusKind::Eisa);
        let e = Config::from_toml("[machine]\nbus = \"mca\"\n").unwrap_err();
        assert_eq!(e.field, "machine.bus");
    }

    #[test]
    fn an_empty_file_is_the_default() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.adapters.len(), 1);
    }

    #[test]
    fn a_bad_channel_names_the_field() {
        let e = Config::from_toml("[[adapter]]\ndma_channel = 4\n").unwrap_err();
        assert_eq!(e.field, "adapter[0].dma_channel");
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name() {
        let e = Config::from_toml("[nbd]\nlisten_on = \"x\"\n").unwrap_err();
        assert!(e.message.contains("listen_on"), "{e}");
    }

    #[test]
    fn a_type_error_names_the_field() {
        let e = Config::from_toml("[[adapter]]\nirq = \"x\"\n").unwrap_err();
        assert_eq!(e.field, "adapter[0].irq", "{e}");
        let e = Config::from_toml("[nbd]\nlisten = 5\n").unwrap_err();
        assert_eq!(e.field, "nbd.listen", "{e}");
    }

    #[test]
    fn a_bad_size_is_refused() {
        let e = Config::from_toml("[[adapter]]\n[[adapter.disk]]\nsize = \"1 parsec\"\n").unwrap_err();
        assert!(e.message.contains("parsec"), "{e}");
    }

    #[test]
    fn nbd_must_name_a_configured_disk() {
        let e = Config::from_toml("[nbd]\ndisk = \"scsi9:0:0\"\n").unwrap_err();
        assert_eq!(e.field, "nbd.disk");
    }

    #[test]
    fn encryption_keys_are_checked_together() {
        let disk = |extra: &str| format!("[[adapter]]\n[[adapter.disk]]\nbackend = \"ram\"\n{extra}");
        Config::from_toml(&disk("encryption = true\n")).unwrap();
        Config::from_toml(&disk("encryption = true\nkey_path = \"/tmp/k.key\"\n")).unwrap();
        let e = Config::from_toml(&disk("key_path = \"/tmp/k.key\"\n")).unwrap_err();
        assert_eq!(e.field, "adapter[0].disk[0].key_path", "{e}");
        let e = Config::from_toml(&disk("encryption = true\ndurability_log = \"/tmp/d.log\"\n")).unwrap_err();
        assert_eq!(e.field, "adapter[0].disk[0].encryption", "{e}");
    }
}
