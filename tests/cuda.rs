//! The CUDA path (Burn's native NVIDIA backend), held to the wgpu path's checks: the reference
//! run's held-out loss, the CPU's f32 losses step by step, a batched run that learns. Where no
//! NVIDIA driver or device exists, `--device cuda` must fail in one line, and the checks say
//! they are skipped (MICROGPT_REQUIRE_CUDA=1 makes that a failure).
#![cfg(feature = "cuda")]

mod common;

use common::{microgpt, ok, stderr, step_losses, val_loss};

/// A scratch directory with names.txt, when a CUDA device exists (else the test is skipped,
/// after checking that the refusal is one line naming what is missing).
fn cuda_scratch(test: &str) -> Option<tempfile::TempDir> {
    let dir = common::scratch_with_names();
    let out = microgpt(dir.path(), &["--device", "cuda", "--steps", "1", "--num-samples", "0"]);
    if out.status.success() {
        return Some(dir);
    }
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        ["no NVIDIA driver", "no CUDA device found", "libdevice.10.bc", "the NVIDIA driver did not start"]
            .iter()
            .any(|why| err.contains(why)),
        "unexpected CUDA failure: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(std::env::var("MICROGPT_REQUIRE_CUDA").as_deref() != Ok("1"), "MICROGPT_REQUIRE_CUDA=1 but {err}");
    common::skip(test, err.trim());
    None
}

/// The reference run on CUDA reaches the reference's held-out loss, and follows the CPU's f32
/// losses step by step.
#[cfg(feature = "cpu")]
#[test]
fn cuda_follows_the_cpu_in_f32() {
    let Some(dir) = cuda_scratch("cuda_follows_the_cpu_in_f32") else { return };
    let d = dir.path();
    let cuda = ok(d, &["--device", "cuda"]);
    let cpu = ok(d, &["--device", "cpu", "--dtype", "f32"]);
    let (g, c) = (step_losses(&cuda), step_losses(&cpu));
    assert_eq!((g.len(), c.len()), (1000, 1000));
    for (step, (a, b)) in g.iter().zip(&c).enumerate().take(200) {
        assert!((a - b).abs() <= 1e-3, "step {}: cuda {a} vs cpu {b}", step + 1);
    }
    let val = val_loss(&cuda);
    assert!((val - 2.3689).abs() <= 0.02, "the reference's held-out loss is 2.3689; cuda {val}");
}

/// A batched run of a larger model learns on CUDA.
#[test]
fn cuda_trains_batches_and_larger_models() {
    let Some(dir) = cuda_scratch("cuda_trains_batches_and_larger_models") else { return };
    let out =
        ok(dir.path(), &["train", "--preset", "small", "--batch-size", "16", "--steps", "60", "--device", "cuda"]);
    let val = val_loss(&out);
    assert!(val < 2.6, "the held-out loss after 60 steps: {val} (ln 27 = 3.30 learns nothing)");
}
