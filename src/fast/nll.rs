//! The loss: each row's negative log-likelihood `-log softmax(l)_t` of its logits `l` (V of them) at its
//! target `t`, and their mean over a padded batch's real rows `Σ mask · nll / n`. Backward, for
//! the gradient `g` of a row's loss: `(softmax(l) - onehot(t)) g`; in the masked mean each row's
//! `g` is `mask g_loss / n`. Composed, the mean's sum, division and mask are a segment that Burn's
//! fusion ran one operation at a time on a GPU; here the whole mean is one node.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops as NodeOps, OpsKind, unary};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, Dispatch, TensorMetadata};
use burn::tensor::{IndexingUpdateOp, Int, Tensor};

use super::FusedBackend;

/// Each row's negative log-likelihood: logits [.., V] and targets [.., 1] -> [.., 1]
/// ([`FusedBackend::nll`]).
pub fn nll<const D: usize>(logits: Tensor<D>, targets: Tensor<D, Int>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedBackend>::nll(logits.into_dispatch(), targets.into_dispatch()))
}

/// The mean loss over the rows a 0/1 `mask` [.., 1] keeps: `Σ mask · nll / divisor`, of shape
/// `[1]`, with `divisor` the number of rows kept ([`FusedBackend::masked_nll`]).
pub fn masked_nll<const D: usize>(
    logits: Tensor<D>,
    targets: Tensor<D, Int>,
    mask: Tensor<D>,
    divisor: f64,
) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as FusedBackend>::masked_nll(
        logits.into_dispatch(),
        targets.into_dispatch(),
        mask.into_dispatch(),
        divisor,
    ))
}

/// The log-probabilities [.., V] and each row's loss [.., 1]: the operations of the formula
/// (`crate::gpt::ops::nll`), in its order, the log-softmax the backend's ([`FusedBackend::log_probs`]).
fn log_likelihoods<B: FusedBackend>(logits: FloatTensor<B>, targets: IntTensor<B>) -> (FloatTensor<B>, FloatTensor<B>) {
    let last = logits.shape().num_dims() - 1;
    let logp = B::log_probs(logits);
    let nll = B::float_neg(B::float_gather(last, logp.clone(), targets));
    (logp, nll)
}

/// The log-softmax over the last dimension from the backend's primitives: what a GPU runs.
pub fn composed_log_probs<B: Backend>(logits: FloatTensor<B>) -> FloatTensor<B> {
    let last = logits.shape().num_dims() - 1;
    B::log_softmax(logits, last)
}

/// Each row's loss from the backend's primitives: what a GPU runs.
pub fn composed<B: FusedBackend>(logits: FloatTensor<B>, targets: IntTensor<B>) -> FloatTensor<B> {
    log_likelihoods::<B>(logits, targets).1
}

/// The masked mean of the backend's rows' losses ([`FusedBackend::nll`]).
pub fn composed_masked<B: FusedBackend>(
    logits: FloatTensor<B>,
    targets: IntTensor<B>,
    mask: FloatTensor<B>,
    divisor: f64,
) -> FloatTensor<B> {
    let nll = B::nll(logits, targets);
    B::float_div_scalar(B::float_sum(B::float_mul(nll, mask)), divisor.into())
}

/// The gradient with respect to the logits of rows whose losses have the gradient `grad`
/// [.., 1]: `(softmax(logits) - onehot(target)) grad`, from the log-probabilities `logp`, from
/// the backend's primitives ([`FusedBackend::nll_backward`]).
pub fn composed_backward<B: Backend>(
    logp: FloatTensor<B>,
    targets: IntTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let last = logp.shape().num_dims() - 1;
    let probs = B::float_mul(B::float_exp(logp), grad.clone());
    B::float_scatter(last, probs, targets, B::float_neg(grad), IndexingUpdateOp::Add)
}

/// The backward step of each row's loss; it keeps the log-probabilities and the targets.
#[derive(Debug)]
struct Nll;

impl<B: FusedBackend> Backward<B, 1> for Nll {
    type State = (FloatTensor<B>, IntTensor<B>);

    fn backward(self, ops: NodeOps<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (logp, targets) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| B::nll_backward(logp, targets, grad));
    }
}

