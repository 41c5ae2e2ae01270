//! Console input: who gets the keys typed on the physical console.
//!
//! Input goes either to the hypervisor, whose keys are debug commands
//! ([`DebugKey`]), or to dom0's emulated UART. As on Xen, pressing Ctrl-A
//! three times in a row switches between the two; the three Ctrl-A are
//! swallowed. Fewer Ctrl-A followed by another key are passed on, all of
//! them, to whoever has the input. The hypervisor starts with the input and
//! the caller hands it to dom0 ([`InputSwitch::set_focus`]) once dom0 runs.
//!
//! Pure logic: [`InputSwitch::feed`] takes one byte and says where it (and
//! any Ctrl-A it held back) goes, or that the input switched; the caller
//! logs [`Focus::switch_message`], pushes dom0's bytes into its UART model
//! (`crate::vpl011::Vpl011::push_rx`) and runs the debug keys' actions.
//!
//! The caller, [`crate::console::rx`], reads the bytes from the physical
//! UART's receive interrupt
//! ([`crate::console::pl011::Pl011::enable_rx_interrupt`]).

use core::fmt;

/// Ctrl-A, the switch key.
pub const SWITCH_CHAR: u8 = 0x01;

/// How many switch keys in a row switch the input.
pub const SWITCH_COUNT: u8 = 3;

/// Who receives console input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    /// The hypervisor: keys are debug commands.
    Hypervisor,
    /// Dom0's console UART.
    Dom0,
}

impl Focus {
    /// The other one.
    pub fn other(self) -> Focus {
        match self {
            Focus::Hypervisor => Focus::Dom0,
            Focus::Dom0 => Focus::Hypervisor,
        }
    }

    /// The line to log when input switches to `self`.
    pub fn switch_message(self) -> SwitchMessage {
        SwitchMessage(self)
    }
}

impl fmt::Display for Focus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Focus::Hypervisor => "the hypervisor",
            Focus::Dom0 => "dom0",
        })
    }
}

/// "*** Console input now goes to dom0 (press Ctrl-A three times to switch)".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchMessage(Focus);

impl fmt::Display for SwitchMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "*** Console input now goes to {} (press Ctrl-A three times to switch", self.0)?;
        if self.0 == Focus::Hypervisor {
            f.write_str("; 'h' lists the debug keys")?;
        }
        f.write_str(")")
    }
}

/// Up to [`SWITCH_COUNT`] bytes for one receiver: held-back Ctrl-As, then
/// the byte that followed them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Bytes {
    bytes: [u8; SWITCH_COUNT as usize],
    len: u8,
}

impl Bytes {
    fn new(held: u8, byte: u8) -> Self {
        let mut bytes = [SWITCH_CHAR; SWITCH_COUNT as usize];
        let n = usize::from(held).min(bytes.len() - 1);
        bytes[n] = byte;
        Bytes { bytes, len: n as u8 + 1 }
    }

    /// The bytes, in order.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x?}", self.as_slice())
    }
}

/// What to do with a byte of input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A Ctrl-A held back: it may be part of a switch.
    Held,
    /// Input switched to this receiver (log [`Focus::switch_message`]).
    Switched(Focus),
    /// Bytes for dom0's console.
    Dom0(Bytes),
    /// Bytes for the hypervisor: see [`DebugKey::from_byte`].
    Hypervisor(Bytes),
}

/// The input switch state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputSwitch {
    focus: Focus,
    held: u8,
}

impl Default for InputSwitch {
    fn default() -> Self {
        Self::new()
    }
}

impl InputSwitch {
    /// Input with the hypervisor.
    pub const fn new() -> Self {
        InputSwitch { focus: Focus::Hypervisor, held: 0 }
    }

    /// Who has the input.
    pub fn focus(&self) -> Focus {
        self.focus
    }

    /// Gives the input to `focus` (e.g. to dom0 when it starts); returns
    /// true if that changed it. Any held Ctrl-A is dropped.
    pub fn set_focus(&mut self, focus: Focus) -> bool {
        self.held = 0;
        core::mem::replace(&mut self.focus, focus) != focus
    }

