//! The DDI a miniport calls (`ScsiPort*`), checked by the verifier on every call.

use crate::bus::IoWidth;
use crate::config::HwTimer;
use crate::engine::{ActiveState, Core};
use crate::srb::{LuAddress, SrbFlags, SrbFunction, SrbHandle, SrbStatus};
use crate::trace::EventKind;
use crate::verifier::Rule;
use hal::LogicalAddr;

/// `ScsiPortNotification` types.
pub enum Notification<E> {
    RequestComplete(SrbHandle),
    NextRequest,
    NextLuRequest(LuAddress),
    ResetDetected,
    /// Call `routine` after `micro_seconds` (0 cancels a pending timer). One timer per miniport; a new request replaces
    /// the pending one.
    RequestTimerCall(HwTimer<E>, u32),
}

/// The port driver as a miniport sees it during one of its routines.
pub struct PortContext<'a, E> {
    core: &'a mut Core<E>,
}

impl<'a, E> PortContext<'a, E> {
    pub(crate) fn new(core: &'a mut Core<E>) -> Self {
        PortContext { core }
    }

    /// `ScsiPortIoMapTransfer`: ask the port to program the system DMA controller for `[logical_address,
    /// logical_address + length)` of the SRB's buffer. Deferred: `HwDmaStarted` is called once the channel is set up.
    pub fn io_map_transfer(&mut self, srb: SrbHandle, logical_address: LogicalAddr, length: u32) {
        self.core.io_map_transfer(srb, logical_address, length)
    }

    /// `ScsiPortFlushDma`: after a transfer, before completing the SRB or mapping the next sub-range. Also cancels a
    /// transfer whose `HwDmaStarted` has not been called yet.
    pub fn flush_dma(&mut self) {
        self.core.flush_dma()
    }

    /// `ScsiPortNotification`.
    pub fn notification(&mut self, n: Notification<E>) {
        let c = &mut *self.core;
        match n {
            Notification::RequestComplete(h) => c.complete_srb(h, None),
            Notification::NextRequest => c.next_request(),
            Notification::NextLuRequest(addr) => c.next_lu_request(addr),
            Notification::ResetDetected => c.reset_detected(),
            Notification::RequestTimerCall(routine, us) => c.set_timer(routine, us),
        }
    }

    /// `ScsiPortCompleteRequest`: complete every active SRB of a bus / target / LU (`SP_UNTAGGED` = any) with `status`.
    pub fn complete_request(&mut self, path_id: u8, target_id: u8, lun: u8, status: SrbStatus) {
        self.core.complete_matching(path_id, target_id, lun, status)
    }

    /// The SRB behind a handle, if it is still the miniport's.
    #[must_use = "looking an SRB up only to drop the access does nothing (and reports a violation if it is not active)"]
    pub fn srb(&mut self, h: SrbHandle) -> Option<SrbAccess<'_, 'a, E>> {
        match self.core.active(h) {
            Some(a) if a.state() == ActiveState::Started => Some(SrbAccess { ctx: self, h }),
            Some(_) => {
                self.core.violation(
                    Rule::SrbNotActive,
                    Some(h),
                    "the miniport touched an SRB after completing it".into(),
                );
                None
            }
            None => {
                self.core.violation(Rule::SrbNotActive, None, "the miniport touched an SRB that is not active".into());
                None
            }
        }
    }

    /// `ScsiPortGetSrb`: the active SRB for a nexus and queue tag (`SP_UNTAGGED` for an untagged request).
    pub fn get_srb(&self, address: LuAddress, queue_tag: u8) -> Option<SrbHandle> {
        self.core.get_srb(address, queue_tag)
    }

    /// Whether `h` names an SRB the miniport holds (started, not completed), without reporting anything: for glue that
    /// keeps its own state per SRB (the C ABI) and must learn which SRBs the port took back.
    pub fn is_active(&self, h: SrbHandle) -> bool {
        self.core.active(h).is_some_and(|a| a.is_started())
    }

    /// Report a violation the port cannot see by itself (a C miniport writing an SRB field in memory, found when the
    /// glue compares the SRB after the call). Returns whether the verifier refuses the operation (strict mode); the SRB
    /// it concerns then fails with `SRB_STATUS_INTERNAL_ERROR` like any other violation.
    pub fn report_violation(&mut self, rule: Rule, srb: Option<SrbHandle>, detail: String) -> bool {
        let srb = srb.filter(|h| self.core.active(*h).is_some());
        self.core.violation(rule, srb, detail)
    }

    /// Whether the port knows the logical unit (it has queued a request for it).
    pub fn logical_unit_exists(&self, address: LuAddress) -> bool {
        self.core.logical_unit_exists(address)
    }

