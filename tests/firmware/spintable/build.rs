//! Links the firmware with its own linker script (`link.ld`): code at 0x0,
//! QEMU virt's flash, where every CPU starts.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=src/firmware.S");
}
