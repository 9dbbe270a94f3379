//! Links librbd and librados (Debian: `librbd-dev librados-dev`). A machine without them gets one clear message
//! before the linker error naming a missing symbol.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=RBD_LIB_DIR");
    let dirs: Vec<String> = match std::env::var("RBD_LIB_DIR") {
        Ok(d) => vec![d],
        Err(_) => {
            ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        }
    };
    let found = |lib: &str| dirs.iter().find(|d| Path::new(d).join(format!("lib{lib}.so")).exists()).cloned();
    for lib in ["rbd", "rados"] {
        match found(lib) {
            Some(dir) => {
                println!("cargo:rustc-link-search=native={dir}");
                println!("cargo:rustc-link-lib=dylib={lib}");
            }
            // Without the libraries this crate still compiles (nothing here runs); only a program that calls into it
            // fails to link. scsiport pulls it in only with its `rbd` feature.
            None => println!(
                "cargo:warning=lib{lib}.so not found in {dirs:?}: the RBD backend needs Ceph's client libraries \
                 (Debian: apt-get install librbd-dev librados-dev; scripts/test.sh installs them), \
                 or RBD_LIB_DIR pointing at them"
            ),
        }
    }
}
