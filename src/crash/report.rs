//! The text of a crash dump, shared by the architectures.
//!
//! Each architecture's exception handler decides what to print (its register
//! names, its syndrome and fault-address registers, its status register);
//! this module owns how the common parts look, so that every architecture's
//! dump reads the same: the header and footer, the syndrome and abort lines,
//! code addresses as `armature+offset`, register rows and the backtrace.
//!
//! Values are printed with a fixed number of hex digits per architecture
//! (16 on AArch64, 8 on ARMv7), passed as `digits`.

use super::backtrace::{self, StackBounds, Stop};
use super::esr::{self, Syndrome};
use core::fmt::{self, Write};

/// Where the image lies: [start, end). Code addresses inside it are printed
/// with their offset, which `addr2line` on the ELF (linked at 0) resolves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Image {
    /// First byte.
    pub start: u64,
    /// One past the last byte (including BSS).
    pub end: u64,
}

impl Image {
    /// The offset of `addr` in the image, if it is inside.
    pub fn offset(&self, addr: u64) -> Option<u64> {
        (addr >= self.start && addr < self.end).then(|| addr - self.start)
    }
}

/// The first line of every dump.
pub fn header(w: &mut impl Write, arch: &str) -> fmt::Result {
    writeln!(w, "\n----[ Armature {} {} crash on CPU{} ]----", crate::VERSION, arch, crate::cpu::this_cpu())
}

/// The line after the header: what happened.
pub fn cause(w: &mut impl Write, is_panic: bool, vector_name: &str) -> fmt::Result {
    if is_panic {
        writeln!(w, "Panic (see the message above); registers at the panic site:")
    } else {
        writeln!(w, "Unexpected exception: {vector_name}")
    }
}

/// The syndrome register (`label` is its name, e.g. `ESR_EL2` or `HSR`),
/// decoded, plus the kind of abort when it is one.
pub fn syndrome(w: &mut impl Write, label: &str, syn: &Syndrome, digits: usize) -> fmt::Result {
    writeln!(
        w,
        "{label}: {:#0width$x}  EC={:#04x} {} (IL={}, ISS={:#09x})",
        syn.raw,
        syn.ec,
        syn.class_name(),
        syn.il as u8,
        syn.iss,
        width = digits + 2
    )?;
    if syn.is_abort() {
        let fsc = syn.fault_status();
        let (kind, access) = if syn.is_data_abort() {
            ("data abort:", if syn.is_write() { "write" } else { "read" })
        } else {
            ("instruction abort:", "fetch")
        };
        write!(w, "  {kind} {access}, FSC={fsc:#04x} {}", esr::fault_status_name(fsc))?;
        if let Some(l) = esr::fault_level(fsc) {
            write!(w, " at level {l}")?;
        }
        writeln!(w)?;
    }
    Ok(())
}

/// `addr` as a fixed-width hex value, followed by ` (armature+offset)` when
/// it lies inside the image.
pub fn code_address(w: &mut impl Write, addr: u64, digits: usize, image: &Image) -> fmt::Result {
    write!(w, "{addr:#0width$x}", width = digits + 2)?;
    match image.offset(addr) {
        Some(off) => write!(w, " (armature+{off:#x})"),
        None => Ok(()),
    }
}

/// One `label: address (armature+offset)` line, for the return address.
pub fn code_address_line(
    w: &mut impl Write,
    label: &str,
    addr: u64,
    digits: usize,
    image: &Image,
) -> fmt::Result {
    write!(w, "{label}: ")?;
    code_address(w, addr, digits, image)?;
    writeln!(w)
}

/// General registers, `per_row` to a line: `names[i]` (at most three
/// characters) with `value(i)`. Each row is formatted first and written in
/// one go.
pub fn registers(
    w: &mut impl Write,
    names: &[&str],
    value: impl Fn(usize) -> u64,
    per_row: usize,
    digits: usize,
) -> fmt::Result {
    for row in names.chunks(per_row).enumerate() {
        let (r, row_names) = row;
        let mut line = Line::new();
        for (c, name) in row_names.iter().enumerate() {
            let _ = write!(line, "   {name:<3}: {:#0width$x}", value(r * per_row + c), width = digits + 2);
        }
        writeln!(w, "{}", line.as_str())?;
    }
    Ok(())
}

/// The backtrace: the faulting PC, then the return addresses found by
/// walking the frame-pointer chain from `fp` inside `stack` (`word` is the
/// pointer size, `read` loads one word). `elf` names the file to run
/// `addr2line` on.
#[allow(clippy::too_many_arguments)]
pub fn backtrace(
    w: &mut impl Write,
    elf: &str,
    image: &Image,
    pc: u64,
    fp: u64,
    stack: StackBounds,
    word: u64,
    read: impl Fn(u64) -> u64,
    digits: usize,
) -> fmt::Result {
    writeln!(w, "Backtrace (image at {:#x}; addr2line -e {elf} <offset>):", image.start)?;
    write!(w, "  [ 0] ")?;
    code_address(w, pc, digits, image)?;
    writeln!(w, " <- faulting PC")?;
    let mut n = 1;
    let mut result = Ok(());
    let stop = backtrace::walk(fp, stack, word, read, |ret| {
        if result.is_ok() {
            result = write!(w, "  [{n:2}] ")
                .and_then(|_| code_address(w, ret, digits, image))
                .and_then(|_| writeln!(w));
        }
        n += 1;
    });
    result?;
    if let Stop::BadFrame(fp) | Stop::Loop(fp) = stop {
        writeln!(w, "  (backtrace stopped at bad frame pointer {fp:#x})")?;
    }
    Ok(())
}

