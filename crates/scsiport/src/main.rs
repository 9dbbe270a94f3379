//! The `scsiport` command.

use anyhow::Context;
use clap::{Parser, Subcommand};
use scsiport::config::{BackendKind, Config, HbaKind};
use scsiport::exercise::{BufferPlacement, ExerciseOptions};
use scsiport::machine::Machine;
use scsiport::size::ByteSize;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

mod ctl;
mod trace_cmd;

#[derive(Parser)]
#[command(
    name = "scsiport",
    version,
    about = "SCSI port/miniport stack for system-DMA host adapters, served over iSCSI and NBD"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configured disks over NBD and iSCSI (embedded default without --config).
    Serve {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// NBD listen address.
        #[arg(long)]
        nbd_listen: Option<SocketAddr>,
        /// iSCSI listen address.
        #[arg(long)]
        iscsi_listen: Option<SocketAddr>,
        /// Do not start the NBD server.
        #[arg(long)]
        no_nbd: bool,
        /// Do not start the iSCSI target.
        #[arg(long)]
        no_iscsi: bool,
        /// Size of the first disk.
        #[arg(long)]
        disk_size: Option<ByteSize>,
        /// Image file of the first disk.
        #[arg(long)]
        disk_path: Option<PathBuf>,
        /// Keep the first disk in RAM instead of a file.
        #[arg(long)]
        ram: bool,
        /// Verifier mode: strict, warn or off.
        #[arg(long)]
        verifier: Option<String>,
        /// A miniport built against include/scsiport/miniport.h (shared library) for the first adapter's card.
        #[arg(long)]
        miniport: Option<PathBuf>,
    },
    /// Talk to a running `scsiport serve` over its control socket (docs/control.md).
    Ctl {
        /// The control socket (default ./scsiport-data/control.sock).
        #[arg(long, global = true)]
        socket: Option<PathBuf>,
        /// Print the answer as one JSON object.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: ctl::CtlCommand,
    },
    /// Write a pattern over a RAM disk through the whole stack, read it back and verify every byte.
    Exercise {
        #[arg(long, default_value = "256MiB")]
        size: ByteSize,
        #[arg(long, default_value = "1MiB")]
        block: ByteSize,
        /// DMA channel of the adapter (0-3 8-bit, 5-7 16-bit).
        #[arg(long, default_value_t = 5)]
        channel: u8,
        /// Send each block as one pass-through SRB (several DMA operations per SRB).
        #[arg(long)]
        passthrough: bool,
        #[arg(long, value_enum, default_value_t = BufferPlacement::Contiguous)]
        placement: BufferPlacement,
        /// Threads issuing requests.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Tagged commands outstanding per logical unit (1: no tagged queuing).
        #[arg(long, default_value_t = hba::DEFAULT_QUEUE_DEPTH)]
        queue_depth: u8,
        #[arg(long, default_value_t = 0x5C51_9027)]
        seed: u64,
        /// The host adapter card.
        #[arg(long, value_enum, default_value_t = HbaKind::Reference)]
        hba: HbaKind,
        /// A miniport built against include/scsiport/miniport.h (shared library) to drive the card.
        #[arg(long)]
        miniport: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Also report the modelled machine's DMA throughput in virtual time: pc-at-8mhz, pc-at-6mhz or eisa-8mhz
        /// (which also makes the machine EISA).
        #[arg(long)]
        timing: Option<String>,
    },
    /// Run the exercise workload with the trace on; write Chrome trace-event JSON and an SVG timeline.
    Trace {
        /// Chrome trace-event JSON (opens in Perfetto and chrome://tracing).
        #[arg(long)]
        out: Option<PathBuf>,
        /// SVG timeline: one lane per DMA channel, per LU, per SRB.
        #[arg(long)]
        svg: Option<PathBuf>,
        #[arg(long, default_value = "1MiB")]
        size: ByteSize,
        #[arg(long, default_value = "64KiB")]
        block: ByteSize,
        #[arg(long, default_value_t = 5)]
        channel: u8,
        /// Send each block as one pass-through SRB (several DMA operations per SRB).
        #[arg(long)]
        passthrough: bool,
        #[arg(long, value_enum, default_value_t = BufferPlacement::Scattered)]
        placement: BufferPlacement,
        #[arg(long, default_value_t = 1)]
        workers: usize,
        #[arg(long, default_value_t = 0x5C51_9027)]
        seed: u64,
        /// Most events kept.
        #[arg(long, default_value_t = 2_000_000)]
        limit: usize,
        #[arg(long, default_value_t = 1100)]
        svg_width: u32,
        /// SRB lanes drawn in the SVG.
        #[arg(long, default_value_t = 24)]
        svg_srb_lanes: usize,
        /// Run the same workload with the trace off (measures what recording costs).
        #[arg(long)]
        off: bool,
        /// A miniport built against include/scsiport/miniport.h (shared library) to drive the card.
        #[arg(long)]
        miniport: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Draw the timeline in the modelled machine's virtual time: pc-at-8mhz, pc-at-6mhz or eisa-8mhz (which also
        /// makes the machine EISA).
        #[arg(long)]
        timing: Option<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("scsiport: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Ctl { socket, json, command } => ctl::run(socket, json, command),
        Command::Serve {
            config,
            nbd_listen,
            iscsi_listen,
            no_nbd,
            no_iscsi,
            disk_size,
            disk_path,
            ram,
            verifier,
            miniport,
        } => {
            let mut cfg = match &config {
                Some(p) => {
                    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                    Config::from_toml(&text).with_context(|| format!("in {}", p.display()))?
                }
                None => Config::default(),
            };
            if let Some(a) = nbd_listen {
                cfg.nbd.listen = a;
            }
            if let Some(a) = iscsi_listen {
                cfg.iscsi.listen = a;
            }
            cfg.nbd.enabled &= !no_nbd;
            cfg.iscsi.enabled &= !no_iscsi;
            if let Some(v) = verifier {
                cfg.verifier.mode = match v.as_str() {
                    "strict" => port::VerifierMode::Strict,
                    "warn" => port::VerifierMode::Warn,
                    "off" => port::VerifierMode::Off,
                    other => anyhow::bail!("--verifier: '{other}' is not strict, warn or off"),
                };
            }
            if let (Some(p), Some(a)) = (miniport, cfg.adapters.first_mut()) {
                a.miniport = Some(p);
            }
            if let Some(d) = cfg.adapters.first_mut().and_then(|a| a.disks.first_mut()) {
                if let Some(s) = disk_size {
                    d.size = s;
                }
                if let Some(p) = disk_path {
                    d.path = p;
                }
                if ram {
                    d.backend = BackendKind::Ram;
                }
            }
            cfg.validate()?;
            scsiport::serve::run_from(cfg, config)?;
            Ok(0)
        }
        Command::Exercise {
            size,
            block,
            channel,
            passthrough,
            placement,
            workers,
            queue_depth,
            seed,
            hba,
            miniport,
            json,
            timing,
        } => {
            let blk = block.0 as usize;
            let mut cfg = Config::in_process(size, scsiport::exercise::memory_for(blk, workers));
            let timing = timing.as_deref().map(scsiport::timing::preset).transpose()?;
            if let Some(t) = timing {
                cfg.machine.timing = Some(t.name.to_string());
                if t.is_eisa() {
                    cfg.machine.bus = scsiport::config::BusKind::Eisa;
                }
            }
            let a = &mut cfg.adapters[0];
            a.dma_channel = channel;
            a.queue_depth = queue_depth;
            a.kind = hba;
            a.miniport = miniport;
            cfg.validate()?;
            let machine = Machine::build(&cfg)?;
            let opts = ExerciseOptions {
                block: blk,
                passthrough,
                placement,
                workers,
                seed,
                progress: !json && std::io::stderr().is_terminal(),
            };
            let report = scsiport::exercise::run(&machine, &opts);
            let violations: Vec<port::Violation> = machine.adapters().flat_map(|a| a.violations()).collect();
            let (scsi_ps, scsi_data_ps) = machine.scsi_virtual_picos();
            let measured = scsiport::timing::Measured {
                dma_bytes: machine.hal().stats().dma_bytes,
                dma_ps: machine.hal().virtual_time().total,
                scsi_ps,
                scsi_data_ps,
            };
            machine.shutdown();
            // What the verifier found names the miniport's mistake, whether or not the workload got through.
            for v in &violations {
                eprintln!("scsiport: verifier: {v}");
            }
            let mut report = report?;
            if let Some(t) = timing {
                report.timing = Some(scsiport::timing::report(t, measured)?);
            }
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{} {} bytes on channel {} ({}): {}",
                    if report.verified { "verified" } else { "MISMATCH" },
                    report.bytes,
                    report.channel.map_or("-".into(), |c| c.to_string()),
                    if passthrough { "pass-through" } else { "class driver" },
                    if report.verified {
                        "every byte matches".to_string()
                    } else {
                        format!("{} bad words, first at byte {:?}", report.mismatches, report.first_mismatch)
                    }
                );
                println!(
                    "write {:.0} MiB/s, read {:.0} MiB/s, overall {:.0} MiB/s in {:.2} s",
                    report.write_mib_per_s, report.read_mib_per_s, report.mib_per_s, report.seconds
                );
                println!(
                    "SRBs {}, DMA operations {} ({:.2} per SRB), flushes {}, cancelled maps {}, bounced {} bytes, map-register waits {}, channel waits {}, violations {}",
                    report.srbs, report.dma_ops, report.sub_transfers_per_srb, report.flushes, report.cancelled_maps,
                    report.bounced_bytes, report.map_register_waits, report.channel_waits, report.violations
                );
                if let Some(t) = &report.timing {
                    println!(
                        "modelled {}: {:.3} s of virtual time, {:.0} KiB/s (DMA {:.3} s, {:.0} KiB/s; SCSI phases {:.3} s, data {:.3} s)",
                        t.preset,
                        t.virtual_s,
                        t.virtual_kib_per_s,
                        t.dma_virtual_s,
                        t.dma_virtual_kib_per_s,
                        t.scsi_virtual_s,
                        t.scsi_data_virtual_s
                    );
                    for r in &t.modes {
                        println!(
                            "  {:>2}-bit {:<6} {:<10} {:>9.0} KiB/s ({} bytes in {:.6} s)",
                            r.width_bits,
                            r.mode,
                            r.eisa_timing.unwrap_or(""),
                            r.virtual_kib_per_s,
                            r.bytes,
                            r.virtual_s
                        );
                    }
                }
            }
            Ok(if report.verified && report.violations == 0 { 0 } else { 2 })
        }
        Command::Trace {
            out,
            svg,
            size,
            block,
            channel,
            passthrough,
            placement,
            workers,
            seed,
            limit,
            svg_width,
            svg_srb_lanes,
            off,
            miniport,
            json,
            timing,
        } => {
            let timing = timing.as_deref().map(scsiport::timing::preset).transpose()?;
            let opts = trace_cmd::TraceOptions {
                out: out.clone(),
                svg: svg.clone(),
                size: size.0,
                block: block.0 as usize,
                channel,
                passthrough,
                placement,
                workers,
                seed,
                limit,
                svg_width,
                svg_srb_lanes,
                off,
                miniport,
                timing,
            };
            let (summary, report) = trace_cmd::run(&opts)?;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                println!(
                    "{} {} bytes, {} SRBs, {} DMA operations in {:.3} s; {} events{}; violations {}",
                    if report.verified { "verified" } else { "MISMATCH" },
                    report.bytes,
                    summary.srbs,
                    summary.dma_ops,
                    summary.seconds,
                    summary.events,
                    summary.lanes.map_or(String::new(), |n| format!(" on {n} lanes")),
                    summary.violations
                );
                if let Some(v) = summary.virtual_s {
                    println!("timeline in virtual time: {:.6} s of the modelled machine", v);
                }
                for (what, path) in [("Chrome trace", &out), ("SVG timeline", &svg)] {
                    if let (Some(p), true) = (path, summary.tracing) {
                        println!("{what}: {}", p.display());
                    }
                }
            }
            Ok(if report.verified && report.violations == 0 { 0 } else { 2 })
        }
    }
}
