//! The transfer engine: DREQ service moving whole runs at memcpy speed while leaving
//! every register as the chip's cycle-by-cycle operation would.
//!
//! A run is bounded by the count (N−1 + 1 cycles left), on a PC/AT the address
//! register's wrap (the page register never changes: 64 KiB on controller 1, 128 KiB of
//! words on controller 2), the staging buffer and the device. Within a run the addresses
//! are physically contiguous, so incrementing transfers hand the device a slice of
//! system memory directly.

use super::{
    DmaChannel, DmaController, DmaDevice, ServiceOutcome, CMD_COMPRESSED, CMD_DACK_ACTIVE_HIGH, MODE_AUTO_INIT,
    MODE_DECREMENT,
};
use crate::clock::RunShape;
use crate::SystemMemory;

/// The longest run staged through the scratch buffer.
const SCRATCH_CYCLES_BYTES: usize = super::SCRATCH_BYTES;

/// Mode register bits 7–6.
const MODE_SINGLE: u8 = 1;
const MODE_BLOCK: u8 = 2;

impl DmaController {
    /// Serves one channel with its device attached, as the bus would with no other
    /// channel requesting:
    /// - demand mode transfers while the device holds DREQ and stops when it drops it
    ///   (a later call resumes from the current registers);
    /// - single mode gives the bus back after every cycle and takes it again while DREQ
    ///   stays up, which with no competitor moves the same bytes;
    /// - block mode, once started by DREQ or by a software request (the request register,
    ///   which no mask stops), runs to terminal count whatever DREQ does: cycles the
    ///   device does not answer read the floating bus (0xFF) into memory or lose the byte.
    ///
    /// A verify transfer runs the cycles without strobes: no data moves and the device
    /// supplies none. Stops at terminal count or when the device answers fewer bytes
    /// than offered (demand and single mode). Channel 4 (cascade) is never serviced.
    pub fn service(&mut self, ch: DmaChannel, mem: &SystemMemory, dev: &mut dyn DmaDevice) -> ServiceOutcome {
        let out = self.serve(ch, mem, dev, u32::MAX);
        if out.bytes > 0 || out.terminal_count {
            self.served(ch);
        }
        out
    }

    /// Serves several channels, each with its device, through the priority encoders as
    /// the command registers select (fixed: 0 highest on each chip, controller 1 through
    /// channel 4; rotating: the channel just served becomes the lowest). Demand and block
    /// mode hold the bus until DREQ drops or terminal count; single mode gives it back
    /// after each cycle, so requesting channels take turns. Returns each device's outcome
    /// in the order given; stops when no listed channel requests or none can progress.
    pub fn service_all(
        &mut self,
        mem: &SystemMemory,
        devices: &mut [(DmaChannel, &mut dyn DmaDevice)],
    ) -> Vec<ServiceOutcome> {
        let mut outs = vec![ServiceOutcome::default(); devices.len()];
        // Channels that could not progress this call (their device answered nothing).
        let mut stalled = 0u8;
        loop {
            for (ch, dev) in devices.iter() {
                let live = dev.dreq() && stalled & (1 << ch.0) == 0;
                self.set_dreq(*ch, live);
            }
            let Some(ch) = self.next_channel() else { break };
            let Some(i) = devices.iter().position(|(c, _)| *c == ch) else {
                // A software request on a channel nobody listed: its cycles go unanswered.
                stalled |= 1 << ch.0;
                self.chips[ch.chip()].request &= !ch.bit();
                continue;
            };
            let single = self.regs[usize::from(ch.0)].mode >> 6 == MODE_SINGLE;
            let others = devices.iter().any(|(c, d)| *c != ch && d.dreq() && stalled & (1 << c.0) == 0);
            let limit = if single && others { 1 } else { u32::MAX };
            let out = self.serve(ch, mem, &mut *devices[i].1, limit);
            if out.bytes == 0 && !out.terminal_count {
                stalled |= 1 << ch.0;
                continue;
            }
            self.served(ch);
            outs[i].bytes += out.bytes;
            outs[i].terminal_count |= out.terminal_count;
        }
        for (ch, dev) in devices.iter() {
            self.set_dreq(*ch, dev.dreq());
        }
        outs
    }

