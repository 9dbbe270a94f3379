//! The login phase of one connection (RFC 7143 §6.3, §11.12, §11.13) as a state machine
//! over typed requests, so that it can be tested without a socket.

use bytes::Bytes;

use crate::chap::{ChapAuth, ChapStep};
use crate::config::TargetConfig;
use crate::negotiate::{Negotiator, SessionParams, SessionType};
use crate::pdu::{LoginRequest, LoginResponse, Sn, Stage};
use crate::text::{encode_text, parse_text, TextAccumulator};

/// Login status classes and details (RFC 7143 §11.13.5).
pub mod status {
    pub const INITIATOR_ERROR: (u8, u8) = (2, 0x00);
    pub const AUTH_FAILURE: (u8, u8) = (2, 0x01);
    pub const AUTHORIZATION_FAILURE: (u8, u8) = (2, 0x02);
    pub const NOT_FOUND: (u8, u8) = (2, 0x03);
    pub const UNSUPPORTED_VERSION: (u8, u8) = (2, 0x05);
    pub const TOO_MANY_CONNECTIONS: (u8, u8) = (2, 0x06);
    pub const MISSING_PARAMETER: (u8, u8) = (2, 0x07);
    pub const SESSION_DOES_NOT_EXIST: (u8, u8) = (2, 0x0a);
    pub const TARGET_ERROR: (u8, u8) = (3, 0x00);
}

/// What the login phase hands to the full-feature phase.
#[derive(Clone, Debug)]
pub struct LoginOutcome {
    pub initiator_name: String,
    pub isid: [u8; 6],
    pub session_type: SessionType,
    /// Index into the server's targets; `None` for a discovery session.
    pub target: Option<usize>,
    pub params: SessionParams,
    pub cid: u16,
    /// The CmdSN of the leading login request: the session's first ExpCmdSN.
    pub initial_cmd_sn: Sn,
}

/// The machine's answer to one login request.
#[derive(Debug)]
pub enum LoginStep {
    /// Send this response and wait for the next request.
    Continue(LoginResponse),
    /// Send this failure response and close the connection.
    Fail(LoginResponse),
    /// Send this response (its TSIH still to be filled in) and enter full-feature phase.
    Complete(LoginResponse, LoginOutcome),
}

#[derive(Debug)]
enum Auth {
    /// No AuthMethod settled yet.
    Pending,
    Chap(ChapAuth),
    Done,
}

/// Login state of one connection.
pub struct LoginMachine<'a> {
    targets: &'a [TargetConfig],
    /// Whether the leading login request has been seen.
    started: bool,
    stage: Stage,
    isid: [u8; 6],
    cid: u16,
    initial_cmd_sn: Sn,
    initiator_name: Option<String>,
    session_type: SessionType,
    target: Option<usize>,
    auth: Auth,
    negotiator: Option<Negotiator>,
    text: TextAccumulator,
    declared: bool,
}

fn get<'p>(pairs: &'p [(String, String)], key: &str) -> Option<&'p str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn is_security_key(key: &str) -> bool {
    key == "AuthMethod" || key.starts_with("CHAP_")
}

