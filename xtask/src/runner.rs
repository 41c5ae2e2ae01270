//! Running an emulator and judging its serial console.
//!
//! A run is described by an [`Expect`]: markers that must appear in order,
//! failure markers that end the run at once as a failure (a crash dump
//! header, `PANIC`, `FATAL`), an optional stop marker that ends it at once as
//! a success (for runs that halt instead of powering off), a timeout, and
//! whether the emulator must exit by itself with status 0, and optionally
//! keys to type on the console once some text has appeared
//! ([`Expect::input_after`]). The emulator is started in its own process
//! group with stdin closed (a pipe the keys are typed into when the run has
//! input), is killed by the
//! kernel should the harness die first, and its whole group is killed when
//! the run ends. The [`Outcome`] keeps the whole console log,
//! the exit status and the time to each marker, and its [`Outcome::verdict`]
//! explains a failure with the missing markers and the whole log.
//!
//! Note that with `-no-reboot` QEMU exits 0 after a reset too (a panicking
//! guest that resets looks like a clean exit): success comes from markers.

use crate::{Context, Result};
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// Markers that mean Armature crashed or refused to run.
pub const DEFAULT_FAILURE_MARKERS: [&str; 3] = ["----[ Armature", "PANIC", "FATAL"];
/// Default time a run may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the console is still read after a stop marker (rest of the line).
const STOP_LINGER: Duration = Duration::from_millis(250);
/// How long the console is still read after a failure marker (the crash dump).
const FAILURE_LINGER: Duration = Duration::from_secs(1);
/// Typed input goes to the emulator this many bytes at a time…
pub const INPUT_CHUNK: usize = 8;
/// …with this pause after each piece: a guest's UART FIFO (16 bytes on
/// QEMU's PL011, 32 in Armature's emulated one) is never flooded.
pub const INPUT_PAUSE: Duration = Duration::from_millis(60);

/// Keys to type on the console once some text has appeared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// The text to wait for. It must appear after the previous input was
    /// typed (anywhere in the console for the first input).
    pub after: String,
    /// What to type.
    pub bytes: Vec<u8>,
}

/// What a run must show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    markers: Vec<String>,
    failure_markers: Vec<String>,
    stop_marker: Option<String>,
    timeout: Duration,
    idle_timeout: Option<Duration>,
    clean_exit: bool,
    inputs: Vec<Input>,
    typing: (usize, Duration),
}

impl Default for Expect {
    fn default() -> Self {
        Self::new()
    }
}

impl Expect {
    /// No markers, the default failure markers, no stop marker, a 60 s
    /// timeout, no exit status requirement.
    pub fn new() -> Self {
        Expect {
            markers: Vec::new(),
            failure_markers: DEFAULT_FAILURE_MARKERS.iter().map(|s| s.to_string()).collect(),
            stop_marker: None,
            timeout: DEFAULT_TIMEOUT,
            idle_timeout: None,
            clean_exit: false,
            inputs: Vec::new(),
            typing: (INPUT_CHUNK, INPUT_PAUSE),
        }
    }

    /// Adds a marker: it must appear after all markers added before it.
    pub fn marker(mut self, marker: impl Into<String>) -> Self {
        self.markers.push(marker.into());
        self
    }

    /// Adds markers, in order.
    pub fn markers<S: Into<String>>(mut self, markers: impl IntoIterator<Item = S>) -> Self {
        self.markers.extend(markers.into_iter().map(Into::into));
        self
    }

    /// Replaces the failure markers (seeing any of them anywhere fails the run).
    pub fn failure_markers<S: Into<String>>(mut self, markers: impl IntoIterator<Item = S>) -> Self {
        self.failure_markers = markers.into_iter().map(Into::into).collect();
        self
    }

    /// Ends the run as soon as `marker` appears (the machine will not power off).
    pub fn stop_on(mut self, marker: impl Into<String>) -> Self {
        self.stop_marker = Some(marker.into());
        self
    }

    /// The time limit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Ends the run as timed out when the console has been silent for this
    /// long (a guest that hangs fails early instead of at the time limit).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// Requires the emulator to exit by itself with status 0. Without it, a
    /// run with markers and no stop marker ends once every marker was seen.
    pub fn clean_exit(mut self, required: bool) -> Self {
        self.clean_exit = required;
        self
    }

