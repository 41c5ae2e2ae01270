//! Splitting, re-protecting, remapping, freeing and running out of table
//! memory, with the maintenance sequence checked event by event.

extern crate std;

use super::support::*;
use crate::mm::addr::*;
use crate::mm::lpae::*;
use std::boxed::Box;
use std::vec;
use std::vec::Vec;


/// The stores and invalidations logged since `from`, without allocator and
/// fill events, as (old, new) pairs and invalidations.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    W { level: u8, input: u64, old: u64, new: u64 },
    I(Invalidation),
}

fn steps<R: Regime>(pt: &Table<R>, from: usize) -> Vec<Step> {
    events(pt)[from..]
        .iter()
        .filter_map(|e| match *e {
            Event::Write { level, input, old, new, .. } => Some(Step::W { level, input, old, new }),
            Event::Invalidate(i) => Some(Step::I(i)),
            _ => None,
        })
        .collect()
}

fn sizes(pt: &Table<El2>) -> (usize, usize, usize) {
    let l = leaves(pt);
    let n = |s| l.iter().filter(|x| x.size == s).count();
    (n(PageSize::Size4K), n(PageSize::Size2M), n(PageSize::Size1G))
}

#[test]
fn partial_unmap_splits_a_1g_block() {
    let mut pt = table::<El2>(Geometry::AARCH64_EL2_48);
    let (v, p) = (0x4000_0000u64, 0x1_4000_0000u64);
    pt.map(va(v), pa(p), SIZE_1G, Attributes::DATA, NONE).unwrap();
    let block = pt.translate(va(v)).unwrap().descriptor;
    let hole = v + 0x1234_5000;
    let from = mark(&pt);
    pt.unmap(va(hole), PAGE_SIZE).unwrap();
    // Everything but the hole still translates as before.
    assert_eq!(
        runs(&pt),
        [
            run(v, p, hole - v, Attributes::DATA),
            run(hole + PAGE_SIZE, p + (hole - v) + PAGE_SIZE, v + SIZE_1G - hole - PAGE_SIZE, Attributes::DATA)
        ]
    );
    assert!(pt.translate(va(hole + 0xfff)).is_err());
    assert_eq!(sizes(&pt), (511, 511, 0));
    // Root, L1, the L2 that replaced the 1 GiB block, the L3 that replaced a 2 MiB one.
    assert_eq!(pt.allocator().live(), 4);
    // The block was broken and invalidated before the table went in.
    let s = steps(&pt, from);
    assert!(matches!(s[0], Step::W { level: 1, input, old, new: 0 } if input == v && old == block));
    assert_eq!(s[1], Step::I(Invalidation::Leaf { input: v, level: 1 }));
    assert!(matches!(s[2], Step::W { level: 1, old: 0, new, .. } if new & 3 == 3));
    // Then the unmap of the rest frees everything but the root.
    pt.unmap(va(v), hole - v).unwrap();
    pt.unmap(va(hole + PAGE_SIZE), v + SIZE_1G - hole - PAGE_SIZE).unwrap();
    assert!(runs(&pt).is_empty());
    assert_eq!(pt.allocator().live(), 1);
    finish(pt);
}

