//! System memory is reachable from many handles (buffer clones, physical addresses, the DMA engine); these tests
//! pin down that none of them can reach bytes another party holds as a live slice. Run them under Miri
//! (`cargo +nightly miri test -p hal --test soundness`): an aliasing access is undefined behaviour there, not just
//! a wrong answer.

use hal::{Placement, SystemMemory};

/// A clone of a buffer writes while a `with_slices_mut` slice of the same bytes is live.
#[test]
fn clone_cannot_write_under_a_live_mutable_slice() {
    let mem = SystemMemory::new(16 * 4096).unwrap();
    let buf = mem.alloc(4096, Placement::Any).unwrap();
    let other = buf.clone();
    buf.with_slices_mut(0, 4096, |_, s| {
        s[0] = 1;
        assert!(other.write(0, &[2]).is_err(), "a clone wrote under a live &mut slice");
        s[0] = 3;
    })
    .unwrap();
    let mut b = [0u8];
    other.read(0, &mut b).unwrap();
    assert_eq!(b, [3]);
}
