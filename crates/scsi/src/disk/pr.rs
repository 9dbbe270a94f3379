//! Reservations: SPC-2 RESERVE/RELEASE and SPC-4 persistent reservations (§5.9), with
//! registrations kept per I_T nexus and, when an initiator asks for APTPL, saved to a
//! state file that survives restart. REGISTER AND MOVE (§5.9.9) names its destination by a
//! TransportID; `docs/scsi-features.md` ("REGISTER AND MOVE") gives how TransportIDs map to
//! the I_T nexus identities this unit sees.

use super::opcodes::Class;
use super::{ConfigError, Inner};
use crate::cdb::{be16, be32, be64, get, len32, set32, PutBe};
use crate::opcode::service_action as sa;
use crate::sense::{AscAscq, Sense};
use crate::status::{Outcome, ScsiStatus};
use crate::task::{Begin, Nexus};
use parking_lot::Mutex;
use scsi_proto::transport_id::{self, IscsiName, TransportId, TransportIdError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Reservation types (SPC-4 table 169).
const WR_EX: u8 = 1;
const EX_AC: u8 = 3;
const WR_EX_RO: u8 = 5;
const EX_AC_RO: u8 = 6;
const WR_EX_AR: u8 = 7;
const EX_AC_AR: u8 = 8;

fn all_registrants(t: u8) -> bool {
    matches!(t, WR_EX_AR | EX_AC_AR)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Holder {
    initiator: u64,
    rtype: u8,
}

#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct State {
    generation: u32,
    /// I_T nexus → reservation key.
    registrations: BTreeMap<u64, u64>,
    reservation: Option<Holder>,
    aptpl: bool,
    /// I_T nexus → the initiator port behind it, for registrants whose port was named to this unit (by a
    /// TransportID); READ FULL STATUS reports it.
    #[serde(default)]
    ports: BTreeMap<u64, Port>,
    #[serde(skip)]
    spc2: Option<Nexus>,
}

/// An iSCSI initiator port as the state file keeps it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Port {
    name: String,
    isid: Option<[u8; 6]>,
}

impl Port {
    fn of(p: &IscsiName) -> Self {
        Port { name: p.name.clone(), isid: p.isid }
    }

    fn name(&self) -> IscsiName {
        IscsiName { name: self.name.clone(), isid: self.isid }
    }
}

impl State {
    fn key(&self, n: Nexus) -> Option<u64> {
        self.registrations.get(&n.initiator).copied()
    }

    fn holds(&self, n: Nexus) -> bool {
        match self.reservation {
            Some(h) if all_registrants(h.rtype) => self.key(n).is_some(),
            Some(h) => h.initiator == n.initiator,
            None => false,
        }
    }

    fn active(&self) -> bool {
        self.spc2.is_some() || !self.registrations.is_empty() || self.reservation.is_some()
    }
}

pub(crate) struct Reservations {
    state: Mutex<State>,
    /// Fast path: no reservation or registration of any kind exists.
    active: AtomicBool,
    file: Option<PathBuf>,
}

