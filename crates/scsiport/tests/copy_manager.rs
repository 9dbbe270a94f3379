//! The copy manager of the iSCSI glue through the whole stack (port driver, miniport, HBA model, disks): EXTENDED COPY
//! between and within LUs named by their NAA designators, RECEIVE COPY RESULTS, and what the LUs report about it.

use bytes::Bytes;
use iscsi::{DataDirection, ScsiBackend, ScsiCommand, ScsiResponse, TaskAttr};
use passthrough::xcopy::{CopyList, Cscd, ListIdUsage, Segment};
use passthrough::PassThroughLuns;
use scsi_proto::{AscAscq, Sense, SenseKey};
use scsiport::config::{BackendKind, Config};
use scsiport::machine::Machine;
use scsiport::size::ByteSize;

const A: u64 = 0x1111;
const B: u64 = 0x2222;

fn command(initiator: u64, lun: u64, cdb: &[u8], direction: DataDirection, len: u32, out: &[u8]) -> ScsiCommand {
    ScsiCommand {
        initiator,
        lun,
        task_tag: 7,
        cdb: cdb.to_vec(),
        attr: TaskAttr::Simple,
        direction,
        expected_len: len,
        data_out: Bytes::copy_from_slice(out),
    }
}

struct Rig {
    machine: Machine,
    luns: PassThroughLuns,
}

/// Two 8 MiB RAM disks: target 0 LUN 0 and target 0 LUN 1 (iSCSI LUNs 0 and 1).
async fn rig() -> Rig {
    let mut cfg = Config::in_process(ByteSize(8 << 20), ByteSize(64 << 20));
    let mut second = cfg.adapters[0].disks[0].clone();
    second.lun = 1;
    second.backend = BackendKind::Ram;
    second.serial = Some("SECOND".into());
    cfg.adapters[0].disks.push(second);
    let machine = Machine::build(&cfg).unwrap();
    let adapter = machine.adapter("scsi0").unwrap().clone();
    let luns = PassThroughLuns::new(adapter, machine.memory().clone(), &[(0, 0, 512), (0, 1, 512)]);
    for initiator in [A, B] {
        for lun in [0, 1] {
            // The power-on unit attention each nexus sees first.
            let _ = luns.execute(command(initiator, lun, &[0; 6], DataDirection::None, 0, &[])).await;
        }
    }
    Rig { machine, luns }
}

impl Rig {
    async fn run(
        &self,
        initiator: u64,
        lun: u64,
        cdb: &[u8],
        dir: DataDirection,
        len: u32,
        out: &[u8],
    ) -> ScsiResponse {
        self.luns.execute(command(initiator, lun, cdb, dir, len, out)).await
    }

    async fn write(&self, lun: u64, lba: u32, data: &[u8]) {
        let n = (data.len() / 512) as u16;
        let cdb =
            [0x2A, 0, (lba >> 24) as u8, (lba >> 16) as u8, (lba >> 8) as u8, lba as u8, 0, (n >> 8) as u8, n as u8, 0];
        let r = self.run(A, lun, &cdb, DataDirection::Out, data.len() as u32, data).await;
        assert_eq!(r.status, 0, "{:?}", r.sense);
    }

    async fn read(&self, lun: u64, lba: u32, blocks: u16) -> Vec<u8> {
        let cdb = [
            0x28,
            0,
            (lba >> 24) as u8,
            (lba >> 16) as u8,
            (lba >> 8) as u8,
            lba as u8,
            0,
            (blocks >> 8) as u8,
            blocks as u8,
            0,
        ];
        let r = self.run(A, lun, &cdb, DataDirection::In, u32::from(blocks) * 512, &[]).await;
        assert_eq!(r.status, 0, "{:?}", r.sense);
        r.data_in.to_vec()
    }

    /// The LU's NAA designator from VPD page 83h.
    async fn naa(&self, lun: u64) -> Vec<u8> {
        let r = self.run(A, lun, &[0x12, 1, 0x83, 0, 255, 0], DataDirection::In, 255, &[]).await;
        assert_eq!(r.status, 0);
        let d = &r.data_in;
        assert_eq!(d[5] & 0x0F, 3, "the first designator is the NAA one");
        d[8..8 + usize::from(d[7])].to_vec()
    }

    async fn xcopy(&self, initiator: u64, list: &[u8]) -> ScsiResponse {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x83;
        cdb[10..14].copy_from_slice(&(list.len() as u32).to_be_bytes());
        self.run(initiator, 0, &cdb, DataDirection::Out, list.len() as u32, list).await
    }
}

