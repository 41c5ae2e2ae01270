//! Guest-facing firmware calls: the SMC Calling Convention dispatcher and
//! PSCI 1.1 for domains.
//!
//! This module owns what a guest sees when it issues `hvc #0` (or `smc #0`,
//! trapped with `HCR_EL2.TSC`): SMCCC 1.1 (`SMCCC_VERSION`,
//! `SMCCC_ARCH_FEATURES`) and the PSCI 1.1 functions a guest OS needs to
//! bring its CPUs up and down and to power the system off (DEN0022, DEN0028).
//! It also owns the per-vCPU power state ([`VcpuPower`]) that `CPU_ON`,
//! `CPU_OFF` and `AFFINITY_INFO` act on.
//!
//! Everything here is pure logic: [`handle`] takes the guest's `x0`–`x3`
//! (function ID and arguments) and the calling vCPU, and returns the values
//! to write back to `x0`–`x3` plus an [`Action`] for the caller (the arch
//! code): resume the guest, start another vCPU, stop this one, wait for an
//! interrupt, or power the domain off or reset it. What a domain is (its
//! vCPUs, MPIDRs and RAM) comes in through the [`PsciDomain`] trait.
//!
//! The firmware side (calls from the hypervisor to EL3) is [`crate::psci`];
//! its function IDs and return codes are reused here.
//!
//! # vCPU power states
//!
//! ```text
//!          CPU_ON (claim)         take_start()          CPU_OFF              stopped()
//!   OFF ─────────────────▶ ON_PENDING ──────────▶ ON ─────────────▶ OFF_PENDING ─────────▶ OFF
//! ```
//!
//! Every transition is one compare-exchange on the vCPU's state, so any
//! number of concurrent `CPU_ON` calls to one target, from vCPUs on
//! different physical CPUs, produce exactly one `SUCCESS`; every other gets
//! `ALREADY_ON`, as under KVM, whose behaviour guests are tested against (a
//! vCPU is ON for `CPU_ON` once a `CPU_ON` for it has succeeded; guests
//! treat `ON_PENDING` from `CPU_ON` as a failure). No lock is held across a
//! call. `AFFINITY_INFO` reports `ON_PENDING` until the arch code picks the
//! start up ([`VcpuPower::take_start`]); `OFF_PENDING` lasts until it has stopped
//! running the vCPU ([`VcpuPower::stopped`]). `AFFINITY_INFO` reports
//! `OFF_PENDING` as ON, as firmware does for a core that is still on its way
//! down, so a guest that waits for OFF (Linux's CPU hot-unplug does) only
//! sees it once the vCPU really is stopped, and a `CPU_ON` in between gets
//! `ALREADY_ON` rather than racing with the stop.

use core::fmt;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::dt::{MPIDR_AFFINITY_MASK, MPIDR_AFFINITY_MASK_32};
use crate::psci::PsciError;

/// Function IDs the dispatcher knows (DEN0022 PSCI, DEN0028 SMCCC). The ones
/// the hypervisor also calls on the firmware come from [`crate::psci::fid`].
pub mod fid {
    pub use crate::psci::fid::{CPU_ON_32, CPU_ON_64, FEATURES as PSCI_FEATURES, SYSTEM_OFF, SYSTEM_RESET, VERSION};

    /// CPU_SUSPEND, SMC32.
    pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
    /// CPU_SUSPEND, SMC64.
    pub const CPU_SUSPEND_64: u32 = 0xc400_0001;
    /// CPU_OFF (SMC32 only).
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// AFFINITY_INFO, SMC32.
    pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
    /// AFFINITY_INFO, SMC64.
    pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
    /// MIGRATE_INFO_TYPE.
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;

    /// SMCCC_VERSION (SMCCC 1.1).
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
    /// SMCCC_ARCH_FEATURES (SMCCC 1.1).
    pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
    /// SMCCC_ARCH_WORKAROUND_1: Spectre v2 (CVE-2017-5715) branch predictor
    /// invalidation.
    pub const ARCH_WORKAROUND_1: u32 = 0x8000_8000;
    /// SMCCC_ARCH_WORKAROUND_2: Spectre v4 (CVE-2018-3639), SSBD.
    pub const ARCH_WORKAROUND_2: u32 = 0x8000_7fff;
    /// SMCCC_ARCH_WORKAROUND_3: Spectre-BHB (CVE-2022-23960).
    pub const ARCH_WORKAROUND_3: u32 = 0x8000_3fff;

    /// Bit 31 of a function ID: a fast call (all calls handled here are).
    pub const FAST_CALL: u32 = 1 << 31;
    /// Bit 30 of a function ID: the SMC64/HVC64 calling convention.
    pub const SMC64: u32 = 1 << 30;
}

/// What `PSCI_VERSION` returns: 1.1.
pub const PSCI_VERSION_1_1: u32 = 0x0001_0001;
/// What `SMCCC_VERSION` returns: 1.1.
pub const SMCCC_VERSION_1_1: u32 = 0x0001_0001;
/// What `MIGRATE_INFO_TYPE` returns: no Trusted OS, migration not required.
pub const MIGRATE_NOT_REQUIRED: u32 = 2;

/// `AFFINITY_INFO` results.
pub mod affinity {
    /// The vCPU is on (or on its way down: `OFF_PENDING`).
    pub const ON: u32 = 0;
    /// The vCPU is off.
    pub const OFF: u32 = 1;
    /// A `CPU_ON` for the vCPU has been accepted, it has not started yet.
    pub const ON_PENDING: u32 = 2;
}

/// A 32-bit return value as written to `x0`: sign-extended to 64 bits, as
/// KVM and Trusted Firmware do (`NOT_SUPPORTED` is `0xffff_ffff_ffff_ffff`).
/// Callers read it as `int`, so either extension would do; an AArch32 guest
/// only sees the low 32 bits in `r0`.
fn ret(value: i32) -> u64 {
    value as i64 as u64
}

fn err(e: PsciError) -> u64 {
    ret(e.code())
}

const SUCCESS: u64 = 0;

// ----------------------------------------------------------------------------
// vCPU power state

/// The state word of a [`VcpuPower`]; every access goes through it.
///
/// In test builds each access is followed by a yield to the host scheduler
/// ([`preemption_point`]): another thread may run between any two accesses,
/// as another physical CPU can. A decision split over two accesses (a load,
/// then a store) is then interleaved with the other callers' often enough
/// for the CPU_ON race test to see it fail; a single compare-exchange is
/// unaffected.
#[derive(Debug)]
struct StateCell(AtomicU8);

impl StateCell {
    const fn new(state: u8) -> Self {
        Self(AtomicU8::new(state))
    }

    fn load(&self, order: Ordering) -> u8 {
        let v = self.0.load(order);
        preemption_point();
        v
    }

    fn store(&self, state: u8, order: Ordering) {
        self.0.store(state, order);
        preemption_point();
    }

    fn compare_exchange(&self, current: u8, new: u8, success: Ordering, failure: Ordering) -> Result<u8, u8> {
        let r = self.0.compare_exchange(current, new, success, failure);
        preemption_point();
        r
    }
}

/// The entry point or context ID of a [`VcpuPower`], with the same
/// preemption points as [`StateCell`] (so that publishing the state before
/// these are written is caught too).
#[derive(Debug)]
struct ValueCell(AtomicU64);

