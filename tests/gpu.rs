//! The GPU backends, each against the CPU in f32: wgpu (`--device gpu`; CI runs it on Mesa's
//! software Vulkan) and CUDA (`--device cuda`, Burn's native NVIDIA backend), one suite for both.
//! Where a backend cannot run, `--device` must refuse in one line saying what is missing, and
//! each test says it is skipped there (MICROGPT_REQUIRE_GPU=1 or MICROGPT_REQUIRE_CUDA=1 makes
//! that a failure).
#![cfg(any(feature = "gpu", feature = "cuda"))]

mod common;

use common::{microgpt, ok, step_losses, val_loss};

/// Each GPU backend of this build: its `--device` name, the variable that requires it, and what
/// its refusals say when it cannot run here.
const BACKENDS: [(&str, bool, &str, &[&str]); 2] = [
    ("gpu", cfg!(feature = "gpu"), "MICROGPT_REQUIRE_GPU", &["no GPU adapter found"]),
    (
        "cuda",
        cfg!(feature = "cuda"),
        "MICROGPT_REQUIRE_CUDA",
        &["no NVIDIA driver", "no CUDA device found", "libdevice.10.bc", "the NVIDIA driver did not start"],
    ),
];

/// A scratch directory with names.txt for each GPU backend that runs here; for each that cannot,
/// its refusal is checked (one line, exit 1, no panic, a known reason) and the test is reported
/// skipped there.
fn devices(test: &str) -> Vec<(&'static str, tempfile::TempDir)> {
    let mut runs = Vec::new();
    for (device, built, required, reasons) in BACKENDS {
        if !built {
            continue;
        }
        let dir = common::scratch_with_names();
        let out = microgpt(dir.path(), &["--device", device, "--steps", "1", "--num-samples", "0"]);
        if out.status.success() {
            runs.push((device, dir));
            continue;
        }
        let err = common::one_line_error(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(reasons.iter().any(|why| err.contains(why)), "unexpected failure of --device {device}: {err}");
        assert!(std::env::var(required).as_deref() != Ok("1"), "{required}=1 but {err}");
        common::skip(&format!("{test} (--device {device})"), err.trim());
    }
    runs
}

/// The reference run: the first 200 steps' losses within 1e-3 of the CPU's in f32, and the
/// held-out loss within 0.02 of the CPU's and of the reference's 2.3689.
#[cfg(feature = "cpu")]
#[test]
fn the_gpu_follows_the_cpu_in_f32() {
    for (device, dir) in devices("the_gpu_follows_the_cpu_in_f32") {
        let d = dir.path();
        let gpu = ok(d, &["--device", device]);
        let cpu = ok(d, &["--device", "cpu", "--dtype", "f32"]);
        let (g, c) = (step_losses(&gpu), step_losses(&cpu));
        assert_eq!((g.len(), c.len()), (1000, 1000));
        for (step, (a, b)) in g.iter().zip(&c).enumerate().take(200) {
            assert!((a - b).abs() <= 1e-3, "{device}, step {}: {a} vs cpu {b}", step + 1);
        }
        let (vg, vc) = (val_loss(&gpu), val_loss(&cpu));
        assert!((vg - vc).abs() < 0.02, "{device}: val loss {vg} vs cpu {vc}");
        assert!((vg - 2.3689).abs() <= 0.02, "the reference's held-out loss is 2.3689; {device} {vg}");
    }
}

/// A batched run of a larger model learns on the GPU, its batch in 4 micro-batches one after
/// another (`--grad-accum`, added as tensors): its loss falls, and where the build has a CPU too,
/// its losses and held-out loss are the CPU's of the whole batch at once (f32), and its
/// checkpoint samples there.
#[test]
fn the_gpu_trains_batches_and_larger_models() {
    for (device, dir) in devices("the_gpu_trains_batches_and_larger_models") {
        let d = dir.path();
        let args = ["train", "--preset", "small", "--batch-size", "16", "--steps", "60", "--log-every", "20"];
        let gpu = ok(d, &[&args[..], &["--device", device, "--out", "ck", "--grad-accum", "4"]].concat());
        let losses = step_losses(&gpu);
        assert_eq!(losses.len(), 3, "--log-every 20 prints 3 lines in 60 steps");
        // a model that learnt nothing scores ln(27) = 3.30 per character
        let val = val_loss(&gpu);
        assert!(val < 2.6, "the held-out loss after 60 steps: {val}");
        if cfg!(feature = "cpu") {
            let cpu = ok(d, &[&args[..], &["--device", "cpu", "--dtype", "f32"]].concat());
            assert_eq!(step_losses(&cpu).len(), losses.len());
            for (a, b) in losses.iter().zip(step_losses(&cpu)) {
                assert!((a - b).abs() < 0.02, "gpu {a} vs cpu {b}");
            }
            assert!((val - val_loss(&cpu)).abs() < 0.02, "val loss gpu {val} vs cpu {}", val_loss(&cpu));
            let sampled =
                ok(d, &["sample", "--checkpoint", "ck", "--device", "cpu", "--dtype", "f32", "--num-samples", "3"]);
            assert_eq!(common::samples(&sampled).len(), 3);
        }
    }
}

/// A checkpoint trained on the CPU in f64 is cast to the GPU's f32 on load: eval and inspect
/// there give the CPU's numbers.
#[cfg(feature = "cpu")]
#[test]
fn a_cpu_checkpoint_evaluates_and_inspects_on_the_gpu() {
    for (gpu_device, dir) in devices("a_cpu_checkpoint_evaluates_and_inspects_on_the_gpu") {
        let d = dir.path();
        ok(d, &["train", "--steps", "50", "--out", "ck", "--quiet", "--num-samples", "0"]);
        let number = |out: String, prefix: &str| -> f64 {
            out.lines().find_map(|l| l.strip_prefix(prefix)).unwrap().split(' ').next().unwrap().parse().unwrap()
        };
        let eval = |device: &str| number(ok(d, &["eval", "--checkpoint", "ck", "--device", device]), "loss: ");
        let (cpu, gpu) = (eval("cpu"), eval(gpu_device));
        assert!((cpu - gpu).abs() < 1e-3, "eval cpu {cpu} vs gpu {gpu}");
        let inspect = |device: &str| {
            number(ok(d, &["inspect", "--checkpoint", "ck", "--text", "emma", "--device", device]), "mean loss: ")
        };
        let (cpu, gpu) = (inspect("cpu"), inspect(gpu_device));
        assert!((cpu - gpu).abs() < 1e-3, "inspect cpu {cpu} vs {gpu_device} {gpu}");
    }
}

/// A text (the text layout, windows of 64) trains on the GPU as on the CPU in f32: the same
/// windows, the same losses within 0.02, the same held-out windows.
#[cfg(feature = "cpu")]
#[test]
fn the_gpu_trains_on_a_text_as_the_cpu_does() {
    for (device, dir) in devices("the_gpu_trains_on_a_text_as_the_cpu_does") {
        let d = dir.path();
        std::fs::write(d.join("play.txt"), common::shakespeare_start(20_000)).unwrap();
        let args = [
            "train",
            "--data",
            "play.txt",
            "--layout",
            "text",
            "--n-embd",
            "32",
            "--block-size",
            "64",
            "--batch-size",
            "4",
            "--steps",
            "30",
            "--eval-windows",
            "40",
            "--num-chars",
            "100",
            "--sync-every",
            "10",
        ];
        let gpu = ok(d, &[&args[..], &["--device", device]].concat());
        let cpu = ok(d, &[&args[..], &["--device", "cpu", "--dtype", "f32"]].concat());
        let (g, c) = (step_losses(&gpu), step_losses(&cpu));
        assert_eq!((g.len(), c.len()), (30, 30));
        for (step, (a, b)) in g.iter().zip(&c).enumerate() {
            assert!((a - b).abs() < 0.02, "step {}: gpu {a} vs cpu {b}", step + 1);
        }
        let (vg, vc) = (val_loss(&gpu), val_loss(&cpu));
        assert!((vg - vc).abs() < 0.02, "val loss gpu {vg} vs cpu {vc}");
        assert!(gpu.contains("--- inference (a passage of 100 characters) ---"), "{gpu}");
    }
}

/// GPT-2 on the GPU: a Hugging Face folder evaluates to transformers' loss of a text (the
/// fixture of tests/gpt2.rs, made by transformers) and fine-tunes, its held-out loss falling.
#[test]
fn gpt2_runs_on_the_gpu() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/gpt2");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("expected.json")).unwrap()).unwrap();
    let folder = fixture.join("saved");
    let folder = folder.to_str().unwrap();
    for (device, dir) in devices("gpt2_runs_on_the_gpu") {
        let d = dir.path();
        std::fs::copy(fixture.join("text.txt"), d.join("text.txt")).unwrap();
        let out = ok(d, &["eval", "--checkpoint", folder, "--data", "text.txt", "--device", device]);
        let loss: f64 = out.strip_prefix("loss: ").unwrap().split_whitespace().next().unwrap().parse().unwrap();
        let want = expected["eval_loss"].as_f64().unwrap();
        assert!((loss - want).abs() < 1e-3, "{device}: {loss} vs transformers {want}");
        let args = ["train", "--init-from", folder, "--data", "text.txt", "--block-size", "16", "--steps", "8"];
        let out = ok(d, &[&args[..], &["--batch-size", "4", "--lr", "0.003", "--device", device, "--quiet"]].concat());
        let before = out.split("val loss ").nth(1).unwrap().split_whitespace().next().unwrap().parse::<f64>().unwrap();
        assert!(val_loss(&out) < before - 0.05, "{device}: {out}");
    }
}
