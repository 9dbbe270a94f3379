//! `exercise --timing PRESET`: the throughput the modelled machine's DMA would have had, from the HAL's virtual
//! clock (`docs/dma.md`, "Virtual time").

use hal::{DmaChannel, DmaController, DmaDevice, MachineTiming, SystemMemory};
use serde::Serialize;

/// One channel width in one transfer mode (and, on EISA, one timing type).
#[derive(Clone, Debug, Serialize)]
pub struct ModeRow {
    pub width_bits: u8,
    pub mode: &'static str,
    /// EISA timing type: `compatible`, `a`, `b`, `c`; absent on a PC/AT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eisa_timing: Option<&'static str>,
    pub bytes: u64,
    pub virtual_s: f64,
    pub virtual_kib_per_s: f64,
}

/// The modelled machine's figures: the table, and the DMA of the exercise itself.
#[derive(Clone, Debug, Serialize)]
pub struct TimingReport {
    pub preset: &'static str,
    /// The modelled machine's time for the exercise's I/O, and the bytes moved over that time: the SCSI phases
    /// outside the data phase, plus the data phase, whose pace the slower of the DMA and the SCSI bus sets (the
    /// card's FIFO lets the two run together).
    pub virtual_s: f64,
    pub virtual_kib_per_s: f64,
    /// Virtual time of the DMA transfers alone, and their rate.
    pub dma_virtual_s: f64,
    pub dma_virtual_kib_per_s: f64,
    /// Virtual time of all SCSI bus phases, and of the data phases among them.
    pub scsi_virtual_s: f64,
    pub scsi_data_virtual_s: f64,
    pub modes: Vec<ModeRow>,
}

/// The preset of that name, or an error listing the presets.
pub fn preset(name: &str) -> anyhow::Result<MachineTiming> {
    MachineTiming::preset(name).ok_or_else(|| {
        let names: Vec<&str> = MachineTiming::PRESETS.iter().map(|p| p.name).collect();
        anyhow::anyhow!("--timing {name}: no such machine (one of {})", names.join(", "))
    })
}

/// A device that takes every byte offered while it has room.
struct Sink(usize);

impl DmaDevice for Sink {
    fn dreq(&self) -> bool {
        self.0 > 0
    }
    fn dma_write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.0);
        self.0 -= n;
        n
    }
    fn dma_read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.0);
        self.0 -= n;
        n
    }
}

const MODES: [(&str, u8); 3] = [("single", 0x40), ("demand", 0x00), ("block", 0x80)];
const EISA_TYPES: [&str; 4] = ["compatible", "a", "b", "c"];
/// Bytes each table row moves: one 64 KiB programming of the channel.
const ROW_BYTES: usize = 64 << 10;

/// Moves 64 KiB memory → device on `channel` in one programming and returns its virtual seconds.
fn one_row(timing: MachineTiming, channel: u8, mode: u8, ext: Option<u8>, mem: &SystemMemory) -> f64 {
    let mut c = if timing.is_eisa() { DmaController::eisa() } else { DmaController::new() };
    c.set_timing(Some(timing));
    let ch = DmaChannel::new(channel).expect("a device channel");
    let n = channel & 3;
    let (base, stride): (u16, u16) = if channel >= 4 { (0xC0, 2) } else { (0, 1) };
    let reg = |r: u16| base + r * stride;
    let unit = match ext {
        Some(e) => [1usize, 2, 4, 2][usize::from((e >> 2) & 3)],
        None if channel >= 4 => 2,
        None => 1,
    };
    // Counts in words only for the PC/AT word channels (EISA here counts bytes).
    let count = if ext.is_none() { ROW_BYTES / unit - 1 } else { ROW_BYTES - 1 };
    c.io_write(reg(10), 0x04 | n);
    c.io_write(reg(12), 0);
    c.io_write(reg(11), mode | 0x08 | n);
    if let Some(e) = ext {
        c.io_write(if channel >= 4 { 0x4D6 } else { 0x40B }, e | n);
    }
    let k = u16::from(n);
    for b in [0u8, 0] {
        c.io_write(reg(2 * k), b);
    }
    for b in [count as u8, (count >> 8) as u8] {
        c.io_write(reg(2 * k + 1), b);
    }
    if ext.is_some() {
        let high = if channel >= 4 { 0x4C2 + 4 * (k) } else { 0x401 + 2 * k };
        c.io_write(high, (count >> 16) as u8);
    }
    c.io_write(reg(10), n);
    let out = c.service(ch, mem, &mut Sink(ROW_BYTES));
    debug_assert!(out.terminal_count);
    c.virtual_time().total as f64 / 1e12
}

