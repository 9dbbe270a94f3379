//! Per-LU settings and their validation.

use crate::fault::FaultConfig;
use std::path::PathBuf;

/// Settings of one disk logical unit, as read from a `[[lun]]`-style TOML table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskConfig {
    /// Logical block size in bytes: 512 or 4096.
    pub block_size: u32,
    /// Capacity in logical blocks; 0 takes the whole backend.
    pub blocks: u64,
    pub read_only: bool,
    /// Report logical block provisioning (SBC-3 §4.7): UNMAP, WRITE SAME with UNMAP,
    /// GET LBA STATUS, and unmapped blocks reading as zeros.
    pub thin_provisioning: bool,
    /// T10 vendor identification, at most 8 ASCII characters.
    pub vendor: String,
    /// At most 16 ASCII characters.
    pub product: String,
    /// At most 4 ASCII characters.
    pub revision: String,
    /// Unit serial number (VPD 80h), 1 to 64 ASCII characters.
    pub serial: String,
    /// NAA world wide name for VPD 83h; its top nibble is the NAA (2, 3 or 5).
    /// 0 derives a locally assigned (NAA 3) name from vendor, product and serial.
    pub wwn: u64,
    /// Write cache enabled at start (WCE of the caching mode page). With it off, every
    /// write is made durable before it completes.
    pub write_cache: bool,
    /// Medium rotation rate for VPD B1h: 1 = non-rotating.
    pub rotation_rate: u16,
    /// Largest transfer in bytes, reported in VPD B0h so that initiators split larger
    /// requests (the default matches the iSCSI front end's command limit); 0 reports no
    /// limit.
    pub max_transfer_bytes: u64,
    /// Largest WRITE SAME in blocks (VPD B0h), which bounds how long one command can
    /// keep the unit busy; 0 is no limit.
    pub max_write_same_blocks: u32,
    /// Largest UNMAP in blocks (VPD B0h).
    pub max_unmap_blocks: u32,
    /// Most UNMAP block descriptors in one command (VPD B0h).
    pub max_unmap_descriptors: u32,
    /// Report 06/29/00 on each I_T nexus's first command (SAM-5 §6.3.1: power on).
    pub power_on_unit_attention: bool,
    /// Where persistent reservations are kept when an initiator sets APTPL.
    pub pr_state_file: Option<PathBuf>,
    pub faults: FaultConfig,
    /// Physical block size in bytes: a power-of-two multiple of `block_size` (e.g. 4096
    /// under 512-byte logical blocks); 0 is the logical block size. Reported as READ
    /// CAPACITY(16)'s LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT and as the Block Limits
    /// granularities.
    pub physical_block_size: u32,
    /// Removable medium (INQUIRY RMB): PREVENT ALLOW MEDIUM REMOVAL locks it, START STOP
    /// UNIT with LOEJ ejects and loads it, and without it medium commands end NOT READY /
    /// MEDIUM NOT PRESENT.
    pub removable: bool,
    /// How fast SANITIZE OVERWRITE writes the medium, in bytes per second (the rate of the
    /// modelled medium, which sets how long the unit reports SANITIZE IN PROGRESS);
    /// 0 writes as fast as the backend takes it.
    pub sanitize_bytes_per_second: u64,
    /// SANITIZE CRYPTOGRAPHIC ERASE is offered: the backend encrypts the medium under a key it can replace
    /// (`EncryptedBackend`); `Disk::new` refuses a backend that cannot.
    pub crypto_erase: bool,
    /// ALUA: the target port group commands arrive through (0: no ALUA) and every group of the logical unit with its
    /// state (`disk::alua`). With more than one group the unit is shared with other hosts: reservations, which
    /// this process cannot enforce on the others, are not offered.
    pub port_group: u16,
    pub port_groups: Vec<super::alua::PortGroup>,
}

impl Default for DiskConfig {
    fn default() -> Self {
        Self {
            block_size: 512,
            blocks: 0,
            read_only: false,
            thin_provisioning: true,
            vendor: "SCSIPORT".into(),
            product: "VIRTUAL DISK".into(),
            revision: "0001".into(),
            serial: "00000001".into(),
            wwn: 0,
            write_cache: true,
            rotation_rate: 1,
            max_transfer_bytes: 16 << 20,
            max_write_same_blocks: 0xFFFF,
            max_unmap_blocks: 1 << 20,
            max_unmap_descriptors: 256,
            power_on_unit_attention: true,
            pr_state_file: None,
            faults: FaultConfig::default(),
            physical_block_size: 0,
            removable: false,
            sanitize_bytes_per_second: 128 << 20,
            crypto_erase: false,
            port_group: 0,
            port_groups: Vec::new(),
        }
    }
}

