//! The SCSI request block and its constants (docs/ddk.md, "Numeric values").

use bitflags::bitflags;
use hal::{Buffer, LogicalAddr};

/// `SRB_FUNCTION_*`: what an SRB asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SrbFunction(pub u8);

impl SrbFunction {
    pub const EXECUTE_SCSI: Self = Self(0x00);
    pub const CLAIM_DEVICE: Self = Self(0x01);
    pub const IO_CONTROL: Self = Self(0x02);
    pub const RECEIVE_EVENT: Self = Self(0x03);
    pub const RELEASE_QUEUE: Self = Self(0x04);
    pub const ATTACH_DEVICE: Self = Self(0x05);
    pub const RELEASE_DEVICE: Self = Self(0x06);
    pub const SHUTDOWN: Self = Self(0x07);
    pub const FLUSH: Self = Self(0x08);
    pub const ABORT_COMMAND: Self = Self(0x10);
    pub const RELEASE_RECOVERY: Self = Self(0x11);
    pub const RESET_BUS: Self = Self(0x12);
    pub const RESET_DEVICE: Self = Self(0x13);
    pub const TERMINATE_IO: Self = Self(0x14);
    pub const FLUSH_QUEUE: Self = Self(0x15);
}

/// `SRB_STATUS_*`. The two high bits are flags (`AUTOSENSE_VALID`, `QUEUE_FROZEN`); [`SrbStatus::status`] strips them
/// as the `SRB_STATUS()` macro does.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SrbStatus(pub u8);

impl SrbStatus {
    pub const PENDING: Self = Self(0x00);
    pub const SUCCESS: Self = Self(0x01);
    pub const ABORTED: Self = Self(0x02);
    pub const ABORT_FAILED: Self = Self(0x03);
    pub const ERROR: Self = Self(0x04);
    pub const BUSY: Self = Self(0x05);
    pub const INVALID_REQUEST: Self = Self(0x06);
    pub const INVALID_PATH_ID: Self = Self(0x07);
    pub const NO_DEVICE: Self = Self(0x08);
    pub const TIMEOUT: Self = Self(0x09);
    pub const SELECTION_TIMEOUT: Self = Self(0x0A);
    pub const COMMAND_TIMEOUT: Self = Self(0x0B);
    pub const MESSAGE_REJECTED: Self = Self(0x0D);
    pub const BUS_RESET: Self = Self(0x0E);
    pub const PARITY_ERROR: Self = Self(0x0F);
    pub const REQUEST_SENSE_FAILED: Self = Self(0x10);
    pub const NO_HBA: Self = Self(0x11);
    pub const DATA_OVERRUN: Self = Self(0x12);
    pub const UNEXPECTED_BUS_FREE: Self = Self(0x13);
    pub const PHASE_SEQUENCE_FAILURE: Self = Self(0x14);
    pub const BAD_SRB_BLOCK_LENGTH: Self = Self(0x15);
    pub const REQUEST_FLUSHED: Self = Self(0x16);
    pub const INVALID_LUN: Self = Self(0x20);
    pub const INVALID_TARGET_ID: Self = Self(0x21);
    pub const BAD_FUNCTION: Self = Self(0x22);
    pub const ERROR_RECOVERY: Self = Self(0x23);
    pub const INTERNAL_ERROR: Self = Self(0x30);
    /// Flag: the port froze the LU's queue when it completed this SRB (port only).
    pub const QUEUE_FROZEN: u8 = 0x40;
    /// Flag: the sense buffer holds valid autosense data.
    pub const AUTOSENSE_VALID: u8 = 0x80;

