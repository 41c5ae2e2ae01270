//! Bad boot inputs (AArch64, QEMU virt, 1 GiB, GICv3): each is refused with
//! a message naming the node, the address range and what is wrong, before
//! anything is copied, and the machine then powers off by itself (the
//! default `on_fatal=poweroff`): QEMU exits with status 0, quickly.
//!
//! A table of cases, each: how to make the input (an edit of QEMU's own
//! device tree with `fdtput`, files loaded with `-device loader`), the text
//! the log must show, and whether the run must end in FATAL. Armature runs
//! alone or with a test guest (`tests/guests/`) as dom0's kernel: no Linux,
//! so each boot takes a second or two (the 22 cases take about 10 s in
//! all). Also here: `on_fatal=halt` and `on_fatal=reset:N`, a DTB running
//! past the end of RAM (through a shim), a boot CPU missing from `/cpus`,
//! inputs that must work: Xen's plain `multiboot,module` nodes (kernel,
//! then ramdisk), an `Image.gz` (the basic guest, and Debian's Linux once),
//! `dom0_mem=` that fits only over the modules' own memory, and the
//! modules' memory given back to the page allocator once copied.
//!
//! Console logs: `target/armature/logs/bad-input-<case>.log`.

mod common;

use common::{image, scratch};
use std::path::PathBuf;
use std::time::Duration;
use xtask::fdt::{add_chosen_module, cells, fdtput};
use xtask::{Arch, Expect, Qemu};

/// A bad input must be refused within this time (QEMU exits by itself).
const QUICK: Duration = Duration::from_secs(40);
/// Where the kernel module goes (as in `xtask::guest`).
const KERNEL: u64 = 0x4a00_0000;
const RAMDISK: u64 = 0x4c00_0000;
/// QEMU's `-kernel` puts Armature here; its DTB at RAM + 128 MiB.
const HV_LOAD: u64 = 0x4020_0000;
const QEMU_DTB: u64 = 0x4800_0000;
const RAM_END: u64 = 0x8000_0000;

/// What a case builds: edits of the DTB and files to load.
struct Setup {
    dir: PathBuf,
    dtb: PathBuf,
    loads: Vec<(PathBuf, u64)>,
    kernel: Option<PathBuf>,
}

impl Setup {
    fn module(&mut self, addr: u64, size: u64, compat: &[&str]) -> &mut Self {
        add_chosen_module(&self.dtb, addr, size, compat).unwrap_or_else(|e| panic!("{e}"));
        self
    }

    /// Writes `bytes` to a file and loads it at `addr`; returns its size.
    fn file(&mut self, name: &str, bytes: &[u8], addr: u64) -> u64 {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        self.loads.push((p, addr));
        bytes.len() as u64
    }

    /// `bytes` as dom0's kernel module at [`KERNEL`].
    fn kernel_bytes(&mut self, bytes: &[u8]) -> &mut Self {
        let size = self.file("kernel.bin", bytes, KERNEL);
        self.module(KERNEL, size, &["multiboot,kernel"])
    }

    /// The basic test guest as dom0's kernel module at [`KERNEL`].
    fn guest(&mut self) -> &mut Self {
        let bytes = guest_bytes();
        self.kernel_bytes(&bytes)
    }

    fn put(&mut self, args: &[&str]) -> &mut Self {
        fdtput(&self.dtb, args).unwrap_or_else(|e| panic!("{e}"));
        self
    }

    fn bootargs(&mut self, args: &str) -> &mut Self {
        self.put(&["-t", "s", "/chosen", "armature,bootargs", args])
    }
}

fn guest_bytes() -> Vec<u8> {
    let p = xtask::guest::build("basic").unwrap_or_else(|e| panic!("{e}"));
    std::fs::read(p).unwrap()
}

/// How a case ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// `FATAL: …`, then a power-off: QEMU exits with 0.
    Fatal,
    /// No error: the boot goes on and powers off (QEMU exits with 0).
    Clean,
}

struct Case {
    name: &'static str,
    make: fn(&mut Setup),
    /// Lines that must appear, in this order.
    expect: &'static [&'static str],
    end: End,
}