impl<'a> LoginMachine<'a> {
    pub fn new(targets: &'a [TargetConfig]) -> LoginMachine<'a> {
        LoginMachine {
            targets,
            started: false,
            stage: Stage::Security,
            isid: [0; 6],
            cid: 0,
            initial_cmd_sn: Sn(0),
            initiator_name: None,
            session_type: SessionType::Normal,
            target: None,
            auth: Auth::Pending,
            negotiator: None,
            text: TextAccumulator::default(),
            declared: false,
        }
    }

    fn response(&self, req: &LoginRequest, pairs: Vec<(String, String)>) -> LoginResponse {
        LoginResponse {
            transit: false,
            cont: false,
            csg: req.csg,
            nsg: req.csg,
            isid: req.isid,
            tsih: 0,
            itt: req.itt,
            status_class: 0,
            status_detail: 0,
            data: if pairs.is_empty() { Bytes::new() } else { encode_text(&pairs) },
        }
    }

    fn fail(&self, req: &LoginRequest, (class, detail): (u8, u8)) -> LoginStep {
        let mut r = self.response(req, Vec::new());
        r.status_class = class;
        r.status_detail = detail;
        LoginStep::Fail(r)
    }

    fn target_config(&self) -> Option<&TargetConfig> {
        self.target.and_then(|i| self.targets.get(i))
    }

    /// Handles one login request. `session_exists(tsih)` tells whether a nonzero TSIH
    /// names a live session.
    pub fn on_request(&mut self, req: &LoginRequest, session_exists: impl Fn(u16) -> bool) -> LoginStep {
        // Version 0x00 is the only one RFC 7143 defines (§11.12.4).
        if req.version_min > 0 {
            return self.fail(req, status::UNSUPPORTED_VERSION);
        }
        if !self.started {
            // The leading request may start in either negotiation stage (RFC 7143 §6.3).
            self.stage = req.csg;
        }
        if req.csg != self.stage || req.csg == Stage::FullFeature {
            return self.fail(req, status::INITIATOR_ERROR);
        }
        if self.text.push(&req.data).is_err() {
            return self.fail(req, status::INITIATOR_ERROR);
        }
        if req.cont {
            // More text follows: answer with an empty response (RFC 7143 §11.12.3).
            return LoginStep::Continue(self.response(req, Vec::new()));
        }
        let Ok(pairs) = parse_text(&self.text.take()) else {
            return self.fail(req, status::INITIATOR_ERROR);
        };
        let mut reply = Vec::new();
        if !self.started {
            if let Err(st) = self.leading(req, &pairs, &session_exists) {
                return self.fail(req, st);
            }
            self.started = true;
        } else if req.isid != self.isid || req.cid != self.cid {
            return self.fail(req, status::INITIATOR_ERROR);
        }
        if !self.declared && self.session_type == SessionType::Normal {
            // TargetPortalGroupTag goes in the first response of a normal session
            // (RFC 7143 §13.9); the alias may go with it (§13.6).
            self.declared = true;
            if let Some(t) = self.target_config() {
                reply.push(("TargetPortalGroupTag".to_owned(), t.portal_group_tag.to_string()));
                if let Some(alias) = &t.alias {
                    reply.push(("TargetAlias".to_owned(), alias.clone()));
                }
            }
        }
        let (security, operational): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| is_security_key(k));
        match self.stage {
            Stage::Security => {
                match self.security(&security) {
                    Ok(mut keys) => reply.append(&mut keys),
                    Err(st) => return self.fail(req, st),
                }
                if !operational.is_empty() {
                    let n = self.negotiator();
                    reply.extend(n.respond(&operational));
                }
            }
            Stage::Operational => {
                if !security.is_empty() {
                    return self.fail(req, status::INITIATOR_ERROR);
                }
                if !matches!(self.auth, Auth::Done) {
                    return self.fail(req, status::AUTH_FAILURE);
                }
                let n = self.negotiator();
                reply.extend(n.respond(&operational));
            }
            Stage::FullFeature => return self.fail(req, status::INITIATOR_ERROR),
        }
        let mut resp = self.response(req, reply);
        let Some(nsg) = req.nsg else {
            return LoginStep::Continue(resp);
        };
        let may_transit = match (self.stage, nsg) {
            (Stage::Security, Stage::Operational | Stage::FullFeature) => {
                matches!(self.auth, Auth::Done)
            }
            (Stage::Operational, Stage::FullFeature) => true,
            _ => return self.fail(req, status::INITIATOR_ERROR),
        };
        if !may_transit {
            return LoginStep::Continue(resp);
        }
        resp.transit = true;
        resp.nsg = nsg;
        self.stage = nsg;
        if nsg != Stage::FullFeature {
            return LoginStep::Continue(resp);
        }
        let params = self.negotiator().params();
        let outcome = LoginOutcome {
            initiator_name: self.initiator_name.clone().unwrap_or_default(),
            isid: self.isid,
            session_type: self.session_type,
            target: self.target,
            params,
            cid: self.cid,
            initial_cmd_sn: self.initial_cmd_sn,
        };
        LoginStep::Complete(resp, outcome)
    }