    /// Types `bytes` on the console (the emulator's stdin) once `marker`
    /// has appeared. Inputs are typed in the order they are added, each
    /// waiting for its marker in the output that follows the previous
    /// input (so a shell prompt printed again after a command counts as a
    /// new prompt). The bytes go [`INPUT_CHUNK`] at a time, [`INPUT_PAUSE`]
    /// apart unless [`Expect::typing`] says otherwise. An input never typed
    /// fails the run.
    pub fn input_after(mut self, marker: impl Into<String>, bytes: impl AsRef<[u8]>) -> Self {
        self.inputs.push(Input { after: marker.into(), bytes: bytes.as_ref().to_vec() });
        self
    }

    /// How inputs are typed: `chunk` bytes at a time (at least 1), with
    /// `pause` after each piece.
    pub fn typing(mut self, chunk: usize, pause: Duration) -> Self {
        self.typing = (chunk.max(1), pause);
        self
    }

    /// The inputs, in order.
    pub fn inputs(&self) -> &[Input] {
        &self.inputs
    }
}

/// How a run is shown and recorded (nothing here affects the verdict).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Copy the console to stdout as it arrives.
    pub echo: bool,
    /// Write the console log (and a summary line) to this file as it arrives.
    pub log_file: Option<PathBuf>,
}

impl RunOptions {
    /// Echo the console to the terminal.
    pub fn echo(mut self, on: bool) -> Self {
        self.echo = on;
        self
    }

    /// Keep the log in `path`.
    pub fn log_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_file = Some(path.into());
        self
    }
}

/// What the console showed so far: a state machine fed with console bytes.
#[derive(Debug)]
pub struct Monitor<'e> {
    expect: &'e Expect,
    /// Console output so far, carriage returns dropped.
    raw: Vec<u8>,
    /// Index of the next ordered marker to look for.
    next: usize,
    /// Where in `raw` the search for it starts (just after the previous one).
    search_from: usize,
    hits: Vec<Option<Duration>>,
    failure: Option<(String, Duration)>,
    stopped: Option<Duration>,
    /// Index of the next input to type.
    next_input: usize,
    /// Where in `raw` its marker is looked for (the console's length when
    /// the previous input was typed).
    input_from: usize,
    /// How much of `raw` was searched for that marker already.
    input_scanned: usize,
    /// When each input was typed.
    typed: Vec<Option<Duration>>,
}

/// What the latest console output means for the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Keep going.
    Continue,
    /// The stop marker was seen, or every marker of a run that ends there.
    Stop,
    /// This failure marker was seen.
    Fail(String),
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

impl<'e> Monitor<'e> {
    /// A monitor that has seen nothing yet.
    pub fn new(expect: &'e Expect) -> Self {
        Monitor {
            expect,
            raw: Vec::new(),
            next: 0,
            search_from: 0,
            hits: vec![None; expect.markers.len()],
            failure: None,
            stopped: None,
            next_input: 0,
            input_from: 0,
            input_scanned: 0,
            typed: vec![None; expect.inputs.len()],
        }
    }

    /// Adds console output that arrived `at` after the start. Carriage
    /// returns are dropped, so markers can use `\n` for a line end.
    pub fn feed(&mut self, chunk: &[u8], at: Duration) -> Event {
        let old_len = self.raw.len();
        self.raw.extend(chunk.iter().filter(|&&b| b != b'\r'));
        // Only text that can contain a match not already seen is searched.
        let window_start = |needle: &str| old_len.saturating_sub(needle.len().saturating_sub(1));

        while let Some(m) = self.expect.markers.get(self.next) {
            let from = self.search_from.max(window_start(m));
            match find(&self.raw[from..], m.as_bytes()) {
                Some(i) => {
                    self.hits[self.next] = Some(at);
                    self.search_from = from + i + m.len();
                    self.next += 1;
                }
                None => break,
            }
        }
        if self.failure.is_none() {
            for m in &self.expect.failure_markers {
                if find(&self.raw[window_start(m)..], m.as_bytes()).is_some() {
                    self.failure = Some((m.clone(), at));
                    return Event::Fail(m.clone());
                }
            }
        }
        if self.stopped.is_none() {
            let stop = match &self.expect.stop_marker {
                Some(m) => find(&self.raw[window_start(m)..], m.as_bytes()).is_some(),
                None => !self.expect.clean_exit && !self.expect.markers.is_empty() && self.all_seen(),
            };
            if stop {
                self.stopped = Some(at);
                return Event::Stop;
            }
        }
        Event::Continue
    }

