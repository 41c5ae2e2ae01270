/*
 * The timer test guest: a vCPU's two EL1 timers and their interrupts, on
 * GICv2 or GICv3 (told apart by the distributor's PIDR2). Each vCPU in
 * turn (vCPU 0, then every other one CPU_ON starts: it runs the checks and
 * calls CPU_OFF, vCPU 0 waits for AFFINITY_INFO to say OFF) checks, for
 * its virtual timer (CNTV, PPI 27, "vtimer") and then its physical timer
 * (CNTP, PPI 30, "ptimer"), one line each:
 *
 *   <t>-disable  fired with IRQs masked, its PPI reads pending in ISPENDR0
 *                (GICv2: the banked GICD_ISPENDR0; GICv3: GICR_ISPENDR0);
 *                after CTL.ENABLE = 0 it reads not pending, and with IRQs
 *                unmasked for 5 ms it is not delivered;
 *   <t>-imask    the same after CTL.IMASK = 1;
 *   <t>-cval     the same after CVAL moves 10 s into the future;
 *   <t>-fires    re-armed 1 ms ahead, it wakes the vCPU from WFI into its
 *                handler within 250 ms of its deadline (the physical timer
 *                with the virtual timer as a backstop a second on, so
 *                that an interrupt that never comes is a FAIL, not a hang).
 *
 * A level interrupt's pending state is its line: a timer turned off,
 * masked or moved on no longer asserts it. The IRQ handler turns the timer
 * that fired off (so its line drops), counts it and notes the counter.
 *
 * Registers: x19 the timer (0 virtual, 1 physical), x21 its name, x25 the
 * vCPU (the CPU_ON context ID), x24 vCPUs checked (vCPU 0), x26 the GIC version, x27 GICC (GICv2), x28 ISPENDR0; the IRQ
 * vector counts the virtual timer in x20, the physical timer in x22,
 * others in x17, and puts the timer's counter at its last interrupt in
 * x23 (it uses x16 and x18 too). A small stack per vCPU, 256 KiB into the
 * guest's RAM and up.
 */
        .equ    GICR_SGI_BASE,    0x080b0000    /* vCPU 0's SGI_base frame */
        .equ    PSCI_CPU_ON64,    0xc4000003
        .equ    PSCI_CPU_OFF,     0x84000002
        .equ    PSCI_AFFINITY64,  0xc4000004

        .text
entry:
        mov     x25, #0
        bl      stack
        adr     x0, msg_hello
        bl      puts
        bl      gic_version
        /* The distributor on, once (GICv3: ARE, EnableGrp1; GICv2: Grp0/1). */
        movz    x1, #0x0800, lsl #16
        mov     w2, #((1 << 4) | (1 << 1))
        mov     w3, #3
        cmp     x26, #2
        csel    w2, w3, w2, eq
        str     w2, [x1]                /* GICD_CTLR */
        dsb     sy
        bl      both_timers
        /* Then each other vCPU, one at a time, until CPU_ON says there is
         * no such vCPU (at most 8). */
        mov     x24, #1
1:      cmp     x24, #8
        b.hs    4f
        ldr     w0, =PSCI_CPU_ON64
        mov     x1, x24
        adr     x2, secondary
        mov     x3, x24
        hvc     #0
        cbnz    x0, 4f
        /* Wait (10 s at most) for it to be OFF again. */
        mrs     x5, cntvct_el0
        mrs     x6, cntfrq_el0
        mov     x7, #10
        madd    x5, x6, x7, x5
2:      ldr     w0, =PSCI_AFFINITY64
        mov     x1, x24
        mov     x2, #0
        hvc     #0
        cmp     x0, #1                  /* OFF */
        b.eq    3f
        mrs     x0, cntvct_el0
        cmp     x0, x5
        b.lo    2b
        adr     x0, msg_stuck
        bl      puts
        b       power_off
3:      add     x24, x24, #1
        b       1b
4:      adr     x0, msg_done
        bl      puts
        b       power_off

/* secondary: where CPU_ON starts the others. In: x0 = vCPU number. */
secondary:
        mov     x25, x0
        bl      stack
        bl      gic_version
        bl      both_timers
        ldr     w0, =PSCI_CPU_OFF
        hvc     #0
        adr     x0, msg_off_returned
        bl      puts
1:      wfi
        b       1b

/* stack: sp = this vCPU's stack (x25). Clobbers x0. */
stack:
        adr     x0, _start
        add     x0, x0, #0x40, lsl #12
        add     x0, x0, x25, lsl #12
        add     x0, x0, #0x1000
        mov     sp, x0
        ret

