//! MapTransfer, FlushAdapterBuffers and ReadDmaCounter for system DMA.

use std::sync::Arc;

use super::stats::bump;
use super::{AdapterObject, ChannelGrant, DeviceDescription, Direction, DmaBus, DmaSpeed, DmaWidth, Hal, MapInfo};
use crate::{Buffer, DmaChannel, HalError, PhysAddr, EISA_DMA_LIMIT, ISA_DMA_LIMIT, PAGE_SIZE};

/// How an adapter object programs its channel: fixed by the bus and the description.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    /// EISA extended mode value (without the channel bits), or None on a PC/AT.
    ext_mode: Option<u8>,
    /// Bytes one transfer cycle moves: starts and lengths of a direct map must be
    /// multiples of it.
    cycle: usize,
    /// Bytes one count-register unit stands for (words on PC/AT channels 5–7).
    count_unit: usize,
    /// The highest address + 1 the channel can reach.
    reach: u64,
    /// The DMA page a transfer may not cross (the address register wraps), or None when
    /// the address counter carries (EISA).
    page: Option<u64>,
    /// The most one programming of the channel can move.
    pub max_transfer: u64,
}

impl Layout {
    pub(crate) fn isa(ch: DmaChannel) -> Self {
        Layout {
            ext_mode: None,
            cycle: ch.unit(),
            count_unit: ch.unit(),
            reach: ISA_DMA_LIMIT,
            page: Some(ch.page_size()),
            max_transfer: ch.page_size(),
        }
    }

    /// EISA extended mode (`docs/dma.md`, "EISA"): bits 3–2 transfer size (8-bit; 16-bit
    /// and 32-bit counting bytes, the address not shifted), bits 5–4 timing type.
    pub(crate) fn eisa(desc: &DeviceDescription) -> Self {
        let (size, cycle) = match desc.dma_width {
            DmaWidth::Bits8 => (0x00, 1),
            DmaWidth::Bits16 => (0x0C, 2),
            DmaWidth::Bits32 => (0x08, 4),
        };
        let timing = match desc.dma_speed {
            DmaSpeed::Compatible | DmaSpeed::TypeF => 0x00,
            DmaSpeed::TypeA => 0x10,
            DmaSpeed::TypeB => 0x20,
            DmaSpeed::TypeC => 0x30,
        };
        Layout {
            ext_mode: Some(size | timing),
            cycle,
            count_unit: 1,
            reach: if desc.dma32_bit_addresses { EISA_DMA_LIMIT } else { ISA_DMA_LIMIT },
            page: None,
            // The 24-bit count, in bytes.
            max_transfer: 1 << 24,
        }
    }
}

/// What a map left programmed, for the matching flush.
pub(crate) struct Mapped {
    va: u64,
    offset: usize,
    len: usize,
    dir: Direction,
    bounced: bool,
    /// Count units programmed (count register + 1).
    units: u32,
}

/// Mode register values (8237A datasheet): bits 7–6 mode, 4 auto-init, 3–2 transfer type.
const MODE_DEMAND: u8 = 0x00;
const MODE_SINGLE: u8 = 0x40;
const MODE_AUTO_INIT: u8 = 0x10;
const TYPE_WRITE: u8 = 0x04;
const TYPE_READ: u8 = 0x08;
const MASK_SET: u8 = 0x04;

/// The I/O ports a driver uses to program one channel.
struct ChannelPorts {
    addr: u16,
    count: u16,
    page: u16,
    status: u16,
    single_mask: u16,
    mode: u16,
    clear_ff: u16,
    /// EISA: high page, count high byte, extended mode.
    high_page: u16,
    count_high: u16,
    ext_mode: u16,
}

