//! The card's data phase as the system DMA controller sees it: DREQ, and whole runs handed straight to the target's
//! task (`docs/hba.md`, "The data phase and DMA").

use super::regs::{flags, int};
use super::{Data, Hba, Phase};
use scsi::Outcome;

impl Hba {
    /// How many bytes the card takes or gives in one DMA run of `offered` bytes.
    fn dma_room(&self, offered: usize) -> usize {
        if self.phase != Phase::DataActive {
            return 0;
        }
        let Some(cmd) = &self.cmd else { return 0 };
        let mut room = cmd.left().min(u64::from(self.counter));
        if let Some(at) = cmd.stall_at {
            room = room.min(at.saturating_sub(cmd.moved));
        }
        usize::try_from(room).unwrap_or(usize::MAX).min(offered)
    }

    /// Bookkeeping after `n` bytes moved: the counter runs down; at its end the phase pauses or, with the target's data
    /// exhausted, the command completes.
    fn advance_data(&mut self, n: usize) {
        self.counter -= n as u32;
        let Some(cmd) = self.cmd.as_mut() else { return };
        cmd.moved += n as u64;
        if cmd.left() == 0 {
            if self.counter > 0 {
                self.flags |= flags::SHORT;
            }
            let buffered = matches!(cmd.data, Data::OutBuffered { .. });
            if !(buffered && self.disconnect_after_data()) {
                self.end_data_phase(None);
            }
        } else if self.counter == 0 {
            self.phase = Phase::DataWait;
            self.raise(int::DATA_PAUSED);
        }
    }

    /// The target failed its data phase: the command completes with the target's status; the counter keeps the
    /// residue.
    fn fail_data(&mut self, outcome: Outcome) {
        self.end_data_phase(Some(outcome));
    }
}

impl hal::DmaDevice for Hba {
    fn dreq(&self) -> bool {
        self.dma_room(usize::MAX) > 0
    }

    /// Memory → card: the bytes go straight into the target's task.
    fn dma_write(&mut self, data: &[u8]) -> usize {
        let n = self.dma_room(data.len());
        if n == 0 {
            return 0;
        }
        let Some(cmd) = self.cmd.as_mut() else { return 0 };
        let written = match &mut cmd.data {
            Data::Out(task) => task.write(cmd.moved, &data[..n]),
            Data::OutBuffered { buf, .. } => {
                buf.extend_from_slice(&data[..n]);
                Ok(())
            }
            // The channel runs the wrong way for this phase: the card takes nothing.
            _ => return 0,
        };
        match written {
            Ok(()) => {
                super::HbaMonitor::add(&self.counters.0.bytes_out, n as u64);
                self.charge(0, 0, n as u64);
                self.advance_data(n);
                n
            }
            Err(outcome) => {
                self.fail_data(outcome);
                0
            }
        }
    }

    /// Card → memory: the target's task fills the DMA run directly.
    fn dma_read(&mut self, buf: &mut [u8]) -> usize {
        let n = self.dma_room(buf.len());
        if n == 0 {
            return 0;
        }
        let Some(cmd) = self.cmd.as_mut() else { return 0 };
        let read = match &mut cmd.data {
            Data::In(task) => task.read(cmd.moved, &mut buf[..n]),
            Data::InBuffered { buf: data, failed, .. } => {
                let at = usize::try_from(cmd.moved).unwrap_or(usize::MAX).min(data.len());
                let n = n.min(data.len() - at);
                if n == 0 {
                    // The target's buffer ends where its task failed.
                    let outcome =
                        failed.clone().unwrap_or_else(|| scsi::Outcome::check(scsi::Sense::aborted_command()));
                    self.fail_data(outcome);
                    return 0;
                }
                buf[..n].copy_from_slice(&data[at..at + n]);
                super::HbaMonitor::add(&self.counters.0.bytes_in, n as u64);
                self.charge(0, 0, n as u64);
                self.advance_data(n);
                return n;
            }
            _ => return 0,
        };
        match read {
            Ok(()) => {
                super::HbaMonitor::add(&self.counters.0.bytes_in, n as u64);
                self.charge(0, 0, n as u64);
                self.advance_data(n);
                n
            }
            Err(outcome) => {
                self.fail_data(outcome);
                0
            }
        }
    }

    /// EOP from the DMA controller ends the run even if the card's counter is not at zero: the data phase pauses.
    fn terminal_count(&mut self) {
        if self.phase == Phase::DataActive && self.counter > 0 && self.cmd.as_ref().is_some_and(|c| c.left() > 0) {
            self.phase = Phase::DataWait;
            self.raise(int::DATA_PAUSED);
        }
    }
}
