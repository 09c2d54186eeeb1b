//! A run's two configurations, each default written once: the model's architecture
//! ([`GPTConfig`]) and the training run's settings ([`TrainConfig`], the reference's by default),
//! both plain serde structs as GPT-2's [`GPT2Config`](crate::gpt::gpt2::GPT2Config) is; the
//! named presets in one table ([`Preset::row`]); the checks that refuse what cannot work.
//! Checkpoints save both whole; [`first_difference`] names what a resumed run would change. The
//! vocabulary size comes from the data set; the flags (`cli.rs`) only override these values.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::device::Precision;
use crate::gpt::data::{Corpus, Layout};
use crate::gpt::train::Decay;

/// Architecture of the GPT, and nothing else. [`GPTConfig::new`] is the reference's
/// (docs/ALGORITHM.md); another is written from it: `GPTConfig { n_embd: 32, ..GPTConfig::new(27) }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GPTConfig {
    /// Number of tokens: the data set's characters plus BOS.
    pub vocab_size: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Width of the residual stream (channels, `C`).
    pub n_embd: usize,
    /// Number of attention heads; each has `n_embd / n_head` channels.
    pub n_head: usize,
    /// Longest context the model sees; longer documents are cut, as the reference does.
    pub block_size: usize,
    /// Standard deviation of every initial weight; `None` is the reference's 0.08 (nanoGPT draws
    /// 0.02). Optional, so that checkpoints written before it existed read as the reference.
    #[serde(default)]
    pub init_std: Option<f64>,
}

/// The longest context a model may have (its position embeddings alone are block_size x C).
pub const MAX_BLOCK_SIZE: usize = 1 << 20;

/// The reference's standard deviation of the initial weights.
pub const REFERENCE_INIT_STD: f64 = 0.08;

/// Named model sizes with their training settings, one row each of [`Preset::row`]. The names
/// presets keep `block_size` 16 (names are at most 15 characters); the Shakespeare presets are
/// nanoGPT's two `shakespeare_char` runs and its two GPT-2 Shakespeare runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// The reference: 1 layer, 16 channels, 4 heads (4,192 parameters on names.txt).
    Reference,
    /// 2 layers, 64 channels, 4 heads (~0.1M parameters): trains in seconds on a CPU.
    Small,
    /// 4 layers, 128 channels, 4 heads (~0.8M parameters): a CPU still copes, a GPU shines.
    Medium,
    /// 6 layers, 384 channels, 6 heads (10,643,712 parameters on names.txt: the widths of nanoGPT's "baby GPT",
    /// whose block is 256 where every preset here keeps 16): for a GPU.
    Large,
    /// nanoGPT's Shakespeare run on a CPU: 4 layers, 128 channels, 4 heads, block 64, batch 12,
    /// 2,000 steps of lr 1e-3 (warmup 100, cosine to 1e-4), weight decay 0.1, clipping 1.0,
    /// betas 0.9/0.99, f32, on the shakespeare data set as one text.
    ShakespeareCharCpu,
    /// nanoGPT's "baby GPT" (`train_shakespeare_char.py`): 6 layers, 384 channels, 6 heads,
    /// block 256, batch 64, dropout 0.2, 5,000 steps, initial weights of std 0.02 (nanoGPT's);
    /// otherwise as shakespeare-char-cpu. For a GPU.
    #[value(alias = "baby-gpt")]
    ShakespeareChar,
    /// A GPT-2 (LayerNorm, GELU, biases, tied embeddings) trained from scratch on Shakespeare in
    /// GPT-2's tokens (nanoGPT's `shakespeare` data set), sized for a CPU: 4 layers, 128
    /// channels, 4 heads, block 64, with shakespeare-char-cpu's training settings.
    Gpt2ShakespeareCpu,
    /// nanoGPT's `finetune_shakespeare.py`: OpenAI's GPT-2 (`--init-from gpt2` unless another is
    /// given) fine-tuned on Shakespeare, 20 steps of 32 windows of 1024 tokens at a constant lr
    /// 3e-5, AdamW (betas 0.9/0.95, weight decay 0.1), clipping 1.0, evaluated every 5 steps on 40
    /// windows. For a GPU.
    Gpt2FinetuneShakespeare,
}

