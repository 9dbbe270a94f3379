//! The DMA path of one adapter as a state machine: where the one system-DMA transfer a miniport may have outstanding
//! stands, and whether the adapter holds its channel.
//!
//! | state \ event     | `request` | `wait_for_channel` | `mapped` (channel held) | `started` | `flush`         |
//! |-------------------|-----------|--------------------|-------------------------|-----------|-----------------|
//! | Idle              | Requested | –                  | –                       | –         | rule 6          |
//! | Requested         | rule 3    | WaitingForChannel  | Mapped                  | –         | Cancelled       |
//! | WaitingForChannel | rule 3    | again, if denied   | Mapped                  | –         | Cancelled       |
//! | Mapped            | rule 3    | –                  | –                       | Started   | Flushed         |
//! | Started           | rule 3    | –                  | –                       | –         | Flushed         |
//! | Flushed           | Requested | –                  | –                       | –         | rule 6          |
//! | Cancelled         | Requested | –                  | –                       | –         | rule 6          |
//! | Refused(srb)      | Requested | –                  | –                       | –         | Idle (pairs)    |
//!
//! Besides: `refuse` (nothing outstanding → Refused), `map_failed` (Requested / WaitingForChannel → Idle),
//! `flush_done` (Flushed → Idle), `srb_finished` (Refused(that srb) → Idle), `abandon` (a transfer dropped without a
//! flush: not yet programmed → Cancelled, programmed → Idle with the channel to release).
//!
//! Each transition is a method that refuses an illegal move with a [`DmaError`]; the refusals are where DDI rules 3
//! (one map at a time), 4 (`HwDmaStarted` once, and never for a cancelled map) and 6 (a flush pairs with a map) are
//! decided. The channel grant is held across transfers and released only when nothing is outstanding, as
//! `FreeAdapterChannel` after the last flush (`docs/architecture.md`, "The port engine"). The machine has no side
//! effects: the engine performs the HAL calls, events and counters each transition calls for.

use crate::srb::{SrbHandle, SrbId};
use hal::Buffer;

/// A transfer the miniport asked for with `ScsiPortIoMapTransfer`, not yet programmed.
#[derive(Clone)]
pub(crate) struct MapRequest {
    pub srb: SrbHandle,
    pub id: SrbId,
    pub buffer: Buffer,
    pub offset: usize,
    pub length: usize,
    pub direction: hal::Direction,
}

/// A transfer programmed into the channel.
#[derive(Clone)]
pub(crate) struct Mapping {
    pub request: MapRequest,
    /// The HAL went through map registers: a device-to-memory flush copies back from them.
    pub bounced: bool,
}

/// Where the adapter's transfer stands.
#[derive(Clone)]
enum DmaState {
    /// Nothing mapped or asked for.
    Idle,
    /// `ScsiPortIoMapTransfer` was accepted; its deferred half is queued.
    Requested(MapRequest),
    /// The deferred half asked the HAL for the adapter channel and waits for the grant.
    WaitingForChannel(MapRequest),
    /// Programmed into the 8237; `HwDmaStarted` not called yet.
    Mapped(Mapping),
    /// `HwDmaStarted` was called: the card's data phase runs.
    Started(Mapping),
    /// The miniport flushed a programmed transfer; the deferred flush (mask, copy-back) is queued.
    Flushed,
    /// The miniport flushed before the channel was programmed: nothing moved or will move.
    Cancelled,
    /// The verifier refused the miniport's map: the miniport believes it mapped, and its next flush pairs with this
    /// refusal instead of being a flush with nothing mapped.
    Refused(SrbHandle),
}

/// Whether the adapter holds its DMA channel.
enum Channel<G> {
    Free,
    /// `IoAllocateAdapterChannel` queued the adapter; the HAL calls back when the channel is free.
    Waiting,
    Held(G),
}

/// A move the state machine does not make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DmaError {
    /// DDI rule 3: a map while another transfer is outstanding.
    #[error("SRB #{} still has a transfer that was not flushed", outstanding.0)]
    MapBeforeFlush { outstanding: SrbId },
    /// DDI rule 6: a flush with nothing mapped.
    #[error("a flush with no transfer mapped")]
    FlushWithoutMap,
    /// An event the state does not take (a port-internal ordering error, never a miniport's).
    #[error("{event} in state {state}")]
    Illegal { event: &'static str, state: &'static str },
}

