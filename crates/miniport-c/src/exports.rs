//! The `ScsiPort*` routines of `include/scsiport/miniport.h`, exported with their C names. `ScsiPortNotification` is
//! variadic, so `c/notification.c` takes its arguments apart and calls [`scsiport_notification`] here.
//!
//! Each routine acts on the miniport whose `Hw*` routine is running on this thread; called from anywhere else it
//! does nothing (and returns zero / NULL).

use crate::ffi::{self, PhwTimer, ScsiPhysicalAddress, ScsiRequestBlock};
use crate::glue::{with_current, CMiniport};
use hal::LogicalAddr;
use port::{LuAddress, Notification, PortContext, Rule, SrbHandle, SrbStatus};
use std::ffi::c_void;

/// The SRB behind a pointer the miniport passed, or a `srb-not-active` report naming the pointer.
fn srb_of(
    mp: &CMiniport,
    ctx: &mut PortContext<'_, CMiniport>,
    srb: *mut ScsiRequestBlock,
    what: &str,
) -> Option<SrbHandle> {
    let h = mp.handle_of(srb);
    if h.is_none() {
        ctx.report_violation(
            Rule::SrbNotActive,
            None,
            format!("{what} with {srb:p}, which is not a SCSI_REQUEST_BLOCK the port gave this miniport"),
        );
    }
    h
}

fn port_of(p: *mut c_void) -> u16 {
    p as usize as u16
}

#[no_mangle]
pub extern "C" fn ScsiPortGetDeviceBase(
    _ext: *mut c_void,
    _bus_type: i32,
    _bus: u32,
    io_address: ScsiPhysicalAddress,
    number_of_bytes: u32,
    in_io_space: u8,
) -> *mut c_void {
    // ISA I/O space: the "mapped" base is the port number itself, which ScsiPortRead/WritePort* take back.
    let a = io_address.quad_part();
    if in_io_space == 0 || a > u16::MAX as u64 || a + number_of_bytes as u64 > 0x1_0000 {
        return std::ptr::null_mut();
    }
    a as usize as *mut c_void
}

#[no_mangle]
pub extern "C" fn ScsiPortFreeDeviceBase(_ext: *mut c_void, _mapped: *mut c_void) {}

#[no_mangle]
pub extern "C" fn ScsiPortReadPortUchar(port: *mut u8) -> u8 {
    with_current(|_, ctx| ctx.read_port_uchar(port_of(port.cast()))).unwrap_or(0xFF)
}
#[no_mangle]
pub extern "C" fn ScsiPortReadPortUshort(port: *mut u16) -> u16 {
    with_current(|_, ctx| ctx.read_port_ushort(port_of(port.cast()))).unwrap_or(0xFFFF)
}
#[no_mangle]
pub extern "C" fn ScsiPortReadPortUlong(port: *mut u32) -> u32 {
    with_current(|_, ctx| ctx.read_port_ulong(port_of(port.cast()))).unwrap_or(u32::MAX)
}
#[no_mangle]
pub extern "C" fn ScsiPortWritePortUchar(port: *mut u8, value: u8) {
    with_current(|_, ctx| ctx.write_port_uchar(port_of(port.cast()), value));
}
#[no_mangle]
pub extern "C" fn ScsiPortWritePortUshort(port: *mut u16, value: u16) {
    with_current(|_, ctx| ctx.write_port_ushort(port_of(port.cast()), value));
}
#[no_mangle]
pub extern "C" fn ScsiPortWritePortUlong(port: *mut u32, value: u32) {
    with_current(|_, ctx| ctx.write_port_ulong(port_of(port.cast()), value));
}

