//! Protocol behaviour over a real socket with a raw client: errors, bounds,
//! pipelining, disconnects and graceful shutdown.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use common::{start, Client};
use nbd::proto::{cmd, cmd_flags, opt, rep, transmission_flags as tf, Errno};
use nbd::{BlockDevice, Capabilities, DeviceError, Export, Extent, MemDevice, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore};

const MIB: u64 = 1 << 20;

fn mem(size: u64) -> Arc<MemDevice> {
    Arc::new(MemDevice::new(size))
}

#[tokio::test]
async fn write_then_read_round_trips_with_simple_and_structured_replies() {
    let dev = mem(16 * MIB);
    let srv = start(ServerConfig::default(), vec![Export::new("default", dev.clone())]).await;
    for structured in [false, true] {
        let mut c = Client::connect(srv.port, "default", structured).await;
        assert_eq!(c.size, 16 * MIB);
        let data: Vec<u8> = (0..65536u32).map(|i| (i * 7 + structured as u32) as u8).collect();
        c.send(cmd::WRITE, 0, 1, MIB, data.len() as u32, &data).await;
        let r = c.reply(None).await;
        assert_eq!((r.handle, r.error), (1, 0));
        c.send(cmd::READ, 0, 2, MIB, data.len() as u32, &[]).await;
        let r = c.reply(Some(data.len() as u32)).await;
        assert_eq!((r.handle, r.error), (2, 0));
        assert_eq!(r.data, data);
        let mut direct = vec![0u8; data.len()];
        dev.read_into(MIB, &mut direct).unwrap();
        assert_eq!(direct, data);
        c.disconnect().await;
    }
    srv.stop().await;
}

#[tokio::test]
async fn out_of_range_read_is_einval_and_write_is_enospc() {
    let srv = start(ServerConfig::default(), vec![Export::new("d", mem(MIB))]).await;
    for structured in [false, true] {
        let mut c = Client::connect(srv.port, "d", structured).await;
        c.send(cmd::READ, 0, 1, MIB - 512, 1024, &[]).await;
        assert_eq!(c.reply(Some(1024)).await.error, Errno::EINVAL.value());
        c.send(cmd::WRITE, 0, 2, MIB - 512, 1024, &[0u8; 1024]).await;
        assert_eq!(c.reply(None).await.error, Errno::ENOSPC.value());
        // The connection is still in step afterwards.
        c.send(cmd::READ, 0, 3, 0, 512, &[]).await;
        let r = c.reply(Some(512)).await;
        assert_eq!((r.handle, r.error, r.data.len()), (3, 0, 512));
    }
    srv.stop().await;
}

#[tokio::test]
async fn read_only_export_refuses_writes_with_eperm() {
    let dev = mem(MIB);
    let mut e = Export::new("ro", dev.clone());
    e.read_only = true;
    let srv = start(ServerConfig::default(), vec![e]).await;
    let mut c = Client::connect(srv.port, "ro", true).await;
    assert!(c.flags & tf::READ_ONLY != 0);
    c.send(cmd::WRITE, 0, 1, 0, 4, b"abcd").await;
    assert_eq!(c.reply(None).await.error, Errno::EPERM.value());
    c.send(cmd::TRIM, 0, 2, 0, 4096, &[]).await;
    assert_eq!(c.reply(None).await.error, Errno::EPERM.value());
    assert_eq!(dev.allocated_bytes(), 0);
    srv.stop().await;
}

#[tokio::test]
async fn oversized_write_within_payload_limit_is_einval_and_skipped() {
    let config = ServerConfig { max_request: 64 * 1024, ..ServerConfig::default() };
    let srv = start(config, vec![Export::new("d", mem(16 * MIB))]).await;
    let mut c = Client::connect(srv.port, "d", false).await;
    let big = vec![0xabu8; 128 * 1024];
    c.send(cmd::WRITE, 0, 1, 0, big.len() as u32, &big).await;
    assert_eq!(c.reply(None).await.error, Errno::EINVAL.value());
    c.send(cmd::READ, 0, 2, 0, 128 * 1024, &[]).await;
    assert_eq!(c.reply(None).await.error, Errno::EINVAL.value());
    // The payload was consumed: the next request parses.
    c.send(cmd::READ, 0, 3, 0, 16, &[]).await;
    let r = c.reply(Some(16)).await;
    assert_eq!((r.handle, r.error), (3, 0));
    assert_eq!(r.data, vec![0u8; 16], "the refused write must not land");
    srv.stop().await;
}

