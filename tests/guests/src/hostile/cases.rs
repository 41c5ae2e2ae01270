//! The hostile guest's cases, in groups; vCPU 0 runs them, the other vCPUs
//! work (a heartbeat counter) and run commands vCPU 0 gives them.

use crate::gic::{self, GICD, read, v3, write};
use crate::rt::{self, Outcome, Trap, VCPUS, hvc, me, report, smc, trap_of, wait_for};
use crate::{check, println};
use core::arch::asm;
use core::sync::atomic::Ordering::SeqCst;

/// Nothing at this IPA on QEMU virt (between virtio-mmio and the platform bus).
const UNMAPPED: u64 = 0x0b00_0000;
/// The emulated PL011 (dom0's console).
const UART: u64 = 0x0900_0000;
/// Above 4 GiB, below QEMU virt's high devices: nothing.
const HIGH_NOTHING: u64 = 0x50_0000_0000;
/// Past a 40-bit IPA space.
const BEYOND_IPA: u64 = 0x100_0000_0000;
/// In the 1 GiB of RAM after QEMU virt's 1 GiB: no RAM on the test machine.
const NO_RAM: u64 = 0xc000_0000;

// PSCI and SMCCC function IDs.
const PSCI_VERSION: u64 = 0x8400_0000;
const CPU_SUSPEND_32: u64 = 0x8400_0001;
const CPU_SUSPEND_64: u64 = 0xc400_0001;
const CPU_OFF: u64 = 0x8400_0002;
const CPU_ON_32: u64 = 0x8400_0003;
const CPU_ON_64: u64 = 0xc400_0003;
const AFFINITY_INFO_32: u64 = 0x8400_0004;
const AFFINITY_INFO_64: u64 = 0xc400_0004;
const MIGRATE_32: u64 = 0x8400_0005;
const MIGRATE_64: u64 = 0xc400_0005;
const MIGRATE_INFO_TYPE: u64 = 0x8400_0006;
const MIGRATE_INFO_UP_CPU_32: u64 = 0x8400_0007;
const MIGRATE_INFO_UP_CPU_64: u64 = 0xc400_0007;
const SYSTEM_OFF: u64 = 0x8400_0008;
const SYSTEM_RESET: u64 = 0x8400_0009;
const PSCI_FEATURES: u64 = 0x8400_000a;
const SMCCC_VERSION: u64 = 0x8000_0000;
const SMCCC_ARCH_FEATURES: u64 = 0x8000_0001;

const SUCCESS: u64 = 0;
const NOT_SUPPORTED: u64 = -1i64 as u64;
const INVALID_PARAMETERS: u64 = -2i64 as u64;
const ALREADY_ON: u64 = -4i64 as u64;
const INVALID_ADDRESS: u64 = -9i64 as u64;

macro_rules! mrs {
    ($reg:expr) => {{
        let v: u64;
        // SAFETY: a system register read; an UNDEF is taken by the vectors
        // and skipped.
        unsafe { asm!("mov {v}, xzr", concat!("mrs {v}, ", $reg), v = out(reg) v, options(nostack)) };
        v
    }};
}

macro_rules! msr {
    ($reg:expr, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: a system register write the case chose as harmless; an
        // UNDEF is taken by the vectors and skipped.
        unsafe { asm!(concat!("msr ", $reg, ", {v}"), "isb", v = in(reg) v, options(nostack)) };
    }};
}

/// Commands to the other vCPUs.
const CMD_OFF: u64 = 1;
/// Spin with every exception masked for the milliseconds in bits 63:8.
const CMD_SPIN_MASKED: u64 = 2;
/// Read the byte at the address in bits 63:8 (its own view of a banked
/// register) into `result`.
const CMD_READ_BYTE: u64 = 3;

/// How many vCPUs the domain has.
fn nvcpus() -> usize {
    rt::NVCPUS.load(SeqCst) as usize
}

/// vCPU 0: runs every group, prints the summary, turns every vCPU off.
pub fn main() -> ! {
    println!("hostile guest: vCPU 0 up, GICv{}", gic::version());
    let mut started = 1;
    for v in 1..rt::MAX_VCPUS as u64 {
        if hvc([CPU_ON_64, v, rt::secondary_entry(), v])[0] != SUCCESS {
            break;
        }
        started += 1;
    }
    let online = wait_for(2000, || rt::ONLINE.load(SeqCst) as usize == started);
    rt::NVCPUS.store(started as u32, SeqCst);
    println!("hostile guest: {} vCPU(s) online", rt::ONLINE.load(SeqCst));
    if !online || started < 2 {
        println!("FAIL hostile/setup: {started} vCPU(s) started; the suite needs 2 or more, all online");
        halt();
    }

    aborts();
    liveness("aborts");
    mmio();
    liveness("mmio");
    vgic();
    liveness("vgic");
    smccc();
    liveness("smccc");
    psci();
    liveness("psci");
    sysregs();
    liveness("sysregs");
    wfx();
    liveness("wfx");
    storm();
    liveness("storm");
    spin_masked();
    liveness("spin");

    let (passed, failed) = (rt::PASSED.load(SeqCst), rt::FAILED.load(SeqCst));
    println!("hostile: {passed} passed, {failed} failed");
    // Every other vCPU off, then this one: the last vCPU's CPU_OFF leaves
    // the domain nothing to run.
    for (v, other) in VCPUS.iter().enumerate().take(nvcpus()).skip(1) {
        other.cmd.store(CMD_OFF, SeqCst);
        let off = wait_for(1000, || hvc([AFFINITY_INFO_64, v as u64, 0, 0])[0] == 1);
        if !off {
            println!("hostile: vCPU {v} did not turn off");
        }
    }
    println!("hostile: vCPU 0 turns itself off, the last one");
    hvc([CPU_OFF, 0, 0, 0]);
    println!("hostile: CPU_OFF of the last vCPU returned");
    halt()
}

fn halt() -> ! {
    hvc([SYSTEM_OFF, 0, 0, 0]);
    loop {
        // SAFETY: waits for an interrupt.
        unsafe { asm!("wfi", options(nomem, nostack)) };
    }
}

/// A vCPU other than 0: counts its heartbeat and runs commands.
pub fn secondary(v: usize) -> ! {
    let me = &VCPUS[v];
    println!("hostile guest: vCPU {v} up (context {:#x})", me.context.load(SeqCst));
    loop {
        me.heartbeat.fetch_add(1, SeqCst);
        let cmd = me.cmd.load(SeqCst);
        if cmd == 0 {
            continue;
        }
        let arg = cmd >> 8;
        match cmd & 0xff {
            CMD_OFF => {
                me.cmd.store(0, SeqCst);
                hvc([CPU_OFF, 0, 0, 0]);
                println!("FAIL hostile/cpu-off: CPU_OFF returned on vCPU {v}");
            }
            CMD_SPIN_MASKED => {
                let total = || me.irqs.iter().map(|c| c.load(SeqCst)).sum::<u32>();
                let before = total();
                // SAFETY: masks D, A, I, F: nothing interrupts the spin.
                unsafe { asm!("msr daifset, #0xf", options(nomem, nostack)) };
                let end = rt::counter() + rt::frequency() / 1000 * arg;
                let mut spins = 0u64;
                while rt::counter() < end {
                    spins += 1;
                }
                me.result.store(spins, SeqCst);
                me.spin_irqs.store(total() - before, SeqCst);
                // SAFETY: unmasks them again (the vCPU runs with D, A, F
                // masked, as it started, and I clear).
                unsafe { asm!("msr daifclr, #2", "isb", options(nomem, nostack)) };
            }
            CMD_READ_BYTE => me.result.store(read(arg, 1), SeqCst),
            _ => {}
        }
        me.cmd.store(0, SeqCst);
    }
}

/// Gives vCPU `v` a command and waits (up to `ms`) until it is done.
fn command(v: usize, cmd: u64, ms: u64) -> Option<u64> {
    VCPUS[v].cmd.store(cmd, SeqCst);
    wait_for(ms, || VCPUS[v].cmd.load(SeqCst) == 0).then(|| VCPUS[v].result.load(SeqCst))
}

