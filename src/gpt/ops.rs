//! Every operation of the two models, each as its formula in Burn's tensor operations: what the
//! GPT computes, read here and nowhere else.
//!
//! Composed from Burn's operations, each formula is several tensor operations, and under autodiff
//! each of those is a node with a backward step of its own. With `--kernels fused` (the default)
//! the same operation runs instead as one fused kernel of the speed layer ([`crate::fast`]): one
//! autodiff node with its backward pass written out, and on the CPU a loop of its own. The numbers
//! are the same up to rounding (1e-12 in f64, tested); `--kernels burn` runs the formulas below,
//! and the reference run trains to the same losses on either.
//!
//! Shapes: `R` rows, `B` batch, `H` heads, `T` queries, `t_all` keys, `V` vocab.

use burn::nn::Linear;
use burn::tensor::activation::{gelu_approximate, log_softmax, softmax};
use burn::tensor::{Bool, Int, Tensor};

use crate::fast::{self, Kernels};

/// Whether this thread runs the speed layer's fused kernels ([`fast::kernels`]).
fn fused() -> bool {
    fast::kernels() == Kernels::Fused
}

/// A linear layer without bias, as microGPT's `linear()`: `x` [R, in] times `wᵀ`, for `w` stored
/// [out, in] (PyTorch's layout) -> [R, out].
pub fn linear(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    if fused() {
        return fast::matmul::linear(x, w);
    }
    x.matmul(w.transpose())
}

/// GPT-2's linear layer, Burn's `nn::Linear`: `x` [R, in] times `W` stored [in, out] (the layout
/// of OpenAI's `Conv1D`), plus the bias `b` \[out\].
pub fn affine(x: Tensor<2>, layer: &Linear) -> Tensor<2> {
    match &layer.bias {
        // the fused product splits sampling's one-row products over the cores
        Some(b) if fused() => fast::matmul::matmul(x, layer.weight.val()) + b.val().unsqueeze::<2>(),
        _ => layer.forward(x),
    }
}

/// The matrix product over the last two dimensions: [.., M, K] times [.., K, N].
pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
    if fused() {
        return fast::matmul::matmul(lhs, rhs);
    }
    lhs.matmul(rhs)
}

/// rmsnorm, with no gain: `x (mean(x²) + ε)^(-1/2)` over the last dimension (the channels).
pub fn rmsnorm<const D: usize>(x: Tensor<D>, eps: f64) -> Tensor<D> {
    if fused() {
        return fast::rmsnorm::rmsnorm(x, eps);
    }
    let ms = x.clone().square().mean_dim(D - 1); // [.., 1]
    x * (ms + eps).powf_scalar(-0.5)
}

/// Attention's weights from its scores [B, H, T, t_all]: `softmax(scores / divisor)` over the keys
/// each query may see. `future` [1, 1, T, t_all] is true where a key lies in the query's future
/// (none: one query, a sampling step, sees every key).
pub fn causal_softmax(scores: Tensor<4>, future: Option<&Tensor<4, Bool>>, divisor: f64) -> Tensor<4> {
    if let (true, Some(future)) = (fused(), future) {
        return fast::softmax::causal_softmax(scores, future, divisor);
    }
    let scores = scores / divisor;
    match future {
        Some(future) => softmax(scores.mask_fill(future.clone(), f64::NEG_INFINITY), 3),
        None => softmax(scores, 3),
    }
}

/// GPT-2's activation, GELU in its tanh form: `½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if fused() {
        return fast::gelu::gelu(x);
    }
    gelu_approximate(x)
}

/// Each row's loss, `-log softmax(logits)` at its target: logits [.., V], targets [.., 1] ->
/// [.., 1].
pub fn nll<const D: usize>(logits: Tensor<D>, targets: Tensor<D, Int>) -> Tensor<D> {
    if fused() {
        return fast::nll::nll(logits, targets);
    }
    -log_softmax(logits, D - 1).gather(D - 1, targets)
}

/// The mean loss of rows of `logits` [.., V] at their `targets` [.., 1]: over every row, or, with
/// a 0/1 `mask` [.., 1] and the number of rows it keeps, over those rows only.
pub fn mean_nll<const D: usize>(
    logits: Tensor<D>,
    targets: Tensor<D, Int>,
    mask: Option<(Tensor<D>, usize)>,
) -> Tensor<1> {
    match mask {
        None => nll(logits, targets).mean(),
        Some((mask, kept)) if fused() => fast::nll::masked_nll(logits, targets, mask, kept as f64),
        Some((mask, kept)) => (nll(logits, targets) * mask).sum() / kept as f64,
    }
}
