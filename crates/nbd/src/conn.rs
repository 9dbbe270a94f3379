//! One client connection: the handshake driven through the
//! [`Negotiation`] state machine, then the transmission phase. Requests are
//! read by this task, executed by one spawned task each, and answered
//! through the connection's single writer task, within a budget of
//! requests and payload bytes in flight.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::device::{BlockDevice, DeviceError};
use crate::handshake::{self, DataPolicy, Negotiation, Session, Step, BASE_ALLOCATION_ID};
use crate::option::{parse_client_flags, parse_option_header};
use crate::payload::{PayloadBuf, WritePayload};
use crate::pool::BufferPool;
use crate::proto::{self, cmd, Errno};
use crate::reply::{self, Outgoing};
use crate::request::{parse_request_header, validate, Command, RequestHeader};
use crate::server::Shared;
use crate::writer::write_replies;

/// Read buffer: large enough to take a burst of pipelined headers and small
/// writes in one system call.
const READ_BUFFER: usize = 256 * 1024;

/// Payloads from this size on are read from the socket straight into their
/// destination, bypassing the read buffer; after such a payload the next
/// header is read on its own too, so the read buffer does not fill up with
/// the next payload only to copy it out again.
const DIRECT_READ: usize = 64 * 1024;

/// Largest zero buffer used when the server writes zeroes itself.
const ZERO_CHUNK: u32 = 1 << 20;

fn protocol_error(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Serves one connection from greeting to close.
pub(crate) async fn serve<D, R, W>(
    shared: Arc<Shared<D>>,
    reader: R,
    mut writer: W,
    shutdown: CancellationToken,
) -> io::Result<()>
where
    D: BlockDevice,
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let timeout = shared.config.handshake_timeout;
    let session =
        match tokio::time::timeout(timeout, handshake_phase(&shared, &mut reader, &mut writer, &shutdown)).await {
            Ok(Ok(Some(s))) => s,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "handshake timed out")),
        };
    transmission(shared, session, reader, writer, shutdown).await
}

/// Runs option haggling; `None` means the session ended without entering
/// transmission.
async fn handshake_phase<D, R, W>(
    shared: &Shared<D>,
    reader: &mut R,
    writer: &mut W,
    shutdown: &CancellationToken,
) -> io::Result<Option<Session>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    writer.write_all(&handshake::greeting()).await?;
    writer.flush().await?;
    let mut flags = [0u8; 4];
    reader.read_exact(&mut flags).await?;
    let client = parse_client_flags(&flags).map_err(|_| protocol_error("unknown client flags"))?;
    let mut neg = Negotiation::new(&shared.infos, client, shared.config.handshake);
    let mut out = Vec::with_capacity(512);
    let mut data = Vec::new();
    loop {
        let mut hdr = [0u8; proto::OPTION_HEADER_LEN];
        tokio::select! {
            biased;
            // Nothing is in flight between options: a shutdown closes here.
            _ = shutdown.cancelled() => return Ok(None),
            r = reader.read_exact(&mut hdr) => { r?; }
        }
        if shutdown.is_cancelled() {
            // An option that raced the shutdown is answered
            // NBD_REP_ERR_SHUTDOWN ("Termination of the session during
            // option haggling"); the next wait closes.
            neg.set_shutting_down();
        }
        let header = parse_option_header(&hdr).map_err(|_| protocol_error("bad option magic"))?;
        out.clear();
        let step = match neg.data_policy(header.length) {
            DataPolicy::Read => {
                data.clear();
                data.resize(header.length as usize, 0);
                reader.read_exact(&mut data).await?;
                neg.handle(header, &data, &mut out)
            }
            DataPolicy::DiscardTooBig => {
                let want = u64::from(header.length);
                let got = tokio::io::copy(&mut (&mut *reader).take(want), &mut tokio::io::sink()).await?;
                if got != want {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                neg.too_big(header, &mut out)
            }
            DataPolicy::Close => Step::Close,
        };
        if !out.is_empty() {
            // A client that sent ABORT may already be gone; the write error
            // then only ends what was ending anyway.
            let sent = writer.write_all(&out).await.and(writer.flush().await);
            if step != Step::Close {
                sent?;
            }
        }
        match step {
            Step::Continue => {}
            Step::Close => return Ok(None),
            Step::Transmit(s) => return Ok(Some(s)),
        }
    }
}

