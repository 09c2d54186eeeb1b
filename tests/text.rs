//! The text layout seen from outside: a play trained on as one stream of characters (random
//! windows, the last tenth held out), its passages, eval and inspect on a text checkpoint, an
//! exact resume, the Shakespeare presets and data set, and the inputs a text cannot train on.

// every test runs the program on the CPU backend
#![cfg(feature = "cpu")]

mod common;

use std::path::Path;

use common::{microgpt, ok, read_json, stderr, step_losses, val_loss};

/// A small text model: one layer of 32 channels, windows of 32, four per step.
const SMALL: [&str; 12] = [
    "--layout",
    "text",
    "--n-layer",
    "1",
    "--n-embd",
    "32",
    "--block-size",
    "32",
    "--batch-size",
    "4",
    "--eval-windows",
    "50",
];

/// A scratch directory holding `play.txt`: the first `chars` characters of shakespeare.txt.
fn scratch_with_play(chars: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("play.txt"), common::shakespeare_start(chars)).unwrap();
    dir
}

fn train(dir: &Path, extra: &[&str]) -> String {
    let args: Vec<&str> = ["train", "--data", "play.txt"].iter().chain(&SMALL).chain(extra).copied().collect();
    ok(dir, &args)
}

/// What follows the `--- inference ... ---` line, without the final line break.
fn passage(stdout: &str) -> &str {
    let start = stdout.find("--- inference (a passage of ").expect("a passage header");
    let body = &stdout[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body.strip_suffix('\n').unwrap_or(body)
}

#[test]
fn a_text_trains_on_windows_and_writes_passages() {
    let dir = scratch_with_play(20_000);
    let d = dir.path();
    let out = train(d, &["--steps", "60", "--lr", "0.01", "--num-chars", "120", "--out", "ck"]);
    assert!(out.contains("num chars: 20000 (18000 train, 2000 held out)"), "{out}");
    let losses = step_losses(&out);
    assert_eq!(losses.len(), 60);
    let vocab: f64 = out.lines().find_map(|l| l.strip_prefix("vocab size: ")).unwrap().parse().unwrap();
    let val = val_loss(&out);
    assert!(val < vocab.ln() - 0.5, "it learns: val loss {val} against ln(vocab) {}", vocab.ln());
    assert_eq!(passage(&out).chars().count(), 120, "{out}");

    let meta = read_json(&d.join("ck/checkpoint.json"));
    assert_eq!(meta["run"]["layout"], "text");
    assert_eq!(meta["run"]["eval_windows"], 50);

    // sample: a passage from a prefix, the same for the same seed, another for another
    let draw =
        |seed: &str| ok(d, &["sample", "--checkpoint", "ck", "--num-chars", "80", "--prefix", "KING", "--seed", seed]);
    let a = draw("1");
    assert!(a.starts_with("KING"), "{a}");
    assert_eq!(a.trim_end_matches('\n').chars().count(), 84, "{a:?}");
    assert_eq!(a, draw("1"));
    assert_ne!(a, draw("2"));

    // eval: the same held-out windows as training, so the same loss
    let eval = ok(d, &["eval", "--checkpoint", "ck"]);
    assert!(eval.starts_with(&format!("loss: {val:.4} (50 windows: the held-out windows of ")), "{eval} vs {val}");
    std::fs::write(d.join("other.txt"), common::shakespeare_start(5_000)).unwrap();
    let eval = ok(d, &["eval", "--checkpoint", "ck", "--data", "other.txt"]);
    assert!(eval.contains("(156 windows of 32 side by side: the whole of other.txt)"), "{eval}");

    // inspect: the last block_size + 1 characters of a longer stretch, a table row per position
    let text = common::shakespeare_start(100);
    let out = microgpt(d, &["inspect", "--checkpoint", "ck", "--text", &text, "--out", "pics"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("its first 67 are left out"), "{}", stderr(&out));
    let rows = common::stdout(&out)
        .lines()
        .filter(|l| l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit()))
        .count();
    assert_eq!(rows, 32);
    assert!(d.join("pics/attention.png").is_file());
}

#[test]
fn a_text_run_resumed_equals_the_whole_run() {
    let dir = scratch_with_play(20_000);
    let d = dir.path();
    let whole = train(d, &["--steps", "20", "--num-chars", "30", "--dropout", "0.1"]);
    train(d, &["--steps", "20", "--stop-at", "8", "--dropout", "0.1", "--out", "ck"]);
    let resumed = ok(d, &["train", "--resume", "ck", "--num-chars", "30"]);
    assert_eq!(step_losses(&resumed), step_losses(&whole)[8..], "the steps after the stop draw the same windows");
    assert_eq!(val_loss(&resumed), val_loss(&whole));
    let err = stderr(&microgpt(d, &["train", "--resume", "ck", "--layout", "lines"]));
    assert!(err.contains("--layout lines differs from the checkpoint's text"), "{err}");
}

#[test]
fn another_seed_draws_other_windows() {
    let dir = scratch_with_play(20_000);
    let a = step_losses(&train(dir.path(), &["--steps", "5", "--num-chars", "1", "--seed", "1"]));
    let b = step_losses(&train(dir.path(), &["--steps", "5", "--num-chars", "1", "--seed", "2"]));
    assert_ne!(a, b);
}

#[test]
fn a_long_context_of_256_trains() {
    let dir = scratch_with_play(30_000);
    let args =
        ["train", "--data", "play.txt", "--layout", "text", "--block-size", "256", "--n-embd", "16", "--steps", "3"];
    let out =
        ok(dir.path(), &[&args[..], &["--batch-size", "2", "--eval-windows", "4", "--num-chars", "300"]].concat());
    assert!(val_loss(&out).is_finite());
    assert_eq!(passage(&out).chars().count(), 300, "the passage runs past the context of 256");
}

#[test]
fn the_shakespeare_presets_bring_nanogpts_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::copy(common::shakespeare_txt(), d.join("data/shakespeare.txt")).unwrap();
    let out = ok(
        d,
        &[
            "train",
            "--preset",
            "shakespeare-char-cpu",
            "--steps",
            "2",
            "--warmup-steps",
            "1",
            "--eval-windows",
            "2",
            "--num-chars",
            "5",
            "--out",
            "ck",
        ],
    );
    let vocab: usize = out.lines().find_map(|l| l.strip_prefix("vocab size: ")).unwrap().parse().unwrap();
    let params: usize = out.lines().find_map(|l| l.strip_prefix("num params: ")).unwrap().parse().unwrap();
    assert_eq!(params, 4 * 12 * 128 * 128 + (2 * vocab + 64) * 128, "4 layers of 128, block 64");
    let run = &read_json(&d.join("ck/checkpoint.json"))["run"];
    for (key, want) in [("layout", "text"), ("decay", "cosine"), ("precision", "F32")] {
        assert_eq!(run[key], want, "{key}");
    }
    for (key, want) in
        [("lr", 1e-3), ("min_lr", 1e-4), ("weight_decay", 0.1), ("grad_clip", 1.0), ("beta1", 0.9), ("beta2", 0.99)]
    {
        assert_eq!(run[key].as_f64(), Some(want), "{key}");
    }
    assert_eq!(run["batch_size"], 12);
    let err = stderr(&microgpt(d, &["train", "--preset", "shakespeare-char-cpu", "--steps", "50"]));
    assert!(err.contains("--warmup-steps 100 leaves no step to decay over in --steps 50"), "{err}");
}

