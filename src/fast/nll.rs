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

/// The log-probabilities [.., V] and each row's loss [.., 1]: the operations of the formula (`crate::gpt::ops::nll`), in
/// its order.
fn log_likelihoods<B: Backend>(logits: FloatTensor<B>, targets: IntTensor<B>) -> (FloatTensor<B>, FloatTensor<B>) {
    let last = logits.shape().num_dims() - 1;
    let logp = B::log_softmax(logits, last);
    let nll = B::float_neg(B::float_gather(last, logp.clone(), targets));
    (logp, nll)
}

/// Each row's loss from the backend's primitives: what a GPU runs.
pub fn composed<B: Backend>(logits: FloatTensor<B>, targets: IntTensor<B>) -> FloatTensor<B> {
    log_likelihoods::<B>(logits, targets).1
}

/// The masked mean from the backend's primitives.
pub fn composed_masked<B: Backend>(
    logits: FloatTensor<B>,
    targets: IntTensor<B>,
    mask: FloatTensor<B>,
    divisor: f64,
) -> FloatTensor<B> {
    let nll = composed::<B>(logits, targets);
    B::float_div_scalar(B::float_sum(B::float_mul(nll, mask)), divisor.into())
}

/// The gradient with respect to the logits of rows whose losses have the gradient `grad`
/// [.., 1]: `(softmax(logits) - onehot(target)) grad`, from the log-probabilities `logp`.
fn backward<B: Backend>(logp: FloatTensor<B>, targets: IntTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
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
        unary::<B, _>(ops.parents, ops.node, grads, |grad| backward::<B>(logp, targets, grad));
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
            backward::<B>(logp, targets, B::float_mul(mask, g)) // each row's share [.., 1]
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