const POWER_OFF: &str = "Armature cannot continue: powering off (on_fatal=poweroff";

fn zimage() -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    b[0..4].copy_from_slice(&0xe1a0_0000u32.to_le_bytes()); // mov r0, r0
    b[0x24..0x28].copy_from_slice(&0x016f_2818u32.to_le_bytes());
    b
}

/// `data` compressed by the host's gzip (through a file: a pipe both ways
/// would deadlock on large data).
fn gzip(data: &[u8]) -> Vec<u8> {
    let dir = scratch(&format!("gzip-{}-{}", std::process::id(), data.len()));
    let f = dir.join("data");
    std::fs::write(&f, data).unwrap();
    let out = std::process::Command::new("gzip").args(["-c", "-n"]).arg(&f).output().expect("gzip");
    assert!(out.status.success(), "gzip failed");
    out.stdout
}

/// The basic guest with its header's `field` (byte offset) set to `value`.
fn guest_with(field: usize, value: u64) -> Vec<u8> {
    let mut b = guest_bytes();
    b[field..field + 8].copy_from_slice(&value.to_le_bytes());
    b
}

const CASES: &[Case] = &[
    Case {
        name: "module-in-mmio",
        make: |s| {
            s.module(0x1000_0000, 0x1000, &["multiboot,kernel"]);
        },
        expect: &[
            "FATAL: boot module /chosen/module@10000000 (kernel) at 0x000010000000-0x000010000fff is not in RAM (outside every /memory bank)",
        ],
        end: End::Fatal,
    },
    Case {
        name: "module-past-ram",
        make: |s| {
            s.module(RAM_END, 0x1000, &["multiboot,kernel"]);
        },
        expect: &["FATAL: boot module /chosen/module@80000000 (kernel) at 0x000080000000-0x000080000fff is not in RAM"],
        end: End::Fatal,
    },
    Case {
        name: "module-straddles-ram-end",
        make: |s| {
            s.guest().module(RAM_END - 0x1000, 0x2000, &["multiboot,ramdisk"]);
        },
        expect: &[
            "FATAL: boot module /chosen/module@7ffff000 (ramdisk) at 0x00007ffff000-0x000080000fff runs 0x1000 bytes past the end of the RAM bank 0x000040000000-0x00007fffffff",
        ],
        end: End::Fatal,
    },
    Case {
        name: "module-size-zero",
        make: |s| {
            s.module(KERNEL, 0, &["multiboot,kernel"]);
        },
        expect: &["FATAL: boot module /chosen/module@4a000000 (kernel): reg gives size 0"],
        end: End::Fatal,
    },
    Case {
        name: "ramdisk-inside-kernel",
        make: |s| {
            s.guest().module(KERNEL + 0x100, 0x100, &["multiboot,ramdisk"]);
        },
        // `fdtput -c` puts a new node first: the ramdisk comes first in the tree.
        expect: &[
            "FATAL: boot modules overlap: /chosen/module@4a000100 (ramdisk) at 0x00004a000100-0x00004a0001ff and /chosen/module@4a000000 (kernel) at 0x00004a000000-",
        ],
        end: End::Fatal,
    },
    Case {
        name: "ramdisk-over-dtb",
        make: |s| {
            s.guest().module(QEMU_DTB + 0x1000, 0x1000, &["multiboot,ramdisk"]);
        },
        expect: &[
            "FATAL: boot module /chosen/module@48001000 (ramdisk) at 0x000048001000-0x000048001fff overlaps the device tree at 0x000048000000-",
        ],
        end: End::Fatal,
    },
    Case {
        name: "kernel-over-hypervisor",
        make: |s| {
            s.module(HV_LOAD, 0x10000, &["multiboot,kernel"]);
        },
        expect: &[
            "FATAL: boot module /chosen/module@40200000 (kernel) at 0x000040200000-0x00004020ffff overlaps the hypervisor's load region at 0x000040200000-",
        ],
        end: End::Fatal,
    },
    Case {
        name: "chosen-address-cells-1",
        make: |s| {
            s.module(KERNEL, 0x1000, &["multiboot,kernel"]);
            s.put(&["-t", "x", "/chosen", "#address-cells", "1"]).put(&["-t", "x", "/chosen", "#size-cells", "1"]);
        },
        expect: &[
            "FATAL: boot modules: /chosen/module@4a000000: reg has 16 bytes, 2 entries with /chosen's #address-cells = <1> and #size-cells = <1>; a boot module has exactly one",
        ],
        end: End::Fatal,
    },
    Case {
        name: "seventeen-modules",
        make: |s| {
            for i in 0..17u64 {
                s.module(0x5000_0000 + i * 0x10_0000, 0x1000, &["multiboot,ramdisk"]);
            }
        },
        expect: &[
            "FATAL: boot modules: /chosen has 17 boot modules, more than the 16 Armature keeps clear of: refusing",
        ],
        end: End::Fatal,
    },
    Case {
        name: "memory-without-ram",
        make: |s| {
            let ([ah, al], [sh, sl]) = (cells(RAM_END), cells(1 << 30));
            // Not named memory@…: QEMU replaces those with its own.
            s.put(&["-c", "/ram@80000000"]).put(&["-t", "s", "/ram@80000000", "device_type", "memory"]);
            s.put(&["-t", "x", "/ram@80000000", "reg", &ah, &al, &sh, &sl]);
        },
        expect: &[
            "FATAL: /ram@80000000: reg says RAM at 0x000080000000-0x0000bfffffff (1024 MiB), but nothing answers at 0x80000000",
        ],
        end: End::Fatal,
    },
    Case {
        name: "kernel-random-bytes",
        make: |s| {
            let b: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8 | 1).collect();
            s.kernel_bytes(&b);
        },
        expect: &[
            "FATAL: dom0: kernel module at 0x00004a000000-0x00004a001fff refused: no arm64 Image magic",
            "not an arm64 Image",
        ],
        end: End::Fatal,
    },
    Case {
        name: "kernel-zeros",
        make: |s| {
            s.kernel_bytes(&[0; 4096]);
        },
        expect: &["FATAL: dom0: kernel module at 0x00004a000000-0x00004a000fff refused: its first bytes are all zeros"],
        end: End::Fatal,
    },
    Case {
        // An Image.gz is decompressed (as Xen and U-Boot do) and boots.
        name: "kernel-gzip",
        make: |s| {
            let gz = gzip(&guest_bytes());
            s.kernel_bytes(&gz);
        },
        expect: &[
            "d0: kernel module 0x00004a000000-",
            "is gzip-compressed: decompressed to",
            "d0v0: basic guest: hello from EL1",
            "d0: PSCI SYSTEM_OFF from the hardware domain: powering off",
        ],
        end: End::Clean,
    },
    Case {
        name: "kernel-gzip-corrupt",
        make: |s| {
            let mut gz = gzip(&guest_bytes());
            let n = gz.len();
            gz[n - 8] ^= 0xff; // the CRC-32
            s.kernel_bytes(&gz);
        },
        expect: &[
            "FATAL: dom0: kernel module at 0x00004a000000-",
            "refused: it is gzip-compressed (an Image.gz), but its decompressed data fails the gzip CRC-32 check",
        ],
        end: End::Fatal,
    },
    Case {
        name: "kernel-zimage",
        make: |s| {
            s.kernel_bytes(&zimage());
        },
        expect: &["refused: it is an ARMv7 (32-bit) zImage"],
        end: End::Fatal,
    },
    Case {
        name: "kernel-header-alone",
        make: |s| {
            let g = guest_bytes();
            s.kernel_bytes(&g[..64]);
        },
        expect: &[
            "refused: its first instruction branches to offset 0x",
            "outside the module (0x40 bytes): an Image header without its code?",
        ],
        end: End::Fatal,
    },
    Case {
        name: "kernel-huge-text-offset",
        make: |s| {
            s.kernel_bytes(&guest_with(8, 0xffff_ffff_ffff_0000));
        },
        expect: &[
            "FATAL: dom0: the kernel (text_offset 0xffffffffffff0000",
            "need more than the 64-bit address space; dom0 has 512 MiB at",
            "(dom0_mem=)",
        ],
        end: End::Fatal,
    },
    Case {
        name: "kernel-huge-image-size",
        make: |s| {
            s.kernel_bytes(&guest_with(16, 0x4000_0000));
        },
        expect: &[
            "FATAL: dom0: the kernel (text_offset 0x0, image_size 0x40000000)",
            "need 0x40200000 bytes (1026 MiB); dom0 has 512 MiB",
        ],
        end: End::Fatal,
    },
    Case {
        name: "dom0-mem-too-large",
        make: |s| {
            s.guest().bootargs("dom0_mem=2000M");
        },
        expect: &[
            "FATAL: dom0: dom0_mem=2000 MiB: no free block of RAM that large (largest free block",
            "lower dom0_mem=",
        ],
        end: End::Fatal,
    },
    Case {
        // 800 MiB fit only if the 64 MiB ramdisk's memory (in the middle
        // of RAM) is given back: dom0's RAM then covers the module, copied
        // from there to its own place.
        name: "dom0-mem-over-module-memory",
        make: |s| {
            let rd = s.file("ramdisk.bin", &vec![0xa5; 64 << 20], 0x5000_0000);
            s.module(0x5000_0000, rd, &["multiboot,ramdisk"]);
            s.guest().bootargs("dom0_mem=800M");
        },
        expect: &[
            "d0: 800 MiB fit only with the boot modules' memory: their copies are ordered",
            "d0: 800 MiB RAM at 0x",
            "ramdisk module 0x000050000000-0x000053ffffff copied to",
            "d0v0: basic guest: hello from EL1",
            "d0: PSCI SYSTEM_OFF from the hardware domain: powering off",
        ],
        end: End::Clean,
    },
    Case {
        name: "ramdisk-only",
        make: |s| {
            s.module(RAMDISK, 0x1000, &["multiboot,ramdisk"]);
        },
        expect: &[
            "WARN  dom0: /chosen has 1 boot module(s) but no kernel",
            "dom0:   /chosen/module@4c000000 (ramdisk) at 0x00004c000000-0x00004c000fff left unused",
            "Boot complete: no domains to run yet",
            "Powering off via PSCI SYSTEM_OFF",
        ],
        end: End::Clean,
    },
    Case {
        name: "xen-plain-modules",
        make: |s| {
            // `fdtput -c` puts a new node first: the ramdisk is added
            // first so that the kernel comes first in the tree.
            let rd = s.file("ramdisk.bin", &[0x5a; 0x3000], RAMDISK);
            s.module(RAMDISK, rd, &[]);
            let g = guest_bytes();
            let size = s.file("kernel.bin", &g, KERNEL);
            s.module(KERNEL, size, &[]);
        },
        expect: &[
            "kernel module 0x00004a000000-",
            "ramdisk module 0x00004c000000-0x00004c002fff copied to",
            "d0: boot module 0x00004a000000-",
            "KiB back to the page allocator",
            "d0: boot module 0x00004c000000-0x00004c002fff copied: 12 KiB back to the page allocator",
            "d0v0: basic guest: hello from EL1",
            "d0: PSCI SYSTEM_OFF from the hardware domain: powering off",
        ],
        end: End::Clean,
    },
];

