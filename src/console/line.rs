//! Turning a guest's console byte stream into log lines.
//!
//! A guest writes its console a byte at a time; the hypervisor's log is
//! written a line at a time under the console lock, so a line a test guest
//! writes through the console hypercall is collected in a [`LineBuf`] and
//! logged whole, with its vCPU (`d0v1: …`), between the hypervisor's own
//! lines (dom0's emulated UART writes through instead: see
//! `Console::write_guest`). [`Printable`] shows the bytes as
//! text without letting control characters (other than tab and escape, so
//! that colours survive) disturb the log.

use core::fmt;

/// One line of console output being collected, at most `N` bytes long
/// (a longer line is cut into several).
#[derive(Clone, Debug)]
pub struct LineBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// The buffer was handed out as a finished line: start afresh at the
    /// next byte.
    done: bool,
    /// A byte that did not fit in the full line returned last: it starts
    /// the next one.
    carry: Option<u8>,
}

impl<const N: usize> Default for LineBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LineBuf<N> {
    /// An empty line.
    pub const fn new() -> Self {
        LineBuf { buf: [0; N], len: 0, done: false, carry: None }
    }

    fn restart(&mut self) {
        if core::mem::take(&mut self.done) {
            self.len = 0;
        }
        if let Some(b) = self.carry.take() {
            self.store(b);
        }
    }

    fn store(&mut self, byte: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    /// Adds `byte`. Returns a finished line, without its end, when `byte`
    /// ends one: a `\n`, or a byte that no longer fits (the full buffer is
    /// returned and the byte starts the next line). `\r` is dropped (Linux
    /// ends console lines with `\r\n`). The line stays valid until the next
    /// call.
    pub fn push(&mut self, byte: u8) -> Option<&[u8]> {
        self.restart();
        match byte {
            b'\n' => {
                self.done = true;
                Some(&self.buf[..self.len])
            }
            b'\r' => None,
            _ if self.len == N => {
                self.done = true;
                self.carry = Some(byte);
                Some(&self.buf[..self.len])
            }
            _ => {
                self.store(byte);
                None
            }
        }
    }

    /// Takes the unfinished line, if it has anything in it: for output that
    /// does not end with a newline, such as a login prompt, which the
    /// caller flushes when the guest has gone quiet (or input switches to
    /// it).
    pub fn flush(&mut self) -> Option<&[u8]> {
        self.restart();
        if self.len == 0 {
            return None;
        }
        self.done = true;
        Some(&self.buf[..self.len])
    }

    /// The unfinished line so far.
    pub fn pending(&self) -> &[u8] {
        match (self.done, &self.carry) {
            (true, Some(b)) => core::slice::from_ref(b),
            (true, None) => &[],
            (false, _) => &self.buf[..self.len],
        }
    }
}

/// Console bytes shown as text: valid UTF-8 as it is, tab and escape as
/// they are, other control characters and invalid bytes as `\xNN`.
#[derive(Clone, Copy, Debug)]
pub struct Printable<'a>(pub &'a [u8]);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_control() && c != '\t' && c != '\x1b' {
                    write!(f, "\\x{:02x}", c as u32)?;
                } else {
                    fmt::Write::write_char(f, c)?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::{String, ToString};
    use std::vec::Vec;

    fn lines<const N: usize>(l: &mut LineBuf<N>, bytes: &[u8]) -> Vec<String> {
        bytes.iter().filter_map(|&b| l.push(b).map(|s| String::from_utf8(s.to_vec()).unwrap())).collect()
    }

    #[test]
    fn lines_end_at_newlines_and_carriage_returns_vanish() {
        let mut l = LineBuf::<16>::new();
        assert_eq!(lines(&mut l, b"Booting Linux\r\n[ 0.0] x\r\n\r\nlog"), ["Booting Linux", "[ 0.0] x", ""]);
        assert_eq!(l.pending(), b"log");
        assert_eq!(lines(&mut l, b"in: \n"), ["login: "]);
        assert_eq!(l.pending(), b"");
    }

    #[test]
    fn long_lines_are_cut_without_losing_bytes() {
        let mut l = LineBuf::<4>::new();
        assert_eq!(lines(&mut l, b"abcdefghij\n"), ["abcd", "efgh", "ij"]);
        // Exactly full, then the newline: one line, no empty one after it.
        assert_eq!(lines(&mut l, b"wxyz\nk\n"), ["wxyz", "k"]);
        // A carried byte shows as pending.
        assert_eq!(lines(&mut l, b"12345"), ["1234"]);
        assert_eq!(l.pending(), b"5");
        assert_eq!(l.flush(), Some(&b"5"[..]));
    }

    #[test]
    fn flush_takes_a_partial_line_once() {
        let mut l = LineBuf::<32>::new();
        assert_eq!(l.flush(), None);
        assert_eq!(lines(&mut l, b"debian login: "), Vec::<String>::new());
        assert_eq!(l.flush(), Some(&b"debian login: "[..]));
        assert_eq!(l.flush(), None);
        assert_eq!(lines(&mut l, b"root\n"), ["root"]);
    }

    #[test]
    fn printable_escapes_control_characters() {
        let s = |b: &[u8]| Printable(b).to_string();
        assert_eq!(s(b"plain text"), "plain text");
        assert_eq!(s("größe".as_bytes()), "größe");
        assert_eq!(s(b"\x1b[0;32m  OK  \x1b[0m\tdone"), "\x1b[0;32m  OK  \x1b[0m\tdone");
        assert_eq!(s(b"bell\x07 nul\x00 del\x7f"), "bell\\x07 nul\\x00 del\\x7f");
        assert_eq!(s(b"bad \xff\xfe!"), "bad \\xff\\xfe!");
    }
}
