//! Dom0 features beyond booting, on Debian's arm64 Linux as dom0 (loaded
//! directly by QEMU, 4 physical CPUs, 2 GiB), three boots in all:
//!
//! - **options** (`xen_named_options`): `xen,xen-bootargs = "dom0_mem=256M
//!   dom0_max_vcpus=2 loglvl=debug"` gives dom0 256 MiB (Armature says so,
//!   Linux's `MemTotal` is below it) and 2 vCPUs (Linux sees exactly 2
//!   CPUs), and debug lines are logged;
//! - **Armature's names and bad values** (`armature_named_options_win`):
//!   `/chosen/armature,bootargs` and `armature,dom0-bootargs` win over the
//!   `xen,*` properties also present; `dom0_mem=lots` is reported by name
//!   and dom0 gets the default 512 MiB; `dom0_max_vcpus=3` gives 3 CPUs;
//! - **console input** (`console_input_and_debug_keys`): dom0 runs a shell
//!   (`armature.shell`); a command typed on QEMU's serial port runs in dom0
//!   (physical PL011 RX interrupt → Armature → emulated PL011 → virtual
//!   SPI 33 → Linux), Ctrl-A three times gives the input to the hypervisor,
//!   whose debug keys `h`, `d`, `i`, `q` answer, Ctrl-A three times gives
//!   it back (the keys did not reach dom0), and `poweroff -f` typed in dom0
//!   ends QEMU with 0; the same session typed in 8-byte bursts
//!   (`console_input_typed_in_bursts`) and pasted, with 4 KiB more whose
//!   MD5 dom0's shell prints (`console_input_pasted`). Through a terminal,
//!   as a person uses `./x run`: `tests/console_tty.rs`.
//!
//! Every boot's console is also checked for lines where the hypervisor's
//! log and dom0's output mixed ([`xtask::hvlog::mixed_lines`]) and for the
//! boot stage timings: every stage once, in order, counter values
//! increasing, and the summary ([`xtask::hvlog::Timings`]).

mod common;

use common::scratch;
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use xtask::dom0::{self, Dom0, Hypervisor, Report};
use xtask::hvlog::{self, Timings};
use xtask::initramfs::USERSPACE_MARKER;
use xtask::runner::{Expect, Outcome};
use xtask::{Arch, Qemu, paths};

/// Time limit of one boot (see `dom0_linux.rs`).
const TIMEOUT: Duration = Duration::from_secs(150);
/// Physical CPUs and RAM.
const CPUS: u32 = 4;
const MEMORY: &str = "2G";
/// dom0's shell prompt (`PS1` of the initramfs' `/etc/profile`).
const PROMPT: &str = "dom0:/# ";
/// The line Armature prints when the input goes to the hypervisor.
const TO_HYPERVISOR: &str =
    "*** Console input now goes to the hypervisor (press Ctrl-A three times to switch; 'h' lists the debug keys)";
/// … and to dom0.
const TO_DOM0: &str = "*** Console input now goes to dom0 (press Ctrl-A three times to switch)";
/// Ctrl-A three times: the input switch.
const SWITCH: &str = "\x01\x01\x01";

fn banner() -> String {
    format!("Armature {}", env!("CARGO_PKG_VERSION"))
}

/// Boots dom0 `d` under Armature (QEMU's loader, GIC `gic`), with `edit`
/// run on the generated device tree first, and checks the run against
/// `expect`, then the checks every boot gets: no mixed lines, the stage
/// timings.
fn boot(test: &str, gic: u8, d: &Dom0, edit: impl FnOnce(&Path), expect: &Expect) -> Outcome {
    let image = common::image(Arch::Aarch64, &[]).bin;
    let dir = scratch(test);
    let qemu = Qemu::aarch64().gic(gic).smp(CPUS).memory(MEMORY);
    let qemu = dom0::direct(qemu, &image, d, &dir).unwrap_or_else(|e| panic!("{test}: {e}"));
    edit(&dir.join("dom0.dtb"));
    let outcome = common::boot(test, &qemu, expect);
    check_every_boot(test, &outcome);
    outcome
}

