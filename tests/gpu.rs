//! The GPU path (wgpu), against the CPU in f32. CI runs it on Mesa's software Vulkan; where no
//! adapter exists each test says it is skipped (MICROGPT_REQUIRE_GPU=1 makes that a failure).
#![cfg(feature = "gpu")]

mod common;

use common::{microgpt, ok, stderr, step_losses, val_loss};

/// A scratch directory with names.txt, when a GPU adapter exists (else the test is skipped).
fn gpu_scratch(test: &str) -> Option<tempfile::TempDir> {
    let dir = common::scratch_with_names();
    gpu_available(test, dir.path()).then_some(dir)
}

/// Whether a GPU adapter exists; panics when one is required and missing.
fn gpu_available(test: &str, dir: &std::path::Path) -> bool {
    let out = microgpt(dir, &["--device", "gpu", "--steps", "1", "--num-samples", "0"]);
    if out.status.success() {
        return true;
    }
    let err = stderr(&out);
    assert!(err.contains("no GPU adapter found"), "unexpected GPU failure: {err}");
    assert!(std::env::var("MICROGPT_REQUIRE_GPU").as_deref() != Ok("1"), "MICROGPT_REQUIRE_GPU=1 but {err}");
    common::skip(test, err.trim());
    false
}

/// Every one of 200 steps' losses within 1e-3 of the CPU's in f32, and the held-out loss
/// within 0.02 of it.
#[cfg(feature = "cpu")]
#[test]
fn gpu_follows_the_cpu_in_f32() {
    let Some(dir) = gpu_scratch("gpu_follows_the_cpu_in_f32") else { return };
    let d = dir.path();
    let gpu = ok(d, &["--device", "gpu", "--steps", "200"]);
    let cpu = ok(d, &["--device", "cpu", "--dtype", "f32", "--steps", "200"]);
    let (g, c) = (step_losses(&gpu), step_losses(&cpu));
    assert_eq!((g.len(), c.len()), (200, 200));
    for (step, (a, b)) in g.iter().zip(&c).enumerate() {
        assert!((a - b).abs() <= 1e-3, "step {}: gpu {a} vs cpu {b}", step + 1);
    }
    let (vg, vc) = (val_loss(&gpu), val_loss(&cpu));
    assert!((vg - vc).abs() < 0.02, "val loss gpu {vg} vs cpu {vc}");
}

/// A batched run of a larger model learns on the GPU: its loss falls, and where the build has
/// a CPU too, its losses and held-out loss are the CPU's (f32) and its checkpoint samples there.
#[test]
fn gpu_trains_batches_and_larger_models() {
    let Some(dir) = gpu_scratch("gpu_trains_batches_and_larger_models") else { return };
    let d = dir.path();
    let args = ["train", "--preset", "small", "--batch-size", "16", "--steps", "60", "--log-every", "20"];
    let gpu = ok(d, &[&args[..], &["--device", "gpu", "--out", "ck"]].concat());
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

/// A checkpoint trained on the CPU in f64 is cast to the GPU's f32 on load: eval and inspect
/// there give the CPU's numbers.
#[cfg(feature = "cpu")]
#[test]
fn a_cpu_checkpoint_evaluates_and_inspects_on_the_gpu() {
    let Some(dir) = gpu_scratch("a_cpu_checkpoint_evaluates_and_inspects_on_the_gpu") else { return };
    let d = dir.path();
    ok(d, &["train", "--steps", "50", "--out", "ck", "--quiet", "--num-samples", "0"]);
    let number = |out: String, prefix: &str| -> f64 {
        out.lines().find_map(|l| l.strip_prefix(prefix)).unwrap().split(' ').next().unwrap().parse().unwrap()
    };
    let eval = |device: &str| number(ok(d, &["eval", "--checkpoint", "ck", "--device", device]), "loss: ");
    let (cpu, gpu) = (eval("cpu"), eval("gpu"));
    assert!((cpu - gpu).abs() < 1e-3, "eval cpu {cpu} vs gpu {gpu}");
    let inspect = |device: &str| {
        number(ok(d, &["inspect", "--checkpoint", "ck", "--text", "emma", "--device", device]), "mean loss: ")
    };
    let (cpu, gpu) = (inspect("cpu"), inspect("gpu"));
    assert!((cpu - gpu).abs() < 1e-3, "inspect cpu {cpu} vs gpu {gpu}");
}

/// A text (the text layout, windows of 64) trains on the GPU as on the CPU in f32: the same
/// windows, the same losses within 0.02, the same held-out windows.
#[cfg(feature = "cpu")]
#[test]
fn gpu_trains_on_a_text_as_the_cpu_does() {
    let Some(dir) = gpu_scratch("gpu_trains_on_a_text_as_the_cpu_does") else { return };
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
    let gpu = ok(d, &[&args[..], &["--device", "gpu"]].concat());
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