/* both_timers: set up this vCPU's GIC side, check both its timers, say so. */
both_timers:
        stp     x29, x30, [sp, #-16]!
        bl      setup
        mov     x19, #0
        adr     x21, name_v
        bl      timer_checks
        mov     x19, #1
        adr     x21, name_p
        bl      timer_checks
        adr     x0, msg_vcpu_done
        bl      puts
        add     x1, x25, #48
        bl      putc
        mov     x1, #10
        bl      putc
        ldp     x29, x30, [sp], #16
        ret

/* gic_version: x26 = 2 or 3. Clobbers x0, x1. */
gic_version:
        /* GIC version from PIDR2: GICv2's at 0xfe8, GICv3's at 0xffe8. */
        movz    x1, #0x0800, lsl #16
        ldr     w0, [x1, #0xfe8]
        ubfx    w0, w0, #4, #4
        mov     x26, #2
        cmp     w0, #2
        b.eq    1f
        mov     x26, #3
1:      ret

/*
 * setup: the GIC CPU interface and redistributor, PPIs 27 and 30 enabled,
 * IRQs left masked; x28 = ISPENDR0. Clobbers x0-x2.
 */
setup:
        mov     x20, #0
        mov     x22, #0
        mov     x17, #0
        mov     x23, #0
        adr     x0, vectors
        msr     vbar_el1, x0
        ldr     w2, =((1 << 27) | (1 << 30))
        cmp     x26, #2
        b.ne    1f
        movz    x27, #0x0801, lsl #16   /* GICC (the hardware GICV) */
        mov     w0, #0xff
        str     w0, [x27, #0x4]         /* GICC_PMR */
        mov     w0, #3
        str     w0, [x27, #0x0]         /* GICC_CTLR: EnableGrp0/1 */
        movz    x1, #0x0800, lsl #16
        str     w2, [x1, #0x100]        /* GICD_ISENABLER0 (banked) */
        add     x28, x1, #0x200         /* GICD_ISPENDR0 (banked) */
        dsb     sy
        isb
        ret
1:      mrs     x0, S3_0_C12_C12_5      /* ICC_SRE_EL1 */
        orr     x0, x0, #1
        msr     S3_0_C12_C12_5, x0
        isb
        mov     x0, #0xff
        msr     S3_0_C4_C6_0, x0        /* ICC_PMR_EL1 */
        mov     x0, #1
        msr     S3_0_C12_C12_7, x0      /* ICC_IGRPEN1_EL1 */
        movz    x1, #(GICR_SGI_BASE >> 16), lsl #16
        add     x1, x1, x25, lsl #17    /* + n * 0x20000 */
        sub     x0, x1, #0x10, lsl #12  /* RD_base */
        str     wzr, [x0, #0x14]        /* GICR_WAKER: awake */
        str     w2, [x1, #0x100]        /* GICR_ISENABLER0 */
        add     x28, x1, #0x200         /* GICR_ISPENDR0 */
        dsb     sy
        isb
        ret

/* The selected timer (x19): CTL = x0, CVAL = x0, x0 = its counter. */
t_ctl:
        cbnz    x19, 1f
        msr     cntv_ctl_el0, x0
        isb
        ret
1:      msr     cntp_ctl_el0, x0
        isb
        ret
t_cval:
        cbnz    x19, 1f
        msr     cntv_cval_el0, x0
        isb
        ret
1:      msr     cntp_cval_el0, x0
        isb
        ret
t_now:
        isb
        cbnz    x19, 1f
        mrs     x0, cntvct_el0
        ret
1:      mrs     x0, cntpct_el0
        ret
/* t_count: x0 = the selected timer's interrupts taken so far. */
t_count:
        cmp     x19, #0
        csel    x0, x20, x22, eq
        ret

/* pending: x0 = the selected timer's PPI bit in ISPENDR0 (a trapped read). */
pending:
        ldr     w0, [x28]
        mov     w1, #27
        mov     w2, #30
        cmp     x19, #0
        csel    w1, w1, w2, eq
        lsr     w0, w0, w1
        and     x0, x0, #1
        ret

/* delay: wait x0 microseconds on the virtual counter. Clobbers x0-x2. */
delay:
        mrs     x1, cntfrq_el0
        mul     x1, x1, x0
        ldr     x2, =1000000
        udiv    x1, x1, x2
        isb
        mrs     x2, cntvct_el0
        add     x1, x1, x2
1:      isb
        mrs     x2, cntvct_el0
        cmp     x2, x1
        b.lo    1b
        ret

/*
 * arm_past: with IRQs masked, arms the selected timer with its deadline
 * passed and waits 2 ms for its interrupt to reach the (virtual) GIC.
 *   Out: x0 = its ISPENDR0 bit (1 expected). Clobbers x0-x2.
 */
arm_past:
        stp     x29, x30, [sp, #-16]!
        bl      t_now
        bl      t_cval
        mov     x0, #1                  /* ENABLE, not masked */
        bl      t_ctl
        mov     x0, #2000
        bl      delay
        bl      pending
        ldp     x29, x30, [sp], #16
        ret

/*
 * quiet: unmasks IRQs for 5 ms. Out: x0 = 1 if the selected timer's
 * interrupt was not taken meanwhile. Clobbers x0-x2, x4.
 */
quiet:
        stp     x29, x30, [sp, #-16]!
        bl      t_count
        mov     x4, x0
        msr     daifclr, #2
        mov     x0, #5000
        bl      delay
        msr     daifset, #2
        bl      t_count
        cmp     x0, x4
        cset    x0, eq
        ldp     x29, x30, [sp], #16
        ret

/*
 * after_change: the check after the timer's output was dropped: x12 = its
 * ISPENDR0 bit now (0 expected), x13 = quiet (1 expected); prints the
 * line for suffix x11 (x14 = 0 if the fired timer never read pending).
 */
after_change:
        stp     x29, x30, [sp, #-16]!
        bl      pending
        mov     x12, x0
        bl      quiet
        mov     x13, x0
        bl      report
        ldp     x29, x30, [sp], #16
        ret

/* report: PASS if x14 = 1, x12 = 0 and x13 = 1, else FAIL with the figures. */
report:
        stp     x29, x30, [sp, #-16]!
        cbz     x14, 1f
        cbnz    x12, 1f
        cbz     x13, 1f
        adr     x0, msg_pass
        bl      puts
        mov     x0, x21
        bl      puts
        mov     x0, x11
        bl      puts
        mov     x1, #10
        bl      putc
        b       2f
1:      adr     x0, msg_fail
        bl      puts
        mov     x0, x21
        bl      puts
        mov     x0, x11
        bl      puts
        adr     x0, msg_fig_a           /* " (pending when fired " */
        bl      puts
        mov     x1, x14
        bl      puthex
        adr     x0, msg_fig_b           /* ", pending after " */
        bl      puts
        mov     x1, x12
        bl      puthex
        adr     x0, msg_fig_c           /* ", delivered after " */
        bl      puts
        eor     x1, x13, #1
        bl      puthex
        adr     x0, msg_fig_d           /* ")\n" */
        bl      puts
2:      ldp     x29, x30, [sp], #16
        ret

/* timer_checks: the four checks of the selected timer (x19, name x21). */
timer_checks:
        stp     x29, x30, [sp, #-16]!
        /* 1. ENABLE = 0. */
        bl      arm_past
        mov     x14, x0
        mov     x0, #0
        bl      t_ctl
        adr     x11, msg_disable
        bl      after_change
        /* 2. IMASK = 1. */
        bl      arm_past
        mov     x14, x0
        mov     x0, #3                  /* ENABLE | IMASK */
        bl      t_ctl
        adr     x11, msg_imask
        bl      after_change
        /* 3. CVAL 10 s into the future. */
        bl      arm_past
        mov     x14, x0
        bl      t_now
        mrs     x1, cntfrq_el0
        mov     x2, #10
        madd    x0, x1, x2, x0
        bl      t_cval
        adr     x11, msg_cval
        bl      after_change
        mov     x0, #0
        bl      t_ctl
        /* 4. Re-armed 1 ms ahead: it fires, from WFI. */
        bl      t_count
        mov     x12, x0
        mov     x15, x20                /* the backstop's count */
        bl      t_now
        mrs     x1, cntfrq_el0
        add     x0, x0, x1, lsr #10
        mov     x13, x0                 /* the deadline */
        bl      t_cval
        cbz     x19, 1f
        /* Physical timer: the virtual timer a second on as a backstop. */
        isb
        mrs     x0, cntvct_el0
        mrs     x1, cntfrq_el0
        add     x0, x0, x1
        msr     cntv_cval_el0, x0
        mov     x0, #1
        msr     cntv_ctl_el0, x0
        isb
1:      mov     x0, #1
        bl      t_ctl
2:      bl      t_count
        cmp     x0, x12
        b.ne    3f
        cmp     x20, x15
        b.ne    5f                      /* the backstop fired first */
        wfi                             /* wakes on a pending IRQ, masked */
        msr     daifclr, #2
        isb
        msr     daifset, #2
        b       2b
3:      msr     cntv_ctl_el0, xzr       /* the backstop off */
        isb
        /* Taken at x23: not before the deadline, within 250 ms of it. */
        cmp     x23, x13
        b.lo    6f
        sub     x0, x23, x13
        mrs     x1, cntfrq_el0
        cmp     x0, x1, lsr #2
        b.hs    6f
        adr     x0, msg_pass
        bl      puts
        mov     x0, x21
        bl      puts
        adr     x0, msg_fires
        bl      puts
        b       9f
5:      adr     x0, msg_fail
        bl      puts
        mov     x0, x21
        bl      puts
        adr     x0, msg_never
        bl      puts
        mov     x0, #0
        bl      t_ctl
        b       9f
6:      adr     x0, msg_fail
        bl      puts
        mov     x0, x21
        bl      puts
        adr     x0, msg_late
        bl      puts
9:      ldp     x29, x30, [sp], #16
        ret

sync_fail:
        adr     x0, msg_sync
        bl      puts
        b       power_off

/*
 * EL1 vectors: a synchronous exception fails the test; IRQ from this EL
 * with SP_ELx at +0x280: the timer that fired is turned off (its line
 * drops), counted, and its counter noted in x23; EOI (EOImode 0: also
 * deactivates, which reaches the physical PPI through the list register).
 */
        .balign 0x800
vectors:
        .space  0x200
        b       sync_fail
        .space  0x7c
        cmp     x26, #2
        b.eq    3f
        mrs     x16, S3_0_C12_C12_0     /* ICC_IAR1_EL1 */
        mov     x18, x16
        b       4f
3:      ldr     w16, [x27, #0xc]        /* GICC_IAR */
        and     w18, w16, #0x3ff
4:      cmp     x18, #27
        b.ne    5f
        isb
        mrs     x23, cntvct_el0
        msr     cntv_ctl_el0, xzr
        add     x20, x20, #1
        b       6f
5:      cmp     x18, #30
        b.ne    7f
        isb
        mrs     x23, cntpct_el0
        msr     cntp_ctl_el0, xzr
        add     x22, x22, #1
        b       6f
7:      cmp     x18, #1020              /* spurious: nothing to EOI */
        b.hs    8f
        add     x17, x17, #1
6:      cmp     x26, #2
        b.eq    9f
        msr     S3_0_C12_C12_1, x16     /* ICC_EOIR1_EL1 */
        isb
        eret
9:      str     w16, [x27, #0x10]       /* GICC_EOIR */
        dsb     sy
8:      eret

        .section .rodata
msg_hello:   .asciz "timer guest: vCPU 0 up\n"
name_v:      .asciz "vtimer"
name_p:      .asciz "ptimer"
msg_pass:    .asciz "PASS "
msg_fail:    .asciz "FAIL "
msg_disable: .asciz "-disable: fired, then CTL.ENABLE = 0: its PPI no longer pending in ISPENDR0, not delivered"
msg_imask:   .asciz "-imask: fired, then CTL.IMASK = 1: its PPI no longer pending in ISPENDR0, not delivered"
msg_cval:    .asciz "-cval: fired, then CVAL 10 s on: its PPI no longer pending in ISPENDR0, not delivered"
msg_fig_a:   .asciz " (pending when fired "
msg_fig_b:   .asciz ", pending after "
msg_fig_c:   .asciz ", delivered after "
msg_fig_d:   .asciz ")\n"
msg_fires:   .asciz "-fires: re-armed 1 ms ahead, it woke the vCPU from WFI into its handler within 250 ms of its deadline\n"
msg_never:   .asciz "-fires: no interrupt within a second of its deadline (the backstop fired)\n"
msg_late:    .asciz "-fires: taken before its deadline or more than 250 ms after it\n"
msg_done:    .asciz "timer guest: done, powering off\n"
msg_vcpu_done: .asciz "timer guest: checked the timers of vCPU "
msg_stuck:   .asciz "FAIL timer: a vCPU did not go OFF again within 10 s\n"
msg_off_returned: .asciz "FAIL timer: CPU_OFF returned\n"
msg_sync:    .asciz "FAIL timer: synchronous exception in the guest\n"
