//! The CPU's own versions of the operations that dominate a training step: attention's causal
//! softmax as one operation with its backward pass written out, and the matrix products (and
//! linear layers) written into buffers allocated once.
//!
//! They plug into Burn through its extension API ([`backend_extension`]): each is a [`Backward`]
//! step registered in Burn's autodiff graph, so the gradients around them are still Burn's, and
//! other backends (the GPU) keep Burn's composed operations (`model.rs`). The tests check that
//! both give the same numbers and gradients.
//!
//! - **Causal softmax.** Composed from Burn's operations, the attention weights take seven:
//!   divide the scores by √D, hide the future, then softmax's max, subtract, exp, sum and divide;
//!   under autodiff each has a backward step of its own, exp's computing the exponentials a second
//!   time. Here, for a row of scores `s` of the query at position `p`, with
//!   `a = softmax(s / √D)` over the keys `0..=p`, the forward pass writes `a` (and zeros over the
//!   future keys) in one loop; given the gradient `g` of the loss with respect to `a`, the
//!   backward pass gives the gradient with respect to `s`, `a_j (g_j - Σ_k g_k a_k) / √D` (zero in
//!   the future), in one more.
//! - **Matrix products.** flex 0.22 builds the output of each product by zeroing a byte buffer
//!   and copying it into an aligned one, two passes over memory before gemm writes it; these call
//!   the same gemm into a buffer it fills. Their backward passes (`dA = dY Bᵀ`, `dB = Aᵀ dY`) are
//!   the same products. A linear layer (`Y = X Wᵀ`) computes its weight's gradient as `dYᵀ X`,
//!   in the weight's own layout, rather than as the transpose of `Xᵀ dY`, which a later read
//!   would copy.
//!
//! [`Real`], the float types these loops (and Adam's and the gradients' host loops) run in, is
//! here too.
//!
//! [`backend_extension`]: burn::backend::backend_extension
//! [`Backward`]: burn::backend::autodiff::ops::Backward

use core::ops::{Add, Div, Mul, Sub};

use burn::tensor::Element;

#[cfg(feature = "cpu")]
pub use flex::{Kernels, available, causal_softmax, linear, matmul};

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

/// Without the CPU backend no tensor is on it.
#[cfg(not(feature = "cpu"))]
pub fn available(_: &burn::tensor::Device) -> bool {
    false
}

/// A linear layer, `x` [R, in] times `wᵀ` for `w` [out, in]: Burn's product without the CPU
/// backend.
#[cfg(not(feature = "cpu"))]
pub fn linear(x: burn::tensor::Tensor<2>, w: burn::tensor::Tensor<2>) -> burn::tensor::Tensor<2> {
    x.matmul(w.transpose())
}

/// The matrix product over the last two dimensions, Burn's own without the CPU backend.
#[cfg(not(feature = "cpu"))]
pub fn matmul<const D: usize>(lhs: burn::tensor::Tensor<D>, rhs: burn::tensor::Tensor<D>) -> burn::tensor::Tensor<D> {
    lhs.matmul(rhs)
}