    // ---- port I/O --------------------------------------------------------------------------------------------------

    fn io_read(&mut self, port: u16, width: IoWidth) -> u32 {
        self.core.port_read(port, width)
    }

    fn io_write(&mut self, port: u16, width: IoWidth, value: u32) {
        self.core.port_write(port, width, value)
    }

    pub fn read_port_uchar(&mut self, port: u16) -> u8 {
        self.io_read(port, IoWidth::Byte) as u8
    }
    pub fn read_port_ushort(&mut self, port: u16) -> u16 {
        self.io_read(port, IoWidth::Word) as u16
    }
    pub fn read_port_ulong(&mut self, port: u16) -> u32 {
        self.io_read(port, IoWidth::Dword)
    }
    pub fn write_port_uchar(&mut self, port: u16, value: u8) {
        self.io_write(port, IoWidth::Byte, value as u32)
    }
    pub fn write_port_ushort(&mut self, port: u16, value: u16) {
        self.io_write(port, IoWidth::Word, value as u32)
    }
    pub fn write_port_ulong(&mut self, port: u16, value: u32) {
        self.io_write(port, IoWidth::Dword, value)
    }
    /// `ScsiPortReadPortBufferUchar`: repeated reads of one port.
    pub fn read_port_buffer_uchar(&mut self, port: u16, buf: &mut [u8]) {
        for b in buf {
            *b = self.read_port_uchar(port);
        }
    }
    pub fn read_port_buffer_ushort(&mut self, port: u16, buf: &mut [u16]) {
        for w in buf {
            *w = self.read_port_ushort(port);
        }
    }
    pub fn write_port_buffer_uchar(&mut self, port: u16, buf: &[u8]) {
        for b in buf {
            self.write_port_uchar(port, *b);
        }
    }
    pub fn write_port_buffer_ushort(&mut self, port: u16, buf: &[u16]) {
        for w in buf {
            self.write_port_ushort(port, *w);
        }
    }

    /// `ScsiPortStallExecution`: busy-wait; the card's own clock runs meanwhile.
    pub fn stall_execution(&mut self, micro_seconds: u32) {
        self.core.stall(micro_seconds)
    }

    /// `ScsiPortLogError`: recorded in the trace.
    pub fn log_error(&mut self, srb: Option<SrbHandle>, error_code: u32, unique_id: u32) {
        let id = srb.and_then(|h| self.core.active(h)).map(|a| a.id());
        self.core.event(
            id,
            None,
            EventKind::Violation {
                rule: "log-error",
                detail: format!("ScsiPortLogError code {error_code:#x} id {unique_id:#x}"),
            },
        );
    }

    /// Whether buffers are mapped for CPU access (`MapBuffers`).
    pub fn map_buffers(&self) -> bool {
        self.core.map_buffers()
    }
}

/// The miniport's view of one active SRB: every field readable, only the fields the DDK allows writable
/// (docs/ddk.md §8).
pub struct SrbAccess<'c, 'a, E> {
    ctx: &'c mut PortContext<'a, E>,
    h: SrbHandle,
}

impl<E> SrbAccess<'_, '_, E> {
    fn srb(&self) -> &crate::srb::Srb {
        self.ctx.core.active(self.h).expect("checked when the access was made").srb()
    }
    fn srb_mut(&mut self) -> &mut crate::srb::Srb {
        self.ctx.core.srb_mut(self.h).expect("checked when the access was made")
    }

    pub fn handle(&self) -> SrbHandle {
        self.h
    }
    pub fn function(&self) -> SrbFunction {
        self.srb().function
    }
    pub fn address(&self) -> LuAddress {
        self.srb().address()
    }
    pub fn cdb(&self) -> Vec<u8> {
        self.srb().cdb().to_vec()
    }
    pub fn cdb_length(&self) -> u8 {
        self.srb().cdb_length
    }
    pub fn srb_flags(&self) -> SrbFlags {
        self.srb().srb_flags
    }
    pub fn queue_tag(&self) -> u8 {
        self.srb().queue_tag
    }
    pub fn queue_action(&self) -> u8 {
        self.srb().queue_action
    }
    pub fn data_buffer(&self) -> LogicalAddr {
        self.srb().data_buffer
    }
    pub fn data_transfer_length(&self) -> u32 {
        self.srb().data_transfer_length
    }
    pub fn time_out_value(&self) -> u32 {
        self.srb().time_out_value
    }
    pub fn srb_status(&self) -> SrbStatus {
        self.srb().srb_status
    }
    /// The requester's I_T nexus of a pass-through SRB (0: the adapter's own identity).
    pub fn requester_nexus(&self) -> u64 {
        self.srb().requester_nexus
    }
    pub fn sense_info_buffer_length(&self) -> u8 {
        self.srb().sense_info_buffer_length
    }
    /// For `ABORT_COMMAND`: the SRB to abort, if the miniport still owns it.
    pub fn next_srb(&self) -> Option<SrbHandle> {
        let id = self.srb().next_srb?;
        self.ctx.core.handle_of(id)
    }

