//! Bad input, faults and interruptions: every row of docs/ERRORS.md's table. Each bad input gets
//! one line on stderr naming the problem and the fix, a non-zero exit, no panic, and leaves no
//! partial output behind.

// every test runs the program on the CPU backend
#![cfg(feature = "cpu")]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Running, metrics_rows, microgpt, ok, one_line_error, read_json, stderr, wait_until};

/// Assert a failure with exactly one stderr line containing `needle`, and no output dir.
fn fails_with(dir: &Path, args: &[&str], needle: &str) {
    let line = one_line_error(&microgpt(dir, args));
    assert!(line.contains(needle), "{args:?}: {line:?} does not contain {needle:?}");
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
    fails_with(d, &train("missing.txt"), "data file missing.txt not found: pass --data PATH");
    fails_with(d, &train("adir"), "is a directory");
    fails_with(d, &train("empty.txt"), "holds no documents");
    fails_with(d, &train("blank.txt"), "holds no documents");
    fails_with(d, &train("latin1.txt"), "is not UTF-8 text (invalid byte at offset 3)");
    fails_with(d, &train("one.txt"), "training needs at least 2");
}

#[test]
fn long_documents_are_cut_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    data_file(dir.path(), "long.txt", b"abcdefghijklmnopqrstuvwxyz\nabcdefghijklmnopqrstu\nshort\nab\n");
    let out = microgpt(dir.path(), &["train", "--data", "long.txt", "--steps", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings: Vec<String> = stderr(&out).lines().filter(|l| l.contains("warning")).map(String::from).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("2 documents are longer than block_size 16"), "{}", warnings[0]);
}

#[test]
fn bad_flags() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    let cases: &[(&[&str], &str)] = &[
        (&["train", "--n-embd", "18"], "--n-embd 18 is not divisible by --n-head 4"),
        (&["train", "--n-layer", "0"], "must be a whole number of at least 1"),
        (&["train", "--n-head", "-2"], "must be a whole number of at least 1"),
        (&["train", "--steps", "0"], "'--steps <N>': must be a whole number of at least 1"),
        (&["train", "--steps", "-5"], "must be a whole number of at least 1"),
        (&["train", "--batch-size", "0"], "'--batch-size <B>': must be a whole number of at least 1"),
        (&["train", "--block-size", "0"], "must be a whole number of at least 1"),
        (&["train", "--temperature", "0"], "'--temperature <T>': must be a finite number above 0"),
        (&["train", "--temperature", "-1"], "must be a finite number above 0"),
        (&["train", "--lr", "nan"], "'--lr <LR>': must be a finite number above 0"),
        (&["train", "--lr", "inf"], "must be a finite number above 0"),
        (&["train", "--lr", "-0.1"], "must be a finite number above 0"),
        (&["train", "--lr", "0"], "must be a finite number above 0"),
        (&["train", "--device", "tpu"], "invalid value 'tpu' for '--device"),
        (&["train", "--bogus"], "unexpected argument '--bogus'"),
        (&["train", "--steps", "3", "--prefix", "Zq"], "--prefix \"Zq\": character 'Z' is not in the vocabulary"),
        (&["train", "--save-every", "5"], "--save-every needs --out DIR"),
        (
            &["sample", "--checkpoint", "ck", "--num-tokens", "0"],
            "'--num-tokens <N>': must be a whole number of at least 1",
        ),
        (
            &["sample", "--checkpoint", "ck", "--num-chars", "0"],
            "'--num-chars <N>': must be a whole number of at least 1",
        ),
        (&["sample", "--checkpoint", "ck", "--num-chars", "5", "--num-tokens", "5"], "cannot be used with"),
        (&["train", "--kernels", "ours2"], "invalid value 'ours2' for '--kernels"),
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
        let err = one_line_error(&out);
        assert!(
            err.contains("no GPU adapter found")
                && err.contains("install Vulkan drivers")
                && err.contains("--device cpu"),
            "{err}"
        );
        fails_with(dir.path(), &["train", "--device", "gpu", "--dtype", "f64"], "the GPU computes in f32 only");
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
    if !cfg!(feature = "cuda") {
        fails_with(
            dir.path(),
            &["train", "--device", "cuda"],
            "this build has no CUDA support: rebuild with `cargo run --release --features cuda`",
        );
    } // with the feature, tests/gpu.rs checks the one line of a machine without CUDA
}

