//! What the `serve` and crash tests share: starting the real `scsiport` binary on 127.0.0.1, running external
//! tools with a deadline, and a minimal NBD client (fixed newstyle, simple replies) for precise acknowledgements.

#![allow(dead_code)]

pub mod initiator;
pub mod pass_through;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const MIB: u64 = 1 << 20;

/// The root of the iSCSI-capable qemu-img that `scripts/test.sh` unpacks (Debian's qemu-utils and qemu-block-extra,
/// under `target/qemu-iscsi` or `$SCSIPORT_QEMU_ISCSI`), or `None` (with a message) when it is missing and `CI` is
/// unset. Run its qemu-img with `QEMU_MODULE_DIR` set to `usr/lib/x86_64-linux-gnu/qemu` below it.
pub fn qemu_iscsi_root() -> Option<PathBuf> {
    let dir = std::env::var_os("SCSIPORT_QEMU_ISCSI")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/qemu-iscsi"));
    let root = dir.join("root");
    if root.join("usr/bin/qemu-img").is_file() && root.join("usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so").is_file() {
        return Some(root);
    }
    let what = format!("no iSCSI-capable qemu-img under {}", dir.display());
    missing(&what, ": scripts/test.sh prepares it", " (run scripts/test.sh once)")
}

/// Debian's `qemu-img` with its iSCSI block module under `root` (from [`qemu_iscsi_root`]), bounded like [`run`].
pub fn qemu_img_iscsi(root: &Path, secs: u64, args: &[&str]) -> Output {
    let module_dir = format!("QEMU_MODULE_DIR={}", root.join("usr/lib/x86_64-linux-gnu/qemu").display());
    let prog = root.join("usr/bin/qemu-img");
    let mut argv = vec![module_dir.as_str(), prog.to_str().expect("utf-8 path")];
    argv.extend_from_slice(args);
    run(secs, "env", &argv)
}

/// fio with its libiscsi engine (`scripts/fio-iscsi.sh` builds it from Debian's fio source, which Debian's package
/// leaves out): `SCSIPORT_FIO_ISCSI`, or `target/fio-iscsi/fio`. Missing under `CI`: a failure, not a skip.
pub fn fio_iscsi() -> Option<PathBuf> {
    let bin = std::env::var_os("SCSIPORT_FIO_ISCSI")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/fio-iscsi/fio"));
    if bin.is_file() {
        return Some(bin);
    }
    let what = format!("no fio with the libiscsi engine at {}", bin.display());
    missing(&what, ": scripts/test.sh builds it", " (run scripts/fio-iscsi.sh)")
}

/// The path of an external tool, or `None` (with a message) when it is missing and `CI` is unset.
/// Under `CI` a missing tool fails the test: a skipped interop test would hide a broken machine.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|c| c.is_file()))
        .unwrap_or(None);
    if found.is_none() {
        return missing(&format!("{name} is not installed"), " (apt-get install -y libnbd-bin qemu-utils fio)", "");
    }
    found
}

/// Something an interop test needs is `what` (missing): under `CI` the test fails, saying `under_ci` too (a skipped
/// interop test would hide a broken machine); otherwise it is skipped with `otherwise` as the hint.
fn missing<T>(what: &str, under_ci: &str, otherwise: &str) -> Option<T> {
    if std::env::var_os("CI").is_some() {
        panic!("{what} and CI is set{under_ci}");
    }
    eprintln!("skipping: {what}{otherwise}");
    None
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address").port()
}

/// What a finished command said.
pub struct Output {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Run `program args` with a deadline; a command still running at the deadline is killed and counts as failed.
pub fn run(secs: u64, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    let mut child = Command::new(program.as_ref())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", program.as_ref()));
    let mut so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for child") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = t1.join().unwrap_or_default();
    let mut stderr = t2.join().unwrap_or_default();
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {secs} s)"));
    }
    Output { ok: status.is_some_and(|s| s.success()), code: status.and_then(|s| s.code()), stdout, stderr }
}

