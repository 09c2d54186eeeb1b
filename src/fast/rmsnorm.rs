//! rmsnorm: `y = x r` with `r = (mean(x²) + ε)^(-1/2)` over the channels, no learnable gain.
//! Backward, from the gradient `g` with respect to `y`: `dx = r g - x r³ mean(g x)`. Composed from
//! Burn's operations it is five nodes; here one, off the CPU backend (see [`rmsnorm`]).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops as NodeOps, OpsKind, unary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata};
use burn::tensor::Tensor;

use super::{FusedBackend, on_flex};

/// `x (mean(x²) + eps)^(-1/2)` over the last dimension ([`FusedBackend::rmsnorm`]). On the CPU
/// backend, Burn's composed operations: there the one node trained the Shakespeare preset 10-20%
/// slower with the batch in two parts side by side (and as fast with one thread), for a reason
/// not found; the numbers are the same either way.
pub fn rmsnorm<const D: usize>(x: Tensor<D>, eps: f64) -> Tensor<D> {
    if on_flex(&x.device()) {
        return super::with_kernels(super::Kernels::Burn, || crate::gpt::ops::rmsnorm(x, eps));
    }
    Tensor::from_dispatch(<Dispatch as FusedBackend>::rmsnorm(x.into_dispatch(), eps))
}

/// The scale `r` [.., 1] of `x` [.., C]: the operations of the formula (`crate::gpt::ops::rmsnorm`), in its order.
fn scale<B: Backend>(x: FloatTensor<B>, eps: f64) -> FloatTensor<B> {
    let last = x.shape().num_dims() - 1;
    let ms = B::float_mean_dim(B::float_mul(x.clone(), x), last);
    B::float_powf_scalar(B::float_add_scalar(ms, eps.into()), (-0.5).into())
}

/// The forward pass from the backend's primitives: what a GPU runs.
pub fn composed<B: Backend>(x: FloatTensor<B>, eps: f64) -> FloatTensor<B> {
    let r = scale::<B>(x.clone(), eps);
    B::float_mul(x, r)
}

/// The node's backward step; it keeps `x` and `r`.
#[derive(Debug)]
struct RmsNorm;

impl<B: FusedBackend> Backward<B, 1> for RmsNorm {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: NodeOps<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, r) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            let last = x.shape().num_dims() - 1;
            let gx = B::float_mean_dim(B::float_mul(grad.clone(), x.clone()), last); // [.., 1]
            let r3_gx = B::float_mul(B::float_mul(B::float_mul(r.clone(), r.clone()), r.clone()), gx);
            B::float_sub(B::float_mul(grad, r), B::float_mul(x, r3_gx))
        });
    }
}

/// The forward pass as one node of the autodiff graph.
pub fn tracked<B: FusedBackend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    eps: f64,
) -> FloatTensor<Autodiff<B, C>> {
    match RmsNorm.prepare::<C>([x.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let x = x.into_primitive();
            let r = scale::<B>(x.clone(), eps);
            prep.finish((x.clone(), r.clone()), B::float_mul(x, r))
        }
        OpsKind::UnTracked(prep) => prep.finish(B::rmsnorm(x.into_primitive(), eps)),
    }
}

// f64 on the CPU backends, against Burn's own operations on the same device.
#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use crate::fast::testing::{devices, draw, draw_on, formula, max_diff, same};
    use crate::gpt::rng::PyRandom;

    /// The node gives Burn's composed rmsnorm, over rows and over a batch of rows, with its
    /// gradient; and so does what [`rmsnorm`] gives (on the CPU backend, Burn's operations).
    #[test]
    fn the_rmsnorm_kernel_is_the_formula() {
        fn node<const D: usize>(x: Vec<Tensor<D>>) -> Tensor<D> {
            Tensor::from_dispatch(<Dispatch as FusedBackend>::rmsnorm(x[0].clone().into_dispatch(), 1e-5))
        }
        fn oracle<const D: usize>(x: Vec<Tensor<D>>) -> Tensor<D> {
            formula(|| crate::gpt::ops::rmsnorm(x[0].clone(), 1e-5))
        }
        let mut rng = PyRandom::new(5);
        for device in devices() {
            let x = draw(&mut rng, [6, 8], &device);
            same(std::slice::from_ref(&x), node, oracle);
            same(&[x], |x| rmsnorm(x[0].clone(), 1e-5), oracle);
            same(&[draw(&mut rng, [2, 3, 16], &device)], node, oracle);
        }
    }

    /// Without autodiff (evaluation, sampling) it gives the same numbers.
    #[test]
    fn rmsnorm_runs_without_autodiff() {
        let mut rng = PyRandom::new(3);
        for device in devices() {
            let x = draw_on(&mut rng, [4, 6], &device);
            let composed = x.clone() * (x.clone().square().mean_dim(1) + 1e-5).powf_scalar(-0.5);
            assert!(max_diff(rmsnorm(x, 1e-5), composed) < 1e-12);
        }
    }
}
