//! Accesses that may fault, made safely at EL2: reading an address that
//! may not be backed by anything (a `/memory` node larger than the RAM, a
//! DTB running past its end) and an SMC that may not be implemented (a
//! power-off before the device tree has said whether there is PSCI
//! firmware). Each is one instruction at a known address; the EL2
//! synchronous exception handler asks [`fixup`] first, which turns a fault
//! there into a failure result instead of a crash dump.

use super::exception::ExceptionFrame;
use crate::crash::esr::Syndrome;
use core::arch::global_asm;

global_asm!(
    r#"
        .section .text.probe, "ax"
        .balign 4
        .global armature_probe_read
armature_probe_read:            /* x0 = VA -> x0 = 0 readable, 1 faulted */
        mov     x1, x0
        mov     x0, #0
        .global armature_probe_load
armature_probe_load:
        ldr     x2, [x1]
        ret

        .global armature_guarded_smc
armature_guarded_smc:           /* SMCCC call; x0 = -1 if SMC is undefined */
        .global armature_guarded_smc_insn
armature_guarded_smc_insn:
        smc     #0
        ret
"#
);

unsafe extern "C" {
    fn armature_probe_read(va: u64) -> u64;
    fn armature_guarded_smc(fid: u64, a1: u64, a2: u64, a3: u64) -> u64;
    static armature_probe_load: u8;
    static armature_guarded_smc_insn: u8;
}

/// Exception classes: unknown (an undefined SMC), data abort at EL2.
const EC_UNKNOWN: u8 = 0x00;
const EC_DABT_CUR: u8 = 0x25;

/// Whether the 8 bytes at `va` can be read (a synchronous abort there,
/// external or translation, says no).
pub fn readable(va: u64) -> bool {
    // SAFETY: a read with no side effect on RAM; a fault is turned into
    // the result by `fixup`. The caller maps nothing with side effects there.
    unsafe { armature_probe_read(va) == 0 }
}

/// An SMC Calling Convention call over SMC that returns `u64::MAX` (-1:
/// NOT_SUPPORTED) instead of crashing when SMC is undefined at EL2 (no EL3).
pub fn guarded_smc(fid: u32, a1: u64, a2: u64, a3: u64) -> u64 {
    // SAFETY: an SMCCC call clobbers at most x0-x17 (all caller-saved in
    // the C ABI this function is called with); an undefined SMC is turned
    // into a return by `fixup`.
    unsafe { armature_guarded_smc(fid.into(), a1, a2, a3) }
}

/// Called by the EL2 synchronous exception handler: if the exception is a
/// fault of one of the guarded instructions, makes it return a failure and
/// resume after it. Returns whether it did.
pub fn fixup(frame: &mut ExceptionFrame) -> bool {
    let ec = Syndrome::new(frame.esr).ec;
    let load = (&raw const armature_probe_load) as u64;
    let smc = (&raw const armature_guarded_smc_insn) as u64;
    if frame.elr == load && ec == EC_DABT_CUR {
        frame.x[0] = 1;
    } else if frame.elr == smc && ec == EC_UNKNOWN {
        frame.x[0] = u64::MAX;
    } else {
        return false;
    }
    frame.elr += 4;
    true
}
