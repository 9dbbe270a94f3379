//! The modelled machine: physical memory, the HAL with its 8237 pair, the host adapters with their miniports, the
//! SCSI buses and their disks.

use crate::config::{BackendKind, BusKind, Config, HbaKind};
use anyhow::{bail, Context};
use class::DiskClass;
use hal::{Hal, HalConfig, SystemBus, SystemMemory};
use port::{AdapterHandle, AdapterOptions, LuAddress, Trace};
use scsi::{Backend, Disk, EncryptedBackend, FileBackend, FileOptions, RamBackend, Target};
use std::sync::Arc;

/// The unit serial number of an RBD image's logical unit: `pool/image`, or a 64-bit FNV-1a hash of it when that is
/// longer than the 64 characters VPD page 0x80 carries here.
pub fn rbd_serial(pool: &str, image: &str) -> String {
    let name = format!("{pool}/{image}");
    if name.len() <= 64 && name.is_ascii() && !name.contains(' ') {
        return name;
    }
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("rbd-{h:016x}")
}

#[cfg(feature = "rbd")]
use scsi::alua_peers::PeerWatch;

/// Without RBD support no disk is shared with other hosts, so there is no heartbeat to stop.
#[cfg(not(feature = "rbd"))]
enum PeerWatch {}

#[cfg(not(feature = "rbd"))]
impl PeerWatch {
    fn stop(&mut self) {
        match *self {}
    }
}

/// Everything `serve` and `exercise` run on.
pub struct Machine {
    memory: Arc<SystemMemory>,
    hal: Arc<Hal>,
    adapters: Vec<(String, AdapterHandle)>,
    /// The cards' counters (and SCSI-phase virtual time).
    monitors: Vec<hba::HbaMonitor>,
    disks: Vec<(String, u8, u8, Arc<Disk>)>,
    trace: Option<Trace>,
    /// Heartbeats of the RBD disks that several hosts serve.
    watches: std::sync::Mutex<Vec<PeerWatch>>,
}

impl Machine {
    /// Build the machine a configuration describes.
    pub fn build(cfg: &Config) -> anyhow::Result<Machine> {
        Self::build_with_trace(cfg, cfg.trace.enabled.then(|| Trace::new(cfg.trace.limit)))
    }