impl ValueCell {
    const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    fn load(&self) -> u64 {
        let v = self.0.load(Ordering::Relaxed);
        preemption_point();
        v
    }

    fn store(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
        preemption_point();
    }
}

/// Where another CPU may get in (see [`StateCell`]): a yield in test
/// builds, nothing otherwise.
#[cfg(test)]
fn preemption_point() {
    std::thread::yield_now();
}

#[cfg(not(test))]
#[inline(always)]
fn preemption_point() {}

const OFF: u8 = 0;
/// A `CPU_ON` won the claim and is storing the entry point and context ID;
/// reported as ON_PENDING.
const CLAIMED: u8 = 1;
const ON_PENDING: u8 = 2;
const ON: u8 = 3;
const OFF_PENDING: u8 = 4;

/// A vCPU's power state as [`VcpuPower::state`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    /// Off: `CPU_ON` may start it.
    Off,
    /// A `CPU_ON` has been accepted; the arch code has not started it yet.
    OnPending,
    /// Running (or runnable).
    On,
    /// `CPU_OFF` has been accepted; the arch code has not stopped it yet.
    OffPending,
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PowerState::Off => "OFF",
            PowerState::OnPending => "ON_PENDING",
            PowerState::On => "ON",
            PowerState::OffPending => "OFF_PENDING",
        })
    }
}

/// Where a vCPU starts: what `CPU_ON` was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartInfo {
    /// The entry point (an IPA). For an AArch32 guest, bit 0 set means
    /// Thumb: clear it and set `CPSR.T`.
    pub entry: u64,
    /// The context ID, to be placed in the started vCPU's `x0`/`r0`.
    pub context: u64,
}

/// The power state of one vCPU, with the entry point and context ID of the
/// `CPU_ON` that is starting it. Shared between physical CPUs; all methods
/// take `&self` and are lock-free.
#[derive(Debug)]
pub struct VcpuPower {
    state: StateCell,
    entry: ValueCell,
    context: ValueCell,
}

impl Default for VcpuPower {
    fn default() -> Self {
        Self::new()
    }
}

impl VcpuPower {
    /// A vCPU that is off. A domain's first vCPU is started with
    /// [`try_start`](Self::try_start), like the others by `CPU_ON`.
    pub const fn new() -> Self {
        Self { state: StateCell::new(OFF), entry: ValueCell::new(), context: ValueCell::new() }
    }

    /// The current state.
    pub fn state(&self) -> PowerState {
        match self.state.load(Ordering::Acquire) {
            OFF => PowerState::Off,
            CLAIMED | ON_PENDING => PowerState::OnPending,
            ON => PowerState::On,
            _ => PowerState::OffPending,
        }
    }

    /// The state as `AFFINITY_INFO` reports it (see [`affinity`]).
    pub fn affinity_info(&self) -> u32 {
        match self.state() {
            PowerState::On | PowerState::OffPending => affinity::ON,
            PowerState::Off => affinity::OFF,
            PowerState::OnPending => affinity::ON_PENDING,
        }
    }

    /// Asks for the vCPU to start at `entry` with `context`: what `CPU_ON`
    /// does once its arguments are checked. Exactly one of any number of
    /// concurrent callers succeeds (OFF → ON_PENDING); every other gets
    /// [`PsciError::AlreadyOn`], whether the start is still pending, the
    /// vCPU runs, or it is on its way down (KVM's answer: a vCPU is ON once
    /// a `CPU_ON` for it has succeeded).
    pub fn try_start(&self, entry: u64, context: u64) -> Result<(), PsciError> {
        // The claim is the only decision, and it is atomic: whoever moves
        // the state off OFF owns the start. Acquire pairs with the release
        // in `stopped`, so the previous run of the vCPU is over before the
        // entry point is overwritten.
        match self.state.compare_exchange(OFF, CLAIMED, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                // Only the claimant writes these, and nobody reads them
                // before the release below publishes them.
                self.entry.store(entry);
                self.context.store(context);
                self.state.store(ON_PENDING, Ordering::Release);
                Ok(())
            }
            Err(_) => Err(PsciError::AlreadyOn),
        }
    }

    /// Picks up a pending start (ON_PENDING → ON): the arch code calls this
    /// on the physical CPU that is to run the vCPU, and enters the guest at
    /// the returned entry point with the context ID in `x0`. `None` if no
    /// start is pending (or another caller took it).
    pub fn take_start(&self) -> Option<StartInfo> {
        // Acquire pairs with the release in `try_start`: the entry point and
        // context ID stored before it are visible. They cannot change while
        // the vCPU is ON.
        self.state.compare_exchange(ON_PENDING, ON, Ordering::AcqRel, Ordering::Relaxed).ok()?;
        Some(StartInfo { entry: self.entry.load(), context: self.context.load() })
    }

    /// ON → OFF_PENDING (what `CPU_OFF` does). False if the vCPU was not ON.
    fn begin_off(&self) -> bool {
        self.state.compare_exchange(ON, OFF_PENDING, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    /// The arch code has stopped running the vCPU after `CPU_OFF`
    /// (OFF_PENDING → OFF): from now on `AFFINITY_INFO` reports it OFF and
    /// `CPU_ON` may start it again. False if it was not OFF_PENDING.
    pub fn stopped(&self) -> bool {
        self.state.compare_exchange(OFF_PENDING, OFF, Ordering::Release, Ordering::Relaxed).is_ok()
    }

    /// Forces the vCPU off, whatever its state: for a domain reset or
    /// shutdown, once the arch code has stopped every vCPU of the domain (so
    /// that no PSCI call on it is in flight).
    pub fn force_off(&self) {
        self.state.store(OFF, Ordering::Release);
    }
}

// ----------------------------------------------------------------------------
// Unhandled calls

/// How many distinct unhandled function IDs a domain remembers (and so logs).
pub const UNHANDLED_SLOTS: usize = 16;

/// A slot holds `SLOT_USED | fid`, so that function ID 0 can be recorded.
const SLOT_USED: u64 = 1 << 32;

/// The function IDs a domain called that the dispatcher does not handle:
/// a count, and the first [`UNHANDLED_SLOTS`] distinct IDs, so that each is
/// logged once. Lock-free.
#[derive(Debug)]
pub struct UnhandledCalls {
    total: AtomicU64,
    slots: [AtomicU64; UNHANDLED_SLOTS],
}

impl Default for UnhandledCalls {
    fn default() -> Self {
        Self::new()
    }
}

impl UnhandledCalls {
    /// No calls yet.
    pub const fn new() -> Self {
        Self { total: AtomicU64::new(0), slots: [const { AtomicU64::new(0) }; UNHANDLED_SLOTS] }
    }

    /// Counts a call of `fid`; true if this is the first one with that ID
    /// (exactly one of concurrent first callers gets true). Once
    /// [`UNHANDLED_SLOTS`] distinct IDs are known, further new IDs are
    /// counted but return false, so that a guest cannot flood the log.
    pub fn record(&self, fid: u32) -> bool {
        self.total.fetch_add(1, Ordering::Relaxed);
        let tagged = SLOT_USED | u64::from(fid);
        for slot in &self.slots {
            match slot.compare_exchange(0, tagged, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(seen) if seen == tagged => return false,
                Err(_) => {}
            }
        }
        false
    }

    /// How many unhandled calls there were in all.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The distinct unhandled function IDs remembered, in order of first call.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots.iter().map_while(|s| {
            let v = s.load(Ordering::Acquire);
            (v & SLOT_USED != 0).then_some(v as u32)
        })
    }
}

