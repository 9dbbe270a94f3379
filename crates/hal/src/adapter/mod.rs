//! HAL adapter objects for system (subordinate) DMA (docs/ddk.md §10).
//!
//! `HalGetAdapter` turns a device description into an adapter object with its number of
//! map registers; `AllocateAdapterChannel` hands out the channel and a run of map
//! registers (page-sized bounce slots in a pool below 16 MiB) one owner at a time, in
//! FIFO order; `MapTransfer`, `FlushAdapterBuffers`, `ReadDmaCounter` and
//! `FreeAdapterChannel` are separate operations, as in the DDK.

mod grants;
mod stats;
mod transfer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{Buffer, DmaChannel, DmaController, HalError, PhysAddr, Placement, SystemMemory, PAGE_SIZE};
use grants::Allocator;
use stats::StatsCell;

/// `DmaWidth` of a DEVICE_DESCRIPTION.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaWidth {
    Bits8,
    Bits16,
    Bits32,
}

/// `DmaSpeed` of a DEVICE_DESCRIPTION. On an EISA machine it selects the extended mode
/// register's timing type (compatible, A, B, C = burst); the PC/AT controller runs
/// compatible timing whatever is asked. Type F is not an EISA timing.
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

/// The fields of DEVICE_DESCRIPTION that matter to a subordinate DMA device.
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
    /// `Dma32BitAddresses`: the device drives 32 address lines. On an EISA machine the
    /// HAL then programs the high page register and the channel reaches all of system
    /// memory; on a PC/AT the 8237's 24 bits bound it whatever this says.
    pub dma32_bit_addresses: bool,
}

/// The system bus of the modelled machine, which decides the DMA controller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SystemBus {
    /// PC/AT: the 8237 pair with 74LS612 page registers, 24-bit addresses.
    #[default]
    Isa,
    /// EISA: the 8237-compatible pair of the EISA system component with its high page,
    /// count high byte and extended mode registers (`docs/dma.md`, "EISA").
    Eisa,
}

/// HAL set-up.
#[derive(Clone, Debug)]
pub struct HalConfig {
    /// Size of the bounce pool below 16 MiB, in pages (map registers).
    pub map_register_pages: u32,
    pub bus: SystemBus,
    /// Virtual time for the DMA controllers (off when None).
    pub timing: Option<crate::MachineTiming>,
}

impl Default for HalConfig {
    fn default() -> Self {
        Self { map_register_pages: 256, bus: SystemBus::Isa, timing: None }
    }
}

/// Counters, for the whole HAL or one adapter object's share.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HalStats {
    pub maps: u64,
    pub bounced_maps: u64,
    pub bounced_bytes: u64,
    pub flushes: u64,
    pub map_register_waits: u64,
    pub channel_waits: u64,
    /// Bytes the channel moved, as counted at flush time.
    pub dma_bytes: u64,
}

/// The controller and what the HAL remembers of its status register: reading status
/// clears all four TC bits of a chip, so bits of channels other than the one being
/// flushed are kept here until their own flush.
struct DmaBus {
    ctl: DmaController,
    tc_latch: u8,
}

/// The HAL: system memory, the DMA controller pair on its bus, the map-register pool.
pub struct Hal {
    bus: SystemBus,
    mem: Arc<SystemMemory>,
    dma: Mutex<DmaBus>,
    alloc: Mutex<Allocator>,
    /// The map registers: one contiguous run below 16 MiB, aligned to 128 KiB.
    pool: Buffer,
    stats: StatsCell,
    next_adapter: AtomicU64,
    /// The machine's virtual clock, with a timing preset.
    clock: Option<crate::VirtualClock>,
}

/// Alignment of the bounce pool: a 128 KiB DMA page, so pool page i sits at offset
/// i mod 32 of a 128 KiB window and i mod 16 of a 64 KiB one.
const POOL_ALIGN: u64 = 128 << 10;

