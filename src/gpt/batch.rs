//! Batches: documents as padded token tables on the device, and the slice of them one step
//! trains on.
//!
//! The tables are built once ([`Batcher::new`]); a step only slices (or, wrapping around the end,
//! gathers) its rows. A batch is right-padded to its longest document; on a CPU it also carries
//! the positions of its real tokens ([`Packing`]) so that the model skips the padding's work.
//! A text ([`Windows`]) has no documents: a batch is windows of `block_size` + 1 tokens at
//! offsets drawn from the run's seed and the step, so that a step's batch is the same however
//! the run got there (a resume draws what the whole run would have).
//! Deliberately left out: sampling documents at random (the reference walks them in order).

use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::kind::Basic;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::gpt::config::TrainConfig;
use crate::gpt::data::{self, Data, Layout, Tokenizer, doc_tokens};
use crate::gpt::rng::PyRandom;

/// The real positions of a right-padded [B, T] batch. Everything except attention works on each
/// position alone (embeddings, rmsnorm, every projection, the MLP, the logits), so it needs
/// only the N real positions, not all B·T; attention unpacks them to [B, T] to see each
/// document's past. On a CPU this skips the padding's share of the work.
#[derive(Clone, Debug)]
pub struct Packing {
    /// `[N]` indices of the real positions among the B·T, row by row.
    pub rows: Tensor<1, Int>,
}

/// One step's worth of documents on the device.
#[derive(Clone)]
pub struct Batch {
    /// [B, T] input ids.
    pub inputs: Tensor<2, Int>,
    /// [B, T] target ids (0 under padding).
    pub targets: Tensor<2, Int>,
    /// [B, T] 1 for real targets, 0 for padding; `None` when nothing is padded.
    pub mask: Option<Tensor<2>>,
    /// Number of real target tokens.
    pub n_targets: usize,
    /// Where the real positions are, and their targets `[N]` (N = `n_targets`): present when the
    /// batch is padded and not of fixed length, so that training skips the padding's work.
    pub packed: Option<(Packing, Tensor<1, Int>)>,
}

/// Documents as padded token tables on the device, built once.
pub struct Batcher {
    /// [N, block_size] input ids, right-padded with 0.
    inputs: Tensor<2, Int>,
    /// [N, block_size] target ids, right-padded with 0.
    targets: Tensor<2, Int>,
    /// [N, block_size] 1.0 where a target is real.
    mask: Tensor<2>,
    /// Number of predicted positions per document (`n` of docs/ALGORITHM.md).
    lens: Vec<usize>,
    /// Pad every batch to block_size positions (see [`Batcher::fixed_length`]).
    fixed_length: bool,
    device: Device,
}

impl Batcher {
    /// Token tables of `docs` (cut to `block_size`) on `device`.
    pub fn new(tokenizer: &Tokenizer, docs: &[String], block_size: usize, device: &Device) -> Self {
        let n = docs.len();
        let mut inputs = vec![0i64; n * block_size];
        let mut targets = vec![0i64; n * block_size];
        let mut mask = vec![0f32; n * block_size];
        let mut lens = Vec::with_capacity(n);
        for (row, doc) in docs.iter().enumerate() {
            let tokens = doc_tokens(tokenizer, doc, block_size);
            let len = tokens.len() - 1;
            for pos in 0..len {
                let at = row * block_size + pos;
                inputs[at] = tokens[pos] as i64;
                targets[at] = tokens[pos + 1] as i64;
                mask[at] = 1.0;
            }
            lens.push(len);
        }
        let shape = [n, block_size];
        Self {
            inputs: Tensor::from_data(TensorData::new(inputs, shape), device),
            targets: Tensor::from_data(TensorData::new(targets, shape), device),
            mask: Tensor::from_data(TensorData::new(mask, shape), device),
            lens,
            fixed_length: false,
            device: device.clone(),
        }
    }

