//! The structures and routine types of `include/scsiport/miniport.h`, laid out as the header lays them out on x86-64
//! (`ULONG` is 32 bits, pointers 64). `tests/layout.rs` compiles a C program against the header and compares every
//! size and offset with [`layout`].

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void};
use std::mem::{offset_of, size_of};

pub type ULONG = u32;
pub type BOOLEAN = u8;

/// `LARGE_INTEGER` / `PHYSICAL_ADDRESS` / `SCSI_PHYSICAL_ADDRESS`: the low and high halves of a 64-bit value (the
/// header's union also names the whole as `QuadPart`).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScsiPhysicalAddress {
    pub low_part: u32,
    pub high_part: i32,
}

impl ScsiPhysicalAddress {
    pub fn from_u64(v: u64) -> Self {
        ScsiPhysicalAddress { low_part: v as u32, high_part: (v >> 32) as i32 }
    }
    pub fn quad_part(self) -> u64 {
        (self.low_part as u64) | ((self.high_part as u32 as u64) << 32)
    }
}

/// `ACCESS_RANGE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AccessRange {
    pub range_start: ScsiPhysicalAddress,
    pub range_length: ULONG,
    pub range_in_memory: BOOLEAN,
}

/// `SCSI_REQUEST_BLOCK` (64-bit layout: a `Reserved` ULONG before `Cdb`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ScsiRequestBlock {
    pub length: u16,
    pub function: u8,
    pub srb_status: u8,
    pub scsi_status: u8,
    pub path_id: u8,
    pub target_id: u8,
    pub lun: u8,
    pub queue_tag: u8,
    pub queue_action: u8,
    pub cdb_length: u8,
    pub sense_info_buffer_length: u8,
    pub srb_flags: ULONG,
    pub data_transfer_length: ULONG,
    pub time_out_value: ULONG,
    pub data_buffer: *mut c_void,
    pub sense_info_buffer: *mut c_void,
    pub next_srb: *mut ScsiRequestBlock,
    pub original_request: *mut c_void,
    pub srb_extension: *mut c_void,
    /// Also `QueueSortKey` (a union in the header).
    pub internal_status: ULONG,
    pub reserved: ULONG,
    pub cdb: [u8; 16],
}

/// `PORT_CONFIGURATION_INFORMATION`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PortConfigurationInformation {
    pub length: ULONG,
    pub system_io_bus_number: ULONG,
    pub adapter_interface_type: i32,
    pub bus_interrupt_level: ULONG,
    pub bus_interrupt_vector: ULONG,
    pub interrupt_mode: i32,
    pub maximum_transfer_length: ULONG,
    pub number_of_physical_breaks: ULONG,
    pub dma_channel: ULONG,
    pub dma_port: ULONG,
    pub dma_width: i32,
    pub dma_speed: i32,
    pub alignment_mask: ULONG,
    pub number_of_access_ranges: ULONG,
    pub access_ranges: *mut AccessRange,
    pub reserved: *mut c_void,
    pub number_of_buses: u8,
    pub initiator_bus_id: [u8; 8],
    pub scatter_gather: BOOLEAN,
    pub master: BOOLEAN,
    pub caches_data: BOOLEAN,
    pub adapter_scans_down: BOOLEAN,
    pub atdisk_primary_claimed: BOOLEAN,
    pub atdisk_secondary_claimed: BOOLEAN,
    pub dma32_bit_addresses: BOOLEAN,
    pub demand_mode: BOOLEAN,
    pub map_buffers: BOOLEAN,
    pub need_physical_addresses: BOOLEAN,
    pub tagged_queuing: BOOLEAN,
    pub auto_request_sense: BOOLEAN,
    pub multiple_request_per_lu: BOOLEAN,
    pub receive_event: BOOLEAN,
    pub real_mode_initialized: BOOLEAN,
    pub buffer_access_scsi_port_controlled: BOOLEAN,
    pub maximum_number_of_targets: u8,
    pub reserved_uchars: [u8; 2],
    pub slot_number: ULONG,
    pub bus_interrupt_level2: ULONG,
    pub bus_interrupt_vector2: ULONG,
    pub interrupt_mode2: i32,
    pub dma_channel2: ULONG,
    pub dma_port2: ULONG,
    pub dma_width2: i32,
    pub dma_speed2: i32,
    pub device_extension_size: ULONG,
    pub specific_lu_extension_size: ULONG,
    pub srb_extension_size: ULONG,
    pub dma64_bit_addresses: u8,
    pub reset_target_supported: BOOLEAN,
    pub maximum_number_of_logical_units: u8,
    pub wmi_data_provider: BOOLEAN,
}

