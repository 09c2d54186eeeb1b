//! The GPT: microGPT's architecture (docs/ALGORITHM.md) as a Burn `Module`, with the reference's
//! weight names and its Python-compatible initialisation. `GPT::forward_rows` and
//! `Block::forward` follow microgpt.py's `gpt()` top to bottom, one operation a line.
//!
//! Shapes: `B` batch, `T` time (positions), `R` rows (the positions a pass computes: all B·T, or
//! a padded batch's real ones only), `C` channels (`n_embd`), `H` heads, `D` head_dim,
//! `V` vocab_size. Everything but attention works on each position alone, on [R, C] rows;
//! attention lays the rows out as sequences [B, H, T, D] to see each position's past. Training
//! runs a whole sequence at once under a causal mask; sampling one position at a time against a
//! key/value cache ([`KvCache`]); `attention` is the one place positions meet, the same for
//! microGPT's blocks and GPT-2's. Every operation is a formula of `crate::gpt::ops`.
//! Deliberately left out: biases, learnable norm gains, weight tying (the reference has none;
//! GPT-2 has them all: `crate::gpt::gpt2`, on the same attention, cache and loss).

use std::cell::RefCell;

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::{Bool, Device, Distribution, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::gpt::batch::{Batch, Packing};
use crate::gpt::config::GPTConfig;
use crate::gpt::ops;
use crate::gpt::rng::PyRandom;

/// The epsilon inside rmsnorm.
const RMS_EPS: f64 = 1e-5;

/// One transformer block: attention then MLP, each behind an rmsnorm and a residual.
#[derive(Module, Debug)]
pub struct Block {
    /// [C, C] query projection, stored [out, in].
    attn_wq: Param<Tensor<2>>,
    /// [C, C] key projection.
    attn_wk: Param<Tensor<2>>,
    /// [C, C] value projection.
    attn_wv: Param<Tensor<2>>,
    /// [C, C] output projection.
    attn_wo: Param<Tensor<2>>,
    /// [4C, C] MLP expansion.
    mlp_fc1: Param<Tensor<2>>,
    /// [C, 4C] MLP projection.
    mlp_fc2: Param<Tensor<2>>,
    n_head: usize,
}

/// The whole model. Weight names are the reference's (block i's are `layer{i}.attn_wq`, ...).
#[derive(Module, Debug)]
pub struct GPT {
    /// [V, C] token embeddings.
    wte: Param<Tensor<2>>,
    /// [block_size, C] position embeddings.
    wpe: Param<Tensor<2>>,
    /// [V, C] output projection to logits.
    lm_head: Param<Tensor<2>>,
    layer: Vec<Block>,
    /// Dropout's probability in training; a setting, not a weight, not saved.
    #[module(skip)]
    dropout: f64,
}

/// What sampling, evaluation and training ask of a GPT, microGPT's ([`GPT`]) or GPT-2's
/// ([`GPT2`](crate::gpt::gpt2::GPT2)): each computes the logits of a pass
/// ([`LanguageModel::forward_rows`]); the rest is the same for both.
pub trait LanguageModel: Module {
    /// Token ids [B, T] at positions `pos0..pos0+T` -> logits [R, V] of the rows. With a cache
    /// holding positions `0..pos0`, only the new positions are computed; the cache grows by T.
    /// With `packing`, the rows are a padded batch's real positions only. On an autodiff device
    /// (training) the model's dropout applies.
    fn forward_rows(
        &self,
        idx: Tensor<2, Int>,
        pos0: usize,
        cache: Option<&mut KvCache>,
        packing: Option<&Packing>,
    ) -> Tensor<2>;

    /// This model with dropout `p` in training (nanoGPT's `dropout`; the reference has none):
    /// every pass on an autodiff device drops out, no other. The training loop sets the run's.
    fn with_dropout(self, p: f64) -> Self;

    /// The longest context: the number of positions with an embedding.
    fn block_size(&self) -> usize;

    /// Number of transformer blocks.
    fn n_layer(&self) -> usize;

    /// Number of tokens in the vocabulary: the logits of a position.
    fn vocab_size(&self) -> usize;

    /// Token ids [B, T] -> logits [B, T, V], attending causally within the sequence.
    ///
    /// Batches are right-padded: under the causal mask a real position attends only to
    /// earlier positions, all of them real, so padding never reaches a real position; the
    /// loss ([`LanguageModel::loss`]) leaves the padded positions out.
    fn forward(&self, idx: Tensor<2, Int>) -> Tensor<3> {
        self.forward_at(idx, 0, None)
    }

    /// Token ids [B, T] at positions `pos0..pos0+T` -> logits [B, T, V]. With a cache holding
    /// positions `0..pos0`, only the new positions are computed; the cache grows by T.
    fn forward_at(&self, idx: Tensor<2, Int>, pos0: usize, cache: Option<&mut KvCache>) -> Tensor<3> {
        let [b, t] = idx.dims();
        let logits = self.forward_rows(idx, pos0, cache, None); // [B·T, V]
        let v = logits.dims()[1];
        logits.reshape([b, t, v])
    }

    /// The mean cross-entropy of a batch over its real targets. A packed batch computes its N real
    /// positions only ([N, V] logits: the same numbers as [`LanguageModel::forward`] at those
    /// positions); a padded one leaves its padding out of the mean under its mask.
    fn loss(&self, batch: Batch) -> Tensor<1> {
        let [b, t] = batch.inputs.dims();
        match batch.packed {
            Some((packing, targets)) => {
                let logits = self.forward_rows(batch.inputs, 0, None, Some(&packing)); // [N, V]
                ops::mean_nll(logits, targets.unsqueeze_dim(1), None)
            }
            None => {
                let logits = self.forward_rows(batch.inputs, 0, None, None); // [B·T, V]
                let v = logits.dims()[1];
                let mask = batch.mask.map(|m| (m.unsqueeze_dim(2), batch.n_targets)); // [B, T, 1]
                ops::mean_nll(logits.reshape([b, t, v]), batch.targets.unsqueeze_dim(2), mask)
            }
        }
    }
}

/// Keys and values of one layer for the positions seen so far: each [B, H, t, D].
pub(crate) type LayerCache = Option<(Tensor<4>, Tensor<4>)>;

/// Keys and values of the positions seen so far, per layer.
pub struct KvCache {
    pub(crate) layers: Vec<LayerCache>,
}

impl KvCache {
    /// An empty cache for a model of `n_layer` blocks.
    pub fn new(n_layer: usize) -> Self {
        Self { layers: (0..n_layer).map(|_| None).collect() }
    }

    /// Number of positions already cached.
    pub fn len(&self) -> usize {
        match self.layers.first() {
            Some(Some((k, _))) => k.dims()[2],
            _ => 0,
        }
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What every layer of one forward pass shares: the batch's grid [B, T] and which
/// of its positions are the rows, the causal mask, and the dropout of a training pass.
pub(crate) struct Pass<'a> {
    b: usize,
    t: usize,
    /// The real positions of a padded batch, when only they are computed (see [`Packing`]).
    packing: Option<&'a Packing>,
    /// `[1, 1, T, t_all]`, true where a key lies in a query's future; none for one query, which
    /// sees every key.
    future: Option<Tensor<4, Bool>>,
    /// The probability of zeroing an activation (nanoGPT's places: the embeddings, the attention
    /// weights, each residual branch); `None` outside training.
    dropout: Option<f64>,
}

/// The dropout a pass of a model whose dropout is `p` applies to tensors on `device`: `p` in
/// training (an autodiff device, as Burn's `nn::Dropout` decides), none otherwise.
fn training_dropout(p: f64, device: &Device) -> Option<f64> {
    (p > 0.0 && device.is_autodiff()).then_some(p)
}

impl<'a> Pass<'a> {
    /// The pass of token ids [B, T], after the positions `cache` holds, of a model whose dropout
    /// is `p` (applied in training only).
    pub(crate) fn new(idx: &Tensor<2, Int>, cache: Option<&KvCache>, packing: Option<&'a Packing>, p: f64) -> Self {
        let [b, t] = idx.dims();
        let t_all = cache.map_or(0, KvCache::len) + t; // the keys: the cached positions and these
        let future = (t > 1).then(|| causal_mask(t, t_all, &idx.device()));
        Self { b, t, packing, future, dropout: training_dropout(p, &idx.device()) }
    }

    /// Inverted dropout: each number kept with probability 1 - p and scaled by 1 / (1 - p), so
    /// that the expected value is unchanged; the identity without dropout.
    pub(crate) fn dropout<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self.dropout {
            Some(p) if p > 0.0 => {
                let keep = x.random_like(Distribution::Bernoulli(1.0 - p)); // 1.0 or 0.0
                x * keep / (1.0 - p)
            }
            _ => x,
        }
    }

    /// [B, T, C] -> [R, C]: the rows the position-wise layers work on.
    pub(crate) fn to_rows(&self, x: Tensor<3>) -> Tensor<2> {
        let c = x.dims()[2];
        let x = x.reshape([self.b * self.t, c]);
        match self.packing {
            Some(p) => x.select(0, p.rows.clone()),
            None => x,
        }
    }

    /// [R, C] -> [B, T, C], zeros at the positions that are not rows.
    pub(crate) fn to_grid(&self, x: Tensor<2>) -> Tensor<3> {
        let c = x.dims()[1];
        let x = match self.packing {
            Some(p) => Tensor::zeros([self.b * self.t, c], &x.device()).select_assign(
                0,
                p.rows.clone(),
                x,
                IndexingUpdateOp::Add,
            ),
            None => x,
        };
        x.reshape([self.b, self.t, c])
    }
}

/// `[1, 1, T, t_all]`, true where a key lies in a query's future: query i sits at position
/// `t_all - T + i` and may see the keys up to there. Built on the host once per forward pass and
/// shared by every layer: on a GPU, one upload instead of a dozen kernel launches per layer.
pub(crate) fn causal_mask(t: usize, t_all: usize, device: &Device) -> Tensor<4, Bool> {
    let first = t_all - t;
    let future: Vec<bool> = (0..t).flat_map(|i| (0..t_all).map(move |j| j > first + i)).collect();
    Tensor::from_data(TensorData::new(future, [1, 1, t, t_all]), device)
}

thread_local! {
    /// The attention weights of the passes [`with_attention`] runs; `None` for every other pass.
    static SEEN: RefCell<Option<Vec<Tensor<4>>>> = const { RefCell::new(None) };
}

/// What `run` returns, and each layer's attention weights [B, H, T, t_all] of the passes it ran
/// (row i of a head's is how much position i draws from each position up to i): a hook, as
/// PyTorch's forward hooks are, for `inspect`'s pictures; every other pass keeps none.
pub fn with_attention<T>(run: impl FnOnce() -> T) -> (T, Vec<Tensor<4>>) {
    SEEN.with(|seen| *seen.borrow_mut() = Some(Vec::new()));
    let out = run();
    (out, SEEN.with(|seen| seen.borrow_mut().take()).unwrap_or_default())
}

/// Every head at once: each row's query against the keys of its sequence up to its own position,
/// softmax(q·k / √D), the weighted sum of their values, the heads side by side. The same for
/// microGPT's blocks and GPT-2's. q, k, v [R, C] -> [R, C].
pub(crate) fn attention(
    q: Tensor<2>,
    k: Tensor<2>,
    v: Tensor<2>,
    n_head: usize,
    pass: &Pass,
    cache: Option<&mut LayerCache>,
) -> Tensor<2> {
    let (b, t, c) = (pass.b, pass.t, q.dims()[1]);
    let (h, d) = (n_head, c / n_head);
    let heads = |x: Tensor<2>| pass.to_grid(x).reshape([b, t, h, d]).swap_dims(1, 2); // [B, H, T, D]
    let (q, mut k, mut v) = (heads(q), heads(k), heads(v));
    if let Some(cache) = cache {
        if let Some((k_past, v_past)) = cache.take() {
            k = Tensor::cat(vec![k_past, k], 2); // [B, H, t_past + T, D]
            v = Tensor::cat(vec![v_past, v], 2);
        }
        *cache = Some((k.clone(), v.clone()));
    }
    let scores = ops::matmul(q, k.swap_dims(2, 3)); // [B, H, T, t_all]
    let att = pass.dropout(ops::causal_softmax(scores, pass.future.as_ref(), (d as f64).sqrt()));
    SEEN.with(|seen| seen.borrow_mut().as_mut().map(|seen| seen.push(att.clone())));
    let y = ops::matmul(att, v); // [B, H, T, D]
    let y = y.swap_dims(1, 2).reshape([b, t, c]); // heads side by side: [B, T, C]
    pass.to_rows(y)
}

/// A [rows, cols] matrix of N(0, std) draws, row by row, as the reference draws it (std 0.08).
fn draw_matrix(rng: &mut PyRandom, rows: usize, cols: usize, std: f64, device: &Device) -> Param<Tensor<2>> {
    let values: Vec<f64> = (0..rows * cols).map(|_| rng.gauss(0.0, std)).collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(values, [rows, cols]), device))
}

