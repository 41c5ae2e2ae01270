//! Fuzz target: the vGIC model (`src/vgic/`), driven by sequences of guest
//! register accesses and hypervisor calls.
//!
//! A configuration (GICv2 with 1-8 vCPUs or GICv3 with 1-17, lines,
//! priority bits), then up to
//! 64 operations: raw reads and writes (any frame, vCPU, offset, width,
//! value), targeted register writes (enable, pending, active, group,
//! priority, trigger, `GICD_CTLR`), `raise`, `set_level`, `link_hw`, GICv3
//! SGIs, and vCPU runs (flush, what the guest does with each list register,
//! fold). Invariants, checked after each operation on the INTIDs it touched
//! and at the end on all of them:
//! - nothing panics; bad vCPUs and INTIDs are errors, not crashes;
//! - the registers and the model agree: `ISENABLER`/`ICENABLER`,
//!   `ISPENDR`/`ICPENDR`, `ISACTIVER`/`ICACTIVER`, `IGROUPR`, `ICFGR` and
//!   `IPRIORITYR` read what [`Vgic::snapshot`] says, set and clear views
//!   equal;
//! - a priority written reads back with the unimplemented low bits clear;
//!   an enable set or cleared reads back so;
//! - INTIDs past the implemented ones (up to 1023) read as zero and ignore
//!   writes;
//! - flush: at most as many list registers as given, the rest invalid, each
//!   used one a distinct implemented INTID listed on that vCPU, a pending-
//!   only one enabled; GICv2/GICv3 encodings decode back to the same `Lr`;
//!   with no overflow, `signalled` agrees with `has_pending`;
//! - fold: nothing stays listed on the vCPU; a flush followed by a fold of
//!   untouched list registers changes no interrupt's visible state.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use armature::vgic::{
    Frame, GICR_STRIDE, GicVersion, IrqSnapshot, Lr, LrState, MAX_LRS, Vgic, VgicConfig, VgicError, Virq,
};
use libfuzzer_sys::fuzz_target;

const SGI_BASE: u64 = 0x1_0000;
const GROUP: u64 = 0x080;
const ISENABLER: u64 = 0x100;
const ICENABLER: u64 = 0x180;
const ISPENDR: u64 = 0x200;
const ICPENDR: u64 = 0x280;
const ISACTIVER: u64 = 0x300;
const ICACTIVER: u64 = 0x380;
const IPRIORITYR: u64 = 0x400;
const ICFGR: u64 = 0xc00;
const CTLR: u64 = 0;

#[derive(Arbitrary, Debug)]
enum Op {
    Read {
        redist: bool,
        vcpu: u8,
        offset: u32,
        size: u8,
    },
    Write {
        redist: bool,
        vcpu: u8,
        offset: u32,
        size: u8,
        value: u64,
    },
    /// Writes 1 to the INTID's bit of IGROUPR (value 0/1 from `set`),
    /// IS/ICENABLER, IS/ICPENDR, IS/ICACTIVER (`reg` % 7).
    Bit {
        reg: u8,
        vcpu: u8,
        intid: u16,
        set: bool,
    },
    Priority {
        vcpu: u8,
        intid: u16,
        priority: u8,
    },
    Trigger {
        vcpu: u8,
        intid: u16,
        edge: bool,
    },
    Ctlr {
        value: u8,
    },
    Raise {
        vcpu: u8,
        intid: u16,
    },
    Level {
        vcpu: u8,
        intid: u16,
        level: bool,
    },
    Link {
        vcpu: u8,
        intid: u16,
        pintid: Option<u16>,
    },
    Sgi {
        sender: u8,
        value: u64,
        group1: bool,
    },
    /// Flush `lrs` list registers, let the guest act on each (0 nothing,
    /// 1 acknowledge, 2 EOI/deactivate, 3 both), fold.
    Run {
        vcpu: u8,
        lrs: u8,
        threshold: u8,
        guest: Vec<u8>,
    },
    /// Flush then fold with nothing done: no visible change.
    Idle {
        vcpu: u8,
        lrs: u8,
        threshold: u8,
    },
}