/// A finished checkpoint in `dir/ck`.
fn checkpoint(dir: &Path) -> std::path::PathBuf {
    ok(dir, &["train", "--steps", "5", "--out", "ck", "--quiet", "--num-samples", "0"]);
    let meta = read_json(&dir.join("ck/checkpoint.json"));
    dir.join("ck").join(meta["weights"].as_str().unwrap())
}

fn edit_meta(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("ck/checkpoint.json");
    let mut meta = read_json(&path);
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
    fails_with(d, &sample("emptydir"), "holds no checkpoint (checkpoint.json is missing)");

    let weights = checkpoint(d);
    let model = weights.join("model.bpk");
    let good = std::fs::read(&model).unwrap();

    std::fs::write(&model, &good[..good.len() / 2]).unwrap();
    fails_with(d, &sample("ck"), "model.bpk is damaged: its size or SHA-256 differs");
    let mut flipped = good.clone();
    for b in flipped.iter_mut().take(64) {
        *b ^= 0x5a;
    }
    std::fs::write(&model, &flipped).unwrap();
    fails_with(d, &sample("ck"), "model.bpk is damaged: its size or SHA-256 differs");
    std::fs::write(&model, &good).unwrap();
    ok(d, &sample("ck"));

    edit_meta(d, |m| m["config"]["n_embd"] = 32.into());
    fails_with(d, &sample("ck"), "do not match checkpoint.json");
    edit_meta(d, |m| m["config"]["n_embd"] = 16.into());

    edit_meta(d, |m| m["format_version"] = 99.into());
    fails_with(d, &sample("ck"), "has format version 99, newer than this program's 5: upgrade microgpt");
    // a version-2 checkpoint without its digests is no checkpoint of this program
    edit_meta(d, |m| m["format_version"] = 3.into());
    let files = std::fs::read_to_string(d.join("ck/checkpoint.json")).unwrap();
    edit_meta(d, |m| m["files"] = serde_json::json!({}));
    fails_with(d, &sample("ck"), "records no digest of model.bpk: the checkpoint is corrupted");
    std::fs::write(d.join("ck/checkpoint.json"), files).unwrap();

    std::fs::write(d.join("other.txt"), "ABC\nDEF\nGHI\n").unwrap();
    fails_with(
        d,
        &["train", "--resume", "ck", "--data", "other.txt"],
        "differs from the checkpoint's: pass the --data",
    );

    // a setting every checkpoint records, gone: damaged, not read as the reference's
    let saved = std::fs::read(d.join("ck/checkpoint.json")).unwrap();
    edit_meta(d, |meta| {
        meta["run"].as_object_mut().unwrap().remove("seed");
    });
    fails_with(d, &sample("ck"), "is corrupted (its run settings lack seed)");
    std::fs::write(d.join("ck/checkpoint.json"), saved).unwrap();

    std::fs::write(d.join("ck/checkpoint.json"), "{ not json").unwrap();
    fails_with(d, &sample("ck"), "is corrupted");
}

fn saved_step(dir: &Path) -> u64 {
    let meta = read_json(&dir.join("ck/checkpoint.json"));
    meta["step"].as_u64().unwrap()
}

/// Whether `dir/ck/checkpoint.json` exists yet.
fn saved_once(dir: &Path) -> bool {
    dir.join("ck/checkpoint.json").exists()
}

#[cfg(unix)]
#[test]
fn sigint_and_sigterm_save_and_resume() {
    for name in ["INT", "TERM"] {
        let dir = common::scratch_with_names();
        let d = dir.path();
        let child = Running::start(d, &["train", "--steps", "1000000", "--save-every", "1", "--out", "ck"]);
        // some steps in: the interrupt lands inside the loop, not before it
        wait_until("ten training steps", || metrics_rows(&d.join("ck")) >= 10);
        child.signal(name);
        let out = child.wait();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(130), "SIG{name}: {err}");
        assert!(err.contains("interrupted at step ") && err.contains("continue with --resume ck"), "{err}");
        let step = saved_step(d);
        assert!(step >= 10, "{step}");
        assert_eq!(metrics_rows(&d.join("ck")) as u64, step, "every step up to the save is recorded");
        // every step was saved by --save-every 1: the interrupt's save of the same step is
        // skipped, so the one folder keeps its first name (a second save would be step-N-1)
        assert_eq!(step_folders(d), [format!("step-{step:06}")]);
        ok(d, &["train", "--resume", "ck", "--stop-at", &(step + 5).to_string(), "--quiet", "--num-samples", "0"]);
        assert_eq!(saved_step(d), step + 5);
    }
}

