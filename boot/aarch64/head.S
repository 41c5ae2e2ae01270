/*
 * boot/aarch64/head.S - the AArch64 entry stub of Armature.
 *
 * Only what cannot be Rust lives here: the Linux arm64 Image header, the
 * EL3 -> EL2 drop, the exception vectors, the boot stack, zeroing BSS and
 * applying the image's own relocations. Everything else is Rust, entered at
 * armature_boot_main(dtb_pa, load_pa, entry_el).
 *
 * Register conventions inside the stub (callee-saved so that they survive
 * the calls below):
 *   x19  DTB physical address, from the loader in x0
 *   x20  physical address the image was loaded at (= link offset, linked at 0)
 *   x21  exception level at entry (1, 2 or 3)
 */

        .equ    R_AARCH64_RELATIVE, 1027

        /* SCR_EL3: NS | RES1(5:4) | HCE | RW: lower ELs non-secure, EL2 AArch64. */
        .equ    SCR_EL3_NS,     (1 << 0)
        .equ    SCR_EL3_RES1,   (3 << 4)
        .equ    SCR_EL3_HCE,    (1 << 8)
        .equ    SCR_EL3_RW,     (1 << 10)
        /* SCTLR_EL2 reset state we install when coming from EL3: RES1 bits, MMU/caches off. */
        .equ    SCTLR_EL2_RES1, 0x30c50830
        /* SPSR: EL2h with D, A, I, F masked. */
        .equ    SPSR_EL2H_MASKED, 0x3c9

        /* Exception frame layout, shared with src/arch/aarch64/exception.rs. */
        .equ    FRAME_X30,      (30 * 8)
        .equ    FRAME_ELR,      (32 * 8)
        .equ    FRAME_ESR,      (34 * 8)
        .equ    FRAME_SIZE,     (36 * 8)
        /* SecondaryBoot in src/arch/aarch64/smp.rs (offsets checked there). */
        .equ    SB_TTBR,        0
        .equ    SB_MAIR,        16
        .equ    SB_VBAR,        32
        .equ    SB_MPIDR,       48
        .equ    NR_CPUS,        8
        .equ    SB_STACK,       (SB_MPIDR + 8 * NR_CPUS)
        .equ    SB_VALID,       (1 << 63)
        /* MmuRegs in boot/early/src/aarch64.rs: ttbr0, tcr, mair, sctlr, entry_va, image_va. */
        .equ    MMUREGS_SIZE,   (6 * 8)

/*
 * mmu_on: turn the MMU on with new tables, from a CPU whose MMU is off and
 * which runs from an identity-mapped page (so the next fetch works in both
 * worlds). TTBR is only ever written here, and in switch_ttbr, with the MMU off.
 *   In: x0 = TTBR0_EL2, x1 = TCR_EL2, x2 = MAIR_EL2, x3 = SCTLR_EL2 (M set).
 */
.macro mmu_on
        tlbi    alle2
        dsb     nsh
        isb
        msr     mair_el2, x2
        msr     tcr_el2, x1
        msr     ttbr0_el2, x0
        isb
        msr     sctlr_el2, x3
        isb
        ic      iallu
        dsb     nsh
        isb
.endm

/* Load the PC-relative address of \sym into \reg (+/- 4 GiB, no relocation). */
.macro adr_l reg, sym
        adrp    \reg, \sym
        add     \reg, \reg, :lo12:\sym
.endm

        .section .text.head, "ax"
        .global _start
/*
 * Linux arm64 Image header (Documentation/arch/arm64/booting.rst), so that
 * QEMU -kernel and U-Boot booti load us like a kernel.
 */
_start:
        b       primary_entry           /* code0 */
        .long   0                       /* code1 */
        .quad   0                       /* text_offset: no offset from a 2 MiB boundary */
        .quad   __image_size            /* image_size: whole image including BSS */
        .quad   0xa                     /* flags: LE (bit 0 = 0), 4K pages (bits 1-2 = 1), anywhere (bit 3) */
        .quad   0                       /* res2 */
        .quad   0                       /* res3 */
        .quad   0                       /* res4 */
        .ascii  "ARM\x64"               /* magic */
        .long   0                       /* res5: no PE/COFF header */

        .section .text.boot, "ax"
