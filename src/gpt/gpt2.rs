//! GPT-2: OpenAI's architecture, as nanoGPT's `model.py` and transformers' `GPT2LMHeadModel`
//! write it, on the same attention, key/value cache and loss as microGPT's [`GPT`](super::model::GPT).
//! What GPT-2 changes, side by side (docs/TOUR.md has the whole list):
//!
//! | microGPT                        | GPT-2                                                |
//! |---------------------------------|------------------------------------------------------|
//! | rmsnorm, no gain                | LayerNorm with a gain and a bias (eps 1e-5)          |
//! | ReLU                            | GELU, its tanh form (transformers' `gelu_new`)       |
//! | no biases                       | a bias on every linear layer                         |
//! | rmsnorm after the embeddings    | none; a last LayerNorm (`ln_f`) before the logits    |
//! | its own `lm_head`               | the logits against `wte` itself (tied)               |
//! | q, k, v: three matrices         | one, `c_attn`, its output cut in three               |
//!
//! Burn's `nn` modules hold the weights: `Embedding`, `LayerNorm`, `Linear`. A `Linear` stores
//! its weight [in, out], which is how transformers' `Conv1D` stores GPT-2's: OpenAI's numbers load
//! as they are. The weights keep Hugging Face's names (`h.0.attn.c_attn.weight`, ...):
//! [`GPT2::tensors`] lists them, [`GPT2::from_tensors`] builds the model from them, and
//! `crate::program::hf` reads and writes them as files.

use anyhow::{Result, bail};
use burn::module::{Module, Param, ParamId};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{DType, Device, Distribution, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::gpt::batch::Packing;
use crate::gpt::model::{KvCache, LanguageModel, LayerCache, Pass, attention};
use crate::gpt::ops;

/// GPT-2's shapes, under the names of transformers' `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GPT2Config {
    /// Tokens in the vocabulary: 50257 (GPT-2's BPE).
    pub vocab_size: usize,
    /// The longest context.
    pub n_positions: usize,
    /// Channels.
    pub n_embd: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads.
    pub n_head: usize,
    /// The epsilon inside every LayerNorm.
    #[serde(default = "layer_norm_epsilon")]
    pub layer_norm_epsilon: f64,
}

fn layer_norm_epsilon() -> f64 {
    1e-5
}

impl GPT2Config {
    /// OpenAI's GPT-2 124M ("gpt2"): 12 layers of 768 channels, 12 heads, 1024 positions.
    pub fn gpt2() -> Self {
        Self { vocab_size: 50257, n_positions: 1024, n_embd: 768, n_layer: 12, n_head: 12, layer_norm_epsilon: 1e-5 }
    }

    /// Refuse shapes no model has.
    pub fn validate(&self) -> Result<()> {
        if [self.vocab_size, self.n_positions, self.n_embd, self.n_layer, self.n_head].contains(&0) {
            bail!("a GPT-2 needs every size above 0: {self:?}");
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            bail!("n_embd {} is not a multiple of n_head {}", self.n_embd, self.n_head);
        }
        Ok(())
    }

    /// Number of weights: embeddings, 12C² + 13C per block, the last LayerNorm (the head is `wte`).
    pub fn num_params(&self) -> usize {
        let c = self.n_embd;
        (self.vocab_size + self.n_positions) * c + self.n_layer * (12 * c * c + 13 * c) + 2 * c
    }
}

/// One block: attention then MLP, each behind a LayerNorm and a residual.
#[derive(Module, Debug)]
pub struct Block {
    ln_1: LayerNorm,
    /// [C, 3C]: the queries, keys and values of every head at once.
    c_attn: Linear,
    /// [C, C]: attention's output projection (`attn.c_proj`).
    attn_proj: Linear,
    ln_2: LayerNorm,
    /// [C, 4C]: the MLP's expansion.
    c_fc: Linear,
    /// [4C, C]: the MLP's projection (`mlp.c_proj`).
    mlp_proj: Linear,
    n_head: usize,
}

/// The whole model.
#[derive(Module, Debug)]
pub struct GPT2 {
    /// [V, C] token embeddings, and the output projection to logits.
    wte: Embedding,
    /// [n_positions, C] position embeddings.
    wpe: Embedding,
    h: Vec<Block>,
    ln_f: LayerNorm,
    /// The shapes, as `config.json` writes them; not a weight.
    #[module(skip)]
    config: GPT2Config,
    /// Dropout's probability in training; a setting, not a weight, not saved.
    #[module(skip)]
    dropout: f64,
}

