//! The control socket's request parser: any line is a request or a "bad request" error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = scsiport::control::parse_request(data);
});
