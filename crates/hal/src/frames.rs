//! The physical frame allocator: a free bitmap over 4 KiB frames with the placement
//! policies tests use to force where a buffer's pages land.

use crate::{HalError, Placement, ISA_DMA_LIMIT, PAGE_SIZE};

const FRAMES_BELOW_16M: usize = (ISA_DMA_LIMIT / PAGE_SIZE) as usize;

/// Free bitmap: bit set = frame free.
pub(crate) struct FrameMap {
    bits: Vec<u64>,
    frames: usize,
    free: usize,
}

impl FrameMap {
    pub(crate) fn new(frames: usize) -> Self {
        let mut bits = vec![u64::MAX; frames.div_ceil(64)];
        let tail = frames % 64;
        if tail != 0 {
            if let Some(last) = bits.last_mut() {
                *last = (1u64 << tail) - 1;
            }
        }
        Self { bits, frames, free: frames }
    }

    pub(crate) fn free_frames(&self) -> usize {
        self.free
    }

    fn is_free(&self, f: usize) -> bool {
        f < self.frames && self.bits[f / 64] & (1 << (f % 64)) != 0
    }

    fn take(&mut self, f: usize) {
        self.bits[f / 64] &= !(1 << (f % 64));
        self.free -= 1;
    }

    pub(crate) fn release(&mut self, f: usize) {
        if f < self.frames && !self.is_free(f) {
            self.bits[f / 64] |= 1 << (f % 64);
            self.free += 1;
        }
    }

    /// First free frame at or after `f` and before `hi`.
    fn next_free(&self, mut f: usize, hi: usize) -> Option<usize> {
        while f < hi {
            let word = self.bits[f / 64] >> (f % 64);
            if word != 0 {
                let found = f + word.trailing_zeros() as usize;
                return (found < hi).then_some(found);
            }
            f = (f / 64 + 1) * 64;
        }
        None
    }

    /// First busy frame at or after `f` and before `hi`.
    fn next_busy(&self, mut f: usize, hi: usize) -> Option<usize> {
        while f < hi {
            let word = !self.bits[f / 64] >> (f % 64);
            if word != 0 {
                let found = f + word.trailing_zeros() as usize;
                return (found < hi).then_some(found);
            }
            f = (f / 64 + 1) * 64;
        }
        None
    }

    /// First fit of `n` consecutive free frames in `[lo, hi)` starting on a multiple of `align`. The bitmap is
    /// scanned a word (64 frames) at a time: every request's buffer is allocated here, while the buffers in flight
    /// hold the frames at the start of memory.
    fn find_run(&self, n: usize, lo: usize, hi: usize, align: usize) -> Option<usize> {
        let align = align.max(1);
        let hi = hi.min(self.frames);
        let mut start = lo.div_ceil(align) * align;
        loop {
            let free = self.next_free(start, hi)?;
            start = free.div_ceil(align) * align;
            if start.checked_add(n)? > hi {
                return None;
            }
            match self.next_busy(start, start + n) {
                None => return Some(start),
                Some(busy) => start = (busy + 1).div_ceil(align) * align,
            }
        }
    }

    /// Reserves `n` frames according to `placement`; returns them in buffer order.
    pub(crate) fn allocate(&mut self, n: usize, placement: &Placement) -> Result<Vec<usize>, HalError> {
        let oom = HalError::OutOfMemory { pages: n };
        if n == 0 {
            if let Placement::Frames(list) = placement {
                if !list.is_empty() {
                    return Err(HalError::InvalidPlacement {
                        reason: "frame list length differs from the pages the buffer spans",
                    });
                }
            }
            return Ok(Vec::new());
        }
        if n > self.free {
            return Err(oom);
        }
        let low = FRAMES_BELOW_16M.min(self.frames);
        let frames = match placement {
            Placement::Any => self.run_or_first_fit(n, 0, self.frames),
            Placement::Below16M => self.run_or_first_fit(n, 0, low),
            Placement::Above16M => self.run_or_first_fit(n, low, self.frames),
            Placement::Contiguous { below_16m, align } => {
                if !align.is_power_of_two() && *align != 0 {
                    return Err(HalError::InvalidPlacement {
                        reason: "contiguous alignment must be zero or a power of two",
                    });
                }
                let align_frames = (*align / PAGE_SIZE).max(1) as usize;
                let hi = if *below_16m { low } else { self.frames };
                self.find_run(n, 0, hi, align_frames).map(|s| (s..s + n).collect())
            }
            Placement::Scattered { seed } => self.scattered(n, *seed),
            Placement::Frames(list) => Some(self.exact(n, list)?),
        };
        let frames = frames.ok_or(oom)?;
        for &f in &frames {
            self.take(f);
        }
        Ok(frames)
    }

    fn run_or_first_fit(&self, n: usize, lo: usize, hi: usize) -> Option<Vec<usize>> {
        if let Some(s) = self.find_run(n, lo, hi, 1) {
            return Some((s..s + n).collect());
        }
        let mut out = Vec::with_capacity(n);
        let mut f = lo;
        while out.len() < n {
            let found = self.next_free(f, hi)?;
            out.push(found);
            f = found + 1;
        }
        Some(out)
    }

