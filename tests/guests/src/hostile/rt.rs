//! The hostile guest's runtime: entry, MMU, stacks, exception vectors,
//! console, the case bookkeeping and the calls into the hypervisor.
//!
//! Memory (physical `base` = where Armature loaded the image, 2 MiB
//! aligned): the image in `[base, base + 2 MiB)`, mapped at VA 0; page
//! tables at `base + 2 MiB`, stacks (64 KiB per vCPU) from `base + 2 MiB +
//! 64 KiB`, mapped at VA 2 MiB. Everything else is mapped 1:1: the 1 GiB
//! blocks from 1 GiB to 4 GiB as Normal memory (QEMU virt's RAM), the rest
//! as Device memory, up to 1.5 TiB (so that accesses to high IPAs reach
//! stage 2).

use core::arch::{asm, global_asm};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The console hypercall: prints the byte in `x1`.
const HVC_PUTC: u64 = 0x8600_0100;
/// Most vCPUs the guest handles.
pub const MAX_VCPUS: usize = 8;

global_asm!(
    r#"
        .section .text.boot, "ax"
        .global _start
_start:                                 /* Linux arm64 Image header */
        b       hostile_entry
        .long   0
        .quad   0                       /* text_offset */
        .quad   __image_size
        .quad   0xa                     /* LE, 4K pages, anywhere */
        .quad   0, 0, 0
        .ascii  "ARM\x64"
        .long   0

/* vCPU 0, from Armature: x0 = the device tree. Builds the page tables. */
hostile_entry:
        mov     x20, x0
        adr     x19, _start             /* physical base */
        add     x21, x19, #0x200000     /* tables */
        /* Zero 5 pages of tables. */
        mov     x1, x21
        add     x2, x21, #0x5000
1:      stp     xzr, xzr, [x1], #16
        cmp     x1, x2
        b.lo    1b
        /* L0[0..2] -> L1 tables at +0x1000, +0x2000, +0x3000. */
        add     x1, x21, #0x1000
        orr     x1, x1, #3
        str     x1, [x21]
        add     x1, x21, #0x2000
        orr     x1, x1, #3
        str     x1, [x21, #8]
        add     x1, x21, #0x3000
        orr     x1, x1, #3
        str     x1, [x21, #16]
        /* The three L1 tables: 1 GiB blocks, 1:1 (1536 of them); the
         * first entry of the first is the L2 table below. Blocks 1-3
         * Normal (AttrIndx 1, inner shareable), others Device (AttrIndx 0,
         * execute-never). */
        ldr     x5, =0x0060000000000401  /* Device block: UXN PXN AF, attr 0 */
        ldr     x6, =0x0000000000000705  /* Normal block: AF, SH inner, attr 1 */
        add     x1, x21, #0x1000
        mov     x2, #0                  /* index */
2:      lsl     x3, x2, #30
        cmp     x2, #1
        b.lo    3f
        cmp     x2, #3
        b.hi    3f
        orr     x3, x3, x6
        b       4f
3:      orr     x3, x3, x5
4:      str     x3, [x1, x2, lsl #3]
        add     x2, x2, #1
        cmp     x2, #1536
        b.lo    2b
        add     x3, x21, #0x4000
        orr     x3, x3, #3
        str     x3, [x1]                /* L1a[0] -> L2 */
        /* L2: 2 MiB blocks; [0] = the image, [1] = tables and stacks
         * (Normal), the rest 1:1 Device. */
        add     x1, x21, #0x4000
        mov     x2, #2
5:      lsl     x3, x2, #21
        orr     x3, x3, x5
        str     x3, [x1, x2, lsl #3]
        add     x2, x2, #1
        cmp     x2, #512
        b.lo    5b
        orr     x3, x19, x6
        str     x3, [x1]
        add     x3, x19, #0x200000
        orr     x3, x3, x6
        str     x3, [x1, #8]
        dsb     sy
        mov     x23, #0
        b       mmu_on

/* A vCPU started by PSCI CPU_ON: x0 = its number (the context ID). */
        .global hostile_secondary
hostile_secondary:
        mov     x23, x0
        adr     x19, _start
        add     x21, x19, #0x200000
        mov     x20, #0
        b       mmu_on

/* x19 = physical base, x21 = tables, x20 = DTB, x23 = context ID. */
mmu_on:
        mrs     x22, mpidr_el1
        and     x22, x22, #0xff         /* vCPU number */
        cmp     x22, #7
        b.hi    .                       /* no stack for it */
        ldr     x1, =0xff00             /* MAIR: attr0 Device-nGnRnE, attr1 Normal WB */
        msr     mair_el1, x1
        mrs     x1, id_aa64mmfr0_el1
        and     x1, x1, #0xf            /* PARange -> IPS */
        lsl     x1, x1, #32
        ldr     x2, =0x00803510         /* EPD1, SH0 inner, WB, T0SZ 16 */
        orr     x1, x1, x2
        msr     tcr_el1, x1
        msr     ttbr0_el1, x21
        isb
        tlbi    vmalle1
        dsb     nsh
        isb
        ldr     x1, =0x30d01805         /* RES1, M, C, I */
        msr     sctlr_el1, x1
        isb
        /* Now at the same physical address (RAM is mapped 1:1); go to the
         * image's link address. */
        ldr     x1, =hostile_vectors
        msr     vbar_el1, x1
        mov     x1, #0x210000
        add     x1, x1, x22, lsl #16
        add     sp, x1, #0x10000
        mov     x0, x22
        mov     x1, x19
        mov     x2, x20
        mov     x3, x23
        ldr     x4, =hostile_rust_entry
        br      x4
        .ltorg

/* EL1 vectors: every entry saves x0-x30 in a frame on the stack and calls
 * hostile_exception(kind, frame); the frame is restored after. */
        .macro  vector kind
        .balign 0x80
        sub     sp, sp, #0x100
        stp     x0, x1, [sp]
        mov     x0, #\kind
        b       vector_common
        .endm

        .text
        .balign 0x800
        .global hostile_vectors
hostile_vectors:
        vector 0
        vector 1
        vector 2
        vector 3
        vector 4
        vector 5
        vector 6
        vector 7
        vector 8
        vector 9
        vector 10
        vector 11
        vector 12
        vector 13
        vector 14
        vector 15
vector_common:
        stp     x2, x3, [sp, #0x10]
        stp     x4, x5, [sp, #0x20]
        stp     x6, x7, [sp, #0x30]
        stp     x8, x9, [sp, #0x40]
        stp     x10, x11, [sp, #0x50]
        stp     x12, x13, [sp, #0x60]
        stp     x14, x15, [sp, #0x70]
        stp     x16, x17, [sp, #0x80]
        stp     x18, x19, [sp, #0x90]
        stp     x20, x21, [sp, #0xa0]
        stp     x22, x23, [sp, #0xb0]
        stp     x24, x25, [sp, #0xc0]
        stp     x26, x27, [sp, #0xd0]
        stp     x28, x29, [sp, #0xe0]
        str     x30, [sp, #0xf0]
        mov     x1, sp
        bl      hostile_exception
        ldp     x2, x3, [sp, #0x10]
        ldp     x4, x5, [sp, #0x20]
        ldp     x6, x7, [sp, #0x30]
        ldp     x8, x9, [sp, #0x40]
        ldp     x10, x11, [sp, #0x50]
        ldp     x12, x13, [sp, #0x60]
        ldp     x14, x15, [sp, #0x70]
        ldp     x16, x17, [sp, #0x80]
        ldp     x18, x19, [sp, #0x90]
        ldp     x20, x21, [sp, #0xa0]
        ldp     x22, x23, [sp, #0xb0]
        ldp     x24, x25, [sp, #0xc0]
        ldp     x26, x27, [sp, #0xd0]
        ldp     x28, x29, [sp, #0xe0]
        ldr     x30, [sp, #0xf0]
        ldp     x0, x1, [sp]
        add     sp, sp, #0x100
        eret
"#
);

/// The registers saved by the vector.
#[repr(C)]
pub struct Frame {
    pub x: [u64; 31],
}

/// Mutable state shared by the vCPUs: in the image (`link.ld` keeps only
/// `.text*`; the image is mapped writable).
macro_rules! shared {
    ($(#[$m:meta])* $name:ident: $t:ty = $init:expr) => {
        $(#[$m])*
        #[unsafe(link_section = ".text.hostile_state")]
        pub static $name: $t = $init;
    };
}

/// One exception taken by a vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trap {
    pub esr: u64,
    pub far: u64,
    pub elr: u64,
}

impl Trap {
    pub fn ec(&self) -> u64 {
        self.esr >> 26
    }
    /// The fault status code of an abort.
    pub fn fsc(&self) -> u64 {
        self.esr & 0x3f
    }
    pub fn wnr(&self) -> bool {
        self.esr & (1 << 6) != 0
    }
}

/// Per vCPU: the exceptions taken (synchronous), the last one, and the
/// interrupts taken by INTID (0-31) and in all.
pub struct PerVcpu {
    pub traps: AtomicU32,
    pub esr: AtomicU64,
    pub far: AtomicU64,
    pub elr: AtomicU64,
    pub irqs: [AtomicU32; 32],
    pub spurious: AtomicU32,
    pub unexpected: AtomicU32,
    pub heartbeat: AtomicU64,
    pub cmd: AtomicU64,
    pub result: AtomicU64,
    pub context: AtomicU64,
    /// Interrupts taken while spinning masked (counted before unmasking).
    pub spin_irqs: AtomicU32,
    /// SPIs taken: a bit per INTID (0-319), and their number.
    pub spis: [AtomicU64; 5],
    pub spi_count: AtomicU32,
}

#[allow(clippy::declare_interior_mutable_const)]
const PER_VCPU: PerVcpu = PerVcpu {
    traps: AtomicU32::new(0),
    esr: AtomicU64::new(0),
    far: AtomicU64::new(0),
    elr: AtomicU64::new(0),
    irqs: [const { AtomicU32::new(0) }; 32],
    spurious: AtomicU32::new(0),
    unexpected: AtomicU32::new(0),
    heartbeat: AtomicU64::new(0),
    cmd: AtomicU64::new(0),
    result: AtomicU64::new(0),
    context: AtomicU64::new(0),
    spin_irqs: AtomicU32::new(0),
    spis: [const { AtomicU64::new(0) }; 5],
    spi_count: AtomicU32::new(0),
};

shared!(
    /// Per-vCPU state.
    VCPUS: [PerVcpu; MAX_VCPUS] = [PER_VCPU; MAX_VCPUS]
);
shared!(
    /// Physical base of the image (set by vCPU 0).
    PHYS_BASE: AtomicU64 = AtomicU64::new(0)
);
shared!(
    /// The device tree's address (vCPU 0's x0 at entry).
    DTB: AtomicU64 = AtomicU64::new(0)
);
shared!(
    /// Cases passed and failed.
    PASSED: AtomicU32 = AtomicU32::new(0)
);
shared!(FAILED: AtomicU32 = AtomicU32::new(0));
shared!(
    /// vCPU entries so far (vCPU 0 included; a vCPU started again counts again).
    ONLINE: AtomicU32 = AtomicU32::new(0)
);
shared!(
    /// The domain's vCPUs.
    NVCPUS: AtomicU32 = AtomicU32::new(0)
);

/// This vCPU's number (virtual MPIDR Aff0).
pub fn vcpu() -> usize {
    let mpidr: u64;
    // SAFETY: reads MPIDR_EL1, no side effects.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack)) };
    (mpidr & 0xff) as usize
}

pub fn me() -> &'static PerVcpu {
    &VCPUS[vcpu() % MAX_VCPUS]
}

/// The exception handler, called by the vectors with the vector number
/// (0-3 current EL with SP_EL0, 4-7 with SP_ELx, 8-15 lower EL) and the
/// saved registers. Synchronous exceptions are recorded and the faulting
/// instruction skipped; an instruction abort returns to `x30` (the cases
/// branch to the bad address with `blr`).
#[unsafe(no_mangle)]
extern "C" fn hostile_exception(kind: u64, frame: &mut Frame) {
    let v = me();
    match kind {
        4 => {
            let (esr, far, elr): (u64, u64, u64);
            // SAFETY: reads the exception's syndrome registers.
            unsafe {
                asm!("mrs {}, esr_el1", "mrs {}, far_el1", "mrs {}, elr_el1",
                    out(reg) esr, out(reg) far, out(reg) elr, options(nomem, nostack))
            };
            v.esr.store(esr, Ordering::Relaxed);
            v.far.store(far, Ordering::Relaxed);
            v.elr.store(elr, Ordering::Relaxed);
            v.traps.fetch_add(1, Ordering::SeqCst);
            let ret = if esr >> 26 == 0x21 { frame.x[30] } else { elr + 4 };
            if esr >> 26 == 0x0e {
                // An Illegal State exception: return with PSTATE.IL clear.
                // SAFETY: clears SPSR_EL1.IL only.
                unsafe {
                    asm!("mrs {t}, spsr_el1", "bic {t}, {t}, #(1 << 20)", "msr spsr_el1, {t}", t = out(reg) _,
                        options(nomem, nostack))
                };
            }
            // SAFETY: returns past the faulting instruction (or to the
            // caller of a bad branch).
            unsafe { asm!("msr elr_el1, {}", in(reg) ret, options(nomem, nostack)) };
        }
        5 => crate::gic::irq(v),
        _ => {
            v.unexpected.fetch_add(1, Ordering::SeqCst);
            // An FIQ or SError: note it and go on; SError is only taken if
            // unmasked, and nothing raises FIQs.
        }
    }
}

/// Runs `f` and returns the synchronous exception it took, if any (the
/// last one, and how many).
pub fn trap_of(f: impl FnOnce()) -> (u32, Trap) {
    let v = me();
    let before = v.traps.load(Ordering::SeqCst);
    f();
    let n = v.traps.load(Ordering::SeqCst) - before;
    let t = Trap {
        esr: v.esr.load(Ordering::Relaxed),
        far: v.far.load(Ordering::Relaxed),
        elr: v.elr.load(Ordering::Relaxed),
    };
    (n, if n == 0 { Trap::default() } else { t })
}

/// Console output through the console hypercall.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: the console hypercall; it only returns 0 in x0.
            unsafe { asm!("hvc #0", inout("x0") HVC_PUTC => _, in("x1") u64::from(b), options(nostack)) };
        }
        Ok(())
    }
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::rt::Console, $($arg)*);
    }};
}

/// A case's result: `Err` carries the detail of a failure.
pub type Outcome = Result<(), Detail>;

/// Records and prints a case.
pub fn report(name: &str, r: Outcome) {
    match r {
        Ok(()) => {
            PASSED.fetch_add(1, Ordering::SeqCst);
            println!("PASS hostile/{name}");
        }
        Err(d) => {
            FAILED.fetch_add(1, Ordering::SeqCst);
            println!("FAIL hostile/{name}: {}", d.as_str());
        }
    }
}

/// A failure's detail, formatted into a fixed buffer.
pub struct Detail {
    buf: [u8; 200],
    len: usize,
}

impl Detail {
    pub fn new(args: fmt::Arguments<'_>) -> Self {
        let mut d = Detail { buf: [0; 200], len: 0 };
        let _ = d.write_fmt(args);
        d
    }
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl Write for Detail {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// `Err(Detail)` from a format string.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::rt::Detail::new(format_args!($($arg)*)))
    };
}

/// Fails unless `cond`.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::fail!($($arg)*);
        }
    };
}

/// An SMCCC call through HVC: `x0`-`x3` in, `x0`-`x3` out; checks that
/// `x4`-`x17` are preserved (SMCCC 1.1) and returns `Err` naming the
/// first that is not.
pub fn hvc(regs: [u64; 4]) -> [u64; 4] {
    call::<false>(regs).0
}

/// As [`hvc`], through SMC.
pub fn smc(regs: [u64; 4]) -> [u64; 4] {
    call::<true>(regs).0
}

/// An SMCCC call; also returns whether `x4`-`x17` came back unchanged.
pub fn call<const SMC: bool>(regs: [u64; 4]) -> ([u64; 4], bool) {
    let (mut x0, mut x1, mut x2, mut x3) = (regs[0], regs[1], regs[2], regs[3]);
    let mut kept = [0u64; 14];
    let pattern = 0x5a5a_0000_0000_0000u64;
    // SAFETY: an SMCCC call: x0-x3 are results, x4-x17 are set to a
    // pattern and read back (SMCCC 1.1 preserves them).
    unsafe {
        macro_rules! the_call {
            ($insn:literal) => {
                asm!(
                    $insn,
                    inout("x0") x0, inout("x1") x1, inout("x2") x2, inout("x3") x3,
                    inout("x4") pattern | 4 => kept[0], inout("x5") pattern | 5 => kept[1],
                    inout("x6") pattern | 6 => kept[2], inout("x7") pattern | 7 => kept[3],
                    inout("x8") pattern | 8 => kept[4], inout("x9") pattern | 9 => kept[5],
                    inout("x10") pattern | 10 => kept[6], inout("x11") pattern | 11 => kept[7],
                    inout("x12") pattern | 12 => kept[8], inout("x13") pattern | 13 => kept[9],
                    inout("x14") pattern | 14 => kept[10], inout("x15") pattern | 15 => kept[11],
                    inout("x16") pattern | 16 => kept[12], inout("x17") pattern | 17 => kept[13],
                    options(nostack)
                )
            };
        }
        if SMC {
            the_call!("smc #0");
        } else {
            the_call!("hvc #0");
        }
    }
    let ok = kept.iter().enumerate().all(|(i, &v)| v == pattern | (i as u64 + 4));
    ([x0, x1, x2, x3], ok)
}

/// The virtual counter and its frequency.
pub fn counter() -> u64 {
    let c: u64;
    // SAFETY: reads CNTVCT_EL0.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) c, options(nomem, nostack)) };
    c
}

pub fn frequency() -> u64 {
    let f: u64;
    // SAFETY: reads CNTFRQ_EL0.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
    f
}

/// Waits until `done` or `ms` milliseconds have passed; returns `done()`.
pub fn wait_for(ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let end = counter() + frequency() / 1000 * ms;
    while counter() < end {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    done()
}

/// Masks (true) or unmasks IRQs.
pub fn mask_irqs(masked: bool) {
    // SAFETY: changes PSTATE.I only.
    unsafe {
        if masked {
            asm!("msr daifset, #2", options(nomem, nostack));
        } else {
            asm!("msr daifclr, #2", "isb", options(nomem, nostack));
        }
    }
}

/// The physical address of a link-time (virtual) address in the image.
pub fn phys(va: u64) -> u64 {
    PHYS_BASE.load(Ordering::Relaxed) + va
}

unsafe extern "C" {
    fn hostile_secondary();
}

/// The physical entry point of secondary vCPUs (for CPU_ON).
pub fn secondary_entry() -> u64 {
    phys(hostile_secondary as *const () as u64)
}

/// Rust entry, on every vCPU, MMU on, at the link address.
#[unsafe(no_mangle)]
extern "C" fn hostile_rust_entry(vcpu: u64, base: u64, dtb: u64, context: u64) -> ! {
    VCPUS[vcpu as usize].context.store(context, Ordering::SeqCst);
    if vcpu == 0 {
        PHYS_BASE.store(base, Ordering::SeqCst);
        DTB.store(dtb, Ordering::SeqCst);
    }
    ONLINE.fetch_add(1, Ordering::SeqCst);
    crate::gic::init_cpu(vcpu as usize);
    if vcpu == 0 { crate::cases::main() } else { crate::cases::secondary(vcpu as usize) }
}