    /// One byte typed on the console.
    pub fn feed(&mut self, byte: u8) -> Event {
        if byte == SWITCH_CHAR {
            self.held += 1;
            if self.held < SWITCH_COUNT {
                return Event::Held;
            }
            self.held = 0;
            self.focus = self.focus.other();
            return Event::Switched(self.focus);
        }
        let bytes = Bytes::new(core::mem::take(&mut self.held), byte);
        match self.focus {
            Focus::Dom0 => Event::Dom0(bytes),
            Focus::Hypervisor => Event::Hypervisor(bytes),
        }
    }
}

/// A hypervisor debug key's command. The caller carries them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugKey {
    /// `h`: list the keys ([`DebugKey::help`]).
    Help,
    /// `d`: dump each vCPU's state (physical CPU, PSCI power state) and,
    /// for those running, registers.
    DumpVcpus,
    /// `q`: dump the domains (memory, vCPU power states, MMIO regions).
    DumpDomains,
    /// `i`: dump the virtual interrupt state (vGIC).
    DumpInterrupts,
    /// `R`: reset the machine.
    Reboot,
}

impl DebugKey {
    /// Every key, in help order.
    pub const ALL: [DebugKey; 5] =
        [DebugKey::Help, DebugKey::DumpVcpus, DebugKey::DumpDomains, DebugKey::DumpInterrupts, DebugKey::Reboot];

    /// The key's character.
    pub fn key(self) -> char {
        match self {
            DebugKey::Help => 'h',
            DebugKey::DumpVcpus => 'd',
            DebugKey::DumpDomains => 'q',
            DebugKey::DumpInterrupts => 'i',
            DebugKey::Reboot => 'R',
        }
    }

    /// What it does, for the help.
    pub fn description(self) -> &'static str {
        match self {
            DebugKey::Help => "list the debug keys",
            DebugKey::DumpVcpus => "dump the vCPUs' state and registers",
            DebugKey::DumpDomains => "dump the domains",
            DebugKey::DumpInterrupts => "dump the virtual interrupt state",
            DebugKey::Reboot => "reset the machine",
        }
    }

    /// The command for a byte typed while the hypervisor has the input:
    /// `Ok(None)` for bytes that are no command and deserve no complaint
    /// (Enter, space, control characters such as a held-back Ctrl-A), `Err`
    /// with the byte for an unknown key.
    pub fn from_byte(byte: u8) -> Result<Option<DebugKey>, u8> {
        if byte.is_ascii_control() || byte == b' ' {
            return Ok(None);
        }
        Self::ALL.into_iter().find(|k| k.key() as u32 == u32::from(byte)).map(Some).ok_or(byte)
    }

    /// The help, one line per key: `'h': list the debug keys`.
    pub fn help() -> impl Iterator<Item = HelpLine> {
        Self::ALL.into_iter().map(HelpLine)
    }
}

/// One line of the debug-key help.
#[derive(Clone, Copy, Debug)]
pub struct HelpLine(DebugKey);

