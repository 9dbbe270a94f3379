//! `scsiport exercise`: write a pattern over a disk through the whole stack, read it back, verify every byte.

use crate::machine::Machine;
use anyhow::{bail, Context};
use hal::{Buffer, Placement};
use port::{DataDirection, LuAddress, PassThrough, SrbStatus};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Where the exercise places its buffers in physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BufferPlacement {
    /// Physically contiguous below 16 MiB, aligned to the DMA page: no bounce needed.
    Contiguous,
    /// Every page somewhere else: the HAL bounces every transfer through map registers.
    Scattered,
    /// Above 16 MiB, out of the DMA controller's reach: every transfer bounces.
    Above16m,
}

impl BufferPlacement {
    fn placement(self, seed: u64) -> Placement {
        match self {
            BufferPlacement::Contiguous => Placement::Contiguous { below_16m: true, align: 128 << 10 },
            BufferPlacement::Scattered => Placement::Scattered { seed },
            BufferPlacement::Above16m => Placement::Above16M,
        }
    }
}

/// What the exercise does.
#[derive(Clone, Debug)]
pub struct ExerciseOptions {
    pub block: usize,
    pub passthrough: bool,
    pub placement: BufferPlacement,
    pub workers: usize,
    pub seed: u64,
    pub progress: bool,
}

/// The result (printed as JSON with `--json`).
#[derive(Clone, Debug, Serialize)]
pub struct ExerciseReport {
    pub verified: bool,
    pub mismatches: u64,
    pub first_mismatch: Option<u64>,
    pub bytes: u64,
    pub srbs: u64,
    pub dma_ops: u64,
    pub sub_transfers_per_srb: f64,
    pub bounced_bytes: u64,
    pub flushes: u64,
    pub cancelled_maps: u64,
    pub map_register_waits: u64,
    pub channel_waits: u64,
    pub violations: u64,
    pub class_pieces: u64,
    pub class_retries: u64,
    pub write_mib_per_s: f64,
    pub read_mib_per_s: f64,
    pub mib_per_s: f64,
    pub seconds: f64,
    pub passthrough: bool,
    pub channel: Option<u8>,
    /// With `--timing`: the modelled machine's DMA throughput.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<crate::timing::TimingReport>,
}

/// The pattern: each 8-byte word names its own disk offset, mixed with the seed, so a misplaced or stale block shows.
fn pattern_word(disk_offset: u64, seed: u64) -> u64 {
    let mut x = disk_offset ^ seed.rotate_left(17);
    x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29)
}

fn fill(buf: &Buffer, len: usize, disk_offset: u64, seed: u64) -> anyhow::Result<()> {
    buf.with_slices_mut(0, len, |off, s| {
        let base = disk_offset + off as u64;
        for (i, chunk) in s.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&pattern_word(base + 8 * i as u64, seed).to_le_bytes());
        }
    })?;
    Ok(())
}

/// Count mismatching words; returns (mismatches, first bad disk offset).
fn verify(buf: &Buffer, len: usize, disk_offset: u64, seed: u64) -> anyhow::Result<(u64, Option<u64>)> {
    let mut bad = 0u64;
    let mut first = None;
    buf.with_slices(0, len, |off, s| {
        let base = disk_offset + off as u64;
        for (i, chunk) in s.chunks_exact(8).enumerate() {
            let want = pattern_word(base + 8 * i as u64, seed).to_le_bytes();
            if chunk != want {
                bad += 1;
                first.get_or_insert(base + 8 * i as u64);
            }
        }
    })?;
    Ok((bad, first))
}

/// Run the exercise on the first disk of the machine's first adapter.
/// System memory for the workload: two buffers of `block` bytes per worker and 64 MiB besides, a power of two from
/// 64 MiB to 4 GiB.
pub fn memory_for(block: usize, workers: usize) -> crate::size::ByteSize {
    let need = block as u64 * workers.max(1) as u64 * 2 + (64 << 20);
    crate::size::ByteSize(need.next_power_of_two().clamp(64 << 20, 4 << 30))
}

