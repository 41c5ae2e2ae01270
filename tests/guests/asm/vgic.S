/*
 * The vGIC test guest: dom0 on QEMU virt, whose distributor is at
 * 0x08000000 (1:1, the host's address) and emulated by Armature. It finds
 * the GIC version from the distributor's PIDR2 (GICv2: offset 0xfe8, GICv3:
 * 0xffe8), then checks, one line each:
 *   - GICD_TYPER: ITLinesNumber and the vCPU count (GICv2 CPUNumber),
 *     printed for the harness to compare;
 *   - ISENABLER/ICENABLER: enabling SPI 33 sticks, disabling clears it;
 *   - IPRIORITYR by byte: SPI 33's priority reads back;
 *   - GICv2 ITARGETSR: writing 0xff reads back masked to the existing vCPUs;
 *   - GICv3: the first redistributor's GICR_TYPER says vCPU 0;
 * then asks for SYSTEM_OFF. No stack; x19 = GICD base, x26 = version.
 */

        .text
entry:
        adr     x0, msg_hello
        bl      puts
        movz    x19, #0x0800, lsl #16   /* GICD at 0x08000000 */

        ldr     w0, [x19, #0xfe8]       /* GICv2 GICD_PIDR2 */
        ubfx    w0, w0, #4, #4
        cmp     w0, #2
        b.eq    gic_v2
        add     x1, x19, #0xf, lsl #12
        ldr     w0, [x1, #0xfe8]        /* GICv3 GICD_PIDR2 at 0xffe8 */
        ubfx    w0, w0, #4, #4
        cmp     w0, #3
        b.eq    gic_v3
        adr     x0, msg_version_fail
        bl      puts
        b       done

gic_v2: mov     x26, #2
        adr     x0, msg_v2
        bl      puts
        b       common
gic_v3: mov     x26, #3
        adr     x0, msg_v3
        bl      puts

common:
        /* GICD_TYPER: ITLinesNumber (bits 4:0), CPUNumber (bits 7:5). */
        ldr     w20, [x19, #0x4]
        adr     x0, msg_lines
        bl      puts
        and     w1, w20, #0x1f
        bl      puthex
        cmp     x26, #2
        b.ne    1f
        adr     x0, msg_cpus
        bl      puts
        ubfx    w1, w20, #5, #3
        add     w1, w1, #1
        bl      puthex
1:      mov     w1, #10
        bl      putc

        /* Enable SPI 33 (ISENABLER1 bit 1), read back, then disable. */
        mov     w1, #2
        str     w1, [x19, #0x104]
        ldr     w2, [x19, #0x104]
        tst     w2, #2
        adr     x0, msg_enable_pass
        adr     x1, msg_enable_fail
        csel    x0, x0, x1, ne
        bl      puts
        mov     w1, #2
        str     w1, [x19, #0x184]       /* ICENABLER1 */
        ldr     w2, [x19, #0x104]
        tst     w2, #2
        adr     x0, msg_disable_pass
        adr     x1, msg_disable_fail
        csel    x0, x0, x1, eq
        bl      puts

        /* IPRIORITYR byte access: SPI 33 at 0x400 + 33. */
        mov     w1, #0xa0
        strb    w1, [x19, #0x421]
        ldrb    w2, [x19, #0x421]
        cmp     w2, #0xa0
        adr     x0, msg_prio_pass
        adr     x1, msg_prio_fail
        csel    x0, x0, x1, eq
        bl      puts

        cmp     x26, #2
        b.ne    2f
        /* GICv2 ITARGETSR for SPI 33 (byte 0x800 + 33): masked to vCPUs. */
        mov     w1, #0xff
        strb    w1, [x19, #0x821]
        adr     x0, msg_targets
        bl      puts
        ldrb    w1, [x19, #0x821]
        bl      puthex
        mov     w1, #10
        bl      putc
        b       done

2:      /* GICv3: GICR_TYPER of the first redistributor (0x080a0000 + 8). */
        movz    x1, #0x080a, lsl #16
        ldr     x20, [x1, #8]
        adr     x0, msg_gicr
        bl      puts
        lsr     x1, x20, #32            /* Affinity: vCPU 0 */
        bl      puthex
        adr     x0, msg_gicr_last
        bl      puts
        ubfx    x1, x20, #4, #1         /* Last */
        bl      puthex
        mov     w1, #10
        bl      putc

done:   adr     x0, msg_done
        bl      puts
        b       power_off




        .section .rodata
msg_hello:         .asciz "vgic guest: up\n"
msg_version_fail:  .asciz "FAIL version: PIDR2 says neither GICv2 nor GICv3\n"
msg_v2:            .asciz "GICv2 distributor\n"
msg_v3:            .asciz "GICv3 distributor\n"
msg_lines:         .asciz "TYPER ITLinesNumber 0x"
msg_cpus:          .asciz ", CPUs "
msg_enable_pass:   .asciz "PASS enable: SPI 33 enabled\n"
msg_enable_fail:   .asciz "FAIL enable\n"
msg_disable_pass:  .asciz "PASS disable: SPI 33 disabled\n"
msg_disable_fail:  .asciz "FAIL disable\n"
msg_prio_pass:     .asciz "PASS priority: byte access\n"
msg_prio_fail:     .asciz "FAIL priority\n"
msg_targets:       .asciz "ITARGETSR SPI 33 after writing 0xff: 0x"
msg_gicr:          .asciz "GICR_TYPER affinity 0x"
msg_gicr_last:     .asciz ", Last "
msg_done:          .asciz "vgic guest: done, powering off\n"
