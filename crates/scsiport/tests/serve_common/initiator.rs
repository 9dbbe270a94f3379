//! A minimal iSCSI initiator for tests that need exact control over each command (FUA, SYNCHRONIZE CACHE) and its
//! acknowledgement, or thousands of logins: one session, no authentication, immediate data only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A minimal iSCSI initiator: one session, no authentication, immediate data, WRITE(10) and SYNCHRONIZE CACHE(10).
pub struct Initiator {
    s: TcpStream,
    cmd_sn: u32,
    exp_stat_sn: u32,
    itt: u32,
}

pub fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

impl Initiator {
    pub fn login(port: u16, target: &str, name: &str) -> Initiator {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut me = Initiator { s, cmd_sn: 1, exp_stat_sn: 0, itt: 1 };
        let keys = format!(
            "InitiatorName={name}\0TargetName={target}\0SessionType=Normal\0HeaderDigest=None\0DataDigest=None\0\
             ImmediateData=Yes\0InitialR2T=No\0MaxRecvDataSegmentLength=262144\0FirstBurstLength=262144\0\
             MaxBurstLength=1048576\0"
        );
        let mut bhs = [0u8; 48];
        bhs[0] = 0x43; // immediate Login Request
        bhs[1] = 0x80 | (1 << 2) | 3; // Transit, CSG operational, NSG full feature
        bhs[5..8].copy_from_slice(&(keys.len() as u32).to_be_bytes()[1..]);
        bhs[8..14].copy_from_slice(&[0x00, 0x02, 0x3d, 0x00, 0x00, 0x01]);
        bhs[16..20].copy_from_slice(&0u32.to_be_bytes());
        bhs[24..28].copy_from_slice(&me.cmd_sn.to_be_bytes());
        me.send(&bhs, keys.as_bytes());
        let (h, data) = me.recv();
        assert_eq!(h[0] & 0x3f, 0x23, "not a Login Response");
        assert_eq!((h[36], h[37]), (0, 0), "login refused: {:?}", String::from_utf8_lossy(&data));
        assert!(h[1] & 0x80 != 0 && h[1] & 3 == 3, "the target did not go to full feature phase");
        let text = String::from_utf8_lossy(&data).to_string();
        assert!(text.contains("ImmediateData=Yes") && text.contains("InitialR2T=No"), "{text}");
        me.exp_stat_sn = u32::from_be_bytes([h[24], h[25], h[26], h[27]]).wrapping_add(1);
        me.cmd_sn = u32::from_be_bytes([h[28], h[29], h[30], h[31]]);
        me
    }

    fn send(&mut self, bhs: &[u8; 48], data: &[u8]) {
        let mut pdu = bhs.to_vec();
        pdu.extend_from_slice(data);
        pdu.resize(48 + pad4(data.len()), 0);
        self.s.write_all(&pdu).unwrap();
    }

    fn recv(&mut self) -> ([u8; 48], Vec<u8>) {
        let mut h = [0u8; 48];
        self.s.read_exact(&mut h).unwrap();
        let ahs = h[4] as usize * 4;
        let dsl = u32::from_be_bytes([0, h[5], h[6], h[7]]) as usize;
        let mut rest = vec![0u8; ahs + pad4(dsl)];
        self.s.read_exact(&mut rest).unwrap();
        (h, rest[ahs..ahs + dsl].to_vec())
    }

