//! List registers: the abstract [`Lr`], its GICv2 (`GICH_LR<n>`) and GICv3
//! (`ICH_LR<n>_EL2`) encodings, and the choice of which interrupts go into
//! the list registers on a vCPU entry.
//!
//! The choice ([`Selection`]) keeps the best `n` of all the interrupts that
//! want a list register, best first: active ones (they must be listed, or
//! the guest's deactivation would be lost), then pending ones, each by
//! priority (lower value first), ties by INTID. What did not fit is counted;
//! [`maintenance`] then asks for the maintenance interrupt that makes the
//! arch code come back and refill, so every pending interrupt is delivered
//! eventually however few list registers the hardware has.

use core::cmp::Ordering;

/// Most list registers used per vCPU (GICv2's `GICH_VTR.ListRegs` allows
/// 64, GICv3's `ICH_VTR_EL2.ListRegs` 16); more are left empty.
pub const MAX_LRS: usize = 64;

/// The state of an interrupt in a list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LrState {
    /// Empty (0b00): the guest has deactivated it, or it was never used.
    #[default]
    Invalid,
    /// Pending (0b01): not yet acknowledged by the guest.
    Pending,
    /// Active (0b10): acknowledged, not yet deactivated.
    Active,
    /// Pending and active (0b11): active, and pending again.
    PendingActive,
}

impl LrState {
    /// The state from its pending and active parts.
    pub fn new(pending: bool, active: bool) -> Self {
        match (pending, active) {
            (false, false) => LrState::Invalid,
            (true, false) => LrState::Pending,
            (false, true) => LrState::Active,
            (true, true) => LrState::PendingActive,
        }
    }

    /// The two-bit field value (the same in GICv2 and GICv3).
    pub fn bits(self) -> u32 {
        match self {
            LrState::Invalid => 0,
            LrState::Pending => 1,
            LrState::Active => 2,
            LrState::PendingActive => 3,
        }
    }

    /// The state of a two-bit field value (higher bits ignored).
    pub fn from_bits(bits: u32) -> Self {
        LrState::new(bits & 1 != 0, bits & 2 != 0)
    }

    /// Whether the pending part is set.
    pub fn pending(self) -> bool {
        matches!(self, LrState::Pending | LrState::PendingActive)
    }

    /// Whether the active part is set.
    pub fn active(self) -> bool {
        matches!(self, LrState::Active | LrState::PendingActive)
    }
}

/// Whether a listed interrupt is purely virtual or backed by a physical one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrKind {
    /// Purely virtual (HW = 0).
    Software {
        /// GICv2 SGIs: the sending vCPU (`CPUID`, bits 12:10); 0 otherwise.
        /// GICv3 list registers have no such field and ignore it.
        source: u8,
        /// Request an EOI maintenance interrupt when the guest deactivates it.
        eoi: bool,
    },
    /// Hardware interrupt (HW = 1): the guest's deactivation also
    /// deactivates physical interrupt `pintid` in the physical GIC.
    Hardware {
        /// Physical INTID.
        pintid: u32,
    },
}

/// One list register, independent of the GIC version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lr {
    /// Virtual INTID the guest sees.
    pub vintid: u32,
    /// State.
    pub state: LrState,
    /// Priority, 8-bit form (GICv2 list registers keep its top 5 bits).
    pub priority: u8,
    /// Group 1 (else Group 0).
    pub group1: bool,
    /// Virtual or hardware.
    pub kind: LrKind,
}

// GICH_LR<n> (GICv2): HW 31, Grp1 30, State 29:28, Priority 27:23 (top 5
// bits), PhysicalID 19:10 if HW, else EOI 19 and CPUID 12:10; VirtualID 9:0.
const V2_HW: u32 = 1 << 31;
const V2_GRP1: u32 = 1 << 30;
const V2_STATE_SHIFT: u32 = 28;
const V2_PRIO_SHIFT: u32 = 23;
const V2_EOI: u32 = 1 << 19;
const V2_PHYS_SHIFT: u32 = 10;
const V2_ID_MASK: u32 = 0x3ff;

