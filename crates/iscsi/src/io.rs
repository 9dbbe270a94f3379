//! Reading whole PDUs from a byte stream and writing target PDUs to one.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::pdu::frame::Framing;
use crate::pdu::{frame_layout, padded, Digests, FrameError, ParseError, Request, TargetPdu, BHS_LEN};

/// Why a connection stops reading.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed by peer")]
    Closed,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// One PDU as received: its header kept for a Reject, and either the parsed request or
/// the reason it could not be used.
#[derive(Debug)]
pub struct Incoming {
    pub bhs: [u8; BHS_LEN],
    pub request: Result<Request, Unusable>,
}

/// Why a framed PDU is answered with a Reject instead of being processed.
#[derive(Debug, PartialEq, Eq)]
pub enum Unusable {
    DataDigest,
    Parse(ParseError),
}

/// Reads PDUs with a receive buffer that never holds more than one PDU plus one read.
pub struct PduReader<R> {
    inner: R,
    buf: BytesMut,
}

/// Bytes asked of the socket per read: enough for a whole typical PDU.
const READ_CHUNK: usize = 64 * 1024;

impl<R: AsyncRead + Unpin> PduReader<R> {
    pub fn new(inner: R) -> PduReader<R> {
        PduReader { inner, buf: BytesMut::with_capacity(READ_CHUNK) }
    }

    /// Reads the next PDU. Cancel-safe: a partial PDU stays in the buffer.
    pub async fn next(&mut self, digests: Digests, max_data: u32) -> Result<Incoming, ReadError> {
        loop {
            match frame_layout(&self.buf, digests, max_data)? {
                Framing::Complete(layout) => {
                    let mut frame = self.buf.split_to(layout.total);
                    let mut bhs = [0u8; BHS_LEN];
                    bhs.copy_from_slice(&frame[..BHS_LEN]);
                    let ahs = frame[layout.ahs.clone()].to_vec();
                    frame.truncate(layout.data.end);
                    let data: Bytes = frame.split_off(layout.data.start).freeze();
                    let request = if layout.data_digest_ok {
                        Request::parse(&bhs, &ahs, data).map_err(Unusable::Parse)
                    } else {
                        Err(Unusable::DataDigest)
                    };
                    return Ok(Incoming { bhs, request });
                }
                Framing::Incomplete { need } => {
                    // Bounded: `need` is at most one PDU whose data length was checked
                    // against `max_data` by `frame_layout`.
                    let want = need.saturating_sub(self.buf.len()).max(READ_CHUNK.min(need));
                    self.buf.reserve(want);
                    if self.inner.read_buf(&mut self.buf).await? == 0 {
                        return Err(ReadError::Closed);
                    }
                }
            }
        }
    }
}

/// Data larger than this is written straight from its buffer instead of being copied
/// into the coalescing buffer.
const DIRECT_WRITE: usize = 32 * 1024;

/// Serialises target PDUs, coalescing small ones into few writes.
pub struct PduWriter<W> {
    inner: W,
    buf: BytesMut,
    pub digests: Digests,
}

impl<W: AsyncWrite + Unpin> PduWriter<W> {
    pub fn new(inner: W) -> PduWriter<W> {
        PduWriter { inner, buf: BytesMut::with_capacity(256 * 1024), digests: Digests::default() }
    }

    /// Queues one PDU; large data segments are sent without copying.
    pub async fn push(&mut self, pdu: &TargetPdu) -> std::io::Result<()> {
        if pdu.data.len() < DIRECT_WRITE {
            pdu.encode_into(&mut self.buf, self.digests.header, self.digests.data);
        } else {
            let header_only = TargetPdu { bhs: pdu.bhs, data: Bytes::new(), stat_sn: pdu.stat_sn };
            header_only.encode_into(&mut self.buf, self.digests.header, false);
            self.write_with(&pdu.data).await?;
            let pad = padded(pdu.data.len()) - pdu.data.len();
            self.buf.extend_from_slice(&[0u8; 3][..pad]);
            if self.digests.data {
                let crc = crate::digest::crc32c_parts(&[&pdu.data, &[0u8; 3][..pad]]);
                self.buf.extend_from_slice(&crc.to_le_bytes());
            }
        }
        if self.buf.len() >= 256 * 1024 {
            self.flush_buf().await?;
        }
        Ok(())
    }

    /// Writes the coalescing buffer and then `data` with vectored writes, so a large
    /// Data-In usually costs one system call with its header instead of two.
    async fn write_with(&mut self, data: &[u8]) -> std::io::Result<()> {
        let (mut head, mut body) = (0usize, 0usize);
        while head < self.buf.len() || body < data.len() {
            let slices = [std::io::IoSlice::new(&self.buf[head..]), std::io::IoSlice::new(&data[body..])];
            let n = self.inner.write_vectored(&slices).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            let from_head = n.min(self.buf.len() - head);
            head += from_head;
            body += n - from_head;
        }
        self.buf.clear();
        Ok(())
    }

    async fn flush_buf(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.flush_buf().await?;
        self.inner.flush().await
    }

    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        self.inner.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{NopIn, RESERVED_TAG};

    #[tokio::test]
    async fn writer_output_reads_back_pdu_by_pdu() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = PduWriter::new(a);
        w.digests = Digests { header: true, data: true };
        let big = Bytes::from(vec![7u8; 100_001]);
        for data in [Bytes::from_static(b"ping"), big.clone()] {
            let pdu: TargetPdu = NopIn { lun: 0, itt: 1, ttt: RESERVED_TAG, data }.into();
            w.push(&pdu).await.map_err(|e| e.to_string()).unwrap_or(());
        }
        assert!(w.flush().await.is_ok());
        // The target's NOP-In has opcode 0x20, which the initiator-side parser does not
        // accept; framing and digests are what is checked here.
        let mut r = PduReader::new(b);
        let d = Digests { header: true, data: true };
        let first = r.next(d, 1 << 20).await;
        assert!(matches!(first, Ok(Incoming { request: Err(Unusable::Parse(_)), .. })));
        let second = r.next(d, 1 << 20).await;
        let Ok(second) = second else {
            panic!("second PDU not framed");
        };
        assert_eq!(second.bhs[0], 0x20);
        assert_eq!(&second.bhs[5..8], &[0x01, 0x86, 0xa1]);
    }
}