    /// Build it recording into `trace`.
    pub fn build_with_trace(cfg: &Config, trace: Option<Trace>) -> anyhow::Result<Machine> {
        cfg.validate()?;
        let memory = SystemMemory::new(cfg.memory.size.0).context("memory.size")?;
        let bus = match cfg.machine.bus {
            BusKind::Isa => SystemBus::Isa,
            BusKind::Eisa => SystemBus::Eisa,
        };
        let timing = cfg.machine.timing.as_deref().and_then(hal::MachineTiming::preset);
        let hal =
            Hal::new(memory.clone(), HalConfig { map_register_pages: cfg.memory.map_register_pages, bus, timing })
                .context("memory.map_register_pages")?;
        // With a timing preset the trace stamps events with the machine's virtual time (docs/dma.md, "Virtual time").
        if let (Some(t), Some(clock)) = (&trace, hal.virtual_clock()) {
            t.use_virtual_clock(clock.clone());
        }
        let mut adapters = Vec::new();
        let mut monitors = Vec::new();
        let mut disks = Vec::new();
        // Filled only by RBD disks that several hosts serve.
        #[cfg_attr(not(feature = "rbd"), allow(unused_mut))]
        let mut watches = Vec::new();
        for (i, a) in cfg.adapters.iter().enumerate() {
            let mut targets: Vec<(u8, Arc<Target>)> = Vec::new();
            for (k, d) in a.disks.iter().enumerate() {
                let field = format!("adapter[{i}].disk[{k}]");
                #[cfg(feature = "rbd")]
                let mut rbd_handle = None;
                let backend: Arc<dyn Backend> = match d.backend {
                    BackendKind::Ram => Arc::new(RamBackend::new(d.size.0)),
                    BackendKind::File => {
                        if let Some(dir) = d.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                            std::fs::create_dir_all(dir)
                                .with_context(|| format!("{field}.path: cannot create {}", dir.display()))?;
                        }
                        let opts = FileOptions { preallocate: d.preallocate, direct: d.direct, create: true };
                        Arc::new(
                            FileBackend::open(&d.path, d.size.0, opts)
                                .with_context(|| format!("{field}.path: {}", d.path.display()))?,
                        )
                    }
                    #[cfg(not(feature = "rbd"))]
                    BackendKind::Rbd => bail!("{field}.backend: {}", crate::config::NO_RBD),
                    #[cfg(feature = "rbd")]
                    BackendKind::Rbd => {
                        let opts = scsi::RbdOptions {
                            ceph_conf: d.ceph_conf.clone(),
                            client: d.client.clone(),
                            create_size: d.size.0,
                            op_timeout: std::time::Duration::from_secs(d.ceph_timeout),
                            ..scsi::RbdOptions::new(d.pool.clone(), d.image.clone())
                        };
                        let rbd = Arc::new(scsi::RbdBackend::open(&opts).with_context(|| format!("{field}: rbd"))?);
                        rbd_handle = Some(rbd.clone());
                        rbd
                    }
                };
                let backend: Arc<dyn Backend> = if d.encryption {
                    let key = d
                        .key_path
                        .clone()
                        .or_else(|| (d.backend == BackendKind::File).then(|| d.path.with_extension("key")));
                    Arc::new(
                        EncryptedBackend::new(backend, key.as_deref())
                            .with_context(|| format!("{field}.encryption"))?,
                    )
                } else {
                    backend
                };
                let backend: Arc<dyn Backend> = match &d.durability_log {
                    Some(log) => Arc::new(
                        scsi::backend::durability::DurabilityLog::new(backend, log)
                            .with_context(|| format!("{field}.durability_log: {}", log.display()))?,
                    ),
                    None => backend,
                };
                // An RBD image is the same logical unit whichever host serves it: its serial (and the NAA name
                // derived from it) come from the image, not from this host's adapter.
                let serial = d.serial.clone().unwrap_or_else(|| match d.backend {
                    BackendKind::Rbd => rbd_serial(&d.pool, &d.image),
                    _ => format!("{}T{}L{}", a.name, d.target, d.lun),
                });
                let pr_state_file = (d.backend == BackendKind::File).then(|| d.path.with_extension("pr"));
                let dc = scsi::DiskConfig {
                    block_size: d.block_size,
                    // An existing RBD image keeps its own size; `size` only creates one.
                    blocks: match d.backend {
                        BackendKind::Rbd => backend.size() / d.block_size as u64,
                        _ => d.size.0 / d.block_size as u64,
                    },
                    read_only: d.read_only,
                    thin_provisioning: d.thin_provisioning,
                    vendor: d.vendor.clone(),
                    product: d.product.clone(),
                    serial,
                    pr_state_file,
                    faults: d.faults.clone().unwrap_or_default(),
                    revision: d.revision.clone(),
                    wwn: d.naa.as_deref().and_then(|n| crate::frontends_config::parse_naa(n).ok()).unwrap_or(0),
                    write_cache: d.write_cache,
                    physical_block_size: d.physical_block_size,
                    removable: d.removable,
                    sanitize_bytes_per_second: d.sanitize_rate.0,
                    crypto_erase: d.encryption,
                    port_group: d.port_group,
                    port_groups: d.port_groups.clone(),
                    ..Default::default()
                };
                let disk = Arc::new(Disk::new(dc, backend).map_err(|e| anyhow::anyhow!("{field}: {e}"))?);
                #[cfg(feature = "rbd")]
                if let (Some(rbd), true) = (rbd_handle, d.port_groups.len() > 1) {
                    watches.push(PeerWatch::start(
                        rbd,
                        disk.clone(),
                        d.image.clone(),
                        d.port_group,
                        d.port_groups.clone(),
                        std::time::Duration::from_secs(d.peer_timeout),
                    ));
                }
                let target = match targets.iter().find(|(t, _)| *t == d.target) {
                    Some((_, t)) => t.clone(),
                    None => {
                        let t = Arc::new(Target::new());
                        targets.push((d.target, t.clone()));
                        t
                    }
                };
                target.add_lun(d.lun as u64, disk.clone());
                disks.push((a.name.clone(), d.target, d.lun, disk));
            }
            let hc = hba::HbaConfig {
                io_base: a.io_base,
                irq: a.irq as u8,
                dma_channel: a.dma_channel,
                max_transfer: a.max_transfer.0 as u32,
                demand_mode: a.demand_mode,
                application_dedicated: a.application_dedicated,
                queue_depth: a.queue_depth,
                disconnect: a.disconnect,
                eisa_dma: bus == SystemBus::Eisa,
                scsi_timing: timing.map(|_| hba::ScsiTiming::SCSI2_5MB),
                targets,
            };
            let options = AdapterOptions {
                name: a.name.clone(),
                verifier: a.verifier.unwrap_or(cfg.verifier.mode),
                trace: trace.clone(),
                ..Default::default()
            };
            let miniport = match &a.miniport {
                // SAFETY: the configuration names this library as the miniport to run; it runs in this process as a
                // miniport runs in the kernel it is loaded into.
                Some(path) => {
                    Some(unsafe { miniport_c::load(path) }.with_context(|| format!("adapter[{i}].miniport"))?)
                }
                None => None,
            };
            let handle = match (a.kind, miniport) {
                (HbaKind::Reference, None) => {
                    let hw = hc.build_hardware().with_context(|| format!("adapter[{i}]"))?;
                    monitors.push(hw.monitor());
                    hba::start_with_hardware(hal.clone(), hw, hc.miniport_config(), hc.resources(), options)
                        .with_context(|| format!("adapter[{i}]"))?
                }
                (HbaKind::Reference, Some(miniport)) => {
                    let hw = hc.build_hardware().with_context(|| format!("adapter[{i}]"))?;
                    monitors.push(hw.monitor());
                    miniport_c::start(&miniport, hal.clone(), Box::new(hw), hc.resources(), options)
                        .with_context(|| format!("adapter[{i}].miniport"))?
                }
                (HbaKind::Esp, miniport) => {
                    let ec = esp::EspConfig {
                        settings: esp::EspSettings {
                            io_base: hc.io_base,
                            irq: hc.irq,
                            dma_channel: hc.dma_channel,
                            ..esp::EspSettings::default()
                        },
                        targets: hc.targets.clone(),
                    };
                    let miniport = miniport.unwrap_or_else(esp::miniport);
                    let hw = ec.build_hardware().with_context(|| format!("adapter[{i}]"))?;
                    miniport_c::start(&miniport, hal.clone(), Box::new(hw), ec.resources(), options)
                        .with_context(|| format!("adapter[{i}]"))?
                }
            };
            adapters.push((a.name.clone(), handle));
        }
        Ok(Machine { memory, hal, adapters, monitors, disks, trace, watches: std::sync::Mutex::new(watches) })
    }

    pub fn memory(&self) -> &Arc<SystemMemory> {
        &self.memory
    }

    /// Virtual time the cards' SCSI bus phases took, in picoseconds (0 with timing off): all phases, and the data
    /// phases' share.
    pub fn scsi_virtual_picos(&self) -> (u64, u64) {
        let data_ps = if self.hal.timing().is_some() { hba::ScsiTiming::SCSI2_5MB.data_byte_ps } else { 0 };
        self.monitors
            .iter()
            .map(|m| m.counters())
            .fold((0, 0), |(all, data), c| (all + c.scsi_virtual_ps, data + (c.bytes_in + c.bytes_out) * data_ps))
    }

    pub fn hal(&self) -> &Arc<Hal> {
        &self.hal
    }

    pub fn trace(&self) -> Option<&Trace> {
        self.trace.as_ref()
    }

    pub fn adapter(&self, name: &str) -> Option<&AdapterHandle> {
        self.adapters.iter().find(|(n, _)| n == name).map(|(_, h)| h)
    }

    pub fn adapters(&self) -> impl Iterator<Item = &AdapterHandle> {
        self.adapters.iter().map(|(_, h)| h)
    }

    /// The disk logical unit itself (for fault injection and inspection).
    pub fn disk(&self, adapter: &str, target: u8, lun: u8) -> Option<&Arc<Disk>> {
        self.disks.iter().find(|(a, t, l, _)| a == adapter && *t == target && *l == lun).map(|(_, _, _, d)| d)
    }

    /// Every disk: adapter name, target, LUN and the logical unit.
    pub fn disks(&self) -> impl Iterator<Item = (&str, u8, u8, &Arc<Disk>)> {
        self.disks.iter().map(|(a, t, l, d)| (a.as_str(), *t, *l, d))
    }

    /// Open a disk through the class driver.
    pub fn open_disk(&self, adapter: &str, target: u8, lun: u8) -> anyhow::Result<DiskClass> {
        let Some(h) = self.adapter(adapter) else { bail!("no adapter named '{adapter}'") };
        let address = LuAddress { path_id: 0, target_id: target, lun };
        Ok(DiskClass::open(h.clone(), address, self.memory.clone())?)
    }

    /// The first configured disk, through the class driver.
    pub fn open_first_disk(&self) -> anyhow::Result<DiskClass> {
        let Some((a, t, l, _)) = self.disks.first() else { bail!("no disk is configured") };
        self.open_disk(a, *t, *l)
    }

    /// Make every disk's data durable (at shutdown).
    pub fn flush_disks(&self) {
        // One SYNCHRONIZE CACHE per disk; opening each through the class driver would first re-read its identity.
        for (a, t, l, _) in &self.disks {
            if let Some(h) = self.adapter(a) {
                let address = LuAddress { path_id: 0, target_id: *t, lun: *l };
                // A first command on this nexus may meet the power-on unit attention: retry as the class driver would.
                for _ in 0..=class::MAX_RETRIES {
                    let mut srb = port::Srb::execute_scsi(address, &class::cdb::synchronize_cache10());
                    srb.srb_flags.insert(port::SrbFlags::NO_QUEUE_FREEZE);
                    if h.execute(srb).srb_status.is_success() {
                        break;
                    }
                }
            }
        }
    }

    /// Stop every adapter (the hosts sharing a logical unit first hear that this one left).
    pub fn shutdown(&self) {
        if let Ok(mut w) = self.watches.lock() {
            for mut watch in w.drain(..) {
                watch.stop();
            }
        }
        for (_, h) in &self.adapters {
            h.shutdown();
        }
    }
}
