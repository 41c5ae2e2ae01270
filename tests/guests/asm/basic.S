/*
 * The basic test guest. Armature loads it as dom0 (a /chosen
 * multiboot,kernel module) and enters it at EL1 with the MMU off. It prints
 * through Armature's console hypercall and checks, one line each:
 *   - PSCI_VERSION over HVC answers 1.1;
 *   - a read of guest-physical 0x0b000000 (nothing there on QEMU virt:
 *     between the virtio-mmio transports and the platform bus; dom0 gets
 *     every host device, the flash at 0 included) comes back as a data
 *     abort injected into the guest (EC 0x25), and the guest goes on;
 *   - a read right above its RAM also aborts: with the page allocator
 *     handing out memory from the top, that is the hypervisor's own memory
 *     (its heap): stage 2 isolates the guest from it. The end of its RAM is
 *     found from x0 at entry: Armature puts the device tree in the last
 *     2 MiB of a domain's RAM;
 * then asks for PSCI SYSTEM_OFF. Every check prints PASS or FAIL.
 *
 * Registers: x19 holds x0 at entry (the DTB); x20 counts data aborts
 * taken; x9 is puts' cursor.
 */
        .equ    PSCI_VERSION,    0x84000000

        .text
entry:
        mov     x19, x0
        adr     x0, vectors
        msr     vbar_el1, x0
        isb
        adr     x0, msg_hello
        bl      puts

        ldr     w0, =PSCI_VERSION
        hvc     #0
        ldr     x2, =0x10001
        cmp     x0, x2
        adr     x0, msg_psci_pass
        adr     x1, msg_psci_fail
        csel    x0, x0, x1, eq
        bl      puts

        /* Nothing at guest-physical 0x0b000000: the read must abort. */
        mov     x20, #0
        movz    x1, #0x0b00, lsl #16
        ldr     x2, [x1]
        cmp     x20, #1
        adr     x0, msg_abort_pass
        adr     x1, msg_abort_fail
        csel    x0, x0, x1, eq
        bl      puts

        /* Right above our RAM (DTB + 2 MiB): the hypervisor's memory, must
           abort too. */
        mov     x20, #0
        mov     x1, x19
        mov     x2, #0x00200000
        add     x1, x1, x2
        ldr     x2, [x1]
        cmp     x20, #1
        adr     x0, msg_isolation_pass
        adr     x1, msg_isolation_fail
        csel    x0, x0, x1, eq
        bl      puts

        adr     x0, msg_done
        bl      puts
        ldr     w0, =PSCI_SYSTEM_OFF
        hvc     #0
        adr     x0, msg_off_fail
        bl      puts
2:      wfi
        b       2b


/*
 * EL1 vectors: a synchronous data abort from this EL (EC 0x25) is counted
 * in x20 and the faulting load skipped; anything else fails the test.
 */
        .balign 0x800
vectors:
        .balign 0x200                   /* current EL with SP_ELx: sync at +0x200 */
        .space  0x200
        mrs     x21, esr_el1
        ubfx    x21, x21, #26, #6
        cmp     x21, #0x25
        b.ne    unexpected
        add     x20, x20, #1
        mrs     x21, elr_el1
        add     x21, x21, #4
        msr     elr_el1, x21
        eret
unexpected:
        adr     x0, msg_unexpected
        bl      puts
        b       power_off

        .section .rodata
msg_hello:          .asciz "basic guest: hello from EL1\n"
msg_psci_pass:      .asciz "PASS psci-version: 1.1\n"
msg_psci_fail:      .asciz "FAIL psci-version\n"
msg_abort_pass:     .asciz "PASS abort: the read of IPA 0xb000000 came back as a data abort\n"
msg_abort_fail:     .asciz "FAIL abort: no data abort for IPA 0xb000000\n"
msg_isolation_pass: .asciz "PASS isolation: the hypervisor's memory above the domain is not mapped\n"
msg_isolation_fail: .asciz "FAIL isolation: memory outside the domain was readable\n"
msg_unexpected:     .asciz "FAIL unexpected exception\n"
msg_done:           .asciz "basic guest: done, powering off\n"
msg_off_fail:       .asciz "FAIL SYSTEM_OFF returned\n"
