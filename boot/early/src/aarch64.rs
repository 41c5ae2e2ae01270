//! AArch64 entry points of the early code, called from `boot/aarch64/head.S`.
//!
//! The three calls follow the boot CPU through the MMU switch:
//! 1. [`armature_early_map`], MMU off at the load address: build the boot
//!    tables and return the register values that turn the MMU on.
//! 2. [`armature_early_leave_identity`], clash path only, running at the
//!    temporary alias: replace the identity entry with the runtime mapping.
//! 3. [`armature_early_finish`], running at the runtime address: remove the
//!    alias (clash path) or the identity page (otherwise).
//! 4. [`armature_early_seal`], once the stub has applied the relocations:
//!    make rodata read-only.
//!
//! System registers and cache/TLB maintenance are inline `asm!` here rather
//! than `aarch64-cpu`: this crate may not call into other crates (see the
//! crate documentation), and these are single instructions.

use crate::layout::{self, ALIAS_VA, FIXMAP_DTB_VA, FIXMAP_DTB_WINDOW, FIXMAP_UART_VA, IMAGE_VA, IMAGE_WINDOW, PAGE, Plan};
use crate::tables::{self, ImageLayout, Perm, TablePage, Tables};
use crate::{EarlyInfo, Error};
use core::arch::asm;

/// Boot table pages. 32 pages cover the worst case: three separate 512 GiB
/// regions (runtime+fixmap, identity, alias), each needing three levels below
/// the root, with a 32 MiB image (16 level-3 tables) and a 4 MiB DTB window.
const POOL_PAGES: usize = 32;

#[repr(C, align(4096))]
struct Pool([TablePage; POOL_PAGES]);

#[unsafe(link_section = ".bss.early_tables")]
static mut POOL: Pool = Pool([[0; tables::ENTRIES]; POOL_PAGES]);

static mut INFO: EarlyInfo = EarlyInfo {
    error: 0,
    plan: 0,
    load_pa: 0,
    image_va: 0,
    alias_va: 0,
    idmap_pa: 0,
    dtb_va: 0,
    dtb_pa: 0,
    uart_va: 0,
    uart_pa: 0,
    root_pa: 0,
    tables_used: 0,
    idmap_removed: 0,
    alias_removed: 0,
};

#[cfg(feature = "plant-absolute-reloc")]
#[used]
static PLANTED: &u64 = &0x1234;

/// Register values for the MMU switch, returned to the stub.
#[repr(C)]
pub struct MmuRegs {
    ttbr0: u64,
    tcr: u64,
    mair: u64,
    sctlr: u64,
    /// Virtual address the image continues at after the switch.
    entry_va: u64,
    /// Virtual address the image runs at in the end.
    image_va: u64,
}

const _: () = assert!(core::mem::size_of::<MmuRegs>() == 6 * 8); // MMUREGS_SIZE in head.S

/// A copy of what the early code did (read by the boot log once running).
pub fn info() -> EarlyInfo {
    // SAFETY: INFO is written only by the boot CPU before the rest of the
    // hypervisor runs; this reads a plain copy.
    unsafe { (&raw const INFO).read_volatile() }
}

/// Address of a linker symbol, PC-relative (never through the GOT).
macro_rules! sym_addr {
    ($sym:literal) => {{
        let a: u64;
        // SAFETY: computes an address, touches no memory.
        unsafe { asm!(concat!("adrp {0}, ", $sym, "\nadd {0}, {0}, :lo12:", $sym), out(reg) a, options(nomem, nostack, preserves_flags)) };
        a
    }};
}

fn image_layout() -> (u64, ImageLayout) {
    let start = sym_addr!("__image_start");
    let l = ImageLayout {
        text_end: sym_addr!("__text_end") - start,
        rodata_end: sym_addr!("__rodata_end") - start,
        image_end: sym_addr!("__image_end") - start,
    };
    (start, l)
}

fn pool() -> &'static mut [TablePage] {
    // SAFETY: only the boot CPU uses the pool, during these three calls, one
    // at a time; the address is PC-relative so it is the live mapping's.
    let pool = &raw mut POOL;
    unsafe { &mut (*pool).0 }
}

fn info_mut() -> &'static mut EarlyInfo {
    // SAFETY: as for `pool`.
    let info = &raw mut INFO;
    unsafe { &mut *info }
}

/// Physical address bits the CPU implements (ID_AA64MMFR0_EL1.PARange), and
/// the matching TCR_EL2.PS value, capped at 48 bits (4 KiB granule).
fn pa_range() -> (u32, u64) {
    let mmfr0: u64;
    // SAFETY: reads an ID register.
    unsafe { asm!("mrs {}, ID_AA64MMFR0_EL1", out(reg) mmfr0, options(nomem, nostack, preserves_flags)) };
    match mmfr0 & 0xf {
        0 => (32, 0),
        1 => (36, 1),
        2 => (40, 2),
        3 => (42, 3),
        4 => (44, 4),
        _ => (48, 5),
    }
}

