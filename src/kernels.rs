//! The operations that dominate a training step, each one node of Burn's autodiff graph with its
//! backward pass written out: attention's causal softmax, the matrix products and linear layers,
//! rmsnorm, and the loss's log-likelihoods (row by row, and their mean over a padded batch's real
//! positions).
//!
//! They plug into Burn through its extension API ([`backend_extension`]): [`Kernels`] is routed
//! to the backend a tensor lives on, and each operation under autodiff is a [`Backward`] step
//! registered in Burn's graph, so the gradients around them are still Burn's. Composed from Burn's
//! own operations, the attention weights are seven operations (divide by √D, hide the future,
//! then softmax's max, subtract, exp, sum and divide), rmsnorm five and the loss six, and under
//! autodiff each has a backward step of its own, several operations each. On a GPU every one of
//! those is bookkeeping on the host and, unless Burn fuses it, a kernel launch; on the CPU it is
//! a pass over memory. Here each is one node whose backward pass is a few operations:
//!
//! - **Causal softmax.** For a row of scores `s` of the query at position `p`, with
//!   `a = softmax(s / √D)` over the keys `0..=p`, and the gradient `g` of the loss with respect
//!   to `a`, the gradient with respect to `s` is `a_j (g_j - Σ_k g_k a_k) / √D` (zero in the
//!   future, where `a` is zero).
//! - **Matrix products.** `Y = A B`: `dA = dY Bᵀ`, `dB = Aᵀ dY`. A linear layer (`Y = X Wᵀ`)
//!   computes its weight's gradient as `dYᵀ X`, in the weight's own layout, rather than as the
//!   transpose of `Xᵀ dY`, which a later read would copy.
//! - **rmsnorm** (off the CPU backend, see [`rmsnorm`]). `y = x r` with `r = (mean(x²) + ε)^(-1/2)` over the channels:
//!   `dx = r g - x r³ mean(g x)`.
//! - **Log-likelihoods.** The loss of a row of logits `l` with target `t` is `-log softmax(l)_t`;
//!   its gradient is `softmax(l) - onehot(t)`, times the gradient of the row's loss.
//! - **The masked mean.** A padded batch's loss `Σ mask · nll / n`: each row's share of the
//!   loss's gradient `g` is `w = mask g / n`, and the row's gradient `(softmax(l) - onehot(t)) w`.
//!   Composed, its sum, division and mask are a segment Burn's fusion ran one operation at a time.
//!
//! Every backend has the operations composed from its own primitives (the trait's default
//! bodies: what a GPU runs, where Burn fuses the element-wise ones into few kernels). The CPU
//! backend overrides the softmax and the products with loops of its own (`kernels/flex.rs`: the softmax
//! in one pass over each row, the products by gemm into buffers it fills, where flex 0.22 zeroes
//! a byte buffer and copies it into an aligned one before each product). The forward passes are
//! the same operations as Burn's in the same order, so the numbers are the same; the tests check
//! outputs and gradients against Burn's composed operations.
//!
//! [`Real`], the float types these loops (and Adam's and the gradients' host loops) run in, is
//! here too.
//!
//! [`backend_extension`]: burn::backend::backend_extension
//! [`Backward`]: burn::backend::autodiff::ops::Backward

use core::ops::{Add, Div, Mul, Sub};

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary, unary};
use burn::backend::tensor::{BoolTensor, FloatTensor, IntTensor};
use burn::backend::{Backend, Dispatch, TensorMetadata};
use burn::tensor::{Bool, Element, IndexingUpdateOp, Int, Tensor};

#[cfg(feature = "cpu")]
mod flex;

/// The float types the host loops run in: f32 and f64.
pub trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Element
    + bytemuck::Pod
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
{
    /// `x` rounded to this type.
    fn of(x: f64) -> Self;
    /// The square root.
    fn sqrt(self) -> Self;
    /// `e` to the power of this number.
    fn exp(self) -> Self;
    /// This number as an f64 (exact).
    fn to_f64(self) -> f64;
}

impl Real for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Real for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn to_f64(self) -> f64 {
        self
    }
}

pub use extension::Kernels;

/// The trait and the routing Burn generates for it, which names Burn's deprecated ndarray
/// backend (kept for comparison) where it is built.
mod extension {
    #![allow(deprecated)]

    use burn::backend::tensor::{BoolTensor, FloatTensor, IntTensor};
    use burn::backend::{Backend, TensorMetadata, backend_extension};