struct Fx {
    vgic: Vgic,
    cfg: VgicConfig,
}

impl Fx {
    fn v3(&self) -> bool {
        self.cfg.version == GicVersion::V3
    }

    fn implemented(&self, intid: u32) -> bool {
        intid < 32 || intid < self.cfg.spi_end()
    }

    fn virq(&self, vcpu: usize, intid: u32) -> Virq {
        if intid < 32 { Virq::Private { vcpu, intid } } else { Virq::Spi(intid) }
    }

    /// Frame and offset of the register at `base` (a GICD offset) holding
    /// `intid`, for vCPU `vcpu`, with `per` INTIDs per 32-bit word.
    fn locate(&self, vcpu: usize, intid: u32, base: u64, per: u32) -> (Frame, u64) {
        let word = u64::from(intid / per) * 4;
        if self.v3() && intid < 32 {
            (Frame::Redistributors, vcpu as u64 * GICR_STRIDE + SGI_BASE + base + word)
        } else {
            (Frame::Distributor, base + word)
        }
    }

    fn read_field(&self, vcpu: usize, intid: u32, base: u64, per: u32) -> u32 {
        let (frame, off) = self.locate(vcpu, intid, base, per);
        let v = self
            .vgic
            .read(frame, vcpu, off, 4)
            .unwrap_or_else(|e| panic!("reading {frame} {off:#x} for INTID {intid}: {e}"));
        let bits = 32 / per;
        ((v >> ((intid % per) * bits)) & ((1 << bits) - 1)) as u32
    }

    fn write_field(&self, vcpu: usize, intid: u32, base: u64, per: u32, field: u32) {
        let (frame, off) = self.locate(vcpu, intid, base, per);
        let bits = 32 / per;
        let value = u64::from(field) << ((intid % per) * bits);
        // A read-modify-write for registers that are not write-1-to-act.
        let value = if per == 32 && base != GROUP {
            value
        } else {
            let old = self.vgic.read(frame, vcpu, off, 4).unwrap_or(0);
            let mask = ((1u64 << bits) - 1) << ((intid % per) * bits);
            (old & !mask) | value
        };
        // Errors are allowed here (e.g. a reserved ICFGR value for an SGI).
        let _ = self.vgic.write(frame, vcpu, off, 4, value);
    }

