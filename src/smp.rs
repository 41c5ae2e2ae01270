//! Secondary CPUs: starting them from the boot plan, and the per-CPU state.
//!
//! The boot CPU brings itself all the way up first (MMU, relocation, memory),
//! then starts the secondaries one by one, each straight into the relocated
//! image (`secondary_entry`, through the bring-up tables), and waits for each
//! to check in, with a timeout. There is no lockstep: a secondary comes up to
//! idle on its own. A CPU that cannot be started (no or unknown enable
//! method, a PSCI error, no check-in in time) is named in the log and boot
//! goes on with the others.

use crate::dt::Conduit;
use crate::dt::cpus::{CpuBoot, Cpus};
use crate::dt::psci::{Psci, PsciFunction};
use crate::psci::PsciError;
use core::sync::atomic::{AtomicU64, Ordering};
use log::{info, warn};

/// How each logical CPU was started: 0 boot CPU, 1 PSCI, 2 spin-table.
static METHOD: [AtomicU64; crate::arch::smp::NR_CPUS] = [const { AtomicU64::new(0) }; crate::arch::smp::NR_CPUS];
/// MPIDR of each logical CPU.
static MPIDR: [AtomicU64; crate::arch::smp::NR_CPUS] = [const { AtomicU64::new(0) }; crate::arch::smp::NR_CPUS];

/// How long a started CPU has to check in.
pub const CHECK_IN_TIMEOUT_MS: u64 = 1000;

use crate::cpu::{online_mask, set_online};

fn method_name(m: u64) -> &'static str {
    match m {
        1 => "psci",
        2 => "spin-table",
        _ => "boot",
    }
}

/// Where a secondary CPU arrives once `secondary_entry` has turned its MMU on.
#[unsafe(no_mangle)]
extern "C" fn armature_secondary_main(cpu: usize) -> ! {
    crate::arch::init_cpu(cpu);
    if !crate::gic::init_cpu(cpu) {
        warn!("CPU {cpu}: its GIC interface could not be set up");
    }
    let method = METHOD.get(cpu).map_or(0, |m| m.load(Ordering::Acquire));
    info!("CPU {cpu} (MPIDR {:#x}) online via {}", crate::arch::smp::mpidr(), method_name(method));
    set_online(cpu);
    idle(cpu)
}

/// The idle loop of physical CPU `cpu`: run the vCPU pinned here when it is
/// started (PSCI `CPU_ON` from the guest kicks this CPU with an SGI), stop
/// for good when another CPU crashes.
///
/// It sleeps in WFI, not WFE: under QEMU's TCG, WFE only yields, so CPUs
/// waiting in WFE spin and take host time from the ones doing work (a
/// 33 MiB kernel copy took 1.4 s instead of a tenth of that with three
/// spinning CPUs). WFI wakes on a pending interrupt even with interrupts
/// masked; the wake-up SGI is latched, so a kick sent before the WFI is
/// not lost. Without a GIC, it falls back to WFE (events).
pub fn idle(cpu: usize) -> ! {
    loop {
        if crate::crash::in_progress() {
            crate::arch::halt();
        }
        crate::domain::run_pending(cpu);
        if crate::gic::version().is_some() {
            aarch64_cpu::asm::wfi();
            crate::domain::idle_irqs(cpu);
        } else {
            crate::arch::smp::wait();
        }
    }
}

/// What [`bring_up`] achieved.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    /// CPUs in the DT that are not disabled, boot CPU included.
    pub present: usize,
    /// CPUs online, boot CPU included.
    pub online: usize,
}

