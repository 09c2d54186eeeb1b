//! Bad input, faults and interruptions: every row of the README's table. Each bad input gets
//! one line on stderr naming the problem and the fix, a non-zero exit, no panic, and leaves no
//! partial output behind.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{microgpt, ok, stderr};

/// Assert a failure with exactly one stderr line containing `needle`, and no output dir.
fn fails_with(dir: &Path, args: &[&str], needle: &str) {
    let out = microgpt(dir, args);
    let err = stderr(&out);
    assert!(!out.status.success(), "microgpt {args:?} succeeded");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic for {args:?}: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line for {args:?}, got: {err}");
    assert!(
        lines[0].contains(needle),
        "{args:?}: {:?} does not contain {needle:?}",
        lines[0]
    );
    assert!(!dir.join("out").exists(), "{args:?} left an output directory");
}

fn data_file(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
fn bad_data_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("adir")).unwrap();
    data_file(d, "empty.txt", b"");
    data_file(d, "blank.txt", b"\n  \n\t\n");
    data_file(d, "latin1.txt", b"caf\xe9\nna\xefve\n");
    data_file(d, "one.txt", b"alone\n");
    fn train(file: &str) -> Vec<&str> {
        vec!["train", "--data", file, "--steps", "3", "--out", "out"]
    }
    fails_with(
        d,
        &train("missing.txt"),
        "data file missing.txt not found: pass --data PATH",
    );
    fails_with(d, &train("adir"), "is a directory");
    fails_with(d, &train("empty.txt"), "holds no documents");
    fails_with(d, &train("blank.txt"), "holds no documents");
    fails_with(d, &train("latin1.txt"), "is not UTF-8 text (invalid byte at offset 3)");
    fails_with(d, &train("one.txt"), "training needs at least 2");
}

#[test]
fn long_documents_are_cut_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    data_file(
        dir.path(),
        "long.txt",
        b"abcdefghijklmnopqrstuvwxyz\nabcdefghijklmnopqrstu\nshort\nab\n",
    );
    let out = microgpt(dir.path(), &["train", "--data", "long.txt", "--steps", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| l.contains("warning"))
        .map(String::from)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("2 documents are longer than block_size 16"),
        "{}",
        warnings[0]
    );
}

#[test]
fn bad_flags() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    let cases: &[(&[&str], &str)] = &[
        (
            &["train", "--n-embd", "18"],
            "--n-embd 18 is not divisible by --n-head 4",
        ),
        (&["train", "--n-layer", "0"], "must be a whole number of at least 1"),
        (&["train", "--n-head", "-2"], "must be a whole number of at least 1"),
        (
            &["train", "--steps", "0"],
            "'--steps <N>': must be a whole number of at least 1",
        ),
        (&["train", "--steps", "-5"], "must be a whole number of at least 1"),
        (
            &["train", "--batch-size", "0"],
            "'--batch-size <B>': must be a whole number of at least 1",
        ),
        (&["train", "--block-size", "0"], "must be a whole number of at least 1"),
        (
            &["train", "--temperature", "0"],
            "'--temperature <T>': must be a finite number above 0",
        ),
        (&["train", "--temperature", "-1"], "must be a finite number above 0"),
        (
            &["train", "--lr", "nan"],
            "'--lr <LR>': must be a finite number above 0",
        ),
        (&["train", "--lr", "inf"], "must be a finite number above 0"),
        (&["train", "--lr", "-0.1"], "must be a finite number above 0"),
        (&["train", "--lr", "0"], "must be a finite number above 0"),
        (&["train", "--device", "tpu"], "invalid value 'tpu' for '--device"),
        (&["train", "--bogus"], "unexpected argument '--bogus'"),
        (
            &["train", "--steps", "3", "--prefix", "Zq"],
            "--prefix \"Zq\": character 'Z' is not in the vocabulary",
        ),
        (&["train", "--save-every", "5"], "--save-every needs --out DIR"),
    ];
    for (args, needle) in cases {
        fails_with(d, args, needle);
    }
}