/// An unhandled call, for the log: the caller writes
/// `"d{domain}v{vcpu} {unhandled}"` when [`first`](Self::first) is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unhandled {
    /// The function ID (`w0`).
    pub fid: u32,
    /// True the first time the domain called this ID.
    pub first: bool,
}

/// The service a function ID belongs to (bits \[29:24\], DEN0028 table 6-2).
pub fn service_name(fid: u32) -> &'static str {
    match (fid >> 24) & 0x3f {
        0 => "Arm architecture",
        1 => "CPU",
        2 => "SiP",
        3 => "OEM",
        4 => "standard secure (PSCI)",
        5 => "standard hypervisor",
        6 => "vendor hypervisor",
        7 => "vendor EL3 monitor",
        0x30..=0x31 => "trusted application",
        0x32..=0x3f => "trusted OS",
        _ => "reserved",
    }
}

impl fmt::Display for Unhandled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let call = if self.fid & fid::FAST_CALL == 0 {
            "yielding"
        } else if self.fid & fid::SMC64 != 0 {
            "SMC64"
        } else {
            "SMC32"
        };
        write!(f, "unhandled SMCCC call {:#010x} ({call}, {} service)", self.fid, service_name(self.fid))
    }
}

// ----------------------------------------------------------------------------
// The dispatcher

/// What the dispatcher needs to know about the calling domain.
pub trait PsciDomain {
    /// The domain's vCPUs' power states, indexed by vCPU number.
    fn vcpus(&self) -> &[VcpuPower];
    /// The vCPU whose virtual MPIDR has these affinity fields (Aff3 in bits
    /// \[39:32\], Aff2..Aff0 in bits \[23:0\], nothing else set), if any.
    fn vcpu_by_mpidr(&self, affinity: u64) -> Option<usize>;
    /// True if `ipa` is in the domain's RAM (a valid `CPU_ON` entry point).
    fn is_guest_ram(&self, ipa: u64) -> bool;
    /// Where the domain's unhandled calls are counted.
    fn unhandled(&self) -> &UnhandledCalls;
}

/// A trapped SMCCC call: the guest's registers and who made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmcccCall {
    /// `x0`–`x3` (`r0`–`r3` for an AArch32 guest): the function ID in the
    /// low 32 bits of `x0`, then the arguments.
    pub regs: [u64; 4],
    /// The calling vCPU (index into [`PsciDomain::vcpus`]).
    pub caller: usize,
    /// The caller runs in AArch32: SMC64 function IDs do not exist for it.
    pub aarch32: bool,
}

impl SmcccCall {
    /// A call from an AArch64 vCPU.
    pub fn aarch64(caller: usize, regs: [u64; 4]) -> Self {
        Self { regs, caller, aarch32: false }
    }

    /// A call from an AArch32 vCPU.
    pub fn aarch32(caller: usize, regs: [u64; 4]) -> Self {
        Self { regs, caller, aarch32: true }
    }

    /// The function ID: `w0` (the upper half of `x0` is ignored).
    pub fn fid(&self) -> u32 {
        self.regs[0] as u32
    }

    /// Argument `n` (1..=3), as the calling convention passes it: all of
    /// `xn` for SMC64, only `wn` for SMC32.
    fn arg(&self, n: usize) -> u64 {
        let v = self.regs[n];
        if self.fid() & fid::SMC64 != 0 { v } else { v & 0xffff_ffff }
    }
}

/// What the caller must do after [`handle`], besides writing
/// [`Outcome::regs`] back to the guest's `x0`–`x3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Return to the guest.
    Resume,
    /// Return to the guest, and start vCPU `vcpu`: its [`VcpuPower`] is
    /// ON_PENDING; whichever physical CPU runs it calls
    /// [`VcpuPower::take_start`] (which returns this same `entry` and
    /// `context`) and enters the guest there, in the caller's execution
    /// state, with the context ID in `x0`.
    StartVcpu {
        /// The vCPU to start.
        vcpu: usize,
        /// Its entry point (IPA; bit 0 = Thumb for AArch32).
        entry: u64,
        /// Its context ID.
        context: u64,
    },
    /// `CPU_OFF`: do not return to the guest. Stop running the calling
    /// vCPU, then call [`VcpuPower::stopped`] on it.
    StopVcpu,
    /// `CPU_SUSPEND`: wait as for `WFI` (until an interrupt is pending for
    /// the vCPU), then return to the guest.
    WaitForInterrupt,
    /// `SYSTEM_OFF`: stop the whole domain; do not return to the guest.
    SystemOff,
    /// `SYSTEM_RESET`: reset the whole domain; do not return to the guest.
    SystemReset,
}

/// The result of [`handle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The values for `x0`–`x3`. The result is in `x0` (sign-extended);
    /// `x1`–`x3` are zero. For calls that do not return
    /// ([`Action::StopVcpu`], [`Action::SystemOff`], [`Action::SystemReset`])
    /// `x0` holds `INTERNAL_FAILURE`, so that a vCPU resumed by mistake sees
    /// the call fail rather than succeed (as KVM does).
    pub regs: [u64; 4],
    /// What to do next.
    pub action: Action,
    /// Set when the function ID is not handled (the result is then
    /// `NOT_SUPPORTED`): log it if [`Unhandled::first`].
    pub unhandled: Option<Unhandled>,
}

impl Outcome {
    fn resume(x0: u64) -> Self {
        Self { regs: [x0, 0, 0, 0], action: Action::Resume, unhandled: None }
    }

    fn act(x0: u64, action: Action) -> Self {
        Self { regs: [x0, 0, 0, 0], action, unhandled: None }
    }

    fn no_return(action: Action) -> Self {
        Self::act(err(PsciError::InternalFailure), action)
    }

    /// `x0` as the 32-bit return code the guest reads.
    pub fn x0_i32(&self) -> i32 {
        self.regs[0] as i32
    }
}

/// True for the function IDs this module implements (for `PSCI_FEATURES`;
/// the SMCCC ones are also reported there, as the specification asks for
/// `SMCCC_VERSION`).
pub fn is_supported(id: u32) -> bool {
    matches!(
        id,
        fid::VERSION
            | fid::CPU_SUSPEND_32
            | fid::CPU_SUSPEND_64
            | fid::CPU_OFF
            | fid::CPU_ON_32
            | fid::CPU_ON_64
            | fid::AFFINITY_INFO_32
            | fid::AFFINITY_INFO_64
            | fid::MIGRATE_INFO_TYPE
            | fid::SYSTEM_OFF
            | fid::SYSTEM_RESET
            | fid::PSCI_FEATURES
            | fid::SMCCC_VERSION
            | fid::SMCCC_ARCH_FEATURES
    )
}

/// Whether every vCPU of a domain is OFF: after a `CPU_OFF`, none is left
/// to run or to start the others again (only a running vCPU can call
/// `CPU_ON`), so the domain is over. A vCPU being started (ON_PENDING) or
/// going off (OFF_PENDING, its CPU_OFF not finished) is not OFF.
pub fn all_off(vcpus: &[VcpuPower]) -> bool {
    vcpus.iter().all(|v| v.state() == PowerState::Off)
}

