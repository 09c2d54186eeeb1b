//! The speed layer: the fused kernels of the models' operations, the CPU's loops, and a training
//! step's batch split over the CPU's cores. Nothing here changes what is computed (the formulas are
//! `crate::gpt::ops`'); everything here makes it faster. May import the GPT (`crate::gpt`) and the
//! backends (`crate::device`); nothing of the program.
//!
//! - [`softmax`]: attention's causal softmax, `softmax(scores / √D)` over the keys a query sees;
//! - [`matmul`]: matrix products and linear layers (`y = x Wᵀ`, W stored [out, in]);
//! - `matvec`: on the CPU, the products of a few rows (a sampled token's), at the memory's speed,
//!   from weights in f32 or in bf16;
//! - [`rmsnorm`]: `x (mean(x²) + ε)^(-1/2)` over the channels, with no gain;
//! - [`gelu`]: GPT-2's activation, GELU in its tanh form;
//! - [`nll`]: the loss's `-log softmax(logits)` at each row's target, and its masked mean;
//! - [`cores`]: a step's batch in one part per CPU core, side by side, and the parts' gradients
//!   added and clipped on the host;
//! - [`adam`]: Adam's update in one pass over each parameter's numbers;
//! - [`real`]: what the host loops share (f32 or f64, the piece a core works on).
//!
//! Which operations a model runs is chosen once, when the program opens its device
//! ([`use_kernels`], `--kernels`): Burn's composed formulas, or these kernels (the default).
//!
//! A formula composed from Burn's tensor operations is several operations, and under autodiff
//! each of those has a backward step of its own: on a GPU every one is bookkeeping on the host and,
//! unless Burn fuses it, a kernel launch; on the CPU a pass over memory. Here each is one node of
//! Burn's autodiff graph, with its backward pass written out (rmsnorm on the CPU excepted: see
//! [`rmsnorm::rmsnorm`]). Each file's public function (`softmax::causal_softmax`, ...) hands the
//! tensors to [`FusedBackend`], Burn's extension trait, which routes them to the backend they live
//! on; there every backend gets the trait's default bodies (the file's `composed`: its own
//! primitives, which a GPU fuses), the CPU backend (flex) overrides the softmax and the products
//! with loops of its own, and under autodiff each is one `Backward` step (the file's `tracked`), so
//! the gradients around them stay Burn's. The forward passes are Burn's operations in Burn's
//! order; the backward passes are written out, so the kernels and the formulas agree up to
//! rounding (1e-12 in f64, tested).
//! Shapes: `B` batch, `H` heads, `T` queries, `t_all` keys, `R` rows, `V` vocab.

use std::cell::Cell;

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::{BoolTensor, FloatTensor, IntTensor};

pub mod adam;
pub mod cores;
pub mod gelu;
pub mod matmul;
#[cfg(feature = "cpu")]
pub mod matvec;
pub mod nll;
pub mod real;
pub mod rmsnorm;
pub mod softmax;

/// Which operations the models run on: the speed layer's fused kernels ([`Kernels::Fused`], the
/// default) or Burn's composed formulas ([`Kernels::Burn`], `crate::gpt::ops`). The same numbers
/// up to rounding; the kernels are faster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Kernels {
    /// One autodiff node per operation, with its backward pass written out; the CPU's own loops.
    #[default]
    #[value(alias = "ours")]
    Fused,
    /// Burn's tensor operations only, as a tutorial would write them.
    Burn,
}

thread_local! {
    static KERNELS: Cell<Kernels> = const { Cell::new(Kernels::Fused) };
}

/// Run the models' operations on `kernels` from now on, on this thread (and on the parts a step
/// splits over the cores, [`cores`]): chosen once, when the program opens its device.
pub fn use_kernels(kernels: Kernels) {
    KERNELS.with(|k| k.set(kernels));
}

/// The operations this thread's models run on.
pub fn kernels() -> Kernels {
    KERNELS.with(Cell::get)
}

/// `f` with the models' operations on `kernels`, then back to this thread's choice.
pub fn with_kernels<T>(kernels: Kernels, f: impl FnOnce() -> T) -> T {
    let before = self::kernels();
    use_kernels(kernels);
    let out = f();
    use_kernels(before);
    out
}

pub use extension::FusedBackend;

/// The trait and the routing Burn generates for it, which names Burn's deprecated ndarray
/// backend (kept for comparison) where it is built.
mod extension {
    #![allow(deprecated)]

