//! Sequence numbers with serial number arithmetic (RFC 7143 §4.2.2.1 refers to RFC 1982,
//! SERIAL_BITS = 32).

use std::cmp::Ordering;

/// A 32-bit iSCSI sequence number (CmdSN, StatSN, DataSN, R2TSN).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sn(pub u32);

impl Sn {
    /// The next number, wrapping at 2^32 as RFC 1982 addition does.
    pub fn next(self) -> Sn {
        Sn(self.0.wrapping_add(1))
    }

    pub fn plus(self, n: u32) -> Sn {
        Sn(self.0.wrapping_add(n))
    }

    /// The serial-number comparison of RFC 1982 §3.2. Two numbers exactly 2^31 apart are
    /// undefined there; they compare as `None`.
    pub fn serial_cmp(self, other: Sn) -> Option<Ordering> {
        if self.0 == other.0 {
            return Some(Ordering::Equal);
        }
        let diff = other.0.wrapping_sub(self.0);
        match diff.cmp(&(1u32 << 31)) {
            Ordering::Less => Some(Ordering::Less),
            Ordering::Greater => Some(Ordering::Greater),
            Ordering::Equal => None,
        }
    }

    pub fn lt(self, other: Sn) -> bool {
        self.serial_cmp(other) == Some(Ordering::Less)
    }

    pub fn le(self, other: Sn) -> bool {
        matches!(self.serial_cmp(other), Some(Ordering::Less | Ordering::Equal))
    }

    /// Whether `self` lies in the closed window `[low, high]` (serial arithmetic).
    pub fn in_window(self, low: Sn, high: Sn) -> bool {
        low.le(self) && self.le(high)
    }

    /// Distance from `base` forward to `self`, when `self` is not before `base`.
    pub fn distance_from(self, base: Sn) -> Option<u32> {
        base.le(self).then(|| self.0.wrapping_sub(base.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn comparison_wraps_around_zero() {
        assert!(Sn(u32::MAX).lt(Sn(0)));
        assert!(Sn(u32::MAX - 5).lt(Sn(3)));
        assert!(!Sn(3).lt(Sn(u32::MAX - 5)));
    }

    #[test]
    fn half_range_apart_is_undefined() {
        assert_eq!(Sn(0).serial_cmp(Sn(1 << 31)), None);
    }

    proptest! {
        #[test]
        fn adding_less_than_half_range_is_greater(base in any::<u32>(), n in 1u32..(1 << 31)) {
            let a = Sn(base);
            let b = a.plus(n);
            prop_assert!(a.lt(b));
            prop_assert!(!b.lt(a));
            prop_assert_eq!(b.distance_from(a), Some(n));
            prop_assert!(a.in_window(a, b) && b.in_window(a, b));
        }
    }
}