/// Handles one SMCCC call from a vCPU of `domain`. Never panics, whatever
/// the registers hold.
pub fn handle<D: PsciDomain + ?Sized>(domain: &D, call: &SmcccCall) -> Outcome {
    let id = call.fid();
    if call.aarch32 && id & fid::SMC64 != 0 {
        // SMC64 calls do not exist for AArch32 callers (DEN0028: "Unknown
        // Function Identifier").
        return unhandled(domain, id);
    }
    match id {
        fid::VERSION => Outcome::resume(u64::from(PSCI_VERSION_1_1)),
        fid::SMCCC_VERSION => Outcome::resume(u64::from(SMCCC_VERSION_1_1)),
        fid::PSCI_FEATURES => {
            let queried = call.arg(1) as u32;
            let exists = !(call.aarch32 && queried & fid::SMC64 != 0);
            Outcome::resume(if exists && is_supported(queried) { SUCCESS } else { err(PsciError::NotSupported) })
        }
        fid::SMCCC_ARCH_FEATURES => Outcome::resume(arch_features(call.arg(1) as u32)),
        fid::CPU_ON_32 | fid::CPU_ON_64 => cpu_on(domain, call),
        fid::CPU_OFF => match domain.vcpus().get(call.caller) {
            Some(p) if p.begin_off() => Outcome::no_return(Action::StopVcpu),
            // Not ON: the arch code's bookkeeping is off; refuse.
            _ => Outcome::resume(err(PsciError::Denied)),
        },
        fid::CPU_SUSPEND_32 | fid::CPU_SUSPEND_64 => {
            // Every power state is treated as standby: wait for an
            // interrupt, then return SUCCESS (power_state, entry point and
            // context ID are ignored, which PSCI allows for standby states).
            Outcome::act(SUCCESS, Action::WaitForInterrupt)
        }
        fid::AFFINITY_INFO_32 | fid::AFFINITY_INFO_64 => Outcome::resume(affinity_info(domain, call)),
        fid::MIGRATE_INFO_TYPE => Outcome::resume(u64::from(MIGRATE_NOT_REQUIRED)),
        fid::SYSTEM_OFF => Outcome::no_return(Action::SystemOff),
        fid::SYSTEM_RESET => Outcome::no_return(Action::SystemReset),
        _ => unhandled(domain, id),
    }
}

fn unhandled<D: PsciDomain + ?Sized>(domain: &D, id: u32) -> Outcome {
    let first = domain.unhandled().record(id);
    Outcome { unhandled: Some(Unhandled { fid: id, first }), ..Outcome::resume(err(PsciError::NotSupported)) }
}

/// `SMCCC_ARCH_FEATURES`: the SMCCC calls themselves are supported; the
/// Spectre workarounds are not implemented, so `NOT_SUPPORTED`. Linux then
/// never calls them, and decides from the CPU alone: for workaround 1
/// (Spectre v2) and 2 (Spectre v4) it reports the CPU "Vulnerable" unless it
/// is known to be unaffected (CSV2, SSBS or its safe lists); for workaround 3
/// (Spectre-BHB) it uses its own mitigation (the branch-history loop or
/// `CLRBHB`) where it knows the CPU, and reports it vulnerable otherwise.
fn arch_features(queried: u32) -> u64 {
    match queried {
        fid::SMCCC_VERSION | fid::SMCCC_ARCH_FEATURES => SUCCESS,
        _ => err(PsciError::NotSupported),
    }
}

/// The vCPU a `target_cpu`/`target_affinity` argument names, and its power
/// state.
fn target_vcpu<'d, D: PsciDomain + ?Sized>(
    domain: &'d D,
    call: &SmcccCall,
    target: u64,
) -> Option<(usize, &'d VcpuPower)> {
    // A raw MPIDR_EL1 with its RES1 bit 31 is accepted, as KVM and Trusted
    // Firmware do: only the affinity fields count (SMC32 has no room for Aff3).
    let mask = if call.fid() & fid::SMC64 != 0 { MPIDR_AFFINITY_MASK } else { MPIDR_AFFINITY_MASK_32 };
    let vcpu = domain.vcpu_by_mpidr(target & mask)?;
    Some((vcpu, domain.vcpus().get(vcpu)?))
}

fn cpu_on<D: PsciDomain + ?Sized>(domain: &D, call: &SmcccCall) -> Outcome {
    let (target, entry, context) = (call.arg(1), call.arg(2), call.arg(3));
    let Some((vcpu, power)) = target_vcpu(domain, call, target) else {
        return Outcome::resume(err(PsciError::InvalidParameters));
    };
    // Checked before the claim, so that a refused call never makes the
    // target ON_PENDING, even briefly. An AArch64 vCPU cannot start at an
    // address that is not a multiple of 4: it would take a PC alignment
    // fault on its first instruction, with no vector table yet.
    if !domain.is_guest_ram(entry) || (!call.aarch32 && entry % 4 != 0) {
        return Outcome::resume(err(PsciError::InvalidAddress));
    }
    match power.try_start(entry, context) {
        Ok(()) => Outcome::act(SUCCESS, Action::StartVcpu { vcpu, entry, context }),
        Err(e) => Outcome::resume(err(e)),
    }
}

