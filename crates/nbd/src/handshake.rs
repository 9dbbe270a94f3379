//! Option haggling of the fixed newstyle handshake as a state machine with
//! no I/O: it takes one option at a time and appends the replies to a
//! buffer. The connection driver only moves bytes.

use crate::device::Capabilities;
use crate::option::{parse_option, ClientFlags, ClientOption, OptionError, OptionHeader};
use crate::proto::{self, info, opt, rep, transmission_flags as tf};

/// Block size constraints advertised with `NBD_INFO_BLOCK_SIZE` and enforced
/// during transmission ("Block size constraints").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSizes {
    pub min: u32,
    pub preferred: u32,
    pub max: u32,
}

impl BlockSizes {
    /// Derives constraints that satisfy the protocol's rules from a device's
    /// capabilities and the server's own request cap: minimum a power of two
    /// no larger than 64 KiB, preferred a power of two at least
    /// max(minimum, 512), maximum a multiple of the minimum.
    pub fn new(caps: &Capabilities, max_request: u32) -> Self {
        let min = caps.min_block.clamp(1, 1 << 16).next_power_of_two();
        let preferred = caps.preferred_block.clamp(1, 1 << 30).next_power_of_two().max(min).max(512);
        let cap = caps.max_block.min(max_request).max(min);
        let max = cap - cap % min;
        BlockSizes { min, preferred, max }
    }
}

/// What the handshake knows of one export.
#[derive(Clone, Debug)]
pub struct ExportInfo {
    pub name: String,
    pub description: String,
    pub size: u64,
    /// Capabilities with the export's read-only setting folded in.
    pub caps: Capabilities,
    pub block: BlockSizes,
}

impl ExportInfo {
    /// Transmission flags for this export ("Transmission flags"); `SEND_DF`
    /// only when structured replies were negotiated, since the flag MUST be
    /// clear otherwise.
    pub fn transmission_flags(&self, structured: bool) -> u16 {
        let c = &self.caps;
        let mut f = tf::HAS_FLAGS;
        if c.read_only {
            f |= tf::READ_ONLY;
        } else {
            if c.fua {
                f |= tf::SEND_FUA;
            }
            if c.trim {
                f |= tf::SEND_TRIM;
            }
            // Write zeroes is always offered on writable exports: the server
            // writes zero buffers itself when the device has no such
            // operation. Fast zero is offered with it, answered ENOTSUP when
            // the device cannot zero fast (allowed by "NBD_FLAG_SEND_FAST_ZERO").
            f |= tf::SEND_WRITE_ZEROES | tf::SEND_FAST_ZERO;
        }
        if c.flush {
            f |= tf::SEND_FLUSH;
        }
        if c.multi_conn {
            f |= tf::CAN_MULTI_CONN;
        }
        if structured {
            f |= tf::SEND_DF;
        }
        f
    }
}

/// The metadata context id this server hands out for `base:allocation`.
pub const BASE_ALLOCATION_ID: u32 = 1;

/// Parameters of the transmission phase, fixed when haggling ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    pub export: usize,
    pub structured: bool,
    /// `base:allocation` was selected for this export.
    pub base_allocation: bool,
    pub flags: u16,
    pub block: BlockSizes,
    pub size: u64,
}

/// What the driver does after an option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send the replies, read the next option.
    Continue,
    /// Send the replies, then close the connection.
    Close,
    /// Send the replies, then enter transmission.
    Transmit(Session),
}

/// How to treat option data of a given length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataPolicy {
    Read,
    /// Read and drop it, then answer `NBD_REP_ERR_TOO_BIG`.
    DiscardTooBig,
    /// So large that reading it is a denial of service: hard disconnect.
    Close,
}

/// Limits on what a client may send during the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// Largest option data handled.
    pub max_option_len: u32,
    /// Largest option data read and discarded with `NBD_REP_ERR_TOO_BIG`.
    pub max_discard_len: u32,
    /// Options allowed before the server gives up on the client.
    pub max_options: u32,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits { max_option_len: 64 * 1024, max_discard_len: 1 << 20, max_options: 1024 }
    }
}

#[derive(Clone, Copy, Debug)]
struct MetaSelection {
    export: usize,
    base_allocation: bool,
}

/// Option haggling state for one connection.
#[derive(Debug)]
pub struct Negotiation<'a> {
    exports: &'a [ExportInfo],
    limits: HandshakeLimits,
    client: ClientFlags,
    structured: bool,
    meta: Option<MetaSelection>,
    options_seen: u32,
    shutting_down: bool,
}

