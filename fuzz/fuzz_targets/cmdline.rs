//! Fuzz target: the hypervisor's command-line parser (`src/cmdline.rs`).
//!
//! Any bytes (as UTF-8, lossily) as `bootargs`. Invariants: no panic; every
//! reported name/value is a slice of the word it came from; the errors of the
//! whole line are those of its words parsed one by one, in order; the
//! options do not depend on how the words are spaced; parsed sizes and vCPU
//! counts are never zero; `parse_size` agrees with the arithmetic it stands
//! for.

#![no_main]

use armature::cmdline::{self, OptionError};
use libfuzzer_sys::fuzz_target;

fn errors(line: &str) -> (cmdline::Options, Vec<OptionError<'_>>) {
    let mut errs = Vec::new();
    let o = cmdline::parse(line, |e| errs.push(e));
    (o, errs)
}

/// Whether `part` lies inside `whole` (same memory, not only equal text).
fn inside(part: &str, whole: &str) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let line = line.as_ref();
    let (opts, errs) = errors(line);

    for e in &errs {
        match e {
            OptionError::Unknown(w) => assert!(inside(w, line), "unknown word {w:?} not from the line"),
            OptionError::BadValue { name, value } => {
                assert!(inside(name, line) && inside(value, line), "{name:?}={value:?} not from the line");
            }
        }
    }

    // Word by word: the same errors in the same order.
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    let mut each = Vec::new();
    for w in &words {
        each.extend(errors(w).1);
    }
    assert_eq!(errs, each, "errors of the line differ from its words' errors");
    assert!(errs.len() <= words.len());

    // Spacing does not matter.
    let respaced = words.join("  \t");
    assert_eq!(errors(&respaced).0, opts, "options depend on spacing: {line:?}");

    if let Some(m) = opts.dom0_mem {
        assert!(m > 0, "dom0_mem=0 accepted");
    }
    if let Some(n) = opts.dom0_max_vcpus {
        assert!(n > 0, "dom0_max_vcpus=0 accepted");
    }

    // The value parsers on their own.
    for w in &words {
        let v = w.split_once('=').map_or(*w, |(_, v)| v);
        if let Some(n) = cmdline::parse_dom0_mem(v) {
            assert!(n > 0);
        }
        if let Some(n) = cmdline::parse_vcpus(v) {
            assert!(n > 0);
        }
        if let Some(size) = cmdline::parse_size(v) {
            let (digits, shift) = match v.as_bytes().last() {
                Some(b'k' | b'K') => (&v[..v.len() - 1], 10),
                Some(b'm' | b'M') => (&v[..v.len() - 1], 20),
                Some(b'g' | b'G') => (&v[..v.len() - 1], 30),
                Some(b't' | b'T') => (&v[..v.len() - 1], 40),
                _ => (v, 0),
            };
            let n: u64 = digits.parse().expect("parse_size accepted a non-number");
            assert_eq!(Some(size), n.checked_mul(1 << shift), "parse_size({v:?})");
        }
    }

    // Sizes written out read back.
    if data.len() >= 9 {
        let n = u64::from_le_bytes(data[..8].try_into().unwrap()) >> (data[8] % 64);
        for (suffix, shift) in [("", 0), ("K", 10), ("m", 20), ("G", 30), ("t", 40)] {
            let text = format!("{n}{suffix}");
            assert_eq!(cmdline::parse_size(&text), n.checked_mul(1 << shift), "parse_size({text:?})");
        }
    }
});
