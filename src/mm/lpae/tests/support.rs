//! Host test support: a fake table allocator that counts live tables, a
//! maintenance recorder, the break-before-make checker that replays what
//! they logged, and helpers to look at tables through the walker.

extern crate std;

use crate::mm::addr::{PAGE_SIZE, PageSize, PhysAddr, VirtAddr};
use crate::mm::lpae::*;
use core::ptr::NonNull;
use std::boxed::Box;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::format;
use std::rc::Rc;
use std::string::String;
use std::vec::Vec;

/// Mapping options with nothing set.
pub const NONE: MapOptions = MapOptions::new();

pub fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}

pub fn pa(a: u64) -> PhysAddr {
    PhysAddr::new(a)
}

/// One thing the builder did, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A table page was handed out (`root`: by `alloc_root`).
    Alloc { table: u64, root: bool },
    /// A table page was returned.
    Free { table: u64 },
    /// A page was filled before linking; its content then.
    Filled { table: u64, entries: Box<[u64; 512]> },
    /// An entry store.
    Write { table: u64, index: usize, level: u8, input: u64, old: u64, new: u64 },
    /// A TLB invalidation.
    Invalidate(Invalidation),
}

/// The log the allocator and recorder share.
pub type Log = Rc<RefCell<Vec<Event>>>;

/// Where fake table pages live in the fake physical address space: below
/// 4 GiB so every geometry (32-bit output at least) can point at them.
const FAKE_TABLE_BASE: u64 = 0x8000_0000;

/// Table pages from the heap at fake physical addresses, counting the live
/// ones, poisoning new pages (the builder must fill them) and refusing any
/// access to a page that is not live.
pub struct FakeAllocator {
    pages: HashMap<u64, *mut TablePage>,
    next: u64,
    limit: Cell<usize>,
    log: Log,
}

impl FakeAllocator {
    /// An allocator with at most `limit` live pages.
    pub fn new(log: Log, limit: usize) -> Self {
        FakeAllocator { pages: HashMap::new(), next: FAKE_TABLE_BASE, limit: Cell::new(limit), log }
    }

    /// Pages handed out and not returned.
    pub fn live(&self) -> usize {
        self.pages.len()
    }

    /// The physical addresses of the live pages.
    pub fn live_pages(&self) -> HashSet<u64> {
        self.pages.keys().copied().collect()
    }

    /// Changes the most live pages allowed (through a shared reference,
    /// since the table owns the allocator).
    pub fn set_limit(&self, limit: usize) {
        self.limit.set(limit);
    }

    fn page(&mut self, root: bool) -> PhysAddr {
        let pa = self.next;
        self.next += PAGE_SIZE;
        // Poison: a page the builder links without filling shows up as
        // garbage descriptors the walker refuses.
        let page = Box::new(TablePage([0xdead_beef_dead_beef; 512]));
        self.pages.insert(pa, Box::into_raw(page));
        self.log.borrow_mut().push(Event::Alloc { table: pa, root });
        PhysAddr::new(pa)
    }
}

// SAFETY: every pointer handed out is a live Box<TablePage> owned by the map
// (not referenced elsewhere); unknown addresses panic instead of aliasing.
unsafe impl TableMemory for FakeAllocator {
    fn table_ptr(&self, table: PhysAddr) -> NonNull<TablePage> {
        match self.pages.get(&table.as_u64()) {
            Some(&p) => NonNull::new(p).unwrap(),
            None => panic!("access to {table}, which is not a live table page"),
        }
    }
}

// SAFETY: pages are distinct heap boxes, each at its own fake address, and
// concatenated roots get consecutive, aligned fake addresses.
unsafe impl TableAllocator for FakeAllocator {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        if self.pages.len() >= self.limit.get() {
            return None;
        }
        Some(self.page(false))
    }

    fn free_table(&mut self, table: PhysAddr) {
        let p = self.pages.remove(&table.as_u64()).unwrap_or_else(|| panic!("double free of {table}"));
        // SAFETY: p came from Box::into_raw and was removed from the map, so
        // this is its only owner.
        drop(unsafe { Box::from_raw(p) });
        self.log.borrow_mut().push(Event::Free { table: table.as_u64() });
    }

    fn alloc_root(&mut self, pages: usize) -> Option<PhysAddr> {
        if self.pages.len() + pages > self.limit.get() {
            return None;
        }
        let align = pages as u64 * PAGE_SIZE;
        self.next = self.next.div_ceil(align) * align;
        let root = self.page(true);
        for _ in 1..pages {
            self.page(true);
        }
        Some(root)
    }
}