fn cscd(naa: &[u8]) -> Cscd {
    Cscd::naa(naa, 512)
}

fn b2b(src: u16, dst: u16, n: u16, src_lba: u64, dst_lba: u64) -> Segment {
    Segment::new(src, dst, n, src_lba, dst_lba)
}

fn list(list_id: u8, usage: ListIdUsage, cscds: &[Cscd], segments: &[Segment]) -> Vec<u8> {
    CopyList { list_id, usage, cscds: cscds.to_vec(), segments: segments.to_vec() }.to_bytes()
}

/// The sense key and ASC/ASCQ of a CHECK CONDITION.
fn sense_of(r: &ScsiResponse) -> (SenseKey, AscAscq) {
    let s = Sense::parse(r.sense.as_ref().expect("sense data")).expect("sense data");
    (s.key, s.code())
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_copy_moves_blocks_between_and_within_lus() {
    let rig = rig().await;
    let data = pattern(3000 * 512, 5);
    rig.write(0, 100, &data).await;
    let (n0, n1) = (rig.naa(0).await, rig.naa(1).await);
    assert_ne!(n0, n1);
    // LU 0 → LU 1 (3000 blocks: three READ/WRITE pairs), and within LU 0.
    let l = list(1, ListIdUsage::None, &[cscd(&n0), cscd(&n1)], &[b2b(0, 1, 3000, 100, 10), b2b(0, 0, 16, 100, 9000)]);
    let r = rig.xcopy(A, &l).await;
    assert_eq!(r.status, 0, "{:?}", r.sense);
    assert_eq!(rig.read(1, 10, 3000).await, data);
    assert_eq!(rig.read(0, 9000, 16).await, data[..16 * 512]);
    assert!(rig.machine.adapter("scsi0").unwrap().violations().is_empty());
    rig.machine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_status_is_held_for_its_list_id_and_reported_once() {
    let rig = rig().await;
    let rcr_status = |id: u8| {
        let mut c = [0u8; 16];
        c[0] = 0x84;
        c[2] = id;
        c[10..14].copy_from_slice(&1024u32.to_be_bytes());
        c
    };
    let r = rig.run(A, 0, &rcr_status(3), DataDirection::In, 1024, &[]).await;
    assert_eq!(sense_of(&r), (SenseKey::IllegalRequest, AscAscq::INVALID_FIELD_IN_CDB), "no copy with list ID 3 yet");
    let n0 = rig.naa(0).await;
    assert_eq!(rig.xcopy(A, &list(3, ListIdUsage::Hold, &[cscd(&n0)], &[b2b(0, 0, 2048, 0, 4096)])).await.status, 0);
    // Another nexus has no such list.
    assert_eq!(
        sense_of(&rig.run(B, 0, &rcr_status(3), DataDirection::In, 1024, &[]).await),
        (SenseKey::IllegalRequest, AscAscq::INVALID_FIELD_IN_CDB)
    );
    let r = rig.run(A, 0, &rcr_status(3), DataDirection::In, 1024, &[]).await;
    assert_eq!(r.status, 0);
    let d = &r.data_in;
    assert_eq!(d[4], 0x01, "completed without error");
    assert_eq!(u16::from_be_bytes([d[5], d[6]]), 1, "one segment processed");
    assert_eq!((d[7], u32::from_be_bytes([d[8], d[9], d[10], d[11]])), (0, 2048 * 512));
    let r = rig.run(A, 0, &rcr_status(3), DataDirection::In, 1024, &[]).await;
    assert_eq!(sense_of(&r), (SenseKey::IllegalRequest, AscAscq::INVALID_FIELD_IN_CDB), "reported once");
    // A failed copy is held too, with its state.
    assert_eq!(rig.xcopy(A, &list(4, ListIdUsage::Hold, &[cscd(&n0)], &[b2b(0, 0, 16, 0, 16383)])).await.status, 2);
    let r = rig.run(A, 0, &rcr_status(4), DataDirection::In, 1024, &[]).await;
    assert_eq!(r.data_in[4], 0x02);
    rig.machine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_copies_name_their_error() {
    let rig = rig().await;
    let n0 = rig.naa(0).await;
    // Beyond the end of the LU (16384 blocks): COPY ABORTED, and nothing written.
    rig.write(0, 0, &pattern(512, 1)).await;
    let r = rig.xcopy(A, &list(1, ListIdUsage::None, &[cscd(&n0)], &[b2b(0, 0, 2, 0, 16383)])).await;
    assert_eq!(sense_of(&r).0, SenseKey::CopyAborted);
    // A CSCD index past the list, and a designator that names no LU: COPY ABORTED, unreachable.
    let r = rig.xcopy(A, &list(1, ListIdUsage::None, &[cscd(&n0)], &[b2b(0, 1, 1, 0, 1)])).await;
    assert_eq!(sense_of(&r), (SenseKey::CopyAborted, AscAscq::COPY_TARGET_DEVICE_NOT_REACHABLE));
    let r =
        rig.xcopy(A, &list(1, ListIdUsage::None, &[cscd(&[0x35, 0, 0, 0, 0, 0, 0, 1])], &[b2b(0, 0, 1, 0, 1)])).await;
    assert_eq!(sense_of(&r), (SenseKey::CopyAborted, AscAscq::COPY_TARGET_DEVICE_NOT_REACHABLE));
    // A list shorter than its header says.
    let l = list(1, ListIdUsage::None, &[cscd(&n0)], &[b2b(0, 0, 1, 0, 1)]);
    assert_eq!(
        sense_of(&rig.xcopy(A, &l[..l.len() - 1]).await),
        (SenseKey::IllegalRequest, AscAscq::PARAMETER_LIST_LENGTH_ERROR)
    );
    // An empty list copies nothing and is GOOD.
    assert_eq!(rig.xcopy(A, &[]).await.status, 0);
    rig.machine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_s_commands_meet_the_lu_s_reservations() {
    let rig = rig().await;
    let n1 = rig.naa(1).await;
    // B holds an SPC-2 reservation of LU 1: A's copy into it is refused like A's own WRITE would be.
    assert_eq!(rig.run(B, 1, &[0x16, 0, 0, 0, 0, 0], DataDirection::None, 0, &[]).await.status, 0);
    let n0 = rig.naa(0).await;
    let r = rig.xcopy(A, &list(1, ListIdUsage::None, &[cscd(&n0), cscd(&n1)], &[b2b(0, 1, 8, 0, 0)])).await;
    assert_eq!(r.status, 0x18, "RESERVATION CONFLICT");
    rig.machine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lus_advertise_the_copy_manager() {
    let rig = rig().await;
    // Supported VPD pages include 8Fh; page 8Fh lists EXTENDED COPY and RECEIVE COPY RESULTS.
    let r = rig.run(A, 0, &[0x12, 1, 0x00, 0, 255, 0], DataDirection::In, 255, &[]).await;
    assert!(r.data_in[4..].contains(&0x8F), "{:?}", r.data_in);
    let r = rig.run(A, 0, &[0x12, 1, 0x8F, 0x01, 0, 0], DataDirection::In, 256, &[]).await;
    assert_eq!(r.data_in[1], 0x8F);
    assert_eq!(&r.data_in[9..16], &[0x83, 1, 0x00, 0x84, 2, 0x00, 0x03]);
    // REPORT SUPPORTED OPERATION CODES: all commands, and one.
    let mut c = [0u8; 12];
    c[0] = 0xA3;
    c[1] = 0x0C;
    c[6..10].copy_from_slice(&65535u32.to_be_bytes());
    let r = rig.run(A, 0, &c, DataDirection::In, 65535, &[]).await;
    let all: Vec<(u8, u16)> = r.data_in[4..].chunks(8).map(|d| (d[0], u16::from_be_bytes([d[2], d[3]]))).collect();
    for cmd in [(0x83, 0), (0x84, 0), (0x84, 3), (0x28, 0)] {
        assert!(all.contains(&cmd), "{cmd:?} in {all:?}");
    }
    assert!(all.windows(2).all(|w| w[0] <= w[1]), "in opcode order");
    c[2] = 0x02;
    c[3] = 0x83;
    let r = rig.run(A, 0, &c, DataDirection::In, 65535, &[]).await;
    assert_eq!((r.data_in[1] & 0x07, r.data_in[4]), (0x03, 0x83));
    // OPERATING PARAMETERS.
    let mut c = [0u8; 16];
    c[0] = 0x84;
    c[1] = 0x03;
    c[10..14].copy_from_slice(&1024u32.to_be_bytes());
    let r = rig.run(A, 0, &c, DataDirection::In, 1024, &[]).await;
    assert_eq!(r.status, 0);
    assert_eq!(u16::from_be_bytes([r.data_in[8], r.data_in[9]]), 8, "maximum CSCD descriptor count");
    rig.machine.shutdown();
}