    /// The status without the two flag bits (`SRB_STATUS(s)`).
    pub fn status(self) -> SrbStatus {
        SrbStatus(self.0 & !(Self::QUEUE_FROZEN | Self::AUTOSENSE_VALID))
    }
    pub fn queue_frozen(self) -> bool {
        self.0 & Self::QUEUE_FROZEN != 0
    }
    pub fn autosense_valid(self) -> bool {
        self.0 & Self::AUTOSENSE_VALID != 0
    }
    pub fn is_success(self) -> bool {
        self.status() == Self::SUCCESS
    }
    pub fn name(self) -> &'static str {
        match self.status().0 {
            0x00 => "PENDING",
            0x01 => "SUCCESS",
            0x02 => "ABORTED",
            0x03 => "ABORT_FAILED",
            0x04 => "ERROR",
            0x05 => "BUSY",
            0x06 => "INVALID_REQUEST",
            0x07 => "INVALID_PATH_ID",
            0x08 => "NO_DEVICE",
            0x09 => "TIMEOUT",
            0x0A => "SELECTION_TIMEOUT",
            0x0B => "COMMAND_TIMEOUT",
            0x0D => "MESSAGE_REJECTED",
            0x0E => "BUS_RESET",
            0x0F => "PARITY_ERROR",
            0x10 => "REQUEST_SENSE_FAILED",
            0x11 => "NO_HBA",
            0x12 => "DATA_OVERRUN",
            0x13 => "UNEXPECTED_BUS_FREE",
            0x14 => "PHASE_SEQUENCE_FAILURE",
            0x15 => "BAD_SRB_BLOCK_LENGTH",
            0x16 => "REQUEST_FLUSHED",
            0x20 => "INVALID_LUN",
            0x21 => "INVALID_TARGET_ID",
            0x22 => "BAD_FUNCTION",
            0x23 => "ERROR_RECOVERY",
            0x30 => "INTERNAL_ERROR",
            _ => "UNKNOWN",
        }
    }
}

impl std::fmt::Debug for SrbStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name())?;
        if self.queue_frozen() {
            write!(f, "|QUEUE_FROZEN")?;
        }
        if self.autosense_valid() {
            write!(f, "|AUTOSENSE_VALID")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for SrbStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

bitflags! {
    /// `SRB_FLAGS_*`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct SrbFlags: u32 {
        const QUEUE_ACTION_ENABLE = 0x0000_0002;
        const DISABLE_DISCONNECT = 0x0000_0004;
        const DISABLE_SYNCH_TRANSFER = 0x0000_0008;
        const BYPASS_FROZEN_QUEUE = 0x0000_0010;
        const DISABLE_AUTOSENSE = 0x0000_0020;
        /// Device → memory.
        const DATA_IN = 0x0000_0040;
        /// Memory → device.
        const DATA_OUT = 0x0000_0080;
        const UNSPECIFIED_DIRECTION = 0x0000_00C0;
        const NO_QUEUE_FREEZE = 0x0000_0100;
        const ADAPTER_CACHE_ENABLE = 0x0000_0200;
        const IS_ACTIVE = 0x0001_0000;
    }
}

/// `SCSISTAT_*` values a miniport puts in `ScsiStatus`.
pub use scsi_proto::status::code as scsi_status;

/// Requests the port driver defines for every miniport, carried as `SRB_FUNCTION_IO_CONTROL` with an
/// `SRB_IO_CONTROL` header of the port's own signature, as the system defines the "SCSIDISK" requests
/// (`IOCTL_SCSI_MINIPORT_*`) that any miniport may implement. A miniport that does not know the signature completes
/// the request with `SRB_STATUS_INVALID_REQUEST`. `docs/passthrough.md` describes them.
pub mod requester {
    /// `SRB_IO_CONTROL.Signature` of the port's requests.
    pub const SIGNATURE: [u8; 8] = *b"SCSIPORT";
    /// Control code: the pass-through requester whose I_T nexus is in the 8 data bytes (little-endian), and in the
    /// SRB's requester nexus, is gone; the targets release what that I_T nexus held (SPC-2 reservations).
    pub const NEXUS_LOSS: u32 = 1;
    /// Size of the `SRB_IO_CONTROL` header (HeaderLength, Signature, Timeout, ControlCode, ReturnCode, Length).
    pub const SRB_IO_CONTROL_SIZE: usize = 28;