#[tokio::test]
async fn write_payload_beyond_denial_of_service_limit_closes_connection() {
    let srv = start(ServerConfig::default(), vec![Export::new("d", mem(256 * MIB))]).await;
    let mut c = Client::connect(srv.port, "d", false).await;
    // 64 MiB announced, nothing sent: the server must not wait to read it.
    c.send(cmd::WRITE, 0, 1, 0, 64 << 20, &[]).await;
    assert!(c.closed().await);
    srv.stop().await;
}

#[tokio::test]
async fn bad_request_magic_closes_connection() {
    let srv = start(ServerConfig::default(), vec![Export::new("d", mem(MIB))]).await;
    let mut c = Client::connect(srv.port, "d", false).await;
    c.s.write_all(&[0x55u8; 28]).await.unwrap();
    assert!(c.closed().await);
    // Other clients are unaffected.
    let mut c2 = Client::connect(srv.port, "d", false).await;
    c2.send(cmd::READ, 0, 9, 0, 8, &[]).await;
    assert_eq!(c2.reply(Some(8)).await.error, 0);
    srv.stop().await;
}

#[tokio::test]
async fn unknown_command_and_unknown_flag_are_einval() {
    let srv = start(ServerConfig::default(), vec![Export::new("d", mem(MIB))]).await;
    let mut c = Client::connect(srv.port, "d", true).await;
    c.send(77, 0, 1, 0, 0, &[]).await;
    assert_eq!(c.reply(None).await.error, Errno::EINVAL.value());
    c.send(cmd::READ, 1 << 12, 2, 0, 512, &[]).await;
    assert_eq!(c.reply(None).await.error, Errno::EINVAL.value());
    srv.stop().await;
}

#[tokio::test]
async fn unknown_option_gets_err_unsup_and_handshake_continues() {
    let srv = start(ServerConfig::default(), vec![Export::new("d", mem(MIB))]).await;
    let mut s = Client::greet(srv.port).await;
    Client::send_option(&mut s, 0xdead, b"xyz").await;
    assert_eq!(Client::option_reply(&mut s).await.0, rep::ERR_UNSUP);
    Client::send_option(&mut s, opt::LIST, &[]).await;
    let (t, d) = Client::option_reply(&mut s).await;
    assert_eq!(t, rep::SERVER);
    assert_eq!(&d[4..], b"d");
    assert_eq!(Client::option_reply(&mut s).await.0, rep::ACK);
    srv.stop().await;
}

#[tokio::test]
async fn oversized_option_is_answered_too_big_and_huge_one_closes() {
    let srv = start(ServerConfig::default(), vec![Export::new("d", mem(MIB))]).await;
    let mut s = Client::greet(srv.port).await;
    Client::send_option(&mut s, opt::INFO, &vec![0u8; 100_000]).await;
    assert_eq!(Client::option_reply(&mut s).await.0, rep::ERR_TOO_BIG);
    // Header announcing 1 GiB: hard disconnect without reading it.
    let mut m = nbd::proto::IHAVEOPT.to_be_bytes().to_vec();
    m.extend_from_slice(&opt::INFO.to_be_bytes());
    m.extend_from_slice(&(1u32 << 30).to_be_bytes());
    s.write_all(&m).await.unwrap();
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut b)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))));
    srv.stop().await;
}

#[tokio::test]
async fn unknown_client_flags_close_the_connection() {
    let srv = start(ServerConfig::default(), vec![Export::new("d", mem(MIB))]).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.port)).await.unwrap();
    let mut g = [0u8; 18];
    s.read_exact(&mut g).await.unwrap();
    s.write_all(&0x80u32.to_be_bytes()).await.unwrap();
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut b)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))));
    srv.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_all_answered_with_their_handles() {
    let dev = mem(8 * MIB);
    let srv = start(ServerConfig::default(), vec![Export::new("d", dev.clone())]).await;
    let mut c = Client::connect(srv.port, "d", true).await;
    let n = 200u64;
    for i in 0..n {
        let data = vec![i as u8; 4096];
        c.send(cmd::WRITE, 0, i, i * 4096, 4096, &data).await;
    }
    let mut seen = HashSet::new();
    for _ in 0..n {
        let r = c.reply(None).await;
        assert_eq!(r.error, 0);
        assert!(seen.insert(r.handle), "handle {} answered twice", r.handle);
    }
    assert_eq!(seen.len() as u64, n);
    for i in 0..n {
        c.send(cmd::READ, 0, 1000 + i, i * 4096, 4096, &[]).await;
    }
    for _ in 0..n {
        let r = c.reply(None).await;
        let i = r.handle - 1000;
        assert_eq!(r.data, vec![i as u8; 4096]);
    }
    srv.stop().await;
}

