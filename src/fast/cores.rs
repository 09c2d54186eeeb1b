//! A step's batch split over the CPU's cores ([`loss_and_gradients`]): each part forward and
//! backward on its own copy of the weights, all at once, and the parts' gradients added, and
//! clipped in longer runs, on the host in a pass or two over each gradient's numbers
//! ([`add_on_host`], [`clip_on_host`]), as the optimizer's update is (`crate::gpt::adam`). On a GPU
//! none of this runs: the batch goes whole, and adding and clipping stay tensor operations
//! (`crate::gpt::train`), which Burn fuses and never reads back.

use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::fast::real::{PIECE, Real};
use crate::fast::{kernels, use_kernels};
use crate::gpt::batch::Batch;
use crate::gpt::model::LanguageModel;
use crate::gpt::train::{self, CLIP_EPS, WeightId, put, take};

/// `f` on one of the pool's threads, with this thread's kernels: a loop of small products there (a
/// sampled token's, each split over the cores) runs each product's first part itself, instead of
/// sleeping until the pool has run them all and waking for every product.
pub fn on_the_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let chosen = kernels(); // the pool's thread runs the kernels this thread runs
    rayon::scope(|_| {
        use_kernels(chosen);
        f()
    })
}

/// The loss of the batch given in `parts` and its gradients, added, times `share` (the batch's
/// part of a step's targets: 1 but for gradient accumulation): each part on its own copy of the
/// weights (new autodiff leaves over the same numbers, under the same parameter ids), all at once
/// on the CPU's cores, or `in_order` when dropout draws its masks from the device's one random
/// generator; each loss counts by its share of the targets, so that the parts' gradients add up
/// to the whole batch's. Burn's autodiff keeps each graph behind its own lock, so the parts do not
/// wait for each other; and each part is a smaller working set, faster even on one core. The
/// gradients are added on the host when `on_host`, else as tensor operations.
pub fn loss_and_gradients(
    model: &(impl LanguageModel + Sync),
    parts: Vec<Batch>,
    share: f64,
    in_order: bool,
    ids: &[WeightId],
    on_host: bool,
) -> (Tensor<1>, GradientsParams) {
    let total = parts.iter().map(|b| b.n_targets).sum::<usize>() as f64;
    let chosen = kernels(); // the worker threads run the kernels this thread runs
    let run = |part: Batch| {
        use_kernels(chosen);
        let copy = model.valid().train();
        let share = share * part.n_targets as f64 / total;
        let loss = copy.loss(part) * share;
        let grads = GradientsParams::from_grads(loss.backward(), &copy);
        (loss.inner(), grads)
    };
    let results: Vec<_> = match in_order {
        true => parts.into_iter().map(run).collect(),
        false => parts.into_par_iter().map(run).collect(),
    };
    let (losses, grads): (Vec<_>, Vec<_>) = results.into_iter().unzip();
    let loss = losses.into_iter().reduce(|a, b| a + b).expect("a part or more");
    (loss, train::add(grads, ids, on_host))
}

/// One weight's gradient on the host: its numbers, and where they go back to.
struct HostGradient {
    w: WeightId,
    data: TensorData,
    device: Device,
}

/// `crate::gpt::train::add` on the host: per weight, the parts' numbers added into the first
/// part's.
pub fn add_on_host(mut parts: Vec<GradientsParams>, ids: &[WeightId]) -> GradientsParams {
    let mut host = Vec::with_capacity(ids.len());
    for &w in ids {
        let mut tensors = parts.iter_mut().filter_map(|g| take(g, w));
        let Some(first) = tensors.next() else { continue };
        let device = first.device();
        let mut data = first.into_data(); // a transposed gradient is laid out row by row here
        for other in tensors {
            add_into(&mut data, &other.into_data());
        }
        host.push(HostGradient { w, data, device });
    }
    to_gradients(host)
}

/// `crate::gpt::train::clip_grad_norm` on the host: the squares summed in f64 for the norm, then
/// every number scaled when the norm is over `max_norm`. The same numbers as the tensor
/// operations up to the rounding of the norm.
pub fn clip_on_host(mut grads: GradientsParams, ids: &[WeightId], max_norm: f64) -> GradientsParams {
    let mut host: Vec<HostGradient> = ids
        .iter()
        .filter_map(|&w| {
            let g = take(&mut grads, w)?;
            Some(HostGradient { w, device: g.device(), data: g.into_data() })
        })
        .collect();
    let norm = host.iter().map(|g| square_sum(&g.data)).sum::<f64>().sqrt();
    let scale = max_norm / (norm + CLIP_EPS);
    if scale < 1.0 {
        for g in &mut host {
            scale_by(&mut g.data, scale);
        }
    }
    to_gradients(host)
}

