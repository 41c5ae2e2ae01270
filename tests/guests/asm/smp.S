/*
 * The smp test guest: what every vCPU of a domain must see, booted as dom0
 * with one vCPU per physical CPU, on GICv2 or GICv3 (told apart by the
 * distributor's PIDR2). One line each, PASS, FAIL or SKIP:
 *
 *  1. cpu-on-race (vCPU 0; 3 vCPUs or more, SKIP below): vCPUs 0..n-2 all
 *     call CPU_ON on vCPU n-1 (OFF) at the same moment, released by a "go"
 *     word in guest memory and a common virtual counter value, for ROUNDS
 *     rounds (the target calls CPU_OFF once every racer has answered).
 *     Each round exactly one call must answer SUCCESS and every other
 *     ALREADY_ON (as under KVM; ON_PENDING fails), and the target must
 *     start once.
 *     Before that, AFFINITY_INFO counts the vCPUs: each answers OFF.
 *  2. timer (every vCPU): its virtual timer, armed 1 ms ahead (CNTV_CVAL),
 *     wakes it from WFI, 8 times; each interrupt is taken after the
 *     deadline and less than 250 ms after it (generous: on a busy host
 *     QEMU's counter runs on while its vCPU threads wait; an interrupt
 *     left undelivered shows as none within a second).
 *  3. lr-overflow (every vCPU): with interrupts masked it sends itself
 *     SGIs 0-7 (GICv3: ICC_SGI1R_EL1 with its own Aff0 in the target list;
 *     GICv2: GICD_SGIR, TargetListFilter 0b10 "only me"), more than there
 *     are list registers (QEMU: 4); unmasked, it must take all 8 while it
 *     polls memory only (no trap that would refill the list registers: the
 *     maintenance interrupt has to).
 *  4. sgi (every vCPU) and sgi-matrix (vCPU 0): vCPU v sends SGI 8+v to
 *     every other vCPU by target list (GICv3: TargetList; GICv2: GICD_SGIR
 *     CPUTargetList), and SGI 12+v to all but itself (GICv3: IRM = 1;
 *     GICv2: TargetListFilter 0b01); each vCPU must take each of the other
 *     vCPUs' two SGIs exactly once and none of its own; vCPU 0 then checks
 *     the whole n x (n-1) matrix, and on GICv2 that every SGI came with
 *     its sender's CPU ID (GICC_IAR bits 12:10).
 *  5. cntvoff (vCPU 0): every vCPU brackets CNTPCT_EL0 - CNTVCT_EL0 (a
 *     CNTPCT read on each side of a CNTVCT read); the brackets must
 *     overlap (a single offset for the domain) and be above 0 (the virtual
 *     counter is behind the physical one). The line gives the bracket, for
 *     the harness to compare with the hypervisor's boot timings.
 *
 * At most 4 vCPUs take part (SGIs 8-15 name the sender). Phases are
 * separated by barriers (a word per vCPU, released by vCPU 0). Memory
 * (no atomics: each word has a single writer, as LDXR/STXR on the Device
 * memory a guest with its MMU off sees is IMPLEMENTATION DEFINED): DATA =
 * 64 KiB into the guest's RAM; a 4 KiB stack per vCPU from 128 KiB.
 *
 * Registers kept across calls: x25 = this vCPU's number, x26 = GIC version,
 * x27 = GICC (GICv2), x28 = DATA; sp = this vCPU's stack. Everything else
 * may be clobbered by any call.
 */
        .equ    PSCI_CPU_OFF,     0x84000002
        .equ    PSCI_CPU_ON64,    0xc4000003
        .equ    PSCI_AFFINITY64,  0xc4000004
        .equ    GICR_SGI_BASE,    0x080b0000    /* vCPU 0's SGI_base frame */
        .equ    ROUNDS,           250
        .equ    MAX_VCPUS,        4

        /* DATA layout */
        .equ    D_N,       0x000        /* u32: vCPUs taking part */
        .equ    D_GO,      0x004        /* u32: race round released */
        .equ    D_RELEASE, 0x008        /* u32: barrier phase released */
        .equ    D_TSTART,  0x00c        /* u32: times the race target started */
        .equ    D_OFFOK,   0x010        /* u32: round whose target may go OFF */
        .equ    D_GOTIME,  0x018        /* u64: CNTVCT at which the racers call */
        .equ    D_ARRIVE,  0x040        /* u32[8]: barrier phase reached */
        .equ    D_RDONE,   0x080        /* u32[8]: race round done */
        .equ    D_RES,     0x100        /* u64[8]: CPU_ON result this round */
        .equ    D_OFF,     0x200        /* {u64, u64}[8]: offset bracket */
        .equ    D_TCOUNT,  0x300        /* u32[8]: timer interrupts taken */
        .equ    D_TSEEN,   0x340        /* u64[8]: CNTVCT at the last one */
        .equ    D_SRCBAD,  0x380        /* u32[8]: GICv2 SGIs from a wrong CPU ID */
        .equ    D_OTHER,   0x3c0        /* u32[8]: unexpected interrupts */
        .equ    D_CNT,     0x400        /* u32[8][16]: SGIs taken, by INTID */
        .equ    D_SIZE,    0x600

        .text
entry:
        mov     x25, #0
        bl      init_regs
        mov     x0, x28
        add     x1, x28, #D_SIZE
