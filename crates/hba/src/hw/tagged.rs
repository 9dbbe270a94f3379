//! Disconnect and reselection: commands a target takes, disconnects from and reselects the card for later — to wait
//! in its task set (tagged queuing), or to work off the bus (a seek and a read into its buffer, a write from its
//! buffer, a long operation) (SAM-5 task sets, SCSI-2 / SPI-2 disconnect and reselection; `docs/hba.md`, "Disconnect
//! and reselection").

use super::background::{Job, Ready};
use super::bus::BusDevice;
use super::regs::{self, int, select, tag_message};
use super::{Arrival, Command, Data, Hba, HbaMonitor, Phase};
use scsi::Nexus;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What a disconnected command waits for.
pub(super) enum Work {
    /// Its turn in the task set: the target begins it when it reconnects.
    Queued,
    /// The target works on it off the bus.
    Working,
    /// The target is ready for its next phase and reselects when the bus is free.
    Ready(Ready),
}

/// A command in a target's task set while the bus is free.
pub(super) struct Disconnected {
    /// Names the command to the target's background work.
    id: u64,
    target: u8,
    lun: u64,
    /// The queue tag (None: untagged, an I_T_L nexus).
    tag: Option<u8>,
    head_of_queue: bool,
    ordered: bool,
    cdb: [u8; 16],
    cdb_len: usize,
    /// The I_T nexus it arrived on: the identity loaded when it was started, whatever is loaded at reselection.
    nexus: Nexus,
    /// The "never answers" fault: the target never reselects; only `ABORT TAG` or a bus reset end the command.
    hung: bool,
    work: Work,
}

impl Disconnected {
    /// Whether this is the command of `target`, `lun` with queue tag `tag`.
    pub(super) fn holds(&self, target: u8, lun: u64, tag: Option<u8>) -> bool {
        self.target == target && self.lun == lun && self.tag == tag
    }

    fn same_lu(&self, other: &Disconnected) -> bool {
        self.target == other.target && self.lun == other.lun
    }

    fn arrival(&self) -> Arrival {
        Arrival { disc_priv: true, tag: self.tag, head_of_queue: self.head_of_queue, ordered: self.ordered }
    }

    /// The command is gone (aborted, reset): a finished result ends its task.
    pub(super) fn discard(self) {
        if let Work::Ready(r) = self.work {
            r.discard();
        }
    }
}

/// Commands whose target, with the disconnect privilege, disconnects after the command phase and works off the bus: it
/// reads into its buffer (READ, and the reads of VERIFY and PRE-FETCH), runs a long operation (SYNCHRONIZE CACHE,
/// SANITIZE, FORMAT UNIT), and reselects for its next phase.
pub(super) fn works_off_bus(cdb: &[u8]) -> bool {
    matches!(
        cdb.first(),
        Some(
            0x08 | 0x28 | 0xA8 | 0x88 // READ (6), (10), (12), (16)
            | 0x2F | 0xAF | 0x8F // VERIFY (10), (12), (16)
            | 0x34 | 0x90 // PRE-FETCH (10), (16)
            | 0x35 | 0x91 // SYNCHRONIZE CACHE (10), (16)
            | 0x48 // SANITIZE
            | 0x04 // FORMAT UNIT
        )
    )
}

