//! The server: exports, configuration, listeners and graceful shutdown.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::conn;
use crate::device::BlockDevice;
use crate::handshake::{BlockSizes, ExportInfo, HandshakeLimits};
use crate::pool::BufferPool;

/// One named export.
pub struct Export<D> {
    pub name: String,
    pub description: String,
    pub device: Arc<D>,
    /// Serve read-only even if the device takes writes.
    pub read_only: bool,
}

impl<D> Export<D> {
    /// A writable export with no description.
    pub fn new(name: impl Into<String>, device: Arc<D>) -> Self {
        Export { name: name.into(), description: String::new(), device, read_only: false }
    }
}

/// Server-wide limits.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest READ/WRITE length accepted (advertised as the maximum block
    /// size, together with the device's own limit). The protocol's
    /// interoperable default is 32 MiB ("Block size constraints").
    pub max_request: u32,
    /// Requests one connection may have in flight; further requests wait
    /// unread in the socket.
    pub max_in_flight_per_conn: usize,
    /// Payload bytes (write data read, read data not yet sent) one
    /// connection may hold.
    pub max_in_flight_bytes_per_conn: usize,
    /// Payload bytes all connections together may hold, so many clients
    /// cannot add up to more memory than this.
    pub max_in_flight_bytes_total: usize,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client has to finish the handshake.
    pub handshake_timeout: Duration,
    /// After shutdown is requested, time connections get to drain before
    /// they are cut.
    pub shutdown_grace: Duration,
    pub handshake: HandshakeLimits,
    /// With structured replies, answer a READ whose whole range the device
    /// reports as zero with one `OFFSET_HOLE` chunk instead of reading it
    /// (one block-status call per read). Off by default, so every byte read
    /// goes through the device.
    pub sparse_reads: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_request: 32 << 20,
            max_in_flight_per_conn: 64,
            max_in_flight_bytes_per_conn: 128 << 20,
            max_in_flight_bytes_total: 1 << 30,
            max_connections: 256,
            handshake_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            handshake: HandshakeLimits::default(),
            sparse_reads: false,
        }
    }
}

impl ServerConfig {
    /// Write payloads larger than this close the connection instead of
    /// being read and refused: anything under 32 MiB SHOULD NOT be taken as
    /// a denial of service ("Block size constraints").
    pub(crate) fn max_payload(&self) -> u32 {
        self.max_request.max(32 << 20)
    }

    /// The byte budget must admit the largest payload, or such a request
    /// could never be read.
    pub(crate) fn byte_budget(&self) -> usize {
        self.max_in_flight_bytes_per_conn.max(self.max_payload() as usize)
    }

    pub(crate) fn total_byte_budget(&self) -> usize {
        self.max_in_flight_bytes_total.max(self.max_payload() as usize)
    }
}

pub(crate) struct Shared<D> {
    pub(crate) exports: Vec<Export<D>>,
    pub(crate) infos: Vec<ExportInfo>,
    pub(crate) config: ServerConfig,
    pub(crate) pool: BufferPool,
    /// Server-wide payload byte budget.
    pub(crate) bytes_total: Arc<Semaphore>,
}

/// An NBD server over a set of exports.
pub struct NbdServer<D: BlockDevice> {
    shared: Arc<Shared<D>>,
}

impl<D: BlockDevice> NbdServer<D> {
    /// A server for `exports`. The first export is also the default one
    /// (selected by the empty name); if two exports share a name the first
    /// is served.
    pub fn new(config: ServerConfig, exports: Vec<Export<D>>) -> Self {
        let config = ServerConfig {
            max_request: config.max_request.max(1),
            max_in_flight_per_conn: config.max_in_flight_per_conn.clamp(1, Semaphore::MAX_PERMITS),
            max_in_flight_bytes_per_conn: config.max_in_flight_bytes_per_conn.min(Semaphore::MAX_PERMITS),
            max_in_flight_bytes_total: config.max_in_flight_bytes_total.min(Semaphore::MAX_PERMITS),
            max_connections: config.max_connections.clamp(1, Semaphore::MAX_PERMITS),
            ..config
        };
        let infos = exports
            .iter()
            .map(|e| {
                let mut caps = e.device.capabilities();
                caps.read_only |= e.read_only;
                ExportInfo {
                    name: e.name.clone(),
                    description: e.description.clone(),
                    size: e.device.size(),
                    block: BlockSizes::new(&caps, config.max_request),
                    caps,
                }
            })
            .collect();
        NbdServer {
            shared: Arc::new(Shared {
                exports,
                infos,
                bytes_total: Arc::new(Semaphore::new(config.total_byte_budget())),
                config,
                pool: BufferPool::default(),
            }),
        }
    }

