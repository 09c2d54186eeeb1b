//! The GPT: microGPT's architecture (SPEC.md) as a Burn `Module`, with the reference's weight
//! names and its Python-compatible initialisation.
//!
//! Shapes: `B` batch, `T` time (positions), `C` channels (`n_embd`), `H` heads, `D` head_dim,
//! `V` vocab_size. Training runs attention over the whole sequence at once under a causal mask;
//! sampling runs one position at a time against a key/value cache ([`KvCache`]).
//! Dropout is off unless a training run asks for it ([`GPT::training_loss`]).
//! Deliberately left out: biases, learnable norm gains, weight tying (the reference has none).

use burn::module::{Module, Param};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Bool, Device, Distribution, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::batch::{Batch, Packing};
use crate::config::GPTConfig;
use crate::kernels;
use crate::rng::PyRandom;

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

/// The whole model. Weight names are the reference's; blocks are `layer.{i}`.
#[derive(Module, Debug)]
pub struct GPT {
    /// [V, C] token embeddings.
    wte: Param<Tensor<2>>,
    /// [block_size, C] position embeddings.
    wpe: Param<Tensor<2>>,
    /// [V, C] output projection to logits.
    lm_head: Param<Tensor<2>>,
    layer: Vec<Block>,
}

/// Keys and values of the positions seen so far, per layer: each [B, H, t, D].
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
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

/// `y = W x` for W stored [out, in], on rows of positions: x [R, in] -> [R, out]. One matrix
/// product for all R positions at once.
fn linear(x: Tensor<2>, w: &Param<Tensor<2>>) -> Tensor<2> {
    kernels::linear(x, w.val())
}

/// `x * (mean(x^2) + eps)^(-1/2)` over channels (the last dimension), with no learnable gain.
fn rmsnorm<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    kernels::rmsnorm(x, RMS_EPS)
}

/// The rows the position-wise layers run on: all B·T positions, or only the packed N; and the
/// dropout of a training pass.
struct Layout<'a> {
    b: usize,
    t: usize,
    packing: Option<&'a Packing>,
    /// The probability of zeroing an activation (nanoGPT's places: the embeddings, the attention
    /// weights, each residual branch); `None` outside training.
    dropout: Option<f64>,
}

