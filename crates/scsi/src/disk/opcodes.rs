//! The command table: opcode (and service action) → handler, CDB length and the mask of
//! CDB bits the logical unit recognizes. Every CDB is checked against its mask before
//! the handler runs (a set bit outside it is INVALID FIELD IN CDB, SPC-4 §4.2.5.4), and
//! REPORT SUPPORTED OPERATION CODES is generated from the same table (SPC-4 §6.35).

use super::{alua, atomic, inquiry, io, misc, mode, pr, provisioning, rsoc, sanitize, DiskConfig, Inner};
use crate::cdb::get;
use crate::opcode::service_action as sa;
use crate::opcode::*;
use crate::sense::Sense;
use crate::task::{Begin, Nexus};
use std::sync::{Arc, OnceLock};

pub(crate) type Handler = fn(&Arc<Inner>, Nexus, &[u8]) -> Begin;

/// How a command relates to unit attentions and reservations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// INQUIRY, REPORT LUNS, REQUEST SENSE: never report a unit attention and are
    /// allowed under every reservation (SAM-5 §5.14, SPC-4 table 45).
    Info,
    /// Allowed under persistent reservations (TEST UNIT READY, READ CAPACITY, PR IN/OUT,
    /// REPORT SUPPORTED ...).
    Service,
    /// Reads the medium or its state: conflicts with exclusive-access reservations.
    Read,
    /// Changes the medium or its state: conflicts with write-exclusive reservations too.
    Write,
    /// RESERVE(6/10): conflicts with any persistent reservation or registration.
    Reserve,
    /// RELEASE(6/10): allowed under an SPC-2 reservation held by another initiator.
    Release,
}

pub(crate) struct Op {
    pub opcode: u8,
    pub sa: Option<u8>,
    pub name: &'static str,
    /// CDB usage data: byte 0 is the opcode, then the bits a CDB may set.
    pub usage: &'static [u8],
    pub class: Class,
    /// Needs a started unit (SBC-3 §5.25): NOT READY otherwise.
    pub media: bool,
    /// Only offered with logical block provisioning.
    pub thin: bool,
    pub run: Handler,
}

/// Control byte: NACA and LINK are not supported (INQUIRY NORMACA = 0).
const C: u8 = 0x00;

macro_rules! op {
    ($opc:expr, $sa:expr, $name:expr, $class:ident, $media:expr, $thin:expr, $run:expr, [$($u:expr),* $(,)?]) => {
        Op { opcode: $opc, sa: $sa, name: $name, usage: &[$opc, $($u),*], class: Class::$class,
             media: $media, thin: $thin, run: $run }
    };
}