/// A GPT-2 run that saves every step: Ctrl-C saves and says how to continue, and the resume
/// continues; SIGKILL at random moments, in the middle of saves too, always leaves a model that
/// samples and a folder that resumes.
#[cfg(unix)]
#[test]
fn a_gpt2_run_interrupted_or_killed_keeps_its_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(common::reference("gpt2").join("text.txt"), d.join("text.txt")).unwrap();
    let folder = common::reference("gpt2").join("saved");
    let run = ["train", "--init-from", folder.to_str().unwrap(), "--data", "text.txt", "--block-size", "16"];
    let run =
        [&run[..], &["--steps", "1000000", "--batch-size", "2", "--save-every", "1", "--eval-windows", "4"]].concat();
    let child = Running::start(d, &[&run[..], &["--out", "ck"]].concat());
    wait_until("ten training steps", || metrics_rows(&d.join("ck")) >= 10);
    child.signal("INT");
    let out = child.wait();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("continue with --resume ck"), "{}", stderr(&out));
    let step = read_json(&d.join("ck/checkpoint.json"))["step"].as_u64().unwrap();
    let more = (step + 3).to_string();
    ok(d, &["train", "--resume", "ck", "--stop-at", &more, "--quiet", "--num-tokens", "1"]);
    assert_eq!(read_json(&d.join("ck/checkpoint.json"))["step"].as_u64(), Some(step + 3));

    let mut next = kill_times();
    for round in 0..6 {
        let child = Running::start(d, &["train", "--resume", "ck", "--stop-at", "1000000"]);
        std::thread::sleep(std::time::Duration::from_millis(200 + next() % 600));
        child.kill();
        let out = microgpt(d, &["sample", "--checkpoint", "ck", "--num-tokens", "2"]);
        assert!(out.status.success(), "round {round}: {}", stderr(&out));
        let resumed = microgpt(d, &["train", "--resume", "ck", "--stop-at", "1", "--quiet", "--num-tokens", "1"]);
        assert!(resumed.status.success(), "round {round}: {}", stderr(&resumed));
    }
    let left: Vec<String> = std::fs::read_dir(d.join("ck"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("step-") || name.contains(".tmp-"))
        .collect();
    assert!(left.len() <= 2, "old weights folders pile up: {left:?}");
}

/// A small generator for the kill times: seeded from the clock unless `MICROGPT_TEST_SEED` is
/// set, and the seed printed, so that a failure can be replayed.
fn kill_times() -> impl FnMut() -> u64 {
    let seed = std::env::var("MICROGPT_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64
    });
    eprintln!("kill times from MICROGPT_TEST_SEED={seed}");
    let mut state = seed | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// SIGKILL at random moments of runs that save every step, including saves of a step the
/// directory already holds (a new run over an earlier one, saving the steps it saved): after
/// each kill the directory holds a loadable checkpoint; a run that ends leaves one folder.
#[test]
fn sigkill_during_saves_leaves_a_loadable_checkpoint() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    let mut next = kill_times();
    let overwrite = ["train", "--steps", "3", "--save-every", "1", "--out", "ck", "--overwrite", "--num-samples", "0"];
    // saves only at its end, step 3, which the runs before it saved: always the same step
    let same_step = ["train", "--steps", "3", "--out", "ck", "--overwrite", "--num-samples", "0"];
    for round in 0..10 {
        let args: Vec<&str> = match round {
            0 => vec!["train", "--steps", "1000000", "--save-every", "1", "--out", "ck"],
            1..4 => vec!["train", "--resume", "ck", "--save-every", "1"],
            4 | 6 => overwrite.to_vec(),
            _ => same_step.to_vec(),
        };
        let child = Running::start(d, &args);
        if round == 0 {
            wait_until("the first checkpoint", || saved_once(d));
        }
        std::thread::sleep(std::time::Duration::from_millis(next() % 400));
        child.kill();
        let out = microgpt(d, &["sample", "--checkpoint", "ck", "--num-samples", "1"]);
        assert!(out.status.success(), "round {round}: {}", stderr(&out));
    }
    ok(d, &overwrite);
    assert_eq!(step_folders(d).len(), 1, "{:?}", step_folders(d));
    ok(d, &same_step);
    assert_eq!(step_folders(d), ["step-000003-1"], "the same step under a new name");
}

