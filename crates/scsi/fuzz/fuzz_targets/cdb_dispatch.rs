//! CDB parsing and dispatch: any bytes as a CDB (and data-out) from any of three initiators
//! must end in a well-formed outcome, never a panic.
//!
//! Input layout: byte 0 = initiator (mod 3) and CDB length (high bits), then the CDB, then
//! the data-out buffer.

#![no_main]

use libfuzzer_sys::fuzz_target;
use scsi::{execute, Disk, DiskConfig, Nexus, RamBackend, ScsiStatus};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else { return };
    let cdb_len = usize::from(head >> 2).min(rest.len());
    let (cdb, out) = rest.split_at(cdb_len);
    let cfg = DiskConfig { power_on_unit_attention: head & 0x02 != 0, ..DiskConfig::default() };
    let disk = Disk::new(cfg, Arc::new(RamBackend::new(1 << 20))).expect("valid configuration");
    let nexus = Nexus::new(u64::from(head & 0x03) % 3);
    // Twice, so that state left by the first command (reservations, mode pages,
    // unit attentions) is exercised by the second.
    for _ in 0..2 {
        let (outcome, data_in) = execute(&disk, nexus, cdb, out, 1 << 16);
        assert_eq!(outcome.status == ScsiStatus::CHECK_CONDITION, outcome.sense.is_some());
        assert!(data_in.len() <= 1 << 16);
        if let Some(sense) = outcome.sense {
            assert!(sense.to_fixed().len() == 18);
        }
    }
});
