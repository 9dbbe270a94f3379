//! iSCSI initiator ports and the I_T nexus identities a SCSI layer sees: what lets REGISTER AND MOVE name its
//! destination by an iSCSI TransportID and READ FULL STATUS report each registrant's (SPC-4 §5.9.9, §6.15.5,
//! §7.6.4.6). `docs/scsi-features.md` ("REGISTER AND MOVE") describes the mapping.
//!
//! A backend that puts its own identity on each nexus (a LUN map mixing in its target port) still sees
//! `nexus_id(name, isid) ^ salt`, with one salt per target port; the salt of the port a command came through is
//! the difference between the id the backend sees for the caller and the caller's own [`IscsiName::nexus_id`],
//! so a TransportID maps to the nexus that initiator port has, or will have, through the same target port.
//!
//! Towards the logical unit both commands carry the stack's nexus form of TransportID (protocol identifier Fh: the
//! identity, and the iSCSI TransportID behind it); towards the initiator, iSCSI TransportIDs only. An initiator
//! that sends a nexus-form TransportID itself is refused.

use crate::backend::{DataDirection, Residual, ScsiCommand, ScsiResponse};
use bytes::Bytes;
use scsi_proto::opcode::{service_action, PERSISTENT_RESERVE_IN, PERSISTENT_RESERVE_OUT};
use scsi_proto::status::code as status;
use scsi_proto::transport_id::{self, IscsiName, TransportId};
use scsi_proto::Sense;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Mutex, MutexGuard};

/// How many initiator ports a directory remembers; the oldest is forgotten first.
pub const DIRECTORY_CAPACITY: usize = 1 << 16;

/// The initiator port behind each I_T nexus identity a backend has seen (at login, or named by a TransportID), keyed
/// by the identity as the logical unit sees it.
pub struct Directory {
    by_id: HashMap<u64, IscsiName>,
    order: VecDeque<u64>,
    /// How an identity the backend is given reaches the logical unit (a bus may mark it as a requester's).
    view: fn(u64) -> u64,
}

impl Default for Directory {
    fn default() -> Self {
        Directory::new(|id| id)
    }
}

impl Directory {
    /// A directory for a backend whose logical units see identity `id` as `view(id)`.
    pub fn new(view: fn(u64) -> u64) -> Self {
        Directory { by_id: HashMap::new(), order: VecDeque::new(), view }
    }

