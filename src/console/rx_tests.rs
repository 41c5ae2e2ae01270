//! Host tests of the console input path: the physical UART as QEMU models
//! it, dom0's emulated UART ([`crate::vpl011::Vpl011`]) read the way Linux's
//! `amba-pl011` driver reads it, and every interleaving a seeded scheduler
//! picks.

use super::*;
use crate::mmio::{AccessSize, MmioDevice};
use crate::vpl011::{Vpl011, int};
use std::collections::VecDeque;
use std::vec::Vec;

/// QEMU 7.2's PL011 receive side (`hw/char/pl011.c`), as far as the
/// hypervisor sees it: a FIFO the chardev fills only while there is room,
/// `RXRIS` raised when a byte brings the FIFO to its trigger level (QEMU
/// always uses 1) and lowered when a read takes it below, or by `ICR`; no
/// receive timeout.
struct QemuPl011 {
    fifo: VecDeque<u8>,
    depth: usize,
    rx_raw: bool,
    rx_enabled: bool,
}

impl QemuPl011 {
    fn new(depth: usize) -> Self {
        // The hypervisor unmasks RX/RT when dom0 starts.
        QemuPl011 { fifo: VecDeque::new(), depth, rx_raw: false, rx_enabled: true }
    }

    /// The chardev delivers a byte if the UART can take one.
    fn deliver(&mut self, b: u8) -> bool {
        if self.fifo.len() >= self.depth {
            return false;
        }
        self.fifo.push_back(b);
        if self.fifo.len() == 1 {
            self.rx_raw = true;
        }
        true
    }

    fn irq(&self) -> bool {
        self.rx_raw && self.rx_enabled
    }
}

impl PhysicalRx for QemuPl011 {
    fn get(&mut self) -> Option<u8> {
        let b = self.fifo.pop_front()?;
        if self.fifo.is_empty() {
            self.rx_raw = false;
        }
        Some(b)
    }

    fn clear_rx_interrupt(&mut self) {
        self.rx_raw = false;
    }

    fn mask_rx_interrupt(&mut self) {
        self.rx_enabled = false;
    }

