//! The training loop, flat and in the reference's order: learning rate, batch, forward, loss,
//! backward, the micro-batches' gradients added (gradient accumulation), clipped, Adam's update;
//! and the held-out loss ([`evaluate`]). What the program does around each step (show it, read
//! the losses back, evaluate, save, stop on Ctrl-C) is a [`Watch`]'s, `crate::program::session`'s.
//!
//! On a CPU the speed layer computes each micro-batch in one part per core, side by side, and adds
//! the parts' gradients on the host ([`crate::fast::cores`]): one call, the same gradients up to
//! rounding.
//!
//! The learning rate is a pure function of the step ([`Schedule::at`]): the reference's linear
//! decay to zero (to the last bit: [`lr_at`]), and what longer runs add (nanoGPT's `get_lr`): a
//! linear warmup, a cosine decay, a floor.
//! Deliberately left out: mixed precision; step or plateau schedules, restarts.

use anyhow::Result;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::device::read_scalar;
use crate::fast::cores;
use crate::gpt::batch::{Batch, EvalSet, TrainSet};
use crate::gpt::config::TrainConfig;
use crate::gpt::model::LanguageModel;

/// nanoGPT's guard against a zero norm in `max_norm / (norm + 1e-6)`.
pub const CLIP_EPS: f64 = 1e-6;

/// What the program does after each step, and whether it asks the loop to stop.
pub trait Watch<M> {
    /// Whether to stop before the next step (Ctrl-C or SIGTERM).
    fn stopping(&self) -> bool;

    /// Step `step` (1-based) is done, at learning rate `lr`, on `tokens` target tokens; its mean
    /// loss is still on the device. An error ends the run.
    fn after_step(
        &mut self,
        model: &M,
        optim: &ModuleOptimizer,
        step: usize,
        lr: f64,
        loss: Tensor<1>,
        tokens: usize,
    ) -> Result<()>;
}

/// How a step's batch is computed: the same gradients, up to rounding, whatever these are.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Split {
    /// Parts of each micro-batch computed side by side, one per CPU core (1 on a GPU, which wants
    /// the whole batch at once).
    pub cores: usize,
    /// Micro-batches computed one after another, their gradients added (gradient accumulation:
    /// the same step in less memory).
    pub micro_batches: usize,
    /// Add and clip the gradients on the host (a CPU), not as tensor operations.
    pub on_host: bool,
}

impl Split {
    /// The whole batch at once, as tensor operations: the reference's step.
    pub const WHOLE: Split = Split { cores: 1, micro_batches: 1, on_host: false };

    /// How many parts of a batch of `batch_size` rows run at once: up to one part per core, at
    /// least a row a part, so that the batch cut into `side_by_side × micro_batches` parts makes
    /// exactly `micro_batches` groups.
    pub fn side_by_side(&self, batch_size: usize) -> usize {
        self.cores.min(batch_size / self.micro_batches.max(1)).max(1)
    }
}

/// A model training, from `step` to `end`.
pub struct Training<'a, M> {
    /// The model, on an autodiff device.
    pub model: M,
    /// Adam and its state.
    pub optim: ModuleOptimizer,
    /// Steps already done.
    pub step: usize,
    /// Stop after this step (a run's `num_steps`, or earlier with `--stop-at`).
    pub end: usize,
    /// The run's settings: schedule, batch size, seed, clipping, dropout.
    pub run: &'a TrainConfig,
    /// Where the batches come from.
    pub train: &'a TrainSet,
    /// How each step's batch is computed.
    pub split: Split,
}