/// The backward step of the masked mean; it keeps the log-probabilities, the targets and the
/// mask.
#[derive(Debug)]
struct MaskedNll {
    divisor: f64,
}

impl<B: FusedBackend> Backward<B, 1> for MaskedNll {
    type State = (FloatTensor<B>, IntTensor<B>, FloatTensor<B>);

    fn backward(self, ops: NodeOps<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (logp, targets, mask) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            let rank = logp.shape().num_dims();
            let g = B::float_reshape(B::float_div_scalar(grad, self.divisor.into()), vec![1; rank].into()); // [1, .., 1]
            B::nll_backward(logp, targets, B::float_mul(mask, g)) // each row's share [.., 1]
        });
    }
}

/// Each row's loss as one node of the autodiff graph.
pub fn tracked<B: FusedBackend, C: CheckpointStrategy>(
    logits: FloatTensor<Autodiff<B, C>>,
    targets: IntTensor<Autodiff<B, C>>,
) -> FloatTensor<Autodiff<B, C>> {
    match Nll.prepare::<C>([logits.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (logp, nll) = log_likelihoods::<B>(logits.into_primitive(), targets.clone());
            prep.finish((logp, targets), nll)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::nll(logits.into_primitive(), targets)),
    }
}

/// The masked mean as one node of the autodiff graph; the mask is a constant.
pub fn tracked_masked<B: FusedBackend, C: CheckpointStrategy>(
    logits: FloatTensor<Autodiff<B, C>>,
    targets: IntTensor<Autodiff<B, C>>,
    mask: FloatTensor<Autodiff<B, C>>,
    divisor: f64,
) -> FloatTensor<Autodiff<B, C>> {
    let mask = mask.into_primitive(); // no gradient flows to it
    match (MaskedNll { divisor }).prepare::<C>([logits.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            // the composed body's operations, in its order, keeping what the backward step needs
            let (logp, nll) = log_likelihoods::<B>(logits.into_primitive(), targets.clone());
            let loss = B::float_div_scalar(B::float_sum(B::float_mul(nll, mask.clone())), divisor.into());
            prep.finish((logp, targets, mask), loss)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::masked_nll(logits.into_primitive(), targets, mask, divisor)),
    }
}

#[cfg(feature = "cpu")]
pub use cpu::{flex_backward, flex_log_probs, flex_nll};

/// The CPU's loops in f32: each row of logits (50,257 of a GPT-2's) read in a few passes of exps
/// that the compiler vectorizes ([`Real::exp`](crate::fast::real::Real::exp)), written in its
/// own place (the logits become the log-probabilities, those the gradient); rows in pieces over
/// the cores. Composed, Burn's log-softmax makes three tensors of the logits' size and calls
/// libm's exp for each number, and the backward pass two more. In f64, the
/// reference's precision, the loss keeps Burn's own operations, so that the reference run's
/// numbers stay its own to the last bit.
#[cfg(feature = "cpu")]
mod cpu {
    use burn::backend::flex::{Flex, FlexTensor};
    use burn::tensor::{DType, TensorData};
    use rayon::prelude::*;

    use crate::fast::contiguous;
    use crate::fast::real::Real;

    /// Running lanes of the max and the sum, which the compiler keeps in vector registers.
    const LANES: usize = 16;