    use super::rms_scale;

    /// The operations of this module, routed by Burn to the backend a tensor lives on. Call them
    /// through [`causal_softmax`](super::causal_softmax), [`matmul`](super::matmul),
    /// [`linear`](super::linear), [`rmsnorm`](super::rmsnorm), [`nll`](super::nll) and
    /// [`masked_nll`](super::masked_nll). The default bodies compose each from the backend's own
    /// operations; the CPU backend overrides the softmax and the products.
    #[backend_extension(
        Flex: cfg(feature = "cpu"),
        Cube: cfg(any(feature = "gpu", feature = "cuda")),
        NdArray: cfg(feature = "ndarray"),
        Autodiff
    )]
    pub trait Kernels: Backend {
        /// Scores [.., T, t_all] -> attention weights: softmax over the last dimension of
        /// `scores / divisor`, where row i (a query at position `t_all - T + i`) sees the keys up to
        /// its own position and gives the later ones weight 0. `future` ([1, 1, T, t_all], true
        /// where a key lies in the query's future) says the same as a mask.
        fn causal_softmax(scores: FloatTensor<Self>, future: BoolTensor<Self>, divisor: f64) -> FloatTensor<Self> {
            let scores = Self::float_div_scalar(scores, divisor.into());
            let scores = Self::float_mask_fill(scores, future, f64::NEG_INFINITY.into());
            let last = scores.shape().num_dims() - 1;
            Self::softmax(scores, last)
        }

        /// The gradient with respect to the scores of [`Kernels::causal_softmax`], from its weights
        /// `att` and the gradient `grad` with respect to them (both [.., T, t_all]).
        fn causal_softmax_backward(att: FloatTensor<Self>, grad: FloatTensor<Self>, divisor: f64) -> FloatTensor<Self> {
            let last = att.shape().num_dims() - 1;
            let dot = Self::float_sum_dim(Self::float_mul(att.clone(), grad.clone()), last); // [.., 1]
            Self::float_div_scalar(Self::float_mul(att, Self::float_sub(grad, dot)), divisor.into())
        }

        /// `lhs` [.., M, K] times `rhs` [.., K, N] -> [.., M, N], over the same leading dimensions.
        fn matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
            Self::float_matmul(lhs, rhs)
        }

        /// A linear layer: `x` [R, in] times the transpose of `w` [out, in] -> [R, out].
        fn linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
            Self::float_matmul(x, Self::float_transpose(w))
        }

        /// `x * (mean(x²) + eps)^(-1/2)` over the last dimension.
        fn rmsnorm(x: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
            let r = rms_scale::<Self>(x.clone(), eps);
            Self::float_mul(x, r)
        }

        /// Logits [.., V] and the index of each row's target [.., 1] -> `-log softmax(logits)` at the
        /// target [.., 1]: each row's negative log-likelihood.
        fn nll(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
            let last = logits.shape().num_dims() - 1;
            Self::float_neg(Self::float_gather(last, Self::log_softmax(logits, last), targets))
        }

        /// Logits [.., V], the index of each row's target [.., 1] and each row's weight [.., 1]
        /// -> `[1]`: `Σ weight · nll / divisor`, the mean loss over the rows a 0/1 mask keeps when
        /// `divisor` counts them ([`Kernels::nll`] for `nll`).
        fn masked_nll(
            logits: FloatTensor<Self>,
            targets: IntTensor<Self>,
            mask: FloatTensor<Self>,
            divisor: f64,
        ) -> FloatTensor<Self> {
            let nll = Self::nll(logits, targets);
            Self::float_div_scalar(Self::float_sum(Self::float_mul(nll, mask)), divisor.into())
        }
    }
}

/// rmsnorm's scale `(mean(x²) + eps)^(-1/2)` [.., 1] of `x` [.., C]: the operations of
/// `x.square().mean_dim(..) + eps` then `powf_scalar(-0.5)`, in that order.
fn rms_scale<B: Backend>(x: FloatTensor<B>, eps: f64) -> FloatTensor<B> {
    let last = x.shape().num_dims() - 1;
    let ms = B::float_mean_dim(B::float_mul(x.clone(), x), last);
    B::float_powf_scalar(B::float_add_scalar(ms, eps.into()), (-0.5).into())
}

#[cfg(any(feature = "gpu", feature = "cuda"))]
impl Kernels for burn::backend::Cube {}