    /// The buffer of a NEXUS LOSS request: the header, then the nexus.
    pub fn nexus_loss_request(nexus: u64, timeout_secs: u32) -> [u8; SRB_IO_CONTROL_SIZE + 8] {
        let mut p = [0u8; SRB_IO_CONTROL_SIZE + 8];
        p[0..4].copy_from_slice(&(SRB_IO_CONTROL_SIZE as u32).to_le_bytes());
        p[4..12].copy_from_slice(&SIGNATURE);
        p[12..16].copy_from_slice(&timeout_secs.to_le_bytes());
        p[16..20].copy_from_slice(&NEXUS_LOSS.to_le_bytes());
        p[24..28].copy_from_slice(&8u32.to_le_bytes());
        p[28..36].copy_from_slice(&nexus.to_le_bytes());
        p
    }
}

/// `QueueAction` values.
pub mod queue_action {
    pub const SIMPLE_TAG: u8 = 0x20;
    pub const HEAD_OF_QUEUE_TAG: u8 = 0x21;
    pub const ORDERED_QUEUE_TAG: u8 = 0x22;
}

/// `SP_UNTAGGED`: the wildcard for `ScsiPortCompleteRequest` and the tag of an untagged request.
pub const SP_UNTAGGED: u8 = 0xFF;
/// `SP_UNINITIALIZED_VALUE`.
pub const SP_UNINITIALIZED_VALUE: u32 = u32::MAX;
/// Size of the SRB's CDB array (`MAXIMUM_CDB_SIZE` is 12; the array holds 16).
pub const CDB_SIZE: usize = 16;
/// The sense buffer the port provides with each SRB (fixed-format sense is 18 bytes; we allow descriptor format too).
pub const SENSE_BUFFER_SIZE: usize = 64;

/// Address of a logical unit on an adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LuAddress {
    pub path_id: u8,
    pub target_id: u8,
    pub lun: u8,
}

impl std::fmt::Display for LuAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.path_id, self.target_id, self.lun)
    }
}

/// A SCSI request block as a class driver or a pass-through caller builds it.
///
/// `data` is the MDL behind `DataBuffer`: the SRB describes `[data_buffer, data_buffer + data_transfer_length)`, a range
/// inside `data` (a class driver's partial transfer points into the middle of the original request's buffer).
#[derive(Clone)]
pub struct Srb {
    pub function: SrbFunction,
    pub srb_status: SrbStatus,
    pub scsi_status: u8,
    pub path_id: u8,
    pub target_id: u8,
    pub lun: u8,
    pub queue_tag: u8,
    pub queue_action: u8,
    pub cdb_length: u8,
    pub cdb: [u8; CDB_SIZE],
    pub srb_flags: SrbFlags,
    pub data_transfer_length: u32,
    pub time_out_value: u32,
    pub data_buffer: LogicalAddr,
    pub data: Option<Buffer>,
    pub sense_info_buffer_length: u8,
    pub sense_info_buffer: [u8; SENSE_BUFFER_SIZE],
    /// For `ABORT_COMMAND`: the port-assigned id of the SRB to abort (`NextSrb`).
    pub next_srb: Option<SrbId>,
    /// The I_T nexus of the application that sent a pass-through request (0: the adapter's own). An HBA with
    /// application-dedicated support presents it on the bus as the initiator identity, so that reservations and unit
    /// attentions are kept per requester, as each would be over its own initiator port.
    pub requester_nexus: u64,
}

/// A port-assigned identity for a submitted SRB, stable for its lifetime (used by abort requests and the trace).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SrbId(pub u64);

