/*
 * boot/armv7/head.S - the ARMv7-A entry stub of Armature (HYP mode, PL2).
 *
 * Only what cannot be Rust lives here: the Linux zImage header, the HYP
 * exception vectors, the boot stack, zeroing BSS and applying the image's own
 * relocations. Everything else is Rust, entered at
 * armature_boot_main(dtb_pa, load_pa, entry_mode).
 *
 * Entry (Linux ARM boot protocol, Documentation/arch/arm/booting.rst):
 *   r0 = 0, r1 = machine type, r2 = DTB physical address,
 *   MMU and D-cache off, in HYP mode (virtualization extensions) or SVC mode.
 * In SVC mode nothing HYP-specific is touched: Rust prints why it cannot run
 * there and halts.
 *
 * Register conventions inside the stub (callee-saved under the AAPCS, so that
 * they survive the calls below):
 *   r4  DTB physical address, from the loader in r2
 *   r5  physical address the image was loaded at (= link offset, linked at 0)
 *   r6  CPSR mode bits [4:0] at entry (0x1a HYP, 0x13 SVC, ...)
 *
 * The stub is A32 code; so is the Rust it calls (armv7a-none-eabi).
 */

        .syntax unified
        .arm
        .arch_extension virt            /* mrs ELR_hyp */

        .equ    R_ARM_RELATIVE, 23

        .equ    PSR_MODE_MASK,  0x1f
        .equ    PSR_MODE_HYP,   0x1a

        /* HSCTLR bits this stub must get right before the first exception. */
        .equ    HSCTLR_TE,      (1 << 30)       /* exceptions taken in T32 state */
        .equ    HSCTLR_EE,      (1 << 25)       /* exceptions taken big-endian */

        /* Exception frame layout, shared with src/arch/armv7/exception.rs. */
        .equ    FRAME_SP,       (13 * 4)
        .equ    FRAME_LR,       (14 * 4)
        .equ    FRAME_ELR,      (15 * 4)
        .equ    FRAME_SIZE,     (20 * 4)

/*
 * adr_l: load the run-time address of \sym into \reg, PC-relatively (any
 * distance, no run-time relocation). The assembler resolves \sym - pc as a
 * MOVW/MOVT pair of PC-relative relocations; "pc" reads as the add + 8.
 */
.macro adr_l reg, sym
        movw    \reg, #:lower16:(\sym - (.Lpc\@ + 8))
        movt    \reg, #:upper16:(\sym - (.Lpc\@ + 8))
.Lpc\@:
        add     \reg, \reg, pc
.endm

/* Coprocessor (cp15) accesses used below, by name. */
.macro read_hsctlr reg
        mrc     p15, 4, \reg, c1, c0, 0
.endm
.macro write_hsctlr reg
        mcr     p15, 4, \reg, c1, c0, 0
.endm
.macro write_hvbar reg
        mcr     p15, 4, \reg, c12, c0, 0
.endm
.macro read_hsr reg
        mrc     p15, 4, \reg, c5, c2, 0
.endm
.macro read_hdfar reg
        mrc     p15, 4, \reg, c6, c0, 0
.endm
.macro read_hifar reg
        mrc     p15, 4, \reg, c6, c0, 2
.endm

        .section .text.head, "ax"
        .global _start
        .type   _start, %function
/*
 * Linux ARM zImage header (arch/arm/boot/compressed/head.S), so that QEMU
 * -kernel and U-Boot bootz load us like a kernel: 8 no-ops (room for a
 * loader's patching), a branch, then the magic words at 0x24.
 */
_start:
        .rept   8
        mov     r0, r0
        .endr
        b       primary_entry           /* 0x20 */
        .word   0x016f2818              /* 0x24: zImage magic */
        .word   0                       /* 0x28: start: position independent, runs where loaded */
        .word   __load_size             /* 0x2c: end: size of the loadable image (without BSS) */
        .word   0x04030201              /* 0x30: endianness flag: little-endian */

        .section .text.boot, "ax"
/*
 * primary_entry: boot CPU entry.
 *   In:  r2 = DTB physical address (r0, r1 ignored); MMU and D-cache off;
 *        HYP mode, or any PL1 mode (then only to report the error).
 *   Out: calls armature_boot_main(r0 = DTB, r1 = load address, r2 = CPSR mode),
 *        on the boot stack, BSS zeroed, relocations applied. Never returns.
 */
primary_entry:
        cpsid   aif                     /* no asynchronous exceptions until we have handlers */
        mov     r4, r2
        adr_l   r5, _start
        mrs     r6, cpsr
        and     r6, r6, #PSR_MODE_MASK
        cmp     r6, #PSR_MODE_HYP
        bne     1f
        bl      hyp_set_vectors
1:
        bl      zero_bss
        bl      apply_relocations
        adr_l   r0, boot_stack_top
        mov     sp, r0
        mov     r11, #0                 /* terminate the frame-pointer chain */
        mov     lr, #0
        mov     r0, r4
        mov     r1, r5
        mov     r2, r6
        bl      armature_boot_main
2:      wfe                             /* armature_boot_main never returns */
        b       2b

/*
 * hyp_set_vectors: take HYP-mode exceptions from here on, in A32 state and
 * little-endian (HSCTLR.TE/EE may be anything out of reset, and the vectors
 * are A32 code), at hyp_vectors.
 *   In:  HYP mode, lr = return address. Clobbers r0.
 */
