//! Attention's causal softmax. For the scores `s` of the query at position `p`, the weights are
//! `a = softmax(s / √D)` over the keys `0..=p`, and 0 for the keys after it. Backward, from the
//! gradient `g` with respect to `a`: `ds_j = a_j (g_j - Σ_k g_k a_k) / √D` (0 in the future,
//! where `a` is 0). Composed from Burn's operations the forward pass is seven (divide, hide the
//! future, then softmax's max, subtract, exp, sum, divide), each with its own backward step;
//! here it is one node, and on the CPU one pass over each row.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops as NodeOps, OpsKind, unary};
use burn::backend::tensor::{BoolTensor, FloatTensor};
use burn::backend::{Backend, Dispatch, TensorMetadata};
use burn::tensor::{Bool, Tensor};

use super::FusedBackend;

/// The weights of `scores` [B, H, T, t_all] ([`FusedBackend::causal_softmax`]); `future`
/// [1, 1, T, t_all] is true where a key lies in the query's future.
pub fn causal_softmax(scores: Tensor<4>, future: &Tensor<4, Bool>, divisor: f64) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedBackend>::causal_softmax(
        scores.into_dispatch(),
        future.clone().into_dispatch(),
        divisor,
    ))
}

/// The forward pass from the backend's primitives, Burn's order: what a GPU runs.
pub fn composed<B: Backend>(scores: FloatTensor<B>, future: BoolTensor<B>, divisor: f64) -> FloatTensor<B> {
    let scores = B::float_div_scalar(scores, divisor.into());
    let scores = B::float_mask_fill(scores, future, f64::NEG_INFINITY.into());
    let last = scores.shape().num_dims() - 1;
    B::softmax(scores, last)
}

/// The backward pass from the backend's primitives: from the weights `att` and the gradient
/// `grad` with respect to them (both [.., T, t_all]), the gradient with respect to the scores.
pub fn composed_backward<B: Backend>(att: FloatTensor<B>, grad: FloatTensor<B>, divisor: f64) -> FloatTensor<B> {
    let last = att.shape().num_dims() - 1;
    let dot = B::float_sum_dim(B::float_mul(att.clone(), grad.clone()), last); // [.., 1]
    B::float_div_scalar(B::float_mul(att, B::float_sub(grad, dot)), divisor.into())
}

/// The node's backward step; it keeps the forward pass's output, the weights.
#[derive(Debug)]
struct CausalSoftmax {
    divisor: f64,
}

impl<B: FusedBackend> Backward<B, 1> for CausalSoftmax {
    type State = FloatTensor<B>;

    fn backward(self, ops: NodeOps<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        unary::<B, _>(ops.parents, ops.node, grads, |grad| B::causal_softmax_backward(ops.state, grad, self.divisor));
    }
}

/// The forward pass as one node of the autodiff graph.
pub fn tracked<B: FusedBackend, C: CheckpointStrategy>(
    scores: FloatTensor<Autodiff<B, C>>,
    future: BoolTensor<Autodiff<B, C>>,
    divisor: f64,
) -> FloatTensor<Autodiff<B, C>> {
    match (CausalSoftmax { divisor }).prepare::<C>([scores.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let att = B::causal_softmax(scores.into_primitive(), future, divisor);
            prep.finish(att.clone(), att)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::causal_softmax(scores.into_primitive(), future, divisor)),
    }
}

#[cfg(feature = "cpu")]
pub use cpu::{flex_backward, flex_forward};

/// The CPU's loops: each row of scores in one pass, rows in pieces over the cores.
#[cfg(feature = "cpu")]
mod cpu {
    use burn::backend::flex::FlexTensor;
    use burn::tensor::{DType, TensorData};
    use rayon::prelude::*;

    use crate::fast::contiguous;
    use crate::fast::real::Real;

    /// Rows per piece of work a core takes: a few thousand numbers, so that the small tensors of
    /// the reference run stay on one core.
    fn rows_per_piece(row_len: usize) -> usize {
        (4096 / row_len.max(1)).max(1)
    }

    /// (T, t_all) of scores shaped [.., T, t_all].
    fn rows_of(tensor: &FlexTensor) -> (usize, usize) {
        let dims = tensor.layout().shape();
        let (t, t_all) = (dims[dims.num_dims() - 2], dims[dims.num_dims() - 1]);
        assert!(t <= t_all, "causal_softmax: {t} queries but only {t_all} keys");
        (t, t_all)
    }

    /// Runs `row(r, seen, out_row)` for each row r of `out` ([rows, t_all], rows in [.., T]
    /// order), in pieces over the cores; `seen` is how many keys (from the first) row r's query
    /// may see, and the rest of the row is set to zero.
    fn each_row<F: Real>(out: &mut [F], t: usize, t_all: usize, row: impl Fn(usize, usize, &mut [F]) + Sync) {
        if out.is_empty() {
            return;
        }
        let (first, piece) = (t_all - t, rows_per_piece(t_all));
        out.par_chunks_mut(piece * t_all).enumerate().for_each(|(p, out)| {
            for (r, out) in out.chunks_exact_mut(t_all).enumerate() {
                let r = p * piece + r;
                let seen = first + r % t + 1;
                let (visible, future) = out.split_at_mut(seen);
                row(r, seen, visible);
                future.fill(F::of(0.0));
            }
        });
    }