/// A fresh setup for `name`: QEMU's DTB for the machine, dumped.
fn setup(name: &str, qemu: &Qemu) -> Setup {
    let dir = scratch(&format!("bad-input-{name}"));
    let dtb = dir.join("virt.dtb");
    common::dump_machine_dtb(qemu, &dtb);
    Setup { dir, dtb, loads: Vec::new(), kernel: None }
}

fn machine() -> Qemu {
    Qemu::aarch64().gic(3).smp(1).memory("1G")
}

/// QEMU for a setup: Armature by `-kernel` (unless the setup has its own
/// kernel, a shim), the edited DTB, the files.
fn qemu_for(s: &Setup, qemu: Qemu) -> Qemu {
    let img = image(Arch::Aarch64, &[]);
    let mut q = qemu.kernel(s.kernel.clone().unwrap_or(img.bin)).dtb(&s.dtb);
    for (f, addr) in &s.loads {
        q = q.load_at(f, *addr);
    }
    q
}

fn run(test: &str, qemu: &Qemu, expect: &[&str], end: End) -> xtask::runner::Outcome {
    let mut failures = vec!["PANIC", "----[ Armature"];
    if end == End::Clean {
        failures.push("FATAL");
    }
    let mut markers: Vec<&str> = expect.to_vec();
    if end == End::Fatal {
        markers.push(POWER_OFF);
    }
    let e = Expect::new().markers(markers).failure_markers(failures).clean_exit(true).timeout(QUICK);
    common::boot(test, qemu, &e)
}

