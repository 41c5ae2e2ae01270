//! ARMv7-A with the virtualization extensions: the hypervisor runs in HYP
//! mode (PL2) with its own translation regime; guests run in the PL1/PL0
//! modes.
//!
//! The entry stub is `boot/armv7/head.S`, included here; the HYP exception
//! vectors there call into [`exception`]. Everything is A32 (ARM) code:
//! `armv7a-none-eabi` does not generate Thumb, and the vectors rely on it.
//!
//! HYP-mode system registers are reached through the `aarch32-cpu` crate;
//! the few accesses it does not wrap (ELR_hyp, HSR/HDFAR/HIFAR at exception
//! entry) are in the assembly stub.

pub mod exception;

use super::Privilege;
use crate::dt::Conduit;
use aarch32_cpu::register::{Cntfrq, CntPct, Cpsr, Hsctlr};
use core::arch::{asm, global_asm};

// `raw`: the file is assembly as written (register lists use braces, which
// would otherwise be read as format arguments).
global_asm!(include_str!("../../../boot/armv7/head.S"), options(raw));

/// Architecture name for the log.
pub const NAME: &str = "armv7";

/// CPSR.M values (processor modes), as the stub passes them at entry.
mod mode {
    pub const USR: usize = 0x10;
    pub const FIQ: usize = 0x11;
    pub const IRQ: usize = 0x12;
    pub const SVC: usize = 0x13;
    pub const MON: usize = 0x16;
    pub const ABT: usize = 0x17;
    pub const HYP: usize = 0x1a;
    pub const UND: usize = 0x1b;
    pub const SYS: usize = 0x1f;
    /// CPSR bits [4:0].
    pub const MASK: usize = 0x1f;
}

/// The processor mode the CPU is in now.
pub fn privilege() -> Privilege {
    match Cpsr::read().raw_value() as usize & mode::MASK {
        mode::HYP => Privilege { is_hyp: true, text: "mode=HYP (PL2)" },
        mode::SVC => Privilege {
            is_hyp: false,
            text: "mode=SVC (PL1): entered below the hypervisor level; boot from firmware \
                   that enters in HYP mode (QEMU: -M virt,virtualization=on)",
        },
        mode::MON => Privilege {
            is_hyp: false,
            text: "mode=MON (PL1, Secure): entered in the Secure monitor; boot from firmware \
                   that enters in Non-secure HYP mode",
        },
        _ => Privilege {
            is_hyp: false,
            text: "mode is neither HYP nor SVC: entered below the hypervisor level; boot from \
                   firmware that enters in HYP mode (QEMU: -M virt,virtualization=on)",
        },
    }
}

/// Human-readable name of the mode the stub was entered in (CPSR.M bits).
pub fn entry_level_name(level: usize) -> &'static str {
    match level & mode::MASK {
        mode::HYP => "HYP mode (PL2)",
        mode::SVC => "SVC mode (PL1)",
        mode::MON => "MON mode (Secure PL1)",
        mode::SYS => "SYS mode (PL1)",
        mode::ABT => "ABT mode (PL1)",
        mode::UND => "UND mode (PL1)",
        mode::IRQ => "IRQ mode (PL1)",
        mode::FIQ => "FIQ mode (PL1)",
        mode::USR => "USR mode (PL0)",
        _ => "an invalid mode",
    }
}

/// Baseline HYP state for the boot CPU: MMU and D-cache still off (the
/// early-MMU code turns them on), I-cache on, alignment checking off,
/// exceptions taken in A32 state and little-endian (the stub already made
/// sure of the last two before installing the vectors). Interrupts stay
/// masked (the stub masked them).
pub fn init_cpu(cpu: usize) {
    CPU_NUMBER.store(cpu, core::sync::atomic::Ordering::Relaxed);
    Hsctlr::modify(|r| {
        r.set_m(false);
        r.set_c(false);
        r.set_a(false);
        r.set_i(true);
        r.set_te(false);
        r.set_ee(false);
    });
    aarch32_cpu::asm::isb();
}

// Secondary CPUs are not started on ARMv7 yet: one number is enough.
static CPU_NUMBER: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// The logical number `init_cpu` gave this CPU.
pub fn cpu_number() -> usize {
    CPU_NUMBER.load(core::sync::atomic::Ordering::Relaxed)
}

