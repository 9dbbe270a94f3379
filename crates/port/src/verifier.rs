//! The DMA-protocol verifier: every DDI call is checked against the rules of docs/ddi-rules.md; a broken
//! miniport is named, not silently tolerated.
//!
//! | DDI rule | names |
//! |---|---|
//! | 1 system DMA only | `ddi-not-system-dma` (and a system-DMA adapter without `HwDmaStarted` does not start) |
//! | 2 the map request | `map-inactive-srb`, `map-empty-range`, `map-outside-srb-buffer`, `map-exceeds-map-registers`, `map-without-direction` |
//! | 3 one map at a time | `map-before-flush` |
//! | 4 `HwDmaStarted` | `map-from-wrong-routine`, `data-phase-before-dma-started` (the port itself never calls it re-entrantly or for a cancelled map) |
//! | 5 flush before completion | `complete-without-flush` (by `RequestComplete`, `ScsiPortCompleteRequest`, abort, timeout, or a bus reset) |
//! | 6 flush with nothing mapped | `flush-without-map` (advisory) |
//! | 7 the SRB | `srb-not-active`, `srb-completed-twice`, `srb-field-not-writable`, `data-buffer-not-mapped` |
//! | other | `dma-controller-access`, `io-outside-access-range`, `bad-next-lu-request`, `interrupt-not-dismissed` |
//!
//! A miniport written in C (`crates/miniport-c`) is checked by the same rules under the same names; the C glue
//! reports the SRB fields it finds written in the miniport's `SCSI_REQUEST_BLOCK` through
//! [`crate::PortContext::report_violation`] (`docs/miniport-c.md`).
//!
//! What a mode does after a violation:
//! - `strict`: the offending operation is refused and the SRB it concerns completes with `SRB_STATUS_INTERNAL_ERROR`.
//!   A refused map leaves the card waiting for DMA that never comes, so the port aborts that SRB at once (the same
//!   path a timeout takes, escalating to a bus reset); a transfer left mapped is dropped and its channel and map
//!   registers freed. Violations that concern no SRB (port I/O, `NextLuRequest`) refuse the operation only.
//! - `warn`: reported, and the port carries on as the original port driver would (an unflushed bounced read loses
//!   its data, a DMA-controller port access reaches the controller).
//! - `off`: nothing is checked or reported; what cannot be done at all (a map the HAL cannot make) is still not done.
//!
//! "Mapping with the wrong direction" has no separate check: `ScsiPortIoMapTransfer` takes no direction, the port
//! takes it from `SrbFlags`, so a wrong direction is either unresolved (`map-without-direction`) or a rewrite of a
//! specified direction (`srb-field-not-writable`).

use crate::srb::{LuAddress, SrbId};
use serde::{Deserialize, Serialize};

/// How the port reacts to a violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifierMode {
    /// Report, refuse the offending operation and fail the SRB it concerns with `SRB_STATUS_INTERNAL_ERROR`.
    #[default]
    Strict,
    /// Report and carry on as the original port driver would.
    Warn,
    /// Check nothing.
    Off,
}

/// A rule of the DDI, by its stable name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Rule {
    /// Rule 1: only a system-DMA miniport with a `HwDmaStarted` routine may map or flush.
    NotSystemDma,
    /// Rule 2: the SRB given to `ScsiPortIoMapTransfer` is not active.
    MapInactiveSrb,
    /// Rule 2: an empty range.
    MapEmptyRange,
    /// Rule 2: the range leaves `[DataBuffer, DataBuffer + DataTransferLength)`.
    MapOutsideSrbBuffer,
    /// Rule 2: the range needs more map registers than the adapter has.
    MapExceedsMapRegisters,
    /// Rule 2: neither or both of DATA_IN / DATA_OUT are set, or the SRB carries no data.
    MapWithoutDirection,
    /// Rule 3: a second map before the previous one was flushed.
    MapBeforeFlush,
    /// Rule 5: an SRB completed while its transfer was mapped and not flushed.
    CompleteWithoutFlush,
    /// Rule 6: a flush with nothing mapped.
    FlushWithoutMap,
    /// Rule 7: the miniport touched an SRB that is not active (completed, or never started).
    SrbNotActive,
    /// Rule 7: an SRB completed twice.
    CompletedTwice,
    /// Rule 7: the miniport wrote an SRB field the DDK does not let it write.
    SrbFieldNotWritable,
    /// Rule 7: byte access to the data buffer without `MapBuffers`.
    DataBufferNotMapped,
    /// The miniport accessed the system DMA controller's ports itself.
    DmaControllerAccess,
    /// The miniport accessed a port outside its access ranges.
    IoOutsideAccessRange,
    /// A `NextLuRequest` for a logical unit that does not exist or when the adapter cannot queue per LU.
    BadNextLuRequest,
    /// A map asked for from a routine that may not map (only `HwStartIo` and `HwInterrupt`, and timer routines).
    MapFromWrongRoutine,
    /// `HwInterrupt` keeps returning with the card's interrupt line asserted.
    InterruptNotDismissed,
    /// Rule 4: the card asked for DMA before `HwDmaStarted` (its data phase started outside that routine).
    DataPhaseBeforeDmaStarted,
}

