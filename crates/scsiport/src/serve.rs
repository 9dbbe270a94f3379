//! `scsiport serve`: the machine plus its NBD and iSCSI front ends, until SIGINT/SIGTERM.

use crate::config::{parse_disk_ref, Config};
use crate::frontends::{iscsi_lun::PassThroughLuns, nbd_disk::ClassDisk};
use crate::machine::Machine;
use anyhow::Context;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Run until a signal; returns after a graceful drain.
pub fn run(cfg: Config) -> anyhow::Result<()> {
    let machine = Arc::new(Machine::build(&cfg)?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let result = rt.block_on(serve(cfg, machine.clone()));
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    machine.shutdown();
    result
}

async fn serve(cfg: Config, machine: Arc<Machine>) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for a in &cfg.adapters {
        let caps = machine.adapter(&a.name).map(|h| h.capabilities().clone());
        if let Some(c) = caps {
            println!(
                "adapter {}: I/O {:#x}, IRQ {}, DMA channel {}, max transfer {} bytes, {} map registers, verifier {:?}",
                a.name,
                a.io_base,
                a.irq,
                a.dma_channel,
                c.maximum_transfer_length,
                c.map_registers,
                a.verifier.unwrap_or(cfg.verifier.mode)
            );
        }
        for d in &a.disks {
            println!(
                "  target {} LUN {}: {} ({} blocks of {}), {}",
                d.target,
                d.lun,
                d.size,
                d.size.0 / d.block_size as u64,
                d.block_size,
                match d.backend {
                    crate::config::BackendKind::File => format!("file {}", d.path.display()),
                    crate::config::BackendKind::Ram => "RAM".to_string(),
                    crate::config::BackendKind::Rbd => format!("rbd {}/{}", d.pool, d.image),
                }
            );
        }
    }
    if cfg.nbd.enabled {
        let (a, t, l) = parse_disk_ref(&cfg.nbd.disk).context("nbd.disk")?;
        let disk = tokio::task::block_in_place(|| machine.open_disk(&a, t, l))
            .with_context(|| format!("opening {} through the class driver", cfg.nbd.disk))?;
        let dev = Arc::new(ClassDisk::new(Arc::new(disk), cfg.nbd.read_only));
        let mut export = nbd::Export::new(cfg.nbd.export.clone(), dev);
        export.description = format!("scsiport disk {}", cfg.nbd.disk);
        export.read_only = cfg.nbd.read_only;
        let server = Arc::new(nbd::NbdServer::new(nbd::ServerConfig::default(), vec![export]));
        let listener = tokio::net::TcpListener::bind(cfg.nbd.listen)
            .await
            .with_context(|| format!("nbd.listen: cannot listen on {}", cfg.nbd.listen))?;
        println!("NBD: nbd://{}/{} (disk {})", cfg.nbd.listen, cfg.nbd.export, cfg.nbd.disk);
        let (s, tok) = (server.clone(), shutdown.clone());
        tasks.spawn(async move { s.serve_tcp(listener, tok).await.context("NBD server") });
        if let Some(path) = &cfg.nbd.unix {
            let _ = std::fs::remove_file(path);
            let ul = tokio::net::UnixListener::bind(path)
                .with_context(|| format!("nbd.unix: cannot listen on {}", path.display()))?;
            println!("NBD: nbd+unix:///{}?socket={}", cfg.nbd.export, path.display());
            let (s, tok) = (server, shutdown.clone());
            tasks.spawn(async move { s.serve_unix(ul, tok).await.context("NBD server (unix)") });
        }
    }
    if cfg.iscsi.enabled {
        let a = cfg.adapters.iter().find(|x| x.name == cfg.iscsi.adapter).context("iscsi.adapter")?;
        let handle = machine.adapter(&a.name).context("iscsi.adapter")?.clone();
        let disks: Vec<(u8, u8)> = a.disks.iter().map(|d| (d.target, d.lun)).collect();
        let block_sizes: Vec<(u8, u8, u32)> = a.disks.iter().map(|d| (d.target, d.lun, d.block_size)).collect();
        let backend = Arc::new(PassThroughLuns::new(handle, machine.memory().clone(), &block_sizes));
        let mut tc = iscsi::TargetConfig::new(cfg.iscsi.target.clone(), cfg.iscsi.listen);
        if let (Some(u), Some(s)) = (&cfg.iscsi.chap_user, &cfg.iscsi.chap_secret) {
            let mutual = match (&cfg.iscsi.mutual_chap_user, &cfg.iscsi.mutual_chap_secret) {
                (Some(mu), Some(ms)) => Some((mu.clone(), ms.clone())),
                _ => None,
            };
            tc.chap = Some(iscsi::Chap { user: u.clone(), secret: s.clone(), mutual });
        }
        let server = Arc::new(iscsi::IscsiServer::new(vec![(tc, backend)]));
        let listener = tokio::net::TcpListener::bind(cfg.iscsi.listen)
            .await
            .with_context(|| format!("iscsi.listen: cannot listen on {}", cfg.iscsi.listen))?;
        println!(
            "iSCSI: iscsi://{}/{}/0 (adapter {}, LUNs {:?})",
            cfg.iscsi.listen,
            cfg.iscsi.target,
            a.name,
            disks.iter().map(|(t, l)| *t as u64 * 8 + *l as u64).collect::<Vec<_>>()
        );
        let (tx, rx) = tokio::sync::watch::channel(false);
        let tok = shutdown.clone();
        tokio::spawn(async move {
            tok.cancelled().await;
            let _ = tx.send(true);
        });
        tasks.spawn(async move { server.serve(listener, rx).await.context("iSCSI server") });
    }
    // The handlers are in place before "ready" is printed: a signal right after it must not take the default action.
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    println!("ready; stop with Ctrl-C or SIGTERM");
    tokio::select! {
            _ = int.recv() => {}
    _ = term.recv() => {}
            Some(r) = tasks.join_next() => {
                // A front end stopped by itself: that is an error worth reporting.
                shutdown.cancel();
                r.context("front end task")??;
            }
        }
    println!("stopping: no new connections, draining requests in flight");
    shutdown.cancel();
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r.context("front end task").and_then(|x| x) {
            eprintln!("scsiport: {e:#}");
        }
    }
    tokio::task::block_in_place(|| machine.flush_disks());
    println!("stopped");
    Ok(())
}
