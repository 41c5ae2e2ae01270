//! Domains: Armature boots a test guest (tests/guests/) as dom0 from a
//! `/chosen` kernel module, runs it at EL1 under stage 2 and handles its
//! traps. The guest checks behaviours itself and prints PASS/FAIL lines
//! through the console hypercall; the hypervisor logs what it did. Memory
//! layout on 1 GiB (the page allocator hands out from the top): Armature at
//! 0x7fe00000, its 2 MiB heap at 0x7fc00000, dom0's 128 MiB right below.

mod common;

use common::{BOOT_TIMEOUT, image, scratch};
use xtask::{Arch, Expect, Qemu};

/// The basic guest: PSCI_VERSION, an abort injected for an access to
/// nothing, stage-2 isolation, then SYSTEM_OFF ends QEMU with status 0.
fn basic(test: &str, gic: u8, smp: u32) {
    let guest = xtask::guest::build("basic").unwrap_or_else(|e| panic!("{e}"));
    let img = image(Arch::Aarch64, &[]);
    let qemu = Qemu::aarch64().gic(gic).smp(smp).memory("1G");
    let qemu = xtask::guest::as_dom0(qemu, &guest, &scratch(test)).unwrap_or_else(|e| panic!("{e}")).kernel(&img.bin);
    let expect = Expect::new()
        .markers([
            "d0: 128 MiB RAM at 0x000077c00000-0x00007fbfffff (1:1)",
            "kernel module 0x00004a000000-",
            "d0: entering vCPU0 at 0x",
            "d0v0: basic guest: hello from EL1",
            "d0v0: PASS psci-version: 1.1",
            "d0v0: read of IPA 0x1000 (VA 0x1000) at PC 0x",
            "abort injected",
            "d0v0: PASS abort: the read of IPA 0x1000 came back as a data abort",
            // 128 MiB above the domain's base (0x77c00000 on 1 GiB): the
            // hypervisor's heap, which the page allocator put right above.
            "d0v0: read of IPA 0x7fc00000",
            "d0v0: PASS isolation: the hypervisor's memory above the domain is not mapped",
            "d0v0: basic guest: done, powering off",
            "d0: PSCI SYSTEM_OFF from the hardware domain: powering off",
        ])
        .failure_markers(["FAIL", "PANIC", "----[ Armature", "FATAL"])
        .timeout(BOOT_TIMEOUT);
    common::boot(test, &qemu, &expect);
}

#[test]
fn basic_guest_gicv3() {
    basic("aarch64-dom0-basic-gicv3", 3, 2);
}

#[test]
fn basic_guest_gicv2() {
    basic("aarch64-dom0-basic-gicv2", 2, 4);
}
