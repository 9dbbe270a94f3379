//! `HW_INITIALIZATION_DATA` and `PORT_CONFIGURATION_INFORMATION` (docs/ddk.md §6, §1.7).

use crate::ddi::PortContext;
use crate::srb::{SrbHandle, SP_UNINITIALIZED_VALUE};
use hal::{DmaSpeed, DmaWidth};

/// `INTERFACE_TYPE` (the values the model uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterfaceType {
    Internal,
    Isa,
    Eisa,
    MicroChannel,
    PciBus,
}

/// What `HwScsiFindAdapter` returns (`SP_RETURN_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindAdapterStatus {
    NotFound,
    Found,
    Error,
    BadConfig,
}

/// `SCSI_ADAPTER_CONTROL_TYPE` values the model sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterControlType {
    QuerySupportedControlTypes,
    StopAdapter,
    RestartAdapter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterControlStatus {
    Success,
    Unsuccessful,
}

/// An I/O port range the adapter decodes (`ACCESS_RANGE`, I/O space only on ISA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessRange {
    pub start: u16,
    pub length: u16,
}

/// Timer routine for `RequestTimerCall`: runs serialized with `HwScsiInterrupt`.
pub type HwTimer<E> = fn(&mut E, &mut PortContext<'_, E>);

/// `HwScsiAdapterControl`.
pub type HwAdapterControl<E> = fn(&mut E, &mut PortContext<'_, E>, AdapterControlType) -> AdapterControlStatus;

/// The miniport's entry points and static properties (`HW_INITIALIZATION_DATA`). `E` is the device extension.
pub struct HwInitializationData<E> {
    pub adapter_interface_type: InterfaceType,
    pub hw_initialize: fn(&mut E, &mut PortContext<'_, E>) -> bool,
    /// Always returns true (docs/ddk.md §5, "Return from HwScsiStartIo").
    pub hw_start_io: fn(&mut E, &mut PortContext<'_, E>, SrbHandle) -> bool,
    pub hw_interrupt: Option<fn(&mut E, &mut PortContext<'_, E>) -> bool>,
    pub hw_find_adapter: fn(&mut E, &mut PortContext<'_, E>, &mut PortConfigurationInformation) -> FindAdapterStatus,
    pub hw_reset_bus: fn(&mut E, &mut PortContext<'_, E>, u8) -> bool,
    /// Required for an HBA that uses a system DMA controller; `None` for bus-master and PIO HBAs.
    pub hw_dma_started: Option<fn(&mut E, &mut PortContext<'_, E>)>,
    pub hw_adapter_control: Option<HwAdapterControl<E>>,
    pub map_buffers: bool,
    pub need_physical_addresses: bool,
    pub tagged_queuing: bool,
    pub auto_request_sense: bool,
    pub multiple_request_per_lu: bool,
}

/// `PORT_CONFIGURATION_INFORMATION`: the port presets it (the adapter's resources as configured), the miniport's
/// `HwScsiFindAdapter` completes it.
#[derive(Clone, Debug)]
pub struct PortConfigurationInformation {
    pub system_io_bus_number: u32,
    pub adapter_interface_type: InterfaceType,
    pub bus_interrupt_level: u32,
    /// Max bytes per transfer; `SP_UNINITIALIZED_VALUE` = unlimited; the miniport lowers it to the HBA's capacity.
    pub maximum_transfer_length: u32,
    /// Scatter/gather elements − 1; `SP_UNINITIALIZED_VALUE` = unlimited; 0 = no scatter/gather.
    pub number_of_physical_breaks: u32,
    /// `SP_UNINITIALIZED_VALUE` until the port or miniport sets it; a system-DMA miniport must set it.
    pub dma_channel: u32,
    pub dma_port: u32,
    pub dma_width: DmaWidth,
    pub dma_speed: DmaSpeed,
    /// Buffer alignment the HBA needs: 0, 1, 3 or 7.
    pub alignment_mask: u32,
    pub access_ranges: Vec<AccessRange>,
    pub number_of_buses: u8,
    pub initiator_bus_id: [u8; 8],
    pub scatter_gather: bool,
    /// Bus master; `false` (the default) means the HBA uses the system DMA controller if it does DMA.
    pub master: bool,
    pub caches_data: bool,
    pub dma_32bit_addresses: bool,
    /// Program the system DMA controller in demand mode instead of single-cycle mode.
    pub demand_mode: bool,
    pub map_buffers: bool,
    pub need_physical_addresses: bool,
    pub tagged_queuing: bool,
    pub auto_request_sense: bool,
    pub multiple_request_per_lu: bool,
    pub maximum_number_of_targets: u8,
    pub maximum_number_of_logical_units: u8,
    /// The HBA offers application-dedicated support: it accepts pass-through SRBs of any size straight from an
    /// application (the seed's case for several DMA operations per SRB).
    pub application_dedicated: bool,
}

impl Default for PortConfigurationInformation {
    fn default() -> Self {
        PortConfigurationInformation {
            system_io_bus_number: 0,
            adapter_interface_type: InterfaceType::Isa,
            bus_interrupt_level: 0,
            maximum_transfer_length: SP_UNINITIALIZED_VALUE,
            number_of_physical_breaks: SP_UNINITIALIZED_VALUE,
            dma_channel: SP_UNINITIALIZED_VALUE,
            dma_port: SP_UNINITIALIZED_VALUE,
            dma_width: DmaWidth::Bits8,
            dma_speed: DmaSpeed::Compatible,
            alignment_mask: 0,
            access_ranges: Vec::new(),
            number_of_buses: 1,
            initiator_bus_id: [7; 8],
            scatter_gather: false,
            master: false,
            caches_data: false,
            dma_32bit_addresses: false,
            demand_mode: false,
            map_buffers: false,
            need_physical_addresses: false,
            tagged_queuing: false,
            auto_request_sense: false,
            multiple_request_per_lu: false,
            maximum_number_of_targets: 8,
            maximum_number_of_logical_units: 8,
            application_dedicated: false,
        }
    }
}

impl PortConfigurationInformation {
    /// The configuration asks for system (slave) DMA: not a bus master and a DMA channel is set.
    pub fn uses_system_dma(&self) -> bool {
        !self.master && self.dma_channel != SP_UNINITIALIZED_VALUE
    }
}

/// The adapter's resources as the machine wires them (what the port presets in the configuration).
#[derive(Clone, Debug)]
pub struct AdapterResources {
    pub io_base: u16,
    pub io_length: u16,
    pub interrupt_level: u32,
    /// The DMA channel jumpered on the card, if any (the port presets `DmaChannel` with it).
    pub dma_channel: Option<u8>,
}
