//! The deferred (DPC) half of the system-DMA calls: get the adapter channel, map and program the 8237 through the
//! HAL, call `HwDmaStarted`; let the controller serve the card's DREQ; flush; free the channel after the last flush;
//! and drop a transfer the miniport never flushed (recovery after a violation or a reset). Each step is a transition
//! of [`DmaPath`](super::dma_path::DmaPath); this file performs what the transition calls for.

use super::dma_path::{Abandoned, Mapping};
use super::{Core, Dpc, Msg, Routine};
use crate::srb::SrbHandle;
use crate::trace::EventKind;
use crate::verifier::Rule;
use hal::ChannelGrant;

impl<E> Core<E> {
    /// Let the DMA controller serve the HBA's DREQ. Returns true when bytes moved.
    pub(super) fn service_dma(&mut self) -> bool {
        let Some(ch) = self.channel else { return false };
        if self.dma.in_channel().is_none() || !self.hw.dreq() {
            return false;
        }
        let hw = &mut self.hw;
        let out = self.hal.with_dma(|dma, mem| dma.service(ch, mem, &mut **hw));
        if out.bytes == 0 && !out.terminal_count {
            // A card whose target failed the data phase takes nothing and interrupts instead: that interrupt is
            // runnable work now, not at the next timer.
            return self.hw.irq() && !self.irq_masked;
        }
        self.stats.add_dma_bytes(out.bytes);
        if self.tracing() {
            let id = self.dma.in_channel().map(|m| m.request.id);
            self.event(id, None, EventKind::DmaService { bytes: out.bytes, terminal_count: out.terminal_count });
            if out.terminal_count {
                // At terminal count the 8237 masks the channel itself (no auto-initialize): 8237A datasheet, EOP.
                self.event(id, None, EventKind::TerminalCount);
            }
        }
        out.bytes > 0
    }

    /// The HAL's callback arrived: the channel is ours (or went elsewhere, then the deferred map asks again).
    pub(super) fn channel_granted(&mut self) {
        let grant = self.adapter.as_ref().and_then(|a| a.take_grant());
        if let Err((e, grant)) = self.dma.channel_granted(grant) {
            // Nobody waits for it: give it back rather than hold the channel from the adapters that share it.
            self.event(None, None, EventKind::Violation { rule: "port-internal", detail: e.to_string() });
            self.free_grant(grant);
        }
    }

    /// The deferred half of `ScsiPortIoMapTransfer`: get the channel, map through the HAL, program the 8237, then
    /// call `HwDmaStarted` — unless an interrupt got in first and the miniport flushed (cancelled) the transfer.
    pub(super) fn dpc_map(&mut self, ext: &mut E) {
        let Some(req) = self.dma.to_program().cloned() else {
            // Cancelled by a flush; a grant that arrived for it is not kept.
            self.maybe_free_channel();
            return;
        };
        let Some(adapter) = self.adapter.as_ref() else { return };
        if !self.dma.holds_channel() {
            let inbox = self.inbox.clone();
            let regs = adapter.number_of_map_registers();
            match adapter.allocate_channel(
                regs,
                Box::new(move || {
                    let _ = inbox.send(Msg::Granted);
                }),
            ) {
                Ok(Some(g)) => {
                    if let Err((_, g)) = self.dma.channel_allocated(g) {
                        self.free_grant(Some(g));
                        return;
                    }
                }
                Ok(None) => {
                    self.stats.add_channel_wait();
                    self.event(Some(req.id), None, EventKind::ChannelWait);
                    if self.dma.wait_for_channel().is_ok() {
                        self.dpcs.push_front(Dpc::Map);
                    }
                    return;
                }
                Err(e) => {
                    let _ = self.dma.map_failed();
                    self.fail_transfer(req.srb, format!("the HAL refused the adapter channel: {e}"));
                    return;
                }
            }
            self.event(Some(req.id), None, EventKind::ChannelGranted);
        }
        let adapter = self.adapter.as_ref().expect("checked above");
        let grant = self.dma.grant_mut().expect("the channel is held");
        let info = match adapter.map_transfer(grant, &req.buffer, req.offset, req.length, req.direction) {
            Ok(info) => info,
            Err(e) => {
                let _ = self.dma.map_failed();
                self.fail_transfer(req.srb, format!("the HAL could not map the transfer: {e}"));
                return;
            }
        };
        self.dma.mapped(info.bounced).expect("a wanted transfer with the channel held");
        self.stats.add_map(info.bounced, if info.bounced { req.length as u64 } else { 0 });
        if self.tracing() {
            let to_device = req.direction == hal::Direction::ToDevice;
            if info.bounced && to_device {
                self.event(Some(req.id), None, EventKind::BounceIn { bytes: req.length as u64 });
            }
            self.event(
                Some(req.id),
                None,
                EventKind::ChannelProgrammed {
                    physical: info.programmed.0,
                    length: req.length as u32,
                    to_device,
                    demand: self.config.demand_mode,
                },
            );
            self.event(
                Some(req.id),
                None,
                EventKind::Mapped { physical: info.programmed.0, length: req.length as u32, bounced: info.bounced },
            );
        }
        // The HBA may interrupt between the map and HwDmaStarted: an ISR that flushes here cancels it.
        while self.hw.irq() {
            let Some(isr) = self.init.hw_interrupt else { break };
            self.event(None, None, EventKind::Interrupt);
            self.call(ext, Routine::Interrupt, |e, ctx| {
                isr(e, ctx);
            });
            if self.dma.in_channel().is_none_or(|m| m.request.srb != req.srb) {
                // Cancelled by the ISR's flush (recorded there): HwDmaStarted is not called for it (rule 4).
                return;
            }
            if self.hw.irq() {
                break;
            }
        }
        // Rule 4: HwDmaStarted is where the card's data phase starts. A card already asking for DMA here was started
        // before the port programmed the channel (on a real PC its first requests would meet a masked channel).
        if self.hw.dreq() {
            self.violation(
                Rule::DataPhaseBeforeDmaStarted,
                Some(req.srb),
                "the card asserted DREQ before HwDmaStarted was called: its data phase was started before the \
                 channel was programmed"
                    .into(),
            );
        }
        if let Some(started) = self.init.hw_dma_started {
            if self.dma.started().is_ok() {
                self.event(Some(req.id), None, EventKind::DmaStarted);
                self.call(ext, Routine::DmaStarted, started);
            }
        }
    }