/// The checks of every boot: the hypervisor's lines never share a line
/// with dom0's output, and the stage timings are complete and increasing.
fn check_every_boot(test: &str, outcome: &Outcome) {
    let mixed = hvlog::mixed_lines(&outcome.log);
    assert!(
        mixed.is_empty(),
        "{test}: hypervisor and dom0 output share a line:\n{}\n----- console log -----\n{}",
        mixed.iter().map(|(n, l)| format!("  line {n}: {l:?}")).collect::<Vec<_>>().join("\n"),
        outcome.log
    );
    let timings = Timings::parse(&outcome.log);
    let problems = timings.problems();
    assert!(
        problems.is_empty(),
        "{test}: stage timings are wrong:\n  - {}\n{timings:#?}\n----- console log -----\n{}",
        problems.join("\n  - "),
        outcome.log
    );
    // The hypervisor logged something after dom0 started, so the check
    // above had lines to judge (CPU_ON at least, with more than one vCPU).
    assert!(outcome.log.contains("d0v0: PSCI CPU_ON vCPU1"), "{test}: no CPU_ON line\n{}", outcome.log);
}

/// dom0's report, recorded in the test's log.
fn report(test: &str, outcome: &Outcome) -> Report {
    let r = Report::parse(&outcome.log);
    let line = format!(
        "\n# dom0 report: cpus {:?}, nproc {:?}, online {:?}, MemTotal {:?} kB, cmdline {:?}\n",
        r.cpus, r.nproc, r.online, r.mem_total_kib, r.cmdline
    );
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(paths::log_path(test)) {
        let _ = f.write_all(line.as_bytes());
    }
    eprint!("{test}:{line}");
    r
}

/// Fails with the console log unless `ok`.
#[track_caller]
fn check(test: &str, outcome: &Outcome, ok: bool, what: &str) {
    assert!(ok, "{test}: {what}\n----- console log -----\n{}", outcome.log);
}

fn dom0(hv_args: &str) -> Dom0 {
    let kernel = xtask::debian::kernel().unwrap_or_else(|e| panic!("{e}"));
    let (_, busybox) = xtask::debian::busybox().unwrap_or_else(|e| panic!("{e}"));
    let initrd = xtask::initramfs::dom0_initramfs(&busybox, &kernel.modules).unwrap_or_else(|e| panic!("{e}"));
    let mut d = Dom0::new(Hypervisor::Armature, &kernel.image, &initrd, CPUS);
    d.hv_args = hv_args.to_string();
    d
}

/// Xen's option names in `xen,xen-bootargs`: dom0's memory and vCPUs, the
/// log level.
#[test]
fn xen_named_options() {
    let test = "dom0-options-xen-names";
    let args = "dom0_mem=256M dom0_max_vcpus=2 loglvl=debug";
    let d = dom0(args);
    let expect = dom0::expect_after(
        &[
            &banner(),
            &format!("Command line: \"{args}\""),
            "d0: 256 MiB RAM at ",
            // loglvl=debug: the pass-through's debug lines.
            "DEBUG d0: MMIO ",
            "d0: 2 vCPU(s), pinned one per physical CPU",
        ],
        TIMEOUT,
    );
    let outcome = boot(test, 3, &d, |_| {}, &expect);
    let r = report(test, &outcome);
    let problems = r.problems(2);
    check(test, &outcome, problems.is_empty(), &format!("dom0's report for 2 CPUs is wrong: {problems:?}"));
    let kib = r.mem_total_kib.unwrap_or(0);
    check(
        test,
        &outcome,
        (128 << 10..256 << 10).contains(&kib),
        &format!("dom0's MemTotal is {kib} kB, expected below 256 MiB (and above 128 MiB)"),
    );
    check(test, &outcome, !outcome.log.contains("vCPU2"), "a third vCPU was started");
    check(test, &outcome, !outcome.log.contains("WARN  cmdline:"), "the options were not all understood");
}

