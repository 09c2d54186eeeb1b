//! Helpers shared by the integration tests: the data file, the reference outputs, and running
//! the `microgpt` binary in a scratch directory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// names.txt: `data/names.txt` of the checkout (written by the first `cargo run`, or by
/// `.ci/run`), else `../shared/data/names.txt` beside it.
pub fn names_txt() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [root.join("data/names.txt"), root.join("../shared/data/names.txt")];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .expect("names.txt is missing: run `cargo run --release` once (it downloads data/names.txt)")
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
    let mut r = Reference {
        losses: vec![],
        eval: None,
        samples: vec![],
    };
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
    cmd.current_dir(dir)
        .env("MICROGPT_DEVICE", "cpu")
        .env("MICROGPT_DATA_URL", "http://127.0.0.1:9/unreachable");
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
        .map(|l| {
            l.split("| loss ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// The value of the `val loss: X` line.
pub fn val_loss(stdout: &str) -> f64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("val loss: "))
        .expect("a val loss line")
        .parse()
        .unwrap()
}

/// The sampled names, in order.
pub fn samples(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| {
            l.strip_prefix("sample ")
                .and_then(|r| r.split_once(": "))
                .map(|(_, s)| s.to_string())
        })
        .collect()
}
