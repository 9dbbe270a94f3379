/*
 * A miniport for the reference ISA SCSI host adapter, written from its datasheet (docs/hba.md) and
 * include/scsiport/miniport.h alone. One command on the bus at a time (no tagged queuing); SRBs that arrive while the
 * bus is taken wait in the device extension. Data moves by system DMA: one ScsiPortIoMapTransfer per sub-range of
 * MaximumTransferLength, ScsiPortFlushDma after each.
 *
 *     cc -shared -fPIC -I include crates/miniport-c/c/refcard.c -o librefcard.so
 *
 * Built with -DREFCARD_BUG=n it carries one deliberate mistake (see the BUG_* values), for the verifier's tests.
 */
#include <scsiport/miniport.h>

/* Registers, offsets from the I/O base (docs/hba.md, "I/O ports"). */
#define REG_SIG0 0x0
#define REG_SIG1 0x1
#define REG_CONFIG 0x2
#define REG_STATUS 0x3
#define REG_INTCAUSE 0x4
#define REG_COMMAND 0x5
#define REG_SELECT 0x6
#define REG_CDB 0x7
#define REG_XFER0 0x8
#define REG_XFER1 0x9
#define REG_XFER2 0xA
#define REG_SCSISTAT 0xB
#define REG_SENSE 0xC
#define REG_SENSELEN 0xD
#define REG_FLAGS 0xE
#define REG_CONTROL 0xF
#define PORT_COUNT 16

#define STATUS_DATA_WAIT 0x02

#define INT_COMMAND_COMPLETE 0x01
#define INT_DATA_PAUSED 0x02
#define INT_BUS_RESET 0x04
#define INT_SELECTION_TIMEOUT 0x08
#define INT_ERROR 0x10

#define FLAGS_OVERRUN 0x01
#define FLAGS_SHORT 0x02
#define FLAGS_AUTOSENSE 0x04

#define CONTROL_INT_ENABLE 0x01
#define CONTROL_AUTOSENSE 0x02

#define CMD_START 0x01
#define CMD_START_DMA 0x02
#define CMD_ABORT 0x03
#define CMD_BUS_RESET 0x04
#define CMD_CLEAR_INT 0x05
#define CMD_FINISH_DATA 0x06
#define CMD_CLEAR_CDB 0x07
#define CMD_SET_IDENTITY 0x08
#define CMD_DROP_IDENTITY 0x09


#define MAX_TRANSFER (64u * 1024u)
#define WAITING 64

/* Deliberate mistakes, one per build. */
#define BUG_NONE 0
#define BUG_MAP_BEFORE_FLUSH 1   /* maps the next sub-range without flushing the previous one */
#define BUG_COMPLETE_TWICE 2     /* completes every SRB twice */
#define BUG_WRITE_CDB 3          /* scribbles on the SRB's Cdb, which belongs to the port */
#define BUG_COMPLETE_NO_FLUSH 4  /* completes without flushing the last transfer */
#ifndef REFCARD_BUG
#define REFCARD_BUG BUG_NONE
#endif

typedef struct {
    ULONG offset; /* bytes of the SRB's buffer done before the current sub-range */
    ULONG chunk;  /* length of the current sub-range */
} SRB_EXT;

typedef struct {
    PUCHAR base;
    ULONG maxTransfer;
    PSCSI_REQUEST_BLOCK active;
    BOOLEAN mapped;     /* a sub-range is mapped and not yet flushed */
    BOOLEAN dmaStarted; /* HwDmaStarted ran for it */
    PSCSI_REQUEST_BLOCK waiting[WAITING];
    ULONG head, count;
} DEV_EXT;

static UCHAR rd(DEV_EXT *d, ULONG reg) { return ScsiPortReadPortUchar(d->base + reg); }
static void wr(DEV_EXT *d, ULONG reg, UCHAR v) { ScsiPortWritePortUchar(d->base + reg, v); }

static ULONG counter(DEV_EXT *d)
{
    return (ULONG)rd(d, REG_XFER0) | ((ULONG)rd(d, REG_XFER1) << 8) | ((ULONG)rd(d, REG_XFER2) << 16);
}

static void flush(DEV_EXT *d)
{
    if (d->mapped) {
        ScsiPortFlushDma(d);
        d->mapped = FALSE;
        d->dmaStarted = FALSE;
    }
}

static void map_next(DEV_EXT *d, PSCSI_REQUEST_BLOCK srb)
{
    SRB_EXT *x = (SRB_EXT *)srb->SrbExtension;
    ULONG left = srb->DataTransferLength - x->offset;
    x->chunk = left < d->maxTransfer ? left : d->maxTransfer;
    d->mapped = TRUE;
    d->dmaStarted = FALSE;
    ScsiPortIoMapTransfer(d, srb, (PUCHAR)srb->DataBuffer + x->offset, x->chunk);
}

