//! Matrix products and linear layers. `Y = A B` over the last two dimensions: backward,
//! `dA = dY Bᵀ` and `dB = Aᵀ dY`. A linear layer `Y = X Wᵀ` (W stored [out, in]): `dX = dY W`,
//! and the weight's gradient as `dYᵀ X`, in the weight's own layout, rather than as the
//! transpose of `Xᵀ dY`, which a later read would copy. On the CPU the products are written by
//! gemm straight into buffers of their own (flex 0.22 zeroes a byte buffer and copies it into an
//! aligned one before each product).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops as NodeOps, OpsKind, binary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Dispatch, TensorMetadata};
use burn::tensor::Tensor;

use super::FusedBackend;

/// The matrix product over the last two dimensions ([`FusedBackend::matmul`]); where the leading
/// dimensions differ (broadcasting), Burn's, whose backward pass sums over the copies.
pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
    if lhs.dims()[..D - 2] != rhs.dims()[..D - 2] {
        return lhs.matmul(rhs);
    }
    Tensor::from_dispatch(<Dispatch as FusedBackend>::matmul(lhs.into_dispatch(), rhs.into_dispatch()))
}

/// A linear layer, `x` [R, in] times `wᵀ` for `w` [out, in] ([`FusedBackend::linear`]).
pub fn linear(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FusedBackend>::linear(x.into_dispatch(), w.into_dispatch()))
}

/// The backward step of a product; it keeps both factors as they were given.
#[derive(Debug)]
struct Product {
    /// Whether the right factor enters transposed: a linear layer's weight.
    transposed: bool,
}