    fn unmask_rx_interrupt(&mut self) {
        self.rx_enabled = true;
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

type Guest = Vpl011<fn(u8)>;

fn no_output(_: u8) {}

/// Dom0's UART after Linux's `pl011_startup`: FIFO on, trigger 1/2, RX and
/// RT unmasked.
fn guest() -> Guest {
    let g: Guest = Vpl011::new(no_output as fn(u8));
    g.write(0, 0x34, AccessSize::Half, 0x12).unwrap(); // IFLS
    g.write(0, 0x38, AccessSize::Half, u64::from(int::RX | int::RT)).unwrap(); // IMSC
    g
}

/// Everything that happens on the way, recorded.
#[derive(Default)]
struct Seen {
    dom0: Vec<u8>,
    keys: Vec<u8>,
    switches: Vec<Focus>,
}

/// Replays a session: `input` typed into the terminal, QEMU's PL011 with a
/// `depth`-byte FIFO, dom0 reading its UART when its interrupt is up (at
/// most `dom0_burst` bytes per interrupt, as a guest busy elsewhere), steps
/// interleaved at random from `seed`. Returns what arrived, once nothing
/// can happen any more.
fn replay(input: &[u8], depth: usize, dom0_burst: usize, seed: u64) -> (Seen, ConsoleRx) {
    let mut rx = ConsoleRx::new();
    rx.set_focus(Focus::Dom0);
    let mut uart = QemuPl011::new(depth);
    let g = guest();
    let mut seen = Seen::default();
    let mut rng = Rng(seed | 1);
    let mut typed = 0;
    // dom0's interrupt handler: bytes left to read in the current pass.
    let mut dom0_reading = 0usize;
    for _ in 0..10_000_000 {
        let can_type = typed < input.len() && uart.fifo.len() < uart.depth;
        let can_irq = uart.irq();
        let can_dom0 = dom0_reading > 0 || g.irq_level();
        if !(can_type || can_irq || can_dom0) {
            break;
        }
        match rng.below(3) {
            0 if can_type => {
                assert!(uart.deliver(input[typed]));
                typed += 1;
            }
            1 if can_irq => rx.on_interrupt(&mut uart, &g, |a| match a {
                Action::Switched(f) => seen.switches.push(f),
                Action::DebugKey(b) => seen.keys.push(b),
            }),
            2 if can_dom0 => {
                if dom0_reading == 0 {
                    dom0_reading = dom0_burst;
                }
                // pl011_fifo_to_tty: FR, then DR while RXFE is clear; each
                // trapped read ends in on_guest_read.
                let fr = g.read(0, 0x18, AccessSize::Half).unwrap();
                rx.on_guest_read(&mut uart, &g, |_| {});
                if fr & 0x10 != 0 {
                    dom0_reading = 0;
                } else {
                    seen.dom0.push(g.read(0, 0x00, AccessSize::Half).unwrap() as u8);
                    rx.on_guest_read(&mut uart, &g, |a| match a {
                        Action::Switched(f) => seen.switches.push(f),
                        Action::DebugKey(b) => seen.keys.push(b),
                    });
                    dom0_reading -= 1;
                }
            }
            _ => {}
        }
    }
    assert_eq!(g.rx_overruns(), 0, "dom0's FIFO overran");
    (seen, rx)
}

/// A known text of `n` bytes, no Ctrl-A in it.
fn text(n: usize) -> Vec<u8> {
    (0..n).map(|i| b"0123456789abcdefghijklmnopqrstuvwxyz ;-"[i % 39]).collect()
}

#[test]
fn a_pasted_line_arrives_whole_and_in_order() {
    // The failing case of `./x run`: 50 bytes at once stopped after ~30.
    let line = text(50);
    for seed in 0..200 {
        let (seen, rx) = replay(&line, 16, usize::MAX, seed);
        assert_eq!(seen.dom0, line, "seed {seed}");
        assert_eq!(rx.queued(), 0);
        assert!(!rx.throttled());
    }
}

#[test]
fn four_kib_pasted_arrive_with_every_fifo_depth_and_slow_readers() {
    let paste = text(4096 + 1000);
    for (depth, burst, seed) in [(16, usize::MAX, 1), (32, usize::MAX, 2), (1, usize::MAX, 3), (16, 1, 4), (32, 5, 5)] {
        let (seen, rx) = replay(&paste, depth, burst, seed);
        assert!(
            seen.dom0 == paste,
            "depth {depth}, burst {burst}: {} of {} bytes arrived",
            seen.dom0.len(),
            paste.len()
        );
        assert!(!rx.throttled());
    }
}

#[test]
fn a_full_queue_throttles_the_physical_uart_and_resumes_by_draining_it() {
    // Dom0 reads nothing at first: the queue fills, the physical interrupt
    // is masked with bytes left in the physical FIFO and its RX cleared.
    let paste = text(QUEUE_SIZE + 100);
    let mut rx = ConsoleRx::new();
    rx.set_focus(Focus::Dom0);
    let mut uart = QemuPl011::new(16);
    let g = guest();
    let mut typed = paste.iter();
    loop {
        while uart.fifo.len() < uart.depth {
            let Some(&b) = typed.next() else { break };
            uart.deliver(b);
        }
        if !uart.irq() {
            break;
        }
        rx.on_interrupt(&mut uart, &g, |_| panic!("no action expected"));
    }
    assert!(rx.throttled());
    assert_eq!(rx.throttles(), 1);
    assert!(!uart.fifo.is_empty() && !uart.irq(), "input waits in the physical UART, its interrupt masked");
    // Dom0's FIFO is full, the queue has less room than a switch can release.
    assert_eq!(g.rx_space(), 0);
    assert_eq!(rx.queued(), QUEUE_SIZE - usize::from(SWITCH_COUNT) + 1);
    // Now dom0 reads. Nothing but its reads moves the input along: the
    // physical UART will not interrupt again by itself.
    let mut got = Vec::new();
    loop {
        let fr = g.read(0, 0x18, AccessSize::Half).unwrap();
        if fr & 0x10 != 0 {
            break;
        }
        got.push(g.read(0, 0, AccessSize::Half).unwrap() as u8);
        rx.on_guest_read(&mut uart, &g, |_| {});
        // The rest of the paste follows as the FIFO empties.
        while uart.fifo.len() < uart.depth {
            let Some(&b) = typed.next() else { break };
            uart.deliver(b);
        }
        if uart.irq() {
            rx.on_interrupt(&mut uart, &g, |_| {});
        }
    }
    assert!(got == paste, "{} of {} bytes arrived", got.len(), paste.len());
    assert!(!rx.throttled() && uart.rx_enabled);
}

#[test]
fn the_switch_works_while_dom0_reads_nothing() {
    // Dom0 is stuck (never reads): what is typed for it waits in the queue,
    // the switch and the debug keys still work, and the queued bytes go to
    // dom0, not to the debug keys.
    let mut rx = ConsoleRx::new();
    rx.set_focus(Focus::Dom0);
    let mut uart = QemuPl011::new(16);
    let g = guest();
    let mut actions = Vec::new();
    let typed = [text(100).as_slice(), b"\x01\x01\x01h\x01\x01\x01"].concat();
    for &b in &typed {
        uart.deliver(b);
        if uart.irq() {
            rx.on_interrupt(&mut uart, &g, |a| actions.push(a));
        }
    }
    assert_eq!(actions, [Action::Switched(Focus::Hypervisor), Action::DebugKey(b'h'), Action::Switched(Focus::Dom0)]);
    assert_eq!(rx.queued() + crate::vpl011::FIFO_DEPTH, 100);
    let (seen, _) = {
        let mut got = Vec::new();
        while g.read(0, 0x18, AccessSize::Half).unwrap() & 0x10 == 0 {
            got.push(g.read(0, 0, AccessSize::Half).unwrap() as u8);
            rx.on_guest_read(&mut uart, &g, |_| {});
        }
        (got, ())
    };
    assert_eq!(seen, text(100));
}

#[test]
fn switches_and_debug_keys_in_a_paste() {
    let typed = [b"ab\x01\x01\x01hd\x01\x01\x01cd\x01x".as_slice(), &text(200)].concat();
    for seed in 0..50 {
        let (seen, _) = replay(&typed, 16, usize::MAX, seed);
        assert_eq!(seen.switches, [Focus::Hypervisor, Focus::Dom0], "seed {seed}");
        assert_eq!(seen.keys, b"hd", "seed {seed}");
        assert_eq!(seen.dom0, [b"abcd\x01x".as_slice(), &text(200)].concat(), "seed {seed}");
    }
}