fn ports(ch: DmaChannel) -> ChannelPorts {
    const PAGE: [u16; 8] = [0x87, 0x83, 0x81, 0x82, 0x8F, 0x8B, 0x89, 0x8A];
    let n = u16::from(ch.number());
    let (base, stride) = if ch.is_16bit() { (0xC0, 2) } else { (0x00, 1) };
    let reg = |r: u16| base + r * stride;
    let count = reg(2 * (n % 4) + 1);
    ChannelPorts {
        addr: reg(2 * (n % 4)),
        count,
        page: PAGE[usize::from(ch.number())],
        status: reg(8),
        single_mask: reg(10),
        mode: reg(11),
        clear_ff: reg(12),
        high_page: 0x400 + PAGE[usize::from(ch.number())],
        count_high: if ch.is_16bit() { 0x4C2 + 4 * (n - 4) } else { 0x400 + count },
        ext_mode: if ch.is_16bit() { 0x4D6 } else { 0x40B },
    }
}

/// Does a physically contiguous range need the map registers? When it reaches beyond
/// the channel's reach, crosses the channel's DMA page (PC/AT: the address register
/// wraps without carrying into the page register), or starts or ends off the cycle width.
fn out_of_reach(layout: &Layout, start: u64, len: usize) -> bool {
    let end = start + len as u64;
    let cycle = layout.cycle as u64;
    end > layout.reach
        || layout.page.is_some_and(|page| start / page != (end - 1) / page)
        || !start.is_multiple_of(cycle)
        || !(len as u64).is_multiple_of(cycle)
}

/// Units still to move from the count register: `(count + 1) mod 2^bits`, where 0
/// means none after TC and a whole 2^bits when TC has not happened.
fn residue_units(count: u32, tc: bool, bits: u32) -> u32 {
    let full = 1u32 << bits;
    match (count + 1) & (full - 1) {
        0 if tc => 0,
        0 => full,
        r => r,
    }
}

impl DmaBus {
    /// Reads the status register as a driver must (it clears all TC bits of the chip)
    /// and keeps the bits of the other channels for their own flush.
    fn take_tc(&mut self, ch: DmaChannel) -> bool {
        let p = ports(ch);
        let shift = if ch.is_16bit() { 4 } else { 0 };
        let status = self.ctl.io_read(p.status) & 0x0F;
        self.tc_latch |= status << shift;
        let bit = 1u8 << ch.number();
        let tc = self.tc_latch & bit != 0;
        self.tc_latch &= !bit;
        tc
    }

    /// The current count through the ports: 16 bits, 24 with the EISA count high byte.
    fn read_count(&mut self, ch: DmaChannel, eisa: bool) -> u32 {
        let p = ports(ch);
        self.ctl.io_write(p.clear_ff, 0);
        let lo = self.ctl.io_read(p.count);
        let hi = self.ctl.io_read(p.count);
        let top = if eisa { self.ctl.io_read(p.count_high) } else { 0 };
        u32::from_le_bytes([lo, hi, top, 0])
    }
}

impl Hal {
    pub(super) fn mask_channel(&self, ch: DmaChannel) {
        let p = ports(ch);
        self.dma.lock().ctl.io_write(p.single_mask, MASK_SET | (ch.number() & 3));
    }
}

impl AdapterObject {
    fn check_owner(&self, grant: &ChannelGrant) -> Result<(), HalError> {
        if Arc::ptr_eq(&grant.adapter, &self.shared) && Arc::ptr_eq(&grant.hal, &self.hal) {
            Ok(())
        } else {
            Err(HalError::ChannelNotOwned)
        }
    }

