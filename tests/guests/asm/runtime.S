/*
 * What every test guest shares, assembled in front of its own asm/<name>.S:
 * the Linux arm64 Image header (so Armature loads the guest like a kernel,
 * entering `entry` at EL1 with the MMU off) and the console routines, which
 * print through Armature's console hypercall. No stack is used.
 */
        .equ    HVC_PUTC,         0x86000100
        .equ    PSCI_SYSTEM_OFF,  0x84000008

        .section .text.boot, "ax"
        .global _start
_start:                                 /* Linux arm64 Image header */
        b       entry
        .long   0
        .quad   0                       /* text_offset */
        .quad   __image_size
        .quad   0xa                     /* LE, 4K pages, anywhere */
        .quad   0, 0, 0
        .ascii  "ARM\x64"
        .long   0

        .text
/* putc: print the byte in x1. Clobbers x0. */
putc:
        ldr     w0, =HVC_PUTC
        hvc     #0
        ret

/* puts: print a NUL-terminated string. In: x0. Clobbers x0, x1, x9. */
puts:
        mov     x9, x0
1:      ldrb    w1, [x9], #1
        cbz     w1, 2f
        ldr     w0, =HVC_PUTC
        hvc     #0
        b       1b
2:      ret

/* puthex: print x1 (< 0x100) in hex, no prefix. Clobbers x0-x3, x10. */
puthex:
        mov     x10, x30
        mov     x3, x1
        lsr     x1, x3, #4
        cbz     x1, 1f
        and     x1, x1, #0xf
        bl      hexdigit
1:      and     x1, x3, #0xf
        bl      hexdigit
        mov     x30, x10
        ret
hexdigit:
        cmp     x1, #10
        add     x2, x1, #48
        add     x1, x1, #87
        csel    x1, x2, x1, lo
        b       putc

/* power_off: PSCI SYSTEM_OFF; should it return, wait forever. */
power_off:
        ldr     w0, =PSCI_SYSTEM_OFF
        hvc     #0
1:      wfi
        b       1b