1:      stp     xzr, xzr, [x0], #16
        cmp     x0, x1
        b.lo    1b
        dsb     sy
        adr     x0, msg_hello
        bl      puts

        /* How many vCPUs: AFFINITY_INFO answers OFF for each (none is
         * started yet), INVALID_PARAMETERS past the last. */
        mov     x19, #1
2:      cmp     x19, #8
        b.hs    4f
        ldr     w0, =PSCI_AFFINITY64
        mov     x1, x19
        mov     x2, #0
        hvc     #0
        cmp     x0, #1                  /* OFF */
        b.ne    3f
        add     x19, x19, #1
        b       2b
3:      cmn     x0, #2                  /* INVALID_PARAMETERS */
        b.eq    4f
        adr     x0, msg_affinity_fail
        bl      puts
        b       power_off
4:      adr     x0, msg_count_a
        bl      puts
        mov     x1, x19
        bl      putdec
        adr     x0, msg_count_b
        bl      puts
        cmp     x19, #MAX_VCPUS
        b.ls    5f
        mov     x19, #MAX_VCPUS
        adr     x0, msg_capped
        bl      puts
5:      str     w19, [x28, #D_N]
        dsb     sy

        /* The distributor on (GICv3: ARE, EnableGrp1; GICv2: both groups). */
        bl      gic_version
        movz    x1, #0x0800, lsl #16
        mov     w2, #((1 << 4) | (1 << 1))
        mov     w3, #3
        cmp     x26, #2
        csel    w2, w3, w2, eq
        str     w2, [x1]                /* GICD_CTLR */
        dsb     sy

        cmp     x19, #3
        b.hs    6f
        /* Fewer than 3 vCPUs: no race; start the others for the rest. */
        adr     x0, msg_race_skip_a
        bl      puts
        mov     x1, x19
        bl      putdec
        adr     x0, msg_race_skip_b
        bl      puts
        mov     x20, #1
7:      cmp     x20, x19
        b.hs    common
        mov     x1, x20
        adr     x2, secondary
        bl      cpu_on
        cbnz    x0, fail_cpu_on
        add     x20, x20, #1
        b       7b
6:      bl      race
        /* The target joins the others. */
        ldr     w1, [x28, #D_N]
        sub     x1, x1, #1
        adr     x2, secondary
        bl      cpu_on
        cbnz    x0, fail_cpu_on
        b       common

fail_cpu_on:
        adr     x0, msg_cpu_on_fail
        bl      puts
        b       power_off

/*
 * init_regs: x25 = vCPU number (set) -> x28, sp, VBAR_EL1. No stack used.
 * Clobbers x0.
 */
init_regs:
        adr     x28, _start
        add     x0, x28, #0x20, lsl #12
        add     x0, x0, x25, lsl #12
        add     sp, x0, #0x1000
        add     x28, x28, #0x10, lsl #12
        adr     x0, vectors
        msr     vbar_el1, x0
        isb
        ret

/* gic_version: x26 = 2 or 3 (PIDR2.ArchRev), x27 = GICC. Clobbers x0. */
gic_version:
        movz    x0, #0x0800, lsl #16
        ldr     w0, [x0, #0xfe8]
        ubfx    w0, w0, #4, #4
        mov     x26, #3
        cmp     w0, #2
        b.ne    1f
        mov     x26, #2
1:      movz    x27, #0x0801, lsl #16
        ret

/* cpu_on: CPU_ON of vCPU x1 (Aff0) at x2, context ID = x1. Out: x0. */
cpu_on:
        mov     x3, x1
        ldr     w0, =PSCI_CPU_ON64
        hvc     #0
        ret

/* affinity: AFFINITY_INFO of vCPU x1. Out: x0. */
affinity:
        ldr     w0, =PSCI_AFFINITY64
        mov     x2, #0
        hvc     #0
        ret

/* deadline: x0 = CNTVCT + x0 milliseconds. Clobbers x1, x2. */
deadline:
        mrs     x1, cntfrq_el0
        mul     x0, x0, x1
        mov     x1, #1000
        udiv    x0, x0, x1
        isb
        mrs     x2, cntvct_el0
        add     x0, x0, x2
        ret

/* past: flags HS if CNTVCT >= x0 (b.hs = time is up). Clobbers x1. */
past:
        isb
        mrs     x1, cntvct_el0
        cmp     x1, x0
        ret

/*
 * race (vCPU 0): ROUNDS rounds of vCPUs 0..n-2 calling CPU_ON on vCPU n-1
 * at once. Prints PASS, or FAIL and powers off.
 */
race:
        stp     x29, x30, [sp, #-16]!
        ldr     w23, [x28, #D_N]
        sub     x23, x23, #1            /* the target */
        mov     x19, #1                 /* start the other racers */
1:      cmp     x19, x23
        b.hs    2f
        mov     x1, x19
        adr     x2, racer
        bl      cpu_on
        cbnz    x0, fail_cpu_on
        add     x19, x19, #1
        b       1b
2:      mov     x19, #1                 /* round */
        mov     x20, #0                 /* ON_PENDING in all */
        mov     x21, #0                 /* ALREADY_ON in all */
3:      cmp     x19, #ROUNDS
        b.hi    9f
        /* Go: every racer calls when the (shared) virtual counter
         * reaches the same value, half a millisecond on. */
        mov     x0, #0
        bl      deadline
        mrs     x1, cntfrq_el0
        add     x0, x0, x1, lsr #11
        str     x0, [x28, #D_GOTIME]
        dsb     sy
        str     w19, [x28, #D_GO]
        dsb     sy
        sev
        bl      wait_go
        mov     x1, x23
        adr     x2, target_race
        bl      cpu_on
        str     x0, [x28, #D_RES]
        /* Every other racer's answer for this round. */
        mov     x0, #5000
        bl      deadline
        mov     x22, x0
        mov     x4, #1
4:      cmp     x4, x23
        b.hs    6f
5:      add     x2, x28, #D_RDONE
        ldr     w2, [x2, x4, lsl #2]
        cmp     w2, w19
        b.eq    51f
        mov     x0, x22
        bl      past
        b.lo    5b
        adr     x0, msg_race_stuck
        b       race_fail_msg
51:     add     x4, x4, #1
        b       4b
6:      /* Count: x4 SUCCESS, x5 ON_PENDING, x6 ALREADY_ON, x7 other. */
        mov     x4, #0
        mov     x5, #0
        mov     x6, #0
        mov     x7, #0
        mov     x8, #0
7:      cmp     x8, x23
        b.hs    8f
        add     x2, x28, #D_RES
        ldr     x2, [x2, x8, lsl #3]
        add     x8, x8, #1
        cbnz    x2, 71f
        add     x4, x4, #1
        b       7b
71:     cmn     x2, #5                  /* ON_PENDING */
        b.ne    72f
        add     x5, x5, #1
        b       7b
72:     cmn     x2, #4                  /* ALREADY_ON */
        b.ne    73f
        add     x6, x6, #1
        b       7b
73:     add     x7, x7, #1
        b       7b
8:      cmp     x4, #1
        b.ne    race_fail_counts
        cbnz    x5, race_fail_counts    /* ON_PENDING: KVM never answers it */
        cbnz    x7, race_fail_counts
        add     x20, x20, x5
        add     x21, x21, x6
        /* The target starts (once), and goes OFF again once every racer
         * has answered (else a late racer could rightly start it again). */
        str     w19, [x28, #D_OFFOK]
        dsb     sy
        mov     x0, #5000
        bl      deadline
        mov     x22, x0
81:     ldr     w2, [x28, #D_TSTART]
        cmp     w2, w19
        b.eq    82f
        b.hi    race_fail_twice
        mov     x0, x22
        bl      past
        b.lo    81b
        adr     x0, msg_race_no_start
        b       race_fail_msg
82:     mov     x1, x23
        bl      affinity
        cmp     x0, #1                  /* OFF */
        b.eq    83f
        mov     x0, x22
        bl      past
        b.lo    82b
        adr     x0, msg_race_not_off
        b       race_fail_msg
83:     add     x19, x19, #1
        b       3b
9:      adr     x0, msg_race_pass_a
        bl      puts
        mov     x1, #ROUNDS
        bl      putdec
        adr     x0, msg_race_pass_b
        bl      puts
        mov     x1, x23
        bl      putdec
        adr     x0, msg_race_pass_c
        bl      puts
        mov     x1, x23
        bl      putdec
        adr     x0, msg_race_pass_d
        bl      puts
        mov     x1, x21
        bl      putdec
        adr     x0, msg_race_pass_f
        bl      puts
        ldp     x29, x30, [sp], #16
        ret

race_fail_twice:
        adr     x0, msg_race_twice
race_fail_msg:
        mov     x20, x0
        adr     x0, msg_race_fail
        bl      puts
        mov     x1, x19
        bl      putdec
        mov     x0, x20
        bl      puts
        b       power_off
race_fail_counts:
        stp     x5, x6, [sp, #-16]!
        stp     x7, xzr, [sp, #-16]!
        mov     x20, x4
        adr     x0, msg_race_fail
        bl      puts
        mov     x1, x19
        bl      putdec
        adr     x0, msg_race_counts_a
        bl      puts
        mov     x1, x20
        bl      putdec
        adr     x0, msg_race_counts_b
        bl      puts
        ldr     x1, [sp, #16]
        bl      putdec
        adr     x0, msg_race_counts_c
        bl      puts
        ldr     x1, [sp, #24]
        bl      putdec
        adr     x0, msg_race_counts_d
        bl      puts
        ldr     x1, [sp]
        bl      putdec
        adr     x0, msg_race_counts_e
        bl      puts
        b       power_off

/* racer: vCPUs 1..n-2 during the race. In: x0 = vCPU number. */
racer:
        mov     x25, x0
        bl      init_regs
        ldr     w23, [x28, #D_N]
        sub     x23, x23, #1
        mov     x19, #1
1:      cmp     x19, #ROUNDS
        b.hi    common
2:      ldr     w0, [x28, #D_GO]        /* spin: no WFE, to go at once */
        cmp     w0, w19
        b.lo    2b
        bl      wait_go
        mov     x1, x23
        adr     x2, target_race
        bl      cpu_on
        add     x1, x28, #D_RES
        str     x0, [x1, x25, lsl #3]
        dsb     sy
        add     x1, x28, #D_RDONE
        str     w19, [x1, x25, lsl #2]
        dsb     sy
        add     x19, x19, #1
        b       1b

/* wait_go: spin until CNTVCT reaches D_GOTIME. Clobbers x0, x1. */
wait_go:
        ldr     x0, [x28, #D_GOTIME]
1:      mrs     x1, cntvct_el0
        cmp     x1, x0
        b.lo    1b
        ret

/* target_race: where the race's CPU_ON starts vCPU n-1: count, wait
 * until every racer has answered for this round, CPU_OFF. */
target_race:
        adr     x1, _start
        add     x1, x1, #0x10, lsl #12
        ldr     w2, [x1, #D_TSTART]
        add     w2, w2, #1
        str     w2, [x1, #D_TSTART]
        dsb     sy
1:      ldr     w3, [x1, #D_OFFOK]
        cmp     w3, w2
        b.lo    1b
        ldr     w0, =PSCI_CPU_OFF
        hvc     #0
        adr     x0, msg_off_returned
        bl      puts
2:      wfi
        b       2b

/* secondary: CPU_ON's entry for the checks every vCPU does. x0 = number. */
secondary:
        mov     x25, x0
        bl      init_regs

/* common: every vCPU, once started. */
common:
        bl      gic_setup
        bl      sample_offset
        bl      timer_check
        mov     w1, #1
        bl      barrier
        bl      overflow_check
        mov     w1, #2
        bl      barrier
        bl      sgi_check
        mov     w1, #3
        bl      barrier
        cbnz    x25, 1f
        bl      final_checks
        adr     x0, msg_done
        bl      puts
        b       power_off
1:      wfi
        b       1b

/*
 * gic_setup: this vCPU's CPU interface (and GICv3 redistributor): SGIs 0-15
 * and the virtual timer's PPI 27 enabled, Group 1 (GICv3); IRQs stay
 * masked. Clobbers x0-x2.
 */
gic_setup:
        mov     x2, x30
        bl      gic_version
        mov     x30, x2
        ldr     w2, =0x0800ffff         /* PPI 27, SGIs 0-15 */
        cmp     x26, #2
        b.ne    1f
        mov     w0, #0xff
        str     w0, [x27, #0x4]         /* GICC_PMR */
        mov     w0, #3
        str     w0, [x27, #0x0]         /* GICC_CTLR: EnableGrp0/1 */
        movz    x1, #0x0800, lsl #16
        str     w2, [x1, #0x100]        /* GICD_ISENABLER0 (banked) */
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
        mov     w0, #-1
        str     w0, [x1, #0x80]         /* GICR_IGROUPR0: Group 1 */
        str     w2, [x1, #0x100]        /* GICR_ISENABLER0 */
        dsb     sy
        isb
        ret

/*
 * barrier: this vCPU has reached phase w1; returns once every vCPU has
 * (vCPU 0 waits for all, up to 5 s, then releases them). Clobbers x0-x6.
 */
barrier:
        stp     x29, x30, [sp, #-16]!
        mov     w5, w1
        add     x6, x28, #D_ARRIVE
        str     w5, [x6, x25, lsl #2]
        dsb     sy
        cbnz    x25, 4f
        mov     x0, #5000
        bl      deadline
        ldr     w3, [x28, #D_N]
1:      cbz     x3, 3f
        sub     x3, x3, #1
2:      ldr     w4, [x6, x3, lsl #2]
        cmp     w4, w5
        b.hs    1b
        bl      past
        b.lo    2b
        adr     x0, msg_barrier_fail
        bl      puts
        b       power_off
3:      str     w5, [x28, #D_RELEASE]
        dsb     sy
        sev
        b       5f
4:      ldr     w0, [x28, #D_RELEASE]
        cmp     w0, w5
        b.lo    4b
5:      ldp     x29, x30, [sp], #16
        ret

/*
 * sample_offset: brackets CNTPCT - CNTVCT (16 tries, the narrowest kept)
 * into D_OFF[x25]. Clobbers x0-x7.
 */
sample_offset:
        mov     x5, #-1
        mov     x4, #16
1:      isb
        mrs     x1, cntpct_el0
        isb
        mrs     x2, cntvct_el0
        isb
        mrs     x3, cntpct_el0
        sub     x1, x1, x2              /* low: CNTPCT before - CNTVCT */
        sub     x3, x3, x2              /* high: CNTPCT after - CNTVCT */
        sub     x2, x3, x1
        cmp     x2, x5
        b.hs    2f
        mov     x5, x2
        mov     x6, x1
        mov     x7, x3
2:      subs    x4, x4, #1
        b.ne    1b
        add     x0, x28, #D_OFF
        add     x0, x0, x25, lsl #4
        stp     x6, x7, [x0]
        dsb     sy
        ret

/*
 * timer_check: 8 times, the virtual timer 1 ms ahead, WFI until its
 * interrupt; each must come after its deadline and within 250 ms of it.
 */
timer_check:
        stp     x29, x30, [sp, #-16]!
        mov     x19, #0                 /* worst lateness */
        mov     x20, #0                 /* interrupts taken */
1:      add     x3, x28, #D_TCOUNT
        ldr     w22, [x3, x25, lsl #2]
        mov     x0, #1
        bl      deadline
        mov     x23, x0                 /* CNTV_CVAL */
        msr     cntv_cval_el0, x23
        mov     x0, #1
        msr     cntv_ctl_el0, x0        /* enabled, not masked */
        isb
        mov     x0, #1000
        bl      deadline
        mov     x24, x0                 /* give up a second on */
        /* WFI with IRQs masked (it still wakes on a pending one), then
         * unmasked to take it: an interrupt taken just before the WFI
         * would leave it waiting for the next one, which never comes. */
2:      wfi
        msr     daifclr, #2
        isb
        msr     daifset, #2
        add     x3, x28, #D_TCOUNT
        ldr     w0, [x3, x25, lsl #2]
        cmp     w0, w22
        b.ne    3f
        mov     x0, x24
        bl      past
        b.lo    2b
        msr     cntv_ctl_el0, xzr
        adr     x21, msg_timer_none
        b       8f
3:      add     x3, x28, #D_TSEEN
        ldr     x0, [x3, x25, lsl #3]
        subs    x0, x0, x23
        b.hs    4f
        adr     x21, msg_timer_early
        b       8f
4:      cmp     x0, x19
        csel    x19, x0, x19, hi
        add     x20, x20, #1
        cmp     x20, #8
        b.lo    1b
        /* Worst lateness in microseconds, against 250 ms (QEMU's counter
         * runs on while a busy host leaves its vCPU threads waiting). */
        mrs     x1, cntfrq_el0
        ldr     x2, =1000000
        mul     x19, x19, x2
        udiv    x19, x19, x1
        ldr     x2, =250000
        cmp     x19, x2
        b.hs    6f
        adr     x0, msg_timer_pass_a
        bl      puts
        mov     x1, x25
        bl      putdec
        adr     x0, msg_timer_pass_b
        bl      puts
        mov     x1, x19
        bl      putdec
        adr     x0, msg_timer_pass_c
        bl      puts
        ldp     x29, x30, [sp], #16
        ret
6:      adr     x0, msg_timer_fail
        bl      puts
        mov     x1, x25
        bl      putdec
        adr     x0, msg_timer_late
        bl      puts
        mov     x1, x19
        bl      putdec
        adr     x0, msg_timer_late_b
        bl      puts
        ldp     x29, x30, [sp], #16
        ret
8:      adr     x0, msg_timer_fail
        bl      puts
        mov     x1, x25
        bl      putdec
        mov     x0, x21
        bl      puts
        ldp     x29, x30, [sp], #16
        ret

/* send_sgi: SGI x0 to the vCPUs in mask x1 (bit n = vCPU n). Clobbers x1, x2. */
send_sgi:
        cmp     x26, #2
        b.eq    1f
        orr     x1, x1, x0, lsl #24     /* INTID 27:24, TargetList 15:0 */
        msr     S3_0_C12_C11_5, x1      /* ICC_SGI1R_EL1 */
        isb
        ret
1:      orr     x1, x0, x1, lsl #16     /* CPUTargetList 23:16, filter 0 */
        movz    x2, #0x0800, lsl #16
        str     w1, [x2, #0xf00]        /* GICD_SGIR */
        dsb     sy
        ret

/* send_self: SGI x0 to this vCPU only. Clobbers x1, x2. */
send_self:
        cmp     x26, #2
        b.eq    1f
        mov     x1, #1
        lsl     x1, x1, x25
        b       send_sgi
1:      mov     w1, #(2 << 24)          /* TargetListFilter 0b10: only me */
        orr     w1, w1, w0
        movz    x2, #0x0800, lsl #16
        str     w1, [x2, #0xf00]
        dsb     sy
        ret

/* send_others: SGI x0 to every vCPU but this one. Clobbers x1, x2. */
send_others:
        cmp     x26, #2
        b.eq    1f
        lsl     x1, x0, #24
        orr     x1, x1, #(1 << 40)      /* IRM: all but me */
        msr     S3_0_C12_C11_5, x1
        isb
        ret
1:      mov     w1, #(1 << 24)          /* TargetListFilter 0b01: all but me */
        orr     w1, w1, w0
        movz    x2, #0x0800, lsl #16
        str     w1, [x2, #0xf00]
        dsb     sy
        ret

/* row: x0 = this vCPU's SGI counters (D_CNT row of x25). */
row:
        add     x0, x28, #D_CNT
        add     x0, x0, x25, lsl #6
        ret

/*
 * overflow_check: SGIs 0-7 to itself with IRQs masked, then unmasked:
 * all 8 must be taken, each once, with no trap in between.
 */
overflow_check:
        stp     x29, x30, [sp, #-16]!
        mov     x19, #0
1:      mov     x0, x19
        bl      send_self
        add     x19, x19, #1
        cmp     x19, #8
        b.lo    1b
        mov     x0, #1000
        bl      deadline
        mov     x20, x0
        bl      row
        mov     x21, x0
        msr     daifclr, #2
        /* Poll memory only: nothing here traps. */
2:      mov     x3, #0
        mov     x4, #0
3:      ldr     w5, [x21, x3, lsl #2]
        add     x4, x4, x5
        add     x3, x3, #1
        cmp     x3, #8
        b.lo    3b
        cmp     x4, #8
        b.hs    4f
        isb
        mrs     x1, cntvct_el0
        cmp     x1, x20
        b.lo    2b
4:      msr     daifset, #2
        /* Each exactly once. */
        mov     x3, #0
        mov     x6, #0                  /* SGIs taken */
        mov     x7, #0                  /* wrong counts */
5:      ldr     w5, [x21, x3, lsl #2]
        add     x6, x6, x5
        cmp     w5, #1
        cinc    x7, x7, ne
        add     x3, x3, #1
        cmp     x3, #8
        b.lo    5b
        cbnz    x7, 6f
        adr     x0, msg_lr_pass_a
        bl      puts
        mov     x1, x25
        bl      putdec
        adr     x0, msg_lr_pass_b
        bl      puts
        ldp     x29, x30, [sp], #16
        ret
6:      mov     x19, x6
        adr     x0, msg_lr_fail_a
        bl      puts
        mov     x1, x25
        bl      putdec
        adr     x0, msg_lr_fail_b
        bl      puts
        mov     x1, x19
        bl      putdec
        adr     x0, msg_lr_fail_c
        bl      puts
        ldp     x29, x30, [sp], #16
        ret

/*
 * sgi_check: SGI 8+me to each other vCPU by target list, SGI 12+me to all
 * but me; then take the others' (up to 2 s) and check this vCPU's row.
 */
sgi_check:
        stp     x29, x30, [sp, #-16]!
        ldr     w20, [x28, #D_N]
        mov     x19, #0
1:      cmp     x19, x20
        b.hs    2f
        cmp     x19, x25
        b.eq    11f
        add     x0, x25, #8
        mov     x1, #1
        lsl     x1, x1, x19
        bl      send_sgi
11:     add     x19, x19, #1
        b       1b
2:      add     x0, x25, #12
        bl      send_others
        mov     x0, #2000
        bl      deadline
        mov     x21, x0
        msr     daifclr, #2
3:      mov     x0, x25
        bl      row_complete
        cbnz    x0, 4f
        mov     x0, x21
        bl      past
        b.lo    3b
4:      msr     daifset, #2
        mov     x0, x25
        bl      row_exact
        cbz     x0, 5f
        adr     x0, msg_sgi_pass_a
        bl      puts
        mov     x1, x25
        bl      putdec
        adr     x0, msg_sgi_pass_b
        bl      puts
        sub     x1, x20, #1
        bl      putdec
        adr     x0, msg_sgi_pass_c
        bl      puts
        ldp     x29, x30, [sp], #16
        ret
5:      adr     x0, msg_sgi_fail_a
        bl      puts
        mov     x1, x25
        bl      putdec
        adr     x0, msg_sgi_fail_b
        bl      puts
        ldp     x29, x30, [sp], #16
        ret

/* row_complete: x0 = 1 if vCPU x0 took SGIs 8+s and 12+s from every other
 * vCPU s at least once. Clobbers x1-x5. */
row_complete:
        add     x1, x28, #D_CNT
        add     x1, x1, x0, lsl #6
        ldr     w2, [x28, #D_N]
        mov     x3, #0
1:      cmp     x3, x2
        b.hs    3f
        cmp     x3, x0
        b.eq    2f
        add     x4, x3, #8
        ldr     w5, [x1, x4, lsl #2]
        cbz     w5, 4f
        add     x4, x3, #12
        ldr     w5, [x1, x4, lsl #2]
        cbz     w5, 4f
2:      add     x3, x3, #1
        b       1b
3:      mov     x0, #1
        ret
4:      mov     x0, #0
        ret

/* row_exact: x0 = 1 if vCPU x0 took SGIs 8+s and 12+s exactly once from
 * every other vCPU s and never from itself or a vCPU that does not exist.
 * Clobbers x1-x6. */
row_exact:
        add     x1, x28, #D_CNT
        add     x1, x1, x0, lsl #6
        ldr     w2, [x28, #D_N]
        mov     x3, #0
1:      cmp     x3, #MAX_VCPUS
        b.hs    3f
        cmp     x3, x2                  /* expected: 1 if s < n and s != me */
        cset    x6, lo
        cmp     x3, x0
        csel    x6, xzr, x6, eq
        add     x4, x3, #8
        ldr     w5, [x1, x4, lsl #2]
        cmp     x5, x6
        b.ne    4f
        add     x4, x3, #12
        ldr     w5, [x1, x4, lsl #2]
        cmp     x5, x6
        b.ne    4f
        add     x3, x3, #1
        b       1b
3:      mov     x0, #1
        ret
4:      mov     x0, #0
        ret

/*
 * final_checks (vCPU 0, after every vCPU is done): the whole SGI matrix,
 * GICv2 source IDs, no unexpected interrupt, one counter offset.
 */
final_checks:
        stp     x29, x30, [sp, #-16]!
        ldr     w20, [x28, #D_N]
        /* The matrix: every row. */
        mov     x19, #0
1:      cmp     x19, x20
        b.hs    2f
        mov     x0, x19
        bl      row_exact
        cbz     x0, 3f
        add     x19, x19, #1
        b       1b
3:      adr     x0, msg_matrix_fail
        bl      puts
        mov     x1, x19
        bl      putdec
        adr     x0, msg_matrix_fail_b
        bl      puts
        b       4f
2:      adr     x0, msg_matrix_pass_a
        bl      puts
        mov     x1, x20
        bl      putdec
        adr     x0, msg_matrix_pass_b
        bl      puts
        sub     x1, x20, #1
        bl      putdec
        adr     x0, msg_matrix_pass_c
        bl      puts
4:      /* No SGI from a wrong CPU ID (GICv2), no unexpected interrupt. */
        mov     x19, #0
        mov     x21, #0
        mov     x22, #0
5:      cmp     x19, x20
        b.hs    6f
        add     x0, x28, #D_SRCBAD
        ldr     w0, [x0, x19, lsl #2]
        add     x21, x21, x0
        add     x0, x28, #D_OTHER
        ldr     w0, [x0, x19, lsl #2]
        add     x22, x22, x0
        add     x19, x19, #1
        b       5b
6:      cbz     x22, 7f
        adr     x0, msg_other_fail
        bl      puts
7:      cmp     x26, #2
        b.ne    8f
        adr     x0, msg_source_pass
        cbz     x21, 71f
        adr     x0, msg_source_fail
71:     bl      puts
8:      /* One offset: the brackets overlap, and it is above 0. */
        mov     x19, #0
        mov     x21, #(1 << 63)         /* greatest low (signed) */
        mov     x22, #((1 << 63) - 1)   /* least high */
9:      cmp     x19, x20
        b.hs    10f
        add     x0, x28, #D_OFF
        add     x0, x0, x19, lsl #4
        ldp     x1, x2, [x0]
        cmp     x1, x21
        csel    x21, x1, x21, gt
        cmp     x2, x22
        csel    x22, x2, x22, lt
        add     x19, x19, #1
        b       9b
10:     cmp     x21, #0
        b.le    11f
        cmp     x21, x22
        b.gt    12f
        adr     x0, msg_off_pass_a
        bl      puts
        mov     x1, x20
        bl      putdec
        adr     x0, msg_off_pass_b
        bl      puts
        mov     x1, x21
        bl      putdec
        adr     x0, msg_off_pass_c
        bl      puts
        mov     x1, x22
        bl      putdec
        adr     x0, msg_off_pass_d
        bl      puts
        b       13f
11:     adr     x0, msg_off_zero
        bl      puts
        b       13f
12:     adr     x0, msg_off_differ
        bl      puts
        mov     x1, x21
        bl      putdec
        adr     x0, msg_off_differ_b
        bl      puts
        mov     x1, x22
        bl      putdec
        mov     x1, #10
        bl      putc
13:     ldp     x29, x30, [sp], #16
        ret

/* putdec: print x1 (unsigned) in decimal. Clobbers x0-x4, x9. */
putdec:
        stp     x29, x30, [sp, #-48]!
        add     x4, sp, #47
        strb    wzr, [x4]
        mov     x2, #10
1:      udiv    x3, x1, x2
        msub    x0, x3, x2, x1
        add     w0, w0, #48
        strb    w0, [x4, #-1]!
        mov     x1, x3
        cbnz    x1, 1b
        mov     x0, x4
        bl      puts
        ldp     x29, x30, [sp], #48
        ret

/*
 * EL1 vectors. A synchronous exception fails the test. IRQ (current EL,
 * SP_ELx, +0x280): the virtual timer (27) is turned off (its line drops),
 * the CNTVCT of its arrival kept, counted; an SGI is counted by INTID in
 * this vCPU's row, and on GICv2 its source CPU ID checked against the
 * sender its INTID names (0-7: itself; 8-15: INTID & 3); anything else is
 * counted as unexpected. Then EOI (EOImode 0: also deactivates).
 */
        .balign 0x800
vectors:
        .space  0x200
        b       sync_fail
        .balign 0x80
        stp     x0, x1, [sp, #-32]!
        stp     x2, x3, [sp, #16]
        cmp     x26, #2
        b.eq    1f
        mrs     x0, S3_0_C12_C12_0      /* ICC_IAR1_EL1 */
        mov     x1, x0
        b       2f
1:      ldr     w0, [x27, #0xc]         /* GICC_IAR */
        and     w1, w0, #0x3ff
2:      cmp     x1, #1020
        b.hs    9f                      /* spurious: nothing to EOI */
        cmp     x1, #27
        b.ne    3f
        msr     cntv_ctl_el0, xzr
        isb
        mrs     x2, cntvct_el0
        add     x3, x28, #D_TSEEN
        str     x2, [x3, x25, lsl #3]
        add     x3, x28, #D_TCOUNT
        ldr     w2, [x3, x25, lsl #2]
        add     w2, w2, #1
        str     w2, [x3, x25, lsl #2]
        b       8f
3:      cmp     x1, #16
        b.hs    7f
        add     x3, x28, #D_CNT
        add     x3, x3, x25, lsl #6
        ldr     w2, [x3, x1, lsl #2]
        add     w2, w2, #1
        str     w2, [x3, x1, lsl #2]
        cmp     x26, #2
        b.ne    8f
        ubfx    w2, w0, #10, #3         /* source CPU ID */
        mov     x3, x25
        cmp     x1, #8
        b.lo    4f
        and     x3, x1, #3
4:      cmp     x2, x3
        b.eq    8f
        add     x3, x28, #D_SRCBAD
        b       6f
7:      add     x3, x28, #D_OTHER
6:      ldr     w2, [x3, x25, lsl #2]
        add     w2, w2, #1
        str     w2, [x3, x25, lsl #2]
8:      cmp     x26, #2
        b.eq    5f
        msr     S3_0_C12_C12_1, x0      /* ICC_EOIR1_EL1 */
        isb
        b       9f
5:      str     w0, [x27, #0x10]        /* GICC_EOIR */
        dsb     sy
9:      dsb     sy
        ldp     x2, x3, [sp, #16]
        ldp     x0, x1, [sp], #32
        eret

sync_fail:
        adr     x0, msg_sync
        bl      puts
        b       power_off

        .section .rodata
msg_hello:          .asciz "smp guest: vCPU 0 up\n"
msg_affinity_fail:  .asciz "FAIL affinity-info: a vCPU never started does not answer OFF\n"
msg_count_a:        .asciz "smp guest: "
msg_count_b:        .asciz " vCPU(s), each OFF before its CPU_ON (AFFINITY_INFO)\n"
msg_capped:         .asciz "smp guest: only the first 4 take part\n"
msg_cpu_on_fail:    .asciz "FAIL cpu-on: CPU_ON of an OFF vCPU refused\n"
msg_race_skip_a:    .asciz "SKIP cpu-on-race: "
msg_race_skip_b:    .asciz " vCPU(s): a race needs two callers and a third vCPU as the target\n"
msg_race_pass_a:    .asciz "PASS cpu-on-race: "
msg_race_pass_b:    .asciz " rounds of "
msg_race_pass_c:    .asciz " vCPUs calling CPU_ON on vCPU "
msg_race_pass_d:    .asciz " at once: one SUCCESS each round, every other call ALREADY_ON ("
msg_race_pass_f:    .asciz ")\n"
msg_race_fail:      .asciz "FAIL cpu-on-race: round "
msg_race_counts_a:  .asciz ": "
msg_race_counts_b:  .asciz " SUCCESS, "
msg_race_counts_c:  .asciz " ON_PENDING, "
msg_race_counts_d:  .asciz " ALREADY_ON, "
msg_race_counts_e:  .asciz " other answers to the concurrent CPU_ON calls\n"
msg_race_stuck:     .asciz ": a racer did not answer within 5 s\n"
msg_race_no_start:  .asciz ": the target did not start within 5 s\n"
msg_race_twice:     .asciz ": the target started twice\n"
msg_race_not_off:   .asciz ": the target did not go OFF again within 5 s\n"
msg_off_returned:   .asciz "FAIL CPU_OFF returned\n"
msg_barrier_fail:   .asciz "FAIL barrier: a vCPU never got there within 5 s\n"
msg_timer_pass_a:   .asciz "PASS timer: vCPU "
msg_timer_pass_b:   .asciz " woke from WFI by its virtual timer 8 times, each interrupt at most "
msg_timer_pass_c:   .asciz " us after its deadline (bound 250000 us)\n"
msg_timer_fail:     .asciz "FAIL timer: vCPU "
msg_timer_none:     .asciz ": no virtual timer interrupt within a second\n"
msg_timer_early:    .asciz ": the virtual timer interrupt came before its deadline\n"
msg_timer_late:     .asciz ": a virtual timer interrupt "
msg_timer_late_b:   .asciz " us after its deadline (bound 250000 us)\n"
msg_lr_pass_a:      .asciz "PASS lr-overflow: vCPU "
msg_lr_pass_b:      .asciz " took the 8 SGIs it had pending at once (more than the list registers), each once\n"
msg_lr_fail_a:      .asciz "FAIL lr-overflow: vCPU "
msg_lr_fail_b:      .asciz " took "
msg_lr_fail_c:      .asciz " SGI(s) of the 8 pending at once (or one twice)\n"
msg_sgi_pass_a:     .asciz "PASS sgi: vCPU "
msg_sgi_pass_b:     .asciz " took SGIs from each of the other "
msg_sgi_pass_c:     .asciz " vCPU(s), by target list and by all-but-self, once each, and none of its own\n"
msg_sgi_fail_a:     .asciz "FAIL sgi: vCPU "
msg_sgi_fail_b:     .asciz " did not take each other vCPU's two SGIs exactly once (or took its own)\n"
msg_matrix_pass_a:  .asciz "PASS sgi-matrix: "
msg_matrix_pass_b:  .asciz " x "
msg_matrix_pass_c:  .asciz " SGIs by target list and as many by all-but-self, each taken once by its target\n"
msg_matrix_fail:    .asciz "FAIL sgi-matrix: vCPU "
msg_matrix_fail_b:  .asciz "'s row is wrong\n"
msg_other_fail:     .asciz "FAIL irq: an unexpected interrupt was taken\n"
msg_source_pass:    .asciz "PASS sgi-source: every GICv2 SGI came with its sender's CPU ID\n"
msg_source_fail:    .asciz "FAIL sgi-source: a GICv2 SGI came with the wrong CPU ID\n"
msg_off_pass_a:     .asciz "PASS cntvoff: CNTPCT - CNTVCT is one offset on all "
msg_off_pass_b:     .asciz " vCPU(s), between "
msg_off_pass_c:     .asciz " and "
msg_off_pass_d:     .asciz " ticks\n"
msg_off_zero:       .asciz "FAIL cntvoff: the virtual counter is not behind the physical one (CNTVOFF_EL2 = 0?)\n"
msg_off_differ:     .asciz "FAIL cntvoff: the vCPUs see different offsets: a bracket starts at "
msg_off_differ_b:   .asciz ", another ends at "
msg_sync:           .asciz "FAIL unexpected synchronous exception\n"
msg_done:           .asciz "smp guest: done, powering off\n"