/// The weights folders in `dir/ck`, sorted.
fn step_folders(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("ck"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("step-"))
        .collect();
    names.sort();
    names
}

#[test]
fn divergence_stops_with_a_hint_and_keeps_the_last_good_checkpoint() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    let out = microgpt(d, &["train", "--lr", "1e300", "--steps", "50", "--save-every", "1", "--out", "ck"]);
    let err = one_line_error(&out);
    // the loss of step 3 is NaN, or already the update of step 2 left weights that are not
    // finite: either way the last good checkpoint is the step before
    assert!(err.starts_with("error: training diverged: "), "{err}");
    let step = saved_step(d);
    assert!(err.contains(&format!("at step {}", step + 1)), "{err}");
    assert!(err.contains(&format!("the last good checkpoint (step {step}) is in ck")), "{err}");
    // its weights are finite numbers and load; at this rate they are so large that the logits
    // may overflow, which sampling then says in one line instead of drawing "aaaa..."
    ok(d, &["eval", "--checkpoint", "ck"]);
    let sampled = microgpt(d, &["sample", "--checkpoint", "ck", "--num-samples", "1"]);
    if !sampled.status.success() {
        assert!(one_line_error(&sampled).contains("cannot sample: the total of the weights is not finite"));
    }
    // the advice is a command the program takes: it runs (and, at 1e299, diverges again)
    let advice = err.split('`').nth(1).expect("a command between backquotes");
    let data = d.canonicalize().unwrap().join("data/names.txt");
    let expected =
        format!("train --init-from ck --data {} --lr 1e299 --steps {} --out NEW_DIR", data.display(), 50 - step);
    assert_eq!(advice, expected);
    let args: Vec<&str> = advice.replace("NEW_DIR", "retry").leak().split(' ').collect();
    let again = one_line_error(&microgpt(d, &args));
    assert!(again.starts_with("error: training diverged"), "{again}");
}

/// With losses read many steps at a time (as on a GPU), the steps before the first NaN are
/// still printed and recorded.
#[test]
fn the_finite_steps_before_a_divergence_are_printed_and_recorded() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    let out = microgpt(d, &["train", "--lr", "1e100", "--steps", "50", "--sync-every", "50", "--out", "ck"]);
    let err = one_line_error(&out);
    let bad: usize = err.split("at step ").nth(1).unwrap().split(';').next().unwrap().parse().unwrap();
    assert!(bad > 1, "{err}");
    let printed = common::step_losses(&common::stdout(&out));
    assert_eq!(printed.len(), bad - 1, "{err}");
    assert!(printed.iter().all(|l| l.is_finite()));
    assert_eq!(metrics_rows(&d.join("ck")), bad - 1);
    assert!(err.contains("lower the learning rate (--lr 1e100 now, try 1e99)"), "nothing saved: {err}");
}

