//! Tagged queuing in the miniport: commands queued at their targets, reselection, `ScsiPortGetSrb`, and the
//! `NextLuRequest` flow control of each logical unit's queue depth (docs/ddk.md §4).

use super::{aborted, RefMiniport};
use crate::regs::{self, int, status, tag_message as msg};
use port::{queue_action, LuAddress, Notification, PortContext, SrbHandle};

/// The queue tag message for an SRB's `QueueAction`: the DDK values are the SCSI message codes.
pub(super) fn tag_message(action: u8) -> u8 {
    match action {
        queue_action::HEAD_OF_QUEUE_TAG => msg::HEAD_OF_QUEUE,
        queue_action::ORDERED_QUEUE_TAG => msg::ORDERED,
        _ => msg::SIMPLE,
    }
}

impl RefMiniport {
    /// With the bus free, let the next disconnected command's target reconnect.
    pub(super) fn reselect(&mut self, ctx: &mut PortContext<'_, Self>) {
        if self.current.is_some() || self.reselecting || self.disconnected.is_empty() {
            return;
        }
        self.command(ctx, regs::CMD_RESELECT);
        // The bus is instantaneous: a reconnected command already owns the bus or has completed. When none did (every
        // target that holds one never answers), no interrupt follows and the bus stays free.
        let st = ctx.read_port_uchar(self.port(regs::STATUS));
        let cause = ctx.read_port_uchar(self.port(regs::INTCAUSE));
        self.reselecting = st & status::BUSY != 0 || cause & (int::RESELECTED | int::COMMAND_COMPLETE) != 0;
    }

    /// The interrupt of a reselection: the reconnected command, named by the target, LUN and tag the card reports,
    /// becomes the current one (`ScsiPortGetSrb` finds its SRB). False if no SRB has that tag any more: the card's
    /// command is aborted.
    pub(super) fn reconnect(&mut self, ctx: &mut PortContext<'_, Self>) -> bool {
        self.reselecting = false;
        let st = ctx.read_port_uchar(self.port(regs::STATUS));
        let tag = ctx.read_port_uchar(self.port(regs::TAG));
        let select = ctx.read_port_uchar(self.port(regs::SELECT));
        let address = LuAddress { path_id: 0, target_id: select & 0x07, lun: (select >> 4) & 0x07 };
        // An I_T_L_Q nexus names its SRB by the queue tag, an I_T_L nexus by the logical unit alone.
        let tag = (st & status::TAGGED != 0).then_some(tag);
        let found = match tag {
            Some(tag) => ctx
                .get_srb(address, tag)
                .and_then(|h| self.disconnected.iter().position(|c| c.srb == h && c.tag == Some(tag))),
            None => self.disconnected.iter().position(|c| c.address == address && c.tag.is_none()),
        };
        match found {
            Some(i) => {
                self.current = Some(self.disconnected.swap_remove(i));
                true
            }
            None => {
                if st & status::BUSY != 0 {
                    self.command(ctx, regs::CMD_ABORT);
                }
                false
            }
        }
    }

    /// ABORT TASK for a disconnected command; its SRB completes `ABORTED` with nothing moved.
    pub(super) fn abort_disconnected(&mut self, ctx: &mut PortContext<'_, Self>, victim: SrbHandle) {
        let Some(i) = self.disconnected.iter().position(|c| c.srb == victim) else { return };
        let cmd = self.disconnected.swap_remove(i);
        ctx.write_port_uchar(self.port(regs::SELECT), super::select_bits(cmd.address));
        self.command(ctx, regs::CMD_CLEAR_CDB);
        // ABORT TASK for a tagged command, ABORT (an empty FIFO) for the untagged one of its I_T_L nexus.
        if let Some(tag) = cmd.tag {
            ctx.write_port_uchar(self.port(regs::CDB_FIFO), tag);
        }
        self.command(ctx, regs::CMD_ABORT_TAG);
        aborted(ctx, cmd);
    }

    /// SRBs of `address` the miniport holds: owning the bus, disconnected, or waiting.
    fn outstanding(&self, address: LuAddress) -> usize {
        self.current.iter().chain(&self.disconnected).filter(|c| c.address == address).count()
            + self.waiting.iter().filter(|w| w.address == address).count()
    }

    /// Whether the queue depth allows another SRB of `address`.
    fn has_room(&self, address: LuAddress) -> bool {
        self.outstanding(address) < usize::from(self.config.queue_depth).min(regs::TAG_SLOTS)
    }

    /// `NextLuRequest` for `address` now if its queue depth allows another SRB, or once a completion makes room.
    pub(super) fn next_lu_request(&mut self, ctx: &mut PortContext<'_, Self>, address: LuAddress) {
        if self.has_room(address) {
            ctx.notification(Notification::NextLuRequest(address));
        } else {
            if !self.owed.contains(&address) {
                self.owed.push(address);
            }
            ctx.notification(Notification::NextRequest);
        }
    }

    /// Send the `NextLuRequest`s held back for logical units that have room again.
    pub(super) fn pay_owed(&mut self, ctx: &mut PortContext<'_, Self>) {
        let mut i = 0;
        while i < self.owed.len() {
            let address = self.owed[i];
            if self.has_room(address) {
                self.owed.swap_remove(i);
                ctx.notification(Notification::NextLuRequest(address));
            } else {
                i += 1;
            }
        }
    }
}