/// A running `scsiport serve`.
pub struct Server {
    pub child: Child,
    pub nbd_port: u16,
    /// The iSCSI target's port, when `ServeOptions::iscsi` asked for it.
    pub iscsi_port: Option<u16>,
    /// Everything it printed on stdout so far (filled by a reader thread after "ready").
    lines: mpsc::Receiver<String>,
    pub banner: Vec<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

/// How to start the server.
#[derive(Clone)]
pub struct ServeOptions {
    /// `Some(path)`: a file-backed disk at `path`; `None`: a RAM disk.
    pub image: Option<PathBuf>,
    pub size: &'static str,
    pub extra: Vec<String>,
    /// Also start the iSCSI target (on a free port of its own); `Server::iscsi_url` names its LU 0.
    pub iscsi: bool,
}

impl ServeOptions {
    pub fn ram(size: &'static str) -> Self {
        ServeOptions { image: None, size, extra: Vec::new(), iscsi: false }
    }

    pub fn file(path: &Path, size: &'static str) -> Self {
        ServeOptions { image: Some(path.to_path_buf()), size, extra: Vec::new(), iscsi: false }
    }
}

impl Server {
    /// Start the binary and wait (bounded) for its "ready" line. A port taken between choosing and binding is
    /// retried on another port.
    pub fn start(opts: &ServeOptions) -> Server {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let iscsi_port = opts.iscsi.then(free_port);
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_scsiport"));
            cmd.arg("serve");
            match iscsi_port {
                Some(p) => cmd.arg("--iscsi-listen").arg(format!("127.0.0.1:{p}")),
                None => cmd.arg("--no-iscsi"),
            };
            cmd.arg("--nbd-listen").arg(format!("127.0.0.1:{port}")).arg("--disk-size").arg(opts.size);
            match &opts.image {
                Some(p) => {
                    cmd.arg("--disk-path").arg(p);
                }
                None => {
                    cmd.arg("--ram");
                }
            }
            cmd.args(&opts.extra).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("start scsiport serve");
            let out = child.stdout.take().expect("piped stdout");
            let err_text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
            let (e2, mut err_pipe) = (err_text.clone(), child.stderr.take().expect("piped stderr"));
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err_pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut t) = e2.lock() {
                        t.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let mut banner = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            let ready = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(l) => {
                        let done = l.starts_with("ready");
                        banner.push(l);
                        if done {
                            break true;
                        }
                    }
                    Err(_) => break false,
                }
            };
            if ready {
                return Server { child, nbd_port: port, iscsi_port, lines: rx, banner, stderr: err_text };
            }
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            let err = err_text.lock().map(|t| t.clone()).unwrap_or_default();
            last = format!("stdout: {banner:?}\nstderr: {err}");
        }
        panic!("scsiport serve did not become ready:\n{last}");
    }

    pub fn uri(&self) -> String {
        format!("nbd://127.0.0.1:{}/default", self.nbd_port)
    }

    /// The embedded default target's LU 0 as an `iscsi://` URL (the server must have been started with `iscsi`).
    pub fn iscsi_url(&self) -> String {
        let port = self.iscsi_port.expect("the server was started without its iSCSI target");
        format!("iscsi://127.0.0.1:{port}/iqn.2026-11.io.scsiport:default/0")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send a signal to the server.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; it has not been reaped yet, so the pid is still ours.
        let r = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(r, 0, "kill({}, {sig})", self.pid());
    }

    /// Wait (bounded) for the process to end; `None` if it did not.
    pub fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait for server") {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Lines printed after "ready" (only those already read).
    pub fn later_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `scsiport serve ARGS` past its "ready" line, its stderr going to the test's. Dropped, it gets SIGTERM (the
/// graceful stop a user gives it) and is killed only if it has not exited 30 s later.
pub struct Graceful(pub Child);

impl Graceful {
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Graceful {
        let mut child = Command::new(env!("CARGO_BIN_EXE_scsiport"))
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start scsiport serve");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) if l.starts_with("ready") => break,
                Ok(_) => {}
                Err(_) => panic!("scsiport serve did not become ready"),
            }
        }
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Graceful(child)
    }
}

