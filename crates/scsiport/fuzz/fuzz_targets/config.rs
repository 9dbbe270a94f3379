//! Parses arbitrary text as a `scsiport serve` configuration file: either a configuration that validates, or one
//! error naming a field, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scsiport::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::from_toml(text) {
        Ok(cfg) => assert!(cfg.validate().is_ok(), "an accepted configuration validates again"),
        Err(e) => assert!(!e.field.is_empty() && !e.message.is_empty(), "an error names its field: {e}"),
    }
});