#[tokio::test]
async fn block_status_reports_holes_and_data_and_honours_req_one() {
    let dev = Arc::new(MemDevice::with_chunk_size(MIB, 4096));
    dev.write_from(8192, &[1u8; 4096]).unwrap();
    let srv = start(ServerConfig::default(), vec![Export::new("d", dev)]).await;
    let mut c = Client::connect(srv.port, "d", true).await;
    c.send(cmd::BLOCK_STATUS, 0, 1, 0, 65536, &[]).await;
    let r = c.reply(None).await;
    assert_eq!(r.error, 0);
    assert_eq!(r.extents, vec![(8192, 3), (4096, 0), (65536 - 12288, 3)]);
    c.send(cmd::BLOCK_STATUS, cmd_flags::REQ_ONE, 2, 8192, 65536, &[]).await;
    assert_eq!(c.reply(None).await.extents, vec![(4096, 0)]);
    c.send(cmd::BLOCK_STATUS, 0, 3, MIB - 512, 1024, &[]).await;
    assert_eq!(c.reply(None).await.error, Errno::EINVAL.value());
    srv.stop().await;
}

#[tokio::test]
async fn block_status_without_meta_context_is_einval() {
    let srv = start(ServerConfig::default(), vec![Export::new("d", mem(MIB))]).await;
    let mut c = Client::connect(srv.port, "d", false).await;
    c.send(cmd::BLOCK_STATUS, 0, 1, 0, 4096, &[]).await;
    assert_eq!(c.reply(None).await.error, Errno::EINVAL.value());
    srv.stop().await;
}

#[tokio::test]
async fn write_zeroes_is_emulated_when_device_lacks_it_and_fast_zero_is_enotsup() {
    let caps = Capabilities { write_zeroes: false, fast_zero: false, ..MemDevice::new(1).capabilities() };
    let dev = Arc::new(MemDevice::new(4 * MIB).with_capabilities(caps));
    dev.write_from(0, &vec![0xffu8; 3 * MIB as usize]).unwrap();
    let srv = start(ServerConfig::default(), vec![Export::new("d", dev.clone())]).await;
    let mut c = Client::connect(srv.port, "d", true).await;
    assert!(c.flags & tf::SEND_WRITE_ZEROES != 0);
    c.send(cmd::WRITE_ZEROES, cmd_flags::FAST_ZERO, 1, 0, 4096, &[]).await;
    assert_eq!(c.reply(None).await.error, Errno::ENOTSUP.value());
    let mut b = [0u8; 4096];
    dev.read_into(0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0xff), "a refused fast zero must not alter data");
    c.send(cmd::WRITE_ZEROES, 0, 2, 100, 2 * MIB as u32 + 5, &[]).await;
    assert_eq!(c.reply(None).await.error, 0);
    let mut all = vec![0u8; 3 * MIB as usize];
    dev.read_into(0, &mut all).unwrap();
    assert!(all[..100].iter().all(|&x| x == 0xff));
    assert!(all[100..100 + 2 * MIB as usize + 5].iter().all(|&x| x == 0));
    assert!(all[100 + 2 * MIB as usize + 5..].iter().all(|&x| x == 0xff));
    srv.stop().await;
}