/// A training run's settings: everything a resume must keep to continue exactly. The defaults
/// are the reference's (microgpt.py's); the Shakespeare presets' are nanoGPT's ([`Preset::row`]).
/// Saved whole in `checkpoint.json` (as `run`); a setting missing from an older checkpoint reads
/// as the reference's (`checkpoint` refuses one without the settings every format has recorded).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Seed of the Python-compatible generator: shuffle, initial weights, samples, windows.
    pub seed: u64,
    /// Steps of the whole run (the learning-rate schedule spans them).
    pub num_steps: usize,
    /// The peak learning rate (reached after the warmup).
    pub lr: f64,
    /// Documents, or windows of a text, per step.
    pub batch_size: usize,
    /// Float precision of the weights: f64, the reference's, on a CPU (a GPU computes in f32).
    pub precision: Precision,
    /// Steps of linear learning-rate warmup.
    pub warmup_steps: usize,
    /// How the learning rate falls after the warmup.
    pub decay: Decay,
    /// The learning rate the decay ends at.
    pub min_lr: f64,
    /// AdamW's decoupled weight decay on every matrix (nanoGPT's choice: GPT-2's biases and norm
    /// gains are not decayed; microGPT's weights are all matrices); 0 is plain Adam.
    pub weight_decay: f64,
    /// Scale the gradients so that their norm, all together, is at most this.
    pub grad_clip: Option<f64>,
    /// The probability of zeroing an activation in training.
    pub dropout: f64,
    /// Adam's decay of the mean of the gradients.
    pub beta1: f64,
    /// Adam's decay of the mean of the squared gradients.
    pub beta2: f64,
    /// How the data file is read: one document per line, or one text.
    pub layout: Layout,
    /// The text layout's held-out loss is the mean over this many windows of the held-out
    /// tenth, drawn once from the seed (the line layout evaluates every held-out document).
    pub eval_windows: usize,
}

impl Default for TrainConfig {
    /// The reference run.
    fn default() -> Self {
        Self {
            seed: 42,
            num_steps: 1000,
            lr: 0.01,
            batch_size: 1,
            precision: Precision::F64,
            warmup_steps: 0,
            decay: Decay::Linear,
            min_lr: 0.0,
            weight_decay: 0.0,
            grad_clip: None,
            dropout: 0.0,
            beta1: 0.85,
            beta2: 0.99,
            layout: Layout::Lines,
            eval_windows: 500,
        }
    }
}

impl TrainConfig {
    /// Refuse a schedule that cannot run: a warmup as long as the run, a floor above the peak, a
    /// weight decay that would flip the weights' sign.
    pub fn validate(&self) -> Result<()> {
        if self.warmup_steps >= self.num_steps {
            bail!(
                "--warmup-steps {} leaves no step to decay over in --steps {}: warm up for fewer steps",
                self.warmup_steps,
                self.num_steps
            );
        }
        if self.min_lr > self.lr {
            bail!("--min-lr {} is above --lr {}: the decay ends below where it starts", self.min_lr, self.lr);
        }
        if self.lr * self.weight_decay >= 1.0 {
            bail!(
                "--weight-decay {} at --lr {} would scale every weight by {} a step: keep lr * weight decay below 1",
                self.weight_decay,
                self.lr,
                1.0 - self.lr * self.weight_decay
            );
        }
        Ok(())
    }
}

/// The first setting, in the order the struct declares them, whose value in `wanted` differs
/// from `saved`: its field name and both values as a person would type them (`0.01`, `cosine`,
/// `f32`, `none`). What a resume names when a flag would change the saved run.
pub fn first_difference<T: Serialize>(saved: &T, wanted: &T) -> Option<(String, String, String)> {
    let wanted = json_fields(wanted);
    json_fields(saved)
        .into_iter()
        .zip(wanted)
        .find(|((_, saved), (_, wanted))| saved != wanted)
        .map(|((key, saved), (_, wanted))| (key, typed(&wanted), typed(&saved)))
}