/// The other vCPUs still run (every heartbeat advances within 500 ms), and
/// no vCPU took an exception nobody asked for (FIQ, SError, an IRQ that is
/// no SGI, PPI or SPI).
fn liveness(group: &str) {
    let mut r = Ok(());
    for (v, any) in VCPUS.iter().enumerate().take(nvcpus()) {
        let odd = any.unexpected.load(SeqCst);
        if odd != 0 {
            r = Err(rt::Detail::new(format_args!("vCPU {v} took {odd} unexpected exceptions (FIQ, SError, ...)")));
        }
    }
    for (v, other) in VCPUS.iter().enumerate().take(nvcpus()).skip(1) {
        if r.is_err() {
            break;
        }
        let hb = other.heartbeat.load(SeqCst);
        if !wait_for(500, || other.heartbeat.load(SeqCst) > hb + 100) {
            r = Err(rt::Detail::new(format_args!("vCPU {v}'s heartbeat stopped at {hb}")));
            break;
        }
    }
    report(rt::Detail::new(format_args!("liveness/after-{group}")).as_str(), r);
}

/// Runs a case and reports it.
fn case(name: &str, f: impl FnOnce() -> Outcome) {
    report(name, f());
}

// ---------------------------------------------------------------------------
// Aborts on IPAs with nothing behind them: a synchronous external abort
// injected into the guest's own vector, with the fault address.

/// Checks a data abort: one exception, EC 0x25 (from EL1), FSC 0x10
/// (synchronous external abort), WnR as the access, FAR the address.
fn data_abort(n: u32, t: Trap, far: u64, write: bool) -> Outcome {
    check!(n == 1, "{n} exceptions taken, expected one data abort");
    check!(t.ec() == 0x25, "EC {:#x} (ESR {:#x}), expected 0x25 (data abort)", t.ec(), t.esr);
    check!(t.fsc() == 0x10, "FSC {:#x} (ESR {:#x}), expected 0x10 (synchronous external abort)", t.fsc(), t.esr);
    check!(t.wnr() == write, "WnR {} (ESR {:#x}) for a {}", t.wnr(), t.esr, if write { "write" } else { "read" });
    check!(t.far == far, "FAR {:#x}, expected {far:#x}", t.far);
    Ok(())
}

/// The end of the domain's RAM: the device tree is in its last 2 MiB.
fn ram_end() -> u64 {
    (rt::DTB.load(SeqCst) & !0x1f_ffff) + 0x20_0000
}

fn aborts() {
    case("abort/read-unmapped", || {
        let (n, t) = trap_of(|| {
            read(UNMAPPED, 8);
        });
        data_abort(n, t, UNMAPPED, false)
    });
    case("abort/write-unmapped", || {
        let (n, t) = trap_of(|| write(UNMAPPED + 0x10, 4, 1));
        data_abort(n, t, UNMAPPED + 0x10, true)
    });
    case("abort/byte-read-unmapped", || {
        let (n, t) = trap_of(|| {
            read(UNMAPPED + 3, 1);
        });
        data_abort(n, t, UNMAPPED + 3, false)
    });
    case("abort/read-high-ipa", || {
        let (n, t) = trap_of(|| {
            read(HIGH_NOTHING + 0x40, 4);
        });
        data_abort(n, t, HIGH_NOTHING + 0x40, false)
    });
    case("abort/read-beyond-ipa-space", || {
        let (n, t) = trap_of(|| {
            read(BEYOND_IPA + GICD, 4);
        });
        data_abort(n, t, BEYOND_IPA + GICD, false)
    });
    case("abort/read-hypervisor-memory", || {
        let a = ram_end();
        let (n, t) = trap_of(|| {
            read(a, 8);
        });
        data_abort(n, t, a, false)
    });
    case("abort/write-hypervisor-memory", || {
        let a = ram_end() + 0x100;
        let (n, t) = trap_of(|| write(a, 8, 0x5555));
        data_abort(n, t, a, true)
    });
    case("abort/ldp-unmapped", || {
        let (n, t) = trap_of(|| {
            // SAFETY: a pair load from nothing: aborts, skipped.
            unsafe {
                asm!("ldp {a}, {b}, [{p}]", p = in(reg) UNMAPPED, a = out(reg) _, b = out(reg) _, options(nostack))
            };
        });
        data_abort(n, t, UNMAPPED, false)
    });
    case("abort/dc-zva-no-ram", || {
        let (n, t) = trap_of(|| {
            // SAFETY: zeroes a block with no RAM behind it: aborts, skipped.
            unsafe { asm!("dc zva, {}", in(reg) NO_RAM, options(nostack)) };
        });
        check!(n == 1 && t.ec() == 0x25 && t.fsc() == 0x10, "{n} exceptions, ESR {:#x}", t.esr);
        check!(t.wnr(), "DC ZVA is a write: WnR clear in ESR {:#x}", t.esr);
        check!(t.far & !0x7ff == NO_RAM, "FAR {:#x}", t.far);
        Ok(())
    });
    for (name, target) in [("abort/ifetch-no-ram", NO_RAM), ("abort/ifetch-hypervisor-memory", 0)] {
        case(name, || {
            let target = if target == 0 { ram_end() + 0x1000 } else { target };
            let (n, t) = trap_of(|| {
                // SAFETY: branches to memory that is not the domain's; the
                // instruction abort returns to the instruction after blr.
                unsafe { asm!("blr {}", in(reg) target, out("x30") _, options(nostack)) };
            });
            check!(n == 1, "{n} exceptions taken");
            check!(t.ec() == 0x21, "EC {:#x} (ESR {:#x}), expected 0x21 (instruction abort)", t.ec(), t.esr);
            check!(t.fsc() == 0x10, "FSC {:#x}, expected 0x10", t.fsc());
            check!(t.far == target && t.elr == target, "FAR {:#x} ELR {:#x}, expected {target:#x}", t.far, t.elr);
            Ok(())
        });
    }
    // Stage-1 table walks that leave the domain's RAM: an abort, never an
    // emulated device read as a page table.
    case("abort/table-walk-no-ram", || walk_into(NO_RAM));
    case("abort/table-walk-into-uart", || walk_into(UART));
    case("abort/table-walk-into-gicd", || walk_into(GICD));
    // The GIC frames the hypervisor keeps: never mapped for the guest.
    let kept: &[(&str, u64)] = if v3() {
        &[("isolation/gicv3-its", 0x0808_0000)]
    } else {
        &[("isolation/gicv2-gich", 0x0803_0000), ("isolation/gicv2-gicv", 0x0804_0000)]
    };
    for &(name, a) in kept {
        case(name, || {
            let (n, t) = trap_of(|| {
                read(a, 4);
            });
            data_abort(n, t, a, false)
        });
    }
}

