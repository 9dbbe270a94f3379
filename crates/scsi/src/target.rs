//! A bus target holding logical units; it answers REPORT LUNS and speaks for LUNs that do
//! not exist (SPC-4 §4.6.2 / §6.6.2).

use crate::disk::misc_export::{absent_lun_inquiry, report_luns_data};
use crate::disk::Disk;
use crate::sense::{AscAscq, Sense};
use crate::status::Outcome;
use crate::task::{Begin, LogicalUnit, Nexus};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Default)]
pub struct Target {
    luns: RwLock<BTreeMap<u64, Arc<Disk>>>,
}

impl Target {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) a LUN. The other LUNs report 06/3F/0E REPORTED LUNS DATA HAS
    /// CHANGED to every I_T nexus that has used them (SPC-4 §6.33).
    pub fn add_lun(&self, lun: u64, lu: Arc<Disk>) {
        let mut luns = self.luns.write();
        for (_, other) in luns.iter() {
            other.post_unit_attention(AscAscq::REPORTED_LUNS_DATA_CHANGED);
        }
        luns.insert(lun, lu);
    }

    pub fn remove_lun(&self, lun: u64) -> Option<Arc<Disk>> {
        let mut luns = self.luns.write();
        let gone = luns.remove(&lun);
        if gone.is_some() {
            for (_, other) in luns.iter() {
                other.post_unit_attention(AscAscq::REPORTED_LUNS_DATA_CHANGED);
            }
        }
        gone
    }

    pub fn lun(&self, lun: u64) -> Option<Arc<dyn LogicalUnit>> {
        self.luns.read().get(&lun).map(|d| d.clone() as Arc<dyn LogicalUnit>)
    }

    pub fn disk(&self, lun: u64) -> Option<Arc<Disk>> {
        self.luns.read().get(&lun).cloned()
    }

    pub fn luns(&self) -> Vec<u64> {
        self.luns.read().keys().copied().collect()
    }

    /// Reset every logical unit (a target or bus reset).
    pub fn reset(&self) {
        for lu in self.luns.read().values() {
            lu.reset();
        }
    }

    pub fn nexus_loss(&self, nexus: Nexus) {
        for lu in self.luns.read().values() {
            lu.nexus_loss(nexus);
        }
    }

    /// Begin a command addressed to `lun`. REPORT LUNS is answered here whatever the LUN
    /// (and clears 3F/0E for the nexus); for an absent LUN INQUIRY reports peripheral
    /// qualifier 011b, REQUEST SENSE returns 05/25/00 as data, everything else is
    /// CHECK CONDITION 05/25/00 (SPC-4 §4.6.2).
    pub fn begin(&self, nexus: Nexus, lun: u64, cdb: &[u8]) -> Begin {
        self.begin_inner(nexus, lun, cdb, None)
    }

    /// [`Target::begin`] for a transport that knows the data-out length the initiator
    /// will send (see [`LogicalUnit::begin_expecting`]).
    pub fn begin_expecting(&self, nexus: Nexus, lun: u64, cdb: &[u8], data_out_len: u64) -> Begin {
        self.begin_inner(nexus, lun, cdb, Some(data_out_len))
    }

    fn begin_inner(&self, nexus: Nexus, lun: u64, cdb: &[u8], data_out_len: Option<u64>) -> Begin {
        let op = cdb.first().copied();
        if op == Some(0xA0) {
            let luns = self.luns.read();
            let list: Vec<u64> = luns.keys().copied().collect();
            return match report_luns_data(&list, cdb) {
                Ok((data, alloc)) => {
                    for lu in luns.values() {
                        lu.clear_unit_attention(nexus, AscAscq::REPORTED_LUNS_DATA_CHANGED);
                    }
                    Begin::data_in(data, alloc)
                }
                Err(s) => Begin::check(s),
            };
        }
        if let Some(lu) = self.disk(lun) {
            return match data_out_len {
                Some(n) => lu.begin_expecting(nexus, cdb, n),
                None => lu.begin(nexus, cdb),
            };
        }
        match op {
            Some(0x12) if cdb.len() >= 6 && cdb[1] & 0x01 == 0 && cdb[2] == 0 => {
                let alloc = u64::from(u16::from_be_bytes([cdb[3], cdb[4]]));
                Begin::data_in(absent_lun_inquiry(), alloc)
            }
            Some(0x03) if cdb.len() >= 6 => {
                let desc = cdb[1] & 0x01 != 0;
                Begin::data_in(Sense::lu_not_supported().with_descriptor(desc).to_bytes(), u64::from(cdb[4]))
            }
            _ => Begin::Complete(Outcome::check(Sense::lu_not_supported())),
        }
    }
}
