/*
 * The interrupt test guest, booted as dom0 with one vCPU per CPU, on GICv2
 * or GICv3 (told apart by the distributor's PIDR2, as the vgic guest does).
 * vCPU 0 turns the distributor on (GICD_CTLR); every vCPU wakes its
 * redistributor (GICv3), turns on its GIC CPU interface (GICv3: system
 * registers; GICv2: the GICC frame at 0x08010000, which is the hardware
 * GICV), enables its virtual timer PPI (27) and SGI 1, and takes its own
 * virtual timer interrupt within a second. Then vCPU 0 sends SGI 1 to all
 * the others (GICv3: ICC_SGI1R_EL1, IRM = 1; GICv2: GICD_SGIR, "all but
 * me"), and each must take it. Lines:
 * Last, vCPU 0 arms the PL031 RTC's alarm (a real device Armature passes
 * through, SPI 34) and must take its interrupt; it deactivates the second
 * one by hand (GICD_ICACTIVER1) instead of by EOI, and must get a third.
 *   "PASS timer: vCPU n", "PASS sgi: vCPU n", "PASS spi: …", "PASS irq: …".
 *
 * A flag word per vCPU, 64 KiB into the guest's RAM: 1 = timer done, ready
 * for the SGI; 2 = SGI taken. Registers: x25 = this vCPU's number, x20 =
 * timer interrupts taken, x23 = SGIs taken (both counted by the IRQ vector),
 * x22 = vCPUs started (vCPU 0), x26 = GIC version, x27 = GICC (GICv2).
 * No stack is used.
 */
        .equ    PSCI_CPU_ON64,    0xc4000003
        .equ    GICR_SGI_BASE,    0x080b0000    /* vCPU 0's SGI_base frame */

        .text