    /// The inputs whose markers have now appeared (each after the previous
    /// input was typed), in order, marked as typed `at`: the caller types
    /// them. Call after every [`Monitor::feed`].
    pub fn due_inputs(&mut self, at: Duration) -> Vec<&'e Input> {
        let mut due = Vec::new();
        while let Some(input) = self.expect.inputs.get(self.next_input) {
            let overlap = input.after.len().saturating_sub(1);
            let from = self.input_from.max(self.input_scanned.saturating_sub(overlap));
            if find(&self.raw[from..], input.after.as_bytes()).is_none() {
                self.input_scanned = self.raw.len();
                break;
            }
            due.push(input);
            self.typed[self.next_input] = Some(at);
            self.next_input += 1;
            self.input_from = self.raw.len();
        }
        due
    }

    /// Whether every ordered marker was seen.
    pub fn all_seen(&self) -> bool {
        self.next == self.expect.markers.len()
    }

    /// The console text so far (without carriage returns).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

fn without_cr(raw: &[u8]) -> Vec<u8> {
    raw.iter().copied().filter(|&b| b != b'\r').collect()
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The emulator exited by itself.
    Exited,
    /// The stop marker (or, for runs that stop there, the last marker) was
    /// seen and the emulator was killed.
    Stopped,
    /// This failure marker was seen and the emulator was killed.
    Failed(String),
    /// The time limit passed and the emulator was killed.
    TimedOut,
    /// The console was silent for the idle timeout and the emulator was killed.
    Idle,
}

/// A marker and when it was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerTime {
    /// The marker.
    pub marker: String,
    /// Time from the start of the run, if it was seen.
    pub at: Option<Duration>,
}

/// An input and when it was typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputTime {
    /// The text it waited for.
    pub after: String,
    /// What it typed.
    pub bytes: Vec<u8>,
    /// Time from the start of the run, if it was typed.
    pub at: Option<Duration>,
}

/// Everything about a finished run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// What was checked.
    pub expect: Expect,
    /// The command, as a shell would show it.
    pub command: String,
    /// The whole console log (`\n` line ends).
    pub log: String,
    /// What the emulator wrote to stderr.
    pub stderr: String,
    /// How the run ended.
    pub ending: Ending,
    /// The emulator's exit status (a signal when the harness killed it).
    pub status: Option<ExitStatus>,
    /// Each ordered marker and when it appeared.
    pub markers: Vec<MarkerTime>,
    /// Each input and when it was typed.
    pub inputs: Vec<InputTime>,
    /// The first failure marker seen, and when.
    pub failure_marker: Option<(String, Duration)>,
    /// Time from start to end.
    pub elapsed: Duration,
}

impl Outcome {
    /// Whether the run met its [`Expect`].
    pub fn passed(&self) -> bool {
        self.verdict().is_ok()
    }

    /// Ok if the run met its [`Expect`]; else every reason it did not, with
    /// the whole console log.
    pub fn verdict(&self) -> Result<(), RunFailure> {
        let mut reasons = Vec::new();
        if let Some((m, at)) = &self.failure_marker {
            reasons.push(format!("failure marker {m:?} seen after {:.2} s", at.as_secs_f64()));
        }
        let missing: Vec<_> = self.markers.iter().filter(|m| m.at.is_none()).collect();
        if let Some(first) = missing.first() {
            let index = self.markers.iter().position(|m| m.marker == first.marker).unwrap_or(0);
            let list = missing.iter().map(|m| format!("\n      {:?}", m.marker)).collect::<String>();
            reasons.push(format!(
                "{} of {} marker(s) missing (markers must appear in order; the first missing one is #{}):{list}",
                missing.len(),
                self.markers.len(),
                index + 1
            ));
        }
        if let Some(i) = self.inputs.iter().position(|i| i.at.is_none()) {
            let input = &self.inputs[i];
            reasons.push(format!(
                "input #{} ({:?}) was never typed: {:?} did not appear after the previous input",
                i + 1,
                String::from_utf8_lossy(&input.bytes),
                input.after
            ));
        }
        if self.ending == Ending::TimedOut {
            reasons.push(format!("timed out after {:.0} s", self.expect.timeout.as_secs_f64()));
        }
        if let (Ending::Idle, Some(idle)) = (&self.ending, self.expect.idle_timeout) {
            reasons.push(format!(
                "no console output for {:.0} s (after {:.0} s)",
                idle.as_secs_f64(),
                self.elapsed.as_secs_f64()
            ));
        }
        if self.expect.clean_exit {
            match (&self.ending, self.status) {
                (Ending::Exited, Some(s)) if s.success() => {}
                (Ending::Exited, s) => {
                    reasons.push(format!("the emulator exited with {}, expected status 0", status_text(s)))
                }
                (_, _) => reasons.push("the emulator did not exit by itself (it was killed)".into()),
            }
        }
        if reasons.is_empty() { Ok(()) } else { Err(RunFailure { reasons, outcome: Box::new(self.clone()) }) }
    }

