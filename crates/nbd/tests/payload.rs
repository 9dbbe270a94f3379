//! WRITE payloads received into a buffer the device hands out: byte-exact
//! arrival, truncated payloads, refused and unusable buffers, and the
//! in-flight byte budgets that still bound them.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{start, Client};
use nbd::proto::{cmd, Errno};
use nbd::request::RequestHeader;
use nbd::{BlockDevice, Capabilities, DeviceError, Export, Extent, MemDevice, PayloadBuf, ServerConfig, WritePayload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

const MIB: u64 = 1 << 20;

/// The device's own payload buffer; counts itself out when dropped.
struct Dest {
    data: Vec<u8>,
    live: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for Dest {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl AsMut<[u8]> for Dest {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

impl Drop for Dest {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Hands out buffers of the asked length.
    Exact,
    /// Hands out buffers one byte too long.
    WrongLength,
    /// Refuses with `NoSpace`.
    Refuse,
}

/// A memory device that receives payloads into its own buffers; its
/// writes wait for `gate`.
struct Receiving {
    inner: MemDevice,
    mode: Mode,
    handed: AtomicUsize,
    live: Arc<AtomicUsize>,
    written_in_place: AtomicUsize,
    written_other: AtomicUsize,
    gate: Semaphore,
}

impl Receiving {
    fn new(size: u64, mode: Mode, gate: usize) -> Arc<Self> {
        Arc::new(Receiving {
            inner: MemDevice::new(size),
            mode,
            handed: AtomicUsize::new(0),
            live: Arc::new(AtomicUsize::new(0)),
            written_in_place: AtomicUsize::new(0),
            written_other: AtomicUsize::new(0),
            gate: Semaphore::new(gate),
        })
    }
}

impl BlockDevice for Receiving {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, DeviceError> {
        self.inner.read(offset, len).await
    }
    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), DeviceError> {
        self.inner.write(offset, data, fua).await
    }
    async fn payload_buffer(&self, len: u32) -> Result<Option<Box<dyn PayloadBuf>>, DeviceError> {
        let extra = match self.mode {
            Mode::Exact => 0,
            Mode::WrongLength => 1,
            Mode::Refuse => return Err(DeviceError::NoSpace),
        };
        self.handed.fetch_add(1, Ordering::SeqCst);
        self.live.fetch_add(1, Ordering::SeqCst);
        Ok(Some(Box::new(Dest { data: vec![0; len as usize + extra], live: self.live.clone() })))
    }
    async fn write_payload(&self, offset: u64, payload: WritePayload, fua: bool) -> Result<(), DeviceError> {
        let _p = self.gate.acquire().await.map_err(|_| DeviceError::Shutdown)?;
        if payload.is::<Dest>() {
            let d = payload.into_device_buffer::<Dest>().ok_or(DeviceError::Invalid)?;
            self.written_in_place.fetch_add(1, Ordering::SeqCst);
            self.inner.write_from(offset, &d.data)
        } else {
            self.written_other.fetch_add(1, Ordering::SeqCst);
            self.inner.write(offset, payload.into_bytes(), fua).await
        }
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

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8).collect()
}

/// Polls `f` until it holds, for at most five seconds.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

#[tokio::test]
async fn payload_arrives_byte_exact_in_the_device_buffer() {
    let dev = Receiving::new(4 * MIB, Mode::Exact, Semaphore::MAX_PERMITS);
    let srv = start(ServerConfig::default(), vec![Export::new("d", dev.clone())]).await;
    let mut c = Client::connect(srv.port, "d", true).await;
    let big = pattern(3 * MIB as usize + 512, 1);
    let small = pattern(512, 2);
    c.send(cmd::WRITE, 0, 1, 4096, big.len() as u32, &big).await;
    c.send(cmd::WRITE, 0, 2, 512, small.len() as u32, &small).await;
    for _ in 0..2 {
        assert_eq!(c.reply(None).await.error, 0);
    }
    assert_eq!(dev.handed.load(Ordering::SeqCst), 2);
    assert_eq!(dev.written_in_place.load(Ordering::SeqCst), 2);
    assert_eq!(dev.written_other.load(Ordering::SeqCst), 0);
    assert!(eventually(|| dev.live.load(Ordering::SeqCst) == 0).await, "a payload buffer was kept");
    let mut back = vec![0u8; big.len()];
    dev.inner.read_into(4096, &mut back).unwrap();
    assert_eq!(back, big);
    let mut back = vec![0u8; small.len()];
    dev.inner.read_into(512, &mut back).unwrap();
    assert_eq!(back, small);
    // A WRITE of length zero asks for no buffer.
    c.send(cmd::WRITE, 0, 3, 0, 0, &[]).await;
    assert_eq!(c.reply(None).await.error, 0);
    assert_eq!(dev.handed.load(Ordering::SeqCst), 2);
    srv.stop().await;
}

#[tokio::test]
async fn pipelined_large_and_small_writes_stay_in_step() {
    // Payloads above and below the size read straight from the socket,
    // and headers following them, all sent at once.
    let dev = Receiving::new(8 * MIB, Mode::Exact, Semaphore::MAX_PERMITS);
    let srv = start(ServerConfig::default(), vec![Export::new("d", dev.clone())]).await;
    let c = Client::connect(srv.port, "d", false).await;
    let (mut rd, mut wr) = c.s.into_split();
    let lens = [200_000usize, 512, 65_536, 65_535, 1 << 20, 4096, 300_001, 32];
    let mut stream = Vec::new();
    let mut expect = vec![0u8; 8 * MIB as usize];
    let mut offset = 0u64;
    for (i, &len) in lens.iter().cycle().take(3 * lens.len()).enumerate() {
        let data = pattern(len, i as u32);
        let h = RequestHeader { flags: 0, kind: cmd::WRITE, handle: i as u64, offset, length: len as u32 };
        stream.extend_from_slice(&h.encode());
        stream.extend_from_slice(&data);
        expect[offset as usize..offset as usize + len].copy_from_slice(&data);
        offset += len as u64;
    }
    let n = 3 * lens.len();
    let sender = tokio::spawn(async move {
        wr.write_all(&stream).await.unwrap();
        wr
    });
    for _ in 0..n {
        let mut r = [0u8; 16];
        tokio::time::timeout(Duration::from_secs(30), rd.read_exact(&mut r)).await.unwrap().unwrap();
        assert_eq!(&r[4..8], &[0; 4], "write {} failed", u64::from_be_bytes(r[8..].try_into().unwrap()));
    }
    drop(sender.await.unwrap());
    assert_eq!(dev.written_in_place.load(Ordering::SeqCst), n);
    let mut back = vec![0u8; offset as usize];
    dev.inner.read_into(0, &mut back).unwrap();
    assert!(back == expect[..offset as usize], "the device holds other bytes than were written");
    srv.stop().await;
}

#[tokio::test]
async fn truncated_payload_closes_the_connection_without_writing() {
    let dev = Receiving::new(MIB, Mode::Exact, Semaphore::MAX_PERMITS);
    let srv = start(ServerConfig::default(), vec![Export::new("d", dev.clone())]).await;
    let mut c = Client::connect(srv.port, "d", false).await;
    let h = RequestHeader { flags: 0, kind: cmd::WRITE, handle: 1, offset: 0, length: 8192 };
    c.s.write_all(&h.encode()).await.unwrap();
    c.s.write_all(&[0xa5; 1000]).await.unwrap();
    c.s.shutdown().await.unwrap();
    assert!(c.closed().await, "the server kept a connection whose payload was cut short");
    assert_eq!(dev.handed.load(Ordering::SeqCst), 1);
    assert!(eventually(|| dev.live.load(Ordering::SeqCst) == 0).await, "the cut payload's buffer was kept");
    assert_eq!(dev.written_in_place.load(Ordering::SeqCst) + dev.written_other.load(Ordering::SeqCst), 0);
    assert_eq!(dev.inner.allocated_bytes(), 0);
    srv.stop().await;
}

#[tokio::test]
async fn refused_buffer_answers_the_write_and_skips_its_payload() {
    let dev = Receiving::new(MIB, Mode::Refuse, Semaphore::MAX_PERMITS);
    let srv = start(ServerConfig::default(), vec![Export::new("d", dev.clone())]).await;
    for structured in [false, true] {
        let mut c = Client::connect(srv.port, "d", structured).await;
        c.send(cmd::WRITE, 0, 1, 0, 4096, &[7u8; 4096]).await;
        let r = c.reply(None).await;
        assert_eq!((r.handle, r.error), (1, Errno::ENOSPC.value()));
        // The payload was skipped: the next request is read in step.
        c.send(cmd::READ, 0, 2, 0, 512, &[]).await;
        let r = c.reply(Some(512)).await;
        assert_eq!((r.handle, r.error, r.data), (2, 0, vec![0u8; 512]));
    }
    assert_eq!(dev.inner.allocated_bytes(), 0);
    srv.stop().await;
}

#[tokio::test]
async fn buffer_of_the_wrong_length_is_not_used() {
    let dev = Receiving::new(MIB, Mode::WrongLength, Semaphore::MAX_PERMITS);
    let srv = start(ServerConfig::default(), vec![Export::new("d", dev.clone())]).await;
    let mut c = Client::connect(srv.port, "d", false).await;
    let data = pattern(8192, 3);
    c.send(cmd::WRITE, 0, 1, 0, data.len() as u32, &data).await;
    assert_eq!(c.reply(None).await.error, 0);
    assert_eq!(dev.written_in_place.load(Ordering::SeqCst), 0);
    assert_eq!(dev.written_other.load(Ordering::SeqCst), 1);
    let mut back = vec![0u8; data.len()];
    dev.inner.read_into(0, &mut back).unwrap();
    assert_eq!(back, data);
    srv.stop().await;
}

/// Sends `writes` WRITEs of 16 MiB on each of `conns` connections to a
/// device whose writes are held, and returns how many payload buffers the
/// device had handed out while they were held; then lets them through and
/// checks every reply.
async fn buffers_held_at_once(config: ServerConfig, conns: usize, writes: u64) -> usize {
    const LEN: u32 = 16 << 20;
    let dev = Receiving::new(conns as u64 * writes * u64::from(LEN), Mode::Exact, 0);
    let srv = start(config, vec![Export::new("d", dev.clone())]).await;
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    for i in 0..conns as u64 {
        let c = Client::connect(srv.port, "d", false).await;
        let (rd, mut wr) = c.s.into_split();
        readers.push(rd);
        senders.push(tokio::spawn(async move {
            let data = vec![0x5a; LEN as usize];
            for w in 0..writes {
                let offset = (i * writes + w) * u64::from(LEN);
                let h = RequestHeader { flags: 0, kind: cmd::WRITE, handle: w, offset, length: LEN };
                wr.write_all(&h.encode()).await.unwrap();
                wr.write_all(&data).await.unwrap();
            }
            wr
        }));
    }
    // Wait until the server has taken all it may, then give it time to
    // (wrongly) take more.
    let mut last = usize::MAX;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let now = dev.handed.load(Ordering::SeqCst);
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let held = dev.handed.load(Ordering::SeqCst);
    dev.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    for rd in &mut readers {
        for _ in 0..writes {
            let mut r = [0u8; 16];
            tokio::time::timeout(Duration::from_secs(30), rd.read_exact(&mut r)).await.unwrap().unwrap();
            assert_eq!(&r[4..8], &[0; 4], "a held write failed");
        }
    }
    for s in senders {
        drop(s.await.unwrap());
    }
    assert_eq!(dev.handed.load(Ordering::SeqCst), conns * writes as usize);
    assert_eq!(dev.written_in_place.load(Ordering::SeqCst), conns * writes as usize);
    srv.stop().await;
    held
}

#[tokio::test]
async fn connection_byte_budget_bounds_payload_buffers_in_flight() {
    // Per connection: 32 MiB (the budget never drops below the largest
    // payload), so two 16 MiB payloads are held and the third waits unread.
    let config = ServerConfig { max_in_flight_bytes_per_conn: 0, ..ServerConfig::default() };
    assert_eq!(buffers_held_at_once(config, 1, 3).await, 2);
}

#[tokio::test]
async fn server_byte_budget_bounds_payload_buffers_across_connections() {
    let config = ServerConfig { max_in_flight_bytes_total: 0, ..ServerConfig::default() };
    assert_eq!(buffers_held_at_once(config, 2, 2).await, 2);
}
