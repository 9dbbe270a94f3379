//! Builds the C half of the ABI (the variadic ScsiPortNotification and the table of exported routines) and links it
//! whole, so every ScsiPort* routine stays in programs that load miniports. Test programs of this crate load
//! miniports themselves, so they export their symbols to them.

fn main() {
    println!("cargo:rerun-if-changed=c/notification.c");
    println!("cargo:rerun-if-changed=../../include/scsiport/miniport.h");
    cc::Build::new()
        .file("c/notification.c")
        .include("../../include")
        .warnings(true)
        .extra_warnings(true)
        .flag("-Werror")
        .cargo_metadata(false)
        .compile("scsiport_c_abi");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rustc-link-search=native={out}");
    println!("cargo:rustc-link-lib=static:+whole-archive=scsiport_c_abi");
    println!("cargo:rustc-link-arg-tests=-Wl,--export-dynamic");
}
