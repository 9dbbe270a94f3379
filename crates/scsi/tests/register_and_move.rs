//! PERSISTENT RESERVE OUT / REGISTER AND MOVE (SPC-4 §5.9.9, §6.16.4) on the logical unit: one table row per check
//! the standard makes, then what a move changes and what survives a restart.

mod common;
use common::*;
use scsi::{execute, Disk, DiskConfig, LogicalUnit, Nexus, Outcome, RamBackend, ScsiStatus};
use scsi_proto::transport_id::{nexus_id, IscsiName, TransportId};
use std::sync::Arc;

const ISID: [u8; 6] = [0x00, 0x02, 0x3d, 0x00, 0x00, 0x01];
const WR_EX: u8 = 1;
const WR_EX_AR: u8 = 7;

fn port(name: &str) -> IscsiName {
    IscsiName { name: name.into(), isid: Some(ISID) }
}

fn nexus(name: &str) -> Nexus {
    Nexus::new(nexus_id(name, &ISID))
}

fn on(d: &dyn LogicalUnit, n: Nexus, cdb: &[u8]) -> Outcome {
    execute(d, n, cdb, &[0; 512], 1 << 16).0
}

fn prout(d: &dyn LogicalUnit, n: Nexus, sa: u8, rtype: u8, key: u64, sa_key: u64, aptpl: bool) -> Outcome {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = u8::from(aptpl);
    execute(d, n, &[0x5F, sa, rtype, 0, 0, 0, 0, 0, 24, 0], &p, 0).0
}

fn prin(d: &dyn LogicalUnit, n: Nexus, sa: u8) -> Vec<u8> {
    let (o, data) = execute(d, n, &[0x5E, sa, 0, 0, 0, 0, 0, 0x10, 0, 0], &[], 1 << 16);
    good(&o);
    data
}

/// REGISTER AND MOVE's parameter list.
struct Move {
    key: u64,
    sa_key: u64,
    unreg: bool,
    aptpl: bool,
    rel_port: u16,
    tid: Vec<u8>,
}

impl Move {
    fn to(dest: &str) -> Move {
        Move { key: 0xA, sa_key: 0xB, unreg: false, aptpl: false, rel_port: 1, tid: port(dest).encode() }
    }

    fn list(&self) -> Vec<u8> {
        let mut l = vec![0u8; 24];
        l[0..8].copy_from_slice(&self.key.to_be_bytes());
        l[8..16].copy_from_slice(&self.sa_key.to_be_bytes());
        l[17] = u8::from(self.unreg) << 1 | u8::from(self.aptpl);
        l[18..20].copy_from_slice(&self.rel_port.to_be_bytes());
        l[20..24].copy_from_slice(&(self.tid.len() as u32).to_be_bytes());
        l.extend_from_slice(&self.tid);
        l
    }

    fn send_len(&self, d: &dyn LogicalUnit, n: Nexus, list: &[u8], cdb_len: u32) -> Outcome {
        let l = cdb_len.to_be_bytes();
        execute(d, n, &[0x5F, 0x07, WR_EX, 0, 0, l[0], l[1], l[2], l[3], 0], list, 0).0
    }

    fn send(&self, d: &dyn LogicalUnit, n: Nexus) -> Outcome {
        let list = self.list();
        self.send_len(d, n, &list, list.len() as u32)
    }
}

/// A registered as 0xA and holding a write-exclusive reservation.
fn reserved_by_a() -> Disk {
    Setup::ReservedByA.build()
}

/// (status, sense key, ASC, field pointer) of an outcome.
type Answer = (ScsiStatus, u8, u8, Option<u16>);