#[cfg(feature = "ndarray")]
#[allow(deprecated)] // Burn's ndarray backend, kept for comparison
impl Kernels for burn::backend::NdArray {}

/// Attention weights from `scores` [B, H, T, t_all]: `softmax(scores / divisor)` over the keys
/// each query may see, 0 for the others; `future` [1, 1, T, t_all] is true where a key lies in
/// the query's future ([`Kernels::causal_softmax`]).
pub fn causal_softmax(scores: Tensor<4>, future: &Tensor<4, Bool>, divisor: f64) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as Kernels>::causal_softmax(
        scores.into_dispatch(),
        future.clone().into_dispatch(),
        divisor,
    ))
}

/// The matrix product over the last two dimensions ([`Kernels::matmul`]); where the leading
/// dimensions differ (broadcasting), Burn's, whose backward pass sums over the copies.
pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
    if lhs.dims()[..D - 2] != rhs.dims()[..D - 2] {
        return lhs.matmul(rhs);
    }
    Tensor::from_dispatch(<Dispatch as Kernels>::matmul(lhs.into_dispatch(), rhs.into_dispatch()))
}

/// A linear layer, `x` [R, in] times `wᵀ` for `w` [out, in] ([`Kernels::linear`]), with the
/// gradient of `w` computed in `w`'s own layout (as `dYᵀ x`, not as the transpose of `xᵀ dY`).
pub fn linear(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as Kernels>::linear(x.into_dispatch(), w.into_dispatch()))
}

/// `x * (mean(x²) + eps)^(-1/2)` over the last dimension, with no learnable gain
/// ([`Kernels::rmsnorm`]). On the CPU backend, Burn's composed operations: there the one node
/// trained the Shakespeare preset 10-20% slower with the batch in two parts side by side (and
/// as fast with one thread), for a reason not found; the numbers are the same either way.
pub fn rmsnorm<const D: usize>(x: Tensor<D>, eps: f64) -> Tensor<D> {
    if on_flex(&x.device()) {
        let ms = x.clone().square().mean_dim(D - 1); // [.., 1]
        return x * (ms + eps).powf_scalar(-0.5);
    }
    Tensor::from_dispatch(<Dispatch as Kernels>::rmsnorm(x.into_dispatch(), eps))
}

/// Whether `device` is the CPU backend's (flex), with or without autodiff.
fn on_flex(device: &burn::tensor::Device) -> bool {
    #[cfg(feature = "cpu")]
    return matches!(device.clone().inner().as_dispatch(), burn::backend::DispatchDevice::Flex(_));
    #[cfg(not(feature = "cpu"))]
    return false;
}

/// Each row's negative log-likelihood: logits [.., V] and targets [.., 1] -> [.., 1]
/// ([`Kernels::nll`]).
pub fn nll<const D: usize>(logits: Tensor<D>, targets: Tensor<D, Int>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as Kernels>::nll(logits.into_dispatch(), targets.into_dispatch()))
}

/// The mean loss over the rows a mask keeps: logits [.., V], targets [.., 1] and a 0/1 `mask`
/// [.., 1] -> `Σ mask · nll / divisor`, of shape `[1]` ([`Kernels::masked_nll`]), with `divisor` the number of
/// rows kept.
pub fn masked_nll<const D: usize>(
    logits: Tensor<D>,
    targets: Tensor<D, Int>,
    mask: Tensor<D>,
    divisor: f64,
) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as Kernels>::masked_nll(
        logits.into_dispatch(),
        targets.into_dispatch(),
        mask.into_dispatch(),
        divisor,
    ))
}

/// The backward step of [`Kernels::causal_softmax`]; it keeps the forward pass's output, the
/// weights.
#[derive(Debug)]
struct CausalSoftmax {
    divisor: f64,
}

impl<B: Kernels> Backward<B, 1> for CausalSoftmax {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        unary::<B, _>(ops.parents, ops.node, grads, |grad| B::causal_softmax_backward(ops.state, grad, self.divisor));
    }
}

/// The backward step of [`Kernels::matmul`] (`Y = A B`: `dA = dY Bᵀ`, `dB = Aᵀ dY`) and of
/// [`Kernels::linear`] (`Y = X Wᵀ`: `dX = dY W`, and `dW = dYᵀ X` in `W`'s own layout); it
/// keeps both factors as they were given.
#[derive(Debug)]
struct Product {
    /// Whether the right factor enters transposed: a linear layer's weight.
    transposed: bool,
}

