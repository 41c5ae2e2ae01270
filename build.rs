//! Build script: picks the linker script for bare-metal targets.
//!
//! Host builds (unit tests) get nothing from here. Bare-metal images are
//! linked as position-independent executables at address 0; the boot stub
//! applies the dynamic relocations for wherever the loader put the image.

use std::env;
use std::path::PathBuf;

fn main() {
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=linker");
    println!("cargo:rerun-if-changed=boot");
    if os != "none" {
        return;
    }
    let script = match arch.as_str() {
        "aarch64" => "aarch64.ld",
        "arm" => "armv7.ld",
        other => panic!("armature: unsupported bare-metal architecture {other}"),
    };
    let script = root.join("linker").join(script);
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    // A PIE linked at 0: the boot stub applies R_*_RELATIVE relocations.
    println!("cargo:rustc-link-arg-bins=-pie");
    println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
    println!("cargo:rustc-link-arg-bins=-znotext");
    println!("cargo:rustc-link-arg-bins=--build-id=none");
    println!("cargo:rustc-link-arg-bins=-Map={}", out_map().display());
}

fn out_map() -> PathBuf {
    PathBuf::from(env::var("OUT_DIR").unwrap()).join("armature.map")
}