/// # Safety
/// `buffer` must point to `count` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn ScsiPortReadPortBufferUchar(port: *mut u8, buffer: *mut u8, count: u32) {
    if buffer.is_null() {
        return;
    }
    // SAFETY: the caller passes `count` writable bytes.
    let buf = unsafe { std::slice::from_raw_parts_mut(buffer, count as usize) };
    with_current(|_, ctx| ctx.read_port_buffer_uchar(port_of(port.cast()), buf));
}
/// # Safety
/// `buffer` must point to `count` writable, aligned USHORTs.
#[no_mangle]
pub unsafe extern "C" fn ScsiPortReadPortBufferUshort(port: *mut u16, buffer: *mut u16, count: u32) {
    if buffer.is_null() {
        return;
    }
    // SAFETY: the caller passes `count` writable USHORTs.
    let buf = unsafe { std::slice::from_raw_parts_mut(buffer, count as usize) };
    with_current(|_, ctx| ctx.read_port_buffer_ushort(port_of(port.cast()), buf));
}
/// # Safety
/// `buffer` must point to `count` writable, aligned ULONGs.
#[no_mangle]
pub unsafe extern "C" fn ScsiPortReadPortBufferUlong(port: *mut u32, buffer: *mut u32, count: u32) {
    if buffer.is_null() {
        return;
    }
    // SAFETY: the caller passes `count` writable ULONGs.
    let buf = unsafe { std::slice::from_raw_parts_mut(buffer, count as usize) };
    with_current(|_, ctx| {
        for v in buf {
            *v = ctx.read_port_ulong(port_of(port.cast()));
        }
    });
}
/// # Safety
/// `buffer` must point to `count` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn ScsiPortWritePortBufferUchar(port: *mut u8, buffer: *mut u8, count: u32) {
    if buffer.is_null() {
        return;
    }
    // SAFETY: the caller passes `count` readable bytes.
    let buf = unsafe { std::slice::from_raw_parts(buffer, count as usize) };
    with_current(|_, ctx| ctx.write_port_buffer_uchar(port_of(port.cast()), buf));
}
/// # Safety
/// `buffer` must point to `count` readable, aligned USHORTs.
#[no_mangle]
pub unsafe extern "C" fn ScsiPortWritePortBufferUshort(port: *mut u16, buffer: *mut u16, count: u32) {
    if buffer.is_null() {
        return;
    }
    // SAFETY: the caller passes `count` readable USHORTs.
    let buf = unsafe { std::slice::from_raw_parts(buffer, count as usize) };
    with_current(|_, ctx| ctx.write_port_buffer_ushort(port_of(port.cast()), buf));
}
/// # Safety
/// `buffer` must point to `count` readable, aligned ULONGs.
#[no_mangle]
pub unsafe extern "C" fn ScsiPortWritePortBufferUlong(port: *mut u32, buffer: *mut u32, count: u32) {
    if buffer.is_null() {
        return;
    }
    // SAFETY: the caller passes `count` readable ULONGs.
    let buf = unsafe { std::slice::from_raw_parts(buffer, count as usize) };
    with_current(|_, ctx| {
        for v in buf {
            ctx.write_port_ulong(port_of(port.cast()), *v);
        }
    });
}

#[no_mangle]
pub extern "C" fn ScsiPortIoMapTransfer(
    _ext: *mut c_void,
    srb: *mut ScsiRequestBlock,
    logical_address: *mut c_void,
    length: u32,
) {
    with_current(|mp, ctx| {
        let Some(h) = srb_of(mp, ctx, srb, "ScsiPortIoMapTransfer") else { return };
        // The direction bits of an UNSPECIFIED_DIRECTION SRB must reach the port before it maps.
        mp.sync(ctx, h);
        let Some(address) = mp.model_address(srb, logical_address) else { return };
        ctx.io_map_transfer(h, LogicalAddr(address), length);
    });
}

#[no_mangle]
pub extern "C" fn ScsiPortFlushDma(_ext: *mut c_void) {
    with_current(|_, ctx| ctx.flush_dma());
}

/// The non-variadic half of `ScsiPortNotification` (`c/notification.c` reads the variable arguments).
#[no_mangle]
pub extern "C" fn scsiport_notification(
    kind: i32,
    _ext: *mut c_void,
    srb: *mut ScsiRequestBlock,
    path_id: u8,
    target_id: u8,
    lun: u8,
    routine: Option<PhwTimer>,
    micro_seconds: u32,
) {
    with_current(|mp, ctx| match kind {
        ffi::notification::REQUEST_COMPLETE => {
            let Some(h) = srb_of(mp, ctx, srb, "ScsiPortNotification(RequestComplete)") else { return };
            mp.sync(ctx, h);
            ctx.notification(Notification::RequestComplete(h));
            mp.retire_finished(ctx);
        }
        ffi::notification::NEXT_REQUEST => ctx.notification(Notification::NextRequest),
        ffi::notification::NEXT_LU_REQUEST => {
            ctx.notification(Notification::NextLuRequest(LuAddress { path_id, target_id, lun }))
        }
        ffi::notification::RESET_DETECTED => ctx.notification(Notification::ResetDetected),
        ffi::notification::REQUEST_TIMER_CALL => {
            mp.timer = if micro_seconds == 0 { None } else { routine };
            ctx.notification(Notification::RequestTimerCall(crate::glue::timer, micro_seconds));
        }
        ffi::notification::CALL_ENABLE_INTERRUPTS | ffi::notification::CALL_DISABLE_INTERRUPTS => {
            if let Some(r) = routine {
                mp.queue_callback(r);
            }
        }
        _ => {}
    });
}

