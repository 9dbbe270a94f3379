//! The control socket (JSON lines over a Unix socket, `docs/control.md`), the Prometheus endpoint, and readiness
//! notification to a service manager (`sd_notify`).

use crate::ops::Running;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// Longest request line the control socket reads.
const MAX_LINE: usize = 64 << 10;

/// One request: `{"cmd": "...", ...arguments}`.
#[derive(Deserialize, Debug)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    List,
    Adapters,
    Disks,
    Targets,
    Sessions,
    Exports,
    Connections,
    Counters,
    AddLun {
        target: String,
        lun: u64,
        disk: String,
    },
    RemoveLun {
        target: String,
        lun: u64,
    },
    AddExport {
        name: String,
        disk: String,
        #[serde(default)]
        read_only: bool,
        #[serde(default)]
        description: Option<String>,
    },
    RemoveExport {
        name: String,
    },
    CloseSession {
        tsih: u16,
        #[serde(default)]
        portal: Option<std::net::SocketAddr>,
    },
    /// Admit another initiator name or pattern to a target (later logins).
    AclAdd {
        target: String,
        initiator: String,
    },
    /// Take an initiator name or pattern off a target's access list (later logins).
    AclRemove {
        target: String,
        initiator: String,
    },
    /// Replace a disk's fault switches; absent keys are off.
    Fault {
        disk: String,
        #[serde(default)]
        faults: scsi::FaultConfig,
    },
    Verifier {
        adapter: String,
        mode: port::VerifierMode,
    },
    Reload,
}

/// Parse one request line (what the control socket reads from a client).
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    serde_json::from_slice::<Request>(line).map_err(|e| format!("bad request: {e}"))
}

/// Run one request against the server.
pub async fn handle(running: &Running, req: Request) -> Result<Value, String> {
    let e = |x: anyhow::Error| format!("{x:#}");
    Ok(match req {
        Request::List => running.list_json(),
        Request::Adapters => running.adapters_json(),
        Request::Disks => running.disks_json(),
        Request::Targets => running.targets_json(),
        Request::Sessions => running.sessions_json(),
        Request::Exports => running.exports_json(),
        Request::Connections => running.connections_json(),
        Request::Counters => running.counters_json(),
        Request::AddLun { target, lun, disk } => {
            running.add_lun(&target, lun, &disk).map_err(e)?;
            json!({"target": target, "lun": lun, "disk": disk})
        }
        Request::RemoveLun { target, lun } => {
            let disk = running.remove_lun(&target, lun).map_err(e)?;
            json!({"target": target, "lun": lun, "disk": disk})
        }
        Request::AddExport { name, disk, read_only, description } => {
            let cfg = crate::frontends_config::NbdExportConfig { name: name.clone(), disk, read_only, description };
            running.add_export(cfg).map_err(e)?;
            json!({"export": name})
        }
        Request::RemoveExport { name } => {
            running.remove_export(&name).await.map_err(e)?;
            json!({"export": name})
        }
        Request::CloseSession { tsih, portal } => {
            let n = running.close_session(tsih, portal).map_err(e)?;
            json!({"tsih": tsih, "closed": n})
        }
        Request::AclAdd { target, initiator } => {
            let list = running.acl_add(&target, &initiator).map_err(e)?;
            json!({"target": target, "initiators": list})
        }
        Request::AclRemove { target, initiator } => {
            let list = running.acl_remove(&target, &initiator).map_err(e)?;
            json!({"target": target, "initiators": list})
        }
        Request::Fault { disk, faults } => {
            running.set_faults(&disk, faults.clone()).map_err(e)?;
            json!({"disk": disk, "faults": crate::ops::faults_json(&faults)})
        }
        Request::Verifier { adapter, mode } => {
            running.set_verifier(&adapter, mode).map_err(e)?;
            json!({"adapter": adapter, "verifier": mode})
        }
        Request::Reload => {
            let done = running.reload().await.map_err(e)?;
            for l in &done {
                println!("reload: {l}");
            }
            json!({"applied": done})
        }
    })
}

