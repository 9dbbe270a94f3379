//! The writer half of a connection: stamps StatSN, ExpCmdSN and MaxCmdSN in the order
//! PDUs go out (RFC 7143 §4.2.2.2) and coalesces small PDUs into few writes.

use std::sync::Arc;

use tokio::io::AsyncWrite;
use tokio::sync::mpsc;

use crate::io::PduWriter;
use crate::pdu::{Sn, StatSnUse, TargetPdu};
use crate::window::Window;

/// What the connection's tasks hand to the writer.
#[derive(Debug)]
pub(crate) enum Out {
    Pdu(TargetPdu),
    /// A PDU whose data counts against the connection's buffer budget until sent.
    Budgeted(TargetPdu, tokio::sync::OwnedSemaphorePermit),
    /// Flush, close the socket, stop.
    Close,
}

/// Writes PDUs until the channel closes or `Out::Close` arrives. Returns the next
/// StatSN.
pub(crate) async fn writer_task<W: AsyncWrite + Unpin>(
    mut w: PduWriter<W>,
    mut rx: mpsc::Receiver<Out>,
    window: Arc<Window>,
    mut stat_sn: Sn,
) -> Sn {
    while let Some(first) = rx.recv().await {
        let mut item = Some(first);
        while let Some(out) = item {
            let (mut pdu, permit) = match out {
                Out::Pdu(pdu) => (pdu, None),
                Out::Budgeted(pdu, permit) => (pdu, Some(permit)),
                Out::Close => {
                    let _ = w.shutdown().await;
                    return stat_sn;
                }
            };
            let (exp, max) = window.numbers();
            pdu.stamp(stat_sn, exp, max);
            if pdu.stat_sn == StatSnUse::Advance {
                stat_sn = stat_sn.next();
            }
            if w.push(&pdu).await.is_err() {
                return stat_sn;
            }
            // The bytes have left this connection's queue (copied or written).
            drop(permit);
            item = rx.try_recv().ok();
        }
        if w.flush().await.is_err() {
            return stat_sn;
        }
    }
    let _ = w.shutdown().await;
    stat_sn
}
