//! Property-style test: random map/unmap/protect sequences against a
//! page-by-page reference model. After every operation the walker's view
//! must equal the model exactly (same pages, outputs and attributes, nothing
//! else), every live table must be reachable and non-empty, refused
//! operations must name the address the model predicts, and at the end the
//! whole maintenance log must pass the break-before-make checker and no
//! table may leak.

extern crate std;

use super::support::*;
use crate::mm::addr::*;
use crate::mm::lpae::*;
use std::collections::BTreeMap;
use std::vec::Vec;

use crate::testutil::Rng;

/// The window the operations touch: 64 MiB straddling the 1 GiB boundary,
/// so that level-1 and level-2 boundaries are crossed.
const WINDOW: u64 = 0x3e00_0000;
const WINDOW_PAGES: u64 = (64 << 20) / PAGE_SIZE;

/// Output = input + one of these: congruent mod 1 GiB, mod 2 MiB only, and
/// mod 4 KiB only, so that blocks are possible, sometimes, or never.
const DELTAS: [u64; 3] = [0x10_0000_0000, 0x20_0020_0000, 0x30_0000_5000];

const ATTRS: [Attributes; 4] = [Attributes::CODE, Attributes::RODATA, Attributes::DATA, Attributes::DEVICE];

type Model = BTreeMap<u64, (u64, Attributes)>;

/// The walker's view, page by page.
fn observed<R: Regime>(pt: &Table<R>) -> Model {
    let mut m = Model::new();
    for l in leaves(pt) {
        assert!(
            l.input >= WINDOW && l.input + l.size.bytes() <= WINDOW + WINDOW_PAGES * PAGE_SIZE,
            "leaf at {:#x} outside the window",
            l.input
        );
        // A block's output is aligned to its size.
        assert!(l.output.is_multiple_of(l.size.bytes()));
        for p in 0..l.size.bytes() / PAGE_SIZE {
            m.insert(l.input + p * PAGE_SIZE, (l.output + p * PAGE_SIZE, l.attrs));
        }
    }
    m
}

/// A random page-aligned range inside the window, often 2 MiB aligned.
fn range(rng: &mut Rng) -> (u64, u64) {
    let (start, pages) = if rng.chance(3) {
        let blocks = WINDOW_PAGES / 512;
        (rng.below(blocks) * 512, (1 + rng.below(4)) * 512)
    } else {
        let most = if rng.chance(4) { 1500 } else { 40 };
        (rng.below(WINDOW_PAGES), 1 + rng.below(most))
    };
    let pages = pages.min(WINDOW_PAGES - start);
    (WINDOW + start * PAGE_SIZE, pages * PAGE_SIZE)
}

