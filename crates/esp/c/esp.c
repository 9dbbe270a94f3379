/*
 * Miniport for an NCR 53C94/53C96-class SCSI controller (ESP) on an ISA card whose DMA request line is wired to a
 * system DMA channel, written against include/scsiport/miniport.h and the chip's data sheet (docs/esp.md).
 *
 * One command on the bus at a time: select with ATN (IDENTIFY + CDB from the FIFO), then per data-phase sub-range
 * ScsiPortIoMapTransfer → HwDmaStarted (start count, DMA TRANSFER INFORMATION) → bus service interrupt →
 * ScsiPortFlushDma; status and message in by INITIATOR COMMAND COMPLETE SEQUENCE and MESSAGE ACCEPTED. The chip has no
 * autosense: after CHECK CONDITION the miniport sends REQUEST SENSE itself and reads the sense through the FIFO.
 * Abort: SET ATN, ABORT message. A missing target: the select timeout, then SRB_STATUS_SELECTION_TIMEOUT.
 * Each selection carries the requester's I_T nexus (ScsiPortGetRequesterNexus), loaded into the card's identity
 * latch beside the chip, so reservations and unit attentions stay per initiator.
 *
 * Built with -DESP_BUG=n it carries one deliberate mistake (see the BUG_* values), for the verifier's tests.
 */
#include <scsiport/miniport.h>

#define BUG_NONE 0
#define BUG_MAP_BEFORE_FLUSH 1  /* maps the next sub-range without flushing the previous one */
#define BUG_COMPLETE_TWICE 2    /* completes every SRB twice */
#define BUG_WRITE_CDB 3         /* scribbles on the SRB's Cdb, which belongs to the port */
#define BUG_COMPLETE_NO_FLUSH 4 /* completes without flushing the last transfer */
#ifndef ESP_BUG
#define ESP_BUG BUG_NONE
#endif

#define R_TCLO 0x0
#define R_TCMID 0x1
#define R_FIFO 0x2
#define R_CMD 0x3
#define R_STATUS 0x4 /* write: destination bus ID */
#define R_BUSID 0x4
#define R_INTR 0x5 /* write: select timeout */
#define R_TIMEOUT 0x5
#define R_SEQSTEP 0x6
#define R_FIFO_FLAGS 0x7
#define R_CFG1 0x8
#define R_CCF 0x9
#define R_CFG2 0xB
#define R_CFG3 0xC
#define R_IDENT 0x10     /* the card's requester identity latch: 8 bytes, most significant first */
#define R_IDENT_CTL 0x18 /* the card's identity control port */
#define IDENT_DROP 0x01  /* the latched identity leaves the bus */
#define PORT_COUNT 32    /* the chip's 16 ports and the card's identity latch and control */


#define C_DMA 0x80
#define C_FLUSH_FIFO 0x01
#define C_RESET_CHIP 0x02
#define C_RESET_BUS 0x03
#define C_TRANSFER_INFO 0x10
#define C_ICCS 0x11
#define C_MSG_ACCEPTED 0x12
#define C_TRANSFER_PAD 0x18
#define C_SET_ATN 0x1A
#define C_RESET_ATN 0x1B
#define C_SELECT_ATN 0x42
#define C_SELECT_ATN_STOP 0x43

#define S_PHASE 0x07
#define S_TC 0x10
#define P_DATA_OUT 0
#define P_DATA_IN 1
#define P_COMMAND 2
#define P_STATUS 3
#define P_MSG_OUT 6
#define P_MSG_IN 7

#define I_FC 0x08
#define I_BS 0x10
#define I_DIS 0x20
#define I_ILL 0x40
#define I_SR 0x80

#define MSG_ABORT 0x06
#define MSG_IDENTIFY 0x80

#define OWN_ID 7
#define CLOCK_CCF 0      /* 40 MHz input clock: conversion factor 8 (written as 0) */
#define SELECT_TIMEOUT 153 /* 250 ms: 250 ms × 40 MHz / (8192 × 8) */
#define MAX_TRANSFER 0x10000u /* the 16-bit transfer counter */
#define WAITING 64