#[test]
fn devices_the_build_lacks_or_the_machine_lacks() {
    let dir = common::scratch_with_names();
    let args = ["train", "--steps", "2", "--device", "gpu"];
    if cfg!(feature = "gpu") {
        // with the feature, on a machine whose Vulkan loader finds no driver: one line
        let out = common::command(dir.path())
            .args(args)
            .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
            .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!out.status.success());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("no GPU adapter found")
                && err.contains("install Vulkan drivers")
                && err.contains("--device cpu"),
            "{err}"
        );
        fails_with(
            dir.path(),
            &["train", "--device", "gpu", "--dtype", "f64"],
            "the GPU computes in f32 only",
        );
    } else {
        fails_with(
            dir.path(),
            &args,
            "this build has no GPU support: rebuild with `cargo run --release --features gpu`",
        );
    }
    if !cfg!(feature = "ndarray") {
        fails_with(dir.path(), &["train", "--device", "ndarray"], "--features ndarray`");
    }
}

/// A finished checkpoint in `dir/ck`.
fn checkpoint(dir: &Path) -> std::path::PathBuf {
    ok(
        dir,
        &["train", "--steps", "5", "--out", "ck", "--quiet", "--num-samples", "0"],
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ck/checkpoint.json")).unwrap()).unwrap();
    dir.join("ck").join(meta["weights"].as_str().unwrap())
}

fn edit_meta(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("ck/checkpoint.json");
    let mut meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut meta);
    std::fs::write(path, serde_json::to_string(&meta).unwrap()).unwrap();
}

#[test]
fn bad_checkpoints() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    std::fs::create_dir(d.join("emptydir")).unwrap();
    fn sample(ck: &str) -> Vec<&str> {
        vec!["sample", "--checkpoint", ck]
    }
    fails_with(d, &sample("nowhere"), "checkpoint directory nowhere does not exist");
    fails_with(
        d,
        &sample("emptydir"),
        "holds no checkpoint (checkpoint.json is missing)",
    );

    let weights = checkpoint(d);
    let model = weights.join("model.bpk");
    let good = std::fs::read(&model).unwrap();

    std::fs::write(&model, &good[..good.len() / 2]).unwrap();
    fails_with(d, &sample("ck"), "the weights are truncated, corrupted or do not match");
    let mut flipped = good.clone();
    for b in flipped.iter_mut().take(64) {
        *b ^= 0x5a;
    }
    std::fs::write(&model, &flipped).unwrap();
    fails_with(d, &sample("ck"), "the weights are truncated, corrupted or do not match");
    std::fs::write(&model, &good).unwrap();
    ok(d, &sample("ck"));

    edit_meta(d, |m| m["config"]["n_embd"] = 32.into());
    fails_with(d, &sample("ck"), "do not match checkpoint.json");
    edit_meta(d, |m| m["config"]["n_embd"] = 16.into());

    edit_meta(d, |m| m["format_version"] = 99.into());
    fails_with(
        d,
        &sample("ck"),
        "has format version 99, newer than this program's 1: upgrade microgpt",
    );
    edit_meta(d, |m| m["format_version"] = 1.into());

    std::fs::write(d.join("other.txt"), "ABC\nDEF\nGHI\n").unwrap();
    fails_with(
        d,
        &["train", "--resume", "ck", "--data", "other.txt"],
        "differs from the checkpoint's: pass the --data",
    );

    std::fs::write(d.join("ck/checkpoint.json"), "{ not json").unwrap();
    fails_with(d, &sample("ck"), "is corrupted");
}

