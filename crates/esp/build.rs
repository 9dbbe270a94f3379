//! Builds the chip's miniport, written in C against include/scsiport/miniport.h.

fn main() {
    println!("cargo:rerun-if-changed=c/esp.c");
    println!("cargo:rerun-if-changed=../../include/scsiport/miniport.h");
    cc::Build::new()
        .file("c/esp.c")
        .include("../../include")
        .warnings(true)
        .extra_warnings(true)
        .flag("-Werror")
        .compile("esp_miniport");
}
