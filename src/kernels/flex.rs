//! The CPU backend's (flex's) versions of [`Kernels`]: attention's causal softmax as two loops
//! over rows, and the matrix products written by gemm into buffers it fills.

use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::BoolTensor;
use burn::tensor::{DType, TensorData};
use rayon::prelude::*;

use super::{Kernels, Real};

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
        let parallelism = if work >= PARALLEL_PRODUCT { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
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

    /// The mask is not read: each row's query position says which keys it sees.
    fn causal_softmax(scores: FlexTensor, _future: BoolTensor<Flex>, divisor: f64) -> FlexTensor {
        let scores = contiguous(scores);
        let (t, t_all) = rows_of(&scores);
        match scores.dtype() {
            DType::F32 => map_new::<f32>(&scores, |o| softmax_forward(scores.storage(), o, t, t_all, divisor)),
            DType::F64 => map_new::<f64>(&scores, |o| softmax_forward(scores.storage(), o, t, t_all, divisor)),
            dtype => panic!("causal_softmax: {dtype:?} is not f32 or f64"),
        }
    }

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
}