impl Hal {
    /// Reserves the bounce pool below 16 MiB.
    pub fn new(mem: Arc<SystemMemory>, config: HalConfig) -> Result<Arc<Self>, HalError> {
        let pages = config.map_register_pages as usize;
        let pool =
            mem.alloc(pages * PAGE_SIZE as usize, Placement::Contiguous { below_16m: true, align: POOL_ALIGN })?;
        let mut controller = match config.bus {
            SystemBus::Isa => DmaController::new(),
            SystemBus::Eisa => DmaController::eisa(),
        };
        controller.set_timing(config.timing);
        let clock = config.timing.map(|_| crate::VirtualClock::new());
        controller.set_clock(clock.clone());
        Ok(Arc::new(Self {
            clock,
            bus: config.bus,
            mem,
            dma: Mutex::new(DmaBus { ctl: controller, tc_latch: 0 }),
            alloc: Mutex::new(Allocator::new(pages)),
            pool,
            stats: StatsCell::default(),
            next_adapter: AtomicU64::new(1),
        }))
    }

    pub fn memory(&self) -> &Arc<SystemMemory> {
        &self.mem
    }

    /// Number of map registers in the bounce pool.
    pub fn map_register_pages(&self) -> u32 {
        self.pool.pages().len() as u32
    }

    /// Physical address of the bounce pool's first page.
    pub fn map_register_base(&self) -> PhysAddr {
        self.pool.pages().first().copied().unwrap_or(PhysAddr(0))
    }

    /// The system bus this HAL was built for.
    pub fn bus(&self) -> SystemBus {
        self.bus
    }

    /// HalGetAdapter: validates the description (system DMA only: `master` false;
    /// channel 4 refused; on a PC/AT the width matching the channel: 0–3 8-bit, 5–7
    /// 16-bit; on EISA any of 8, 16 or 32 bits on any channel, and an EISA timing).
    /// Map registers = maximum length / PAGE_SIZE + 1, the length capped at what one
    /// programming of the channel can move (PC/AT: 64 KiB or 128 KiB; EISA: the 24-bit
    /// count) and the count at the pool's size.
    pub fn get_adapter(self: &Arc<Self>, desc: &DeviceDescription) -> Result<AdapterObject, HalError> {
        if desc.master {
            return Err(HalError::InvalidDescription {
                reason: "bus-master devices do not use the system DMA controller",
            });
        }
        let ch = desc.dma_channel;
        if ch.is_cascade() {
            return Err(HalError::InvalidChannel(ch.number()));
        }
        let layout = match self.bus {
            SystemBus::Isa => {
                let width_ok = match desc.dma_width {
                    DmaWidth::Bits8 => !ch.is_16bit(),
                    DmaWidth::Bits16 => ch.is_16bit(),
                    DmaWidth::Bits32 => false,
                };
                if !width_ok {
                    return Err(HalError::InvalidDescription {
                        reason: "DmaWidth does not match the channel (0-3 are 8-bit, 5-7 are 16-bit)",
                    });
                }
                transfer::Layout::isa(ch)
            }
            SystemBus::Eisa => {
                if desc.dma_speed == DmaSpeed::TypeF {
                    return Err(HalError::InvalidDescription { reason: "DmaSpeed TypeF is not an EISA timing" });
                }
                transfer::Layout::eisa(desc)
            }
        };
        let max_len = match desc.maximum_length {
            0 => 64 << 10,
            n => u64::from(n),
        }
        .min(layout.max_transfer);
        let map_registers = ((max_len / PAGE_SIZE) as u32 + 1).min(self.map_register_pages());
        Ok(AdapterObject {
            hal: Arc::clone(self),
            shared: Arc::new(AdapterShared {
                id: self.next_adapter.fetch_add(1, Ordering::Relaxed),
                channel: ch,
                engaged: AtomicBool::new(false),
                ready: Mutex::new(None),
                stats: StatsCell::default(),
            }),
            desc: desc.clone(),
            map_registers,
            layout,
        })
    }

    /// Port I/O to the DMA controller's ports and DREQ service go through this lock
    /// (one system bus).
    pub fn with_dma<R>(&self, f: impl FnOnce(&mut DmaController, &SystemMemory) -> R) -> R {
        let mut bus = self.dma.lock();
        f(&mut bus.ctl, &self.mem)
    }

    /// The timing preset virtual time runs on, if any.
    pub fn timing(&self) -> Option<crate::MachineTiming> {
        self.dma.lock().ctl.timing()
    }

    /// The machine's virtual clock when a timing preset is set (`docs/dma.md`, "Virtual
    /// time"): DMA transfers move it on, and the port driver runs SRB timeouts on it.
    pub fn virtual_clock(&self) -> Option<&crate::VirtualClock> {
        self.clock.as_ref()
    }

    /// The virtual time the DMA transfers so far would have taken (zero with timing off).
    pub fn virtual_time(&self) -> crate::VirtualTime {
        self.dma.lock().ctl.virtual_time()
    }

