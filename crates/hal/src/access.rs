//! Who may touch a physical frame right now: one reader/writer lock word per 4 KiB frame.
//!
//! Every path into system memory (a buffer's CPU accesses, physical accesses, the DMA engine, the long-lived run
//! borrows front ends use) first takes the lock of every frame its bytes lie in, and a Rust slice over those bytes
//! exists only while that lock is held (`docs/memory.md`). A word's `EXCLUSIVE` bit is set while one holder may
//! write the frame; its low bits count shared holders (and, for a moment, readers that found the bit set and are
//! backing out). Taking a shared hold is one `fetch_add`, so a 64 KiB run costs 16 of them and 16 to give it back.

use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};

const EXCLUSIVE: u32 = 1 << 31;
/// More shared holders than this are refused, so the count can never reach the `EXCLUSIVE` bit.
const MAX_SHARED: u32 = 1 << 30;

/// The kind of hold an access needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Any number of holders, none writing.
    Shared,
    /// One holder, which may write.
    Exclusive,
}

pub(crate) struct FrameLocks {
    state: Box<[AtomicU32]>,
}

impl FrameLocks {
    /// Locks for `frames` frames, all free; None when the host cannot provide the table.
    pub(crate) fn new(frames: usize) -> Option<Self> {
        let mut state = Vec::new();
        state.try_reserve_exact(frames).ok()?;
        state.extend((0..frames).map(|_| AtomicU32::new(0)));
        Some(Self { state: state.into_boxed_slice() })
    }

    fn acquire_one(&self, frame: usize, access: Access) -> bool {
        let Some(word) = self.state.get(frame) else { return false };
        match access {
            Access::Exclusive => word.compare_exchange(0, EXCLUSIVE, Ordering::Acquire, Ordering::Relaxed).is_ok(),
            Access::Shared => {
                let before = word.fetch_add(1, Ordering::Acquire);
                if before & EXCLUSIVE != 0 || before >= MAX_SHARED {
                    // Back out: this reader never held the frame.
                    word.fetch_sub(1, Ordering::Relaxed);
                    return false;
                }
                true
            }
        }
    }

    fn release_one(&self, frame: usize, access: Access) {
        if let Some(word) = self.state.get(frame) {
            match access {
                // A subtraction, not a store of 0: readers backing out may still have their count in the word.
                Access::Exclusive => {
                    word.fetch_sub(EXCLUSIVE, Ordering::Release);
                }
                Access::Shared => {
                    word.fetch_sub(1, Ordering::Release);
                }
            }
        }
    }

    /// Takes every frame of `frames` or none: false when another holder's access conflicts. Nothing is held while
    /// this waits for nothing, so holders of several ranges cannot deadlock each other through it.
    pub(crate) fn try_acquire(&self, frames: Range<usize>, access: Access) -> bool {
        for f in frames.clone() {
            if !self.acquire_one(f, access) {
                for g in frames.start..f {
                    self.release_one(g, access);
                }
                return false;
            }
        }
        true
    }

    /// Takes every frame of `frames`, waiting while another holder's access conflicts: the DMA engine's bus cycles
    /// wait for the processor's access to those frames to end. Between attempts nothing is held.
    pub(crate) fn acquire(&self, frames: Range<usize>, access: Access) {
        let mut spins = 0u32;
        while !self.try_acquire(frames.clone(), access) {
            if spins < 64 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Gives back a hold taken by `try_acquire` or `acquire` with the same range and access.
    pub(crate) fn release(&self, frames: Range<usize>, access: Access) {
        for f in frames {
            self.release_one(f, access);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_holds_stack_and_exclude_a_writer() {
        let l = FrameLocks::new(4).unwrap();
        assert!(l.try_acquire(0..2, Access::Shared));
        assert!(l.try_acquire(1..3, Access::Shared));
        assert!(!l.try_acquire(2..4, Access::Exclusive), "frame 2 is read");
        // The failed attempt took nothing: frame 3 is still free for a writer.
        assert!(l.try_acquire(3..4, Access::Exclusive));
        l.release(1..3, Access::Shared);
        assert!(!l.try_acquire(0..1, Access::Exclusive), "frame 0 is still read");
        assert!(l.try_acquire(2..3, Access::Exclusive));
        assert!(!l.try_acquire(2..3, Access::Shared), "frame 2 is written");
        l.release(0..2, Access::Shared);
        l.release(2..3, Access::Exclusive);
        l.release(3..4, Access::Exclusive);
        assert!(l.try_acquire(0..4, Access::Exclusive));
    }

    #[test]
    fn frames_outside_the_table_are_never_granted() {
        let l = FrameLocks::new(2).unwrap();
        assert!(!l.try_acquire(1..3, Access::Shared));
        assert!(l.try_acquire(0..2, Access::Exclusive), "the refused attempt released frame 1");
    }

    #[test]
    fn a_waiting_writer_gets_the_frame_once_the_reader_lets_go() {
        let l = std::sync::Arc::new(FrameLocks::new(1).unwrap());
        assert!(l.try_acquire(0..1, Access::Shared));
        let writer = {
            let l = l.clone();
            std::thread::spawn(move || {
                l.acquire(0..1, Access::Exclusive);
                l.release(0..1, Access::Exclusive);
            })
        };
        l.release(0..1, Access::Shared);
        writer.join().unwrap();
        assert!(l.try_acquire(0..1, Access::Exclusive));
    }
}
