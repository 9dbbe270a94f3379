//! Serves a sparse in-memory disk over NBD, for trying clients against the
//! server and for benchmarking it alone.
//!
//! `cargo run --release -p nbd --example mem_server -- [ADDR] [SIZE_MIB]`
//! (defaults: 127.0.0.1:10811, 1024). Ctrl-C shuts down gracefully.

use std::sync::Arc;

use nbd::{CancellationToken, Export, MemDevice, NbdServer, ServerConfig};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:10811".into());
    let size_mib: u64 = match args.next() {
        Some(s) => s.parse().map_err(|_| std::io::Error::other(format!("bad size {s:?}")))?,
        None => 1024,
    };
    let device = Arc::new(MemDevice::new(size_mib << 20));
    let server = Arc::new(NbdServer::new(ServerConfig::default(), vec![Export::new("default", device)]));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("serving nbd://{}/default ({size_mib} MiB in memory)", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.cancel();
        }
    });
    server.serve_tcp(listener, shutdown).await
}