#[cfg(feature = "cpu")]
mod flex {
    use burn::backend::autodiff::Autodiff;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::flex::{Flex, FlexTensor};
    use burn::backend::ops::FloatTensorOps;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Backend, Dispatch, DispatchDevice, backend_extension};
    use burn::tensor::{DType, Device, Tensor, TensorData};
    use rayon::prelude::*;

    use super::Real;

    /// The operations of this module, routed by Burn to the backend a tensor lives on: the CPU
    /// (flex), and autodiff over it. Call them through [`causal_softmax`], [`matmul`] and
    /// [`linear`], which send other backends to Burn's own operations.
    #[backend_extension(Flex, Autodiff)]
    pub trait Kernels: Backend {
        /// Scores [.., T, t_all] -> attention weights: softmax over the last dimension of
        /// `scores / divisor`, where row i (a query at position `t_all - T + i`) sees the keys up to
        /// its own position and gives the later ones weight 0.
        fn causal_softmax(scores: FloatTensor<Self>, divisor: f64) -> FloatTensor<Self>;

        /// `lhs` [.., M, K] times `rhs` [.., K, N] -> [.., M, N], over the same leading dimensions.
        fn matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self>;

        /// A linear layer: `x` [R, in] times the transpose of `w` [out, in] -> [R, out].
        fn linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;
    }

    /// Whether this module's operations run on tensors of `device`: the CPU backend's, with or
    /// without autodiff.
    pub fn available(device: &Device) -> bool {
        matches!(device.clone().inner().as_dispatch(), DispatchDevice::Flex(_))
    }

    /// Attention weights from `scores` [B, H, T, t_all]: `softmax(scores / divisor)` over the keys
    /// each query may see, 0 for the others ([`Kernels::causal_softmax`]). Only where
    /// [`available`].
    pub fn causal_softmax(scores: Tensor<4>, divisor: f64) -> Tensor<4> {
        debug_assert!(available(&scores.device()), "causal_softmax runs on the CPU backend only");
        Tensor::from_dispatch(<Dispatch as Kernels>::causal_softmax(scores.into_dispatch(), divisor))
    }

    /// The matrix product over the last two dimensions ([`Kernels::matmul`]) where
    /// [`available`]: flex's own product, written into a buffer allocated once (flex 0.22 zeroes a
    /// byte buffer and then copies it into an aligned one for each product); Burn's elsewhere.
    pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
        if !available(&lhs.device()) || lhs.dims()[..D - 2] != rhs.dims()[..D - 2] {
            return lhs.matmul(rhs); // Burn's broadcasting: its backward sums over the copies
        }
        Tensor::from_dispatch(<Dispatch as Kernels>::matmul(lhs.into_dispatch(), rhs.into_dispatch()))
    }

    /// A linear layer, `x` [R, in] times `wᵀ` for `w` [out, in] ([`Kernels::linear`]), where
    /// [`available`]: [`matmul`]'s product, with the gradient of `w` computed in `w`'s own layout
    /// (as `dYᵀ x`, not as the transpose of `xᵀ dY`); Burn's elsewhere.
    pub fn linear(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
        if !available(&x.device()) {
            return x.matmul(w.transpose());
        }
        Tensor::from_dispatch(<Dispatch as Kernels>::linear(x.into_dispatch(), w.into_dispatch()))
    }

    /// Rows per piece of work a core takes: a few thousand numbers, so that the small tensors of the
    /// reference run stay on one core.
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
    fn softmax_forward<F: Real>(scores: &[F], out: &mut [F], t: usize, t_all: usize, divisor: f64) {
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

    /// The backward loop: from the weights `att` and the gradient `grad` with respect to them, the
    /// gradient with respect to the scores, into `out`.
    fn softmax_backward<F: Real>(att: &[F], grad: &[F], out: &mut [F], t: usize, t_all: usize, divisor: f64) {
        let divisor = F::of(divisor);
        each_row(out, t, t_all, |r, seen, out| {
            let (a, g) = (&att[r * t_all..][..seen], &grad[r * t_all..][..seen]);
            let dot = a.iter().zip(g).fold(F::of(0.0), |dot, (&a, &g)| dot + a * g);
            for ((o, &a), &g) in out.iter_mut().zip(a).zip(g) {
                *o = a * (g - dot) / divisor;
            }
        });
    }

    /// `tensor`, or a contiguous copy of it when its numbers are not one dense run.
    fn contiguous(tensor: FlexTensor) -> FlexTensor {
        if tensor.is_contiguous() && tensor.layout().start_offset() == 0 { tensor } else { tensor.to_contiguous() }
    }

    /// A new tensor of `shape_of`'s shape from `fill`, which writes every number of a zeroed buffer.
    fn map_new<F: Real>(shape_of: &FlexTensor, fill: impl FnOnce(&mut [F])) -> FlexTensor {
        let shape = shape_of.layout().shape().clone();
        let mut out = vec![F::of(0.0); shape.num_elements()];
        fill(&mut out);
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    /// Work (M·N·K multiply-adds) from which one product is split over every core, and from which
    /// a batch of products is spread over the cores a product each (flex's values; unlike flex,
    /// a batch of products that are each over the first is multiplied one after another).
    const PARALLEL_PRODUCT: usize = 192 * 192 * 192;
    const PARALLEL_BATCH: usize = 128 * 128 * 128;

    /// Where each matrix of a batch starts in its tensor's storage: the leading dimensions
    /// (`batch_dims`) unravelled over the tensor's strides.
    fn matrix_offsets(tensor: &FlexTensor, batch_dims: &[usize]) -> Vec<isize> {
        let (strides, start) = (tensor.layout().strides(), tensor.layout().start_offset() as isize);
        let mut offsets = vec![start];
        for (&dim, &stride) in batch_dims.iter().zip(strides) {
            offsets = offsets.iter().flat_map(|&o| (0..dim as isize).map(move |i| o + i * stride)).collect();
        }
        offsets
    }

    /// The output buffer of a product, shared by the cores that each write their own matrices.
    #[derive(Clone, Copy)]
    struct SendPtr<F>(*mut F);

    // SAFETY: the cores write disjoint matrices through it ([`product`]).
    unsafe impl<F> Send for SendPtr<F> {}
    unsafe impl<F> Sync for SendPtr<F> {}

    impl<F> SendPtr<F> {
        /// The pointer `offset` numbers in.
        ///
        /// # Safety
        /// `offset` lies within the buffer's capacity.
        unsafe fn at(self, offset: usize) -> *mut F {
            // SAFETY: as the caller promises
            unsafe { self.0.add(offset) }
        }
    }

    /// Whether `lhs` [.., M, K] and `rhs` [.., K, N] have the same leading dimensions (no
    /// broadcasting) and matching inner ones.
    fn same_batch(lhs: &FlexTensor, rhs: &FlexTensor) -> bool {
        let (ls, rs) = (lhs.layout().shape(), rhs.layout().shape());
        let rank = ls.num_dims();
        rank >= 2 && rs.num_dims() == rank && ls[..rank - 2] == rs[..rank - 2] && ls[rank - 1] == rs[rank - 2]
    }

    /// `lhs` [.., M, K] times `rhs` [.., K, N], read through their strides (a transposed view is
    /// not copied); `None` where the leading dimensions differ (broadcasting), left to flex.
    fn product<F: Real>(lhs: &FlexTensor, rhs: &FlexTensor) -> Option<FlexTensor> {
        if !same_batch(lhs, rhs) {
            return None;
        }
        let (ls, rs) = (lhs.layout().shape().to_vec(), rhs.layout().shape().to_vec());
        let rank = ls.len();
        let (m, k, n) = (ls[rank - 2], ls[rank - 1], rs[rank - 1]);
        let batch_dims = &ls[..rank - 2];
        let (lo, ro) = (matrix_offsets(lhs, batch_dims), matrix_offsets(rhs, batch_dims));
        let (l, r) = (lhs.storage::<F>(), rhs.storage::<F>());
        let ([.., l_rs, l_cs], [.., r_rs, r_cs]) = (lhs.layout().strides(), rhs.layout().strides()) else {
            unreachable!("rank checked above")
        };
        let (l_rs, l_cs, r_rs, r_cs) = (*l_rs, *l_cs, *r_rs, *r_cs);
        let mut out_shape = batch_dims.to_vec();
        out_shape.extend([m, n]);
        let len = lo.len() * m * n;
        if k == 0 {
            return Some(FlexTensor::from_data(TensorData::new(vec![F::of(0.0); len], out_shape)));
        }
        // not zeroed first: with `read_dst` false gemm writes every number of the product without
        // reading it (checked in gemm-common 0.19.0, which Cargo.toml pins), and zeroing was a
        // pass over memory as long as the one that fills it
        let mut out: Vec<F> = Vec::with_capacity(len);
        let dst = SendPtr(out.as_mut_ptr());
        let one = |b: usize, parallelism| {
            // SAFETY: the offsets and strides are the tensors' own, so every number gemm reads lies
            // in their storage; matrix b of the output is the b-th [M, N] run of `out`'s capacity,
            // which gemm writes in full and no other call touches.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    dst.at(b * m * n),
                    1,
                    n as isize,
                    false,
                    l.as_ptr().offset(lo[b]),
                    l_cs,
                    l_rs,
                    r.as_ptr().offset(ro[b]),
                    r_cs,
                    r_rs,
                    F::of(0.0),
                    F::of(1.0),
                    false,
                    false,
                    false,
                    parallelism,
                )
            }
        };
        let work = m * n * k;
        if work >= PARALLEL_PRODUCT || lo.len() == 1 || work * lo.len() < PARALLEL_BATCH {
            let parallelism =
                if work >= PARALLEL_PRODUCT { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
            (0..lo.len()).for_each(|b| one(b, parallelism));
        } else {
            (0..lo.len()).into_par_iter().for_each(|b| one(b, gemm::Parallelism::None));
        }
        // SAFETY: every matrix of the batch was written above
        unsafe { out.set_len(len) };
        Some(FlexTensor::from_data(TensorData::new(out, out_shape)))
    }

    impl Kernels for Flex {
        fn matmul(lhs: FlexTensor, rhs: FlexTensor) -> FlexTensor {
            let product = match lhs.dtype() {
                DType::F32 => product::<f32>(&lhs, &rhs),
                DType::F64 => product::<f64>(&lhs, &rhs),
                _ => None,
            };
            product.unwrap_or_else(|| Flex::float_matmul(lhs, rhs))
        }

        fn linear(x: FlexTensor, w: FlexTensor) -> FlexTensor {
            Flex::matmul(x, w.transpose(0, 1))
        }

        fn causal_softmax(scores: FlexTensor, divisor: f64) -> FlexTensor {
            let scores = contiguous(scores);
            let (t, t_all) = rows_of(&scores);
            match scores.dtype() {
                DType::F32 => map_new::<f32>(&scores, |o| softmax_forward(scores.storage(), o, t, t_all, divisor)),
                DType::F64 => map_new::<f64>(&scores, |o| softmax_forward(scores.storage(), o, t, t_all, divisor)),
                dtype => panic!("causal_softmax: {dtype:?} is not f32 or f64"),
            }
        }
    }

    /// The gradient with respect to the scores, from the weights and the gradient with respect to
    /// them (both [.., T, t_all]).
    fn causal_softmax_backward(att: FlexTensor, grad: FlexTensor, divisor: f64) -> FlexTensor {
        let (att, grad) = (contiguous(att), contiguous(grad));
        let (t, t_all) = rows_of(&att);
        match att.dtype() {
            DType::F32 => {
                map_new::<f32>(&att, |o| softmax_backward(att.storage(), grad.storage(), o, t, t_all, divisor))
            }
            DType::F64 => {
                map_new::<f64>(&att, |o| softmax_backward(att.storage(), grad.storage(), o, t, t_all, divisor))
            }
            dtype => panic!("causal_softmax: {dtype:?} is not f32 or f64"),
        }
    }

    /// The backward step of [`Kernels::causal_softmax`] in Burn's autodiff graph; it keeps the
    /// forward pass's output, the weights.
    #[derive(Debug)]
    struct CausalSoftmax {
        divisor: f64,
    }

    impl Backward<Flex, 1> for CausalSoftmax {
        type State = FlexTensor;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [parent] = ops.parents;
            let grad = grads.consume::<Flex>(&ops.node);
            if let Some(parent) = parent {
                grads.register::<Flex>(parent.id, causal_softmax_backward(ops.state, grad, self.divisor));
            }
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
        fn tracked<C: CheckpointStrategy>(
            self,
            lhs: FloatTensor<Autodiff<Flex, C>>,
            rhs: FloatTensor<Autodiff<Flex, C>>,
        ) -> FloatTensor<Autodiff<Flex, C>> {
            let transposed = self.transposed;
            let forward = |lhs, rhs| if transposed { Flex::linear(lhs, rhs) } else { Flex::matmul(lhs, rhs) };
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

    impl Backward<Flex, 2> for Product {
        type State = (FlexTensor, FlexTensor);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [lhs_parent, rhs_parent] = ops.parents;
            let grad = grads.consume::<Flex>(&ops.node);
            let (lhs, rhs) = ops.state;
            let rank = grad.layout().num_dims();
            let t = |x: FlexTensor| x.transpose(rank - 2, rank - 1);
            if let Some(parent) = lhs_parent {
                let rhs_t = if self.transposed { rhs } else { t(rhs) };
                grads.register::<Flex>(parent.id, Flex::matmul(grad.clone(), rhs_t));
            }
            if let Some(parent) = rhs_parent {
                let grad_rhs = if self.transposed { Flex::matmul(t(grad), lhs) } else { Flex::matmul(t(lhs), grad) };
                grads.register::<Flex>(parent.id, grad_rhs);
            }
        }
    }

    impl<C: CheckpointStrategy> Kernels for Autodiff<Flex, C> {
        fn linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
            Product { transposed: true }.tracked::<C>(x, w)
        }

        fn matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
            // the backward step gives gradients of the factors' own shapes only without broadcasting
            assert!(same_batch(lhs.primitive(), rhs.primitive()), "kernels::matmul leaves broadcasting to Burn");
            Product { transposed: false }.tracked::<C>(lhs, rhs)
        }

        fn causal_softmax(scores: FloatTensor<Self>, divisor: f64) -> FloatTensor<Self> {
            let step = CausalSoftmax { divisor };
            match step.prepare::<C>([scores.node()]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let att = Flex::causal_softmax(scores.into_primitive(), divisor);
                    prep.finish(att.clone(), att)
                }
                OpsKind::UnTracked(prep) => prep.finish(Flex::causal_softmax(scores.into_primitive(), divisor)),
            }
        }
    }
}