/// `armature,bootargs` and `armature,dom0-bootargs` win over the `xen,*`
/// properties beside them; a bad `dom0_mem=` is reported and the default
/// used.
#[test]
fn armature_named_options_win() {
    let test = "dom0-options-armature-names";
    // What must NOT be used: Xen's names, present too.
    let mut d = dom0("dom0_mem=256M dom0_max_vcpus=1 loglvl=debug");
    d.dom0_args = format!("{} armature.from=xen", dom0::ARMATURE_DOM0_ARGS);
    let args = "dom0_mem=lots dom0_max_vcpus=3";
    let dom0_args = format!("{} armature.from=armature", dom0::ARMATURE_DOM0_ARGS);
    let expect = dom0::expect_after(
        &[
            &banner(),
            &format!("Command line: \"{args}\""),
            "WARN  cmdline: bad value \"lots\" for dom0_mem= ignored",
            &format!("dom0: command line \"{dom0_args}\""),
            "d0: 512 MiB RAM at ",
            "d0: 3 vCPU(s), pinned one per physical CPU",
        ],
        TIMEOUT,
    );
    let edit = |dtb: &Path| {
        common::fdtput(dtb, &["-t", "s", "/chosen", "armature,bootargs", args]);
        common::fdtput(dtb, &["-t", "s", "/chosen", "armature,dom0-bootargs", &dom0_args]);
    };
    let outcome = boot(test, 2, &d, edit, &expect);
    let r = report(test, &outcome);
    let problems = r.problems(3);
    check(test, &outcome, problems.is_empty(), &format!("dom0's report for 3 CPUs is wrong: {problems:?}"));
    check(
        test,
        &outcome,
        r.cmdline.as_deref().is_some_and(|c| c.split_whitespace().any(|w| w == "armature.from=armature")),
        &format!("dom0's /proc/cmdline is {:?}, expected armature,dom0-bootargs", r.cmdline),
    );
    let kib = r.mem_total_kib.unwrap_or(0);
    check(
        test,
        &outcome,
        (256 << 10..512 << 10).contains(&kib),
        &format!("dom0's MemTotal is {kib} kB, expected the default 512 MiB's (above 256 MiB)"),
    );
    check(test, &outcome, !outcome.log.contains("DEBUG "), "loglvl=debug of xen,xen-bootargs was used");
}

/// Typing on the console: to dom0's shell, the switch to the hypervisor
/// and its debug keys, the switch back, and a power-off typed in dom0.
/// Typed a byte at a time, as a person types (see
/// `console_input_typed_in_bursts` for faster input).
#[test]
fn console_input_and_debug_keys() {
    console_session("dom0-console-input", 3, 1, Duration::from_millis(50));
}

/// The same session typed in bursts of 8 bytes (what a fast typist's
/// terminal sends). This found a lost-input bug: the handler cleared the
/// physical UART's RX interrupt after draining its FIFO, so a byte arriving
/// in between never raised it again (QEMU's PL011 raises RX only when data
/// arrives) and input stopped for good.
#[test]
fn console_input_typed_in_bursts() {
    console_session("dom0-console-input-bursts", 3, 8, Duration::from_millis(60));
}

/// Pasted: each input in one write, the first command followed by 4 KiB
/// (a here-doc whose MD5 the shell prints), far more than dom0's receive
/// FIFO (32 bytes) holds; the rest must wait in the hypervisor's queue, or
/// in the physical UART, until dom0 reads, not be dropped
/// (`src/console/rx.rs`). Through this pipe (`-serial stdio`) QEMU hands
/// over one byte per read and the paste passed even before the fix;
/// `tests/console_tty.rs` pastes through a terminal, where it did not.
#[test]
fn console_input_pasted() {
    console_session("dom0-console-input-paste", 3, usize::MAX, Duration::from_millis(10));
}

/// Typed after the first command: makes it longer than dom0's receive FIFO.
const LONG: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ";

