//! Fuzz target: the device tree reader and the boot plan (`src/dt/`).
//!
//! The input is a DTB (seeds: real trees from `tests/fixtures/dtb/`).
//! Invariants: nothing panics, whatever the bytes; a tree the reader accepts
//! is also accepted once normalized (unless its reservation map has no
//! end, which both refuse) (compacted, FDT_NOPs gone, as the boot
//! path copies it) and reads the same there (boot plan, modules, command
//! line); normalizing is idempotent; every part of the plan formats (the
//! boot log's report); what the plan returns is consistent (memory banks are
//! non-empty regions, at most `MAX_BANKS`, console inside its node's region).

#![no_main]

use armature::dt::{self, DeviceTree, DtError, MAX_BANKS};
use libfuzzer_sys::fuzz_target;

/// Everything the boot path reads from a tree, checked for consistency
/// and formatted as the boot log would (once).
fn check(dt: &DeviceTree<'_>) {
    let plan = dt.boot_plan();
    let mut lines = 0;
    plan.report(&mut |args| {
        let _ = args.to_string();
        lines += 1;
    });
    // A line at least for each part but the reserved memory (none: no line).
    assert!(lines >= 6, "the report leaves parts out");
    if let Ok(banks) = &plan.memory {
        assert!(banks.as_slice().len() <= MAX_BANKS);
        assert!(!banks.as_slice().is_empty(), "Ok with no memory bank");
        assert!(banks.as_slice().iter().all(|b| b.size != 0), "an empty bank");
    }
    if let Ok(r) = &plan.reserved {
        assert!(r.nodes().len() <= dt::MAX_RESERVED);
    }
    if let Ok(cpus) = &plan.cpus {
        let _ = cpus.summary();
        for c in cpus.as_slice() {
            let _ = (c.to_string(), c.startable(), c.error().map(|e| e.to_string()));
        }
    }
    if let Ok(p) = dt.dom0_pass_through(&[]) {
        let pages = p.pages(&[], &[]);
        assert!(pages.iter().all(|r| r.base % 0x1000 == 0 && r.size % 0x1000 == 0 && r.size > 0));
        assert!(pages.windows(2).all(|w| w[0].base + w[0].size < w[1].base), "pages overlap or touch");
    }
    for e in [dt.boot_modules().err(), dt.stdout().err(), dt.memreserve().err()].into_iter().flatten() {
        let _ = e.to_string();
    }
    if let Err(e) = dt.dom0_modules() {
        let _ = e.to_string();
    }
}

/// Two trees read the same (the reads hold borrowed strings: compared by
/// content).
fn same(a: &DeviceTree<'_>, b: &DeviceTree<'_>) {
    assert_eq!(a.boot_plan(), b.boot_plan(), "boot plans differ");
    assert_eq!(a.boot_modules(), b.boot_modules(), "boot modules differ");
    assert_eq!(a.dom0_modules(), b.dom0_modules(), "dom0 modules differ");
    assert_eq!(a.bootargs(), b.bootargs(), "command lines differ");
    assert_eq!(a.stdout(), b.stdout(), "stdout differs");
    assert_eq!(a.cpu_count(), b.cpu_count());
    assert_eq!(a.psci_conduit(), b.psci_conduit());
    assert_eq!(a.device("arm,pl011"), b.device("arm,pl011"));
    assert_eq!(a.memreserve(), b.memreserve());
    assert_eq!(a.dom0_pass_through(&[]), b.dom0_pass_through(&[]), "pass-through plans differ");
}

fuzz_target!(|data: &[u8]| {
    let _ = dt::validate_header(data);
    let direct = DeviceTree::new(data);
    // Blocks may overlap in the source: the compacted copy can be up to
    // three times as large (header, map, structure, strings).
    let mut buf = vec![0u8; 3 * data.len() + 64];
    let normalized = dt::normalize_into(data, &mut buf).map(|b| b.to_vec());
    match &direct {
        Ok(tree) => {
            // What the reader accepts, the boot path's copy accepts and reads
            // the same; the one thing the copy checks that the reader leaves
            // to `memreserve()` is the end of the reservation map.
            check(tree);
            match &normalized {
                Ok(copy) => {
                    let again = DeviceTree::new(copy).expect("the normalized copy of an accepted tree is refused");
                    same(tree, &again);
                }
                Err(e) => {
                    assert_eq!(e, &DtError::BadBlock("off_mem_rsvmap (no terminating entry)"), "normalize: {e}");
                    assert_eq!(
                        tree.memreserve().err(),
                        Some(*e),
                        "the reader reads a reservation map the copy refuses"
                    );
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(copy) = &normalized {
        // Idempotent: normalizing the copy changes nothing.
        let mut buf2 = vec![0u8; copy.len()];
        let twice = dt::normalize_into(copy, &mut buf2).expect("a normalized tree fails to normalize again");
        assert_eq!(twice, &copy[..], "normalizing is not idempotent");
        if direct.is_err()
            && let Ok(tree) = DeviceTree::new(copy)
        {
            check(&tree);
        }
    }
});