impl Block {
    fn init(config: &GPTConfig, rng: &mut PyRandom, device: &Device) -> Self {
        let (c, std) = (config.n_embd, config.init_std());
        Self {
            attn_wq: draw_matrix(rng, c, c, std, device),
            attn_wk: draw_matrix(rng, c, c, std, device),
            attn_wv: draw_matrix(rng, c, c, std, device),
            attn_wo: draw_matrix(rng, c, c, std, device),
            mlp_fc1: draw_matrix(rng, 4 * c, c, std, device),
            mlp_fc2: draw_matrix(rng, c, 4 * c, std, device),
            n_head: config.n_head,
        }
    }

    /// x [R, C] -> [R, C]. With a cache, attends over the cached positions too and appends this
    /// pass's keys and values to it.
    fn forward(&self, x: Tensor<2>, pass: &Pass, cache: Option<&mut LayerCache>) -> Tensor<2> {
        // 1) multi-head attention
        let x_residual = x.clone();
        let x = ops::rmsnorm(x, RMS_EPS);
        let q = ops::linear(x.clone(), self.attn_wq.val()); // [R, C]
        let k = ops::linear(x.clone(), self.attn_wk.val());
        let v = ops::linear(x, self.attn_wv.val());
        let x_attn = attention(q, k, v, self.n_head, pass, cache); // [R, C]
        let x = pass.dropout(ops::linear(x_attn, self.attn_wo.val())) + x_residual;
        // 2) MLP
        let x_residual = x.clone();
        let x = ops::rmsnorm(x, RMS_EPS);
        let x = relu(ops::linear(x, self.mlp_fc1.val())); // [R, 4C]
        pass.dropout(ops::linear(x, self.mlp_fc2.val())) + x_residual // [R, C]
    }
}

