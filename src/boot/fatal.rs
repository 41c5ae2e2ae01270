//! What the machine does after a fatal boot error: what `on_fatal=` says
//! (power off by default, halt, or reset after N seconds), so that an
//! unattended run ends by itself instead of waiting for its timeout.
//!
//! The action and the PSCI conduit are kept in atomics: a fatal error can
//! come before the command line or the device tree's `/psci` is read (then:
//! power off, over an SMC that is guarded against being undefined).

use crate::arch;
use crate::bootcheck::OnFatal;
use crate::dt::Conduit;
use crate::psci;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use log::error;

static ACTION: AtomicU64 = AtomicU64::new(OnFatal::PowerOff.encode());
/// 0: not known yet; 1: SMC; 2: HVC; 3: the device tree has no PSCI.
static CONDUIT: AtomicU8 = AtomicU8::new(0);

/// Records `on_fatal=`.
pub fn set_action(a: OnFatal) {
    ACTION.store(a.encode(), Ordering::Relaxed);
}

/// Records the firmware's PSCI conduit (`None`: no PSCI in the device tree).
pub fn set_conduit(c: Option<Conduit>) {
    let v = match c {
        Some(Conduit::Smc) => 1,
        Some(Conduit::Hvc) => 2,
        None => 3,
    };
    CONDUIT.store(v, Ordering::Relaxed);
}

/// A PSCI call to the firmware; returns only if it failed (or there is none).
fn firmware(fid: u32) -> &'static str {
    let ret = match CONDUIT.load(Ordering::Relaxed) {
        1 => arch::firmware_call(Conduit::Smc, fid, 0, 0, 0),
        2 => arch::firmware_call(Conduit::Hvc, fid, 0, 0, 0),
        3 => return "the device tree has no PSCI firmware",
        #[cfg(target_arch = "aarch64")]
        _ => arch::probe::guarded_smc(fid, 0, 0, 0),
        #[cfg(not(target_arch = "aarch64"))]
        _ => return "no PSCI firmware known yet",
    };
    match psci::PsciError::from_return(ret as i32) {
        Err(e) => e.name(),
        Ok(_) => "the call returned",
    }
}

/// Ends the boot after a fatal error (already logged), as `on_fatal=` says.
pub fn stop() -> ! {
    let why = match OnFatal::decode(ACTION.load(Ordering::Relaxed)) {
        OnFatal::Halt => {
            error!("Armature cannot continue: halted (on_fatal=halt).");
            arch::halt();
        }
        OnFatal::PowerOff => {
            error!(
                "Armature cannot continue: powering off (on_fatal=poweroff, the default; on_fatal=halt keeps the machine)."
            );
            firmware(psci::fid::SYSTEM_OFF)
        }
        OnFatal::Reset(secs) => {
            error!("Armature cannot continue: resetting in {secs} s (on_fatal=reset:{secs}).");
            let freq = arch::counter_frequency().max(1);
            let deadline = arch::counter().saturating_add(freq.saturating_mul(secs.into()));
            while arch::counter() < deadline {
                core::hint::spin_loop();
            }
            firmware(psci::fid::SYSTEM_RESET)
        }
    };
    error!("Armature cannot continue: the firmware did not act ({why}): halted.");
    arch::halt();
}