    /// Pseudo-random frames (xorshift64*), never two physically adjacent in a row, so
    /// every page boundary of the buffer is a physical break.
    fn scattered(&self, n: usize, seed: u64) -> Option<Vec<usize>> {
        let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
        if state == 0 {
            state = 1;
        }
        let mut out: Vec<usize> = Vec::with_capacity(n);
        let mut chosen = std::collections::HashSet::with_capacity(n);
        for _ in 0..n {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            let start = (r % self.frames as u64) as usize;
            let prev = out.last().copied();
            let ok = |f: usize| self.is_free(f) && !chosen.contains(&f) && prev.is_none_or(|p| f != p + 1);
            let pick = (start..self.frames).chain(0..start).find(|&f| ok(f))?;
            chosen.insert(pick);
            out.push(pick);
        }
        Some(out)
    }

    fn exact(&self, n: usize, list: &[crate::PhysAddr]) -> Result<Vec<usize>, HalError> {
        if list.len() != n {
            return Err(HalError::InvalidPlacement {
                reason: "frame list length differs from the pages the buffer spans",
            });
        }
        let mut out = Vec::with_capacity(n);
        for pa in list {
            if !pa.0.is_multiple_of(PAGE_SIZE) {
                return Err(HalError::Misaligned { what: "frame address", value: pa.0, align: PAGE_SIZE });
            }
            let f =
                usize::try_from(pa.0 / PAGE_SIZE).map_err(|_| HalError::BadAddress { addr: pa.0, len: PAGE_SIZE })?;
            if f >= self.frames {
                return Err(HalError::BadAddress { addr: pa.0, len: PAGE_SIZE });
            }
            if !self.is_free(f) || out.contains(&f) {
                return Err(HalError::InvalidPlacement { reason: "a requested frame is already in use" });
            }
            out.push(f);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-at-a-time scan finds what a frame-by-frame first fit finds, over bitmaps with runs of every length
    /// and word-boundary positions, for every alignment the placements use.
    #[test]
    fn find_run_matches_a_frame_by_frame_first_fit() {
        let frames = 700;
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        // Under Miri every step is interpreted: a few maps check the same code paths in minutes, not hours.
        let rounds = if cfg!(miri) { 3 } else { 300 };
        for round in 0..rounds {
            let mut m = FrameMap::new(frames);
            let mut f = 0;
            while f < frames {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let len = (seed % (1 + round as u64 % 150)) as usize + 1;
                if seed & (1 << 40) != 0 {
                    for g in f..(f + len).min(frames) {
                        m.take(g);
                    }
                }
                f += len;
            }
            for n in [1, 2, 3, 16, 63, 64, 65, 130] {
                for align in [1usize, 2, 16, 64] {
                    for (lo, hi) in [(0usize, frames), (5, 600), (64, 640), (0, 10_000)] {
                        let naive = {
                            let hi = hi.min(frames);
                            let mut s = lo.div_ceil(align) * align;
                            loop {
                                if s + n > hi {
                                    break None;
                                }
                                match (s..s + n).find(|&g| !m.is_free(g)) {
                                    None => break Some(s),
                                    Some(b) => s = (b + 1).div_ceil(align) * align,
                                }
                            }
                        };
                        assert_eq!(m.find_run(n, lo, hi, align), naive, "round {round} n {n} align {align} {lo}..{hi}");
                    }
                }
            }
        }
    }

    #[test]
    fn find_run_respects_alignment_and_busy_frames() {
        let mut m = FrameMap::new(128);
        m.take(0);
        m.take(33);
        assert_eq!(m.find_run(4, 0, 128, 32), Some(64));
        assert_eq!(m.find_run(4, 0, 128, 1), Some(1));
        assert_eq!(m.find_run(200, 0, 128, 1), None);
    }

    #[test]
    fn scattered_frames_are_never_adjacent() {
        let mut m = FrameMap::new(1024);
        let frames = m.allocate(100, &Placement::Scattered { seed: 7 }).unwrap();
        assert_eq!(frames.len(), 100);
        assert!(frames.windows(2).all(|w| w[1] != w[0] + 1));
        assert_eq!(m.free_frames(), 924);
    }

    #[test]
    fn any_falls_back_to_first_free_frames_when_fragmented() {
        let mut m = FrameMap::new(8);
        let all = m.allocate(8, &Placement::Any).unwrap();
        assert_eq!(all, (0..8).collect::<Vec<_>>());
        for f in [1, 3, 6] {
            m.release(f);
        }
        assert_eq!(m.allocate(3, &Placement::Any).unwrap(), vec![1, 3, 6]);
        assert!(m.allocate(1, &Placement::Any).is_err());
    }

    #[test]
    fn below_and_above_16m_never_cross_the_line() {
        let mut m = FrameMap::new(FRAMES_BELOW_16M + 4);
        let hi = m.allocate(4, &Placement::Above16M).unwrap();
        assert!(hi.iter().all(|&f| f >= FRAMES_BELOW_16M));
        assert!(m.allocate(1, &Placement::Above16M).is_err());
        let lo = m.allocate(3, &Placement::Below16M).unwrap();
        assert!(lo.iter().all(|&f| f < FRAMES_BELOW_16M));
        let c = m.allocate(2, &Placement::Contiguous { below_16m: true, align: 3 }).err();
        assert!(matches!(c, Some(HalError::InvalidPlacement { .. })));
    }

    #[test]
    fn release_is_idempotent() {
        let mut m = FrameMap::new(70);
        let f = m.allocate(3, &Placement::Any).unwrap();
        assert_eq!(f, vec![0, 1, 2]);
        m.release(1);
        m.release(1);
        assert_eq!(m.free_frames(), 68);
    }
}
