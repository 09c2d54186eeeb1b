//! One training step's gradients ([`of_step`]): the batch forward and backward, on a CPU in one
//! part per core side by side ([`loss_and_gradients`]), then the parts' gradients added and, in
//! longer runs, clipped to a global norm as nanoGPT's `clip_grad_norm_` ([`combine`]); a batch
//! too large for the device's memory in micro-batches one after another, their gradients added
//! (gradient accumulation, `--grad-accum`).
//!
//! On a CPU the adding and the clipping run on the host in a pass or two over each gradient's
//! numbers (as the optimizer's update does, `adam`); on a GPU they stay tensor operations, which
//! Burn fuses and never reads back.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::batch::Batch;
use crate::host::{PIECE, Real};
use crate::model::LanguageModel;

/// nanoGPT's guard against a zero norm in `max_norm / (norm + 1e-6)`.
const CLIP_EPS: f64 = 1e-6;

/// A weight's key in the gradients, and its number of dimensions (a matrix's 2; GPT-2's biases
/// and norm gains are vectors).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightId {
    /// The key.
    pub id: ParamId,
    /// 1 or 2.
    pub rank: usize,
}

/// Every weight of `model`, in the order of its fields (microGPT's: the reference's drawing
/// order).
pub fn weight_ids(model: &impl Module) -> Vec<WeightId> {
    struct Collect(Vec<WeightId>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(WeightId { id: param.id, rank: D });
        }
    }
    let mut ids = Collect(Vec::new());
    model.visit(&mut ids);
    ids.0
}

/// A weight's gradient out of `grads`, as a matrix (a vector as one row).
fn take(grads: &mut GradientsParams, w: WeightId) -> Option<Tensor<2>> {
    match w.rank {
        1 => grads.remove::<1>(w.id).map(|g| g.unsqueeze::<2>()),
        _ => grads.remove::<2>(w.id),
    }
}

/// Put back a gradient [`take`] took, in its own shape.
fn put(grads: &mut GradientsParams, w: WeightId, g: Tensor<2>) {
    match w.rank {
        1 => grads.register(w.id, g.squeeze_dim::<1>(0)),
        _ => grads.register(w.id, g),
    }
}

/// How a step's gradients are computed and combined.
pub struct Plan {
    /// Every weight of the model ([`weight_ids`]).
    pub weights: Vec<WeightId>,
    /// Parts of the batch computed at once (one per CPU core; 1 on a GPU). A batch cut into more
    /// parts than this is computed in groups one after another, each group's gradients added into
    /// the sum before the next runs: gradient accumulation, in the memory of one group.
    pub side_by_side: usize,
    /// Clip the gradients' global norm to this.
    pub max_norm: Option<f64>,
    /// Add and clip on the host (a CPU), not as tensor operations.
    pub on_host: bool,
}

/// How many parts of a batch of `batch_size` rows run at once when it is computed in
/// `micro_batches` groups one after another on `cores` cores: up to one part per core, at least a
/// row a part, so that the batch cut into `side_by_side × micro_batches` parts makes exactly
/// `micro_batches` groups ([`of_step`]).
pub fn side_by_side(cores: usize, batch_size: usize, micro_batches: usize) -> usize {
    cores.min(batch_size / micro_batches.max(1)).max(1)
}

