//! The reference's Adam, with every scalar in f64.
//!
//! Burn's own `Adam` keeps beta_1, beta_2 and epsilon as `f32` and computes the bias corrections
//! in f32, which puts a relative error of about 1e-7 into every update of an f64 run and breaks
//! step-by-step parity with the f64 reference. This optimizer plugs into Burn's
//! `ModuleOptimizer` through the `Optimizer` trait, and reuses Burn's `AdamState` (time and the
//! two moments), so the module plumbing, state saving and device moves stay Burn's.
//! Deliberately left out: weight decay, AMSGrad, gradient clipping (the reference has none).

use burn::optim::{AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};

/// Adam with bias correction: `p -= lr * m_hat / (sqrt(v_hat) + eps)`.
#[derive(Clone, Debug)]
pub struct Adam {
    /// Decay of the first moment (the mean of the gradients).
    pub beta1: f64,
    /// Decay of the second moment (the mean of the squared gradients).
    pub beta2: f64,
    /// Added to the denominator, against division by zero.
    pub eps: f64,
    /// Lay a transposed gradient out row by row before the update. A large gain on the CPU,
    /// where element-wise passes over a strided view go element by element; off on a GPU,
    /// whose fused kernels read strides at no cost and where the copy would cost launches.
    pub contiguous_grads: bool,
}

impl Adam {
    /// The reference's settings: betas 0.85 and 0.99, eps 1e-8.
    pub fn reference() -> Self {
        Self {
            beta1: 0.85,
            beta2: 0.99,
            eps: 1e-8,
            contiguous_grads: true,
        }
    }

    /// The reference's settings, tuned for `kind` of device (see `contiguous_grads`).
    pub fn reference_for(kind: crate::device::DeviceArg) -> Self {
        Self {
            contiguous_grads: !crate::device::is_gpu(kind),
            ..Self::reference()
        }
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
        // A weight used as `w^T` gets its gradient as a transposed view; laying it out row by
        // row once (a no-op for a contiguous gradient) lets the element-wise passes below
        // stream through memory on the CPU.
        let grad = if self.contiguous_grads {
            let dims = grad.dims();
            grad.reshape([dims.iter().product::<usize>()]).reshape(dims)
        } else {
            grad
        };
        let (time, m, v) = match state {
            Some(AdamState { momentum: s }) => (
                s.time + 1,
                s.moment_1 * self.beta1 + grad.clone() * (1.0 - self.beta1),
                s.moment_2 * self.beta2 + grad.square() * (1.0 - self.beta2),
            ),
            None => (
                1,
                grad.clone() * (1.0 - self.beta1),
                grad.square() * (1.0 - self.beta2),
            ),
        };
        let t = i32::try_from(time).expect("fewer than 2^31 optimizer steps");
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2 = 1.0 - self.beta2.powi(t);
        // lr * m_hat / (sqrt(v_hat) + eps), with m_hat = m / bias1 and v_hat = v / bias2
        let update = (m.clone() / bias1) * lr / ((v.clone() / bias2).sqrt() + self.eps);
        let state = AdamState::new(AdaptiveMomentumState::new(time, m, v));
        (tensor - update, Some(state))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}