impl Layout<'_> {
    /// Inverted dropout: each number kept with probability 1 - p and scaled by 1 / (1 - p), so
    /// that the expected value is unchanged; the identity without dropout.
    fn drop<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self.dropout {
            Some(p) if p > 0.0 => {
                let keep = x.random_like(Distribution::Bernoulli(1.0 - p)); // 1.0 or 0.0
                x * keep / (1.0 - p)
            }
            _ => x,
        }
    }

    /// [B, T, C] -> [R, C]: the rows position-wise layers work on.
    fn pack(&self, x: Tensor<3>) -> Tensor<2> {
        let c = x.dims()[2];
        let x = x.reshape([self.b * self.t, c]);
        match self.packing {
            Some(p) => x.select(0, p.rows.clone()),
            None => x,
        }
    }

    /// [R, C] -> [B, T, C], zeros at the padded positions.
    fn unpack(&self, x: Tensor<2>) -> Tensor<3> {
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

/// How a block turns its scores into attention weights: the causal softmax
/// ([`kernels::causal_softmax`]) under the mask of each query's future keys.
struct Weights {
    /// `[1, 1, T, t_all]`, true where a key lies in a query's future ([`Weights::mask`]); none
    /// for one query, which sees every key.
    future: Option<Tensor<4, Bool>>,
}

impl Weights {
    /// The way for T queries over `t_all` keys on `device`.
    fn new(t: usize, t_all: usize, device: &Device) -> Self {
        Self { future: (t > 1).then(|| Self::mask(t, t_all, device)) }
    }

    /// Query i sits at position `t_all - T + i` and may see keys up to there. Built on the host
    /// once per forward pass and shared by every layer: on a GPU, one upload instead of a dozen
    /// kernel launches per layer.
    fn mask(t: usize, t_all: usize, device: &Device) -> Tensor<4, Bool> {
        let first = t_all - t;
        let future: Vec<bool> = (0..t).flat_map(|i| (0..t_all).map(move |j| j > first + i)).collect();
        Tensor::from_data(TensorData::new(future, [1, 1, t, t_all]), device)
    }

    /// Scores [B, H, T, t_all] -> weights: softmax(scores / √D) over each query's visible keys.
    fn of(&self, scores: Tensor<4>, d: usize) -> Tensor<4> {
        let sqrt_d = (d as f64).sqrt();
        match &self.future {
            Some(future) => kernels::causal_softmax(scores, future, sqrt_d),
            None => softmax(scores / sqrt_d, 3),
        }
    }
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

    /// x [R, C] (the rows of `layout`) at positions `pos0..pos0+T` -> ([R, C], the attention
    /// weights [B, H, T, t_all]). With a cache, attends over the cached positions too and
    /// appends this call's keys and values to it. `weights` hides the keys each query must not
    /// see.
    fn forward(
        &self,
        x: Tensor<2>,
        layout: &Layout,
        weights: &Weights,
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
    ) -> (Tensor<2>, Tensor<4>) {
        let (b, t, c) = (layout.b, layout.t, x.dims()[1]);
        let (h, d) = (self.n_head, c / self.n_head);

        // attention: two residual lines, as in the reference
        let r = x.clone();
        let x = rmsnorm(x);
        let heads = |w: &Param<Tensor<2>>| {
            layout.unpack(linear(x.clone(), w)).reshape([b, t, h, d]).swap_dims(1, 2) // [B, H, T, D]
        };
        let (q, mut k, mut v) = (heads(&self.attn_wq), heads(&self.attn_wk), heads(&self.attn_wv));
        if let Some(cache) = cache {
            if let Some((k_past, v_past)) = cache.take() {
                k = Tensor::cat(vec![k_past, k], 2); // [B, H, t_past + T, D]
                v = Tensor::cat(vec![v_past, v], 2);
            }
            *cache = Some((k.clone(), v.clone()));
        }
        let att = layout.drop(weights.of(kernels::matmul(q, k.swap_dims(2, 3)), d)); // [B, H, T, t_all]
        let y = kernels::matmul(att.clone(), v); // [B, H, T, D]
        let y = y.swap_dims(1, 2).reshape([b, t, c]); // concatenate heads: [B, T, C]
        let x = layout.drop(linear(layout.pack(y), &self.attn_wo)) + r; // [R, C]

        // MLP
        let r = x.clone();
        let x = rmsnorm(x);
        (layout.drop(linear(relu(linear(x, &self.mlp_fc1)), &self.mlp_fc2)) + r, att) // [R, C]
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
        Self { wte, wpe, lm_head, layer }
    }

    /// Token ids [B, T] -> logits [B, T, V], attending causally within the sequence.
    ///
    /// Batches are right-padded: under the causal mask a real position attends only to
    /// earlier positions, all of them real, so padding never reaches a real position; the
    /// loss mask ([`GPT::loss`]) takes the padded positions out of the mean.
    pub fn forward(&self, idx: Tensor<2, Int>) -> Tensor<3> {
        self.forward_at(idx, 0, None)
    }

    /// Token ids [B, T] at positions `pos0..pos0+T` -> logits [B, T, V]. With a cache holding
    /// positions `0..pos0`, only the new positions are computed; the cache grows by T.
    pub fn forward_at(&self, idx: Tensor<2, Int>, pos0: usize, cache: Option<&mut KvCache>) -> Tensor<3> {
        let [b, t] = idx.dims();
        let logits = self.forward_rows(idx, pos0, cache, None, None).0; // [B·T, V]
        let v = logits.dims()[1];
        logits.reshape([b, t, v])
    }

    /// Token ids [B, T] -> (logits [B, T, V], each layer's attention weights [B, H, T, T]):
    /// row i of a head's weights is how much position i draws from each position up to i.
    pub fn forward_with_attention(&self, idx: Tensor<2, Int>) -> (Tensor<3>, Vec<Tensor<4>>) {
        let [b, t] = idx.dims();
        let (logits, attention) = self.forward_rows(idx, 0, None, None, None);
        let v = logits.dims()[1];
        (logits.reshape([b, t, v]), attention)
    }

    /// Token ids [B, T] -> (logits [R, V] of the rows of the layout, attention weights).
    fn forward_rows(
        &self,
        idx: Tensor<2, Int>,
        pos0: usize,
        mut cache: Option<&mut KvCache>,
        packing: Option<&Packing>,
        dropout: Option<f64>,
    ) -> (Tensor<2>, Vec<Tensor<4>>) {
        let [b, t] = idx.dims();
        let layout = Layout { b, t, packing, dropout };
        let c = self.wte.dims()[1];
        let tok_emb = self.wte.val().select(0, idx.reshape([b * t])).reshape([b, t, c]); // [B, T, C]
        let pos_emb = self.wpe.val().narrow(0, pos0, t).unsqueeze::<3>(); // [1, T, C]
        let mut x = layout.drop(rmsnorm(layout.pack(tok_emb + pos_emb))); // [R, C]
        let t_past = cache.as_deref().map_or(0, KvCache::len);
        let weights = Weights::new(t, t_past + t, &x.device());
        let mut attention = Vec::with_capacity(self.layer.len());
        for (i, block) in self.layer.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|cache| &mut cache.layers[i]);
            let (y, att) = block.forward(x, &layout, &weights, layer_cache);
            x = y;
            attention.push(att);
        }
        (linear(x, &self.lm_head), attention) // [R, V]
    }

    /// The mean loss of a batch: on its packed real positions when it has them (the padding is
    /// never computed), else on the padded grid under its mask.
    pub fn batch_loss(&self, batch: Batch) -> Tensor<1> {
        self.training_loss(batch, None)
    }

    /// [`GPT::batch_loss`] with dropout `p` (`None`: none, as for evaluation): the loss a
    /// training step of a run with `--dropout` backpropagates. A packed batch's logits are those
    /// of its N real positions only, row by row ([N, V]): the same numbers as
    /// [`GPT::forward`] at those positions, without computing the padding.
    pub fn training_loss(&self, batch: Batch, dropout: Option<f64>) -> Tensor<1> {
        let [b, t] = batch.inputs.dims();
        match batch.packed {
            Some((packing, targets)) => {
                Self::loss_packed(self.forward_rows(batch.inputs, 0, None, Some(&packing), dropout).0, targets)
            }
            None => {
                let logits = self.forward_rows(batch.inputs, 0, None, None, dropout).0; // [B·T, V]
                let v = logits.dims()[1];
                let mask = batch.mask.map(|m| (m, batch.n_targets));
                Self::loss(logits.reshape([b, t, v]), batch.targets, mask)
            }
        }
    }

    /// The token embeddings `wte` [V, C].
    pub fn wte(&self) -> Tensor<2> {
        self.wte.val()
    }

    /// Mean cross-entropy of `logits` `[N, V]` against `targets` `[N]`.
    pub fn loss_packed(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        kernels::nll(logits, targets.unsqueeze_dim(1)).mean() // [N, 1] -> [1]
    }

    /// Mean cross-entropy of `logits` [B, T, V] against `targets` [B, T]. With a `mask` [B, T]
    /// (1 for real targets, 0 for padding), the mean runs over the `n_targets` real ones only.
    pub fn loss(logits: Tensor<3>, targets: Tensor<2, Int>, mask: Option<(Tensor<2>, usize)>) -> Tensor<1> {
        let targets = targets.unsqueeze_dim(2); // [B, T, 1]
        match mask {
            None => kernels::nll(logits, targets).mean(),
            // one autodiff node: on a GPU its backward pass is a few fusable operations, where
            // the sum, the division and the mask's product were a segment run one by one
            Some((mask, n_targets)) => kernels::masked_nll(logits, targets, mask.unsqueeze_dim(2), n_targets as f64),
        }
    }

    /// Every weight under its reference name, in the reference's drawing order.
    pub fn named_weights(&self) -> Vec<(String, Tensor<2>)> {
        // a module's clone shares its tensors; it only lends `weights_mut` something to borrow
        let mut model = self.clone();
        model.weights_mut().into_iter().map(|(name, w)| (name, w.val())).collect()
    }

    /// The ids of the weights, in [`GPT::named_weights`]' order: the keys of their gradients.
    pub fn weight_ids(&self) -> Vec<burn::module::ParamId> {
        let mut model = self.clone();
        model.weights_mut().into_iter().map(|(_, w)| w.id).collect()
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

    /// The longest context: the number of rows of `wpe`.
    pub fn block_size(&self) -> usize {
        self.wpe.dims()[0]
    }

    /// Number of transformer blocks.
    pub fn n_layer(&self) -> usize {
        self.layer.len()
    }
}