/// Every case of the table, one boot each.
#[test]
fn bad_inputs_are_refused_by_name_and_power_off() {
    let mut failed = Vec::new();
    for c in CASES {
        let test = format!("bad-input-{}", c.name);
        let mut s = setup(c.name, &machine());
        (c.make)(&mut s);
        let q = qemu_for(&s, machine());
        let r = std::panic::catch_unwind(|| {
            let o = run(&test, &q, c.expect, c.end);
            // Refused before anything is copied: no dom0 RAM, no relocation
            // of a bad module.
            if c.end == End::Fatal {
                assert!(!o.log.contains("d0: kernel module"), "{test}: something was copied\n{}", o.log);
            }
        });
        if r.is_err() {
            failed.push(c.name);
        }
    }
    assert!(failed.is_empty(), "cases failed: {failed:?} (logs in target/armature/logs/bad-input-*.log)");
}

/// A DTB whose `totalsize` runs past the end of RAM: loaded at the last
/// page of RAM and handed over by a shim (QEMU's own loader would rewrite
/// the header), refused before the walk.
#[test]
fn a_dtb_running_past_the_end_of_ram() {
    let name = "dtb-past-ram";
    let test = format!("bad-input-{name}");
    let mut s = setup(name, &machine());
    let img = image(Arch::Aarch64, &[]);
    let load = 0x4040_0000;
    let dtb_at = RAM_END - 0x1000;
    // The shim: an arm64 Image header, then x0 = the DTB, x16 = Armature, br x16.
    let mut shim = xtask::shim::image(load)[..xtask::shim::HEADER_SIZE].to_vec();
    let code: Vec<u32> = xtask::shim::mov_imm64(0, dtb_at)
        .into_iter()
        .chain(xtask::shim::mov_imm64(xtask::shim::SCRATCH, load))
        .chain([xtask::shim::br(xtask::shim::SCRATCH)])
        .collect();
    code.iter().for_each(|i| shim.extend_from_slice(&i.to_le_bytes()));
    let len = shim.len() as u64;
    shim[0x10..0x18].copy_from_slice(&len.to_le_bytes());
    let shim_path = s.dir.join("shim.bin");
    std::fs::write(&shim_path, &shim).unwrap();
    s.kernel = Some(shim_path);
    // A DTB header (magic, totalsize 64 KiB) in the last page of RAM.
    let mut dtb = std::fs::read(&s.dtb).unwrap()[..0x1000].to_vec();
    dtb[4..8].copy_from_slice(&0x1_0000u32.to_be_bytes());
    s.file("short.dtb", &dtb, dtb_at);
    s.loads.push((img.bin.clone(), load));
    let q = qemu_for(&s, machine());
    run(
        &test,
        &q,
        &[
            "DTB address: 0x7ffff000",
            "FATAL: device tree at 0x7ffff000: its header says totalsize 0x10000 bytes (to 0x8000efff), but nothing answers at 0x80000000: the blob runs past the end of RAM",
        ],
        End::Fatal,
    );
}

