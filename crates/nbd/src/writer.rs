//! The one task per connection that writes replies: it gathers whatever
//! replies are ready and hands them to the socket in vectored writes, so a
//! burst of small replies costs one system call and large payloads are
//! never copied.

use std::io::{self, IoSlice};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::reply::Outgoing;

/// Replies gathered into one batch at most.
const MAX_BATCH: usize = 64;

/// Writes replies until every sender is gone, then shuts the stream down.
/// Returns early on a write error (the peer went away).
pub(crate) async fn write_replies<W, H>(mut w: W, mut rx: UnboundedReceiver<Outgoing<H>>) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut batch: Vec<Outgoing<H>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        write_batch(&mut w, &batch).await?;
        // Dropping the replies releases their share of the budget.
        batch.clear();
    }
    w.flush().await?;
    w.shutdown().await
}

/// Position inside a batch: which part (two per reply: head, body) and how
/// far into it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Cursor {
    part: usize,
    offset: usize,
}

fn part<H>(batch: &[Outgoing<H>], i: usize) -> &[u8] {
    let o = &batch[i / 2];
    if i.is_multiple_of(2) {
        o.head()
    } else {
        o.body()
    }
}

/// Moves the cursor `n` bytes forward, skipping empty parts.
fn advance<H>(batch: &[Outgoing<H>], mut c: Cursor, mut n: usize) -> Cursor {
    let parts = batch.len() * 2;
    while c.part < parts {
        let left = part(batch, c.part).len() - c.offset;
        if n < left {
            c.offset += n;
            return c;
        }
        n -= left;
        c.part += 1;
        c.offset = 0;
        if n == 0 {
            // Land on the next non-empty part so the loop below ends.
            while c.part < parts && part(batch, c.part).is_empty() {
                c.part += 1;
            }
            return c;
        }
    }
    c
}

async fn write_batch<W: AsyncWrite + Unpin, H>(w: &mut W, batch: &[Outgoing<H>]) -> io::Result<()> {
    let parts = batch.len() * 2;
    let mut c = advance(batch, Cursor::default(), 0);
    while c.part < parts {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(parts - c.part);
        slices.push(IoSlice::new(&part(batch, c.part)[c.offset..]));
        for i in c.part + 1..parts {
            let p = part(batch, i);
            if !p.is_empty() {
                slices.push(IoSlice::new(p));
            }
        }
        let n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "socket accepted no bytes"));
        }
        c = advance(batch, c, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply;
    use bytes::Bytes;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A sink that takes at most `step` bytes per call, to exercise partial
    /// vectored writes.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut left = self.step;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(left);
                self.out.extend_from_slice(&b[..take]);
                left -= take;
                n += take;
                if left == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn partial_vectored_writes_keep_every_byte_in_order() {
        let batch = vec![
            reply::simple(1, None, Bytes::from(vec![0xaa; 1000])),
            reply::none(2),
            reply::simple(3, None, Bytes::new()),
            reply::offset_data(4, 0, Bytes::from(vec![0x55; 77])),
        ];
        let expect: Vec<u8> = batch.iter().flat_map(|o| o.to_vec()).collect();
        for step in [1, 7, 16, 333, 100_000] {
            let mut t = Trickle { out: Vec::new(), step };
            write_batch(&mut t, &batch).await.unwrap();
            assert_eq!(t.out, expect, "step {step}");
        }
    }
}