    /// What the handshake will advertise for each export.
    pub fn exports(&self) -> &[ExportInfo] {
        &self.shared.infos
    }

    /// Flushes every export's device: what a graceful shutdown does after
    /// the listeners have returned. Stops at the first failure.
    pub async fn flush_exports(&self) -> Result<(), crate::device::DeviceError> {
        for e in &self.shared.exports {
            e.device.flush().await?;
        }
        Ok(())
    }

    /// Serves one already-accepted stream until the client leaves or
    /// `shutdown` fires and in-flight requests have been answered.
    pub async fn serve_stream<S>(&self, stream: S, shutdown: CancellationToken) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(stream);
        conn::serve(self.shared.clone(), r, w, shutdown).await
    }

    /// As [`serve_stream`](Self::serve_stream) for a stream already split into its halves (no lock between them):
    /// for a caller that runs its own accept loop.
    pub async fn serve_split<R, W>(&self, reader: R, writer: W, shutdown: CancellationToken) -> io::Result<()>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        conn::serve(self.shared.clone(), reader, writer, shutdown).await
    }

    /// Accepts TCP connections until `shutdown` fires, then stops accepting,
    /// lets in-flight requests finish and their replies go out (for at most
    /// `shutdown_grace`), and returns.
    pub async fn serve_tcp(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) -> io::Result<()> {
        accept_loop(self.shared.clone(), listener, shutdown).await
    }

    /// As [`serve_tcp`](Self::serve_tcp), on a Unix-domain socket.
    pub async fn serve_unix(self: Arc<Self>, listener: UnixListener, shutdown: CancellationToken) -> io::Result<()> {
        accept_loop(self.shared.clone(), listener, shutdown).await
    }
}

/// A listener whose connections split into owned halves.
trait Listener: Send + 'static {
    type Read: AsyncRead + Unpin + Send + 'static;
    type Write: AsyncWrite + Unpin + Send + 'static;
    fn accept_split(&self) -> impl Future<Output = io::Result<(Self::Read, Self::Write)>> + Send;
}

impl Listener for TcpListener {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    async fn accept_split(&self) -> io::Result<(Self::Read, Self::Write)> {
        let (stream, _) = self.accept().await?;
        // NBD over TCP SHOULD disable Nagle ("Protocol phases").
        stream.set_nodelay(true)?;
        Ok(stream.into_split())
    }
}

impl Listener for UnixListener {
    type Read = tokio::net::unix::OwnedReadHalf;
    type Write = tokio::net::unix::OwnedWriteHalf;
    async fn accept_split(&self) -> io::Result<(Self::Read, Self::Write)> {
        let (stream, _) = self.accept().await?;
        Ok(stream.into_split())
    }
}

async fn accept_loop<D: BlockDevice, L: Listener>(
    shared: Arc<Shared<D>>,
    listener: L,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let config = &shared.config;
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept_split() => r,
        };
        match accepted {
            Ok((r, w)) => {
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    if let Err(e) = conn::serve(shared, r, w, shutdown).await {
                        tracing::debug!(error = %e, "nbd connection ended");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                // Accept errors (fd exhaustion, a peer that reset before
                // accept) are transient; back off instead of spinning.
                tracing::warn!(error = %e, "nbd accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Stop accepting before draining.
    drop(listener);
    let drained =
        tokio::time::timeout(config.shutdown_grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(left = tasks.len(), "nbd connections cut after shutdown grace period");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    Ok(())
}