#[test]
fn texts_that_cannot_train_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fails_with = |args: &[&str], needle: &str| {
        let err = common::one_line_error(&microgpt(d, args));
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    std::fs::write(d.join("short.txt"), "To be, or not to be: that is the question.\n").unwrap();
    let short = ["train", "--data", "short.txt", "--layout", "text"];
    fails_with(&short, "shorter than one window of block_size + 1 = 17");
    fails_with(
        &[&short[..], &["--block-size", "8"]].concat(),
        "use a text of at least 81 characters or a smaller --block-size",
    );
    std::fs::write(d.join("play.txt"), common::shakespeare_start(5_000)).unwrap();
    fails_with(
        &["train", "--data", "play.txt", "--layout", "text", "--block-size", "4096"],
        "window of block_size + 1 = 4097",
    );
    std::fs::write(d.join("blank.txt"), "\n \n\t\n").unwrap();
    fails_with(&["train", "--data", "blank.txt", "--layout", "text"], "holds no text");
    // the named data set: a line saying what is downloaded, then the one error
    let out = microgpt(d, &["train", "--dataset", "shakespeare"]);
    let err = stderr(&out);
    assert!(!out.status.success() && err.trim().lines().count() == 2, "{err}");
    assert!(err.contains("data/shakespeare.txt is missing and downloading it failed"), "{err}");
    assert!(!d.join("data/shakespeare.txt").exists());
    // one line: no documents to hold out as lines, a text as any other
    let line: String = common::shakespeare_start(3_000).replace('\n', " ");
    std::fs::write(d.join("line.txt"), &line).unwrap();
    fails_with(&["train", "--data", "line.txt"], "training needs at least 2");
    let out = ok(
        d,
        &["train", "--data", "line.txt", "--layout", "text", "--steps", "2", "--eval-windows", "2", "--num-chars", "3"],
    );
    assert!(out.contains("num chars: 3000 (2700 train, 300 held out)"), "{out}");
}

/// A run from `--init-from` on a text with fewer characters speaks the checkpoint's vocabulary;
/// stopped and resumed, it continues exactly.
#[test]
fn a_text_run_from_a_checkpoint_resumes_exactly() {
    let dir = scratch_with_play(20_000);
    let d = dir.path();
    train(d, &["--steps", "5", "--num-chars", "1", "--out", "base"]);
    std::fs::write(d.join("lower.txt"), common::shakespeare_start(20_000).to_lowercase()).unwrap();
    let from = ["train", "--init-from", "base", "--data", "lower.txt", "--layout", "text", "--steps", "10"];
    let whole = ok(d, &[&from[..], &["--eval-windows", "50", "--num-chars", "1"]].concat());
    ok(d, &[&from[..], &["--eval-windows", "50", "--stop-at", "4", "--out", "ft"]].concat());
    let resumed = ok(d, &["train", "--resume", "ft", "--num-chars", "1"]);
    assert_eq!(step_losses(&resumed), step_losses(&whole)[4..]);
    assert_eq!(val_loss(&resumed), val_loss(&whole));
}