#[no_mangle]
pub extern "C" fn ScsiPortGetSrb(
    _ext: *mut c_void,
    path_id: u8,
    target_id: u8,
    lun: u8,
    queue_tag: i32,
) -> *mut ScsiRequestBlock {
    with_current(|mp, ctx| {
        ctx.get_srb(LuAddress { path_id, target_id, lun }, queue_tag as u8)
            .map_or(std::ptr::null_mut(), |h| mp.mirror_ptr(h))
    })
    .unwrap_or(std::ptr::null_mut())
}

#[no_mangle]
pub extern "C" fn ScsiPortGetLogicalUnit(_ext: *mut c_void, path_id: u8, target_id: u8, lun: u8) -> *mut c_void {
    with_current(|mp, ctx| {
        let address = LuAddress { path_id, target_id, lun };
        if ctx.logical_unit_exists(address) {
            mp.lu_extension(address)
        } else {
            std::ptr::null_mut()
        }
    })
    .unwrap_or(std::ptr::null_mut())
}

#[no_mangle]
pub extern "C" fn ScsiPortCompleteRequest(_ext: *mut c_void, path_id: u8, target_id: u8, lun: u8, srb_status: u8) {
    with_current(|mp, ctx| {
        mp.sync_all(ctx);
        ctx.complete_request(path_id, target_id, lun, SrbStatus(srb_status));
        mp.retire_finished(ctx);
    });
}

/// # Safety
/// `length`, when not NULL, must point to a writable ULONG.
#[no_mangle]
pub unsafe extern "C" fn ScsiPortGetPhysicalAddress(
    _ext: *mut c_void,
    _srb: *mut ScsiRequestBlock,
    _virtual_address: *mut c_void,
    length: *mut u32,
) -> ScsiPhysicalAddress {
    // A system-DMA adapter never addresses memory itself: the port programs the DMA controller for it
    // (ScsiPortIoMapTransfer). Nothing here has a bus address a device could use.
    if !length.is_null() {
        // SAFETY: the caller passes a writable ULONG.
        unsafe { *length = 0 };
    }
    ScsiPhysicalAddress::default()
}

#[no_mangle]
pub extern "C" fn ScsiPortGetUncachedExtension(
    _ext: *mut c_void,
    _config: *mut ffi::PortConfigurationInformation,
    number_of_bytes: u32,
) -> *mut c_void {
    with_current(|mp, _| mp.uncached_extension(number_of_bytes as usize)).unwrap_or(std::ptr::null_mut())
}

#[no_mangle]
pub extern "C" fn ScsiPortStallExecution(delay: u32) {
    if with_current(|_, ctx| ctx.stall_execution(delay)).is_none() {
        std::thread::sleep(std::time::Duration::from_micros(delay as u64));
    }
}

#[no_mangle]
pub extern "C" fn ScsiPortLogError(
    _ext: *mut c_void,
    srb: *mut ScsiRequestBlock,
    _path_id: u8,
    _target_id: u8,
    _lun: u8,
    error_code: u32,
    unique_id: u32,
) {
    with_current(|mp, ctx| {
        let h = if srb.is_null() { None } else { srb_of(mp, ctx, srb, "ScsiPortLogError") };
        ctx.log_error(h, error_code, unique_id);
    });
}

/// # Safety
/// `write_buffer` and `read_buffer` must each point to `length` bytes (they may overlap).
#[no_mangle]
pub unsafe extern "C" fn ScsiPortMoveMemory(write_buffer: *mut c_void, read_buffer: *mut c_void, length: u32) {
    if write_buffer.is_null() || read_buffer.is_null() {
        return;
    }
    // SAFETY: the caller passes two ranges of `length` bytes; `copy` allows overlap.
    unsafe { std::ptr::copy(read_buffer.cast::<u8>(), write_buffer.cast::<u8>(), length as usize) };
}

#[no_mangle]
pub extern "C" fn ScsiPortConvertUlongToPhysicalAddress(address: usize) -> ScsiPhysicalAddress {
    ScsiPhysicalAddress::from_u64(address as u64)
}

/// scsiport's extension: the requester's I_T nexus of a pass-through SRB (0: the adapter's own).
#[no_mangle]
pub extern "C" fn ScsiPortGetRequesterNexus(_ext: *mut c_void, srb: *mut ScsiRequestBlock) -> u64 {
    with_current(|mp, ctx| {
        let h = srb_of(mp, ctx, srb, "ScsiPortGetRequesterNexus")?;
        ctx.srb(h).map(|a| a.requester_nexus())
    })
    .flatten()
    .unwrap_or(0)
}
