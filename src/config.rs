//! The model's architecture: `GPTConfig`, its named presets, and the checks that refuse sizes
//! that cannot work. Run settings (steps, learning rate, batch, ...) live with the command line
//! in `cli.rs`, except the training recipes of the Shakespeare presets ([`Recipe`]), which are
//! nanoGPT's; the vocabulary size comes from the data set.

use anyhow::{Result, bail};
use burn::config::Config;

use crate::data::Named;
use crate::device::Precision;
use crate::schedule::Decay;

/// Architecture of the GPT, and nothing else. The defaults are the reference's (SPEC.md).
#[derive(Config, Debug, PartialEq)]
pub struct GPTConfig {
    /// Number of tokens: the data set's characters plus BOS.
    pub vocab_size: usize,
    /// Number of transformer blocks.
    #[config(default = 1)]
    pub n_layer: usize,
    /// Width of the residual stream (channels, `C`).
    #[config(default = 16)]
    pub n_embd: usize,
    /// Number of attention heads; each has `n_embd / n_head` channels.
    #[config(default = 4)]
    pub n_head: usize,
    /// Longest context the model sees; longer documents are cut, as the reference does.
    #[config(default = 16)]
    pub block_size: usize,
    /// Standard deviation of every initial weight; `None` is the reference's 0.08 (nanoGPT draws
    /// 0.02). Optional, so that checkpoints written before it existed read as the reference.
    pub init_std: Option<f64>,
}

/// The longest context a model may have (its position embeddings alone are block_size x C).
pub const MAX_BLOCK_SIZE: usize = 1 << 20;

/// The reference's standard deviation of the initial weights.
pub const REFERENCE_INIT_STD: f64 = 0.08;

/// Named model sizes. The names presets keep `block_size` 16 (names are at most 15
/// characters); the Shakespeare presets are nanoGPT's two `shakespeare_char` runs, each with its
/// training recipe ([`Preset::recipe`]).
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
}

/// The training settings a preset comes with (each flag still overrides its own): nanoGPT's
/// `train.py` defaults with `config/train_shakespeare_char.py` and its README's CPU flags.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    /// The data set trained on when `--data` is not given (read as one text).
    pub dataset: Named,
    /// Training steps.
    pub steps: usize,
    /// The peak learning rate.
    pub lr: f64,
    /// The floor of the decay.
    pub min_lr: f64,
    /// Steps of linear warmup.
    pub warmup_steps: usize,
    /// The shape of the decay.
    pub decay: Decay,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// The bound on the norm of all gradients together.
    pub grad_clip: f64,
    /// Adam's first-moment decay.
    pub beta1: f64,
    /// Adam's second-moment decay.
    pub beta2: f64,
    /// Windows per step.
    pub batch_size: usize,
    /// Dropout in training.
    pub dropout: f64,
    /// Evaluate on the held-out windows every N steps.
    pub eval_every: usize,
    /// The float precision (f32, as nanoGPT on a CPU).
    pub precision: Precision,
}

impl Preset {
    /// Every preset, smallest first.
    pub const ALL: [Preset; 6] = [
        Preset::Reference,
        Preset::Small,
        Preset::Medium,
        Preset::Large,
        Preset::ShakespeareCharCpu,
        Preset::ShakespeareChar,
    ];

    /// The preset's name on the command line.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self).expect("no preset is skipped").get_name().to_string()
    }

    /// The training recipe of a Shakespeare preset (`None` for the names presets, which train
    /// with the reference's settings).
    pub fn recipe(self) -> Option<Recipe> {
        let cpu = Recipe {
            dataset: Named::Shakespeare,
            steps: 2000,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 100,
            decay: Decay::Cosine,
            weight_decay: 0.1,
            grad_clip: 1.0,
            beta1: 0.9,
            beta2: 0.99,
            batch_size: 12,
            dropout: 0.0,
            eval_every: 250,
            precision: Precision::F32,
        };
        match self {
            Preset::ShakespeareCharCpu => Some(cpu),
            Preset::ShakespeareChar => Some(Recipe { steps: 5000, batch_size: 64, dropout: 0.2, ..cpu }),
            _ => None,
        }
    }
}

