//! Crash consistency of a file-backed disk served over NBD: writes go through the whole stack (class driver, port,
//! HBA, DMA model, disk LU, file backend), the server is killed with SIGKILL at a random moment, and every write
//! that was acknowledged as durable — a FUA write (NBD_CMD_FLAG_FUA, SBC-4 WRITE(10) FUA bit) or any write followed
//! by an acknowledged NBD_CMD_FLUSH (SYNCHRONIZE CACHE) — must be in the image, both read straight from the file and
//! read back through a restarted server.
//!
//! SIGKILL ends the process but not the kernel, so this checks that nothing acknowledged as durable is still held
//! in the process; the fdatasync itself is the backend's (crates/scsi, FileBackend::flush).

mod serve_common;

use rand::{Rng, SeedableRng};
use serve_common::{pattern, NbdClient, ServeOptions, Server, MIB};
use std::time::{Duration, Instant};

const BLOCK: usize = 4096;
/// Blocks the test writes into (the first 8 MiB of a 32 MiB disk).
const BLOCKS: usize = 2048;
const ROUNDS: u64 = 20;

/// The contents of a block written with `token`; token 0 is the never-written (zero) block.
fn block_data(token: u64) -> Vec<u8> {
    if token == 0 {
        return vec![0; BLOCK];
    }
    let mut v = pattern(BLOCK, token);
    v[..8].copy_from_slice(&token.to_le_bytes());
    v
}

/// What each block may hold after a crash.
#[derive(Clone, Default)]
struct BlockState {
    /// The last value known durable.
    durable: u64,
    /// Values written after it (acknowledged without durability, or in flight at the kill), in order.
    pending: Vec<u64>,
}

impl BlockState {
    fn allows(&self, token: u64) -> bool {
        token == self.durable || self.pending.contains(&token)
    }
}

/// Check every block against its state; returns the tokens found.
fn check(data: &[u8], states: &[BlockState], round: u64, source: &str) -> Vec<u64> {
    let mut found = Vec::with_capacity(BLOCKS);
    for (i, s) in states.iter().enumerate() {
        let b = &data[i * BLOCK..(i + 1) * BLOCK];
        let token = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        assert!(
            b == block_data(token).as_slice(),
            "round {round}, {source}: block {i} is torn or foreign (token {token:#x})"
        );
        assert!(
            s.allows(token),
            "round {round}, {source}: block {i} holds {token:#x}; durable was {:#x}, later writes {:x?}",
            s.durable,
            s.pending
        );
        found.push(token);
    }
    found
}

#[test]
fn acknowledged_durable_writes_survive_sigkill() {
    let dir = tempfile::Builder::new().prefix("scsiport-crash-").tempdir().expect("temp dir");
    let img = dir.path().join("disk.img");
    let opts = ServeOptions::file(&img, "32MiB");
    let mut states = vec![BlockState::default(); BLOCKS];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5C51_C8A5);
    let (mut fua_acks, mut flush_acks, mut lost_unflushed) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    for round in 0..ROUNDS {
        let srv = Server::start(&opts);
        let mut c = NbdClient::connect(srv.nbd_port, "default").expect("connect");
        assert_eq!(c.size, 32 * MIB);

        // After the restart, the stack must read back what the file holds and what the rules allow.
        let mut data = Vec::with_capacity(BLOCKS * BLOCK);
        for chunk in 0..(BLOCKS * BLOCK) as u64 / MIB {
            data.extend_from_slice(&c.read(chunk * MIB, MIB as u32).expect("read back after restart"));
        }
        let found = check(&data, &states, round, "through the restarted server");
        for (s, t) in states.iter_mut().zip(found) {
            lost_unflushed += u64::from(t != s.pending.last().copied().unwrap_or(s.durable));
            *s = BlockState { durable: t, pending: Vec::new() };
        }

        // Kill at a random moment while writes and flushes are in flight.
        let delay = Duration::from_millis(rng.gen_range(30..700));
        let pid = srv.pid();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            // SAFETY: kill(2) on the child we started; it is reaped only after this thread is joined.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        });
        let mut dirty: Vec<usize> = Vec::new();
        let write_deadline = Instant::now() + Duration::from_secs(4);
        for seq in 1u64.. {
            if Instant::now() >= write_deadline {
                break;
            }
            if !dirty.is_empty() && rng.gen_ratio(1, 8) {
                if c.flush().is_err() {
                    break;
                }
                flush_acks += 1;
                for &i in &dirty {
                    let s = &mut states[i];
                    if let Some(last) = s.pending.pop() {
                        s.durable = last;
                    }
                    s.pending.clear();
                }
                dirty.clear();
                continue;
            }
            let first = rng.gen_range(0..BLOCKS);
            let n = rng.gen_range(1..=8).min(BLOCKS - first);
            let fua = rng.gen_bool(0.5);
            let tokens: Vec<u64> = (0..n as u64).map(|k| ((round + 1) << 40) | (seq << 8) | k).collect();
            let mut buf = Vec::with_capacity(n * BLOCK);
            for (k, t) in tokens.iter().enumerate() {
                buf.extend_from_slice(&block_data(*t));
                states[first + k].pending.push(*t);
            }
            if c.write((first * BLOCK) as u64, &buf, fua).is_err() {
                break;
            }
            for (k, t) in tokens.iter().enumerate() {
                let s = &mut states[first + k];
                if fua {
                    s.durable = *t;
                    s.pending.clear();
                } else {
                    dirty.push(first + k);
                }
            }
            fua_acks += u64::from(fua);
        }
        killer.join().expect("killer thread");
        let mut srv = srv;
        let status = srv.wait_exit(10).expect("the killed server is gone");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "round {round}: the server ended before the kill ({status:?}): {}",
            srv.stderr()
        );
        let image = std::fs::read(&img).expect("read image");
        check(&image[..BLOCKS * BLOCK], &states, round, "in the image file");
    }
    assert!(fua_acks > 0 && flush_acks > 0, "the rounds acknowledged {fua_acks} FUA writes, {flush_acks} flushes");
    eprintln!(
        "{ROUNDS} rounds in {:.1} s: {fua_acks} FUA writes and {flush_acks} flushes acknowledged, {lost_unflushed} \
         unflushed blocks fell back to an older value",
        started.elapsed().as_secs_f64()
    );
}