/// Sorted by opcode, then service action.
pub(crate) static OPS: &[Op] = &[
    op!(TEST_UNIT_READY, None, "TEST UNIT READY", Service, true, false, misc::test_unit_ready, [0, 0, 0, 0, C]),
    op!(REQUEST_SENSE, None, "REQUEST SENSE", Info, false, false, misc::request_sense, [0x01, 0, 0, 0xFF, C]),
    op!(READ_6, None, "READ(6)", Read, true, false, io::read, [0x1F, 0xFF, 0xFF, 0xFF, C]),
    op!(WRITE_6, None, "WRITE(6)", Write, true, false, io::write, [0x1F, 0xFF, 0xFF, 0xFF, C]),
    op!(INQUIRY, None, "INQUIRY", Info, false, false, inquiry::inquiry, [0x01, 0xFF, 0xFF, 0xFF, C]),
    op!(MODE_SELECT_6, None, "MODE SELECT(6)", Write, false, false, mode::mode_select, [0x11, 0, 0, 0xFF, C]),
    op!(RESERVE_6, None, "RESERVE(6)", Reserve, false, false, misc::reserve, [0, 0, 0, 0, C]),
    op!(RELEASE_6, None, "RELEASE(6)", Release, false, false, misc::release, [0, 0, 0, 0, C]),
    op!(MODE_SENSE_6, None, "MODE SENSE(6)", Read, false, false, mode::mode_sense, [0x08, 0xFF, 0xFF, 0xFF, C]),
    op!(START_STOP_UNIT, None, "START STOP UNIT", Write, false, false, misc::start_stop_unit, [0x01, 0, 0x0F, 0xF7, C]),
    op!(SEND_DIAGNOSTIC, None, "SEND DIAGNOSTIC", Write, false, false, misc::send_diagnostic, [0xF7, 0, 0xFF, 0xFF, C]),
    op!(
        PREVENT_ALLOW_MEDIUM_REMOVAL,
        None,
        "PREVENT ALLOW MEDIUM REMOVAL",
        Read,
        false,
        false,
        misc::prevent_allow,
        [0, 0, 0, 0x03, C]
    ),
    op!(
        READ_CAPACITY_10,
        None,
        "READ CAPACITY(10)",
        Service,
        true,
        false,
        misc::read_capacity10,
        [0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, C]
    ),
    op!(READ_10, None, "READ(10)", Read, true, false, io::read, [0x1E, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, C]),
    op!(
        WRITE_10,
        None,
        "WRITE(10)",
        Write,
        true,
        false,
        io::write,
        [0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, C]
    ),
    op!(
        WRITE_AND_VERIFY_10,
        None,
        "WRITE AND VERIFY(10)",
        Write,
        true,
        false,
        io::write_and_verify,
        [0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, C]
    ),
    op!(
        VERIFY_10,
        None,
        "VERIFY(10)",
        Read,
        true,
        false,
        io::verify,
        [0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, C]
    ),
    op!(
        PRE_FETCH_10,
        None,
        "PRE-FETCH(10)",
        Read,
        true,
        false,
        io::prefetch,
        [0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, C]
    ),
    op!(
        SYNCHRONIZE_CACHE_10,
        None,
        "SYNCHRONIZE CACHE(10)",
        Write,
        true,
        false,
        io::synchronize_cache,
        [0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, C]
    ),
    op!(
        READ_DEFECT_DATA_10,
        None,
        "READ DEFECT DATA(10)",
        Read,
        true,
        false,
        misc::read_defect_data,
        [0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, C]
    ),
    op!(
        WRITE_SAME_10,
        None,
        "WRITE SAME(10)",
        Write,
        true,
        false,
        provisioning::write_same,
        [0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, C]
    ),
    op!(UNMAP, None, "UNMAP", Write, true, true, provisioning::unmap, [0, 0, 0, 0, 0, 0x3F, 0xFF, 0xFF, C]),
    op!(
        SANITIZE,
        Some(sa::OVERWRITE),
        "SANITIZE / OVERWRITE",
        Write,
        false,
        false,
        sanitize::sanitize,
        [0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, C]
    ),
    op!(
        SANITIZE,
        Some(sa::BLOCK_ERASE),
        "SANITIZE / BLOCK ERASE",
        Write,
        false,
        true,
        sanitize::sanitize,
        [0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, C]
    ),
    op!(
        SANITIZE,
        Some(sa::CRYPTO_ERASE),
        "SANITIZE / CRYPTOGRAPHIC ERASE",
        Write,
        false,
        false,
        sanitize::sanitize,
        [0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, C]
    ),
    op!(
        SANITIZE,
        Some(sa::EXIT_FAILURE_MODE),
        "SANITIZE / EXIT FAILURE MODE",
        Write,
        false,
        false,
        sanitize::sanitize,
        [0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, C]
    ),
    op!(
        MODE_SELECT_10,
        None,
        "MODE SELECT(10)",
        Write,
        false,
        false,
        mode::mode_select,
        [0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, C]
    ),
    op!(RESERVE_10, None, "RESERVE(10)", Reserve, false, false, misc::reserve, [0, 0, 0, 0, 0, 0, 0, 0, C]),
    op!(RELEASE_10, None, "RELEASE(10)", Release, false, false, misc::release, [0, 0, 0, 0, 0, 0, 0, 0, C]),
    op!(
        MODE_SENSE_10,
        None,
        "MODE SENSE(10)",
        Read,
        false,
        false,
        mode::mode_sense,
        [0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, C]
    ),
    op!(
        PERSISTENT_RESERVE_IN,
        Some(sa::READ_KEYS),
        "PERSISTENT RESERVE IN / READ KEYS",
        Service,
        false,
        false,
        pr::pr_in,
        [0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, C]
    ),
    op!(
        PERSISTENT_RESERVE_IN,
        Some(sa::READ_RESERVATION),
        "PERSISTENT RESERVE IN / READ RESERVATION",
        Service,
        false,
        false,
        pr::pr_in,
        [0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, C]
    ),
    op!(
        PERSISTENT_RESERVE_IN,
        Some(sa::REPORT_CAPABILITIES),
        "PERSISTENT RESERVE IN / REPORT CAPABILITIES",
        Service,
        false,
        false,
        pr::pr_in,
        [0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, C]
    ),
    op!(
        PERSISTENT_RESERVE_IN,
        Some(sa::READ_FULL_STATUS),
        "PERSISTENT RESERVE IN / READ FULL STATUS",
        Service,
        false,
        false,
        pr::pr_in,
        [0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, C]
    ),
    op!(
        PERSISTENT_RESERVE_OUT,
        Some(sa::REGISTER),
        "PERSISTENT RESERVE OUT / REGISTER",
        Service,
        false,
        false,
        pr::pr_out,
        [0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, C]
    ),
    op!(
        PERSISTENT_RESERVE_OUT,
        Some(sa::RESERVE),
        "PERSISTENT RESERVE OUT / RESERVE",
        Service,
        false,
        false,
        pr::pr_out,
        [0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, C]
    ),
    op!(
        PERSISTENT_RESERVE_OUT,
        Some(sa::RELEASE),
        "PERSISTENT RESERVE OUT / RELEASE",
        Service,
        false,
        false,
        pr::pr_out,
        [0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, C]
    ),
    op!(
        PERSISTENT_RESERVE_OUT,
        Some(sa::CLEAR),
        "PERSISTENT RESERVE OUT / CLEAR",
        Service,
        false,
        false,
        pr::pr_out,
        [0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, C]
    ),
    op!(
        PERSISTENT_RESERVE_OUT,
        Some(sa::PREEMPT),
        "PERSISTENT RESERVE OUT / PREEMPT",
        Service,
        false,
        false,
        pr::pr_out,
        [0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, C]
    ),
    op!(
        PERSISTENT_RESERVE_OUT,
        Some(sa::PREEMPT_AND_ABORT),
        "PERSISTENT RESERVE OUT / PREEMPT AND ABORT",
        Service,
        false,
        false,
        pr::pr_out,
        [0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, C]
    ),
    op!(
        PERSISTENT_RESERVE_OUT,
        Some(sa::REGISTER_AND_IGNORE_EXISTING_KEY),
        "PERSISTENT RESERVE OUT / REGISTER AND IGNORE EXISTING KEY",
        Service,
        false,
        false,
        pr::pr_out,
        [0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, C]
    ),
    op!(
        PERSISTENT_RESERVE_OUT,
        Some(sa::REGISTER_AND_MOVE),
        "PERSISTENT RESERVE OUT / REGISTER AND MOVE",
        Service,
        false,
        false,
        pr::pr_out,
        [0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, C]
    ),
    op!(
        READ_16,
        None,
        "READ(16)",
        Read,
        true,
        false,
        io::read,
        [0x1E, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C]
    ),
    op!(
        COMPARE_AND_WRITE,
        None,
        "COMPARE AND WRITE",
        Write,
        true,
        false,
        io::compare_and_write,
        [0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0x3F, C]
    ),
    op!(
        WRITE_16,
        None,
        "WRITE(16)",
        Write,
        true,
        false,
        io::write,
        [0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C]
    ),
    op!(
        ORWRITE_16,
        None,
        "ORWRITE(16)",
        Write,
        true,
        false,
        io::orwrite,
        [0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C]
    ),
    op!(
        WRITE_AND_VERIFY_16,
        None,
        "WRITE AND VERIFY(16)",
        Write,
        true,
        false,
        io::write_and_verify,
        [0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C]
    ),
    op!(
        VERIFY_16,
        None,
        "VERIFY(16)",
        Read,
        true,
        false,
        io::verify,
        [0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C]
    ),
    op!(
        PRE_FETCH_16,
        None,
        "PRE-FETCH(16)",
        Read,
        true,
        false,
        io::prefetch,
        [0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C]
    ),
    op!(
        SYNCHRONIZE_CACHE_16,
        None,
        "SYNCHRONIZE CACHE(16)",
        Write,
        true,
        false,
        io::synchronize_cache,
        [0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C]
    ),
    op!(
        WRITE_SAME_16,
        None,
        "WRITE SAME(16)",
        Write,
        true,
        false,
        provisioning::write_same,
        [0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C]
    ),
    op!(
        WRITE_ATOMIC_16,
        None,
        "WRITE ATOMIC(16)",
        Write,
        true,
        false,
        atomic::write_atomic16,
        [0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C]
    ),
    op!(
        SERVICE_ACTION_IN_16,
        Some(sa::READ_CAPACITY_16),
        "READ CAPACITY(16)",
        Service,
        true,
        false,
        misc::read_capacity16,
        [0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, C]
    ),
    op!(
        SERVICE_ACTION_IN_16,
        Some(sa::GET_LBA_STATUS),
        "GET LBA STATUS",
        Read,
        true,
        true,
        provisioning::get_lba_status,
        [0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, C]
    ),
    op!(
        REPORT_LUNS,
        None,
        "REPORT LUNS",
        Info,
        false,
        false,
        misc::report_luns,
        [0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, C]
    ),
    op!(
        MAINTENANCE_IN,
        Some(sa::REPORT_TARGET_PORT_GROUPS),
        "REPORT TARGET PORT GROUPS",
        Service,
        false,
        false,
        alua::report_target_port_groups,
        [0xFF, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, C]
    ),
    op!(
        MAINTENANCE_IN,
        Some(sa::REPORT_SUPPORTED_OPERATION_CODES),
        "REPORT SUPPORTED OPERATION CODES",
        Service,
        false,
        false,
        rsoc::report_supported_opcodes,
        [0x1F, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, C]
    ),
    op!(
        MAINTENANCE_IN,
        Some(sa::REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS),
        "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS",
        Service,
        false,
        false,
        misc::report_tmf,
        [0x1F, 0x80, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, C]
    ),
    op!(
        READ_12,
        None,
        "READ(12)",
        Read,
        true,
        false,
        io::read,
        [0x1E, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C]
    ),
    op!(
        WRITE_12,
        None,
        "WRITE(12)",
        Write,
        true,
        false,
        io::write,
        [0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C]
    ),
    op!(
        WRITE_AND_VERIFY_12,
        None,
        "WRITE AND VERIFY(12)",
        Write,
        true,
        false,
        io::write_and_verify,
        [0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C]
    ),
    op!(
        VERIFY_12,
        None,
        "VERIFY(12)",
        Read,
        true,
        false,
        io::verify,
        [0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C]
    ),
    op!(
        READ_DEFECT_DATA_12,
        None,
        "READ DEFECT DATA(12)",
        Read,
        true,
        false,
        misc::read_defect_data,
        [0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, C]
    ),
];

