//! The hostile test guest: dom0 that misbehaves on purpose, one case at a
//! time, and checks the architectural outcome of each (an abort with the
//! right syndrome in its own EL1 vector, an undefined instruction, a
//! register read as zero, a PSCI error code) and that the hypervisor and
//! the other vCPUs carry on. Each case prints `PASS hostile/<name>` or
//! `FAIL hostile/<name>: <detail>`; the last line counts them
//! (`hostile: N passed, M failed`). Then every vCPU turns itself off with
//! PSCI `CPU_OFF`, vCPU 0 last: the hypervisor must notice that the domain
//! has nothing left to run.
//!
//! Runtime (`hostile/rt.rs`): an Image header and an entry in assembly that
//! turns the MMU on with the image mapped at virtual address 0, where it is
//! linked (so Rust's absolute pointers work wherever Armature loads it),
//! the rest of the address space mapped 1:1; a stack per vCPU; an EL1
//! vector table that records `ESR_EL1`/`FAR_EL1`/`ELR_EL1` and skips the
//! faulting instruction; console output through Armature's console
//! hypercall. Needs at least 2 vCPUs (vCPU 1 is the other vCPU that must
//! carry on).

#![no_std]
#![no_main]
// A failed case carries its message in a 200-byte buffer: no allocator
// here, and the cases are not hot.
#![allow(clippy::result_large_err)]

use armature_test_guests as _;

#[path = "../hostile/rt.rs"]
mod rt;

#[path = "../hostile/gic.rs"]
mod gic;

#[path = "../hostile/cases.rs"]
mod cases;