fn read_be32(pa: u64) -> u32 {
    let mut v = 0u32;
    let mut i = 0;
    while i < 4 {
        // SAFETY: the DTB header is readable physical memory (MMU off); byte
        // reads cannot fault on alignment.
        let b = unsafe { core::ptr::read_volatile((pa + i) as *const u8) };
        v = (v << 8) | b as u32;
        i += 1;
    }
    v
}

/// Invalidates the TLB entry of one EL2 page, after its descriptor changed.
fn tlbi_page(va: u64) {
    // SAFETY: TLB maintenance; the barriers order it after the table write
    // and before any use of the mapping.
    unsafe { asm!("dsb ishst", "tlbi vae2is, {}", "dsb ish", "isb", in(reg) va >> 12, options(nostack, preserves_flags)) };
}

/// Makes new table entries visible to the walker.
fn publish_tables() {
    // SAFETY: barriers only.
    unsafe { asm!("dsb ishst", "isb", options(nostack, preserves_flags)) };
}

/// Runs `f` on the live boot tables, resumed from what `INFO` records. With
/// `grow`, `f` may add entries: they are published to the table walker and
/// the pages now used recorded.
fn with_tables<T>(grow: bool, f: impl FnOnce(&mut Tables<'static>) -> Result<T, Error>) -> Result<T, Error> {
    let info = info();
    let mut t = Tables::resume(pool(), info.root_pa, info.tables_used as usize);
    let r = f(&mut t);
    if grow {
        publish_tables();
        info_mut().tables_used = t.used() as u64;
    }
    r
}

/// What a step returns to the stub: 0, or the [`Error`] code, which is also
/// recorded in `INFO` for the Rust side to report.
fn step_result(r: Result<(), Error>) -> u64 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            info_mut().error = e as u64;
            e as u64
        }
    }
}

fn map_fixmap(t: &mut Tables<'_>, dtb_pa: u64, uart_pa: u64) -> Result<(), Error> {
    if uart_pa != 0 {
        t.map(FIXMAP_UART_VA, uart_pa & !(PAGE - 1), PAGE, Perm::Device)?;
    }
    let dtb_base = dtb_pa & !((2 << 20) - 1);
    t.map(FIXMAP_DTB_VA, dtb_base, FIXMAP_DTB_WINDOW, Perm::ReadOnly)
}

fn early_map(load_pa: u64, dtb_pa: u64, uart_pa: u64, out: &mut MmuRegs) -> Result<(), Error> {
    let (start, l) = image_layout();
    if l.image_end > IMAGE_WINDOW {
        return Err(Error::ImageTooLarge);
    }
    let idmap_pa = sym_addr!("__idmap_start");
    if !dtb_pa.is_multiple_of(8) || read_be32(dtb_pa) != 0xd00d_feed || read_be32(dtb_pa + 4) > (2 << 20) {
        return Err(Error::BadDtb);
    }
    let (pa_bits, ps) = pa_range();
    let limit = 1u64 << pa_bits;
    if start + l.image_end > limit || dtb_pa + (2 << 20) > limit || uart_pa >= limit {
        return Err(Error::PaRangeTooSmall);
    }
    let pool_pa = sym_addr!("__early_tables_start");
    let mut t = Tables::new(pool(), pool_pa)?;
    // The identity page: the MMU switch code, mapped where it is.
    t.map(idmap_pa, idmap_pa, PAGE, Perm::Text)?;
    let plan = layout::plan(idmap_pa, IMAGE_VA);
    let entry_base = match plan {
        Plan::IdentityOnly => {
            tables::map_image(&mut t, IMAGE_VA, start, l)?;
            map_fixmap(&mut t, dtb_pa, uart_pa)?;
            IMAGE_VA
        }
        Plan::TemporaryAlias => {
            // The runtime range is in use by the identity page: run at the
            // alias until the identity page is gone.
            tables::map_image(&mut t, ALIAS_VA, start, l)?;
            ALIAS_VA
        }
    };
    let info = info_mut();
    *info = EarlyInfo {
        error: 0,
        plan: plan as u64,
        load_pa,
        image_va: IMAGE_VA,
        alias_va: if plan == Plan::TemporaryAlias { ALIAS_VA } else { 0 },
        idmap_pa,
        dtb_va: FIXMAP_DTB_VA + (dtb_pa & ((2 << 20) - 1)),
        dtb_pa,
        uart_va: if uart_pa != 0 { FIXMAP_UART_VA + (uart_pa & (PAGE - 1)) } else { 0 },
        uart_pa,
        root_pa: t.root_pa(),
        tables_used: t.used() as u64,
        idmap_removed: 0,
        alias_removed: 0,
    };
    // TCR_EL2: RES1 bits 31 and 23, PS, TG0 = 4 KiB, SH0 inner, ORGN0/IRGN0
    // write-back write-allocate, T0SZ = 64 - 48.
    const TCR_RES1: u64 = (1 << 31) | (1 << 23);
    const TCR_SH0_INNER: u64 = 0b11 << 12;
    const TCR_ORGN0_WBWA: u64 = 0b01 << 10;
    const TCR_IRGN0_WBWA: u64 = 0b01 << 8;
    const TCR_T0SZ: u64 = 64 - layout::VA_BITS as u64;
    // SCTLR_EL2: RES1 bits, then M, C, SA, I and WXN (writable is never executable).
    const SCTLR_EL2_RES1: u64 = 0x30c5_0830;
    const SCTLR_M: u64 = 1 << 0;
    const SCTLR_C: u64 = 1 << 2;
    const SCTLR_SA: u64 = 1 << 3;
    const SCTLR_I: u64 = 1 << 12;
    const SCTLR_WXN: u64 = 1 << 19;
    *out = MmuRegs {
        ttbr0: t.root_pa(),
        tcr: TCR_RES1 | (ps << 16) | TCR_SH0_INNER | TCR_ORGN0_WBWA | TCR_IRGN0_WBWA | TCR_T0SZ,
        mair: tables::MAIR,
        sctlr: SCTLR_EL2_RES1 | SCTLR_M | SCTLR_C | SCTLR_SA | SCTLR_I | SCTLR_WXN,
        entry_va: entry_base,
        image_va: IMAGE_VA,
    };
    Ok(())
}