/// The server's greeting: `NBDMAGIC`, `IHAVEOPT`, handshake flags.
pub fn greeting() -> [u8; 18] {
    let mut g = [0u8; 18];
    g[..8].copy_from_slice(&proto::NBDMAGIC.to_be_bytes());
    g[8..16].copy_from_slice(&proto::IHAVEOPT.to_be_bytes());
    let flags = proto::handshake_flags::FIXED_NEWSTYLE | proto::handshake_flags::NO_ZEROES;
    g[16..].copy_from_slice(&flags.to_be_bytes());
    g
}

/// Appends one fixed-newstyle option reply.
pub fn push_option_reply(out: &mut Vec<u8>, option: u32, reply_type: u32, data: &[u8]) {
    out.extend_from_slice(&proto::OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply_type.to_be_bytes());
    // Data is built by this module from bounded strings; saturate rather
    // than wrap if that ever changed.
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
}

impl<'a> Negotiation<'a> {
    pub fn new(exports: &'a [ExportInfo], client: ClientFlags, limits: HandshakeLimits) -> Self {
        Negotiation { exports, limits, client, structured: false, meta: None, options_seen: 0, shutting_down: false }
    }

    /// From now on every option but `NBD_OPT_ABORT` is answered
    /// `NBD_REP_ERR_SHUTDOWN` ("Termination of the session during option
    /// haggling").
    pub fn set_shutting_down(&mut self) {
        self.shutting_down = true;
    }

    /// Decides whether option data of `length` bytes is read.
    pub fn data_policy(&self, length: u32) -> DataPolicy {
        if length <= self.limits.max_option_len {
            DataPolicy::Read
        } else if length <= self.limits.max_discard_len && self.client.fixed_newstyle {
            DataPolicy::DiscardTooBig
        } else {
            DataPolicy::Close
        }
    }

    /// Answers option data that was discarded as too big.
    pub fn too_big(&mut self, header: OptionHeader, out: &mut Vec<u8>) -> Step {
        if header.option == opt::EXPORT_NAME || !self.count_option() {
            return Step::Close;
        }
        push_option_reply(out, header.option, rep::ERR_TOO_BIG, b"option data too large");
        Step::Continue
    }

    fn count_option(&mut self) -> bool {
        self.options_seen = self.options_seen.saturating_add(1);
        self.options_seen <= self.limits.max_options
    }

    fn lookup(&self, name: &str) -> Option<usize> {
        // The empty name selects the default export, which is the first.
        if name.is_empty() {
            return if self.exports.is_empty() { None } else { Some(0) };
        }
        self.exports.iter().position(|e| e.name == name)
    }

    /// Handles one option whose data has been read in full.
    pub fn handle(&mut self, header: OptionHeader, data: &[u8], out: &mut Vec<u8>) -> Step {
        let code = header.option;
        if !self.count_option() {
            // Endless option haggling is treated as a denial of service.
            return Step::Close;
        }
        if !self.client.fixed_newstyle && code != opt::EXPORT_NAME {
            // Without fixed newstyle, anything but EXPORT_NAME cannot be
            // answered ("Newstyle negotiation").
            return Step::Close;
        }
        if self.shutting_down && code != opt::ABORT {
            if code == opt::EXPORT_NAME {
                return Step::Close;
            }
            push_option_reply(out, code, rep::ERR_SHUTDOWN, b"server is shutting down");
            return Step::Continue;
        }
        let parsed = match parse_option(code, data) {
            Ok(p) => p,
            // EXPORT_NAME cannot return an error: the session is terminated.
            Err(_) if code == opt::EXPORT_NAME => return Step::Close,
            Err(e) => {
                if code == opt::SET_META_CONTEXT {
                    // A failed SET still replaces the selection.
                    self.meta = None;
                }
                let kind = match e {
                    OptionError::Invalid(_) => rep::ERR_INVALID,
                    OptionError::TooBig(_) => rep::ERR_TOO_BIG,
                };
                push_option_reply(out, code, kind, e.to_string().as_bytes());
                return Step::Continue;
            }
        };
        match parsed {
            ClientOption::ExportName(name) => self.export_name(name, out),
            ClientOption::Abort => {
                push_option_reply(out, code, rep::ACK, &[]);
                Step::Close
            }
            ClientOption::List => {
                for e in self.exports {
                    let mut d = Vec::with_capacity(4 + e.name.len() + e.description.len());
                    d.extend_from_slice(&(e.name.len() as u32).to_be_bytes());
                    d.extend_from_slice(e.name.as_bytes());
                    d.extend_from_slice(e.description.as_bytes());
                    push_option_reply(out, code, rep::SERVER, &d);
                }
                push_option_reply(out, code, rep::ACK, &[]);
                Step::Continue
            }
            ClientOption::StartTls => {
                // NOTLS mode: ERR_UNSUP is one of the two allowed answers.
                push_option_reply(out, code, rep::ERR_UNSUP, b"TLS is not supported");
                Step::Continue
            }
            ClientOption::StructuredReply => {
                self.structured = true;
                push_option_reply(out, code, rep::ACK, &[]);
                Step::Continue
            }
            ClientOption::Info { go, name, requests } => self.info(code, go, name, &requests, out),
            ClientOption::MetaContext { set, name, queries } => self.meta_context(code, set, name, &queries, out),
            ClientOption::Unknown(_) => {
                push_option_reply(out, code, rep::ERR_UNSUP, b"unsupported option");
                Step::Continue
            }
        }
    }

