//! MapTransfer, FlushAdapterBuffers and ReadDmaCounter for system DMA.

use std::sync::Arc;

use super::stats::bump;
use super::{AdapterObject, ChannelGrant, Direction, DmaBus, Hal, MapInfo};
use crate::{Buffer, DmaChannel, HalError, PhysAddr, ISA_DMA_LIMIT, PAGE_SIZE};

/// What a map left programmed, for the matching flush.
pub(crate) struct Mapped {
    va: u64,
    offset: usize,
    len: usize,
    dir: Direction,
    bounced: bool,
    /// Transfer cycles programmed (count register + 1).
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
}

fn ports(ch: DmaChannel) -> ChannelPorts {
    const PAGE: [u16; 8] = [0x87, 0x83, 0x81, 0x82, 0x8F, 0x8B, 0x89, 0x8A];
    let n = u16::from(ch.number());
    let (base, stride) = if ch.is_16bit() { (0xC0, 2) } else { (0x00, 1) };
    let reg = |r: u16| base + r * stride;
    ChannelPorts {
        addr: reg(2 * (n % 4)),
        count: reg(2 * (n % 4) + 1),
        page: PAGE[usize::from(ch.number())],
        status: reg(8),
        single_mask: reg(10),
        mode: reg(11),
        clear_ff: reg(12),
    }
}

/// Does a physically contiguous range need the map registers? When it reaches at or
/// above 16 MiB, crosses the channel's DMA page (the address register wraps without
/// carrying into the page register), or, on a word channel, starts or ends on an odd byte.
fn out_of_reach(ch: DmaChannel, start: u64, len: usize) -> bool {
    let end = start + len as u64;
    let page = ch.page_size();
    end > ISA_DMA_LIMIT
        || start / page != (end - 1) / page
        || (ch.is_16bit() && (!start.is_multiple_of(2) || !len.is_multiple_of(2)))
}

/// Units still to move from the count register: `(count + 1) & 0xFFFF`, where 0 means
/// none after TC and a whole 65536 when TC has not happened.
fn residue_units(count: u16, tc: bool) -> u32 {
    match (u32::from(count) + 1) & 0xFFFF {
        0 if tc => 0,
        0 => 0x1_0000,
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

    fn read_count(&mut self, ch: DmaChannel) -> u16 {
        let p = ports(ch);
        self.ctl.io_write(p.clear_ff, 0);
        let lo = self.ctl.io_read(p.count);
        let hi = self.ctl.io_read(p.count);
        u16::from_le_bytes([lo, hi])
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
        let max = (grant.map_registers as usize * PAGE_SIZE as usize).min(ch.page_size() as usize);
        if len > max {
            return Err(HalError::MapTooLarge { len, max });
        }
        let direct = buffer.contiguous_run(offset, len).filter(|start| !out_of_reach(ch, start.0, len));
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
        let unit = ch.unit();
        let units = len.div_ceil(unit) as u32;
        if bounced && !len.is_multiple_of(unit) {
            // The last word cycle carries one byte past the range: give it a defined value
            // rather than whatever an earlier transfer left in the map register.
            self.hal.mem.write_phys(PhysAddr(programmed.0 + len as u64), &[0])?;
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

    /// Programs the channel in the order DESIGN.md gives, through the I/O ports.
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
        // Byte channels take a byte address and a 64 KiB page number; word channels a
        // word address (A16–A1) and a page whose bit 0 is ignored (A23–A17).
        let (addr, page) = if ch.is_16bit() {
            ((pa.0 >> 1) as u16, ((pa.0 >> 16) as u8) & 0xFE)
        } else {
            (pa.0 as u16, (pa.0 >> 16) as u8)
        };
        let count = (units - 1) as u16;
        let mut bus = self.hal.dma.lock();
        // A TC left from an earlier transfer on this channel must not be taken for this one's.
        bus.take_tc(ch);
        let ctl = &mut bus.ctl;
        ctl.io_write(p.single_mask, MASK_SET | n);
        ctl.io_write(p.clear_ff, 0);
        ctl.io_write(p.mode, mode | n);
        ctl.io_write(p.addr, addr as u8);
        ctl.io_write(p.addr, (addr >> 8) as u8);
        ctl.io_write(p.page, page);
        ctl.io_write(p.count, count as u8);
        ctl.io_write(p.count, (count >> 8) as u8);
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
            (bus.read_count(ch), tc)
        };
        let moved_units = if tc { m.units } else { m.units.saturating_sub(residue_units(count, false)) };
        let moved = (moved_units as usize * ch.unit()).min(len);
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

    /// ReadDmaCounter: bytes remaining in the current transfer, from the count register
    /// (never more than the mapped length: a word channel's padding byte is not counted);
    /// 0 once TC has been reached (unless auto-initialize reloaded the count).
    pub fn read_dma_counter(&self, grant: &ChannelGrant) -> u32 {
        let ch = grant.adapter.channel;
        let bus = self.hal.dma.lock();
        let state = bus.ctl.channel_state(ch);
        let tc = !state.auto_init && (state.terminal_count || bus.tc_latch & (1 << ch.number()) != 0);
        let bytes = residue_units(state.current_count, tc) * ch.unit() as u32;
        match &grant.mapped {
            Some(m) => bytes.min(m.len as u32),
            None => bytes,
        }
    }
}
