//! An iSCSI target over a RAM disk, without the port driver:
//! `iscsi-direct --listen 127.0.0.1:3260 --size 1GiB [--target IQN] [--chap USER:SECRET]
//! [--mutual USER:SECRET] [--lun1]`.
//!
//! `--lun1` puts the disk at LUN 1 (as tgtd does), so URLs can be compared one to one.
//! `--in-place` runs commands on the connection's task instead of tokio's blocking pool.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use iscsi::{Chap, DirectBackend, IscsiServer, TargetConfig};

struct Args {
    listen: SocketAddr,
    size: u64,
    target: String,
    chap: Option<(String, String)>,
    mutual: Option<(String, String)>,
    lun: u64,
    in_place: bool,
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("T", 1 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ]
    .iter()
    .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n, *m)))
    .unwrap_or((s, 1));
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

fn pair(s: &str) -> Option<(String, String)> {
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: iscsi::DEFAULT_PORTAL,
        size: 1 << 30,
        target: iscsi::DEFAULT_TARGET_NAME.to_owned(),
        chap: None,
        mutual: None,
        lun: 0,
        in_place: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--lun1" {
            args.lun = 1;
            continue;
        }
        if flag == "--in-place" {
            args.in_place = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => args.listen = value.parse().map_err(|e| format!("--listen: {e}"))?,
            "--size" => args.size = parse_size(&value).ok_or("--size: expected e.g. 1GiB")?,
            "--target" => args.target = value,
            "--chap" => args.chap = Some(pair(&value).ok_or("--chap: expected USER:SECRET")?),
            "--mutual" => args.mutual = Some(pair(&value).ok_or("--mutual: expected USER:SECRET")?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("iscsi-direct: {e}");
            return ExitCode::from(2);
        }
    };
    let backend = match DirectBackend::ram_disk(args.size) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("iscsi-direct: {e}");
            return ExitCode::from(2);
        }
    };
    let backend = if args.in_place { DirectBackend::in_place(backend.target().clone()) } else { backend };
    if args.lun != 0 {
        if let Some(d) = backend.target().remove_lun(0) {
            backend.target().add_lun(args.lun, d);
        }
    }
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("iscsi-direct: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let portal = listener.local_addr().unwrap_or(args.listen);
    let mut cfg = TargetConfig::new(args.target.clone(), portal);
    cfg.chap = args.chap.map(|(user, secret)| Chap { user, secret, mutual: args.mutual });
    let server = Arc::new(IscsiServer::new(vec![(cfg, Arc::new(backend))]));
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = tx.send(true);
    });
    println!("iscsi-direct: serving {} on {portal}", args.target);
    match server.serve(listener, rx).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iscsi-direct: {e}");
            ExitCode::FAILURE
        }
    }
}