impl GPT {
    /// A new model with the reference's initial weights: N(0, init_std) (0.08) drawn from `rng` in the
    /// reference's order (wte, wpe, lm_head, then each layer's six matrices).
    pub fn init(config: &GPTConfig, rng: &mut PyRandom, device: &Device) -> Self {
        let (v, c, std) = (config.vocab_size, config.n_embd, config.init_std());
        let wte = draw_matrix(rng, v, c, std, device);
        let wpe = draw_matrix(rng, config.block_size, c, std, device);
        let lm_head = draw_matrix(rng, v, c, std, device);
        let layer = (0..config.n_layer).map(|_| Block::init(config, rng, device)).collect();
        Self { wte, wpe, lm_head, layer, dropout: 0.0 }
    }
}

impl LanguageModel for GPT {
    /// Token ids [B, T] at positions `pos0..pos0+T` -> logits [R, V] of the rows, as
    /// microgpt.py's `gpt()`.
    fn forward_rows(
        &self,
        idx: Tensor<2, Int>,
        pos0: usize,
        mut cache: Option<&mut KvCache>,
        packing: Option<&Packing>,
    ) -> Tensor<2> {
        let ([b, t], c) = (idx.dims(), self.wte.dims()[1]);
        let pass = Pass::new(&idx, cache.as_deref(), packing, self.dropout);

        let tok_emb = self.wte.val().select(0, idx.reshape([b * t])).reshape([b, t, c]); // [B, T, C]
        let pos_emb = self.wpe.val().narrow(0, pos0, t).unsqueeze::<3>(); // [1, T, C]
        let x = pass.to_rows(tok_emb + pos_emb); // [R, C]
        let mut x = pass.dropout(ops::rmsnorm(x, RMS_EPS));
        for (i, block) in self.layer.iter().enumerate() {
            x = block.forward(x, &pass, cache.as_deref_mut().map(|cache| &mut cache.layers[i]));
        }
        ops::linear(x, self.lm_head.val()) // [R, V]
    }