fn exercise<R: Regime>(geometry: Geometry, seed: u64, ops: usize) {
    let ia = |a: u64| R::Input::from_u64(a);
    let mut rng = Rng(seed);
    let mut pt = table::<R>(geometry);
    let mut model = Model::new();
    let (mut maps, mut refused) = (0, 0);
    for step in 0..ops {
        let (start, size) = range(&mut rng);
        let pages = (0..size / PAGE_SIZE).map(|p| start + p * PAGE_SIZE);
        let what = rng.below(10);
        let (got, want) = if what < 5 {
            let delta = DELTAS[rng.below(3) as usize];
            let attrs = ATTRS[rng.below(4) as usize];
            let mut options = MapOptions::new();
            if rng.chance(4) {
                options = options.pages_only();
            }
            let remap = rng.chance(2);
            if remap {
                options = options.remap();
            }
            let got = pt.map(ia(start), PhysAddr::new(start + delta), size, attrs, options);
            let clash = pages.clone().find_map(|v| match model.get(&v) {
                Some(&m) if m != (v + delta, attrs) => Some((v, m.0)),
                _ => None,
            });
            let want = match clash {
                Some((v, out)) if !remap => Err(MapError::Overlap { at: ia(v).any(), mapped_to: PhysAddr::new(out) }),
                _ => {
                    for v in pages {
                        model.insert(v, (v + delta, attrs));
                    }
                    Ok(())
                }
            };
            maps += 1;
            (got, want)
        } else if what < 7 {
            let got = pt.unmap(ia(start), size);
            for v in pages {
                model.remove(&v);
            }
            (got, Ok(()))
        } else {
            let attrs = ATTRS[rng.below(4) as usize];
            let got = pt.protect(ia(start), size, attrs, MapOptions::new());
            let want = match pages.clone().find(|v| !model.contains_key(v)) {
                Some(hole) => Err(MapError::NotMapped(ia(hole).any())),
                None => {
                    for v in pages {
                        model.get_mut(&v).unwrap().1 = attrs;
                    }
                    Ok(())
                }
            };
            (got, want)
        };
        if want.is_err() {
            refused += 1;
        }
        assert_eq!(got, want, "seed {seed:#x} step {step}: op {what} at {start:#x} size {size:#x}");
        let seen = observed(&pt);
        if seen != model {
            let diff = model
                .iter()
                .find(|(k, v)| seen.get(k) != Some(v))
                .map(|(k, _)| *k)
                .or_else(|| seen.keys().find(|k| !model.contains_key(k)).copied());
            panic!("seed {seed:#x} step {step}: tables differ from the model first at {diff:#x?}");
        }
        check_invariants(&pt);
    }
    // The sequences must have exercised both outcomes.
    assert!(maps > ops / 4 && refused > 0, "seed {seed:#x}: {maps} maps, {refused} refused");
    pt.unmap(ia(WINDOW), WINDOW_PAGES * PAGE_SIZE).unwrap();
    assert!(runs(&pt).is_empty());
    assert_eq!(pt.allocator().live(), geometry.root_pages());
    finish(pt);
}

#[test]
fn random_operations_match_a_reference_model_el2() {
    for seed in [0x9e37_79b9_7f4a_7c15, 0x1234_5678_9abc_def1, 0xdead_beef_cafe_f00d] {
        exercise::<El2>(Geometry::AARCH64_EL2_48, seed, 250);
    }
}

#[test]
fn random_operations_match_a_reference_model_armv7() {
    for seed in [0x0bad_cafe_1234_5678, 0x7777_aaaa_5555_3333] {
        exercise::<Hyp>(Geometry::ARMV7_HYP, seed, 250);
    }
}

#[test]
fn random_operations_match_a_reference_model_stage2() {
    // Concatenated 2-page root.
    exercise::<Stage2>(Geometry::new(1, 40, 40).unwrap(), 0x5eed_5eed_5eed_5eed, 250);
}

#[test]
fn leaf_sizes_are_the_largest_alignment_allows() {
    // Fresh tables, one map each: the leaves must be exactly the greedy
    // decomposition (largest size whose input and output are both aligned
    // and that fits in the rest of the range).
    let mut rng = Rng(0xfeed_face_0000_0001);
    for _ in 0..120 {
        let start = (rng.below(1 << 20) * PAGE_SIZE) & !(if rng.chance(2) { SIZE_2M - 1 } else { 0 });
        let delta = DELTAS[rng.below(3) as usize];
        // Up to 2 GiB, but not millions of pages when only pages fit.
        let most = if rng.chance(3) && delta != DELTAS[2] { 1 << 19 } else { 2048 };
        let size = (1 + rng.below(most)) * PAGE_SIZE;
        let mut pt = table::<El2>(Geometry::AARCH64_EL2_48);
        pt.map(VirtAddr::new(start), PhysAddr::new(start + delta), size, Attributes::DATA, MapOptions::new()).unwrap();
        let mut expect = Vec::new();
        let mut v = start;
        while v < start + size {
            let s = [SIZE_1G, SIZE_2M, PAGE_SIZE]
                .into_iter()
                .find(|&s| v.is_multiple_of(s) && (v + delta).is_multiple_of(s) && v + s <= start + size)
                .unwrap();
            expect.push((v, s));
            v += s;
        }
        let got: Vec<_> = leaves(&pt).iter().map(|l| (l.input, l.size.bytes())).collect();
        assert_eq!(got, expect, "map {start:#x}+{size:#x} delta {delta:#x}");
        finish(pt);
    }
}