/// Budget held by one request until its reply has been written.
struct Budget {
    _count: OwnedSemaphorePermit,
    _bytes: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
}

type Reply = Outgoing<Budget>;

async fn transmission<D, R, W>(
    shared: Arc<Shared<D>>,
    session: Session,
    mut reader: BufReader<R>,
    writer: W,
    shutdown: CancellationToken,
) -> io::Result<()>
where
    D: BlockDevice,
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let device = shared.exports[session.export].device.clone();
    let config = &shared.config;
    let (tx, rx) = mpsc::unbounded_channel::<Reply>();
    let mut writer_task = tokio::spawn(write_replies(writer, rx));
    let count = Arc::new(Semaphore::new(config.max_in_flight_per_conn));
    let bytes = Arc::new(Semaphore::new(config.byte_budget()));
    let max_payload = config.max_payload();
    let zeroes = Bytes::from(vec![0u8; ZERO_CHUNK.min(session.block.max) as usize]);

    let mut stopped = false;
    let mut after_large_payload = false;
    let end: io::Result<()> = loop {
        let mut hdr = [0u8; proto::REQUEST_HEADER_LEN];
        let direct = after_large_payload && reader.buffer().is_empty();
        let read = tokio::select! {
            biased;
            // A writer that ended early means the peer is gone.
            _ = &mut writer_task => return Ok(()),
            _ = shutdown.cancelled() => { stopped = true; break Ok(()) }
            r = read_header(&mut reader, &mut hdr, direct) => r,
        };
        if let Err(e) = read {
            break if e.kind() == io::ErrorKind::UnexpectedEof { Ok(()) } else { Err(e) };
        }
        let h = match parse_request_header(&hdr) {
            Ok(h) => h,
            Err(_) => break Err(protocol_error("bad request magic")),
        };
        if h.payload_len() > max_payload {
            // The payload cannot be skipped safely: hard disconnect
            // ("Block size constraints" allows it for denial of service).
            break Err(protocol_error("write payload too large"));
        }
        if h.kind == cmd::DISC {
            // Whatever its flags, nothing follows a disconnect request;
            // outstanding requests are still answered before the close.
            break Ok(());
        }
        let validated = validate(&h, &session);
        let cost = match validated {
            Ok(Command::Read { length, .. }) | Ok(Command::Write { length, .. }) => length as usize,
            _ => 0,
        };
        let budget = match acquire(&count, &bytes, &shared.bytes_total, cost).await {
            Some(b) => b,
            None => break Ok(()),
        };
        let cmd = match validated {
            Ok(cmd) => cmd,
            Err(errno) => {
                if let Err(e) = discard(&mut reader, h.payload_len()).await {
                    break Err(e);
                }
                let _ = tx.send(error_reply(&session, h.handle, errno, "request refused").holding(budget));
                continue;
            }
        };
        let payload = match cmd {
            Command::Write { length, .. } if length > 0 => {
                let dest = match device.payload_buffer(length).await {
                    Ok(dest) => dest,
                    Err(e) => {
                        if let Err(e) = discard(&mut reader, length).await {
                            break Err(e);
                        }
                        let _ = tx.send(device_error(&session, h.handle, &e).holding(budget));
                        continue;
                    }
                };
                after_large_payload = length as usize >= DIRECT_READ;
                match read_payload(&mut reader, &shared.pool, dest, length).await {
                    Ok(p) => Some(p),
                    Err(e) => break Err(e),
                }
            }
            _ => None,
        };
        let device = device.clone();
        let tx = tx.clone();
        let ctx = Exec { session, sparse_reads: config.sparse_reads, zeroes: zeroes.clone() };
        let guard = Pending { tx: Some(tx), budget: Some(budget), handle: h.handle, session };
        // The request's future (the device's own included) is boxed once here: a task's future is moved into the
        // task cell on spawn and its whole size rewritten when the task completes, so a small task keeps those
        // copies small.
        tokio::spawn(async move {
            let out = Box::pin(execute(&*device, &ctx, h, cmd, payload)).await;
            guard.answer(out);
        });
    };
    // Every request task holds a sender; once they have all replied the
    // writer drains the queue and shuts the socket down.
    drop(tx);
    if !writer_task.is_finished() {
        match writer_task.await {
            Ok(Err(e)) if end.is_ok() => return Err(e),
            _ => {}
        }
    }
    if stopped {
        linger(&mut reader).await;
    }
    end
}