/// A configuration that cannot describe a logical unit; each names its field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("block_size must be 512 or 4096, not {0}")]
    BlockSize(u32),
    #[error("blocks: {blocks} blocks of {block_size} bytes do not fit the {backend}-byte backend")]
    Capacity { blocks: u64, block_size: u32, backend: u64 },
    #[error("blocks: the backend holds no whole block")]
    Empty,
    #[error("{field} must be printable ASCII of at most {max} characters, not {value:?}")]
    Text { field: &'static str, max: usize, value: String },
    #[error("serial must not be empty")]
    EmptySerial,
    #[error("wwn {0:#018x} is not an 8-byte NAA name (NAA 2, 3 or 5 in the top nibble)")]
    Wwn(u64),
    #[error(
        "physical_block_size {physical} must be a power-of-two multiple of block_size {logical}, at most 2^15 blocks"
    )]
    PhysicalBlockSize { physical: u32, logical: u32 },
    #[error("port_group {0} is not one of port_groups, or a group id is 0 or repeated")]
    PortGroup(u16),
    #[error("crypto_erase needs a backend that encrypts the medium")]
    CryptoErase,
    #[error("cannot read persistent reservation state {path}: {reason}")]
    PrState { path: PathBuf, reason: String },
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), ConfigError> {
    if value.len() > max || !value.bytes().all(|b| (0x20..0x7F).contains(&b)) {
        return Err(ConfigError::Text { field, max, value: value.to_owned() });
    }
    Ok(())
}

/// FNV-1a, for a name that stays the same from run to run.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

impl DiskConfig {
    /// Several hosts serve this logical unit (more than one target port group).
    pub fn multi_host(&self) -> bool {
        self.port_groups.len() > 1
    }

    /// Check the settings against a backend of `backend_size` bytes and fill in derived
    /// values (capacity, WWN). Returns the capacity in blocks.
    pub(crate) fn validate(&mut self, backend_size: u64) -> Result<u64, ConfigError> {
        if self.block_size != 512 && self.block_size != 4096 {
            return Err(ConfigError::BlockSize(self.block_size));
        }
        if self.physical_block_size == 0 {
            self.physical_block_size = self.block_size;
        }
        let ratio = self.physical_block_size / self.block_size;
        if !self.physical_block_size.is_multiple_of(self.block_size) || !ratio.is_power_of_two() || ratio > 1 << 15 {
            return Err(ConfigError::PhysicalBlockSize {
                physical: self.physical_block_size,
                logical: self.block_size,
            });
        }
        let bs = u64::from(self.block_size);
        let blocks = if self.blocks == 0 { backend_size / bs } else { self.blocks };
        if blocks == 0 {
            return Err(ConfigError::Empty);
        }
        if blocks.checked_mul(bs).is_none_or(|b| b > backend_size) {
            return Err(ConfigError::Capacity { blocks, block_size: self.block_size, backend: backend_size });
        }
        check_text("vendor", &self.vendor, 8)?;
        check_text("product", &self.product, 16)?;
        check_text("revision", &self.revision, 4)?;
        check_text("serial", &self.serial, 64)?;
        if self.serial.is_empty() {
            return Err(ConfigError::EmptySerial);
        }
        if self.wwn == 0 {
            let h = fnv1a(&[&self.vendor, &self.product, &self.serial]);
            self.wwn = (3 << 60) | (h & 0x0FFF_FFFF_FFFF_FFFF);
        }
        if !matches!(self.wwn >> 60, 2 | 3 | 5) {
            return Err(ConfigError::Wwn(self.wwn));
        }
        let mut ids: Vec<u16> = self.port_groups.iter().map(|g| g.id).collect();
        ids.sort_unstable();
        ids.dedup();
        let alua_ok = if self.port_group == 0 {
            self.port_groups.is_empty()
        } else {
            ids.len() == self.port_groups.len() && ids.first() != Some(&0) && ids.contains(&self.port_group)
        };
        if !alua_ok {
            return Err(ConfigError::PortGroup(self.port_group));
        }
        self.blocks = blocks;
        Ok(blocks)
    }
}