    /// The registers' view of one interrupt must be the model's: checks
    /// the 32 INTIDs of its register word (reading each register once).
    fn check(&self, vcpu: usize, intid: u32) {
        let first = intid & !31;
        let word = |base: u64, per: u32, i: u32| {
            let (frame, off) = self.locate(vcpu, i, base, per);
            self.vgic
                .read(frame, vcpu, off, 4)
                .unwrap_or_else(|e| panic!("reading {frame} {off:#x} for INTID {i}: {e}"))
        };
        let bits: Vec<u64> =
            [ISENABLER, ICENABLER, ISPENDR, ICPENDR, ISACTIVER, ICACTIVER, GROUP].map(|b| word(b, 32, first)).to_vec();
        assert_eq!(
            (bits[0], bits[2], bits[4]),
            (bits[1], bits[3], bits[5]),
            "INTIDs {first}+ vCPU {vcpu}: set and clear registers disagree"
        );
        let cfgs = [word(ICFGR, 16, first), word(ICFGR, 16, first + 16)];
        // IPRIORITYR255 (INTIDs 1020-1023, special) is reserved.
        let prios: Vec<u64> =
            (0..8).map(|k| if first + 4 * k < 1020 { word(IPRIORITYR, 4, first + 4 * k) } else { 0 }).collect();
        for i in first..first + 32 {
            let b = |r: usize| (bits[r] >> (i % 32)) & 1 == 1;
            let (se, sp, sa, group) = (b(0), b(2), b(4), b(6));
            let prio = (prios[(i % 32 / 4) as usize] >> (i % 4 * 8)) as u8;
            let cfg = (cfgs[(i % 32 / 16) as usize] >> (i % 16 * 2)) & 3;
            if !self.implemented(i) {
                assert!(!(se || sp || sa || group) && prio == 0 && cfg == 0, "unimplemented INTID {i} reads non-zero");
                assert!(matches!(self.snapshot(vcpu, i), Err(VgicError::NoSuchIrq(_))));
                continue;
            }
            let s = self.snapshot(vcpu, i).expect("snapshot of an implemented INTID");
            assert_eq!(se, s.enabled, "INTID {i} vCPU {vcpu}: ISENABLER vs model {s:?}");
            assert_eq!(sp, s.pending, "INTID {i} vCPU {vcpu}: ISPENDR vs model {s:?}");
            assert_eq!(sa, s.active, "INTID {i} vCPU {vcpu}: ISACTIVER vs model {s:?}");
            assert_eq!(prio, s.priority, "INTID {i} vCPU {vcpu}: IPRIORITYR vs model {s:?}");
            assert_eq!(prio & !self.cfg.priority_mask(), 0, "INTID {i}: unimplemented priority bits set");
            assert_eq!(group, s.group1, "INTID {i} vCPU {vcpu}: IGROUPR vs model {s:?}");
            assert_eq!(cfg & 2 != 0, s.edge, "INTID {i} vCPU {vcpu}: ICFGR vs model {s:?}");
            if i < 16 {
                assert!(s.edge, "SGI {i} level-sensitive");
            }
            if let Some(v) = s.listed_on {
                assert!(v < self.cfg.vcpus);
            }
        }
    }

    fn snapshot(&self, vcpu: usize, intid: u32) -> Result<IrqSnapshot, VgicError> {
        self.vgic.snapshot(self.virq(vcpu, intid))
    }

    fn check_all(&self) {
        for v in 0..self.cfg.vcpus {
            self.check(v, 0);
        }
        for intid in (32..1024u32.min(self.cfg.spi_end() + 32)).step_by(32) {
            self.check(0, intid);
        }
    }

    fn all_snapshots(&self) -> Vec<Option<IrqSnapshot>> {
        let mut out = Vec::new();
        for v in 0..self.cfg.vcpus {
            out.extend((0..32).map(|i| self.snapshot(v, i).ok()));
        }
        out.extend((32..self.cfg.spi_end()).map(|i| self.snapshot(0, i).ok()));
        out
    }

    /// Flushes `n` list registers of `vcpu` and checks them.
    fn flush(&self, vcpu: usize, n: usize, threshold: u8) -> Vec<Lr> {
        let wake = self.vgic.has_pending(vcpu, threshold).expect("has_pending");
        let mut lrs = vec![Lr::INVALID; n];
        let info = self.vgic.flush(vcpu, &mut lrs, threshold).expect("flush of a valid vCPU");
        assert!(info.used <= n.min(MAX_LRS), "{} list registers used of {n}", info.used);
        assert!(lrs[info.used..].iter().all(|l| *l == Lr::INVALID), "unused list registers not invalid");
        for (i, l) in lrs[..info.used].iter().enumerate() {
            assert!(self.implemented(l.vintid), "listed unimplemented INTID {}", l.vintid);
            assert_ne!(l.state, LrState::Invalid, "a used list register is invalid");
            assert!(lrs[..i].iter().all(|o| o.vintid != l.vintid), "INTID {} listed twice", l.vintid);
            let s = self.snapshot(vcpu, l.vintid).expect("listed INTID exists");
            assert_eq!(s.listed_on, Some(vcpu), "INTID {} in vCPU {vcpu}'s LRs but model says {s:?}", l.vintid);
            assert_eq!(l.priority, s.priority, "INTID {}: LR priority", l.vintid);
            if l.state == LrState::Pending {
                assert!(s.enabled, "INTID {}: disabled interrupt listed pending", l.vintid);
            }
            let back = if self.v3() { Lr::decode_v3(l.encode_v3()) } else { Lr::decode_v2(l.encode_v2()) };
            assert_eq!(back, *l, "list register encoding does not round-trip");
        }
        if info.overflow == 0 && n >= MAX_LRS {
            assert_eq!(info.signalled, wake, "flush signalled {} but has_pending {wake}", info.signalled);
        }
        lrs.truncate(info.used);
        lrs
    }

