//! `HwInterrupt`: the card's interrupt causes, bytes moved from its transfer counter, flush, then the next sub-range or
//! the SRB's completion.

use super::RefMiniport;
use crate::regs::{self, flags, int};
use port::{scsi_status, Notification, PortContext, SrbFlags, SrbStatus, SENSE_BUFFER_SIZE};

pub(super) fn hw_interrupt(ext: &mut RefMiniport, ctx: &mut PortContext<'_, RefMiniport>) -> bool {
    let cause = ctx.read_port_uchar(ext.port(regs::INTCAUSE));
    if cause == 0 {
        return false;
    }
    ext.command(ctx, regs::CMD_CLEAR_INT);
    if cause & int::BUS_RESET != 0 {
        // A reset the card saw on the bus: every outstanding SRB ends; the port applies the reset hold (docs/ddk.md §4).
        ext.drop_all(ctx, 0);
        ctx.notification(Notification::ResetDetected);
        ctx.notification(Notification::NextRequest);
        return true;
    }
    if cause & int::DISCONNECTED != 0 {
        // The command on the bus disconnected after its data-out phase: flush its map (the data moved), keep it until
        // its target reselects for status.
        ext.close_segment(ctx);
        if let Some(cur) = ext.current.take() {
            ext.disconnected.push(cur);
        }
        ext.start_waiting(ctx);
        ext.pay_owed(ctx);
        return true;
    }
    if (ext.reselecting || ext.current.is_none()) && cause & (int::RESELECTED | int::COMMAND_COMPLETE) != 0 {
        // A disconnected command's target reconnected: to its data phase, or straight to its status.
        if ext.reconnect(ctx) && cause & int::RESELECTED != 0 {
            ext.connected(ctx);
        }
    }
    if ext.current.is_none() {
        ext.start_waiting(ctx);
        ext.pay_owed(ctx);
        return true;
    }
    if cause & int::SELECTION_TIMEOUT != 0 {
        ext.finish_current(ctx, SrbStatus::SELECTION_TIMEOUT);
    } else if cause & int::DATA_PAUSED != 0 {
        data_paused(ext, ctx);
    } else if cause & int::COMMAND_COMPLETE != 0 {
        command_complete(ext, ctx);
    } else if cause & int::ERROR != 0 {
        ext.command(ctx, regs::CMD_ABORT);
        ext.finish_current(ctx, SrbStatus::PHASE_SEQUENCE_FAILURE);
    }
    ext.pay_owed(ctx);
    true
}

/// The card's counter ran out and the target has more: flush, then map the next sub-range, or, when the SRB's buffer
/// is used up, end the data phase (an overrun).
fn data_paused(ext: &mut RefMiniport, ctx: &mut PortContext<'_, RefMiniport>) {
    ext.close_segment(ctx);
    let Some(cur) = ext.current else { return };
    if cur.moved < cur.total {
        ext.map_next(ctx);
    } else {
        ext.command(ctx, regs::CMD_FINISH_DATA);
    }
}

/// The command ended: flush what is mapped, then turn the card's status, flags and counter into the SRB's result.
fn command_complete(ext: &mut RefMiniport, ctx: &mut PortContext<'_, RefMiniport>) {
    ext.close_segment(ctx);
    let Some(cur) = ext.current else { return };
    let scsi = ctx.read_port_uchar(ext.port(regs::SCSI_STATUS));
    let fl = ctx.read_port_uchar(ext.port(regs::FLAGS));
    let mut sense = [0u8; SENSE_BUFFER_SIZE];
    let mut sense_len = 0;
    if scsi == scsi_status::CHECK_CONDITION && fl & flags::AUTOSENSE != 0 {
        sense_len = usize::from(ctx.read_port_uchar(ext.port(regs::SENSE_LEN))).min(SENSE_BUFFER_SIZE);
        ctx.read_port_buffer_uchar(ext.port(regs::SENSE_FIFO), &mut sense[..sense_len]);
    }
    let short = cur.moved < cur.total;
    let Some(mut srb) = ctx.srb(cur.srb) else {
        ext.current = None;
        return;
    };
    let mut status = if cur.phase_error {
        SrbStatus::PHASE_SEQUENCE_FAILURE
    } else if scsi != scsi_status::GOOD {
        // ScsiStatus other than GOOD means SRB_STATUS_ERROR (docs/ddk.md §8).
        srb.set_scsi_status(scsi);
        SrbStatus::ERROR
    } else if short || fl & flags::OVERRUN != 0 {
        // Under- and overruns both report DATA_OVERRUN (docs/ddk.md §8).
        SrbStatus::DATA_OVERRUN
    } else {
        SrbStatus::SUCCESS
    };
    if short {
        srb.set_data_transfer_length(cur.moved);
    }
    if sense_len > 0 && !srb.srb_flags().contains(SrbFlags::DISABLE_AUTOSENSE) && srb.sense_info_buffer_length() > 0 {
        srb.set_sense(&sense[..sense_len]);
        status = SrbStatus(status.0 | SrbStatus::AUTOSENSE_VALID);
    }
    srb.set_srb_status(status);
    srb.complete();
    ext.current = None;
    ext.start_waiting(ctx);
}
