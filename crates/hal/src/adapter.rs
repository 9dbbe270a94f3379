//! HAL adapter objects for system (subordinate) DMA.

use std::sync::Arc;

use crate::{Buffer, DmaChannel, DmaController, HalError, PhysAddr, SystemMemory};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaWidth {
    Bits8,
    Bits16,
    Bits32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaSpeed {
    Compatible,
    TypeA,
    TypeB,
    TypeC,
    TypeF,
}

/// `WriteToDevice` TRUE (`ToDevice`) or FALSE (`FromDevice`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    ToDevice,
    FromDevice,
}

#[derive(Clone, Debug)]
pub struct DeviceDescription {
    pub master: bool,
    pub dma_channel: DmaChannel,
    pub dma_width: DmaWidth,
    pub dma_speed: DmaSpeed,
    pub demand_mode: bool,
    pub auto_initialize: bool,
    /// 0 = 64 KiB (the ISA default).
    pub maximum_length: u32,
}

#[derive(Clone, Debug)]
pub struct HalConfig {
    /// Size of the bounce pool below 16 MiB, in pages.
    pub map_register_pages: u32,
}

impl Default for HalConfig {
    fn default() -> Self {
        Self { map_register_pages: 256 }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct HalStats {
    pub maps: u64,
    pub bounced_maps: u64,
    pub bounced_bytes: u64,
    pub flushes: u64,
    pub map_register_waits: u64,
    pub channel_waits: u64,
    pub dma_bytes: u64,
}

pub struct Hal {
    mem: Arc<SystemMemory>,
}

impl Hal {
    pub fn new(mem: Arc<SystemMemory>, config: HalConfig) -> Result<Arc<Self>, HalError> {
        let _ = (mem, config);
        todo!()
    }
    pub fn memory(&self) -> &Arc<SystemMemory> {
        &self.mem
    }
    pub fn get_adapter(self: &Arc<Self>, desc: &DeviceDescription) -> Result<AdapterObject, HalError> {
        let _ = desc;
        todo!()
    }
    pub fn with_dma<R>(&self, f: impl FnOnce(&mut DmaController, &SystemMemory) -> R) -> R {
        let _ = f;
        todo!()
    }
    pub fn stats(&self) -> HalStats {
        todo!()
    }
}

pub struct AdapterObject {
    hal: Arc<Hal>,
}

#[must_use]
pub struct ChannelGrant {
    map_registers: u32,
}

pub struct MapInfo {
    pub bounced: bool,
    pub programmed: PhysAddr,
    pub length: u32,
}

impl AdapterObject {
    pub fn channel(&self) -> DmaChannel {
        todo!()
    }
    pub fn number_of_map_registers(&self) -> u32 {
        todo!()
    }
    pub fn stats(&self) -> HalStats {
        todo!()
    }
    pub fn allocate_channel(
        &self,
        map_registers: u32,
        waker: Box<dyn FnOnce() + Send>,
    ) -> Result<Option<ChannelGrant>, HalError> {
        let _ = (map_registers, waker, &self.hal);
        todo!()
    }
    pub fn take_grant(&self) -> Option<ChannelGrant> {
        todo!()
    }
    pub fn map_transfer(
        &self,
        grant: &mut ChannelGrant,
        buffer: &Buffer,
        offset: usize,
        len: usize,
        dir: Direction,
    ) -> Result<MapInfo, HalError> {
        let _ = (grant.map_registers, buffer, offset, len, dir);
        todo!()
    }
    pub fn flush_adapter_buffers(
        &self,
        grant: &mut ChannelGrant,
        buffer: &Buffer,
        offset: usize,
        len: usize,
        dir: Direction,
    ) -> Result<u64, HalError> {
        let _ = (grant, buffer, offset, len, dir);
        todo!()
    }
    pub fn read_dma_counter(&self, grant: &ChannelGrant) -> u32 {
        let _ = grant;
        todo!()
    }
    pub fn free_adapter_channel(&self, grant: ChannelGrant) {
        let _ = grant;
        todo!()
    }
}
