/*
 * The PSCI test guest, booted as dom0 with one vCPU per physical CPU.
 * vCPU 0 checks, one line each:
 *   - PSCI_FEATURES(CPU_ON) is supported;
 *   - CPU_ON starts every other vCPU (until INVALID_PARAMETERS: no such
 *     MPIDR), and a second CPU_ON of a vCPU already started answers
 *     ALREADY_ON (as under KVM: a vCPU is ON once a CPU_ON for it
 *     succeeded, even before it runs; ON_PENDING is a failure);
 *   - AFFINITY_INFO sees every started vCPU go back OFF (each calls CPU_OFF);
 *   - an unknown SMCCC function ID answers NOT_SUPPORTED;
 * then asks for SYSTEM_OFF. Each started vCPU prints that it is online,
 * checks that its MPIDR is the one CPU_ON targeted, and calls CPU_OFF.
 *
 * The secondaries hold off their CPU_OFF until vCPU 0 has made all its
 * CPU_ON calls (a release flag 64 KiB into the guest's RAM): otherwise a
 * fast secondary could be OFF again before the second CPU_ON, which would
 * then rightly succeed.
 *
 * Registers (vCPU 0): x22 vCPUs started, x23 target, x24 timeout counter.
 * Secondaries: x25 their number (the CPU_ON context ID). No stack is used.
 */
        .equ    PSCI_FEATURES,    0x8400000a
        .equ    PSCI_CPU_OFF,     0x84000002
        .equ    PSCI_CPU_ON64,    0xc4000003
        .equ    PSCI_AFFINITY64,  0xc4000004
        .equ    UNKNOWN_ID,       0x8600ff55

        .text
entry:
        bl      flag_address
        str     wzr, [x0]               /* secondaries: wait */
        dsb     sy
        adr     x0, msg_hello
        bl      puts

        ldr     w0, =PSCI_FEATURES
        ldr     w1, =PSCI_CPU_ON64
        hvc     #0
        cmp     x0, #0
        adr     x0, msg_feat_pass
        adr     x1, msg_feat_fail
        csel    x0, x0, x1, eq
        bl      puts

        mov     x22, #0
        mov     x23, #1
1:      cmp     x23, #8
        b.hs    3f
        ldr     w0, =PSCI_CPU_ON64
        mov     x1, x23
        adr     x2, secondary
        mov     x3, x23
        hvc     #0
        cbnz    x0, 2f
        add     x22, x22, #1
        /* Again, at once: the vCPU is starting or started. */
        ldr     w0, =PSCI_CPU_ON64
        mov     x1, x23
        adr     x2, secondary
        mov     x3, x23
        hvc     #0
        cmn     x0, #4                  /* ALREADY_ON, nothing else */
        b.eq    4f
        adr     x0, msg_twice_fail
        bl      puts
4:      add     x23, x23, #1
        b       1b
2:      cmn     x0, #2                  /* INVALID_PARAMETERS: no such vCPU */
        b.eq    3f
        adr     x0, msg_cpuon_fail
        bl      puts

3:      bl      flag_address            /* secondaries: go ahead */
        mov     w1, #1
        str     w1, [x0]
        dsb     sy
        sev
        /* Wait for each started vCPU to be OFF again. */
        mov     x23, #1
6:      cmp     x23, x22
        b.hi    8f
        movz    x24, #0x400, lsl #16
7:      ldr     w0, =PSCI_AFFINITY64
        mov     x1, x23
        mov     x2, #0
        hvc     #0
        cmp     x0, #1                  /* OFF */
        b.eq    9f
        subs    x24, x24, #1
        b.ne    7b
        adr     x0, msg_off_timeout
        bl      puts
        b       10f
9:      add     x23, x23, #1
        b       6b
8:      adr     x0, msg_cpuon_pass_a
        bl      puts
        add     x1, x22, #48
        bl      putc
        adr     x0, msg_cpuon_pass_b
        bl      puts

10:     ldr     w0, =UNKNOWN_ID
        hvc     #0
        cmn     x0, #1                  /* NOT_SUPPORTED */
        adr     x0, msg_unknown_pass
        adr     x1, msg_unknown_fail
        csel    x0, x0, x1, eq
        bl      puts

        adr     x0, msg_done
        bl      puts
        b       power_off

/*
 * secondary: where CPU_ON starts the other vCPUs.
 *   In: x0 = context ID = the vCPU's number.
 */
secondary:
        mov     x25, x0
        adr     x0, msg_vcpu
        bl      puts
        add     x1, x25, #48
        bl      putc
        mrs     x1, mpidr_el1
        and     x1, x1, #0xff
        cmp     x1, x25
        adr     x0, msg_online_pass
        adr     x1, msg_online_fail
        csel    x0, x0, x1, eq
        bl      puts
        bl      flag_address
2:      ldr     w1, [x0]
        cbnz    w1, 3f
        wfe
        b       2b
3:      ldr     w0, =PSCI_CPU_OFF
        hvc     #0
        adr     x0, msg_off_returned
        bl      puts
1:      wfi
        b       1b

/* flag_address: x0 = the release flag (64 KiB into our RAM). */
flag_address:
        adr     x0, _start
        add     x0, x0, #0x10, lsl #12
        ret



        .section .rodata
msg_hello:         .asciz "psci guest: vCPU 0 up\n"
msg_feat_pass:     .asciz "PASS psci-features: CPU_ON supported\n"
msg_feat_fail:     .asciz "FAIL psci-features\n"
msg_twice_fail:    .asciz "FAIL cpu-on: a second CPU_ON did not answer ALREADY_ON\n"
msg_cpuon_fail:    .asciz "FAIL cpu-on: an unexpected error\n"
msg_off_timeout:   .asciz "FAIL affinity-info: a vCPU never went OFF\n"
msg_cpuon_pass_a:  .asciz "PASS cpu-on: "
msg_cpuon_pass_b:  .asciz " vCPU(s) started, a second CPU_ON refused, all OFF again\n"
msg_unknown_pass:  .asciz "PASS unknown-call: NOT_SUPPORTED\n"
msg_unknown_fail:  .asciz "FAIL unknown-call\n"
msg_done:          .asciz "psci guest: done, powering off\n"
msg_vcpu:          .asciz "vCPU "
msg_online_pass:   .asciz " online, MPIDR as targeted\n"
msg_online_fail:   .asciz " online, FAIL MPIDR differs\n"
msg_off_returned:  .asciz "FAIL CPU_OFF returned\n"