/// For each opcode, the range of its entries in `OPS`.
fn index() -> &'static [(u8, u8); 256] {
    static INDEX: OnceLock<[(u8, u8); 256]> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut idx = [(0u8, 0u8); 256];
        for (i, op) in OPS.iter().enumerate() {
            let e = &mut idx[usize::from(op.opcode)];
            if e.1 == 0 {
                e.0 = i as u8;
            }
            e.1 += 1;
        }
        idx
    })
}

pub(crate) fn entries(cfg: &DiskConfig, opcode: u8) -> impl Iterator<Item = &'static Op> + '_ {
    let (start, n) = index()[usize::from(opcode)];
    OPS[usize::from(start)..usize::from(start) + usize::from(n)].iter().filter(move |op| offered(cfg, op))
}

/// Whether the unit offers `op` as configured: provisioning commands only when thin provisioned, CRYPTOGRAPHIC ERASE
/// only on an encrypted medium, and the ALUA rules of [`offered_with_alua`].
pub(crate) fn offered(cfg: &DiskConfig, op: &Op) -> bool {
    (cfg.thin_provisioning || !op.thin)
        && (cfg.crypto_erase || (op.opcode, op.sa) != (SANITIZE, Some(sa::CRYPTO_ERASE)))
        && offered_with_alua(cfg, op)
}