/// Sends an event to every CPU.
pub fn wake_all() {
    // SAFETY: `sev` only signals an event.
    unsafe { core::arch::asm!("sev", options(nomem, nostack, preserves_flags)) };
}

/// The generic timer's physical count (CNTPCT).
pub fn counter() -> u64 {
    aarch32_cpu::asm::isb();
    CntPct::read().0
}

/// The generic timer's frequency in Hz, as firmware programmed CNTFRQ.
pub fn counter_frequency() -> u64 {
    Cntfrq::read().0 as u64
}

/// An SMC Calling Convention call over `conduit`, with SMC32 function IDs:
/// the arguments travel in r1-r3 (truncated to 32 bits), the result comes back
/// in r0 (zero-extended). r0-r3 are the SMCCC's argument/result registers;
/// r4-r7 are treated as clobbered too (SMCCC v1.0 did not promise to keep
/// them on AArch64, v1.2 may return results in them), and r12 (AAPCS scratch).
/// r8-r11, sp and lr are preserved by every SMCCC version.
pub fn firmware_call(conduit: Conduit, fid: u32, a1: u64, a2: u64, a3: u64) -> u64 {
    let mut r0 = fid;
    let (a1, a2, a3) = (a1 as u32, a2 as u32, a3 as u32);
    macro_rules! call {
        ($ext:literal, $insn:literal) => {
            // SAFETY: an SMCCC call only changes the registers declared here,
            // and r6, which LLVM reserves (it cannot be an operand) and the asm
            // therefore saves on the stack itself; the firmware owns no memory
            // of ours.
            unsafe {
                asm!(
                    $ext,
                    "push {{r6}}",
                    $insn,
                    "pop {{r6}}",
                    inout("r0") r0, inout("r1") a1 => _, inout("r2") a2 => _, inout("r3") a3 => _,
                    out("r4") _, out("r5") _, out("r7") _, out("r12") _,
                )
            }
        };
    }
    match conduit {
        Conduit::Smc => call!(".arch_extension sec", "smc #0"),
        Conduit::Hvc => call!(".arch_extension virt", "hvc #0"),
    }
    r0 as u64
}

/// Stops this CPU for good: interrupts masked, waiting forever.
pub fn halt() -> ! {
    // SAFETY: masking asynchronous exceptions has no memory effects.
    unsafe { asm!("cpsid aif", options(nomem, nostack, preserves_flags)) };
    loop {
        aarch32_cpu::asm::wfi();
    }
}

/// A32 encoding of `udf #imm` (UDF A1: cond=1110 0111 1111 imm12 1111 imm4).
pub const fn udf_a32(imm: u16) -> u32 {
    let imm = imm as u32;
    0xe7f0_00f0 | ((imm >> 4) << 8) | (imm & 0xf)
}

/// Enters the crash path from a panic: a `udf` whose immediate tells the
/// exception handler it was a panic, so the registers at the panic site are
/// dumped like any other crash. (Not `bkpt`: in HYP mode it is reported as a
/// prefetch abort whose syndrome differs between QEMU and hardware, while an
/// undefined instruction is always HSR.EC=0 and the handler reads the
/// immediate back from the instruction at ELR_hyp.)
pub fn panic_trap() -> ! {
    // SAFETY: `udf` raises an undefined-instruction exception that the HYP
    // vectors handle; the handler never returns.
    unsafe { asm!("udf #{imm}", imm = const crate::crash::PANIC_BRK_IMM, options(noreturn)) }
}

/// Executes an undefined instruction (crash-path tests only).
pub fn undefined_instruction() -> ! {
    // SAFETY: `udf` raises an undefined-instruction exception, handled by
    // the vectors, which never return.
    unsafe { asm!("udf #0x4a52", options(noreturn)) }
}

/// Address read by `crashtest=abort`: a hole in QEMU virt's fixed memory map,
/// between the virtio-mmio transports (0x0a000000-0x0a003fff) and the
/// platform bus (0x0c000000). Nothing decodes it whatever `-m` and `highmem`
/// are, so QEMU answers the read with a synchronous external abort (HSR
/// EC=0x25, FSC=0x10). (With the MMU off there is no translation to fault on,
/// and a 32-bit address cannot exceed the physical address size as on AArch64.)
pub const CRASH_ADDRESS: u64 = 0x0b00_0000;