/// The table for a machine: 8- and 16-bit channels (and 32-bit on EISA) in single, demand and block mode; on EISA
/// each in every timing type.
pub fn mode_table(timing: MachineTiming) -> anyhow::Result<Vec<ModeRow>> {
    let mem = SystemMemory::new(1 << 20)?;
    let mut rows = Vec::new();
    let widths: &[(u8, u8, u8)] =
        if timing.is_eisa() { &[(8, 1, 0x00), (16, 5, 0x0C), (32, 1, 0x08)] } else { &[(8, 1, 0), (16, 5, 0)] };
    for &(bits, channel, size) in widths {
        for (mode_name, mode) in MODES {
            let types: Vec<(Option<&'static str>, Option<u8>)> = if timing.is_eisa() {
                EISA_TYPES.iter().enumerate().map(|(t, name)| (Some(*name), Some(size | ((t as u8) << 4)))).collect()
            } else {
                vec![(None, None)]
            };
            for (eisa_timing, ext) in types {
                let s = one_row(timing, channel, mode, ext, &mem);
                rows.push(ModeRow {
                    width_bits: bits,
                    mode: mode_name,
                    eisa_timing,
                    bytes: ROW_BYTES as u64,
                    virtual_s: s,
                    virtual_kib_per_s: ROW_BYTES as f64 / 1024.0 / s,
                });
            }
        }
    }
    Ok(rows)
}

/// The virtual time of an exercise, from its parts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Measured {
    /// Bytes the DMA moved, and the picoseconds it took.
    pub dma_bytes: u64,
    pub dma_ps: u64,
    /// Picoseconds of all SCSI phases, and of the data phases among them.
    pub scsi_ps: u64,
    pub scsi_data_ps: u64,
}

/// The report after an exercise on a machine built with `timing`.
pub fn report(timing: MachineTiming, m: Measured) -> anyhow::Result<TimingReport> {
    let s = |ps: u64| ps as f64 / 1e12;
    let rate = |secs: f64| if secs > 0.0 { m.dma_bytes as f64 / 1024.0 / secs } else { 0.0 };
    let serial = m.scsi_ps.saturating_sub(m.scsi_data_ps);
    let virtual_s = s(serial + m.dma_ps.max(m.scsi_data_ps));
    Ok(TimingReport {
        preset: timing.name,
        virtual_s,
        virtual_kib_per_s: rate(virtual_s),
        dma_virtual_s: s(m.dma_ps),
        dma_virtual_kib_per_s: rate(s(m.dma_ps)),
        scsi_virtual_s: s(m.scsi_ps),
        scsi_data_virtual_s: s(m.scsi_data_ps),
        modes: mode_table(timing)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(rows: &'a [ModeRow], bits: u8, mode: &str, t: Option<&str>) -> &'a ModeRow {
        rows.iter().find(|r| r.width_bits == bits && r.mode == mode && r.eisa_timing == t).expect("row")
    }

    #[test]
    fn pc_at_table_follows_the_8237_states() {
        let rows = mode_table(MachineTiming::PC_AT_8MHZ).unwrap();
        assert_eq!(rows.len(), 6);
        // 65536 transfers × 4 clocks + 256 S1 + 3 hand-over clocks, 250 ns each.
        let demand8 = row(&rows, 8, "demand", None);
        assert!((demand8.virtual_s - 262_403.0 * 250e-9).abs() < 1e-12, "{demand8:?}");
        // Single mode: S1 and a hand-over every transfer, 8 clocks a byte.
        assert!((row(&rows, 8, "single", None).virtual_s - 65536.0 * 8.0 * 250e-9).abs() < 1e-12);
        // Block equals demand for a device that keeps up; 16-bit moves 2 bytes per transfer.
        assert_eq!(row(&rows, 8, "block", None).virtual_s, demand8.virtual_s);
        let demand16 = row(&rows, 16, "demand", None);
        assert!((demand16.virtual_s - (32768.0 * 4.0 + 128.0 + 3.0) * 250e-9).abs() < 1e-12);
    }

    #[test]
    fn eisa_table_has_every_width_mode_and_timing_type() {
        let rows = mode_table(MachineTiming::EISA_8MHZ).unwrap();
        assert_eq!(rows.len(), 3 * 3 * 4);
        let bclk = 1.0 / 8.25e6;
        let c32 = row(&rows, 32, "demand", Some("c"));
        assert!((c32.virtual_s - (16384.0 + 4.0) * bclk).abs() < 1e-9, "{c32:?}");
        let compat8 = row(&rows, 8, "demand", Some("compatible"));
        assert!((compat8.virtual_s - (65536.0 * 8.0 + 4.0) * bclk).abs() < 1e-9);
    }

    #[test]
    fn unknown_presets_are_refused_by_name() {
        let e = preset("pc-xt").unwrap_err().to_string();
        assert!(e.contains("pc-at-8mhz"), "{e}");
    }
}