/// Every field of a configuration with its value as a person would type it, in the order the
/// struct declares them.
pub fn fields<T: Serialize>(config: &T) -> Vec<(String, String)> {
    json_fields(config).into_iter().map(|(key, value)| (key, typed(&value))).collect()
}

/// The fields of a configuration as JSON values, in the order the struct declares them
/// (serde_json's `preserve_order` keeps it).
fn json_fields<T: Serialize>(config: &T) -> Vec<(String, serde_json::Value)> {
    match serde_json::to_value(config).expect("a configuration serializes") {
        serde_json::Value::Object(fields) => fields.into_iter().collect(),
        _ => unreachable!("a configuration serializes to a JSON object"),
    }
}

/// A JSON value as a person would type it: numbers as Rust prints them, names in lower case,
/// `none` for null.
fn typed(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "none".to_string(),
        serde_json::Value::String(s) => s.to_lowercase(),
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(n) => n.to_string(),
            None => n.as_f64().map_or_else(|| n.to_string(), |x| x.to_string()),
        },
        other => other.to_string(),
    }
}

impl Preset {
    /// Every preset, smallest first.
    pub const ALL: [Preset; 8] = [
        Preset::Reference,
        Preset::Small,
        Preset::Medium,
        Preset::Large,
        Preset::ShakespeareCharCpu,
        Preset::ShakespeareChar,
        Preset::Gpt2ShakespeareCpu,
        Preset::Gpt2FinetuneShakespeare,
    ];

    /// The preset's name on the command line.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self).expect("no preset is skipped").get_name().to_string()
    }

    /// Every preset's row: its model's sizes, its training settings, the data set it trains on
    /// when `--data` is not given and how often it evaluates on the held-out data (always once at
    /// the end). The names presets train as the reference; the Shakespeare presets as nanoGPT's
    /// `train_shakespeare_char.py` with its README's CPU flags (2,000 steps of lr 1e-3, warmup
    /// 100, cosine to 1e-4, weight decay 0.1, clipping 1.0, betas 0.9/0.99, batch 12, f32, the data
    /// as one text), evaluating every 250 steps as it does.
    pub fn row(self) -> PresetRow {
        let reference = TrainConfig::default();
        let cpu = TrainConfig {
            num_steps: 2000,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 100,
            decay: Decay::Cosine,
            weight_decay: 0.1,
            grad_clip: Some(1.0),
            beta1: 0.9,
            batch_size: 12,
            precision: Precision::F32,
            layout: Layout::Text,
            ..reference.clone()
        };
        let row = |[n_layer, n_embd, n_head, block_size]: [usize; 4], run: &TrainConfig, dataset, eval_every| {
            let sizes = GPTConfig { n_layer, n_embd, n_head, block_size, ..GPTConfig::new(0) };
            PresetRow { sizes, run: run.clone(), dataset, eval_every, gpt2: false }
        };
        let (names, text) = (Corpus::Names, Corpus::Shakespeare);
        match self {
            //                     layers, channels, heads, block; training, data set, evaluate every
            Preset::Reference => row([1, 16, 4, 16], &reference, names, None),
            Preset::Small => row([2, 64, 4, 16], &reference, names, None),
            Preset::Medium => row([4, 128, 4, 16], &reference, names, None),
            Preset::Large => row([6, 384, 6, 16], &reference, names, None),
            Preset::ShakespeareCharCpu => row([4, 128, 4, 64], &cpu, text, Some(250)),
            // batch 64, dropout 0.2, 5,000 steps; at 6 x 384 the reference's 0.08 starts near a
            // loss of 30 (no final norm: the logits grow with the width and depth), nanoGPT's
            // 0.02 at ln(vocab)
            Preset::ShakespeareChar => {
                let run = TrainConfig { num_steps: 5000, batch_size: 64, dropout: 0.2, ..cpu };
                let mut row = row([6, 384, 6, 256], &run, text, Some(250));
                row.sizes.init_std = Some(0.02);
                row
            }
            Preset::Gpt2ShakespeareCpu => PresetRow { gpt2: true, ..row([4, 128, 4, 64], &cpu, text, Some(250)) },
            // finetune_shakespeare.py: 20 steps of 32 windows at a constant lr 3e-5 (the floor is
            // the peak), betas 0.9/0.95, the held-out loss over 40 windows every 5 steps (nanoGPT
            // reaches its 32 windows as 32 micro-steps of one: the same gradient); the sizes of
            // OpenAI's GPT-2 124M, which --init-from replaces by the model's own
            Preset::Gpt2FinetuneShakespeare => {
                let run = TrainConfig {
                    num_steps: 20,
                    lr: 3e-5,
                    min_lr: 3e-5,
                    warmup_steps: 0,
                    beta2: 0.95,
                    batch_size: 32,
                    eval_windows: 40,
                    ..cpu
                };
                PresetRow { gpt2: true, ..row([12, 768, 12, 1024], &run, text, Some(5)) }
            }
        }
    }
}