    /// The transfer engine behind `service` and `service_all`: at most `limit` cycles.
    fn serve(&mut self, ch: DmaChannel, mem: &SystemMemory, dev: &mut dyn DmaDevice, limit: u32) -> ServiceOutcome {
        let mut out = ServiceOutcome::default();
        if ch.is_cascade() {
            return out;
        }
        let idx = usize::from(ch.0);
        let geo = self.geometry(ch);
        let unit = geo.bytes_per_cycle;
        let mut left = limit;
        let mut block_running = false;
        let mut new_grant = true;
        loop {
            let level = dev.dreq();
            self.set_dreq(ch, level);
            if !self.path_open(ch) {
                break;
            }
            let r = self.regs[idx];
            let mode = r.mode >> 6;
            let chip = &self.chips[ch.chip()];
            let hw = chip.hw_requests() & !chip.mask & ch.bit() != 0;
            let sw = mode == MODE_BLOCK && chip.request & ch.bit() != 0;
            if !(block_running || hw || sw) || left == 0 {
                break;
            }
            let block = mode == MODE_BLOCK;
            block_running = block;
            let decrement = r.mode & MODE_DECREMENT != 0;
            let count = self.count_of(idx);
            let count_mask = if self.eisa { 0xFF_FFFF } else { 0xFFFF };
            let remaining = (count + 1).div_ceil(geo.count_step);
            let pa = self.address_of(idx, geo);
            // A PC/AT address register wraps inside its page; the EISA counter runs on.
            let to_wrap = if self.eisa {
                u32::MAX
            } else {
                let reg = u32::from(r.cur_addr);
                if decrement {
                    reg + 1
                } else {
                    0x1_0000 - reg
                }
            };
            let scratch_cycles = (SCRATCH_CYCLES_BYTES / unit) as u32;
            let cycles = remaining.min(to_wrap).min(left).min(scratch_cycles);
            let bytes = cycles as usize * unit;
            let low = if decrement { pa.wrapping_sub(((cycles - 1) as u64) * unit as u64) } else { pa };
            let dack = self.chips[ch.chip()].command & CMD_DACK_ACTIVE_HIGH == 0;
            let moved = match ((r.mode >> 2) & 3, dack) {
                // DACK of the wrong sense: the device never sees its acknowledge, the
                // cycles run against a floating data bus.
                (1, false) => {
                    self.fill_floating(mem, low, bytes);
                    bytes
                }
                (2, false) => bytes,
                (1, true) => self.run_to_memory(mem, dev, Run { pa: low, bytes, unit, decrement, block }),
                (2, true) => self.run_from_memory(mem, dev, Run { pa: low, bytes, unit, decrement, block }),
                // Verify (and the illegal type 11): cycles without strobes.
                _ if dack => dev.verify_cycles(cycles as usize).min(cycles as usize) * unit,
                _ => bytes,
            };
            // A cycle happens once the device has handled any byte of it; in block mode
            // every cycle happens.
            let done = if block { cycles } else { (moved.div_ceil(unit) as u32).min(cycles) };
            if done == 0 {
                break;
            }
            left -= done;
            out.bytes += u64::from(done) * unit as u64;
            // Timing off (the default) costs this one test per run of cycles; the charge
            // itself is out of line so it does not weigh on the transfer path's code.
            if self.timing.is_some() {
                self.charge_run(ch, r, done, new_grant);
            }
            new_grant = false;
            let step = u64::from(done) * unit as u64;
            let new_pa = if decrement { pa.wrapping_sub(step) } else { pa.wrapping_add(step) };
            self.set_address(idx, geo, new_pa, done, decrement);
            // Count holds N−1 and TC is its roll-over from 0 (datasheet).
            self.set_count(idx, count.wrapping_sub(done * geo.count_step) & count_mask);
            if done == remaining {
                self.reach_terminal_count(ch);
                dev.terminal_count();
                out.terminal_count = true;
                break;
            }
            if done < cycles && !block {
                break;
            }
        }
        self.set_dreq(ch, dev.dreq());
        out
    }

    /// Charges a run of `done` cycles, which started from the registers `r`, to the
    /// virtual clock (`crate::clock`, `docs/dma.md` "Virtual time").
    #[cold]
    #[inline(never)]
    fn charge_run(&mut self, ch: DmaChannel, r: super::Regs, done: u32, new_grant: bool) {
        let Some(t) = self.timing else { return };
        let command = self.chips[ch.chip()].command;
        let clocks = t.run_clocks(RunShape {
            cycles: u64::from(done),
            first_address: r.cur_addr,
            decrement: r.mode & MODE_DECREMENT != 0,
            compressed: command & CMD_COMPRESSED != 0,
            single: r.mode >> 6 == MODE_SINGLE,
            new_grant,
            eisa_timing: self.eisa.then_some((r.ext_mode >> 4) & 3),
        });
        let ps = t.clocks(clocks);
        let idx = usize::from(ch.0);
        self.vtime.per_channel[idx] += ps;
        self.vtime.total += ps;
        if let Some(c) = &self.clock {
            c.advance(ps);
        }
    }

