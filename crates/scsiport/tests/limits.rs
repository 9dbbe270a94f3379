//! Lengths and counts where they cross a layer, through the whole stack (class driver or pass-through SRB, port
//! driver, miniport, HBA model, 8237, disk): at 1, around powers of two, at each advertised limit and one past it,
//! and at the end of the disk. `docs/limits.md` lists the limits and where each is enforced.
//!
//! NBD requests go through `ClassDisk` (the NBD export's device: class driver splits, WRITE SAME, UNMAP, GET LBA
//! STATUS); iSCSI commands through `PassThroughLuns` (the iSCSI target's backend). A shadow of the disk, one fill
//! byte per block, says what every read must return.

use bytes::Bytes;
use frontends::nbd_disk::{ClassDisk, MAX_REQUEST};
use iscsi::{DataDirection, ScsiBackend, ScsiCommand, TaskAttr};
use nbd::{BlockDevice, DeviceError};
use passthrough::PassThroughLuns;
use proptest::prelude::*;
use scsi_proto::opcode::{
    COMPARE_AND_WRITE, PRE_FETCH_16, READ_10, READ_12, READ_16, READ_6, UNMAP, VERIFY_16, WRITE_10, WRITE_12, WRITE_16,
    WRITE_6, WRITE_AND_VERIFY_16, WRITE_SAME_10, WRITE_SAME_16,
};
use scsi_proto::{AscAscq, Sense, SenseKey};
use scsiport::config::Config;
use scsiport::machine::Machine;
use scsiport::size::ByteSize;
use std::collections::HashMap;
use std::sync::Arc;

const BS: u64 = 512;
/// 1 GiB: past the largest UNMAP descriptor (2^20 blocks) the disk accepts.
const DISK: u64 = 1 << 30;
const BLOCKS: u64 = DISK / BS;
/// The Block Limits VPD page of the default disk (`scsi::DiskConfig::default`).
const MAX_TRANSFER_BLOCKS: u64 = (16 << 20) / BS;
const MAX_WRITE_SAME_BLOCKS: u64 = 0xFFFF;
const MAX_UNMAP_BLOCKS: u64 = 1 << 20;
const MAX_UNMAP_DESCRIPTORS: usize = 256;
const MAX_CAW_BLOCKS: u64 = 255;

/// GOOD, and the sense of each refusal, as (sense key, ASC/ASCQ).
type Outcome = (SenseKey, AscAscq);
const GOOD: Outcome = (SenseKey::NoSense, AscAscq::NO_ADDITIONAL);
const OUT_OF_RANGE: Outcome = (SenseKey::IllegalRequest, AscAscq::LBA_OUT_OF_RANGE);
const INVALID_CDB: Outcome = (SenseKey::IllegalRequest, AscAscq::INVALID_FIELD_IN_CDB);
const INVALID_PARAM: Outcome = (SenseKey::IllegalRequest, AscAscq::INVALID_FIELD_IN_PARAMETER_LIST);
const MISCOMPARE: Outcome = (SenseKey::Miscompare, AscAscq::MISCOMPARE_DURING_VERIFY);

struct Stack {
    machine: Machine,
    nbd: ClassDisk,
    luns: PassThroughLuns,
    initiator: u64,
    /// Fill byte of every block that is not zero.
    shadow: HashMap<u64, u8>,
    generation: u8,
}

fn block_bytes(fill: u8) -> [u8; BS as usize] {
    let mut b = [0u8; BS as usize];
    if fill != 0 {
        for (i, x) in b.iter_mut().enumerate() {
            // Position inside the block shows too, so a shifted transfer cannot pass.
            *x = fill ^ (i as u8).wrapping_mul(3);
        }
    }
    b
}