/// `SRB_IO_CONTROL`: the header at the start of an `SRB_FUNCTION_IO_CONTROL` request's buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SrbIoControl {
    pub header_length: ULONG,
    pub signature: [u8; 8],
    pub timeout: ULONG,
    pub control_code: ULONG,
    pub return_code: ULONG,
    pub length: ULONG,
}

pub type PhwInitialize = unsafe extern "C" fn(*mut c_void) -> BOOLEAN;
pub type PhwStartIo = unsafe extern "C" fn(*mut c_void, *mut ScsiRequestBlock) -> BOOLEAN;
pub type PhwInterrupt = unsafe extern "C" fn(*mut c_void) -> BOOLEAN;
pub type PhwTimer = unsafe extern "C" fn(*mut c_void);
pub type PhwDmaStarted = unsafe extern "C" fn(*mut c_void);
pub type PhwFindAdapter = unsafe extern "C" fn(
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_char,
    *mut PortConfigurationInformation,
    *mut BOOLEAN,
) -> ULONG;
pub type PhwResetBus = unsafe extern "C" fn(*mut c_void, ULONG) -> BOOLEAN;
pub type PhwAdapterState = unsafe extern "C" fn(*mut c_void, *mut c_void, BOOLEAN) -> BOOLEAN;
pub type PhwAdapterControl = unsafe extern "C" fn(*mut c_void, i32, *mut c_void) -> i32;
/// `DriverEntry(DriverObject, Argument2)`.
pub type DriverEntry = unsafe extern "C" fn(*mut c_void, *mut c_void) -> ULONG;

/// `HW_INITIALIZATION_DATA`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HwInitializationData {
    pub hw_initialization_data_size: ULONG,
    pub adapter_interface_type: i32,
    pub hw_initialize: Option<PhwInitialize>,
    pub hw_start_io: Option<PhwStartIo>,
    pub hw_interrupt: Option<PhwInterrupt>,
    pub hw_find_adapter: Option<PhwFindAdapter>,
    pub hw_reset_bus: Option<PhwResetBus>,
    pub hw_dma_started: Option<PhwDmaStarted>,
    pub hw_adapter_state: Option<PhwAdapterState>,
    pub device_extension_size: ULONG,
    pub specific_lu_extension_size: ULONG,
    pub srb_extension_size: ULONG,
    pub number_of_access_ranges: ULONG,
    pub reserved: *mut c_void,
    pub map_buffers: BOOLEAN,
    pub need_physical_addresses: BOOLEAN,
    pub tagged_queuing: BOOLEAN,
    pub auto_request_sense: BOOLEAN,
    pub multiple_request_per_lu: BOOLEAN,
    pub receive_event: BOOLEAN,
    pub vendor_id_length: u16,
    pub vendor_id: *mut c_void,
    /// Also `PortVersionFlags` (a union in the header).
    pub reserved_ushort: u16,
    pub device_id_length: u16,
    pub device_id: *mut c_void,
    pub hw_adapter_control: Option<PhwAdapterControl>,
}