entry:
        mov     x25, #0
        adr     x0, msg_hello
        bl      puts
        /* GIC version from PIDR2: GICv2's at 0xfe8, GICv3's at 0xffe8. */
        movz    x1, #0x0800, lsl #16
        ldr     w0, [x1, #0xfe8]
        ubfx    w0, w0, #4, #4
        mov     x26, #2
        cmp     w0, #2
        b.eq    1f
        mov     x26, #3
1:
        bl      flags
        stp     xzr, xzr, [x0]
        stp     xzr, xzr, [x0, #16]
        dsb     sy

        /* As Linux does: the distributor on, once (GICv3: ARE,
         * EnableGrp1; GICv2: EnableGrp0/1). */
        movz    x1, #0x0800, lsl #16
        mov     w2, #((1 << 4) | (1 << 1))
        mov     w3, #3
        cmp     x26, #2
        csel    w2, w3, w2, eq
        str     w2, [x1]                /* GICD_CTLR */
        dsb     sy

        mov     x22, #0
        mov     x24, #1
1:      cmp     x24, #8
        b.hs    2f
        ldr     w0, =PSCI_CPU_ON64
        mov     x1, x24
        adr     x2, secondary
        mov     x3, x24
        hvc     #0
        cbnz    x0, 2f
        add     x22, x22, #1
        add     x24, x24, #1
        b       1b

2:      bl      setup
        bl      timer_test

        /* Wait for every secondary to be ready (flag 1), one second each. */
        mov     x24, #1
3:      cmp     x24, x22
        b.hi    4f
        mov     w1, #1
        bl      wait_flag
        cbz     x0, fail_ready
        add     x24, x24, #1
        b       3b

4:      cbz     x22, 6f                 /* alone: nobody to send to */
        cmp     x26, #2
        b.eq    7f
        mov     x1, #(1 << 24)          /* INTID 1 */
        orr     x1, x1, #(1 << 40)      /* IRM: everyone but me */
        msr     S3_0_C12_C11_5, x1      /* ICC_SGI1R_EL1 */
        isb
        b       8f
7:      movz    x1, #0x0800, lsl #16
        ldr     w2, =((1 << 24) | 1)    /* TargetListFilter 1: all but me; SGI 1 */
        str     w2, [x1, #0xf00]        /* GICD_SGIR */
8:
        mov     x24, #1
5:      cmp     x24, x22
        b.hi    6f
        mov     w1, #2
        bl      wait_flag
        cbz     x0, fail_sgi
        add     x24, x24, #1
        b       5b

6:      /* An SPI from a real device: the PL031 RTC's alarm (SPI 34),
         * passed through by Armature, routed to vCPU 0 (the reset routing). */
        movz    x1, #0x0800, lsl #16
        mov     w2, #(1 << 2)           /* SPI 34: bit 2 of ISENABLER1 */
        str     w2, [x1, #0x104]
        mov     x19, #0
        mov     x4, #1
        bl      alarm
        cbz     x0, 11f
        adr     x0, msg_spi
        bl      puts
        /* The second alarm the IRQ vector deactivates by hand through
         * GICD_ICACTIVER1 (the hypervisor must deactivate the physical SPI
         * for it); a third must still arrive. */
        mov     x4, #2
        bl      alarm
        cbz     x0, 11f
        mov     x4, #3
        bl      alarm
        cbz     x0, 11f
        adr     x0, msg_spi_by_hand
        bl      puts
        adr     x0, msg_all
        bl      puts
        b       power_off
11:     adr     x0, msg_fail_spi
        bl      puts
        b       power_off

/*
 * alarm: arm the PL031's alarm a second on and wait up to 4 s for x19 (SPI
 * 34 taken, counted by the IRQ vector) to reach x4.
 *   Out: x0 = 1 if it did. Clobbers x0-x3.
 */
alarm:
        movz    x1, #0x0901, lsl #16    /* PL031 */
        mov     w2, #1
        str     w2, [x1, #0x1c]         /* RTCICR: clear the last alarm */
        ldr     w2, [x1]                /* RTCDR: now, in seconds */
        add     w2, w2, #1
        str     w2, [x1, #0x4]          /* RTCMR: the alarm, a second on */
        mov     w2, #1
        str     w2, [x1, #0x10]         /* RTCIMSC: alarm interrupt on */
        dsb     sy
        mrs     x2, cntvct_el0
        mrs     x3, cntfrq_el0
        add     x3, x2, x3, lsl #2      /* wait up to 4 s */
1:      add     x0, x19, #1
        cmp     x0, x4
        b.hi    2f
        mrs     x2, cntvct_el0
        cmp     x2, x3
        b.lo    1b
        mov     x0, #0
        ret
2:      mov     x0, #1
        ret

fail_ready:
        adr     x0, msg_fail_ready
        bl      puts
        b       power_off
fail_sgi:
        adr     x0, msg_fail_sgi
        bl      puts
        b       power_off

/* secondary: where CPU_ON starts the other vCPUs. In: x0 = vCPU number. */
secondary:
        mov     x25, x0
        /* The GIC version again (registers are per vCPU). */
        movz    x1, #0x0800, lsl #16
        ldr     w0, [x1, #0xfe8]
        ubfx    w0, w0, #4, #4
        mov     x26, #2
        cmp     w0, #2
        b.eq    4f
        mov     x26, #3
4:      bl      setup
        bl      timer_test
        mov     w1, #1
        bl      set_flag
        /* Wait up to a second for SGI 1. */
        mrs     x2, cntvct_el0
        mrs     x3, cntfrq_el0
        add     x3, x2, x3
1:      cbnz    x23, 2f
        mrs     x2, cntvct_el0
        cmp     x2, x3
        b.lo    1b
        adr     x0, msg_fail_sgi_here
        bl      puts
        b       3f
2:      adr     x0, msg_sgi
        bl      puts
        add     x1, x25, #48
        bl      putc
        mov     x1, #10
        bl      putc
        mov     w1, #2
        bl      set_flag
3:      wfi
        b       3b

/*
 * setup: this vCPU's GIC CPU interface and redistributor, IRQs unmasked.
 *   Clobbers x0-x2.
 */
setup:
        mov     x20, #0
        mov     x23, #0
        mov     x17, #0
        adr     x0, vectors
        msr     vbar_el1, x0
        cmp     x26, #2
        b.ne    1f
        /* GICv2: the CPU interface frame, then the banked enable. */
        movz    x27, #0x0801, lsl #16   /* GICC */
        mov     w0, #0xff
        str     w0, [x27, #0x4]         /* GICC_PMR */
        mov     w0, #3
        str     w0, [x27, #0x0]         /* GICC_CTLR: EnableGrp0/1 */
        movz    x1, #0x0800, lsl #16
        ldr     w2, =((1 << 27) | (1 << 1))
        str     w2, [x1, #0x100]        /* GICD_ISENABLER0 (banked) */
        dsb     sy
        isb
        msr     daifclr, #2
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
        ldr     w2, =((1 << 27) | (1 << 1))
        str     w2, [x1, #0x100]        /* GICR_ISENABLER0: PPI 27, SGI 1 */
        dsb     sy
        isb
        msr     daifclr, #2
        ret

/*
 * timer_test: arm the virtual timer for ~1 ms and wait (up to a second) for
 * its interrupt. Prints PASS or FAIL. Clobbers x0-x3, x9, x10.
 */
timer_test:
        mov     x10, x30
        mrs     x1, cntfrq_el0
        lsr     x1, x1, #10
        msr     cntv_tval_el0, x1
        mov     x1, #1
        msr     cntv_ctl_el0, x1
        isb
        mrs     x2, cntvct_el0
        mrs     x3, cntfrq_el0
        add     x3, x2, x3
1:      cbnz    x20, 2f
        mrs     x2, cntvct_el0
        cmp     x2, x3
        b.lo    1b
        adr     x0, msg_fail_timer
        bl      puts
        mov     x30, x10
        ret
2:      cbz     x17, 3f
        adr     x0, msg_fail_active
        bl      puts
3:      adr     x0, msg_timer
        bl      puts
        add     x1, x25, #48
        bl      putc
        mov     x1, #10
        bl      putc
        mov     x30, x10
        ret

/* flags: x0 = the flag words (64 KiB into our RAM). */
flags:
        adr     x0, _start
        add     x0, x0, #0x10, lsl #12
        ret

/* set_flag: flag[x25] = w1. Clobbers x0, x2. */
set_flag:
        mov     x2, x30
        bl      flags
        str     w1, [x0, x25, lsl #2]
        dsb     sy
        sev
        mov     x30, x2
        ret

/* wait_flag: wait up to a second for flag[x24] == w1. Out: x0 = 1 if so. */
wait_flag:
        mov     x9, x30
        mrs     x2, cntvct_el0
        mrs     x3, cntfrq_el0
        add     x3, x2, x3
1:      bl      flags
        ldr     w0, [x0, x24, lsl #2]
        cmp     w0, w1
        b.eq    2f
        mrs     x2, cntvct_el0
        cmp     x2, x3
        b.lo    1b
        mov     x0, #0
        mov     x30, x9
        ret
2:      mov     x0, #1
        mov     x30, x9
        ret

/*
 * EL1 vectors: IRQ from this EL with SP_ELx at +0x280. The timer interrupt
 * turns the timer off (so its line drops) and counts in x20; SGI 1 counts in
 * x23; the PL031 alarm (SPI 34) is masked at the device and counts in x19.
 * While handling the timer interrupt it checks ISACTIVER0 shows it active.
 * EOI (EOImode 0: also deactivates; for hardware-linked interrupts, the
 * deactivation reaches the physical GIC). Uses x17, x18, x21 and x28 only.
 */
        .balign 0x800
vectors:
        .space  0x280
        cmp     x26, #2
        b.eq    3f
        mrs     x21, S3_0_C12_C12_0     /* ICC_IAR1_EL1 */
        mov     x28, x21
        b       4f
3:      ldr     w21, [x27, #0xc]        /* GICC_IAR (source CPU in 12:10) */
        and     w28, w21, #0x3ff
4:      cmp     x28, #27
        b.ne    1f
        msr     cntv_ctl_el0, xzr
        add     x20, x20, #1
        /* Acknowledged, so the distributor must show it active: ISACTIVER0
         * (GICv2: banked GICD; GICv3: this vCPU's SGI_base). The access
         * traps; the hypervisor must answer from the list register's state
         * now, not from when it was listed. Misses count in x17. */
        movz    x18, #0x0800, lsl #16
        cmp     x26, #2
        b.eq    7f
        movz    x18, #(GICR_SGI_BASE >> 16), lsl #16
        add     x18, x18, x25, lsl #17
7:      ldr     w18, [x18, #0x300]
        tbnz    w18, #27, 1f
        add     x17, x17, #1
1:      cmp     x28, #1
        b.ne    6f
        add     x23, x23, #1
        b       2f
6:      cmp     x28, #34
        b.ne    2f
        movz    x18, #0x0901, lsl #16   /* PL031: alarm interrupt off, */
        str     wzr, [x18, #0x10]       /* so its level line drops */
        add     x19, x19, #1
        cmp     x19, #2                 /* the second: deactivated by hand */
        b.ne    2f
        movz    x18, #0x0800, lsl #16
        mov     w28, #(1 << 2)
        str     w28, [x18, #0x384]      /* GICD_ICACTIVER1: SPI 34 */
        dsb     sy
2:      cmp     x26, #2
        b.eq    5f
        msr     S3_0_C12_C12_1, x21     /* ICC_EOIR1_EL1 */
        isb
        eret
5:      str     w21, [x27, #0x10]       /* GICC_EOIR */
        dsb     sy
        eret

        .section .rodata
msg_hello:          .asciz "irq guest: vCPU 0 up\n"
msg_timer:          .asciz "PASS timer: vCPU "
msg_fail_timer:     .asciz "FAIL timer: no virtual timer interrupt within a second\n"
msg_fail_active:    .asciz "FAIL active: the timer interrupt being handled reads as inactive in ISACTIVER0\n"
msg_sgi:            .asciz "PASS sgi: vCPU "
msg_fail_sgi_here:  .asciz "FAIL sgi: no SGI within a second\n"
msg_fail_ready:     .asciz "FAIL irq: a secondary vCPU never got ready\n"
msg_fail_sgi:       .asciz "FAIL irq: a secondary vCPU never took the SGI\n"
msg_all:            .asciz "PASS irq: all vCPUs took their timer interrupt and the SGI\n"
msg_spi:            .asciz "PASS spi: the PL031 RTC alarm (SPI 34) reached vCPU 0\n"
msg_fail_spi:       .asciz "FAIL spi: no PL031 alarm interrupt within 4 s\n"
msg_spi_by_hand:    .asciz "PASS spi: after a deactivation by hand (GICD_ICACTIVER1) the alarm came again\n"
