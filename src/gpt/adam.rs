//! The reference's Adam, with every scalar in f64.
//!
//! Burn's own `Adam` keeps beta_1, beta_2 and epsilon as `f32` and computes the bias corrections
//! in f32, which puts a relative error of about 1e-7 into every update of an f64 run and breaks
//! step-by-step parity with the f64 reference. This optimizer plugs into Burn's
//! `ModuleOptimizer` through the `Optimizer` trait, and reuses Burn's `AdamState` (time and the
//! two moments), so the module plumbing, state saving and device moves stay Burn's.
//!
//! The update below is the formula as tensor operations, which a GPU's Burn fuses into one kernel;
//! on a CPU the speed layer runs the same in one pass over each parameter's numbers
//! (`crate::fast::adam`), to the same numbers.
//! AdamW's decoupled weight decay is a setting (off in the reference's).
//! Deliberately left out: AMSGrad; gradient clipping is the loop's (`crate::gpt::train::clip_grad_norm`).

use burn::optim::{AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer};
use burn::tensor::{DType, Device, Tensor};

use crate::gpt::config::TrainConfig;

/// Adam with bias correction: `p -= lr * m_hat / (sqrt(v_hat) + eps)`.
#[derive(Clone, Debug)]
pub struct Adam {
    /// Decay of the first moment (the mean of the gradients).
    pub beta1: f64,
    /// Decay of the second moment (the mean of the squared gradients).
    pub beta2: f64,
    /// Added to the denominator, against division by zero.
    pub eps: f64,
    /// Update each parameter in one pass over its numbers on the host (`crate::fast::adam`), as
    /// microgpt.py's loop does, instead of about a dozen whole-tensor operations. A large gain
    /// on a CPU, where each tensor operation is a pass over memory (and most of them a new
    /// buffer); off on a GPU, whose fused kernels run the tensor operations in one launch and
    /// where reading the numbers back would cost a transfer per parameter.
    pub on_host: bool,
    /// AdamW's decoupled weight decay: each step first multiplies the weights by
    /// `1 - lr * weight_decay` (PyTorch's `AdamW`), the matrices only (nanoGPT's choice: a
    /// vector, a bias or a norm's gain, is not decayed). 0 is the reference's plain Adam.
    pub weight_decay: f64,
}

impl Adam {
    /// The reference's settings ([`TrainConfig::default`]'s betas, eps 1e-8), updated on the host
    /// (a CPU).
    pub fn reference() -> Self {
        Self::of(&TrainConfig::default())
    }

    /// The Adam of a run's settings (betas and weight decay), eps 1e-8, updated on the host.
    pub fn of(config: &TrainConfig) -> Self {
        let (beta1, beta2, weight_decay) = (config.beta1, config.beta2, config.weight_decay);
        Self { beta1, beta2, eps: 1e-8, on_host: true, weight_decay }
    }

    /// These settings with the update run on the host (`true`, for a CPU) or as tensor
    /// operations (`false`, for a GPU); see `on_host`.
    pub fn on_host(self, on_host: bool) -> Self {
        Self { on_host, ..self }
    }

    /// A Burn module optimizer running this update on every parameter.
    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

impl Optimizer for Adam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if D < 2 && self.weight_decay != 0.0 {
            // nanoGPT decays the matrices only: not GPT-2's biases and LayerNorm gains (vectors)
            return Adam { weight_decay: 0.0, ..self.clone() }.step(lr, tensor, grad, state);
        }
        if self.on_host && matches!(tensor.dtype(), DType::F32 | DType::F64) {
            return crate::fast::adam::step_on_host(self, lr, tensor, grad, state); // the same, in one pass
        }
        let (time, m, v) = match state {
            Some(AdamState { momentum: s }) => (
                s.time + 1,
                s.moment_1 * self.beta1 + grad.clone() * (1.0 - self.beta1),
                s.moment_2 * self.beta2 + grad.square() * (1.0 - self.beta2),
            ),
            None => (1, grad.clone() * (1.0 - self.beta1), grad.square() * (1.0 - self.beta2)),
        };
        let t = i32::try_from(time).expect("fewer than 2^31 optimizer steps");
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2 = 1.0 - self.beta2.powi(t);
        // lr * m_hat / (sqrt(v_hat) + eps), with m_hat = m / bias1 and v_hat = v / bias2
        let update = (m.clone() / bias1) * lr / ((v.clone() / bias2).sqrt() + self.eps);
        let state = AdamState::new(AdaptiveMomentumState::new(time, m, v));
        let tensor = if self.weight_decay != 0.0 { tensor * (1.0 - lr * self.weight_decay) } else { tensor };
        (tensor - update, Some(state))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use crate::device;
    use crate::gpt::rng::PyRandom;
    use burn::tensor::{FloatDType, TensorData};

    /// The one-pass update on the host and the whole-tensor update give the same numbers, in
    /// f64 and in f32, over several steps, for a gradient laid out row by row and for one that
    /// is a transposed view (as the gradient of a weight used as `w^T` is).
    #[test]
    fn the_host_update_is_the_tensor_update() {
        let dev = device::cpu_f64();
        for (dtype, weight_decay) in
            [(FloatDType::F64, 0.0), (FloatDType::F32, 0.0), (FloatDType::F64, 0.1), (FloatDType::F32, 0.1)]
        {
            let mut rng = PyRandom::new(7);
            let mut draw = |rows: usize, cols: usize| {
                let values: Vec<f64> = (0..rows * cols).map(|_| rng.gauss(0.0, 1.0)).collect();
                Tensor::<2>::from_data(TensorData::new(values, [rows, cols]), &dev).cast(dtype)
            };
            let weights = draw(5, 3);
            let grads: Vec<Tensor<2>> =
                (0..4).map(|i| if i % 2 == 0 { draw(5, 3) } else { draw(3, 5).transpose() }).collect();
            let run = |on_host: bool| {
                let adam = Adam { on_host, weight_decay, ..Adam::reference() };
                let (mut p, mut state) = (weights.clone(), None);
                let mut seen = Vec::new();
                for (step, g) in grads.iter().enumerate() {
                    (p, state) = adam.step(0.01 * (1.0 - step as f64 / 4.0), p, g.clone(), state);
                    let s = state.as_ref().unwrap();
                    assert_eq!(s.momentum.time, step + 1);
                    assert_eq!(p.dtype(), DType::from(dtype));
                    for t in [&p, &s.momentum.moment_1, &s.momentum.moment_2] {
                        seen.extend(device::read_values(t.clone()).unwrap());
                    }
                }
                seen
            };
            let (host, tensor) = (run(true), run(false));
            assert_eq!(host.len(), 4 * 3 * 15);
            let worst = host.iter().zip(&tensor).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert_eq!(worst, 0.0, "{dtype:?}: the updates differ by up to {worst}");
            assert!(host.iter().all(|x| x.is_finite()));
        }
    }
}