hyp_set_vectors:
        read_hsctlr r0
        bic     r0, r0, #(HSCTLR_TE | HSCTLR_EE)
        write_hsctlr r0
        isb
        adr_l   r0, hyp_vectors
        write_hvbar r0
        isb
        bx      lr

/*
 * zero_bss: clear [__bss_start, __bss_end), both 16-byte aligned (linker-asserted),
 * 16 bytes per iteration.
 *   Clobbers r0-r3. Uses aligned stores only: with the MMU off memory is
 *   Strongly-ordered, where unaligned accesses fault.
 */
zero_bss:
        adr_l   r0, __bss_start
        adr_l   r1, __bss_end
        mov     r2, #0
        mov     r3, #0
1:      cmp     r0, r1
        bhs     2f
        stmia   r0!, {r2, r3}
        stmia   r0!, {r2, r3}
        b       1b
2:      bx      lr

/*
 * apply_relocations: add the load address (r5) to every R_ARM_RELATIVE target
 * (Elf32_Rel: r_offset, r_info; the addend is the word in place). Any other
 * relocation is a build error (xtask checks the ELF); should one appear
 * anyway, stop here rather than run with a wrong pointer.
 *   In: r5 = load address. Clobbers r0-r3.
 */
apply_relocations:
        adr_l   r0, __rel_start
        adr_l   r1, __rel_end
1:      cmp     r0, r1
        bhs     2f
        ldmia   r0!, {r2, r3}           /* r2 = r_offset, r3 = r_info */
        cmp     r3, #R_ARM_RELATIVE     /* type 23, symbol 0 */
        bne     3f
        ldr     r3, [r2, r5]
        add     r3, r3, r5
        str     r3, [r2, r5]
        b       1b
2:      bx      lr
3:      wfe
        b       3b

/*
 * HYP exception vectors (HVBAR). Each entry branches to a stub that saves
 * r0-r12 into an ExceptionFrame on the current stack (SP_hyp) and calls
 * armature_exception(frame, vector_index) in Rust. Offsets: 0x00 unused in
 * HYP mode, 0x04 undefined instruction, 0x08 HVC (or SVC in HYP mode),
 * 0x0c prefetch abort, 0x10 data abort, 0x14 hyp trap (entry from a
 * non-HYP mode), 0x18 IRQ, 0x1c FIQ.
 */
/*
 * hyp_stub: one vector's entry code.
 *   In:  the interrupted state in r0-r12, sp, lr; ELR_hyp/SPSR_hyp/HSR set.
 *   Out: sp lowered by FRAME_SIZE with r0-r12 saved at [sp], r0 = \idx,
 *        then exception_save. Clobbers sp, r0 (both already saved or derivable).
 */
.macro hyp_stub idx
        sub     sp, sp, #FRAME_SIZE
        stmia   sp, {r0-r12}
        mov     r0, #\idx
        b       exception_save
.endm

        .section .text.vectors, "ax"
        .balign 32
        .global hyp_vectors
hyp_vectors:
        b       hyp_vec_unused          /* 0x00 */
        b       hyp_vec_undef           /* 0x04 */
        b       hyp_vec_hvc             /* 0x08 */
        b       hyp_vec_pabt            /* 0x0c */
        b       hyp_vec_dabt            /* 0x10 */
        b       hyp_vec_trap            /* 0x14 */
        b       hyp_vec_irq             /* 0x18 */
        b       hyp_vec_fiq             /* 0x1c */

hyp_vec_unused: hyp_stub 0
hyp_vec_undef:  hyp_stub 1
hyp_vec_hvc:    hyp_stub 2
hyp_vec_pabt:   hyp_stub 3
hyp_vec_dabt:   hyp_stub 4
hyp_vec_trap:   hyp_stub 5
hyp_vec_irq:    hyp_stub 6
hyp_vec_fiq:    hyp_stub 7

/*
 * exception_save: finish the frame started by hyp_stub and enter Rust.
 *   In:  r0 = vector index (0-7); [sp] holds r0-r12 as they were.
 *        LR_hyp is untouched by exception entry to HYP mode (the return
 *        address is in ELR_hyp), so lr is still the interrupted code's.
 *   Out: never returns. Clobbers everything (it is all in the frame).
 */
exception_save:
        add     r1, sp, #FRAME_SIZE     /* SP before the exception (SP_hyp; a lower mode's SP is banked) */
        str     r1, [sp, #FRAME_SP]
        str     lr, [sp, #FRAME_LR]
        mrs     r1, elr_hyp
        mrs     r2, spsr                /* SPSR_hyp */
        read_hsr r3
        read_hdfar r12
        read_hifar lr
        add     r4, sp, #FRAME_ELR
        stmia   r4, {r1-r3, r12, lr}    /* elr, spsr, hsr, hdfar, hifar */
        mov     r12, r1                 /* ELR_hyp */
        mov     r1, r0
        mov     r0, sp
        /* A frame record {fp, pc} so the backtrace continues into the interrupted code. */
        push    {r11, r12}
        mov     r11, sp
        bic     sp, sp, #7              /* AAPCS: 8-byte aligned stack at calls */
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
