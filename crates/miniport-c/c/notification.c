/*
 * ScsiPortNotification is variadic; Rust cannot define such a function on stable, so this reads the arguments each
 * notification type takes (docs/miniport-c.md) and hands them to scsiport_notification.
 */
#include <stdarg.h>
#include <scsiport/miniport.h>

void scsiport_notification(int kind, PVOID ext, PSCSI_REQUEST_BLOCK srb, UCHAR path_id, UCHAR target_id, UCHAR lun,
                           PHW_TIMER routine, ULONG micro_seconds);

VOID ScsiPortNotification(SCSI_NOTIFICATION_TYPE NotificationType, PVOID HwDeviceExtension, ...)
{
    va_list ap;
    PSCSI_REQUEST_BLOCK srb = NULL;
    UCHAR path_id = 0, target_id = 0, lun = 0;
    PHW_TIMER routine = NULL;
    ULONG micro_seconds = 0;

    va_start(ap, HwDeviceExtension);
    switch (NotificationType) {
    case RequestComplete:
        srb = va_arg(ap, PSCSI_REQUEST_BLOCK);
        break;
    case NextLuRequest:
        path_id = (UCHAR)va_arg(ap, int);
        target_id = (UCHAR)va_arg(ap, int);
        lun = (UCHAR)va_arg(ap, int);
        break;
    case RequestTimerCall:
        routine = va_arg(ap, PHW_TIMER);
        micro_seconds = va_arg(ap, ULONG);
        break;
    case CallEnableInterrupts:
    case CallDisableInterrupts:
        routine = va_arg(ap, PHW_TIMER);
        break;
    default:
        break;
    }
    va_end(ap);
    scsiport_notification((int)NotificationType, HwDeviceExtension, srb, path_id, target_id, lun, routine,
                          micro_seconds);
}

/* Every routine of the header, referenced once, so that a program that starts C miniports keeps (and, linked with
 * --export-dynamic, exports) all of them for the miniports it loads. */
void *const scsiport_exported_routines[] = {
    (void *)ScsiPortInitialize,
    (void *)ScsiPortGetDeviceBase,
    (void *)ScsiPortFreeDeviceBase,
    (void *)ScsiPortReadPortUchar,
    (void *)ScsiPortReadPortUshort,
    (void *)ScsiPortReadPortUlong,
    (void *)ScsiPortWritePortUchar,
    (void *)ScsiPortWritePortUshort,
    (void *)ScsiPortWritePortUlong,
    (void *)ScsiPortReadPortBufferUchar,
    (void *)ScsiPortReadPortBufferUshort,
    (void *)ScsiPortReadPortBufferUlong,
    (void *)ScsiPortWritePortBufferUchar,
    (void *)ScsiPortWritePortBufferUshort,
    (void *)ScsiPortWritePortBufferUlong,
    (void *)ScsiPortIoMapTransfer,
    (void *)ScsiPortFlushDma,
    (void *)ScsiPortNotification,
    (void *)ScsiPortGetSrb,
    (void *)ScsiPortGetLogicalUnit,
    (void *)ScsiPortCompleteRequest,
    (void *)ScsiPortGetPhysicalAddress,
    (void *)ScsiPortGetUncachedExtension,
    (void *)ScsiPortStallExecution,
    (void *)ScsiPortLogError,
    (void *)ScsiPortMoveMemory,
    (void *)ScsiPortConvertUlongToPhysicalAddress,
    (void *)ScsiPortGetRequesterNexus,
};