#[tokio::test]
async fn flush_reaches_the_device_and_multi_conn_follows_capabilities() {
    let dev = mem(MIB);
    let srv = start(ServerConfig::default(), vec![Export::new("d", dev.clone())]).await;
    let mut a = Client::connect(srv.port, "d", false).await;
    let mut b = Client::connect(srv.port, "d", false).await;
    assert!(a.flags & tf::CAN_MULTI_CONN != 0);
    a.send(cmd::WRITE, cmd_flags::FUA, 1, 0, 4, b"wxyz").await;
    assert_eq!(a.reply(None).await.error, 0);
    b.send(cmd::FLUSH, 0, 2, 0, 0, &[]).await;
    assert_eq!(b.reply(None).await.error, 0);
    assert_eq!(dev.flush_count(), 1);
    b.send(cmd::READ, 0, 3, 0, 4, &[]).await;
    assert_eq!(b.reply(Some(4)).await.data, b"wxyz");
    srv.stop().await;

    let caps = Capabilities { multi_conn: false, ..MemDevice::new(1).capabilities() };
    let single = Arc::new(MemDevice::new(MIB).with_capabilities(caps));
    let srv = start(ServerConfig::default(), vec![Export::new("d", single)]).await;
    let c = Client::connect(srv.port, "d", false).await;
    assert_eq!(c.flags & tf::CAN_MULTI_CONN, 0);
    srv.stop().await;
}

/// A device whose reads wait for a gate, to hold requests in flight.
struct Gated {
    inner: MemDevice,
    entered: Notify,
    gate: Semaphore,
}

impl BlockDevice for Gated {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, DeviceError> {
        self.entered.notify_one();
        let _p = self.gate.acquire().await.map_err(|_| DeviceError::Shutdown)?;
        self.inner.read(offset, len).await
    }
    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), DeviceError> {
        self.inner.write(offset, data, fua).await
    }
    async fn flush(&self) -> Result<(), DeviceError> {
        self.inner.flush().await
    }
    async fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), DeviceError> {
        self.inner.trim(offset, len, fua).await
    }
    async fn write_zeroes(&self, offset: u64, len: u64, no_hole: bool, fua: bool) -> Result<(), DeviceError> {
        self.inner.write_zeroes(offset, len, no_hole, fua).await
    }
    async fn block_status(&self, offset: u64, len: u32) -> Result<Vec<Extent>, DeviceError> {
        self.inner.block_status(offset, len).await
    }
}

fn gated() -> Arc<Gated> {
    let inner = MemDevice::new(MIB);
    inner.write_from(0, b"in flight").unwrap();
    Arc::new(Gated { inner, entered: Notify::new(), gate: Semaphore::new(0) })
}

#[tokio::test]
async fn shutdown_answers_in_flight_requests_before_returning() {
    let dev = gated();
    let srv = start(ServerConfig::default(), vec![Export::new("d", dev.clone())]).await;
    let mut c = Client::connect(srv.port, "d", true).await;
    c.send(cmd::READ, 0, 42, 0, 9, &[]).await;
    dev.entered.notified().await;
    srv.shutdown.cancel();
    // New connections are no longer served once the listener is dropped.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(!srv.task.is_finished(), "server returned with a request in flight");
    dev.gate.add_permits(1);
    let r = c.reply(Some(9)).await;
    assert_eq!((r.handle, r.error), (42, 0));
    assert_eq!(r.data, b"in flight");
    assert!(c.closed().await);
    let done = tokio::time::timeout(std::time::Duration::from_secs(30), srv.task).await;
    done.expect("server did not return").unwrap().unwrap();
}

#[tokio::test]
async fn disconnect_still_answers_outstanding_requests() {
    let dev = gated();
    let srv = start(ServerConfig::default(), vec![Export::new("d", dev.clone())]).await;
    let mut c = Client::connect(srv.port, "d", false).await;
    c.send(cmd::READ, 0, 5, 0, 9, &[]).await;
    dev.entered.notified().await;
    c.send(cmd::DISC, 0, 6, 0, 0, &[]).await;
    dev.gate.add_permits(1);
    let r = c.reply(Some(9)).await;
    assert_eq!((r.handle, r.data.as_slice()), (5, &b"in flight"[..]));
    assert!(c.closed().await);
    srv.stop().await;
}

#[tokio::test]
async fn in_flight_limit_holds_back_reading_without_losing_requests() {
    let dev = gated();
    let config = ServerConfig { max_in_flight_per_conn: 2, ..ServerConfig::default() };
    let srv = start(config, vec![Export::new("d", dev.clone())]).await;
    let mut c = Client::connect(srv.port, "d", false).await;
    for i in 0..10 {
        c.send(cmd::READ, 0, i, 0, 9, &[]).await;
    }
    dev.gate.add_permits(10);
    let mut seen = HashSet::new();
    for _ in 0..10 {
        let r = c.reply(Some(9)).await;
        assert_eq!(r.data, b"in flight");
        seen.insert(r.handle);
    }
    assert_eq!(seen.len(), 10);
    srv.stop().await;
}