impl Rule {
    /// The stable, kebab-case name used in reports, tests and traces.
    pub fn name(self) -> &'static str {
        match self {
            Rule::NotSystemDma => "ddi-not-system-dma",
            Rule::MapInactiveSrb => "map-inactive-srb",
            Rule::MapEmptyRange => "map-empty-range",
            Rule::MapOutsideSrbBuffer => "map-outside-srb-buffer",
            Rule::MapExceedsMapRegisters => "map-exceeds-map-registers",
            Rule::MapWithoutDirection => "map-without-direction",
            Rule::MapBeforeFlush => "map-before-flush",
            Rule::CompleteWithoutFlush => "complete-without-flush",
            Rule::FlushWithoutMap => "flush-without-map",
            Rule::SrbNotActive => "srb-not-active",
            Rule::CompletedTwice => "srb-completed-twice",
            Rule::SrbFieldNotWritable => "srb-field-not-writable",
            Rule::DataBufferNotMapped => "data-buffer-not-mapped",
            Rule::DmaControllerAccess => "dma-controller-access",
            Rule::IoOutsideAccessRange => "io-outside-access-range",
            Rule::BadNextLuRequest => "bad-next-lu-request",
            Rule::MapFromWrongRoutine => "map-from-wrong-routine",
            Rule::InterruptNotDismissed => "interrupt-not-dismissed",
            Rule::DataPhaseBeforeDmaStarted => "data-phase-before-dma-started",
        }
    }

    /// What the rule says, for the report.
    pub fn text(self) -> &'static str {
        match self {
            Rule::NotSystemDma => "only a system-DMA miniport (Master = FALSE, DmaChannel set, HwDmaStarted present) may call ScsiPortIoMapTransfer or ScsiPortFlushDma",
            Rule::MapInactiveSrb => "ScsiPortIoMapTransfer takes an SRB that the port started and the miniport has not completed",
            Rule::MapEmptyRange => "the mapped range must not be empty",
            Rule::MapOutsideSrbBuffer => "the mapped range must lie inside [DataBuffer, DataBuffer + DataTransferLength)",
            Rule::MapExceedsMapRegisters => "a map must fit the adapter's map registers and one programming of its channel (64 KiB on channels 0-3, 128 KiB on 5-7): a system-DMA map is never truncated",
            Rule::MapWithoutDirection => "exactly one of SRB_FLAGS_DATA_IN / SRB_FLAGS_DATA_OUT must be set when a data SRB is mapped",
            Rule::MapBeforeFlush => "at most one mapped transfer per adapter: ScsiPortFlushDma must come before the next ScsiPortIoMapTransfer",
            Rule::CompleteWithoutFlush => "ScsiPortFlushDma must be called before the SRB is completed",
            Rule::FlushWithoutMap => "ScsiPortFlushDma with nothing mapped changes nothing",
            Rule::SrbNotActive => "nothing may touch an SRB that is not active (completed SRBs belong to the port)",
            Rule::CompletedTwice => "an SRB is completed exactly once",
            Rule::SrbFieldNotWritable => "a miniport writes only SrbStatus, ScsiStatus, DataTransferLength (underrun), sense, and the direction bits of an UNSPECIFIED_DIRECTION SRB",
            Rule::DataBufferNotMapped => "with MapBuffers = FALSE the miniport must not dereference DataBuffer",
            Rule::DmaControllerAccess => "the system DMA controller belongs to the HAL: a miniport programs it only through ScsiPortIoMapTransfer",
            Rule::IoOutsideAccessRange => "a miniport accesses only the I/O ports of its access ranges",
            Rule::BadNextLuRequest => "NextLuRequest names an existing logical unit of an adapter that queues per LU",
            Rule::MapFromWrongRoutine => "ScsiPortIoMapTransfer is called from HwScsiStartIo, HwScsiInterrupt or a timer routine",
            Rule::InterruptNotDismissed => "HwScsiInterrupt dismisses the card's interrupt before it returns",
            Rule::DataPhaseBeforeDmaStarted => "the card's data phase starts in HwDmaStarted, once the port has programmed the channel, not before",
        }
    }

    /// The number of the DDI rule in docs/ddi-rules.md this check enforces; `None` for the other misuses
    /// the port catches.
    pub fn ddi_rule(self) -> Option<u8> {
        Some(match self {
            Rule::NotSystemDma => 1,
            Rule::MapInactiveSrb
            | Rule::MapEmptyRange
            | Rule::MapOutsideSrbBuffer
            | Rule::MapExceedsMapRegisters
            | Rule::MapWithoutDirection => 2,
            Rule::MapBeforeFlush => 3,
            Rule::MapFromWrongRoutine | Rule::DataPhaseBeforeDmaStarted => 4,
            Rule::CompleteWithoutFlush => 5,
            Rule::FlushWithoutMap => 6,
            Rule::SrbNotActive | Rule::CompletedTwice | Rule::SrbFieldNotWritable | Rule::DataBufferNotMapped => 7,
            Rule::DmaControllerAccess
            | Rule::IoOutsideAccessRange
            | Rule::BadNextLuRequest
            | Rule::InterruptNotDismissed => return None,
        })
    }

    /// Every rule, for reports and for tests that walk the catalog.
    pub const ALL: [Rule; 19] = [
        Rule::NotSystemDma,
        Rule::MapInactiveSrb,
        Rule::MapEmptyRange,
        Rule::MapOutsideSrbBuffer,
        Rule::MapExceedsMapRegisters,
        Rule::MapWithoutDirection,
        Rule::MapBeforeFlush,
        Rule::CompleteWithoutFlush,
        Rule::FlushWithoutMap,
        Rule::SrbNotActive,
        Rule::CompletedTwice,
        Rule::SrbFieldNotWritable,
        Rule::DataBufferNotMapped,
        Rule::DmaControllerAccess,
        Rule::IoOutsideAccessRange,
        Rule::BadNextLuRequest,
        Rule::MapFromWrongRoutine,
        Rule::InterruptNotDismissed,
        Rule::DataPhaseBeforeDmaStarted,
    ];

    /// Rules whose breach is only reported (no operation is refused), whatever the mode.
    pub fn is_advisory(self) -> bool {
        matches!(self, Rule::FlushWithoutMap)
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One reported violation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub rule: Rule,
    pub adapter: String,
    pub srb: Option<SrbId>,
    pub address: Option<LuAddress>,
    pub tag: Option<u8>,
    pub opcode: Option<u8>,
    /// What happened instead.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} [", self.adapter, self.rule.name())?;
        if let Some(n) = self.rule.ddi_rule() {
            write!(f, "DDI rule {n}: ")?;
        }
        write!(f, "{}]", self.rule.text())?;
        if let Some(id) = self.srb {
            write!(f, "; SRB #{}", id.0)?;
        } else {
            write!(f, "; no SRB")?;
        }
        if let Some(a) = self.address {
            write!(f, " at {a}")?;
        }
        if let Some(t) = self.tag {
            write!(f, " tag {t:#04x}")?;
        }
        if let Some(op) = self.opcode {
            write!(f, " opcode {op:#04x}")?;
        }
        write!(f, "; instead: {}", self.detail)
    }
}