impl Stack {
    async fn new() -> Stack {
        let machine = Machine::build(&Config::in_process(ByteSize(DISK), ByteSize(112 << 20))).expect("machine");
        let class = Arc::new(machine.open_first_disk().expect("class driver opens the disk"));
        let nbd = ClassDisk::new(class, false);
        let adapter = machine.adapter("scsi0").expect("adapter").clone();
        let luns = PassThroughLuns::new(adapter, machine.memory().clone(), &[(0, 0, BS as u32)]);
        let s = Stack { machine, nbd, luns, initiator: 0x5C51, shadow: HashMap::new(), generation: 0 };
        // A new I_T nexus first sees the power-on unit attention.
        for _ in 0..4 {
            if s.scsi(&[0; 6], DataDirection::None, 0, Bytes::new()).await.0 == GOOD {
                return s;
            }
        }
        panic!("the LU never became ready");
    }

    /// One iSCSI command: (key, asc, ascq) of its sense, or GOOD, and its data-in.
    async fn scsi(&self, cdb: &[u8], direction: DataDirection, len: u64, out: Bytes) -> (Outcome, Bytes) {
        let cmd = ScsiCommand {
            initiator: self.initiator,
            lun: 0,
            task_tag: 7,
            cdb: cdb.to_vec(),
            attr: TaskAttr::Simple,
            direction,
            expected_len: u32::try_from(len).expect("expected length fits"),
            data_out: out,
        };
        let r = self.luns.execute(cmd).await;
        if r.status == 0 {
            return (GOOD, r.data_in);
        }
        assert_eq!(r.status, 2, "CHECK CONDITION or GOOD, not {:#04x}", r.status);
        let s = r.sense.expect("sense with CHECK CONDITION");
        let s = Sense::parse(&s).expect("sense data");
        ((s.key, s.code()), r.data_in)
    }

    fn next_fill(&mut self) -> u8 {
        self.generation = self.generation.wrapping_add(1);
        self.generation | 0x01
    }

    /// The data a run of blocks holds, each block filled from `fill(lba)`.
    fn data(lba: u64, blocks: u64, fill: impl Fn(u64) -> u8) -> Vec<u8> {
        let mut v = Vec::with_capacity((blocks * BS) as usize);
        for b in lba..lba + blocks {
            v.extend_from_slice(&block_bytes(fill(b)));
        }
        v
    }

    fn expected(&self, lba: u64, blocks: u64) -> Vec<u8> {
        Self::data(lba, blocks, |b| self.shadow.get(&b).copied().unwrap_or(0))
    }

    fn set(&mut self, lba: u64, blocks: u64, fill: impl Fn(u64) -> u8) {
        for b in lba..lba + blocks {
            match fill(b) {
                0 => self.shadow.remove(&b),
                f => self.shadow.insert(b, f),
            };
        }
    }

    /// Read back through NBD in pieces of the largest request and compare with the shadow.
    async fn check_blocks(&self, lba: u64, blocks: u64) {
        let end = (lba + blocks).min(BLOCKS);
        let mut at = lba.min(BLOCKS);
        let step = u64::from(MAX_REQUEST) / BS;
        while at < end {
            let n = (end - at).min(step);
            let got = self.nbd.read(at * BS, (n * BS) as u32).await.expect("NBD read back");
            let want = self.expected(at, n);
            if got[..] != want[..] {
                let i = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
                panic!("block {} (byte {}) differs from the shadow", at + i as u64 / BS, i as u64 % BS);
            }
            at += n;
        }
    }
}

/// Where a request of `n` blocks starts.
#[derive(Clone, Copy, Debug)]
enum At {
    Start,
    /// Its last block is the disk's last.
    End,
    /// One block past the end.
    PastEnd,
    /// Anywhere (a fraction of the disk, in 1/65536ths).
    Anywhere(u16),
    /// Just below, at or just above a power-of-two LBA.
    PowerOfTwo(u8, i8),
}

impl At {
    fn lba(self, n: u64) -> u64 {
        match self {
            At::Start => 0,
            At::End => BLOCKS.saturating_sub(n),
            At::PastEnd => BLOCKS.saturating_sub(n) + 1,
            At::Anywhere(f) => BLOCKS * u64::from(f) / 65536,
            At::PowerOfTwo(k, d) => ((1u64 << (k % 21)) as i64 + i64::from(d)).max(0) as u64,
        }
    }
}