    /// The current count: 16 bits, or 24 with the EISA count high byte.
    fn count_of(&self, idx: usize) -> u32 {
        let r = &self.regs[idx];
        if self.eisa {
            u32::from(r.cur_count) | u32::from(r.cur_count_high) << 16
        } else {
            u32::from(r.cur_count)
        }
    }

    fn set_count(&mut self, idx: usize, v: u32) {
        let r = &mut self.regs[idx];
        r.cur_count = v as u16;
        if self.eisa {
            r.cur_count_high = (v >> 16) as u8;
        }
    }

    /// The physical address of the channel's next cycle.
    fn address_of(&self, idx: usize, geo: super::Geometry) -> u64 {
        let r = &self.regs[idx];
        let high = if self.eisa { u64::from(r.high_page) << 24 } else { 0 };
        if geo.shifted {
            high | u64::from(r.page & 0xFE) << 16 | u64::from(r.cur_addr) << 1
        } else {
            high | u64::from(r.page) << 16 | u64::from(r.cur_addr)
        }
    }

    /// Advances the address after `done` cycles: on a PC/AT only the address register
    /// moves (by one per cycle, bytes or words); on EISA the whole 32-bit counter.
    fn set_address(&mut self, idx: usize, geo: super::Geometry, new_pa: u64, done: u32, decrement: bool) {
        let eisa = self.eisa;
        let r = &mut self.regs[idx];
        if !eisa {
            let d = done as u16;
            r.cur_addr = if decrement { r.cur_addr.wrapping_sub(d) } else { r.cur_addr.wrapping_add(d) };
            return;
        }
        let pa = new_pa & 0xFFFF_FFFF;
        if geo.shifted {
            r.cur_addr = (pa >> 1) as u16;
            r.page = ((pa >> 16) as u8 & 0xFE) | (r.page & 1);
        } else {
            r.cur_addr = pa as u16;
            r.page = (pa >> 16) as u8;
        }
        r.high_page = (pa >> 24) as u8;
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
            r.cur_count_high = r.base_count_high;
            r.page = r.base_page;
            r.high_page = r.base_high_page;
        } else {
            chip.mask |= ch.bit();
        }
    }

    /// Memory write cycles with nothing driving the data bus.
    fn fill_floating(&mut self, mem: &SystemMemory, pa: u64, bytes: usize) {
        self.scratch[..bytes].fill(0xFF);
        store_clipped(mem, pa, &self.scratch[..bytes]);
    }

    /// Device → memory. `pa` is the run's lowest byte; in decrement mode the device's
    /// stream starts at the run's highest unit and goes down.
    fn run_to_memory(&mut self, mem: &SystemMemory, dev: &mut dyn DmaDevice, run: Run) -> usize {
        let Run { pa, bytes, unit, decrement, block } = run;
        if !decrement {
            if let Some(n) = mem.dma_to_memory(pa, bytes, |dst| {
                let moved = dev.dma_read(dst).min(bytes);
                // The rest of a started word, and in block mode every cycle the device
                // did not answer, is written from a floating data bus.
                let end = if block { bytes } else { moved.div_ceil(unit) * unit };
                dst[moved..end].fill(0xFF);
                moved
            }) {
                return n;
            }
        }
        // Cycles the device does not answer see a floating data bus.
        self.scratch[..bytes].fill(0xFF);
        let moved = dev.dma_read(&mut self.scratch[..bytes]).min(bytes);
        let whole = if block { bytes } else { moved.div_ceil(unit) * unit };
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
    fn run_from_memory(&mut self, mem: &SystemMemory, dev: &mut dyn DmaDevice, run: Run) -> usize {
        let Run { pa, bytes, unit, decrement, .. } = run;
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

/// One run of cycles over physically contiguous addresses: `pa` is its lowest byte.
#[derive(Clone, Copy)]
struct Run {
    pa: u64,
    bytes: usize,
    unit: usize,
    decrement: bool,
    block: bool,
}

/// Reverses the order of `unit`-byte units, keeping the byte order inside each unit
/// (a word cycle puts the low byte at the lower address whichever way the address runs).
fn reverse_units(buf: &mut [u8], unit: usize) {
    buf.reverse();
    if unit > 1 {
        for w in buf.chunks_exact_mut(unit) {
            w.reverse();
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