impl Srb {
    /// An `EXECUTE_SCSI` SRB with no data.
    pub fn execute_scsi(address: LuAddress, cdb: &[u8]) -> Self {
        let mut c = [0u8; CDB_SIZE];
        let n = cdb.len().min(CDB_SIZE);
        c[..n].copy_from_slice(&cdb[..n]);
        Srb {
            function: SrbFunction::EXECUTE_SCSI,
            srb_status: SrbStatus::PENDING,
            scsi_status: 0,
            path_id: address.path_id,
            target_id: address.target_id,
            lun: address.lun,
            queue_tag: SP_UNTAGGED,
            queue_action: queue_action::SIMPLE_TAG,
            cdb_length: n as u8,
            cdb: c,
            srb_flags: SrbFlags::empty(),
            data_transfer_length: 0,
            time_out_value: 10,
            data_buffer: LogicalAddr(0),
            data: None,
            sense_info_buffer_length: SENSE_BUFFER_SIZE as u8,
            sense_info_buffer: [0; SENSE_BUFFER_SIZE],
            next_srb: None,
            requester_nexus: 0,
        }
    }

    /// An `ABORT_COMMAND` SRB for the SRB `victim` on `address`. It has no timeout of its own: the port escalates to a
    /// bus reset when an abort does not end its victim in time.
    pub fn abort(address: LuAddress, victim: SrbId) -> Self {
        let mut srb = Srb::execute_scsi(address, &[]);
        srb.function = SrbFunction::ABORT_COMMAND;
        srb.next_srb = Some(victim);
        srb.time_out_value = 0;
        srb
    }

    /// A `RELEASE_QUEUE` SRB: thaw the queue the port froze for `address` after an error.
    pub fn release_queue(address: LuAddress) -> Self {
        let mut srb = Srb::execute_scsi(address, &[]);
        srb.function = SrbFunction::RELEASE_QUEUE;
        srb
    }

    /// A `RESET_BUS` SRB for bus `path_id`.
    pub fn reset_bus(path_id: u8) -> Self {
        let mut srb = Srb::execute_scsi(LuAddress { path_id, target_id: 0, lun: 0 }, &[]);
        srb.function = SrbFunction::RESET_BUS;
        srb
    }

    /// Attach `[offset, offset + len)` of `buffer` as the data buffer, moving data in the direction `flags` gives
    /// (`DATA_IN` or `DATA_OUT`).
    pub fn with_data(mut self, buffer: &Buffer, offset: usize, len: u32, direction: SrbFlags) -> Self {
        self.data_buffer = LogicalAddr(buffer.va().0 + offset as u64);
        self.data_transfer_length = len;
        self.data = Some(buffer.clone());
        self.srb_flags.remove(SrbFlags::UNSPECIFIED_DIRECTION);
        self.srb_flags.insert(direction & SrbFlags::UNSPECIFIED_DIRECTION);
        self
    }

    pub fn address(&self) -> LuAddress {
        LuAddress { path_id: self.path_id, target_id: self.target_id, lun: self.lun }
    }

    pub fn cdb(&self) -> &[u8] {
        &self.cdb[..(self.cdb_length as usize).min(CDB_SIZE)]
    }

    /// The sense bytes the miniport returned (valid when `AUTOSENSE_VALID` is set).
    pub fn sense(&self) -> &[u8] {
        &self.sense_info_buffer[..(self.sense_info_buffer_length as usize).min(SENSE_BUFFER_SIZE)]
    }

    /// Offset of `DataBuffer` inside the MDL.
    pub fn data_offset(&self) -> Option<usize> {
        let b = self.data.as_ref()?;
        self.data_buffer.0.checked_sub(b.va().0).map(|o| o as usize)
    }
}

impl std::fmt::Debug for Srb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Srb")
            .field("function", &self.function)
            .field("status", &self.srb_status)
            .field("scsi_status", &self.scsi_status)
            .field("address", &self.address())
            .field("tag", &self.queue_tag)
            .field("cdb", &self.cdb())
            .field("flags", &self.srb_flags)
            .field("length", &self.data_transfer_length)
            .finish()
    }
}

/// What a miniport holds for an SRB it was given: a handle the port checks on every use (the model's
/// `PSCSI_REQUEST_BLOCK`). A handle outlives its SRB only as a stale value the port recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SrbHandle {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

/// Called once with the finished SRB.
pub type Completion = Box<dyn FnOnce(Srb) + Send>;
