//! The session's command window: ExpCmdSN and MaxCmdSN (RFC 7143 §4.2.2.1).

use std::sync::Mutex;

use crate::pdu::Sn;

/// What to do with a non-immediate PDU, by its CmdSN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// CmdSN == ExpCmdSN: process now; ExpCmdSN has advanced.
    Now,
    /// Inside the window but ahead of ExpCmdSN: hold until the gap is filled.
    Later,
    /// Outside the window: silently ignored (RFC 7143 §4.2.2.1).
    Ignore,
}

#[derive(Debug)]
struct State {
    exp: Sn,
    /// Non-immediate commands accepted and not yet answered.
    in_flight: u32,
    depth: u32,
}

/// ExpCmdSN and the commands in flight, shared by a connection's reader (which admits
/// commands), its tasks (which finish them) and its writer (which stamps responses).
#[derive(Debug)]
pub struct Window {
    state: Mutex<State>,
}

impl Window {
    /// `depth` is the number of commands the session may have outstanding (at least 1).
    pub fn new(exp: Sn, depth: u32) -> Window {
        Window { state: Mutex::new(State { exp, in_flight: 0, depth: depth.max(1) }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked while holding it; the
        // counters themselves are always consistent, so keep using them.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn max_of(s: &State) -> Sn {
        Sn(s.exp.0.wrapping_add(s.depth - s.in_flight.min(s.depth)).wrapping_sub(1))
    }

    /// Decides about a non-immediate PDU. `occupies` says whether it stays in flight
    /// until [`Window::finish`] (SCSI commands) or is answered at once (NOP-Out, Text,
    /// TMF, Logout).
    pub fn admit(&self, cmd_sn: Sn, occupies: bool) -> Admit {
        let mut s = self.lock();
        let max = Self::max_of(&s);
        if !cmd_sn.in_window(s.exp, max) {
            return Admit::Ignore;
        }
        if cmd_sn == s.exp {
            s.exp = s.exp.next();
            if occupies {
                s.in_flight += 1;
            }
            Admit::Now
        } else {
            Admit::Later
        }
    }

    /// Whether a CmdSN lies in `[ExpCmdSN, MaxCmdSN]` (for RefCmdSN checks).
    pub fn contains(&self, sn: Sn) -> bool {
        let s = self.lock();
        sn.in_window(s.exp, Self::max_of(&s))
    }

    /// A command that occupied the window has been answered (or aborted).
    pub fn finish(&self) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
    }

    /// ExpCmdSN and MaxCmdSN for an outgoing PDU.
    pub fn numbers(&self) -> (Sn, Sn) {
        let s = self.lock();
        (s.exp, Self::max_of(&s))
    }

    pub fn exp(&self) -> Sn {
        self.lock().exp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_commands_advance_and_fill_the_window() {
        let w = Window::new(Sn(10), 2);
        assert_eq!(w.numbers(), (Sn(10), Sn(11)));
        assert_eq!(w.admit(Sn(10), true), Admit::Now);
        assert_eq!(w.numbers(), (Sn(11), Sn(11)));
        assert_eq!(w.admit(Sn(11), true), Admit::Now);
        // Full: MaxCmdSN = ExpCmdSN - 1 closes the window.
        assert_eq!(w.numbers(), (Sn(12), Sn(11)));
        assert_eq!(w.admit(Sn(12), true), Admit::Ignore);
        w.finish();
        assert_eq!(w.numbers(), (Sn(12), Sn(12)));
        assert_eq!(w.admit(Sn(12), true), Admit::Now);
    }

    #[test]
    fn out_of_window_is_ignored_and_ahead_is_held() {
        let w = Window::new(Sn(0), 8);
        assert_eq!(w.admit(Sn(u32::MAX), true), Admit::Ignore);
        assert_eq!(w.admit(Sn(8), true), Admit::Ignore);
        assert_eq!(w.admit(Sn(3), true), Admit::Later);
        assert_eq!(w.exp(), Sn(0));
    }

    proptest! {
        #[test]
        fn max_cmd_sn_never_moves_backwards(start in any::<u32>(), ops in proptest::collection::vec(any::<bool>(), 0..200)) {
            let w = Window::new(Sn(start), 16);
            let (_, mut last_max) = w.numbers();
            let mut next = Sn(start);
            for admit in ops {
                if admit {
                    if w.admit(next, true) == Admit::Now {
                        next = next.next();
                    }
                } else {
                    w.finish();
                }
                let (exp, max) = w.numbers();
                prop_assert!(last_max.le(max));
                // MaxCmdSN is never below ExpCmdSN - 1 (RFC 7143 §4.2.2.1).
                prop_assert!(Sn(exp.0.wrapping_sub(1)).le(max));
                last_max = max;
            }
        }
    }
}
