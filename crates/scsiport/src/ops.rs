//! The running server as an operator sees it: its iSCSI targets (LUN maps that change at run time, one iSCSI server
//! per portal), its NBD exports (added and removed at run time), the counters, and the operations that the control
//! socket and SIGHUP reload perform on them. `docs/control.md` describes the operations.

use crate::config::{parse_disk_ref, BackendKind, Config};
use crate::frontends_config::{self as fc, IscsiTargetConfig, NbdExportConfig};
use crate::machine::Machine;
use crate::metrics::Registry;
use anyhow::{anyhow, bail, Context};
use frontends::lun_map::LunMap;
use frontends::metered::Metered;
use frontends::nbd_disk::ClassDisk;
use parking_lot::{Mutex, RwLock};
use passthrough::PassThroughLuns;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The device behind every NBD export.
pub type ExportDevice = Metered<ClassDisk>;
pub type NbdServer = nbd::NbdServer<ExportDevice>;
pub type IscsiServer = iscsi::IscsiServer<LunMap>;

/// A served export.
pub struct ExportEntry {
    pub cfg: NbdExportConfig,
    pub device: Arc<ExportDevice>,
}

/// An open NBD connection.
#[derive(Clone, Debug)]
pub struct NbdConnection {
    pub peer: String,
    pub since: SystemTime,
}

