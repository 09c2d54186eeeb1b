//! Batches: documents as padded token tables on the device, and the slice of them one step
//! trains on.
//!
//! The tables are built once ([`Batcher::new`]); a step only slices (or, wrapping around the end,
//! gathers) its rows. A batch is right-padded to its longest document; on a CPU it also carries
//! the positions of its real tokens ([`Packing`]) so that the model skips the padding's work.
//! Deliberately left out: sampling batches at random (the reference walks the documents in order).

use burn::tensor::kind::Basic;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::data::{Tokenizer, doc_tokens};

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
    /// Number of predicted positions per document (`n` in SPEC).
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
