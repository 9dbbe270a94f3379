//! One iSCSI target's LUN map: iSCSI LUN numbers onto disks of any adapter, each reached through that adapter's
//! pass-through path. The map answers REPORT LUNS itself (the LUNs of this target, whatever adapters they are on),
//! speaks for absent LUNs (SPC-4 §4.6.4), can change while sessions run — every I_T nexus then sees one
//! 06/3F/0E REPORTED LUNS DATA HAS CHANGED (SPC-4 §6.33, SAM-5 §5.14) — and counts every command per LU.

use crate::metrics::{LuStats, Op};
use bytes::Bytes;
use iscsi::{ScsiBackend, ScsiCommand, ScsiResponse, TmfResponse};
use parking_lot::{Mutex, RwLock};
use passthrough::PassThroughLuns;
use scsi_proto::opcode::{INQUIRY, REPORT_LUNS, REQUEST_SENSE};
use scsi_proto::{cdb, inquiry, AscAscq, Sense, SenseKey};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One mapped LUN.
#[derive(Clone)]
pub struct Mapped {
    /// `adapter:target:lun`.
    pub disk: String,
    pub adapter: String,
    /// The LU on that adapter's bus, as the pass-through path numbers it (`target * 8 + lun`).
    inner: u64,
    backend: Arc<PassThroughLuns>,
    stats: Arc<LuStats>,
}

/// The LUN map of one target.
pub struct LunMap {
    name: String,
    /// Mixed into every initiator identity: an I_T nexus includes the target port.
    salt: u64,
    luns: RwLock<BTreeMap<u64, Mapped>>,
    generation: AtomicU64,
    /// Per I_T nexus, the map generation it was last told about.
    seen: Mutex<HashMap<u64, u64>>,
}

/// A mapping that cannot be made.
#[derive(thiserror::Error, Debug, PartialEq, Eq)]
pub enum MapError {
    #[error("LUN {0} is already mapped")]
    Taken(u64),
    #[error("LUN {0} is not mapped")]
    NotMapped(u64),
    #[error("LUN {0} is outside 0-16383")]
    Range(u64),
}

