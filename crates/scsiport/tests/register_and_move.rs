//! PERSISTENT RESERVE OUT / REGISTER AND MOVE through the whole stack: iSCSI TransportIDs in, the disk behind the
//! port driver, the miniport, the card and the 8237 acting on the I_T nexus they name, iSCSI TransportIDs out of
//! READ FULL STATUS. First through the pass-through glue directly (with a target port that mixes its own value into
//! every nexus, as a LUN map does), then two real iSCSI sessions against `scsiport serve`.

mod serve_common;

use iscsi::{DataDirection, ScsiBackend};
use passthrough::PassThroughLuns;
use scsi_proto::transport_id::{self, nexus_id, IscsiName, TransportId};
use scsiport::config::Config;
use scsiport::machine::Machine;
use scsiport::size::ByteSize;
use serve_common::initiator::{write10, Initiator};
use serve_common::pass_through::{pr_out, run};
use serve_common::{ServeOptions, Server};

const ISID: [u8; 6] = [0x00, 0x02, 0x3d, 0x00, 0x00, 0x01];
const WR_EX: u8 = 1;

/// REGISTER AND MOVE to `tid`, relative target port 1.
fn register_and_move(key: u64, sa_key: u64, unreg: bool, tid: &[u8]) -> ([u8; 10], Vec<u8>) {
    let mut list = vec![0u8; 24];
    list[0..8].copy_from_slice(&key.to_be_bytes());
    list[8..16].copy_from_slice(&sa_key.to_be_bytes());
    list[17] = u8::from(unreg) << 1;
    list[19] = 1;
    list[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
    list.extend_from_slice(tid);
    let n = (list.len() as u32).to_be_bytes();
    ([0x5F, 0x07, WR_EX, 0, 0, n[0], n[1], n[2], n[3], 0], list)
}

/// The TransportIDs of READ FULL STATUS parameter data, with each descriptor's R_HOLDER bit.
fn full_status(data: &[u8]) -> Vec<(bool, TransportId)> {
    let end = 8 + u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
    assert_eq!(end, data.len(), "the whole list fits");
    let mut pos = 8;
    let mut out = Vec::new();
    while pos < end {
        let len = u32::from_be_bytes(data[pos + 20..pos + 24].try_into().unwrap()) as usize;
        let (tid, used) = transport_id::parse(&data[pos + 24..pos + 24 + len]).unwrap();
        assert_eq!(used, len);
        out.push((data[pos + 12] & 1 == 1, tid));
        pos += 24 + len;
    }
    out
}

fn port(name: &str) -> IscsiName {
    IscsiName { name: name.into(), isid: Some(ISID) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_glue_moves_a_reservation_to_an_iscsi_port_through_the_port_driver() {
    let m = Machine::build(&Config::in_process(ByteSize(8 << 20), ByteSize(64 << 20))).unwrap();
    let adapter = m.adapter("scsi0").unwrap().clone();
    let luns = PassThroughLuns::new(adapter.clone(), m.memory().clone(), &[(0, 0, 512)]);
    // The nexus identities a LUN map with its own target-port value would hand down.
    let salt = nexus_id("iqn.2026-12.test:target", &[0; 6]);
    let (a_name, b_name) = ("iqn.2026-12.test:a", "iqn.2026-12.test:b");
    let a = nexus_id(a_name, &ISID) ^ salt;
    let b = nexus_id(b_name, &ISID) ^ salt;
    luns.initiator_port(a, "IQN.2026-12.test:A", ISID);
    let _ = run(&luns, a, &[0; 6], DataDirection::None, &[]).await;
    let (cdb, list) = pr_out(0x00, 0, 0, 0xA);
    assert_eq!(run(&luns, a, &cdb, DataDirection::Out, &list).await.status, 0);
    let (cdb, list) = pr_out(0x01, WR_EX, 0xA, 0);
    assert_eq!(run(&luns, a, &cdb, DataDirection::Out, &list).await.status, 0);

    // B has never logged in: the move registers the nexus B will have.
    let (cdb, list) = register_and_move(0xA, 0xB, true, &port(b_name).encode());
    let r = run(&luns, a, &cdb, DataDirection::Out, &list).await;
    assert_eq!(r.status, 0, "{:?}", r.sense);
    let _ = run(&luns, b, &[0; 6], DataDirection::None, &[]).await;
    let write = write10(0, 1, false);
    assert_eq!(run(&luns, b, &write, DataDirection::Out, &[7; 512]).await.status, 0);
    assert_eq!(run(&luns, a, &write, DataDirection::Out, &[7; 512]).await.status, 0x18);

    // READ FULL STATUS names B by its iSCSI TransportID, though B never gave its name.
    let r = run(&luns, b, &[0x5E, 0x03, 0, 0, 0, 0, 0, 0x04, 0, 0], DataDirection::In, &[]).await;
    assert_eq!(r.status, 0);
    assert_eq!(full_status(&r.data_in), vec![(true, TransportId::Iscsi(port(b_name)))]);
    // A short allocation length cuts the list but not its length field.
    let r = run(&luns, b, &[0x5E, 0x03, 0, 0, 0, 0, 0, 0, 12, 0], DataDirection::In, &[]).await;
    assert_eq!(r.data_in.len(), 12);
    let whole = u32::from_be_bytes(r.data_in[4..8].try_into().unwrap());
    assert_eq!(whole as usize, 24 + port(b_name).encode().len());

    // An initiator may not name a nexus identity itself, and a malformed ISID is pointed at.
    let forged = TransportId::Nexus { id: a, port: None }.encode();
    let (cdb, list) = register_and_move(0xB, 0xA, false, &forged);
    let r = run(&luns, b, &cdb, DataDirection::Out, &list).await;
    let s = r.sense.expect("sense");
    assert_eq!((s[2] & 0x0F, s[12], u16::from_be_bytes([s[16], s[17]])), (5, 0x26, 24));
    let mut bad = port(a_name).encode();
    bad[30] = b'!'; // in the ISID
    let (cdb, list) = register_and_move(0xB, 0xA, false, &bad);
    let s = run(&luns, b, &cdb, DataDirection::Out, &list).await.sense.expect("sense");
    assert_eq!((s[2] & 0x0F, s[12], u16::from_be_bytes([s[16], s[17]])), (5, 0x26, 28));
    assert!(adapter.violations().is_empty(), "{:?}", adapter.violations());
    m.shutdown();
}

/// PERSISTENT RESERVE OUT with a basic parameter list over a session.
fn prout(c: &mut Initiator, sa: u8, rtype: u8, key: u64, sa_key: u64) -> u8 {
    let (cdb, list) = pr_out(sa, rtype, key, sa_key);
    c.command(&cdb, &list)
}

#[test]
fn serve_moves_a_reservation_between_iscsi_sessions_by_transport_id() {
    let server = Server::start(&ServeOptions { iscsi: true, ..ServeOptions::ram("16MiB") });
    let iscsi = server.iscsi_port.expect("the iSCSI target's port");
    let target = "iqn.2026-11.io.scsiport:default";
    let (a_name, b_name, c_name) = ("iqn.2026-12.test:pr-a", "iqn.2026-12.test:pr-b", "iqn.2026-12.test:pr-c");
    let mut a = Initiator::login(iscsi, target, a_name);
    let mut b = Initiator::login(iscsi, target, b_name);
    let block = [0x5Au8; 512];
    assert_eq!(a.command(&[0; 6], &[]), 0);
    assert_eq!(b.command(&[0; 6], &[]), 0);
    assert_eq!(prout(&mut a, 0x00, 0, 0, 0xA), 0);
    assert_eq!(prout(&mut a, 0x01, WR_EX, 0xA, 0), 0);
    assert_eq!(b.command(&write10(0, 1, false), &block), 0x18, "A holds the reservation");

    // A moves it to B by TransportID and leaves.
    let (cdb, list) = register_and_move(0xA, 0xB, true, &port(b_name).encode());
    assert_eq!(a.command(&cdb, &list), 0);
    assert_eq!(b.command(&write10(0, 1, false), &block), 0, "B holds it now");
    assert_eq!(a.command(&write10(0, 1, false), &block), 0x18, "A conflicts");
    let (status, data) = b.command_in(&[0x5E, 0x03, 0, 0, 0, 0, 0, 0x10, 0, 0], 4096);
    assert_eq!(status, 0);
    assert_eq!(full_status(&data), vec![(true, TransportId::Iscsi(port(b_name)))]);

    // B moves it on to C, which has not logged in yet; C's session finds it.
    let (cdb, list) = register_and_move(0xB, 0xC, true, &port(c_name).encode());
    assert_eq!(b.command(&cdb, &list), 0);
    assert_eq!(b.command(&write10(0, 1, false), &block), 0x18);
    let mut c = Initiator::login(iscsi, target, c_name);
    assert_eq!(c.command(&[0; 6], &[]), 0);
    let (status, data) = c.command_in(&[0x5E, 0x03, 0, 0, 0, 0, 0, 0x10, 0, 0], 4096);
    assert_eq!((status, full_status(&data)), (0, vec![(true, TransportId::Iscsi(port(c_name)))]));
    assert_eq!(c.command(&write10(0, 1, false), &block), 0);
    let (status, data) = c.command_in(&[0x5E, 0x01, 0, 0, 0, 0, 0, 0x10, 0, 0], 4096);
    assert_eq!((status, &data[8..16], data[21]), (0, &0xCu64.to_be_bytes()[..], WR_EX));
    // A malformed TransportID changes nothing.
    let (cdb, list) = register_and_move(
        0xC,
        0xA,
        false,
        &[0x45, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    assert_eq!(c.command(&cdb, &list), 2);
    assert_eq!(c.command(&write10(0, 1, false), &block), 0);
    a.logout();
    b.logout();
    c.logout();
}