    pub fn set_srb_status(&mut self, status: SrbStatus) {
        let s = status.status();
        if s == SrbStatus::INTERNAL_ERROR || status.queue_frozen() {
            self.ctx.core.violation(
                Rule::SrbFieldNotWritable,
                Some(self.h),
                format!("SrbStatus {status:?} is set only by the port"),
            );
            return;
        }
        self.srb_mut().srb_status = status;
    }
    pub fn set_scsi_status(&mut self, status: u8) {
        self.srb_mut().scsi_status = status;
    }
    /// Only to report an underrun: the new length must not exceed the submitted one.
    pub fn set_data_transfer_length(&mut self, length: u32) {
        let original = self.ctx.core.active(self.h).map_or(0, |a| a.original_length());
        if length > original {
            self.ctx.core.violation(
                Rule::SrbFieldNotWritable,
                Some(self.h),
                format!("DataTransferLength raised from {original} to {length}; only an underrun may lower it"),
            );
            return;
        }
        self.srb_mut().data_transfer_length = length;
    }
    /// Autosense: copy sense bytes into the SRB's sense buffer and set `SenseInfoBufferLength`.
    pub fn set_sense(&mut self, sense: &[u8]) {
        self.ctx.core.set_sense(self.h, sense)
    }
    /// Resolve `SRB_FLAGS_UNSPECIFIED_DIRECTION` to the true direction before mapping.
    pub fn set_direction(&mut self, direction: SrbFlags) {
        let flags = self.srb().srb_flags;
        let dir = direction & SrbFlags::UNSPECIFIED_DIRECTION;
        if flags & SrbFlags::UNSPECIFIED_DIRECTION != SrbFlags::UNSPECIFIED_DIRECTION
            || !(dir == SrbFlags::DATA_IN || dir == SrbFlags::DATA_OUT)
        {
            self.ctx.core.violation(
                Rule::SrbFieldNotWritable,
                Some(self.h),
                "the direction bits may be rewritten only for an UNSPECIFIED_DIRECTION SRB, to DATA_IN or DATA_OUT"
                    .into(),
            );
            return;
        }
        let srb = self.srb_mut();
        srb.srb_flags.remove(SrbFlags::UNSPECIFIED_DIRECTION);
        srb.srb_flags.insert(dir);
    }

    fn data_allowed(&mut self) -> bool {
        if self.ctx.core.map_buffers() || self.srb().function == SrbFunction::IO_CONTROL {
            return true;
        }
        self.ctx.core.violation(
            Rule::DataBufferNotMapped,
            Some(self.h),
            "the miniport dereferenced DataBuffer although MapBuffers is FALSE".into(),
        );
        false
    }

    /// CPU read of the data buffer (MapBuffers only), at `offset` from `DataBuffer`. False when refused or out of
    /// range: `out` then holds nothing the SRB carried.
    #[must_use = "`out` holds data only when this returns true"]
    pub fn read_data(&mut self, offset: usize, out: &mut [u8]) -> bool {
        if !self.data_allowed() {
            return false;
        }
        let srb = self.srb();
        if offset + out.len() > srb.data_transfer_length as usize {
            return false;
        }
        match (&srb.data, srb.data_offset()) {
            (Some(b), Some(o)) => b.read(o + offset, out).is_ok(),
            _ => false,
        }
    }

    /// CPU write of the data buffer (MapBuffers only), at `offset` from `DataBuffer`. False when refused or out of
    /// range.
    #[must_use = "the data reached the buffer only when this returns true"]
    pub fn write_data(&mut self, offset: usize, data: &[u8]) -> bool {
        if !self.data_allowed() {
            return false;
        }
        let srb = self.srb();
        if offset + data.len() > srb.data_transfer_length as usize {
            return false;
        }
        match (&srb.data, srb.data_offset()) {
            (Some(b), Some(o)) => b.write(o + offset, data).is_ok(),
            _ => false,
        }
    }

    /// The miniport completes this SRB (`ScsiPortNotification(RequestComplete, srb)`).
    pub fn complete(self) {
        let h = self.h;
        self.ctx.notification(Notification::RequestComplete(h));
    }
}