impl Product {
    /// `lhs` times `rhs` (or `rhsᵀ`) in Burn's autodiff graph, with this backward step.
    fn tracked<B: Kernels, C: CheckpointStrategy>(
        self,
        lhs: FloatTensor<Autodiff<B, C>>,
        rhs: FloatTensor<Autodiff<B, C>>,
    ) -> FloatTensor<Autodiff<B, C>> {
        let transposed = self.transposed;
        let forward = |lhs, rhs| if transposed { <B as Kernels>::linear(lhs, rhs) } else { B::matmul(lhs, rhs) };
        match self.prepare::<C>([lhs.node(), rhs.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (lhs, rhs) = (lhs.into_primitive(), rhs.into_primitive());
                let y = forward(lhs.clone(), rhs.clone());
                prep.finish((lhs, rhs), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(lhs.into_primitive(), rhs.into_primitive())),
        }
    }
}

impl<B: Kernels> Backward<B, 2> for Product {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (lhs, rhs) = ops.state;
        let rank = lhs.shape().num_dims();
        let t = |x: FloatTensor<B>| B::float_swap_dims(x, rank - 2, rank - 1);
        let transposed = self.transposed;
        binary::<B, _, _>(
            ops.parents,
            ops.node,
            grads,
            |grad| B::matmul(grad, if transposed { rhs } else { t(rhs) }),
            |grad| if transposed { B::matmul(t(grad), lhs) } else { B::matmul(t(lhs), grad) },
        );
    }
}

/// The backward step of [`Kernels::rmsnorm`]: `dx = r g - x r³ mean(g x)`; it keeps `x` and
/// `r` [.., 1].
#[derive(Debug)]
struct RmsNorm;

impl<B: Kernels> Backward<B, 1> for RmsNorm {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, r) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            let last = x.shape().num_dims() - 1;
            let gx = B::float_mean_dim(B::float_mul(grad.clone(), x.clone()), last); // [.., 1]
            let r3_gx = B::float_mul(B::float_mul(B::float_mul(r.clone(), r.clone()), r.clone()), gx);
            B::float_sub(B::float_mul(grad, r), B::float_mul(x, r3_gx))
        });
    }
}

/// The backward step of [`Kernels::nll`]: the gradient with respect to the logits is
/// `(softmax(logits) - onehot(target)) g` for the gradient `g` [.., 1] of each row's loss; it
/// keeps the log-probabilities [.., V] and the targets.
#[derive(Debug)]
struct Nll;

impl<B: Kernels> Backward<B, 1> for Nll {
    type State = (FloatTensor<B>, IntTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (logp, targets) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            // grad: [.., 1]
            let last = logp.shape().num_dims() - 1;
            let probs = B::float_mul(B::float_exp(logp), grad.clone());
            B::float_scatter(last, probs, targets, B::float_neg(grad), IndexingUpdateOp::Add)
        });
    }
}

/// The backward step of [`Kernels::masked_nll`]: for the gradient `g` (shape `[1]`) of the loss, each
/// row's share is `w = mask g / divisor`, and the gradient with respect to the logits is
/// `(softmax(logits) - onehot(target)) w`; it keeps the log-probabilities [.., V], the targets and
/// the mask.
#[derive(Debug)]
struct MaskedNll {
    divisor: f64,
}

impl<B: Kernels> Backward<B, 1> for MaskedNll {
    type State = (FloatTensor<B>, IntTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (logp, targets, mask) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            let rank = logp.shape().num_dims();
            let g = B::float_reshape(B::float_div_scalar(grad, self.divisor.into()), vec![1; rank].into()); // [1, .., 1]
            let w = B::float_mul(mask, g); // [.., 1]
            let probs = B::float_mul(B::float_exp(logp), w.clone());
            B::float_scatter(rank - 1, probs, targets, B::float_neg(w), IndexingUpdateOp::Add)
        });
    }
}

impl<B: Kernels, C: CheckpointStrategy> Kernels for Autodiff<B, C> {
    fn causal_softmax(scores: FloatTensor<Self>, future: BoolTensor<Self>, divisor: f64) -> FloatTensor<Self> {
        match (CausalSoftmax { divisor }).prepare::<C>([scores.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let att = B::causal_softmax(scores.into_primitive(), future, divisor);
                prep.finish(att.clone(), att)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::causal_softmax(scores.into_primitive(), future, divisor)),
        }
    }

