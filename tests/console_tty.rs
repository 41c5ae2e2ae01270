//! dom0's console driven through a terminal, the way a person uses
//! `./x run`: the same QEMU invocation (`xtask::dom0::run_machine`, U-Boot,
//! the interactive console on a multiplexed stdio chardev) started on a
//! pseudo-terminal, one boot of Debian's Linux as dom0 with a shell:
//!
//! - **a pasted line**: a 56-byte command line with its Enter, written to
//!   the terminal in one go (what a terminal's paste or `tmux send-keys`
//!   does), runs. Before the fix, input stopped for good after about 30
//!   bytes: flow control masked the physical UART's receive interrupt with
//!   bytes left in its FIFO and nothing ever raised it again;
//! - **4 KiB pasted**: a here-doc of 64 lines (4096 bytes) written in one
//!   go; the shell stores it and prints its MD5 and size, which must be the
//!   host's: every byte arrived, in order;
//! - **the input switch through QEMU**: Ctrl-A three times gives the input
//!   to Armature (its message appears), the debug key `h` answers, Ctrl-A
//!   three times gives it back and the shell runs the next command. Before
//!   `./x run` moved QEMU's escape key (`-echr`), QEMU ate the Ctrl-As;
//! - **QEMU's escape key** ([`xtask::qemu::ESCAPE`], Ctrl-]) then `x` quits
//!   QEMU, with exit status 0.
//!
//! The terminal's output is kept in `target/armature/logs/console-tty.tty.log`,
//! QEMU's console log in `console-tty.log`.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xtask::dom0::{self, Dom0, Hypervisor, RunMachine};
use xtask::uboot::Environment;
use xtask::{Arch, Qemu, paths};

/// Until dom0's shell prompt (U-Boot, Linux's boot, under TCG on a busy
/// machine).
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// For each answer after that.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// dom0's shell prompt.
const PROMPT: &str = "dom0:/# ";
const TO_HYPERVISOR: &str =
    "*** Console input now goes to the hypervisor (press Ctrl-A three times to switch; 'h' lists the debug keys)";
const TO_DOM0: &str = "*** Console input now goes to dom0 (press Ctrl-A three times to switch)";

/// QEMU on a pseudo-terminal, with everything it printed.
struct Terminal {
    master: File,
    output: Arc<Mutex<Vec<u8>>>,
    child: Child,
}

impl Terminal {
    /// Starts `qemu` with a new pseudo-terminal (200×50) as its
    /// controlling terminal and stdio.
    fn start(qemu: &Qemu, log: std::path::PathBuf) -> Terminal {
        let (mut m, mut s) = (-1, -1);
        let size = libc::winsize { ws_row: 50, ws_col: 200, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: openpty writes two descriptors into the integers it is
        // given; no name buffer, default termios, a valid winsize.
        let rc = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &size) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened by openpty and are
        // owned by nothing else.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup of the terminal"));
        let mut cmd = Command::new(qemu.program());
        cmd.args(qemu.arguments()).stdin(stdio(&slave)).stdout(stdio(&slave)).stderr(stdio(&slave));
        // SAFETY: between fork and exec the closure only makes
        // async-signal-safe calls (setsid, ioctl, prctl).
        unsafe {
            cmd.pre_exec(|| {
                // A session of its own with the terminal as controlling
                // terminal, as a shell would start it; dies with the test.
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", qemu.program()));
        drop(slave);
        let master = File::from(master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("dup of the master");
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut file = File::create(&log).ok();
            let mut buf = [0u8; 4096];
            // EIO once QEMU has exited and the terminal has no other user.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
                if let Some(f) = file.as_mut() {
                    let _ = f.write_all(&buf[..n]);
                }
            }
        });
        Terminal { master, output, child }
    }

    /// Types (or pastes) `bytes`, in one write.
    fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("writing to the terminal");
    }