/// NTSTATUS values `ScsiPortInitialize` returns.
pub mod status {
    pub const SUCCESS: u32 = 0x0000_0000;
    pub const INVALID_PARAMETER: u32 = 0xC000_000D;
    pub const NO_SUCH_DEVICE: u32 = 0xC000_000E;
    pub const REVISION_MISMATCH: u32 = 0xC000_0059;
    pub const DEVICE_DOES_NOT_EXIST: u32 = 0xC000_00C0;
}

/// `SCSI_NOTIFICATION_TYPE`.
pub mod notification {
    pub const REQUEST_COMPLETE: i32 = 0;
    pub const NEXT_REQUEST: i32 = 1;
    pub const NEXT_LU_REQUEST: i32 = 2;
    pub const RESET_DETECTED: i32 = 3;
    pub const CALL_DISABLE_INTERRUPTS: i32 = 4;
    pub const CALL_ENABLE_INTERRUPTS: i32 = 5;
    pub const REQUEST_TIMER_CALL: i32 = 6;
}

/// `INTERFACE_TYPE` values.
pub mod interface {
    pub const INTERNAL: i32 = 0;
    pub const ISA: i32 = 1;
    pub const EISA: i32 = 2;
    pub const MICRO_CHANNEL: i32 = 3;
    pub const PCI_BUS: i32 = 5;
}

/// One line of the layout table: a structure (or `sizeof` when `field` is empty) and a field with its offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutEntry {
    pub c_struct: &'static str,
    /// The C field name; empty for the structure's size.
    pub c_field: &'static str,
    pub value: usize,
}

macro_rules! layout_of {
    ($out:ident, $cname:literal, $ty:ty { $($cfield:literal => $rfield:ident),* $(,)? }) => {
        $out.push(LayoutEntry { c_struct: $cname, c_field: "", value: size_of::<$ty>() });
        $( $out.push(LayoutEntry { c_struct: $cname, c_field: $cfield, value: offset_of!($ty, $rfield) }); )*
    };
}