fn at() -> impl Strategy<Value = At> {
    prop_oneof![
        Just(At::Start),
        Just(At::End),
        Just(At::PastEnd),
        any::<u16>().prop_map(At::Anywhere),
        (0u8..21, -1i8..=1).prop_map(|(k, d)| At::PowerOfTwo(k, d)),
    ]
}

/// Block counts at 1, around powers of two, and at and around every limit of the stack.
fn blocks() -> impl Strategy<Value = u64> {
    let mut v = vec![1u64, 2, 3];
    for k in [3u32, 7, 8, 12, 15, 16, 17] {
        v.extend([(1u64 << k) - 1, 1 << k, (1 << k) + 1]);
    }
    for limit in [MAX_TRANSFER_BLOCKS, MAX_WRITE_SAME_BLOCKS, u64::from(MAX_REQUEST) / BS, MAX_CAW_BLOCKS, 127, 128] {
        v.extend([limit - 1, limit, limit + 1]);
    }
    proptest::sample::select(v)
}

#[derive(Clone, Debug)]
enum Op {
    NbdWrite(At, u64),
    NbdRead(At, u64),
    NbdZero(At, u64, bool),
    NbdTrim(At, u64),
    NbdBlockStatus(At, u64),
    Read(u8, At, u64),
    Write(u8, At, u64),
    WriteSame(u8, At, u64, bool),
    Unmap(At, u64, usize),
    CompareAndWrite(At, u64, bool),
    Verify(At, u64, bool),
    WriteAndVerify(At, u64),
    PreFetch(At, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (at(), blocks()).prop_map(|(a, n)| Op::NbdWrite(a, n)),
        (at(), blocks()).prop_map(|(a, n)| Op::NbdRead(a, n)),
        (at(), blocks(), any::<bool>()).prop_map(|(a, n, h)| Op::NbdZero(a, n, h)),
        (at(), prop_oneof![blocks(), Just(MAX_UNMAP_BLOCKS + 1), Just(BLOCKS)]).prop_map(|(a, n)| Op::NbdTrim(a, n)),
        (at(), blocks()).prop_map(|(a, n)| Op::NbdBlockStatus(a, n)),
        (prop::sample::select(vec![6u8, 10, 12, 16]), at(), blocks()).prop_map(|(s, a, n)| Op::Read(s, a, n)),
        (prop::sample::select(vec![6u8, 10, 12, 16]), at(), blocks()).prop_map(|(s, a, n)| Op::Write(s, a, n)),
        (prop::sample::select(vec![10u8, 16]), at(), blocks(), any::<bool>())
            .prop_map(|(s, a, n, u)| Op::WriteSame(s, a, n, u)),
        (
            at(),
            prop_oneof![blocks(), Just(MAX_UNMAP_BLOCKS), Just(MAX_UNMAP_BLOCKS + 1)],
            prop_oneof![Just(1usize), Just(2), Just(MAX_UNMAP_DESCRIPTORS), Just(MAX_UNMAP_DESCRIPTORS + 1)]
        )
            .prop_map(|(a, n, d)| Op::Unmap(a, n, d)),
        (at(), prop::sample::select(vec![1u64, 2, 16, 254, 255]), any::<bool>())
            .prop_map(|(a, n, m)| Op::CompareAndWrite(a, n, m)),
        (at(), blocks(), any::<bool>()).prop_map(|(a, n, m)| Op::Verify(a, n, m)),
        (at(), blocks()).prop_map(|(a, n)| Op::WriteAndVerify(a, n)),
        (at(), blocks()).prop_map(|(a, n)| Op::PreFetch(a, n)),
    ]
}

fn in_disk(lba: u64, n: u64) -> bool {
    lba.checked_add(n).is_some_and(|e| e <= BLOCKS)
}