impl Reservations {
    /// Load APTPL state if the file exists.
    pub(crate) fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut state = State::default();
        if let Some(path) = file {
            match std::fs::read(path) {
                Ok(bytes) => {
                    state = serde_json::from_slice(&bytes)
                        .map_err(|e| ConfigError::PrState { path: path.to_owned(), reason: e.to_string() })?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ConfigError::PrState { path: path.to_owned(), reason: e.to_string() }),
            }
        }
        let active = AtomicBool::new(state.active());
        Ok(Self { state: Mutex::new(state), active, file: file.map(Path::to_owned) })
    }

    fn settle(&self, s: &State) {
        self.active.store(s.active(), Ordering::Release);
    }

    /// Save (APTPL set) or forget (APTPL clear) the persistent state (SPC-4 §5.9.4.5).
    /// Written to a temporary file, synced, then renamed, so a crash leaves the old or
    /// the new state.
    fn persist(&self, s: &State) -> std::io::Result<()> {
        let Some(path) = &self.file else { return Ok(()) };
        if !s.aptpl {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let tmp = path.with_extension("tmp");
        let data = serde_json::to_vec(s).map_err(std::io::Error::other)?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }

    /// Whether the command must end in RESERVATION CONFLICT (SPC-4 §5.9.1 table 45,
    /// SPC-2 §5.5.1).
    pub(crate) fn conflicts(&self, n: Nexus, class: Class, _cdb: &[u8]) -> bool {
        if !self.active.load(Ordering::Acquire) {
            return false;
        }
        let s = self.state.lock();
        if let Some(holder) = s.spc2 {
            if holder != n && !matches!(class, Class::Info | Class::Release) {
                return true;
            }
        }
        let Some(res) = s.reservation else {
            return class == Class::Reserve && !s.registrations.is_empty();
        };
        let registered = s.key(n).is_some();
        match class {
            Class::Info | Class::Service | Class::Release => false,
            Class::Reserve => true,
            Class::Read => match res.rtype {
                EX_AC => !s.holds(n),
                EX_AC_RO | EX_AC_AR => !registered,
                _ => false,
            },
            Class::Write => match res.rtype {
                WR_EX | EX_AC => !s.holds(n),
                _ => !registered,
            },
        }
    }

    /// RESERVE(6/10); false on conflict.
    pub(crate) fn reserve_spc2(&self, n: Nexus) -> bool {
        let mut s = self.state.lock();
        match s.spc2 {
            Some(h) if h != n => false,
            _ => {
                s.spc2 = Some(n);
                self.settle(&s);
                true
            }
        }
    }

    /// Release the SPC-2 reservation: any holder (reset) or only `n`'s.
    pub(crate) fn release_spc2(&self, n: Option<Nexus>) {
        let mut s = self.state.lock();
        if n.is_none() || s.spc2 == n {
            s.spc2 = None;
        }
        self.settle(&s);
    }
}

fn conflict() -> Outcome {
    Outcome::status(ScsiStatus::RESERVATION_CONFLICT)
}

/// PERSISTENT RESERVE IN (SPC-4 §6.15).
pub(crate) fn pr_in(inner: &Arc<Inner>, _: Nexus, cdb: &[u8]) -> Begin {
    let sa = cdb[1] & 0x1F;
    let alloc = u64::from(be16(cdb, 7));
    let s = inner.pr.state.lock();
    let mut out = Vec::new();
    out.put32(s.generation);
    match sa {
        sa::READ_KEYS => {
            out.put32(len32(8 * s.registrations.len()));
            for key in s.registrations.values() {
                out.put64(*key);
            }
        }
        sa::READ_RESERVATION => match s.reservation {
            Some(h) => {
                out.put32(16);
                let key =
                    if all_registrants(h.rtype) { 0 } else { s.registrations.get(&h.initiator).copied().unwrap_or(0) };
                out.put64(key);
                out.put32(0);
                out.push(0);
                out.push(h.rtype & 0x0F);
                out.put16(0);
            }
            None => out.put32(0),
        },
        sa::REPORT_CAPABILITIES => {
            out.clear();
            out.put16(8);
            let ptpl_c = u8::from(inner.pr.file.is_some());
            out.push(ptpl_c); // PTPL_C; no CRH, SIP_C or ATP_C
            out.push(0x80 | 0x10 | u8::from(s.aptpl)); // TMV, ALLOW COMMANDS 001b, PTPL_A
            out.push(0x80 | 0x40 | 0x20 | 0x08 | 0x02); // WR_EX_AR EX_AC_RO WR_EX_RO EX_AC WR_EX
            out.push(0x01); // EX_AC_AR
            out.put16(0);
        }
        _ => {
            // READ FULL STATUS: each registration is of one I_T nexus through this unit's one target port
            // (ALL_TG_PT 0, ATP_C 0). Its TransportID is the stack's nexus form: the identity this unit sees and,
            // when it was named to the unit, the initiator port's own TransportID (docs/scsi-features.md).
            out.put32(0);
            let port = own_port(inner);
            for (&initiator, &key) in &s.registrations {
                let n = Nexus { initiator };
                out.put64(key);
                out.put32(0);
                let holder = s.holds(n);
                out.push(u8::from(holder)); // R_HOLDER
                out.push(if holder { s.reservation.map_or(0, |h| h.rtype & 0x0F) } else { 0 });
                out.put32(0);
                out.put16(port);
                let tid = TransportId::Nexus { id: initiator, port: s.ports.get(&initiator).map(Port::name) }.encode();
                out.put32(len32(tid.len()));
                out.extend_from_slice(&tid);
            }
            let n = len32(out.len() - 8);
            set32(&mut out, 4, n);
        }
    }
    Begin::data_in(out, alloc)
}

