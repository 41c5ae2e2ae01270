//! A vCPU's EL1 timers (`tests/guests/asm/timer.S`, booted as dom0): the
//! virtual and the physical timer's PPIs are pending exactly while the
//! timer's output is high (after `CTL.ENABLE = 0`, `CTL.IMASK = 1` or a
//! compare value moved on, they no longer read pending in `ISPENDR0` and
//! are not delivered), and each timer, re-armed, wakes the vCPU from WFI
//! into its handler. On GICv2 and GICv3.

mod common;

use common::{BOOT_TIMEOUT, image, scratch};
use xtask::{Arch, Expect, Qemu};

/// Every vCPU's lines, then the end.
fn timer_guest(gic: u8, smp: u32) {
    let test = format!("aarch64-dom0-timer-gicv{gic}-smp{smp}");
    let guest = xtask::guest::build("timer").unwrap_or_else(|e| panic!("{e}"));
    let img = image(Arch::Aarch64, &[]);
    let qemu = Qemu::aarch64().gic(gic).smp(smp).memory("1G");
    let qemu = xtask::guest::as_dom0(qemu, &guest, &scratch(&test)).unwrap_or_else(|e| panic!("{e}")).kernel(&img.bin);
    let mut markers = vec![
        "d0: interrupts: vCPU n's virtual and physical timers (PPIs 27 and 30) linked to the same PPIs of CPU n"
            .to_string(),
        "d0v0: timer guest: vCPU 0 up".to_string(),
    ];
    for v in 0..smp {
        for t in ["vtimer", "ptimer"] {
            markers.extend([
                format!(
                    "d0v{v}: PASS {t}-disable: fired, then CTL.ENABLE = 0: its PPI no longer pending in ISPENDR0, \
                     not delivered"
                ),
                format!(
                    "d0v{v}: PASS {t}-imask: fired, then CTL.IMASK = 1: its PPI no longer pending in ISPENDR0, not \
                     delivered"
                ),
                format!(
                    "d0v{v}: PASS {t}-cval: fired, then CVAL 10 s on: its PPI no longer pending in ISPENDR0, not \
                     delivered"
                ),
                format!(
                    "d0v{v}: PASS {t}-fires: re-armed 1 ms ahead, it woke the vCPU from WFI into its handler within \
                     250 ms"
                ),
            ]);
        }
        markers.push(format!("d0v{v}: timer guest: checked the timers of vCPU {v}"));
    }
    markers.extend(["d0v0: timer guest: done, powering off".to_string(), "d0: PSCI SYSTEM_OFF".to_string()]);
    let expect = Expect::new()
        .markers(markers)
        .failure_markers([
            "FAIL",
            "PANIC",
            "----[ Armature",
            "FATAL",
            "crashed",
            "abort injected",
            "unexpected physical",
        ])
        .timeout(BOOT_TIMEOUT);
    common::boot(&test, &qemu, &expect);
}

/// GICv2 and GICv3, 1, 2 and 4 vCPUs (each checks its own timers).
#[test]
fn timer_guest_matrix() {
    for (gic, smp) in [(2, 1), (2, 2), (2, 4), (3, 1), (3, 2), (3, 4)] {
        timer_guest(gic, smp);
    }
}
