//! The immediate half of `ScsiPortIoMapTransfer` and `ScsiPortFlushDma`: the checks of DDI rules 2–6 on the call
//! itself, and the bookkeeping that queues the deferred (DPC) half in order.

use super::dma_path::{Abandoned, DmaError, Flush, MapRequest};
use super::{ActiveState, Core, Dpc, Routine};
use crate::srb::{SrbFlags, SrbHandle};
use crate::trace::EventKind;
use crate::verifier::Rule;
use hal::{LogicalAddr, PAGE_SIZE};

impl<E> Core<E> {
    /// `ScsiPortIoMapTransfer` from the miniport: checked, then queued for the deferred half. A refused map leaves
    /// the SRB without its transfer; in strict mode the port aborts it at once.
    pub fn io_map_transfer(&mut self, srb: SrbHandle, logical_address: LogicalAddr, length: u32) {
        if !self.system_dma_allowed("ScsiPortIoMapTransfer", Some(srb)) {
            self.abort_refused(srb);
            return;
        }
        if !self.map_checks(srb, logical_address, length) {
            if self.active(srb).is_some() {
                self.dma.refuse(srb);
            }
            self.abort_refused(srb);
        }
    }

    /// `ScsiPortFlushDma` from the miniport.
    pub fn flush_dma(&mut self) {
        if self.system_dma_allowed("ScsiPortFlushDma", None) {
            self.flush();
        }
    }

    /// DDI rule 1: only a system-DMA miniport with a `HwDmaStarted` routine maps and flushes.
    fn system_dma_allowed(&mut self, what: &str, srb: Option<SrbHandle>) -> bool {
        let ok = self.uses_system_dma();
        if !ok {
            let srb = srb.filter(|h| self.active(*h).is_some());
            self.violation(
                Rule::NotSystemDma,
                srb,
                format!(
                    "{what} called by a miniport that is not configured for system DMA with a HwDmaStarted routine"
                ),
            );
        }
        ok
    }