    fn session(&self, export: usize) -> Session {
        let e = &self.exports[export];
        Session {
            export,
            structured: self.structured,
            base_allocation: self.structured && matches!(self.meta, Some(m) if m.export == export && m.base_allocation),
            flags: e.transmission_flags(self.structured),
            block: e.block,
            size: e.size,
        }
    }

    fn export_name(&mut self, name: &str, out: &mut Vec<u8>) -> Step {
        let Some(idx) = self.lookup(name) else {
            // "If the chosen export does not exist ... the server MUST
            // terminate the session."
            return Step::Close;
        };
        let s = self.session(idx);
        out.extend_from_slice(&s.size.to_be_bytes());
        out.extend_from_slice(&s.flags.to_be_bytes());
        if !self.client.no_zeroes {
            out.extend_from_slice(&[0u8; 124]);
        }
        Step::Transmit(s)
    }

    fn info(&mut self, code: u32, go: bool, name: &str, requests: &[u16], out: &mut Vec<u8>) -> Step {
        let Some(idx) = self.lookup(name) else {
            push_option_reply(out, code, rep::ERR_UNKNOWN, b"no such export");
            return Step::Continue;
        };
        let s = self.session(idx);
        let e = &self.exports[idx];
        let mut d = Vec::with_capacity(14);
        d.extend_from_slice(&info::EXPORT.to_be_bytes());
        d.extend_from_slice(&s.size.to_be_bytes());
        d.extend_from_slice(&s.flags.to_be_bytes());
        push_option_reply(out, code, rep::INFO, &d);
        if requests.contains(&info::NAME) {
            let mut d = info::NAME.to_be_bytes().to_vec();
            d.extend_from_slice(e.name.as_bytes());
            push_option_reply(out, code, rep::INFO, &d);
        }
        if requests.contains(&info::DESCRIPTION) && !e.description.is_empty() {
            let mut d = info::DESCRIPTION.to_be_bytes().to_vec();
            d.extend_from_slice(e.description.as_bytes());
            push_option_reply(out, code, rep::INFO, &d);
        }
        // Sent whether asked or not: a server whose constraints differ from
        // the defaults SHOULD advertise them ("Block size constraints").
        let mut d = info::BLOCK_SIZE.to_be_bytes().to_vec();
        d.extend_from_slice(&s.block.min.to_be_bytes());
        d.extend_from_slice(&s.block.preferred.to_be_bytes());
        d.extend_from_slice(&s.block.max.to_be_bytes());
        push_option_reply(out, code, rep::INFO, &d);
        push_option_reply(out, code, rep::ACK, &[]);
        if go {
            Step::Transmit(s)
        } else {
            Step::Continue
        }
    }

    fn meta_context(&mut self, code: u32, set: bool, name: &str, queries: &[&str], out: &mut Vec<u8>) -> Step {
        if set {
            self.meta = None;
            if !self.structured {
                // SET_META_CONTEXT MUST NOT be sent before structured replies.
                push_option_reply(out, code, rep::ERR_INVALID, b"structured replies not negotiated");
                return Step::Continue;
            }
        }
        let Some(idx) = self.lookup(name) else {
            push_option_reply(out, code, rep::ERR_UNKNOWN, b"no such export");
            return Step::Continue;
        };
        let available = self.exports[idx].caps.block_status;
        let mut matched = queries.is_empty() && !set && available;
        for q in queries {
            let Some((ns, leaf)) = q.split_once(':') else {
                push_option_reply(out, code, rep::ERR_INVALID, b"query lacks a namespace");
                return Step::Continue;
            };
            // Unknown namespaces and unknown leaf names in `base` are ignored;
            // the bare `base:` wildcard lists but never selects.
            if ns == "base" && available && (leaf == "allocation" || (leaf.is_empty() && !set)) {
                matched = true;
            }
        }
        if matched {
            let id = if set { BASE_ALLOCATION_ID } else { 0 };
            let mut d = id.to_be_bytes().to_vec();
            d.extend_from_slice(proto::BASE_ALLOCATION.as_bytes());
            push_option_reply(out, code, rep::META_CONTEXT, &d);
        }
        if set {
            self.meta = Some(MetaSelection { export: idx, base_allocation: matched });
        }
        push_option_reply(out, code, rep::ACK, &[]);
        Step::Continue
    }
}

#[cfg(test)]
mod tests;