fn affinity_info<D: PsciDomain + ?Sized>(domain: &D, call: &SmcccCall) -> u64 {
    // PSCI 1.0 onwards only requires level 0.
    if call.arg(2) != 0 {
        return err(PsciError::InvalidParameters);
    }
    match target_vcpu(domain, call, call.arg(1)) {
        Some((_, power)) => u64::from(power.affinity_info()),
        None => err(PsciError::InvalidParameters),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::thread;
    use std::vec::Vec;

    const RAM_BASE: u64 = 0x4000_0000;
    const RAM_SIZE: u64 = 0x0800_0000;

    /// A domain whose vCPU `n` has MPIDR affinity `mpidrs[n]`, with RAM at
    /// [`RAM_BASE`], and vCPU 0 running.
    struct Dom {
        vcpus: Vec<VcpuPower>,
        mpidrs: Vec<u64>,
        unhandled: UnhandledCalls,
    }

    impl Dom {
        fn new(mpidrs: &[u64]) -> Self {
            let d = Dom {
                vcpus: mpidrs.iter().map(|_| VcpuPower::new()).collect(),
                mpidrs: mpidrs.to_vec(),
                unhandled: UnhandledCalls::new(),
            };
            d.vcpus[0].try_start(RAM_BASE, 0).unwrap();
            assert!(d.vcpus[0].take_start().is_some());
            d
        }

        /// Four vCPUs in two clusters, and one with Aff3 = 1.
        fn clusters() -> Self {
            Dom::new(&[0x0, 0x1, 0x100, 0x101, 0x1_0000_0000])
        }

        fn call(&self, caller: usize, regs: [u64; 4]) -> Outcome {
            handle(self, &SmcccCall::aarch64(caller, regs))
        }

        /// Calls `fid` and returns the 32-bit result, checking that x1-x3
        /// are zeroed and the guest just resumes.
        fn simple(&self, caller: usize, regs: [u64; 4]) -> i32 {
            let o = self.call(caller, regs);
            assert_eq!(o.action, Action::Resume, "{regs:x?}");
            assert_eq!(&o.regs[1..], &[0, 0, 0], "{regs:x?}");
            // Sign-extended: the upper half agrees with bit 31.
            assert_eq!(o.regs[0], o.x0_i32() as i64 as u64);
            o.x0_i32()
        }
    }

    impl PsciDomain for Dom {
        fn vcpus(&self) -> &[VcpuPower] {
            &self.vcpus
        }
        fn vcpu_by_mpidr(&self, affinity: u64) -> Option<usize> {
            self.mpidrs.iter().position(|&m| m == affinity)
        }
        fn is_guest_ram(&self, ipa: u64) -> bool {
            (RAM_BASE..RAM_BASE + RAM_SIZE).contains(&ipa)
        }
        fn unhandled(&self) -> &UnhandledCalls {
            &self.unhandled
        }
    }

    const NOT_SUPPORTED: i32 = -1;
    const INVALID_PARAMETERS: i32 = -2;
    const DENIED: i32 = -3;
    const ALREADY_ON: i32 = -4;
    const ON_PENDING: i32 = -5;
    const INTERNAL_FAILURE: i32 = -6;
    const INVALID_ADDRESS: i32 = -9;

    fn f(id: u32) -> u64 {
        u64::from(id)
    }

    #[test]
    fn error_codes_round_trip_through_the_firmware_decoder() {
        for code in -9..=-1 {
            let e = PsciError::from_return(code).unwrap_err();
            assert!(!matches!(e, PsciError::Unknown(_)), "{code} has a name");
            assert_eq!(e.code(), code, "{}", e.name());
        }
        assert_eq!(PsciError::Unknown(-42).code(), -42);
        assert_eq!(err(PsciError::NotSupported), u64::MAX);
    }

    #[test]
    fn versions() {
        let d = Dom::clusters();
        assert_eq!(d.simple(0, [f(fid::VERSION), 0, 0, 0]), 0x1_0001);
        assert_eq!(crate::psci::version_parts(d.simple(0, [f(fid::VERSION), 0, 0, 0]) as u32), (1, 1));
        assert_eq!(d.simple(0, [f(fid::SMCCC_VERSION), 0, 0, 0]), 0x1_0001);
        // Only w0 is the function ID.
        assert_eq!(d.simple(0, [0xdead_beef_0000_0000 | f(fid::VERSION), 0, 0, 0]), 0x1_0001);
        assert_eq!(d.unhandled.total(), 0);
    }

    const SUPPORTED: [u32; 14] = [
        fid::VERSION,
        fid::CPU_SUSPEND_32,
        fid::CPU_SUSPEND_64,
        fid::CPU_OFF,
        fid::CPU_ON_32,
        fid::CPU_ON_64,
        fid::AFFINITY_INFO_32,
        fid::AFFINITY_INFO_64,
        fid::MIGRATE_INFO_TYPE,
        fid::SYSTEM_OFF,
        fid::SYSTEM_RESET,
        fid::PSCI_FEATURES,
        fid::SMCCC_VERSION,
        fid::SMCCC_ARCH_FEATURES,
    ];

    #[test]
    fn psci_features_lists_exactly_what_is_handled() {
        let d = Dom::clusters();
        for id in SUPPORTED {
            assert_eq!(d.simple(0, [f(fid::PSCI_FEATURES), f(id), 0, 0]), 0, "{id:#x}");
            // And the dispatcher does handle it (it is not counted unhandled).
            let o = d.call(1, [f(id), 0, 0, 0]);
            assert_eq!(o.unhandled, None, "{id:#x}");
        }
        // MIGRATE, MIGRATE_INFO_UP_CPU, SYSTEM_SUSPEND, SYSTEM_RESET2,
        // CPU_FREEZE, the workarounds, and nonsense.
        for id in
            [0x8400_0005, 0xc400_0005, 0x8400_0007, 0xc400_000e, 0x8400_0012, 0x8400_000b, 0x8000_8000, 0, 0xffff_ffff]
        {
            assert_eq!(d.simple(0, [f(fid::PSCI_FEATURES), f(id), 0, 0]), NOT_SUPPORTED, "{id:#x}");
        }
        // PSCI_FEATURES is SMC32: only w1 counts.
        assert_eq!(d.simple(0, [f(fid::PSCI_FEATURES), 0xffff_ffff_0000_0000 | f(fid::CPU_ON_64), 0, 0]), 0);
    }

    #[test]
    fn smccc_arch_features() {
        let d = Dom::clusters();
        let q = |id: u32| d.simple(0, [f(fid::SMCCC_ARCH_FEATURES), f(id), 0, 0]);
        assert_eq!(q(fid::SMCCC_VERSION), 0);
        assert_eq!(q(fid::SMCCC_ARCH_FEATURES), 0);
        assert_eq!(q(fid::ARCH_WORKAROUND_1), NOT_SUPPORTED);
        assert_eq!(q(fid::ARCH_WORKAROUND_2), NOT_SUPPORTED);
        assert_eq!(q(fid::ARCH_WORKAROUND_3), NOT_SUPPORTED);
        assert_eq!(q(fid::VERSION), NOT_SUPPORTED);
        assert_eq!(q(0x8000_0002), NOT_SUPPORTED); // SMCCC_ARCH_SOC_ID
        // A guest that calls a workaround anyway gets NOT_SUPPORTED, logged.
        let o = d.call(0, [f(fid::ARCH_WORKAROUND_1), 0, 0, 0]);
        assert_eq!(o.x0_i32(), NOT_SUPPORTED);
        assert_eq!(o.unhandled, Some(Unhandled { fid: fid::ARCH_WORKAROUND_1, first: true }));
    }

    #[test]
    fn cpu_on_64_then_start_then_already_on() {
        let d = Dom::clusters();
        assert_eq!(d.vcpus[3].state(), PowerState::Off);
        assert_eq!(d.simple(0, [f(fid::AFFINITY_INFO_64), 0x101, 0, 0]), 1);

        let o = d.call(0, [f(fid::CPU_ON_64), 0x101, RAM_BASE + 0x8_0000, 0x1234_5678_9abc_def0]);
        assert_eq!(o.regs, [0, 0, 0, 0]);
        assert_eq!(o.action, Action::StartVcpu { vcpu: 3, entry: RAM_BASE + 0x8_0000, context: 0x1234_5678_9abc_def0 });
        assert_eq!(d.vcpus[3].state(), PowerState::OnPending);
        assert_eq!(d.simple(0, [f(fid::AFFINITY_INFO_64), 0x101, 0, 0]), 2);
        // A second CPU_ON (from any vCPU) while the start is pending: the
        // vCPU is ON for CPU_ON (KVM's answer), ON_PENDING for AFFINITY_INFO.
        assert_eq!(d.simple(1, [f(fid::CPU_ON_64), 0x101, RAM_BASE, 0]), ALREADY_ON);
        assert_eq!(d.simple(2, [f(fid::CPU_ON_32), 0x101, RAM_BASE, 0]), ALREADY_ON);
        assert_eq!(d.simple(0, [f(fid::AFFINITY_INFO_64), 0x101, 0, 0]), 2);

        let start = d.vcpus[3].take_start().unwrap();
        assert_eq!(start, StartInfo { entry: RAM_BASE + 0x8_0000, context: 0x1234_5678_9abc_def0 });
        assert_eq!(d.vcpus[3].take_start(), None, "a start is taken once");
        assert_eq!(d.vcpus[3].state(), PowerState::On);
        assert_eq!(d.simple(0, [f(fid::AFFINITY_INFO_64), 0x101, 0, 0]), 0);
        assert_eq!(d.simple(1, [f(fid::CPU_ON_64), 0x101, RAM_BASE, 0]), ALREADY_ON);
        assert_eq!(d.simple(3, [f(fid::CPU_ON_64), 0x101, RAM_BASE, 0]), ALREADY_ON);
        // The boot vCPU is on too.
        assert_eq!(d.simple(3, [f(fid::CPU_ON_64), 0, RAM_BASE, 0]), ALREADY_ON);
    }

    #[test]
    fn cpu_on_32_uses_only_the_low_halves() {
        let d = Dom::clusters();
        let o = d.call(0, [f(fid::CPU_ON_32), 0xffff_ffff_0000_0100, 0xdead_0000_4000_1004, 0xffff_ffff_8765_4321]);
        assert_eq!(o.regs[0], 0);
        assert_eq!(o.action, Action::StartVcpu { vcpu: 2, entry: 0x4000_1004, context: 0x8765_4321 });
        assert_eq!(d.vcpus[2].take_start(), Some(StartInfo { entry: 0x4000_1004, context: 0x8765_4321 }));
        // SMC32 cannot name Aff3: 0x1_0000_0000 is MPIDR 0 (vCPU 0, on).
        assert_eq!(d.simple(1, [f(fid::CPU_ON_32), 0x1_0000_0000, RAM_BASE, 0]), ALREADY_ON);
        assert_eq!(d.vcpus[4].state(), PowerState::Off);
        // SMC64 can, and takes all 64 bits of the entry point and context.
        assert_eq!(d.simple(1, [f(fid::CPU_ON_64), 0x1_0000_0000, 0x1_0000_0000 | RAM_BASE, 0]), INVALID_ADDRESS);
        let o = d.call(1, [f(fid::CPU_ON_64), 0x1_0000_0000, RAM_BASE, u64::MAX]);
        assert_eq!(o.action, Action::StartVcpu { vcpu: 4, entry: RAM_BASE, context: u64::MAX });
        // AFFINITY_INFO likewise.
        assert_eq!(d.simple(1, [f(fid::AFFINITY_INFO_64), 0x1_0000_0000, 0, 0]), 2);
        assert_eq!(d.simple(1, [f(fid::AFFINITY_INFO_32), 0x1_0000_0000, 0, 0]), 0); // vCPU 0
        // SMC32 AFFINITY_INFO: only w2 is the level.
        assert_eq!(d.simple(1, [f(fid::AFFINITY_INFO_32), 0x1, 0x7_0000_0000, 0]), 1);
        assert_eq!(d.simple(1, [f(fid::AFFINITY_INFO_64), 0x1, 0x7_0000_0000, 0]), INVALID_PARAMETERS);
    }

    #[test]
    fn the_last_cpu_off_leaves_every_vcpu_off() {
        let d = Dom::new(&[0x0, 0x1]);
        assert!(!all_off(&d.vcpus), "vCPU 0 runs");
        assert_eq!(d.call(0, [f(fid::CPU_ON_64), 0x1, RAM_BASE, 0]).regs[0], 0);
        assert!(d.vcpus[1].take_start().is_some());
        // vCPU 1 off: vCPU 0 still runs.
        assert_eq!(d.call(1, [f(fid::CPU_OFF), 0, 0, 0]).action, Action::StopVcpu);
        assert!(d.vcpus[1].stopped());
        assert!(!all_off(&d.vcpus));
        // vCPU 0's CPU_OFF: OFF_PENDING until the arch code has stopped it.
        assert_eq!(d.call(0, [f(fid::CPU_OFF), 0, 0, 0]).action, Action::StopVcpu);
        assert!(!all_off(&d.vcpus), "vCPU 0 is still going off");
        assert!(d.vcpus[0].stopped());
        assert!(all_off(&d.vcpus));
        // A vCPU being started is not off.
        d.vcpus[1].try_start(RAM_BASE, 0).unwrap();
        assert!(!all_off(&d.vcpus));
    }

    #[test]
    fn cpu_on_refusals_leave_the_target_off() {
        let d = Dom::clusters();
        for entry in [0, RAM_BASE - 4, RAM_BASE + RAM_SIZE, u64::MAX] {
            assert_eq!(d.simple(0, [f(fid::CPU_ON_64), 0x1, entry, 0]), INVALID_ADDRESS, "{entry:#x}");
        }
        // In RAM but not a multiple of 4: no AArch64 instruction there.
        for entry in [RAM_BASE + 1, RAM_BASE + 2, RAM_BASE + 0x1003] {
            assert_eq!(d.simple(0, [f(fid::CPU_ON_64), 0x1, entry, 0]), INVALID_ADDRESS, "{entry:#x}");
            assert_eq!(d.simple(0, [f(fid::CPU_ON_32), 0x1, entry, 0]), INVALID_ADDRESS, "{entry:#x}");
        }
        // No such MPIDR.
        for target in [0x2, 0x200, 0x1_0000_0001, 0xff_00ff_ffff] {
            assert_eq!(d.simple(0, [f(fid::CPU_ON_64), target, RAM_BASE, 0]), INVALID_PARAMETERS, "{target:#x}");
        }
        assert_eq!(d.vcpus[1].state(), PowerState::Off);
        assert_eq!(d.vcpus[1].take_start(), None);
        // Bits outside the affinity fields are ignored: a raw MPIDR_EL1
        // (RES1 bit 31, MT bit 24) names vCPU 1.
        let o = d.call(0, [f(fid::CPU_ON_64), 0x8100_0001, RAM_BASE, 0]);
        assert_eq!(o.action, Action::StartVcpu { vcpu: 1, entry: RAM_BASE, context: 0 });
    }

    #[test]
    fn lookup_returning_a_bad_index_is_invalid_parameters() {
        struct Liar(Dom);
        impl PsciDomain for Liar {
            fn vcpus(&self) -> &[VcpuPower] {
                self.0.vcpus()
            }
            fn vcpu_by_mpidr(&self, _: u64) -> Option<usize> {
                Some(99)
            }
            fn is_guest_ram(&self, _: u64) -> bool {
                true
            }
            fn unhandled(&self) -> &UnhandledCalls {
                self.0.unhandled()
            }
        }
        let l = Liar(Dom::clusters());
        assert_eq!(handle(&l, &SmcccCall::aarch64(0, [f(fid::CPU_ON_64), 1, 0, 0])).x0_i32(), INVALID_PARAMETERS);
        assert_eq!(
            handle(&l, &SmcccCall::aarch64(0, [f(fid::AFFINITY_INFO_64), 1, 0, 0])).x0_i32(),
            INVALID_PARAMETERS
        );
        // A bad caller index: CPU_OFF is refused, nothing panics.
        assert_eq!(handle(&l, &SmcccCall::aarch64(42, [f(fid::CPU_OFF), 0, 0, 0])).x0_i32(), DENIED);
    }

    #[test]
    fn cpu_off_then_affinity_info_then_on_again() {
        let d = Dom::clusters();
        d.call(0, [f(fid::CPU_ON_64), 0x100, RAM_BASE + 0x100, 7]);
        d.vcpus[2].take_start().unwrap();

        let o = d.call(2, [f(fid::CPU_OFF), 0, 0, 0]);
        assert_eq!(o.action, Action::StopVcpu);
        assert_eq!(o.x0_i32(), INTERNAL_FAILURE, "seen only if the vCPU is resumed by mistake");
        assert_eq!(d.vcpus[2].state(), PowerState::OffPending);
        // Still on until the arch code has stopped it; CPU_ON cannot race it.
        assert_eq!(d.simple(0, [f(fid::AFFINITY_INFO_64), 0x100, 0, 0]), 0);
        assert_eq!(d.simple(0, [f(fid::CPU_ON_64), 0x100, RAM_BASE, 0]), ALREADY_ON);
        assert!(d.vcpus[2].stopped());
        assert!(!d.vcpus[2].stopped());
        assert_eq!(d.simple(0, [f(fid::AFFINITY_INFO_64), 0x100, 0, 0]), 1);
        assert_eq!(d.simple(0, [f(fid::AFFINITY_INFO_32), 0x100, 0, 0]), 1);

        // On again, with a new entry point and context.
        let o = d.call(1, [f(fid::CPU_ON_32), 0x100, RAM_BASE + 0x200, 8]);
        assert_eq!(o.action, Action::StartVcpu { vcpu: 2, entry: RAM_BASE + 0x200, context: 8 });
        assert_eq!(d.simple(0, [f(fid::AFFINITY_INFO_64), 0x100, 0, 0]), 2);
        assert_eq!(d.vcpus[2].take_start(), Some(StartInfo { entry: RAM_BASE + 0x200, context: 8 }));
        assert_eq!(d.simple(0, [f(fid::AFFINITY_INFO_64), 0x100, 0, 0]), 0);

        // CPU_OFF from a vCPU that is not on (bookkeeping gone wrong).
        assert_eq!(d.simple(1, [f(fid::CPU_OFF), 0, 0, 0]), DENIED);
        // The last vCPU may go off too.
        assert_eq!(d.call(0, [f(fid::CPU_OFF), 0, 0, 0]).action, Action::StopVcpu);
    }

    #[test]
    fn affinity_info_levels_and_targets() {
        let d = Dom::clusters();
        assert_eq!(d.simple(0, [f(fid::AFFINITY_INFO_64), 0x0, 0, 0]), 0);
        assert_eq!(d.simple(0, [f(fid::AFFINITY_INFO_64), 0x1, 0, 0]), 1);
        for level in [1, 2, 3, 4, u64::MAX] {
            assert_eq!(d.simple(0, [f(fid::AFFINITY_INFO_64), 0x0, level, 0]), INVALID_PARAMETERS, "{level}");
        }
        assert_eq!(d.simple(0, [f(fid::AFFINITY_INFO_64), 0x7, 0, 0]), INVALID_PARAMETERS);
    }

    #[test]
    fn force_off_resets_any_state() {
        let d = Dom::clusters();
        d.call(0, [f(fid::CPU_ON_64), 0x1, RAM_BASE, 0]);
        for p in &d.vcpus {
            p.force_off();
            assert_eq!(p.state(), PowerState::Off);
        }
        assert_eq!(d.simple(4, [f(fid::AFFINITY_INFO_64), 0x0, 0, 0]), 1);
    }

    #[test]
    fn suspend_waits_and_system_calls_do_not_return() {
        let d = Dom::clusters();
        for id in [fid::CPU_SUSPEND_32, fid::CPU_SUSPEND_64] {
            let o = d.call(0, [f(id), 0x0001_0000, RAM_BASE, 0]);
            assert_eq!(o, Outcome { regs: [0; 4], action: Action::WaitForInterrupt, unhandled: None });
        }
        let o = d.call(0, [f(fid::SYSTEM_OFF), 0, 0, 0]);
        assert_eq!((o.action, o.x0_i32()), (Action::SystemOff, INTERNAL_FAILURE));
        let o = d.call(0, [f(fid::SYSTEM_RESET), 0, 0, 0]);
        assert_eq!((o.action, o.x0_i32()), (Action::SystemReset, INTERNAL_FAILURE));
        assert_eq!(d.simple(0, [f(fid::MIGRATE_INFO_TYPE), 0, 0, 0]), 2);
    }

    #[test]
    fn aarch32_callers_have_no_smc64_calls() {
        let d = Dom::clusters();
        let c = |regs| handle(&d, &SmcccCall::aarch32(0, regs));
        assert_eq!(c([f(fid::VERSION), 0, 0, 0]).x0_i32(), 0x1_0001);
        let o = c([f(fid::CPU_ON_64), 0x1, RAM_BASE, 0]);
        assert_eq!((o.action, o.x0_i32()), (Action::Resume, NOT_SUPPORTED));
        assert_eq!(o.unhandled, Some(Unhandled { fid: fid::CPU_ON_64, first: true }));
        assert_eq!(d.vcpus[1].state(), PowerState::Off);
        assert_eq!(c([f(fid::PSCI_FEATURES), f(fid::CPU_ON_64), 0, 0]).x0_i32(), NOT_SUPPORTED);
        assert_eq!(c([f(fid::PSCI_FEATURES), f(fid::CPU_ON_32), 0, 0]).x0_i32(), 0);
        let o = c([f(fid::CPU_ON_32), 0x1, RAM_BASE + 1, 5]);
        assert_eq!(o.action, Action::StartVcpu { vcpu: 1, entry: RAM_BASE + 1, context: 5 });
    }

    #[test]
    fn unknown_calls_are_not_supported_and_logged_once() {
        let d = Dom::clusters();
        let uid = 0x8600_ff01; // vendor hypervisor UID, which a KVM guest probes
        let o = d.call(1, [f(uid), 1, 2, 3]);
        assert_eq!(o.regs, [u64::MAX, 0, 0, 0]);
        assert_eq!(o.action, Action::Resume);
        assert_eq!(o.unhandled, Some(Unhandled { fid: uid, first: true }));
        assert_eq!(
            std::format!("d0v1 {}", o.unhandled.unwrap()),
            "d0v1 unhandled SMCCC call 0x8600ff01 (SMC32, vendor hypervisor service)"
        );
        assert_eq!(d.call(2, [f(uid), 0, 0, 0]).unhandled, Some(Unhandled { fid: uid, first: false }));
        let o = d.call(2, [0xc200_0001, 0, 0, 0]);
        assert_eq!(o.unhandled, Some(Unhandled { fid: 0xc200_0001, first: true }));
        assert_eq!(std::format!("{}", o.unhandled.unwrap()), "unhandled SMCCC call 0xc2000001 (SMC64, SiP service)");
        let o = d.call(2, [0, 0, 0, 0]);
        assert_eq!(o.unhandled, Some(Unhandled { fid: 0, first: true }), "ID 0 can be recorded");
        assert_eq!(
            std::format!("{}", o.unhandled.unwrap()),
            "unhandled SMCCC call 0x00000000 (yielding, Arm architecture service)"
        );
        assert_eq!(d.unhandled.total(), 4);
        assert_eq!(d.unhandled.ids().collect::<Vec<_>>(), [uid, 0xc200_0001, 0]);
    }

    #[test]
    fn unhandled_table_is_bounded() {
        let u = UnhandledCalls::new();
        for id in 0..UNHANDLED_SLOTS as u32 {
            assert!(u.record(0x8700_0000 + id));
            assert!(!u.record(0x8700_0000 + id));
        }
        // Full: new IDs are counted but not reported as new.
        assert!(!u.record(0x8800_0000));
        assert!(!u.record(0x8800_0001));
        assert!(!u.record(0x8700_0003));
        assert_eq!(u.total(), 2 * UNHANDLED_SLOTS as u64 + 3);
        assert_eq!(u.ids().count(), UNHANDLED_SLOTS);
    }

    #[test]
    fn concurrent_first_unhandled_is_reported_once() {
        let u = UnhandledCalls::new();
        let firsts = AtomicUsize::new(0);
        thread::scope(|s| {
            for t in 0..8u32 {
                let (u, firsts) = (&u, &firsts);
                s.spawn(move || {
                    for i in 0..200u32 {
                        // Every thread records the same 10 IDs, in a
                        // thread-dependent order.
                        if u.record(0x8600_0000 + (i + t) % 10) {
                            firsts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(firsts.load(Ordering::Relaxed), 10);
        assert_eq!(u.total(), 8 * 200);
        let mut ids = u.ids().collect::<Vec<_>>();
        ids.sort_unstable();
        assert_eq!(ids, (0..10).map(|i| 0x8600_0000 + i).collect::<Vec<_>>());
    }

    /// Spins (then yields: the test machine may have fewer cores than
    /// threads) until `cond` holds.
    fn wait_until(mut cond: impl FnMut() -> bool) {
        let mut n = 0u32;
        while !cond() {
            if n < 200 {
                std::hint::spin_loop();
                n += 1;
            } else {
                thread::yield_now();
            }
        }
    }

    /// The CPU_ON race: in every round, `THREADS` vCPUs (one thread each,
    /// standing for vCPUs on different physical CPUs) are released at once
    /// and all call CPU_ON on the same OFF target, each with its own entry
    /// point and context ID.
    ///
    /// Exactly one call must succeed, and the start that the target then
    /// picks up must be the winner's; every loser must see ALREADY_ON (as
    /// under KVM), never ON_PENDING: in odd rounds nobody picks the start
    /// up during the round (the target stays ON_PENDING), in even rounds
    /// the main thread (the target's physical CPU) takes the start while
    /// the losers are still calling.
    ///
    /// How this catches a non-atomic check-then-set (`if state == OFF {
    /// state = CLAIMED; SUCCESS }`): every access to the state word is
    /// followed by a yield in test builds ([`StateCell`]), so a thread that
    /// has read OFF is likely to be descheduled before its store, while
    /// other callers released in the same round read OFF too. Each of them
    /// then returns SUCCESS and the round's count is 2 or more. Without the
    /// yields the window is a few nanoseconds: with `try_start` rewritten as
    /// a load then a store, this test passed 19 runs of 20 on a 2-core host;
    /// with them, it failed 20 of 20, each in round 1 or 2 with 2 to 7
    /// successes. The check of the started entry point against the winner's
    /// also catches publishing ON_PENDING before the entry point is stored,
    /// though only in some runs (13 of 20): that needs the target's CPU to
    /// read in the gap.
    #[test]
    fn concurrent_cpu_on_has_exactly_one_winner() {
        const THREADS: usize = 8;
        const ROUNDS: usize = 2000;
        const TARGET: usize = THREADS; // callers are vCPUs 0..THREADS
        let mpidrs: Vec<u64> = (0..=THREADS as u64).collect();
        let d = Dom::new(&mpidrs);
        let entry = |round: usize, t: usize| RAM_BASE + ((round * THREADS + t) as u64 * 4) % RAM_SIZE;
        let context = |round: usize, t: usize| ((round as u64) << 16) | t as u64;

        let round = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let done = AtomicUsize::new(0);
        let successes = AtomicUsize::new(0);
        let winner = AtomicUsize::new(usize::MAX);
        let pending = AtomicUsize::new(0);
        let already_on = AtomicUsize::new(0);
        let wrong = AtomicUsize::new(0);

        let failure = thread::scope(|s| {
            for t in 0..THREADS {
                let (d, round, stop, done) = (&d, &round, &stop, &done);
                let (successes, winner, pending, already_on, wrong) =
                    (&successes, &winner, &pending, &already_on, &wrong);
                s.spawn(move || {
                    for r in 1..=ROUNDS {
                        wait_until(|| round.load(Ordering::Acquire) == r || stop.load(Ordering::Acquire));
                        if stop.load(Ordering::Acquire) {
                            return;
                        }
                        let regs = [f(fid::CPU_ON_64), TARGET as u64, entry(r, t), context(r, t)];
                        let o = handle(d, &SmcccCall::aarch64(t, regs));
                        let started = Action::StartVcpu { vcpu: TARGET, entry: entry(r, t), context: context(r, t) };
                        let counter = match (o.x0_i32(), o.action) {
                            (0, a) if a == started => {
                                winner.store(t, Ordering::Release);
                                successes
                            }
                            (ON_PENDING, Action::Resume) => pending,
                            (ALREADY_ON, Action::Resume) => already_on,
                            _ => wrong,
                        };
                        counter.fetch_add(1, Ordering::AcqRel);
                        done.fetch_add(1, Ordering::AcqRel);
                    }
                });
            }

            // The main thread checks each round; on a failure it stops the
            // workers (rather than panicking with them still waiting).
            let target = &d.vcpus[TARGET];
            for r in 1..=ROUNDS {
                target.force_off();
                for c in [&successes, &pending, &already_on, &wrong] {
                    c.store(0, Ordering::Relaxed);
                }
                winner.store(usize::MAX, Ordering::Relaxed);
                round.store(r, Ordering::Release);

                let mut started = None;
                if r % 2 == 0 {
                    // Start the target as soon as some CPU_ON has won.
                    wait_until(|| {
                        started = started.or_else(|| target.take_start());
                        started.is_some() || done.load(Ordering::Acquire) == r * THREADS
                    });
                }
                wait_until(|| done.load(Ordering::Acquire) == r * THREADS);
                let started = started.or_else(|| target.take_start());

                let n = successes.load(Ordering::Acquire);
                let w = winner.load(Ordering::Acquire);
                let (p, a) = (pending.load(Ordering::Acquire), already_on.load(Ordering::Acquire));
                let expected = (w < THREADS).then(|| StartInfo { entry: entry(r, w), context: context(r, w) });
                let problem = if n != 1 {
                    Some(std::format!("{n} of {THREADS} concurrent CPU_ON calls succeeded"))
                } else if wrong.load(Ordering::Acquire) != 0 {
                    Some("unexpected results or actions".into())
                } else if started != expected {
                    Some(std::format!("started {started:x?}, the winner (vCPU {w}) asked for {expected:x?}"))
                } else if p != 0 || a != THREADS - 1 {
                    Some(std::format!("{p} ON_PENDING and {a} ALREADY_ON"))
                } else if target.state() != PowerState::On {
                    Some(std::format!("target is {} after its start", target.state()))
                } else {
                    None
                };
                if let Some(problem) = problem {
                    stop.store(true, Ordering::Release);
                    return Some(std::format!("round {r}: {problem}"));
                }
            }
            None
        });
        assert_eq!(failure, None);
    }
}