    fn matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        // the backward step gives gradients of the factors' own shapes only without broadcasting
        let (ls, rs) = (lhs.shape(), rhs.shape());
        let rank = ls.num_dims();
        assert!(ls[..rank - 2] == rs[..rank - 2], "kernels::matmul leaves broadcasting to Burn");
        Product { transposed: false }.tracked::<B, C>(lhs, rhs)
    }

    fn linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        Product { transposed: true }.tracked::<B, C>(x, w)
    }

    fn rmsnorm(x: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        match RmsNorm.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let x = x.into_primitive();
                let r = rms_scale::<B>(x.clone(), eps);
                prep.finish((x.clone(), r.clone()), B::float_mul(x, r))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::rmsnorm(x.into_primitive(), eps)),
        }
    }

    fn nll(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        match Nll.prepare::<C>([logits.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let logits = logits.into_primitive();
                let last = logits.shape().num_dims() - 1;
                let logp = B::log_softmax(logits, last);
                let nll = B::float_neg(B::float_gather(last, logp.clone(), targets.clone()));
                prep.finish((logp, targets), nll)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::nll(logits.into_primitive(), targets)),
        }
    }

    fn masked_nll(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        mask: FloatTensor<Self>,
        divisor: f64,
    ) -> FloatTensor<Self> {
        let mask = mask.into_primitive(); // a constant: no gradient flows to it
        match (MaskedNll { divisor }).prepare::<C>([logits.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                // the default body's operations, in its order, keeping what the backward step needs
                let logits = logits.into_primitive();
                let last = logits.shape().num_dims() - 1;
                let logp = B::log_softmax(logits, last);
                let nll = B::float_neg(B::float_gather(last, logp.clone(), targets.clone()));
                let loss = B::float_div_scalar(B::float_sum(B::float_mul(nll, mask.clone())), divisor.into());
                prep.finish((logp, targets, mask), loss)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::masked_nll(logits.into_primitive(), targets, mask, divisor)),
        }
    }
}

// f64 on the CPU backends, against Burn's own operations on the same device: flex (the CPU's own
// loops) and, where built, ndarray (the default bodies, which the GPU runs).
#[cfg(all(test, feature = "cpu"))]
mod tests {
    use burn::tensor::activation::{log_softmax, softmax};
    use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

    use super::*;
    use crate::device::{self, DeviceArg, Precision, read_values};
    use crate::rng::PyRandom;

    /// The f64 devices the operations are checked on: flex's own loops, and the default bodies.
    fn devices() -> Vec<Device> {
        let mut devices = vec![device::cpu_f64()];
        if cfg!(feature = "ndarray") {
            devices.push(device::open(Some(DeviceArg::Ndarray), Some(Precision::F64)).unwrap().device);
        }
        devices
    }

    /// A tensor of N(0, 1) draws on `device`, under autodiff, that gradients are taken with
    /// respect to.
    fn draw<const D: usize>(rng: &mut PyRandom, dims: [usize; D], device: &Device) -> Tensor<D> {
        draw_on(rng, dims, &device.clone().autodiff()).require_grad()
    }

    /// A tensor of N(0, 1) draws on `device`.
    fn draw_on<const D: usize>(rng: &mut PyRandom, dims: [usize; D], device: &Device) -> Tensor<D> {
        let values: Vec<f64> = (0..dims.iter().product()).map(|_| rng.gauss(0.0, 1.0)).collect();
        Tensor::<D>::from_data(TensorData::new(values, dims), device)
    }

    /// The mask of the keys in each query's future, [1, 1, T, t_all], as the model builds it.
    fn future(t: usize, t_all: usize, device: &Device) -> Tensor<4, Bool> {
        let first = t_all - t;
        let future: Vec<bool> = (0..t).flat_map(|i| (0..t_all).map(move |j| j > first + i)).collect();
        Tensor::from_data(TensorData::new(future, [1, 1, t, t_all]), device)
    }

    /// The largest difference between two tensors' numbers, which must have the same shape.
    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f64 {
        assert_eq!(a.dims(), b.dims());
        let (a, b) = (read_values(a).unwrap(), read_values(b).unwrap());
        a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
    }