/// What a flush ended.
pub(crate) enum Flush {
    /// A transfer not yet programmed: cancelled, `HwDmaStarted` will not be called for it.
    Cancelled(MapRequest),
    /// A programmed transfer; `started` says whether `HwDmaStarted` was called. The deferred flush follows.
    Programmed { mapping: Mapping, started: bool },
    /// The flush that pairs with a refused map.
    Refusal,
}

/// What [`DmaPath::abandon`] dropped.
pub(crate) enum Abandoned {
    /// A transfer not yet programmed.
    Request,
    /// A programmed transfer: its channel must be released without a flush.
    Mapping,
}

/// The DMA path of one adapter. `G` is the channel grant (`hal::ChannelGrant`; anything in tests).
pub(crate) struct DmaPath<G> {
    state: DmaState,
    channel: Channel<G>,
}

impl<G> Default for DmaPath<G> {
    fn default() -> Self {
        DmaPath { state: DmaState::Idle, channel: Channel::Free }
    }
}

impl<G> DmaPath<G> {
    /// The state's name, for diagnostics.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            DmaState::Idle => "idle",
            DmaState::Requested(_) => "requested",
            DmaState::WaitingForChannel(_) => "waiting-for-channel",
            DmaState::Mapped(_) => "mapped",
            DmaState::Started(_) => "started",
            DmaState::Flushed => "flushed",
            DmaState::Cancelled => "cancelled",
            DmaState::Refused(_) => "refused",
        }
    }

    fn illegal<T>(&self, event: &'static str) -> Result<T, DmaError> {
        Err(DmaError::Illegal { event, state: self.state_name() })
    }

    // ---- queries -----------------------------------------------------------------------------------------------

    /// The transfer the miniport has outstanding (asked for or programmed, not flushed).
    pub fn outstanding(&self) -> Option<&MapRequest> {
        match &self.state {
            DmaState::Requested(r) | DmaState::WaitingForChannel(r) => Some(r),
            DmaState::Mapped(m) | DmaState::Started(m) => Some(&m.request),
            _ => None,
        }
    }

    /// Whether SRB `h` has a transfer outstanding.
    pub fn outstanding_for(&self, h: SrbHandle) -> bool {
        self.outstanding().is_some_and(|r| r.srb == h)
    }

    /// The transfer programmed into the channel, if any: the controller may serve the card's DREQ for it.
    pub fn in_channel(&self) -> Option<&Mapping> {
        match &self.state {
            DmaState::Mapped(m) | DmaState::Started(m) => Some(m),
            _ => None,
        }
    }

    /// The transfer the deferred map has to program, if it is still wanted.
    pub fn to_program(&self) -> Option<&MapRequest> {
        match &self.state {
            DmaState::Requested(r) | DmaState::WaitingForChannel(r) => Some(r),
            _ => None,
        }
    }

    /// Whether the adapter waits for the HAL to grant its channel (the deferred map cannot run until then).
    pub fn waiting_for_channel(&self) -> bool {
        matches!(self.channel, Channel::Waiting)
    }

    pub fn holds_channel(&self) -> bool {
        matches!(self.channel, Channel::Held(_))
    }

    /// The grant, to map or flush through.
    pub fn grant_mut(&mut self) -> Option<&mut G> {
        match &mut self.channel {
            Channel::Held(g) => Some(g),
            _ => None,
        }
    }

    // ---- the miniport's calls ----------------------------------------------------------------------------------

    /// `ScsiPortIoMapTransfer` accepted: legal only with nothing outstanding (rule 3); a refused request is handed
    /// back.
    pub fn request(&mut self, req: MapRequest) -> Result<(), (DmaError, MapRequest)> {
        if let Some(other) = self.outstanding() {
            return Err((DmaError::MapBeforeFlush { outstanding: other.id }, req));
        }
        self.state = DmaState::Requested(req);
        Ok(())
    }

    /// The verifier refused a map for `h`. With nothing outstanding the refusal waits for the miniport's flush; with
    /// a transfer outstanding that transfer is what the miniport's next flush ends, so the state does not change.
    pub fn refuse(&mut self, h: SrbHandle) {
        if self.outstanding().is_none() {
            self.state = DmaState::Refused(h);
        }
    }

    /// `ScsiPortFlushDma`. Rule 6 with nothing to flush.
    pub fn flush(&mut self) -> Result<Flush, DmaError> {
        match std::mem::replace(&mut self.state, DmaState::Idle) {
            DmaState::Requested(r) | DmaState::WaitingForChannel(r) => {
                self.state = DmaState::Cancelled;
                Ok(Flush::Cancelled(r))
            }
            DmaState::Mapped(mapping) => {
                self.state = DmaState::Flushed;
                Ok(Flush::Programmed { mapping, started: false })
            }
            DmaState::Started(mapping) => {
                self.state = DmaState::Flushed;
                Ok(Flush::Programmed { mapping, started: true })
            }
            DmaState::Refused(_) => Ok(Flush::Refusal),
            other => {
                self.state = other;
                Err(DmaError::FlushWithoutMap)
            }
        }
    }

    // ---- the port's deferred work ------------------------------------------------------------------------------

    /// The HAL has no channel free now: the deferred map waits for the grant.
    pub fn wait_for_channel(&mut self) -> Result<(), DmaError> {
        if !matches!(self.channel, Channel::Free) {
            return self.illegal("wait for the channel while it is asked for or held");
        }
        match std::mem::replace(&mut self.state, DmaState::Idle) {
            DmaState::Requested(r) | DmaState::WaitingForChannel(r) => {
                self.state = DmaState::WaitingForChannel(r);
                self.channel = Channel::Waiting;
                Ok(())
            }
            other => {
                self.state = other;
                self.illegal("wait for the channel")
            }
        }
    }

    /// The HAL granted the channel at once.
    pub fn channel_allocated(&mut self, grant: G) -> Result<(), (DmaError, G)> {
        if !matches!(self.channel, Channel::Free) {
            let state = self.state_name();
            return Err((
                DmaError::Illegal { event: "allocate the channel while it is asked for or held", state },
                grant,
            ));
        }
        self.channel = Channel::Held(grant);
        Ok(())
    }

    /// The HAL's callback: the channel is free for this adapter. `grant` is what the HAL handed over (none if the
    /// grant went elsewhere, then the deferred map asks again). Returns a grant nobody waited for.
    pub fn channel_granted(&mut self, grant: Option<G>) -> Result<(), (DmaError, Option<G>)> {
        if !matches!(self.channel, Channel::Waiting) {
            let state = self.state_name();
            return Err((DmaError::Illegal { event: "a channel grant nobody waited for", state }, grant));
        }
        self.channel = match grant {
            Some(g) => Channel::Held(g),
            None => Channel::Free,
        };
        Ok(())
    }

    /// The HAL programmed the transfer: legal only for a transfer still wanted, with the channel held.
    pub fn mapped(&mut self, bounced: bool) -> Result<&Mapping, DmaError> {
        if !self.holds_channel() {
            return self.illegal("program the channel without holding it");
        }
        match std::mem::replace(&mut self.state, DmaState::Idle) {
            DmaState::Requested(request) | DmaState::WaitingForChannel(request) => {
                self.state = DmaState::Mapped(Mapping { request, bounced });
                match &self.state {
                    DmaState::Mapped(m) => Ok(m),
                    _ => unreachable!("set above"),
                }
            }
            other => {
                self.state = other;
                self.illegal("program the channel")
            }
        }
    }

    /// The HAL could not give the channel or map the transfer: the transfer is dropped, the SRB fails.
    pub fn map_failed(&mut self) -> Result<MapRequest, DmaError> {
        match std::mem::replace(&mut self.state, DmaState::Idle) {
            DmaState::Requested(r) | DmaState::WaitingForChannel(r) => Ok(r),
            other => {
                self.state = other;
                self.illegal("a failed map")
            }
        }
    }

    /// `HwDmaStarted` is called: only once per programmed transfer, and never for one flushed meanwhile (rule 4).
    pub fn started(&mut self) -> Result<(), DmaError> {
        match std::mem::replace(&mut self.state, DmaState::Idle) {
            DmaState::Mapped(m) => {
                self.state = DmaState::Started(m);
                Ok(())
            }
            other => {
                self.state = other;
                self.illegal("HwDmaStarted")
            }
        }
    }

    /// The deferred flush ran.
    pub fn flush_done(&mut self) {
        if matches!(self.state, DmaState::Flushed) {
            self.state = DmaState::Idle;
        }
    }

    /// SRB `h` went back to its caller: a refusal still waiting for its flush is forgotten.
    pub fn srb_finished(&mut self, h: SrbHandle) {
        if matches!(self.state, DmaState::Refused(r) if r == h) {
            self.state = DmaState::Idle;
        }
    }

    /// Drop the outstanding transfer of `h` (of any SRB with `None`) without a flush: recovery after a rule-5
    /// violation, before a bus reset, or a second map let through in warn mode. A dropped programmed transfer must
    /// have its channel released ([`DmaPath::release_channel`]), which masks it.
    pub fn abandon(&mut self, h: Option<SrbHandle>) -> Option<Abandoned> {
        let matches = self.outstanding().is_some_and(|r| h.is_none_or(|h| r.srb == h));
        if !matches {
            return None;
        }
        match std::mem::replace(&mut self.state, DmaState::Idle) {
            DmaState::Requested(_) | DmaState::WaitingForChannel(_) => {
                // A channel asked for still arrives; the deferred map then finds nothing to program and frees it.
                self.state = DmaState::Cancelled;
                Some(Abandoned::Request)
            }
            DmaState::Mapped(_) | DmaState::Started(_) => Some(Abandoned::Mapping),
            _ => unreachable!("outstanding() matched"),
        }
    }

    /// Give the channel back (`FreeAdapterChannel`). Refused while a transfer is outstanding in it.
    pub fn release_channel(&mut self) -> Result<Option<G>, DmaError> {
        if self.in_channel().is_some() {
            return self.illegal("free the channel with a transfer programmed");
        }
        match std::mem::replace(&mut self.channel, Channel::Free) {
            Channel::Held(g) => Ok(Some(g)),
            other => {
                self.channel = other;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hal::{Placement, SystemMemory};

    /// A grant in tests: which one it is.
    type Grant = u32;

    fn handle(slot: u32) -> SrbHandle {
        SrbHandle { slot, generation: 0 }
    }

    fn request(slot: u32) -> MapRequest {
        let memory = SystemMemory::new(1 << 20).expect("memory");
        let buffer = memory.alloc(4096, Placement::Any).expect("buffer");
        MapRequest {
            srb: handle(slot),
            id: SrbId(u64::from(slot) + 100),
            buffer,
            offset: 0,
            length: 4096,
            direction: hal::Direction::FromDevice,
        }
    }

    /// Drive a fresh path to the named state (the channel held from `Mapped` on).
    fn path_in(state: &str) -> DmaPath<Grant> {
        let mut p = DmaPath::default();
        match state {
            "idle" => {}
            "requested" => p.request(request(1)).map_err(|(e, _)| e).unwrap(),
            "waiting-for-channel" => {
                p.request(request(1)).map_err(|(e, _)| e).unwrap();
                p.wait_for_channel().unwrap();
            }
            "mapped" | "started" | "flushed" => {
                p.request(request(1)).map_err(|(e, _)| e).unwrap();
                p.channel_allocated(7).map_err(|(e, _)| e).unwrap();
                p.mapped(false).unwrap();
                if state != "mapped" {
                    p.started().unwrap();
                }
                if state == "flushed" {
                    assert!(matches!(p.flush().unwrap(), Flush::Programmed { started: true, .. }));
                }
            }
            "cancelled" => {
                p.request(request(1)).map_err(|(e, _)| e).unwrap();
                assert!(matches!(p.flush().unwrap(), Flush::Cancelled(_)));
            }
            "refused" => p.refuse(handle(1)),
            _ => unreachable!("{state}"),
        }
        assert_eq!(p.state_name(), state);
        p
    }

    const STATES: [&str; 8] =
        ["idle", "requested", "waiting-for-channel", "mapped", "started", "flushed", "cancelled", "refused"];

    #[test]
    fn a_transfer_goes_idle_requested_waiting_mapped_started_flushed_idle() {
        let mut p: DmaPath<Grant> = DmaPath::default();
        p.request(request(1)).map_err(|(e, _)| e).unwrap();
        assert_eq!(p.state_name(), "requested");
        p.wait_for_channel().unwrap();
        assert_eq!(p.state_name(), "waiting-for-channel");
        assert!(p.waiting_for_channel());
        p.channel_granted(Some(3)).map_err(|(e, _)| e).unwrap();
        assert!(p.holds_channel() && !p.waiting_for_channel());
        assert_eq!(p.to_program().map(|r| r.id), Some(SrbId(101)));
        p.mapped(true).unwrap();
        assert_eq!(p.state_name(), "mapped");
        assert!(p.in_channel().is_some_and(|m| m.bounced));
        p.started().unwrap();
        assert_eq!(p.state_name(), "started");
        let Flush::Programmed { mapping, started: true } = p.flush().unwrap() else { panic!("a programmed flush") };
        assert_eq!(mapping.request.id, SrbId(101));
        assert_eq!(p.state_name(), "flushed");
        p.flush_done();
        assert_eq!(p.state_name(), "idle");
        assert_eq!(p.release_channel().unwrap(), Some(3));
        assert!(!p.holds_channel());
    }

    #[test]
    fn a_map_is_legal_only_with_nothing_outstanding() {
        for s in STATES {
            let mut p = path_in(s);
            let r = p.request(request(2)).map_err(|(e, req)| (e, req.id));
            match s {
                "idle" | "flushed" | "cancelled" | "refused" => {
                    assert!(r.is_ok(), "{s}");
                    assert_eq!(p.state_name(), "requested");
                }
                _ => {
                    let want = (DmaError::MapBeforeFlush { outstanding: SrbId(101) }, SrbId(102));
                    assert_eq!(r, Err(want), "{s}: refused, and the request handed back");
                    assert_eq!(p.state_name(), s, "a refused map leaves the state alone");
                }
            }
        }
    }

    #[test]
    fn a_flush_cancels_ends_or_pairs_and_is_refused_with_nothing_mapped() {
        for s in STATES {
            let mut p = path_in(s);
            let r = p.flush();
            match (s, r) {
                ("requested" | "waiting-for-channel", Ok(Flush::Cancelled(req))) => {
                    assert_eq!(req.id, SrbId(101));
                    assert_eq!(p.state_name(), "cancelled");
                }
                ("mapped", Ok(Flush::Programmed { started: false, .. }))
                | ("started", Ok(Flush::Programmed { started: true, .. })) => assert_eq!(p.state_name(), "flushed"),
                ("refused", Ok(Flush::Refusal)) => assert_eq!(p.state_name(), "idle"),
                ("idle" | "flushed" | "cancelled", Err(DmaError::FlushWithoutMap)) => assert_eq!(p.state_name(), s),
                (s, _) => panic!("unexpected flush outcome in {s}"),
            }
        }
    }

    #[test]
    fn hw_dma_started_is_legal_only_once_and_only_for_a_programmed_transfer() {
        for s in STATES {
            let mut p = path_in(s);
            let r = p.started();
            if s == "mapped" {
                assert!(r.is_ok());
                assert_eq!(p.state_name(), "started");
                assert!(matches!(p.started(), Err(DmaError::Illegal { event: "HwDmaStarted", state: "started" })));
            } else {
                assert!(matches!(r, Err(DmaError::Illegal { .. })), "{s}");
                assert_eq!(p.state_name(), s);
            }
        }
    }

    #[test]
    fn programming_needs_a_wanted_transfer_and_the_channel() {
        for s in STATES {
            let mut p = path_in(s);
            if !p.holds_channel() {
                assert!(p.mapped(false).is_err(), "{s}: not without the channel");
                assert_eq!(p.state_name(), s);
                if p.waiting_for_channel() {
                    p.channel_granted(Some(1)).map_err(|(e, _)| e).unwrap();
                } else {
                    p.channel_allocated(1).map_err(|(e, _)| e).unwrap();
                }
            }
            let r = p.mapped(false).map(|_| ());
            if matches!(s, "requested" | "waiting-for-channel") {
                assert!(r.is_ok(), "{s}");
                assert_eq!(p.state_name(), "mapped");
            } else {
                assert!(matches!(r, Err(DmaError::Illegal { .. })), "{s}");
                assert_eq!(p.state_name(), s);
            }
        }
    }

    #[test]
    fn waiting_for_the_channel_is_legal_only_for_a_wanted_transfer_with_the_channel_free() {
        for s in STATES {
            let mut p = path_in(s);
            let r = p.wait_for_channel();
            match s {
                "requested" => assert!(r.is_ok() && p.state_name() == "waiting-for-channel"),
                // Already waiting: the channel is asked for once.
                _ => {
                    assert!(matches!(r, Err(DmaError::Illegal { .. })), "{s}");
                    assert_eq!(p.state_name(), s);
                }
            }
        }
        // A grant the HAL gave elsewhere: the deferred map asks again.
        let mut p = path_in("waiting-for-channel");
        p.channel_granted(None).map_err(|(e, _)| e).unwrap();
        assert!(!p.waiting_for_channel() && !p.holds_channel());
        p.wait_for_channel().unwrap();
        assert_eq!(p.state_name(), "waiting-for-channel");
    }

    #[test]
    fn a_grant_nobody_waited_for_is_handed_back() {
        let mut p = path_in("idle");
        let Err((DmaError::Illegal { .. }, Some(9))) = p.channel_granted(Some(9)) else { panic!("refused") };
        let mut p = path_in("started");
        let Err((DmaError::Illegal { .. }, 4)) = p.channel_allocated(4) else { panic!("already held") };
    }

    #[test]
    fn a_cancelled_wait_still_takes_the_grant_and_then_frees_it() {
        let mut p = path_in("waiting-for-channel");
        assert!(matches!(p.flush().unwrap(), Flush::Cancelled(_)));
        assert!(p.waiting_for_channel(), "the HAL still grants the channel");
        p.channel_granted(Some(5)).map_err(|(e, _)| e).unwrap();
        assert!(p.to_program().is_none(), "nothing left to program");
        assert_eq!(p.release_channel().unwrap(), Some(5));
    }

    #[test]
    fn the_channel_is_not_freed_under_a_programmed_transfer() {
        for s in ["mapped", "started"] {
            let mut p = path_in(s);
            assert!(p.release_channel().is_err(), "{s}");
            assert!(p.holds_channel());
        }
        for s in ["idle", "flushed", "cancelled", "refused", "requested"] {
            assert!(path_in(s).release_channel().is_ok(), "{s}");
        }
    }

    #[test]
    fn a_failed_map_drops_only_a_wanted_transfer() {
        for s in STATES {
            let mut p = path_in(s);
            let r = p.map_failed();
            if matches!(s, "requested" | "waiting-for-channel") {
                assert_eq!(r.map(|r| r.id).ok(), Some(SrbId(101)));
                assert_eq!(p.state_name(), "idle");
            } else {
                assert!(r.is_err(), "{s}");
                assert_eq!(p.state_name(), s);
            }
        }
    }

    #[test]
    fn abandon_drops_the_named_srbs_transfer_only() {
        for s in STATES {
            let mut other = path_in(s);
            assert!(other.abandon(Some(handle(9))).is_none(), "{s}: another SRB's transfer stays");
            assert_eq!(other.state_name(), s);
            let mut p = path_in(s);
            match (s, p.abandon(Some(handle(1)))) {
                ("requested" | "waiting-for-channel", Some(Abandoned::Request)) => {
                    assert_eq!(p.state_name(), "cancelled")
                }
                ("mapped" | "started", Some(Abandoned::Mapping)) => {
                    assert_eq!(p.state_name(), "idle");
                    assert_eq!(p.release_channel().unwrap(), Some(7), "the channel is released, masking it");
                }
                ("idle" | "flushed" | "cancelled" | "refused", None) => assert_eq!(p.state_name(), s),
                (s, _) => panic!("unexpected abandon in {s}"),
            }
        }
        let mut p = path_in("started");
        assert!(matches!(p.abandon(None), Some(Abandoned::Mapping)), "None names any SRB");
    }

    #[test]
    fn a_refusal_waits_for_its_flush_or_its_srb() {
        let mut p = path_in("refused");
        p.srb_finished(handle(2));
        assert_eq!(p.state_name(), "refused", "another SRB finishing does not end it");
        p.srb_finished(handle(1));
        assert_eq!(p.state_name(), "idle");
        // With a transfer outstanding, the flush the miniport sends next ends that transfer.
        let mut p = path_in("started");
        p.refuse(handle(2));
        assert_eq!(p.state_name(), "started");
        assert!(matches!(p.flush().unwrap(), Flush::Programmed { .. }));
    }
}
