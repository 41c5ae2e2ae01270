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
 *   Out: calls armature_boot_main(x0 = DTB, x1 = load address, x2 = entry EL),
 *        on the boot stack, BSS zeroed, relocations applied. Never returns.
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
        b.ne    2f
        /* At EL2: take exceptions from the very first instruction of Rust. */
        adr_l   x0, el2_vectors
        msr     vbar_el2, x0
        isb
2:
        bl      zero_bss
        bl      apply_relocations
        adr_l   x0, boot_stack_top
        mov     sp, x0
        mov     x29, xzr                /* terminate the frame-pointer chain */
        mov     x30, xzr
        mov     x0, x19
        mov     x1, x20
        mov     x2, x21
        bl      armature_boot_main
3:      wfe                             /* armature_boot_main never returns */
        b       3b

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
 * apply_relocations: add the load address (x20) to every R_AARCH64_RELATIVE
 * target. Any other relocation type is a build error (xtask checks the ELF);
 * should one appear anyway, stop here rather than run with a wrong pointer.
 *   In: x20 = load address. Clobbers x0-x4.
 */
apply_relocations:
        adr_l   x0, __rela_start
        adr_l   x1, __rela_end
1:      cmp     x0, x1
        b.hs    2f
        ldp     x2, x3, [x0], #16       /* r_offset, r_info */
        ldr     x4, [x0], #8            /* r_addend */
        cmp     w3, #R_AARCH64_RELATIVE
        b.ne    3f
        add     x4, x4, x20
        str     x4, [x2, x20]
        b       1b
2:      ret
3:      wfe
        b       3b

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
1:      wfe                             /* unexpected exceptions never return */
        b       1b

        .section .bss.stack, "aw", %nobits
        .balign 16
        .global boot_stack_bottom
boot_stack_bottom:
        .space  0x10000
        .global boot_stack_top
boot_stack_top:
