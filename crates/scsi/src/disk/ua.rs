//! Unit attention conditions, kept per I_T nexus (SAM-5 §5.14, SPC-4 §5.12).

use crate::sense::AscAscq;
use crate::task::Nexus;
use parking_lot::RwLock;
use std::collections::{HashMap, VecDeque};

/// I_T NEXUS LOSS OCCURRED (SPC-4 table of additional sense codes).
const NEXUS_LOSS_OCCURRED: AscAscq = AscAscq(0x29, 0x07);

pub(crate) struct UnitAttentions {
    /// Every nexus seen, with its queued conditions, oldest first.
    known: RwLock<HashMap<Nexus, VecDeque<AscAscq>>>,
    /// A nexus not seen before starts with 06/29/00 (it sees the unit's power-on).
    power_on: bool,
}

impl UnitAttentions {
    pub(crate) fn new(power_on: bool) -> Self {
        Self { known: RwLock::new(HashMap::new()), power_on }
    }

    fn fresh(&self) -> VecDeque<AscAscq> {
        let mut q = VecDeque::new();
        if self.power_on {
            q.push_back(AscAscq::POWER_ON_RESET);
        }
        q
    }

    /// Make sure the nexus is known, without reporting anything.
    pub(crate) fn touch(&self, nexus: Nexus) {
        if self.known.read().contains_key(&nexus) {
            return;
        }
        let fresh = self.fresh();
        self.known.write().entry(nexus).or_insert(fresh);
    }

    /// Report (and clear) the oldest pending condition for the nexus.
    pub(crate) fn take(&self, nexus: Nexus) -> Option<AscAscq> {
        if let Some(q) = self.known.read().get(&nexus) {
            if q.is_empty() {
                return None;
            }
        }
        let fresh = self.fresh();
        self.known.write().entry(nexus).or_insert(fresh).pop_front()
    }

    /// Queue a condition for every known nexus except `except`. A reset supersedes what was
    /// queued before it (SAM-5 §6.3: the reset clears other unit attentions).
    pub(crate) fn post_all(&self, code: AscAscq, except: Option<Nexus>) {
        for (n, q) in self.known.write().iter_mut() {
            if Some(*n) == except {
                continue;
            }
            if code == AscAscq::POWER_ON_RESET {
                q.clear();
            }
            if !q.contains(&code) {
                q.push_back(code);
            }
        }
    }

    /// Queue a condition for one nexus.
    pub(crate) fn post(&self, nexus: Nexus, code: AscAscq) {
        let fresh = self.fresh();
        let mut known = self.known.write();
        let q = known.entry(nexus).or_insert(fresh);
        if !q.contains(&code) {
            q.push_back(code);
        }
    }

    /// The nexus is gone (SAM-5, I_T nexus loss): what it had pending goes with it, and its initiator port, when
    /// it comes back as the same I_T nexus, is told once with I_T NEXUS LOSS OCCURRED. A nexus never seen had
    /// nothing and gets nothing.
    pub(crate) fn nexus_loss(&self, nexus: Nexus) {
        if let Some(q) = self.known.write().get_mut(&nexus) {
            q.clear();
            q.push_back(NEXUS_LOSS_OCCURRED);
        }
    }

    /// Drop a condition for one nexus (REPORT LUNS clears 3F/0E, SPC-4 §6.33).
    pub(crate) fn clear(&self, nexus: Nexus, code: AscAscq) {
        if let Some(q) = self.known.write().get_mut(&nexus) {
            q.retain(|c| *c != code);
        }
    }
}