/// The host's gradients back as tensors, each on its own device.
fn to_gradients(host: Vec<HostGradient>) -> GradientsParams {
    let mut grads = GradientsParams::new();
    for HostGradient { w, data, device } in host {
        let dtype = data.dtype();
        put(&mut grads, w, Tensor::<2>::from_data(data, (&device, dtype)));
    }
    grads
}

/// `sum += other`, number by number (both of one float type and shape).
fn add_into(sum: &mut TensorData, other: &TensorData) {
    fn add<F: Real>(sum: &mut [F], other: &[F]) {
        sum.par_chunks_mut(PIECE).zip(other.par_chunks(PIECE)).for_each(|(s, o)| {
            s.iter_mut().zip(o).for_each(|(s, &o)| *s = *s + o);
        });
    }
    match sum.dtype() {
        DType::F64 => add::<f64>(sum.as_mut_slice().expect("f64"), other.as_slice().expect("f64")),
        _ => add::<f32>(sum.as_mut_slice().expect("f32"), other.as_slice().expect("f32")),
    }
}

/// The sum of the squares of the numbers, in f64: per piece, then the pieces in order.
fn square_sum(data: &TensorData) -> f64 {
    fn sum<F: Real>(x: &[F]) -> f64 {
        let pieces: Vec<f64> =
            x.par_chunks(PIECE).map(|p| p.iter().map(|&v| v.to_f64() * v.to_f64()).sum::<f64>()).collect();
        pieces.iter().sum()
    }
    match data.dtype() {
        DType::F64 => sum::<f64>(data.as_slice().expect("f64")),
        _ => sum::<f32>(data.as_slice().expect("f32")),
    }
}

/// Every number times `scale` (rounded to the numbers' type first, as a backend does).
fn scale_by(data: &mut TensorData, scale: f64) {
    fn scale_all<F: Real>(x: &mut [F], scale: F) {
        x.par_chunks_mut(PIECE).for_each(|p| p.iter_mut().for_each(|v| *v = *v * scale));
    }
    match data.dtype() {
        DType::F64 => scale_all::<f64>(data.as_mut_slice().expect("f64"), scale),
        _ => scale_all::<f32>(data.as_mut_slice().expect("f32"), scale as f32),
    }
}

#[cfg(all(test, feature = "cpu"))] // f64 on the flex CPU backend
mod tests {
    use super::*;
    use crate::device::{self, read_values};
    use crate::gpt::batch::{Batcher, Windows};
    use crate::gpt::config::GPTConfig;
    use crate::gpt::data::Tokenizer;
    use crate::gpt::model::GPT;
    use crate::gpt::rng::PyRandom;
    use crate::gpt::train::{clip_grad_norm, weight_ids};

    fn values(grads: &GradientsParams, ids: &[WeightId]) -> Vec<Vec<f64>> {
        ids.iter().map(|w| read_values(grads.get::<2>(w.id).expect("every weight has a gradient")).unwrap()).collect()
    }

    fn norm(grads: &GradientsParams, ids: &[WeightId]) -> f64 {
        values(grads, ids).iter().flatten().map(|g| g * g).sum::<f64>().sqrt()
    }

    /// A batch cut into the given number of parts.
    type PartsOf<'a> = dyn Fn(usize) -> Vec<Batch> + 'a;

    /// A copy of each part's gradients (`GradientsParams` is not `Clone`).
    fn copy(parts: &[GradientsParams], ids: &[WeightId]) -> Vec<GradientsParams> {
        parts
            .iter()
            .map(|part| {
                let mut copy = GradientsParams::new();
                for w in ids {
                    copy.register(w.id, part.get::<2>(w.id).expect("a gradient"));
                }
                copy
            })
            .collect()
    }

    /// The whole batch's loss and gradients, as the loop computes them: forward, loss, backward.
    fn whole(model: &GPT, batch: Batch) -> (f64, GradientsParams) {
        let loss = model.loss(batch);
        let grads = GradientsParams::from_grads(loss.backward(), model);
        (read_values(loss.inner()).unwrap()[0], grads)
    }