/// Reads at a TTBR1 address with TTBR1_EL1's tables at `table` (an IPA
/// that is not RAM): the stage-1 walk itself faults at stage 2.
fn walk_into(table: u64) -> Outcome {
    let va = 0xffff_0000_0000_0040u64;
    let tcr = mrs!("tcr_el1");
    // T1SZ 16, TG1 4 KiB, SH1 inner, WB walks, EPD1 clear.
    let walks = (tcr & !(1 << 23) & !(0xffff << 16)) | (16 << 16) | (2 << 30) | (3 << 28) | (1 << 26) | (1 << 24);
    msr!("ttbr1_el1", table);
    msr!("tcr_el1", walks);
    let (n, t) = trap_of(|| {
        read(va, 8);
    });
    msr!("tcr_el1", tcr);
    // SAFETY: drops whatever the failed walk left in the TLBs.
    unsafe { asm!("tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
    check!(n == 1 && t.ec() == 0x25 && t.fsc() == 0x10, "{n} exceptions, ESR {:#x}", t.esr);
    check!(t.far == va, "FAR {:#x}, expected {va:#x}", t.far);
    Ok(())
}

// ---------------------------------------------------------------------------
// Emulated devices, accesses the syndrome describes (ISV = 1) and ones it
// does not (ISV = 0): the latter get an abort, and no side effect.

fn mmio() {
    case("mmio/ldp-gicd", || {
        let (n, t) = trap_of(|| {
            // SAFETY: a pair load from the emulated distributor.
            unsafe {
                asm!("ldp {a:w}, {b:w}, [{p}]", p = in(reg) GICD, a = out(reg) _, b = out(reg) _, options(nostack))
            };
        });
        data_abort(n, t, GICD, false)
    });
    case("mmio/stp-gicd", || {
        let a = GICD + 0x420; // IPRIORITYR8-9: SPIs 32-39
        write(a, 4, 0x1010_1010);
        let (n, t) = trap_of(|| {
            // SAFETY: a pair store to the emulated distributor.
            unsafe { asm!("stp {v:w}, {v:w}, [{p}]", p = in(reg) a, v = in(reg) 0x8080_8080u64, options(nostack)) };
        });
        data_abort(n, t, a, true)?;
        let now = read(a, 4);
        check!(now == 0x1010_1010, "the refused store changed IPRIORITYR8 to {now:#x}");
        Ok(())
    });
    case("mmio/ldr-post-index-gicd", || {
        let mut p = GICD;
        let (n, t) = trap_of(|| {
            // SAFETY: a post-indexed load from the emulated distributor.
            unsafe { asm!("ldr {v:w}, [{p}], #4", p = inout(reg) p, v = out(reg) _, options(nostack)) };
        });
        data_abort(n, t, GICD, false)?;
        check!(p == GICD, "the base register was written back: {p:#x}");
        Ok(())
    });
    case("mmio/ldr-pre-index-uart", || {
        let mut p = UART;
        let (n, t) = trap_of(|| {
            // SAFETY: a pre-indexed load of the emulated UART's UARTFR.
            unsafe { asm!("ldr {v:w}, [{p}, #0x18]!", p = inout(reg) p, v = out(reg) _, options(nostack)) };
        });
        data_abort(n, t, UART + 0x18, false)?;
        check!(p == UART, "the base register was written back: {p:#x}");
        Ok(())
    });
    case("mmio/str-post-index-uart", || {
        let mut p = UART + 0x44;
        let (n, t) = trap_of(|| {
            // SAFETY: a post-indexed store to UARTICR (writing 0 clears nothing).
            unsafe { asm!("str wzr, [{p}], #4", p = inout(reg) p, options(nostack)) };
        });
        data_abort(n, t, UART + 0x44, true)?;
        check!(p == UART + 0x44, "the base register was written back: {p:#x}");
        Ok(())
    });
    case("mmio/ldxr-gicd", || {
        let (n, t) = trap_of(|| {
            // SAFETY: an exclusive load from the emulated distributor.
            unsafe { asm!("ldxr {v:w}, [{p}]", "clrex", p = in(reg) GICD + 4, v = out(reg) _, options(nostack)) };
        });
        data_abort(n, t, GICD + 4, false)
    });
    case("mmio/ldxr-stxr-uart", || {
        let mut status = 7u64;
        let (n, t) = trap_of(|| {
            // SAFETY: an exclusive pair on the emulated UART's UARTICR.
            unsafe {
                asm!("ldxr {v:w}, [{p}]", "stxr {s:w}, wzr, [{p}]",
                    p = in(reg) UART + 0x44, v = out(reg) _, s = inout(reg) status, options(nostack))
            };
        });
        // The load aborts; the store then either aborts too or fails
        // (the monitor is open): nothing is written either way.
        check!(n >= 1 && t.ec() == 0x25 && t.fsc() == 0x10, "{n} exceptions, last ESR {:#x}", t.esr);
        check!(n == 2 || status == 1, "STXR reported success ({status}) without an abort");
        Ok(())
    });
    case("mmio/ldar-gicd", || {
        let plain = read(GICD + 4, 4);
        let mut v = 0u64;
        let (n, _) = trap_of(|| {
            // SAFETY: a load-acquire from GICD_TYPER (syndrome valid, AR).
            unsafe { asm!("ldar {v:w}, [{p}]", p = in(reg) GICD + 4, v = out(reg) v, options(nostack)) };
        });
        check!(n == 0, "{n} exceptions");
        check!(v == plain && v != 0, "LDAR read {v:#x}, LDR {plain:#x}");
        Ok(())
    });
    case("mmio/stlr-gicd", || {
        let a = GICD + 0x424;
        let (n, _) = trap_of(|| {
            // SAFETY: a store-release to IPRIORITYR9 (SPIs 36-39).
            unsafe { asm!("stlr {v:w}, [{p}]", p = in(reg) a, v = in(reg) 0xa0a0_a0a0u64, options(nostack)) };
        });
        check!(n == 0, "{n} exceptions");
        let now = read(a, 4);
        check!(now == 0xa0a0_a0a0, "IPRIORITYR9 reads {now:#x} after STLR of 0xa0a0a0a0");
        Ok(())
    });
    case("mmio/ldrsw-gicd", || {
        let mut v = 0u64;
        // SAFETY: a sign-extending word load of IPRIORITYR9 (0xa0a0a0a0).
        unsafe { asm!("ldrsw {v}, [{p}]", p = in(reg) GICD + 0x424, v = out(reg) v, options(nostack)) };
        check!(v == 0xffff_ffff_a0a0_a0a0, "LDRSW gave {v:#x}");
        Ok(())
    });
    case("mmio/ldrsb-uart", || {
        let (mut x, mut w) = (0u64, 0u64);
        // SAFETY: sign-extending byte loads of UARTPCellID3 (0xb1).
        unsafe {
            asm!("ldrsb {x}, [{p}]", "ldrsb {w:w}, [{p}]", p = in(reg) UART + 0xffc, x = out(reg) x, w = out(reg) w,
                options(nostack))
        };
        check!(x == 0xffff_ffff_ffff_ffb1, "LDRSB Xt gave {x:#x}");
        check!(w == 0xffff_ffb1, "LDRSB Wt gave {w:#x} (the upper word must be zero)");
        Ok(())
    });
    case("mmio/zero-register", || {
        let a = GICD + 0x424;
        // SAFETY: a store of WZR (register 31 is the zero register, not
        // SP) to IPRIORITYR9, and a load into WZR.
        unsafe { asm!("str wzr, [{p}]", "ldr wzr, [{p}]", p = in(reg) a, options(nostack)) };
        let now = read(a, 4);
        check!(now == 0, "IPRIORITYR9 reads {now:#x} after a store of WZR");
        Ok(())
    });
    case("mmio/uart-doubleword", || {
        let (n, t) = trap_of(|| {
            read(UART + 0x18, 8);
        });
        data_abort(n, t, UART + 0x18, false)
    });
    case("mmio/prfm-device", || {
        let (n, _) = trap_of(|| {
            // SAFETY: prefetch hints never fault.
            unsafe {
                asm!("prfm pldl1keep, [{a}]", "prfm pstl1keep, [{b}]", "prfm pldl1keep, [{c}]",
                    a = in(reg) GICD, b = in(reg) UART, c = in(reg) UNMAPPED, options(nostack))
            };
        });
        check!(n == 0, "{n} exceptions");
        Ok(())
    });
    case("mmio/dc-civac-device", || {
        let (n, t) = trap_of(|| {
            // SAFETY: cache maintenance by address on device pages and on
            // nothing: no data there to lose.
            unsafe {
                asm!("dc civac, {a}", "dc cvac, {b}", "dc civac, {c}", "dsb sy",
                    a = in(reg) GICD, b = in(reg) UART, c = in(reg) UNMAPPED, options(nostack))
            };
        });
        check!(n == 0, "{n} exceptions, last ESR {:#x}", t.esr);
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// The vGIC: every width on its registers (the GIC specifications allow
// byte and word on IPRIORITYR/ITARGETSR, word and doubleword on 64-bit
// registers, word elsewhere; other widths read as zero and ignore writes,
// as KVM does), out-of-range INTIDs, read-only registers, other vCPUs'
// redistributors, SGI registers.

/// Reads of `a` at every width: `want[i]` for 1, 2, 4, 8 bytes.
fn widths(a: u64, want: [Option<u64>; 4]) -> Outcome {
    for (i, size) in [1usize, 2, 4, 8].into_iter().enumerate() {
        let Some(w) = want[i] else { continue };
        let mut got = 0;
        let (n2, t2) = trap_of(|| got = read(a, size));
        check!(n2 == 0, "{size}-byte read of {a:#x}: exception ESR {:#x}", t2.esr);
        check!(got == w, "{size}-byte read of {a:#x}: {got:#x}, expected {w:#x}");
    }
    Ok(())
}

/// Writes at every width in `sizes` are ignored: `a` still reads `keep`
/// (word) afterwards, and none aborts.
fn ignored_writes(a: u64, sizes: &[usize], value: u64) -> Outcome {
    let keep = read(a, 4);
    for &size in sizes {
        let (n, t) = trap_of(|| write(a, size, value));
        check!(n == 0, "{size}-byte write of {a:#x}: exception ESR {:#x}", t.esr);
        let now = read(a, 4);
        check!(now == keep, "{size}-byte write of {value:#x} to {a:#x} changed it: {keep:#x} -> {now:#x}");
    }
    Ok(())
}

fn vgic() {
    let pidr2 = if v3() { GICD + 0xffe8 } else { GICD + 0xfe8 };
    case("vgic/ctlr-widths", || {
        let ctlr = read(GICD, 4);
        check!(ctlr & 1 != 0 || ctlr & 2 != 0, "GICD_CTLR {ctlr:#x}: not enabled");
        widths(GICD, [Some(0), Some(0), Some(ctlr), Some(0)])?;
        ignored_writes(GICD, &[1, 2, 8], 0)
    });
    case("vgic/typer-read-only", || {
        let typer = read(GICD + 4, 4);
        check!(typer & 0x1f == 8, "GICD_TYPER {typer:#x}: ITLinesNumber not 8 (288 lines)");
        widths(GICD + 4, [Some(0), Some(0), Some(typer), None])?;
        ignored_writes(GICD + 4, &[1, 2, 4], 0)
    });
    case("vgic/iidr-read-only", || ignored_writes(GICD + 8, &[1, 2, 4], 0xffff_ffff));
    case("vgic/pidr2-read-only", || {
        let v = read(pidr2, 4);
        check!((v >> 4) & 0xf == gic::version() as u64, "PIDR2 {v:#x}");
        widths(pidr2, [Some(0), Some(0), Some(v), None])?;
        ignored_writes(pidr2, &[1, 2, 4], 0)
    });
    case("vgic/isenabler-widths", || {
        let (set, clear) = (GICD + 0x104, GICD + 0x184); // SPIs 32-63
        write(clear, 4, 0x0000_ff00);
        ignored_writes(set, &[1, 2], 0xff)?;
        ignored_writes(set + 1, &[1], 0xff)?;
        write(set, 4, 1 << 8); // SPI 40
        let now = read(set, 4) & 0xff00;
        check!(now == 1 << 8, "ISENABLER1 {now:#x} after enabling SPI 40");
        widths(set, [Some(0), Some(0), None, None])?;
        write(clear, 4, 1 << 8);
        let now = read(set, 4) & 0xff00;
        check!(now == 0, "ISENABLER1 {now:#x} after disabling SPI 40");
        Ok(())
    });
    case("vgic/ipriorityr-widths", || {
        let a = GICD + 0x400 + 40; // SPIs 40-43
        write(a, 4, 0);
        write(a + 1, 1, 0x80);
        let now = read(a, 4);
        check!(now == 0x8000, "IPRIORITYR10 {now:#x} after a byte write of 0x80 to SPI 41");
        check!(read(a + 1, 1) == 0x80, "byte read of SPI 41's priority");
        widths(a, [Some(0), Some(0), Some(0x8000), Some(0)])?;
        ignored_writes(a, &[2], 0xa0a0)?;
        ignored_writes(a, &[8], 0xa0a0_a0a0_a0a0_a0a0)?;
        write(a, 4, 0);
        Ok(())
    });
    case("vgic/icfgr-widths", || {
        let a = GICD + 0xc08; // ICFGR2: SPIs 32-47
        let before = read(a, 4);
        ignored_writes(a, &[1, 2], 0xaa)?;
        write(a, 4, before | (2 << 16)); // SPI 40 edge
        let now = read(a, 4);
        check!(now & (3 << 16) == 2 << 16, "ICFGR2 {now:#x} after making SPI 40 edge-triggered");
        write(a, 4, before);
        Ok(())
    });
    if v3() {
        case("vgic/irouter-widths", || {
            let a = GICD + 0x6000 + 8 * 40;
            write(a, 8, 1); // vCPU 1
            widths(a, [Some(0), Some(0), Some(1), Some(1)])?;
            widths(a + 4, [None, None, Some(0), None])?;
            write(a, 4, 0);
            check!(read(a, 8) == 0, "IROUTER40 after a word write of 0: {:#x}", read(a, 8));
            ignored_writes(a, &[1, 2], 1)
        });
    } else {
        case("vgic/itargetsr-widths", || {
            let a = GICD + 0x800 + 40;
            write(a, 4, 0x0101_0101);
            write(a + 1, 1, 2);
            widths(a, [Some(1), Some(0), Some(0x0101_0201), Some(0)])?;
            ignored_writes(a, &[2, 8], 0x0202)?;
            write(a, 4, 0x0101_0101);
            Ok(())
        });
    }
    case("vgic/every-spi-pending-at-once", || {
        // All 256 SPIs enabled and made pending at once, to vCPU 0: more
        // than the list registers hold; each must be taken once.
        let v = me();
        for b in &v.spis {
            b.store(0, SeqCst);
        }
        rt::mask_irqs(true);
        for n in 1..9u64 {
            for i in 0..8u64 {
                write(GICD + 0x400 + n * 32 + i * 4, 4, 0xa0a0_a0a0);
                if !v3() {
                    write(GICD + 0x800 + n * 32 + i * 4, 4, 0x0101_0101);
                }
            }
            if v3() {
                for i in 0..32 {
                    write(GICD + 0x6000 + 8 * (n * 32 + i), 8, 0);
                }
            }
            write(GICD + 0x200 + 4 * n, 4, 0xffff_ffff); // ISPENDR
            write(GICD + 0x100 + 4 * n, 4, 0xffff_ffff); // ISENABLER
        }
        rt::mask_irqs(false);
        let all = |v: &rt::PerVcpu| {
            (1..9).all(|n| {
                let w = v.spis[n / 2].load(SeqCst);
                (if n % 2 == 0 { w } else { w >> 32 }) as u32 == u32::MAX
            })
        };
        let done = wait_for(2000, || all(v));
        for n in 1..9u64 {
            write(GICD + 0x180 + 4 * n, 4, 0xffff_ffff); // ICENABLER
            write(GICD + 0x280 + 4 * n, 4, 0xffff_ffff); // ICPENDR
            write(GICD + 0x380 + 4 * n, 4, 0xffff_ffff); // ICACTIVER
        }
        let taken = v.spi_count.load(SeqCst);
        check!(
            done,
            "not every SPI was taken ({taken} interrupts): {:#x?}",
            [
                v.spis[0].load(SeqCst),
                v.spis[1].load(SeqCst),
                v.spis[2].load(SeqCst),
                v.spis[3].load(SeqCst),
                v.spis[4].load(SeqCst)
            ]
        );
        Ok(())
    });
    case("vgic/out-of-range-intids", || {
        // 288 lines: INTIDs 288-1019 do not exist.
        let isenabler9 = GICD + 0x100 + 4 * 9;
        write(isenabler9, 4, 0xffff_ffff);
        widths(isenabler9, [None, None, Some(0), None])?;
        write(GICD + 0x400 + 300, 1, 0xa0);
        widths(GICD + 0x400 + 300, [Some(0), None, Some(0), None])?;
        write(GICD + 0x400 + 1016, 4, 0xa0a0_a0a0);
        widths(GICD + 0x400 + 1016, [None, None, Some(0), None])?;
        if v3() {
            let r = GICD + 0x6000 + 8 * 300;
            write(r, 8, 1);
            widths(r, [None, None, Some(0), Some(0)])
        } else {
            write(GICD + 0x800 + 300, 1, 1);
            widths(GICD + 0x800 + 300, [Some(0), None, Some(0), None])
        }
    });
    case("vgic/reserved-offsets", || {
        for off in [0x8000u64, 0xc000, 0x0f04, 0x0040] {
            let (n, t) = trap_of(|| write(GICD + off, 4, 0xffff_ffff));
            check!(n == 0, "write to GICD+{off:#x}: ESR {:#x}", t.esr);
            widths(GICD + off, [None, None, Some(0), None])?;
        }
        Ok(())
    });
    if v3() {
        case("vgic/gicd-private-registers-v3", || {
            // With affinity routing, INTIDs 0-31 live in the redistributors:
            // the distributor's registers for them are RAZ/WI.
            write(GICD + 0x100, 4, 0xffff_ffff);
            widths(GICD + 0x100, [None, None, Some(0), None])?;
            write(GICD + 0x400, 4, 0x8080_8080);
            widths(GICD + 0x400, [None, None, Some(0), None])
        });
        case("vgic/ctlr-are-rao", || {
            let ctlr = read(GICD, 4);
            write(GICD, 4, 2); // ARE clear
            let now = read(GICD, 4);
            write(GICD, 4, ctlr);
            check!(now & (1 << 4) != 0, "GICD_CTLR.ARE cleared by a write: {now:#x}");
            Ok(())
        });
        case("vgic/other-redistributor", || {
            // vCPU 0 writes vCPU 1's PPI 20 priority in vCPU 1's frame.
            let theirs = gic::gicr(1) + gic::SGI_BASE + 0x400 + 20;
            let mine = gic::gicr(0) + gic::SGI_BASE + 0x400 + 20;
            write(mine, 1, 0x10);
            write(theirs, 1, 0x40);
            check!(read(mine, 1) == 0x10, "vCPU 0's own PPI 20 priority changed: {:#x}", read(mine, 1));
            let seen = command(1, CMD_READ_BYTE | (theirs << 8), 500);
            check!(seen == Some(0x40), "vCPU 1 reads {seen:x?} in its frame");
            let typer = read(gic::gicr(1) + 8, 8);
            check!(typer >> 32 == 1 && (typer >> 8) & 0xffff == 1, "vCPU 1's GICR_TYPER {typer:#x}");
            Ok(())
        });
        case("vgic/redistributor-of-no-vcpu", || {
            // Past the last vCPU's frame (the one with GICR_TYPER.Last):
            // nothing, neither emulated nor the physical redistributor of
            // another CPU. An abort.
            let a = gic::gicr(nvcpus()) + 8;
            let mut v = 0;
            let (n, t) = trap_of(|| v = read(a, 8));
            check!(n == 1, "GICR_TYPER past the last vCPU read {v:#x} without an abort");
            data_abort(n, t, a, false)
        });
        case("vgic/gicd-sgir-v3", || {
            // GICD_SGIR is WI under affinity routing: no SGI.
            let before = me().irqs[7].load(SeqCst);
            write(GICD + 0xf00, 4, (2 << 24) | 7);
            let got = wait_for(50, || me().irqs[7].load(SeqCst) != before);
            check!(!got, "an SGI came from GICD_SGIR with ARE set");
            Ok(())
        });
        case("vgic/sgi1r-no-such-target", || {
            let before: u32 = (0..nvcpus()).map(|v| VCPUS[v].irqs[8].load(SeqCst)).sum();
            for value in [(8u64 << 24) | (7 << 16) | 1, (8 << 24) | (15 << 44) | 1, (8 << 24) | (0xff << 48) | 1] {
                let (n, t) = trap_of(|| {
                    // SAFETY: ICC_SGI1R_EL1 with targets that do not exist.
                    unsafe { asm!("msr S3_0_C12_C11_5, {}", "isb", in(reg) value, options(nostack)) };
                });
                check!(n == 0, "ICC_SGI1R_EL1 {value:#x}: ESR {:#x}", t.esr);
            }
            let after = wait_for(50, || (0..nvcpus()).map(|v| VCPUS[v].irqs[8].load(SeqCst)).sum::<u32>() != before);
            check!(!after, "an SGI reached a vCPU it did not target");
            Ok(())
        });
        case("vgic/icc-sgi1r-read", || {
            // A write-only register: reading it is UNDEFINED.
            undef("MRS ICC_SGI1R_EL1", || {
                let _ = mrs!("S3_0_C12_C11_5");
            })
        });
        for (name, enc) in [("vgic/icc-sgi0r", 0), ("vgic/icc-asgi1r", 1)] {
            case(name, || {
                // Group 0 SGIs (KVM: with one security state, ASGI1R is
                // Group 0 too): the guest's SGIs are Group 1, so nothing
                // is delivered; the register exists, so no UNDEF.
                let before = me().irqs[9].load(SeqCst);
                let value = (9u64 << 24) | 1; // SGI 9 to vCPU 0 (itself)
                let (n, t) = trap_of(|| {
                    // SAFETY: ICC_SGI0R_EL1 / ICC_ASGI1R_EL1 (trapped).
                    unsafe {
                        if enc == 0 {
                            asm!("msr S3_0_C12_C11_7, {}", "isb", in(reg) value, options(nostack));
                        } else {
                            asm!("msr S3_0_C12_C11_6, {}", "isb", in(reg) value, options(nostack));
                        }
                    }
                });
                check!(n == 0, "UNDEF (ESR {:#x}) for a GICv3 register", t.esr);
                let got = wait_for(50, || me().irqs[9].load(SeqCst) != before);
                check!(!got, "a Group 0 SGI was delivered as Group 1");
                Ok(())
            });
        }
    } else {
        case("vgic/banked-private-registers-v2", || {
            // PPI 20's priority is banked: vCPU 1 does not see vCPU 0's.
            let a = GICD + 0x400 + 20;
            write(a, 1, 0x40);
            check!(read(a, 1) == 0x40, "vCPU 0 reads {:#x}", read(a, 1));
            let seen = command(1, CMD_READ_BYTE | (a << 8), 500);
            check!(seen.is_some() && seen != Some(0x40), "vCPU 1 reads {seen:x?}: vCPU 0's banked value");
            Ok(())
        });
        case("vgic/sgir-no-such-target", || {
            let before: u32 = (0..nvcpus()).map(|v| VCPUS[v].irqs[8].load(SeqCst)).sum();
            // Targets 7 (no such vCPU with fewer than 8), and filter 3
            // (reserved).
            write(GICD + 0xf00, 4, (0x80 << 16) | 8);
            write(GICD + 0xf00, 4, (3 << 24) | (1 << 16) | 8);
            let after = wait_for(50, || (0..nvcpus()).map(|v| VCPUS[v].irqs[8].load(SeqCst)).sum::<u32>() != before);
            check!(!after, "an SGI was delivered");
            Ok(())
        });
        case("vgic/icc-registers-without-gicv3", || {
            // No GICv3 CPU interface: its system registers UNDEF.
            let (n, t) = trap_of(|| {
                // SAFETY: ICC_SGI1R_EL1, which does not exist here.
                unsafe { asm!("msr S3_0_C12_C11_5, {}", in(reg) 1u64, options(nostack)) };
            });
            check!(n == 1 && t.esr >> 26 == 0, "{n} exceptions, ESR {:#x}: expected an UNDEF (EC 0)", t.esr);
            Ok(())
        });
    }
}

// ---------------------------------------------------------------------------
// SMC and HVC: function IDs of every owning entity, fast and yielding,
// SMC32 and SMC64, answer NOT_SUPPORTED (-1) with x4-x17 preserved.

fn smccc() {
    // (name, owning entity, function number): numbers nothing implements.
    const ENTITIES: [(&str, u64); 9] = [
        ("arm-arch", 0),
        ("cpu", 1),
        ("sip", 2),
        ("oem", 3),
        ("standard-secure", 4),
        ("standard-hypervisor", 5),
        ("vendor-hypervisor", 6),
        ("trusted-app", 48),
        ("trusted-os", 50),
    ];
    for smc_conduit in [false, true] {
        for (entity, owner) in ENTITIES {
            let name = rt::Detail::new(format_args!("smccc/{}-{entity}", if smc_conduit { "smc" } else { "hvc" }));
            case(name.as_str(), || {
                for (kind, bits) in
                    [("fast32", 0x8000_0000u64), ("fast64", 0xc000_0000), ("yield32", 0), ("yield64", 0x4000_0000)]
                {
                    let id = bits | (owner << 24) | 0xfe7f;
                    let (r, kept) =
                        if smc_conduit { rt::call::<true>([id, 1, 2, 3]) } else { rt::call::<false>([id, 1, 2, 3]) };
                    let ok = if bits & 0x4000_0000 == 0 {
                        r[0] as u32 == NOT_SUPPORTED as u32
                    } else {
                        r[0] == NOT_SUPPORTED
                    };
                    check!(ok, "{kind} {id:#x}: x0 = {:#x}, expected -1 (NOT_SUPPORTED)", r[0]);
                    check!(kept, "{kind} {id:#x}: x4-x17 not preserved");
                }
                Ok(())
            });
        }
    }
    case("smccc/reserved-fast-bits", || {
        // Fast calls must have bits 23:16 zero.
        let r = hvc([0x8400_0000 | (0x5a << 16), 0, 0, 0]);
        check!(r[0] as u32 == NOT_SUPPORTED as u32, "x0 = {:#x}", r[0]);
        Ok(())
    });
    case("smccc/function-id-is-w0", || {
        let r = hvc([0xdead_beef_0000_0000 | PSCI_VERSION, 0, 0, 0]);
        check!(r[0] == 0x10001, "PSCI_VERSION with junk in x0[63:32]: {:#x}", r[0]);
        Ok(())
    });
    case("smccc/smc-conduit-psci", || {
        let r = smc([PSCI_VERSION, 0, 0, 0]);
        check!(r[0] == 0x10001, "PSCI_VERSION through SMC: {:#x}", r[0]);
        Ok(())
    });
    case("smccc/version-and-features", || {
        let v = hvc([SMCCC_VERSION, 0, 0, 0])[0];
        check!(v >= 0x10001 && v >> 31 == 0, "SMCCC_VERSION {v:#x}");
        for (id, want) in [(SMCCC_VERSION, SUCCESS), (0x8000_00ff, NOT_SUPPORTED), (0xc600_0000, NOT_SUPPORTED)] {
            let r = hvc([SMCCC_ARCH_FEATURES, id, 0, 0])[0];
            check!(r as u32 == want as u32, "SMCCC_ARCH_FEATURES({id:#x}) = {r:#x}");
        }
        Ok(())
    });
    case("smccc/hvc-nonzero-immediate", || {
        let mut x0 = 0x8600_ff7fu64;
        // SAFETY: an HVC with an immediate SMCCC does not use.
        unsafe { asm!("hvc #0x1234", inout("x0") x0, out("x1") _, out("x2") _, out("x3") _, options(nostack)) };
        check!(x0 as u32 == NOT_SUPPORTED as u32, "x0 = {x0:#x}");
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// PSCI misuse.

fn psci() {
    case("psci/cpu-on-no-such-cpu", || {
        for target in [0x80u64, 0x100, 0xff_0000_0000, 0x8000_007f] {
            let r = hvc([CPU_ON_64, target, rt::secondary_entry(), 0])[0];
            check!(r == INVALID_PARAMETERS, "CPU_ON {target:#x}: {r:#x}, expected INVALID_PARAMETERS");
        }
        let r = hvc([CPU_ON_32, 0x20, rt::secondary_entry(), 0])[0];
        check!(r as u32 == INVALID_PARAMETERS as u32, "CPU_ON_32 0x20: {r:#x}");
        Ok(())
    });
    case("psci/cpu-on-self", || {
        let r = hvc([CPU_ON_64, 0, rt::secondary_entry(), 0])[0];
        check!(r == ALREADY_ON, "CPU_ON of itself: {r:#x}, expected ALREADY_ON");
        Ok(())
    });
    case("psci/cpu-on-running", || {
        let r = hvc([CPU_ON_64, 1, rt::secondary_entry(), 1])[0];
        check!(r == ALREADY_ON, "CPU_ON of running vCPU 1: {r:#x}, expected ALREADY_ON");
        Ok(())
    });
    // vCPU 1 off, for the checks that need a vCPU that is OFF.
    let last = nvcpus() - 1;
    let off = {
        VCPUS[last].cmd.store(CMD_OFF, SeqCst);
        wait_for(1000, || hvc([AFFINITY_INFO_64, last as u64, 0, 0])[0] == 1)
    };
    case("psci/cpu-off-affinity-info", || {
        check!(off, "vCPU {last} is not OFF after CPU_OFF");
        Ok(())
    });
    let entry = rt::secondary_entry();
    for (name, bad) in [
        ("psci/cpu-on-entry-unmapped", UNMAPPED),
        ("psci/cpu-on-entry-hypervisor-memory", ram_end()),
        ("psci/cpu-on-entry-beyond-ipa-space", BEYOND_IPA),
        ("psci/cpu-on-entry-misaligned", entry + 2),
    ] {
        case(name, || {
            let r = hvc([CPU_ON_64, last as u64, bad, 0])[0];
            check!(r == INVALID_ADDRESS, "CPU_ON at {bad:#x}: {r:#x}, expected INVALID_ADDRESS");
            let state = hvc([AFFINITY_INFO_64, last as u64, 0, 0])[0];
            check!(state == 1, "the refused CPU_ON left vCPU {last} in state {state:#x}, not OFF");
            Ok(())
        });
    }
    case("psci/cpu-on-32-upper-bits", || {
        // SMC32: only w1-w3 count; the upper halves are junk.
        let hb = VCPUS[last].heartbeat.load(SeqCst);
        let r = hvc([CPU_ON_32, (0xdead << 32) | last as u64, (0xffff_ffff << 32) | entry, (0xbeef << 32) | 0x77])[0];
        check!(r as u32 == 0, "CPU_ON_32: {r:#x}");
        check!(wait_for(1000, || VCPUS[last].heartbeat.load(SeqCst) > hb), "vCPU {last} did not start");
        let ctx = VCPUS[last].context.load(SeqCst);
        check!(ctx == 0x77, "vCPU {last} started with context {ctx:#x}, expected 0x77");
        Ok(())
    });
    case("psci/affinity-info-misuse", || {
        for (args, want) in [
            ([AFFINITY_INFO_64, 0x80, 0, 0], INVALID_PARAMETERS),
            ([AFFINITY_INFO_64, 0, 1, 0], INVALID_PARAMETERS),
            ([AFFINITY_INFO_64, 0, 0xffff, 0], INVALID_PARAMETERS),
            ([AFFINITY_INFO_64, 0, 0, 0], 0),
            ([AFFINITY_INFO_32, 0xffff_ffff_0000_0000, 0, 0], 0),
        ] {
            let r = hvc(args)[0];
            check!(
                r as u32 == want as u32,
                "AFFINITY_INFO({:#x}, {:#x}): {r:#x}, expected {want:#x}",
                args[1],
                args[2]
            );
        }
        Ok(())
    });
    case("psci/cpu-suspend-any-state", || {
        for state in [0u64, 0x1_0000, 0xffff_ffff] {
            for id in [CPU_SUSPEND_32, CPU_SUSPEND_64] {
                let r = hvc([id, state, 0, 0])[0];
                check!(r as u32 == 0 || r as u32 == INVALID_PARAMETERS as u32, "CPU_SUSPEND({state:#x}): {r:#x}");
            }
        }
        Ok(())
    });
    case("psci/migrate-info-type", || {
        let r = hvc([MIGRATE_INFO_TYPE, 0, 0, 0])[0];
        check!(r == 2, "MIGRATE_INFO_TYPE: {r:#x}, expected 2 (no migration needed)");
        Ok(())
    });
    case("psci/features-mandatory", || {
        for id in [
            PSCI_VERSION,
            CPU_SUSPEND_32,
            CPU_SUSPEND_64,
            CPU_OFF,
            CPU_ON_32,
            CPU_ON_64,
            AFFINITY_INFO_32,
            AFFINITY_INFO_64,
            SYSTEM_OFF,
            SYSTEM_RESET,
            PSCI_FEATURES,
            SMCCC_VERSION,
        ] {
            let r = hvc([PSCI_FEATURES, id, 0, 0])[0];
            check!((r as i32) >= 0, "PSCI_FEATURES({id:#x}) = {r:#x}");
        }
        for id in [0x1234_5678u64, 0xc400_001f, 0x8400_00ff] {
            let r = hvc([PSCI_FEATURES, id, 0, 0])[0];
            check!(r as u32 == NOT_SUPPORTED as u32, "PSCI_FEATURES({id:#x}) = {r:#x}");
        }
        Ok(())
    });
    // Optional calls: if PSCI_FEATURES says NOT_SUPPORTED, so must the call.
    const OPTIONAL: [(&str, u64, u64); 12] = [
        ("migrate", MIGRATE_32, MIGRATE_64),
        ("migrate-info-up-cpu", MIGRATE_INFO_UP_CPU_32, MIGRATE_INFO_UP_CPU_64),
        ("cpu-freeze", 0x8400_000b, 0x8400_000b),
        ("cpu-default-suspend", 0x8400_000c, 0xc400_000c),
        ("node-hw-state", 0x8400_000d, 0xc400_000d),
        ("system-suspend", 0x8400_000e, 0xc400_000e),
        ("psci-set-suspend-mode", 0x8400_000f, 0x8400_000f),
        ("psci-stat-residency", 0x8400_0010, 0xc400_0010),
        ("psci-stat-count", 0x8400_0011, 0xc400_0011),
        ("system-reset2", 0x8400_0012, 0xc400_0012),
        ("mem-protect", 0x8400_0013, 0x8400_0013),
        ("mem-protect-check-range", 0x8400_0014, 0xc400_0014),
    ];
    for (what, id32, id64) in OPTIONAL {
        let name = rt::Detail::new(format_args!("psci/{what}"));
        case(name.as_str(), || {
            for id in [id32, id64] {
                let f = hvc([PSCI_FEATURES, id, 0, 0])[0];
                if f as u32 != NOT_SUPPORTED as u32 {
                    // Implemented: not called here (it may suspend or reset).
                    continue;
                }
                let r = hvc([id, 0, rt::secondary_entry(), 0])[0];
                check!(
                    r as u32 == NOT_SUPPORTED as u32,
                    "{id:#x}: PSCI_FEATURES says NOT_SUPPORTED, the call returned {r:#x}"
                );
            }
            Ok(())
        });
    }
}

// ---------------------------------------------------------------------------
// System registers and instructions: emulated, native, or UNDEF (EC 0),
// never anything else.

/// Runs `f`: no exception, or exactly an UNDEF (ESR EC 0, IL 1).
fn ok_or_undef(what: &str, f: impl FnOnce()) -> Outcome {
    let (n, t) = trap_of(f);
    check!(n == 0 || n == 1 && t.esr == 1 << 25, "{what}: {n} exceptions, ESR {:#x}", t.esr);
    Ok(())
}

/// Runs `f`: exactly one UNDEF.
fn undef(what: &str, f: impl FnOnce()) -> Outcome {
    let (n, t) = trap_of(f);
    check!(n == 1 && t.ec() == 0, "{what}: {n} exceptions, ESR {:#x}, expected an UNDEF (EC 0)", t.esr);
    Ok(())
}

macro_rules! id_regs {
    ($crm:literal) => {
        [
            mrs!(concat!("S3_0_C0_C", $crm, "_0")),
            mrs!(concat!("S3_0_C0_C", $crm, "_1")),
            mrs!(concat!("S3_0_C0_C", $crm, "_2")),
            mrs!(concat!("S3_0_C0_C", $crm, "_3")),
            mrs!(concat!("S3_0_C0_C", $crm, "_4")),
            mrs!(concat!("S3_0_C0_C", $crm, "_5")),
            mrs!(concat!("S3_0_C0_C", $crm, "_6")),
            mrs!(concat!("S3_0_C0_C", $crm, "_7")),
        ]
    };
}

fn sysregs() {
    case("sysreg/id-space", || {
        // The whole ID space (op0 3, op1 0, CRn 0, CRm 1-7): defined or
        // reserved-RAZ, never an UNDEF; and the cache and main IDs.
        let (n, t) = trap_of(|| {
            let _ = (id_regs!("1"), id_regs!("2"), id_regs!("3"), id_regs!("4"));
            let _ = (id_regs!("5"), id_regs!("6"), id_regs!("7"));
            let _ = (mrs!("midr_el1"), mrs!("revidr_el1"), mrs!("aidr_el1"), mrs!("ctr_el0"), mrs!("dczid_el0"));
            let _ = (mrs!("clidr_el1"), mrs!("ccsidr_el1"), mrs!("csselr_el1"));
        });
        check!(n == 0, "{n} exceptions, last ESR {:#x} at {:#x}", t.esr, t.elr);
        let pfr0 = mrs!("id_aa64pfr0_el1");
        check!(pfr0 & 0xf != 0, "ID_AA64PFR0_EL1 {pfr0:#x}: no EL0");
        Ok(())
    });
    case("sysreg/mpidr-is-virtual", || {
        let m = mrs!("mpidr_el1");
        check!(m & 0xff == 0 && m & (1 << 31) != 0, "MPIDR_EL1 {m:#x}");
        Ok(())
    });
    case("sysreg/dc-set-way", || {
        let (n, t) = trap_of(|| {
            for sw in [0u64, 2, 0x8000_0002, 0x4000_0040, 0xffff_fffe] {
                // SAFETY: set/way maintenance (the hypervisor sets SWIO:
                // an invalidate cleans too, nothing of others is lost).
                unsafe { asm!("dc isw, {0}", "dc csw, {0}", "dc cisw, {0}", in(reg) sw, options(nostack)) };
            }
            // SAFETY: a barrier.
            unsafe { asm!("dsb sy", options(nostack)) };
        });
        check!(n == 0, "{n} exceptions, ESR {:#x}", t.esr);
        Ok(())
    });
    case("sysreg/tlb-and-icache", || {
        let (n, t) = trap_of(|| {
            // SAFETY: TLB and I-cache maintenance of the guest's own regime.
            unsafe {
                asm!("tlbi vmalle1is", "tlbi vae1is, {0}", "tlbi aside1, xzr", "ic ialluis", "ic iallu", "dsb sy", "isb",
                    in(reg) 0u64, options(nostack))
            };
        });
        check!(n == 0, "{n} exceptions, ESR {:#x}", t.esr);
        Ok(())
    });
    case("sysreg/debug-registers", || {
        // Each access on its own: native, emulated or an UNDEF.
        for (what, f) in [
            ("MDSCR_EL1", (|| msr!("mdscr_el1", mrs!("mdscr_el1"))) as fn()),
            ("DBGBVR0_EL1 write", || msr!("dbgbvr0_el1", 0x1000u64)),
            ("DBGBCR0_EL1 write", || msr!("dbgbcr0_el1", 0u64)),
            ("DBGBVR0_EL1", || {
                let _ = mrs!("dbgbvr0_el1");
            }),
            ("DBGWVR0_EL1 write", || msr!("dbgwvr0_el1", 0x1000u64)),
            ("DBGWCR0_EL1 write", || msr!("dbgwcr0_el1", 0u64)),
            ("OSLAR_EL1 write", || msr!("oslar_el1", 0u64)),
            ("OSLSR_EL1", || {
                let _ = mrs!("oslsr_el1");
            }),
            ("OSDLR_EL1 write", || msr!("osdlr_el1", 0u64)),
            ("MDCCSR_EL0", || {
                let _ = mrs!("mdccsr_el0");
            }),
            ("DBGCLAIMCLR_EL1", || {
                let _ = mrs!("dbgclaimclr_el1");
            }),
            ("DBGCLAIMSET_EL1 write", || msr!("dbgclaimset_el1", 0u64)),
            ("MDRAR_EL1", || {
                let _ = mrs!("mdrar_el1");
            }),
        ] {
            ok_or_undef(what, f)?;
        }
        Ok(())
    });
    case("sysreg/pmu-registers", || {
        for (what, f) in [
            ("PMCR_EL0", (|| msr!("pmcr_el0", mrs!("pmcr_el0") & !1)) as fn()),
            ("PMCCNTR_EL0", || {
                let _ = mrs!("pmccntr_el0");
            }),
            ("PMCCNTR_EL0 write", || msr!("pmccntr_el0", 0u64)),
            ("PMCNTENCLR_EL0 write", || msr!("pmcntenclr_el0", 0xffff_ffffu64)),
            ("PMSELR_EL0 write", || msr!("pmselr_el0", 0u64)),
            ("PMXEVTYPER_EL0", || {
                let _ = mrs!("pmxevtyper_el0");
            }),
            ("PMXEVCNTR_EL0", || {
                let _ = mrs!("pmxevcntr_el0");
            }),
            ("PMCEID0_EL0", || {
                let _ = mrs!("pmceid0_el0");
            }),
            ("PMEVCNTR30_EL0", || {
                let _ = mrs!("pmevcntr30_el0");
            }),
            ("PMUSERENR_EL0", || {
                let _ = mrs!("pmuserenr_el0");
            }),
            ("PMINTENSET_EL1", || {
                let _ = mrs!("pmintenset_el1");
            }),
            ("PMOVSCLR_EL0", || {
                let _ = mrs!("pmovsclr_el0");
            }),
        ] {
            ok_or_undef(what, f)?;
        }
        Ok(())
    });
    case("sysreg/implementation-defined", || {
        for (what, f) in [
            (
                "S3_1_C15_C2_0",
                (|| {
                    let _ = mrs!("S3_1_C15_C2_0");
                }) as fn(),
            ),
            ("S3_1_C15_C2_1", || {
                let _ = mrs!("S3_1_C15_C2_1");
            }),
            ("S3_1_C11_C0_2", || {
                let _ = mrs!("S3_1_C11_C0_2");
            }),
            ("S3_0_C15_C0_0", || {
                let _ = mrs!("S3_0_C15_C0_0");
            }),
            ("S3_7_C15_C15_7", || {
                let _ = mrs!("S3_7_C15_C15_7");
            }),
            ("S3_7_C11_C15_7 write", || msr!("S3_7_C11_C15_7", 0u64)),
            ("S3_3_C15_C9_4", || {
                let _ = mrs!("S3_3_C15_C9_4");
            }),
        ] {
            ok_or_undef(what, f)?;
        }
        Ok(())
    });
    case("sysreg/el2-and-el3-registers", || {
        undef("HCR_EL2", || {
            let _ = mrs!("S3_4_C1_C1_0");
        })?;
        undef("VTTBR_EL2", || {
            let _ = mrs!("S3_4_C2_C1_0");
        })?;
        undef("VBAR_EL2 write", || msr!("S3_4_C12_C0_0", 0u64))?;
        undef("SCR_EL3", || {
            let _ = mrs!("S3_6_C1_C1_0");
        })?;
        undef("ICH_HCR_EL2", || {
            let _ = mrs!("S3_4_C12_C11_0");
        })
    });
    case("insn/undefined-and-breakpoints", || {
        undef("UDF", || {
            // SAFETY: a permanently undefined instruction.
            unsafe { asm!("udf #0x5a", options(nostack)) };
        })?;
        undef("HLT", || {
            // SAFETY: HLT with halting debug off: UNDEF.
            unsafe { asm!("hlt #0", options(nostack)) };
        })?;
        let (n, t) = trap_of(|| {
            // SAFETY: a breakpoint instruction, taken at EL1.
            unsafe { asm!("brk #0x77", options(nostack)) };
        });
        check!(n == 1 && t.ec() == 0x3c && t.esr & 0xffff == 0x77, "BRK: {n} exceptions, ESR {:#x}", t.esr);
        Ok(())
    });
    case("insn/eret-to-el2", || {
        // An ERET from EL1 to "EL2" is an illegal exception return: it
        // stays at EL1 with PSTATE.IL set, and the next instruction takes
        // an Illegal State exception (EC 0x0e).
        let (n, t) = trap_of(|| {
            // SAFETY: ELR/SPSR point the return at the next instruction
            // with SPSR.M = EL2h (illegal from EL1).
            unsafe {
                asm!("mrs {s}, spsr_el1", "adr {t}, 1f", "msr elr_el1, {t}", "mov {t}, #0x349", "msr spsr_el1, {t}",
                    "eret", "1: nop", "msr spsr_el1, {s}", s = out(reg) _, t = out(reg) _, options(nostack))
            };
        });
        check!(n == 1 && t.ec() == 0x0e, "{n} exceptions, ESR {:#x}, expected an Illegal State exception", t.esr);
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// WFI and WFE storms: native (not trapped), the vCPU and the others carry on.

fn wfx() {
    case("wfx/wfe-storm", || {
        let start = rt::counter();
        for _ in 0..200_000 {
            // SAFETY: SEV sets the event register, so WFE returns at once.
            unsafe { asm!("sev", "wfe", options(nomem, nostack)) };
        }
        let ms = (rt::counter() - start) * 1000 / rt::frequency();
        check!(ms < 10_000, "200000 SEV+WFE took {ms} ms");
        Ok(())
    });
    case("wfx/wfe-event-stream", || {
        // The virtual counter's event stream (CNTKCTL_EL1.EVNTEN, bit 10 of
        // the counter: every ~16 us at 62.5 MHz) wakes bare WFEs.
        let old = mrs!("cntkctl_el1");
        msr!("cntkctl_el1", old | (1 << 2) | (10 << 4));
        let start = rt::counter();
        for _ in 0..2000 {
            // SAFETY: waits for an event.
            unsafe { asm!("wfe", options(nomem, nostack)) };
        }
        msr!("cntkctl_el1", old);
        let ms = (rt::counter() - start) * 1000 / rt::frequency();
        check!(ms < 10_000, "2000 WFEs took {ms} ms");
        Ok(())
    });
    case("wfx/wfi-storm-pending-masked", || {
        // An SGI to itself with IRQs masked: pending, so every WFI returns
        // at once; unmasked, it is taken exactly once.
        let c = &me().irqs[3];
        let before = c.load(SeqCst);
        rt::mask_irqs(true);
        gic::send_sgi(0, 3);
        for _ in 0..100_000 {
            // SAFETY: waits for an interrupt (one is pending).
            unsafe { asm!("wfi", options(nomem, nostack)) };
        }
        let during = c.load(SeqCst) - before;
        rt::mask_irqs(false);
        let taken = wait_for(100, || c.load(SeqCst) - before >= 1);
        let after = c.load(SeqCst) - before;
        check!(during == 0, "{during} SGIs taken with IRQs masked");
        check!(taken && after == 1, "the pending SGI was taken {after} times after unmasking");
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// An SGI storm: a million SGIs from vCPU 0 to vCPU 1, which takes them and
// keeps working.

/// SGIs in the storm: a million, through GICv3's trapped `ICC_SGI1R_EL1`
/// (about 10-20 s under TCG) or GICv2's emulated `GICD_SGIR` (each a
/// trapped MMIO write, decoded, with the list registers folded and
/// refilled: about 70 s).
fn storm_sgis() -> u32 {
    1_000_000
}

fn storm() {
    case("storm/sgis", || {
        let target = &VCPUS[1];
        let (sgis0, hb0) = (target.irqs[2].load(SeqCst), target.heartbeat.load(SeqCst));
        let storm = storm_sgis();
        let start = rt::counter();
        for i in 1..=storm {
            gic::send_sgi(1, 2);
            if i % 100_000 == 0 {
                let ms = (rt::counter() - start) * 1000 / rt::frequency();
                println!("storm: {i} SGIs sent in {ms} ms");
            }
        }
        let ms = (rt::counter() - start) * 1000 / rt::frequency();
        let (sgis, hb) = (target.irqs[2].load(SeqCst) - sgis0, target.heartbeat.load(SeqCst) - hb0);
        println!("storm: {storm} SGIs sent in {ms} ms; vCPU 1 took {sgis} and its heartbeat advanced {hb}");
        check!(sgis >= 1 && sgis <= storm, "vCPU 1 took {sgis} SGIs");
        check!(hb > 1000, "vCPU 1's heartbeat advanced only {hb} during the storm");
        // Afterwards, one more SGI arrives promptly.
        let c = target.irqs[4].load(SeqCst);
        gic::send_sgi(1, 4);
        check!(wait_for(200, || target.irqs[4].load(SeqCst) == c + 1), "the SGI after the storm did not arrive");
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// A vCPU spinning with every exception masked: the others carry on, and
// the SGI sent meanwhile arrives once it unmasks.

fn spin_masked() {
    case("spin/masked-vcpu", || {
        let target = &VCPUS[1];
        let c = target.irqs[5].load(SeqCst);
        target.cmd.store(CMD_SPIN_MASKED | (3000 << 8), SeqCst);
        println!("hostile: vCPU 1 spins with interrupts masked for 3 s");
        wait_for(20, || false);
        gic::send_sgi(1, 5);
        // vCPU 0 carries on: hypercalls and time pass.
        let mut calls = 0u32;
        let start = rt::counter();
        while target.cmd.load(SeqCst) != 0 && rt::counter() - start < rt::frequency() * 10 {
            check!(hvc([PSCI_VERSION, 0, 0, 0])[0] == 0x10001, "PSCI_VERSION failed during the spin");
            calls += 1;
        }
        check!(target.cmd.load(SeqCst) == 0, "vCPU 1 did not finish its spin within 10 s");
        let spins = target.result.load(SeqCst);
        check!(calls > 100, "vCPU 0 made only {calls} hypercalls while vCPU 1 spun");
        let during = target.spin_irqs.load(SeqCst);
        check!(during == 0, "vCPU 1 took {during} interrupts with interrupts masked");
        check!(wait_for(200, || target.irqs[5].load(SeqCst) == c + 1), "the SGI sent during the spin never arrived");
        println!("spin: vCPU 1 spun {spins} times, vCPU 0 made {calls} hypercalls meanwhile");
        Ok(())
    });
}