#[tokio::test]
async fn unix_socket_serves_the_same_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nbd.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let server = Arc::new(nbd::NbdServer::new(ServerConfig::default(), vec![Export::new("u", mem(MIB))]));
    let shutdown = nbd::CancellationToken::new();
    let task = tokio::spawn(server.serve_unix(listener, shutdown.clone()));
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    let mut g = [0u8; 18];
    s.read_exact(&mut g).await.unwrap();
    assert_eq!(&g[..8], b"NBDMAGIC");
    s.write_all(&3u32.to_be_bytes()).await.unwrap();
    let mut m = nbd::proto::IHAVEOPT.to_be_bytes().to_vec();
    m.extend_from_slice(&opt::EXPORT_NAME.to_be_bytes());
    m.extend_from_slice(&1u32.to_be_bytes());
    m.push(b'u');
    s.write_all(&m).await.unwrap();
    let mut r = [0u8; 10];
    s.read_exact(&mut r).await.unwrap();
    assert_eq!(u64::from_be_bytes(r[..8].try_into().unwrap()), MIB);
    shutdown.cancel();
    drop(s);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn sparse_reads_answer_zero_ranges_with_an_offset_hole_chunk() {
    let dev = Arc::new(MemDevice::with_chunk_size(MIB, 4096));
    dev.write_from(4096, &[9u8; 4096]).unwrap();
    let config = ServerConfig { sparse_reads: true, ..ServerConfig::default() };
    let srv = start(config, vec![Export::new("d", dev)]).await;
    let mut c = Client::connect(srv.port, "d", true).await;
    c.send(cmd::READ, 0, 1, 8192, 65536, &[]).await;
    let r = c.reply(None).await;
    assert_eq!((r.error, r.holes), (0, 1));
    assert_eq!(r.data, vec![0u8; 65536]);
    // A range with data is read as usual.
    c.send(cmd::READ, 0, 2, 0, 8192, &[]).await;
    let r = c.reply(None).await;
    assert_eq!(r.holes, 0);
    assert_eq!(&r.data[4096..], &[9u8; 4096]);
    assert_eq!(&r.data[..4096], &[0u8; 4096]);
    // Without structured replies there is no hole chunk to send.
    let mut simple = Client::connect(srv.port, "d", false).await;
    simple.send(cmd::READ, 0, 3, 8192, 512, &[]).await;
    assert_eq!(simple.reply(Some(512)).await.data, vec![0u8; 512]);
    srv.stop().await;
}

#[tokio::test]
async fn client_that_never_finishes_the_handshake_is_dropped() {
    let config = ServerConfig { handshake_timeout: std::time::Duration::from_millis(50), ..ServerConfig::default() };
    let srv = start(config, vec![Export::new("d", mem(MIB))]).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.port)).await.unwrap();
    let mut g = [0u8; 18];
    s.read_exact(&mut g).await.unwrap();
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(std::time::Duration::from_secs(20), s.read(&mut b)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "idle handshake was not closed");
    srv.stop().await;
}

#[tokio::test]
async fn shutdown_closes_connections_idle_in_handshake_or_transmission() {
    let srv = start(ServerConfig::default(), vec![Export::new("d", mem(MIB))]).await;
    let mut idle_handshake = Client::greet(srv.port).await;
    let mut idle_transmission = Client::connect(srv.port, "d", false).await;
    // Make sure the handshake connection's flags have been read.
    Client::send_option(&mut idle_handshake, 0x99, &[]).await;
    assert_eq!(Client::option_reply(&mut idle_handshake).await.0, rep::ERR_UNSUP);
    srv.shutdown.cancel();
    let done = tokio::time::timeout(std::time::Duration::from_secs(20), srv.task).await;
    done.expect("server kept waiting for idle clients").unwrap().unwrap();
    assert!(idle_transmission.closed().await);
    let mut b = [0u8; 1];
    assert_eq!(idle_handshake.read(&mut b).await.unwrap_or(0), 0);
}