#[test]
fn partial_protect_splits_a_2m_block_and_changes_permissions_in_place() {
    let mut pt = table::<El2>(Geometry::AARCH64_EL2_39);
    let (v, p) = (0x20_0000u64, 0x8000_0000u64);
    pt.map(va(v), pa(p), SIZE_2M, Attributes::DATA, NONE).unwrap();
    let from = mark(&pt);
    pt.protect(va(v + 0x3000), PAGE_SIZE, Attributes::RODATA, NONE).unwrap();
    assert_eq!(
        runs(&pt),
        [
            run(v, p, 0x3000, Attributes::DATA),
            run(v + 0x3000, p + 0x3000, PAGE_SIZE, Attributes::RODATA),
            run(v + 0x4000, p + 0x4000, SIZE_2M - 0x4000, Attributes::DATA)
        ]
    );
    let s = steps(&pt, from);
    // Split with BBM: block → invalid, TLBI, → table.
    assert!(matches!(s[0], Step::W { level: 2, new: 0, .. }));
    assert_eq!(s[1], Step::I(Invalidation::Leaf { input: v, level: 2 }));
    assert!(matches!(s[2], Step::W { level: 2, old: 0, .. }));
    // Then the page's AP[2] flips in place (valid → valid) and is invalidated.
    match s[3] {
        Step::W { level: 3, input, old, new } => {
            assert_eq!(input, v + 0x3000);
            assert_eq!(old ^ new, 1 << 7, "only AP[2] changes");
        }
        ref other => panic!("expected the in-place permission store, got {other:?}"),
    }
    assert_eq!(s[4], Step::I(Invalidation::Leaf { input: v + 0x3000, level: 3 }));
    assert_eq!(s.len(), 5);
    // Back to RW: in place again; the range translates as one run (the
    // split is not undone, which is fine).
    pt.protect(va(v), SIZE_2M, Attributes::DATA, NONE).unwrap();
    assert_eq!(runs(&pt), [run(v, p, SIZE_2M, Attributes::DATA)]);
    finish(pt);
}

#[test]
fn memory_type_change_goes_through_break_before_make() {
    let mut pt = table::<Hyp>(Geometry::ARMV7_HYP);
    pt.map(va(0x1000), pa(0x4000_1000), PAGE_SIZE, Attributes::DATA, NONE).unwrap();
    let old = pt.translate(va(0x1000)).unwrap().descriptor;
    let from = mark(&pt);
    let nc = Attributes::new(MemoryType::NormalNonCacheable, Access::ReadWrite);
    pt.protect(va(0x1000), PAGE_SIZE, nc, NONE).unwrap();
    let new = pt.translate(va(0x1000)).unwrap().descriptor;
    assert_eq!(pt.translate(va(0x1000)).unwrap().attrs, nc);
    assert_eq!(
        steps(&pt, from),
        [
            Step::W { level: 3, input: 0x1000, old, new: 0 },
            Step::I(Invalidation::Leaf { input: 0x1000, level: 3 }),
            Step::W { level: 3, input: 0x1000, old: 0, new },
        ]
    );
    finish(pt);
}

#[test]
fn remap_replaces_leaves_and_tables_with_break_before_make() {
    let mut pt = table::<El2>(Geometry::AARCH64_EL2_48);
    let v = 0x4000_0000u64;
    pt.map(va(v), pa(0x8000_0000), SIZE_2M, Attributes::DATA, NONE).unwrap();
    let old = pt.translate(va(v)).unwrap().descriptor;
    let from = mark(&pt);
    pt.map(va(v), pa(0xa000_0000), SIZE_2M, Attributes::DATA, NONE.remap()).unwrap();
    let new = pt.translate(va(v)).unwrap().descriptor;
    assert_eq!(
        steps(&pt, from),
        [
            Step::W { level: 2, input: v, old, new: 0 },
            Step::I(Invalidation::Leaf { input: v, level: 2 }),
            Step::W { level: 2, input: v, old: 0, new },
        ]
    );
    // A table of live pages replaced by a block: the table entry is broken,
    // the whole 2 MiB invalidated, the table freed, then the block written.
    let w = v + SIZE_2M;
    pt.map(va(w), pa(0xb000_0000), SIZE_2M, Attributes::RODATA, NONE.pages_only()).unwrap();
    let tables = pt.allocator().live();
    let from = mark(&pt);
    pt.map(va(w), pa(0xc000_0000), SIZE_2M, Attributes::RODATA, NONE.remap()).unwrap();
    assert_eq!(pt.allocator().live(), tables - 1);
    let ev = &events(&pt)[from..];
    let kinds: Vec<&str> = ev
        .iter()
        .map(|e| match e {
            Event::Write { new: 0, .. } => "break",
            Event::Write { .. } => "write",
            Event::Invalidate(Invalidation::Range { input, size }) if *input == w && *size == SIZE_2M => "range",
            Event::Invalidate(_) => "other-tlbi",
            Event::Free { .. } => "free",
            Event::Alloc { .. } => "alloc",
            Event::Filled { .. } => "fill",
        })
        .collect();
    assert_eq!(kinds, ["break", "range", "free", "write"]);
    assert_eq!(runs(&pt)[1], run(w, 0xc000_0000, SIZE_2M, Attributes::RODATA));
    finish(pt);
}