// f64 on the flex CPU backend, against Burn's own operations on the same device.
#[cfg(all(test, feature = "cpu"))]
mod tests {
    use burn::tensor::activation::softmax;
    use burn::tensor::{Bool, Device, Tensor, TensorData};

    use super::*;
    use crate::device::{self, read_values};
    use crate::rng::PyRandom;

    /// A tensor of N(0, 1) draws that gradients are taken with respect to.
    fn draw<const D: usize>(rng: &mut PyRandom, dims: [usize; D]) -> Tensor<D> {
        draw_on(rng, dims, &device::cpu_f64().autodiff()).require_grad()
    }

    /// A tensor of N(0, 1) draws on `device`.
    fn draw_on<const D: usize>(rng: &mut PyRandom, dims: [usize; D], device: &Device) -> Tensor<D> {
        let values: Vec<f64> = (0..dims.iter().product()).map(|_| rng.gauss(0.0, 1.0)).collect();
        Tensor::<D>::from_data(TensorData::new(values, dims), device)
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
        let weights = draw(rng, out.dims()).detach();
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
        for (t, t_all) in [(5, 5), (3, 7), (1, 4)] {
            let scores = draw(&mut rng, [2, 3, t, t_all]);
            let burns = |x: Vec<Tensor<4>>| {
                let first = t_all - t;
                let future: Vec<bool> = (0..t).flat_map(|i| (0..t_all).map(move |j| j > first + i)).collect();
                let future = Tensor::<4, Bool>::from_data(TensorData::new(future, [1, 1, t, t_all]), &x[0].device());
                softmax((x[0].clone() / 2.0).mask_fill(future, f64::NEG_INFINITY), 3)
            };
            same(&[scores], |x| causal_softmax(x[0].clone(), 2.0), burns);
        }
    }