// f64 on the flex CPU backend: the gradient check needs f64, and a GPU-only build has no f64.
#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use crate::device;

    /// Each matrix starts and ends at the draws CPython's `random.gauss(0, 0.08)` gives after
    /// `random.seed(42)`, in SPEC's order, row by row. Printed by:
    /// `python3 -c "import random; random.seed(42); V,C,T=3,4,2; ..."`: for each (name, rows,
    /// cols) of wte [3,4], wpe [2,4], lm_head [3,4], attn_wq..attn_wo [4,4], mlp_fc1 [16,4],
    /// mlp_fc2 [4,16], draw rows*cols values and print the first and the last.
    #[test]
    fn init_draws_in_reference_order() {
        let expected = [
            ("wte", -0.011527226366234268, 0.09308469492793144),
            ("wpe", 0.052530920543893515, -0.008505863501662742),
            ("lm_head", 0.042542097632069543, -0.12116163133801118),
            ("layer0.attn_wq", -0.20959563377750814, 0.038279363012009474),
            ("layer0.attn_wk", -0.05015883721756799, -0.04256612386549701),
            ("layer0.attn_wv", 0.07623166058532613, 0.05994420954317401),
            ("layer0.attn_wo", -0.05787703925211254, 0.030483770236460175),
            ("layer0.mlp_fc1", 0.09815532397713762, 0.05598596973727886),
            ("layer0.mlp_fc2", 0.10192585920755581, -0.03480238435800685),
        ];
        let config = GPTConfig::new(3).with_n_embd(4).with_n_head(2).with_block_size(2);
        let model = GPT::init(&config, &mut PyRandom::new(42), &device::cpu_f64());
        let weights = model.named_weights();
        assert_eq!(weights.len(), expected.len());
        for ((name, w), (want, first, last)) in weights.into_iter().zip(expected) {
            let values: Vec<f64> = w.into_data().iter::<f64>().collect();
            assert_eq!((name.as_str(), values[0], values[values.len() - 1]), (want, first, last));
        }
    }

    /// Logits from a cached, one-position-at-a-time pass equal the full causal pass.
    #[test]
    fn kv_cache_matches_full_forward() {
        let device = device::cpu_f64();
        let config = GPTConfig::new(11).with_n_layer(2).with_n_embd(8).with_n_head(2);
        let model = GPT::init(&config, &mut PyRandom::new(3), &device);
        let ids = [10i64, 3, 7, 1, 0, 5];
        let idx = Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), &device);
        let full: Vec<f64> = model.forward(idx).into_data().iter::<f64>().collect();
        let mut cache = KvCache::new(model.n_layer());
        let mut stepped = Vec::new();
        for (pos, &id) in ids.iter().enumerate() {
            let one = Tensor::<2, Int>::from_data(TensorData::new(vec![id], [1, 1]), &device);
            let logits = model.forward_at(one, pos, Some(&mut cache));
            stepped.extend(logits.into_data().iter::<f64>());
        }
        assert_eq!(cache.len(), ids.len());
        assert_eq!(full.len(), stepped.len());
        for (a, b) in full.iter().zip(&stepped) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }

    /// Autodiff gradients of every weight against central finite differences, in f64, on a
    /// padded batch of two documents (so the mask is exercised too).
    #[test]
    fn autodiff_gradients_match_finite_differences() {
        let device = device::cpu_f64();
        let config = GPTConfig::new(7).with_n_layer(2).with_n_embd(8).with_n_head(2).with_block_size(5);
        let model = GPT::init(&config, &mut PyRandom::new(5), &device.clone().autodiff());
        let ints = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [2, 5]), &device);
        let idx = ints(vec![6, 0, 3, 2, 5, 6, 1, 4, 0, 0]);
        let targets = ints(vec![0, 3, 2, 5, 6, 1, 4, 6, 0, 0]);
        let mask: Tensor<2> =
            Tensor::from_data(TensorData::new(vec![1.0f64, 1., 1., 1., 1., 1., 1., 1., 0., 0.], [2, 5]), &device);
        let loss_of = |m: &GPT| {
            let ad = |t: Tensor<2, Int>| Tensor::<2, Int>::from_data(t.into_data(), &m.devices()[0]);
            let mask = Tensor::<2>::from_data(mask.to_data(), &m.devices()[0]);
            GPT::loss(m.forward(ad(idx.clone())), ad(targets.clone()), Some((mask, 8)))
        };

        let grads = loss_of(&model).backward();
        let analytic: Vec<Vec<f64>> = model
            .named_weights()
            .iter()
            .map(|(_, w)| w.grad(&grads).expect("every weight gets a gradient").into_data().iter::<f64>().collect())
            .collect();

        let base = model.valid();
        let h = 1e-5;
        let mut worst: f64 = 0.0;
        for (k, grad) in analytic.iter().enumerate() {
            let (name, w) = base.named_weights().swap_remove(k);
            let shape = w.dims();
            let values: Vec<f64> = w.into_data().iter::<f64>().collect();
            for (i, g) in grad.iter().enumerate() {
                let loss_at = |delta: f64| {
                    let mut v = values.clone();
                    v[i] += delta;
                    let mut m = base.clone();
                    *m.weights_mut().swap_remove(k).1 =
                        Param::from_tensor(Tensor::from_data(TensorData::new(v, shape), &device));
                    loss_of(&m).into_scalar::<f64>()
                };
                let numeric = (loss_at(h) - loss_at(-h)) / (2.0 * h);
                let err = (numeric - g).abs();
                worst = worst.max(err);
                assert!(err < 1e-7, "{name}[{i}]: autodiff {g} vs finite differences {numeric}");
            }
        }
        assert!(worst > 0.0, "the check compared something");
    }

    /// Packing the real positions of a padded batch changes nothing but the work: the same loss
    /// and the same gradient for every weight as the padded grid under its mask.
    #[test]
    fn packed_batches_give_the_masked_loss_and_gradients() {
        use crate::batch::Batcher;
        use crate::data::Tokenizer;
        let device = device::cpu_f64().autodiff();
        let docs: Vec<String> = ["anna", "bo", "christopher", "eve", "x"].iter().map(|d| d.to_string()).collect();
        let tokenizer = Tokenizer::from_documents(&docs);
        let config =
            GPTConfig::new(tokenizer.vocab_size()).with_n_layer(2).with_n_embd(8).with_n_head(2).with_block_size(8);
        let model = GPT::init(&config, &mut PyRandom::new(4), &device);
        let batcher = Batcher::new(&tokenizer, &docs, config.block_size, &device);
        let batch = batcher.batch(1, 4);
        assert!(batch.packed.is_some() && batch.mask.is_some(), "a padded batch");
        let masked = GPT::loss(
            model.forward(batch.inputs.clone()),
            batch.targets.clone(),
            batch.mask.clone().map(|m| (m, batch.n_targets)),
        );
        let packed = model.batch_loss(batch);
        let grads = |loss: &Tensor<1>| {
            let g = loss.backward();
            model
                .named_weights()
                .iter()
                .map(|(_, w)| w.grad(&g).unwrap().into_data().iter::<f64>().collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        let (gm, gp) = (grads(&masked), grads(&packed));
        let (lm, lp) = (masked.into_scalar::<f64>(), packed.into_scalar::<f64>());
        assert!((lm - lp).abs() < 1e-12, "loss {lm} vs {lp}");
        // the two paths add in other orders (other matrix shapes); measured: 1.2e-9 at most,
        // against gradients of 1e-2: a padding that leaked in would show at 1e-3 and above
        for (a, b) in gm.iter().flatten().zip(gp.iter().flatten()) {
            assert!((a - b).abs() < 1e-7, "gradient {a} vs {b}");
        }
    }

    /// A padded batch's loss is the token-weighted mean of its documents' own losses: the
    /// padding changes nothing, whether the rows are sliced or gathered around the end.
    #[test]
    fn padding_is_masked_out_of_the_loss() {
        use crate::batch::Batcher;
        use crate::data::Tokenizer;
        let device = device::cpu_f64();
        let docs: Vec<String> = ["anna", "bo", "christopher", "eve"].iter().map(|d| d.to_string()).collect();
        let tokenizer = Tokenizer::from_documents(&docs);
        let config = GPTConfig::new(tokenizer.vocab_size()).with_block_size(8);
        let model = GPT::init(&config, &mut PyRandom::new(11), &device);
        let batcher = Batcher::new(&tokenizer, &docs, config.block_size, &device);
        let loss = |start: usize, size: usize| {
            let b = batcher.batch(start, size);
            let n = b.n_targets;
            (GPT::loss(model.forward(b.inputs), b.targets, b.mask.map(|m| (m, n))).into_scalar::<f64>(), n)
        };
        let singles: Vec<(f64, usize)> = (0..docs.len()).map(|i| loss(i, 1)).collect();
        assert_eq!(singles.iter().map(|s| s.1).collect::<Vec<_>>(), [5, 3, 8, 4], "christopher is cut to block_size");
        for (start, size) in [(0, 4), (1, 2), (3, 3)] {
            let (batched, n) = loss(start, size);
            let rows: Vec<usize> = (start..start + size).map(|i| i % docs.len()).collect();
            let expected = rows.iter().map(|&r| singles[r].0 * singles[r].1 as f64).sum::<f64>() / n as f64;
            assert!((batched - expected).abs() < 1e-12, "rows {rows:?}: {batched} vs {expected}");
        }
    }
}