// ICH_LR<n>_EL2 (GICv3): State 63:62, HW 61, Group 60, Priority 55:48,
// pINTID 44:32 if HW, else EOI 41; vINTID 31:0.
const V3_STATE_SHIFT: u32 = 62;
const V3_HW: u64 = 1 << 61;
const V3_GROUP: u64 = 1 << 60;
const V3_PRIO_SHIFT: u32 = 48;
const V3_EOI: u64 = 1 << 41;
const V3_PHYS_SHIFT: u32 = 32;
const V3_PHYS_MASK: u64 = 0x1fff;

impl Lr {
    /// An empty list register.
    pub const INVALID: Lr = Lr {
        vintid: 0,
        state: LrState::Invalid,
        priority: 0,
        group1: false,
        kind: LrKind::Software { source: 0, eoi: false },
    };

    /// The `GICH_LR<n>` value. Fields are truncated to their width: IDs to
    /// 10 bits, the source to 3, the priority to its top 5 bits.
    pub fn encode_v2(&self) -> u32 {
        let mut v = self.vintid & V2_ID_MASK;
        v |= self.state.bits() << V2_STATE_SHIFT;
        v |= u32::from(self.priority >> 3) << V2_PRIO_SHIFT;
        if self.group1 {
            v |= V2_GRP1;
        }
        match self.kind {
            LrKind::Hardware { pintid } => v |= V2_HW | (pintid & V2_ID_MASK) << V2_PHYS_SHIFT,
            LrKind::Software { source, eoi } => {
                v |= u32::from(source & 7) << V2_PHYS_SHIFT;
                if eoi {
                    v |= V2_EOI;
                }
            }
        }
        v
    }

    /// Decodes a `GICH_LR<n>` value.
    pub fn decode_v2(v: u32) -> Lr {
        let kind = if v & V2_HW != 0 {
            LrKind::Hardware { pintid: (v >> V2_PHYS_SHIFT) & V2_ID_MASK }
        } else {
            LrKind::Software { source: ((v >> V2_PHYS_SHIFT) & 7) as u8, eoi: v & V2_EOI != 0 }
        };
        Lr {
            vintid: v & V2_ID_MASK,
            state: LrState::from_bits(v >> V2_STATE_SHIFT),
            priority: (((v >> V2_PRIO_SHIFT) & 0x1f) << 3) as u8,
            group1: v & V2_GRP1 != 0,
            kind,
        }
    }

    /// The `ICH_LR<n>_EL2` value (AArch32: `ICH_LRC<n>` is the high word,
    /// `ICH_LR<n>` the low one). The pINTID is truncated to 13 bits; the
    /// source of a software interrupt is not encoded.
    pub fn encode_v3(&self) -> u64 {
        let mut v = u64::from(self.vintid);
        v |= u64::from(self.state.bits()) << V3_STATE_SHIFT;
        v |= u64::from(self.priority) << V3_PRIO_SHIFT;
        if self.group1 {
            v |= V3_GROUP;
        }
        match self.kind {
            LrKind::Hardware { pintid } => v |= V3_HW | (u64::from(pintid) & V3_PHYS_MASK) << V3_PHYS_SHIFT,
            LrKind::Software { eoi, .. } => {
                if eoi {
                    v |= V3_EOI;
                }
            }
        }
        v
    }

    /// Decodes an `ICH_LR<n>_EL2` value (the source reads as 0).
    pub fn decode_v3(v: u64) -> Lr {
        let kind = if v & V3_HW != 0 {
            LrKind::Hardware { pintid: ((v >> V3_PHYS_SHIFT) & V3_PHYS_MASK) as u32 }
        } else {
            LrKind::Software { source: 0, eoi: v & V3_EOI != 0 }
        };
        Lr {
            vintid: v as u32,
            state: LrState::from_bits((v >> V3_STATE_SHIFT) as u32),
            priority: (v >> V3_PRIO_SHIFT) as u8,
            group1: v & V3_GROUP != 0,
            kind,
        }
    }