    /// The output of `op` and the gradients of `Σ output · weights` with respect to `inputs`,
    /// for fixed random weights: what the loss of a step would see.
    fn with_grads<const D: usize, const E: usize>(
        rng: &mut PyRandom,
        inputs: &[Tensor<D>],
        op: impl Fn(Vec<Tensor<D>>) -> Tensor<E>,
    ) -> (Tensor<E>, Vec<Tensor<D>>) {
        let out = op(inputs.to_vec());
        let weights = draw(rng, out.dims(), &out.device()).detach();
        let grads = (out.clone() * weights).sum().backward();
        let grads = inputs.iter().map(|x| x.grad(&grads).expect("every input has a gradient")).collect();
        (out.detach(), grads)
    }

    /// Both versions of an operation on the same inputs: outputs and gradients within 1e-12.
    fn same<const D: usize, const E: usize>(
        inputs: &[Tensor<D>],
        ours: impl Fn(Vec<Tensor<D>>) -> Tensor<E>,
        burns: impl Fn(Vec<Tensor<D>>) -> Tensor<E>,
    ) {
        let (ours, our_grads) = with_grads(&mut PyRandom::new(7), inputs, ours);
        let (burns, burn_grads) = with_grads(&mut PyRandom::new(7), inputs, burns);
        let diff = max_diff(ours, burns);
        assert!(diff < 1e-12, "outputs differ by {diff}");
        for (i, (ours, burns)) in our_grads.into_iter().zip(burn_grads).enumerate() {
            let diff = max_diff(ours, burns);
            assert!(diff < 1e-12, "gradients of input {i} differ by {diff}");
        }
    }

    /// The causal softmax gives Burn's masked softmax and its gradient: for a whole sequence
    /// (T = t_all) and for queries after cached keys (T < t_all), where rows see more keys. The
    /// divisor is 2, which every precision holds exactly: Burn 0.22's backward of a division by a
    /// scalar multiplies by the reciprocal rounded to f32, which is 1e-9 off in f64 for √8.
    #[test]
    fn the_causal_softmax_is_burns_masked_softmax() {
        let mut rng = PyRandom::new(42);
        for device in devices() {
            for (t, t_all) in [(5, 5), (3, 7), (1, 4)] {
                let scores = draw(&mut rng, [2, 3, t, t_all], &device);
                let mask = future(t, t_all, &scores.device());
                let burns =
                    |x: Vec<Tensor<4>>| softmax((x[0].clone() / 2.0).mask_fill(mask.clone(), f64::NEG_INFINITY), 3);
                same(&[scores], |x| causal_softmax(x[0].clone(), &mask, 2.0), burns);
            }
        }
    }

    /// The product is Burn's for plain and transposed (strided) factors, over a batch and as one
    /// matrix, with both gradients; and a broadcast batch, which it leaves to Burn, still is.
    #[test]
    fn the_matrix_products_are_burns() {
        let mut rng = PyRandom::new(1);
        for device in devices() {
            let (a, b) = (draw(&mut rng, [2, 3, 4, 5], &device), draw(&mut rng, [2, 3, 6, 5], &device));
            same(
                &[a, b],
                |x| matmul(x[0].clone(), x[1].clone().swap_dims(2, 3)),
                |x| x[0].clone().matmul(x[1].clone().swap_dims(2, 3)),
            );
            let (a, b) = (draw(&mut rng, [2, 3, 4, 5], &device), draw(&mut rng, [1, 3, 5, 2], &device));
            same(&[a, b], |x| matmul(x[0].clone(), x[1].clone()), |x| x[0].clone().matmul(x[1].clone()));
            let (x, w) = (draw(&mut rng, [7, 5], &device), draw(&mut rng, [3, 5], &device));
            same(&[x, w], |x| linear(x[0].clone(), x[1].clone()), |x| x[0].clone().matmul(x[1].clone().transpose()));
            // large enough for gemm to split one product over the cores
            let (x, w) = (draw(&mut rng, [300, 200], &device), draw(&mut rng, [150, 200], &device));
            same(&[x, w], |x| linear(x[0].clone(), x[1].clone()), |x| x[0].clone().matmul(x[1].clone().transpose()));
        }
    }

