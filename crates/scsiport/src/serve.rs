//! `scsiport serve`: the machine plus its NBD and iSCSI front ends, until SIGINT/SIGTERM.

use crate::config::Config;
use crate::control;
use crate::machine::Machine;
use crate::ops::Running;
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Run until a signal; returns after a graceful drain.
pub fn run(cfg: Config) -> anyhow::Result<()> {
    run_from(cfg, None)
}

/// As [`run`], for a configuration read from `path` (which SIGHUP and `ctl reload` read again).
pub fn run_from(cfg: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    let machine = Arc::new(Machine::build(&cfg)?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let result = rt.block_on(serve(cfg, path, machine.clone()));
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    machine.shutdown();
    result
}

async fn serve(cfg: Config, path: Option<PathBuf>, machine: Arc<Machine>) -> anyhow::Result<()> {
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
    let config_path = path;
    let running = Arc::new(tokio::task::block_in_place(|| Running::new(cfg.clone(), config_path, machine.clone()))?);
    if running.has_exports() {
        let listener = tokio::net::TcpListener::bind(cfg.nbd.listen)
            .await
            .with_context(|| format!("nbd.listen: cannot listen on {}", cfg.nbd.listen))?;
        for e in crate::frontends_config::nbd_exports(&cfg) {
            println!(
                "NBD: nbd://{}/{} (disk {}{})",
                cfg.nbd.listen,
                e.name,
                e.disk,
                if e.read_only { ", read-only" } else { "" }
            );
        }
        let (r, tok) = (running.clone(), shutdown.clone());
        tasks.spawn(async move { nbd_accept(r, listener, tok).await.context("NBD server") });
        if let Some(path) = &cfg.nbd.unix {
            let _ = std::fs::remove_file(path);
            let ul = tokio::net::UnixListener::bind(path)
                .with_context(|| format!("nbd.unix: cannot listen on {}", path.display()))?;
            for e in crate::frontends_config::nbd_exports(&cfg) {
                println!("NBD: nbd+unix:///{}?socket={}", e.name, path.display());
            }
            let (r, tok) = (running.clone(), shutdown.clone());
            tasks.spawn(async move { nbd_accept(r, ul, tok).await.context("NBD server (unix)") });
        }
    }
    for (portal, server) in running.iscsi_servers() {
        let listener = tokio::net::TcpListener::bind(portal)
            .await
            .with_context(|| format!("iscsi portal: cannot listen on {portal}"))?;
        for (t, map) in running.targets().iter().filter(|(t, _)| t.portals.contains(portal)) {
            println!(
                "iSCSI: iscsi://{}/{}/0 (LUNs {})",
                portal,
                t.name,
                map.list().iter().map(|(l, d)| format!("{l}={d}")).collect::<Vec<_>>().join(", ")
            );
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        let tok = shutdown.clone();
        tokio::spawn(async move {
            tok.cancelled().await;
            let _ = tx.send(true);
        });
        let server = server.clone();
        tasks.spawn(async move { server.serve(listener, rx).await.context("iSCSI server") });
    }
    if cfg.control.enabled {
        let path = cfg.control.path();
        match control::bind(&path) {
            Ok(l) => {
                println!("control: {}", path.display());
                let (r, tok) = (running.clone(), shutdown.clone());
                tokio::spawn(control::serve(r, l, path, tok));
            }
            // The default place is shared by every server started in one directory: the first one keeps it.
            Err(e) if cfg.control.socket.is_none() => {
                eprintln!("scsiport: control.socket: {}: {e}; the control interface is off", path.display());
            }
            Err(e) => return Err(anyhow::anyhow!("control.socket: cannot listen on {}: {e}", path.display())),
        }
    }
    if let Some(addr) = cfg.metrics.listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("metrics.listen: cannot listen on {addr}"))?;
        println!("metrics: http://{}/metrics", l.local_addr().unwrap_or(addr));
        let (r, tok) = (running.clone(), shutdown.clone());
        tokio::spawn(control::serve_metrics(r, l, tok));
    }
    // The handlers are in place before "ready" is printed: a signal right after it must not take the default action.
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    println!("ready; stop with Ctrl-C or SIGTERM");
    control::sd_notify("READY=1");
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = hup.recv() => {
                control::sd_notify("RELOADING=1");
                match running.reload().await {
                    Ok(done) if done.is_empty() => println!("reload: nothing changed"),
                    Ok(done) => for l in done { println!("reload: {l}") },
                    Err(e) => eprintln!("scsiport: reload refused: {e:#}"),
                }
                control::sd_notify("READY=1");
            }
            Some(r) = tasks.join_next() => {
                // A front end stopped by itself: that is an error worth reporting.
                shutdown.cancel();
                r.context("front end task")??;
            }
        }
    }
    control::sd_notify("STOPPING=1");
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

/// Connections served at once on one NBD listener; more wait in the listen backlog.
const NBD_MAX_CONNECTIONS: usize = 256;
/// After shutdown, how long NBD connections get to finish what they are doing.
const NBD_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A listener whose connections split into owned halves.
trait Accept: Send + 'static {
    type Read: tokio::io::AsyncRead + Unpin + Send + 'static;
    type Write: tokio::io::AsyncWrite + Unpin + Send + 'static;
    fn accept_split(
        &self,
    ) -> impl std::future::Future<Output = std::io::Result<(Self::Read, Self::Write, String)>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    async fn accept_split(&self) -> std::io::Result<(Self::Read, Self::Write, String)> {
        let (s, peer) = self.accept().await?;
        // NBD over TCP SHOULD disable Nagle.
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        Ok((r, w, peer.to_string()))
    }
}

impl Accept for tokio::net::UnixListener {
    type Read = tokio::net::unix::OwnedReadHalf;
    type Write = tokio::net::unix::OwnedWriteHalf;
    async fn accept_split(&self) -> std::io::Result<(Self::Read, Self::Write, String)> {
        let (s, _) = self.accept().await?;
        let peer = s.peer_cred().ok().and_then(|c| c.pid()).map_or("unix".to_string(), |p| format!("unix:pid {p}"));
        let (r, w) = s.into_split();
        Ok((r, w, peer))
    }
}

/// Accept NBD connections until `shutdown`; each is served by the export set in force when it connected.
async fn nbd_accept<L: Accept>(running: Arc<Running>, listener: L, shutdown: CancellationToken) -> anyhow::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(NBD_MAX_CONNECTIONS));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept_split() => a,
        };
        match accepted {
            Ok((r, w, peer)) => {
                let server = running.nbd_server();
                let guard = running.nbd_connected(peer);
                let tok = shutdown.clone();
                conns.spawn(async move {
                    let _ = server.serve_split(r, w, tok).await;
                    drop(guard);
                    drop(permit);
                });
            }
            // Transient (fd exhaustion, a peer that reset before accept): back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    drop(listener);
    if tokio::time::timeout(NBD_SHUTDOWN_GRACE, async { while conns.join_next().await.is_some() {} }).await.is_err() {
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
    Ok(())
}