    /// `ln Σ exp(x)` of a row: `max + ln Σ exp(x - max)`; NaN where the row has a NaN. Compiled
    /// for AVX-512, or AVX2 with FMA, where the CPU has them (chosen at run time, as gemm chooses
    /// its kernels: the binary runs on any x86-64), so that 16 or 8 exps run at once.
    fn log_sum_exp<F: Real>(row: &[F]) -> F {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: each runs only where the CPU has its features, checked just before
            if std::arch::is_x86_feature_detected!("avx512f") {
                return unsafe { log_sum_exp_avx512(row) };
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return unsafe { log_sum_exp_avx2(row) };
            }
        }
        log_sum_exp_body(row)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn log_sum_exp_avx512<F: Real>(row: &[F]) -> F {
        log_sum_exp_body(row)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn log_sum_exp_avx2<F: Real>(row: &[F]) -> F {
        log_sum_exp_body(row)
    }

    #[inline(always)]
    fn log_sum_exp_body<F: Real>(row: &[F]) -> F {
        let larger = |m: F, x: F| if x > m { x } else { m };
        let lanes = row.chunks_exact(LANES);
        let tail = lanes.remainder();
        let mut maxes = [F::of(f64::NEG_INFINITY); LANES];
        for chunk in lanes.clone() {
            for l in 0..LANES {
                maxes[l] = larger(maxes[l], chunk[l]);
            }
        }
        let max = tail.iter().chain(&maxes).fold(F::of(f64::NEG_INFINITY), |m, &x| larger(m, x));
        let mut sums = [F::of(0.0); LANES];
        for chunk in lanes {
            for l in 0..LANES {
                sums[l] = sums[l] + (chunk[l] - max).exp();
            }
        }
        let sum = tail.iter().fold(F::of(0.0), |s, &x| s + (x - max).exp());
        max + F::of(sums.iter().fold(sum, |s, &x| s + x).to_f64().ln())
    }

    /// `row = exp(row) g`: a row of log-probabilities made the gradient's, before its target's
    /// `- g`; compiled as [`log_sum_exp`] is.
    fn scaled_probs<F: Real>(row: &mut [F], g: F) {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: each runs only where the CPU has its features, checked just before
            if std::arch::is_x86_feature_detected!("avx512f") {
                return unsafe { scaled_probs_avx512(row, g) };
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return unsafe { scaled_probs_avx2(row, g) };
            }
        }
        scaled_probs_body(row, g)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn scaled_probs_avx512<F: Real>(row: &mut [F], g: F) {
        scaled_probs_body(row, g)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn scaled_probs_avx2<F: Real>(row: &mut [F], g: F) {
        scaled_probs_body(row, g)
    }

    #[inline(always)]
    fn scaled_probs_body<F: Real>(row: &mut [F], g: F) {
        row.iter_mut().for_each(|x| *x = x.exp() * g);
    }

    /// Each row's target, from targets [.., 1] of any integer type.
    fn target_ids(targets: FlexTensor) -> Vec<usize> {
        targets.into_data().iter::<i64>().map(|t| t as usize).collect()
    }

    /// The rows of `tensor` [.., V] (V = `v`), each changed by `change(r, row)`: in place where
    /// no other tensor shares its numbers (the logits, which only the loss reads; the
    /// log-probabilities, which only the backward step reads), else in a copy. A GPT-2's logits
    /// are 200 KB a row: a new tensor of them would be memory the system must hand over page
    /// by page, each step. Rows in pieces over the cores.
    fn changed_rows<F: Real>(tensor: FlexTensor, v: usize, change: impl Fn(usize, &mut [F]) + Sync) -> FlexTensor {
        let mut tensor = contiguous(tensor);
        let n = tensor.layout().shape().num_elements();
        let piece = (1 << 14) / v + 1; // rows a core takes at a time
        tensor.storage_mut::<F>()[..n].par_chunks_mut(piece * v).enumerate().for_each(|(p, rows)| {
            for (r, row) in rows.chunks_exact_mut(v).enumerate() {
                change(p * piece + r, row);
            }
        });
        tensor
    }

    /// V of logits [.., V].
    fn row_len(logits: &FlexTensor) -> usize {
        let shape = logits.layout().shape();
        let v = shape[shape.num_dims() - 1];
        assert!(v > 0, "nll: logits with no token");
        v
    }

    /// The log-probabilities [.., V]: `x - ln Σ exp(x)`, row by row.
    pub fn flex_log_probs(logits: FlexTensor) -> FlexTensor {
        match logits.dtype() {
            DType::F32 => {
                let v = row_len(&logits);
                changed_rows::<f32>(logits, v, |_, row| {
                    let lse = log_sum_exp(row);
                    row.iter_mut().for_each(|x| *x -= lse);
                })
            }
            _ => super::composed_log_probs::<Flex>(logits), // f64: see the module's note
        }
    }

    /// Each row's loss [.., 1], `ln Σ exp(x) - x[target]`, without the log-probabilities.
    pub fn flex_nll(logits: FlexTensor, targets: FlexTensor) -> FlexTensor {
        if logits.dtype() != DType::F32 {
            return super::composed::<Flex>(logits, targets);
        }
        let v = row_len(&logits);
        let (logits, targets) = (contiguous(logits), target_ids(targets));
        let mut shape = logits.layout().shape().clone();
        let last = shape.num_dims() - 1;
        shape[last] = 1;
        let x = logits.storage::<f32>();
        let losses = (0..targets.len()).into_par_iter().map(|r| {
            let row = &x[r * v..][..v];
            log_sum_exp(row) - row[targets[r]]
        });
        FlexTensor::from_data(TensorData::new(losses.collect::<Vec<f32>>(), shape))
    }

    /// The gradient with respect to the logits, `(exp(logp) - onehot(target)) grad`, row by row,
    /// in the log-probabilities' place.
    pub fn flex_backward(logp: FlexTensor, targets: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if logp.dtype() != DType::F32 {
            return super::composed_backward::<Flex>(logp, targets, grad);
        }
        let (targets, grad, v) = (target_ids(targets), contiguous(grad), row_len(&logp));
        let grad = grad.storage::<f32>();
        changed_rows::<f32>(logp, v, |r, row| {
            scaled_probs(row, grad[r]);
            row[targets[r]] -= grad[r];
        })
    }
}

// f64 on the CPU backends, against Burn's own operations on the same device.
#[cfg(all(test, feature = "cpu"))]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::fast::testing::{devices, draw, draw_on, formula, max_diff, same};
    use crate::gpt::ops;
    use crate::gpt::rng::PyRandom;

    /// The log-likelihoods are Burn's `-log_softmax` at the targets, with their gradient, for
    /// rows of logits and for a batch of sequences; a target may repeat.
    #[test]
    fn the_log_likelihoods_are_the_formula() {
        let mut rng = PyRandom::new(9);
        for device in devices() {
            let ad = device.clone().autodiff();
            let targets = Tensor::<2, Int>::from_data(TensorData::new(vec![3i64, 0, 4, 4, 1], [5, 1]), &ad);
            let oracle = |x: Vec<Tensor<2>>| formula(|| ops::nll(x[0].clone(), targets.clone()));
            same(&[draw(&mut rng, [5, 6], &device)], |x| nll(x[0].clone(), targets.clone()), oracle);
            let targets = Tensor::<3, Int>::from_data(TensorData::new(vec![1i64, 2, 0, 2, 2, 1], [2, 3, 1]), &ad);
            let oracle = |x: Vec<Tensor<3>>| formula(|| ops::nll(x[0].clone(), targets.clone()));
            same(&[draw(&mut rng, [2, 3, 3], &device)], |x| nll(x[0].clone(), targets.clone()), oracle);
        }
    }

    /// The masked mean is Burn's `(mask · -log_softmax at the targets)` summed and divided, with
    /// its gradient, for a batch of sequences with padded rows.
    #[test]
    fn the_masked_mean_loss_is_the_formula() {
        let mut rng = PyRandom::new(11);
        for device in devices() {
            let ad = device.clone().autodiff();
            let targets = Tensor::<3, Int>::from_data(TensorData::new(vec![1i64, 2, 0, 2, 2, 1], [2, 3, 1]), &ad);
            let mask = Tensor::<3>::from_data(TensorData::new(vec![1.0f64, 1., 0., 1., 1., 0.], [2, 3, 1]), &ad);
            // 4 rows kept: a divisor f32 holds exactly (see the causal softmax's test)
            let oracle =
                |x: Vec<Tensor<3>>| formula(|| ops::mean_nll(x[0].clone(), targets.clone(), Some((mask.clone(), 4))));
            let ours = |x: Vec<Tensor<3>>| masked_nll(x[0].clone(), targets.clone(), mask.clone(), 4.0);
            same(&[draw(&mut rng, [2, 3, 4], &device)], ours, oracle);
        }
    }

    /// Without autodiff (evaluation) the log-likelihoods are the same numbers.
    #[test]
    fn the_log_likelihoods_run_without_autodiff() {
        let mut rng = PyRandom::new(3);
        for device in devices() {
            let x = draw_on(&mut rng, [4, 6], &device);
            let targets = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 5, 2, 1], [4, 1]), &device);
            assert!(max_diff(nll(x.clone(), targets.clone()), formula(|| ops::nll(x, targets))) < 1e-12);
        }
    }
}
