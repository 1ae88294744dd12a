//! The driver every harness shares: run generated cases until time is up,
//! catch each case's panics, keep one input per distinct finding (shrunk),
//! and survive crashes by running the cases in a child process.
//!
//! `recc-fuzz-X --seconds N --seed S` is a supervisor: it starts itself as a
//! worker (`--worker`) under a memory limit and reads the worker's progress
//! lines. Before each case the worker writes the case to `current-X.*` in the
//! findings folder, so when the worker dies of a signal (a segfault, an abort
//! from the allocator) or stops on a hung case, the supervisor keeps that
//! file as a finding, replays it once in a fresh process to name the
//! symptom, and starts a new worker on the next seed until the time is up.
//! `--in-process` runs the cases in this process (what the tests do).

use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How many times each stage of a harness was reached.
pub type Stages = BTreeMap<&'static str, u64>;

/// Something a case did that it must not: a panic, a crash, or two
/// backends that disagree. Cases with the same `signature` are one finding.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub signature: String,
    pub detail: String,
}

impl Finding {
    pub fn new(signature: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            signature: signature.into(),
            detail: detail.into(),
        }
    }
}

/// One surface under test.
pub trait Harness {
    fn name(&self) -> &'static str;
    /// The file extension of a saved case (`rec`, `case`, `recm`).
    fn extension(&self) -> &'static str;
    /// A new case.
    fn generate(&mut self, rng: &mut StdRng) -> Vec<u8>;
    /// Run one case. Errors the product reports cleanly are a pass; a
    /// disagreement is an `Err`. Panics are caught by the driver.
    fn run(&mut self, input: &[u8], stages: &mut Stages) -> Result<(), Finding>;
    /// Whether deleting bytes of a case keeps it meaningful (text: yes;
    /// a model file: the finding is the mutation, not its length).
    fn shrinkable(&self) -> bool {
        true
    }
    /// How the last generated case was made, when the input alone does not
    /// say (a model file's mutations).
    fn note(&self) -> String {
        String::new()
    }
}

/// Settings of one run.
#[derive(Clone, Debug)]
pub struct Options {
    pub seconds: f64,
    pub seed: u64,
    pub findings: PathBuf,
    /// A case running longer than this is a finding (a hang), and ends the
    /// process: a case cannot be stopped from inside.
    pub case_timeout: f64,
    /// Time spent shrinking each new finding.
    pub shrink_seconds: f64,
    /// Address-space limit of a worker, in MiB.
    pub memory_mb: u64,
    /// Stop after this many cases even if time is left: a fixed case count
    /// makes a run the same on a fast and a slow machine.
    pub max_cases: Option<u64>,
}

impl Options {
    pub fn new(seconds: f64, seed: u64, findings: PathBuf) -> Options {
        Options {
            seconds,
            seed,
            findings,
            case_timeout: 60.0,
            shrink_seconds: 20.0,
            memory_mb: 4096,
            max_cases: None,
        }
    }
}

/// A finding kept on disk.
#[derive(Clone, Debug)]
pub struct Kept {
    pub finding: Finding,
    pub path: PathBuf,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub executions: u64,
    pub findings: Vec<Kept>,
    pub stages: Stages,
    /// Workers that died (supervisor only).
    pub crashes: u64,
}