/// Boots dom0 with a shell and runs the console session, typing `chunk`
/// bytes at a time with `pause` after each piece (`usize::MAX`: each input
/// in one write, and a 4 KiB paste after the first command).
fn console_session(test: &str, gic: u8, chunk: usize, pause: Duration) {
    let d = dom0("").shell();
    let pasted = chunk == usize::MAX;
    let (paste, answer) = common::paste_4k();
    let mut expect = Expect::new()
        .markers([banner().as_str(), TO_DOM0, USERSPACE_MARKER, "dom0: armature.shell: starting a shell"])
        // To dom0: the shell runs what was typed (a line longer than dom0's
        // 32-byte receive FIFO).
        .input_after(PROMPT, format!("echo typed-$((6*7))-{LONG}\r"))
        .marker(format!("typed-42-{LONG}\n"));
    // Pasted sessions: 4 KiB more, checked by the shell.
    let mut ready = format!("typed-42-{LONG}\n{PROMPT}");
    if pasted {
        expect = expect.input_after(&ready, paste).marker(format!("{answer}{PROMPT}"));
        ready = format!("{answer}{PROMPT}");
    }
    // To the hypervisor, with dom0's prompt waiting mid-line.
    let expect = expect
        .input_after(ready, SWITCH)
        .marker(TO_HYPERVISOR)
        .input_after(TO_HYPERVISOR, "h")
        .markers([
            "'h': list the debug keys\n",
            "'d': dump the vCPUs' state and registers\n",
            "'q': dump the domains\n",
            "'i': dump the virtual interrupt state\n",
            "'R': reset the machine\n",
        ])
        .input_after("'R': reset the machine\n", "d")
        .markers(["d0v0: on physical CPU 0, ", "d0v3: on physical CPU 3, "])
        // Each running vCPU's registers, printed by its own CPU.
        .markers(["d0v3: PC 0x", "d0v3: SCTLR_EL1 0x", "d0v3: VBAR_EL1 0xffff"])
        .input_after("d0v3: VBAR_EL1 0xffff", "i")
        .markers(["d0: vGIC, ", " list registers per CPU; enabled interrupts:\n", "Spi(33): prio "])
        .input_after("enabled interrupts:\n", "q")
        .marker("d0: VMID 1, 512 MiB RAM at ")
        .marker(", 4 vCPU(s), stage-2 root ")
        // Back to dom0: what was typed for the hypervisor did not reach it.
        .input_after("d0: VMID ", SWITCH)
        .marker(TO_DOM0)
        .input_after(TO_DOM0, "echo back-$((50+8))\r")
        .marker("back-58\n")
        .input_after("back-58\n", "poweroff -f\r")
        .marker("d0: PSCI SYSTEM_OFF from the hardware domain: powering off")
        .failure_markers(dom0::FAILURE_MARKERS)
        .clean_exit(true)
        .timeout(TIMEOUT)
        .idle_timeout(dom0::IDLE_TIMEOUT)
        .typing(chunk, pause);
    let outcome = boot(test, gic, &d, |_| {}, &expect);
    let log = &outcome.log;
    // The keys for the hypervisor (and the Ctrl-As) did not reach dom0's
    // shell: the command after the switch back ran as typed.
    let shell = log.split("dom0: armature.shell: starting a shell").nth(1).unwrap_or("");
    check(test, &outcome, !shell.contains(": not found"), "dom0's shell got a mangled command");
    check(test, &outcome, !log.contains("is not a debug key"), "dom0's input reached the debug keys");
    // The prompt dom0 left mid-line (followed by ash's cursor position
    // query, ESC [6n) was ended before the switch message.
    let lines: Vec<&str> = log.lines().collect();
    let at = lines.iter().position(|l| l.contains(TO_HYPERVISOR)).unwrap_or(0);
    check(
        test,
        &outcome,
        at > 0 && lines[at - 1].starts_with(PROMPT),
        &format!("the line before the switch message is {:?}, expected dom0's prompt {PROMPT:?}", lines[at.max(1) - 1]),
    );
}