    /// Whether this is a hardware interrupt.
    pub fn is_hw(&self) -> bool {
        matches!(self.kind, LrKind::Hardware { .. })
    }

    /// Sets the EOI-maintenance request; ignored for hardware interrupts,
    /// whose list registers have no such bit.
    pub(crate) fn request_eoi(&mut self) {
        if let LrKind::Software { eoi, .. } = &mut self.kind {
            *eoi = true;
        }
    }
}

/// Which maintenance interrupts the arch code must enable for this entry
/// (bits of `GICH_HCR` / `ICH_HCR_EL2`; per-LR EOI requests are in the
/// list registers themselves).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Maintenance {
    /// Underflow (`UIE`): when at most one list register is valid.
    pub underflow: bool,
    /// No pending (`NPIE`): when no list register is pending.
    pub no_pending: bool,
}

impl Maintenance {
    /// `UIE` (bit 1) and `NPIE` (bit 3), the same in `GICH_HCR` and
    /// `ICH_HCR_EL2`; the caller adds `En` (bit 0).
    pub fn hcr_bits(&self) -> u32 {
        (u32::from(self.underflow) << 1) | (u32::from(self.no_pending) << 3)
    }

    /// Whether any maintenance interrupt is requested.
    pub fn any(&self) -> bool {
        self.underflow || self.no_pending
    }
}

/// The order of interrupts competing for list registers: smaller first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SortKey {
    /// 0 if active (listing it is mandatory), 1 if only pending.
    pub class: u8,
    /// Priority (lower value is higher priority).
    pub priority: u8,
    /// INTID, the tie break.
    pub intid: u32,
}

impl SortKey {
    /// The key of an interrupt with this state and priority.
    pub fn new(active: bool, priority: u8, intid: u32) -> Self {
        SortKey { class: u8::from(!active), priority, intid }
    }
}

/// The best `capacity` of the candidates offered, kept sorted, without
/// allocating; the rest are counted in `overflow`.
#[derive(Debug)]
pub struct Selection {
    keys: [SortKey; MAX_LRS],
    len: usize,
    capacity: usize,
    overflow: usize,
}

impl Selection {
    /// An empty selection for `capacity` list registers (at most [`MAX_LRS`]).
    pub fn new(capacity: usize) -> Self {
        Selection {
            keys: [SortKey { class: 0, priority: 0, intid: 0 }; MAX_LRS],
            len: 0,
            capacity: capacity.min(MAX_LRS),
            overflow: 0,
        }
    }

    /// Offers one candidate; keeps it if it is among the best so far.
    pub fn offer(&mut self, key: SortKey) {
        if self.capacity == 0 {
            self.overflow += 1;
            return;
        }
        if self.len == self.capacity {
            if key.cmp(&self.keys[self.len - 1]) != Ordering::Less {
                self.overflow += 1;
                return;
            }
            self.len -= 1; // the worst one drops out
            self.overflow += 1;
        }
        let at = self.keys[..self.len].partition_point(|k| *k < key);
        self.keys.copy_within(at..self.len, at + 1);
        self.keys[at] = key;
        self.len += 1;
    }

    /// The chosen candidates, best first.
    pub fn chosen(&self) -> &[SortKey] {
        &self.keys[..self.len]
    }

    /// How many candidates did not fit.
    pub fn overflow(&self) -> usize {
        self.overflow
    }
}