/// One step's mean loss and its gradients, added and clipped: the batch's `parts` in groups of
/// `plan.side_by_side` ([`loss_and_gradients`]), their gradients added as each group is done
/// ([`combine`]).
pub fn of_step(
    model: &(impl LanguageModel + Sync),
    parts: Vec<Batch>,
    plan: &Plan,
    dropout: Option<f64>,
) -> (Tensor<1>, GradientsParams) {
    let total = parts.iter().map(|b| b.n_targets).sum::<usize>();
    let n_groups = parts.len().div_ceil(plan.side_by_side.max(1));
    let (mut loss, mut sum): (Option<Tensor<1>>, Option<GradientsParams>) = (None, None);
    let mut parts = parts.into_iter();
    for i in 0..n_groups {
        let group: Vec<Batch> = parts.by_ref().take(plan.side_by_side.max(1)).collect();
        let share = group.iter().map(|b| b.n_targets).sum::<usize>() as f64 / total as f64;
        let (group_loss, grads) = loss_and_gradients(model, group, share, dropout);
        loss = Some(match loss {
            Some(loss) => loss + group_loss,
            None => group_loss,
        });
        let last = i + 1 == n_groups;
        let grads = sum.take().into_iter().chain(grads).collect();
        sum = Some(combine(grads, &plan.weights, plan.max_norm.filter(|_| last), plan.on_host));
    }
    (loss.expect("a step has a part"), sum.expect("a step has a part"))
}

/// The loss of the batch given in `parts` and each part's gradients, times `share` (the batch's
/// part of a step's targets: 1 but for gradient accumulation). One part: forward and backward on
/// `model` itself (the reference's step). Several: each part on its own copy of the weights (new
/// autodiff leaves over the same numbers, under the same parameter ids), all at once on the CPU's
/// cores, in order when dropout draws its masks from the device's one random generator; each loss
/// counts by its share of the targets, so that the parts' gradients add up to the whole batch's.
/// Burn's autodiff keeps each graph behind its own lock, so the parts do not wait for each other;
/// and each part is a smaller working set, faster even on one core.
pub fn loss_and_gradients(
    model: &(impl LanguageModel + Sync),
    parts: Vec<Batch>,
    share: f64,
    dropout: Option<f64>,
) -> (Tensor<1>, Vec<GradientsParams>) {
    if parts.len() == 1 {
        let batch = parts.into_iter().next().expect("one part");
        let loss = model.loss(batch, dropout); // forward, then the mean cross-entropy
        let loss = if share == 1.0 { loss } else { loss * share };
        let grads = GradientsParams::from_grads(loss.backward(), model);
        return (loss.inner(), vec![grads]);
    }
    let total = parts.iter().map(|b| b.n_targets).sum::<usize>() as f64;
    let run = |part: Batch| {
        let copy = model.valid().train();
        let share = share * part.n_targets as f64 / total;
        let loss = copy.loss(part, dropout) * share;
        let grads = GradientsParams::from_grads(loss.backward(), &copy);
        (loss.inner(), grads)
    };
    let results: Vec<_> = match dropout {
        Some(_) => parts.into_iter().map(run).collect(),
        None => parts.into_par_iter().map(run).collect(),
    };
    let (losses, grads): (Vec<_>, Vec<_>) = results.into_iter().unzip();
    let loss = losses.into_iter().reduce(|a, b| a + b).expect("two parts or more");
    (loss, grads)
}

/// The gradients of every weight (`ids`) of all `parts` added, then, with a `max_norm`, scaled
/// together by `max_norm / (norm + 1e-6)` when their global norm exceeds it (nanoGPT's
/// `clip_grad_norm_`). `on_host`: add and clip on the host (a CPU, whose tensors live in host
/// memory), else as tensor operations (a GPU: the scale stays a tensor, never read back).
pub fn combine(parts: Vec<GradientsParams>, ids: &[WeightId], max_norm: Option<f64>, on_host: bool) -> GradientsParams {
    if on_host {
        return combine_on_host(parts, ids, max_norm);
    }
    let mut parts = parts.into_iter();
    let mut grads = parts.next().expect("a step has a part");
    for mut part in parts {
        for &w in ids {
            if let Some(g) = take(&mut part, w) {
                let sum = match take(&mut grads, w) {
                    Some(sum) => sum + g,
                    None => g,
                };
                put(&mut grads, w, sum);
            }
        }
    }
    match max_norm {
        Some(max_norm) => clip_grad_norm(grads, ids, max_norm),
        None => grads,
    }
}