/// The relative target port identifier of the one port this unit is reached through: its ALUA group's port,
/// or port 1 (SPC-4 §7.8.6.4 reserves 0).
fn own_port(inner: &Inner) -> u16 {
    if inner.alua.enabled() {
        inner.alua.own()
    } else {
        1
    }
}

/// PERSISTENT RESERVE OUT (SPC-4 §6.16): the basic 24-byte parameter list, or REGISTER AND
/// MOVE's list with a TransportID.
pub(crate) fn pr_out(inner: &Arc<Inner>, nexus: Nexus, cdb: &[u8]) -> Begin {
    let sa = cdb[1] & 0x1F;
    let scope = cdb[2] >> 4;
    let rtype = cdb[2] & 0x0F;
    let len = u64::from(be32(cdb, 5));
    if sa == sa::REGISTER_AND_MOVE {
        // At least the header and the shortest TransportID; the list itself is checked once it is in.
        if len < 24 {
            return Begin::check(Sense::param_list_length_error());
        }
        let inner2 = inner.clone();
        return Begin::param_out(len, move |list| pr_out_apply(&inner2, nexus, sa, scope, rtype, &list));
    }
    if len != 24 {
        return Begin::check(Sense::param_list_length_error());
    }
    let inner2 = inner.clone();
    Begin::param_out(len, move |list| pr_out_apply(&inner2, nexus, sa, scope, rtype, &list))
}

fn valid_type(t: u8) -> bool {
    matches!(t, WR_EX | EX_AC | WR_EX_RO | EX_AC_RO | WR_EX_AR | EX_AC_AR)
}

fn pr_out_apply(inner: &Inner, n: Nexus, sa: u8, scope: u8, rtype: u8, list: &[u8]) -> Outcome {
    let res_key = be64(list, 0);
    let sa_key = be64(list, 8);
    if sa == sa::REGISTER_AND_MOVE {
        return register_and_move(inner, n, list);
    }
    let flags = get(list, 20);
    let spec_i_pt = flags & 0x08 != 0;
    let aptpl = flags & 0x01 != 0;
    if spec_i_pt {
        return inner.check(Sense::invalid_field_in_param(20, Some(3)));
    }
    if aptpl && inner.pr.file.is_none() {
        return inner.check(Sense::invalid_field_in_param(20, Some(0)));
    }
    let needs_type = matches!(sa, 1 | 2 | 4 | 5);
    if needs_type && (scope != 0 || !valid_type(rtype)) {
        return inner.check(Sense::invalid_field_in_cdb(2, None));
    }
    let pr = &inner.pr;
    let mut s = pr.state.lock();
    let before = s.clone();
    let mine = s.key(n);
    let mut notify: Vec<(u64, AscAscq)> = Vec::new();
    let outcome = match sa {
        sa::REGISTER | sa::REGISTER_AND_IGNORE_EXISTING_KEY => {
            let ignore = sa == sa::REGISTER_AND_IGNORE_EXISTING_KEY;
            match mine {
                None if !ignore && res_key != 0 => conflict(),
                None => {
                    if sa_key != 0 {
                        s.registrations.insert(n.initiator, sa_key);
                        s.generation = s.generation.wrapping_add(1);
                    }
                    s.aptpl = aptpl;
                    Outcome::good()
                }
                Some(k) if !ignore && k != res_key => conflict(),
                Some(_) if sa_key == 0 => {
                    unregister(&mut s, n, &mut notify);
                    s.generation = s.generation.wrapping_add(1);
                    s.aptpl = aptpl;
                    Outcome::good()
                }
                Some(_) => {
                    s.registrations.insert(n.initiator, sa_key);
                    s.generation = s.generation.wrapping_add(1);
                    s.aptpl = aptpl;
                    Outcome::good()
                }
            }
        }
        _ if mine != Some(res_key) => conflict(),
        sa::RESERVE => match s.reservation {
            None => {
                s.reservation = Some(Holder { initiator: n.initiator, rtype });
                Outcome::good()
            }
            Some(h) if s.holds(n) && h.rtype == rtype => Outcome::good(),
            Some(_) => conflict(),
        },
        sa::RELEASE => match s.reservation {
            Some(h) if s.holds(n) => {
                if h.rtype != rtype {
                    inner.check(Sense::new(crate::sense::SenseKey::IllegalRequest, AscAscq::INVALID_RELEASE_OF_PR))
                } else {
                    s.reservation = None;
                    if !matches!(h.rtype, WR_EX | EX_AC) {
                        for &i in s.registrations.keys().filter(|&&i| i != n.initiator) {
                            notify.push((i, AscAscq::RESERVATIONS_RELEASED));
                        }
                    }
                    Outcome::good()
                }
            }
            _ => Outcome::good(),
        },
        sa::CLEAR => {
            for &i in s.registrations.keys().filter(|&&i| i != n.initiator) {
                notify.push((i, AscAscq::RESERVATIONS_PREEMPTED));
            }
            s.registrations.clear();
            s.reservation = None;
            s.generation = s.generation.wrapping_add(1);
            Outcome::good()
        }
        sa::PREEMPT | sa::PREEMPT_AND_ABORT => preempt(inner, &mut s, n, sa_key, rtype, &mut notify),
        _ => inner.check(Sense::invalid_field_in_cdb(1, Some(4))),
    };
    commit(inner, s, before, outcome, notify)
}