#[test]
fn unmap_frees_every_table() {
    let mut pt = table::<El2>(Geometry::AARCH64_EL2_48);
    // Spread over several L0, L1 and L2 entries, pages and blocks.
    let regions: [(u64, u64, u64); 6] = [
        (0x0000_0000_1000, 0x4000_1000, 3 * PAGE_SIZE),
        (0x0000_0020_0000, 0x4020_0000, SIZE_2M + PAGE_SIZE),
        (0x0000_4000_0000, 0x1_0000_0000, SIZE_1G),
        (0x0080_0000_0000, 0x5000_0000, 5 * PAGE_SIZE),
        (0x7fff_ffe0_0000, 0x6000_0000, SIZE_2M),
        (0xffff_ffff_f000, 0x7000_0000, PAGE_SIZE),
    ];
    for (v, p, s) in regions {
        pt.map(va(v), pa(p), s, Attributes::DATA, NONE).unwrap();
        check_invariants(&pt);
    }
    assert_eq!(runs(&pt).len(), regions.len());
    // Unmap in pieces that straddle regions and holes; after each, no empty
    // table is left linked and no table is unreachable.
    let cuts = [
        (0, 0x2000),
        (0x1000, 0x40_0000),
        (0x3000_0000, 0x2000_0000),
        (0x4000_0000, 0x4000_0000),
        (0x0080_0000_0000, (1 << 48) - 0x0080_0000_0000),
    ];
    for (v, s) in cuts {
        pt.unmap(va(v), s).unwrap();
        check_invariants(&pt);
    }
    assert_eq!(runs(&pt), []);
    assert_eq!(pt.allocator().live(), 1);
    finish(pt);
}

#[test]
fn running_out_of_table_memory_changes_nothing() {
    // Root + 2: a page needs L1, L2 and L3 tables.
    let mut pt = table_with_limit::<El2>(Geometry::AARCH64_EL2_48, 3);
    let err = pt.map(va(0x8000_3000), pa(0x4000_0000), PAGE_SIZE, Attributes::DATA, NONE).unwrap_err();
    assert_eq!(err, MapError::OutOfTables(va(0x8000_3000).any()));
    assert_eq!(pt.allocator().live(), 1, "the tables linked by the failed prepare pass are freed");
    assert!(runs(&pt).is_empty());
    check_invariants(&pt);
    finish(pt);

    // Splitting: 1 GiB → 2 MiB succeeds, 2 MiB → 4 KiB does not. The
    // translations stay the same (the 1 GiB block is now 512 equivalent
    // blocks), and the retry with more memory works.
    let mut pt = table_with_limit::<El2>(Geometry::AARCH64_EL2_48, 3);
    pt.map(va(0x4000_0000), pa(0x4000_0000), SIZE_1G, Attributes::DATA, NONE).unwrap();
    let before = runs(&pt);
    let err = pt.unmap(va(0x4020_0000), PAGE_SIZE).unwrap_err();
    assert_eq!(err, MapError::OutOfTables(va(0x4020_0000).any()));
    assert_eq!(runs(&pt), before);
    check_invariants(&pt);
    pt.allocator().set_limit(4);
    pt.unmap(va(0x4020_0000), PAGE_SIZE).unwrap();
    assert_eq!(runs(&pt).len(), 2);
    finish(pt);
}