    pub fn stats(&self) -> HalStats {
        self.stats.snapshot()
    }
}

/// What an adapter object shares with its grants and with the allocator's queues.
pub(crate) struct AdapterShared {
    id: u64,
    channel: DmaChannel,
    /// A channel request is queued or a grant is out (one request per adapter at a time).
    engaged: AtomicBool,
    /// A grant made while the request was queued, waiting for `take_grant`.
    ready: Mutex<Option<ChannelGrant>>,
    stats: StatsCell,
}

/// An adapter object for a system DMA device. Send + Sync.
pub struct AdapterObject {
    hal: Arc<Hal>,
    shared: Arc<AdapterShared>,
    desc: DeviceDescription,
    map_registers: u32,
    layout: transfer::Layout,
}

/// Ownership of the channel and of a run of map registers. Linear: give it back with
/// `free_adapter_channel`; dropping it releases the same resources.
#[must_use]
pub struct ChannelGrant {
    hal: Arc<Hal>,
    adapter: Arc<AdapterShared>,
    /// First pool page of this grant's map registers.
    pool_start: usize,
    map_registers: u32,
    mapped: Option<transfer::Mapped>,
}

impl ChannelGrant {
    pub fn channel(&self) -> DmaChannel {
        self.adapter.channel
    }

    pub fn map_registers(&self) -> u32 {
        self.map_registers
    }

    /// Physical address of this grant's first map register (its bounce area).
    pub fn bounce_base(&self) -> PhysAddr {
        PhysAddr(self.hal.map_register_base().0 + self.pool_start as u64 * PAGE_SIZE)
    }

    /// Is a transfer mapped and not yet flushed?
    pub fn is_mapped(&self) -> bool {
        self.mapped.is_some()
    }
}

impl std::fmt::Debug for ChannelGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelGrant")
            .field("channel", &self.adapter.channel)
            .field("pool_start", &self.pool_start)
            .field("map_registers", &self.map_registers)
            .field("mapped", &self.mapped.is_some())
            .finish()
    }
}

impl Drop for ChannelGrant {
    fn drop(&mut self) {
        let hal = Arc::clone(&self.hal);
        hal.release_grant(self);
    }
}

/// The result of a map: whether it bounced, what the channel was programmed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapInfo {
    pub bounced: bool,
    pub programmed: PhysAddr,
    pub length: u32,
}

impl AdapterObject {
    pub fn channel(&self) -> DmaChannel {
        self.shared.channel
    }

    pub fn number_of_map_registers(&self) -> u32 {
        self.map_registers
    }

    pub fn description(&self) -> &DeviceDescription {
        &self.desc
    }

    /// This adapter's share of the counters.
    pub fn stats(&self) -> HalStats {
        self.shared.stats.snapshot()
    }

    /// AllocateAdapterChannel. Channels are shared between adapters: one owner at a
    /// time, waiters granted in FIFO order. Ok(Some(grant)) when free now; Ok(None) when
    /// queued: then `waker` is called (from the thread that freed it, without holding
    /// HAL locks) and `take_grant()` returns the grant. Also waits (FIFO) when the
    /// bounce pool has no run of `map_registers` pages.
    pub fn allocate_channel(
        &self,
        map_registers: u32,
        waker: Box<dyn FnOnce() + Send>,
    ) -> Result<Option<ChannelGrant>, HalError> {
        if map_registers == 0 || map_registers > self.map_registers {
            return Err(HalError::TooManyMapRegisters { requested: map_registers, available: self.map_registers });
        }
        if self.shared.engaged.swap(true, Ordering::AcqRel) {
            return Err(HalError::RequestPending);
        }
        Ok(self.hal.request_channel(&self.shared, map_registers, waker))
    }

    /// The grant made for a queued request, once its waker has been called.
    pub fn take_grant(&self) -> Option<ChannelGrant> {
        self.shared.ready.lock().take()
    }

    /// FreeAdapterChannel: releases the channel and its map registers and grants the
    /// next waiter (calling its waker).
    pub fn free_adapter_channel(&self, grant: ChannelGrant) {
        drop(grant);
    }
}

impl Drop for AdapterObject {
    fn drop(&mut self) {
        self.hal.cancel_requests(&self.shared);
        let ready = self.shared.ready.lock().take();
        drop(ready);
    }
}