impl<M: LanguageModel + Sync> Training<'_, M> {
    /// Train to `end`, or until `watch` asks to stop; the model, Adam and the steps done.
    pub fn run(mut self, watch: &mut impl Watch<M>) -> Result<(M, ModuleOptimizer, usize)> {
        let run = self.run;
        self.model = self.model.with_dropout(run.dropout); // the run's, whose masks seed_dropout seeds
        let schedule = Schedule::of(run);
        let weights = weight_ids(&self.model);
        let micro_batches = self.split.micro_batches.max(1);
        let side_by_side = self.split.side_by_side(run.batch_size);
        while self.step < self.end && !watch.stopping() {
            // learning rate: a pure function of the step
            let lr = schedule.at(self.step);

            // batch: `micro_batches` of it one after another, each in `side_by_side` parts
            let parts = self.train.batch(self.step, run.batch_size, run.seed, side_by_side * micro_batches);
            let tokens = parts.iter().map(|b| b.n_targets).sum::<usize>();
            let in_order = self.seed_dropout();
            let (mut loss, mut grads) = (None, None);
            for micro_batch in in_groups(parts, side_by_side) {
                // each micro-batch's loss counts by its share of the step's targets
                let share = micro_batch.iter().map(|b| b.n_targets).sum::<usize>() as f64 / tokens as f64;
                let (micro_loss, micro_grads) = if let [_] = micro_batch[..] {
                    let batch = micro_batch.into_iter().next().expect("one part");
                    let micro_loss = self.model.loss(batch); // forward, then the loss
                    let micro_loss = if share == 1.0 { micro_loss } else { micro_loss * share };
                    let micro_grads = GradientsParams::from_grads(micro_loss.backward(), &self.model); // backward
                    (micro_loss.inner(), micro_grads)
                } else {
                    // the same, in one part per CPU core, side by side
                    cores::loss_and_gradients(&self.model, micro_batch, share, in_order, &weights, self.split.on_host)
                };
                loss = Some(match loss {
                    Some(loss) => loss + micro_loss,
                    None => micro_loss,
                });
                // gradient accumulation: the micro-batches' gradients added
                grads = Some(match grads {
                    Some(sum) => add(vec![sum, micro_grads], &weights, self.split.on_host),
                    None => micro_grads,
                });
            }
            let mut grads = grads.expect("a step has a micro-batch");

            // clipping: the gradients' global norm down to `grad_clip`, as nanoGPT's clip_grad_norm_
            if let Some(max_norm) = run.grad_clip {
                grads = clip_grad_norm(grads, &weights, max_norm, self.split.on_host);
            }

            // update
            self.model = self.optim.step(lr, self.model, grads);
            self.step += 1;
            let loss = loss.expect("a step has a micro-batch");
            watch.after_step(&self.model, &self.optim, self.step, lr, loss, tokens)?;
        }
        Ok((self.model, self.optim, self.step))
    }

    /// With dropout (the model's, set from the run's `dropout`), seed this step's masks from the
    /// seed and the step, so that a resume draws the same; whether it did (the masks must then
    /// be drawn in order).
    fn seed_dropout(&self) -> bool {
        let run = self.run;
        if run.dropout > 0.0 {
            let device = &self.model.devices()[0];
            device.seed(run.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.step as u64);
        }
        run.dropout > 0.0
    }
}

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
    /// The schedule of a run's settings.
    pub fn of(run: &TrainConfig) -> Self {
        let (lr, min_lr, warmup_steps, num_steps, decay) =
            (run.lr, run.min_lr, run.warmup_steps, run.num_steps, run.decay);
        Self { lr, min_lr, warmup_steps, num_steps, decay }
    }

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

/// `parts` in groups of `size`, in order.
fn in_groups(parts: Vec<Batch>, size: usize) -> Vec<Vec<Batch>> {
    let mut groups = Vec::new();
    let mut parts = parts.into_iter().peekable();
    while parts.peek().is_some() {
        groups.push(parts.by_ref().take(size.max(1)).collect());
    }
    groups
}

/// Mean loss per target token over every document or window of `set` (no gradients).
pub fn evaluate(model: &impl LanguageModel, set: &EvalSet) -> Result<f64> {
    let mut total = 0.0;
    let mut count = 0;
    for batch in set.batches(model.vocab_size()) {
        let n_targets = batch.n_targets;
        total += read_scalar(model.loss(batch))? * n_targets as f64;
        count += n_targets;
    }
    Ok(total / count as f64)
}