    fn negotiator(&mut self) -> &mut Negotiator {
        let limits = self.target_config().map(|t| t.limits.clone()).unwrap_or_default();
        let session_type = self.session_type;
        self.negotiator.get_or_insert_with(|| Negotiator::new(limits, session_type))
    }

    /// Checks the leading login request's identity keys (RFC 7143 §13.4, §13.21, §13.22).
    fn leading(
        &mut self,
        req: &LoginRequest,
        pairs: &[(String, String)],
        session_exists: &impl Fn(u16) -> bool,
    ) -> Result<(), (u8, u8)> {
        self.isid = req.isid;
        self.cid = req.cid;
        self.initial_cmd_sn = req.cmd_sn;
        let name = get(pairs, "InitiatorName").ok_or(status::MISSING_PARAMETER)?;
        if name.is_empty() {
            return Err(status::MISSING_PARAMETER);
        }
        self.initiator_name = Some(name.to_owned());
        self.session_type = match get(pairs, "SessionType").unwrap_or("Normal") {
            "Normal" => SessionType::Normal,
            "Discovery" => SessionType::Discovery,
            _ => return Err(status::INITIATOR_ERROR),
        };
        if req.tsih != 0 {
            // Sessions have one connection (MaxConnections=1), so a login that names an
            // existing session cannot add to it (RFC 7143 §11.13.5, 0x0206 / 0x020a).
            return Err(if session_exists(req.tsih) {
                status::TOO_MANY_CONNECTIONS
            } else {
                status::SESSION_DOES_NOT_EXIST
            });
        }
        if self.session_type == SessionType::Normal {
            let tname = get(pairs, "TargetName").ok_or(status::MISSING_PARAMETER)?;
            let idx = self.targets.iter().position(|t| t.name.eq_ignore_ascii_case(tname)).ok_or(status::NOT_FOUND)?;
            if !self.targets[idx].admits(name) {
                return Err(status::AUTHORIZATION_FAILURE);
            }
            self.target = Some(idx);
        }
        let needs_chap = self.target_config().is_some_and(|t| t.chap.is_some());
        if req.csg == Stage::Operational {
            // Skipping the security stage is only possible when no authentication
            // is required (RFC 7143 §6.3).
            if needs_chap {
                return Err(status::AUTH_FAILURE);
            }
            self.auth = Auth::Done;
        }
        Ok(())
    }

    /// Security-stage keys: AuthMethod selection, then CHAP (RFC 7143 §12.1).
    fn security(&mut self, keys: &[(String, String)]) -> Result<Vec<(String, String)>, (u8, u8)> {
        let mut reply = Vec::new();
        let chap_creds = self.target_config().and_then(|t| t.chap.clone());
        if let Some(methods) = get(keys, "AuthMethod") {
            if !matches!(self.auth, Auth::Pending) {
                return Err(status::INITIATOR_ERROR);
            }
            let offered: Vec<&str> = methods.split(',').collect();
            match chap_creds {
                Some(creds) if offered.contains(&"CHAP") => {
                    reply.push(("AuthMethod".to_owned(), "CHAP".to_owned()));
                    self.auth = Auth::Chap(ChapAuth::new(creds));
                }
                Some(_) => return Err(status::AUTH_FAILURE),
                None if offered.contains(&"None") => {
                    reply.push(("AuthMethod".to_owned(), "None".to_owned()));
                    self.auth = Auth::Done;
                }
                None => return Err(status::AUTH_FAILURE),
            }
        } else if matches!(self.auth, Auth::Pending) && chap_creds.is_none() {
            // No AuthMethod offered and none required: the default is None (§13 table).
            self.auth = Auth::Done;
        }
        let chap_keys: Vec<(String, String)> = keys.iter().filter(|(k, _)| k.starts_with("CHAP_")).cloned().collect();
        if let Auth::Chap(chap) = &mut self.auth {
            match chap.step(&chap_keys) {
                Ok(ChapStep::Continue(mut k)) => reply.append(&mut k),
                Ok(ChapStep::Authenticated(mut k)) => {
                    reply.append(&mut k);
                    self.auth = Auth::Done;
                }
                Err(_) => return Err(status::AUTH_FAILURE),
            }
        } else if !chap_keys.is_empty() {
            return Err(status::INITIATOR_ERROR);
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests;