/// The running server.
pub struct Running {
    pub machine: Arc<Machine>,
    /// The configuration in force (after run-time changes and reloads).
    pub cfg: Mutex<Config>,
    /// The file it came from, for SIGHUP.
    pub config_path: Option<PathBuf>,
    pub metrics: Arc<Registry>,
    /// One pass-through path per adapter, shared by every target that maps its disks.
    pass_through: BTreeMap<String, Arc<PassThroughLuns>>,
    /// Targets (fixed at start) and their LUN maps (changeable).
    targets: Vec<(IscsiTargetConfig, Arc<LunMap>)>,
    /// Each target's access list as it is now (same order as `targets`; empty admits every initiator).
    acls: Mutex<Vec<Vec<String>>>,
    /// One iSCSI server per portal, with the targets offered there.
    iscsi: Vec<(SocketAddr, Arc<IscsiServer>)>,
    /// The NBD exports; a change builds a new server for new connections, old connections keep theirs.
    nbd: RwLock<(Vec<ExportEntry>, Arc<NbdServer>)>,
    nbd_conns: Mutex<BTreeMap<u64, NbdConnection>>,
    next_conn: AtomicU64,
    verifier: Mutex<BTreeMap<String, port::VerifierMode>>,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Running {
    /// Build the front ends a configuration describes (nothing listens yet). Runs on a runtime thread that may block.
    pub fn new(cfg: Config, config_path: Option<PathBuf>, machine: Arc<Machine>) -> anyhow::Result<Running> {
        let metrics = Arc::new(Registry::default());
        let mut pass_through = BTreeMap::new();
        for a in &cfg.adapters {
            if !a.application_dedicated {
                continue;
            }
            let handle = machine.adapter(&a.name).with_context(|| format!("adapter {}", a.name))?.clone();
            let block_sizes: Vec<(u8, u8, u32)> = a.disks.iter().map(|d| (d.target, d.lun, d.block_size)).collect();
            pass_through
                .insert(a.name.clone(), Arc::new(PassThroughLuns::new(handle, machine.memory().clone(), &block_sizes)));
        }
        let verifier = cfg.adapters.iter().map(|a| (a.name.clone(), a.verifier.unwrap_or(cfg.verifier.mode))).collect();
        let mut r = Running {
            machine,
            cfg: Mutex::new(cfg.clone()),
            config_path,
            metrics,
            pass_through,
            targets: Vec::new(),
            acls: Mutex::default(),
            iscsi: Vec::new(),
            nbd: RwLock::new((Vec::new(), Arc::new(nbd::NbdServer::new(nbd::ServerConfig::default(), Vec::new())))),
            nbd_conns: Mutex::default(),
            next_conn: AtomicU64::new(1),
            verifier: Mutex::new(verifier),
        };
        let targets = fc::iscsi_targets(&cfg);
        for t in &targets {
            let map = Arc::new(LunMap::new(t.name.clone()));
            for m in &t.luns {
                r.map_lun(&map, m.lun, &m.disk)?;
            }
            r.targets.push((t.clone(), map));
        }
        *r.acls.lock() = r.targets.iter().map(|(t, _)| t.initiators.clone()).collect();
        let mut portals: Vec<SocketAddr> = Vec::new();
        for t in &targets {
            for p in &t.portals {
                if !portals.contains(p) {
                    portals.push(*p);
                }
            }
        }
        for p in portals {
            let list: Vec<(iscsi::TargetConfig, Arc<LunMap>)> = r
                .targets
                .iter()
                .filter(|(t, _)| t.portals.contains(&p))
                .map(|(t, m)| (t.target_config(p), m.clone()))
                .collect();
            r.iscsi.push((p, Arc::new(iscsi::IscsiServer::new(list))));
        }
        let mut exports = Vec::new();
        for e in fc::nbd_exports(&cfg) {
            exports.push(r.open_export(e)?);
        }
        let server = Arc::new(Self::build_nbd_server(&exports));
        *r.nbd.write() = (exports, server);
        Ok(r)
    }

    fn map_lun(&self, map: &LunMap, lun: u64, disk: &str) -> anyhow::Result<()> {
        let (a, t, l) = parse_disk_ref(disk).ok_or_else(|| anyhow!("'{disk}' is not adapter:target:lun"))?;
        if self.machine.disk(&a, t, l).is_none() {
            bail!("no disk {disk} is configured");
        }
        let backend = self
            .pass_through
            .get(&a)
            .ok_or_else(|| {
                anyhow!("adapter '{a}' has application_dedicated = false; iSCSI needs the pass-through path")
            })?
            .clone();
        let stats = self.metrics.lu("iscsi", disk);
        map.add(lun, disk.to_string(), a, t as u64 * 8 + l as u64, backend, stats)?;
        Ok(())
    }

    fn open_export(&self, e: NbdExportConfig) -> anyhow::Result<ExportEntry> {
        let (a, t, l) = parse_disk_ref(&e.disk).ok_or_else(|| anyhow!("'{}' is not adapter:target:lun", e.disk))?;
        if self.machine.disk(&a, t, l).is_none() {
            bail!("no disk {} is configured", e.disk);
        }
        let disk = tokio::task::block_in_place(|| self.machine.open_disk(&a, t, l))
            .with_context(|| format!("opening {} through the class driver", e.disk))?;
        let class = Arc::new(ClassDisk::new(Arc::new(disk), e.read_only));
        let device = Arc::new(Metered::new(class, self.metrics.lu("nbd", &e.disk)));
        Ok(ExportEntry { cfg: e, device })
    }

    fn build_nbd_server(exports: &[ExportEntry]) -> NbdServer {
        let list = exports
            .iter()
            .map(|x| {
                let mut export = nbd::Export::new(x.cfg.name.clone(), x.device.clone());
                export.description =
                    x.cfg.description.clone().unwrap_or_else(|| format!("scsiport disk {}", x.cfg.disk));
                export.read_only = x.cfg.read_only;
                export
            })
            .collect();
        nbd::NbdServer::new(nbd::ServerConfig::default(), list)
    }

    /// The iSCSI servers, one per portal.
    pub fn iscsi_servers(&self) -> &[(SocketAddr, Arc<IscsiServer>)] {
        &self.iscsi
    }

    pub fn targets(&self) -> &[(IscsiTargetConfig, Arc<LunMap>)] {
        &self.targets
    }

    /// The NBD server new connections get.
    pub fn nbd_server(&self) -> Arc<NbdServer> {
        self.nbd.read().1.clone()
    }

    pub fn has_exports(&self) -> bool {
        !self.nbd.read().0.is_empty()
    }

    /// Record an NBD connection; the returned guard forgets it.
    pub fn nbd_connected(self: &Arc<Self>, peer: String) -> ConnGuard {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        self.nbd_conns.lock().insert(id, NbdConnection { peer, since: SystemTime::now() });
        self.metrics.nbd.connections_total.fetch_add(1, Ordering::Relaxed);
        self.metrics.nbd.connections_open.fetch_add(1, Ordering::Relaxed);
        ConnGuard { running: self.clone(), id }
    }

    fn target(&self, name: &str) -> anyhow::Result<&Arc<LunMap>> {
        self.targets
            .iter()
            .find(|(t, _)| t.name.eq_ignore_ascii_case(name))
            .map(|(_, m)| m)
            .ok_or_else(|| anyhow!("no target named '{name}'"))
    }

    /// Map a disk into a running target's LUN map; its sessions see REPORTED LUNS DATA HAS CHANGED.
    pub fn add_lun(&self, target: &str, lun: u64, disk: &str) -> anyhow::Result<()> {
        let map = self.target(target)?;
        self.map_lun(map, lun, disk)?;
        let mut cfg = self.cfg.lock();
        if let Some(t) = cfg.iscsi_targets.iter_mut().find(|t| t.name.eq_ignore_ascii_case(target)) {
            t.luns.push(fc::LunMapping { lun, disk: disk.to_string() });
        }
        Ok(())
    }

    pub fn remove_lun(&self, target: &str, lun: u64) -> anyhow::Result<String> {
        let gone = self.target(target)?.remove(lun)?;
        let mut cfg = self.cfg.lock();
        if let Some(t) = cfg.iscsi_targets.iter_mut().find(|t| t.name.eq_ignore_ascii_case(target)) {
            t.luns.retain(|m| m.lun != lun);
        }
        Ok(gone.disk)
    }

    /// Serve another export; connections already open are untouched.
    pub fn add_export(&self, e: NbdExportConfig) -> anyhow::Result<()> {
        if e.name.is_empty() || e.name.len() > 4096 {
            bail!("the export name must be 1 to 4096 bytes");
        }
        if self.nbd.read().0.iter().any(|x| x.cfg.name == e.name) {
            bail!("an export named '{}' exists", e.name);
        }
        let entry = self.open_export(e.clone())?;
        let mut nbd = self.nbd.write();
        if nbd.0.iter().any(|x| x.cfg.name == e.name) {
            bail!("an export named '{}' exists", e.name);
        }
        nbd.0.push(entry);
        nbd.1 = Arc::new(Self::build_nbd_server(&nbd.0));
        drop(nbd);
        let mut cfg = self.cfg.lock();
        if cfg.nbd_exports.is_empty() {
            cfg.nbd_exports = fc::nbd_exports(&cfg);
            cfg.nbd_exports.retain(|x| x.name != e.name);
        }
        cfg.nbd_exports.push(e);
        Ok(())
    }

    /// Stop serving an export: new connections no longer see it, clients attached to it get ESHUTDOWN.
    pub async fn remove_export(&self, name: &str) -> anyhow::Result<()> {
        let entry = {
            let mut nbd = self.nbd.write();
            let i = nbd.0.iter().position(|x| x.cfg.name == name).ok_or_else(|| anyhow!("no export named '{name}'"))?;
            let entry = nbd.0.remove(i);
            nbd.1 = Arc::new(Self::build_nbd_server(&nbd.0));
            entry
        };
        entry.device.retire();
        // What its clients wrote reaches the medium before the export is gone.
        nbd::BlockDevice::flush(&*entry.device).await.map_err(|e| anyhow!("flushing export '{name}': {e}"))?;
        let mut cfg = self.cfg.lock();
        if cfg.nbd_exports.is_empty() {
            cfg.nbd_exports = fc::nbd_exports(&cfg);
        }
        cfg.nbd_exports.retain(|x| x.name != name);
        Ok(())
    }

    fn target_index(&self, name: &str) -> anyhow::Result<usize> {
        self.targets
            .iter()
            .position(|(t, _)| t.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| anyhow!("no target named '{name}'"))
    }

    /// Make `list` the access list of target `i`: every portal's server checks later logins against it.
    fn set_acl(&self, i: usize, list: Vec<String>) {
        let name = &self.targets[i].0.name;
        let allowed = (!list.is_empty()).then(|| list.clone());
        for (_, s) in &self.iscsi {
            s.set_allowed_initiators(name, allowed.clone());
        }
        let mut cfg = self.cfg.lock();
        if let Some(t) = cfg.iscsi_targets.iter_mut().find(|t| t.name.eq_ignore_ascii_case(name)) {
            t.initiators = list.clone();
        }
        self.acls.lock()[i] = list;
    }

    /// Admit an initiator name or pattern to a target; answers with the access list now in force.
    pub fn acl_add(&self, target: &str, initiator: &str) -> anyhow::Result<Vec<String>> {
        let i = self.target_index(target)?;
        if initiator.is_empty() || initiator.len() > 223 {
            bail!("an initiator name or pattern is 1 to 223 bytes");
        }
        let mut list = self.acls.lock()[i].clone();
        if list.iter().any(|x| x.eq_ignore_ascii_case(initiator)) {
            bail!("'{initiator}' is already on the access list of {}", self.targets[i].0.name);
        }
        // An empty list admits everyone: its first entry narrows access to that entry.
        list.push(initiator.to_string());
        self.set_acl(i, list.clone());
        Ok(list)
    }

    /// Take an initiator name or pattern off a target's access list (sessions logged in stay; `close-session` ends
    /// them). The last entry is refused: an empty list would admit every initiator.
    pub fn acl_remove(&self, target: &str, initiator: &str) -> anyhow::Result<Vec<String>> {
        let i = self.target_index(target)?;
        let mut list = self.acls.lock()[i].clone();
        let name = &self.targets[i].0.name;
        let Some(at) = list.iter().position(|x| x.eq_ignore_ascii_case(initiator)) else {
            bail!("'{initiator}' is not on the access list of {name}");
        };
        if list.len() == 1 {
            bail!("'{initiator}' is the last entry of {name}'s access list, and an empty list admits every initiator");
        }
        list.remove(at);
        self.set_acl(i, list.clone());
        Ok(list)
    }

    /// End an iSCSI session by TSIH (on every portal, or the one named).
    pub fn close_session(&self, tsih: u16, portal: Option<SocketAddr>) -> anyhow::Result<usize> {
        let n = self
            .iscsi
            .iter()
            .filter(|(p, _)| portal.is_none_or(|x| x == *p))
            .filter(|(_, s)| s.close_session(tsih))
            .count();
        if n == 0 {
            bail!("no session with TSIH {tsih}");
        }
        Ok(n)
    }

    /// Replace a disk's fault switches (scsi_debug-style, see the scsi crate's FaultConfig).
    pub fn set_faults(&self, disk: &str, faults: scsi::FaultConfig) -> anyhow::Result<()> {
        let (a, t, l) = parse_disk_ref(disk).ok_or_else(|| anyhow!("'{disk}' is not adapter:target:lun"))?;
        let d = self.machine.disk(&a, t, l).ok_or_else(|| anyhow!("no disk {disk} is configured"))?;
        d.faults().apply(&faults);
        let mut cfg = self.cfg.lock();
        if let Some(dc) = cfg
            .adapters
            .iter_mut()
            .find(|x| x.name == a)
            .and_then(|x| x.disks.iter_mut().find(|d| d.target == t && d.lun == l))
        {
            dc.faults = (faults != scsi::FaultConfig::default()).then_some(faults);
        }
        Ok(())
    }

    pub fn set_verifier(&self, adapter: &str, mode: port::VerifierMode) -> anyhow::Result<()> {
        let h = self.machine.adapter(adapter).ok_or_else(|| anyhow!("no adapter named '{adapter}'"))?;
        h.set_verifier(mode);
        self.verifier.lock().insert(adapter.to_string(), mode);
        if let Some(a) = self.cfg.lock().adapters.iter_mut().find(|a| a.name == adapter) {
            a.verifier = Some(mode);
        }
        Ok(())
    }

    pub fn verifier_mode(&self, adapter: &str) -> Option<port::VerifierMode> {
        self.verifier.lock().get(adapter).copied()
    }

    /// Counters for the metrics endpoint.
    pub fn render_metrics(&self) -> String {
        let adapters = self
            .machine
            .adapters()
            .map(|h| (h.name().to_string(), h.stats(), self.verifier_mode(h.name()).unwrap_or_default()))
            .collect();
        let src = crate::metrics::Sources {
            adapters,
            hal: self.machine.hal().stats(),
            iscsi_sessions: self.iscsi.iter().map(|(_, s)| s.session_count()).sum(),
            registry: &self.metrics,
        };
        crate::metrics::render(&src)
    }

    // ----- what `ctl` lists -----

    pub fn adapters_json(&self) -> Value {
        let cfg = self.cfg.lock();
        let v: Vec<Value> = cfg
            .adapters
            .iter()
            .map(|a| {
                let h = self.machine.adapter(&a.name);
                json!({
                    "name": a.name,
                    "io_base": a.io_base,
                    "irq": a.irq,
                    "dma_channel": a.dma_channel,
                    "max_transfer": a.max_transfer.0,
                    "queue_depth": a.queue_depth,
                    "application_dedicated": a.application_dedicated,
                    "verifier": self.verifier_mode(&a.name),
                    "map_registers": h.map(|h| h.capabilities().map_registers),
                    "stats": h.map(|h| h.stats()),
                })
            })
            .collect();
        Value::Array(v)
    }

    pub fn disks_json(&self) -> Value {
        let cfg = self.cfg.lock();
        let mut v = Vec::new();
        for a in &cfg.adapters {
            for d in &a.disks {
                let lu = self.machine.disk(&a.name, d.target, d.lun);
                let c = lu.map(|x| x.config().clone());
                v.push(json!({
                    "disk": format!("{}:{}:{}", a.name, d.target, d.lun),
                    "adapter": a.name,
                    "target": d.target,
                    "lun": d.lun,
                    "size": d.size.0,
                    "block_size": d.block_size,
                    "blocks": lu.map(|x| x.blocks()),
                    "backend": match d.backend { BackendKind::File => "file", BackendKind::Ram => "ram", BackendKind::Rbd => "rbd" },
                    "path": (d.backend == BackendKind::File).then(|| d.path.display().to_string()),
                    "direct": d.direct,
                    "read_only": d.read_only,
                    "write_cache": lu.map(|x| x.write_cache_enabled()),
                    "vendor": d.vendor,
                    "product": d.product,
                    "revision": c.as_ref().map(|c| c.revision.clone()),
                    "serial": c.as_ref().map(|c| c.serial.clone()),
                    "naa": c.as_ref().map(|c| format!("{:016x}", c.wwn)),
                    "faults": d.faults.as_ref().map(faults_json),
                }));
            }
        }
        Value::Array(v)
    }

    pub fn targets_json(&self) -> Value {
        let acls = self.acls.lock().clone();
        let v: Vec<Value> = self
            .targets
            .iter()
            .zip(acls)
            .map(|((t, m), acl)| {
                json!({
                    "name": t.name,
                    "alias": t.alias,
                    "portals": t.portals.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                    "luns": m.list().into_iter().map(|(l, d)| json!({"lun": l, "disk": d})).collect::<Vec<_>>(),
                    "initiators": acl,
                    "chap": t.chap_user.is_some(),
                    "mutual_chap": t.mutual_chap_user.is_some(),
                    "header_digest": t.header_digest,
                    "data_digest": t.data_digest,
                    "nop_in_interval": t.nop_in_interval,
                    "nop_in_timeout": t.nop_in_timeout,
                    "max_recv_data_segment_length": t.max_recv_data_segment_length,
                    "max_burst_length": t.max_burst_length,
                    "first_burst_length": t.first_burst_length,
                    "queue_depth": t.queue_depth,
                })
            })
            .collect();
        Value::Array(v)
    }

    pub fn sessions_json(&self) -> Value {
        let mut v = Vec::new();
        for (portal, s) in &self.iscsi {
            let names: Vec<String> = s.targets().iter().map(|t| t.name.clone()).collect();
            for x in s.sessions() {
                v.push(json!({
                    "tsih": x.tsih,
                    "portal": portal.to_string(),
                    "initiator": x.initiator,
                    "isid": x.isid.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                    "target": x.target.and_then(|i| names.get(i).cloned()),
                    "type": if x.target.is_some() { "normal" } else { "discovery" },
                    "peer": x.peer.map(|p| p.to_string()),
                    "since": unix_secs(x.since),
                }));
            }
        }
        Value::Array(v)
    }

    pub fn exports_json(&self) -> Value {
        let nbd = self.nbd.read();
        Value::Array(
            nbd.0
                .iter()
                .map(|x| {
                    json!({
                        "name": x.cfg.name,
                        "disk": x.cfg.disk,
                        "read_only": x.cfg.read_only,
                        "description": x.cfg.description,
                        "size": nbd::BlockDevice::size(&*x.device),
                        "counters": x.device.stats().snapshot(),
                    })
                })
                .collect(),
        )
    }

    pub fn connections_json(&self) -> Value {
        let nbd: Vec<Value> = self
            .nbd_conns
            .lock()
            .iter()
            .map(|(id, c)| json!({"id": id, "peer": c.peer, "since": unix_secs(c.since)}))
            .collect();
        json!({ "nbd": nbd, "iscsi": self.sessions_json() })
    }

    pub fn counters_json(&self) -> Value {
        let lus: Vec<Value> = self
            .metrics
            .lus()
            .into_iter()
            .map(|((f, d), s)| {
                let mut v = serde_json::to_value(s.snapshot()).unwrap_or(Value::Null);
                v["frontend"] = json!(f);
                v["disk"] = json!(d);
                v
            })
            .collect();
        let adapters: Vec<Value> =
            self.machine.adapters().map(|h| json!({"adapter": h.name(), "stats": h.stats()})).collect();
        let hal = self.machine.hal().stats();
        json!({
            "lus": lus,
            "adapters": adapters,
            "hal": {"map_register_waits": hal.map_register_waits, "bounced_bytes": hal.bounced_bytes, "maps": hal.maps, "channel_waits": hal.channel_waits},
            "nbd": {"connections_open": self.metrics.nbd.connections_open.load(Ordering::Relaxed), "connections_total": self.metrics.nbd.connections_total.load(Ordering::Relaxed)},
            "iscsi": {"sessions": self.iscsi.iter().map(|(_, s)| s.session_count()).sum::<usize>()},
        })
    }

    /// The whole running configuration and state.
    pub fn list_json(&self) -> Value {
        let (nbd_cfg, iscsi_listen, control, metrics, memory) = {
            let c = self.cfg.lock();
            (c.nbd.clone(), c.iscsi.listen, c.control.clone(), c.metrics.clone(), c.memory.clone())
        };
        json!({
            "config_file": self.config_path.as_ref().map(|p| p.display().to_string()),
            "pid": std::process::id(),
            "memory": {"size": memory.size.0, "map_register_pages": memory.map_register_pages},
            "adapters": self.adapters_json(),
            "disks": self.disks_json(),
            "iscsi": {
                "portals": self.iscsi.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>(),
                "listen": iscsi_listen.to_string(),
                "targets": self.targets_json(),
                "sessions": self.sessions_json(),
            },
            "nbd": {
                "enabled": nbd_cfg.enabled,
                "listen": nbd_cfg.listen.to_string(),
                "unix": nbd_cfg.unix.as_ref().map(|p| p.display().to_string()),
                "exports": self.exports_json(),
                "connections": self.connections_json()["nbd"].clone(),
            },
            "control": {"socket": control.path().display().to_string()},
            "metrics": {"listen": metrics.listen.map(|a| a.to_string())},
        })
    }

    /// SIGHUP: read the file again and apply what changed. A bad file changes nothing.
    pub async fn reload(&self) -> anyhow::Result<Vec<String>> {
        let path =
            self.config_path.clone().ok_or_else(|| anyhow!("the server runs without --config: nothing to reload"))?;
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let new = Config::from_toml(&text).with_context(|| format!("in {}", path.display()))?;
        self.apply(new).await
    }

    /// Apply a new configuration: LUN maps, exports, faults and verifier modes change in place; anything else that
    /// differs is reported as needing a restart and left as it is.
    pub async fn apply(&self, new: Config) -> anyhow::Result<Vec<String>> {
        let old = self.cfg.lock().clone();
        let mut done = Vec::new();
        // What cannot change while running.
        let mut restart = Vec::new();
        let strip = |c: &Config| {
            let mut c = c.clone();
            for a in &mut c.adapters {
                a.verifier = None;
                for d in &mut a.disks {
                    d.faults = None;
                }
            }
            c.verifier.mode = port::VerifierMode::Strict;
            c.iscsi_targets = fc::iscsi_targets(&c);
            for t in &mut c.iscsi_targets {
                t.luns.clear();
                t.initiators.clear();
            }
            c.nbd_exports.clear();
            (
                c.memory,
                c.trace,
                c.adapters,
                c.nbd.enabled,
                c.nbd.listen,
                c.nbd.unix,
                c.iscsi.enabled,
                c.iscsi_targets,
                c.control,
                c.metrics,
            )
        };
        let (o, n) = (strip(&old), strip(&new));
        for (name, same) in [
            ("memory", format!("{:?}", o.0) == format!("{:?}", n.0)),
            ("trace", format!("{:?}", o.1) == format!("{:?}", n.1)),
            ("adapter", format!("{:?}", o.2) == format!("{:?}", n.2)),
            ("nbd.enabled", o.3 == n.3),
            ("nbd.listen", o.4 == n.4),
            ("nbd.unix", o.5 == n.5),
            ("iscsi.enabled", o.6 == n.6),
            ("iscsi targets (names, portals, authentication, limits)", o.7 == n.7),
            ("control", o.8 == n.8),
            ("metrics", o.9 == n.9),
        ] {
            if !same {
                restart.push(name);
            }
        }
        // LUN maps and access lists of the targets that exist in both.
        let new_targets = fc::iscsi_targets(&new);
        for (i, (t, map)) in self.targets.iter().enumerate() {
            let Some(nt) = new_targets.iter().find(|x| x.name.eq_ignore_ascii_case(&t.name)) else { continue };
            if self.acls.lock()[i] != nt.initiators {
                self.set_acl(i, nt.initiators.clone());
                done.push(if nt.initiators.is_empty() {
                    format!("target {}: every initiator admitted", t.name)
                } else {
                    format!("target {}: initiators {}", t.name, nt.initiators.join(", "))
                });
            }
            let now: BTreeMap<u64, String> = map.list().into_iter().collect();
            let want: BTreeMap<u64, String> = nt.luns.iter().map(|m| (m.lun, m.disk.clone())).collect();
            for (lun, disk) in &now {
                if want.get(lun) != Some(disk) {
                    map.remove(*lun)?;
                    done.push(format!("target {}: LUN {lun} ({disk}) removed", t.name));
                }
            }
            for (lun, disk) in &want {
                if now.get(lun) != Some(disk) {
                    self.map_lun(map, *lun, disk)?;
                    done.push(format!("target {}: LUN {lun} is {disk}", t.name));
                }
            }
        }
        // Exports.
        if new.nbd.enabled == old.nbd.enabled {
            let want = fc::nbd_exports(&new);
            let have: Vec<NbdExportConfig> = self.nbd.read().0.iter().map(|x| x.cfg.clone()).collect();
            for h in &have {
                if !want.contains(h) {
                    self.remove_export(&h.name).await?;
                    done.push(format!("export {} removed", h.name));
                }
            }
            for w in &want {
                if !have.contains(w) {
                    self.add_export(w.clone())?;
                    done.push(format!("export {} serves {}", w.name, w.disk));
                }
            }
        }
        // Faults and verifier modes.
        for a in &new.adapters {
            let Some(oa) = old.adapters.iter().find(|x| x.name == a.name) else { continue };
            let mode = a.verifier.unwrap_or(new.verifier.mode);
            if self.verifier_mode(&a.name) != Some(mode) {
                self.set_verifier(&a.name, mode)?;
                done.push(format!("adapter {}: verifier {mode:?}", a.name));
            }
            for d in &a.disks {
                let before =
                    oa.disks.iter().find(|x| x.target == d.target && x.lun == d.lun).and_then(|x| x.faults.clone());
                if before != d.faults && self.machine.disk(&a.name, d.target, d.lun).is_some() {
                    let r = format!("{}:{}:{}", a.name, d.target, d.lun);
                    self.set_faults(&r, d.faults.clone().unwrap_or_default())?;
                    done.push(format!(
                        "disk {r}: faults {}",
                        d.faults.as_ref().map_or("off".into(), |f| faults_json(f).to_string())
                    ));
                }
            }
        }
        for r in &restart {
            done.push(format!("not applied (needs a restart): {r}"));
        }
        // Keep what was applied; sections that need a restart keep their running values.
        let mut cfg = self.cfg.lock();
        let keep = cfg.clone();
        *cfg = new;
        if !restart.is_empty() {
            cfg.memory = keep.memory;
            cfg.trace = keep.trace;
            cfg.nbd.listen = keep.nbd.listen;
            cfg.nbd.unix = keep.nbd.unix;
            cfg.control = keep.control;
            cfg.metrics = keep.metrics;
        }
        Ok(done)
    }
}

/// A fault configuration as JSON (the same keys the configuration file and `ctl fault` take).
pub fn faults_json(f: &scsi::FaultConfig) -> Value {
    json!({
        "medium_error": f.medium_error.map(|r| json!({"start": r.start, "count": r.count})),
        "hang": f.hang,
        "aborted_command": f.aborted_command,
        "unit_attention": f.unit_attention,
        "busy": f.busy,
        "dma_stall_after": f.dma_stall_after,
        "bus_reset": f.bus_reset,
        "opcodes": f.opcodes,
    })
}

/// Forgets an NBD connection when dropped.
pub struct ConnGuard {
    running: Arc<Running>,
    id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.running.nbd_conns.lock().remove(&self.id);
        self.running.metrics.nbd.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}