typedef struct {
    ULONG offset; /* bytes of the buffer done before the current sub-range */
    ULONG chunk;  /* the current sub-range */
    BOOLEAN padded; /* the target wanted more than the buffer */
    BOOLEAN ending; /* ATN raised to end a DATA OUT the buffer cannot fill: ABORT follows in MESSAGE OUT */
    UCHAR status;   /* SCSI status of the command */
} SRB_EXT;

typedef struct {
    PUCHAR base;
    PSCSI_REQUEST_BLOCK active;
    BOOLEAN mapped;
    BOOLEAN dmaStarted;
    BOOLEAN sensing; /* the bus runs the REQUEST SENSE for `active` */
    BOOLEAN selected; /* the target answered the current selection */
    UCHAR senseLen;
    UCHAR senseStatus;
    PSCSI_REQUEST_BLOCK waiting[WAITING];
    ULONG head, count;
} DEV_EXT;

static UCHAR rd(DEV_EXT *d, ULONG r) { return ScsiPortReadPortUchar(d->base + r); }
static void wr(DEV_EXT *d, ULONG r, UCHAR v) { ScsiPortWritePortUchar(d->base + r, v); }

/* Bytes the last DMA sub-range moved: the whole chunk at terminal count, else the chunk less the counter. */
static ULONG moved_by_dma(DEV_EXT *d, SRB_EXT *x, UCHAR status)
{
    ULONG left;
    if (!d->dmaStarted)
        return 0;
    if (status & S_TC)
        return x->chunk;
    left = (ULONG)rd(d, R_TCLO) | ((ULONG)rd(d, R_TCMID) << 8);
    return left <= x->chunk ? x->chunk - left : 0;
}

static void flush(DEV_EXT *d)
{
#if ESP_BUG == BUG_COMPLETE_NO_FLUSH
    if (d->active != NULL && ((SRB_EXT *)d->active->SrbExtension)->offset >= d->active->DataTransferLength)
        d->mapped = FALSE;
#endif
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
    x->chunk = left < MAX_TRANSFER ? left : MAX_TRANSFER;
    d->mapped = TRUE;
    d->dmaStarted = FALSE;
    ScsiPortIoMapTransfer(d, srb, (PUCHAR)srb->DataBuffer + x->offset, x->chunk);
}

/* Load the card's identity latch; the chip's next selection presents it on the bus. */
static void load_identity(DEV_EXT *d, ULONGLONG identity)
{
    ULONG i;
    for (i = 0; i < 8; i++)
        wr(d, R_IDENT + i, (UCHAR)(identity >> (56 - 8 * i)));
}

static void select_cdb(DEV_EXT *d, PSCSI_REQUEST_BLOCK srb, const UCHAR *cdb, ULONG len)
{
    ULONG i;
    UCHAR target = srb->TargetId, lun = srb->Lun;
    d->selected = FALSE;
    load_identity(d, ScsiPortGetRequesterNexus(d, srb));
    wr(d, R_CMD, C_FLUSH_FIFO);
    wr(d, R_BUSID, target);
    wr(d, R_FIFO, (UCHAR)(MSG_IDENTIFY | (lun & 7)));
    if (len > 15) {
        /* IDENTIFY and a 16-byte CDB do not fit the 16-byte FIFO together: stop after the message, then send the
         * CDB in the command phase. */
        wr(d, R_CMD, C_SELECT_ATN_STOP);
        return;
    }
    for (i = 0; i < len; i++)
        wr(d, R_FIFO, cdb[i]);
    wr(d, R_CMD, C_SELECT_ATN);
}

