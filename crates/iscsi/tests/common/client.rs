//! A minimal raw iSCSI initiator for protocol tests: builds PDUs by hand so tests can
//! send exactly the malformed or hostile ones they need.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use iscsi::digest::crc32c;
use iscsi::pdu::{frame_layout, padded, Digests, FrameLayout, BHS_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const NO_TAG: u32 = 0xffff_ffff;

/// One PDU received from the target.
#[derive(Debug, Clone)]
pub struct Pdu {
    pub bhs: [u8; BHS_LEN],
    pub data: Vec<u8>,
}

impl Pdu {
    pub fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3f
    }
    pub fn u32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes([self.bhs[at], self.bhs[at + 1], self.bhs[at + 2], self.bhs[at + 3]])
    }
    pub fn itt(&self) -> u32 {
        self.u32_at(16)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).replace('\0', "|")
    }
}

pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
    pub digests: Digests,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub next_itt: u32,
    pub tsih: u16,
}

pub fn bhs(op: u8, flags: u8) -> [u8; BHS_LEN] {
    let mut b = [0u8; BHS_LEN];
    b[0] = op;
    b[1] = flags;
    b
}

pub fn put32(b: &mut [u8; BHS_LEN], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            buf: BytesMut::new(),
            digests: Digests::default(),
            cmd_sn: 1,
            exp_stat_sn: 0,
            next_itt: 0x100,
            tsih: 0,
        }
    }

    pub fn itt(&mut self) -> u32 {
        self.next_itt += 1;
        self.next_itt
    }

    /// Serialises a PDU with the data segment length, padding and digests filled in.
    pub fn encode(&self, mut h: [u8; BHS_LEN], data: &[u8]) -> Vec<u8> {
        let dsl = data.len() as u32;
        h[5..8].copy_from_slice(&dsl.to_be_bytes()[1..]);
        let mut v = h.to_vec();
        if self.digests.header {
            v.extend_from_slice(&crc32c(&h).to_le_bytes());
        }
        if !data.is_empty() {
            let start = v.len();
            v.extend_from_slice(data);
            v.resize(start + padded(data.len()), 0);
            if self.digests.data {
                let d = crc32c(&v[start..]);
                v.extend_from_slice(&d.to_le_bytes());
            }
        }
        v
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    pub async fn send(&mut self, h: [u8; BHS_LEN], data: &[u8]) {
        let v = self.encode(h, data);
        self.send_raw(&v).await;
    }

    /// Next PDU, or `None` when the target closed the connection. Panics after 10 s.
    pub async fn recv(&mut self) -> Option<Pdu> {
        self.recv_within(Duration::from_secs(10)).await.expect("no PDU from the target within 10 s")
    }

    /// `Err(())` on timeout, `Ok(None)` on close.
    pub async fn recv_within(&mut self, limit: Duration) -> Result<Option<Pdu>, ()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match frame_layout(&self.buf, self.digests, 1 << 24) {
                Ok(iscsi::pdu::frame::Framing::Complete(FrameLayout { total, data, .. })) => {
                    let frame = self.buf.split_to(total);
                    let mut h = [0u8; BHS_LEN];
                    h.copy_from_slice(&frame[..BHS_LEN]);
                    let pdu = Pdu { bhs: h, data: frame[data].to_vec() };
                    if matches!(pdu.opcode(), 0x21 | 0x22 | 0x23 | 0x24 | 0x26 | 0x3f)
                        || (pdu.opcode() == 0x25 && pdu.bhs[1] & 1 == 1)
                        || (pdu.opcode() == 0x20 && pdu.itt() != NO_TAG)
                    {
                        self.exp_stat_sn = pdu.u32_at(24).wrapping_add(1);
                    }
                    return Ok(Some(pdu));
                }
                Ok(_) => {}
                Err(e) => panic!("target sent an unframeable PDU: {e}"),
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Err(()),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Receives until a PDU satisfies `f`, returning it and what came before.
    pub async fn recv_until(&mut self, f: impl Fn(&Pdu) -> bool) -> (Pdu, Vec<Pdu>) {
        let mut before = Vec::new();
        loop {
            let p = self.recv().await.expect("connection closed while waiting");
            if f(&p) {
                return (p, before);
            }
            before.push(p);
        }
    }

    pub fn login_pdu(&self, isid: [u8; 6], csg: u8, nsg: u8, text: &str) -> Vec<u8> {
        let mut h = bhs(0x43, 0x80 | (csg << 2) | nsg);
        h[8..14].copy_from_slice(&isid);
        h[14..16].copy_from_slice(&self.tsih.to_be_bytes());
        put32(&mut h, 16, 1);
        put32(&mut h, 24, self.cmd_sn);
        put32(&mut h, 28, self.exp_stat_sn);
        let data = text.replace('|', "\0");
        let mut plain = Client::encode_plain(h, data.as_bytes());
        plain.shrink_to_fit();
        plain
    }

    fn encode_plain(mut h: [u8; BHS_LEN], data: &[u8]) -> Vec<u8> {
        let dsl = data.len() as u32;
        h[5..8].copy_from_slice(&dsl.to_be_bytes()[1..]);
        let mut v = h.to_vec();
        v.extend_from_slice(data);
        v.resize(BHS_LEN + padded(data.len()), 0);
        v
    }

    /// Logs in to a normal session in one operational-stage PDU; `keys` are extra
    /// `Key=Value|` pairs. Returns the final login response.
    pub async fn login(&mut self, isid: [u8; 6], initiator: &str, target: &str, keys: &str) -> Pdu {
        let text = format!("InitiatorName={initiator}|TargetName={target}|SessionType=Normal|{keys}");
        let pdu = self.login_pdu(isid, 1, 3, &text);
        self.send_raw(&pdu).await;
        let r = self.recv().await.expect("closed during login");
        assert_eq!(r.opcode(), 0x23, "not a login response");
        if r.bhs[36] == 0 {
            self.tsih = u16::from_be_bytes([r.bhs[14], r.bhs[15]]);
            let t = r.text();
            self.digests.header = t.contains("HeaderDigest=CRC32C");
            self.digests.data = t.contains("DataDigest=CRC32C");
            self.cmd_sn = r.u32_at(28);
        }
        r
    }

    /// A SCSI Command PDU (non-immediate) with the next CmdSN.
    pub fn command(
        &mut self,
        itt: u32,
        cdb: &[u8],
        read: bool,
        write: bool,
        expected: u32,
        final_: bool,
    ) -> [u8; BHS_LEN] {
        let flags =
            (if final_ { 0x80 } else { 0 }) | (if read { 0x40 } else { 0 }) | (if write { 0x20 } else { 0 }) | 1;
        let mut h = bhs(0x01, flags);
        put32(&mut h, 16, itt);
        put32(&mut h, 20, expected);
        put32(&mut h, 24, self.cmd_sn);
        put32(&mut h, 28, self.exp_stat_sn);
        h[32..32 + cdb.len()].copy_from_slice(cdb);
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        h
    }

    pub fn data_out(&self, itt: u32, ttt: u32, data_sn: u32, offset: u32, final_: bool) -> [u8; BHS_LEN] {
        let mut h = bhs(0x05, if final_ { 0x80 } else { 0 });
        put32(&mut h, 16, itt);
        put32(&mut h, 20, ttt);
        put32(&mut h, 28, self.exp_stat_sn);
        put32(&mut h, 36, data_sn);
        put32(&mut h, 40, offset);
        h
    }

    /// An immediate NOP-Out ping; returns its ITT.
    pub async fn ping(&mut self, data: &[u8]) -> u32 {
        let itt = self.itt();
        let mut h = bhs(0x40, 0x80);
        put32(&mut h, 16, itt);
        put32(&mut h, 20, NO_TAG);
        put32(&mut h, 24, self.cmd_sn);
        put32(&mut h, 28, self.exp_stat_sn);
        self.send(h, data).await;
        itt
    }

    /// Pings and waits for the matching NOP-In; true if it came back with the data.
    pub async fn ping_ok(&mut self) -> bool {
        let itt = self.ping(b"are-you-there").await;
        loop {
            match self.recv().await {
                None => return false,
                Some(p) if p.opcode() == 0x20 && p.itt() == itt => return p.data == b"are-you-there",
                Some(_) => {}
            }
        }
    }
}

pub fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x28;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

pub fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = read10(lba, blocks);
    c[0] = 0x2a;
    c
}