/// The maintenance requests for an entry with the list registers `lrs`
/// (those used, of `capacity`), when `overflow` interrupts did not fit.
///
/// - Something listed is pending: ask for "no pending" (NPIE). It fires
///   once the guest has acknowledged all of them, and the refill lists the
///   next ones. (Only the pure Pending state counts: a pending+active entry
///   may not count as pending for NPIE, which would fire at once.)
/// - Nothing listed is pending (the list registers are full of active
///   interrupts): ask for underflow (UIE), which fires once the guest has
///   deactivated all but one of them. With a single list register UIE would
///   fire at once, so instead its EOI maintenance is requested (a hardware
///   interrupt cannot have one; then the refill waits for the next exit).
pub fn maintenance(lrs: &mut [Lr], overflow: usize, capacity: usize) -> Maintenance {
    let mut m = Maintenance::default();
    if overflow == 0 {
        return m;
    }
    if lrs.iter().any(|l| l.state == LrState::Pending) {
        m.no_pending = true;
    } else if capacity >= 2 {
        m.underflow = true;
    } else if let Some(l) = lrs.first_mut() {
        l.request_eoi();
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sw(vintid: u32, state: LrState, priority: u8, group1: bool, source: u8, eoi: bool) -> Lr {
        Lr { vintid, state, priority, group1, kind: LrKind::Software { source, eoi } }
    }

    #[test]
    fn v2_encoding_matches_hand_computed_values() {
        // SPI 42, pending, priority 0xa0 (0xa0 >> 3 = 0x14), group 1:
        // 0x4000_0000 | 1 << 28 | 0x14 << 23 | 42 = 0x5a00_002a.
        assert_eq!(sw(42, LrState::Pending, 0xa0, true, 0, false).encode_v2(), 0x5a00_002a);
        // SGI 3 from vCPU 5, active, priority 0, group 0, EOI maintenance:
        // 2 << 28 | 1 << 19 | 5 << 10 | 3 = 0x2008_1403.
        assert_eq!(sw(3, LrState::Active, 0, false, 5, true).encode_v2(), 0x2008_1403);
        // Hardware SPI 40 -> physical 72, pending+active, priority 0xf8:
        // 1 << 31 | 3 << 28 | 0x1f << 23 | 72 << 10 | 40 = 0xbf81_2028.
        let hw = Lr {
            vintid: 40,
            state: LrState::PendingActive,
            priority: 0xf8,
            group1: false,
            kind: LrKind::Hardware { pintid: 72 },
        };
        assert_eq!(hw.encode_v2(), 0xbf81_2028);
        // The low three priority bits do not exist in GICH_LR.
        assert_eq!(sw(42, LrState::Pending, 0xa7, true, 0, false).encode_v2(), 0x5a00_002a);
    }

    #[test]
    fn v3_encoding_matches_hand_computed_values() {
        // SPI 42, pending, priority 0xa0, group 1:
        // 1 << 62 | 1 << 60 | 0xa0 << 48 | 42 = 0x50a0_0000_0000_002a.
        assert_eq!(sw(42, LrState::Pending, 0xa0, true, 0, false).encode_v3(), 0x50a0_0000_0000_002a);
        // SGI 1, active, priority 0x80, group 1, EOI maintenance (source ignored):
        // 2 << 62 | 1 << 60 | 0x80 << 48 | 1 << 41 | 1 = 0x9080_0200_0000_0001.
        assert_eq!(sw(1, LrState::Active, 0x80, true, 3, true).encode_v3(), 0x9080_0200_0000_0001);
        // Hardware PPI 27 -> physical 27, pending, priority 0xa8, group 1:
        // 1 << 62 | 1 << 61 | 1 << 60 | 0xa8 << 48 | 27 << 32 | 27 = 0x70a8_001b_0000_001b.
        let hw = Lr {
            vintid: 27,
            state: LrState::Pending,
            priority: 0xa8,
            group1: true,
            kind: LrKind::Hardware { pintid: 27 },
        };
        assert_eq!(hw.encode_v3(), 0x70a8_001b_0000_001b);
        // pending+active = 0b11 in bits 63:62.
        assert_eq!(sw(5, LrState::PendingActive, 0, false, 0, false).encode_v3(), 0xc000_0000_0000_0005);
    }

    #[test]
    fn decoding_inverts_encoding() {
        let cases = [
            sw(42, LrState::Pending, 0xa0, true, 0, false),
            sw(3, LrState::Active, 0x08, false, 7, true),
            sw(1019, LrState::PendingActive, 0xf8, true, 2, false),
            Lr {
                vintid: 33,
                state: LrState::Active,
                priority: 0x10,
                group1: true,
                kind: LrKind::Hardware { pintid: 1000 },
            },
        ];
        for lr in cases {
            assert_eq!(Lr::decode_v2(lr.encode_v2()), lr, "{lr:?}");
            let v3 = Lr::decode_v3(lr.encode_v3());
            let expected = match lr.kind {
                LrKind::Software { eoi, .. } => Lr { kind: LrKind::Software { source: 0, eoi }, ..lr },
                LrKind::Hardware { .. } => lr,
            };
            assert_eq!(v3, expected, "{lr:?}");
        }
        // What the guest leaves behind: an LR it has deactivated.
        assert_eq!(Lr::decode_v2(0x0a00_002a).state, LrState::Invalid);
        assert_eq!(Lr::decode_v3(0x10a0_0000_0000_002a).state, LrState::Invalid);
    }

    #[test]
    fn hardware_lrs_have_no_eoi_bit() {
        let mut hw = Lr {
            vintid: 40,
            state: LrState::Active,
            priority: 0,
            group1: false,
            kind: LrKind::Hardware { pintid: 40 },
        };
        hw.request_eoi();
        assert_eq!(hw.kind, LrKind::Hardware { pintid: 40 });
        assert_eq!(hw.encode_v3() & V3_EOI, 0);
    }

    #[test]
    fn selection_orders_active_then_priority_then_intid() {
        let mut s = Selection::new(4);
        s.offer(SortKey::new(false, 0x80, 40));
        s.offer(SortKey::new(false, 0x40, 50));
        s.offer(SortKey::new(true, 0xf0, 60)); // active beats any pending
        s.offer(SortKey::new(false, 0x40, 45)); // same priority: lower INTID first
        s.offer(SortKey::new(false, 0x90, 33)); // worst: does not fit
        s.offer(SortKey::new(false, 0x80, 35)); // evicts 40
        let ids: alloc::vec::Vec<u32> = s.chosen().iter().map(|k| k.intid).collect();
        assert_eq!(ids, [60, 45, 50, 35]);
        assert_eq!(s.overflow(), 2);
    }

    #[test]
    fn selection_with_no_list_registers_counts_everything_as_overflow() {
        let mut s = Selection::new(0);
        s.offer(SortKey::new(false, 0, 32));
        assert!(s.chosen().is_empty());
        assert_eq!(s.overflow(), 1);
    }

    #[test]
    fn maintenance_choice() {
        let p = sw(32, LrState::Pending, 0, true, 0, false);
        let a = sw(33, LrState::Active, 0, true, 0, false);
        let pa = sw(34, LrState::PendingActive, 0, true, 0, false);
        // Nothing left over: nothing requested.
        assert_eq!(maintenance(&mut [p, a], 0, 2), Maintenance::default());
        // Something pending listed: NPIE.
        let m = maintenance(&mut [a, p], 3, 2);
        assert!(m.no_pending && !m.underflow);
        assert_eq!(m.hcr_bits(), 1 << 3);
        // Only active (or pending+active): UIE.
        let m = maintenance(&mut [a, pa], 1, 2);
        assert!(m.underflow && !m.no_pending);
        assert_eq!(m.hcr_bits(), 1 << 1);
        // A single LR holding an active interrupt: its EOI maintenance instead.
        let mut one = [a];
        assert_eq!(maintenance(&mut one, 1, 1), Maintenance::default());
        assert_eq!(one[0].kind, LrKind::Software { source: 0, eoi: true });
    }
}