    fn max_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
        assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), b.iter().map(Vec::len).collect::<Vec<_>>());
        a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
    }

    /// A batch cut into parts, documents of unequal lengths or windows of a text, gives the loss
    /// and the gradients of the whole batch, whether the parts are added on the host or as
    /// tensors; with dropout, the parts run in order and draw the same masks every time.
    #[test]
    fn the_parts_of_a_batch_add_up_to_the_whole_batch() {
        let device = device::cpu_f64().autodiff();
        let docs: Vec<String> =
            ["anna", "bo", "christopher", "eve", "x", "maximilian", "ida"].iter().map(|d| d.to_string()).collect();
        let tokenizer = Tokenizer::from_documents(&docs);
        let config =
            GPTConfig { n_layer: 2, n_embd: 8, n_head: 2, block_size: 8, ..GPTConfig::new(tokenizer.vocab_size()) };
        let model = GPT::init(&config, &mut PyRandom::new(9), &device);
        let ids = weight_ids(&model);
        let batcher = Batcher::new(&tokenizer, &docs, config.block_size, &device);
        let tokens: Vec<usize> = (0..200).map(|i| (i * 7 + i / 5) % tokenizer.vocab_size()).collect();
        let windows = Windows::new(&tokens, config.block_size, &device);
        let offsets = windows.draw(&mut PyRandom::new(2), 5);
        let cases: [(&str, &PartsOf); 2] = [
            ("documents", &|n| {
                let bounds = |i: usize| i * 7 / n;
                (0..n).map(|i| batcher.batch(2 + bounds(i), bounds(i + 1) - bounds(i))).collect()
            }),
            ("windows", &|n| {
                let bounds = |i: usize| i * 5 / n;
                (0..n).map(|i| windows.batch(&offsets[bounds(i)..bounds(i + 1)])).collect()
            }),
        ];
        for (what, parts) in cases {
            let (whole_loss, whole) = whole(&model, parts(1).remove(0));
            let whole = values(&whole, &ids);
            for n in [2, 3] {
                let (loss, on_device) = loss_and_gradients(&model, parts(n), 1.0, false, &ids, false);
                let loss = read_values(loss).unwrap()[0];
                assert!((loss - whole_loss).abs() < 1e-12, "{what}, {n} parts: loss {loss} vs {whole_loss}");
                let on_host = values(&loss_and_gradients(&model, parts(n), 1.0, false, &ids, true).1, &ids);
                let on_device = values(&on_device, &ids);
                assert!(max_diff(&on_device, &whole) < 1e-12, "{what}, {n} parts: {}", max_diff(&on_device, &whole));
                assert!(max_diff(&on_host, &on_device) < 1e-15, "{what}, {n} parts: host and tensors");
            }
            let dropping = model.clone().with_dropout(0.3);
            let dropped = || {
                device.seed(5);
                let (loss, grads) = loss_and_gradients(&dropping, parts(3), 1.0, true, &ids, true);
                (read_values(loss).unwrap()[0], values(&grads, &ids))
            };
            let (a, b) = (dropped(), dropped());
            assert_eq!(a, b, "{what}: dropout draws the same masks again");
            assert!((a.0 - whole_loss).abs() > 1e-6, "{what}: dropout changes the loss");
        }
    }

    /// A step in micro-batches one after another (gradient accumulation), each of one part or of
    /// several side by side, gives the whole batch's loss and clipped gradients, on the host and as
    /// tensors: the loop's step, its update by plain SGD (the weights move by `lr` times the
    /// gradients), is the same.
    #[test]
    fn micro_batches_add_up_to_the_whole_step() {
        use crate::gpt::config::TrainConfig;
        use crate::gpt::train::{Split, Training, Watch};
        use anyhow::Result;
        use burn::optim::ModuleOptimizer;

        /// The loss of the one step.
        struct Loss(Option<f64>);
        impl Watch<GPT> for Loss {
            fn stopping(&self) -> bool {
                false
            }
            fn after_step(
                &mut self,
                _: &GPT,
                _: &ModuleOptimizer,
                _: usize,
                _: f64,
                loss: Tensor<1>,
                _: usize,
            ) -> Result<()> {
                self.0 = Some(read_values(loss)?[0]);
                Ok(())
            }
        }
        let device = device::cpu_f64().autodiff();
        let docs: Vec<String> =
            ["anna", "bo", "christopher", "eve", "x", "maximilian", "ida"].iter().map(|d| d.to_string()).collect();
        let tokenizer = Tokenizer::from_documents(&docs);
        let config = GPTConfig { n_embd: 8, n_head: 2, block_size: 8, ..GPTConfig::new(tokenizer.vocab_size()) };
        let model = GPT::init(&config, &mut PyRandom::new(4), &device);
        let train = crate::gpt::batch::TrainSet::Documents(Box::new(Batcher::new(&tokenizer, &docs, 8, &device)));
        let unclipped = TrainConfig { batch_size: 6, num_steps: 1, ..TrainConfig::default() };
        let run = TrainConfig { grad_clip: Some(0.5), ..unclipped.clone() };
        let step_of = |run: &TrainConfig, split: Split| {
            let training = Training {
                model: model.clone(),
                optim: burn::optim::SgdConfig::new().init(),
                step: 0,
                end: 1,
                run,
                train: &train,
                split,
            };
            let mut loss = Loss(None);
            let moved = training.run(&mut loss).unwrap().0;
            let weights =
                |m: &GPT| m.named_weights().into_iter().map(|(_, w)| read_values(w).unwrap()).collect::<Vec<_>>();
            (loss.0.unwrap(), weights(&moved))
        };
        let step = |split: Split| step_of(&run, split);
        let (whole_loss, whole) = step(Split::WHOLE);
        let before: Vec<Vec<f64>> = model.named_weights().into_iter().map(|(_, w)| read_values(w).unwrap()).collect();
        let lr = crate::gpt::train::Schedule::of(&run).at(0);
        let norm_of = |after: &[Vec<f64>]| {
            let moved = before.iter().flatten().zip(after.iter().flatten()).map(|(a, b)| ((a - b) / lr).powi(2));
            moved.sum::<f64>().sqrt()
        };
        let free = norm_of(&step_of(&unclipped, Split::WHOLE).1);
        assert!(free > 0.6, "the gradients' norm {free} is beyond the clip");
        assert!((0.4999..=0.5 + 1e-9).contains(&norm_of(&whole)), "clipped to 0.5: {}", norm_of(&whole));
        for (micro_batches, cores) in [(3, 1), (3, 2), (1, 4), (2, 3)] {
            for on_host in [true, false] {
                let (loss, weights) = step(Split { cores, micro_batches, on_host });
                assert!((loss - whole_loss).abs() < 1e-12, "{micro_batches}×{cores}: {loss} vs {whole_loss}");
                let diff = max_diff(&weights, &whole);
                assert!(diff < 1e-12, "{micro_batches} micro-batches of {cores} parts, host {on_host}: {diff}");
            }
        }
    }

    /// Clipping scales all gradients together down to the norm asked for, the same on the host
    /// as in tensor operations, and leaves them be when they are already within it.
    #[test]
    fn clipping_bounds_the_norm_of_all_gradients_together() {
        let device = device::cpu_f64().autodiff();
        let docs: Vec<String> = ["anna", "bo", "eve"].iter().map(|d| d.to_string()).collect();
        let tokenizer = Tokenizer::from_documents(&docs);
        let config = GPTConfig { n_embd: 8, n_head: 2, ..GPTConfig::new(tokenizer.vocab_size()) };
        let model = GPT::init(&config, &mut PyRandom::new(3), &device);
        let ids = weight_ids(&model);
        let batch = Batcher::new(&tokenizer, &docs, config.block_size, &device).batch(0, 3);
        let (_, grads) = whole(&model, batch);
        let grads = [grads];
        let before = norm(&grads[0], &ids);
        assert!(before > 0.1, "{before}");
        for on_host in [false, true] {
            let kept = clip_grad_norm(copy(&grads, &ids).remove(0), &ids, 1e3, on_host);
            assert_eq!(values(&kept, &ids), values(&grads[0], &ids), "within the bound: unchanged (host: {on_host})");
            let clipped = clip_grad_norm(copy(&grads, &ids).remove(0), &ids, 0.01, on_host);
            assert!((norm(&clipped, &ids) - 0.01).abs() < 1e-7, "host: {on_host}: {}", norm(&clipped, &ids));
        }
        let host = values(&clip_grad_norm(copy(&grads, &ids).remove(0), &ids, 0.01, true), &ids);
        let [grads] = grads;
        let tensors = values(&clip_grad_norm(grads, &ids, 0.01, false), &ids);
        assert!(max_diff(&host, &tensors) < 1e-15, "{}", max_diff(&host, &tensors));
    }
}
