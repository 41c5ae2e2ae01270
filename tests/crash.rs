//! Crash dumps: an image built with the `crashtest` feature faults on
//! purpose when its command line says `crashtest=abort|undef|panic`, and the
//! dump must show the exception, the syndrome, the registers and a
//! backtrace, then halt the system (it never powers off).

mod common;

use common::{BOOT_TIMEOUT, image};
use xtask::{Arch, Expect, Outcome, Qemu};

/// Boots the AArch64 crashtest image with `crashtest=<kind>` and checks the
/// dump: `cause` are the lines between the dump header and the registers.
fn crash(kind: &str, before: &[&str], cause: &[&str], forbidden: &[&str]) -> Outcome {
    crash_on(Arch::Aarch64, kind, before, cause, forbidden)
}

/// [`crash`] for either architecture: the register file and the names of
/// the return-state registers differ (ELR_EL2/SPSR_EL2 vs ELR_hyp/SPSR_hyp).
fn crash_on(arch: Arch, kind: &str, before: &[&str], cause: &[&str], forbidden: &[&str]) -> Outcome {
    let test = format!("{}-crashtest-{kind}", arch.name());
    let image = image(arch, &["crashtest"]);
    let qemu = Qemu::new(arch).smp(2).kernel(&image.bin).append(format!("crashtest={kind}"));
    let mut failure_markers = vec!["nested exception", "Boot complete"];
    failure_markers.extend_from_slice(forbidden);
    let (registers, return_state): (Vec<String>, [&str; 2]) = match arch {
        Arch::Aarch64 => (
            (0..31).map(|i| format!("x{i:<2}: 0x")).chain(["sp : 0x".to_string()]).collect(),
            ["ELR_EL2: 0x", "SPSR_EL2: 0x"],
        ),
        Arch::Armv7 => (
            (0..13).map(|i| format!("r{i:<2}: 0x")).chain(["sp : 0x".to_string(), "lr : 0x".to_string()]).collect(),
            ["ELR_hyp: 0x", "SPSR_hyp: 0x"],
        ),
    };
    let expect = Expect::new()
        .markers([format!("Command line: \"crashtest={kind}\""), "crashtest: faulting on purpose".into()])
        .markers(before.iter().copied())
        .marker("----[ Armature")
        .markers(cause.iter().copied())
        .markers(return_state)
        .markers(registers)
        .markers(["Backtrace (image at", "[ 0] 0x", "<- faulting PC", "[ 1] 0x", "----[ end of crash dump ]----"])
        .marker("System halted")
        .failure_markers(failure_markers)
        .stop_on("System halted")
        .timeout(BOOT_TIMEOUT);
    common::boot(&test, &qemu, &expect)
}

#[test]
fn data_abort() {
    crash(
        "abort",
        &[],
        &[
            "Unexpected exception: Synchronous, current EL with SP_EL2",
            "ESR_EL2: 0x",
            "Data Abort from the current EL",
            "data abort: read",
            "FAR_EL2: 0x00dead0000000000",
        ],
        &["PANIC"],
    );
}

#[test]
fn undefined_instruction() {
    crash(
        "undef",
        &[],
        &["Unexpected exception: Synchronous, current EL with SP_EL2", "ESR_EL2: 0x", "Unknown reason", "FAR_EL2: 0x"],
        &["PANIC"],
    );
}

#[test]
fn panic() {
    crash(
        "panic",
        &["PANIC: crash test requested"],
        &[
            "Panic (see the message above); registers at the panic site:",
            "ESR_EL2: 0x",
            "BRK instruction",
            "FAR_EL2: 0x",
        ],
        &[],
    );
}

/// ARMv7 (HYP mode): a read of an address with nothing behind it is an
/// external data abort, reported with HSR and HDFAR.
#[test]
fn armv7_data_abort() {
    crash_on(
        Arch::Armv7,
        "abort",
        &[],
        &[
            "Unexpected exception: Data Abort (HVBAR+0x10)",
            "HSR: 0x",
            "Data Abort from the current EL",
            "data abort: read",
            "HDFAR: 0x0b000000",
        ],
        &["PANIC"],
    );
}

#[test]
fn armv7_undefined_instruction() {
    crash_on(Arch::Armv7, "undef", &[], &["Undefined Instruction", "HSR: 0x", "Unknown reason"], &["PANIC"]);
}

#[test]
fn armv7_panic() {
    crash_on(
        Arch::Armv7,
        "panic",
        &["PANIC: crash test requested"],
        &["Panic (see the message above); registers at the panic site:", "HSR: 0x"],
        &[],
    );
}

/// The heap works (1 MiB), and running out of it is a clear error naming the
/// request and the heap, then a crash dump, never a hang.
#[test]
fn out_of_memory() {
    crash(
        "oom",
        &[
            "1 MiB heap allocation at 0x",
            "worked",
            "heap exhausted: 1073741824 bytes aligned 1 requested; heap 2048 KiB",
            "PANIC: memory allocation of 1073741824 bytes failed",
        ],
        &["Panic (see the message above); registers at the panic site:", "ESR_EL2: 0x", "BRK instruction", "FAR_EL2: 0x"],
        &[],
    );
}
