//! Adam's update on the host: each parameter updated in one pass over its numbers (the loop
//! microgpt.py runs per parameter), instead of about a dozen whole-tensor operations. A large gain
//! on a CPU, where each tensor operation is a pass over memory; the numbers are the tensor
//! version's (`crate::gpt::adam`), bit for bit (tested there).

use burn::optim::{AdamState, AdaptiveMomentumState, LearningRate};
use burn::tensor::{DType, DataError, Tensor, TensorData};
use rayon::prelude::*;

use crate::fast::real::{PIECE, Real};
use crate::gpt::adam::Adam;

/// One parameter's update in one pass: the moments `m` and `v` and the weights `p` in place,
/// from the gradient `g`, at step `time` (1-based). Every operation and its order are those
/// of the tensor version in `crate::gpt::adam` (its `Optimizer::step`), with the scalars rounded to `F` as a
/// backend rounds them, so both give the same numbers.
pub fn update<F: Real>(adam: &Adam, lr: f64, time: i32, p: &mut [F], g: &[F], m: &mut [F], v: &mut [F]) {
    let (b1, b2, eps) = (F::of(adam.beta1), F::of(adam.beta2), F::of(adam.eps));
    let (one_minus_b1, one_minus_b2) = (F::of(1.0 - adam.beta1), F::of(1.0 - adam.beta2));
    let bias1 = F::of(1.0 - adam.beta1.powi(time));
    let bias2 = F::of(1.0 - adam.beta2.powi(time));
    let decay = (adam.weight_decay != 0.0).then(|| F::of(1.0 - lr * adam.weight_decay));
    let lr = F::of(lr);
    let piece = |(((p, g), m), v): Piece<F>| {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m = *m * b1 + g * one_minus_b1;
            *v = *v * b2 + g * g * one_minus_b2;
            let update = (*m / bias1) * lr / ((*v / bias2).sqrt() + eps);
            if let Some(decay) = decay {
                *p = *p * decay;
            }
            *p = *p - update;
        }
    };
    // in pieces over every core: the divisions and square roots make it more than a copy
    p.par_chunks_mut(PIECE)
        .zip(g.par_chunks(PIECE))
        .zip(m.par_chunks_mut(PIECE))
        .zip(v.par_chunks_mut(PIECE))
        .for_each(piece);
}

/// [`update`] on tensors: their numbers are taken out (without a copy on a CPU
/// backend, whose tensors already live in host memory), updated and put back.
pub fn step_on_host<const D: usize>(
    adam: &Adam,
    lr: LearningRate,
    tensor: Tensor<D>,
    grad: Tensor<D>,
    state: Option<AdamState<D>>,
) -> (Tensor<D>, Option<AdamState<D>>) {
    let (device, dtype) = (tensor.device(), tensor.dtype());
    let zeros = || TensorData::zeros::<f64, _>(tensor.shape()).convert_dtype(dtype);
    let (time, mut m, mut v) = match state {
        Some(AdamState { momentum: s }) => (s.time + 1, s.moment_1.into_data(), s.moment_2.into_data()),
        None => (1, zeros(), zeros()),
    };
    let t = i32::try_from(time).expect("fewer than 2^31 optimizer steps");
    let (mut p, g) = (tensor.into_data(), grad.into_data()); // a transposed gradient is laid out here
    let slices = |p: &mut TensorData, m: &mut TensorData, v: &mut TensorData| -> Result<(), DataError> {
        match dtype {
            DType::F64 => {
                update::<f64>(adam, lr, t, p.as_mut_slice()?, g.as_slice()?, m.as_mut_slice()?, v.as_mut_slice()?)
            }
            _ => update::<f32>(adam, lr, t, p.as_mut_slice()?, g.as_slice()?, m.as_mut_slice()?, v.as_mut_slice()?),
        }
        Ok(())
    };
    slices(&mut p, &mut m, &mut v).expect("a parameter, its gradient and its moments share one float type");
    let tensor = |data: TensorData| Tensor::from_data(data, (&device, dtype));
    let state = AdamState::new(AdaptiveMomentumState::new(time, tensor(m), tensor(v)));
    (tensor(p), Some(state))
}

/// One piece of a parameter's numbers, as the zipped chunks give it: ((p, g), m), v.
type Piece<'a, F> = (((&'a mut [F], &'a [F]), &'a mut [F]), &'a mut [F]);