fn spawn(dir: &Path, args: &[&str]) -> Child {
    common::command(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(path: &Path, timeout: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < timeout, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn saved_step(dir: &Path) -> u64 {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ck/checkpoint.json")).unwrap()).unwrap();
    meta["step"].as_u64().unwrap()
}

#[test]
fn sigint_and_sigterm_save_and_resume() {
    for name in ["INT", "TERM"] {
        let dir = common::scratch_with_names();
        let d = dir.path();
        let child = spawn(d, &["train", "--steps", "1000000", "--out", "ck"]);
        wait_for(&d.join("ck/metrics.csv"), Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(300));
        signal(&child, name);
        let out: Output = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(130), "SIG{name}: {err}");
        assert!(
            err.contains("interrupted at step ") && err.contains("continue with --resume ck"),
            "{err}"
        );
        let step = saved_step(d);
        assert!(step > 0);
        ok(
            d,
            &[
                "train",
                "--resume",
                "ck",
                "--stop-at",
                &(step + 5).to_string(),
                "--quiet",
                "--num-samples",
                "0",
            ],
        );
        assert_eq!(saved_step(d), step + 5);
    }
}

#[test]
fn sigkill_during_saves_leaves_a_loadable_checkpoint() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    // a cheap, seed-free source of varied kill times
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    for round in 0..6 {
        let args = ["train", "--steps", "1000000", "--save-every", "1", "--out", "ck"];
        let args: Vec<&str> = if round == 0 {
            args.to_vec()
        } else {
            vec!["train", "--resume", "ck", "--save-every", "1"]
        };
        let mut child = spawn(d, &args);
        wait_for(&d.join("ck/checkpoint.json"), Duration::from_secs(60));
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        std::thread::sleep(Duration::from_millis(50 + state % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let out = microgpt(d, &["sample", "--checkpoint", "ck", "--num-samples", "1"]);
        assert!(out.status.success(), "round {round}: {}", stderr(&out));
    }
}

#[test]
fn divergence_stops_with_a_hint_and_keeps_the_last_good_checkpoint() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    let out = microgpt(
        d,
        &[
            "train",
            "--lr",
            "1e300",
            "--steps",
            "50",
            "--save-every",
            "1",
            "--out",
            "ck",
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("training diverged: loss is") && err.contains("lower the learning rate"),
        "{err}"
    );
    assert!(err.contains("the last good checkpoint (step"), "{err}");
    let step = saved_step(d);
    assert!(err.contains(&format!("at step {}", step + 1)), "{err}");
    ok(d, &["sample", "--checkpoint", "ck", "--num-samples", "1"]);
}

/// The one stderr line of a failed run, checked to be a single line without a panic.
fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, got: {err}");
    lines[0].to_string()
}

#[test]
fn one_run_per_output_directory() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    let mut first = spawn(d, &["train", "--steps", "1000000", "--save-every", "50", "--out", "ck"]);
    wait_for(&d.join("ck/checkpoint.json"), Duration::from_secs(60));

    // a second run on the same directory stops at once, naming it and the holder
    for args in [
        vec!["train", "--out", "ck", "--steps", "3000", "--seed", "7"],
        vec!["train", "--resume", "ck"],
    ] {
        let started = Instant::now();
        let line = one_line_error(&microgpt(d, &args));
        assert!(line.contains("ck is in use by another training run"), "{line}");
        assert!(line.contains(&format!("(process {})", first.id())), "{line}");
        assert!(started.elapsed() < Duration::from_secs(20), "{args:?} waited");
    }
    // readers still read the directory being written, always a whole checkpoint
    for _ in 0..5 {
        ok(d, &["sample", "--checkpoint", "ck", "--num-samples", "2"]);
        ok(d, &["eval", "--checkpoint", "ck"]);
    }
    // the lock dies with its process
    first.kill().unwrap();
    first.wait().unwrap();
    let step = saved_step(d);
    ok(
        d,
        &[
            "train",
            "--resume",
            "ck",
            "--stop-at",
            &(step + 3).to_string(),
            "--quiet",
            "--num-samples",
            "0",
        ],
    );
    assert_eq!(saved_step(d), step + 3);
}

#[test]
fn resume_refuses_other_model_sizes() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    checkpoint(d);
    for (flag, value, saved) in [
        ("--n-layer", "2", "1"),
        ("--n-embd", "32", "16"),
        ("--n-head", "2", "4"),
        ("--block-size", "8", "16"),
    ] {
        let line = one_line_error(&microgpt(d, &["train", "--resume", "ck", flag, value]));
        assert!(
            line.contains(&format!("{flag} {value} differs from the checkpoint's {saved}")),
            "{line}"
        );
    }
    let line = one_line_error(&microgpt(d, &["train", "--resume", "ck", "--preset", "small"]));
    assert!(
        line.contains("--preset small differs from the checkpoint's reference (n_layer 1, n_embd 16"),
        "{line}"
    );
    // the same sizes, spelled out, are accepted
    ok(
        d,
        &[
            "train",
            "--resume",
            "ck",
            "--preset",
            "reference",
            "--n-layer",
            "1",
            "--n-embd",
            "16",
            "--n-head",
            "4",
            "--block-size",
            "16",
        ],
    );
}

