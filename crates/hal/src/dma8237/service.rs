//! The transfer engine: DREQ service moving whole runs at memcpy speed while leaving
//! every register as the chip's cycle-by-cycle operation would.
//!
//! A run is bounded by the count (N−1 + 1 cycles left), the address register's wrap
//! (the page register never changes: 64 KiB on controller 1, 128 KiB of words on
//! controller 2) and the device. Within a run the addresses are physically contiguous,
//! so incrementing transfers hand the device a slice of system memory directly.

use super::{DmaChannel, DmaController, DmaDevice, ServiceOutcome, MODE_AUTO_INIT, MODE_DECREMENT};
use crate::SystemMemory;

impl DmaController {
    /// Transfers while the device asserts DREQ (or, in block mode, the channel's software
    /// request bit is set) and the channel is unmasked and enabled; stops at terminal count, when the
    /// device takes or supplies fewer bytes than offered, or when DREQ drops. Channel 4
    /// (cascade) is never serviced.
    pub fn service(&mut self, ch: DmaChannel, mem: &SystemMemory, dev: &mut dyn DmaDevice) -> ServiceOutcome {
        let mut out = ServiceOutcome::default();
        if ch.is_cascade() {
            return out;
        }
        let idx = usize::from(ch.0);
        let unit = ch.unit();
        while self.channel_enabled(ch) && (self.software_request(ch) || dev.dreq()) {
            let r = self.regs[idx];
            let decrement = r.mode & MODE_DECREMENT != 0;
            let remaining = u32::from(r.cur_count) + 1;
            let to_wrap = if decrement { u32::from(r.cur_addr) + 1 } else { 0x1_0000 - u32::from(r.cur_addr) };
            let units = remaining.min(to_wrap);
            // Lowest address register value the run touches.
            let low = if decrement { r.cur_addr - (units - 1) as u16 } else { r.cur_addr };
            let page_base = if ch.is_16bit() { u64::from(r.page & 0xFE) << 16 } else { u64::from(r.page) << 16 };
            let pa = page_base | (u64::from(low) << (unit - 1));
            let bytes = units as usize * unit;
            let moved = match (r.mode >> 2) & 3 {
                1 => self.run_to_memory(mem, dev, pa, bytes, unit, decrement),
                2 => self.run_from_memory(mem, dev, pa, bytes, unit, decrement),
                // Verify (and the illegal type 11): cycles run, no memory strobes.
                _ => dev.dma_read(&mut self.scratch[..bytes]).min(bytes),
            };
            // A word cycle happens once the device has handled any byte of it.
            let done = (moved.div_ceil(unit) as u32).min(units);
            if done == 0 {
                break;
            }
            out.bytes += u64::from(done) * unit as u64;
            let reg = &mut self.regs[idx];
            reg.cur_addr =
                if decrement { reg.cur_addr.wrapping_sub(done as u16) } else { reg.cur_addr.wrapping_add(done as u16) };
            // Count holds N−1 and TC is its roll-over from 0 to 0xFFFF (datasheet).
            reg.cur_count = (u32::from(reg.cur_count).wrapping_sub(done) & 0xFFFF) as u16;
            if done == remaining {
                self.reach_terminal_count(ch);
                dev.terminal_count();
                out.terminal_count = true;
                break;
            }
            if done < units {
                break;
            }
        }
        out
    }

    /// A request register bit counts as DREQ only in block mode (8237A datasheet,
    /// request register: software requests are serviced in block mode).
    fn software_request(&self, ch: DmaChannel) -> bool {
        self.chips[ch.chip()].request & ch.bit() != 0 && self.regs[usize::from(ch.0)].mode >> 6 == 2
    }

    /// TC: set the status bit, clear the software request, then either reload the
    /// current registers from the base registers (auto-initialize) or mask the channel.
    fn reach_terminal_count(&mut self, ch: DmaChannel) {
        let chip = &mut self.chips[ch.chip()];
        chip.tc |= ch.bit();
        chip.request &= !ch.bit();
        let r = &mut self.regs[usize::from(ch.0)];
        if r.mode & MODE_AUTO_INIT != 0 {
            r.cur_addr = r.base_addr;
            r.cur_count = r.base_count;
        } else {
            chip.mask |= ch.bit();
        }
    }

    /// Device → memory. `pa` is the run's lowest byte; in decrement mode the device's
    /// stream starts at the run's highest unit and goes down.
    fn run_to_memory(
        &mut self,
        mem: &SystemMemory,
        dev: &mut dyn DmaDevice,
        pa: u64,
        bytes: usize,
        unit: usize,
        decrement: bool,
    ) -> usize {
        if !decrement {
            if let Some(n) = mem.dma_to_memory(pa, bytes, |dst| dev.dma_read(dst)) {
                return n.min(bytes);
            }
        }
        let moved = dev.dma_read(&mut self.scratch[..bytes]).min(bytes);
        let whole = moved.div_ceil(unit) * unit;
        if decrement {
            reverse_units(&mut self.scratch[..whole], unit);
            // The `whole` bytes moved occupy the top of the run.
            store_clipped(mem, pa + (bytes - whole) as u64, &self.scratch[..whole]);
        } else {
            store_clipped(mem, pa, &self.scratch[..whole]);
        }
        moved
    }

    /// Memory → device.
    fn run_from_memory(
        &mut self,
        mem: &SystemMemory,
        dev: &mut dyn DmaDevice,
        pa: u64,
        bytes: usize,
        unit: usize,
        decrement: bool,
    ) -> usize {
        if !decrement {
            if let Some(n) = mem.dma_from_memory(pa, bytes, |src| dev.dma_write(src)) {
                return n.min(bytes);
            }
        }
        load_clipped(mem, pa, &mut self.scratch[..bytes]);
        if decrement {
            reverse_units(&mut self.scratch[..bytes], unit);
        }
        dev.dma_write(&self.scratch[..bytes]).min(bytes)
    }
}

/// Reverses the order of `unit`-byte units, keeping the byte order inside each unit
/// (a word cycle puts the low byte at the lower address whichever way the address runs).
fn reverse_units(buf: &mut [u8], unit: usize) {
    buf.reverse();
    if unit == 2 {
        for w in buf.chunks_exact_mut(2) {
            w.swap(0, 1);
        }
    }
}

/// Writes what lies inside system memory; cycles addressing beyond it go nowhere.
fn store_clipped(mem: &SystemMemory, pa: u64, data: &[u8]) {
    let inside = mem.size().saturating_sub(pa).min(data.len() as u64) as usize;
    if inside > 0 {
        // The range was clipped to memory, so this write cannot fail.
        let _ = mem.dma_to_memory(pa, inside, |dst| dst.copy_from_slice(&data[..inside]));
    }
}

/// Reads what lies inside system memory; beyond it the bus floats high (0xFF).
fn load_clipped(mem: &SystemMemory, pa: u64, out: &mut [u8]) {
    let inside = mem.size().saturating_sub(pa).min(out.len() as u64) as usize;
    let (data, beyond) = out.split_at_mut(inside);
    if !data.is_empty() {
        let _ = mem.dma_from_memory(pa, data.len(), |src| data.copy_from_slice(src));
    }
    beyond.fill(0xFF);
}
