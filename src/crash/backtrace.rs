//! Frame-pointer backtraces.
//!
//! Images are built with frame pointers, so every function pushes a frame
//! record `{previous fp, return address}` and points the frame pointer at it
//! (AArch64 AAPCS64 and the ARM `-C force-frame-pointers` layout used here
//! both keep `[fp] = previous fp, [fp + word] = return address`). The walk
//! trusts nothing: every frame must lie inside the stack, be aligned and move
//! towards the stack's top, so a corrupted stack ends the walk instead of
//! faulting again.

/// Most frames printed.
pub const MAX_FRAMES: usize = 32;

/// The stack the walk is allowed to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackBounds {
    /// Lowest address.
    pub bottom: u64,
    /// One past the highest address.
    pub top: u64,
}

/// Why a walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Reached a zero frame pointer (the bottom of the chain).
    End,
    /// The frame pointer left the stack or was misaligned.
    BadFrame(u64),
    /// The frame pointer did not move towards the top of the stack.
    Loop(u64),
    /// [`MAX_FRAMES`] reached.
    TooDeep,
}

/// Walks the chain starting at frame pointer `fp`, calling `out` with each
/// return address. `word` is the pointer size (8 or 4); `read` loads one word.
pub fn walk(
    mut fp: u64,
    bounds: StackBounds,
    word: u64,
    read: impl Fn(u64) -> u64,
    mut out: impl FnMut(u64),
) -> Stop {
    for _ in 0..MAX_FRAMES {
        if fp == 0 {
            return Stop::End;
        }
        if !fp.is_multiple_of(word) || fp < bounds.bottom || fp.saturating_add(2 * word) > bounds.top {
            return Stop::BadFrame(fp);
        }
        let next = read(fp);
        let ret = read(fp + word);
        if ret == 0 {
            return Stop::End;
        }
        out(ret);
        if next != 0 && next <= fp {
            return Stop::Loop(next);
        }
        fp = next;
    }
    Stop::TooDeep
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    fn mem(words: &[(u64, u64)]) -> impl Fn(u64) -> u64 {
        let m: BTreeMap<u64, u64> = words.iter().copied().collect();
        move |a| *m.get(&a).unwrap_or(&0)
    }

    const STACK: StackBounds = StackBounds { bottom: 0x1000, top: 0x2000 };

    #[test]
    fn follows_a_good_chain_to_the_end() {
        let read = mem(&[(0x1100, 0x1200), (0x1108, 0xaaa), (0x1200, 0x1300), (0x1208, 0xbbb), (0x1300, 0), (0x1308, 0xccc)]);
        let mut got = Vec::new();
        assert_eq!(walk(0x1100, STACK, 8, read, |r| got.push(r)), Stop::End);
        assert_eq!(got, [0xaaa, 0xbbb, 0xccc]);
    }

    #[test]
    fn stops_on_frames_outside_the_stack() {
        let read = mem(&[(0x1100, 0x9000), (0x1108, 0xaaa)]);
        let mut got = Vec::new();
        assert_eq!(walk(0x1100, STACK, 8, read, |r| got.push(r)), Stop::BadFrame(0x9000));
        assert_eq!(got, [0xaaa]);
        assert_eq!(walk(0x1104, STACK, 8, mem(&[]), |_| {}), Stop::BadFrame(0x1104));
    }

    #[test]
    fn stops_on_loops() {
        let read = mem(&[(0x1100, 0x1100), (0x1108, 0xaaa)]);
        assert_eq!(walk(0x1100, STACK, 8, read, |_| {}), Stop::Loop(0x1100));
    }

    #[test]
    fn thirty_two_bit_frames() {
        let read = mem(&[(0x1100, 0x1180), (0x1104, 0x11), (0x1180, 0), (0x1184, 0x22)]);
        let mut got = Vec::new();
        assert_eq!(walk(0x1100, STACK, 4, read, |r| got.push(r)), Stop::End);
        assert_eq!(got, [0x11, 0x22]);
    }
}
