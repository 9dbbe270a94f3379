//! Text requests in full-feature phase (RFC 7143 §11.10, §11.11): SendTargets
//! (Appendix C) with responses continued over several PDUs when longer than the
//! initiator's MaxRecvDataSegmentLength.

use bytes::Bytes;

use super::{Connection, End};
use crate::backend::ScsiBackend;
use crate::negotiate::SessionType;
use crate::pdu::{RejectReason, TextRequest, TextResponse, BHS_LEN, RESERVED_TAG};
use crate::text::{encode_text, parse_text, TextAccumulator};

/// A text exchange in progress.
#[derive(Default)]
pub(crate) struct TextState {
    acc: TextAccumulator,
    /// Response bytes not sent yet, with the TTT that asks for them.
    pending: Option<(u32, Bytes)>,
}

impl<B: ScsiBackend> Connection<'_, B> {
    pub(super) async fn on_text(&mut self, t: TextRequest) -> Option<End> {
        if t.ttt != RESERVED_TAG {
            // The initiator asks for the next part of a long response.
            return match self.text.pending.take() {
                Some((ttt, rest)) if ttt == t.ttt => self.send_text(t.itt, t.lun, rest).await,
                _ => self.reject_text(&t).await,
            };
        }
        // A new exchange with the reserved TTT resets any earlier one (RFC 7143 §11.10.4).
        self.text.pending = None;
        if self.text.acc.push(&t.data).is_err() {
            return self.reject_text(&t).await;
        }
        if t.cont {
            // More request text follows: acknowledge with an empty response.
            let ttt = self.ttt();
            let resp = TextResponse { final_: false, cont: false, lun: t.lun, itt: t.itt, ttt, data: Bytes::new() };
            return (!self.send(resp).await).then_some(End::Closed);
        }
        let Ok(pairs) = parse_text(&self.text.acc.take()) else {
            return self.reject_text(&t).await;
        };
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in pairs {
            if k == "SendTargets" {
                out.extend(self.send_targets(&v));
            } else {
                // Only SendTargets is offered after login; operational keys cannot be
                // renegotiated here at ERL 0 (RFC 7143 §6.2, "LO" keys).
                out.push((k, "NotUnderstood".to_owned()));
            }
        }
        self.send_text(t.itt, t.lun, encode_text(&out)).await
    }

    async fn reject_text(&mut self, t: &TextRequest) -> Option<End> {
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = crate::pdu::opcode::TEXT_REQUEST;
        bhs[16..20].copy_from_slice(&t.itt.to_be_bytes());
        bhs[20..24].copy_from_slice(&t.ttt.to_be_bytes());
        (!self.reject(RejectReason::InvalidPduField, bhs).await).then_some(End::Closed)
    }

    /// Sends `data`, or its first part with the C bit and a TTT for the rest.
    async fn send_text(&mut self, itt: u32, lun: u64, data: Bytes) -> Option<End> {
        let max = self.params().initiator_mrdsl as usize;
        let resp = if data.len() > max {
            let ttt = self.ttt();
            self.text.pending = Some((ttt, data.slice(max..)));
            TextResponse { final_: false, cont: true, lun, itt, ttt, data: data.slice(..max) }
        } else {
            TextResponse { final_: true, cont: false, lun, itt, ttt: RESERVED_TAG, data }
        };
        (!self.send(resp).await).then_some(End::Closed)
    }

    /// TargetName / TargetAddress pairs (RFC 7143 Appendix C): every target the
    /// initiator may use in a discovery session, the session's own target otherwise.
    fn send_targets(&self, value: &str) -> Vec<(String, String)> {
        let initiator = self.info.initiator_name.as_str();
        let candidates: Vec<&crate::config::TargetConfig> = match self.info.session_type {
            SessionType::Discovery => self
                .info
                .all_targets
                .iter()
                .filter(|t| t.admits(initiator))
                .filter(|t| value == "All" || t.name.eq_ignore_ascii_case(value))
                .collect(),
            SessionType::Normal => self
                .info
                .config
                .into_iter()
                .filter(|t| value.is_empty() || value == "All" || t.name.eq_ignore_ascii_case(value))
                .collect(),
        };
        let mut out = Vec::new();
        for t in candidates {
            out.push(("TargetName".to_owned(), t.name.clone()));
            let addr = match t.portal {
                std::net::SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
                std::net::SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
            };
            out.push(("TargetAddress".to_owned(), format!("{addr},{}", t.portal_group_tag)));
        }
        out
    }
}