/// One preset: what [`Preset::row`] gives.
pub struct PresetRow {
    /// The model's sizes, for a vocabulary of 0 tokens (the data set's is set when it is read).
    pub sizes: GPTConfig,
    /// The training settings.
    pub run: TrainConfig,
    /// The data set trained on when `--data` is not given.
    pub dataset: Corpus,
    /// How often to evaluate on the held-out data, besides the end.
    pub eval_every: Option<usize>,
    /// Whether the model is a GPT-2 (GPT-2's architecture and tokens).
    pub gpt2: bool,
}

impl GPTConfig {
    /// The sizes in one line: `n_layer 1, n_embd 16, n_head 4, block_size 16`.
    pub fn describe(&self) -> String {
        format!(
            "n_layer {}, n_embd {}, n_head {}, block_size {}",
            self.n_layer, self.n_embd, self.n_head, self.block_size
        )
    }

    /// The reference's architecture for a vocabulary of `vocab_size` tokens: 1 layer, 16
    /// channels, 4 heads, a context of 16, initial weights of std 0.08.
    pub fn new(vocab_size: usize) -> Self {
        Self { vocab_size, n_layer: 1, n_embd: 16, n_head: 4, block_size: 16, init_std: None }
    }

    /// The architecture of a preset for a vocabulary of `vocab_size` tokens.
    pub fn preset(preset: Preset, vocab_size: usize) -> Self {
        Self { vocab_size, ..preset.row().sizes }
    }

    /// Standard deviation of the initial weights.
    pub fn init_std(&self) -> f64 {
        self.init_std.unwrap_or(REFERENCE_INIT_STD)
    }

    /// Channels per attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Number of scalar weights, counted the reference's way.
    pub fn num_params(&self) -> usize {
        let (v, c) = (self.vocab_size, self.n_embd);
        let per_layer = 4 * c * c + 2 * 4 * c * c;
        v * c + self.block_size * c + v * c + self.n_layer * per_layer
    }

    /// Refuse sizes that cannot make a model, naming the flag to change.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("n-layer", self.n_layer),
            ("n-embd", self.n_embd),
            ("n-head", self.n_head),
            ("block-size", self.block_size),
        ] {
            if value == 0 {
                bail!("--{name} must be at least 1");
            }
        }
        if self.block_size > MAX_BLOCK_SIZE {
            bail!("--block-size {} is larger than this program supports ({MAX_BLOCK_SIZE})", self.block_size);
        }
        if self.vocab_size < 2 {
            bail!("the vocabulary needs at least one character besides BOS");
        }
        let std = self.init_std();
        if !(std.is_finite() && std > 0.0) {
            bail!("--init-std must be a finite number above 0 (got {std})");
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            bail!(
                "--n-embd {} is not divisible by --n-head {}: each head needs a whole number of channels",
                self.n_embd,
                self.n_head
            );
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