/// A boot CPU that `/cpus` leaves out is said, and counted: the count of
/// CPUs online never includes a CPU that did not start. Two cases on 2
/// CPUs: `cpu@0` removed (2 of 2 online), and `cpu@0` moved to an MPIDR
/// that does not exist (its CPU_ON fails: 2 of 3).
#[test]
fn a_boot_cpu_missing_from_cpus() {
    let two = || Qemu::aarch64().gic(3).smp(2).memory("1G");
    let mut s = setup("boot-cpu-missing", &two());
    s.put(&["-r", "/cpus/cpu@0"]);
    let q = qemu_for(&s, two());
    let missing = "WARN  CPUs: the boot CPU (MPIDR 0x0) is not in /cpus: the device tree does not describe the CPU Armature runs on; counted as CPU 0";
    run(
        "bad-input-boot-cpu-missing",
        &q,
        &[missing, "CPUs online: 2 of 2 (mask 0x3)", "Powering off via PSCI SYSTEM_OFF"],
        End::Clean,
    );

    let mut s = setup("boot-cpu-moved", &two());
    s.put(&["-t", "x", "/cpus/cpu@0", "reg", "7"]);
    let q = qemu_for(&s, two());
    run(
        "bad-input-boot-cpu-moved",
        &q,
        &[
            missing,
            "MPIDR 0x7): PSCI CPU_ON via SMC failed",
            "CPUs online: 2 of 3 (mask 0x5)",
            "Powering off via PSCI SYSTEM_OFF",
        ],
        End::Clean,
    );
}

