//! GELU in its tanh form, GPT-2's (transformers' `gelu_new`): `y = ½ x (1 + t)` with
//! `t = tanh(u)`, `u = √(2/π) (x + 0.044715 x³)`. Backward, from the gradient `g` with respect
//! to `y`: `dx = g (½ (1 + t) + ½ x (1 - t²) √(2/π) (1 + 3 · 0.044715 x²))`. Composed from Burn's
//! operations it is nine passes over the activations, each a new buffer; on the CPU, one.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops as NodeOps, OpsKind, unary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch};
use burn::tensor::Tensor;

use super::FusedBackend;

/// √(2/π).
const SQRT_2_OVER_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2;
/// The cube's coefficient.
const CUBE: f64 = 0.044715;

/// GELU, tanh form ([`FusedBackend::gelu_tanh`]).
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedBackend>::gelu_tanh(x.into_dispatch()))
}

/// `t = tanh(u)` of `x`, from the backend's primitives.
fn tanh_u<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let x3 = B::float_mul(B::float_mul(x.clone(), x.clone()), x.clone());
    let u = B::float_mul_scalar(B::float_add(x, B::float_mul_scalar(x3, CUBE.into())), SQRT_2_OVER_PI.into());
    B::float_tanh(u)
}

/// The forward pass from the backend's primitives: what a GPU runs.
pub fn composed<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let t = tanh_u::<B>(x.clone());
    B::float_mul_scalar(B::float_mul(x, B::float_add_scalar(t, 1.0.into())), 0.5.into())
}

/// The backward pass from the backend's primitives.
pub fn composed_backward<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let t = tanh_u::<B>(x.clone());
    let half_one_plus_t = B::float_mul_scalar(B::float_add_scalar(t.clone(), 1.0.into()), 0.5.into());
    let one_minus_t2 = B::float_add_scalar(B::float_neg(B::float_mul(t.clone(), t)), 1.0.into());
    let x2 = B::float_mul(x.clone(), x.clone());
    let du = B::float_mul_scalar(
        B::float_add_scalar(B::float_mul_scalar(x2, (3.0 * CUBE).into()), 1.0.into()),
        SQRT_2_OVER_PI.into(),
    );
    let second = B::float_mul_scalar(B::float_mul(B::float_mul(x, one_minus_t2), du), 0.5.into());
    B::float_mul(grad, B::float_add(half_one_plus_t, second))
}

/// The node's backward step; it keeps `x`.
#[derive(Debug)]
struct Gelu;

impl<B: FusedBackend> Backward<B, 1> for Gelu {
    type State = FloatTensor<B>;

    fn backward(self, ops: NodeOps<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| B::gelu_tanh_backward(x, grad));
    }
}

/// The forward pass as one node of the autodiff graph.
pub fn tracked<B: FusedBackend, C: CheckpointStrategy>(x: FloatTensor<Autodiff<B, C>>) -> FloatTensor<Autodiff<B, C>> {
    match Gelu.prepare::<C>([x.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let x = x.into_primitive();
            prep.finish(x.clone(), B::gelu_tanh(x))
        }
        OpsKind::UnTracked(prep) => prep.finish(B::gelu_tanh(x.into_primitive())),
    }
}

#[cfg(feature = "cpu")]
pub use cpu::{flex_backward, flex_forward};

/// The CPU's loops: one pass, in pieces over the cores.
#[cfg(feature = "cpu")]
mod cpu {
    use burn::backend::flex::FlexTensor;
    use burn::tensor::{DType, TensorData};
    use rayon::prelude::*;

    use super::{CUBE, SQRT_2_OVER_PI};
    use crate::fast::contiguous;
    use crate::fast::real::{PIECE, Real};

    /// `f` of each number of `x` (and of `grad`'s, for the backward pass) into a new tensor.
    fn each<F: Real>(x: &FlexTensor, grad: Option<&FlexTensor>, f: impl Fn(F, F) -> F + Sync) -> FlexTensor {
        let (xs, shape) = (x.storage::<F>(), x.layout().shape().clone());
        let mut out = vec![F::of(0.0); xs.len()];
        let gs = grad.map(|g| g.storage::<F>());
        out.par_chunks_mut(PIECE).enumerate().for_each(|(p, out)| {
            let xs = &xs[p * PIECE..][..out.len()];
            match gs {
                Some(gs) => {
                    let gs = &gs[p * PIECE..][..out.len()];
                    out.iter_mut().zip(xs).zip(gs).for_each(|((o, &x), &g)| *o = f(x, g));
                }
                None => out.iter_mut().zip(xs).for_each(|(o, &x)| *o = f(x, F::of(0.0))),
            }
        });
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    fn forward<F: Real>(x: F, _: F) -> F {
        let t = (F::of(SQRT_2_OVER_PI) * (x + F::of(CUBE) * x * x * x)).tanh();
        F::of(0.5) * x * (F::of(1.0) + t)
    }

    fn backward<F: Real>(x: F, g: F) -> F {
        let (half, one) = (F::of(0.5), F::of(1.0));
        let t = (F::of(SQRT_2_OVER_PI) * (x + F::of(CUBE) * x * x * x)).tanh();
        let du = F::of(SQRT_2_OVER_PI) * (one + F::of(3.0 * CUBE) * x * x);
        g * (half * (one + t) + half * x * (one - t * t) * du)
    }

    /// The forward pass on flex.
    pub fn flex_forward(x: FlexTensor) -> FlexTensor {
        let x = contiguous(x);
        match x.dtype() {
            DType::F32 => each::<f32>(&x, None, forward),
            DType::F64 => each::<f64>(&x, None, forward),
            dtype => panic!("gelu: {dtype:?} is not f32 or f64"),
        }
    }

    /// The backward pass on flex: the gradient with respect to `x`.
    pub fn flex_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (x, grad) = (contiguous(x), contiguous(grad));
        match x.dtype() {
            DType::F32 => each::<f32>(&x, Some(&grad), backward),
            DType::F64 => each::<f64>(&x, Some(&grad), backward),
            dtype => panic!("gelu: {dtype:?} is not f32 or f64"),
        }
    }
}

// f64 on the CPU backends, against Burn's own operations on the same device.
#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use crate::fast::testing::{devices, draw, draw_on, formula, max_diff, same};
    use crate::gpt::ops;
    use crate::gpt::rng::PyRandom;

    /// The node gives Burn's `gelu_approximate` and its gradient, on rows and on a batch of rows;
    /// without autodiff, the same numbers.
    #[test]
    fn the_gelu_kernel_is_the_formula() {
        let mut rng = PyRandom::new(8);
        for device in devices() {
            let x = draw(&mut rng, [6, 8], &device);
            same(&[x], |x| gelu(x[0].clone()), |x| formula(|| ops::gelu(x[0].clone())));
            let x = draw(&mut rng, [2, 3, 40_000], &device);
            same(&[x], |x| gelu(x[0].clone()), |x| formula(|| ops::gelu(x[0].clone())));
            let x = draw_on(&mut rng, [4, 6], &device);
            assert!(max_diff(gelu(x.clone()), formula(|| ops::gelu(x))) < 1e-12);
        }
    }
}
