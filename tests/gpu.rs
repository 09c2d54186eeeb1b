//! The GPU path (wgpu), against the CPU in f32. CI runs it on Mesa's software Vulkan; set
//! MICROGPT_REQUIRE_GPU=1 to make a missing adapter a failure rather than a skip.
#![cfg(feature = "gpu")]

mod common;

use common::{microgpt, ok, stderr, step_losses, val_loss};

/// A scratch directory with names.txt, when a GPU adapter exists (else the test is skipped).
fn gpu_scratch() -> Option<tempfile::TempDir> {
    let dir = common::scratch_with_names();
    gpu_available(dir.path()).then_some(dir)
}

/// Whether a GPU adapter exists; panics when one is required and missing.
fn gpu_available(dir: &std::path::Path) -> bool {
    let out = microgpt(dir, &["--device", "gpu", "--steps", "1", "--num-samples", "0"]);
    if out.status.success() {
        return true;
    }
    let err = stderr(&out);
    assert!(err.contains("no GPU adapter found"), "unexpected GPU failure: {err}");
    assert!(
        std::env::var("MICROGPT_REQUIRE_GPU").as_deref() != Ok("1"),
        "MICROGPT_REQUIRE_GPU=1 but {err}"
    );
    eprintln!("skipping: {err}");
    false
}

#[test]
fn gpu_follows_the_cpu_in_f32() {
    let Some(dir) = gpu_scratch() else { return };
    let d = dir.path();
    // the first steps, loss by loss
    let gpu = ok(d, &["--device", "gpu", "--steps", "200"]);
    let cpu = ok(d, &["--device", "cpu", "--dtype", "f32", "--steps", "200"]);
    let (g, c) = (step_losses(&gpu), step_losses(&cpu));
    assert_eq!(g.len(), 200);
    for (step, (a, b)) in g.iter().zip(&c).take(20).enumerate() {
        assert!((a - b).abs() <= 1e-3, "step {}: gpu {a} vs cpu {b}", step + 1);
    }
    // and where they end up
    let (vg, vc) = (val_loss(&gpu), val_loss(&cpu));
    assert!((vg - vc).abs() < 0.02, "val loss gpu {vg} vs cpu {vc}");
}

#[test]
fn gpu_trains_batches_and_larger_models() {
    let Some(dir) = gpu_scratch() else { return };
    let d = dir.path();
    let out = ok(
        d,
        &[
            "train",
            "--device",
            "gpu",
            "--preset",
            "small",
            "--batch-size",
            "16",
            "--steps",
            "60",
            "--log-every",
            "20",
            "--out",
            "ck",
        ],
    );
    assert_eq!(
        step_losses(&out).len(),
        3,
        "--log-every 20 reads the loss 3 times in 60 steps"
    );
    // a GPU checkpoint samples on the CPU
    let sampled = ok(
        d,
        &[
            "sample",
            "--checkpoint",
            "ck",
            "--device",
            "cpu",
            "--dtype",
            "f32",
            "--num-samples",
            "3",
        ],
    );
    assert_eq!(common::samples(&sampled).len(), 3);
}

/// A checkpoint trained on the CPU in f64 is cast to the GPU's f32 on load: eval and inspect
/// there give the CPU's numbers.
#[test]
fn a_cpu_checkpoint_evaluates_and_inspects_on_the_gpu() {
    let Some(dir) = gpu_scratch() else { return };
    let d = dir.path();
    ok(
        d,
        &["train", "--steps", "50", "--out", "ck", "--quiet", "--num-samples", "0"],
    );
    let number = |out: String, prefix: &str| -> f64 {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let eval = |device: &str| number(ok(d, &["eval", "--checkpoint", "ck", "--device", device]), "loss: ");
    let (cpu, gpu) = (eval("cpu"), eval("gpu"));
    assert!((cpu - gpu).abs() < 1e-3, "eval cpu {cpu} vs gpu {gpu}");
    let inspect = |device: &str| {
        number(
            ok(
                d,
                &["inspect", "--checkpoint", "ck", "--text", "emma", "--device", device],
            ),
            "mean loss: ",
        )
    };
    let (cpu, gpu) = (inspect("cpu"), inspect("gpu"));
    assert!((cpu - gpu).abs() < 1e-3, "inspect cpu {cpu} vs gpu {gpu}");
}
