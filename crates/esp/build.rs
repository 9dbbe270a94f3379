//! Builds the chip's miniport, written in C against include/scsiport/miniport.h.

fn main() {
    println!("cargo:rerun-if-changed=c/esp.c");
    println!("cargo:rerun-if-changed=../../include/scsiport/miniport.h");
    cc::Build::new()
        .file("c/esp.c")
        .include("../../include")
        .define("ESP_LINKED", None)
        .warnings(true)
        .extra_warnings(true)
        .flag("-Werror")
        .compile("esp_miniport");
    // The verifier's tests load builds of the same source from shared libraries, which take their ScsiPort*
    // routines from the test program.
    println!("cargo:rustc-link-arg-tests=-Wl,--export-dynamic");
}