impl Report {
    pub fn print(&self, name: &str) {
        println!("{name}: {} executions", self.executions);
        let stages: Vec<String> = self
            .stages
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("{name}: stages: {}", stages.join(", "));
        println!("{name}: {} distinct findings", self.findings.len());
        for k in &self.findings {
            println!(
                "  FINDING {}\n    input: {}",
                k.finding.signature,
                k.path.display()
            );
            for line in k.finding.detail.lines().take(6) {
                println!("    {line}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Panics and hangs.

/// Where and why the last panic inside a case happened.
static LAST_PANIC: Mutex<Option<(String, String)>> = Mutex::new(None);
static IN_CASE: AtomicBool = AtomicBool::new(false);
/// When the running case started (ms since the epoch; 0: none running).
static CASE_STARTED: AtomicU64 = AtomicU64::new(0);
static CASE_TIMEOUT_MS: AtomicU64 = AtomicU64::new(60_000);
static INSTALL: Once = Once::new();

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A panic inside a case is recorded, not printed; any other is printed as
/// usual. A watchdog ends the process when a case hangs.
fn install() {
    INSTALL.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !IN_CASE.load(Ordering::SeqCst) {
                default(info);
                return;
            }
            let location = info
                .location()
                .map_or_else(|| "?".to_string(), |l| format!("{}:{}", l.file(), l.line()));
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let mut last = LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner());
            // The first panic of a case is the cause; rayon re-raises it.
            if last.is_none() {
                *last = Some((location, message));
            }
        }));
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_millis(200));
            let started = CASE_STARTED.load(Ordering::SeqCst);
            let limit = CASE_TIMEOUT_MS.load(Ordering::SeqCst);
            if started != 0 && now_ms().saturating_sub(started) > limit {
                println!("HANG\t{}", limit / 1000);
                let _ = std::io::stdout().flush();
                eprintln!("a case ran longer than {} s", limit / 1000);
                std::process::exit(HANG_EXIT);
            }
        });
    });
}

/// The exit status of a worker that stopped on a hung case.
pub const HANG_EXIT: i32 = 3;

/// Digits vary between cases that are one bug: a signature leaves them out.
fn normalise(message: &str) -> String {
    let mut out = String::new();
    let mut digits = false;
    for c in message.chars().take(160) {
        if c.is_ascii_digit() {
            if !digits {
                out.push('N');
            }
            digits = true;
        } else {
            digits = false;
            out.push(c);
        }
    }
    out
}

/// Run one case, turning a panic into a finding.
pub fn run_case<H: Harness + ?Sized>(
    h: &mut H,
    input: &[u8],
    stages: &mut Stages,
) -> Result<(), Finding> {
    install();
    *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = None;
    IN_CASE.store(true, Ordering::SeqCst);
    CASE_STARTED.store(now_ms(), Ordering::SeqCst);
    let result = panic::catch_unwind(AssertUnwindSafe(|| h.run(input, stages)));
    CASE_STARTED.store(0, Ordering::SeqCst);
    IN_CASE.store(false, Ordering::SeqCst);
    match result {
        Ok(r) => r,
        Err(_) => {
            let (location, message) = LAST_PANIC
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_else(|| ("?".into(), "?".into()));
            let first = message.lines().next().unwrap_or("");
            Err(Finding::new(
                format!("panic at {location}: {}", normalise(first)),
                message,
            ))
        }
    }
}

/// The smallest input found in the time given that still gives `signature`:
/// chunks of halving size deleted while the finding stays the same.
pub fn shrink<H: Harness + ?Sized>(
    h: &mut H,
    input: &[u8],
    signature: &str,
    seconds: f64,
) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut best = input.to_vec();
    let mut chunk = best.len() / 2;
    let mut scratch = Stages::new();
    while chunk >= 1 && Instant::now() < deadline {
        let mut i = 0;
        let mut removed = false;
        while i < best.len() && Instant::now() < deadline {
            let end = (i + chunk).min(best.len());
            let mut candidate = best[..i].to_vec();
            candidate.extend_from_slice(&best[end..]);
            match run_case(h, &candidate, &mut scratch) {
                Err(f) if f.signature == signature => {
                    best = candidate;
                    removed = true;
                }
                _ => i += chunk,
            }
        }
        if !removed {
            chunk /= 2;
        }
    }
    best
}

fn slug(signature: &str) -> String {
    let s: String = signature
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut out = String::new();
    for part in s.split('-').filter(|p| !p.is_empty()) {
        if out.len() > 60 {
            break;
        }
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(part);
    }
    out
}