    /// MapTransfer for system DMA: the whole range or an error, never truncated (`len`
    /// must be at most PAGE_SIZE × the grant's map registers, and one programming of the
    /// channel: 64 KiB or 128 KiB). Bounces through the grant's map registers when the
    /// range is not one physically contiguous run, reaches at or above 16 MiB, crosses the
    /// channel's DMA page, or (word channel) starts or ends on an odd byte; for ToDevice
    /// the data is copied into the map registers now. Then programs the 8237 through its
    /// ports: mask → clear flip-flop → mode → address low/high → page → count low/high
    /// (N−1, in words on 16-bit channels) → unmask.
    pub fn map_transfer(
        &self,
        grant: &mut ChannelGrant,
        buffer: &Buffer,
        offset: usize,
        len: usize,
        dir: Direction,
    ) -> Result<MapInfo, HalError> {
        self.check_owner(grant)?;
        if grant.mapped.is_some() {
            return Err(HalError::MapOutstanding);
        }
        if len == 0 || offset.checked_add(len).is_none_or(|end| end > buffer.len()) {
            return Err(HalError::MapOutOfBuffer);
        }
        if !Arc::ptr_eq(buffer.memory(), &self.hal.mem) {
            return Err(HalError::ForeignBuffer);
        }
        let ch = self.shared.channel;
        let layout = self.layout;
        let max = (grant.map_registers as usize * PAGE_SIZE as usize).min(layout.max_transfer as usize);
        if len > max {
            return Err(HalError::MapTooLarge { len, max });
        }
        let direct = buffer.contiguous_run(offset, len).filter(|start| !out_of_reach(&layout, start.0, len));
        let bounced = direct.is_none();
        let programmed = direct.unwrap_or_else(|| grant.bounce_base());
        if bounced && dir == Direction::ToDevice {
            let mem = &self.hal.mem;
            let mut result = Ok(());
            buffer.with_slices(offset, len, |at, data| {
                let pa = PhysAddr(programmed.0 + (at - offset) as u64);
                if result.is_ok() {
                    result = mem.write_phys(pa, data);
                }
            })?;
            result?;
        }
        let units = len.div_ceil(layout.count_unit) as u32;
        let padded = len.div_ceil(layout.cycle) * layout.cycle;
        if bounced && padded > len {
            // The last cycle carries bytes past the range: give them a defined value rather
            // than whatever an earlier transfer left in the map register.
            self.hal.mem.write_phys(PhysAddr(programmed.0 + len as u64), &[0; 3][..padded - len])?;
        }
        self.program(ch, programmed, units, dir);
        grant.mapped = Some(Mapped { va: buffer.va().0, offset, len, dir, bounced, units });
        let (hal, own) = (&self.hal.stats, &self.shared.stats);
        bump([&hal.maps, &own.maps], 1);
        if bounced {
            bump([&hal.bounced_maps, &own.bounced_maps], 1);
            bump([&hal.bounced_bytes, &own.bounced_bytes], len as u64);
        }
        Ok(MapInfo { bounced, programmed, length: len as u32 })
    }

    /// Programs the channel through its ports: mask → clear flip-flop → mode → (EISA:
    /// extended mode) → address low/high → page → (EISA: high page) → count low/high →
    /// (EISA: count high byte) → unmask.
    fn program(&self, ch: DmaChannel, pa: PhysAddr, units: u32, dir: Direction) {
        let p = ports(ch);
        let n = ch.number() & 3;
        let mut mode = if self.desc.demand_mode { MODE_DEMAND } else { MODE_SINGLE };
        mode |= match dir {
            Direction::FromDevice => TYPE_WRITE,
            Direction::ToDevice => TYPE_READ,
        };
        if self.desc.auto_initialize {
            mode |= MODE_AUTO_INIT;
        }
        // PC/AT byte channels take a byte address and a 64 KiB page number; word channels a
        // word address (A16–A1) and a page whose bit 0 is ignored (A23–A17). EISA channels
        // here count bytes: byte address, page A23–A16, high page A31–A24.
        let (addr, page) = if self.layout.count_unit == 2 {
            ((pa.0 >> 1) as u16, ((pa.0 >> 16) as u8) & 0xFE)
        } else {
            (pa.0 as u16, (pa.0 >> 16) as u8)
        };
        let count = units - 1;
        let mut bus = self.hal.dma.lock();
        // A TC left from an earlier transfer on this channel must not be taken for this one's.
        bus.take_tc(ch);
        let ctl = &mut bus.ctl;
        ctl.io_write(p.single_mask, MASK_SET | n);
        ctl.io_write(p.clear_ff, 0);
        ctl.io_write(p.mode, mode | n);
        if let Some(ext) = self.layout.ext_mode {
            ctl.io_write(p.ext_mode, ext | n);
        }
        ctl.io_write(p.addr, addr as u8);
        ctl.io_write(p.addr, (addr >> 8) as u8);
        ctl.io_write(p.page, page);
        if self.layout.ext_mode.is_some() {
            ctl.io_write(p.high_page, (pa.0 >> 24) as u8);
        }
        ctl.io_write(p.count, count as u8);
        ctl.io_write(p.count, (count >> 8) as u8);
        if self.layout.ext_mode.is_some() {
            ctl.io_write(p.count_high, (count >> 16) as u8);
        }
        ctl.io_write(p.single_mask, n);
    }