    /// Nexus `id` (as the logical unit sees it) is initiator port `port`.
    pub fn insert(&mut self, id: u64, port: IscsiName) {
        if self.by_id.insert(id, port).is_none() {
            self.order.push_back(id);
            while self.order.len() > DIRECTORY_CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.by_id.remove(&old);
                }
            }
        }
    }

    /// Record a session's initiator port (`ScsiBackend::initiator_port`).
    pub fn login(&mut self, id: u64, name: &str, isid: [u8; 6]) {
        self.insert((self.view)(id), IscsiName { name: name.to_ascii_lowercase(), isid: Some(isid) });
    }

    /// The port behind identity `id` as the logical unit sees it.
    pub fn get(&self, id: u64) -> Option<&IscsiName> {
        self.by_id.get(&id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// What the backend mixes into the identities of nexuses through the caller's target port.
    fn salt(&self, caller: u64) -> u64 {
        self.get((self.view)(caller)).map_or(0, |p| caller ^ p.nexus_id())
    }

    /// The nexus a TransportID names, seen from `caller`'s target port: an initiator port's own, or for an initiator
    /// device (no ISID) its one port known here through that target port.
    fn resolve(&self, caller: u64, p: &IscsiName) -> Option<(u64, IscsiName)> {
        let salt = self.salt(caller);
        let view = self.view;
        if p.isid.is_some() {
            return Some((view(p.nexus_id() ^ salt), p.clone()));
        }
        let mut named = self.by_id.iter().filter(|(&id, q)| q.name == p.name && id == view(q.nexus_id() ^ salt));
        match (named.next(), named.next()) {
            (Some((&id, q)), None) => Some((id, q.clone())),
            _ => None,
        }
    }
}

/// A [`Directory`] shared by a backend's sessions, and the commands it translates.
#[derive(Default)]
pub struct Ports(Mutex<Directory>);

impl Ports {
    /// For a backend whose logical units see identity `id` as `view(id)`.
    pub fn new(view: fn(u64) -> u64) -> Self {
        Ports(Mutex::new(Directory::new(view)))
    }

    fn lock(&self) -> MutexGuard<'_, Directory> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session logged in (`ScsiBackend::initiator_port`).
    pub fn login(&self, id: u64, name: &str, isid: [u8; 6]) {
        self.lock().login(id, name, isid);
    }

    /// The initiator port behind nexus `id` (as the logical unit sees it), if known.
    pub fn get(&self, id: u64) -> Option<IscsiName> {
        self.lock().get(id).cloned()
    }

    /// Run `cmd` with `run`, REGISTER AND MOVE and READ FULL STATUS translated between iSCSI TransportIDs and the
    /// nexus form; every other command unchanged.
    pub async fn run<F, Fut>(&self, mut cmd: ScsiCommand, run: F) -> ScsiResponse
    where
        F: FnOnce(ScsiCommand) -> Fut,
        Fut: Future<Output = ScsiResponse>,
    {
        if is_register_and_move(&cmd.cdb) && cmd.direction == DataDirection::Out {
            cmd = match rewrite_register_and_move(&mut self.lock(), cmd) {
                Ok(c) => c,
                Err(r) => return r,
            };
            return run(cmd).await;
        }
        if is_read_full_status(&cmd.cdb) && cmd.direction == DataDirection::In {
            let expected = cmd.expected_len;
            let want = widen_read_full_status(&mut cmd);
            let r = run(cmd).await;
            return finish_read_full_status(&self.lock(), r, want, expected);
        }
        run(cmd).await
    }
}

fn invalid_param(byte: u16) -> ScsiResponse {
    ScsiResponse {
        status: status::CHECK_CONDITION,
        sense: Some(Sense::invalid_field_in_param(byte, None).to_fixed()),
        data_in: Bytes::new(),
        residual: Residual::None,
    }
}

fn be32(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// Whether `cdb` is PERSISTENT RESERVE OUT / REGISTER AND MOVE.
pub fn is_register_and_move(cdb: &[u8]) -> bool {
    cdb.len() >= 10 && cdb[0] == PERSISTENT_RESERVE_OUT && cdb[1] & 0x1F == service_action::REGISTER_AND_MOVE
}

/// Whether `cdb` is PERSISTENT RESERVE IN / READ FULL STATUS.
pub fn is_read_full_status(cdb: &[u8]) -> bool {
    cdb.len() >= 10 && cdb[0] == PERSISTENT_RESERVE_IN && cdb[1] & 0x1F == service_action::READ_FULL_STATUS
}

/// REGISTER AND MOVE from an initiator: its iSCSI TransportID becomes the nexus form naming the destination nexus
/// (recorded in `dir`, so READ FULL STATUS can name it before it logs in). A malformed TransportID, or one of another
/// protocol, ends the command here with INVALID FIELD IN PARAMETER LIST and the field pointer on the fault; a list
/// whose lengths do not hold together goes on unchanged for the logical unit to refuse (PARAMETER LIST LENGTH ERROR).
pub fn rewrite_register_and_move(dir: &mut Directory, mut cmd: ScsiCommand) -> Result<ScsiCommand, ScsiResponse> {
    if !is_register_and_move(&cmd.cdb) {
        return Ok(cmd);
    }
    let list = &cmd.data_out;
    let cdb_len = be32(&cmd.cdb, 5);
    if list.len() < 24 || cdb_len != list.len() {
        return Ok(cmd);
    }
    let tid_len = be32(list, 20);
    if tid_len < 24 || 24 + tid_len > list.len() {
        return Ok(cmd);
    }
    let (port, used) = match transport_id::parse(&list[24..24 + tid_len]) {
        Ok((TransportId::Iscsi(p), used)) => (p, used),
        Ok((TransportId::Nexus { .. }, _)) => return Err(invalid_param(24)),
        Err(e) => return Err(invalid_param(24 + e.field())),
    };
    if used != tid_len {
        return Err(invalid_param(20));
    }
    let Some((id, port)) = dir.resolve(cmd.initiator, &port) else { return Err(invalid_param(28)) };
    let tid = TransportId::Nexus { id, port: Some(port.clone()) }.encode();
    let mut out = list[..24].to_vec();
    out[20..24].copy_from_slice(&u32::try_from(tid.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&tid);
    let len = u32::try_from(out.len()).unwrap_or(u32::MAX);
    cmd.cdb[5..9].copy_from_slice(&len.to_be_bytes());
    cmd.expected_len = len;
    cmd.data_out = Bytes::from(out);
    dir.insert(id, port);
    Ok(cmd)
}

/// READ FULL STATUS as the initiator asked for it: the command to send instead (the whole list, so that the
/// ADDITIONAL LENGTH can be recomputed) and the allocation length to cut the answer to.
pub fn widen_read_full_status(cmd: &mut ScsiCommand) -> usize {
    if !is_read_full_status(&cmd.cdb) {
        return cmd.expected_len as usize;
    }
    let alloc = usize::from(u16::from_be_bytes([cmd.cdb[7], cmd.cdb[8]]));
    let want = alloc.min(cmd.expected_len as usize);
    cmd.cdb[7..9].copy_from_slice(&u16::MAX.to_be_bytes());
    cmd.expected_len = u32::from(u16::MAX);
    want
}

/// Parameter data of READ FULL STATUS with each nexus-form TransportID replaced by the iSCSI TransportID of its
/// initiator port (carried in it, or known from `dir`); descriptors this cannot read are kept as they are.
pub fn translate_full_status(dir: &Directory, data: &[u8]) -> Vec<u8> {
    let Some(head) = data.get(..8) else { return data.to_vec() };
    let end = (8 + be32(head, 4)).min(data.len());
    let mut out = head.to_vec();
    let mut pos = 8;
    while pos + 24 <= end {
        let tid_len = be32(data, pos + 20);
        let Some(tid) = data.get(pos + 24..pos + 24 + tid_len).filter(|_| pos + 24 + tid_len <= end) else { break };
        let named = match transport_id::parse(tid) {
            Ok((TransportId::Nexus { port: Some(p), .. }, _)) => Some(p.encode()),
            Ok((TransportId::Nexus { id, port: None }, _)) => dir.get(id).map(IscsiName::encode),
            _ => None,
        };
        let tid = named.unwrap_or_else(|| tid.to_vec());
        out.extend_from_slice(&data[pos..pos + 20]);
        out.extend_from_slice(&u32::try_from(tid.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&tid);
        pos += 24 + tid_len;
    }
    let n = u32::try_from(out.len() - 8).unwrap_or(u32::MAX);
    out[4..8].copy_from_slice(&n.to_be_bytes());
    out
}

/// The translated READ FULL STATUS answer, cut to what the initiator allowed (`want`).
pub fn finish_read_full_status(dir: &Directory, mut r: ScsiResponse, want: usize, expected: u32) -> ScsiResponse {
    if r.status != status::GOOD {
        return r;
    }
    let mut data = translate_full_status(dir, &r.data_in);
    data.truncate(want);
    let short = u64::from(expected).saturating_sub(data.len() as u64);
    r.residual = if short > 0 { Residual::Underflow(u32::try_from(short).unwrap_or(u32::MAX)) } else { Residual::None };
    r.data_in = Bytes::from(data);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{DataDirection, TaskAttr};

    const SALT: u64 = 0x5A17;

    fn port(name: &str, isid: Option<[u8; 6]>) -> IscsiName {
        IscsiName { name: name.into(), isid }
    }

    fn list(tid: &[u8]) -> Vec<u8> {
        let mut l = vec![0u8; 24];
        l[0..8].copy_from_slice(&0xAAu64.to_be_bytes());
        l[8..16].copy_from_slice(&0xBBu64.to_be_bytes());
        l[19] = 1;
        l[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
        l.extend_from_slice(tid);
        l
    }

    fn cmd(initiator: u64, data: Vec<u8>) -> ScsiCommand {
        let n = (data.len() as u32).to_be_bytes();
        ScsiCommand {
            initiator,
            lun: 0,
            task_tag: 1,
            cdb: vec![0x5F, 0x07, 0x01, 0, 0, n[0], n[1], n[2], n[3], 0],
            attr: TaskAttr::Simple,
            direction: DataDirection::Out,
            expected_len: data.len() as u32,
            data_out: Bytes::from(data),
        }
    }

    fn sense_field(r: &ScsiResponse) -> (u8, u8, u16) {
        let s = r.sense.as_ref().expect("sense");
        (s[2] & 0x0F, s[12], u16::from_be_bytes([s[16], s[17]]))
    }

    /// A directory with caller A logged in through the salted target port.
    fn dir_with_a() -> (Directory, u64) {
        let mut d = Directory::default();
        let a = transport_id::nexus_id("iqn.a", &[0, 2, 0x3d, 0, 0, 1]) ^ SALT;
        d.login(a, "IQN.A", [0, 2, 0x3d, 0, 0, 1]);
        (d, a)
    }

    #[test]
    fn an_iscsi_port_becomes_the_nexus_it_has_through_the_callers_target_port() {
        let (mut d, a) = dir_with_a();
        let b = port("iqn.b", Some([0, 2, 0x3d, 0, 0, 9]));
        let out = rewrite_register_and_move(&mut d, cmd(a, list(&b.encode()))).unwrap();
        let want = b.nexus_id() ^ SALT;
        let tid = TransportId::Nexus { id: want, port: Some(b.clone()) }.encode();
        assert_eq!(&out.data_out[24..], &tid[..]);
        assert_eq!(be32(&out.data_out, 20), tid.len());
        assert_eq!(be32(&out.cdb, 5), out.data_out.len());
        assert_eq!(out.expected_len as usize, out.data_out.len());
        assert_eq!(d.get(want), Some(&b), "the destination is known before it logs in");
    }

    #[test]
    fn an_initiator_device_names_its_one_known_port() {
        let (mut d, a) = dir_with_a();
        let none = rewrite_register_and_move(&mut d, cmd(a, list(&port("iqn.c", None).encode())));
        assert_eq!(sense_field(&none.unwrap_err()), (5, 0x26, 28), "no port of iqn.c is known");
        let c1 = port("iqn.c", Some([1; 6]));
        d.insert(c1.nexus_id() ^ SALT, c1.clone());
        let out = rewrite_register_and_move(&mut d, cmd(a, list(&port("iqn.c", None).encode()))).unwrap();
        assert_eq!(
            transport_id::parse(&out.data_out[24..]).unwrap().0,
            TransportId::Nexus { id: c1.nexus_id() ^ SALT, port: Some(c1) }
        );
        let c2 = port("iqn.c", Some([2; 6]));
        d.insert(c2.nexus_id() ^ SALT, c2);
        let two = rewrite_register_and_move(&mut d, cmd(a, list(&port("iqn.c", None).encode())));
        assert_eq!(sense_field(&two.unwrap_err()), (5, 0x26, 28), "two ports: which one is not said");
    }

    #[test]
    fn transport_ids_the_target_refuses_point_at_their_fault() {
        let (mut d, a) = dir_with_a();
        let good = port("iqn.b", Some([0; 6])).encode();
        let mut wrong_protocol = good.clone();
        wrong_protocol[0] = 0x41;
        let mut bad_isid = good.clone();
        bad_isid[20] = b'z';
        let nexus = TransportId::Nexus { id: 1, port: None }.encode();
        let mut padded = good.clone();
        padded.extend_from_slice(&[0; 4]);
        for (tid, field) in [(wrong_protocol, 24), (bad_isid, 28), (nexus, 24), (padded, 20)] {
            let r = rewrite_register_and_move(&mut d, cmd(a, list(&tid))).unwrap_err();
            assert_eq!(sense_field(&r), (5, 0x26, field));
        }
        // Lengths that do not hold together are the logical unit's to refuse.
        let mut short = list(&good);
        short.truncate(30);
        let c = cmd(a, short.clone());
        assert_eq!(rewrite_register_and_move(&mut d, c).unwrap().data_out, Bytes::from(short));
    }

    #[test]
    fn full_status_names_every_registrant_it_can() {
        let (d, a) = dir_with_a();
        let b = port("iqn.b", Some([7; 6]));
        let mut data = vec![0u8; 8];
        for tid in [
            TransportId::Nexus { id: a, port: None }.encode(),
            TransportId::Nexus { id: 99, port: Some(b.clone()) }.encode(),
            TransportId::Nexus { id: 5, port: None }.encode(),
        ] {
            data.extend_from_slice(&[0x11; 20]);
            data.extend_from_slice(&(tid.len() as u32).to_be_bytes());
            data.extend_from_slice(&tid);
        }
        let n = (data.len() - 8) as u32;
        data[4..8].copy_from_slice(&n.to_be_bytes());
        let out = translate_full_status(&d, &data);
        let mut pos = 8;
        let mut tids = Vec::new();
        while pos < out.len() {
            assert_eq!(&out[pos..pos + 20], &[0x11; 20]);
            let len = be32(&out, pos + 20);
            tids.push(transport_id::parse(&out[pos + 24..pos + 24 + len]).unwrap().0);
            pos += 24 + len;
        }
        assert_eq!(
            tids,
            vec![
                TransportId::Iscsi(port("iqn.a", Some([0, 2, 0x3d, 0, 0, 1]))),
                TransportId::Iscsi(b),
                TransportId::Nexus { id: 5, port: None },
            ]
        );
        assert_eq!(be32(&out, 4), out.len() - 8);
        let r = finish_read_full_status(&d, ScsiResponse::good(Bytes::from(data)), 10, 100);
        assert_eq!(r.data_in.len(), 10, "cut to the allocation length");
        assert_eq!(be32(&r.data_in, 4), out.len() - 8, "the length still tells the whole list");
        assert_eq!(r.residual, Residual::Underflow(90));
    }

    #[test]
    fn identities_are_named_as_the_logical_unit_sees_them() {
        let mark = |id: u64| id | 1 << 63;
        let mut d = Directory::new(mark);
        let a_port = port("iqn.a", Some([0; 6]));
        let a = a_port.nexus_id() & !(1 << 63);
        let salt = a ^ a_port.nexus_id();
        d.login(a, "iqn.a", [0; 6]);
        assert_eq!(d.get(mark(a)), Some(&a_port));
        let b = port("iqn.b", Some([1; 6]));
        let out = rewrite_register_and_move(&mut d, cmd(a, list(&b.encode()))).unwrap();
        let (tid, _) = transport_id::parse(&out.data_out[24..]).unwrap();
        assert_eq!(tid, TransportId::Nexus { id: mark(b.nexus_id() ^ salt), port: Some(b) });
    }

    #[test]
    fn the_directory_forgets_the_oldest_beyond_its_capacity() {
        let mut d = Directory::default();
        for i in 0..DIRECTORY_CAPACITY as u64 + 2 {
            d.insert(i, port("iqn.x", Some([0; 6])));
        }
        assert_eq!(d.len(), DIRECTORY_CAPACITY);
        assert!(d.get(0).is_none() && d.get(1).is_none() && d.get(2).is_some());
    }
}
