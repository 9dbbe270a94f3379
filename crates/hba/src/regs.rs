//! The register file of the reference host adapter: port offsets from the I/O base, bits and command codes.
//!
//! This module is the card's datasheet in code (`docs/hba.md` is the same in prose). It belongs to neither side: the
//! model in [`crate::hw`] implements it and the miniport in [`crate::miniport`] programs the card through it, the way
//! a driver includes its chip's header rather than the chip's design.

/// Number of I/O ports the card decodes from its base.
pub const PORT_COUNT: u16 = 16;
/// Factory default I/O base.
pub const DEFAULT_IO_BASE: u16 = 0x330;
/// The highest LUN the `SELECT` register can address (its bits 4–6).
pub const MAX_LUN: u64 = 7;

/// `SIG0` (read): first signature byte.
pub const SIG0: u16 = 0x0;
/// `SIG1` (read): second signature byte.
pub const SIG1: u16 = 0x1;
/// `CONFIG` (read): jumpered DMA channel (bits 0–2) and IRQ (bits 4–7).
pub const CONFIG: u16 = 0x2;
/// `STATUS` (read).
pub const STATUS: u16 = 0x3;
/// `INTCAUSE` (read): why the interrupt line is asserted. Cleared by [`CMD_CLEAR_INT`].
pub const INTCAUSE: u16 = 0x4;
/// `COMMAND` (write): one of the `CMD_*` codes.
pub const COMMAND: u16 = 0x5;
/// `TAG` (read, the same port as `COMMAND`): the queue tag of the nexus that owns the bus (valid while
/// `STATUS.TAGGED`): after a reselection, the tag the target sent in its SIMPLE QUEUE TAG message.
pub const TAG: u16 = 0x5;
/// `SELECT` (read/write): target ID in bits 0–2, LUN in bits 4–6, bit 7 [`select::DISCONNECT`]. A reselection loads
/// it with the reselecting target and LUN.
pub const SELECT: u16 = 0x6;
/// `CDB` (write): CDB FIFO, one byte per write, up to [`CDB_FIFO_DEPTH`]. Reads back the number of bytes queued.
pub const CDB_FIFO: u16 = 0x7;
/// Bytes the CDB FIFO holds: a 16-byte CDB behind the two bytes of a queue tag message.
pub const CDB_FIFO_DEPTH: usize = 18;
/// `XFER0..2` (read/write): 24-bit transfer counter, low, middle and high byte.
pub const XFER0: u16 = 0x8;
pub const XFER1: u16 = 0x9;
pub const XFER2: u16 = 0xA;
/// `SCSISTAT` (read): the SCSI status byte of the last command.
pub const SCSI_STATUS: u16 = 0xB;
/// `SENSE` (read): sense FIFO; each read pops one byte (0 when empty).
pub const SENSE_FIFO: u16 = 0xC;
/// `SENSELEN` (read): bytes left in the sense FIFO.
pub const SENSE_LEN: u16 = 0xD;
/// `FLAGS` (read): how the last data phase ended.
pub const FLAGS: u16 = 0xE;
/// `CONTROL` (read/write).
pub const CONTROL: u16 = 0xF;

/// Signature: the card answers `"RH"` (reference host adapter) at `SIG0`/`SIG1`.
pub const SIGNATURE: [u8; 2] = [b'R', b'H'];

/// `STATUS` bits.
pub mod status {
    /// A command owns the SCSI bus (selected, not yet completed).
    pub const BUSY: u8 = 0x01;
    /// The target is in a data phase and waits for `START DMA` (or `FINISH DATA`).
    pub const DATA_WAIT: u8 = 0x02;
    /// The data phase runs: DREQ is asserted while the transfer counter is non-zero.
    pub const DMA_ACTIVE: u8 = 0x04;
    /// `INTCAUSE` is non-zero.
    pub const INT_PENDING: u8 = 0x08;
    /// The data phase moves target → host (DMA write to memory).
    pub const DATA_IN: u8 = 0x10;
    /// The data phase moves host → target (DMA read from memory).
    pub const DATA_OUT: u8 = 0x20;
    /// The sense FIFO holds autosense data.
    pub const SENSE_VALID: u8 = 0x40;
    /// The nexus that owns the bus is tagged (I_T_L_Q): `TAG` holds its queue tag.
    pub const TAGGED: u8 = 0x80;
}

/// `SELECT` bits besides the target ID and LUN.
pub mod select {
    /// The IDENTIFY message grants the target the privilege to disconnect (SPI-2 §16.3.1, DiscPriv): a tagged command
    /// started with it is queued at the target, which frees the bus and reselects later.
    pub const DISCONNECT: u8 = 0x80;
}

/// Queue tag message codes (SAM-5 task attributes as SPI-2 messages), the first byte of a `START TAGGED` FIFO. They are
/// the values of the SRB's `QueueAction`.
pub mod tag_message {
    pub const SIMPLE: u8 = 0x20;
    pub const HEAD_OF_QUEUE: u8 = 0x21;
    pub const ORDERED: u8 = 0x22;
}

