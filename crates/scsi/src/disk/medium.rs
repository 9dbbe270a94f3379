//! The removable-medium profile (SBC-4): PREVENT ALLOW MEDIUM REMOVAL
//! kept per I_T nexus, START STOP UNIT with LOEJ ejecting and loading, and NOT READY /
//! MEDIUM NOT PRESENT while no medium is loaded. `docs/config.md` (`removable`) describes
//! the profile.

use super::Inner;
use crate::sense::{AscAscq, Sense, SenseKey};
use crate::task::Nexus;
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

/// MEDIUM NOT PRESENT.
const NOT_PRESENT: AscAscq = AscAscq(0x3A, 0x00);
/// MEDIUM REMOVAL PREVENTED.
const REMOVAL_PREVENTED: AscAscq = AscAscq(0x53, 0x02);

pub(crate) struct Medium {
    loaded: AtomicBool,
    /// The I_T nexuses that prevent removal; the medium is locked while any does.
    preventing: Mutex<BTreeSet<Nexus>>,
}

impl Medium {
    pub(crate) fn new() -> Self {
        Self { loaded: AtomicBool::new(true), preventing: Mutex::new(BTreeSet::new()) }
    }

    /// NOT READY / MEDIUM NOT PRESENT while ejected.
    pub(crate) fn absent_sense(&self) -> Option<Sense> {
        (!self.loaded.load(Ordering::Acquire)).then(|| Sense::new(SenseKey::NotReady, NOT_PRESENT))
    }

    /// PREVENT ALLOW MEDIUM REMOVAL with PREVENT 00b (allow) or 01b (prevent) from `nexus`.
    pub(crate) fn prevent(&self, nexus: Nexus, prevent: bool) {
        let mut set = self.preventing.lock();
        if prevent {
            set.insert(nexus);
        } else {
            set.remove(&nexus);
        }
    }

    /// START STOP UNIT with LOEJ: load (`start`) or eject, refused while any nexus
    /// prevents removal (SBC-4).
    pub(crate) fn load_eject(&self, start: bool) -> Result<(), Sense> {
        if !self.preventing.lock().is_empty() {
            return Err(Sense::new(SenseKey::IllegalRequest, REMOVAL_PREVENTED));
        }
        self.loaded.store(start, Ordering::Release);
        Ok(())
    }

    /// A nexus's prevention ends with the nexus (SBC-4).
    pub(crate) fn nexus_loss(&self, nexus: Nexus) {
        self.preventing.lock().remove(&nexus);
    }

    /// Resets end every prevention.
    pub(crate) fn reset(&self) {
        self.preventing.lock().clear();
    }
}

/// Whether this unit's medium is removable.
pub(crate) fn removable(inner: &Inner) -> bool {
    inner.cfg.removable
}
