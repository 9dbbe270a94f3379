//! Parses arbitrary bytes as an EXTENDED COPY (LID1) parameter list: a copy list within the reported limits, or the
//! sense of a refusal, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use passthrough::xcopy::{self, MAX_CSCD_DESCRIPTORS, MAX_SEGMENT_DESCRIPTORS};
use scsi_proto::SenseKey;

fuzz_target!(|data: &[u8]| {
    match xcopy::parse(data) {
        Ok(Some(list)) => {
            assert!(list.cscds.len() <= usize::from(MAX_CSCD_DESCRIPTORS));
            assert!(list.segments.len() <= usize::from(MAX_SEGMENT_DESCRIPTORS));
            assert!(list.cscds.iter().all(|c| c.designator.len() <= 20));
        }
        Ok(None) => assert!(data.is_empty()),
        Err(s) => assert!(s.key == SenseKey::IllegalRequest && s.to_fixed().len() == 18),
    }
});