/// After a shutdown the client may still have requests on the way. Closing
/// a socket with unread data makes the kernel reset the connection, and a
/// reset can discard replies the client has not read yet; so requests are
/// read and dropped, for a bounded time and amount, until the client
/// closes its side.
async fn linger<R: AsyncRead + Unpin>(reader: &mut R) {
    // Only a client with data already pending needs it: one poll tells.
    let mut probe = [0u8; 512];
    match tokio::time::timeout(std::time::Duration::ZERO, reader.read(&mut probe)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return,
    }
    const LINGER_BYTES: u64 = 16 << 20;
    const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);
    let mut rest = reader.take(LINGER_BYTES);
    let mut sink = tokio::io::sink();
    let _ = tokio::time::timeout(LINGER_TIME, tokio::io::copy(&mut rest, &mut sink)).await;
}

/// A request being executed. It is answered exactly once: with the
/// device's result, or with `NBD_EIO` if the task ends without one (a
/// panicking device, a runtime shutting down), so the client never waits
/// for a reply that cannot come.
struct Pending {
    tx: Option<mpsc::UnboundedSender<Reply>>,
    budget: Option<Budget>,
    handle: u64,
    session: Session,
}

impl Pending {
    fn answer(mut self, out: Outgoing) {
        if let (Some(tx), Some(budget)) = (self.tx.take(), self.budget.take()) {
            // The writer is gone only if the peer is; nothing to tell then.
            let _ = tx.send(out.holding(budget));
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let (Some(tx), Some(budget)) = (self.tx.take(), self.budget.take()) {
            let out = error_reply(&self.session, self.handle, Errno::EIO, "request failed in the server");
            let _ = tx.send(out.holding(budget));
        }
    }
}

async fn acquire(
    count: &Arc<Semaphore>,
    bytes: &Arc<Semaphore>,
    total: &Arc<Semaphore>,
    cost: usize,
) -> Option<Budget> {
    let c = count.clone().acquire_owned().await.ok()?;
    let b = if cost == 0 {
        None
    } else {
        let n = u32::try_from(cost).ok()?;
        // Connection budget first: a connection waits on its own replies
        // before it takes from what other connections share.
        let own = bytes.clone().acquire_many_owned(n).await.ok()?;
        let shared = total.clone().acquire_many_owned(n).await.ok()?;
        Some((own, shared))
    };
    Some(Budget { _count: c, _bytes: b })
}

async fn discard<R: AsyncRead + Unpin>(reader: &mut R, len: u32) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let want = u64::from(len);
    let got = tokio::io::copy(&mut reader.take(want), &mut tokio::io::sink()).await?;
    if got == want {
        Ok(())
    } else {
        Err(io::ErrorKind::UnexpectedEof.into())
    }
}

/// Reads a request header; `direct` (only with nothing buffered) reads it
/// from the socket alone instead of filling the read buffer.
async fn read_header<R: AsyncRead + Unpin>(reader: &mut BufReader<R>, hdr: &mut [u8], direct: bool) -> io::Result<()> {
    if direct {
        reader.get_mut().read_exact(hdr).await.map(drop)
    } else {
        reader.read_exact(hdr).await.map(drop)
    }
}

/// Reads a write payload into the device's destination, or into a pooled
/// buffer when the device has none of the payload's size. What the read
/// buffer already holds is copied; a large rest comes straight from the
/// socket.
async fn read_payload<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    pool: &BufferPool,
    dest: Option<Box<dyn PayloadBuf>>,
    len: u32,
) -> io::Result<WritePayload> {
    let mut payload = match dest.map(WritePayload::device) {
        Some(p) if p.len() == len as usize => p,
        _ => WritePayload::pooled(pool.take(len as usize)),
    };
    let to = payload.destination();
    let buffered = reader.buffer();
    let n = buffered.len().min(to.len());
    to[..n].copy_from_slice(&buffered[..n]);
    reader.consume(n);
    let rest = &mut to[n..];
    if rest.len() >= DIRECT_READ {
        reader.get_mut().read_exact(rest).await?;
    } else {
        reader.read_exact(rest).await?;
    }
    Ok(payload)
}

fn error_reply(s: &Session, handle: u64, errno: Errno, message: &'static str) -> Outgoing {
    if s.structured {
        reply::error_chunk(handle, errno, message)
    } else {
        reply::simple(handle, Some(errno), Bytes::new())
    }
}