/// Write a finding's input and a note beside it; the input's path.
pub fn keep(
    dir: &Path,
    name: &str,
    ext: &str,
    seed: u64,
    finding: &Finding,
    input: &[u8],
) -> PathBuf {
    let _ = std::fs::create_dir_all(dir);
    let stem = format!("{name}-{seed}-{}", slug(&finding.signature));
    let path = dir.join(format!("{stem}.{ext}"));
    let _ = std::fs::write(&path, input);
    let note = format!(
        "{}\n\nseed {seed}\n\n{}\n",
        finding.signature, finding.detail
    );
    let _ = std::fs::write(dir.join(format!("{stem}.txt")), note);
    path
}

/// Where the worker writes the case it is about to run.
pub fn current_path(opts: &Options, h: &dyn HarnessInfo) -> PathBuf {
    opts.findings
        .join(format!("current-{}.{}", h.info_name(), h.info_ext()))
}

/// Name and extension, object-safe.
pub trait HarnessInfo {
    fn info_name(&self) -> &'static str;
    fn info_ext(&self) -> &'static str;
}

impl<H: Harness> HarnessInfo for H {
    fn info_name(&self) -> &'static str {
        self.name()
    }
    fn info_ext(&self) -> &'static str {
        self.extension()
    }
}

/// Run cases in this process until the time is up. `known` signatures are
/// counted but not kept again; `progress` prints worker lines.
pub fn run_in_process<H: Harness>(
    h: &mut H,
    opts: &Options,
    known: &BTreeSet<String>,
    progress: bool,
) -> Report {
    install();
    CASE_TIMEOUT_MS.store((opts.case_timeout * 1000.0) as u64, Ordering::SeqCst);
    let _ = std::fs::create_dir_all(&opts.findings);
    let current = current_path(opts, h);
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let started = Instant::now();
    let limit = Duration::from_secs_f64(opts.seconds);
    let mut report = Report::default();
    let mut seen = known.clone();
    let mut last_progress = Instant::now();
    while started.elapsed() < limit && opts.max_cases.is_none_or(|m| report.executions < m) {
        let input = h.generate(&mut rng);
        // Before it runs, so a crash leaves it behind.
        let _ = std::fs::write(&current, &input);
        let outcome = run_case(h, &input, &mut report.stages);
        report.executions += 1;
        if let Err(mut f) = outcome {
            if seen.insert(f.signature.clone()) {
                let note = h.note();
                if !note.is_empty() {
                    f.detail = format!("{}\nmade by: {note}", f.detail);
                }
                let small = if h.shrinkable() {
                    shrink(h, &input, &f.signature, opts.shrink_seconds)
                } else {
                    input.clone()
                };
                let path = keep(
                    &opts.findings,
                    h.name(),
                    h.extension(),
                    opts.seed,
                    &f,
                    &small,
                );
                if progress {
                    println!("FINDING\t{}\t{}", f.signature, path.display());
                }
                report.findings.push(Kept { finding: f, path });
            }
        }
        if progress && last_progress.elapsed() > Duration::from_secs(1) {
            println!("EXECS\t{}", report.executions);
            let _ = std::io::stdout().flush();
            last_progress = Instant::now();
        }
    }
    let _ = std::fs::remove_file(&current);
    if progress {
        let stages: Vec<String> = report
            .stages
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("EXECS\t{}", report.executions);
        // Stage names have spaces: entries are separated by `;`.
        println!("STAGES\t{}", stages.join(";"));
    }
    report
}

// ---------------------------------------------------------------------------
// The command line.

struct Args {
    opts: Options,
    worker: bool,
    in_process: bool,
    replay: Option<PathBuf>,
    known: Option<PathBuf>,
}

fn usage(name: &str) -> ! {
    eprintln!(
        "usage: recc-fuzz-{name} [--seconds N] [--seed S] [--findings DIR] [--case-timeout S] \
         [--memory-mb M] [--max-cases N] [--in-process] | --replay FILE"
    );
    std::process::exit(2)
}