impl Block {
    /// x [R, C] -> [R, C], as nanoGPT's `Block`.
    fn forward(&self, x: Tensor<2>, pass: &Pass, cache: Option<&mut LayerCache>) -> Tensor<2> {
        // 1) multi-head attention
        let x_residual = x.clone();
        let qkv = ops::affine(self.ln_1.forward(x), &self.c_attn); // [R, 3C]
        let [q, k, v] = <[Tensor<2>; 3]>::try_from(qkv.chunk(3, 1)).expect("three equal parts"); // [R, C] each
        let x_attn = attention(q, k, v, self.n_head, pass, cache); // [R, C]
        let x = pass.dropout(ops::affine(x_attn, &self.attn_proj)) + x_residual;
        // 2) MLP
        let x_residual = x.clone();
        let x = ops::gelu(ops::affine(self.ln_2.forward(x), &self.c_fc)); // [R, 4C]
        pass.dropout(ops::affine(x, &self.mlp_proj)) + x_residual // [R, C]
    }
}

impl LanguageModel for GPT2 {
    fn forward_rows(
        &self,
        idx: Tensor<2, Int>,
        pos0: usize,
        mut cache: Option<&mut KvCache>,
        packing: Option<&Packing>,
    ) -> Tensor<2> {
        let t = idx.dims()[1];
        let pass = Pass::new(&idx, cache.as_deref(), packing, self.dropout);

        let pos_emb = self.wpe.weight.val().narrow(0, pos0, t).unsqueeze::<3>(); // [1, T, C]
        let tok_emb = self.wte.forward(idx).cast(pos_emb.dtype()); // [B, T, C]; from bf16 too (--dtype bf16)
        let mut x = pass.dropout(pass.to_rows(tok_emb + pos_emb)); // [R, C]
        for (i, block) in self.h.iter().enumerate() {
            x = block.forward(x, &pass, cache.as_deref_mut().map(|cache| &mut cache.layers[i]));
        }
        ops::linear(self.ln_f.forward(x), self.wte.weight.val()) // [R, V]: x · wteᵀ
    }

    fn with_dropout(self, p: f64) -> Self {
        Self { dropout: p, ..self }
    }

    fn block_size(&self) -> usize {
        self.wpe.weight.dims()[0]
    }

    fn n_layer(&self) -> usize {
        self.h.len()
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }
}

/// A weight under its Hugging Face name, with its numbers and shape.
pub type NamedTensor = (String, TensorData);

impl GPT2 {
    /// A new model with GPT-2's initialisation (nanoGPT's): weights N(0, 0.02), each residual
    /// projection N(0, 0.02/√(2·n_layer)), biases 0, LayerNorm gains 1, drawn by Burn's generator
    /// (seed it with `device.seed`).
    pub fn random(config: &GPT2Config, device: &Device) -> Result<Self> {
        let std_proj = 0.02 / (2.0 * config.n_layer as f64).sqrt();
        Self::from_tensors(config, device, |name, shape| {
            let len = shape.iter().product::<usize>();
            let constant = |x: f32| Ok(TensorData::new(vec![x; len], shape.to_vec()));
            let normal = |std: f64| {
                let values = Tensor::<1>::random([len], Distribution::Normal(0.0, std), device).into_data();
                Ok(TensorData::new(values.convert::<f32>().try_into_vec::<f32>().expect("f32 numbers"), shape.to_vec()))
            };
            match name {
                _ if name.ends_with("bias") => constant(0.0),
                _ if name.contains("ln_") => constant(1.0), // a LayerNorm's gain
                _ if name.ends_with("c_proj.weight") => normal(std_proj),
                _ => normal(0.02),
            }
        })
    }

    /// The model of `config`, each weight taken from `weight(name, shape)` under its Hugging Face
    /// name (the hub's, without `transformer.`), which returns numbers of that shape or an error.
    pub fn from_tensors(
        config: &GPT2Config,
        device: &Device,
        weight: impl FnMut(&str, &[usize]) -> Result<TensorData>,
    ) -> Result<Self> {
        config.validate()?;
        let c = config.n_embd;
        let mut w = Weights { weight, device, eps: config.layer_norm_epsilon };
        let wte = Embedding { weight: w.param("wte.weight", [config.vocab_size, c])? };
        let wpe = Embedding { weight: w.param("wpe.weight", [config.n_positions, c])? };
        let h = (0..config.n_layer)
            .map(|i| {
                Ok(Block {
                    ln_1: w.layer_norm(&format!("h.{i}.ln_1"), c)?,
                    c_attn: w.linear(&format!("h.{i}.attn.c_attn"), c, 3 * c)?,
                    attn_proj: w.linear(&format!("h.{i}.attn.c_proj"), c, c)?,
                    ln_2: w.layer_norm(&format!("h.{i}.ln_2"), c)?,
                    c_fc: w.linear(&format!("h.{i}.mlp.c_fc"), c, 4 * c)?,
                    mlp_proj: w.linear(&format!("h.{i}.mlp.c_proj"), 4 * c, c)?,
                    n_head: config.n_head,
                })
            })
            .collect::<Result<_>>()?;
        let ln_f = w.layer_norm("ln_f", c)?;
        Ok(Self { wte, wpe, h, ln_f, config: config.clone(), dropout: 0.0 })
    }

