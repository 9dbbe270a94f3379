//! Asymmetric logical unit access (SPC-4 §5.15): one logical unit reached through several target port groups, here
//! one group per host serving the same backing image (`docs/ceph.md`). Each group has one target port whose relative
//! target port identifier equals the group's identifier. Implicit ALUA only (TPGS = 01b): the states change through
//! the configuration or [`crate::Disk::set_port_group_state`], not through SET TARGET PORT GROUPS.

use super::Inner;
use crate::cdb::{be32, get, PutBe};
use crate::sense::{AscAscq, Sense, SenseKey};
use crate::task::{Begin, Nexus};
use parking_lot::RwLock;
use std::sync::Arc;

/// Asymmetric access state of a target port group (SPC-4 table 14x, REPORT TARGET PORT GROUPS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AluaState {
    ActiveOptimized,
    ActiveNonOptimized,
    Standby,
    Unavailable,
}

impl AluaState {
    fn code(self) -> u8 {
        match self {
            AluaState::ActiveOptimized => 0x0,
            AluaState::ActiveNonOptimized => 0x1,
            AluaState::Standby => 0x2,
            AluaState::Unavailable => 0x3,
        }
    }
}

/// One target port group of the logical unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortGroup {
    /// Target port group identifier (1..=65535), also the relative target port identifier of its one port.
    pub id: u16,
    pub state: AluaState,
}

/// The groups as they are now.
pub(crate) struct Alua {
    /// This path's group; 0 when ALUA is off.
    own: u16,
    groups: RwLock<Vec<PortGroup>>,
}

impl Alua {
    pub(crate) fn new(own: u16, groups: &[PortGroup]) -> Self {
        Alua { own, groups: RwLock::new(groups.to_vec()) }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.own != 0
    }

    pub(crate) fn own(&self) -> u16 {
        self.own
    }

    fn own_state(&self) -> Option<AluaState> {
        self.groups.read().iter().find(|g| g.id == self.own).map(|g| g.state)
    }

    /// Change a group's state; true when it changed.
    pub(crate) fn set(&self, id: u16, state: AluaState) -> Option<bool> {
        let mut groups = self.groups.write();
        let g = groups.iter_mut().find(|g| g.id == id)?;
        let changed = g.state != state;
        g.state = state;
        Some(changed)
    }

    pub(crate) fn states(&self) -> Vec<PortGroup> {
        self.groups.read().clone()
    }

    /// SPC-4 §5.15.2.4: through a port in standby or unavailable state, commands that touch the medium end with
    /// NOT READY, LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY / UNAVAILABLE STATE.
    pub(crate) fn refuses_media_access(&self) -> Option<Sense> {
        match self.own_state()? {
            AluaState::Standby => Some(Sense::new(SenseKey::NotReady, AscAscq(0x04, 0x0B))),
            AluaState::Unavailable => Some(Sense::new(SenseKey::NotReady, AscAscq(0x04, 0x0C))),
            _ => None,
        }
    }
}

/// ASYMMETRIC ACCESS STATE CHANGED (SPC-4 §5.15.2.5): the unit attention after a transition.
pub(crate) const STATE_CHANGED: AscAscq = AscAscq(0x2A, 0x06);

/// INQUIRY byte 5 TPGS field: implicit asymmetric access only.
pub(crate) const TPGS_IMPLICIT: u8 = 0x10;

/// The two designators of the port a command came through, associated with the target port (SPC-4 §7.8.6.7 relative
/// target port, §7.8.6.8 target port group).
pub(crate) fn port_designators(own: u16) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&[0x01, 0x14, 0x00, 0x04, 0x00, 0x00]);
    b.put16(own);
    b.extend_from_slice(&[0x01, 0x15, 0x00, 0x04, 0x00, 0x00]);
    b.put16(own);
    b
}

/// REPORT TARGET PORT GROUPS (SPC-4 §6.36): every group with its state, T_SUP/O_SUP/U_SUP/S_SUP/AN_SUP/AO_SUP, and
/// its one target port. PARAMETER DATA FORMAT 000b (length only) or 001b (extended header with the implicit
/// transition time).
pub(crate) fn report_target_port_groups(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let format = get(cdb, 1) >> 5;
    if format > 1 {
        return Begin::check(Sense::invalid_field_in_cdb(1, Some(7)));
    }
    let alloc = u64::from(be32(cdb, 6));
    let mut body = Vec::new();
    for g in inner.alua.states() {
        // PREF = 0; state in the low nibble. Supported states: U_SUP S_SUP AN_SUP AO_SUP (no transitioning, no LBA
        // dependent, no offline).
        body.push(g.state.code());
        body.push(0x0F);
        body.put16(g.id);
        body.push(0);
        body.push(0x02); // status: altered by implicit behaviour
        body.push(0);
        body.push(1); // one target port
        body.put16(0);
        body.put16(g.id);
    }
    let mut data = Vec::new();
    if format == 1 {
        data.put32(body.len() as u32 + 4);
        data.push(0x10); // FORMAT TYPE 001b
        data.push(0); // implicit transition time: immediate
        data.put16(0);
    } else {
        data.put32(body.len() as u32);
    }
    data.extend(body);
    Begin::data_in(data, alloc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_change_and_unknown_groups_are_refused() {
        let a = Alua::new(
            2,
            &[PortGroup { id: 1, state: AluaState::ActiveOptimized }, PortGroup { id: 2, state: AluaState::Standby }],
        );
        assert!(a.refuses_media_access().is_some());
        assert_eq!(a.set(2, AluaState::ActiveOptimized), Some(true));
        assert_eq!(a.set(2, AluaState::ActiveOptimized), Some(false));
        assert_eq!(a.set(9, AluaState::Standby), None);
        assert!(a.refuses_media_access().is_none());
    }
}