    /// Check a map request and queue it. Returns false when it was refused (strict mode) and the SRB is left without
    /// its transfer.
    fn map_checks(&mut self, srb: SrbHandle, logical_address: LogicalAddr, length: u32) -> bool {
        // Rule 4: the port calls HwDmaStarted once the channel is programmed; mapping from it (or from any routine
        // other than HwStartIo, HwInterrupt and a timer) races the transfer the port is starting.
        if !matches!(self.routine, Routine::StartIo | Routine::Interrupt | Routine::Timer) {
            let r = self.routine;
            if self.violation(
                Rule::MapFromWrongRoutine,
                Some(srb),
                format!("ScsiPortIoMapTransfer was called from {r:?}"),
            ) {
                return false;
            }
        }
        let Some(a) = self.active(srb) else {
            self.violation(
                Rule::MapInactiveSrb,
                None,
                "ScsiPortIoMapTransfer with an SRB that was already completed and returned to its caller".into(),
            );
            return false;
        };
        if a.state != ActiveState::Started {
            self.violation(
                Rule::MapInactiveSrb,
                Some(srb),
                "ScsiPortIoMapTransfer with an SRB the miniport had already completed".into(),
            );
            return false;
        }
        let id = a.id;
        let flags = a.srb.srb_flags & SrbFlags::UNSPECIFIED_DIRECTION;
        let start = a.srb.data_buffer.0;
        let dtl = a.srb.data_transfer_length as u64;
        let buffer = a.srb.data.clone();
        let (Some(buffer), Some(_)) = (buffer, a.srb.data_offset()) else {
            self.violation(
                Rule::MapWithoutDirection,
                Some(srb),
                "ScsiPortIoMapTransfer for an SRB that carries no data buffer (a no-data SRB is never mapped)".into(),
            );
            return false;
        };
        if length == 0 {
            // Nothing to program whatever the mode: the miniport's flush then pairs with this refusal.
            self.violation(Rule::MapEmptyRange, Some(srb), "ScsiPortIoMapTransfer with length 0".into());
            return false;
        }
        let end = logical_address.0.checked_add(length as u64);
        let outside = logical_address.0 < start || end.is_none_or(|e| e > start + dtl);
        if outside
            && self.violation(
                Rule::MapOutsideSrbBuffer,
                Some(srb),
                format!(
                    "asked for [{:#x}, +{length:#x}) but the SRB's buffer is [{start:#x}, +{dtl:#x})",
                    logical_address.0
                ),
            )
        {
            return false;
        }
        let direction = if flags == SrbFlags::DATA_IN {
            hal::Direction::FromDevice
        } else if flags == SrbFlags::DATA_OUT {
            hal::Direction::ToDevice
        } else {
            let refuse = self.violation(
                Rule::MapWithoutDirection,
                Some(srb),
                format!(
                    "SrbFlags direction bits are {:#x} ({}); exactly one of DATA_IN/DATA_OUT must be set",
                    flags.bits(),
                    if flags.is_empty() { "none" } else { "both: the direction was never resolved" }
                ),
            );
            if refuse {
                return false;
            }
            // As the original port decides it: WriteToDevice unless DATA_IN is set.
            if flags.contains(SrbFlags::DATA_IN) {
                hal::Direction::FromDevice
            } else {
                hal::Direction::ToDevice
            }
        };
        let Some(offset) = logical_address.0.checked_sub(buffer.va().0).map(|o| o as usize) else {
            // Before the MDL: the HAL cannot map it whatever the mode.
            return false;
        };
        if offset.checked_add(length as usize).is_none_or(|e| e > buffer.len()) {
            // Past the MDL (only reachable when an out-of-buffer map was let through): the HAL cannot map it.
            return false;
        }
        let regs = self.adapter.as_ref().map_or(0, |a| a.number_of_map_registers()) as u64;
        let channel_limit = self.channel.map_or(u64::MAX, |c| c.page_size());
        let first_page_offset = (buffer.va().0 + offset as u64) % PAGE_SIZE;
        let span = (first_page_offset + length as u64).div_ceil(PAGE_SIZE);
        if span > regs || length as u64 > channel_limit {
            self.violation(
                Rule::MapExceedsMapRegisters,
                Some(srb),
                format!(
                    "{length} bytes span {span} pages; the adapter has {regs} map registers and one programming of \
                     its channel moves at most {channel_limit} bytes"
                ),
            );
            // A map the HAL cannot make is refused in every mode: it would be truncated.
            return false;
        }
        let request = MapRequest { srb, id, buffer, offset, length: length as usize, direction };
        match self.dma.request(request) {
            Ok(()) => {}
            Err((DmaError::MapBeforeFlush { outstanding }, request)) => {
                let refuse = self.violation(
                    Rule::MapBeforeFlush,
                    Some(srb),
                    format!("SRB #{} still has a mapped transfer that was not flushed", outstanding.0),
                );
                if refuse {
                    return false;
                }
                // As the original port would: the previous transfer is overwritten without a flush.
                if let Some(Abandoned::Mapping) = self.dma.abandon(None) {
                    let grant = self.dma.release_channel().expect("nothing programmed after abandon");
                    self.free_grant(grant);
                }
                if self.dma.request(request).is_err() {
                    unreachable!("nothing is outstanding after abandon");
                }
            }
            Err((e, _)) => unreachable!("a map request is refused only for rule 3: {e}"),
        }
        if let Some(a) = self.active_mut(srb) {
            a.maps += 1;
        }
        self.event(
            Some(id),
            None,
            EventKind::MapRequested {
                offset: logical_address.0.wrapping_sub(start),
                length,
                to_device: direction == hal::Direction::ToDevice,
            },
        );
        self.dpcs.push_back(Dpc::Map);
        true
    }

    /// The immediate half of `ScsiPortFlushDma`.
    fn flush(&mut self) {
        match self.dma.flush() {
            // The flush that pairs with a refused map: nothing was mapped, nothing to report.
            Ok(Flush::Refusal) => {}
            Ok(Flush::Cancelled(req)) => {
                self.event(None, None, EventKind::FlushRequested);
                // Not programmed yet: the transfer is cancelled and HwDmaStarted will not be called for it (rule 6).
                self.stats.add_cancelled();
                self.stats.add_flush();
                if let Some(a) = self.active_mut(req.srb) {
                    a.flushes += 1;
                }
                self.event(Some(req.id), None, EventKind::MapCancelled);
                self.dpcs.retain(|d| !matches!(d, Dpc::Map));
                if self.dma.waiting_for_channel() {
                    // The grant will still arrive; the deferred map then frees it.
                    self.dpcs.push_front(Dpc::Map);
                }
            }
            Ok(Flush::Programmed { mapping, started }) => {
                self.event(None, None, EventKind::FlushRequested);
                if !started {
                    self.stats.add_cancelled();
                    self.event(Some(mapping.request.id), None, EventKind::MapCancelled);
                }
                if let Some(a) = self.active_mut(mapping.request.srb) {
                    a.flushes += 1;
                }
                self.dpcs.push_back(Dpc::Flush(mapping));
            }
            Err(_) => {
                self.event(None, None, EventKind::FlushRequested);
                self.violation(Rule::FlushWithoutMap, None, "ScsiPortFlushDma with no transfer mapped".into());
            }
        }
    }
}
