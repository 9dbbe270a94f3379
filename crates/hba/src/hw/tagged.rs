//! Tagged queuing: commands a target takes with a queue tag, disconnects from, and reselects the card for later
//! (SAM-5 task sets, SPI-2 disconnect and reselection; `docs/hba.md`, "Tagged queuing").

use super::regs::{self, int, select, tag_message};
use super::{Hba, HbaMonitor, Phase};
use scsi::Nexus;

/// A command in a target's task set while the bus is free.
pub(super) struct Disconnected {
    target: u8,
    lun: u64,
    tag: u8,
    head_of_queue: bool,
    cdb: [u8; 16],
    cdb_len: usize,
    /// The I_T nexus it arrived on: the identity loaded when it was started, whatever is loaded at reselection.
    nexus: Nexus,
    /// The "never answers" fault: the target never reselects; only `ABORT TAG` or a bus reset end the command.
    hung: bool,
}

impl Hba {
    /// `START TAGGED`: selection with ATN, IDENTIFY, the queue tag message and the CDB.
    pub(super) fn start_tagged(&mut self) {
        let (message, tag) = match self.cdb.as_slice() {
            [m, t, _, ..] if matches!(*m, tag_message::SIMPLE | tag_message::HEAD_OF_QUEUE | tag_message::ORDERED) => {
                (*m, *t)
            }
            _ => {
                self.raise(int::ERROR);
                return;
            }
        };
        let (target, lun) = self.selected();
        let disconnect = self.select & select::DISCONNECT != 0;
        let tag_in_use = self.disconnected.iter().any(|d| d.target == target && d.lun == lun && d.tag == tag);
        if self.phase != Phase::Idle || (disconnect && (tag_in_use || self.disconnected.len() >= regs::TAG_SLOTS)) {
            self.raise(int::ERROR);
            return;
        }
        let (cdb, cdb_len) = self.take_cdb(2);
        self.owner = (target, lun, Some(tag));
        let Some(device) = self.select_target() else { return };
        let nexus = self.nexus();
        let hung = device.take_hang(lun, &cdb[..cdb_len]);
        if disconnect {
            // The target takes the command into its task set and disconnects after the command phase: the bus is
            // free again, and the command waits for a reselection.
            self.disconnected.push_back(Disconnected {
                target,
                lun,
                tag,
                head_of_queue: message == tag_message::HEAD_OF_QUEUE,
                cdb,
                cdb_len,
                nexus,
                hung,
            });
            self.counters
                .0
                .peak_disconnected
                .fetch_max(self.disconnected.len() as u64, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        if hung {
            self.phase = Phase::Hung;
            return;
        }
        self.connect(&device, lun, nexus, &cdb[..cdb_len]);
    }

    /// `RESELECT`: with the bus free, the target of the next command in task-set order reconnects. A HEAD OF QUEUE
    /// command goes before all others (the newest first, SAM-5 §8.6.3); the rest reconnect oldest first, which also
    /// keeps every ORDERED command behind the commands started before it.
    pub(super) fn reselect(&mut self) {
        if self.phase != Phase::Idle {
            self.raise(int::ERROR);
            return;
        }
        let pick = self
            .disconnected
            .iter()
            .rposition(|d| d.head_of_queue && !d.hung)
            .or_else(|| self.disconnected.iter().position(|d| !d.hung));
        let Some(d) = pick.and_then(|i| self.disconnected.remove(i)) else { return };
        self.select = (self.select & select::DISCONNECT) | d.target | ((d.lun as u8) << 4);
        self.owner = (d.target, d.lun, Some(d.tag));
        self.clear_results();
        HbaMonitor::add(&self.counters.0.reselections, 1);
        // Reselection, then IDENTIFY and the queue tag message (2 bytes).
        self.charge(1, 3, 0);
        let Some(device) = self.bus.device(d.target).cloned() else {
            // The bus is fixed at build time, so a target that took a command is still there.
            return;
        };
        if self.connect(&device, d.lun, d.nexus, &d.cdb[..d.cdb_len]) {
            self.raise(int::RESELECTED);
        }
    }

    /// `ABORT TAG`: ABORT TASK for one tag of the target and LUN in `SELECT`.
    pub(super) fn abort_tag(&mut self) {
        let [tag] = self.cdb[..] else {
            self.raise(int::ERROR);
            return;
        };
        self.cdb.clear();
        let (target, lun) = self.selected();
        if self.phase != Phase::Idle && self.owner == (target, lun, Some(tag)) {
            self.abort();
            return;
        }
        if let Some(i) = self.disconnected.iter().position(|d| d.target == target && d.lun == lun && d.tag == tag) {
            self.disconnected.remove(i);
            HbaMonitor::add(&self.counters.0.aborts, 1);
        }
    }

    /// Commands the targets hold disconnected.
    pub fn disconnected_commands(&self) -> usize {
        self.disconnected.len()
    }
}
