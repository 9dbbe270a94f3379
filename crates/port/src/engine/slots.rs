//! The SRB slots: the SRBs the miniport was given, each named by a generation-checked [`SrbHandle`], and the queue
//! tags they hold.
//!
//! A handle outlives its SRB: when the slot is reused its generation moves on, so a miniport that keeps a handle
//! after completing the SRB names nothing (and the verifier says so) instead of naming the next SRB in that slot.

use crate::srb::{Completion, Srb, SrbHandle, SrbId};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActiveState {
    /// Given to `HwStartIo`; the miniport owns it.
    Started,
    /// The miniport completed it; the completion DPC returns it.
    Completed,
}

/// An SRB the miniport was given.
pub(crate) struct Active {
    pub(super) srb: Srb,
    pub(super) id: SrbId,
    pub(super) done: Option<Completion>,
    pub(super) state: ActiveState,
    pub(super) deadline: Option<Instant>,
    /// With the machine's virtual clock: the timeout deadline in its picoseconds (`deadline` is then unused).
    pub(super) vdeadline: Option<hal::Picos>,
    /// A strict-mode violation concerned this SRB: it completes with `SRB_STATUS_INTERNAL_ERROR`.
    pub(super) failed_by_verifier: bool,
    /// The port timed it out: it completes with `SRB_STATUS_TIMEOUT`.
    pub(super) timed_out: bool,
    /// An abort the port generated itself (no caller waits for it).
    pub(super) internal: bool,
    /// Data transfer length as submitted (the miniport may only lower it).
    pub(super) original_length: u32,
    pub(super) maps: u32,
    pub(super) flushes: u32,
    /// The port already sent an abort for it (after a refused map or a timeout).
    pub(super) abort_sent: bool,
}

impl Active {
    /// A request as `HwStartIo` receives it.
    pub(super) fn new(srb: Srb, id: SrbId, done: Completion, deadline: Option<Instant>, internal: bool) -> Self {
        let original_length = srb.data_transfer_length;
        Active {
            srb,
            id,
            done: Some(done),
            state: ActiveState::Started,
            deadline,
            vdeadline: None,
            failed_by_verifier: false,
            timed_out: false,
            internal,
            original_length,
            maps: 0,
            flushes: 0,
            abort_sent: false,
        }
    }

    pub fn srb(&self) -> &Srb {
        &self.srb
    }
    pub fn id(&self) -> SrbId {
        self.id
    }
    pub fn state(&self) -> ActiveState {
        self.state
    }
    /// Still the miniport's (not completed).
    pub fn is_started(&self) -> bool {
        self.state == ActiveState::Started
    }
    pub fn original_length(&self) -> u32 {
        self.original_length
    }
}

struct Slot {
    generation: u32,
    active: Option<Active>,
}

/// The SRBs the miniport was given.
#[derive(Default)]
pub(crate) struct SrbSlots {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// The next queue tag to try (1..=0xFE).
    next_tag: u8,
}

impl SrbSlots {
    /// Put an SRB in a slot and name it.
    pub fn insert(&mut self, active: Active) -> SrbHandle {
        if let Some(i) = self.free.pop() {
            let s = &mut self.slots[i as usize];
            s.active = Some(active);
            SrbHandle { slot: i, generation: s.generation }
        } else {
            self.slots.push(Slot { generation: 0, active: Some(active) });
            SrbHandle { slot: (self.slots.len() - 1) as u32, generation: 0 }
        }
    }

    /// Take an SRB out; its handle names nothing from now on.
    pub fn remove(&mut self, h: SrbHandle) -> Option<Active> {
        let s = self.slots.get_mut(h.slot as usize)?;
        if s.generation != h.generation || s.active.is_none() {
            return None;
        }
        let a = s.active.take();
        s.generation = s.generation.wrapping_add(1);
        self.free.push(h.slot);
        a
    }

    pub fn get(&self, h: SrbHandle) -> Option<&Active> {
        let slot = self.slots.get(h.slot as usize)?;
        if slot.generation != h.generation {
            return None;
        }
        slot.active.as_ref()
    }

    pub fn get_mut(&mut self, h: SrbHandle) -> Option<&mut Active> {
        let slot = self.slots.get_mut(h.slot as usize)?;
        if slot.generation != h.generation {
            return None;
        }
        slot.active.as_mut()
    }