/// Starts every secondary CPU of `cpus`. `entry_pa` is the physical address
/// of `secondary_entry` in the relocated image, `bringup_root` the bring-up
/// tables, `phys_to_va` maps a physical address for the spin-table release.
pub fn bring_up(
    cpus: &Cpus<'_>,
    psci: Option<&Psci>,
    entry_pa: u64,
    bringup_root: u64,
    phys_to_va: impl Fn(u64) -> usize,
) -> Summary {
    use crate::arch::smp::{NR_CPUS, mpidr, prepare, spin_table_release};
    let me = mpidr();
    // Logical numbers: the boot CPU is 0, the others follow in DT order.
    let mut ids: [Option<u64>; NR_CPUS] = [None; NR_CPUS];
    ids[0] = Some(me);
    MPIDR[0].store(me, Ordering::Relaxed);
    let mut next = 1;
    let mut present = 0;
    let mut boot_cpu_listed = false;
    for c in cpus.as_slice() {
        if matches!(c.boot, CpuBoot::Disabled) {
            continue;
        }
        present += 1;
        match c.mpidr {
            Some(m) if m == me => boot_cpu_listed = true,
            Some(m) if next < NR_CPUS => {
                ids[next] = Some(m);
                MPIDR[next].store(m, Ordering::Relaxed);
                next += 1;
            }
            Some(m) => warn!("CPU {} (MPIDR {m:#x}): beyond the {NR_CPUS} CPUs supported, left off", c.name),
            None => warn!("CPU {}: no usable MPIDR in the device tree ({:?}), left off", c.name, c.boot),
        }
    }
    if !boot_cpu_listed {
        // It runs all the same: count it, so that "online" never counts a
        // CPU the device tree lists but that did not start.
        warn!(
            "CPUs: the boot CPU (MPIDR {me:#x}) is not in /cpus: the device tree does not describe the CPU \
             Armature runs on; counted as CPU 0"
        );
        present += 1;
    }
    prepare(bringup_root, &ids);
    // Record every CPU's method before releasing any: with a shared
    // spin-table address, the first release starts all the CPUs waiting on it.
    for (cpu, m) in ids.iter().enumerate().skip(1) {
        let method = match cpus.as_slice().iter().find(|c| c.mpidr.is_some() && c.mpidr == *m).map(|c| c.boot) {
            Some(CpuBoot::Psci) => 1,
            Some(CpuBoot::SpinTable { .. }) => 2,
            _ => 0,
        };
        METHOD[cpu].store(method, Ordering::Release);
    }

    for (cpu, mpidr_of) in ids.iter().enumerate().skip(1) {
        let Some(target) = *mpidr_of else { continue };
        let Some(node) = cpus.as_slice().iter().find(|c| c.mpidr == Some(target)) else { continue };
        let how = match node.boot {
            CpuBoot::Psci => {
                let Some(p) = psci else {
                    warn!("CPU {cpu} ({}, MPIDR {target:#x}): enable-method psci, but there is no /psci node", node.name);
                    continue;
                };
                let Some(fid) = p.function_id(PsciFunction::CpuOn, true) else {
                    warn!("CPU {cpu} ({}, MPIDR {target:#x}): the /psci node gives no CPU_ON function ID", node.name);
                    continue;
                };
                let ret = crate::arch::firmware_call(p.conduit, fid, target, entry_pa, cpu as u64) as i32;
                if let Err(e) = PsciError::from_return(ret) {
                    warn!(
                        "CPU {cpu} ({}, MPIDR {target:#x}): PSCI CPU_ON via {} failed: {} ({ret})",
                        node.name,
                        conduit_name(p.conduit),
                        e.name()
                    );
                    continue;
                }
                "psci"
            }
            CpuBoot::SpinTable { release_addr } => {
                // SAFETY: the release address is RAM (checked by the DT code
                // to be a physical address); `phys_to_va` maps it read/write.
                unsafe { spin_table_release(phys_to_va(release_addr), entry_pa) };
                "spin-table"
            }
            other => {
                warn!("CPU {cpu} ({}, MPIDR {target:#x}): cannot start it: {other:?}", node.name);
                continue;
            }
        };
        if !wait_online(cpu) {
            warn!(
                "CPU {cpu} ({}, MPIDR {target:#x}) did not come online within {CHECK_IN_TIMEOUT_MS} ms (via {how})",
                node.name
            );
        }
    }
    let mask = online_mask();
    let s = Summary { present, online: mask.count_ones() as usize };
    info!("CPUs online: {} of {} (mask {mask:#x})", s.online, s.present);
    s
}

/// The MPIDR affinity of logical CPU `cpu` (0 if unknown).
pub fn mpidr_of(cpu: usize) -> u64 {
    MPIDR.get(cpu).map_or(0, |m| m.load(Ordering::Relaxed))
}

fn wait_online(cpu: usize) -> bool {
    let freq = crate::arch::counter_frequency().max(1);
    let deadline = crate::arch::counter() + freq * CHECK_IN_TIMEOUT_MS / 1000;
    while crate::arch::counter() < deadline {
        if online_mask() & (1 << cpu) != 0 {
            return true;
        }
        core::hint::spin_loop();
    }
    online_mask() & (1 << cpu) != 0
}

fn conduit_name(c: Conduit) -> &'static str {
    match c {
        Conduit::Smc => "SMC",
        Conduit::Hvc => "HVC",
    }
}