    fn fold(&self, vcpu: usize, lrs: &[Lr]) {
        let _ = self.vgic.fold(vcpu, lrs).expect("fold of a valid vCPU");
        for l in lrs {
            let s = self.snapshot(vcpu, l.vintid).expect("listed INTID exists");
            assert_ne!(s.listed_on, Some(vcpu), "INTID {} still listed after fold", l.vintid);
        }
    }
}

fn config(u: &mut Unstructured<'_>) -> arbitrary::Result<VgicConfig> {
    let v3 = u.arbitrary::<bool>()?;
    let version = if v3 { GicVersion::V3 } else { GicVersion::V2 };
    // GICv3: up to 17 vCPUs, so that SGI target lists cross into Aff1 = 1.
    let vcpus = 1 + usize::from(u.arbitrary::<u8>()?) % if v3 { 17 } else { 8 };
    // Mostly small (every check walks every INTID); sometimes all 1020.
    let b = u.arbitrary::<u8>()?;
    let lines = if b >= 0xf8 { 1024 } else { 32 * (1 + u32::from(b % 8)) };
    let priority_bits = if v3 { 4 + u.arbitrary::<u8>()? % 5 } else { 4 + u.arbitrary::<u8>()? % 2 };
    Ok(VgicConfig { version, vcpus, lines, priority_bits })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(cfg) = config(&mut u) else { return };
    let vgic = Vgic::new(cfg).expect("a valid configuration");
    let fx = Fx { vgic, cfg };
    let Ok(ops) = u.arbitrary_iter::<Op>() else { return };
    let nv = cfg.vcpus;
    for op in ops.take(64) {
        let Ok(op) = op else { break };
        let pick = |v: u8| usize::from(v) % nv;
        let id = |i: u16| u32::from(i) % 1024;
        match op {
            Op::Read { redist, vcpu, offset, size } => {
                let frame = if redist { Frame::Redistributors } else { Frame::Distributor };
                let r = fx.vgic.read(frame, usize::from(vcpu), u64::from(offset), usize::from(size % 9));
                if usize::from(vcpu) >= nv {
                    assert!(matches!(r, Err(VgicError::NoSuchVcpu(_))), "read by a missing vCPU");
                }
                if let Err(e) = r {
                    let _ = e.to_string();
                }
            }
            Op::Write { redist, vcpu, offset, size, value } => {
                let frame = if redist { Frame::Redistributors } else { Frame::Distributor };
                let before = fx.all_snapshots();
                let r = fx.vgic.write(frame, usize::from(vcpu), u64::from(offset), usize::from(size % 9), value);
                match r {
                    Ok(out) => assert!(out.kick.0 >> nv == 0 || nv == 64, "kick of a missing vCPU"),
                    Err(e) => {
                        let _ = e.to_string();
                        assert_eq!(before, fx.all_snapshots(), "a refused write ({e}) changed state");
                    }
                }
            }
            Op::Bit { reg, vcpu, intid, set } => {
                let (v, i) = (pick(vcpu), id(intid));
                let base = [GROUP, ISENABLER, ICENABLER, ISPENDR, ICPENDR, ISACTIVER, ICACTIVER][usize::from(reg % 7)];
                fx.write_field(v, i, base, 32, if base == GROUP { u32::from(set) } else { 1 });
                if fx.implemented(i) && (base == ISENABLER || base == ICENABLER) {
                    let s = fx.snapshot(v, i).unwrap();
                    assert_eq!(s.enabled, base == ISENABLER, "INTID {i}: enable write did not read back");
                }
                fx.check(v, i);
            }
            Op::Priority { vcpu, intid, priority } => {
                let (v, i) = (pick(vcpu), id(intid));
                fx.write_field(v, i, IPRIORITYR, 4, u32::from(priority));
                if fx.implemented(i) {
                    let got = fx.read_field(v, i, IPRIORITYR, 4) as u8;
                    assert_eq!(got, priority & cfg.priority_mask(), "INTID {i}: priority {priority:#x} read back");
                }
                fx.check(v, i);
            }
            Op::Trigger { vcpu, intid, edge } => {
                let (v, i) = (pick(vcpu), id(intid));
                fx.write_field(v, i, ICFGR, 16, if edge { 2 } else { 0 });
                fx.check(v, i);
            }
            Op::Ctlr { value } => {
                let _ = fx.vgic.write(Frame::Distributor, 0, CTLR, 4, u64::from(value));
            }
            Op::Raise { vcpu, intid } => {
                let (v, i) = (usize::from(vcpu), id(intid));
                match fx.vgic.raise(fx.virq(v, i)) {
                    Ok(_) => {
                        let s = fx.snapshot(v, i).expect("raised INTID exists");
                        assert!(s.pending, "INTID {i} not pending after raise: {s:?}");
                        fx.check(v % nv, i);
                    }
                    Err(e) => assert!(v >= nv || !fx.implemented(i), "raise of INTID {i} vCPU {v} refused: {e}"),
                }
            }
            Op::Level { vcpu, intid, level } => {
                let (v, i) = (usize::from(vcpu), id(intid));
                if fx.vgic.set_level(fx.virq(v, i), level).is_ok() {
                    let s = fx.snapshot(v, i).unwrap();
                    if level && !s.edge {
                        assert!(s.pending, "INTID {i}: level line high but not pending: {s:?}");
                    }
                    fx.check(v % nv, i);
                }
            }
            Op::Link { vcpu, intid, pintid } => {
                let (v, i) = (pick(vcpu), id(intid));
                let _ = fx.vgic.link_hw(fx.virq(v, i), pintid.map(u32::from));
                if fx.implemented(i) {
                    fx.check(v, i);
                }
            }
            Op::Sgi { sender, value, group1 } => {
                let s = usize::from(sender);
                let r = if group1 { fx.vgic.send_sgi_v3(s, value) } else { fx.vgic.send_sgi0_v3(s, value) };
                if r.is_ok() {
                    assert!(fx.v3() && s < nv, "SGI accepted from vCPU {s} under {:?}", cfg.version);
                }
            }
            Op::Run { vcpu, lrs, threshold, guest } => {
                let v = pick(vcpu);
                let mut listed = fx.flush(v, 1 + usize::from(lrs % 16), threshold);
                for (l, act) in listed.iter_mut().zip(guest.iter().chain(std::iter::repeat(&0))) {
                    let (mut p, mut a) = (l.state.pending(), l.state.active());
                    if act & 1 != 0 && p && !a {
                        (p, a) = (false, true); // acknowledge
                    }
                    if act & 2 != 0 && a {
                        a = false; // EOI / deactivate
                    }
                    l.state = LrState::new(p, a);
                }
                fx.fold(v, &listed);
                let mut words: Vec<u32> = listed.iter().map(|l| l.vintid & !31).collect();
                words.sort_unstable();
                words.dedup();
                for w in words {
                    fx.check(v, w);
                }
            }
            Op::Idle { vcpu, lrs, threshold } => {
                let v = pick(vcpu);
                let before = fx.all_snapshots();
                let listed = fx.flush(v, 1 + usize::from(lrs) % MAX_LRS, threshold);
                fx.fold(v, &listed);
                assert_eq!(before, fx.all_snapshots(), "a flush and fold with an idle guest changed state");
            }
        }
    }
    fx.check_all();
    // A last run of every vCPU with all the list registers there are.
    for v in 0..nv {
        let listed = fx.flush(v, MAX_LRS, 0xff);
        fx.fold(v, &listed);
    }
});
