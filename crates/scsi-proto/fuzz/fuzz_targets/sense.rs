//! Parses arbitrary bytes as sense data, as an initiator reads what a target returned: sense or `None`, never a
//! panic; what parses renders again in both formats and parses back to the same key, codes and fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scsi_proto::Sense;

fuzz_target!(|data: &[u8]| {
    let Some(s) = Sense::parse(data) else { return };
    let again = Sense::parse(&s.to_descriptor()).expect("descriptor sense parses");
    assert_eq!((again.key, again.code(), again.info, again.sks), (s.key, s.code(), s.info, s.sks));
    let fixed = Sense::parse(&s.to_fixed()).expect("fixed sense parses");
    assert_eq!((fixed.key, fixed.code()), (s.key, s.code()));
});