#[test]
fn one_run_per_output_directory() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    let mut first = Running::start(d, &["train", "--steps", "1000000", "--save-every", "50", "--out", "ck"]);
    wait_until("the first checkpoint", || saved_once(d));

    // a second run on the same directory stops at once, naming it and the holder: the first
    // (a million steps) is still running when the second has answered
    for args in [
        vec!["train", "--out", "ck", "--steps", "3000", "--seed", "7"],
        vec!["train", "--out", "ck", "--overwrite", "--steps", "3000", "--seed", "7"],
        vec!["train", "--resume", "ck"],
    ] {
        let line = one_line_error(&microgpt(d, &args));
        assert!(line.contains("ck is in use by another training run"), "{line}");
        assert!(line.contains(&format!("(process {})", first.id())), "{line}");
        assert!(first.is_running(), "{args:?} waited for the first run to end");
    }
    // readers still read the directory being written, always a whole checkpoint
    for _ in 0..5 {
        ok(d, &["sample", "--checkpoint", "ck", "--num-samples", "2"]);
        ok(d, &["eval", "--checkpoint", "ck"]);
    }
    // the lock dies with its process
    first.kill();
    let step = saved_step(d);
    ok(d, &["train", "--resume", "ck", "--stop-at", &(step + 3).to_string(), "--quiet", "--num-samples", "0"]);
    assert_eq!(saved_step(d), step + 3);
}

#[test]
fn resume_refuses_other_model_sizes() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    checkpoint(d);
    for (flag, value, saved) in
        [("--n-layer", "2", "1"), ("--n-embd", "32", "16"), ("--n-head", "2", "4"), ("--block-size", "8", "16")]
    {
        let line = one_line_error(&microgpt(d, &["train", "--resume", "ck", flag, value]));
        assert!(line.contains(&format!("{flag} {value} differs from the checkpoint's {saved}")), "{line}");
    }
    let line = one_line_error(&microgpt(d, &["train", "--resume", "ck", "--preset", "small"]));
    assert!(line.contains("--preset small differs from the checkpoint's reference (n_layer 1, n_embd 16"), "{line}");
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

/// `--dataset` on a resume must name the data the run trained on, as `--data` must: another
/// data set is refused in one line, the checkpoint untouched; the same one is accepted.
#[test]
fn resume_refuses_another_named_dataset() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    ok(d, &["train", "--steps", "20", "--stop-at", "5", "--out", "ck", "--quiet", "--num-samples", "0"]);
    // other bytes in the checkpoint's own characters: only the file's digest tells them apart
    std::fs::write(d.join("data/shakespeare.txt"), "romeo\njuliet\n").unwrap();
    let before = std::fs::read(d.join("ck/checkpoint.json")).unwrap();
    let line = one_line_error(&microgpt(d, &["train", "--resume", "ck", "--dataset", "shakespeare"]));
    assert!(
        line.contains("--dataset shakespeare (data/shakespeare.txt) is not the file the checkpoint was trained on"),
        "{line}"
    );
    assert_eq!(std::fs::read(d.join("ck/checkpoint.json")).unwrap(), before, "the checkpoint is untouched");
    ok(d, &["train", "--resume", "ck", "--dataset", "names", "--stop-at", "6", "--quiet", "--num-samples", "0"]);
    assert_eq!(saved_step(d), 6);
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
    assert!(line.contains(&format!("the data file {} recorded in", names.display())), "{line}");
    assert!(line.contains("is gone: pass --data PATH"), "{line}");
    let line = one_line_error(&microgpt(d, &["train", "--resume", "ck"]));
    assert!(line.contains("is gone: pass --data PATH"), "{line}");

    let mut text = std::fs::read_to_string(&moved).unwrap();
    text.push_str("zzyzx\n");
    std::fs::write(&names, text).unwrap();
    let line = one_line_error(&microgpt(elsewhere.path(), &["eval", "--checkpoint", ck]));
    assert!(line.contains("has changed since training") && line.contains("pass --data PATH"), "{line}");
    let line = one_line_error(&microgpt(d, &["train", "--resume", "ck", "--data", "data/names.txt"]));
    assert!(line.contains("is not the file the checkpoint was trained on"), "{line}");
    // the moved original still works when named
    ok(d, &["train", "--resume", "ck", "--data", "names-moved.txt", "--quiet", "--num-samples", "0"]);
}