/// `INTCAUSE` bits.
pub mod int {
    /// The command ended: `SCSISTAT`, `FLAGS`, the counter and the sense FIFO are valid.
    pub const COMMAND_COMPLETE: u8 = 0x01;
    /// The transfer counter reached zero (or the DMA controller signalled terminal count) and the target has more
    /// data: the data phase is paused until `START DMA` with a new count, or `FINISH DATA`.
    pub const DATA_PAUSED: u8 = 0x02;
    /// A SCSI bus reset happened: every command was dropped.
    pub const BUS_RESET: u8 = 0x04;
    /// No device answered selection at the selected target ID.
    pub const SELECTION_TIMEOUT: u8 = 0x08;
    /// A command arrived in a state that cannot take it (see `docs/hba.md`).
    pub const ERROR: u8 = 0x10;
    /// A target reselected the card for a disconnected tagged command and is in its data phase: `SELECT` and `TAG`
    /// name the command; the card waits for `START DMA` or `FINISH DATA`.
    pub const RESELECTED: u8 = 0x20;
    /// The command that owned the bus disconnected after its data-out phase while its target writes the data (it
    /// reselects for status later): the bus is free; `SELECT` and `TAG` name the command.
    pub const DISCONNECTED: u8 = 0x40;
}

/// `FLAGS` bits (valid with `COMMAND_COMPLETE`).
pub mod flags {
    /// The target had more data to send, or wanted more data, than the host transferred.
    pub const OVERRUN: u8 = 0x01;
    /// The target's data ended before the transfer counter: the counter holds the residue.
    pub const SHORT: u8 = 0x02;
    /// The adapter ran REQUEST SENSE after CHECK CONDITION and the sense FIFO holds the data.
    pub const AUTOSENSE: u8 = 0x04;
    /// CHECK CONDITION, but the automatic REQUEST SENSE returned nothing.
    pub const AUTOSENSE_FAILED: u8 = 0x08;
}

/// `CONTROL` bits.
pub mod control {
    /// Gate `INTCAUSE` onto the IRQ line.
    pub const INT_ENABLE: u8 = 0x01;
    /// Run REQUEST SENSE automatically after CHECK CONDITION (set at power-on).
    pub const AUTOSENSE: u8 = 0x02;
}

/// `COMMAND` codes. Select the target and LUN in `SELECT`, send the CDB from the FIFO and run the command up to its
/// data phase (or to its end when it has none).
pub const CMD_START: u8 = 0x01;
/// Start or resume the data phase for the number of bytes in the transfer counter.
pub const CMD_START_DMA: u8 = 0x02;
/// Abort the current command: DREQ drops, the target's task ends with the bytes moved so far, no interrupt.
pub const CMD_ABORT: u8 = 0x03;
/// Reset the SCSI bus: every logical unit is reset, every command dropped; raises `BUS_RESET`.
pub const CMD_BUS_RESET: u8 = 0x04;
/// Clear `INTCAUSE` and drop the IRQ line.
pub const CMD_CLEAR_INT: u8 = 0x05;
/// End a paused data phase although the target has more: the command completes with `OVERRUN`.
pub const CMD_FINISH_DATA: u8 = 0x06;
/// Empty the CDB FIFO.
pub const CMD_CLEAR_CDB: u8 = 0x07;
/// Take the 8 bytes in the CDB FIFO (big-endian) as the initiator identity for the following commands and empty the
/// FIFO; 0 is the card's own identity. Any other FIFO length raises `ERROR`.
pub const CMD_SET_IDENTITY: u8 = 0x08;
/// The identity in the CDB FIFO (8 bytes, big-endian) leaves the bus: every target is told that I_T nexus is gone
/// (SPC-2 reservations it held are released). The FIFO is emptied; any other FIFO length raises `ERROR`.
pub const CMD_DROP_IDENTITY: u8 = 0x09;
/// Select with a queue tag: the FIFO holds a queue tag message ([`tag_message`]), the tag, then the CDB. Without
/// [`select::DISCONNECT`] the command runs as after `START`; with it the target queues the command, frees the bus and
/// reselects later (on `RESELECT`).
pub const CMD_START_TAGGED: u8 = 0x0A;
/// Enable reselection: when the bus is free, the target of the oldest disconnected command (a HEAD OF QUEUE one
/// first) reselects: `RESELECTED` for a data phase, `COMMAND_COMPLETE` for a command without one.
pub const CMD_RESELECT: u8 = 0x0B;
/// ABORT TASK for the tag in the FIFO (1 byte) on the target and LUN in `SELECT`: a disconnected command is dropped
/// from the target's task set; the command that owns the bus is aborted as by `ABORT`. No interrupt.
pub const CMD_ABORT_TAG: u8 = 0x0C;

/// The largest value of the 24-bit transfer counter.
pub const XFER_MAX: u32 = 0x00FF_FFFF;
/// Disconnected tagged commands the card keeps track of (across all targets).
pub const TAG_SLOTS: usize = 32;
/// The adapter's own SCSI ID.
pub const INITIATOR_ID: u8 = 7;
/// Bytes of sense data the automatic REQUEST SENSE asks for.
pub const AUTOSENSE_LENGTH: u8 = 252;