/// The checker itself must catch each kind of violation (else the tests
/// above prove nothing).
#[test]
fn bbm_checker_catches_violations() {
    let t = 0x8000_0000u64;
    let child = 0x8000_1000u64;
    let leaf_a = 0x4000_0000 | 0x74d; // 2 MiB block, data
    let leaf_b = 0x4020_0000 | 0x74d; // another output address
    let table_d = child | 3;
    let alloc = |table, root| Event::Alloc { table, root };
    let fill = |table, entries: [u64; 512]| Event::Filled { table, entries: Box::new(entries) };
    let w = |old, new| Event::Write { table: t, index: 1, level: 2, input: 0x20_0000, old, new };
    let tlbi = Event::Invalidate(Invalidation::Leaf { input: 0x20_0000, level: 2 });
    let mut with_a = [0u64; 512];
    with_a[1] = leaf_a;
    let base = vec![alloc(t, true), fill(t, with_a)];
    let check = |extra: Vec<Event>| {
        let mut log = base.clone();
        log.extend(extra);
        check_bbm(&log, RegimeKind::El2, 2)
    };

    // Correct: break, invalidate, make.
    assert_eq!(check(vec![w(leaf_a, 0), tlbi.clone(), w(0, leaf_b)]), Ok(()));
    // Valid → valid with another output address.
    let e = check(vec![w(leaf_a, leaf_b)]).unwrap_err();
    assert!(e.contains("without break-before-make"), "{e}");
    // Make before the TLBI.
    let e = check(vec![w(leaf_a, 0), w(0, leaf_b), tlbi.clone()]).unwrap_err();
    assert!(e.contains("not yet invalidated"), "{e}");
    // A TLBI for another address does not count.
    let other = Event::Invalidate(Invalidation::Leaf { input: 0x40_0000, level: 2 });
    let e = check(vec![w(leaf_a, 0), other, w(0, leaf_b)]).unwrap_err();
    assert!(e.contains("not yet invalidated"), "{e}");
    // Broken and never invalidated.
    let e = check(vec![w(leaf_a, 0)]).unwrap_err();
    assert!(e.contains("never invalidated"), "{e}");
    // Permission change in place without its TLBI.
    let e = check(vec![w(leaf_a, leaf_a | (1 << 7))]).unwrap_err();
    assert!(e.contains("permission"), "{e}");
    assert_eq!(check(vec![w(leaf_a, leaf_a | (1 << 7)), tlbi.clone()]), Ok(()));
    // Table linked before it was filled.
    let e = check(vec![w(leaf_a, 0), tlbi.clone(), alloc(child, false), w(0, table_d)]).unwrap_err();
    assert!(e.contains("before filling"), "{e}");
    // Table freed while still linked.
    let linked = vec![w(leaf_a, 0), tlbi.clone(), alloc(child, false), fill(child, [0; 512]), w(0, table_d)];
    let mut log = linked.clone();
    log.push(Event::Free { table: child });
    let e = check(log).unwrap_err();
    assert!(e.contains("still linked"), "{e}");
    // Table unlinked but freed before the walk-cache invalidation.
    let mut log = linked.clone();
    log.extend([w(table_d, 0), Event::Free { table: child }]);
    let e = check(log).unwrap_err();
    assert!(e.contains("not invalidated"), "{e}");
    // ... and in the right order it passes.
    let mut log = linked.clone();
    log.extend([
        w(table_d, 0),
        Event::Invalidate(Invalidation::Walk { input: 0x20_0000, level: 2 }),
        Event::Free { table: child },
    ]);
    assert_eq!(check(log), Ok(()));
    // A table with live entries needs a range invalidation, not a walk one.
    let mut page = [0u64; 512];
    page[0] = 0x4000_0000 | 0x74f;
    let mut log = vec![w(leaf_a, 0), tlbi, alloc(child, false), fill(child, page), w(0, table_d)];
    log.extend([
        w(table_d, 0),
        Event::Invalidate(Invalidation::Walk { input: 0x20_0000, level: 2 }),
        Event::Free { table: child },
    ]);
    let e = check(log).unwrap_err();
    assert!(e.contains("not invalidated"), "{e}");
    // A store whose old value is not what memory held.
    let e = check(vec![w(leaf_b, 0)]).unwrap_err();
    assert!(e.contains("memory held"), "{e}");
}
