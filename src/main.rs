//! The Armature boot image.
//!
//! The entry point, the exception vectors and the panic handler come from the
//! `armature` library (`src/arch/<arch>/` and `boot/<arch>/`); this file only
//! makes the image. Build it with `cargo xtask build`.

#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
use armature as _;

/// Host builds of the workspace get this placeholder: the image only runs on Arm.
#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("armature is a bare-metal image: build it with `cargo xtask build`");
    std::process::exit(2);
}