fn parse_args(name: &str) -> Args {
    let default_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/fuzz-findings")
        .join(name);
    let mut a = Args {
        opts: Options::new(10.0, 1, default_dir),
        worker: false,
        in_process: false,
        replay: None,
        known: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage(name));
        match flag.as_str() {
            "--seconds" => a.opts.seconds = value().parse().unwrap_or_else(|_| usage(name)),
            "--seed" => a.opts.seed = value().parse().unwrap_or_else(|_| usage(name)),
            "--findings" => a.opts.findings = PathBuf::from(value()),
            "--case-timeout" => {
                a.opts.case_timeout = value().parse().unwrap_or_else(|_| usage(name))
            }
            "--memory-mb" => a.opts.memory_mb = value().parse().unwrap_or_else(|_| usage(name)),
            "--shrink-seconds" => {
                a.opts.shrink_seconds = value().parse().unwrap_or_else(|_| usage(name))
            }
            "--max-cases" => {
                a.opts.max_cases = Some(value().parse().unwrap_or_else(|_| usage(name)))
            }
            "--replay" => a.replay = Some(PathBuf::from(value())),
            "--known" => a.known = Some(PathBuf::from(value())),
            "--worker" => a.worker = true,
            "--in-process" => a.in_process = true,
            _ => usage(name),
        }
    }
    a
}

/// The `main` of a harness binary.
pub fn main<H: Harness>(mut h: H) -> ! {
    let name = h.name();
    let args = parse_args(name);
    if let Some(path) = &args.replay {
        let input = std::fs::read(path).unwrap_or_else(|e| {
            eprintln!("{}: {e}", path.display());
            std::process::exit(2)
        });
        let mut stages = Stages::new();
        let outcome = run_case(&mut h, &input, &mut stages);
        let reached: Vec<&str> = stages.keys().copied().collect();
        println!("stages reached: {}", reached.join(", "));
        match outcome {
            Ok(()) => {
                println!("pass");
                std::process::exit(0)
            }
            Err(f) => {
                println!("FINDING {}\n{}", f.signature, f.detail);
                std::process::exit(1)
            }
        }
    }
    if args.worker || args.in_process {
        let known: BTreeSet<String> = args
            .known
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| t.lines().map(String::from).collect())
            .unwrap_or_default();
        let report = run_in_process(&mut h, &args.opts, &known, args.worker);
        if args.in_process {
            report.print(name);
        }
        std::process::exit(if report.findings.is_empty() { 0 } else { 1 })
    }
    let report = supervise(name, h.extension(), &args.opts);
    report.print(name);
    std::process::exit(if report.findings.is_empty() { 0 } else { 1 })
}

/// A command that runs this executable under the memory limit.
fn limited(opts: &Options, timeout: Option<f64>) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("recc-fuzz"));
    // Linux names a replaced executable `PATH (deleted)`: a rebuild during a
    // run starts the new build.
    let exe = exe
        .to_str()
        .and_then(|s| s.strip_suffix(" (deleted)"))
        .map_or(exe.clone(), PathBuf::from);
    let mut c = Command::new("sh");
    let run = match timeout {
        Some(t) => format!("exec timeout -s KILL {t:.0} \"$0\" \"$@\""),
        None => "exec \"$0\" \"$@\"".to_string(),
    };
    c.arg("-c")
        .arg(format!("ulimit -v {} && {run}", opts.memory_mb * 1024))
        .arg(exe);
    c
}