static void start_command(DEV_EXT *d, PSCSI_REQUEST_BLOCK srb)
{
    SRB_EXT *x = (SRB_EXT *)srb->SrbExtension;
    x->offset = 0;
    x->chunk = 0;
    x->padded = FALSE;
    x->ending = FALSE;
    x->status = 0;
    d->active = srb;
    d->sensing = FALSE;
    select_cdb(d, srb, srb->Cdb, srb->CdbLength);
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

static void finish_active(DEV_EXT *d)
{
    PSCSI_REQUEST_BLOCK srb = d->active;
    d->active = NULL;
    d->sensing = FALSE;
#if ESP_BUG == BUG_WRITE_CDB
    srb->Cdb[0] ^= 0xFF;
#endif
    ScsiPortNotification(RequestComplete, d, srb);
#if ESP_BUG == BUG_COMPLETE_TWICE
    ScsiPortNotification(RequestComplete, d, srb);
#endif
    start_next(d);
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

static void drain_sense(DEV_EXT *d, PSCSI_REQUEST_BLOCK srb)
{
    PUCHAR sense = (PUCHAR)srb->SenseInfoBuffer;
    UCHAR n = rd(d, R_FIFO_FLAGS) & 0x1F;
    while (n-- > 0) {
        UCHAR b = rd(d, R_FIFO);
        if (d->senseLen < srb->SenseInfoBufferLength)
            sense[d->senseLen++] = b;
    }
}

/* The command has left the bus (DISCONNECT after MESSAGE ACCEPTED): report it, or fetch its sense first. */
static void command_done(DEV_EXT *d, PSCSI_REQUEST_BLOCK srb)
{
    SRB_EXT *x = (SRB_EXT *)srb->SrbExtension;
    if (d->sensing) {
        srb->SrbStatus = SRB_STATUS_ERROR;
        srb->ScsiStatus = x->status;
        if (d->senseStatus == SCSISTAT_GOOD && d->senseLen > 0) {
            srb->SenseInfoBufferLength = d->senseLen;
            srb->SrbStatus |= SRB_STATUS_AUTOSENSE_VALID;
        }
        finish_active(d);
        return;
    }
    if (x->status == SCSISTAT_CHECK_CONDITION && !(srb->SrbFlags & SRB_FLAGS_DISABLE_AUTOSENSE) &&
        srb->SenseInfoBuffer != NULL && srb->SenseInfoBufferLength > 0) {
        UCHAR cdb[6] = {0x03, 0, 0, 0, 0, 0};
        cdb[4] = srb->SenseInfoBufferLength;
        d->sensing = TRUE;
        d->senseLen = 0;
        d->senseStatus = 0xFF;
        select_cdb(d, srb, cdb, 6);
        return;
    }
    if (x->status != SCSISTAT_GOOD) {
        srb->SrbStatus = SRB_STATUS_ERROR;
        srb->ScsiStatus = x->status;
    } else if (x->padded || x->offset < srb->DataTransferLength) {
        srb->SrbStatus = SRB_STATUS_DATA_OVERRUN;
        srb->DataTransferLength = x->offset;
    } else {
        srb->SrbStatus = SRB_STATUS_SUCCESS;
    }
    finish_active(d);
}

static void bus_reset_seen(DEV_EXT *d)
{
    flush(d);
    ScsiPortCompleteRequest(d, 0, SP_UNTAGGED, SP_UNTAGGED, SRB_STATUS_BUS_RESET);
    d->active = NULL;
    d->sensing = FALSE;
    d->count = 0;
}

static ULONG FindAdapter(PVOID ext, PVOID ctx, PVOID bus, PCHAR args, PPORT_CONFIGURATION_INFORMATION cfg,
                         PBOOLEAN again)
{
    DEV_EXT *d = (DEV_EXT *)ext;
    ACCESS_RANGE *range = &(*cfg->AccessRanges)[0];
    (void)ctx;
    (void)bus;
    (void)args;
    *again = FALSE;
    d->base = (PUCHAR)ScsiPortGetDeviceBase(ext, cfg->AdapterInterfaceType, cfg->SystemIoBusNumber,
                                            range->RangeStart, PORT_COUNT, TRUE);
    if (d->base == NULL)
        return SP_RETURN_NOT_FOUND;
    /* Probe: after a chip reset, configuration 1 and 3 read back what was written (3 exists on the 53C94/96). */
    wr(d, R_CMD, C_RESET_CHIP);
    wr(d, R_CFG1, 0x15);
    wr(d, R_CFG3, 0x05);
    if (rd(d, R_CFG1) != 0x15 || rd(d, R_CFG3) != 0x05)
        return SP_RETURN_NOT_FOUND;
    if (cfg->DmaChannel == SP_UNINITIALIZED_VALUE)
        return SP_RETURN_BAD_CONFIG; /* the card's DMA jumper is not readable: the port must preset it */
    range->RangeLength = PORT_COUNT;
    cfg->Master = FALSE;
    cfg->DmaWidth = cfg->DmaChannel >= 5 ? Width16Bits : Width8Bits;
    cfg->DemandMode = TRUE;
    cfg->MaximumTransferLength = MAX_TRANSFER;
    cfg->NumberOfPhysicalBreaks = 16;
    cfg->AlignmentMask = cfg->DmaChannel >= 5 ? 1 : 0;
    cfg->ScatterGather = FALSE;
    cfg->CachesData = FALSE;
    cfg->AutoRequestSense = TRUE;
    cfg->TaggedQueuing = FALSE;
    cfg->MultipleRequestPerLu = FALSE;
    cfg->NumberOfBuses = 1;
    cfg->InitiatorBusId[0] = OWN_ID;
    cfg->MaximumNumberOfTargets = 8;
    cfg->MaximumNumberOfLogicalUnits = 8;
    return SP_RETURN_FOUND;
}

static BOOLEAN Initialize(PVOID ext)
{
    DEV_EXT *d = (DEV_EXT *)ext;
    wr(d, R_CMD, C_RESET_CHIP);
    wr(d, R_CFG1, OWN_ID);
    wr(d, R_CCF, CLOCK_CCF);
    wr(d, R_TIMEOUT, SELECT_TIMEOUT);
    wr(d, R_CFG2, 0);
    wr(d, R_CFG3, 0);
    (void)rd(d, R_INTR);
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
            ScsiPortNotification(RequestComplete, d, srb);
        }
        break;
    case SRB_FUNCTION_ABORT_COMMAND: {
        PSCSI_REQUEST_BLOCK victim = srb->NextSrb;
        if (victim != NULL && victim == d->active) {
            SRB_EXT *x = (SRB_EXT *)victim->SrbExtension;
            UCHAR st;
            /* ATN: the target goes to message out (the chip interrupts at once), then the ABORT message. */
            wr(d, R_CMD, C_SET_ATN);
            st = rd(d, R_STATUS);
            x->offset += moved_by_dma(d, x, st);
            (void)rd(d, R_SEQSTEP);
            (void)rd(d, R_INTR);
            flush(d);
            wr(d, R_CMD, C_FLUSH_FIFO);
            wr(d, R_FIFO, MSG_ABORT);
            wr(d, R_CMD, C_TRANSFER_INFO);
            (void)rd(d, R_STATUS);
            (void)rd(d, R_SEQSTEP);
            (void)rd(d, R_INTR);
            victim->SrbStatus = SRB_STATUS_ABORTED;
            victim->DataTransferLength = x->offset;
            d->active = NULL;
            d->sensing = FALSE;
            ScsiPortNotification(RequestComplete, d, victim);
        } else if (victim != NULL && remove_waiting(d, victim)) {
            victim->SrbStatus = SRB_STATUS_ABORTED;
            ScsiPortNotification(RequestComplete, d, victim);
        }
        srb->SrbStatus = SRB_STATUS_SUCCESS;
        ScsiPortNotification(RequestComplete, d, srb);
        start_next(d);
        break;
    }
    case SRB_FUNCTION_RESET_BUS:
        wr(d, R_CMD, C_RESET_BUS);
        (void)rd(d, R_STATUS);
        (void)rd(d, R_INTR);
        bus_reset_seen(d);
        break;
    case SRB_FUNCTION_IO_CONTROL: {
        /* DataBuffer is CPU-visible for IO_CONTROL whatever MapBuffers says: an SRB_IO_CONTROL, then its data. */
        PSRB_IO_CONTROL io = (PSRB_IO_CONTROL)srb->DataBuffer;
        PUCHAR id = (PUCHAR)srb->DataBuffer + sizeof(SRB_IO_CONTROL);
        ULONG k;
        BOOLEAN ours = srb->DataBuffer != NULL && srb->DataTransferLength >= sizeof(SRB_IO_CONTROL) + 8;
        for (k = 0; ours && k < 8; k++)
            ours = io->Signature[k] == (UCHAR)SCSIPORT_IOCTL_SIGNATURE[k];
        if (ours && io->ControlCode == SCSIPORT_IOCTL_NEXUS_LOSS && io->Length >= 8) {
            /* The latch is sampled at selection only: a command on the bus keeps the nexus it was selected with. */
            ULONGLONG gone = 0;
            for (k = 0; k < 8; k++)
                gone |= (ULONGLONG)id[k] << (8 * k);
            load_identity(d, gone);
            wr(d, R_IDENT_CTL, IDENT_DROP);
            io->ReturnCode = 0;
            srb->SrbStatus = SRB_STATUS_SUCCESS;
        } else {
            srb->SrbStatus = SRB_STATUS_INVALID_REQUEST;
        }
        ScsiPortNotification(RequestComplete, d, srb);
        break;
    }
    default:
        srb->SrbStatus = SRB_STATUS_INVALID_REQUEST;
        ScsiPortNotification(RequestComplete, d, srb);
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
    wr(d, R_TCLO, (UCHAR)x->chunk);
    wr(d, R_TCMID, (UCHAR)(x->chunk >> 8)); /* 65536 is written as 0 */
    wr(d, R_CMD, C_DMA | C_TRANSFER_INFO);
}

/* Bus service or function complete: the target is in `phase`; go on from there. */
static void phase_service(DEV_EXT *d, PSCSI_REQUEST_BLOCK srb, UCHAR status, UCHAR intr)
{
    SRB_EXT *x = (SRB_EXT *)srb->SrbExtension;
    UCHAR phase = status & S_PHASE;
    if (d->sensing) {
        if (phase == P_MSG_IN && (intr & I_FC)) {
            d->senseStatus = rd(d, R_FIFO);
            (void)rd(d, R_FIFO); /* COMMAND COMPLETE */
            wr(d, R_CMD, C_MSG_ACCEPTED);
            return;
        }
        drain_sense(d, srb);
        if (phase == P_DATA_IN)
            wr(d, R_CMD, C_TRANSFER_INFO);
        else if (phase == P_STATUS)
            wr(d, R_CMD, C_ICCS);
        else
            wr(d, R_CMD, C_MSG_ACCEPTED);
        return;
    }
    if (d->mapped) {
        x->offset += moved_by_dma(d, x, status);
#if ESP_BUG == BUG_MAP_BEFORE_FLUSH
        if (x->offset < srb->DataTransferLength)
            d->mapped = FALSE;
#endif
        flush(d);
    }
    switch (phase) {
    case P_DATA_IN:
    case P_DATA_OUT:
        if (x->offset < srb->DataTransferLength) {
            map_next(d, srb);
        } else if (phase == P_DATA_OUT) {
            /* The target wants more than the buffer holds: padding would write bytes the requester never sent, so
             * end the command instead (ATN, then ABORT: the target keeps what moved and leaves the bus). */
            x->padded = TRUE;
            x->ending = TRUE;
            wr(d, R_CMD, C_SET_ATN);
        } else {
            /* DATA IN beyond the buffer: discard the rest. */
            x->padded = TRUE;
            wr(d, R_CMD, C_TRANSFER_PAD);
        }
        break;
    case P_STATUS:
        wr(d, R_CMD, C_ICCS);
        break;
    case P_MSG_OUT:
        if (x->ending) {
            wr(d, R_CMD, C_FLUSH_FIFO);
            wr(d, R_FIFO, MSG_ABORT);
            wr(d, R_CMD, C_TRANSFER_INFO);
        } else {
            /* after SELECT WITH ATN AND STOP: no more messages */
            wr(d, R_CMD, C_RESET_ATN);
        }
        break;
    case P_COMMAND: {
        ULONG i;
        wr(d, R_CMD, C_FLUSH_FIFO);
        for (i = 0; i < srb->CdbLength && i < 16; i++)
            wr(d, R_FIFO, srb->Cdb[i]);
        wr(d, R_CMD, C_TRANSFER_INFO);
        break;
    }
    case P_MSG_IN:
        if (intr & I_FC) {
            x->status = rd(d, R_FIFO);
            (void)rd(d, R_FIFO); /* COMMAND COMPLETE */
        }
        wr(d, R_CMD, C_MSG_ACCEPTED);
        break;
    default:
        wr(d, R_CMD, C_SET_ATN);
        break;
    }
}

static BOOLEAN Interrupt(PVOID ext)
{
    DEV_EXT *d = (DEV_EXT *)ext;
    UCHAR status = rd(d, R_STATUS);
    UCHAR step = rd(d, R_SEQSTEP);
    UCHAR intr = rd(d, R_INTR); /* clears the interrupt, the status interrupt bits and the sequence step */
    PSCSI_REQUEST_BLOCK srb = d->active;
    (void)step; /* 4 after a complete selection; the phase in STATUS says where the target went */
    if (intr == 0)
        return FALSE;
    if (intr & I_SR) {
        bus_reset_seen(d);
        ScsiPortNotification(ResetDetected, d);
        ScsiPortNotification(NextRequest, d);
        return TRUE;
    }
    if (srb == NULL)
        return TRUE;
    if (intr & I_ILL) {
        flush(d);
        srb->SrbStatus = SRB_STATUS_PHASE_SEQUENCE_FAILURE;
        finish_active(d);
    } else if (intr & I_DIS) {
        flush(d);
        if (!d->selected) {
            /* Nobody answered selection within the select timeout. */
            if (d->sensing) {
                srb->SrbStatus = SRB_STATUS_ERROR;
                srb->ScsiStatus = ((SRB_EXT *)srb->SrbExtension)->status;
            } else {
                srb->SrbStatus = SRB_STATUS_SELECTION_TIMEOUT;
            }
            finish_active(d);
        } else {
            command_done(d, srb);
        }
    } else if (intr & (I_BS | I_FC)) {
        d->selected = TRUE;
        phase_service(d, srb, status, intr);
    }
    return TRUE;
}

static BOOLEAN ResetBus(PVOID ext, ULONG path)
{
    DEV_EXT *d = (DEV_EXT *)ext;
    (void)path;
    wr(d, R_CMD, C_RESET_BUS);
    (void)rd(d, R_STATUS);
    (void)rd(d, R_INTR);
    bus_reset_seen(d);
    ScsiPortNotification(NextRequest, d);
    return TRUE;
}

/* Static, so a shared-library build calls its own routines even in a program that also links this source. */
static ULONG entry(PVOID DriverObject, PVOID Argument2)
{
    HW_INITIALIZATION_DATA init;
    ULONG i;
    for (i = 0; i < sizeof(init); i++)
        ((PUCHAR)&init)[i] = 0;
    init.HwInitializationDataSize = sizeof(init);
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
    init.AutoRequestSense = TRUE;
    return ScsiPortInitialize(DriverObject, Argument2, &init, NULL);
}

ULONG esp_DriverEntry(PVOID DriverObject, PVOID Argument2)
{
    return entry(DriverObject, Argument2);
}

#ifndef ESP_LINKED
/* Built on its own into a shared library (docs/miniport-c.md), the miniport is found by the loader under the usual
 * name; linked into the esp crate (build.rs defines ESP_LINKED) it keeps only its own. */
ULONG DriverEntry(PVOID DriverObject, PVOID Argument2)
{
    return entry(DriverObject, Argument2);
}
#endif