/// One rule: what it is, the state before, who sends the list, the list, the CDB's PARAMETER LIST LENGTH when it is
/// not the list's, and the answer.
type Row = (&'static str, Setup, Nexus, Move, Option<u32>, Answer);

fn answer(o: &Outcome) -> Answer {
    match &o.sense {
        None => (o.status, 0, 0, None),
        Some(s) => {
            let b = s.to_bytes();
            let sksv = b.len() > 17 && b[15] & 0x80 != 0;
            (o.status, b[2] & 0x0F, b[12], sksv.then(|| u16::from_be_bytes([b[16], b[17]])))
        }
    }
}

const CHECK: ScsiStatus = ScsiStatus::CHECK_CONDITION;
const CONFLICT: Answer = (ScsiStatus::RESERVATION_CONFLICT, 0, 0, None);

fn invalid_param(field: u16) -> Answer {
    (CHECK, 5, 0x26, Some(field))
}

/// What exists before the command.
#[derive(Clone, Copy, Debug)]
enum Setup {
    /// A registered as 0xA and holding a write-exclusive reservation.
    ReservedByA,
    /// A registered, no reservation.
    RegisteredOnly,
    /// A holds a write-exclusive, all-registrants reservation.
    AllRegistrants,
    /// As `ReservedByA`, and B registered as 0xB.
    BRegisteredToo,
}

impl Setup {
    fn build(self) -> Disk {
        let (a, b) = (nexus("iqn.a"), nexus("iqn.b"));
        let d = disk();
        good(&prout(&d, a, 0, 0, 0, 0xA, false));
        match self {
            Setup::ReservedByA | Setup::BRegisteredToo => good(&prout(&d, a, 1, WR_EX, 0xA, 0, false)),
            Setup::AllRegistrants => good(&prout(&d, a, 1, WR_EX_AR, 0xA, 0, false)),
            Setup::RegisteredOnly => {}
        }
        if let Setup::BRegisteredToo = self {
            good(&prout(&d, b, 0, 0, 0, 0xB, false));
        }
        d
    }
}

#[test]
fn every_check_of_register_and_move_has_its_answer() {
    use Setup::*;
    let a = nexus("iqn.a");
    let b = nexus("iqn.b");
    let short_tid = Move { tid: vec![0x05, 0, 0, 4, b'i', b'q', b'n', 0], ..Move::to("iqn.b") };
    let mut wrong_protocol = Move::to("iqn.b");
    wrong_protocol.tid[0] = 0x41; // Fibre Channel's protocol identifier in an iSCSI body
    let mut bad_isid = Move::to("iqn.b");
    bad_isid.tid[20] = b'z';
    let mut padded = Move::to("iqn.b");
    padded.tid.extend_from_slice(&[0; 4]);
    let device = Move { tid: IscsiName { name: "iqn.b".into(), isid: None }.encode(), ..Move::to("iqn.b") };
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("list shorter than its header", ReservedByA, a, Move::to("iqn.b"), Some(20), (CHECK, 5, 0x1A, None)),
        ("TransportID past the list", ReservedByA, a, Move::to("iqn.b"), Some(40), (CHECK, 5, 0x1A, None)),
        ("TransportID data length below 24", ReservedByA, a, short_tid, None, invalid_param(20)),
        ("caller not registered", ReservedByA, b, Move::to("iqn.c"), None, CONFLICT),
        ("wrong reservation key", ReservedByA, a, Move { key: 0xF, ..Move::to("iqn.b") }, None, CONFLICT),
        ("no reservation to move", RegisteredOnly, a, Move::to("iqn.b"), None, (CHECK, 5, 0x24, Some(1))),
        ("all-registrants reservations do not move", AllRegistrants, a, Move::to("iqn.b"), None, CONFLICT),
        ("registered but not the holder", BRegisteredToo, b, Move { key: 0xB, sa_key: 0xC, ..Move::to("iqn.c") }, None, CONFLICT),
        ("service action key zero", ReservedByA, a, Move { sa_key: 0, ..Move::to("iqn.b") }, None, invalid_param(8)),
        ("APTPL without a state file", ReservedByA, a, Move { aptpl: true, ..Move::to("iqn.b") }, None, invalid_param(17)),
        ("relative port 0", ReservedByA, a, Move { rel_port: 0, ..Move::to("iqn.b") }, None, invalid_param(18)),
        ("relative port of no port", ReservedByA, a, Move { rel_port: 2, ..Move::to("iqn.b") }, None, invalid_param(18)),
        ("TransportID of another protocol", ReservedByA, a, wrong_protocol, None, invalid_param(24)),
        ("malformed ISID", ReservedByA, a, bad_isid, None, invalid_param(28)),
        ("TransportID shorter than its data length", ReservedByA, a, padded, None, invalid_param(20)),
        ("moving to itself", ReservedByA, a, Move::to("iqn.a"), None, invalid_param(24)),
        ("initiator device with no known port", ReservedByA, a, device, None, invalid_param(28)),
    ];
    for (what, setup, caller, m, cdb_len, want) in rows {
        let d = setup.build();
        let gen = u32::from_be_bytes(prin(&d, a, 0)[0..4].try_into().unwrap());
        let list = m.list();
        let o = m.send_len(&d, caller, &list, cdb_len.unwrap_or(list.len() as u32));
        assert_eq!(answer(&o), want, "{what}");
        assert_eq!(u32::from_be_bytes(prin(&d, a, 0)[0..4].try_into().unwrap()), gen, "{what}: nothing changed");
    }
}