/// Keep what the service action changed (forgetting the ports of nexuses no longer registered), persist it, and
/// post the unit attentions it caused; if the persistent copy cannot be written, nothing changes.
fn commit(
    inner: &Inner,
    mut s: parking_lot::MutexGuard<'_, State>,
    before: State,
    outcome: Outcome,
    notify: Vec<(u64, AscAscq)>,
) -> Outcome {
    let pr = &inner.pr;
    let State { ports, registrations, .. } = &mut *s;
    ports.retain(|i, _| registrations.contains_key(i));
    if outcome.is_good() && pr.persist(&s).is_err() {
        // Nothing changes unless the persistent copy does too.
        *s = before;
        pr.settle(&s);
        return inner
            .check(Sense::new(crate::sense::SenseKey::IllegalRequest, AscAscq::INSUFFICIENT_REGISTRATION_RESOURCES));
    }
    pr.settle(&s);
    drop(s);
    for (initiator, code) in notify {
        inner.ua.post(Nexus { initiator }, code);
    }
    outcome
}

/// A REGISTER AND MOVE parameter list that cannot be acted on.
fn bad_list(inner: &Inner, byte: u16, bit: Option<u8>) -> Outcome {
    inner.check(Sense::invalid_field_in_param(byte, bit))
}

/// REGISTER AND MOVE (SPC-4 §5.9.9, parameter list §6.16.4): register the I_T nexus the TransportID names with the
/// SERVICE ACTION RESERVATION KEY and make it the reservation holder, with the reservation's scope and type; with
/// UNREG, unregister the I_T nexus the command came on. The checks, in order (docs/scsi-features.md has the table):
/// list lengths, the caller's registration and key, an existing reservation, not an all-registrants one, the caller
/// holding it, a non-zero key to give, APTPL only where it can be kept, the target port, the TransportID, and a
/// destination other than the caller.
fn register_and_move(inner: &Inner, n: Nexus, list: &[u8]) -> Outcome {
    let res_key = be64(list, 0);
    let sa_key = be64(list, 8);
    let flags = get(list, 17);
    let (unreg, aptpl) = (flags & 0x02 != 0, flags & 0x01 != 0);
    let rel_port = be16(list, 18);
    let tid_len = u64::from(be32(list, 20));
    if list.len() < 24 || 24 + tid_len > list.len() as u64 {
        return inner.check(Sense::param_list_length_error());
    }
    if tid_len < 24 {
        return bad_list(inner, 20, None);
    }
    let tid = &list[24..24 + tid_len as usize];
    let pr = &inner.pr;
    let mut s = pr.state.lock();
    let before = s.clone();
    if s.key(n) != Some(res_key) {
        return conflict();
    }
    let Some(res) = s.reservation else {
        return inner.check(Sense::invalid_field_in_cdb(1, Some(4)));
    };
    if all_registrants(res.rtype) || !s.holds(n) {
        return conflict();
    }
    if sa_key == 0 {
        return bad_list(inner, 8, None);
    }
    if aptpl && pr.file.is_none() {
        return bad_list(inner, 17, Some(0));
    }
    if rel_port != own_port(inner) {
        return bad_list(inner, 18, None);
    }
    let (dest, port) = match resolve(&s, tid) {
        Ok(d) => d,
        Err(byte) => return bad_list(inner, byte, None),
    };
    if dest == n.initiator {
        return bad_list(inner, 24, None);
    }
    s.registrations.insert(dest, sa_key);
    if let Some(p) = port {
        s.ports.insert(dest, Port::of(&p));
    }
    s.reservation = Some(Holder { initiator: dest, rtype: res.rtype });
    if unreg {
        s.registrations.remove(&n.initiator);
    }
    s.generation = s.generation.wrapping_add(1);
    s.aptpl = aptpl;
    commit(inner, s, before, Outcome::good(), Vec::new())
}