/// The CDB of a READ or WRITE of `size` bytes (6, 10, 12 or 16), or `None` when the fields cannot hold the request.
fn rw_cdb(write: bool, size: u8, lba: u64, n: u64) -> Option<Vec<u8>> {
    let c = match size {
        6 if lba < (1 << 21) && (1..=256).contains(&n) => {
            let l = (lba as u32).to_be_bytes();
            vec![if write { WRITE_6 } else { READ_6 }, l[1] & 0x1F, l[2], l[3], (n % 256) as u8, 0]
        }
        10 if lba <= u64::from(u32::MAX) && n <= 0xFFFF => {
            let mut c = vec![if write { WRITE_10 } else { READ_10 }, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
            c[7..9].copy_from_slice(&(n as u16).to_be_bytes());
            c
        }
        12 if lba <= u64::from(u32::MAX) => {
            let mut c = vec![if write { WRITE_12 } else { READ_12 }, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
            c[6..10].copy_from_slice(&(n as u32).to_be_bytes());
            c
        }
        16 => cdb16(if write { WRITE_16 } else { READ_16 }, 0, lba, n),
        _ => return None,
    };
    Some(c)
}

fn cdb16(op: u8, flags: u8, lba: u64, n: u64) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = op;
    c[1] = flags;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&(n as u32).to_be_bytes());
    c
}

/// What a READ/WRITE-like command of `n` blocks at `lba` must end in, the transfer limit checked first.
fn transfer_verdict(lba: u64, n: u64) -> Outcome {
    if n > MAX_TRANSFER_BLOCKS {
        INVALID_CDB
    } else if !in_disk(lba, n) {
        OUT_OF_RANGE
    } else {
        GOOD
    }
}