impl Drop for Graceful {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Bytes of a test pattern from a seed (xorshift64*), the same on every run.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// NBD protocol constants (NBD protocol document, "Fixed newstyle negotiation" and "Transmission").
const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const OPT_EXPORT_NAME: u32 = 1;
const FLAG_C_FIXED_NEWSTYLE: u32 = 1;
const FLAG_C_NO_ZEROES: u32 = 2;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_FLAG_FUA: u16 = 1;

/// A synchronous NBD client with one request in flight: enough to know exactly which writes were acknowledged.
pub struct NbdClient {
    s: TcpStream,
    pub size: u64,
    handle: u64,
}

#[derive(Debug)]
pub enum ClientError {
    Io(std::io::Error),
    Protocol(String),
    Nbd(u32),
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl NbdClient {
    pub fn connect(port: u16, export: &str) -> Result<NbdClient, ClientError> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_nodelay(true)?;
        let mut hello = [0u8; 18];
        s.read_exact(&mut hello)?;
        if u64::from_be_bytes(hello[0..8].try_into().expect("8 bytes")) != NBDMAGIC
            || u64::from_be_bytes(hello[8..16].try_into().expect("8 bytes")) != IHAVEOPT
        {
            return Err(ClientError::Protocol("not an NBD newstyle server".into()));
        }
        let server_flags = u16::from_be_bytes([hello[16], hello[17]]) as u32;
        let no_zeroes = server_flags & FLAG_C_NO_ZEROES != 0;
        let client_flags = FLAG_C_FIXED_NEWSTYLE | if no_zeroes { FLAG_C_NO_ZEROES } else { 0 };
        let mut m = Vec::new();
        m.extend_from_slice(&client_flags.to_be_bytes());
        m.extend_from_slice(&IHAVEOPT.to_be_bytes());
        m.extend_from_slice(&OPT_EXPORT_NAME.to_be_bytes());
        m.extend_from_slice(&(export.len() as u32).to_be_bytes());
        m.extend_from_slice(export.as_bytes());
        s.write_all(&m)?;
        let mut info = [0u8; 10];
        s.read_exact(&mut info)?;
        if !no_zeroes {
            let mut z = [0u8; 124];
            s.read_exact(&mut z)?;
        }
        let size = u64::from_be_bytes(info[0..8].try_into().expect("8 bytes"));
        Ok(NbdClient { s, size, handle: 0 })
    }

    fn request(&mut self, cmd: u16, flags: u16, offset: u64, len: u32, data: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.handle += 1;
        let mut r = Vec::with_capacity(28 + data.len());
        r.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        r.extend_from_slice(&flags.to_be_bytes());
        r.extend_from_slice(&cmd.to_be_bytes());
        r.extend_from_slice(&self.handle.to_be_bytes());
        r.extend_from_slice(&offset.to_be_bytes());
        r.extend_from_slice(&len.to_be_bytes());
        r.extend_from_slice(data);
        self.s.write_all(&r)?;
        let mut h = [0u8; 16];
        self.s.read_exact(&mut h)?;
        if u32::from_be_bytes(h[0..4].try_into().expect("4 bytes")) != SIMPLE_REPLY_MAGIC {
            return Err(ClientError::Protocol("not a simple reply".into()));
        }
        if u64::from_be_bytes(h[8..16].try_into().expect("8 bytes")) != self.handle {
            return Err(ClientError::Protocol("reply to another handle".into()));
        }
        let err = u32::from_be_bytes(h[4..8].try_into().expect("4 bytes"));
        if err != 0 {
            return Err(ClientError::Nbd(err));
        }
        let mut out = Vec::new();
        if cmd == CMD_READ {
            out.resize(len as usize, 0);
            self.s.read_exact(&mut out)?;
        }
        Ok(out)
    }

    pub fn read(&mut self, offset: u64, len: u32) -> Result<Vec<u8>, ClientError> {
        self.request(CMD_READ, 0, offset, len, &[])
    }

    pub fn write(&mut self, offset: u64, data: &[u8], fua: bool) -> Result<(), ClientError> {
        self.request(CMD_WRITE, if fua { CMD_FLAG_FUA } else { 0 }, offset, data.len() as u32, data).map(|_| ())
    }

    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.request(CMD_FLUSH, 0, 0, 0, &[]).map(|_| ())
    }
}