    /// The output so far, carriage returns removed.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).replace('\r', "")
    }

    /// Waits until `needle` appears after byte `from` of [`text`](Self::text);
    /// returns where it ends.
    #[track_caller]
    fn wait_for(&self, needle: &str, from: usize, timeout: Duration) -> usize {
        let start = Instant::now();
        loop {
            let text = self.text();
            if let Some(at) = text.get(from..).and_then(|t| t.find(needle)) {
                return from + at + needle.len();
            }
            if start.elapsed() > timeout {
                let tail: String = text.chars().rev().take(3000).collect::<Vec<_>>().into_iter().rev().collect();
                panic!("{needle:?} did not appear in {timeout:?}; the terminal's output ends with:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn paste_and_input_switch_through_a_terminal() {
    let test = "console-tty";
    let image = common::image(Arch::Aarch64, &[]).bin;
    let kernel = xtask::debian::kernel().unwrap_or_else(|e| panic!("{e}"));
    let (_, busybox) = xtask::debian::busybox().unwrap_or_else(|e| panic!("{e}"));
    let initrd = xtask::initramfs::dom0_initramfs(&busybox, &kernel.modules).unwrap_or_else(|e| panic!("{e}"));
    // `./x run`'s defaults: 4 CPUs, 2 GiB, GICv3, U-Boot.
    let qemu = Qemu::new(Arch::Aarch64).memory("2G");
    let d = Dom0::new(Hypervisor::Armature, &kernel.image, &initrd, qemu.cpus());
    let machine = RunMachine {
        hv_image: &image,
        image_file: xtask::uboot::IMAGE_FILE,
        direct: false,
        env: Environment::Fast,
        interactive: true,
        name: test,
    };
    let (qemu, _log) = dom0::run_machine(qemu, d, &machine).unwrap_or_else(|e| panic!("{e}"));
    let line = qemu.command_line();
    assert!(line.contains(" -echr 0x1d "), "QEMU's escape key is not moved off Ctrl-A: {line}");
    let mut tty = Terminal::start(&qemu, paths::log_path(&format!("{test}.tty")));
    let mut at = tty.wait_for(TO_DOM0, 0, BOOT_TIMEOUT);
    at = tty.wait_for(PROMPT, at, BOOT_TIMEOUT);

    // A command line longer than dom0's receive FIFO, with its Enter, in one
    // write: the failing paste.
    let tail = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ";
    tty.send(format!("echo pasted-$((6*7))-{tail}\r").as_bytes());
    at = tty.wait_for(&format!("\npasted-42-{tail}\n{PROMPT}"), at, STEP_TIMEOUT);

    // 4 KiB in one write; the shell prints what it got.
    let (paste, answer) = common::paste_4k();
    tty.send(paste.as_bytes());
    at = tty.wait_for(&format!("{answer}{PROMPT}"), at, STEP_TIMEOUT);

    // The input switch, through QEMU's multiplexer.
    tty.send(b"\x01\x01\x01");
    at = tty.wait_for(TO_HYPERVISOR, at, STEP_TIMEOUT);
    tty.send(b"h");
    at = tty.wait_for("'R': reset the machine\n", at, STEP_TIMEOUT);
    tty.send(b"\x01\x01\x01");
    at = tty.wait_for(TO_DOM0, at, STEP_TIMEOUT);
    tty.send(b"echo back-$((50+8))\r");
    at = tty.wait_for("\nback-58\n", at, STEP_TIMEOUT);
    let text = tty.text();
    assert!(!text.contains("is not a debug key"), "dom0's input reached the debug keys:\n{text}");
    assert!(!text.contains(": not found"), "dom0's shell got a mangled command:\n{text}");

    // QEMU's escape key, then x: QEMU quits.
    tty.send(&[xtask::qemu::ESCAPE.byte]);
    tty.send(b"x");
    tty.wait_for("QEMU: Terminated", at, STEP_TIMEOUT);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = tty.child.try_wait().expect("waiting for QEMU") {
            break s;
        }
        assert!(start.elapsed() < STEP_TIMEOUT, "QEMU did not exit after {} x", xtask::qemu::ESCAPE.name);
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "QEMU exited with {status}");
}
