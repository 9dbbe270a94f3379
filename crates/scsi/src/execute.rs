//! Drive a whole command in memory: for tests and for transports' unit tests.

use crate::status::Outcome;
use crate::target::Target;
use crate::task::{Begin, LogicalUnit, Nexus};

/// Chunk size used to drive data phases, small enough to exercise streaming.
const CHUNK: usize = 64 * 1024;

/// Drive a begun command: data-in up to `alloc` bytes is returned; data-out is taken
/// from `data_out` (a shorter buffer is a short transfer).
pub fn drive(begin: Begin, data_out: &[u8], alloc: usize) -> (Outcome, Vec<u8>) {
    match begin {
        Begin::Complete(o) => (o, Vec::new()),
        Begin::DataIn { len, mut task } => {
            let want = usize::try_from(len).unwrap_or(usize::MAX).min(alloc);
            let mut buf = vec![0u8; want];
            let mut done = 0usize;
            while done < want {
                let n = CHUNK.min(want - done);
                if let Err(o) = task.read(done as u64, &mut buf[done..done + n]) {
                    let _ = task.finish(done as u64);
                    buf.truncate(done);
                    return (o, buf);
                }
                done += n;
            }
            (task.finish(done as u64), buf)
        }
        Begin::DataOut { len, mut task } => {
            let want = usize::try_from(len).unwrap_or(usize::MAX).min(data_out.len());
            let mut done = 0usize;
            while done < want {
                let n = CHUNK.min(want - done);
                if let Err(o) = task.write(done as u64, &data_out[done..done + n]) {
                    let _ = task.finish(done as u64);
                    return (o, Vec::new());
                }
                done += n;
            }
            (task.finish(done as u64), Vec::new())
        }
    }
}

/// Run one command on a logical unit.
pub fn execute(lu: &dyn LogicalUnit, nexus: Nexus, cdb: &[u8], data_out: &[u8], alloc: usize) -> (Outcome, Vec<u8>) {
    drive(lu.begin(nexus, cdb), data_out, alloc)
}

/// Run one command on a LUN of a target.
pub fn execute_on_target(
    target: &Target,
    nexus: Nexus,
    lun: u64,
    cdb: &[u8],
    data_out: &[u8],
    alloc: usize,
) -> (Outcome, Vec<u8>) {
    drive(target.begin(nexus, lun, cdb), data_out, alloc)
}