    /// Pad every batch to block_size positions instead of to its longest document, and leave
    /// the padding in (masked out of the loss) rather than packing the real positions. The loss
    /// is the same; a GPU then sees one shape for every step, so its kernels are compiled and
    /// tuned once, not once per document length.
    pub fn fixed_length(mut self, fixed: bool) -> Self {
        self.fixed_length = fixed;
        self
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// Whether there are no documents.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Documents `start .. start + size` (wrapping around), padded to the longest of them.
    /// A single document is not padded at all: that is exactly the reference's step.
    pub fn batch(&self, start: usize, size: usize) -> Batch {
        let n = self.len();
        let rows: Vec<usize> = (start..start + size).map(|i| i % n).collect();
        let longest = rows.iter().map(|&r| self.lens[r]).max().expect("a batch holds at least one document");
        let t = if self.fixed_length { self.inputs.dims()[1] } else { longest };
        let n_targets = rows.iter().map(|&r| self.lens[r]).sum();
        // contiguous rows are a slice; wrapped-around ones a gather by row id
        let ids = (rows[0] + size > n).then(|| {
            let ids: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
            Tensor::<1, Int>::from_data(TensorData::new(ids, [size]), &self.device)
        });
        let rows_of = |table: &Tensor<2, Int>| Self::rows(table, ids.as_ref(), rows[0], size, t);
        let (inputs, targets) = (rows_of(&self.inputs), rows_of(&self.targets));
        let padded = n_targets < size * t;
        let mask = padded.then(|| Self::rows(&self.mask, ids.as_ref(), rows[0], size, t));
        let packed = (padded && !self.fixed_length).then(|| {
            // the real positions of the [size, t] grid, row by row: [n_targets]
            let real: Vec<i64> = rows
                .iter()
                .enumerate()
                .flat_map(|(i, &r)| (0..self.lens[r]).map(move |pos| (i * t + pos) as i64))
                .collect();
            let real = Tensor::<1, Int>::from_data(TensorData::new(real, [n_targets]), &self.device);
            let targets = targets.clone().reshape([size * t]).select(0, real.clone()); // [N]
            (Packing { rows: real }, targets)
        });
        Batch { inputs, targets, mask, n_targets, packed }
    }

    /// Rows `first..first + size` of `table` (or the rows `ids`, when given), first `t` columns.
    fn rows<K: Basic>(
        table: &Tensor<2, K>,
        ids: Option<&Tensor<1, Int>>,
        first: usize,
        size: usize,
        t: usize,
    ) -> Tensor<2, K> {
        match ids {
            None => table.clone().slice([first..first + size, 0..t]),
            Some(ids) => table.clone().select(0, ids.clone()).slice([0..size, 0..t]),
        }
    }
}

/// A stream of tokens (one part of a text) cut into windows of `block_size` + 1 tokens: a
/// window's first `block_size` tokens are the inputs, its last `block_size` the targets. Every
/// position is a target: there is no padding.
pub struct Windows {
    tokens: Vec<i64>,
    block_size: usize,
    device: Device,
}

impl Windows {
    /// The windows of `tokens`, which must hold at least one (`block_size` + 1 tokens).
    pub fn new(tokens: &[usize], block_size: usize, device: &Device) -> Self {
        assert!(tokens.len() > block_size, "{} tokens hold no window of {}", tokens.len(), block_size + 1);
        Self { tokens: tokens.iter().map(|&t| t as i64).collect(), block_size, device: device.clone() }
    }

    /// Number of distinct windows: the offsets `0..count()`.
    pub fn count(&self) -> usize {
        self.tokens.len() - self.block_size
    }

    /// `n` offsets drawn uniformly (with replacement, as nanoGPT's `get_batch`) by `rng`.
    pub fn draw(&self, rng: &mut PyRandom, n: usize) -> Vec<usize> {
        let count = u32::try_from(self.count()).expect("texts up to 4 G characters");
        (0..n).map(|_| rng.randbelow(count) as usize).collect()
    }

    /// The offsets of step `step` (0-based) of a run seeded `seed`: a generator of their own,
    /// seeded from both, so that any step's batch is drawn without the steps before it.
    pub fn draw_for_step(&self, seed: u64, step: usize, n: usize) -> Vec<usize> {
        self.draw(&mut PyRandom::new(step_seed(seed, step as u64)), n)
    }

    /// Windows side by side from the start, `block_size` apart: each target once; the tail
    /// shorter than a window is left out.
    pub fn tiled(&self) -> Vec<usize> {
        (0..self.count()).step_by(self.block_size).collect()
    }

