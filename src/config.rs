//! The model's architecture: `GPTConfig`, its named presets, and the checks that refuse sizes
//! that cannot work. Run settings (steps, learning rate, batch, ...) live with the command line
//! in `cli.rs`; the vocabulary size comes from the data set.

use anyhow::{Result, bail};
use burn::config::Config;

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
}

/// Named model sizes. Names are at most 15 characters, so every preset keeps `block_size` 16.
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
}

impl Preset {
    /// Every preset, smallest first.
    pub const ALL: [Preset; 4] = [Preset::Reference, Preset::Small, Preset::Medium, Preset::Large];
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
        }
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
        if self.vocab_size < 2 {
            bail!("the vocabulary needs at least one character besides BOS");
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
        let sizes: Vec<usize> = [Preset::Reference, Preset::Small, Preset::Medium, Preset::Large]
            .into_iter()
            .map(|p| {
                let c = GPTConfig::preset(p, 27);
                c.validate().unwrap();
                c.num_params()
            })
            .collect();
        assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
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