impl Drop for FakeAllocator {
    fn drop(&mut self) {
        for (_, p) in self.pages.drain() {
            // SAFETY: as in free_table.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

/// Maintenance that logs every call.
pub struct Recorder {
    log: Log,
}

impl Maintenance for Recorder {
    fn entry_written(&mut self, w: &EntryWrite) {
        self.log.borrow_mut().push(Event::Write {
            table: w.table.as_u64(),
            index: w.index,
            level: w.level,
            input: w.input,
            old: w.old.raw(),
            new: w.new.raw(),
        });
    }

    fn table_filled(&mut self, table: PhysAddr, ptr: NonNull<TablePage>) {
        // SAFETY: the builder just filled the page and passes its pointer;
        // nothing writes it while we copy.
        let entries = Box::new(unsafe { ptr.as_ptr().read_volatile() }.0);
        self.log.borrow_mut().push(Event::Filled { table: table.as_u64(), entries });
    }

    fn invalidate(&mut self, what: Invalidation) {
        self.log.borrow_mut().push(Event::Invalidate(what));
    }
}

/// The tables every test uses.
pub type Table<R> = PageTable<R, FakeAllocator, Recorder>;

/// Empty tables of `geometry` with unlimited table memory.
pub fn table<R: Regime>(geometry: Geometry) -> Table<R> {
    table_with_limit(geometry, usize::MAX)
}

/// Empty tables of `geometry` with at most `limit` live table pages.
pub fn table_with_limit<R: Regime>(geometry: Geometry, limit: usize) -> Table<R> {
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    let alloc = FakeAllocator::new(log.clone(), limit);
    PageTable::new(geometry, alloc, Recorder { log }).expect("root table")
}

/// The events logged so far.
pub fn events<R: Regime>(pt: &Table<R>) -> Vec<Event> {
    pt.allocator().log.borrow().clone()
}

/// Number of events logged so far (to look at one operation's events).
pub fn mark<R: Regime>(pt: &Table<R>) -> usize {
    pt.allocator().log.borrow().len()
}

/// Checks the whole log for break-before-make and freeing order, checks
/// that no table leaked or is linked empty, then destroys the tables and
/// checks that every page came back.
pub fn finish<R: Regime>(pt: Table<R>) {
    check_invariants(&pt);
    let start = pt.geometry().start_level();
    if let Err(e) = check_bbm(&events(&pt), R::KIND, start) {
        panic!("break-before-make violation: {e}");
    }
    let (alloc, _) = pt.destroy();
    assert_eq!(alloc.live(), 0, "tables leaked after destroy");
}

/// Every live page is reachable from the root, and no reachable non-root
/// table is empty (unmap and failed operations must free them).
pub fn check_invariants<R: Regime>(pt: &Table<R>) {
    let g = pt.geometry();
    let mut reachable = HashSet::new();
    for page in 0..g.root_pages() as u64 {
        reachable.insert(pt.root().as_u64() + page * PAGE_SIZE);
    }
    fn visit<R: Regime>(pt: &Table<R>, table: u64, level: u8, entries: usize, seen: &mut HashSet<u64>) {
        let mut valid = 0;
        for i in 0..entries {
            let page = PhysAddr::new(table + (i / 512) as u64 * PAGE_SIZE);
            let ptr = pt.allocator().table_ptr(page);
            // SAFETY: a live fake page; read only.
            let raw = unsafe { (*ptr.as_ptr()).0[i % 512] };
            if raw & 1 == 0 {
                continue;
            }
            valid += 1;
            if level < 3 && raw & 2 != 0 {
                let next = raw & 0x0000_ffff_ffff_f000;
                assert!(seen.insert(next), "table {next:#x} linked twice");
                visit(pt, next, level + 1, 512, seen);
            }
        }
        if level != pt.geometry().start_level() {
            assert!(valid > 0, "empty table {table:#x} at level {level} left linked");
        }
    }
    visit(pt, pt.root().as_u64(), g.start_level(), g.root_entries(), &mut reachable);
    assert_eq!(reachable, pt.allocator().live_pages(), "live tables differ from the reachable ones (leak)");
}

const ADDR: u64 = 0x0000_ffff_ffff_f000;

fn entry_size(level: u8) -> u64 {
    1 << (12 + 9 * (3 - level as u32))
}

fn is_leaf(raw: u64, level: u8) -> bool {
    raw & 1 != 0 && (level == 3 || raw & 2 == 0)
}

fn is_table(raw: u64, level: u8) -> bool {
    raw & 1 != 0 && level < 3 && raw & 2 != 0
}

/// What TLB invalidation a broken entry still needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    /// A leaf: a Leaf invalidation at its level, or a covering Range.
    Leaf,
    /// An empty table: a Walk invalidation at its level, or a covering Range.
    Walk,
    /// A table with live entries below: a covering Range.
    Range,
}

#[derive(Clone, Copy, Debug)]
struct Broken {
    level: u8,
    input: u64,
    old: u64,
    need: Need,
}

/// Replays `log` and returns the first violation of break-before-make or of
/// the freeing order:
/// - a valid entry replaced by a different valid one, unless only the
///   permission bits of a leaf change (and then an invalidation must follow
///   before anything else touches the entry and before the end);
/// - a valid entry written over an entry broken (valid → invalid) before a
///   TLB invalidation covering the broken entry;
/// - a table linked before it was filled, a store to a freed page, or a
///   store whose old value is not what the page held;
/// - a page freed while an entry still points at it, or while the entry that
///   pointed at it is broken but not yet invalidated;
/// - broken entries or permission changes never invalidated.
pub fn check_bbm(log: &[Event], regime: RegimeKind, start_level: u8) -> Result<(), String> {
    let perm_bits: u64 = match regime {
        RegimeKind::El2 | RegimeKind::Hyp => (1 << 7) | (1 << 54),
        RegimeKind::Stage2 => (1 << 6) | (1 << 7) | (1 << 54),
    };
    let mut live: HashSet<u64> = HashSet::new();
    let mut roots: HashSet<u64> = HashSet::new();
    let mut filled: HashSet<u64> = HashSet::new();
    let mut content: HashMap<u64, Box<[u64; 512]>> = HashMap::new();
    let mut level_of: HashMap<u64, u8> = HashMap::new();
    let mut broken: HashMap<(u64, usize), Broken> = HashMap::new();
    let mut perm_pending: HashMap<(u64, usize), (u8, u64)> = HashMap::new();

    // True if table `t` holds a valid entry (anything below it may be
    // cached) or an entry broken and not yet invalidated.
    fn subtree_live(t: u64, content: &HashMap<u64, Box<[u64; 512]>>, broken: &HashMap<(u64, usize), Broken>) -> bool {
        let Some(entries) = content.get(&t) else { return false };
        entries.iter().enumerate().any(|(i, &raw)| raw & 1 != 0 || broken.contains_key(&(t, i)))
    }

    for (n, ev) in log.iter().enumerate() {
        match ev {
            Event::Alloc { table, root } => {
                live.insert(*table);
                filled.remove(table);
                content.remove(table);
                if *root {
                    level_of.insert(*table, start_level);
                    roots.insert(*table);
                }
            }
            Event::Filled { table, entries } => {
                if !live.contains(table) {
                    return Err(format!("event {n}: filled {table:#x}, which is not live"));
                }
                filled.insert(*table);
                content.insert(*table, entries.clone());
            }
            Event::Write { table, index, level, input, old, new } => {
                let page = table + (*index / 512) as u64 * PAGE_SIZE;
                let i = index % 512;
                let key = (page, i);
                if !live.contains(&page) {
                    return Err(format!("event {n}: store to {page:#x}, which is not live"));
                }
                let Some(entries) = content.get(&page) else {
                    return Err(format!("event {n}: store to {page:#x}, which was never filled"));
                };
                if entries[i] != *old {
                    return Err(format!(
                        "event {n}: store to {page:#x}[{i}] says old {old:#x}, memory held {:#x}",
                        entries[i]
                    ));
                }
                if perm_pending.contains_key(&key) {
                    return Err(format!("event {n}: {page:#x}[{i}] stored again before its permission TLBI"));
                }
                let (ov, nv) = (old & 1 != 0, new & 1 != 0);
                if ov && nv {
                    let perm_only = is_leaf(*old, *level) && is_leaf(*new, *level) && (old ^ new) & !perm_bits == 0;
                    if !perm_only {
                        return Err(format!(
                            "event {n}: valid {old:#x} replaced by valid {new:#x} at level {level}, input \
                             {input:#x}, without break-before-make"
                        ));
                    }
                    perm_pending.insert(key, (*level, *input));
                } else if ov {
                    let need = if is_leaf(*old, *level) {
                        Need::Leaf
                    } else if subtree_live(old & ADDR, &content, &broken) {
                        Need::Range
                    } else {
                        Need::Walk
                    };
                    broken.insert(key, Broken { level: *level, input: *input, old: *old, need });
                } else if nv {
                    if let Some(b) = broken.get(&key) {
                        return Err(format!(
                            "event {n}: {new:#x} stored at level {level}, input {input:#x}, while the old \
                             {:#x} was not yet invalidated (break-before-make)",
                            b.old
                        ));
                    }
                    if is_table(*new, *level) {
                        let child = new & ADDR;
                        if !filled.contains(&child) || !live.contains(&child) {
                            return Err(format!("event {n}: linked table {child:#x} before filling it"));
                        }
                        level_of.insert(child, level + 1);
                    }
                }
                content.get_mut(&page).unwrap()[i] = *new;
            }
            Event::Invalidate(what) => {
                let covers = |b_level: u8, b_input: u64, need: Need| -> bool {
                    let (lo, hi) = (b_input, b_input + entry_size(b_level));
                    match *what {
                        Invalidation::Leaf { input, level } => {
                            need == Need::Leaf && level == b_level && (lo..hi).contains(&input)
                        }
                        Invalidation::Walk { input, level } => {
                            need == Need::Walk && level == b_level && (lo..hi).contains(&input)
                        }
                        Invalidation::Range { input, size } => input <= lo && hi <= input + size,
                    }
                };
                broken.retain(|_, b| !covers(b.level, b.input, b.need));
                perm_pending.retain(|_, &mut (level, input)| !covers(level, input, Need::Leaf));
            }
            Event::Free { table } => {
                if !live.remove(table) {
                    return Err(format!("event {n}: freed {table:#x}, which is not live"));
                }
                for (&(page, i), b) in &broken {
                    if is_table(b.old, b.level) && b.old & ADDR == *table {
                        return Err(format!(
                            "event {n}: freed {table:#x} while {page:#x}[{i}] pointing at it is not invalidated"
                        ));
                    }
                }
                // Linked from a table the walker can still reach? (Tables
                // below a broken and invalidated entry are unreachable and
                // may be freed in any order.)
                let mut reachable: Vec<u64> = roots.iter().copied().collect();
                let mut k = 0;
                while k < reachable.len() {
                    let page = reachable[k];
                    k += 1;
                    let (Some(entries), Some(&level)) = (content.get(&page), level_of.get(&page)) else { continue };
                    for (i, &raw) in entries.iter().enumerate() {
                        if !is_table(raw, level) {
                            continue;
                        }
                        if raw & ADDR == *table {
                            return Err(format!("event {n}: freed {table:#x} still linked from {page:#x}[{i}]"));
                        }
                        reachable.push(raw & ADDR);
                    }
                }
                content.remove(table);
                filled.remove(table);
                roots.remove(table);
            }
        }
    }
    if let Some((&(page, i), b)) = broken.iter().next() {
        return Err(format!("at the end: {page:#x}[{i}] (input {:#x}) broken, never invalidated", b.input));
    }
    if let Some(((page, i), _)) = perm_pending.iter().next() {
        return Err(format!("at the end: permission change of {page:#x}[{i}] never invalidated"));
    }
    Ok(())
}

/// One leaf as the walker reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub input: u64,
    pub output: u64,
    pub size: PageSize,
    pub attrs: Attributes,
}

/// Every leaf, in input order, through the walker (panics on a walk fault).
pub fn leaves<R: Regime>(pt: &Table<R>) -> Vec<Leaf> {
    let mut out = Vec::new();
    pt.for_each_mapping(|t| {
        assert_eq!(t.shareability, Shareability::Inner, "leaf at {:#x}", t.input_base);
        out.push(Leaf { input: t.input_base, output: t.output.as_u64(), size: t.size, attrs: t.attrs });
    })
    .unwrap_or_else(|e| panic!("walk fault: {e}"));
    out
}

/// A maximal run of leaves with consecutive input and output and the same
/// attributes: what the tables translate, whatever the leaf sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub input: u64,
    pub output: u64,
    pub size: u64,
    pub attrs: Attributes,
}