    /// The forward loop: `scores` into the weights `out` (both [rows, t_all]).
    fn forward<F: Real>(scores: &[F], out: &mut [F], t: usize, t_all: usize, divisor: f64) {
        let divisor = F::of(divisor);
        each_row(out, t, t_all, |r, seen, out| {
            let mut max = F::of(f64::NEG_INFINITY);
            for (o, &s) in out.iter_mut().zip(&scores[r * t_all..][..seen]) {
                *o = s / divisor;
                if *o > max {
                    max = *o;
                }
            }
            let mut sum = F::of(0.0);
            for o in out.iter_mut() {
                *o = (*o - max).exp();
                sum = sum + *o;
            }
            for o in out.iter_mut() {
                *o = *o / sum;
            }
        });
    }

    /// The backward loop: from the weights `att` and the gradient `grad` with respect to them,
    /// the gradient with respect to the scores, into `out`.
    fn backward<F: Real>(att: &[F], grad: &[F], out: &mut [F], t: usize, t_all: usize, divisor: f64) {
        let divisor = F::of(divisor);
        each_row(out, t, t_all, |r, seen, out| {
            let (a, g) = (&att[r * t_all..][..seen], &grad[r * t_all..][..seen]);
            let dot = a.iter().zip(g).fold(F::of(0.0), |dot, (&a, &g)| dot + a * g);
            for ((o, &a), &g) in out.iter_mut().zip(a).zip(g) {
                *o = a * (g - dot) / divisor;
            }
        });
    }

    /// The forward pass on flex; the mask is not read, each row's query position says which
    /// keys it sees.
    pub fn flex_forward(scores: FlexTensor, divisor: f64) -> FlexTensor {
        let scores = contiguous(scores);
        let (t, t_all) = rows_of(&scores);
        match scores.dtype() {
            DType::F32 => map_new::<f32>(&scores, |o| forward(scores.storage(), o, t, t_all, divisor)),
            DType::F64 => map_new::<f64>(&scores, |o| forward(scores.storage(), o, t, t_all, divisor)),
            dtype => panic!("causal_softmax: {dtype:?} is not f32 or f64"),
        }
    }

    /// The backward pass on flex.
    pub fn flex_backward(att: FlexTensor, grad: FlexTensor, divisor: f64) -> FlexTensor {
        let (att, grad) = (contiguous(att), contiguous(grad));
        let (t, t_all) = rows_of(&att);
        match att.dtype() {
            DType::F32 => map_new::<f32>(&att, |o| backward(att.storage(), grad.storage(), o, t, t_all, divisor)),
            DType::F64 => map_new::<f64>(&att, |o| backward(att.storage(), grad.storage(), o, t, t_all, divisor)),
            dtype => panic!("causal_softmax: {dtype:?} is not f32 or f64"),
        }
    }

    /// A new tensor of `shape_of`'s shape from `fill`, which writes every number of a buffer.
    fn map_new<F: Real>(shape_of: &FlexTensor, fill: impl FnOnce(&mut [F])) -> FlexTensor {
        let shape = shape_of.layout().shape().clone();
        let mut out = vec![F::of(0.0); shape.num_elements()];
        fill(&mut out);
        FlexTensor::from_data(TensorData::new(out, shape))
    }
}

// f64 on the CPU backends, against Burn's own operations on the same device.
#[cfg(all(test, feature = "cpu"))]
mod tests {
    use burn::tensor::{Bool, Device, Tensor, TensorData};

    use super::*;
    use crate::device::read_values;
    use crate::fast::testing::{devices, draw, draw_on, formula, same};
    use crate::gpt::ops;
    use crate::gpt::rng::PyRandom;

    /// The mask of the keys in each query's future, [1, 1, T, t_all], built here independently
    /// of the model's.
    fn future(t: usize, t_all: usize, device: &Device) -> Tensor<4, Bool> {
        let first = t_all - t;
        let future: Vec<bool> = (0..t).flat_map(|i| (0..t_all).map(move |j| j > first + i)).collect();
        Tensor::from_data(TensorData::new(future, [1, 1, t, t_all]), device)
    }

    /// Ours gives Burn's masked softmax and its gradient: for a whole sequence (T = t_all) and
    /// for queries after cached keys (T < t_all), where rows see more keys. The divisor is 2,
    /// which every precision holds exactly: Burn 0.22's backward of a division by a scalar
    /// multiplies by the reciprocal rounded to f32, which is 1e-9 off in f64 for √8.
    #[test]
    fn the_causal_softmax_kernel_is_the_formula() {
        let mut rng = PyRandom::new(42);
        for device in devices() {
            for (t, t_all) in [(5, 5), (3, 7), (1, 4)] {
                let scores = draw(&mut rng, [2, 3, t, t_all], &device);
                let mask = future(t, t_all, &scores.device());
                same(
                    &[scores],
                    |x| causal_softmax(x[0].clone(), &mask, 2.0),
                    |x| formula(|| ops::causal_softmax(x[0].clone(), Some(&mask), 2.0)),
                );
            }
        }
    }

    /// Without autodiff (evaluation, sampling) each row of weights still sums to 1.
    #[test]
    fn the_weights_of_each_query_sum_to_one_without_autodiff() {
        let mut rng = PyRandom::new(3);
        for device in devices() {
            let scores = draw_on(&mut rng, [1, 2, 3, 3], &device);
            assert!(!scores.device().is_autodiff());
            let weights = causal_softmax(scores, &future(3, 3, &device), 1.0);
            let rows = read_values(weights.sum_dim(3)).unwrap();
            assert!(rows.iter().all(|s| (s - 1.0).abs() < 1e-12), "{rows:?}");
        }
    }
}