    fn with_dropout(self, p: f64) -> Self {
        Self { dropout: p, ..self }
    }

    /// The longest context: the number of rows of `wpe`.
    fn block_size(&self) -> usize {
        self.wpe.dims()[0]
    }

    fn n_layer(&self) -> usize {
        self.layer.len()
    }

    fn vocab_size(&self) -> usize {
        self.wte.dims()[0]
    }
}

impl GPT {
    /// The token embeddings `wte` [V, C].
    pub fn wte(&self) -> Tensor<2> {
        self.wte.val()
    }

    /// Every weight under its reference name, in the reference's drawing order.
    pub fn named_weights(&self) -> Vec<(String, Tensor<2>)> {
        // a module's clone shares its tensors; it only lends `weights_mut` something to borrow
        let mut model = self.clone();
        model.weights_mut().into_iter().map(|(name, w)| (name, w.val())).collect()
    }

    /// The one list of the weights: every weight under its reference name, in the reference's
    /// drawing order (wte, wpe, lm_head, then `layer{i}.attn_wq` ... `layer{i}.mlp_fc2`).
    fn weights_mut(&mut self) -> Vec<(String, &mut Param<Tensor<2>>)> {
        let mut weights = vec![
            ("wte".to_string(), &mut self.wte),
            ("wpe".to_string(), &mut self.wpe),
            ("lm_head".to_string(), &mut self.lm_head),
        ];
        for (i, b) in self.layer.iter_mut().enumerate() {
            for (name, w) in [
                ("attn_wq", &mut b.attn_wq),
                ("attn_wk", &mut b.attn_wk),
                ("attn_wv", &mut b.attn_wv),
                ("attn_wo", &mut b.attn_wo),
                ("mlp_fc1", &mut b.mlp_fc1),
                ("mlp_fc2", &mut b.mlp_fc2),
            ] {
                weights.push((format!("layer{i}.{name}"), w));
            }
        }
        weights
    }
}

// f64 on the flex CPU backend: the gradient check needs f64, and a GPU-only build has no f64.
#[cfg(all(test, feature = "cpu"))]
#[path = "model_tests.rs"]
mod tests;