/// Every structure and field the header declares, with its size or offset on the Rust side.
pub fn layout() -> Vec<LayoutEntry> {
    let mut v = Vec::new();
    layout_of!(v, "SCSI_PHYSICAL_ADDRESS", ScsiPhysicalAddress { "LowPart" => low_part, "HighPart" => high_part });
    layout_of!(v, "ACCESS_RANGE", AccessRange {
        "RangeStart" => range_start, "RangeLength" => range_length, "RangeInMemory" => range_in_memory,
    });
    layout_of!(v, "SCSI_REQUEST_BLOCK", ScsiRequestBlock {
        "Length" => length, "Function" => function, "SrbStatus" => srb_status, "ScsiStatus" => scsi_status,
        "PathId" => path_id, "TargetId" => target_id, "Lun" => lun, "QueueTag" => queue_tag,
        "QueueAction" => queue_action, "CdbLength" => cdb_length, "SenseInfoBufferLength" => sense_info_buffer_length,
        "SrbFlags" => srb_flags, "DataTransferLength" => data_transfer_length, "TimeOutValue" => time_out_value,
        "DataBuffer" => data_buffer, "SenseInfoBuffer" => sense_info_buffer, "NextSrb" => next_srb,
        "OriginalRequest" => original_request, "SrbExtension" => srb_extension,
        "InternalStatus" => internal_status, "QueueSortKey" => internal_status, "Reserved" => reserved, "Cdb" => cdb,
    });
    layout_of!(v, "PORT_CONFIGURATION_INFORMATION", PortConfigurationInformation {
        "Length" => length, "SystemIoBusNumber" => system_io_bus_number,
        "AdapterInterfaceType" => adapter_interface_type, "BusInterruptLevel" => bus_interrupt_level,
        "BusInterruptVector" => bus_interrupt_vector, "InterruptMode" => interrupt_mode,
        "MaximumTransferLength" => maximum_transfer_length, "NumberOfPhysicalBreaks" => number_of_physical_breaks,
        "DmaChannel" => dma_channel, "DmaPort" => dma_port, "DmaWidth" => dma_width, "DmaSpeed" => dma_speed,
        "AlignmentMask" => alignment_mask, "NumberOfAccessRanges" => number_of_access_ranges,
        "AccessRanges" => access_ranges, "Reserved" => reserved, "NumberOfBuses" => number_of_buses,
        "InitiatorBusId" => initiator_bus_id, "ScatterGather" => scatter_gather, "Master" => master,
        "CachesData" => caches_data, "AdapterScansDown" => adapter_scans_down,
        "AtdiskPrimaryClaimed" => atdisk_primary_claimed, "AtdiskSecondaryClaimed" => atdisk_secondary_claimed,
        "Dma32BitAddresses" => dma32_bit_addresses, "DemandMode" => demand_mode, "MapBuffers" => map_buffers,
        "NeedPhysicalAddresses" => need_physical_addresses, "TaggedQueuing" => tagged_queuing,
        "AutoRequestSense" => auto_request_sense, "MultipleRequestPerLu" => multiple_request_per_lu,
        "ReceiveEvent" => receive_event, "RealModeInitialized" => real_mode_initialized,
        "BufferAccessScsiPortControlled" => buffer_access_scsi_port_controlled,
        "MaximumNumberOfTargets" => maximum_number_of_targets, "ReservedUchars" => reserved_uchars,
        "SlotNumber" => slot_number, "BusInterruptLevel2" => bus_interrupt_level2,
        "BusInterruptVector2" => bus_interrupt_vector2, "InterruptMode2" => interrupt_mode2,
        "DmaChannel2" => dma_channel2, "DmaPort2" => dma_port2, "DmaWidth2" => dma_width2,
        "DmaSpeed2" => dma_speed2, "DeviceExtensionSize" => device_extension_size,
        "SpecificLuExtensionSize" => specific_lu_extension_size, "SrbExtensionSize" => srb_extension_size,
        "Dma64BitAddresses" => dma64_bit_addresses, "ResetTargetSupported" => reset_target_supported,
        "MaximumNumberOfLogicalUnits" => maximum_number_of_logical_units, "WmiDataProvider" => wmi_data_provider,
    });
    layout_of!(v, "SRB_IO_CONTROL", SrbIoControl {
        "HeaderLength" => header_length, "Signature" => signature, "Timeout" => timeout,
        "ControlCode" => control_code, "ReturnCode" => return_code, "Length" => length,
    });
    layout_of!(v, "HW_INITIALIZATION_DATA", HwInitializationData {
        "HwInitializationDataSize" => hw_initialization_data_size,
        "AdapterInterfaceType" => adapter_interface_type, "HwInitialize" => hw_initialize,
        "HwStartIo" => hw_start_io, "HwInterrupt" => hw_interrupt, "HwFindAdapter" => hw_find_adapter,
        "HwResetBus" => hw_reset_bus, "HwDmaStarted" => hw_dma_started, "HwAdapterState" => hw_adapter_state,
        "DeviceExtensionSize" => device_extension_size, "SpecificLuExtensionSize" => specific_lu_extension_size,
        "SrbExtensionSize" => srb_extension_size, "NumberOfAccessRanges" => number_of_access_ranges,
        "Reserved" => reserved, "MapBuffers" => map_buffers, "NeedPhysicalAddresses" => need_physical_addresses,
        "TaggedQueuing" => tagged_queuing, "AutoRequestSense" => auto_request_sense,
        "MultipleRequestPerLu" => multiple_request_per_lu, "ReceiveEvent" => receive_event,
        "VendorIdLength" => vendor_id_length, "VendorId" => vendor_id, "ReservedUshort" => reserved_ushort,
        "PortVersionFlags" => reserved_ushort, "DeviceIdLength" => device_id_length, "DeviceId" => device_id,
        "HwAdapterControl" => hw_adapter_control,
    });
    v
}