/*
 * primary_entry: boot CPU entry.
 *   In:  x0 = DTB physical address; MMU and D-cache off; any of EL1..EL3.
 *   Out: calls armature_boot_main(x0 = DTB PA, x1 = load PA, x2 = entry EL)
 *        on the boot stack, BSS zeroed, relocations applied: at EL2 with the
 *        MMU on at the runtime address; at EL1, or when the early code
 *        refused, with the MMU off at the load address. Never returns.
 */
primary_entry:
        mov     x19, x0
        adr     x20, _start
        mrs     x21, CurrentEL
        ubfx    x21, x21, #2, #2
        msr     daifset, #0xf

        cmp     x21, #3
        b.ne    1f
        bl      el3_to_el2              /* returns at EL2 */
1:
        mrs     x0, CurrentEL
        cmp     x0, #(2 << 2)
        b.ne    mmu_off_path            /* EL1: Rust explains and stops */
        /* At EL2: take exceptions from here on. */
        adr_l   x0, el2_vectors
        msr     vbar_el2, x0
        isb
        bl      zero_bss
        adr_l   x0, boot_stack_top
        mov     sp, x0

        /* Build the boot page tables (Rust, MMU off, PC-relative only). */
        sub     sp, sp, #MMUREGS_SIZE
        mov     x0, x20
        mov     x1, x19
        adr_l   x2, ARMATURE_EARLY_UART
        ldr     x2, [x2]
        mov     x3, sp
        bl      armature_early_map
        cbnz    x0, mmu_off_path        /* Rust reports the reason, MMU off */
        ldp     x0, x1, [sp, #0]        /* TTBR0_EL2, TCR_EL2 */
        ldp     x2, x3, [sp, #16]       /* MAIR_EL2, SCTLR_EL2 */
        ldp     x22, x24, [sp, #32]     /* x22 = VA to continue at, x24 = runtime image VA */
        add     sp, sp, #MMUREGS_SIZE
        adr_l   x4, 2f
        sub     x4, x4, x20
        add     x4, x4, x22             /* label 2 in the new mapping */
        b       enable_mmu              /* identity page: MMU on, then br x4 */
2:
        /* MMU on, running at x22: the runtime address, or the alias on a clash. */
        sub     x23, x22, x20
        add     sp, sp, x23
        adr_l   x0, el2_vectors
        msr     vbar_el2, x0
        isb
        cmp     x22, x24
        b.eq    3f
        /* Clash path: replace the identity entry with the runtime mapping. */
        bl      armature_early_leave_identity
        cbnz    x0, early_halt
        sub     sp, sp, x22
        add     sp, sp, x24
        adr_l   x4, 3f
        sub     x4, x4, x22
        add     x4, x4, x24             /* label 3 at the runtime address */
        br      x4
3:
        /* At the runtime address: remove the identity page or the alias. */
        adr_l   x0, el2_vectors
        msr     vbar_el2, x0
        isb
        bl      armature_early_finish
        cbnz    x0, early_halt
        mov     x0, x24                 /* relocate for the runtime address */
        bl      apply_relocations
        bl      armature_early_seal     /* rodata read-only from now on */
        cbnz    x0, early_halt
        b       call_rust

/* EL1 entry, or the early code refused: run at the load address, MMU off. */
mmu_off_path:
        bl      zero_bss_keep_early     /* BSS may hold the early report: keep it */
        mov     x0, x20
        bl      apply_relocations
        adr_l   x0, boot_stack_top
        mov     sp, x0
call_rust:
        mov     x29, xzr                /* terminate the frame-pointer chain */
        mov     x30, xzr
        mov     x0, x19
        mov     x1, x20
        mov     x2, x21
        bl      armature_boot_main
early_halt:
        wfe                             /* armature_boot_main never returns */
        b       early_halt

/*
 * el3_to_el2: make EL2 the non-secure AArch64 hypervisor level and drop to it.
 *   In:  lr = return address. Clobbers x0.
 *   Out: returns at EL2h, interrupts masked, SCTLR_EL2 in its MMU-off state.
 */
el3_to_el2:
        mov     x0, #(SCR_EL3_NS | SCR_EL3_RES1 | SCR_EL3_HCE | SCR_EL3_RW)
        msr     scr_el3, x0
        msr     cptr_el3, xzr           /* no FP/SIMD traps to EL3 for guests */
        ldr     x0, =SCTLR_EL2_RES1
        msr     sctlr_el2, x0
        mov     x0, #SPSR_EL2H_MASKED
        msr     spsr_el3, x0
        msr     elr_el3, lr
        isb
        eret

/*
 * zero_bss: clear [__bss_start, __bss_end), both 16-byte aligned (linker-asserted).
 *   Clobbers x0, x1. Uses aligned stores only: with the MMU off memory is Device.
 */
zero_bss:
        adr_l   x0, __bss_start
        adr_l   x1, __bss_end
1:      cmp     x0, x1
        b.hs    2f
        stp     xzr, xzr, [x0], #16
        b       1b
2:      ret

/*
 * zero_bss_keep_early: on the MMU-off path. At EL1 nothing has run, so BSS is
 * zeroed here; at EL2 it already was, and holds the early code's report.
 *   Clobbers x0, x1 (lr: returns to the caller, also through zero_bss).
 */
zero_bss_keep_early:
        mrs     x0, CurrentEL
        cmp     x0, #(2 << 2)
        b.ne    zero_bss
        ret

/*
 * apply_relocations: write base + addend to every R_AARCH64_RELATIVE target.
 * The image is linked at 0, so the base is the address the image runs at
 * (the runtime virtual address, or the load address with the MMU off). Any
 * other relocation type is a build error (xtask checks the ELF); should one
 * appear anyway, stop here rather than run with a wrong pointer.
 *   In: x0 = base. Clobbers x1-x5.
 */
apply_relocations:
        adr_l   x1, __rela_start
        adr_l   x2, __rela_end
1:      cmp     x1, x2
        b.hs    2f
        ldp     x3, x4, [x1], #16       /* r_offset, r_info */
        ldr     x5, [x1], #8            /* r_addend */
        cmp     w4, #R_AARCH64_RELATIVE
        b.ne    3f
        add     x5, x5, x0
        str     x5, [x3, x0]
        b       1b
2:      ret
3:      wfe
        b       3b

/*
 * relocate_and_switch_asm: copy the image to its new home, then switch to the
 * runtime tables from the copy's identity page.
 *   In:  x0 = VA the destination is mapped at, x1 = bytes to copy (a multiple
 *        of 16: the whole image, BSS and stacks included), x2 = TTBR0_EL2 of
 *        the runtime tables (inside the copy), x3 = physical address of
 *        switch_ttbr in the copy (identity-mapped in both sets of tables).
 *   Uses no stack: the stack is part of what is copied, so the caller's
 *   frames in the copy are exactly those live at the call.
 *   Out: returns (lr) at the same virtual address, now backed by the copy.
 *   Clobbers x4-x9.
 */
        .section .text.boot, "ax"
        .global relocate_and_switch_asm
relocate_and_switch_asm:
        adr_l   x4, __image_start
        mov     x5, x0
        mov     x6, x1
1:      ldp     x7, x8, [x4], #16
        stp     x7, x8, [x5], #16
        subs    x6, x6, #16
        b.hi    1b
        /* Clean the copy to the point of coherency: it is fetched and read
         * with the MMU (and so the caches) off for a moment. */
        mrs     x7, ctr_el0
        ubfx    x7, x7, #16, #4
        mov     x8, #4
        lsl     x7, x8, x7
        sub     x8, x7, #1
        bic     x5, x0, x8
        add     x6, x0, x1
2:      dc      cvac, x5
        add     x5, x5, x7
        cmp     x5, x6
        b.lo    2b
        dsb     sy
        ic      iallu
        dsb     nsh
        isb
        br      x3                      /* switch_ttbr returns to our caller */

        .section .text.idmap, "ax"
/*
 * secondary_entry: where every secondary CPU starts, by PSCI CPU_ON or a
 * spin-table release, at this page's physical address in the relocated
 * image, MMU off, at EL2 (EL3 is dropped to EL2 as on the boot CPU).
 *   In:  nothing (x0 is PSCI's context or 0; with a shared spin-table
 *        release address several CPUs arrive at once).
 *   Finds its logical CPU number by MPIDR in secondary_boot (written and
 *   cleaned to the point of coherency by the boot CPU: read here with the
 *   MMU off), turns the MMU on with the bring-up tables (this page at
 *   itself, the hypervisor at its runtime addresses: no TTBR change with the
 *   MMU on, ever), then enters armature_secondary_main(cpu) at its runtime
 *   address on its own stack. A CPU that is not listed parks in wfe.
 */
        .global secondary_entry
secondary_entry:
        msr     daifset, #0xf
        mrs     x0, CurrentEL
        cmp     x0, #(3 << 2)
        b.ne    1f
        bl      el3_to_el2
1:      mrs     x19, mpidr_el1
        and     x19, x19, #0xffffff     /* Aff2..Aff0 */
        mrs     x0, mpidr_el1
        and     x0, x0, #(0xff << 32)   /* Aff3 */
        orr     x19, x19, x0
        orr     x19, x19, #SB_VALID
        adr_l   x20, secondary_boot
        mov     x21, #0
2:      cmp     x21, #NR_CPUS
        b.hs    secondary_park
        add     x2, x20, #SB_MPIDR
        ldr     x3, [x2, x21, lsl #3]
        cmp     x3, x19
        b.eq    3f
        add     x21, x21, #1
        b       2b
3:      add     x2, x20, #SB_STACK
        ldr     x22, [x2, x21, lsl #3]  /* stack top (runtime VA) */
        ldp     x0, x1, [x20, #SB_TTBR] /* TTBR0_EL2 (bring-up), TCR_EL2 */
        ldp     x2, x3, [x20, #SB_MAIR] /* MAIR_EL2, SCTLR_EL2 */
        ldp     x23, x24, [x20, #SB_VBAR] /* VBAR_EL2, entry (runtime VAs) */
        mmu_on
        msr     vbar_el2, x23
        isb
        mov     sp, x22
        mov     x29, xzr
        mov     x30, xzr
        mov     x0, x21
        br      x24
secondary_park:
        wfe
        b       secondary_park

/*
 * switch_ttbr: the only place TTBR0_EL2 changes after boot, with the MMU off.
 *   In:  x2 = new TTBR0_EL2, lr = return address (valid in the new tables).
 *   Runs from an identity-mapped page present in the old and the new tables.
 *   Clobbers x5, x6.
 */
        .global switch_ttbr
switch_ttbr:
        mrs     x5, sctlr_el2
        bic     x6, x5, #1              /* SCTLR_EL2.M = 0 */
        msr     sctlr_el2, x6
        isb
        msr     ttbr0_el2, x2
        isb
        tlbi    alle2
        dsb     nsh
        isb
        msr     sctlr_el2, x5           /* MMU back on, with the new tables */
        isb
        ic      iallu
        dsb     nsh
        isb
        ret

/*
 * enable_mmu: the only code that runs while the MMU is switched on. It lives
 * in the identity-mapped page (.text.idmap, at most one page, asserted by the
 * linker), so the instruction after the switch is fetched from the same
 * address in both worlds. TTBR is written with the MMU off, never on.
 *   In:  x0 = TTBR0_EL2, x1 = TCR_EL2, x2 = MAIR_EL2, x3 = SCTLR_EL2,
 *        x4 = virtual address to continue at.
 *   Clobbers x5-x8. Does not return: branches to x4 with the MMU on.
 */
enable_mmu:
        /* Drop stale lines over what was written with the caches off (BSS:
         * tables, stack, early report) so the cached view matches memory. */
        adr_l   x5, __bss_start
        adr_l   x6, __image_end
        mrs     x7, ctr_el0
        ubfx    x7, x7, #16, #4         /* DminLine: log2(words) */
        mov     x8, #4
        lsl     x7, x8, x7              /* line size in bytes */
        sub     x8, x7, #1
        bic     x5, x5, x8
1:      dc      ivac, x5
        add     x5, x5, x7
        cmp     x5, x6
        b.lo    1b
        dsb     sy
        mmu_on
        br      x4

/*
 * EL2 exception vectors. Every entry saves the full register state into an
 * ExceptionFrame on the current stack and calls
 * armature_exception(frame, vector_index) in Rust.
 */
.macro ventry idx
        .balign 0x80
        sub     sp, sp, #FRAME_SIZE
        stp     x0, x1, [sp, #0]
        mov     x0, #\idx
        b       exception_save
.endm

        .section .text.vectors, "ax"
        .balign 0x800
        .global el2_vectors
el2_vectors:
        ventry  0       /* current EL, SP_EL0: sync */
        ventry  1       /*                      IRQ  */
        ventry  2       /*                      FIQ  */
        ventry  3       /*                      SError */
        ventry  4       /* current EL, SP_ELx: sync */
        ventry  5
        ventry  6
        ventry  7
        ventry  8       /* lower EL, AArch64: sync */
        ventry  9
        ventry  10
        ventry  11
        ventry  12      /* lower EL, AArch32: sync */
        ventry  13
        ventry  14
        ventry  15

/*
 * exception_save: finish the frame started by ventry.
 *   In: x0 = vector index, [sp] holds the interrupted x0/x1.
 */
exception_save:
        stp     x2, x3, [sp, #16]
        stp     x4, x5, [sp, #32]
        stp     x6, x7, [sp, #48]
        stp     x8, x9, [sp, #64]
        stp     x10, x11, [sp, #80]
        stp     x12, x13, [sp, #96]
        stp     x14, x15, [sp, #112]
        stp     x16, x17, [sp, #128]
        stp     x18, x19, [sp, #144]
        stp     x20, x21, [sp, #160]
        stp     x22, x23, [sp, #176]
        stp     x24, x25, [sp, #192]
        stp     x26, x27, [sp, #208]
        stp     x28, x29, [sp, #224]
        add     x1, sp, #FRAME_SIZE     /* the interrupted SP */
        stp     x30, x1, [sp, #FRAME_X30]
        mrs     x1, elr_el2
        mrs     x2, spsr_el2
        stp     x1, x2, [sp, #FRAME_ELR]
        mrs     x1, esr_el2
        mrs     x2, far_el2
        stp     x1, x2, [sp, #FRAME_ESR]
        mov     x1, x0
        mov     x0, sp
        /* A frame record so the backtrace continues into the interrupted code. */
        ldr     x2, [sp, #FRAME_ELR]
        stp     x29, x2, [sp, #-16]!
        mov     x29, sp
        bl      armature_exception
        /* armature_exception returns only for a trap from a guest that was
         * handled: resume the guest with the (possibly updated) frame. */
        add     sp, sp, #16             /* drop the frame record */
        b       exception_return

/*
 * exception_return: restore the frame at sp (registers, ELR_EL2, SPSR_EL2)
 * and return from the exception.
 *   In: sp = frame. Out: eret; SP_EL2 is left at frame + FRAME_SIZE.
 */
exception_return:
        ldp     x1, x2, [sp, #FRAME_ELR]
        msr     elr_el2, x1
        msr     spsr_el2, x2
        ldp     x2, x3, [sp, #16]
        ldp     x4, x5, [sp, #32]
        ldp     x6, x7, [sp, #48]
        ldp     x8, x9, [sp, #64]
        ldp     x10, x11, [sp, #80]
        ldp     x12, x13, [sp, #96]
        ldp     x14, x15, [sp, #112]
        ldp     x16, x17, [sp, #128]
        ldp     x18, x19, [sp, #144]
        ldp     x20, x21, [sp, #160]
        ldp     x22, x23, [sp, #176]
        ldp     x24, x25, [sp, #192]
        ldp     x26, x27, [sp, #208]
        ldp     x28, x29, [sp, #224]
        ldr     x30, [sp, #FRAME_X30]
        ldp     x0, x1, [sp, #0]
        add     sp, sp, #FRAME_SIZE
        eret

/*
 * enter_guest: start running a vCPU from a prepared frame.
 *   In: x0 = frame (guest x0-x30, ELR_EL2 = guest PC, SPSR_EL2 = guest
 *       PSTATE), placed at the top of this CPU's trap stack: the guest's
 *       traps reuse that stack. Never returns.
 */
        .global enter_guest
enter_guest:
        mov     sp, x0
        b       exception_return

        .section .bss.stack, "aw", %nobits
        .balign 16
        .global boot_stack_bottom
boot_stack_bottom:
        .space  0x10000
        .global boot_stack_top
boot_stack_top:
