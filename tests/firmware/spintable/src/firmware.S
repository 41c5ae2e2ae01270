/*
 * The spin-table test firmware: a tiny boot-wrapper for QEMU virt with
 * `secure=on`, so that Armature's spin-table CPU bring-up can be tested.
 *
 * QEMU with `-M virt,secure=on` and `-bios` disables its own PSCI emulation
 * and starts *every* CPU at EL3 at the reset vector, 0x0 (the flash, where
 * `-bios` puts this file). From there each CPU:
 *
 *   1. sets up EL3 for a non-secure AArch64 EL2 (SCR_EL3, CPTR_EL3,
 *      MDCR_EL3, SCTLR_EL2, CNTVOFF_EL2, VBAR_EL3) and, on a GICv3 machine,
 *      its GIC: the boot CPU the distributor (affinity routing, every SPI in
 *      Group 1 Non-secure), every CPU its own redistributor (awake, SGIs and
 *      PPIs in Group 1 Non-secure) and ICC_SRE_EL3 (system registers on,
 *      usable from EL2);
 *   2. the boot CPU (MPIDR affinity 0) enters Armature at EL2 (EL2h, DAIF
 *      masked) with x0 = the DTB, x1-x3 = 0;
 *   3. every other CPU spins (`wfe`) on its release address until it reads
 *      a non-zero entry point, then enters it at EL2 the same way with
 *      x0-x3 = 0 (Linux's spin-table protocol).
 *
 * Release addresses: `fw_config.release` is the base of a page the DT
 * reserves. Per-CPU layout (`stride` 8): CPU i waits on release + 8 * i,
 * i = Aff1 * 16 + Aff0 (QEMU virt's CPU number with GICv3: 16 CPUs per
 * Aff1 cluster). Shared layout (`stride` 0): every secondary waits on
 * `release` itself, as on the FVP AEMv8 DT; one write releases them all and
 * the entry code must sort them out by MPIDR. The page must be zero at power
 * on: QEMU's RAM is, and the harness loads nothing there.
 *
 * At run time the firmware is a minimal PSCI over SMC for EL2: PSCI_VERSION
 * (1.1), PSCI_FEATURES (which says what is implemented) and SYSTEM_OFF
 * (ends QEMU with exit status 0 through semihosting SYS_EXIT, so QEMU needs
 * `-semihosting`); every other call returns NOT_SUPPORTED (-1). Any other
 * exception taken to EL3 prints a line on the PL011 and ends QEMU with a
 * non-zero status, so that a test fails instead of hanging.
 *
 * Exit statuses: 0 SYSTEM_OFF; 1 unexpected exception at EL3; 2 firmware not
 * configured (fw_config not patched); 3 platform problem (not started at
 * EL3, no redistributor for this CPU, GIC not responding, no release slot
 * for this MPIDR).
 *
 * It runs from flash with the MMU off, so it has no writable data at all
 * (see link.ld) and no stack: routines are leaves called with `bl`, or
 * paths that never return; each says what it takes and what it clobbers.
 * The image starts with an arm64 Image header only so that the harness's
 * ELF-to-flat-binary conversion (xtask/src/image.rs) and its checks apply
 * unchanged; QEMU's `-bios` ignores it (code0 is the reset branch).
 */

/* ---- constants ----------------------------------------------------------- */

/* fw_config: the block the harness patches (xtask/src/firmware.rs). */
        .equ    CFG_MAGIC,      0x00    /* "ASPINFW1" */
        .equ    CFG_ENTRY,      0x08    /* Armature's entry (load) address, PA */
        .equ    CFG_DTB,        0x10    /* DTB address, PA, passed in x0 */
        .equ    CFG_RELEASE,    0x18    /* release address (shared) or slot 0 (per-CPU) */
        .equ    CFG_STRIDE,     0x20    /* 0: shared; 8: per-CPU slots */
        .equ    CFG_UART,       0x28    /* PL011 for messages; 0: silent */
        .equ    CFG_GICD,       0x30    /* GICv3 distributor */
        .equ    CFG_GICR,       0x38    /* first GICv3 redistributor */

        .equ    CURRENT_EL3,    (3 << 2)
        .equ    MPIDR_AFF_LO,   0xffffff        /* Aff2:Aff1:Aff0 */
        .equ    MPIDR_AFF,      0xff00ffffff    /* Aff3 and Aff2:Aff1:Aff0 */

        /* SCR_EL3: NS (lower ELs non-secure), RES1 bits 5:4, HCE (HVC
         * enabled), RW (EL2 is AArch64). SMD = 0: SMC enabled. IRQ, FIQ, EA
         * = 0: nothing asynchronous is routed to EL3. */
        .equ    SCR_EL3_VALUE,  (1 << 0) | (3 << 4) | (1 << 8) | (1 << 10)
        /* SCTLR_ELx (ARMv8.0) RES1 bits; M, C, I, A = 0, EE = 0 (little endian). */
        .equ    SCTLR_RES1,     0x30c50830
        /* SPSR for the entry to EL2: EL2h (SP_EL2), D, A, I, F masked. */
        .equ    SPSR_EL2H_DAIF, 0x3c9

        /* ESR_ELx.EC of an SMC from AArch64. */
        .equ    EC_SMC64,       0x17

        /* PSCI (DEN0022) function IDs and return values. */
        .equ    PSCI_VERSION,           0x84000000
        .equ    PSCI_SYSTEM_OFF,        0x84000008
        .equ    PSCI_FEATURES,          0x8400000a
        .equ    PSCI_VERSION_1_1,       0x00010001
        .equ    PSCI_NOT_SUPPORTED,     -1

        /* Semihosting: SYS_EXIT with an AArch64 parameter block
         * { reason, subcode }; ADP_Stopped_ApplicationExit makes the
         * subcode QEMU's exit status. */
        .equ    SYS_EXIT,                       0x18
        .equ    ADP_STOPPED_APPLICATION_EXIT,   0x20026

        /* PL011 registers. */
        .equ    PL011_DR,       0x00
        .equ    PL011_FR,       0x18
        .equ    PL011_FR_TXFF,  5       /* bit: transmit FIFO full */

        /* GICv3 distributor. */
        .equ    GICD_CTLR,              0x0000
        .equ    GICD_TYPER,             0x0004
        .equ    GICD_IGROUPR,           0x0080
        .equ    GICD_CTLR_ARE_S,        (1 << 4)
        .equ    GICD_CTLR_ARE_NS,       (1 << 5)
        .equ    GICD_CTLR_RWP,          31      /* bit: register write pending */
        /* GICv3 redistributor: RD_base frame, then SGI_base frame. */
        .equ    GICR_TYPER,             0x0008
        .equ    GICR_WAKER,             0x0014
        .equ    GICR_SGI_BASE,          0x10000
        .equ    GICR_IGROUPR0,          0x0080  /* in the SGI frame */
        .equ    GICR_FRAME,             0x20000 /* RD + SGI; twice that with VLPIs */
        .equ    GICR_TYPER_VLPIS,       1       /* bit */
        .equ    GICR_TYPER_LAST,        4       /* bit */
        .equ    GICR_WAKER_PSLEEP,      (1 << 1)        /* ProcessorSleep */
        .equ    GICR_WAKER_CASLEEP,     2               /* bit: ChildrenAsleep */
        /* ICC_SRE_EL3 (S3_6_C12_C12_5): SRE | DFB | DIB | Enable (lower ELs
         * may use the system register interface and set their own SRE). */
        .equ    ICC_SRE_EL3_VALUE,      0xf
        /* Polls of a GIC "busy" bit before giving up. */
        .equ    GIC_POLLS,              0x100000

/* ---- macros -------------------------------------------------------------- */

/* Writes the byte in \char to the PL011 at x1 once its FIFO has room.
 * Clobbers \tmp. */
        .macro  PUTC char, tmp