    /// One command with its data as immediate data; the SAM status (CHECK CONDITION retried once, for the power-on
    /// unit attention).
    pub fn command(&mut self, cdb: &[u8], data: &[u8]) -> u8 {
        for _ in 0..2 {
            let mut bhs = [0u8; 48];
            bhs[0] = 0x01;
            bhs[1] = 0x80 | if data.is_empty() { 0 } else { 0x20 } | 1;
            bhs[5..8].copy_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
            self.itt = self.itt.wrapping_add(1);
            bhs[16..20].copy_from_slice(&self.itt.to_be_bytes());
            bhs[20..24].copy_from_slice(&(data.len() as u32).to_be_bytes());
            bhs[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
            bhs[28..32].copy_from_slice(&self.exp_stat_sn.to_be_bytes());
            bhs[32..32 + cdb.len()].copy_from_slice(cdb);
            self.cmd_sn = self.cmd_sn.wrapping_add(1);
            self.send(&bhs, data);
            let status = loop {
                let (h, _) = self.recv();
                match h[0] & 0x3f {
                    0x21 => {
                        self.exp_stat_sn = u32::from_be_bytes([h[24], h[25], h[26], h[27]]).wrapping_add(1);
                        assert_eq!(h[2], 0, "iSCSI response {}", h[2]);
                        break h[3];
                    }
                    0x20 => {} // NOP-In
                    op => panic!("unexpected PDU {op:#x} (an R2T would mean the immediate data was refused)"),
                }
            };
            if status != 2 {
                return status;
            }
        }
        2
    }

    /// READ(10) of `blocks` 512-byte blocks: the status and the data.
    pub fn read10(&mut self, lba: u32, blocks: u16) -> (u8, Vec<u8>) {
        let l = lba.to_be_bytes();
        let n = blocks.to_be_bytes();
        let cdb = [0x28, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0];
        self.command_in(&cdb, blocks as usize * 512)
    }

    /// A command with a data-in phase of at most `len` bytes: the status and the data (CHECK CONDITION retried
    /// once, as in [`Initiator::command`]).
    pub fn command_in(&mut self, cdb: &[u8], len: usize) -> (u8, Vec<u8>) {
        for _ in 0..2 {
            let mut bhs = [0u8; 48];
            bhs[0] = 0x01;
            bhs[1] = 0x80 | 0x40 | 1;
            self.itt = self.itt.wrapping_add(1);
            bhs[16..20].copy_from_slice(&self.itt.to_be_bytes());
            bhs[20..24].copy_from_slice(&(len as u32).to_be_bytes());
            bhs[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
            bhs[28..32].copy_from_slice(&self.exp_stat_sn.to_be_bytes());
            bhs[32..32 + cdb.len()].copy_from_slice(cdb);
            self.cmd_sn = self.cmd_sn.wrapping_add(1);
            self.send(&bhs, &[]);
            let mut data = Vec::with_capacity(len);
            let status = loop {
                let (h, d) = self.recv();
                match h[0] & 0x3f {
                    0x25 => {
                        data.extend_from_slice(&d);
                        // Data-In with the S bit carries the status.
                        if h[1] & 0x01 != 0 {
                            self.exp_stat_sn = u32::from_be_bytes([h[24], h[25], h[26], h[27]]).wrapping_add(1);
                            break h[3];
                        }
                    }
                    0x21 => {
                        self.exp_stat_sn = u32::from_be_bytes([h[24], h[25], h[26], h[27]]).wrapping_add(1);
                        break h[3];
                    }
                    0x20 => {}
                    op => panic!("unexpected PDU {op:#x}"),
                }
            };
            if status != 2 {
                return (status, data);
            }
        }
        (2, Vec::new())
    }

    /// Logout (close the session) and wait for the response.
    pub fn logout(mut self) {
        let mut bhs = [0u8; 48];
        bhs[0] = 0x46; // immediate Logout Request
        bhs[1] = 0x80; // close the session
        self.itt = self.itt.wrapping_add(1);
        bhs[16..20].copy_from_slice(&self.itt.to_be_bytes());
        bhs[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
        bhs[28..32].copy_from_slice(&self.exp_stat_sn.to_be_bytes());
        self.send(&bhs, &[]);
        loop {
            let (h, _) = self.recv();
            if h[0] & 0x3f == 0x26 {
                assert_eq!(h[2], 0, "logout response {}", h[2]);
                return;
            }
        }
    }
}

/// WRITE(10) of `blocks` blocks at `lba`, with FUA when asked.
pub fn write10(lba: u32, blocks: u16, fua: bool) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let n = blocks.to_be_bytes();
    [0x2A, if fua { 0x08 } else { 0 }, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]
}