impl<B: FusedBackend> Backward<B, 2> for Product {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: NodeOps<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
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

/// `lhs` times `rhs` (or `rhsᵀ`, a linear layer) as one node of the autodiff graph. The backward
/// step gives gradients of the factors' own shapes: no broadcasting.
pub fn tracked<B: FusedBackend, C: CheckpointStrategy>(
    lhs: FloatTensor<Autodiff<B, C>>,
    rhs: FloatTensor<Autodiff<B, C>>,
    transposed: bool,
) -> FloatTensor<Autodiff<B, C>> {
    let (ls, rs) = (lhs.shape(), rhs.shape());
    let rank = ls.num_dims();
    assert!(ls[..rank - 2] == rs[..rank - 2], "ops::matmul leaves broadcasting to Burn");
    let forward = |lhs, rhs| if transposed { <B as FusedBackend>::linear(lhs, rhs) } else { B::matmul(lhs, rhs) };
    match (Product { transposed }).prepare::<C>([lhs.node(), rhs.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (lhs, rhs) = (lhs.into_primitive(), rhs.into_primitive());
            let y = forward(lhs.clone(), rhs.clone());
            prep.finish((lhs, rhs), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(lhs.into_primitive(), rhs.into_primitive())),
    }
}

#[cfg(feature = "cpu")]
pub use cpu::flex_matmul;

/// The CPU's products: gemm, reading the factors through their strides (a transposed view is
/// not copied) and writing each product straight into its buffer.
#[cfg(feature = "cpu")]
mod cpu {
    use burn::backend::flex::{Flex, FlexTensor};
    use burn::backend::ops::FloatTensorOps;
    use burn::tensor::{DType, TensorData, bf16};
    use rayon::prelude::*;

    use crate::fast::matvec::{self, Weight};
    use crate::fast::real::Real;

    /// `lhs` [.., M, K] times `rhs` [.., K, N] on flex; a broadcast batch is left to flex. A
    /// right factor held in bf16 (`--dtype bf16`, f32 rows) is read as it is for a few rows, and
    /// widened to f32 for gemm.
    pub fn flex_matmul(lhs: FlexTensor, rhs: FlexTensor) -> FlexTensor {
        let product = match (lhs.dtype(), rhs.dtype()) {
            (DType::F32, DType::F32) => few_rows::<f32, f32>(&lhs, &rhs).or_else(|| product::<f32>(&lhs, &rhs)),
            (DType::F64, DType::F64) => few_rows::<f64, f64>(&lhs, &rhs).or_else(|| product::<f64>(&lhs, &rhs)),
            (DType::F32, DType::BF16) if rhs.layout().num_dims() == 2 => {
                few_rows::<f32, bf16>(&lhs, &rhs).or_else(|| Some(widened_product(&lhs, &rhs)))
            }
            _ => None,
        };
        product.unwrap_or_else(|| Flex::float_matmul(lhs, rhs))
    }

    /// Columns of a bf16 matrix widened to f32 at a time for gemm: 12 MB of f32 for GPT-2's
    /// `wte` used transposed, where widening it whole would hold 154 MB beside its bf16.
    const WIDENED_COLUMNS: usize = 4096;

    /// `lhs` [M, K] (f32) times the bf16 matrix `rhs` [K, N], by gemm on [`WIDENED_COLUMNS`]
    /// columns of `rhs` at a time, each widened to f32 for its product.
    fn widened_product(lhs: &FlexTensor, rhs: &FlexTensor) -> FlexTensor {
        let n = rhs.layout().shape()[1];
        let blocks: Vec<FlexTensor> = (0..n.div_ceil(WIDENED_COLUMNS))
            .map(|b| {
                let (from, width) = (b * WIDENED_COLUMNS, WIDENED_COLUMNS.min(n - b * WIDENED_COLUMNS));
                let block = matvec::widened(&rhs.narrow(1, from, width));
                product::<f32>(lhs, &block).unwrap_or_else(|| Flex::float_matmul(lhs.clone(), block))
            })
            .collect();
        if blocks.len() == 1 { blocks.into_iter().next().expect("one block") } else { Flex::float_cat(blocks, 1) }
    }

    /// Work (M·N·K multiply-adds) from which one product is split over every core, and from which
    /// a batch of products is spread over the cores a product each (flex's values; unlike flex,
    /// a batch of products that are each over the first is multiplied one after another).
    const PARALLEL_PRODUCT: usize = 192 * 192 * 192;
    const PARALLEL_BATCH: usize = 128 * 128 * 128;
    /// A product of at most this many rows (sampling's one) whose right factor has at least
    /// `FEW_ROWS_FROM` numbers is [`matvec::few_rows`]'.
    const FEW_ROWS: usize = 4;
    const FEW_ROWS_FROM: usize = 1 << 16;

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

    /// `lhs` [.., M, K] times `rhs` [.., K, N] for one matrix of at most [`FEW_ROWS`] rows
    /// against a large one ([`matvec::few_rows`]); `None` for any other product.
    fn few_rows<F: Real, W: Weight<F>>(lhs: &FlexTensor, rhs: &FlexTensor) -> Option<FlexTensor> {
        let (ls, rs) = (lhs.layout().shape(), rhs.layout().shape());
        let rank = ls.num_dims();
        if !same_batch(lhs, rhs) || ls[..rank - 2].iter().product::<usize>() != 1 {
            return None;
        }
        let (m, k, n) = (ls[rank - 2], ls[rank - 1], rs[rank - 1]);
        if m > FEW_ROWS || n * k < FEW_ROWS_FROM {
            return None;
        }
        let ([.., l_rs, l_cs], [.., r_rs, r_cs]) = (lhs.layout().strides(), rhs.layout().strides()) else {
            unreachable!("rank checked by same_batch")
        };
        let (l, start) = (lhs.storage::<F>(), lhs.layout().start_offset() as isize);
        let rows: Vec<F> =
            (0..m * k).map(|e| l[(start + (e / k) as isize * l_rs + (e % k) as isize * l_cs) as usize]).collect();
        let r = &rhs.storage::<W>()[rhs.layout().start_offset()..];
        let product = matvec::few_rows(&rows, m, k, n, r, *r_rs, *r_cs)?;
        let mut shape = ls[..rank - 2].to_vec();
        shape.extend([m, n]);
        Some(FlexTensor::from_data(TensorData::new(product, shape)))
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
}

// f64 on the CPU backends, against Burn's own operations on the same device.
#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use crate::fast::testing::{devices, draw, draw_on, max_diff, same};
    use crate::gpt::rng::PyRandom;

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

    /// Products of a few rows against a large factor (sampling's), which the cores share by rows
    /// or by columns of that factor, give Burn's numbers, for a factor [in, out] and one used
    /// transposed; so do layouts they leave to gemm.
    #[test]
    fn the_few_row_products_are_burns() {
        let mut rng = PyRandom::new(4);
        for device in devices() {
            for m in [1, 3] {
                let (x, w) = (draw_on(&mut rng, [m, 300], &device), draw_on(&mut rng, [300, 257], &device));
                assert!(max_diff(matmul(x.clone(), w.clone()), x.clone().matmul(w.clone())) < 1e-12, "rows {m}");
                let wt = draw_on(&mut rng, [257, 300], &device);
                assert!(max_diff(linear(x.clone(), wt.clone()), x.clone().matmul(wt.transpose())) < 1e-12, "{m}");
                let strided = w.clone().slice([0..300, 0..256]).swap_dims(0, 1).swap_dims(0, 1); // a column slice
                assert!(max_diff(matmul(x.clone(), strided.clone()), x.matmul(strided)) < 1e-12, "slice, {m}");
            }
        }
    }

    /// Without autodiff (evaluation, sampling) a linear layer gives the same numbers.
    #[test]
    fn the_linear_layer_runs_without_autodiff() {
        let mut rng = PyRandom::new(3);
        for device in devices() {
            let (x, w) = (draw_on(&mut rng, [4, 6], &device), draw_on(&mut rng, [5, 6], &device));
            assert!(max_diff(linear(x.clone(), w.clone()), x.matmul(w.transpose())) < 1e-12);
        }
    }
}