impl fmt::Display for HelpLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}': {}", self.0.key(), self.0.description())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    fn feed_all(s: &mut InputSwitch, bytes: &[u8]) -> Vec<Event> {
        bytes.iter().map(|&b| s.feed(b)).collect()
    }

    /// The bytes each receiver got, and the switches.
    fn route(s: &mut InputSwitch, bytes: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<Focus>) {
        let (mut dom0, mut hyp, mut switches) = (Vec::new(), Vec::new(), Vec::new());
        for e in feed_all(s, bytes) {
            match e {
                Event::Held => {}
                Event::Switched(f) => switches.push(f),
                Event::Dom0(b) => dom0.extend_from_slice(b.as_slice()),
                Event::Hypervisor(b) => hyp.extend_from_slice(b.as_slice()),
            }
        }
        (dom0, hyp, switches)
    }

    #[test]
    fn three_ctrl_a_switch_and_are_swallowed() {
        let mut s = InputSwitch::new();
        assert_eq!(s.focus(), Focus::Hypervisor);
        assert_eq!(feed_all(&mut s, b"\x01\x01\x01"), [Event::Held, Event::Held, Event::Switched(Focus::Dom0)]);
        assert_eq!(s.focus(), Focus::Dom0);
        assert_eq!(route(&mut s, b"ls\r"), (b"ls\r".to_vec(), Vec::new(), Vec::new()));
    }

    #[test]
    fn fewer_ctrl_a_are_passed_on_with_the_next_key() {
        let mut s = InputSwitch::new();
        s.set_focus(Focus::Dom0);
        assert_eq!(route(&mut s, b"\x01\x01x"), (b"\x01\x01x".to_vec(), Vec::new(), Vec::new()));
        // One Ctrl-A then a key (screen/tmux's prefix, Emacs' line start).
        assert_eq!(s.feed(0x01), Event::Held);
        match s.feed(b'c') {
            Event::Dom0(b) => assert_eq!(b.as_slice(), b"\x01c"),
            e => panic!("{e:?}"),
        }
        // With the hypervisor, the held Ctrl-As go to it too (and are no key).
        s.set_focus(Focus::Hypervisor);
        assert_eq!(route(&mut s, b"\x01h"), (Vec::new(), b"\x01h".to_vec(), Vec::new()));
    }

    #[test]
    fn switching_alternates() {
        let mut s = InputSwitch::new();
        let (dom0, hyp, switches) = route(&mut s, b"a\x01\x01\x01b\x01\x01\x01c\x01\x01\x01\x01\x01\x01d");
        assert_eq!(switches, [Focus::Dom0, Focus::Hypervisor, Focus::Dom0, Focus::Hypervisor]);
        assert_eq!(dom0, b"b");
        assert_eq!(hyp, b"acd");
        // Six in a row are two switches, not one switch and three held.
        assert_eq!(s.focus(), Focus::Hypervisor);
    }

    #[test]
    fn set_focus_reports_changes_and_drops_held_keys() {
        let mut s = InputSwitch::new();
        assert_eq!(s.feed(0x01), Event::Held);
        assert!(s.set_focus(Focus::Dom0));
        assert!(!s.set_focus(Focus::Dom0));
        // The held Ctrl-A is gone: two more do not switch.
        assert_eq!(feed_all(&mut s, b"\x01\x01"), [Event::Held, Event::Held]);
        assert_eq!(s.focus(), Focus::Dom0);
    }

    #[test]
    fn debug_keys_dispatch() {
        assert_eq!(DebugKey::from_byte(b'h'), Ok(Some(DebugKey::Help)));
        assert_eq!(DebugKey::from_byte(b'd'), Ok(Some(DebugKey::DumpVcpus)));
        assert_eq!(DebugKey::from_byte(b'q'), Ok(Some(DebugKey::DumpDomains)));
        assert_eq!(DebugKey::from_byte(b'i'), Ok(Some(DebugKey::DumpInterrupts)));
        assert_eq!(DebugKey::from_byte(b'R'), Ok(Some(DebugKey::Reboot)));
        assert_eq!(DebugKey::from_byte(b'r'), Err(b'r'), "keys are case-sensitive");
        assert_eq!(DebugKey::from_byte(0xe9), Err(0xe9));
        for quiet in [b'\r', b'\n', b' ', 0x01, 0x7f] {
            assert_eq!(DebugKey::from_byte(quiet), Ok(None));
        }
        // Every key is distinct and listed in the help.
        let help: Vec<_> = DebugKey::help().map(|l| l.to_string()).collect();
        assert_eq!(help[0], "'h': list the debug keys");
        assert_eq!(help.len(), DebugKey::ALL.len());
        for k in DebugKey::ALL {
            assert_eq!(DebugKey::from_byte(k.key() as u8), Ok(Some(k)));
        }
    }

    #[test]
    fn switch_messages() {
        assert_eq!(
            Focus::Dom0.switch_message().to_string(),
            "*** Console input now goes to dom0 (press Ctrl-A three times to switch)"
        );
        assert_eq!(
            Focus::Hypervisor.switch_message().to_string(),
            "*** Console input now goes to the hypervisor (press Ctrl-A three times to switch; 'h' lists the debug keys)"
        );
    }
}