    /// A transfer that could not be mapped: the SRB fails. The DDI returns nothing, so the miniport learns of it
    /// only through the abort the port sends in strict mode (otherwise through its own timeout path).
    pub(super) fn fail_transfer(&mut self, h: SrbHandle, detail: String) {
        let id = self.active(h).map(|a| a.id);
        self.event(id, None, EventKind::Violation { rule: "hal-error", detail });
        if let Some(a) = self.active_mut(h) {
            a.failed_by_verifier = true;
        }
        self.abort_refused(h);
    }

    /// The deferred half of `ScsiPortFlushDma`.
    pub(super) fn dpc_flush(&mut self, m: Mapping) {
        let moved = match (self.adapter.as_ref(), self.dma.grant_mut()) {
            (Some(adapter), Some(grant)) => adapter
                .flush_adapter_buffers(
                    grant,
                    &m.request.buffer,
                    m.request.offset,
                    m.request.length,
                    m.request.direction,
                )
                .unwrap_or(0),
            _ => 0,
        };
        self.dma.flush_done();
        self.stats.add_flush();
        if self.tracing() {
            let id = Some(m.request.id);
            // FlushAdapterBuffers masks the channel first, then copies the bounce data back.
            self.event(id, None, EventKind::ChannelMasked);
            if m.bounced && m.request.direction == hal::Direction::FromDevice && moved > 0 {
                self.event(id, None, EventKind::BounceOut { bytes: moved });
            }
            self.event(id, None, EventKind::Flushed { moved });
        }
        self.maybe_free_channel();
    }

    /// Free the channel and map registers once nothing is mapped or about to be (FreeAdapterChannel after the last
    /// flush).
    pub(super) fn maybe_free_channel(&mut self) {
        if self.dma.outstanding().is_some() {
            return;
        }
        if self.dpcs.iter().any(|d| matches!(d, Dpc::Map | Dpc::Flush(_))) {
            return;
        }
        if let Ok(grant) = self.dma.release_channel() {
            self.free_grant(grant);
        }
    }

    pub(super) fn free_grant(&mut self, grant: Option<ChannelGrant>) {
        if let (Some(adapter), Some(grant)) = (self.adapter.as_ref(), grant) {
            adapter.free_adapter_channel(grant);
            self.event(None, None, EventKind::ChannelFreed);
        }
    }

    /// Drop a transfer without copying anything back (recovery after a rule-5 violation, before a bus reset, or a
    /// second map in warn mode): a programmed one releases the channel, which masks it so no more bytes move, and the
    /// bounce data of a device-to-memory transfer never reaches the caller's buffer.
    pub(super) fn abandon_transfer(&mut self, h: Option<SrbHandle>) {
        if let Some(Abandoned::Mapping) = self.dma.abandon(h) {
            let grant = self.dma.release_channel().expect("nothing programmed after abandon");
            self.free_grant(grant);
        }
        self.maybe_free_channel();
    }
}