    /// Panics with the failure report unless the run passed.
    #[track_caller]
    pub fn assert_passed(&self) {
        if let Err(f) = self.verdict() {
            panic!("{f}");
        }
    }

    /// When `marker` (one of the ordered markers) was seen.
    pub fn time_to(&self, marker: &str) -> Option<Duration> {
        self.markers.iter().find(|m| m.marker == marker).and_then(|m| m.at)
    }

    /// The first console line containing `text`.
    pub fn line_with(&self, text: &str) -> Option<&str> {
        self.log.lines().find(|l| l.contains(text))
    }

    /// One line: how the run ended and how long it took.
    pub fn summary(&self) -> String {
        let how = match &self.ending {
            Ending::Exited => format!("exited with {}", status_text(self.status)),
            Ending::Stopped => "stopped on its stop marker".to_string(),
            Ending::Failed(m) => format!("stopped on failure marker {m:?}"),
            Ending::TimedOut => "timed out".to_string(),
            Ending::Idle => "was silent too long".to_string(),
        };
        format!("{how} after {:.2} s", self.elapsed.as_secs_f64())
    }
}

fn status_text(s: Option<ExitStatus>) -> String {
    s.map_or_else(|| "no status".to_string(), |s| s.to_string())
}

/// Why a run failed, with everything needed to see why.
#[derive(Clone, Debug)]
pub struct RunFailure {
    /// Each problem found.
    pub reasons: Vec<String>,
    /// The run.
    pub outcome: Box<Outcome>,
}

impl fmt::Display for RunFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.outcome;
        writeln!(f, "emulator run FAILED:")?;
        for r in &self.reasons {
            writeln!(f, "  - {r}")?;
        }
        writeln!(f, "command: {}", o.command)?;
        writeln!(f, "run: {}", o.summary())?;
        for m in &o.markers {
            match m.at {
                Some(t) => writeln!(f, "  [{:7.3} s] {:?}", t.as_secs_f64(), m.marker)?,
                None => writeln!(f, "  [missing  ] {:?}", m.marker)?,
            }
        }
        for i in &o.inputs {
            let typed = String::from_utf8_lossy(&i.bytes);
            match i.at {
                Some(t) => writeln!(f, "  [{:7.3} s] typed {typed:?} after {:?}", t.as_secs_f64(), i.after)?,
                None => writeln!(f, "  [not typed] {typed:?} after {:?}", i.after)?,
            }
        }
        if !o.stderr.trim().is_empty() {
            writeln!(f, "emulator stderr:\n{}", o.stderr.trim_end())?;
        }
        writeln!(f, "----- console log ({} lines) -----", o.log.lines().count())?;
        writeln!(f, "{}", o.log.trim_end_matches('\n'))?;
        write!(f, "----- end of console log -----")
    }
}

impl std::error::Error for RunFailure {}