    use burn::backend::backend_extension;
    use burn::backend::tensor::{BoolTensor, FloatTensor, IntTensor};

    use super::{gelu, nll, rmsnorm, softmax};

    /// The operations of this module, routed by Burn to the backend a tensor lives on; the
    /// models call them through `crate::gpt::ops`. Each default body is the operation composed from the
    /// backend's own primitives, written in the operation's file.
    #[backend_extension(
        Flex: cfg(feature = "cpu"),
        Cube: cfg(any(feature = "gpu", feature = "cuda")),
        NdArray: cfg(feature = "ndarray"),
        Autodiff
    )]
    pub trait FusedBackend: burn::backend::Backend {
        /// [`softmax::composed`].
        fn causal_softmax(scores: FloatTensor<Self>, future: BoolTensor<Self>, divisor: f64) -> FloatTensor<Self> {
            softmax::composed::<Self>(scores, future, divisor)
        }

        /// [`softmax::composed_backward`].
        fn causal_softmax_backward(att: FloatTensor<Self>, grad: FloatTensor<Self>, divisor: f64) -> FloatTensor<Self> {
            softmax::composed_backward::<Self>(att, grad, divisor)
        }

        /// `lhs` [.., M, K] times `rhs` [.., K, N] -> [.., M, N], over the same leading dimensions.
        fn matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
            Self::float_matmul(lhs, rhs)
        }

        /// A linear layer: `x` [R, in] times the transpose of `w` [out, in] -> [R, out].
        fn linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
            Self::float_matmul(x, Self::float_transpose(w))
        }

        /// [`rmsnorm::composed`].
        fn rmsnorm(x: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
            rmsnorm::composed::<Self>(x, eps)
        }

        /// [`gelu::composed`].
        fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
            gelu::composed::<Self>(x)
        }

        /// [`gelu::composed_backward`].
        fn gelu_tanh_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
            gelu::composed_backward::<Self>(x, grad)
        }

        /// [`nll::composed_log_probs`].
        fn log_probs(logits: FloatTensor<Self>) -> FloatTensor<Self> {
            nll::composed_log_probs::<Self>(logits)
        }

        /// [`nll::composed_backward`].
        fn nll_backward(
            logp: FloatTensor<Self>,
            targets: IntTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            nll::composed_backward::<Self>(logp, targets, grad)
        }

        /// [`nll::composed`].
        fn nll(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
            nll::composed::<Self>(logits, targets)
        }

        /// [`nll::composed_masked`].
        fn masked_nll(
            logits: FloatTensor<Self>,
            targets: IntTensor<Self>,
            mask: FloatTensor<Self>,
            divisor: f64,
        ) -> FloatTensor<Self> {
            nll::composed_masked::<Self>(logits, targets, mask, divisor)
        }
    }
}

/// Under autodiff, each operation is one node of Burn's graph with its backward step.
impl<B: FusedBackend, C: CheckpointStrategy> FusedBackend for Autodiff<B, C> {
    fn causal_softmax(scores: FloatTensor<Self>, future: BoolTensor<Self>, divisor: f64) -> FloatTensor<Self> {
        softmax::tracked::<B, C>(scores, future, divisor)
    }

    fn matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        matmul::tracked::<B, C>(lhs, rhs, false)
    }

    fn linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        matmul::tracked::<B, C>(x, w, true)
    }

    fn rmsnorm(x: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        rmsnorm::tracked::<B, C>(x, eps)
    }

    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu::tracked::<B, C>(x)
    }

    fn nll(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        nll::tracked::<B, C>(logits, targets)
    }

    fn masked_nll(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        mask: FloatTensor<Self>,
        divisor: f64,
    ) -> FloatTensor<Self> {
        nll::tracked_masked::<B, C>(logits, targets, mask, divisor)
    }
}

/// The CPU backend: its own loops for the softmax, the products, GELU and the loss.
#[cfg(feature = "cpu")]
impl FusedBackend for burn::backend::flex::Flex {
    fn causal_softmax(scores: FloatTensor<Self>, _future: BoolTensor<Self>, divisor: f64) -> FloatTensor<Self> {
        softmax::flex_forward(scores, divisor) // each row's query position says which keys it sees
    }

    fn causal_softmax_backward(att: FloatTensor<Self>, grad: FloatTensor<Self>, divisor: f64) -> FloatTensor<Self> {
        softmax::flex_backward(att, grad, divisor)
    }

