//! The command line: subcommands and flags, grouped like makemore's (data, model,
//! optimization, evaluation, sampling, output, device). Parsing only; `commands.rs` acts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Preset;
use crate::device::{DeviceArg, Precision};
use crate::schedule::Decay;

/// Where the reference downloads names.txt from, the default of `--data-url`.
pub const NAMES_URL: &str = "https://raw.githubusercontent.com/karpathy/makemore/refs/heads/master/names.txt";

/// microGPT on Burn: a complete GPT trained from scratch on names, then sampling new ones.
///
/// With no subcommand, runs the reference: 1,000 steps on data/names.txt at seed 42, then 20
/// samples. Every `train` flag works there too.
#[derive(Parser, Debug)]
#[command(name = "microgpt", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// `train`, `sample`, `eval` or `inspect`; none runs the reference.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The flags of the bare (reference) run.
    #[command(flatten)]
    pub train: TrainArgs,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model (optionally saving checkpoints), then sample from it.
    Train(Box<TrainArgs>),
    /// Sample from a saved checkpoint.
    Sample(SampleArgs),
    /// Print the mean loss per token of a saved checkpoint on a data file.
    Eval(EvalArgs),
    /// Look inside a saved model: its predictions along a text, its attention, its embeddings.
    Inspect(InspectArgs),
}

/// Flags of `train` and of the bare run.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    // ---- data ----
    /// Text file with one document per line [default: data/names.txt, downloaded when absent]
    #[arg(long, value_name = "PATH", help_heading = "Data")]
    pub data: Option<PathBuf>,
    /// Where to download data/names.txt from when it is absent
    #[arg(long, value_name = "URL", env = "MICROGPT_DATA_URL", default_value = NAMES_URL, help_heading = "Data")]
    pub data_url: String,

    // ---- model ----
    /// Named model size; the flags below override its values [default: reference]
    #[arg(long, value_enum, help_heading = "Model")]
    pub preset: Option<Preset>,
    /// Number of transformer blocks [reference: 1]
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Model")]
    pub n_layer: Option<usize>,
    /// Embedding width, channels per position [reference: 16]
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Model")]
    pub n_embd: Option<usize>,
    /// Attention heads; must divide --n-embd [reference: 4]
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Model")]
    pub n_head: Option<usize>,
    /// Longest context in tokens; longer documents are cut [reference: 16]
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Model")]
    pub block_size: Option<usize>,

    /// Start from the weights of the checkpoint in DIR (its sizes and vocabulary) as a new run:
    /// its own steps, learning rate and data, and a fresh optimizer
    #[arg(long, value_name = "DIR", conflicts_with = "resume", help_heading = "Model")]
    pub init_from: Option<PathBuf>,

    // ---- optimization ----
    /// Training steps; the learning rate decays linearly to zero over them [default: 1000]
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Optimization")]
    pub steps: Option<usize>,
    /// Initial learning rate of Adam [default: 0.01]
    #[arg(long, value_name = "LR", value_parser = positive_number, allow_negative_numbers = true, help_heading = "Optimization")]
    pub lr: Option<f64>,
    /// Steps of linear warmup up to --lr, before the decay [default: 0, none]
    #[arg(long, value_name = "N", help_heading = "Optimization")]
    pub warmup_steps: Option<usize>,
    /// How the learning rate falls after the warmup, towards --min-lr (reached just after the last step) [default: linear]
    #[arg(long, value_enum, help_heading = "Optimization")]
    pub decay: Option<Decay>,
    /// The learning rate the decay ends at [default: 0]
    #[arg(long, value_name = "LR", value_parser = non_negative_number, allow_negative_numbers = true, help_heading = "Optimization")]
    pub min_lr: Option<f64>,
    /// AdamW's decoupled weight decay on every weight [default: 0, plain Adam]
    #[arg(long, value_name = "WD", value_parser = non_negative_number, allow_negative_numbers = true, help_heading = "Optimization")]
    pub weight_decay: Option<f64>,
    /// Clip the norm of all gradients together to this [default: no clipping]
    #[arg(long, value_name = "NORM", value_parser = positive_number, allow_negative_numbers = true, help_heading = "Optimization")]
    pub grad_clip: Option<f64>,
    /// Dropout in training: the probability of zeroing an activation, below 1 [default: 0]
    #[arg(long, value_name = "P", value_parser = probability, allow_negative_numbers = true, help_heading = "Optimization")]
    pub dropout: Option<f64>,
    /// Documents per step, padded to the longest; 1 is the reference [default: 1]
    #[arg(long, value_name = "B", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Optimization")]
    pub batch_size: Option<usize>,
    /// Seed of the Python-compatible generator: shuffle, initial weights, samples [default: 42]
    #[arg(long, value_name = "N", help_heading = "Optimization")]
    pub seed: Option<u64>,
    /// Stop after this step (saving a checkpoint), keeping the schedule of --steps
    #[arg(long, value_name = "STEP", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Optimization")]
    pub stop_at: Option<usize>,

    // ---- evaluation ----
    /// Evaluate on the held-out documents every N steps (always once at the end)
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Evaluation")]
    pub eval_every: Option<usize>,

    // ---- sampling ----
    /// Sampling flags.
    #[command(flatten)]
    pub sampling: SamplingArgs,

    // ---- output ----
    /// Save a checkpoint directory here at the end (and every --save-every steps)
    #[arg(long, value_name = "DIR", help_heading = "Output")]
    pub out: Option<PathBuf>,
    /// Also save every N steps (needs --out or --resume)
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Output")]
    pub save_every: Option<usize>,
    /// Continue the run saved in DIR exactly (its model, optimizer, step and settings)
    #[arg(long, value_name = "DIR", help_heading = "Output")]
    pub resume: Option<PathBuf>,
    /// Replace the training run that --out DIR already holds (without it, such a DIR is refused)
    #[arg(long, requires = "out", help_heading = "Output")]
    pub overwrite: bool,
    /// Print (and record in metrics.csv) the loss of every N-th step
    #[arg(long, value_name = "N", default_value = "1", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Output")]
    pub log_every: usize,
    /// Read losses back from the device every N steps, in one transfer [default: 1 on cpu, 100 on gpu]
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Output")]
    pub sync_every: Option<usize>,
    /// Print only the results: no progress bar or step lines
    #[arg(long, short, help_heading = "Output")]
    pub quiet: bool,

    // ---- device ----
    /// Device flags.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// How to sample.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Number of samples to draw
    #[arg(long, value_name = "N", default_value = "20", help_heading = "Sampling")]
    pub num_samples: usize,
    /// Softmax temperature: lower is safer, higher is more inventive
    #[arg(long, value_name = "T", default_value = "0.5", value_parser = positive_number, allow_negative_numbers = true, help_heading = "Sampling")]
    pub temperature: f64,
    /// Draw only among the K most likely characters
    #[arg(long, value_name = "K", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Sampling")]
    pub top_k: Option<usize>,
    /// Start every sample with this text
    #[arg(long, value_name = "TEXT", default_value = "", help_heading = "Sampling")]
    pub prefix: String,
}