/// The I_T nexus a REGISTER AND MOVE TransportID names, and its initiator port when the TransportID names one; on
/// error, the byte of the parameter list at fault. An iSCSI initiator port (FORMAT CODE 01b) is the nexus the iSCSI
/// target gives that name and ISID; an initiator device (00b) is its one registered port this unit knows by name;
/// the stack's nexus form names the identity directly.
fn resolve(s: &State, tid: &[u8]) -> Result<(u64, Option<IscsiName>), u16> {
    let (t, used) = transport_id::parse(tid).map_err(|e: TransportIdError| 24 + e.field())?;
    if used != tid.len() {
        // The TransportID is shorter than TRANSPORTID PARAMETER DATA LENGTH says.
        return Err(20);
    }
    match t {
        TransportId::Nexus { id, port } => Ok((id, port)),
        TransportId::Iscsi(p) if p.isid.is_some() => Ok((p.nexus_id(), Some(p))),
        TransportId::Iscsi(p) => {
            let mut named = s.ports.iter().filter(|(_, q)| q.name == p.name);
            match (named.next(), named.next()) {
                (Some((&id, q)), None) => Ok((id, Some(q.name()))),
                _ => Err(24 + 4),
            }
        }
    }
}

/// Remove a registration; a holder of a single-holder reservation loses it, and the last
/// registrant of an all-registrants reservation ends it (SPC-4 §5.9.11.3).
fn unregister(s: &mut State, n: Nexus, notify: &mut Vec<(u64, AscAscq)>) {
    let held = s.holds(n);
    s.registrations.remove(&n.initiator);
    if let Some(h) = s.reservation {
        let ends = if all_registrants(h.rtype) { s.registrations.is_empty() } else { held };
        if ends {
            s.reservation = None;
            if matches!(h.rtype, WR_EX_RO | EX_AC_RO) {
                for &i in s.registrations.keys() {
                    notify.push((i, AscAscq::RESERVATIONS_RELEASED));
                }
            }
        }
    }
}

/// PREEMPT / PREEMPT AND ABORT (SPC-4 §5.9.11.4): registrations and the reservation
/// change here; the preempted nexuses' tasks are aborted through the port driver by the
/// transport glue that sees them (docs/scsi-features.md, "PREEMPT AND ABORT").
fn preempt(
    inner: &Inner,
    s: &mut State,
    n: Nexus,
    sa_key: u64,
    rtype: u8,
    notify: &mut Vec<(u64, AscAscq)>,
) -> Outcome {
    let remove_matching = |s: &mut State, notify: &mut Vec<(u64, AscAscq)>, key: u64, all_others: bool| {
        let victims: Vec<u64> = s
            .registrations
            .iter()
            .filter(|(&i, &k)| i != n.initiator && (all_others || k == key))
            .map(|(&i, _)| i)
            .collect();
        for &i in &victims {
            s.registrations.remove(&i);
            notify.push((i, AscAscq::REGISTRATIONS_PREEMPTED));
        }
        victims.len()
    };
    match s.reservation {
        Some(h) if all_registrants(h.rtype) && sa_key == 0 => {
            remove_matching(s, notify, 0, true);
            s.reservation = Some(Holder { initiator: n.initiator, rtype });
        }
        Some(h) if all_registrants(h.rtype) => {
            remove_matching(s, notify, sa_key, false);
        }
        Some(h) if s.registrations.get(&h.initiator) == Some(&sa_key) => {
            remove_matching(s, notify, sa_key, false);
            s.reservation = Some(Holder { initiator: n.initiator, rtype });
        }
        _ => {
            if sa_key == 0 {
                return inner.check(Sense::invalid_field_in_param(8, None));
            }
            if remove_matching(s, notify, sa_key, false) == 0 {
                return conflict();
            }
        }
    }
    s.generation = s.generation.wrapping_add(1);
    Outcome::good()
}