    /// The windows at `offsets` as one [B, block_size] batch.
    pub fn batch(&self, offsets: &[usize]) -> Batch {
        let t = self.block_size;
        let mut inputs = Vec::with_capacity(offsets.len() * t);
        let mut targets = Vec::with_capacity(offsets.len() * t);
        for &o in offsets {
            inputs.extend_from_slice(&self.tokens[o..o + t]);
            targets.extend_from_slice(&self.tokens[o + 1..o + t + 1]);
        }
        let shape = [offsets.len(), t];
        Batch {
            inputs: Tensor::from_data(TensorData::new(inputs, shape), &self.device),
            targets: Tensor::from_data(TensorData::new(targets, shape), &self.device),
            mask: None,
            n_targets: offsets.len() * t,
            packed: None,
        }
    }
}

/// The seed of step `step`'s window draw: the run's seed and the step mixed (SplitMix64's
/// finaliser), so that neighbouring steps and seeds draw unrelated windows.
fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of a run's held-out windows, drawn once: apart from every step's.
fn held_out_seed(seed: u64) -> u64 {
    step_seed(seed, u64::MAX)
}

/// A run's training batches on `device` (under autodiff) and its held-out set (without), from
/// `data` in windows or documents of `block_size`, padded to it when `fixed`.
pub fn sets(data: &Data, block_size: usize, run: &TrainConfig, fixed: bool, device: &Device) -> (TrainSet, EvalSet) {
    let val = EvalSet::held_out(data, block_size, run.eval_windows, run.seed, fixed, &device.clone().inner());
    (TrainSet::of(data, block_size, fixed, device), val)
}

/// Where a run's training batches come from: its documents in order, or windows of its text.
pub enum TrainSet {
    /// The training documents, `batch_size` at a time, in order (the reference's walk).
    Documents(Box<Batcher>),
    /// Windows of the training part of a text, drawn anew for every step.
    Windows(Windows),
}

impl TrainSet {
    /// The training part of `data` on `device`; documents padded to block_size when `fixed`.
    pub fn of(data: &Data, block_size: usize, fixed: bool, device: &Device) -> Self {
        match data {
            Data::Lines(d) => Self::Documents(Box::new(
                Batcher::new(&d.tokenizer, d.train_docs(), block_size, device).fixed_length(fixed),
            )),
            Data::Text(t) => Self::Windows(Windows::new(t.train_tokens(), block_size, device)),
        }
    }

    /// The batch of step `step` (0-based) of a run with this seed and batch size, cut into
    /// `parts` batches of consecutive rows (as equal as they come; at most one per row). The rows
    /// are the same however many parts: the parts together are the whole batch.
    pub fn batch(&self, step: usize, batch_size: usize, seed: u64, parts: usize) -> Vec<Batch> {
        let parts = parts.clamp(1, batch_size);
        let bounds = |i: usize| i * batch_size / parts; // part i: rows bounds(i)..bounds(i + 1)
        match self {
            Self::Documents(b) => {
                (0..parts).map(|i| b.batch(step * batch_size + bounds(i), bounds(i + 1) - bounds(i))).collect()
            }
            Self::Windows(w) => {
                let offsets = w.draw_for_step(seed, step, batch_size);
                (0..parts).map(|i| w.batch(&offsets[bounds(i)..bounds(i + 1)])).collect()
            }
        }
    }
}

/// What a held-out loss is the mean over: every held-out document, or a fixed set of windows of
/// the held-out part of a text.
pub enum EvalSet {
    /// Documents, evaluated 512 at a time.
    Documents(Box<Batcher>),
    /// Windows at these offsets.
    Windows(Windows, Vec<usize>),
}

impl EvalSet {
    /// The held-out part of `data`: its documents, or `windows` windows drawn once from `seed`.
    pub fn held_out(data: &Data, block_size: usize, windows: usize, seed: u64, fixed: bool, device: &Device) -> Self {
        match data {
            Data::Lines(d) => Self::Documents(Box::new(
                Batcher::new(&d.tokenizer, d.val_docs(), block_size, device).fixed_length(fixed),
            )),
            Data::Text(t) => Self::held_out_windows(t.val_tokens(), block_size, windows, seed, device),
        }
    }

    /// `windows` windows of the held-out `tokens` of a text, drawn once from `seed`.
    pub fn held_out_windows(tokens: &[usize], block_size: usize, windows: usize, seed: u64, device: &Device) -> Self {
        let w = Windows::new(tokens, block_size, device);
        let offsets = w.draw(&mut PyRandom::new(held_out_seed(seed)), windows);
        Self::Windows(w, offsets)
    }

    /// The held-out part of the data file at `path` as a run of settings `run` split it, in the
    /// vocabulary `vocab`; and what that is, for a message.
    pub fn held_out_of_file(
        path: &Path,
        run: &TrainConfig,
        vocab: &Tokenizer,
        block_size: usize,
        device: &Device,
    ) -> Result<(Self, String)> {
        let data = Data::read(path, run.layout, Some(vocab.clone()), &mut PyRandom::new(run.seed))?;
        let set = Self::held_out(&data, block_size, run.eval_windows, run.seed, false, device);
        let what = match data {
            Data::Lines(_) => format!("{} documents: the held-out documents of {}", set.count(), path.display()),
            Data::Text(_) => format!("{} windows: the held-out windows of {}", set.count(), path.display()),
        };
        Ok((set, what))
    }