/// The last lines of every dump.
pub fn footer(w: &mut impl Write) -> fmt::Result {
    writeln!(w, "----[ end of crash dump ]----")?;
    writeln!(w, "System halted: all CPUs stopped (online mask {:#x}).", crate::cpu::online_mask())
}

/// A small fixed-size line buffer, so a register row is written in one go.
pub struct Line {
    buf: [u8; 128],
    len: usize,
}

impl Line {
    /// An empty line.
    pub fn new() -> Self {
        Self { buf: [0; 128], len: 0 }
    }

    /// What was written (truncated at 128 bytes).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::collections::BTreeMap;
    use std::string::String;

    const IMG: Image = Image { start: 0x4020_0000, end: 0x4024_0000 };

    // The AArch64 strings below are what the QEMU harness asserts on: they
    // must not change.
    #[test]
    fn aarch64_header_syndrome_and_elr() {
        let mut s = String::new();
        header(&mut s, "aarch64").unwrap();
        cause(&mut s, false, "Synchronous, current EL with SP_EL2").unwrap();
        syndrome(&mut s, "ESR_EL2", &Syndrome::new(0x9600_0010), 16).unwrap();
        code_address_line(&mut s, "ELR_EL2", 0x4020_1234, 16, &IMG).unwrap();
        code_address_line(&mut s, "ELR_EL2", 0x1234, 16, &IMG).unwrap();
        footer(&mut s).unwrap();
        let want = format!(
            "\n----[ Armature {} aarch64 crash on CPU0 ]----\n\
             Unexpected exception: Synchronous, current EL with SP_EL2\n\
             ESR_EL2: 0x0000000096000010  EC=0x25 Data Abort from the current EL (IL=1, ISS=0x0000010)\n\
             \x20 data abort: read, FSC=0x10 synchronous external abort\n\
             ELR_EL2: 0x0000000040201234 (armature+0x1234)\n\
             ELR_EL2: 0x0000000000001234\n\
             ----[ end of crash dump ]----\n\
             System halted: all CPUs stopped (online mask 0x1).\n",
            crate::VERSION
        );
        assert_eq!(s, want);
    }

    #[test]
    fn panic_cause_and_fault_level() {
        let mut s = String::new();
        cause(&mut s, true, "ignored").unwrap();
        syndrome(&mut s, "HSR", &Syndrome::new(0x9400_0046), 8).unwrap();
        assert_eq!(
            s,
            "Panic (see the message above); registers at the panic site:\n\
             HSR: 0x94000046  EC=0x25 Data Abort from the current EL (IL=0, ISS=0x0000046)\n\
             \x20 data abort: write, FSC=0x06 translation fault at level 2\n"
        );
    }

    #[test]
    fn register_rows() {
        let names = ["x0", "x1", "x2", "x3", "sp"];
        let mut s = String::new();
        registers(&mut s, &names, |i| i as u64 * 0x10, 3, 16).unwrap();
        assert_eq!(
            s,
            "   x0 : 0x0000000000000000   x1 : 0x0000000000000010   x2 : 0x0000000000000020\n\
             \x20  x3 : 0x0000000000000030   sp : 0x0000000000000040\n"
        );
        let mut s = String::new();
        registers(&mut s, &["r12", "sp", "lr"], |i| 0xabc + i as u64, 4, 8).unwrap();
        assert_eq!(s, "   r12: 0x00000abc   sp : 0x00000abd   lr : 0x00000abe\n");
    }

    #[test]
    fn backtrace_lines() {
        let stack = StackBounds { bottom: 0x1000, top: 0x2000 };
        let m: BTreeMap<u64, u64> =
            [(0x1100, 0x1180), (0x1104, 0x4020_0040), (0x1180, 0x1180), (0x1184, 0x77)].into_iter().collect();
        let mut s = String::new();
        backtrace(&mut s, "armature-armv7.elf", &IMG, 0x4020_0010, 0x1100, stack, 4, |a| m[&a], 8).unwrap();
        assert_eq!(
            s,
            "Backtrace (image at 0x40200000; addr2line -e armature-armv7.elf <offset>):\n\
             \x20 [ 0] 0x40200010 (armature+0x10) <- faulting PC\n\
             \x20 [ 1] 0x40200040 (armature+0x40)\n\
             \x20 [ 2] 0x00000077\n\
             \x20 (backtrace stopped at bad frame pointer 0x1180)\n"
        );
    }
}
