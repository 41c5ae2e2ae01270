//! Where the hypervisor image moves to: the top of RAM, below everything
//! that must never be overwritten.
//!
//! Pure logic, host-tested. The caller lists the regions to avoid: reserved
//! memory, boot modules, the DTB, the image's current location (the copy
//! must not overlap its source), and any physical range whose identity
//! mapping would collide with a virtual range in use during the switch.

use crate::dt::Region;
use core::fmt;

/// A chosen destination and why it was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Physical address the image goes to.
    pub dest: u64,
    /// Index of the memory bank it is in.
    pub bank: usize,
    /// The region that capped it from above, if something other than the
    /// bank's end did.
    pub below: Option<Region>,
}

/// No place for the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoRoom {
    /// Bytes needed.
    pub size: u64,
    /// Alignment needed.
    pub align: u64,
}

impl fmt::Display for NoRoom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no {:#x}-byte range aligned to {:#x} in RAM is free of reserved memory, modules, the DTB and the image",
            self.size, self.align
        )
    }
}

fn overlaps(a: u64, a_len: u64, r: &Region) -> bool {
    a < r.end() && r.base < a.saturating_add(a_len)
}

/// Chooses the highest `align`-aligned address where `size` bytes fit inside
/// one bank, below `pa_limit`, without touching any region of `avoid`.
pub fn choose(banks: &[Region], avoid: &[Region], size: u64, align: u64, pa_limit: u64) -> Result<Placement, NoRoom> {
    let no_room = NoRoom { size, align };
    if size == 0 || !align.is_power_of_two() {
        return Err(no_room);
    }
    let mut best: Option<Placement> = None;
    for (i, bank) in banks.iter().enumerate() {
        let top = bank.end().min(pa_limit);
        let mut below = None;
        let Some(mut cand) = top.checked_sub(size).map(|c| c & !(align - 1)) else { continue };
        // Move down below every region in the way, until a spot is clear.
        loop {
            if cand < bank.base {
                break;
            }
            match avoid.iter().filter(|r| overlaps(cand, size, r)).min_by_key(|r| r.base) {
                None => {
                    let p = Placement { dest: cand, bank: i, below };
                    if best.is_none_or(|b| p.dest > b.dest) {
                        best = Some(p);
                    }
                    break;
                }
                Some(r) => {
                    below = Some(*r);
                    match r.base.checked_sub(size) {
                        Some(c) => cand = c & !(align - 1),
                        None => break,
                    }
                }
            }
        }
    }
    best.ok_or(no_room)
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;

    const MIB: u64 = 1 << 20;
    fn r(base: u64, size: u64) -> Region {
        Region { base, size }
    }
    const QEMU_1G: Region = Region { base: 0x4000_0000, size: 1 << 30 };

    #[test]
    fn top_of_the_only_bank() {
        let p = choose(&[QEMU_1G], &[r(0x4020_0000, 0x53000), r(0x4800_0000, MIB)], 0x53000, 2 * MIB, 1 << 48).unwrap();
        assert_eq!(p, Placement { dest: 0x7fe0_0000, bank: 0, below: None });
    }

    #[test]
    fn below_reserved_memory_and_modules_at_the_top() {
        // U-Boot-style: the DTB at the top of RAM and a module right below it.
        let avoid = [r(0x7fe4_0000, 0x1c_0000), r(0x7d00_0000, 0x2c1_0000)];
        let p = choose(&[QEMU_1G], &avoid, 0x53000, 2 * MIB, 1 << 48).unwrap();
        assert_eq!(p.dest, 0x7ce0_0000);
        assert_eq!(p.below, Some(avoid[1]));
        assert!(!avoid.iter().any(|a| overlaps(p.dest, 0x53000, a)));
    }

    #[test]
    fn highest_bank_wins_and_the_pa_limit_is_respected() {
        let banks = [r(0x8000_0000, 2 << 30), r(0x8_8000_0000, 2 << 30)];
        let p = choose(&banks, &[], 4 * MIB, 2 * MIB, 1 << 48).unwrap();
        assert_eq!((p.dest, p.bank), (0x8_ffc0_0000, 1));
        assert_eq!(p.dest + 4 * MIB, 0x9_0000_0000);
        // A CPU with a 32-bit physical address range can only use the first bank.
        let p = choose(&banks, &[], 4 * MIB, 2 * MIB, 1 << 32).unwrap();
        assert_eq!((p.dest, p.bank), (0xffc0_0000, 0));
    }

    #[test]
    fn a_bank_full_of_reservations_is_skipped_and_no_room_is_an_error() {
        let banks = [r(0x4000_0000, 16 * MIB)];
        let avoid = [r(0x4000_0000, 16 * MIB)];
        let e = choose(&banks, &avoid, MIB, 2 * MIB, 1 << 48).unwrap_err();
        assert_eq!(e, NoRoom { size: MIB, align: 2 * MIB });
        assert!(std::format!("{e}").contains("no 0x100000-byte range"));
        assert!(choose(&banks, &[], 32 * MIB, 2 * MIB, 1 << 48).is_err());
    }

    #[test]
    fn every_choice_is_aligned_inside_its_bank_and_clear() {
        // Exhaustive over a grid of avoid positions: the result is always valid.
        for step in 0..64u64 {
            let hole = r(0x4000_0000 + step * 16 * MIB, 24 * MIB);
            let avoid = [hole, r(0x7000_0000, 0x100_0000)];
            if let Ok(p) = choose(&[QEMU_1G], &avoid, 3 * MIB, 2 * MIB, 1 << 48) {
                assert_eq!(p.dest % (2 * MIB), 0);
                assert!(p.dest >= QEMU_1G.base && p.dest + 3 * MIB <= QEMU_1G.end());
                assert!(!avoid.iter().any(|a| overlaps(p.dest, 3 * MIB, a)), "{p:?} {hole:?}");
            }
        }
    }
}