    /// Every document of the file at `path` (the line layout), or every target of it once (the
    /// text layout: windows side by side), in the vocabulary `vocab`; and what that is.
    pub fn whole_file(
        path: &Path,
        layout: Layout,
        vocab: &Tokenizer,
        block_size: usize,
        device: &Device,
    ) -> Result<(Self, String)> {
        match layout {
            Layout::Lines => {
                let docs = data::read_documents(path)?;
                for doc in &docs {
                    vocab.encode(doc).map_err(|err| {
                        anyhow::anyhow!("document {doc:?}: {err}; evaluate on data with the checkpoint's characters")
                    })?;
                }
                let what = format!("{} documents: every document of {}", docs.len(), path.display());
                Ok((Self::Documents(Box::new(Batcher::new(vocab, &docs, block_size, device))), what))
            }
            Layout::Text => {
                let tokens = vocab.encode(&data::read_text(path)?).map_err(|err| {
                    anyhow::anyhow!("{}: {err}; evaluate on text in the checkpoint's characters", path.display())
                })?;
                if tokens.len() <= block_size {
                    bail!(
                        "{} holds {} characters, fewer than one window of block_size + 1 = {}: evaluate on a longer text",
                        path.display(),
                        tokens.len(),
                        block_size + 1
                    );
                }
                let set = Self::tiled(&tokens, block_size, device);
                let what =
                    format!("{} windows of {block_size} side by side: the whole of {}", set.count(), path.display());
                Ok((set, what))
            }
        }
    }

    /// Every target of `tokens` once: windows side by side (see [`Windows::tiled`]).
    pub fn tiled(tokens: &[usize], block_size: usize, device: &Device) -> Self {
        let w = Windows::new(tokens, block_size, device);
        let offsets = w.tiled();
        Self::Windows(w, offsets)
    }

    /// How many documents or windows the loss is the mean over.
    pub fn count(&self) -> usize {
        match self {
            Self::Documents(b) => b.len(),
            Self::Windows(_, offsets) => offsets.len(),
        }
    }

    /// The batches, in order, each built when it is reached: at most 512 documents; or windows,
    /// about 8,192 positions a batch, fewer where a model of `vocab_size` tokens would make more
    /// than 16M logits (GPT-2's 50,257: 333 positions; a GPU's buffers have a size limit) or each
    /// head's attention weights (windows × T × T) more than 2M numbers (windows over 256 tokens).
    pub fn batches(&self, vocab_size: usize) -> Box<dyn Iterator<Item = Batch> + '_> {
        match self {
            Self::Documents(b) => {
                Box::new((0..b.len()).step_by(512).map(|start| b.batch(start, 512.min(b.len() - start))))
            }
            Self::Windows(w, offsets) => {
                let t = w.block_size;
                let positions = 8192.min((1 << 24) / vocab_size.max(1));
                let windows = (positions / t).min((1 << 21) / (t * t)).max(1);
                Box::new(offsets.chunks(windows).map(|chunk| w.batch(chunk)))
            }
        }
    }
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;

    #[test]
    fn windows_are_shifted_by_one_drawn_in_range_and_repeatable() {
        let device = crate::device::cpu_f64();
        let tokens: Vec<usize> = (0..50).collect();
        let windows = Windows::new(&tokens, 8, &device);
        assert_eq!(windows.count(), 42);
        let a = windows.draw_for_step(7, 3, 64);
        assert!(a.iter().all(|&o| o < 42), "{a:?}");
        assert_eq!(a, windows.draw_for_step(7, 3, 64), "a step draws the same windows every time");
        assert_ne!(a, windows.draw_for_step(7, 4, 64), "the next step draws others");
        assert_ne!(a, windows.draw_for_step(8, 3, 64), "another seed draws others");
        let batch = windows.batch(&[0, 41]);
        let ints = |t: Tensor<2, Int>| t.into_data().iter::<i64>().collect::<Vec<_>>();
        assert_eq!(ints(batch.inputs), [(0..8).collect::<Vec<i64>>(), (41..49).collect()].concat());
        assert_eq!(ints(batch.targets), [(1..9).collect::<Vec<i64>>(), (42..50).collect()].concat());
        assert_eq!(batch.n_targets, 16);
        assert!(batch.mask.is_none() && batch.packed.is_none(), "no padding");
        assert_eq!(windows.tiled(), [0, 8, 16, 24, 32, 40], "every target once, the short tail left out");
    }
}
