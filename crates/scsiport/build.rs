//! The binary exports its symbols, so that a miniport it loads (`--miniport`, `miniport = "..."`) finds the
//! `ScsiPort*` routines it leaves undefined (`cc -shared -fPIC -I include miniport.c -o libminiport.so`).

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic");
}
