//! Crash dumps: an image built with the `crashtest` feature faults on
//! purpose when its command line says `crashtest=abort|undef|panic`, and the
//! dump must show the exception, the syndrome, the registers and a
//! backtrace, then halt the system (it never powers off).

mod common;

use common::{BOOT_TIMEOUT, image};
use xtask::{Arch, Expect, Outcome, Qemu};

/// Boots the crashtest image with `crashtest=<kind>` and checks the dump:
/// `cause` are the lines between the dump header and the registers.
fn crash(kind: &str, before: &[&str], cause: &[&str], forbidden: &[&str]) -> Outcome {
    let test = format!("aarch64-crashtest-{kind}");
    let image = image(Arch::Aarch64, &["crashtest"]);
    let qemu = Qemu::aarch64().smp(2).kernel(&image.bin).append(format!("crashtest={kind}"));
    let mut failure_markers = vec!["nested exception", "Boot complete"];
    failure_markers.extend_from_slice(forbidden);
    let registers: Vec<String> = (0..31).map(|i| format!("x{i:<2}: 0x")).chain(["sp : 0x".to_string()]).collect();
    let expect = Expect::new()
        .markers([format!("Command line: \"crashtest={kind}\""), "crashtest: faulting on purpose".into()])
        .markers(before.iter().copied())
        .marker("----[ Armature")
        .markers(cause.iter().copied())
        .markers(["ELR_EL2: 0x", "SPSR_EL2: 0x"])
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