9:      ldr     \tmp, [x1, #PL011_FR]
        tbnz    \tmp, #PL011_FR_TXFF, 9b
        str     \char, [x1, #PL011_DR]
        .endm

/* Prints the string at \label (clobbers what `puts` does). */
        .macro  PUTS label
        adr     x0, \label
        bl      puts
        .endm

/* Prints \reg in hex (clobbers what `puthex` does; \reg must not be x0-x5
 * unless it is x0). */
        .macro  PUTHEX reg
        mov     x0, \reg
        bl      puthex
        .endm

/* One 128-byte vector table entry for an exception the firmware does not
 * expect: x28 = the entry's index, then the report. */
        .macro  VENTRY_UNEXPECTED index
        .balign 0x80
        mov     x28, #\index
        b       el3_unexpected
        .endm

/* ---- the image ----------------------------------------------------------- */

        .section .text.boot, "ax"
        .global _start
_start:
        /* arm64 Image header (see the top of this file). */
        b       reset                   /* code0: the reset vector */
        .long   0                       /* code1 */
        .quad   0                       /* text_offset */
        .quad   __image_end             /* image_size */
        .quad   0xa                     /* flags: LE, 4 KiB pages, anywhere */
        .quad   0, 0, 0                 /* res2-res4 */
        .ascii  "ARM\x64"               /* magic */
        .long   0                       /* res5 */

/* The configuration the harness patches into the flat binary (offsets
 * CFG_*). The defaults are QEMU virt's devices; entry, DTB and release stay
 * zero until patched, and the firmware refuses to run with them zero. */
        .global fw_config
fw_config:
        .ascii  "ASPINFW1"
        .quad   0                       /* entry */
        .quad   0                       /* dtb */
        .quad   0                       /* release */
        .quad   0                       /* stride */
        .quad   0x09000000              /* uart */
        .quad   0x08000000              /* gicd */
        .quad   0x080a0000              /* gicr */

/*
 * reset: where every CPU starts.
 * In: reset state (EL3, MMU and caches off, DAIF masked). Never returns.
 * Uses any register.
 */
reset:
        mrs     x0, CurrentEL
        cmp     x0, #CURRENT_EL3
        b.ne    not_el3

        adr     x0, el3_vectors
        msr     vbar_el3, x0
        isb

        /* EL3 for a non-secure AArch64 EL2: no traps to EL3 of FP/SIMD,
         * trace or debug (CPTR_EL3, MDCR_EL3 = 0). */
        mov     x0, #SCR_EL3_VALUE
        msr     scr_el3, x0
        msr     cptr_el3, xzr
        msr     mdcr_el3, xzr
        /* EL3 and EL2 translation off, little endian, no alignment checks.
         * HCR_EL2 = 0 (nothing trapped, VHE off) and CNTVOFF_EL2 = 0: both
         * reset to UNKNOWN values on hardware. CNTFRQ_EL0 is left alone:
         * QEMU sets it at reset (62.5 MHz). */
        ldr     x0, =SCTLR_RES1
        msr     sctlr_el3, x0
        msr     sctlr_el2, x0
        msr     hcr_el2, xzr
        msr     cntvoff_el2, xzr
        isb

        /* GICv3 (ID_AA64PFR0_EL1.GIC != 0: QEMU sets it with gic-version=3).
         * With GICv2 there is nothing to do here: its group configuration
         * would be the next step, and the tests use GICv3. */
        mrs     x0, id_aa64pfr0_el1
        ubfx    x0, x0, #24, #4
        cbz     x0, 1f
        mrs     x0, mpidr_el1
        ldr     x1, =MPIDR_AFF_LO
        tst     x0, x1
        b.ne    2f
        ubfx    x2, x0, #32, #8         /* Aff3 */
        cbnz    x2, 2f
        bl      gicd_init               /* the boot CPU: the distributor, once */
2:      bl      gicr_init               /* every CPU: its own redistributor */
        ldr     x0, =ICC_SRE_EL3_VALUE
        msr     s3_6_c12_c12_5, x0      /* ICC_SRE_EL3 */
        isb
1:
        /* The boot CPU is the one with MPIDR affinity 0. */
        mrs     x0, mpidr_el1
        ldr     x1, =MPIDR_AFF_LO
        and     x1, x0, x1
        ubfx    x0, x0, #32, #8         /* Aff3 */
        orr     x0, x1, x0, lsl #24     /* x0 = Aff3:Aff2:Aff1:Aff0 */
        cbz     x0, boot_cpu
        b       secondary

/*
 * boot_cpu: announce, then enter Armature at EL2.
 * In: nothing. Never returns. Uses x0-x5, x20-x24, x30.
 */
boot_cpu:
        adr     x20, fw_config
        ldr     x21, [x20, #CFG_ENTRY]
        ldr     x22, [x20, #CFG_DTB]
        ldr     x23, [x20, #CFG_RELEASE]
        ldr     x24, [x20, #CFG_STRIDE]
        cbz     x21, unconfigured
        cbz     x22, unconfigured
        cbz     x23, unconfigured

        /* "spin-table firmware: CPU 0x0 at EL3: entering 0x... at EL2 with
         *  DTB 0x...; secondaries wait on per-CPU release addresses from
         *  0x... | on the shared release address 0x..." */
        PUTS    msg_hello
        PUTHEX  x21
        PUTS    msg_with_dtb
        PUTHEX  x22
        adr     x0, msg_per_cpu
        adr     x1, msg_shared
        cmp     x24, #0
        csel    x0, x1, x0, eq
        bl      puts
        PUTHEX  x23
        PUTS    msg_newline

        /* Enter Armature: EL2h with DAIF masked at the entry address;
         * x0 = DTB, x1-x3 = 0 (the arm64 boot protocol). */
        mov     x0, #SPSR_EL2H_DAIF
        msr     spsr_el3, x0
        msr     elr_el3, x21
        mov     x0, x22
        mov     x1, xzr
        mov     x2, xzr
        mov     x3, xzr
        eret

/*
 * secondary: wait on the release address, then enter what it holds at EL2.
 * In: x0 = this CPU's MPIDR affinity (Aff3:Aff2:Aff1:Aff0, non-zero).
 * Never returns. Uses x0-x4, x20-x22.
 */
secondary:
        adr     x20, fw_config
        ldr     x21, [x20, #CFG_RELEASE]
        ldr     x22, [x20, #CFG_STRIDE]
        cbz     x21, park               /* unconfigured: the boot CPU says so */
        cbz     x22, 2f                 /* shared: everyone waits on `release` */
        /* Per-CPU: slot = release + stride * (Aff1 * 16 + Aff0). */
        lsr     x1, x0, #16             /* Aff2 and Aff3 must be 0 */
        cbnz    x1, no_slot
        ubfx    x1, x0, #0, #8          /* Aff0 */
        cmp     x1, #16
        b.hs    no_slot
        ubfx    x2, x0, #8, #8          /* Aff1 */
        add     x1, x1, x2, lsl #4
        madd    x21, x1, x22, x21
        /* Check, then sleep until an event (the releasing CPU's `sev`),
         * then check again. Loading first means a release that happened
         * before this CPU got here is not missed. */
2:      ldr     x4, [x21]
        cbnz    x4, 3f
        wfe
        b       2b
3:      mov     x0, #SPSR_EL2H_DAIF
        msr     spsr_el3, x0
        msr     elr_el3, x4
        mov     x0, xzr
        mov     x1, xzr
        mov     x2, xzr
        mov     x3, xzr
        eret

/*
 * gicd_init: the distributor's secure set-up, by the boot CPU: affinity
 * routing for both security states, every SPI in Group 1 Non-secure (so
 * that EL2 can use them; the groups stay disabled, EL2 enables Group 1NS
 * through its own view of GICD_CTLR). SGIs and PPIs are per CPU, in the
 * redistributors (gicr_init).
 * In: nothing. Clobbers x0-x4, flags. Fails through `fatal` on a timeout.
 */
gicd_init:
        adr     x0, fw_config
        ldr     x0, [x0, #CFG_GICD]
        mov     w1, #(GICD_CTLR_ARE_S | GICD_CTLR_ARE_NS)
        str     w1, [x0, #GICD_CTLR]
        ldr     x2, =GIC_POLLS
1:      ldr     w1, [x0, #GICD_CTLR]
        tbz     w1, #GICD_CTLR_RWP, 2f
        subs    x2, x2, #1
        b.ne    1b
        b       gic_timeout
2:      /* GICD_TYPER.ITLinesNumber = N: INTIDs up to 32 * (N + 1) - 1.
         * GICD_IGROUPR<n>, n = 1..N: 32 SPIs each (n = 0 is RES0 with
         * affinity routing). */
        ldr     w1, [x0, #GICD_TYPER]
        and     w1, w1, #0x1f
        add     x3, x0, #GICD_IGROUPR
        mov     w4, #-1
        mov     w2, #1
3:      cmp     w2, w1
        b.hi    4f
        str     w4, [x3, w2, uxtw #2]
        add     w2, w2, #1
        b       3b
4:      ret

/*
 * gicr_init: this CPU's redistributor: found by its affinity in
 * GICR_TYPER, woken (ProcessorSleep cleared, then ChildrenAsleep polled
 * until clear), and its SGIs and PPIs put in Group 1 Non-secure.
 * In: nothing. Clobbers x0-x4, flags. Fails through `fatal` when no
 * redistributor has this CPU's affinity or it does not wake up.
 */
gicr_init:
        adr     x0, fw_config
        ldr     x0, [x0, #CFG_GICR]
        /* x1 = MPIDR affinity as GICR_TYPER[63:32] has it: Aff3:Aff2:Aff1:Aff0. */
        mrs     x1, mpidr_el1
        ubfx    x2, x1, #32, #8
        and     x1, x1, #MPIDR_AFF_LO
        orr     x1, x1, x2, lsl #24
1:      ldr     x2, [x0, #GICR_TYPER]
        cmp     x1, x2, lsr #32
        b.eq    3f
        tbnz    x2, #GICR_TYPER_LAST, no_redistributor
        add     x0, x0, #GICR_FRAME
        tbz     x2, #GICR_TYPER_VLPIS, 1b
        add     x0, x0, #GICR_FRAME     /* VLPI frames follow */
        b       1b
3:      ldr     w2, [x0, #GICR_WAKER]
        bic     w2, w2, #GICR_WAKER_PSLEEP
        str     w2, [x0, #GICR_WAKER]
        ldr     x3, =GIC_POLLS
4:      ldr     w2, [x0, #GICR_WAKER]
        tbz     w2, #GICR_WAKER_CASLEEP, 5f
        subs    x3, x3, #1
        b.ne    4b
        b       gic_timeout
5:      add     x4, x0, #GICR_SGI_BASE
        mov     w2, #-1
        str     w2, [x4, #GICR_IGROUPR0]
        ret

/* ---- EL3 exception vectors ----------------------------------------------- */

        .balign 0x800
el3_vectors:
        /* Current EL with SP_EL0: sync, IRQ, FIQ, SError. */
        VENTRY_UNEXPECTED 0
        VENTRY_UNEXPECTED 1
        VENTRY_UNEXPECTED 2
        VENTRY_UNEXPECTED 3
        /* Current EL with SP_EL3. */
        VENTRY_UNEXPECTED 4
        VENTRY_UNEXPECTED 5
        VENTRY_UNEXPECTED 6
        VENTRY_UNEXPECTED 7
        /* Lower EL, AArch64: synchronous is where SMCs arrive. */
        .balign 0x80
        b       el3_sync_lower64
        VENTRY_UNEXPECTED 9
        VENTRY_UNEXPECTED 10
        VENTRY_UNEXPECTED 11
        /* Lower EL, AArch32. */
        VENTRY_UNEXPECTED 12
        VENTRY_UNEXPECTED 13
        VENTRY_UNEXPECTED 14
        VENTRY_UNEXPECTED 15

/*
 * el3_sync_lower64: a synchronous exception from EL2/EL1 in AArch64; only
 * SMC is expected. SMC Calling Convention: function ID in w0, arguments in
 * x1-x3, result in x0.
 * In: x0-x3 as the caller set them. Out: x0 = result. Clobbers x1-x3 (the
 * SMCCC result registers); x4-x30 and SP are preserved. Returns with eret
 * (ELR_EL3 already points after the `smc`).
 */
el3_sync_lower64:
        mrs     x3, esr_el3
        ubfx    x3, x3, #26, #6
        cmp     x3, #EC_SMC64
        b.ne    1f
        ldr     w2, =PSCI_VERSION
        cmp     w0, w2
        b.eq    psci_version
        ldr     w2, =PSCI_FEATURES
        cmp     w0, w2
        b.eq    psci_features
        ldr     w2, =PSCI_SYSTEM_OFF
        cmp     w0, w2
        b.eq    psci_system_off
        mov     x0, #PSCI_NOT_SUPPORTED
        eret
1:      mov     x28, #8
        b       el3_unexpected

/* PSCI_VERSION: 1.1. Honest about what is implemented through PSCI_FEATURES
 * (mandatory since PSCI 1.0): only VERSION, FEATURES and SYSTEM_OFF. */
psci_version:
        ldr     x0, =PSCI_VERSION_1_1
        eret

/* PSCI_FEATURES(x1 = function ID): 0 (implemented, no feature flags) for
 * the three functions above, NOT_SUPPORTED for every other one. */
psci_features:
        ldr     w2, =PSCI_VERSION
        cmp     w1, w2
        b.eq    1f
        ldr     w2, =PSCI_FEATURES
        cmp     w1, w2
        b.eq    1f
        ldr     w2, =PSCI_SYSTEM_OFF
        cmp     w1, w2
        b.eq    1f
        mov     x0, #PSCI_NOT_SUPPORTED
        eret
1:      mov     x0, #0
        eret

/* SYSTEM_OFF: QEMU exits with status 0. Does not return. */
psci_system_off:
        mov     x0, #0
        b       sh_exit

/*
 * el3_unexpected: an exception the firmware does not handle. Prints the
 * vector offset and the EL3 syndrome registers, exits with status 1.
 * In: x28 = vector table entry index. Never returns. Uses anything.
 * Two exceptions at EL3 must not loop: one on the `hlt` of sh_exit means
 * semihosting is off (the HLT is then undefined): say so and park; one in
 * the console code means the UART is unusable: exit without a word.
 */
el3_unexpected:
        mrs     x2, elr_el3
        mrs     x3, spsr_el3
        ubfx    x3, x3, #2, #2          /* SPSR_EL3.M[3:2]: the EL it came from */
        cmp     x3, #3
        b.ne    1f
        adr     x3, sh_exit_hlt
        cmp     x2, x3
        b.eq    no_semihosting
        adr     x3, console_code
        cmp     x2, x3
        b.lo    1f
        adr     x3, console_code_end
        cmp     x2, x3
        b.hs    1f
        mov     x0, #1
        b       sh_exit
1:
        PUTS    msg_fatal
        mrs     x20, mpidr_el1
        ldr     x0, =MPIDR_AFF
        and     x20, x20, x0
        PUTHEX  x20
        PUTS    msg_unexpected
        lsl     x20, x28, #7
        PUTHEX  x20
        PUTS    msg_esr
        mrs     x20, esr_el3
        PUTHEX  x20
        PUTS    msg_elr
        mrs     x20, elr_el3
        PUTHEX  x20
        PUTS    msg_spsr
        mrs     x20, spsr_el3
        PUTHEX  x20
        PUTS    msg_far
        mrs     x20, far_el3
        PUTHEX  x20
        PUTS    msg_newline
        mov     x0, #1
        b       sh_exit

no_semihosting:
        PUTS    msg_fatal
        mrs     x20, mpidr_el1
        ldr     x0, =MPIDR_AFF
        and     x20, x20, x0
        PUTHEX  x20
        PUTS    msg_no_semihosting
        b       park

/* ---- failures before or instead of entering Armature -------------------- */

/* Not at EL3 (QEMU without secure=on starts CPUs at EL2): the boot CPU
 * says so (semihosting works from EL2 too), the others park. */
not_el3:
        mrs     x0, mpidr_el1
        ldr     x1, =MPIDR_AFF_LO
        tst     x0, x1
        b.ne    park
        adr     x0, msg_not_el3
        mov     x1, #3
        b       fatal

unconfigured:
        adr     x0, msg_unconfigured
        mov     x1, #2
        b       fatal

no_slot:
        adr     x0, msg_no_slot
        mov     x1, #3
        b       fatal

no_redistributor:
        adr     x0, msg_no_redistributor
        mov     x1, #3
        b       fatal

gic_timeout:
        adr     x0, msg_gic_timeout
        mov     x1, #3
        b       fatal

/*
 * fatal: "spin-table firmware: FATAL on CPU MPIDR <affinity>: <message>", then exit.
 * In: x0 = message (NUL-terminated), x1 = exit status. Never returns.
 * Uses x0-x5, x20, x26, x27, x30.
 */
fatal:
        mov     x26, x0
        mov     x27, x1
        PUTS    msg_fatal
        mrs     x20, mpidr_el1
        ldr     x0, =MPIDR_AFF
        and     x20, x20, x0
        PUTHEX  x20
        PUTS    msg_colon
        mov     x0, x26
        bl      puts
        PUTS    msg_newline
        mov     x0, x27
        b       sh_exit

/*
 * sh_exit: ends QEMU with an exit status through semihosting SYS_EXIT
 * (AArch64: x0 = 0x18, x1 = address of { ADP_Stopped_ApplicationExit,
 * status }). The blocks live in flash: one per status.
 * In: x0 = status (0-3). Never returns.
 */
sh_exit:
        and     x0, x0, #3
        adr     x1, sh_exit_blocks
        add     x1, x1, x0, lsl #4
        mov     x0, #SYS_EXIT
sh_exit_hlt:
        hlt     #0xf000
        b       park

/* park: this CPU stops for good. Never returns. */
park:
        msr     daifset, #0xf
1:      wfi
        b       1b

/* ---- console ------------------------------------------------------------- */

console_code:                           /* el3_unexpected: faults in here are not reported */

/*
 * puts: writes a NUL-terminated string to the PL011 at fw_config.uart
 * ("\n" as "\r\n"); nothing when that is 0.
 * In: x0 = string. Clobbers x0-x4, flags.
 */
puts:
        adr     x1, fw_config
        ldr     x1, [x1, #CFG_UART]
        cbz     x1, 3f
1:      ldrb    w2, [x0], #1
        cbz     w2, 3f
        cmp     w2, #0x0a
        b.ne    2f
        mov     w3, #0x0d
        PUTC    w3, w4
2:      PUTC    w2, w4
        b       1b
3:      ret

/*
 * puthex: writes x0 as "0x" and hex digits without leading zeros.
 * In: x0 = value. Clobbers x0-x5, flags.
 */
puthex:
        adr     x1, fw_config
        ldr     x1, [x1, #CFG_UART]
        cbz     x1, 4f
        mov     x4, x0
        mov     w2, #0x30               /* '0' */
        PUTC    w2, w3
        mov     w2, #0x78               /* 'x' */
        PUTC    w2, w3
        mov     x5, #60                 /* shift of the highest digit */
1:      cbz     x5, 2f                  /* the last digit is always printed */
        lsr     x2, x4, x5
        tst     x2, #0xf
        b.ne    2f
        sub     x5, x5, #4
        b       1b
2:      lsr     x2, x4, x5
        and     x2, x2, #0xf
        add     x3, x2, #0x30           /* '0' + digit */
        add     x2, x2, #(0x61 - 10)    /* 'a' + digit - 10 */
        cmp     x3, #0x39               /* <= '9'? */
        csel    x2, x3, x2, ls
        PUTC    w2, w3
        subs    x5, x5, #4
        b.ge    2b
4:      ret
console_code_end:

        .ltorg

/* ---- read-only data ------------------------------------------------------ */

        .section .rodata.firmware, "a"
        .balign 16
sh_exit_blocks:
        .quad   ADP_STOPPED_APPLICATION_EXIT, 0
        .quad   ADP_STOPPED_APPLICATION_EXIT, 1
        .quad   ADP_STOPPED_APPLICATION_EXIT, 2
        .quad   ADP_STOPPED_APPLICATION_EXIT, 3

msg_hello:
        .asciz  "spin-table firmware: CPU 0x0 at EL3: entering "
msg_with_dtb:
        .asciz  " at EL2 with DTB "
msg_per_cpu:
        .asciz  "; secondaries wait on per-CPU release addresses from "
msg_shared:
        .asciz  "; secondaries wait on the shared release address "
msg_newline:
        .asciz  "\n"
msg_colon:
        .asciz  ": "
msg_fatal:
        .asciz  "\nspin-table firmware: FATAL on CPU MPIDR "
msg_unexpected:
        .asciz  ": unexpected exception at EL3, vector offset "
msg_esr:
        .asciz  ", ESR_EL3 "
msg_elr:
        .asciz  ", ELR_EL3 "
msg_spsr:
        .asciz  ", SPSR_EL3 "
msg_far:
        .asciz  ", FAR_EL3 "
msg_no_semihosting:
        .asciz  ": semihosting is off (run QEMU with -semihosting), cannot exit; halted\n"
msg_not_el3:
        .asciz  "not started at EL3 (QEMU needs -M virt,secure=on with -bios)"
msg_unconfigured:
        .asciz  "not configured (entry, DTB or release address is 0 in fw_config)"
msg_no_slot:
        .asciz  "MPIDR has no per-CPU release slot (needs Aff3 = Aff2 = 0, Aff0 < 16)"
msg_no_redistributor:
        .asciz  "no GICv3 redistributor has this CPU's affinity"
msg_gic_timeout:
        .asciz  "the GIC did not respond (GICD_CTLR.RWP or GICR_WAKER.ChildrenAsleep stuck)"