/// REPORT TARGET PORT GROUPS only with ALUA configured; no reservations (SPC-2 RESERVE/RELEASE, persistent
/// reservations) on a logical unit that other hosts serve too, since this process cannot make them hold there
/// (`docs/ceph.md`): those opcodes are INVALID COMMAND OPERATION CODE and absent from REPORT SUPPORTED OPERATION
/// CODES.
pub(crate) fn offered_with_alua(cfg: &DiskConfig, op: &Op) -> bool {
    match (op.opcode, op.sa) {
        (MAINTENANCE_IN, Some(sa::REPORT_TARGET_PORT_GROUPS)) => cfg.port_group != 0,
        (RESERVE_6 | RELEASE_6 | RESERVE_10 | RELEASE_10 | PERSISTENT_RESERVE_IN | PERSISTENT_RESERVE_OUT, _) => {
            !cfg.multi_host()
        }
        _ => true,
    }
}

pub(crate) enum Lookup {
    Found(&'static Op),
    Invalid(Sense),
}

/// Find the command and check the CDB against its mask.
pub(crate) fn lookup(cfg: &DiskConfig, cdb: &[u8]) -> Lookup {
    let Some(&opcode) = cdb.first() else {
        return Lookup::Invalid(Sense::invalid_opcode());
    };
    let mut found = entries(cfg, opcode).peekable();
    let Some(first) = found.peek() else {
        return Lookup::Invalid(Sense::invalid_opcode());
    };
    let op = if first.sa.is_some() {
        let sa = get(cdb, 1) & 0x1F;
        match found.find(|op| op.sa == Some(sa)) {
            Some(op) => op,
            None => return Lookup::Invalid(Sense::invalid_field_in_cdb(1, Some(4))),
        }
    } else {
        first
    };
    if cdb.len() < op.usage.len() {
        return Lookup::Invalid(Sense::invalid_field_in_cdb(cdb.len() as u16, None));
    }
    for (i, (&b, &mask)) in cdb.iter().zip(op.usage).enumerate().skip(1) {
        let bad = b & !mask;
        if bad != 0 {
            let bit = 7 - bad.leading_zeros() as u8;
            return Lookup::Invalid(Sense::invalid_field_in_cdb(i as u16, Some(bit)));
        }
    }
    Lookup::Found(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_masks_name_their_opcode() {
        for w in OPS.windows(2) {
            assert!((w[0].opcode, w[0].sa) < (w[1].opcode, w[1].sa), "{} before {}", w[0].name, w[1].name);
        }
        for op in OPS {
            assert_eq!(op.usage[0], op.opcode, "{}", op.name);
            let expect = match op.opcode >> 5 {
                0 => 6,
                1 | 2 => 10,
                4 => 16,
                5 => 12,
                _ => 0,
            };
            assert_eq!(op.usage.len(), expect, "{}", op.name);
        }
    }

    #[test]
    fn a_bit_outside_the_mask_points_at_its_byte_and_bit() {
        let cfg = DiskConfig::default();
        // READ(10) with RDPROTECT = 001b: byte 1 bit 5.
        match lookup(&cfg, &[READ_10, 0x20, 0, 0, 0, 0, 0, 0, 1, 0]) {
            Lookup::Invalid(s) => assert_eq!(s.sks, Some([0xC8 | 5, 0, 1])),
            Lookup::Found(_) => panic!("accepted a reserved bit"),
        }
    }

    #[test]
    fn unknown_service_action_is_invalid_field_not_opcode() {
        let cfg = DiskConfig::default();
        match lookup(&cfg, &[SERVICE_ACTION_IN_16, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) {
            Lookup::Invalid(s) => assert_eq!(s.code(), crate::sense::AscAscq::INVALID_FIELD_IN_CDB),
            Lookup::Found(op) => panic!("found {}", op.name),
        }
    }
}