/// Makes `cmd` start in its own process group (so terminal signals reach
/// the harness, not the emulator) and die with the harness: the kernel
/// sends it SIGKILL when the thread that spawned it exits, which covers the
/// harness being interrupted or killed before it could end the run.
fn detach_and_tie(cmd: &mut Command) {
    let parent = std::process::id();
    cmd.process_group(0);
    // SAFETY: runs in the forked child before exec, and only calls
    // async-signal-safe functions (prctl, getppid, _exit) on the child's
    // own state.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The harness may have died between fork and prctl.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Kills the process group led by `child` (the emulator and anything it
/// started), then reaps the child.
fn kill_group(child: &mut Child) -> Option<ExitStatus> {
    let pgid = child.id() as libc::pid_t;
    // SAFETY: killpg has no memory-safety preconditions; `pgid` is the
    // process group of our own child, created by `detach_and_tie`, and the
    // child is not reaped yet, so the group id cannot have been reused.
    if unsafe { libc::killpg(pgid, libc::SIGKILL) } != 0 {
        let _ = child.kill();
    }
    child.wait().ok()
}

/// Spawns `cmd` (shown in reports as `shown`) and watches its stdout as the
/// console until `expect` says the run is over. Errors are only for runs
/// that could not be started; a failed run is an [`Outcome`] whose
/// [`Outcome::verdict`] says why.
pub fn run(cmd: Command, shown: &str, expect: &Expect, options: &RunOptions) -> Result<Outcome> {
    let mut cmd = cmd;
    let stdin = if expect.inputs.is_empty() { Stdio::null() } else { Stdio::piped() };
    cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
    detach_and_tie(&mut cmd);
    let mut log_file = match &options.log_file {
        Some(p) => {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
            }
            let mut f = File::create(p).context(|| format!("creating {}", p.display()))?;
            let _ = writeln!(f, "# {shown}");
            Some(f)
        }
        None => None,
    };

    let start = Instant::now();
    let mut child = cmd.spawn().context(|| format!("starting {shown}"))?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut stdout = child.stdout.take().expect("stdout is piped");
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let (etx, erx) = mpsc::channel::<String>();
    let mut stderr = child.stderr.take().expect("stderr is piped");
    thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        let _ = etx.send(String::from_utf8_lossy(&s).into_owned());
    });

    // Typing happens on its own thread, slowly, while the console is read.
    // The pipe stays open until the run ends (the sender is dropped).
    let typist = child.stdin.take().map(|mut stdin| {
        let (itx, irx) = mpsc::channel::<Vec<u8>>();
        let (chunk, pause) = expect.typing;
        thread::spawn(move || {
            for bytes in irx {
                for piece in bytes.chunks(chunk) {
                    if stdin.write_all(piece).and_then(|()| stdin.flush()).is_err() {
                        return;
                    }
                    thread::sleep(pause);
                }
            }
        });
        itx
    });

    let mut monitor = Monitor::new(expect);
    let deadline = start + expect.timeout;
    let mut ending: Option<Ending> = None;
    let mut end_by: Option<Instant> = None;
    let mut eof = false;
    let mut last_output = start;
    loop {
        let idle_by = expect.idle_timeout.map(|i| last_output + i);
        let limit = end_by.unwrap_or(match idle_by {
            Some(i) => i.min(deadline),
            None => deadline,
        });
        let now = Instant::now();
        if now >= limit {
            let silent = end_by.is_none() && idle_by.is_some_and(|i| i <= now) && now < deadline;
            ending.get_or_insert(if silent { Ending::Idle } else { Ending::TimedOut });
            break;
        }
        match rx.recv_timeout(limit - now) {
            Ok(chunk) => {
                last_output = Instant::now();
                if options.echo {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&chunk);
                    let _ = out.flush();
                }
                if let Some(f) = &mut log_file {
                    let _ = f.write_all(&without_cr(&chunk));
                }
                let event = monitor.feed(&chunk, start.elapsed());
                if let Some(typist) = &typist {
                    for input in monitor.due_inputs(start.elapsed()) {
                        let _ = typist.send(input.bytes.clone());
                    }
                }
                if ending.is_none() {
                    let (e, linger) = match event {
                        Event::Continue => continue,
                        Event::Stop => (Ending::Stopped, STOP_LINGER),
                        Event::Fail(m) => (Ending::Failed(m), FAILURE_LINGER),
                    };
                    ending = Some(e);
                    end_by = Some(Instant::now() + linger);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                eof = true;
                break;
            }
        }
    }
    drop(typist);
    // On EOF the emulator has exited (or is exiting): reap it. Otherwise
    // kill its whole process group.
    let status = if eof { child.wait().ok() } else { kill_group(&mut child) };
    let ending = ending.unwrap_or(Ending::Exited);
    let elapsed = start.elapsed();
    let stderr = erx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();

    let outcome = Outcome {
        expect: expect.clone(),
        command: shown.to_string(),
        log: monitor.log(),
        stderr,
        ending,
        status,
        markers: expect
            .markers
            .iter()
            .zip(&monitor.hits)
            .map(|(m, at)| MarkerTime { marker: m.clone(), at: *at })
            .collect(),
        inputs: expect
            .inputs
            .iter()
            .zip(&monitor.typed)
            .map(|(i, at)| InputTime { after: i.after.clone(), bytes: i.bytes.clone(), at: *at })
            .collect(),
        failure_marker: monitor.failure.clone(),
        elapsed,
    };
    if let Some(f) = &mut log_file {
        let verdict = if outcome.passed() { "PASS" } else { "FAIL" };
        let _ = writeln!(f, "\n# {verdict}: {}", outcome.summary());
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    //! The harness judged on fake emulators (shell scripts): no QEMU needed.
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    fn run_sh(script: &str, expect: &Expect) -> Outcome {
        run(sh(script), script, expect, &RunOptions::default()).unwrap()
    }

    const BOOT_LOG: &str =
        r"printf 'Armature 0.1.0\r\nCurrentEL=2 (EL2)\r\nDTB address: 0x48000000\r\nCPUs: 4 in /cpus\r\n'";

    #[test]
    fn missing_marker_fails_and_shows_the_whole_log() {
        let expect = Expect::new()
            .markers(["Armature", "Memory: 1 bank(s)", "CPUs: 4 in /cpus"])
            .clean_exit(true)
            .timeout(Duration::from_secs(20));
        let outcome = run_sh(BOOT_LOG, &expect);
        assert_eq!(outcome.ending, Ending::Exited);
        assert!(outcome.status.unwrap().success());
        assert!(outcome.time_to("Armature").is_some());
        assert!(outcome.time_to("Memory: 1 bank(s)").is_none());
        let failure = outcome.verdict().unwrap_err();
        let report = failure.to_string();
        // The missing markers are listed: the one not printed at all, and the
        // one printed before it (markers are ordered).
        assert!(report.contains("2 of 3 marker(s) missing"), "{report}");
        assert!(report.contains("the first missing one is #2"), "{report}");
        assert!(report.contains("[missing  ] \"Memory: 1 bank(s)\""), "{report}");
        assert!(report.contains("[missing  ] \"CPUs: 4 in /cpus\""), "{report}");
        // The whole console log is in the report, every line of it.
        let log = "Armature 0.1.0\nCurrentEL=2 (EL2)\nDTB address: 0x48000000\nCPUs: 4 in /cpus\n";
        assert_eq!(outcome.log, log);
        assert!(
            report.contains(&format!("----- console log (4 lines) -----\n{log}----- end of console log -----")),
            "{report}"
        );
    }

    #[test]
    fn all_markers_and_clean_exit_pass() {
        let expect = Expect::new().markers(["Armature", "CPUs: 4"]).clean_exit(true);
        let outcome = run_sh(BOOT_LOG, &expect);
        outcome.assert_passed();
        assert!(outcome.time_to("Armature").unwrap() <= outcome.time_to("CPUs: 4").unwrap());
    }

    #[test]
    fn failure_marker_ends_the_run_early() {
        // The fake emulator "crashes", then would hang for a minute.
        let script = "printf 'booting\\n\\n----[ Armature 0.1.0 aarch64 crash on CPU0 ]----\\nESR_EL2: 0x96000010\\n'; exec sleep 60";
        let expect = Expect::new().marker("Boot complete").timeout(Duration::from_secs(50));
        let outcome = run_sh(script, &expect);
        assert_eq!(outcome.ending, Ending::Failed("----[ Armature".into()));
        assert!(outcome.elapsed < Duration::from_secs(20), "not ended early: {:?}", outcome.elapsed);
        // The dump after the marker was still collected.
        assert!(outcome.log.contains("ESR_EL2: 0x96000010"));
        let report = outcome.verdict().unwrap_err().to_string();
        assert!(report.contains("failure marker \"----[ Armature\" seen"), "{report}");
        assert!(report.contains("[missing  ] \"Boot complete\""), "{report}");
    }

    #[test]
    fn failure_marker_fails_even_with_every_marker_present() {
        let script = "printf 'PANIC: oops\\nPowering off\\n'";
        let outcome = run_sh(script, &Expect::new().marker("Powering off").clean_exit(true));
        assert!(outcome.time_to("Powering off").is_some());
        assert!(!outcome.passed());
    }

    #[test]
    fn stop_marker_ends_the_run_early_as_success() {
        let script =
            "printf 'Armature: FATAL: not started at the hypervisor level.\\nArmature: halted.\\n'; exec sleep 60";
        let expect =
            Expect::new().markers(["FATAL: not started", "halted."]).failure_markers(["PANIC"]).stop_on("halted.");
        let outcome = run_sh(script, &expect);
        assert_eq!(outcome.ending, Ending::Stopped);
        assert!(outcome.elapsed < Duration::from_secs(20));
        outcome.assert_passed();
    }

    #[test]
    fn markers_must_come_in_order() {
        let outcome =
            run_sh("printf 'second\\nfirst\\n'", &Expect::new().markers(["first", "second"]).clean_exit(true));
        assert!(outcome.time_to("first").is_some());
        assert!(outcome.time_to("second").is_none());
        assert!(!outcome.passed());
    }

    /// True once process `pid` is gone (or a zombie waiting to be reaped).
    fn dead(pid: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit(") ").next().and_then(|r| r.chars().next()));
            if matches!(state, None | Some('Z')) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn a_silent_console_ends_the_run_early() {
        let expect =
            Expect::new().marker("never").timeout(Duration::from_secs(50)).idle_timeout(Duration::from_millis(500));
        let outcome = run_sh("echo hello; sleep 0.3; echo again; exec sleep 60", &expect);
        assert_eq!(outcome.ending, Ending::Idle);
        assert!(outcome.elapsed < Duration::from_secs(20), "{:?}", outcome.elapsed);
        assert!(outcome.log.contains("again"));
        let report = outcome.verdict().unwrap_err().to_string();
        assert!(report.contains("no console output for 0 s"), "{report}");
        assert!(report.contains("was silent too long"), "{report}");
    }

    #[test]
    fn timeout_kills_the_process_group() {
        // A child of the fake emulator holds the console open as well.
        let expect = Expect::new().marker("never").timeout(Duration::from_secs(1));
        let outcome = run_sh("sleep 60 & echo started $!; sleep 60", &expect);
        assert_eq!(outcome.ending, Ending::TimedOut);
        assert!(outcome.elapsed < Duration::from_secs(10));
        let report = outcome.verdict().unwrap_err().to_string();
        assert!(report.contains("timed out after 1 s"), "{report}");
        assert!(report.contains("started"), "{report}");
        let background: u32 = outcome.log.trim().rsplit(' ').next().unwrap().parse().unwrap();
        assert!(dead(background), "the emulator's child {background} survived the run");
    }

    #[test]
    fn emulator_dies_with_the_harness() {
        // The "harness" is a thread that starts the emulator and goes away.
        let pid = thread::spawn(|| {
            let mut cmd = sh("exec sleep 60");
            detach_and_tie(&mut cmd);
            cmd.stdin(Stdio::null()).spawn().unwrap().id()
        })
        .join()
        .unwrap();
        assert!(dead(pid), "the emulator {pid} outlived the thread that started it");
    }

    #[test]
    fn nonzero_exit_fails_a_clean_exit_run() {
        let outcome = run_sh("echo done; exit 3", &Expect::new().marker("done").clean_exit(true));
        let report = outcome.verdict().unwrap_err().to_string();
        assert!(report.contains("exit status: 3"), "{report}");
    }

    #[test]
    fn markers_split_across_reads_are_found() {
        let expect = Expect::new().markers(["Powering off via PSCI SYSTEM_OFF\n"]).failure_markers(["PANIC"]);
        let mut m = Monitor::new(&expect);
        assert_eq!(m.feed(b"Powering o", Duration::ZERO), Event::Continue);
        assert_eq!(m.feed(b"ff via PS", Duration::ZERO), Event::Continue);
        // Every marker seen, no clean exit required: the run can stop.
        assert_eq!(m.feed(b"CI SYSTEM_OFF\r", Duration::from_millis(5)), Event::Continue);
        assert_eq!(m.feed(b"\n", Duration::from_millis(5)), Event::Stop);
        assert!(m.all_seen());
        assert_eq!(m.feed(b"PAN", Duration::ZERO), Event::Continue);
        assert_eq!(m.feed(b"IC", Duration::ZERO), Event::Fail("PANIC".into()));
        assert_eq!(m.log(), "Powering off via PSCI SYSTEM_OFF\nPANIC");
    }

    #[test]
    fn log_file_has_the_console_and_the_verdict() {
        let path = crate::paths::scratch_dir("runner-log-file").unwrap().join("run.log");
        let options = RunOptions::default().log_to(&path);
        run(sh("echo hello"), "echo hello", &Expect::new().marker("hello").clean_exit(true), &options).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# echo hello\nhello\n"), "{text}");
        assert!(text.contains("# PASS: exited with exit status: 0"), "{text}");
    }

    #[test]
    fn input_is_typed_after_its_marker() {
        // A fake emulator with two prompts, each answered through stdin.
        let script = "printf 'name? '; read n; echo \"hello $n\"; printf 'again? '; read m; echo \"bye $m\"";
        let expect = Expect::new()
            .input_after("name? ", "world\n")
            .input_after("again? ", "moon\n")
            .markers(["hello world\n", "bye moon\n"])
            .clean_exit(true)
            .timeout(Duration::from_secs(20));
        let outcome = run_sh(script, &expect);
        outcome.assert_passed();
        let typed: Vec<_> = outcome.inputs.iter().map(|i| i.at).collect();
        assert!(typed.iter().all(Option::is_some), "{:?}", outcome.inputs);
        assert!(typed[0] <= typed[1]);
    }

    #[test]
    fn long_input_arrives_whole_in_pieces() {
        // 3 pieces of INPUT_CHUNK bytes and a short one, read back in one line.
        let line = "0123456789abcdefghijklmnopqrstu";
        assert!(line.len() > 3 * INPUT_CHUNK);
        let expect = Expect::new()
            .input_after("ready\n", format!("{line}\n"))
            .marker(format!("got {line}\n"))
            .clean_exit(true)
            .timeout(Duration::from_secs(20));
        let outcome = run_sh("echo ready; read x; echo \"got $x\"", &expect);
        outcome.assert_passed();
        // Typed slowly: the pauses between the pieces add up.
        assert!(outcome.elapsed >= 3 * INPUT_PAUSE, "{:?}", outcome.elapsed);
        // A byte at a time.
        let slow = expect.typing(1, Duration::from_millis(20));
        let outcome = run_sh("echo ready; read x; echo \"got $x\"", &slow);
        outcome.assert_passed();
        assert!(outcome.elapsed >= Duration::from_millis(20) * line.len() as u32, "{:?}", outcome.elapsed);
    }

    #[test]
    fn an_input_waits_for_its_marker_after_the_previous_input() {
        let expect = Expect::new().input_after("p> ", "a\n").input_after("p> ", "b\n").input_after("", "c");
        let mut m = Monitor::new(&expect);
        assert_eq!(m.feed(b"boot\np", Duration::ZERO), Event::Continue);
        assert!(m.due_inputs(Duration::ZERO).is_empty());
        // The marker split across reads; the second prompt was printed
        // before the first input was typed: it does not count for the second.
        m.feed(b"> p> ", Duration::from_millis(1));
        let due: Vec<_> = m.due_inputs(Duration::from_millis(1)).iter().map(|i| i.bytes.clone()).collect();
        assert_eq!(due, [b"a\n".to_vec()]);
        m.feed(b"a\nran a\n", Duration::from_millis(2));
        assert!(m.due_inputs(Duration::from_millis(2)).is_empty());
        // A new prompt: the second input, and the third (empty marker) with it.
        m.feed(b"p> ", Duration::from_millis(3));
        let due: Vec<_> = m.due_inputs(Duration::from_millis(3)).iter().map(|i| i.bytes.clone()).collect();
        assert_eq!(due, [b"b\n".to_vec(), b"c".to_vec()]);
        assert!(m.due_inputs(Duration::from_millis(4)).is_empty());
        assert_eq!(
            m.typed,
            [Some(Duration::from_millis(1)), Some(Duration::from_millis(3)), Some(Duration::from_millis(3))]
        );
    }

    #[test]
    fn an_input_never_typed_fails_the_run() {
        let expect = Expect::new()
            .input_after("login: ", "root\n")
            .marker("done")
            .clean_exit(true)
            .timeout(Duration::from_secs(20));
        let outcome = run_sh("echo done", &expect);
        let report = outcome.verdict().unwrap_err().to_string();
        assert!(report.contains("input #1 (\"root\\n\") was never typed: \"login: \" did not appear"), "{report}");
        assert!(report.contains("[not typed] \"root\\n\" after \"login: \""), "{report}");
    }

    #[test]
    fn without_input_stdin_is_closed() {
        // `read` sees end of file at once instead of waiting for the timeout.
        let expect = Expect::new().marker("eof").clean_exit(true).timeout(Duration::from_secs(20));
        let outcome = run_sh("read x || echo eof", &expect);
        outcome.assert_passed();
        assert!(outcome.inputs.is_empty());
    }
}