fn success(handle: u64) -> Outgoing {
    // With structured replies negotiated, a simple reply is still allowed
    // for anything but READ when it carries no payload.
    reply::simple(handle, None, Bytes::new())
}

fn device_error(s: &Session, handle: u64, e: &DeviceError) -> Outgoing {
    tracing::debug!(error = %e, "nbd request failed in device");
    error_reply(s, handle, e.errno(), e.errno().name())
}

/// What a request task needs besides the request.
struct Exec {
    session: Session,
    sparse_reads: bool,
    /// Shared zero buffer for write zeroes done by the server.
    zeroes: Bytes,
}

/// True when the device says the whole range reads as zeroes.
async fn reads_as_zero<D: BlockDevice>(device: &D, offset: u64, length: u32) -> bool {
    match device.block_status(offset, length).await {
        Ok(ext) => ext.first().is_some_and(|e| e.zero && e.length >= u64::from(length)),
        Err(_) => false,
    }
}

async fn execute<D: BlockDevice>(
    device: &D,
    ctx: &Exec,
    h: RequestHeader,
    cmd: Command,
    payload: Option<WritePayload>,
) -> Outgoing {
    let s = &ctx.session;
    let handle = h.handle;
    let done = |r: Result<(), DeviceError>| match r {
        Ok(()) => success(handle),
        Err(e) => device_error(s, handle, &e),
    };
    match cmd {
        Command::Read { length: 0, .. } if s.structured => reply::none(handle),
        Command::Read { length: 0, .. } => reply::simple(handle, None, Bytes::new()),
        Command::Read { offset, length }
            if s.structured
                && ctx.sparse_reads
                && device.capabilities().block_status
                && reads_as_zero(device, offset, length).await =>
        {
            reply::offset_hole(handle, offset, length)
        }
        Command::Read { offset, length } => match device.read(offset, length).await {
            Ok(data) if data.len() != length as usize => {
                device_error(s, handle, &DeviceError::Io("device returned a short read".into()))
            }
            Ok(data) if s.structured => reply::offset_data(handle, offset, data),
            Ok(data) => reply::simple(handle, None, data),
            Err(e) => device_error(s, handle, &e),
        },
        Command::Write { length: 0, .. } => success(handle),
        Command::Write { offset, fua, .. } => match payload {
            Some(p) => done(device.write_payload(offset, p, fua).await),
            None => device_error(s, handle, &DeviceError::Io("write without its payload".into())),
        },
        Command::Flush => done(device.flush().await),
        Command::Trim { length: 0, .. } => success(handle),
        Command::Trim { offset, length, fua } => done(device.trim(offset, u64::from(length), fua).await),
        Command::WriteZeroes { length: 0, .. } => success(handle),
        Command::WriteZeroes { offset, length, no_hole, fast, fua } => {
            let caps = device.capabilities();
            if fast && !(caps.write_zeroes && caps.fast_zero) {
                // "the server MUST fail quickly with NBD_ENOTSUP".
                return error_reply(s, handle, Errno::ENOTSUP, "zeroing would not be fast");
            }
            if caps.write_zeroes {
                done(device.write_zeroes(offset, u64::from(length), no_hole, fua).await)
            } else {
                done(write_zero_buffers(device, offset, length, fua, ctx.zeroes.clone()).await)
            }
        }
        Command::BlockStatus { offset, length, req_one } => match device.block_status(offset, length).await {
            Ok(extents) => {
                let d = reply::descriptors(&extents, length, req_one);
                reply::block_status(handle, BASE_ALLOCATION_ID, &d)
            }
            Err(e) => device_error(s, handle, &e),
        },
        // Handled by the reader; never spawned.
        Command::Disconnect => success(handle),
    }
}

/// Write zeroes for a device without the operation: plain writes from a
/// shared zero buffer, which is never copied.
async fn write_zero_buffers<D: BlockDevice>(
    device: &D,
    offset: u64,
    length: u32,
    fua: bool,
    zeroes: Bytes,
) -> Result<(), DeviceError> {
    let step = zeroes.len().max(1) as u64;
    let end = offset + u64::from(length);
    let mut pos = offset;
    while pos < end {
        let n = (end - pos).min(step) as usize;
        device.write(pos, zeroes.slice(..n), fua).await?;
        pos += n as u64;
    }
    Ok(())
}