pub fn run(machine: &Machine, opts: &ExerciseOptions) -> anyhow::Result<ExerciseReport> {
    let disk = machine.open_first_disk().context("opening the disk through the class driver")?;
    let disk = Arc::new(disk);
    let adapter = disk.adapter().clone();
    let size = disk.size_bytes();
    let bs = disk.block_size() as usize;
    if opts.block == 0 || !opts.block.is_multiple_of(bs) {
        bail!("--block {} must be a non-zero multiple of the {bs}-byte block size", opts.block);
    }
    let blocks_total = size / opts.block as u64;
    if blocks_total == 0 {
        bail!("the disk ({size} bytes) is smaller than one --block");
    }
    let before = adapter.stats();
    let class_before = disk.stats();
    let progress = if opts.progress {
        let pb = indicatif::ProgressBar::new(blocks_total * 2 * opts.block as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg:6} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        Some(pb)
    } else {
        None
    };
    let mismatches = AtomicU64::new(0);
    let first_bad = AtomicU64::new(u64::MAX);
    let failed = AtomicBool::new(false);
    let error: parking_lot::Mutex<Option<String>> = parking_lot::Mutex::new(None);
    let workers = opts.workers.max(1);
    let mut phase_secs = [0f64; 2];
    for (phase, write) in [(0usize, true), (1, false)] {
        if let Some(pb) = &progress {
            pb.set_message(if write { "write" } else { "read" });
        }
        let start = Instant::now();
        std::thread::scope(|s| {
            for w in 0..workers {
                let disk = disk.clone();
                let adapter = adapter.clone();
                let (mismatches, first_bad, failed, error, progress) =
                    (&mismatches, &first_bad, &failed, &error, &progress);
                s.spawn(move || {
                    let run = || -> anyhow::Result<()> {
                        let buf = machine
                            .memory()
                            .alloc(opts.block, opts.placement.placement(opts.seed ^ w as u64))
                            .context("allocating an exercise buffer in system memory")?;
                        let mut i = w as u64;
                        while i < blocks_total {
                            if failed.load(Ordering::Relaxed) {
                                return Ok(());
                            }
                            let off = i * opts.block as u64;
                            let lba = off / bs as u64;
                            if write {
                                fill(&buf, opts.block, off, opts.seed)?;
                            }
                            if opts.passthrough {
                                passthrough_io(&adapter, disk.address(), write, lba, (opts.block / bs) as u32, &buf)?;
                            } else if write {
                                disk.write(lba, &buf, 0, opts.block, false)?;
                            } else {
                                disk.read(lba, &buf, 0, opts.block)?;
                            }
                            if !write {
                                let (bad, first) = verify(&buf, opts.block, off, opts.seed)?;
                                if bad > 0 {
                                    mismatches.fetch_add(bad, Ordering::Relaxed);
                                    first_bad.fetch_min(first.unwrap_or(u64::MAX), Ordering::Relaxed);
                                }
                            }
                            if let Some(pb) = progress {
                                pb.inc(opts.block as u64);
                            }
                            i += workers as u64;
                        }
                        Ok(())
                    };
                    if let Err(e) = run() {
                        failed.store(true, Ordering::Relaxed);
                        error.lock().get_or_insert(format!("{e:#}"));
                    }
                });
            }
        });
        phase_secs[phase] = start.elapsed().as_secs_f64();
    }
    if let Some(pb) = &progress {
        pb.finish_and_clear();
    }
    if let Some(e) = error.lock().take() {
        bail!("{e}");
    }
    let after = adapter.stats();
    let class_after = disk.stats();
    let bytes = blocks_total * opts.block as u64;
    let srbs = after.srbs_completed - before.srbs_completed;
    let dma_ops = after.dma_ops - before.dma_ops;
    let mib = bytes as f64 / (1 << 20) as f64;
    let m = mismatches.load(Ordering::Relaxed);
    let fb = first_bad.load(Ordering::Relaxed);
    let hal = machine.hal().stats();
    Ok(ExerciseReport {
        verified: m == 0,
        mismatches: m,
        first_mismatch: (fb != u64::MAX).then_some(fb),
        bytes,
        srbs,
        dma_ops,
        sub_transfers_per_srb: if srbs > 0 { dma_ops as f64 / srbs as f64 } else { 0.0 },
        bounced_bytes: after.bounced_bytes - before.bounced_bytes,
        flushes: after.flushes - before.flushes,
        cancelled_maps: after.cancelled_maps - before.cancelled_maps,
        map_register_waits: hal.map_register_waits,
        channel_waits: after.channel_waits - before.channel_waits,
        violations: after.violations - before.violations,
        class_pieces: class_after.pieces - class_before.pieces,
        class_retries: class_after.retries - class_before.retries,
        write_mib_per_s: mib / phase_secs[0].max(1e-9),
        read_mib_per_s: mib / phase_secs[1].max(1e-9),
        mib_per_s: 2.0 * mib / (phase_secs[0] + phase_secs[1]).max(1e-9),
        seconds: phase_secs[0] + phase_secs[1],
        passthrough: opts.passthrough,
        channel: adapter.capabilities().dma_channel,
        timing: None,
    })
}

/// One READ(16)/WRITE(16) as a single pass-through SRB of any size.
fn passthrough_io(
    adapter: &port::AdapterHandle,
    address: LuAddress,
    write: bool,
    lba: u64,
    blocks: u32,
    buf: &Buffer,
) -> anyhow::Result<()> {
    let cdb = class::cdb::read_write(write, lba, blocks, false);
    let req = PassThrough {
        address,
        cdb,
        direction: if write { DataDirection::Out } else { DataDirection::In },
        buffer: Some(buf.clone()),
        offset: 0,
        length: buf.len() as u32,
        timeout_secs: 30,
        tagged: false,
    };
    let srb = adapter.pass_through_srb(&req)?;
    let done = adapter.execute(srb);
    if done.srb_status.status() != SrbStatus::SUCCESS {
        if done.srb_status.queue_frozen() {
            // Let the other workers' requests through to fail or finish on their own instead of waiting forever
            // behind the frozen queue.
            adapter.release_queue(address).wait();
        }
        bail!(
            "pass-through {} at LBA {lba} failed: {:?}, SCSI status {:#04x}, sense {:02x?}",
            if write { "WRITE" } else { "READ" },
            done.srb_status,
            done.scsi_status,
            done.sense()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_differs_between_offsets_and_seeds() {
        assert_ne!(pattern_word(0, 1), pattern_word(8, 1));
        assert_ne!(pattern_word(0, 1), pattern_word(0, 2));
    }
}