/// Bind the control socket: mode 0600, a stale socket file replaced, a live one (another server) refused.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, "another server answers on it"));
        }
        std::fs::remove_file(path)?;
    }
    // Created with the umask's mode, then narrowed before anything is accepted.
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Serve the control socket until `shutdown`.
pub async fn serve(running: Arc<Running>, listener: UnixListener, path: PathBuf, shutdown: CancellationToken) {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // The socket's mode already keeps others out; the peer's credentials are checked as well.
        match stream.peer_cred() {
            Ok(c) if c.uid() == me || c.uid() == 0 => {}
            _ => continue,
        }
        let r = running.clone();
        tasks.spawn(async move {
            let _ = client(r, stream).await;
        });
    }
    tasks.abort_all();
    // Remove the socket only if it is still ours.
    let _ = std::fs::remove_file(&path);
}

async fn client(running: Arc<Running>, stream: UnixStream) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut rd).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Ok(());
        }
        let reply = if line.len() > MAX_LINE {
            json!({"ok": false, "error": format!("request longer than {MAX_LINE} bytes")})
        } else if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        } else {
            match parse_request(&line) {
                Ok(req) => match handle(&running, req).await {
                    Ok(v) => json!({"ok": true, "result": v}),
                    Err(e) => json!({"ok": false, "error": e}),
                },
                Err(e) => json!({"ok": false, "error": e}),
            }
        };
        let mut out = serde_json::to_vec(&reply).unwrap_or_default();
        out.push(b'\n');
        wr.write_all(&out).await?;
        if line.len() > MAX_LINE {
            return Ok(());
        }
    }
}

/// Send one request and read its reply (what `scsiport ctl` does).
pub fn call(path: &Path, request: &Value) -> io::Result<Value> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut r = std::io::BufReader::new(s);
    let mut reply = String::new();
    r.read_line(&mut reply)?;
    serde_json::from_str(&reply).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The Prometheus endpoint: `GET /metrics` (any other path is 404), one request per connection.
pub async fn serve_metrics(running: Arc<Running>, listener: TcpListener, shutdown: CancellationToken) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let Ok((mut stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let r = running.clone();
        tasks.spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let head = tokio::time::timeout(Duration::from_secs(10), async {
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 << 10 {
                    let n = stream.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                io::Result::Ok(())
            })
            .await;
            if !matches!(head, Ok(Ok(()))) {
                return;
            }
            let first = buf.split(|b| *b == b'\n').next().unwrap_or_default();
            let first = String::from_utf8_lossy(first);
            let mut parts = first.split_whitespace();
            let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let path = target.split('?').next().unwrap_or("");
            let (status, body, ctype) = if method != "GET" && method != "HEAD" {
                ("405 Method Not Allowed", "only GET\n".to_string(), "text/plain")
            } else if path == "/metrics" {
                r.metrics.scrapes.fetch_add(1, Ordering::Relaxed);
                ("200 OK", r.render_metrics(), "text/plain; version=0.0.4; charset=utf-8")
            } else {
                ("404 Not Found", "see /metrics\n".to_string(), "text/plain")
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            if method != "HEAD" {
                let _ = stream.write_all(body.as_bytes()).await;
            }
            let _ = stream.shutdown().await;
        });
    }
    tasks.abort_all();
}

/// Tell a service manager about our state (`READY=1`, `RELOADING=1`, `STOPPING=1`) over the datagram socket named by
/// `NOTIFY_SOCKET` (sd_notify(3)); nothing when it is unset. A name starting with `@` is in the abstract namespace.
pub fn sd_notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else { return };
    let bytes = target.as_encoded_bytes();
    let msg = format!("{state}\nMAINPID={}\n", std::process::id());
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        if let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(name) {
            let _ = sock.send_to_addr(msg.as_bytes(), &addr);
        }
    } else {
        let _ = sock.send_to(msg.as_bytes(), Path::new(&target));
    }
}