/// A 300 KiB tmpfs at `path`, unmounted on drop; `None` where mounting is not allowed.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(path: &Path) -> Option<Self> {
        if !cfg!(target_os = "linux") {
            return None;
        }
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
        common::skip(
            "a_full_disk_during_a_save_keeps_the_previous_checkpoint",
            "mounting a small tmpfs needs root on Linux (this test fills a 300 KiB disk)",
        );
        return;
    };
    let line = one_line_error(&microgpt(d, &["train", "--steps", "200", "--save-every", "5", "--out", "small/ck"]));
    assert!(line.contains("the disk is full: cannot "), "{line}");
    assert!(line.contains("small/ck"), "{line}");
    let left: Vec<String> = std::fs::read_dir(d.join("small/ck"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "half-written files stay: {left:?}");
    let meta = read_json(&d.join("small/ck/checkpoint.json"));
    let step = meta["step"].as_u64().unwrap();
    assert!(line.contains(&format!("the checkpoint of step {step} in small/ck is intact")), "{line}");
    ok(d, &["sample", "--checkpoint", "small/ck", "--num-samples", "2"]);
}

#[test]
fn a_repeated_out_is_refused_and_overwrite_replaces_the_run() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    ok(d, &["train", "--steps", "20", "--save-every", "10", "--out", "ck", "--quiet", "--num-samples", "0"]);
    let before: Vec<Vec<u8>> =
        ["checkpoint.json", "metrics.csv"].iter().map(|f| std::fs::read(d.join("ck").join(f)).unwrap()).collect();
    for args in [
        vec!["train", "--steps", "5", "--out", "ck"],
        vec!["--steps", "5", "--out", "ck"],
        vec!["train", "--init-from", "ck", "--steps", "5", "--out", "ck"],
    ] {
        let line = one_line_error(&microgpt(d, &args));
        assert!(line.contains("ck already holds a training run (the checkpoint of step 20)"), "{args:?}: {line}");
        assert!(
            line.contains("--resume ck") && line.contains("another --out") && line.contains("--overwrite"),
            "{line}"
        );
    }
    let after: Vec<Vec<u8>> =
        ["checkpoint.json", "metrics.csv"].iter().map(|f| std::fs::read(d.join("ck").join(f)).unwrap()).collect();
    assert!(before == after, "a refused run changed the directory");
    // metrics alone (a run killed before its first save) are a run too
    std::fs::create_dir(d.join("killed")).unwrap();
    std::fs::write(d.join("killed/metrics.csv"), "step,train_loss\n1,3.3\n").unwrap();
    let line = one_line_error(&microgpt(d, &["train", "--steps", "5", "--out", "killed"]));
    assert!(line.contains("killed already holds a training run (its metrics.csv)"), "{line}");
    // --overwrite replaces it (and nothing of the user's), and only means something with --out
    std::fs::create_dir(d.join("ck/step-notes")).unwrap();
    ok(d, &["train", "--steps", "5", "--out", "ck", "--overwrite", "--quiet", "--num-samples", "0"]);
    assert!(d.join("ck/step-notes").is_dir(), "a folder the program did not make stays");
    assert_eq!(saved_step(d), 5);
    assert_eq!(metrics_rows(&d.join("ck")), 5);
    let line = one_line_error(&microgpt(d, &["train", "--steps", "5", "--overwrite"]));
    assert!(line.contains("--out"), "{line}");
}

/// A byte changed inside a tensor's numbers (not the file's header) is found by the digest
/// that checkpoint.json records, and the file is named.
#[test]
fn a_flipped_byte_inside_the_weights_is_named() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    let weights = checkpoint(d);
    let before = ok(d, &["eval", "--checkpoint", "ck"]);
    for file in ["model.bpk", "optimizer.bpk"] {
        let path = weights.join(file);
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        let at = bad.len() - 9; // among the last tensor's numbers
        bad[at] ^= 0x01;
        std::fs::write(&path, &bad).unwrap();
        let args: &[&str] =
            if file == "model.bpk" { &["eval", "--checkpoint", "ck"] } else { &["train", "--resume", "ck"] };
        let line = one_line_error(&microgpt(d, args));
        assert!(line.contains(&format!("{file} is damaged")) && line.contains("SHA-256"), "{line}");
        std::fs::write(&path, &good).unwrap();
    }
    assert_eq!(ok(d, &["eval", "--checkpoint", "ck"]), before);
}