static void start_next(DEV_EXT *d);

static void complete(DEV_EXT *d, PSCSI_REQUEST_BLOCK srb)
{
#if REFCARD_BUG == BUG_WRITE_CDB
    srb->Cdb[0] ^= 0xFF;
#endif
    ScsiPortNotification(RequestComplete, d, srb);
#if REFCARD_BUG == BUG_COMPLETE_TWICE
    ScsiPortNotification(RequestComplete, d, srb);
#endif
}

static void finish_active(DEV_EXT *d)
{
    PSCSI_REQUEST_BLOCK srb = d->active;
    d->active = NULL;
    complete(d, srb);
    start_next(d);
}

/* Select, send the CDB, START; map the first sub-range when the target went to its data phase. */
static void start_command(DEV_EXT *d, PSCSI_REQUEST_BLOCK srb)
{
    SRB_EXT *x = (SRB_EXT *)srb->SrbExtension;
    ULONG i;
    ULONGLONG identity = ScsiPortGetRequesterNexus(d, srb);
    x->offset = 0;
    x->chunk = 0;
    d->active = srb;
    wr(d, REG_SELECT, (UCHAR)((srb->TargetId & 7) | ((srb->Lun & 7) << 4)));
    /* The requester's identity first: the card presents it on the bus for this command. */
    wr(d, REG_COMMAND, CMD_CLEAR_CDB);
    for (i = 0; i < 8; i++)
        wr(d, REG_CDB, (UCHAR)(identity >> (56 - 8 * i)));
    wr(d, REG_COMMAND, CMD_SET_IDENTITY);
    wr(d, REG_COMMAND, CMD_CLEAR_CDB);
    for (i = 0; i < srb->CdbLength && i < 16; i++)
        wr(d, REG_CDB, srb->Cdb[i]);
    wr(d, REG_COMMAND, CMD_START);
    /* The bus is instantaneous: STATUS says at once whether a data phase waits. Anything else interrupts. */
    if ((rd(d, REG_STATUS) & STATUS_DATA_WAIT) && srb->DataTransferLength > 0)
        map_next(d, srb);
}

static void start_next(DEV_EXT *d)
{
    while (d->active == NULL && d->count > 0) {
        PSCSI_REQUEST_BLOCK srb = d->waiting[d->head];
        d->head = (d->head + 1) % WAITING;
        d->count--;
        start_command(d, srb);
    }
}

static BOOLEAN remove_waiting(DEV_EXT *d, PSCSI_REQUEST_BLOCK srb)
{
    ULONG i, j;
    for (i = 0; i < d->count; i++) {
        if (d->waiting[(d->head + i) % WAITING] == srb) {
            for (j = i; j + 1 < d->count; j++)
                d->waiting[(d->head + j) % WAITING] = d->waiting[(d->head + j + 1) % WAITING];
            d->count--;
            return TRUE;
        }
    }
    return FALSE;
}

static void reset_bus(DEV_EXT *d)
{
    wr(d, REG_COMMAND, CMD_BUS_RESET);
    wr(d, REG_COMMAND, CMD_CLEAR_INT);
    flush(d);
    ScsiPortCompleteRequest(d, 0, SP_UNTAGGED, SP_UNTAGGED, SRB_STATUS_BUS_RESET);
    d->active = NULL;
    d->count = 0;
}

static ULONG FindAdapter(PVOID ext, PVOID ctx, PVOID bus, PCHAR args, PPORT_CONFIGURATION_INFORMATION cfg,
                         PBOOLEAN again)
{
    DEV_EXT *d = (DEV_EXT *)ext;
    ACCESS_RANGE *range = &(*cfg->AccessRanges)[0];
    UCHAR config, channel;
    (void)ctx;
    (void)bus;
    (void)args;
    *again = FALSE;
    d->base = (PUCHAR)ScsiPortGetDeviceBase(ext, cfg->AdapterInterfaceType, cfg->SystemIoBusNumber,
                                            range->RangeStart, PORT_COUNT, TRUE);
    if (d->base == NULL || rd(d, REG_SIG0) != 'R' || rd(d, REG_SIG1) != 'H')
        return SP_RETURN_NOT_FOUND;
    config = rd(d, REG_CONFIG);
    channel = config & 7;
    range->RangeLength = PORT_COUNT;
    cfg->BusInterruptLevel = config >> 4;
    cfg->Master = FALSE;
    cfg->DmaChannel = channel;
    cfg->DmaWidth = channel >= 5 ? Width16Bits : Width8Bits;
    cfg->DemandMode = TRUE;
    d->maxTransfer = MAX_TRANSFER;
    cfg->MaximumTransferLength = d->maxTransfer;
    cfg->NumberOfPhysicalBreaks = 16;
    cfg->AlignmentMask = channel >= 5 ? 1 : 0;
    cfg->ScatterGather = FALSE;
    cfg->CachesData = FALSE;
    cfg->AutoRequestSense = TRUE;
    cfg->TaggedQueuing = FALSE;
    cfg->MultipleRequestPerLu = FALSE;
    cfg->NumberOfBuses = 1;
    cfg->InitiatorBusId[0] = 7;
    cfg->MaximumNumberOfTargets = 8;
    cfg->MaximumNumberOfLogicalUnits = 8;
    return SP_RETURN_FOUND;
}