/// Where and in which precision to compute.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Where to compute [default: gpu in builds with the gpu feature, else cpu]
    #[arg(long, value_enum, env = "MICROGPT_DEVICE", help_heading = "Device")]
    pub device: Option<DeviceArg>,
    /// Float precision [default: f64 on cpu, f32 on gpu]
    #[arg(long, value_enum, help_heading = "Device")]
    pub dtype: Option<Precision>,
}

/// Flags of `sample`.
#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Checkpoint directory written by `train --out`
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Seed of the Python-compatible generator used for the draws
    #[arg(long, value_name = "N", default_value = "42")]
    pub seed: u64,
    /// Sampling flags.
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Device flags.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Flags of `eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint directory written by `train --out`
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Evaluate on every document of this file [default: the checkpoint's held-out documents]
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Device flags.
    #[command(flatten)]
    pub device: DeviceArgs,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("must be a whole number of at least 1".into()),
    }
}

fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..1.0).contains(&x) => Ok(x),
        _ => Err("must be a number from 0 up to (not including) 1".into()),
    }
}

fn non_negative_number(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err("must be a finite number of at least 0".into()),
    }
}

fn positive_number(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err("must be a finite number above 0".into()),
    }
}

/// Flags of `inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Checkpoint directory written by `train --out`
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// The text to run through the model, as one document (a name, for names.txt)
    #[arg(long, value_name = "TEXT")]
    pub text: String,
    /// Where to write attention.png and embeddings.png [default: DIR/inspect]
    #[arg(long, value_name = "OUT")]
    pub out: Option<PathBuf>,
    /// Device flags.
    #[command(flatten)]
    pub device: DeviceArgs,
}
