//! Bringing an adapter up: `HwScsiFindAdapter` completes the configuration, the port checks that a system-DMA
//! adapter can be served (DDI rule 1, the channel, the alignment), gets its adapter object from the HAL, calls
//! `HwScsiInitialize`, and works out what a class driver learns of the adapter.

use super::{Core, Routine};
use crate::config::{AccessRange, AdapterResources, FindAdapterStatus, PortConfigurationInformation};
use crate::srb::SP_UNINITIALIZED_VALUE;
use crate::{AdapterCapabilities, PortError};
use hal::{DeviceDescription, DmaChannel, PAGE_SIZE};

impl<E> Core<E> {
    pub(super) fn bring_up(&mut self, ext: &mut E, res: &AdapterResources) -> Result<AdapterCapabilities, PortError> {
        let name = self.name.clone();
        let mut cfg = PortConfigurationInformation {
            adapter_interface_type: self.init.adapter_interface_type,
            bus_interrupt_level: res.interrupt_level,
            dma_channel: res.dma_channel.map_or(SP_UNINITIALIZED_VALUE, u32::from),
            access_ranges: vec![AccessRange { start: res.io_base, length: res.io_length }],
            map_buffers: self.init.map_buffers,
            need_physical_addresses: self.init.need_physical_addresses,
            tagged_queuing: self.init.tagged_queuing,
            auto_request_sense: self.init.auto_request_sense,
            multiple_request_per_lu: self.init.multiple_request_per_lu,
            ..Default::default()
        };
        self.access = cfg.access_ranges.clone();
        let find = self.init.hw_find_adapter;
        let status = self.call(ext, Routine::FindAdapter, |e, ctx| find(e, ctx, &mut cfg));
        if status != FindAdapterStatus::Found {
            return Err(PortError::NotFound { name, status });
        }
        self.access = cfg.access_ranges.clone();
        self.config = cfg.clone();
        let mut map_registers = 0;
        if cfg.uses_system_dma() {
            if self.init.hw_dma_started.is_none() {
                return Err(PortError::NoDmaStarted { name, channel: cfg.dma_channel });
            }
            let channel =
                u8::try_from(cfg.dma_channel).ok().and_then(|c| DmaChannel::new(c).ok()).ok_or_else(|| {
                    PortError::BadDmaConfig {
                        name: name.clone(),
                        reason: format!("DmaChannel {} does not exist", cfg.dma_channel),
                    }
                })?;
            if !matches!(cfg.alignment_mask, 0 | 1 | 3 | 7) {
                return Err(PortError::BadDmaConfig {
                    name,
                    reason: format!("AlignmentMask {:#x} is not 0, 1, 3 or 7", cfg.alignment_mask),
                });
            }
            let desc = DeviceDescription {
                master: false,
                dma_channel: channel,
                dma_width: cfg.dma_width,
                dma_speed: cfg.dma_speed,
                demand_mode: cfg.demand_mode,
                auto_initialize: false,
                maximum_length: if cfg.maximum_transfer_length == SP_UNINITIALIZED_VALUE {
                    0
                } else {
                    cfg.maximum_transfer_length
                },
            };
            let adapter =
                self.hal.get_adapter(&desc).map_err(|source| PortError::Hal { name: name.clone(), source })?;
            map_registers = adapter.number_of_map_registers();
            self.channel = Some(channel);
            self.adapter = Some(adapter);
        } else if self.init.hw_dma_started.is_some() && !cfg.master && cfg.dma_channel == SP_UNINITIALIZED_VALUE {
            return Err(PortError::BadDmaConfig {
                name,
                reason: "the miniport has a HwDmaStarted routine but set no DmaChannel".into(),
            });
        }
        let initialize = self.init.hw_initialize;
        if !self.call(ext, Routine::Initialize, initialize) {
            return Err(PortError::InitializeFailed(name));
        }
        let map_limit = if map_registers > 0 { map_registers } else { u32::MAX };
        let breaks = if cfg.number_of_physical_breaks == SP_UNINITIALIZED_VALUE {
            u32::MAX
        } else {
            cfg.number_of_physical_breaks.saturating_add(1)
        };
        let mut max_len = cfg.maximum_transfer_length;
        if map_registers > 0 {
            // One map covers at most PAGE_SIZE × (map registers − 1) bytes: an unaligned buffer spans one page more
            // than its length (`docs/architecture.md`, "The port engine").
            max_len = max_len.min(((map_registers as u64 - 1) * PAGE_SIZE) as u32);
        }
        Ok(AdapterCapabilities {
            maximum_transfer_length: max_len,
            maximum_physical_pages: breaks.min(map_limit),
            alignment_mask: cfg.alignment_mask,
            application_dedicated: cfg.application_dedicated,
            dma_channel: self.channel.map(|c| c.number()),
            map_registers,
            number_of_buses: cfg.number_of_buses,
            maximum_number_of_targets: cfg.maximum_number_of_targets,
            maximum_number_of_logical_units: cfg.maximum_number_of_logical_units,
            tagged_queuing: cfg.tagged_queuing,
            multiple_request_per_lu: cfg.multiple_request_per_lu,
            initiator_bus_id: cfg.initiator_bus_id[0],
        })
    }
}