    /// FlushAdapterBuffers: masks the channel; for FromDevice copies back from the map
    /// registers only the bytes the channel moved (from the count register and the TC
    /// status bit); returns the number of bytes the channel moved. Frees nothing.
    pub fn flush_adapter_buffers(
        &self,
        grant: &mut ChannelGrant,
        buffer: &Buffer,
        offset: usize,
        len: usize,
        dir: Direction,
    ) -> Result<u64, HalError> {
        self.check_owner(grant)?;
        let m = grant.mapped.as_ref().ok_or(HalError::NotMapped)?;
        if m.va != buffer.va().0 || m.offset != offset || m.len != len || m.dir != dir {
            return Err(HalError::FlushMismatch);
        }
        let ch = self.shared.channel;
        let (count, tc) = {
            let mut bus = self.hal.dma.lock();
            let p = ports(ch);
            bus.ctl.io_write(p.single_mask, MASK_SET | (ch.number() & 3));
            let tc = bus.take_tc(ch);
            (bus.read_count(ch, self.layout.ext_mode.is_some()), tc)
        };
        let moved_units =
            if tc { m.units } else { m.units.saturating_sub(residue_units(count, false, self.count_bits())) };
        let moved = (moved_units as usize * self.layout.count_unit).min(len);
        if m.bounced && dir == Direction::FromDevice && moved > 0 {
            let src = grant.bounce_base();
            let mem = &self.hal.mem;
            buffer.with_slices_mut(offset, moved, |at, out| {
                // The bounce area is grant-owned pool memory inside system memory.
                let _ = mem.read_phys(PhysAddr(src.0 + (at - offset) as u64), out);
            })?;
        }
        grant.mapped = None;
        let (hal, own) = (&self.hal.stats, &self.shared.stats);
        bump([&hal.flushes, &own.flushes], 1);
        bump([&hal.dma_bytes, &own.dma_bytes], moved as u64);
        Ok(moved as u64)
    }

    /// Width of the count register: 16 bits, 24 with the EISA count high byte.
    fn count_bits(&self) -> u32 {
        if self.layout.ext_mode.is_some() {
            24
        } else {
            16
        }
    }

    /// ReadDmaCounter: bytes remaining in the current transfer, from the count register
    /// (never more than the mapped length: a word channel's padding byte is not counted);
    /// 0 once TC has been reached (unless auto-initialize reloaded the count).
    pub fn read_dma_counter(&self, grant: &ChannelGrant) -> u32 {
        let ch = grant.adapter.channel;
        let bus = self.hal.dma.lock();
        let state = bus.ctl.channel_state(ch);
        let tc = !state.auto_init && (state.terminal_count || bus.tc_latch & (1 << ch.number()) != 0);
        let count = u32::from(state.current_count) | u32::from(state.count_high) << 16;
        let bytes = residue_units(count, tc, self.count_bits()) * self.layout.count_unit as u32;
        match &grant.mapped {
            Some(m) => bytes.min(m.len as u32),
            None => bytes,
        }
    }
}