impl Stack {
    async fn apply(&mut self, op: &Op) {
        match *op {
            Op::NbdWrite(a, n) => {
                let (lba, n) = (a.lba(n), n.min(u64::from(MAX_REQUEST) / BS));
                let fill = self.next_fill();
                let data = Self::data(lba, n, |b| fill ^ (b as u8 & 0xFE));
                let r = self.nbd.write(lba * BS, Bytes::from(data), false).await;
                if in_disk(lba, n) {
                    r.expect("NBD write inside the disk");
                    self.set(lba, n, |b| fill ^ (b as u8 & 0xFE));
                } else {
                    assert!(matches!(r, Err(DeviceError::Invalid)), "NBD write past the end: {r:?}");
                }
            }
            Op::NbdRead(a, n) => {
                let (lba, n) = (a.lba(n), n.min(u64::from(MAX_REQUEST) / BS));
                let r = self.nbd.read(lba * BS, (n * BS) as u32).await;
                if in_disk(lba, n) {
                    assert!(r.expect("NBD read inside the disk")[..] == self.expected(lba, n)[..], "NBD read data");
                } else {
                    assert!(matches!(r, Err(DeviceError::Invalid)), "NBD read past the end: {r:?}");
                }
            }
            Op::NbdZero(a, n, no_hole) => {
                let lba = a.lba(n);
                let r = self.nbd.write_zeroes(lba * BS, n * BS, no_hole, false).await;
                if in_disk(lba, n) {
                    r.unwrap_or_else(|e| panic!("NBD WRITE_ZEROES of {n} blocks at {lba}: {e}"));
                    self.set(lba, n, |_| 0);
                    self.check_blocks(lba.saturating_sub(1), n + 2).await;
                } else {
                    assert!(matches!(r, Err(DeviceError::Invalid)), "NBD WRITE_ZEROES past the end: {r:?}");
                }
            }
            Op::NbdTrim(a, n) => {
                let lba = a.lba(n);
                let r = self.nbd.trim(lba * BS, n * BS, false).await;
                if in_disk(lba, n) {
                    r.unwrap_or_else(|e| panic!("NBD TRIM of {n} blocks at {lba}: {e}"));
                    // Deallocated blocks read as zeros (LBPRZ).
                    self.set(lba, n, |_| 0);
                    self.check_blocks(lba.saturating_sub(1), 2).await;
                    self.check_blocks((lba + n).saturating_sub(1), 2).await;
                } else {
                    assert!(matches!(r, Err(DeviceError::Invalid)), "NBD TRIM past the end: {r:?}");
                }
            }
            Op::NbdBlockStatus(a, n) => {
                let (lba, n) = (a.lba(n), n.min(u64::from(MAX_REQUEST) / BS));
                if !in_disk(lba, n) {
                    return;
                }
                let extents = self.nbd.block_status(lba * BS, (n * BS) as u32).await.expect("NBD BLOCK_STATUS");
                // A reply may describe less than asked (NBD "Metadata querying"), never more, never nothing.
                let covered = extents.iter().map(|e| e.length).sum::<u64>();
                assert!(covered > 0 && covered <= n * BS, "extents cover {covered} of {} bytes", n * BS);
                let mut at = lba * BS;
                for e in &extents {
                    assert!(e.length > 0 && e.length % BS == 0, "whole blocks: {extents:?}");
                    if e.zero {
                        let first = at / BS;
                        let nonzero = (first..first + e.length / BS).find(|b| self.shadow.contains_key(b));
                        assert_eq!(nonzero, None, "an extent said zero holds data");
                    }
                    at += e.length;
                }
            }
            Op::Read(size, a, n) => {
                let lba = a.lba(n);
                let Some(cdb) = rw_cdb(false, size, lba, n) else { return };
                let (v, data) = self.scsi(&cdb, DataDirection::In, n * BS, Bytes::new()).await;
                assert_eq!(v, transfer_verdict(lba, n), "READ({size}) of {n} blocks at {lba}");
                if v == GOOD {
                    assert!(data[..] == self.expected(lba, n)[..], "READ({size}) data");
                }
            }
            Op::Write(size, a, n) => {
                let lba = a.lba(n);
                let Some(cdb) = rw_cdb(true, size, lba, n) else { return };
                let fill = self.next_fill();
                let data = Bytes::from(Self::data(lba, n, |_| fill));
                let (v, _) = self.scsi(&cdb, DataDirection::Out, n * BS, data).await;
                assert_eq!(v, transfer_verdict(lba, n), "WRITE({size}) of {n} blocks at {lba}");
                if v == GOOD {
                    self.set(lba, n, |_| fill);
                    self.check_blocks(lba.saturating_sub(1), n + 2).await;
                }
            }
            Op::WriteSame(size, a, n, unmap) => {
                let lba = a.lba(n);
                let fill = self.next_fill();
                let cdb = if size == 10 {
                    if lba > u64::from(u32::MAX) || n > 0xFFFF {
                        return;
                    }
                    let mut c = vec![WRITE_SAME_10, if unmap { 0x08 } else { 0 }, 0, 0, 0, 0, 0, 0, 0, 0];
                    c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
                    c[7..9].copy_from_slice(&(n as u16).to_be_bytes());
                    c
                } else {
                    cdb16(WRITE_SAME_16, if unmap { 0x08 } else { 0 }, lba, n)
                };
                let block = Bytes::copy_from_slice(&block_bytes(fill));
                let (v, _) = self.scsi(&cdb, DataDirection::Out, BS, block).await;
                let want = if !in_disk(lba, n) {
                    OUT_OF_RANGE
                } else if n > MAX_WRITE_SAME_BLOCKS {
                    INVALID_CDB
                } else {
                    GOOD
                };
                assert_eq!(v, want, "WRITE SAME({size}) of {n} blocks at {lba}");
                if v == GOOD {
                    // With UNMAP on a thin disk the range is deallocated and reads as zeros.
                    self.set(lba, n, |_| if unmap { 0 } else { fill });
                    self.check_blocks(lba.saturating_sub(1), n + 2).await;
                }
            }
            Op::Unmap(a, n, descriptors) => {
                let lba = a.lba(n);
                let mut list = vec![0u8; 8];
                // Every descriptor names the same range: overlap is allowed (SBC-3 §5.28.2).
                for _ in 0..descriptors {
                    list.extend_from_slice(&lba.to_be_bytes());
                    list.extend_from_slice(&(n as u32).to_be_bytes());
                    list.extend_from_slice(&[0; 4]);
                }
                let dl = (list.len() - 8) as u16;
                list[0..2].copy_from_slice(&(dl + 6).to_be_bytes());
                list[2..4].copy_from_slice(&dl.to_be_bytes());
                let mut cdb = vec![UNMAP, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                cdb[7..9].copy_from_slice(&(list.len() as u16).to_be_bytes());
                let len = list.len() as u64;
                let (v, _) = self.scsi(&cdb, DataDirection::Out, len, Bytes::from(list)).await;
                let want = if descriptors > MAX_UNMAP_DESCRIPTORS || (in_disk(lba, n) && n > MAX_UNMAP_BLOCKS) {
                    INVALID_PARAM
                } else if !in_disk(lba, n) {
                    OUT_OF_RANGE
                } else {
                    GOOD
                };
                assert_eq!(v, want, "UNMAP of {descriptors} x {n} blocks at {lba}");
                if v == GOOD {
                    self.set(lba, n, |_| 0);
                }
            }
            Op::CompareAndWrite(a, n, matching) => {
                let lba = a.lba(n);
                let fill = self.next_fill();
                let mut data = if matching || !in_disk(lba, n) {
                    self.expected(lba.min(BLOCKS - n), n)
                } else {
                    Self::data(lba, n, |b| self.shadow.get(&b).copied().unwrap_or(0) ^ 0x80)
                };
                data.extend(Self::data(lba, n, |_| fill));
                let mut cdb = cdb16(COMPARE_AND_WRITE, 0, lba, 0);
                cdb[13] = n as u8;
                let len = data.len() as u64;
                let (v, _) = self.scsi(&cdb, DataDirection::Out, len, Bytes::from(data.clone())).await;
                let want = if !in_disk(lba, n) {
                    OUT_OF_RANGE
                } else if !matching {
                    MISCOMPARE
                } else {
                    GOOD
                };
                assert_eq!(v, want, "COMPARE AND WRITE of {n} blocks at {lba}");
                if v == GOOD {
                    self.set(lba, n, |_| fill);
                }
                // The data-out length must be exactly twice the blocks: one block short or long is refused whole.
                if in_disk(lba, n) {
                    for wrong in [len - BS, len + BS] {
                        let mut d = data.clone();
                        d.resize(wrong as usize, 0);
                        let (v, _) = self.scsi(&cdb, DataDirection::Out, wrong, Bytes::from(d)).await;
                        assert_eq!(v, INVALID_CDB, "COMPARE AND WRITE of {n} blocks with {wrong} bytes");
                    }
                    self.check_blocks(lba, n).await;
                }
            }
            Op::Verify(a, n, bytchk) => {
                let lba = a.lba(n);
                let cdb = cdb16(VERIFY_16, if bytchk { 0x02 } else { 0 }, lba, n);
                let (v, _) = if bytchk {
                    let data = if in_disk(lba, n) { self.expected(lba, n) } else { vec![0; (n * BS) as usize] };
                    self.scsi(&cdb, DataDirection::Out, n * BS, Bytes::from(data)).await
                } else {
                    self.scsi(&cdb, DataDirection::None, 0, Bytes::new()).await
                };
                let want = if bytchk {
                    transfer_verdict(lba, n)
                } else if in_disk(lba, n) {
                    GOOD
                } else {
                    OUT_OF_RANGE
                };
                assert_eq!(v, want, "VERIFY(16) BYTCHK={} of {n} blocks at {lba}", u8::from(bytchk));
            }
            Op::WriteAndVerify(a, n) => {
                let lba = a.lba(n);
                let fill = self.next_fill();
                let data = Bytes::from(Self::data(lba, n, |_| fill));
                let (v, _) = self.scsi(&cdb16(WRITE_AND_VERIFY_16, 0, lba, n), DataDirection::Out, n * BS, data).await;
                assert_eq!(v, transfer_verdict(lba, n), "WRITE AND VERIFY(16) of {n} blocks at {lba}");
                if v == GOOD {
                    self.set(lba, n, |_| fill);
                }
            }
            Op::PreFetch(a, n) => {
                let lba = a.lba(n);
                let (v, _) = self.scsi(&cdb16(PRE_FETCH_16, 0, lba, n), DataDirection::None, 0, Bytes::new()).await;
                assert_eq!(v, transfer_verdict(lba, n), "PRE-FETCH(16) of {n} blocks at {lba}");
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// The first symptom: NBD WRITE_ZEROES of exactly the advertised maximum block size (32 MiB = 65536 blocks, one
/// more than the disk's MAXIMUM WRITE SAME LENGTH) must zero it all, at the start, in the middle and at the end.
#[test]
fn nbd_write_zeroes_of_the_maximum_request_zeroes_every_block() {
    runtime().block_on(async {
        let mut s = Stack::new().await;
        let max = u64::from(MAX_REQUEST) / BS;
        for (lba, n) in [(0, max), (max + 1, max - 1), (BLOCKS - max, max), (3 * max, MAX_WRITE_SAME_BLOCKS + 1)] {
            for no_hole in [false, true] {
                let fill = s.next_fill();
                let around = (lba.saturating_sub(8), (n + 16).min(BLOCKS - lba.saturating_sub(8)));
                let mut at = around.0;
                while at < around.0 + around.1 {
                    let k = (around.0 + around.1 - at).min(max);
                    let data = Stack::data(at, k, |_| fill);
                    s.nbd.write(at * BS, Bytes::from(data), false).await.expect("fill");
                    s.set(at, k, |_| fill);
                    at += k;
                }
                s.nbd
                    .write_zeroes(lba * BS, n * BS, no_hole, false)
                    .await
                    .unwrap_or_else(|e| panic!("WRITE_ZEROES of {n} blocks at {lba} (no_hole {no_hole}): {e}"));
                s.set(lba, n, |_| 0);
                s.check_blocks(around.0, around.1).await;
            }
        }
        assert!(s.machine.adapters().all(|a| a.violations().is_empty()));
        s.machine.shutdown();
    });
}

/// NBD TRIM of the whole disk: more blocks than MAXIMUM UNMAP LBA COUNT, so the class driver splits it into
/// descriptors the disk takes; afterwards all of it is deallocated and reads as zeros.
#[test]
fn nbd_trim_larger_than_the_maximum_unmap_count_deallocates_it_all() {
    runtime().block_on(async {
        let mut s = Stack::new().await;
        for lba in [0, MAX_UNMAP_BLOCKS - 1, MAX_UNMAP_BLOCKS, BLOCKS - 1] {
            let data = Stack::data(lba, 1, |_| 0x41);
            s.nbd.write(lba * BS, Bytes::from(data), false).await.expect("write");
        }
        s.nbd.trim(0, DISK, false).await.expect("TRIM of the whole disk");
        s.shadow.clear();
        for lba in [0, MAX_UNMAP_BLOCKS - 1, MAX_UNMAP_BLOCKS, BLOCKS - 1] {
            s.check_blocks(lba, 1).await;
        }
        let extents = s.nbd.block_status(0, MAX_REQUEST).await.expect("BLOCK_STATUS");
        assert!(extents.iter().all(|e| e.hole && e.zero), "{extents:?}");
        s.machine.shutdown();
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random sequences of NBD requests and iSCSI commands with lengths at the edges: each ends as the limits
    /// say, and every read matches the shadow.
    #[test]
    fn lengths_at_every_edge_end_as_the_limits_say(ops in proptest::collection::vec(op(), 1..10)) {
        runtime().block_on(async {
            let mut s = Stack::new().await;
            for op in &ops {
                s.apply(op).await;
            }
            assert!(s.machine.adapters().all(|a| a.violations().is_empty()));
            s.machine.shutdown();
        });
    }
}
