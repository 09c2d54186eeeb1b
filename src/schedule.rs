//! The learning rate as a pure function of the step: the reference's linear decay to zero, and
//! what longer runs add (nanoGPT's `get_lr`): a linear warmup, a cosine decay, a floor.
//!
//! With no warmup, linear decay and a floor of 0 (the defaults), [`Schedule::at`] is the
//! reference's `lr * (1 - step / num_steps)` to the last bit ([`lr_at`]).
//! Deliberately left out: step or plateau schedules, restarts.

use serde::{Deserialize, Serialize};

/// How the rate falls after the warmup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    /// Straight down towards the floor, reached just after the last step (the reference's).
    #[default]
    Linear,
    /// Half a cosine down towards the floor, reached just after the last step (nanoGPT's).
    Cosine,
}

impl std::fmt::Display for Decay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decay::Linear => "linear",
            Decay::Cosine => "cosine",
        })
    }
}

/// A learning-rate schedule over `num_steps` steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// The peak rate, reached at the end of the warmup (at step 0 without one).
    pub lr: f64,
    /// The rate the decay ends at.
    pub min_lr: f64,
    /// Steps of linear warmup from `lr / (warmup_steps + 1)` up to `lr`.
    pub warmup_steps: usize,
    /// Steps of the whole run.
    pub num_steps: usize,
    /// The shape of the decay.
    pub decay: Decay,
}

/// The reference's rate at step `step` (0-based): linear decay from `lr` to zero over
/// `num_steps`.
pub fn lr_at(lr: f64, step: usize, num_steps: usize) -> f64 {
    lr * (1.0 - step as f64 / num_steps as f64)
}

impl Schedule {
    /// The reference's schedule: linear from `lr` to zero, no warmup.
    pub fn reference(lr: f64, num_steps: usize) -> Self {
        Self { lr, min_lr: 0.0, warmup_steps: 0, num_steps, decay: Decay::Linear }
    }

    /// The rate of step `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        let warmup = self.warmup_steps;
        if step < warmup {
            return self.lr * (step + 1) as f64 / (warmup + 1) as f64;
        }
        // how far into the decay, 0 at its first step
        let progress = (step - warmup) as f64 / (self.num_steps - warmup) as f64;
        let remaining = match self.decay {
            Decay::Linear => 1.0 - progress,
            Decay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        };
        self.min_lr + (self.lr - self.min_lr) * remaining
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_schedule_is_the_reference_formula_to_the_bit() {
        let schedule = Schedule::reference(0.01, 1000);
        for step in 0..1000 {
            assert_eq!(schedule.at(step).to_bits(), lr_at(0.01, step, 1000).to_bits(), "step {step}");
        }
        assert_eq!(lr_at(0.01, 0, 1000), 0.01);
        assert!((lr_at(0.01, 500, 1000) - 0.005).abs() < 1e-15);
    }

    #[test]
    fn warmup_rises_then_cosine_falls_to_the_floor() {
        let s = Schedule { lr: 1e-3, min_lr: 1e-4, warmup_steps: 100, num_steps: 2000, decay: Decay::Cosine };
        assert!((s.at(0) - 1e-3 / 101.0).abs() < 1e-18);
        assert!((0..100).all(|i| s.at(i) < s.at(i + 1)), "the warmup rises");
        assert_eq!(s.at(100), 1e-3, "the peak right after the warmup");
        assert!((100..1999).all(|i| s.at(i) > s.at(i + 1)), "the decay falls");
        assert!((s.at(1050) - 5.5e-4).abs() < 1e-9, "halfway down the cosine: the mean of peak and floor");
        assert!(s.at(1999) > 1e-4 && s.at(1999) - 1e-4 < 1e-9, "just above the floor at the last step");
    }
}