/// Shorthand for a run.
pub fn run(input: u64, output: u64, size: u64, attrs: Attributes) -> Run {
    Run { input, output, size, attrs }
}

/// Everything the tables translate, as maximal runs.
pub fn runs<R: Regime>(pt: &Table<R>) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for l in leaves(pt) {
        if let Some(last) = out.last_mut()
            && last.input + last.size == l.input
            && last.output + last.size == l.output
            && last.attrs == l.attrs
        {
            last.size += l.size.bytes();
            continue;
        }
        out.push(Run { input: l.input, output: l.output, size: l.size.bytes(), attrs: l.attrs });
    }
    out
}

/// Checks through the walker that the first, a middle and the last byte of
/// `[input, input + size)` translate to `output + offset` with `attrs`.
pub fn assert_maps<R: Regime>(pt: &Table<R>, input: u64, output: u64, size: u64, attrs: Attributes) {
    use crate::mm::addr::Address;
    for off in [0, size / 2 + 0x123, size - 1] {
        let ia = R::Input::from_u64(input + off);
        let t = pt.translate(ia).unwrap_or_else(|e| panic!("{:#x}: {e}", input + off));
        assert_eq!(t.output.as_u64(), output + off, "output of {:#x}", input + off);
        assert_eq!(t.attrs, attrs, "attributes of {:#x}", input + off);
    }
}