/// `--init-from`: a new run from a checkpoint's weights, on other data with the same
/// characters (the names spelled backwards), with its own schedule. It starts where the loaded
/// model stands on the new data, and learns it.
#[test]
fn init_from_fine_tunes_a_saved_model_on_other_data() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    ok(d, &["train", "--steps", "300", "--out", "ck", "--quiet", "--num-samples", "0"]);
    let names = std::fs::read_to_string(d.join("data/names.txt")).unwrap();
    let reversed: Vec<String> = names.lines().map(|l| l.chars().rev().collect()).collect();
    std::fs::write(d.join("reversed.txt"), reversed.join("\n")).unwrap();
    let out = ok(
        d,
        &["train", "--init-from", "ck", "--data", "reversed.txt", "--steps", "300", "--lr", "0.005", "--out", "ft"],
    );
    let before: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("init from ck (step 300): val loss "))
        .expect("the loaded model's held-out loss")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let after = common::val_loss(&out);
    assert!(after < before - 0.1, "val loss {before} -> {after}");
    assert_eq!(common::step_losses(&out).len(), 300, "a schedule of its own: steps 1..300");
    let meta = read_json(&d.join("ft/checkpoint.json"));
    assert_eq!(meta["init_from"]["step"], 300);
    assert_eq!(meta["run"]["lr"], 0.005);
    // what it refuses: other sizes, characters the model has no token for, with --resume
    let line = one_line_error(&microgpt(d, &["train", "--init-from", "ck", "--n-embd", "32"]));
    assert!(
        line.contains("--n-embd 32 differs from the checkpoint's 16: --init-from keeps the checkpoint's model"),
        "{line}"
    );
    std::fs::write(d.join("upper.txt"), "Anna\nBob\nCarl\n").unwrap();
    let line = one_line_error(&microgpt(d, &["train", "--init-from", "ck", "--data", "upper.txt"]));
    assert!(line.contains("upper.txt holds the character 'A', which the model in ck has no token for"), "{line}");
    let line = one_line_error(&microgpt(d, &["train", "--init-from", "ck", "--resume", "ck"]));
    assert!(line.contains("cannot be used with"), "{line}");
}

/// A checkpoint whose weights hold a NaN (and whose digests agree: it was saved so) is refused
/// by every reader in one line, instead of sampling "aaaa...".
#[test]
fn a_model_with_non_finite_weights_is_refused() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    let weights = checkpoint(d);
    // the first number of wte, as stored in model.bpk, becomes a NaN; the digest follows
    let device = microgpt_burn::device::cpu_f64();
    let loaded = microgpt_burn::program::checkpoint::load::<microgpt_burn::gpt::model::GPT>(
        &d.join("ck"),
        &device,
        microgpt_burn::device::Precision::F64,
    )
    .unwrap();
    let first: f64 = loaded.model.named_weights()[0].1.clone().into_data().iter::<f64>().next().unwrap();
    let model_path = weights.join("model.bpk");
    let mut bytes = std::fs::read(&model_path).unwrap();
    let at = bytes.windows(8).position(|w| w == first.to_le_bytes()).expect("wte[0] in model.bpk");
    bytes[at..at + 8].copy_from_slice(&f64::NAN.to_le_bytes());
    std::fs::write(&model_path, &bytes).unwrap();
    edit_meta(d, |m| {
        m["files"]["model.bpk"]["sha256"] = microgpt_burn::program::files::sha256_hex(&bytes).into();
    });
    for args in [
        vec!["sample", "--checkpoint", "ck"],
        vec!["eval", "--checkpoint", "ck"],
        vec!["inspect", "--checkpoint", "ck", "--text", "emma"],
        vec!["train", "--resume", "ck"],
    ] {
        let line = one_line_error(&microgpt(d, &args));
        assert!(line.contains("its weights are not finite (wte holds NaN or infinity)"), "{args:?}: {line}");
    }
}

/// Output piped into a program that stops reading (`| head -2`): the run ends as a Unix tool
/// does, by SIGPIPE, without a panic or an error line.
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_the_run_quietly() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    let dir = common::scratch_with_names();
    let mut child = common::command(dir.path())
        .args(["train", "--steps", "1000", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap(); // then closed
    assert!(first.starts_with("num docs"), "{first}");
    let out = child.wait_with_output().unwrap();
    const SIGPIPE: i32 = 13; // on every Unix
    assert_eq!(out.status.signal(), Some(SIGPIPE), "{:?}: {}", out.status, stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}