static BOOLEAN Initialize(PVOID ext)
{
    DEV_EXT *d = (DEV_EXT *)ext;
    wr(d, REG_CONTROL, CONTROL_INT_ENABLE | CONTROL_AUTOSENSE);
    wr(d, REG_COMMAND, CMD_CLEAR_INT);
    return TRUE;
}

static BOOLEAN StartIo(PVOID ext, PSCSI_REQUEST_BLOCK srb)
{
    DEV_EXT *d = (DEV_EXT *)ext;
    switch (srb->Function) {
    case SRB_FUNCTION_EXECUTE_SCSI:
        if (d->active == NULL) {
            start_command(d, srb);
        } else if (d->count < WAITING) {
            d->waiting[(d->head + d->count) % WAITING] = srb;
            d->count++;
        } else {
            srb->SrbStatus = SRB_STATUS_BUSY;
            complete(d, srb);
        }
        break;
    case SRB_FUNCTION_ABORT_COMMAND: {
        PSCSI_REQUEST_BLOCK victim = srb->NextSrb;
        if (victim != NULL && victim == d->active) {
            SRB_EXT *x = (SRB_EXT *)victim->SrbExtension;
            ULONG moved = x->offset;
            wr(d, REG_COMMAND, CMD_ABORT);
            if (d->dmaStarted)
                moved += x->chunk - counter(d);
            flush(d);
            victim->SrbStatus = SRB_STATUS_ABORTED;
            victim->DataTransferLength = moved;
            d->active = NULL;
            complete(d, victim);
        } else if (victim != NULL && remove_waiting(d, victim)) {
            victim->SrbStatus = SRB_STATUS_ABORTED;
            complete(d, victim);
        }
        srb->SrbStatus = SRB_STATUS_SUCCESS;
        complete(d, srb);
        start_next(d);
        break;
    }
    case SRB_FUNCTION_RESET_BUS:
        reset_bus(d);
        break;
    case SRB_FUNCTION_IO_CONTROL: {
        /* DataBuffer is CPU-visible for IO_CONTROL whatever MapBuffers says: an SRB_IO_CONTROL, then its data. */
        PSRB_IO_CONTROL io = (PSRB_IO_CONTROL)srb->DataBuffer;
        PUCHAR id = (PUCHAR)srb->DataBuffer + sizeof(SRB_IO_CONTROL);
        ULONG k;
        BOOLEAN ours = srb->DataTransferLength >= sizeof(SRB_IO_CONTROL) + 8;
        for (k = 0; ours && k < 8; k++)
            ours = io->Signature[k] == (UCHAR)SCSIPORT_IOCTL_SIGNATURE[k];
        if (ours && io->ControlCode == SCSIPORT_IOCTL_NEXUS_LOSS && io->Length >= 8) {
            /* The CDB FIFO is free outside start_command. The identity comes little-endian, goes big-endian. */
            wr(d, REG_COMMAND, CMD_CLEAR_CDB);
            for (k = 0; k < 8; k++)
                wr(d, REG_CDB, id[7 - k]);
            wr(d, REG_COMMAND, CMD_DROP_IDENTITY);
            io->ReturnCode = 0;
            srb->SrbStatus = SRB_STATUS_SUCCESS;
        } else {
            srb->SrbStatus = SRB_STATUS_INVALID_REQUEST;
        }
        complete(d, srb);
        break;
    }
    default:
        srb->SrbStatus = SRB_STATUS_INVALID_REQUEST;
        complete(d, srb);
        break;
    }
    ScsiPortNotification(NextRequest, d);
    return TRUE;
}

static VOID DmaStarted(PVOID ext)
{
    DEV_EXT *d = (DEV_EXT *)ext;
    SRB_EXT *x = (SRB_EXT *)d->active->SrbExtension;
    d->dmaStarted = TRUE;
    wr(d, REG_XFER0, (UCHAR)x->chunk);
    wr(d, REG_XFER1, (UCHAR)(x->chunk >> 8));
    wr(d, REG_XFER2, (UCHAR)(x->chunk >> 16));
    wr(d, REG_COMMAND, CMD_START_DMA);
}