impl Serialize for LuAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for LuAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let parts: Vec<&str> = s.split(':').collect();
        let parse = |p: &str| p.parse::<u8>().map_err(serde::de::Error::custom);
        if parts.len() != 3 {
            return Err(serde::de::Error::custom("expected path:target:lun"));
        }
        Ok(LuAddress { path_id: parse(parts[0])?, target_id: parse(parts[1])?, lun: parse(parts[2])? })
    }
}

impl Serialize for SrbId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for SrbId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(SrbId(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_are_unique_kebab_case_and_texts_are_sentences() {
        let mut seen = std::collections::HashSet::new();
        for r in Rule::ALL {
            let n = r.name();
            assert!(seen.insert(n), "{n} is used twice");
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{n} is not kebab-case");
            assert!(!n.starts_with('-') && !n.ends_with('-') && !n.contains("--"), "{n}");
            assert!(r.text().len() > 20, "{n} explains itself");
        }
    }

    #[test]
    fn the_message_names_rule_srb_and_what_happened() {
        let v = Violation {
            rule: Rule::CompleteWithoutFlush,
            adapter: "scsi0".into(),
            srb: Some(SrbId(7)),
            address: Some(LuAddress { path_id: 0, target_id: 2, lun: 1 }),
            tag: Some(0xFF),
            opcode: Some(0x28),
            detail: "completed while mapped".into(),
        };
        assert_eq!(
            v.to_string(),
            "scsi0: complete-without-flush [DDI rule 5: ScsiPortFlushDma must be called before the SRB is completed]; \
             SRB #7 at 0:2:1 tag 0xff opcode 0x28; instead: completed while mapped"
        );
    }
}