#[test]
fn the_reservation_moves_to_a_port_that_has_not_logged_in() {
    let (a, b) = (nexus("iqn.a"), nexus("iqn.b"));
    let d = reserved_by_a();
    good(&Move::to("iqn.b").send(&d, a));
    // B holds the write-exclusive reservation under the key it was given; A stays registered but may not write.
    good(&on(&d, b, &write10(0, 1)));
    assert_eq!(on(&d, a, &write10(0, 1)).status, ScsiStatus::RESERVATION_CONFLICT);
    let r = prin(&d, b, 1);
    assert_eq!((&r[8..16], r[21]), (&0xBu64.to_be_bytes()[..], WR_EX));
    let keys = prin(&d, b, 0);
    assert_eq!(u32::from_be_bytes(keys[4..8].try_into().unwrap()), 16, "A and B are registered");
    assert_eq!(
        u32::from_be_bytes(keys[0..4].try_into().unwrap()),
        2,
        "PRgeneration counts the registration and the move"
    );
    assert_eq!(prin(&d, b, 2)[2] & 0x0C, 0, "REPORT CAPABILITIES: no SIP_C, no ATP_C");
    // READ FULL STATUS names B's port; A's port was never named to the unit.
    let f = prin(&d, b, 3);
    let mut pos = 8;
    let mut seen = Vec::new();
    while pos < f.len() {
        let len = u32::from_be_bytes(f[pos + 20..pos + 24].try_into().unwrap()) as usize;
        let (tid, _) = scsi_proto::transport_id::parse(&f[pos + 24..pos + 24 + len]).unwrap();
        assert_eq!(u16::from_be_bytes([f[pos + 18], f[pos + 19]]), 1, "relative target port");
        seen.push((f[pos + 12] & 1, tid));
        pos += 24 + len;
    }
    seen.sort_by_key(|(h, _)| *h);
    assert_eq!(
        seen,
        vec![
            (0, TransportId::Nexus { id: a.initiator, port: None }),
            (1, TransportId::Nexus { id: b.initiator, port: Some(port("iqn.b")) }),
        ]
    );
}

#[test]
fn unreg_unregisters_the_caller_and_an_existing_key_is_replaced() {
    let (a, b) = (nexus("iqn.a"), nexus("iqn.b"));
    let d = reserved_by_a();
    good(&prout(&d, b, 0, 0, 0, 0x77, false));
    good(&Move { unreg: true, sa_key: 0x88, ..Move::to("iqn.b") }.send(&d, a));
    let keys = prin(&d, b, 0);
    assert_eq!(&keys[4..16], &[&8u32.to_be_bytes()[..], &0x88u64.to_be_bytes()[..]].concat()[..]);
    // A is gone: its key no longer works, B's reservation goes on.
    assert_eq!(prout(&d, a, 1, WR_EX, 0xA, 0, false).status, ScsiStatus::RESERVATION_CONFLICT);
    good(&on(&d, b, &write10(0, 1)));
    // B can move it back by TransportID.
    good(&Move { key: 0x88, sa_key: 0xA, ..Move::to("iqn.a") }.send(&d, b));
    good(&on(&d, a, &write10(0, 1)));
}

#[test]
fn a_persisted_move_survives_restart_with_the_destination_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pr.json");
    let cfg = DiskConfig { pr_state_file: Some(file.clone()), ..cfg() };
    let backend = Arc::new(RamBackend::new(4 << 20));
    let (a, b) = (nexus("iqn.a"), nexus("iqn.b"));
    {
        let d = Disk::new(cfg.clone(), backend.clone()).unwrap();
        good(&prout(&d, a, 0, 0, 0, 0xA, false));
        good(&prout(&d, a, 1, WR_EX, 0xA, 0, false));
        good(&Move { aptpl: true, unreg: true, ..Move::to("iqn.b") }.send(&d, a));
        assert!(file.exists());
    }
    let d = Disk::new(cfg, backend).unwrap();
    good(&on(&d, b, &write10(0, 1)));
    assert_eq!(on(&d, a, &write10(0, 1)).status, ScsiStatus::RESERVATION_CONFLICT);
    let f = prin(&d, b, 3);
    let len = u32::from_be_bytes(f[28..32].try_into().unwrap()) as usize;
    let (tid, _) = scsi_proto::transport_id::parse(&f[32..32 + len]).unwrap();
    assert_eq!(tid, TransportId::Nexus { id: b.initiator, port: Some(port("iqn.b")) });
    assert_eq!(prin(&d, b, 2)[3] & 0x01, 0x01, "PTPL_A");
}

#[test]
fn an_initiator_device_names_its_one_registered_port() {
    let (a, b) = (nexus("iqn.a"), nexus("iqn.b"));
    let d = reserved_by_a();
    good(&Move::to("iqn.b").send(&d, a));
    // B's port is known to the unit now: B gives the reservation back to A by port, A moves it to "iqn.b" the device.
    good(&Move { key: 0xB, sa_key: 0xA, ..Move::to("iqn.a") }.send(&d, b));
    let device = IscsiName { name: "IQN.B".into(), isid: None }.encode();
    good(&Move { sa_key: 0xB2, tid: device, ..Move::to("iqn.b") }.send(&d, a));
    good(&on(&d, b, &write10(0, 1)));
    assert_eq!(&prin(&d, b, 1)[8..16], &0xB2u64.to_be_bytes());
}

#[test]
fn report_supported_operation_codes_lists_register_and_move() {
    let d = disk();
    // REPORTING OPTIONS 010b: one command with its service action.
    let (o, data) = execute(&d, A, &[0xA3, 0x0C, 0x02, 0x5F, 0, 0x07, 0, 0, 0x10, 0, 0, 0], &[], 1 << 16);
    good(&o);
    assert_eq!(data[1] & 0x07, 0x03, "supported as the standard says");
    assert_eq!(u16::from_be_bytes([data[2], data[3]]), 10);
    assert_eq!(&data[4..6], &[0x5F, 0x07]);
}