/// Step 1, MMU off: builds the boot tables. Returns 0, or an [`Error`] code
/// (then the stub stays with the MMU off and reports it).
///
/// # Safety
/// Called once by the boot stub, MMU off, at the load address, with `out`
/// pointing at writable memory for an [`MmuRegs`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn armature_early_map(load_pa: u64, dtb_pa: u64, uart_pa: u64, out: *mut MmuRegs) -> u64 {
    // SAFETY: the stub passes a pointer to stack space for the registers.
    let out = unsafe { &mut *out };
    step_result(early_map(load_pa, dtb_pa, uart_pa, out))
}

/// Step 2 (clash path), running at the alias: removes the identity page and
/// maps the runtime image and the fixmap in its place (break-before-make:
/// the identity entry is cleared and its TLB entry invalidated first).
#[unsafe(no_mangle)]
pub extern "C" fn armature_early_leave_identity() -> u64 {
    let info = info();
    // The symbols are the alias's addresses now; only the sizes are used.
    let (_, l) = image_layout();
    step_result(with_tables(true, |t| {
        let removed = t.unmap(info.idmap_pa, PAGE, tlbi_page)?;
        info_mut().idmap_removed = removed;
        tables::map_image(t, IMAGE_VA, info.load_pa, l)?;
        map_fixmap(t, info.dtb_pa, info.uart_pa)
    }))
}

/// Step 4, after the stub applied the relocations: rodata becomes read-only.
#[unsafe(no_mangle)]
pub extern "C" fn armature_early_seal() -> u64 {
    let info = info();
    let (_, l) = image_layout();
    step_result(with_tables(false, |t| tables::seal_rodata(t, info.image_va, l, tlbi_page)))
}

/// Step 3, running at the runtime address: removes the scaffolding. With the
/// alias: the whole alias. Without: the identity page.
#[unsafe(no_mangle)]
pub extern "C" fn armature_early_finish() -> u64 {
    let info = info();
    step_result(with_tables(false, |t| {
        if info.alias_va != 0 {
            let (_, l) = image_layout();
            t.unmap(info.alias_va, l.image_end, tlbi_page).map(|n| info_mut().alias_removed = n)
        } else {
            t.unmap(info.idmap_pa, PAGE, tlbi_page).map(|n| info_mut().idmap_removed = n)
        }
    }))
}

/// Maps `[va, va + size)` to `pa` in the live boot tables (used by the
/// relocation to reach the new copy and its identity page). New entries only:
/// nothing live is replaced, so no break-before-make is needed.
pub fn boot_map(va: u64, pa: u64, size: u64, perm: Perm) -> Result<(), Error> {
    with_tables(true, |t| t.map(va, pa, size, perm))
}

/// Removes `[va, va + size)` from the live boot tables, with a TLB
/// invalidation per page. Returns how many pages were mapped.
pub fn boot_unmap(va: u64, size: u64) -> Result<u64, Error> {
    with_tables(false, |t| t.unmap(va, size, tlbi_page))
}
