//! Helpers shared by the integration tests: an in-process server on an
//! ephemeral loopback port, a minimal raw NBD client, and tool lookup.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use nbd::proto::{self, cmd, opt, rep};
use nbd::request::RequestHeader;
use nbd::{BlockDevice, CancellationToken, Export, NbdServer, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Running {
    pub port: u16,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub fn uri(&self, export: &str) -> String {
        format!("nbd://127.0.0.1:{}/{}", self.port, export)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(std::time::Duration::from_secs(30), self.task).await.expect("server did not stop");
        r.expect("server task panicked").expect("server failed");
    }
}

pub async fn start<D: BlockDevice>(config: ServerConfig, exports: Vec<Export<D>>) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = Arc::new(NbdServer::new(config, exports));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.serve_tcp(listener, shutdown.clone()));
    Running { port, shutdown, task }
}

/// Finds an external tool. Missing tools fail the test when `CI` is set and
/// skip it (with a message) otherwise.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()));
    match found {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => panic!("required tool `{name}` is not installed"),
        None => {
            eprintln!("skipping: `{name}` is not installed");
            None
        }
    }
}

/// Runs a command under `timeout`, returning (success, stdout, stderr).
pub async fn run(secs: u32, program: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new("timeout")
        .arg("-k")
        .arg("5")
        .arg(secs.to_string())
        .arg(program)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("spawn timeout");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A minimal NBD client speaking raw bytes, for protocol-level tests.
pub struct Client {
    pub s: TcpStream,
    pub structured: bool,
    pub size: u64,
    pub flags: u16,
}

pub struct Reply {
    pub handle: u64,
    pub error: u32,
    pub data: Vec<u8>,
    /// Block-status descriptors, if the reply carried them.
    pub extents: Vec<(u32, u32)>,
    /// `OFFSET_HOLE` chunks received (their zeroes are in `data`).
    pub holes: usize,
}

impl Client {
    /// Connects and completes the greeting and client flags.
    pub async fn greet(port: u16) -> TcpStream {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let mut g = [0u8; 18];
        s.read_exact(&mut g).await.expect("greeting");
        assert_eq!(&g[..8], b"NBDMAGIC");
        s.write_all(&3u32.to_be_bytes()).await.unwrap();
        s
    }

    pub async fn send_option(s: &mut TcpStream, option: u32, data: &[u8]) {
        let mut m = proto::IHAVEOPT.to_be_bytes().to_vec();
        m.extend_from_slice(&option.to_be_bytes());
        m.extend_from_slice(&(data.len() as u32).to_be_bytes());
        m.extend_from_slice(data);
        s.write_all(&m).await.unwrap();
    }

    /// Reads one option reply: (type, data).
    pub async fn option_reply(s: &mut TcpStream) -> (u32, Vec<u8>) {
        let mut h = [0u8; 20];
        s.read_exact(&mut h).await.expect("option reply");
        assert_eq!(&h[..8], &proto::OPTION_REPLY_MAGIC.to_be_bytes());
        let t = u32::from_be_bytes(h[12..16].try_into().unwrap());
        let l = u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize;
        let mut d = vec![0u8; l];
        s.read_exact(&mut d).await.unwrap();
        (t, d)
    }

    /// Full handshake with GO; `structured` also selects `base:allocation`.
    pub async fn connect(port: u16, export: &str, structured: bool) -> Client {
        let mut s = Self::greet(port).await;
        if structured {
            Self::send_option(&mut s, opt::STRUCTURED_REPLY, &[]).await;
            assert_eq!(Self::option_reply(&mut s).await.0, rep::ACK);
            let mut d = (export.len() as u32).to_be_bytes().to_vec();
            d.extend_from_slice(export.as_bytes());
            d.extend_from_slice(&1u32.to_be_bytes());
            d.extend_from_slice(&15u32.to_be_bytes());
            d.extend_from_slice(b"base:allocation");
            Self::send_option(&mut s, opt::SET_META_CONTEXT, &d).await;
            loop {
                let (t, _) = Self::option_reply(&mut s).await;
                if t == rep::ACK {
                    break;
                }
                assert_eq!(t, rep::META_CONTEXT);
            }
        }
        let mut d = (export.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(export.as_bytes());
        d.extend_from_slice(&0u16.to_be_bytes());
        Self::send_option(&mut s, opt::GO, &d).await;
        let (mut size, mut flags) = (0, 0);
        loop {
            let (t, d) = Self::option_reply(&mut s).await;
            if t == rep::ACK {
                break;
            }
            assert_eq!(t, rep::INFO, "GO failed with {t:#x}");
            if u16::from_be_bytes([d[0], d[1]]) == 0 {
                size = u64::from_be_bytes(d[2..10].try_into().unwrap());
                flags = u16::from_be_bytes([d[10], d[11]]);
            }
        }
        Client { s, structured, size, flags }
    }

    pub async fn send(&mut self, kind: u16, flags: u16, handle: u64, offset: u64, length: u32, data: &[u8]) {
        let h = RequestHeader { flags, kind, handle, offset, length };
        let mut m = h.encode().to_vec();
        m.extend_from_slice(data);
        self.s.write_all(&m).await.unwrap();
    }

    /// Reads one whole reply. `read_len` is the length of the READ this
    /// reply answers (simple replies carry no length of their own).
    pub async fn reply(&mut self, read_len: Option<u32>) -> Reply {
        let mut magic = [0u8; 4];
        self.s.read_exact(&mut magic).await.expect("reply magic");
        let magic = u32::from_be_bytes(magic);
        if magic == proto::SIMPLE_REPLY_MAGIC {
            let mut r = [0u8; 12];
            self.s.read_exact(&mut r).await.unwrap();
            let error = u32::from_be_bytes(r[..4].try_into().unwrap());
            let handle = u64::from_be_bytes(r[4..].try_into().unwrap());
            let mut data = Vec::new();
            if error == 0 {
                if let Some(n) = read_len {
                    data.resize(n as usize, 0);
                    self.s.read_exact(&mut data).await.unwrap();
                }
            }
            return Reply { handle, error, data, extents: vec![], holes: 0 };
        }
        assert_eq!(magic, proto::STRUCTURED_REPLY_MAGIC);
        let mut out = Reply { handle: 0, error: 0, data: vec![], extents: vec![], holes: 0 };
        let mut first = true;
        loop {
            if !first {
                let mut m = [0u8; 4];
                self.s.read_exact(&mut m).await.unwrap();
                assert_eq!(u32::from_be_bytes(m), proto::STRUCTURED_REPLY_MAGIC);
            }
            first = false;
            let mut h = [0u8; 16];
            self.s.read_exact(&mut h).await.unwrap();
            let flags = u16::from_be_bytes([h[0], h[1]]);
            let kind = u16::from_be_bytes([h[2], h[3]]);
            out.handle = u64::from_be_bytes(h[4..12].try_into().unwrap());
            let len = u32::from_be_bytes(h[12..16].try_into().unwrap()) as usize;
            let mut p = vec![0u8; len];
            self.s.read_exact(&mut p).await.unwrap();
            match kind {
                proto::reply::TYPE_OFFSET_DATA => out.data.extend_from_slice(&p[8..]),
                proto::reply::TYPE_OFFSET_HOLE => {
                    let n = u32::from_be_bytes(p[8..12].try_into().unwrap()) as usize;
                    out.data.resize(out.data.len() + n, 0);
                    out.holes += 1;
                }
                proto::reply::TYPE_BLOCK_STATUS => {
                    for d in p[4..].chunks(8) {
                        out.extents.push((
                            u32::from_be_bytes(d[..4].try_into().unwrap()),
                            u32::from_be_bytes(d[4..].try_into().unwrap()),
                        ));
                    }
                }
                proto::reply::TYPE_ERROR => out.error = u32::from_be_bytes(p[..4].try_into().unwrap()),
                _ => {}
            }
            if flags & proto::reply::FLAG_DONE != 0 {
                return out;
            }
        }
    }

    /// True once the server has closed the connection (reads hit EOF).
    pub async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(10), self.s.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    pub async fn disconnect(mut self) {
        self.send(cmd::DISC, 0, 0, 0, 0, &[]).await;
    }
}
