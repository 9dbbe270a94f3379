//! The streaming command contract between a caller (HBA model, transport) and a logical
//! unit: a command is begun, its data phase is driven piecewise at increasing offsets,
//! then finished.

use crate::fault::FaultInjector;
use crate::sense::Sense;
use crate::status::Outcome;

/// Who sent the command: an opaque initiator id chosen by the HBA or transport layer.
/// Reservations and unit attentions are kept per I_T nexus (SAM-5 §4.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nexus {
    pub initiator: u64,
}

impl Nexus {
    pub const fn new(initiator: u64) -> Self {
        Self { initiator }
    }
}

/// How a begun command continues.
pub enum Begin {
    /// No data phase (or the command failed before it): status now.
    Complete(Outcome),
    /// Target → initiator data of `len` bytes (already clipped to the CDB's allocation length).
    DataIn { len: u64, task: Box<dyn DataInTask> },
    /// Initiator → target data of `len` bytes.
    DataOut { len: u64, task: Box<dyn DataOutTask> },
}

impl Begin {
    pub fn check(sense: Sense) -> Self {
        Self::Complete(Outcome::check(sense))
    }

    pub fn good() -> Self {
        Self::Complete(Outcome::good())
    }

    /// Serve a small, already built response, clipped to `alloc` bytes
    /// (SPC-4 §4.2.5.6: allocation length truncates, it is not an error).
    pub fn data_in(mut data: Vec<u8>, alloc: u64) -> Self {
        let keep = usize::try_from(alloc).unwrap_or(usize::MAX).min(data.len());
        data.truncate(keep);
        if data.is_empty() {
            return Self::good();
        }
        Self::DataIn { len: data.len() as u64, task: Box::new(BufferIn { data }) }
    }

    /// Collect a parameter list of `len` bytes, then act on it in `finish`.
    pub(crate) fn param_out<F>(len: u64, act: F) -> Self
    where
        F: FnOnce(Vec<u8>) -> Outcome + Send + 'static,
    {
        if len == 0 {
            return Self::Complete(act(Vec::new()));
        }
        let cap = usize::try_from(len).unwrap_or(0);
        Self::DataOut { len, task: Box::new(ParamOut { buf: vec![0; cap], act: Box::new(act) }) }
    }
}

impl std::fmt::Debug for Begin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Complete(o) => f.debug_tuple("Complete").field(o).finish(),
            Self::DataIn { len, .. } => f.debug_struct("DataIn").field("len", len).finish(),
            Self::DataOut { len, .. } => f.debug_struct("DataOut").field("len", len).finish(),
        }
    }
}

/// The data-in phase of a command.
pub trait DataInTask: Send {
    /// Fill `buf` with the bytes at `offset` of the data-in stream (offset+buf.len() <= len;
    /// called with increasing, contiguous offsets). An Err ends the data phase: the command
    /// then completes with that Outcome (e.g. medium error).
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Outcome>;
    /// Called once after the data phase (whether all, part or none of the data moved);
    /// returns the final status.
    fn finish(self: Box<Self>, transferred: u64) -> Outcome;
}

/// The data-out phase of a command.
pub trait DataOutTask: Send {
    /// Accept `data` at `offset` of the data-out stream (increasing, contiguous offsets).
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Outcome>;
    /// `transferred` < len means the initiator stopped early (abort, short transfer): partial
    /// atomic operations (COMPARE AND WRITE) are not committed; a plain WRITE may have
    /// written what arrived.
    fn finish(self: Box<Self>, transferred: u64) -> Outcome;
}

/// A SCSI logical unit.
pub trait LogicalUnit: Send + Sync {
    fn begin(&self, nexus: Nexus, cdb: &[u8]) -> Begin;
    /// Like `begin`, for a transport that knows how many data-out bytes the initiator
    /// will send (iSCSI's expected data transfer length). A logical unit may refuse a
    /// command whose data-out length contradicts its CDB instead of acting on part of it.
    fn begin_expecting(&self, nexus: Nexus, cdb: &[u8], data_out_len: u64) -> Begin {
        let _ = data_out_len;
        self.begin(nexus, cdb)
    }
    /// LU / bus reset: unit attention 06/29/00 for all nexuses, SPC-2 reservations released.
    fn reset(&self);
    /// The I_T nexus is gone (logout, connection loss): its SPC-2 reservation is released
    /// (SPC-4 §6.17); persistent reservations survive.
    fn nexus_loss(&self, _nexus: Nexus) {}
    /// The fault injector the HBA consults for faults it must act out itself
    /// (commands that never complete, DMA stalls, bus resets).
    fn faults(&self) -> Option<&FaultInjector> {
        None
    }
}

/// Serves a prepared buffer.
struct BufferIn {
    data: Vec<u8>,
}

impl DataInTask for BufferIn {
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Outcome> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|o| self.data.get(o..o.checked_add(buf.len())?))
            .ok_or_else(|| Outcome::check(Sense::invalid_field_in_cdb(0, None)))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn finish(self: Box<Self>, _transferred: u64) -> Outcome {
        Outcome::good()
    }
}

type ParamAction = Box<dyn FnOnce(Vec<u8>) -> Outcome + Send>;

/// Collects a parameter list; acts only if all of it arrived (SPC-4 §4.2.5.5: a short
/// parameter list is PARAMETER LIST LENGTH ERROR).
struct ParamOut {
    buf: Vec<u8>,
    act: ParamAction,
}

impl DataOutTask for ParamOut {
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Outcome> {
        let dst = usize::try_from(offset)
            .ok()
            .and_then(|o| self.buf.get_mut(o..o.checked_add(data.len())?))
            .ok_or_else(|| Outcome::check(Sense::param_list_length_error()))?;
        dst.copy_from_slice(data);
        Ok(())
    }

    fn finish(self: Box<Self>, transferred: u64) -> Outcome {
        if transferred < self.buf.len() as u64 {
            return Outcome::check(Sense::param_list_length_error());
        }
        (self.act)(self.buf)
    }
}