    /// Every weight under its Hugging Face name, in [`GPT2::from_tensors`]' order.
    pub fn tensors(&self) -> Vec<NamedTensor> {
        let mut out = vec![
            ("wte.weight".to_string(), self.wte.weight.val().into_data()),
            ("wpe.weight".to_string(), self.wpe.weight.val().into_data()),
        ];
        let norm = |out: &mut Vec<NamedTensor>, name: String, n: &LayerNorm| {
            out.push((format!("{name}.weight"), n.gamma.val().into_data()));
            out.push((format!("{name}.bias"), n.beta.as_ref().expect("GPT-2's norms have a bias").val().into_data()));
        };
        let linear = |out: &mut Vec<NamedTensor>, name: String, l: &Linear| {
            out.push((format!("{name}.weight"), l.weight.val().into_data()));
            out.push((format!("{name}.bias"), l.bias.as_ref().expect("GPT-2's layers have a bias").val().into_data()));
        };
        for (i, b) in self.h.iter().enumerate() {
            norm(&mut out, format!("h.{i}.ln_1"), &b.ln_1);
            linear(&mut out, format!("h.{i}.attn.c_attn"), &b.c_attn);
            linear(&mut out, format!("h.{i}.attn.c_proj"), &b.attn_proj);
            norm(&mut out, format!("h.{i}.ln_2"), &b.ln_2);
            linear(&mut out, format!("h.{i}.mlp.c_fc"), &b.c_fc);
            linear(&mut out, format!("h.{i}.mlp.c_proj"), &b.mlp_proj);
        }
        norm(&mut out, "ln_f".into(), &self.ln_f);
        out
    }

    /// The shapes of this model, as `config.json` gives them.
    pub fn config(&self) -> &GPT2Config {
        &self.config
    }
}

/// Where [`GPT2::from_tensors`] takes each weight from, checking its shape.
struct Weights<'a, F> {
    weight: F,
    device: &'a Device,
    eps: f64,
}

impl<F: FnMut(&str, &[usize]) -> Result<TensorData>> Weights<'_, F> {
    fn param<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<Param<Tensor<D>>> {
        let data = (self.weight)(name, &shape)?;
        if data.shape().as_slice() != shape {
            bail!("weight {name} has shape {:?}; the config asks for {shape:?}", data.shape().as_slice());
        }
        // in the device's float type; a matrix given in bf16 (`--dtype bf16`) is held in bf16
        let tensor = match data.dtype() {
            DType::BF16 => Tensor::from_data(data, (self.device, DType::BF16)),
            _ => Tensor::from_data(data, self.device),
        };
        let mut param = Param::from_tensor(tensor);
        param.id = ParamId::from(name_id(name)); // the same in every run: how Adam's saved state finds it
        Ok(param)
    }

    fn layer_norm(&mut self, name: &str, c: usize) -> Result<LayerNorm> {
        let mut norm = LayerNormConfig::new(c).with_epsilon(self.eps).init(self.device);
        norm.gamma = self.param(&format!("{name}.weight"), [c])?;
        norm.beta = Some(self.param(&format!("{name}.bias"), [c])?);
        Ok(norm)
    }

    /// A `Linear` of weight [d_in, d_out] (transformers' `Conv1D` layout) and bias [d_out].
    fn linear(&mut self, name: &str, d_in: usize, d_out: usize) -> Result<Linear> {
        let weight = self.param(&format!("{name}.weight"), [d_in, d_out])?;
        Ok(Linear { weight, bias: Some(self.param(&format!("{name}.bias"), [d_out])?) })
    }
}

/// A weight's parameter id, from its name (64-bit FNV-1a): a model read back from its Hugging Face
/// files has the ids that the optimizer state saved beside them is keyed by.
fn name_id(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}
