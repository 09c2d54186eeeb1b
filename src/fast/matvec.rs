//! Products of a few rows against a large matrix: a sampled token's work, bound by reading the
//! matrix once from memory, which gemm does on one core. Here every core reads its own part of
//! the matrix in memory order. The matrix may be held in bf16 (`--dtype bf16`: half the bytes to
//! read), each number widened to f32 as it is read; every sum is in the rows' own type.

use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{DType, bf16};
use rayon::prelude::*;

use crate::fast::real::Real;

/// A matrix's number as the products read it, in the float type `F` of their sums: f32 and f64
/// as they are, bf16 widened to f32 (exactly: a bf16 is the top half of an f32).
pub trait Weight<F>: Copy + Send + Sync + burn::tensor::Element + bytemuck::Pod {
    /// This number in `F`.
    fn get(self) -> F;
}

impl<F: Real> Weight<F> for F {
    #[inline(always)]
    fn get(self) -> F {
        self
    }
}

impl Weight<f32> for bf16 {
    #[inline(always)]
    fn get(self) -> f32 {
        f32::from_bits(u32::from(self.to_bits()) << 16) // half's to_f32, in a form that vectorizes
    }
}

/// A bf16 matrix (a view: a block of columns of a weight, say) in f32, number for number, in a
/// buffer of its own laid out as the view runs in memory (a transposed view stays one): what
/// gemm multiplies when a product has more rows than [`few_rows`] takes.
pub fn widened(matrix: &FlexTensor) -> FlexTensor {
    let layout = matrix.layout();
    let (shape, strides, start) = (layout.shape().clone(), layout.strides(), layout.start_offset());
    let (k, n, rs, cs) = (shape[0], shape[1], strides[0], strides[1]);
    let numbers = matrix.storage::<bf16>();
    // the view's lines (its rows, or its columns when those lie contiguous), each widened whole
    let (lines, len, step, out_strides) = match (rs, cs) {
        (_, 1) => (k, n, rs, vec![n as isize, 1]),
        (1, _) => (n, k, cs, vec![1, k as isize]),
        _ => return widened(&matrix.to_contiguous()),
    };
    let mut out = vec![0.0f32; lines * len];
    out.par_chunks_mut(len.max(1)).enumerate().for_each(|(line, out)| {
        let from = (start as isize + line as isize * step) as usize;
        out.iter_mut().zip(&numbers[from..from + len]).for_each(|(o, &w)| *o = w.get());
    });
    let layout = Layout::new(shape, out_strides, 0);
    FlexTensor::new(burn::tensor::Bytes::from_elems(out), layout, DType::F32)
}

/// `lhs` [m, k] (a few rows, laid out row by row) times `rhs` [k, n], read through its strides
/// `rhs_rs`, `rhs_cs`: every core reads its own rows of `rhs` when they lie contiguous (a layer's
/// [in, out] weight), adding the parts' sums at the end; its own columns when those do (a weight
/// [out, in] used transposed, `x wᵀ`). `None` for other layouts. The sums run in another order
/// than gemm's: the same numbers up to rounding.
pub fn few_rows<F: Real, W: Weight<F>>(
    lhs: &[F],
    m: usize,
    k: usize,
    n: usize,
    rhs: &[W],
    rhs_rs: isize,
    rhs_cs: isize,
) -> Option<Vec<F>> {
    let cores = rayon::current_num_threads().max(1);
    let zero = F::of(0.0);
    if rhs_cs == 1 && rhs_rs > 0 {
        // out[i, :] = Σ_kk lhs[i, kk] · rhs[kk, :], a part of the kk per core
        let row = |kk: usize| &rhs[kk * rhs_rs as usize..kk * rhs_rs as usize + n];
        let parts: Vec<Vec<F>> = (0..cores)
            .into_par_iter()
            .map(|c| {
                let mut part = vec![zero; m * n];
                for kk in c * k / cores..(c + 1) * k / cores {
                    for (i, out) in part.chunks_exact_mut(n).enumerate() {
                        axpy(out, lhs[i * k + kk], row(kk));
                    }
                }
                part
            })
            .collect();
        let mut parts = parts.into_iter();
        let mut sum = parts.next()?;
        for part in parts {
            sum.iter_mut().zip(part).for_each(|(s, p)| *s = *s + p);
        }
        return Some(sum);
    }
    if rhs_rs == 1 && rhs_cs > 0 {
        // out[i, j] = lhs[i, :] · rhs[:, j], a part of the j per core
        let column = |j: usize| &rhs[j * rhs_cs as usize..j * rhs_cs as usize + k];
        let mut out = vec![zero; m * n];
        let width = n.div_ceil(cores);
        let mut by_column = vec![zero; m * n]; // [n, m]: each core writes its own columns
        by_column.par_chunks_mut(width * m).enumerate().for_each(|(c, part)| {
            for (jj, outs) in part.chunks_exact_mut(m).enumerate() {
                let w = column(c * width + jj);
                for (i, o) in outs.iter_mut().enumerate() {
                    *o = dot(&lhs[i * k..(i + 1) * k], w);
                }
            }
        });
        for (j, outs) in by_column.chunks_exact(m).enumerate() {
            for (i, &o) in outs.iter().enumerate() {
                out[i * n + j] = o;
            }
        }
        return Some(out);
    }
    None
}

/// `out += a w`, number by number; with AVX2 where the CPU has it (chosen at run time, as gemm
/// chooses its kernels: the binary runs on any x86-64).
fn axpy<F: Real, W: Weight<F>>(out: &mut [F], a: F, w: &[W]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above
        return unsafe { axpy_avx2(out, a, w) };
    }
    axpy_body(out, a, w)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn axpy_avx2<F: Real, W: Weight<F>>(out: &mut [F], a: F, w: &[W]) {
    axpy_body(out, a, w)
}

#[inline(always)]
fn axpy_body<F: Real, W: Weight<F>>(out: &mut [F], a: F, w: &[W]) {
    out.iter_mut().zip(w).for_each(|(o, &w)| *o = *o + a * w.get());
}

/// `a · b` in eight running sums (which the compiler keeps in vector registers); with AVX2
/// where the CPU has it.
fn dot<F: Real, W: Weight<F>>(a: &[F], b: &[W]) -> F {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above
        return unsafe { dot_avx2(a, b) };
    }
    dot_body(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_avx2<F: Real, W: Weight<F>>(a: &[F], b: &[W]) -> F {
    dot_body(a, b)
}

#[inline(always)]
fn dot_body<F: Real, W: Weight<F>>(a: &[F], b: &[W]) -> F {
    let zero = F::of(0.0);
    let mut sums = [zero; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = a8.remainder().iter().zip(b8.remainder()).fold(zero, |s, (&x, &y)| s + x * y.get());
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            sums[l] = sums[l] + x[l] * y[l].get();
        }
    }
    sums.iter().fold(tail, |s, &x| s + x)
}