/// A weight's key in the gradients, and its number of dimensions (a matrix's 2; GPT-2's biases
/// and norm gains are vectors).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightId {
    /// The key.
    pub id: ParamId,
    /// 1 or 2.
    pub rank: usize,
}

/// Every weight of `model`, in the order of its fields (microGPT's: the reference's drawing
/// order).
pub fn weight_ids(model: &impl Module) -> Vec<WeightId> {
    struct Collect(Vec<WeightId>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(WeightId { id: param.id, rank: D });
        }
    }
    let mut ids = Collect(Vec::new());
    model.visit(&mut ids);
    ids.0
}

/// A weight's gradient out of `grads`, as a matrix (a vector as one row).
pub fn take(grads: &mut GradientsParams, w: WeightId) -> Option<Tensor<2>> {
    match w.rank {
        1 => grads.remove::<1>(w.id).map(|g| g.unsqueeze::<2>()),
        _ => grads.remove::<2>(w.id),
    }
}

/// Put back a gradient [`take`] took, in its own shape.
pub fn put(grads: &mut GradientsParams, w: WeightId, g: Tensor<2>) {
    match w.rank {
        1 => grads.register(w.id, g.squeeze_dim::<1>(0)),
        _ => grads.register(w.id, g),
    }
}

/// The gradients of every weight (`ids`) of all `parts`, added. `on_host`: on the host (a CPU,
/// whose tensors live in host memory; [`cores::add_on_host`]), else as tensor operations.
pub fn add(parts: Vec<GradientsParams>, ids: &[WeightId], on_host: bool) -> GradientsParams {
    if on_host {
        return cores::add_on_host(parts, ids);
    }
    let mut parts = parts.into_iter();
    let mut grads = parts.next().expect("a step has a part");
    for mut part in parts {
        for &w in ids {
            if let Some(g) = take(&mut part, w) {
                let sum = match take(&mut grads, w) {
                    Some(sum) => sum + g,
                    None => g,
                };
                put(&mut grads, w, sum);
            }
        }
    }
    grads
}

/// nanoGPT's `clip_grad_norm_`: when the norm of all the gradients together exceeds `max_norm`,
/// scale every one of them by `max_norm / (norm + 1e-6)`. As tensor operations the scale is a
/// tensor, never read back; `on_host`, the same on the host ([`cores::clip_on_host`]).
pub fn clip_grad_norm(mut grads: GradientsParams, ids: &[WeightId], max_norm: f64, on_host: bool) -> GradientsParams {
    if on_host {
        return cores::clip_on_host(grads, ids, max_norm);
    }
    let taken: Vec<(WeightId, Tensor<2>)> = ids.iter().filter_map(|&w| Some((w, take(&mut grads, w)?))).collect();
    let squares = taken.iter().map(|(_, g)| g.clone().square().sum()); // [1] each
    let Some(total) = squares.reduce(|a, b| a + b) else { return grads };
    let scale = (total.sqrt() + CLIP_EPS).recip().mul_scalar(max_norm).clamp_max(1.0).unsqueeze::<2>(); // [1, 1]
    for (w, g) in taken {
        put(&mut grads, w, g * scale.clone());
    }
    grads
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

    /// `--grad-accum N` makes N groups one after another whatever the cores and the batch (even or
    /// not, fewer rows than cores), no group wider than the cores, no part without a row.
    #[test]
    fn micro_batches_are_as_many_groups_as_asked() {
        for cores in [1, 2, 3, 8, 64] {
            for batch_size in 1..=40 {
                for micro in 1..=batch_size {
                    let side = Split { cores, micro_batches: micro, on_host: true }.side_by_side(batch_size);
                    let parts = (side * micro).clamp(1, batch_size); // as TrainSet::batch cuts it
                    assert!(side <= cores && parts <= batch_size, "{cores} {batch_size} {micro}");
                    assert_eq!(parts.div_ceil(side), micro, "cores {cores}, batch {batch_size}, {micro} micro-batches");
                }
            }
        }
    }
}