    /// The product is Burn's for plain and transposed (strided) factors, over a batch and as one
    /// matrix, with both gradients; and a broadcast batch, which it leaves to flex, still is.
    #[test]
    fn the_matrix_products_are_burns() {
        let mut rng = PyRandom::new(1);
        let (a, b) = (draw(&mut rng, [2, 3, 4, 5]), draw(&mut rng, [2, 3, 6, 5]));
        same(
            &[a, b],
            |x| matmul(x[0].clone(), x[1].clone().swap_dims(2, 3)),
            |x| x[0].clone().matmul(x[1].clone().swap_dims(2, 3)),
        );
        let (a, b) = (draw(&mut rng, [2, 3, 4, 5]), draw(&mut rng, [1, 3, 5, 2]));
        same(&[a, b], |x| matmul(x[0].clone(), x[1].clone()), |x| x[0].clone().matmul(x[1].clone()));
        let (x, w) = (draw(&mut rng, [7, 5]), draw(&mut rng, [3, 5]));
        same(&[x, w], |x| linear(x[0].clone(), x[1].clone()), |x| x[0].clone().matmul(x[1].clone().transpose()));
        // large enough for gemm to split one product over the cores
        let (x, w) = (draw(&mut rng, [300, 200]), draw(&mut rng, [150, 200]));
        same(&[x, w], |x| linear(x[0].clone(), x[1].clone()), |x| x[0].clone().matmul(x[1].clone().transpose()));
    }

    /// Without autodiff (evaluation, sampling) the operations give the same numbers.
    #[test]
    fn the_operations_run_without_autodiff() {
        let mut rng = PyRandom::new(3);
        let device = device::cpu_f64();
        let (x, w) = (draw_on(&mut rng, [4, 6], &device), draw_on(&mut rng, [5, 6], &device));
        assert!(!x.device().is_autodiff());
        assert!(max_diff(linear(x.clone(), w.clone()), x.matmul(w.transpose())) < 1e-12);
        let scores = draw_on(&mut rng, [1, 2, 3, 3], &device);
        let weights = causal_softmax(scores, 1.0);
        let rows = read_values(weights.sum_dim(3)).unwrap();
        assert!(rows.iter().all(|s| (s - 1.0).abs() < 1e-12), "{rows:?}");
    }
}