/// `on_fatal=halt` keeps the machine as it is (QEMU keeps running);
/// `on_fatal=reset:1` resets it a second later (QEMU's `-no-reboot` makes
/// that an exit).
#[test]
fn on_fatal_halt_and_reset() {
    let bad = |s: &mut Setup, args: &str| {
        s.module(0x1000_0000, 0x1000, &["multiboot,kernel"]);
        s.bootargs(args);
    };
    let mut s = setup("on-fatal-halt", &machine());
    bad(&mut s, "on_fatal=halt");
    let q = qemu_for(&s, machine());
    let e = Expect::new()
        .markers(["FATAL: boot module", "Armature cannot continue: halted (on_fatal=halt)."])
        .failure_markers(["PANIC", "----[ Armature", "powering off"])
        .stop_on("halted (on_fatal=halt).")
        .timeout(QUICK);
    common::boot("bad-input-on-fatal-halt", &q, &e);

    let mut s = setup("on-fatal-reset", &machine());
    bad(&mut s, "on_fatal=reset:1");
    let q = qemu_for(&s, machine());
    let e = Expect::new()
        .markers(["FATAL: boot module", "Armature cannot continue: resetting in 1 s (on_fatal=reset:1)."])
        .failure_markers(["PANIC", "----[ Armature", "halted"])
        .clean_exit(true)
        .timeout(QUICK);
    let o = common::boot("bad-input-on-fatal-reset", &q, &e);
    let t = o.time_to("Armature cannot continue: resetting in 1 s (on_fatal=reset:1).").expect("the reset line");
    assert!(
        o.elapsed >= t + Duration::from_millis(900),
        "reset came before the second was up: {:?} vs {t:?}",
        o.elapsed
    );
}

/// Debian's arm64 Linux as an `Image.gz` (gzipped here) boots as dom0
/// through QEMU's loader: Armature decompresses it first, as Xen does.
/// (The one Linux boot of this file, ~30 s.)
#[test]
fn linux_image_gz_boots_as_dom0() {
    use xtask::dom0::{self, Dom0, Hypervisor};
    let test = "bad-input-linux-image-gz";
    let kernel = xtask::debian::kernel().unwrap_or_else(|e| panic!("{e}"));
    let (_, busybox) = xtask::debian::busybox().unwrap_or_else(|e| panic!("{e}"));
    let initrd = xtask::initramfs::dom0_initramfs(&busybox, &kernel.modules).unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch(test);
    let gz = dir.join("Image.gz");
    std::fs::write(&gz, gzip(&std::fs::read(&kernel.image).unwrap())).unwrap();
    let d = Dom0::new(Hypervisor::Armature, &gz, &initrd, 2);
    let qemu = Qemu::aarch64().gic(3).smp(2).memory("2G");
    let qemu = dom0::direct(qemu, &image(Arch::Aarch64, &[]).bin, &d, &dir).unwrap_or_else(|e| panic!("{e}"));
    let expect =
        dom0::expect_after(&["is gzip-compressed: decompressed to", "d0v0: entering at"], Duration::from_secs(150));
    common::boot(test, &qemu, &expect);
}