/// Commands whose target, with the disconnect privilege, takes the data-out phase into its buffer, then disconnects
/// while it writes (WRITE, WRITE AND VERIFY, WRITE SAME, UNMAP, COMPARE AND WRITE, WRITE ATOMIC), and reselects for
/// status. The commands of [`works_off_bus`] that have a data-out phase do the same.
pub(super) fn buffers_data_out(cdb: &[u8]) -> bool {
    works_off_bus(cdb)
        || matches!(
            cdb.first(),
            Some(
                0x0A | 0x2A | 0xAA | 0x8A // WRITE (6), (10), (12), (16)
                | 0x2E | 0xAE | 0x8E // WRITE AND VERIFY (10), (12), (16)
                | 0x41 | 0x93 // WRITE SAME (10), (16)
                | 0x42 // UNMAP
                | 0x89 // COMPARE AND WRITE
                | 0x9C // WRITE ATOMIC (16)
            )
        )
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
        let tag_in_use = self.disconnected.iter().any(|d| d.holds(target, lun, Some(tag)));
        if self.phase != Phase::Idle || (disconnect && (tag_in_use || self.disconnected.len() >= regs::TAG_SLOTS)) {
            self.raise(int::ERROR);
            return;
        }
        let (cdb, cdb_len) = self.take_cdb(2);
        self.owner = (target, lun, Some(tag));
        let Some(device) = self.select_target() else { return };
        let nexus = self.nexus();
        let hung = device.take_hang(lun, &cdb[..cdb_len]);
        let arrival = Arrival {
            disc_priv: disconnect,
            tag: Some(tag),
            head_of_queue: message == tag_message::HEAD_OF_QUEUE,
            ordered: message == tag_message::ORDERED,
        };
        if disconnect {
            let entry = Disconnected {
                id: 0,
                target,
                lun,
                tag: Some(tag),
                head_of_queue: arrival.head_of_queue,
                ordered: arrival.ordered,
                cdb,
                cdb_len,
                nexus,
                hung,
                work: Work::Queued,
            };
            if !hung && works_off_bus(&cdb[..cdb_len]) && self.may_start(&entry) {
                self.work_disconnected(&device, arrival, nexus, cdb, cdb_len);
            } else {
                // The target takes the command into its task set and disconnects after the command phase: the bus
                // is free again, and the command waits for a reselection.
                self.push_disconnected(entry);
            }
            return;
        }
        if hung {
            self.phase = Phase::Hung;
            return;
        }
        self.connect(&device, lun, nexus, &cdb[..cdb_len], arrival);
    }

    /// Whether the target may start work on `entry` now, ahead of the commands of its logical unit in the table: not
    /// past a command still waiting for its turn or an ORDERED one, and an ORDERED command only with none before it.
    fn may_start(&self, entry: &Disconnected) -> bool {
        let mut before = self.disconnected.iter().filter(|d| d.same_lu(entry));
        if entry.ordered {
            before.next().is_none()
        } else {
            !before.any(|d| d.ordered || d.head_of_queue || matches!(d.work, Work::Queued))
        }
    }

    fn push_disconnected(&mut self, mut entry: Disconnected) -> u64 {
        self.next_id += 1;
        entry.id = self.next_id;
        let id = entry.id;
        self.disconnected.push_back(entry);
        self.counters.0.peak_disconnected.fetch_max(self.disconnected.len() as u64, Ordering::Relaxed);
        id
    }

    /// The target disconnects after the command phase and begins `cdb` off the bus; it reselects when it is ready.
    pub(super) fn work_disconnected(
        &mut self,
        device: &Arc<dyn BusDevice>,
        arrival: Arrival,
        nexus: Nexus,
        cdb: [u8; 16],
        cdb_len: usize,
    ) {
        let (target, lun) = self.selected();
        let id = self.push_disconnected(Disconnected {
            id: 0,
            target,
            lun,
            tag: arrival.tag,
            head_of_queue: arrival.head_of_queue,
            ordered: arrival.ordered,
            cdb,
            cdb_len,
            nexus,
            hung: false,
            work: Work::Working,
        });
        HbaMonitor::add(&self.counters.0.background_jobs, 1);
        self.background.submit(id, Job::Begin { device: device.clone(), nexus, lun, cdb, cdb_len });
    }

    /// The data-out phase of the command on the bus ended and its target has the data in its buffer: it disconnects
    /// while it writes (`DISCONNECTED`), and reselects for status. False when it stays on the bus (no room in the
    /// table).
    pub(super) fn disconnect_after_data(&mut self) -> bool {
        if self.disconnected.len() >= regs::TAG_SLOTS {
            return false;
        }
        let Some(cmd) = self.cmd.take() else { return false };
        let Command { target, lun, nexus, data, arrival, .. } = cmd;
        let Data::OutBuffered { task, buf } = data else {
            self.cmd = Some(Command { target, lun, nexus, data, arrival, ..cmd });
            return false;
        };
        let id = self.push_disconnected(Disconnected {
            id: 0,
            target,
            lun,
            tag: arrival.tag,
            head_of_queue: arrival.head_of_queue,
            ordered: arrival.ordered,
            cdb: [0; 16],
            cdb_len: 0,
            nexus,
            hung: false,
            work: Work::Working,
        });
        HbaMonitor::add(&self.counters.0.background_jobs, 1);
        self.background.submit(id, Job::FinishOut { task, buf });
        self.phase = Phase::Idle;
        self.raise(int::DISCONNECTED);
        true
    }

    /// Results of the targets' background work: each command whose target finished is ready to reselect.
    pub(super) fn collect_background(&mut self) {
        if !self.background.pending() {
            return;
        }
        for (id, ready) in self.background.take() {
            match self.disconnected.iter_mut().find(|d| d.id == id && matches!(d.work, Work::Working)) {
                Some(d) => d.work = Work::Ready(ready),
                None => ready.discard(),
            }
        }
    }

    /// Whether a target would reselect now: the bus is free, no interrupt waits to be handled, and a command is ready.
    pub(super) fn may_reselect(&self) -> bool {
        self.phase == Phase::Idle
            && self.intcause == 0
            && self.disconnected.iter().any(|d| matches!(d.work, Work::Ready(_)))
    }

    /// A target whose work is done arbitrates for the free bus and reselects the card (an initiator that granted the
    /// disconnect privilege answers reselection whenever the bus is free).
    pub(super) fn reselect_ready(&mut self) {
        if !self.may_reselect() {
            return;
        }
        if let Some(d) = self
            .disconnected
            .iter()
            .position(|d| matches!(d.work, Work::Ready(_)))
            .and_then(|i| self.disconnected.remove(i))
        {
            self.reconnect(d);
        }
    }

    /// `RESELECT`: with the bus free, the target of the next command in task-set order reconnects. A HEAD OF QUEUE
    /// command goes before all others (the newest first, SAM-5 §8.6.3); the rest reconnect oldest first, which also
    /// keeps every ORDERED command behind the commands started before it. A waiting command whose target works off
    /// the bus starts that work instead, and the next one is tried.
    pub(super) fn reselect(&mut self) {
        if self.phase != Phase::Idle {
            self.raise(int::ERROR);
            return;
        }
        loop {
            let candidate = |d: &Disconnected| match d.work {
                Work::Ready(_) => true,
                Work::Queued => !d.hung,
                Work::Working => false,
            };
            let pick = self
                .disconnected
                .iter()
                .rposition(|d| d.head_of_queue && matches!(d.work, Work::Queued) && !d.hung)
                .or_else(|| {
                    self.disconnected
                        .iter()
                        .position(|d| candidate(d) && (matches!(d.work, Work::Ready(_)) || self.may_start_queued(d)))
                });
            let Some(i) = pick else { return };
            let d = &self.disconnected[i];
            if matches!(d.work, Work::Queued) && works_off_bus(&d.cdb[..d.cdb_len]) {
                let Some(device) = self.bus.device(d.target).cloned() else { return };
                let (id, nexus, lun, cdb, cdb_len) = (d.id, d.nexus, d.lun, d.cdb, d.cdb_len);
                self.disconnected[i].work = Work::Working;
                HbaMonitor::add(&self.counters.0.background_jobs, 1);
                self.background.submit(id, Job::Begin { device, nexus, lun, cdb, cdb_len });
                continue;
            }
            let Some(d) = self.disconnected.remove(i) else { return };
            self.reconnect(d);
            return;
        }
    }

    /// A queued command may begin unless an ORDERED command before it in its logical unit has not ended, it is ORDERED
    /// and any command before it has not, or a HEAD OF QUEUE command of its logical unit has not (SAM-5 §8.6).
    fn may_start_queued(&self, entry: &Disconnected) -> bool {
        if entry.head_of_queue {
            return true;
        }
        let head_pending = self.disconnected.iter().any(|d| d.same_lu(entry) && d.head_of_queue && d.id != entry.id);
        let mut before = self.disconnected.iter().filter(|d| d.same_lu(entry) && d.id < entry.id);
        let blocked = if entry.ordered { before.next().is_some() } else { before.any(|d| d.ordered) };
        !head_pending && !blocked
    }

    /// Reselection of `d`'s target, IDENTIFY and the queue tag message: on to its next phase.
    fn reconnect(&mut self, d: Disconnected) {
        self.select = (self.select & select::DISCONNECT) | d.target | ((d.lun as u8) << 4);
        self.owner = (d.target, d.lun, d.tag);
        self.clear_results();
        HbaMonitor::add(&self.counters.0.reselections, 1);
        // Reselection, then IDENTIFY and the queue tag message (2 bytes).
        self.charge(1, 1 + 2 * u64::from(d.tag.is_some()), 0);
        let Some(device) = self.bus.device(d.target).cloned() else {
            // The bus is fixed at build time, so a target that took a command is still there.
            return;
        };
        let arrival = d.arrival();
        let in_data = match d.work {
            Work::Ready(ready) => {
                let buffer_out = buffers_data_out(&d.cdb[..d.cdb_len]);
                self.enter_phase(&device, d.target, d.lun, d.nexus, ready, buffer_out, arrival)
            }
            _ => self.connect(&device, d.lun, d.nexus, &d.cdb[..d.cdb_len], arrival),
        };
        if in_data {
            self.raise(int::RESELECTED);
        }
    }

    /// `ABORT TAG`: ABORT TASK for the tag in the FIFO on the target and LUN in `SELECT`; with an empty FIFO, ABORT
    /// for the untagged command of that I_T_L nexus.
    pub(super) fn abort_tag(&mut self) {
        let tag = match self.cdb[..] {
            [] => None,
            [tag] => Some(tag),
            _ => {
                self.raise(int::ERROR);
                return;
            }
        };
        self.cdb.clear();
        let (target, lun) = self.selected();
        if self.phase != Phase::Idle && self.owner == (target, lun, tag) {
            self.abort();
            return;
        }
        if let Some(i) = self.disconnected.iter().position(|d| d.holds(target, lun, tag)) {
            if let Some(d) = self.disconnected.remove(i) {
                d.discard();
            }
            HbaMonitor::add(&self.counters.0.aborts, 1);
        }
    }

    /// Commands the targets hold disconnected.
    pub fn disconnected_commands(&self) -> usize {
        self.disconnected.len()
    }
}