    /// Every SRB in a slot, with its handle.
    pub fn iter(&self) -> impl Iterator<Item = (SrbHandle, &Active)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.active.as_ref().map(|a| (SrbHandle { slot: i as u32, generation: s.generation }, a)))
    }

    /// The first SRB that `pred` accepts.
    pub fn find(&self, pred: impl Fn(&Active) -> bool) -> Option<SrbHandle> {
        self.iter().find(|(_, a)| pred(a)).map(|(h, _)| h)
    }

    /// Every SRB that `pred` accepts.
    pub fn matching(&self, pred: impl Fn(&Active) -> bool) -> Vec<SrbHandle> {
        self.iter().filter(|(_, a)| pred(a)).map(|(h, _)| h).collect()
    }

    /// The handle of an SRB by id.
    pub fn handle_of(&self, id: SrbId) -> Option<SrbHandle> {
        self.find(|a| a.id == id)
    }

    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(|s| s.active.is_none())
    }

    /// The next queue tag (1..=0xFE, round robin) that no SRB in a slot holds: a command that stays outstanding while
    /// the tags wrap around (a target that never answers) keeps its tag to itself.
    pub fn allocate_tag(&mut self) -> u8 {
        for _ in 0..0xFE {
            let tag = self.next_tag.max(1);
            self.next_tag = if tag >= 0xFE { 1 } else { tag + 1 };
            if !self.iter().any(|(_, a)| a.srb.queue_tag == tag) {
                return tag;
            }
        }
        // Every tag is held: impossible while fewer than 254 SRBs are active, which the queue depths bound.
        self.next_tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srb::LuAddress;

    fn active(id: u64) -> Active {
        let srb = Srb::execute_scsi(LuAddress { path_id: 0, target_id: 0, lun: 0 }, &[0x28]);
        Active::new(srb, SrbId(id), Box::new(|_| {}), None, false)
    }

    #[test]
    fn a_handle_names_its_srb_until_removed_and_never_the_next_one_in_its_slot() {
        let mut s = SrbSlots::default();
        let a = s.insert(active(1));
        let b = s.insert(active(2));
        assert_ne!(a, b);
        assert_eq!(s.get(a).map(Active::id), Some(SrbId(1)));
        assert_eq!(s.handle_of(SrbId(2)), Some(b));
        assert_eq!(s.remove(a).map(|x| x.id), Some(SrbId(1)));
        assert!(s.get(a).is_none() && s.remove(a).is_none(), "removed once");
        let c = s.insert(active(3));
        assert_eq!(c.slot, a.slot, "the slot is reused");
        assert!(s.get(a).is_none(), "the stale handle names nothing");
        assert!(s.get_mut(a).is_none());
        assert_eq!(s.get(c).map(Active::id), Some(SrbId(3)));
        assert!(s.handle_of(SrbId(1)).is_none());
    }

    #[test]
    fn find_and_matching_see_only_filled_slots() {
        let mut s = SrbSlots::default();
        let hs: Vec<_> = (1..=4).map(|i| s.insert(active(i))).collect();
        s.remove(hs[1]);
        assert_eq!(s.matching(|a| a.id.0 % 2 == 0), vec![hs[3]]);
        assert_eq!(s.find(|a| a.id.0 > 2), Some(hs[2]));
        assert_eq!(s.iter().count(), 3);
        assert!(!s.is_empty());
        for h in [hs[0], hs[2], hs[3]] {
            s.remove(h);
        }
        assert!(s.is_empty());
    }

    #[test]
    fn tags_go_round_from_1_to_fe_and_skip_held_ones() {
        let mut s = SrbSlots::default();
        assert_eq!(s.allocate_tag(), 1);
        let mut held = active(1);
        held.srb.queue_tag = 2;
        let h = s.insert(held);
        assert_eq!(s.allocate_tag(), 3, "2 is held");
        for want in 4..=0xFE {
            assert_eq!(s.allocate_tag(), want);
        }
        assert_eq!(s.allocate_tag(), 1, "wraps after 0xFE, never 0 or 0xFF");
        assert_eq!(s.allocate_tag(), 3, "2 is still held");
        s.remove(h);
        for _ in 4..=0xFE {
            s.allocate_tag();
        }
        assert_eq!(s.allocate_tag(), 1);
        assert_eq!(s.allocate_tag(), 2, "free again");
    }
}