static void command_complete(DEV_EXT *d, PSCSI_REQUEST_BLOCK srb)
{
    SRB_EXT *x = (SRB_EXT *)srb->SrbExtension;
    ULONG moved = x->offset;
    UCHAR flags = rd(d, REG_FLAGS), status = rd(d, REG_SCSISTAT);
    if (d->dmaStarted)
        moved += x->chunk - counter(d);
#if REFCARD_BUG == BUG_COMPLETE_NO_FLUSH
    d->mapped = FALSE;
#endif
    flush(d);
    if (status != SCSISTAT_GOOD) {
        srb->SrbStatus = SRB_STATUS_ERROR;
        srb->ScsiStatus = status;
        if (flags & FLAGS_AUTOSENSE) {
            PUCHAR sense = (PUCHAR)srb->SenseInfoBuffer;
            ULONG n = 0, avail = rd(d, REG_SENSELEN);
            while (n < avail && n < srb->SenseInfoBufferLength)
                sense[n++] = rd(d, REG_SENSE);
            srb->SenseInfoBufferLength = (UCHAR)n;
            srb->SrbStatus |= SRB_STATUS_AUTOSENSE_VALID;
        }
    } else if ((flags & (FLAGS_SHORT | FLAGS_OVERRUN)) || moved < srb->DataTransferLength) {
        srb->SrbStatus = SRB_STATUS_DATA_OVERRUN;
        srb->DataTransferLength = moved;
    } else {
        srb->SrbStatus = SRB_STATUS_SUCCESS;
    }
    finish_active(d);
}

static BOOLEAN Interrupt(PVOID ext)
{
    DEV_EXT *d = (DEV_EXT *)ext;
    UCHAR cause = rd(d, REG_INTCAUSE);
    PSCSI_REQUEST_BLOCK srb = d->active;
    if (cause == 0)
        return FALSE;
    wr(d, REG_COMMAND, CMD_CLEAR_INT);
    if (cause & INT_BUS_RESET) {
        flush(d);
        ScsiPortCompleteRequest(d, 0, SP_UNTAGGED, SP_UNTAGGED, SRB_STATUS_BUS_RESET);
        d->active = NULL;
        d->count = 0;
        ScsiPortNotification(ResetDetected, d);
        ScsiPortNotification(NextRequest, d);
        return TRUE;
    }
    if (srb == NULL)
        return TRUE;
    if (cause & INT_SELECTION_TIMEOUT) {
        flush(d);
        srb->SrbStatus = SRB_STATUS_SELECTION_TIMEOUT;
        finish_active(d);
    } else if (cause & INT_DATA_PAUSED) {
        SRB_EXT *x = (SRB_EXT *)srb->SrbExtension;
        ULONG moved = d->dmaStarted ? x->chunk - counter(d) : 0;
#if REFCARD_BUG != BUG_MAP_BEFORE_FLUSH
        flush(d);
#endif
        x->offset += moved;
        if (x->offset < srb->DataTransferLength)
            map_next(d, srb);
        else
            wr(d, REG_COMMAND, CMD_FINISH_DATA);
    } else if (cause & INT_COMMAND_COMPLETE) {
        command_complete(d, srb);
    } else if (cause & INT_ERROR) {
        flush(d);
        srb->SrbStatus = SRB_STATUS_PHASE_SEQUENCE_FAILURE;
        finish_active(d);
    }
    return TRUE;
}

static BOOLEAN ResetBus(PVOID ext, ULONG path)
{
    DEV_EXT *d = (DEV_EXT *)ext;
    (void)path;
    reset_bus(d);
    ScsiPortNotification(NextRequest, d);
    return TRUE;
}

ULONG DriverEntry(PVOID DriverObject, PVOID Argument2)
{
    HW_INITIALIZATION_DATA init;
    ULONG i;
    for (i = 0; i < sizeof(init); i++)
        ((PUCHAR)&init)[i] = 0;
#ifdef REFCARD_WRONG_SIZE
    init.HwInitializationDataSize = sizeof(init) - 8;
#else
    init.HwInitializationDataSize = sizeof(init);
#endif
    init.AdapterInterfaceType = Isa;
    init.HwInitialize = Initialize;
    init.HwStartIo = StartIo;
    init.HwInterrupt = Interrupt;
    init.HwFindAdapter = FindAdapter;
    init.HwResetBus = ResetBus;
    init.HwDmaStarted = DmaStarted;
    init.DeviceExtensionSize = sizeof(DEV_EXT);
    init.SrbExtensionSize = sizeof(SRB_EXT);
    init.NumberOfAccessRanges = 1;
    init.MapBuffers = FALSE;
    init.AutoRequestSense = TRUE;
    return ScsiPortInitialize(DriverObject, Argument2, &init, NULL);
}