impl LunMap {
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let salt = iscsi::nexus_id(&name, &[0; 6]);
        LunMap { name, salt, luns: RwLock::new(BTreeMap::new()), generation: AtomicU64::new(0), seen: Mutex::default() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Map `lun` to the LU `inner` (`target * 8 + lun`) of `adapter`'s bus, reached through `backend`.
    pub fn add(
        &self,
        lun: u64,
        disk: String,
        adapter: String,
        inner: u64,
        backend: Arc<PassThroughLuns>,
        stats: Arc<LuStats>,
    ) -> Result<(), MapError> {
        if lun >= 16384 {
            return Err(MapError::Range(lun));
        }
        let mut luns = self.luns.write();
        if luns.contains_key(&lun) {
            return Err(MapError::Taken(lun));
        }
        luns.insert(lun, Mapped { disk, adapter, inner, backend, stats });
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    pub fn remove(&self, lun: u64) -> Result<Mapped, MapError> {
        let gone = self.luns.write().remove(&lun).ok_or(MapError::NotMapped(lun))?;
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(gone)
    }

    /// (LUN, disk) pairs in LUN order.
    pub fn list(&self) -> Vec<(u64, String)> {
        self.luns.read().iter().map(|(l, m)| (*l, m.disk.clone())).collect()
    }

    fn get(&self, lun: u64) -> Option<Mapped> {
        self.luns.read().get(&lun).cloned()
    }

    fn nexus(&self, initiator: u64) -> u64 {
        initiator ^ self.salt
    }

    /// Whether this nexus must first be told that the LUN inventory changed. INQUIRY and REQUEST SENSE do not
    /// report a unit attention; REPORT LUNS clears it (SPC-4 §6.33).
    fn unit_attention(&self, nexus: u64, op: Option<u8>) -> bool {
        let now = self.generation.load(Ordering::Acquire);
        let mut seen = self.seen.lock();
        let last = seen.entry(nexus).or_insert(now);
        if *last >= now || matches!(op, Some(INQUIRY | REQUEST_SENSE)) {
            return false;
        }
        *last = now;
        op != Some(REPORT_LUNS)
    }

    fn backends(&self) -> Vec<Arc<PassThroughLuns>> {
        let mut v: Vec<(String, Arc<PassThroughLuns>)> = Vec::new();
        for m in self.luns.read().values() {
            if !v.iter().any(|(a, _)| *a == m.adapter) {
                v.push((m.adapter.clone(), m.backend.clone()));
            }
        }
        v.into_iter().map(|(_, b)| b).collect()
    }
}

fn check(key: SenseKey, code: AscAscq) -> ScsiResponse {
    ScsiResponse::check_condition(key as u8, code.0, code.1)
}

/// REPORT LUNS parameter data (SPC-4 §6.33) for `luns`, cut to the CDB's allocation length.
fn report_luns(luns: &[u64], cdb: &[u8]) -> ScsiResponse {
    if cdb.len() < 12 {
        return check(SenseKey::IllegalRequest, AscAscq::INVALID_FIELD_IN_CDB);
    }
    let alloc = u32::from_be_bytes([cdb[6], cdb[7], cdb[8], cdb[9]]) as usize;
    // SELECT REPORT 00h, 02h: every LU; 01h: well-known LUs only (none here); 10h-12h administrative (none).
    let list: &[u64] = match cdb[2] {
        0x00 | 0x02 => luns,
        0x01 | 0x10..=0x12 => &[],
        _ => return check(SenseKey::IllegalRequest, AscAscq::INVALID_FIELD_IN_CDB),
    };
    if alloc < 16 && alloc != 0 {
        return check(SenseKey::IllegalRequest, AscAscq::INVALID_FIELD_IN_CDB);
    }
    let mut d = Vec::with_capacity(8 + 8 * list.len());
    d.extend_from_slice(&((list.len() * 8) as u32).to_be_bytes());
    d.extend_from_slice(&[0; 4]);
    for l in list {
        d.extend_from_slice(&iscsi::backend::encode_lun(*l).to_be_bytes());
    }
    d.truncate(alloc);
    ScsiResponse::good(Bytes::from(d))
}

/// The command's kind and the bytes it moves, for the counters.
fn classify(cdb: &[u8]) -> Op {
    match cdb.first() {
        Some(&op) if cdb::is_read(op) => Op::Read,
        Some(&op) if cdb::is_write(op) => Op::Write,
        _ => Op::Other,
    }
}

impl ScsiBackend for LunMap {
    fn luns(&self) -> Vec<u64> {
        self.luns.read().keys().copied().collect()
    }

    async fn execute(&self, mut cmd: ScsiCommand) -> ScsiResponse {
        let op = cmd.cdb.first().copied();
        cmd.initiator = self.nexus(cmd.initiator);
        if self.unit_attention(cmd.initiator, op) {
            if let Some(m) = self.get(cmd.lun) {
                m.stats.begin().finish(Op::Other, 0, false);
            }
            return check(SenseKey::UnitAttention, AscAscq::REPORTED_LUNS_DATA_CHANGED);
        }
        if op == Some(REPORT_LUNS) {
            return report_luns(&self.luns(), &cmd.cdb);
        }
        let Some(m) = self.get(cmd.lun) else {
            // SPC-4 §4.6.4: an absent LUN answers INQUIRY with "not capable", REQUEST SENSE with 05/25/00 as data,
            // everything else CHECK CONDITION 05/25/00.
            return match op {
                Some(INQUIRY) => ScsiResponse::good(Bytes::from(inquiry::absent_lun(cmd.expected_len as usize))),
                Some(REQUEST_SENSE) => {
                    let mut s = Sense::new(SenseKey::IllegalRequest, AscAscq::LU_NOT_SUPPORTED).to_fixed();
                    s.truncate(cmd.expected_len as usize);
                    ScsiResponse::good(Bytes::from(s))
                }
                _ => check(SenseKey::IllegalRequest, AscAscq::LU_NOT_SUPPORTED),
            };
        };
        let kind = classify(&cmd.cdb);
        let out_len = cmd.data_out.len() as u64;
        cmd.lun = m.inner;
        let counting = m.stats.begin();
        let r = m.backend.execute(cmd).await;
        let bytes = match kind {
            Op::Read => r.data_in.len() as u64,
            Op::Write => out_len,
            Op::Other => 0,
        };
        counting.finish(kind, bytes, r.status == iscsi::backend::status::GOOD);
        r
    }

    async fn abort_task(&self, initiator: u64, lun: u64, tag: u32) -> TmfResponse {
        match self.get(lun) {
            Some(m) => m.backend.abort_task(self.nexus(initiator), m.inner, tag).await,
            None => TmfResponse::NoTask,
        }
    }

    async fn abort_task_set(&self, initiator: u64, lun: u64) -> TmfResponse {
        match self.get(lun) {
            Some(m) => m.backend.abort_task_set(self.nexus(initiator), m.inner).await,
            None => TmfResponse::NoLun,
        }
    }

    async fn lun_reset(&self, lun: u64) -> TmfResponse {
        match self.get(lun) {
            Some(m) => m.backend.lun_reset(m.inner).await,
            None => TmfResponse::NoLun,
        }
    }

    async fn target_reset(&self) -> TmfResponse {
        for b in self.backends() {
            b.target_reset().await;
        }
        TmfResponse::Complete
    }

    fn initiator_port(&self, initiator: u64, name: &str, isid: [u8; 6]) {
        let nexus = self.nexus(initiator);
        for b in self.backends() {
            b.initiator_port(nexus, name, isid);
        }
    }

    async fn nexus_loss(&self, initiator: u64) {
        let nexus = self.nexus(initiator);
        self.seen.lock().remove(&nexus);
        for b in self.backends() {
            b.nexus_loss(nexus).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scsi_proto::opcode::READ_10;

    #[test]
    fn report_luns_lists_the_map_and_honours_the_allocation_length() {
        let mut cdb = [0u8; 12];
        cdb[0] = REPORT_LUNS;
        cdb[9] = 255;
        let r = report_luns(&[0, 3, 300], &cdb);
        assert_eq!(r.status, 0);
        assert_eq!(&r.data_in[..4], &24u32.to_be_bytes());
        assert_eq!(&r.data_in[16..18], &[0, 3]);
        assert_eq!(&r.data_in[24..26], &[0x41, 0x2C], "LUN 300 uses flat space addressing");
        cdb[9] = 16;
        assert_eq!(report_luns(&[0, 3, 300], &cdb).data_in.len(), 16);
        cdb[2] = 0x01;
        cdb[9] = 255;
        assert_eq!(report_luns(&[0, 3], &cdb).data_in.len(), 8, "no well-known LUs");
        cdb[2] = 0x07;
        assert_eq!(report_luns(&[0], &cdb).status, 2);
    }

    #[test]
    fn a_changed_map_is_reported_once_per_nexus_and_report_luns_clears_it() {
        let m = LunMap::new("iqn.x");
        assert!(!m.unit_attention(1, Some(READ_10)), "a new nexus has nothing to be told");
        assert!(!m.unit_attention(2, Some(READ_10)));
        m.generation.fetch_add(1, Ordering::AcqRel);
        assert!(!m.unit_attention(1, Some(INQUIRY)), "INQUIRY does not report it");
        assert!(m.unit_attention(1, Some(READ_10)));
        assert!(!m.unit_attention(1, Some(READ_10)), "reported once");
        assert!(!m.unit_attention(2, Some(REPORT_LUNS)), "REPORT LUNS clears it without reporting");
        assert!(!m.unit_attention(2, Some(READ_10)));
    }
}