/// nanoGPT's `clip_grad_norm_` as tensor operations: when the norm of all the gradients
/// together exceeds `max_norm`, scale every one of them by `max_norm / (norm + 1e-6)`. The scale
/// is a tensor, never read back.
pub fn clip_grad_norm(mut grads: GradientsParams, ids: &[WeightId], max_norm: f64) -> GradientsParams {
    let taken: Vec<(WeightId, Tensor<2>)> = ids.iter().filter_map(|&w| Some((w, take(&mut grads, w)?))).collect();
    let squares = taken.iter().map(|(_, g)| g.clone().square().sum()); // [1] each
    let Some(total) = squares.reduce(|a, b| a + b) else { return grads };
    let scale = (total.sqrt() + CLIP_EPS).recip().mul_scalar(max_norm).clamp_max(1.0).unsqueeze::<2>(); // [1, 1]
    for (w, g) in taken {
        put(&mut grads, w, g * scale.clone());
    }
    grads
}

/// One weight's gradient on the host: its numbers, and where they go back to.
struct HostGradient {
    w: WeightId,
    data: TensorData,
    device: Device,
}

/// [`combine`] on the host: per weight, the parts' numbers added into the first part's, the
/// squares summed in f64 for the norm, then every number scaled when the norm is over
/// `max_norm`. The same numbers as the tensor operations up to the rounding of the norm.
fn combine_on_host(mut parts: Vec<GradientsParams>, ids: &[WeightId], max_norm: Option<f64>) -> GradientsParams {
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
    if let Some(max_norm) = max_norm {
        let norm = host.iter().map(|g| square_sum(&g.data)).sum::<f64>().sqrt();
        let scale = max_norm / (norm + CLIP_EPS);
        if scale < 1.0 {
            for g in &mut host {
                scale_by(&mut g.data, scale);
            }
        }
    }
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
    use crate::batch::{Batcher, Windows};
    use crate::config::GPTConfig;
    use crate::data::Tokenizer;
    use crate::device::{self, read_values};
    use crate::model::GPT;
    use crate::rng::PyRandom;

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
            GPTConfig::new(tokenizer.vocab_size()).with_n_layer(2).with_n_embd(8).with_n_head(2).with_block_size(8);
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
            let (whole_loss, whole) = loss_and_gradients(&model, parts(1), 1.0, None);
            let whole_loss = read_values(whole_loss).unwrap()[0];
            let whole = values(&combine(whole, &ids, None, false), &ids);
            for n in [2, 3] {
                let (loss, grads) = loss_and_gradients(&model, parts(n), 1.0, None);
                let loss = read_values(loss).unwrap()[0];
                assert!((loss - whole_loss).abs() < 1e-12, "{what}, {n} parts: loss {loss} vs {whole_loss}");
                let on_device = values(&combine(copy(&grads, &ids), &ids, None, false), &ids);
                let on_host = values(&combine(grads, &ids, None, true), &ids);
                assert!(max_diff(&on_device, &whole) < 1e-12, "{what}, {n} parts: {}", max_diff(&on_device, &whole));
                assert!(max_diff(&on_host, &on_device) < 1e-15, "{what}, {n} parts: host and tensors");
            }
            let dropped = || {
                device.seed(5);
                let (loss, grads) = loss_and_gradients(&model, parts(3), 1.0, Some(0.3));
                (read_values(loss).unwrap()[0], values(&combine(grads, &ids, None, true), &ids))
            };
            let (a, b) = (dropped(), dropped());
            assert_eq!(a, b, "{what}: dropout draws the same masks again");
            assert!((a.0 - whole_loss).abs() > 1e-6, "{what}: dropout changes the loss");
        }
    }

    /// A batch in micro-batches one after another (gradient accumulation), each of one part or of
    /// two side by side, gives the whole batch's loss and clipped gradients, on the host and as
    /// tensors.
    #[test]
    fn micro_batches_add_up_to_the_whole_step() {
        let device = device::cpu_f64().autodiff();
        let docs: Vec<String> =
            ["anna", "bo", "christopher", "eve", "x", "maximilian", "ida"].iter().map(|d| d.to_string()).collect();
        let tokenizer = Tokenizer::from_documents(&docs);
        let config = GPTConfig::new(tokenizer.vocab_size()).with_n_embd(8).with_n_head(2).with_block_size(8);
        let model = GPT::init(&config, &mut PyRandom::new(4), &device);
        let batcher = Batcher::new(&tokenizer, &docs, config.block_size, &device);
        let parts = |n: usize| (0..n).map(|i| batcher.batch(i * 6 / n, (i + 1) * 6 / n - i * 6 / n)).collect();
        let plan =
            |side_by_side, on_host| Plan { weights: weight_ids(&model), side_by_side, max_norm: Some(0.5), on_host };
        let (loss, grads) = of_step(&model, parts(1), &plan(1, true), None);
        let (whole_loss, whole) = (read_values(loss).unwrap()[0], values(&grads, &plan(1, true).weights));
        assert!(norm(&grads, &plan(1, true).weights) <= 0.5 + 1e-9, "clipped");
        for (n, side_by_side) in [(3, 1), (6, 2), (4, 4)] {
            for on_host in [true, false] {
                let (loss, grads) = of_step(&model, parts(n), &plan(side_by_side, on_host), None);
                let loss = read_values(loss).unwrap()[0];
                assert!((loss - whole_loss).abs() < 1e-12, "{n} parts, {side_by_side} at once: {loss} vs {whole_loss}");
                let diff = max_diff(&values(&grads, &plan(1, true).weights), &whole);
                assert!(diff < 1e-12, "{n} parts, {side_by_side} at once, host {on_host}: {diff}");
            }
        }
    }

    /// `--grad-accum N` makes N groups one after another whatever the cores and the batch (even or
    /// not, fewer rows than cores), no group wider than the cores, no part without a row.
    #[test]
    fn micro_batches_are_as_many_groups_as_asked() {
        for cores in [1, 2, 3, 8, 64] {
            for batch_size in 1..=40 {
                for micro in 1..=batch_size {
                    let side = side_by_side(cores, batch_size, micro);
                    let parts = (side * micro).clamp(1, batch_size); // as TrainSet::batch cuts it
                    assert!(side <= cores && parts <= batch_size, "{cores} {batch_size} {micro}");
                    assert_eq!(parts.div_ceil(side), micro, "cores {cores}, batch {batch_size}, {micro} micro-batches");
                }
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
        let config = GPTConfig::new(tokenizer.vocab_size()).with_n_embd(8).with_n_head(2);
        let model = GPT::init(&config, &mut PyRandom::new(3), &device);
        let ids = weight_ids(&model);
        let batch = Batcher::new(&tokenizer, &docs, config.block_size, &device).batch(0, 3);
        let (_, grads) = loss_and_gradients(&model, vec![batch], 1.0, None);
        let plain = combine(copy(&grads, &ids), &ids, None, true);
        let before = norm(&plain, &ids);
        assert!(before > 0.1, "{before}");
        for on_host in [false, true] {
            let kept = combine(copy(&grads, &ids), &ids, Some(1e3), on_host);
            assert_eq!(values(&kept, &ids), values(&plain, &ids), "within the bound: unchanged (host: {on_host})");
            let clipped = combine(copy(&grads, &ids), &ids, Some(0.01), on_host);
            assert!((norm(&clipped, &ids) - 0.01).abs() < 1e-7, "host: {on_host}: {}", norm(&clipped, &ids));
        }
        let host = values(&combine(copy(&grads, &ids), &ids, Some(0.01), true), &ids);
        let tensors = values(&combine(grads, &ids, Some(0.01), false), &ids);
        assert!(max_diff(&host, &tensors) < 1e-15, "{}", max_diff(&host, &tensors));
    }
}