/// Run workers until the time is up, restarting after each crash.
fn supervise(name: &str, ext: &str, opts: &Options) -> Report {
    let _ = std::fs::create_dir_all(&opts.findings);
    let known_path = opts.findings.join(format!("known-{name}.txt"));
    let current = opts.findings.join(format!("current-{name}.{ext}"));
    let _ = std::fs::write(&known_path, "");
    let started = Instant::now();
    let mut report = Report::default();
    let mut signatures = BTreeSet::new();
    for restart in 0u64.. {
        let left = opts.seconds - started.elapsed().as_secs_f64();
        if left < 0.5 {
            break;
        }
        let seed = opts.seed.wrapping_add(restart.wrapping_mul(1_000_003));
        let _ = std::fs::remove_file(&current);
        let mut child = match limited(opts, None)
            .args(["--worker", "--seconds", &format!("{left:.1}")])
            .args(["--seed", &seed.to_string()])
            .arg("--findings")
            .arg(&opts.findings)
            .args(["--case-timeout", &opts.case_timeout.to_string()])
            .args(["--shrink-seconds", &opts.shrink_seconds.to_string()])
            .arg("--known")
            .arg(&known_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cannot start a worker: {e}");
                break;
            }
        };
        let mut execs = 0;
        let mut hung = false;
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut parts = line.splitn(3, '\t');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("EXECS"), Some(n), _) => execs = n.parse().unwrap_or(execs),
                    (Some("FINDING"), Some(sig), Some(path))
                        if signatures.insert(sig.to_string()) =>
                    {
                        let detail = std::fs::read_to_string(Path::new(path).with_extension("txt"))
                            .unwrap_or_default();
                        report.findings.push(Kept {
                            finding: Finding::new(sig, detail),
                            path: PathBuf::from(path),
                        });
                        eprintln!("{name}: finding: {sig}");
                    }
                    (Some("STAGES"), Some(list), _) => {
                        for kv in list.split(';') {
                            if let Some((k, v)) = kv.split_once('=') {
                                let k: &'static str = Box::leak(k.to_string().into_boxed_str());
                                *report.stages.entry(k).or_default() += v.parse().unwrap_or(0);
                            }
                        }
                    }
                    (Some("HANG"), _, _) => hung = true,
                    _ => {}
                }
            }
        }
        let status = child.wait();
        report.executions += execs;
        let _ = std::fs::write(
            &known_path,
            signatures.iter().cloned().collect::<Vec<_>>().join("\n"),
        );
        let status = match status {
            Ok(s) => s,
            Err(_) => break,
        };
        use std::os::unix::process::ExitStatusExt;
        if !hung && status.signal().is_none() && matches!(status.code(), Some(0 | 1)) {
            break;
        }
        if matches!(status.code(), Some(126 | 127)) {
            eprintln!("{name}: cannot run a worker ({status})");
            break;
        }
        // The worker died in the middle of the case it wrote last.
        report.crashes += 1;
        report.executions += 1;
        let Ok(input) = std::fs::read(&current) else {
            eprintln!("{name}: a worker died ({status}) with no case written");
            continue;
        };
        let signature = if hung {
            format!("hang: a case ran over {} s", opts.case_timeout)
        } else {
            crash_signature(opts, &current, status.signal(), status.code())
        };
        if signatures.insert(signature.clone()) {
            let f = Finding::new(
                signature.clone(),
                format!("worker exit: {status}; the input is the case it was running"),
            );
            let path = keep(&opts.findings, name, ext, seed, &f, &input);
            eprintln!("{name}: finding: {signature}");
            report.findings.push(Kept { finding: f, path });
        }
    }
    let _ = std::fs::remove_file(&current);
    report
}

/// Replay a crashing case in a fresh process and name its symptom by the
/// signal and the last thing it wrote to stderr ("double free or
/// corruption", "memory allocation of N bytes failed", ...).
fn crash_signature(opts: &Options, case: &Path, signal: Option<i32>, code: Option<i32>) -> String {
    let copy = case.with_extension("replay");
    let _ = std::fs::copy(case, &copy);
    let out = limited(opts, Some(opts.case_timeout.max(5.0)))
        .arg("--replay")
        .arg(&copy)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let _ = std::fs::remove_file(&copy);
    let what = match (signal, code) {
        (Some(6), _) => "abort (SIGABRT)".to_string(),
        (Some(11), _) => "segfault (SIGSEGV)".to_string(),
        (Some(7), _) => "bus error (SIGBUS)".to_string(),
        (Some(9), _) => "killed (SIGKILL)".to_string(),
        (Some(s), _) => format!("signal {s}"),
        (None, Some(c)) => format!("exit {c}"),
        (None, None) => "died".to_string(),
    };
    let last = out
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .and_then(|e| {
            e.lines()
                .rev()
                .find(|l| !l.trim().is_empty() && !l.starts_with("note:"))
                .map(str::to_string)
        });
    match last {
        Some(l) => format!("crash, {what}: {}", normalise(l.trim())),
        None => format!("crash, {what}"),
    }
}
