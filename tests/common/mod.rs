//! Helpers shared by the integration tests: the data file, the reference outputs, and running
//! the `microgpt` binary in a scratch directory.
// each test binary uses only some of these helpers
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use microgpt_burn::gpt::data::Corpus;
use microgpt_burn::program::datafile;

/// names.txt: `data/names.txt` of the checkout, downloaded there as the program does when it
/// is absent.
pub fn names_txt() -> PathBuf {
    data_set(Corpus::Names)
}

/// shakespeare.txt: `data/shakespeare.txt` of the checkout, downloaded there as the program does
/// when it is absent.
pub fn shakespeare_txt() -> PathBuf {
    data_set(Corpus::Shakespeare)
}

/// A named data set's file in the checkout's `data/`, fetched by the program's own download
/// when absent (once per test binary); without a network, the test fails saying where to put
/// the file.
fn data_set(named: Corpus) -> PathBuf {
    static FETCH: Mutex<()> = Mutex::new(());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join(named.path());
    let _one_at_a_time = FETCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !path.is_file() {
        // the program's download writes under the current directory, which cargo sets to the
        // checkout for tests
        assert_eq!(std::env::current_dir().unwrap().canonicalize().unwrap(), root.canonicalize().unwrap());
        if let Err(err) = datafile::ensure_named(named, named.url()) {
            panic!("{err:#}");
        }
    }
    path
}

/// The first `chars` characters of shakespeare.txt.
pub fn shakespeare_start(chars: usize) -> String {
    std::fs::read_to_string(shakespeare_txt()).unwrap().chars().take(chars).collect()
}

/// A file of tests/reference/.
pub fn reference(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference").join(name)
}

/// The reference outputs: per-step losses, the held-out loss, the samples.
pub struct Reference {
    pub losses: Vec<f64>,
    pub eval: Option<f64>,
    pub samples: Vec<String>,
}

pub fn read_reference(name: &str) -> Reference {
    let text = std::fs::read_to_string(reference(name)).expect("reference file exists");
    let mut r = Reference { losses: vec![], eval: None, samples: vec![] };
    for line in text.lines() {
        let mut parts = line.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("eval"), Some(v), None) => r.eval = Some(v.parse().unwrap()),
            (Some("sample"), Some(_), name) => r.samples.push(name.unwrap_or("").to_string()),
            (Some(step), Some(v), None) => {
                assert_eq!(step.parse::<usize>().unwrap(), r.losses.len() + 1);
                r.losses.push(v.parse().unwrap());
            }
            _ => panic!("unexpected reference line {line:?}"),
        }
    }
    r
}

/// A scratch directory holding `data/names.txt`, so the binary finds its default data.
pub fn scratch_with_names() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::copy(names_txt(), dir.path().join("data/names.txt")).unwrap();
    dir
}

/// `microgpt` in `dir`, on the CPU unless `--device` says otherwise, never downloading.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_microgpt"));
    cmd.current_dir(dir).env("MICROGPT_DEVICE", "cpu").env("MICROGPT_DATA_URL", "http://127.0.0.1:9/unreachable");
    cmd
}

/// Run `microgpt args...` in `dir`; stdout is a pipe, so progress comes as plain lines.
pub fn microgpt(dir: &Path, args: &[&str]) -> Output {
    command(dir).args(args).output().expect("the microgpt binary runs")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one stderr line of a failed run, checked to be a single line without a panic or a
/// backtrace hint.
pub fn one_line_error(out: &Output) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "expected a failure; stderr: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "a panic: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, got: {err}");
    lines[0].to_string()
}

/// Run and require success, returning stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = microgpt(dir, args);
    assert!(out.status.success(), "microgpt {args:?} failed: {}", stderr(&out));
    stdout(&out)
}

/// The losses of the `step N / M | loss X` lines, in order.
pub fn step_losses(stdout: &str) -> Vec<f64> {
    stdout
        .lines()
        .filter(|l| l.starts_with("step "))
        .map(|l| l.split("| loss ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap())
        .collect()
}

/// The value of the `val loss: X` line.
pub fn val_loss(stdout: &str) -> f64 {
    stdout.lines().find_map(|l| l.strip_prefix("val loss: ")).expect("a val loss line").parse().unwrap()
}

/// The sampled names, in order.
pub fn samples(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("sample ").and_then(|r| r.split_once(": ")).map(|(_, s)| s.to_string()))
        .collect()
}

/// Say that a test is skipped, and why: on stderr, and as a line of the file named by
/// `MICROGPT_SKIP_LOG` (CI sets it and prints the count, since libtest counts a skipped test
/// as passed).
pub fn skip(test: &str, why: &str) {
    eprintln!("skipped {test}: {why}");
    if let Some(log) = std::env::var_os("MICROGPT_SKIP_LOG") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        writeln!(file, "{test}: {why}").unwrap();
    }
}

/// A `microgpt` run in the background, killed (and reaped) when dropped: a failed assertion
/// leaves no training run behind.
pub struct Running(Option<Child>);

impl Running {
    /// Start `microgpt args...` in `dir`, stdout discarded, stderr kept.
    pub fn start(dir: &Path, args: &[&str]) -> Self {
        let child = command(dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the microgpt binary starts");
        Running(Some(child))
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.0.as_mut().expect("running").try_wait().unwrap().is_none()
    }

    /// Send it a signal by name (`INT`, `TERM`).
    #[cfg(unix)]
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Kill it (SIGKILL on Unix) and wait for it.
    pub fn kill(mut self) {
        let mut child = self.0.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Wait for it to end by itself, with its output.
    pub fn wait(mut self) -> Output {
        self.0.take().expect("running").wait_with_output().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How long a test waits for something that should happen in seconds before calling it a hang:
/// a guard against hanging forever, not a timing (a slow or busy machine only waits longer).
pub const HANG: Duration = Duration::from_secs(600);

/// Wait until `ready()` holds, polling; panics (naming `what`) only after [`HANG`].
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < HANG, "{what} never happened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A JSON file (checkpoint.json), parsed.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Data rows of `dir/metrics.csv` so far (0 while it does not exist).
pub fn metrics_rows(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("metrics.csv")).map(|text| text.lines().count().saturating_sub(1)).unwrap_or(0)
}