#[tokio::test]
async fn replies_survive_shutdown_while_client_keeps_sending() {
    let dev = gated();
    let srv = start(ServerConfig::default(), vec![Export::new("d", dev.clone())]).await;
    let mut c = Client::connect(srv.port, "d", false).await;
    c.send(cmd::READ, 0, 1, 0, 9, &[]).await;
    dev.entered.notified().await;
    srv.shutdown.cancel();
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    // Requests the server will no longer read, left in its socket buffer.
    for i in 0..50 {
        c.send(cmd::WRITE, 0, 100 + i, 0, 4096, &[0u8; 4096]).await;
    }
    dev.gate.add_permits(1);
    let r = c.reply(Some(9)).await;
    assert_eq!((r.handle, r.error, r.data.as_slice()), (1, 0, &b"in flight"[..]));
    assert!(c.closed().await);
    drop(c);
    let done = tokio::time::timeout(std::time::Duration::from_secs(30), srv.task).await;
    done.expect("server did not return").unwrap().unwrap();
}

#[tokio::test]
async fn flush_exports_flushes_every_device_once() {
    let (a, b) = (mem(MIB), mem(MIB));
    let server =
        nbd::NbdServer::new(ServerConfig::default(), vec![Export::new("a", a.clone()), Export::new("b", b.clone())]);
    server.flush_exports().await.unwrap();
    assert_eq!((a.flush_count(), b.flush_count()), (1, 1));
}

#[tokio::test]
async fn serve_stream_works_on_any_duplex_stream() {
    let (client, server_end) = tokio::io::duplex(1 << 16);
    let server = Arc::new(nbd::NbdServer::new(ServerConfig::default(), vec![Export::new("d", mem(MIB))]));
    let shutdown = nbd::CancellationToken::new();
    let srv = server.clone();
    let task = tokio::spawn(async move { srv.serve_stream(server_end, shutdown).await });
    let (mut r, mut w) = tokio::io::split(client);
    let mut g = [0u8; 18];
    r.read_exact(&mut g).await.unwrap();
    w.write_all(&1u32.to_be_bytes()).await.unwrap();
    let mut m = nbd::proto::IHAVEOPT.to_be_bytes().to_vec();
    m.extend_from_slice(&opt::EXPORT_NAME.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    w.write_all(&m).await.unwrap();
    // Without NO_ZEROES the reply carries 124 zero bytes.
    let mut reply = [0u8; 134];
    r.read_exact(&mut reply).await.unwrap();
    assert_eq!(u64::from_be_bytes(reply[..8].try_into().unwrap()), MIB);
    assert!(reply[10..].iter().all(|&b| b == 0));
    let disc = nbd::request::RequestHeader { flags: 0, kind: cmd::DISC, handle: 0, offset: 0, length: 0 };
    w.write_all(&disc.encode()).await.unwrap();
    task.await.unwrap().unwrap();
}

/// A device that panics on reads at offset zero.
struct Panicky(MemDevice);

impl BlockDevice for Panicky {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, DeviceError> {
        assert!(offset != 0, "device bug");
        self.0.read(offset, len).await
    }
    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), DeviceError> {
        self.0.write(offset, data, fua).await
    }
    async fn flush(&self) -> Result<(), DeviceError> {
        Err(DeviceError::Io("flush failed".into()))
    }
    async fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), DeviceError> {
        self.0.trim(offset, len, fua).await
    }
    async fn write_zeroes(&self, offset: u64, len: u64, no_hole: bool, fua: bool) -> Result<(), DeviceError> {
        self.0.write_zeroes(offset, len, no_hole, fua).await
    }
    async fn block_status(&self, offset: u64, len: u32) -> Result<Vec<Extent>, DeviceError> {
        self.0.block_status(offset, len).await
    }
}

#[tokio::test]
async fn device_failures_and_panics_are_answered_with_eio() {
    let dev = Arc::new(Panicky(MemDevice::new(MIB)));
    let srv = start(ServerConfig::default(), vec![Export::new("d", dev)]).await;
    for structured in [false, true] {
        let mut c = Client::connect(srv.port, "d", structured).await;
        c.send(cmd::READ, 0, 1, 0, 512, &[]).await;
        let r = c.reply(Some(512)).await;
        assert_eq!((r.handle, r.error), (1, Errno::EIO.value()));
        assert!(r.data.is_empty(), "no payload may follow an error");
        c.send(cmd::FLUSH, 0, 2, 0, 0, &[]).await;
        assert_eq!(c.reply(None).await.error, Errno::EIO.value());
        c.send(cmd::READ, 0, 3, 512, 512, &[]).await;
        assert_eq!(c.reply(Some(512)).await.error, 0);
    }
    srv.stop().await;
}