    /// rmsnorm is Burn's composed one, over rows and over a batch of rows, with its gradient:
    /// the node itself, and what [`rmsnorm`] gives (on the CPU backend, Burn's operations).
    #[test]
    fn rmsnorm_is_burns_composed_rmsnorm() {
        fn node<const D: usize>(x: Vec<Tensor<D>>) -> Tensor<D> {
            Tensor::from_dispatch(<Dispatch as Kernels>::rmsnorm(x[0].clone().into_dispatch(), 1e-5))
        }
        fn burns<const D: usize>(x: Vec<Tensor<D>>) -> Tensor<D> {
            let ms = x[0].clone().square().mean_dim(D - 1);
            x[0].clone() * (ms + 1e-5).powf_scalar(-0.5)
        }
        let mut rng = PyRandom::new(5);
        for device in devices() {
            let x = draw(&mut rng, [6, 8], &device);
            same(std::slice::from_ref(&x), node, burns);
            same(&[x], |x| rmsnorm(x[0].clone(), 1e-5), burns);
            same(&[draw(&mut rng, [2, 3, 16], &device)], node, burns);
        }
    }

    /// The log-likelihoods are Burn's `-log_softmax` at the targets, with their gradient, for
    /// rows of logits and for a batch of sequences; a target may repeat.
    #[test]
    fn the_log_likelihoods_are_burns() {
        let mut rng = PyRandom::new(9);
        for device in devices() {
            let ad = device.clone().autodiff();
            let targets = Tensor::<2, Int>::from_data(TensorData::new(vec![3i64, 0, 4, 4, 1], [5, 1]), &ad);
            let burns = |x: Vec<Tensor<2>>| -log_softmax(x[0].clone(), 1).gather(1, targets.clone());
            same(&[draw(&mut rng, [5, 6], &device)], |x| nll(x[0].clone(), targets.clone()), burns);
            let targets = Tensor::<3, Int>::from_data(TensorData::new(vec![1i64, 2, 0, 2, 2, 1], [2, 3, 1]), &ad);
            let burns = |x: Vec<Tensor<3>>| -log_softmax(x[0].clone(), 2).gather(2, targets.clone());
            same(&[draw(&mut rng, [2, 3, 3], &device)], |x| nll(x[0].clone(), targets.clone()), burns);
        }
    }

    /// The masked mean of the log-likelihoods is Burn's `(mask · -log_softmax at the targets)`
    /// summed and divided, with its gradient, for a batch of sequences with padded rows.
    #[test]
    fn the_masked_mean_loss_is_burns() {
        let mut rng = PyRandom::new(11);
        for device in devices() {
            let ad = device.clone().autodiff();
            let targets = Tensor::<3, Int>::from_data(TensorData::new(vec![1i64, 2, 0, 2, 2, 1], [2, 3, 1]), &ad);
            let mask = Tensor::<3>::from_data(TensorData::new(vec![1.0f64, 1., 0., 1., 1., 0.], [2, 3, 1]), &ad);
            // 4 rows kept: a divisor f32 holds exactly (see the causal softmax's test)
            let burns = |x: Vec<Tensor<3>>| {
                (-log_softmax(x[0].clone(), 2).gather(2, targets.clone()) * mask.clone()).sum() / 4.0
            };
            let ours = |x: Vec<Tensor<3>>| masked_nll(x[0].clone(), targets.clone(), mask.clone(), 4.0);
            same(&[draw(&mut rng, [2, 3, 4], &device)], ours, burns);
        }
    }

    /// Without autodiff (evaluation, sampling) the operations give the same numbers.
    #[test]
    fn the_operations_run_without_autodiff() {
        let mut rng = PyRandom::new(3);
        for device in devices() {
            let (x, w) = (draw_on(&mut rng, [4, 6], &device), draw_on(&mut rng, [5, 6], &device));
            assert!(!x.device().is_autodiff());
            assert!(max_diff(linear(x.clone(), w.clone()), x.clone().matmul(w.transpose())) < 1e-12);
            let composed = x.clone() * (x.clone().square().mean_dim(1) + 1e-5).powf_scalar(-0.5);
            assert!(max_diff(rmsnorm(x.clone(), 1e-5), composed) < 1e-12);
            let targets = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 5, 2, 1], [4, 1]), &device);
            let composed = -log_softmax(x.clone(), 1).gather(1, targets.clone());
            assert!(max_diff(nll(x, targets), composed) < 1e-12);
            let scores = draw_on(&mut rng, [1, 2, 3, 3], &device);
            let weights = causal_softmax(scores, &future(3, 3, &device), 1.0);
            let rows = read_values(weights.sum_dim(3)).unwrap();
            assert!(rows.iter().all(|s| (s - 1.0).abs() < 1e-12), "{rows:?}");
        }
    }
}