#[test]
fn eval_finds_the_data_from_any_directory_and_notices_changes() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    checkpoint(d);
    let ck = d.join("ck");
    let ck = ck.to_str().unwrap();
    let here = ok(d, &["eval", "--checkpoint", "ck"]);
    let elsewhere = tempfile::tempdir().unwrap();
    assert_eq!(ok(elsewhere.path(), &["eval", "--checkpoint", ck]), here);

    let names = d.join("data/names.txt");
    let moved = d.join("names-moved.txt");
    std::fs::rename(&names, &moved).unwrap();
    let line = one_line_error(&microgpt(elsewhere.path(), &["eval", "--checkpoint", ck]));
    assert!(
        line.contains(&format!("the data file {} recorded in", names.display())),
        "{line}"
    );
    assert!(line.contains("is gone: pass --data PATH"), "{line}");
    let line = one_line_error(&microgpt(d, &["train", "--resume", "ck"]));
    assert!(line.contains("is gone: pass --data PATH"), "{line}");

    let mut text = std::fs::read_to_string(&moved).unwrap();
    text.push_str("zzyzx\n");
    std::fs::write(&names, text).unwrap();
    let line = one_line_error(&microgpt(elsewhere.path(), &["eval", "--checkpoint", ck]));
    assert!(
        line.contains("has changed since training") && line.contains("pass --data PATH"),
        "{line}"
    );
    let line = one_line_error(&microgpt(d, &["train", "--resume", "ck", "--data", "data/names.txt"]));
    assert!(line.contains("is not the file the checkpoint was trained on"), "{line}");
    // the moved original still works when named
    ok(
        d,
        &[
            "train",
            "--resume",
            "ck",
            "--data",
            "names-moved.txt",
            "--quiet",
            "--num-samples",
            "0",
        ],
    );
}

/// A 300 KiB tmpfs at `path`, unmounted on drop; `None` where mounting is not allowed.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(path: &Path) -> Option<Self> {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=300k", "tmpfs"])
            .arg(path)
            .stderr(Stdio::null())
            .status();
        status.is_ok_and(|s| s.success()).then(|| SmallDisk(path.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_during_a_save_keeps_the_previous_checkpoint() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    let Some(_disk) = SmallDisk::mount(&d.join("small")) else {
        eprintln!("skipped: mounting a small tmpfs needs root (this test fills a 300 KiB disk)");
        return;
    };
    let line = one_line_error(&microgpt(
        d,
        &["train", "--steps", "200", "--save-every", "5", "--out", "small/ck"],
    ));
    assert!(line.contains("the disk is full: cannot "), "{line}");
    assert!(line.contains("small/ck"), "{line}");
    let left: Vec<String> = std::fs::read_dir(d.join("small/ck"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "half-written files stay: {left:?}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("small/ck/checkpoint.json")).unwrap()).unwrap();
    let step = meta["step"].as_u64().unwrap();
    assert!(
        line.contains(&format!("the checkpoint of step {step} in small/ck is intact")),
        "{line}"
    );
    ok(d, &["sample", "--checkpoint", "small/ck", "--num-samples", "2"]);
}