    fn matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        matmul::flex_matmul(lhs, rhs)
    }

    fn linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        matmul::flex_matmul(x, w.transpose(0, 1))
    }

    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu::flex_forward(x)
    }

    fn gelu_tanh_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu::flex_backward(x, grad)
    }

    fn log_probs(logits: FloatTensor<Self>) -> FloatTensor<Self> {
        nll::flex_log_probs(logits)
    }

    fn nll_backward(logp: FloatTensor<Self>, targets: IntTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        nll::flex_backward(logp, targets, grad)
    }

    fn nll(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        nll::flex_nll(logits, targets) // without the log-probabilities: evaluation's
    }
}

#[cfg(any(feature = "gpu", feature = "cuda"))]
impl FusedBackend for burn::backend::Cube {}

#[cfg(feature = "ndarray")]
#[allow(deprecated)] // Burn's ndarray backend, kept for comparison
impl FusedBackend for burn::backend::NdArray {}

/// A CPU tensor, or a contiguous copy of it when its numbers are not one dense run: what the CPU
/// loops of the softmax and GELU read.
#[cfg(feature = "cpu")]
fn contiguous(tensor: burn::backend::flex::FlexTensor) -> burn::backend::flex::FlexTensor {
    if tensor.is_contiguous() && tensor.layout().start_offset() == 0 { tensor } else { tensor.to_contiguous() }
}

/// Whether `device` is the CPU backend's (flex), with or without autodiff.
fn on_flex(device: &burn::tensor::Device) -> bool {
    #[cfg(feature = "cpu")]
    return matches!(device.clone().inner().as_dispatch(), burn::backend::DispatchDevice::Flex(_));
    #[cfg(not(feature = "cpu"))]
    return {
        let _ = device; // no CPU backend in this build
        false
    };
}

/// What the operations' tests share: f64 devices, random inputs, and the check that our version
/// of an operation gives Burn's outputs and gradients.
#[cfg(all(test, feature = "cpu"))]
pub(crate) mod testing {
    use burn::tensor::{Device, Tensor, TensorData};

    use crate::device::{self, DeviceArg, Precision, read_values};
    use crate::gpt::rng::PyRandom;

    /// The f64 devices the operations are checked on: flex's own loops, and the default bodies
    /// (what a GPU runs) on ndarray where it is built.
    pub fn devices() -> Vec<Device> {
        let mut devices = vec![device::cpu_f64()];
        if cfg!(feature = "ndarray") {
            devices.push(device::open(Some(DeviceArg::Ndarray), Some(Precision::F64)).unwrap().device);
        }
        devices
    }

    /// A tensor of N(0, 1) draws on `device`, under autodiff, that gradients are taken with
    /// respect to.
    pub fn draw<const D: usize>(rng: &mut PyRandom, dims: [usize; D], device: &Device) -> Tensor<D> {
        draw_on(rng, dims, &device.clone().autodiff()).require_grad()
    }

    /// A tensor of N(0, 1) draws on `device`.
    pub fn draw_on<const D: usize>(rng: &mut PyRandom, dims: [usize; D], device: &Device) -> Tensor<D> {
        let values: Vec<f64> = (0..dims.iter().product()).map(|_| rng.gauss(0.0, 1.0)).collect();
        Tensor::<D>::from_data(TensorData::new(values, dims), device)
    }

    /// The largest difference between two tensors' numbers, which must have the same shape.
    pub fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f64 {
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

    /// `f` on Burn's composed formulas (`crate::gpt::ops` under [`Kernels::Burn`]): the oracle
    /// each kernel is held against.
    pub fn formula<T>(f: impl FnOnce() -> T) -> T {
        super::with_kernels(super::Kernels::Burn, f)
    }

    /// Both versions of an operation on the same inputs: outputs and gradients within 1e-12.
    pub fn same<const D: usize, const E: usize>(
        inputs: &[Tensor<D>],
        ours: impl Fn(Vec<Tensor<D>>) -> Tensor<E>,
        formula: impl Fn(Vec<Tensor<D>>) -> Tensor<E>,
    ) {
        let (ours, our_grads) = with_grads(&mut PyRandom::new(7), inputs, ours);
        let (formula, formula_grads) = with_grads(&mut PyRandom::new(7), inputs, formula);
        let diff = max_diff(ours, formula);
        assert!(diff < 1e-12, "outputs differ by {diff}");
        for (i, (ours, formula)) in our_grads.into_iter().zip(formula_grads).enumerate() {
            let diff = max_diff(ours, formula);
            assert!(diff < 1e-12, "gradients of input {i} differ by {diff}");
        }
    }
}