impl GPTConfig {
    /// The sizes in one line: `n_layer 1, n_embd 16, n_head 4, block_size 16`.
    pub fn describe(&self) -> String {
        format!(
            "n_layer {}, n_embd {}, n_head {}, block_size {}",
            self.n_layer, self.n_embd, self.n_head, self.block_size
        )
    }

    /// The architecture of a preset for a vocabulary of `vocab_size` tokens.
    pub fn preset(preset: Preset, vocab_size: usize) -> Self {
        let config = Self::new(vocab_size);
        match preset {
            Preset::Reference => config,
            Preset::Small => config.with_n_layer(2).with_n_embd(64),
            Preset::Medium => config.with_n_layer(4).with_n_embd(128),
            Preset::Large => config.with_n_layer(6).with_n_embd(384).with_n_head(6),
            Preset::ShakespeareCharCpu => config.with_n_layer(4).with_n_embd(128).with_block_size(64),
            // at 6 x 384 the reference's 0.08 starts near a loss of 30 (no final norm: the logits
            // grow with the width and depth); nanoGPT's 0.02 starts at ln(vocab)
            Preset::ShakespeareChar => {
                config.with_n_layer(6).with_n_embd(384).with_n_head(6).with_block_size(256).with_init_std(Some(0.02))
            }
        }
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
mod tests {
    use super::*;

    #[test]
    fn reference_has_4192_params_on_names() {
        let config = GPTConfig::preset(Preset::Reference, 27);
        assert_eq!(config.num_params(), 4192);
        // the counts the presets' docs and the README give
        assert_eq!(GPTConfig::preset(Preset::Large, 27).num_params(), 10_643_712);
        assert_eq!(config.head_dim(), 4);
        config.validate().unwrap();
    }

    #[test]
    fn presets_are_valid_and_grow() {
        let sizes: Vec<usize> = Preset::ALL[..4]
            .iter()
            .copied()
            .map(|p| {
                let c = GPTConfig::preset(p, 27);
                c.validate().unwrap();
                c.num_params()
            })
            .collect();
        assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
        for p in Preset::ALL {
            GPTConfig::preset(p, 66).validate().unwrap();
            assert_eq!(p.recipe().is_some(), p.name().starts_with("shakespeare"), "{}", p.name());
        }
        // nanoGPT's shakespeare_char sizes on its 65 characters (+ our BOS): 0.80M and 10.8M
        assert_eq!(
            GPTConfig::preset(Preset::ShakespeareCharCpu, 66).num_params(),
            4 * 12 * 128 * 128 + (2 * 66 + 64) * 128
        );
        assert_eq!(GPTConfig::preset(Preset::ShakespeareChar, 66).block_size, 256);
        assert_eq!(Preset::ShakespeareChar.name(), "shakespeare-char");
    }

    /// A checkpoint written before `init_std` existed reads as the reference's 0.08.
    #[test]
    fn configs_without_init_std_read_as_the_reference() {
        let old: GPTConfig =
            serde_json::from_str(r#"{"vocab_size":27,"n_layer":1,"n_embd":16,"n_head":4,"block_size":16}"#).unwrap();
        assert_eq!(old, GPTConfig::new(27));
        assert_eq!(old.init_std(), 0.08);
    }

    #[test]
    fn impossible_sizes_are_refused_with_the_flag_named() {
        let err = GPTConfig::new(27).with_n_embd(18).validate().unwrap_err();
        assert!(err.to_string().contains("not divisible by --n-head 4"), "{err}");
        let err = GPTConfig::new(27).with_n_layer(0).validate().unwrap_err();
        assert!(err.to_string().contains("--n-layer"), "{err}");
        let err = GPTConfig::new(1).validate().unwrap_err();
        assert!(err.to_string().contains("vocabulary"), "{err}");
    }
}
