//! What to do after a run diverged: the command that starts again from its last checkpoint at a
//! lower learning rate, with the run's other settings repeated.

use std::path::Path;

use crate::gpt::config::TrainConfig;
use crate::gpt::data::Layout;

/// What to do after a divergence: with a checkpoint in `out` (of step `saved`), start a new run
/// from it at a tenth of the learning rate over the steps that were left (a resume must keep its
/// settings, so it cannot lower the rate); without one, run again at a tenth of it.
pub fn after_divergence(run: &TrainConfig, data: &Path, out: Option<&Path>, saved: Option<usize>) -> String {
    let (lr, num_steps) = (run.lr, run.num_steps);
    let lower = short(lr / 10.0);
    match (out, saved) {
        (Some(dir), Some(saved)) => {
            let steps = num_steps.saturating_sub(saved).max(1);
            format!(
                "the last good checkpoint (step {saved}) is in {dir}: continue from it at a lower learning rate with `train --init-from {dir} --data {data} --lr {lower} --steps {steps}{rest} --out NEW_DIR` (--lr {} now)",
                short(lr),
                dir = dir.display(),
                data = data.display(),
                rest = other_settings(run, steps),
            )
        }
        _ => format!("lower the learning rate (--lr {} now, try {lower})", short(lr)),
    }
}

/// The flags that repeat a run's settings other than its steps and rates, for a new run of
/// `steps` steps from its checkpoint: those that differ from the reference's (the floor a tenth,
/// as the rate; the warmup shorter than the new run).
fn other_settings(run: &TrainConfig, steps: usize) -> String {
    let mut flags = Vec::new();
    let reference = TrainConfig::default();
    if run.layout != reference.layout {
        flags.push(format!("--layout {}", run.layout));
    }
    if run.batch_size != reference.batch_size {
        flags.push(format!("--batch-size {}", run.batch_size));
    }
    if run.warmup_steps > 0 {
        flags.push(format!("--warmup-steps {}", run.warmup_steps.min(steps - 1)));
    }
    if run.decay != reference.decay {
        flags.push(format!("--decay {}", run.decay));
    }
    if run.min_lr > 0.0 {
        flags.push(format!("--min-lr {}", short(run.min_lr / 10.0)));
    }
    if run.weight_decay > 0.0 {
        flags.push(format!("--weight-decay {}", short(run.weight_decay)));
    }
    if let Some(clip) = run.grad_clip {
        flags.push(format!("--grad-clip {}", short(clip)));
    }
    if run.dropout > 0.0 {
        flags.push(format!("--dropout {}", short(run.dropout)));
    }
    if (run.beta1, run.beta2) != (reference.beta1, reference.beta2) {
        flags.push(format!("--beta1 {} --beta2 {}", short(run.beta1), short(run.beta2)));
    }
    if run.layout == Layout::Text && run.eval_windows != reference.eval_windows {
        flags.push(format!("--eval-windows {}", run.eval_windows));
    }
    flags.iter().map(|f| format!(" {f}")).collect()
}

/// A number as a person would type it: `0.01`, `1e300`.
fn short(x: f64) -> String {
    // seven significant digits: a tenth of 1e150 is 1e149, not 9.99999999999999e148
    let x: f64 = format!("{x:.6e}").parse().expect("a formatted float parses");
    if (1e-4..1e5).contains(&x.abs()) { format!("{x}") } else { format!("{x:e}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Precision;
    use crate::gpt::train::Decay;

    /// The divergence advice repeats what the run set beyond its steps and rate.
    #[test]
    fn the_advice_repeats_the_runs_other_settings() {
        let mut run = TrainConfig { num_steps: 2000, lr: 1e-3, precision: Precision::F32, ..TrainConfig::default() };
        assert_eq!(other_settings(&run, 500), "");
        (run.batch_size, run.warmup_steps, run.decay, run.min_lr) = (12, 100, Decay::Cosine, 1e-4);
        (run.weight_decay, run.grad_clip, run.dropout) = (0.1, Some(1.0), 0.2);
        assert_eq!(
            other_settings(&run, 50),
            " --batch-size 12 --warmup-steps 49 --decay cosine --min-lr 1e-5 --weight-decay 0.1 --grad-clip 1 --dropout 0.2"
        );
        (run.layout, run.beta1, run.eval_windows) = (Layout::Text, 0.9, 100);
        assert_eq!(
            other_settings(&run, 50),
            " --layout text --batch-size 12 --warmup-steps 49 --decay cosine --min-lr 1e-5 --weight-decay 0.1 --grad-clip 1 --dropout 0.2 --beta1 0.9 --beta2 0.99 --eval-windows 100"
        );
        let advice = after_divergence(&run, Path::new("d.txt"), Some(Path::new("ck")), Some(1990));
        assert!(advice.contains("train --init-from ck --data d.txt --lr 0.0001 --steps 10 --layout text"), "{advice}");
        assert_eq!(
            after_divergence(&run, Path::new("d.txt"), None, None),
            "lower the learning rate (--lr 0.001 now, try 0.0001)"
        );
    }

    #[test]
    fn numbers_are_short_as_typed() {
        assert_eq!(short(1e150 / 10.0), "1e149");
        assert_eq!(short(0.01 / 10.0), "0.001");
        assert_eq!(short(3e-3), "0.003");
        assert_eq!(short(0.1 + 0.2), "0.3");
    }
}
