//! The command line: subcommands and flags, grouped like makemore's (data, model,
//! optimization, evaluation, sampling, output, device). Parsing only; `commands.rs` acts. A flag
//! of a setting overrides the value of [`TrainConfig`] or [`GPTConfig`] ([`TrainArgs::apply`]),
//! where its default is written; the help shows it from there ([`parse`]).

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::device::{self, DeviceArg, Precision, Runtime};
use crate::fast::{self, Kernels};
use crate::gpt::config::{GPTConfig, Preset, TrainConfig};
use crate::gpt::data::{Corpus, Layout};
use crate::gpt::sample::SampleOptions;
use crate::gpt::train::Decay;

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

/// How a run's text is cut into tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenizerKind {
    /// Each character one token, the vocabulary the data's own characters (the reference's).
    Chars,
    /// GPT-2's byte-level BPE (50,257 tokens); the model is a GPT-2.
    GPT2,
}

/// Flags of `train` and of the bare run.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    // ---- data ----
    /// Text file to train on: one document per line, or one text with --layout text [default: the --dataset's file]
    #[arg(long, value_name = "PATH", conflicts_with = "dataset", help_heading = "Data")]
    pub data: Option<PathBuf>,
    /// A data set known by name, kept in data/ and downloaded when absent: names (data/names.txt,
    /// one per line) or shakespeare (data/shakespeare.txt, Karpathy's tinyshakespeare, one text)
    /// [default: names, or the Shakespeare presets' shakespeare]
    #[arg(long, value_enum, value_name = "NAME", help_heading = "Data")]
    pub dataset: Option<Corpus>,
    /// How to read the data: lines (one document per line, the reference's) or text (the whole
    /// file as one stream of characters: random windows of --block-size + 1, the last tenth held
    /// out) [default: lines; text for the shakespeare data set and presets]
    #[arg(long, value_enum, help_heading = "Data")]
    pub layout: Option<Layout>,
    /// How the text is cut into tokens: chars (each character one token, the reference's) or gpt2
    /// (GPT-2's byte-level BPE; trains a GPT-2: LayerNorm, GELU, biases, tied embeddings)
    /// [default: chars; gpt2 for the gpt2 presets and --init-from a GPT-2]
    #[arg(long, value_enum, help_heading = "Data")]
    pub tokenizer: Option<TokenizerKind>,
    /// Where to download the data set from when its file is absent [default: the data set's own URL]
    #[arg(long, value_name = "URL", env = "MICROGPT_DATA_URL", help_heading = "Data")]
    pub data_url: Option<String>,

    // ---- model ----
    /// Named model size and its training settings; the flags override its values [default: reference]
    #[arg(long, value_enum, help_heading = "Model")]
    pub preset: Option<Preset>,
    /// Number of transformer blocks
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Model")]
    pub n_layer: Option<usize>,
    /// Embedding width, channels per position
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Model")]
    pub n_embd: Option<usize>,
    /// Attention heads; must divide --n-embd
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Model")]
    pub n_head: Option<usize>,
    /// Longest context in tokens; longer documents are cut; a text's windows are this long
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Model")]
    pub block_size: Option<usize>,

    /// Standard deviation of the initial weights [reference: 0.08; shakespeare-char: 0.02, nanoGPT's]
    #[arg(long, value_name = "STD", value_parser = positive_number, allow_negative_numbers = true, help_heading = "Model")]
    pub init_std: Option<f64>,

    /// Start from the weights of the checkpoint in DIR (its sizes and vocabulary) as a new run:
    /// its own steps, learning rate and data, and a fresh optimizer
    #[arg(long, value_name = "DIR", conflicts_with = "resume", help_heading = "Model")]
    pub init_from: Option<PathBuf>,

    // ---- optimization ----
    /// Training steps; the learning rate decays over them
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Optimization")]
    pub steps: Option<usize>,
    /// Peak learning rate of Adam
    #[arg(long, value_name = "LR", value_parser = positive_number, allow_negative_numbers = true, help_heading = "Optimization")]
    pub lr: Option<f64>,
    /// Steps of linear warmup up to --lr, before the decay
    #[arg(long, value_name = "N", help_heading = "Optimization")]
    pub warmup_steps: Option<usize>,
    /// How the learning rate falls after the warmup, towards --min-lr (reached just after the last step)
    #[arg(long, value_enum, help_heading = "Optimization")]
    pub decay: Option<Decay>,
    /// The learning rate the decay ends at
    #[arg(long, value_name = "LR", value_parser = non_negative_number, allow_negative_numbers = true, help_heading = "Optimization")]
    pub min_lr: Option<f64>,
    /// AdamW's decoupled weight decay on every weight (0: plain Adam)
    #[arg(long, value_name = "WD", value_parser = non_negative_number, allow_negative_numbers = true, help_heading = "Optimization")]
    pub weight_decay: Option<f64>,
    /// Clip the norm of all gradients together to this
    #[arg(long, value_name = "NORM", value_parser = positive_number, allow_negative_numbers = true, help_heading = "Optimization")]
    pub grad_clip: Option<f64>,
    /// Dropout in training: the probability of zeroing an activation, below 1
    #[arg(long, value_name = "P", value_parser = probability, allow_negative_numbers = true, help_heading = "Optimization")]
    pub dropout: Option<f64>,
    /// Documents (padded to the longest) or text windows per step
    #[arg(long, value_name = "B", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Optimization")]
    pub batch_size: Option<usize>,
    /// Compute each step's batch in N micro-batches one after another, their gradients added: the
    /// same step with about 1/N of the activations in memory (nanoGPT's gradient_accumulation_steps), at most --batch-size
    #[arg(long, value_name = "N", default_value = "1", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Optimization")]
    pub grad_accum: usize,
    /// Adam's decay of the mean of the gradients, below 1
    #[arg(long, value_name = "B1", value_parser = probability, allow_negative_numbers = true, help_heading = "Optimization")]
    pub beta1: Option<f64>,
    /// Adam's decay of the mean of the squared gradients, below 1
    #[arg(long, value_name = "B2", value_parser = probability, allow_negative_numbers = true, help_heading = "Optimization")]
    pub beta2: Option<f64>,
    /// Seed of the Python-compatible generator: shuffle, initial weights, samples, text windows
    #[arg(long, value_name = "N", help_heading = "Optimization")]
    pub seed: Option<u64>,
    /// Stop after this step (saving a checkpoint), keeping the schedule of --steps
    #[arg(long, value_name = "STEP", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Optimization")]
    pub stop_at: Option<usize>,

    // ---- evaluation ----
    /// Evaluate on the held-out documents (or windows) every N steps (always once at the end)
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Evaluation")]
    pub eval_every: Option<usize>,
    /// Text layout: the held-out loss is the mean over N windows of the held-out tenth, drawn once from --seed
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Evaluation")]
    pub eval_windows: Option<usize>,

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
    /// Number of samples to draw (of a model trained on documents)
    #[arg(long, value_name = "N", default_value_t = SampleOptions::reference().num_samples, help_heading = "Sampling")]
    pub num_samples: usize,
    /// Length of the passage to write, in characters (a model trained on a text) [default: 500]
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Sampling")]
    pub num_chars: Option<usize>,
    /// Length of the passage to write, in GPT-2's tokens (a GPT-2) [default: 500]
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true, conflicts_with = "num_chars", help_heading = "Sampling")]
    pub num_tokens: Option<usize>,
    /// Softmax temperature: lower is safer, higher is more inventive
    #[arg(long, value_name = "T", default_value_t = SampleOptions::reference().temperature, value_parser = positive_number, allow_negative_numbers = true, help_heading = "Sampling")]
    pub temperature: f64,
    /// Draw only among the K most likely characters
    #[arg(long, value_name = "K", value_parser = at_least_one, allow_negative_numbers = true, help_heading = "Sampling")]
    pub top_k: Option<usize>,
    /// Start every sample with this text (a passage: continue it) [default: none; a passage starts a line]
    #[arg(long, value_name = "TEXT", default_value = "", hide_default_value = true, help_heading = "Sampling")]
    pub prefix: String,
}

/// Where and in which precision to compute.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Where to compute: cpu, gpu (wgpu: Vulkan, Metal, DX12), cuda (NVIDIA), ndarray [default: gpu in builds with the gpu feature, else cuda with cuda, else cpu]
    #[arg(long, value_enum, env = "MICROGPT_DEVICE", help_heading = "Device")]
    pub device: Option<DeviceArg>,
    /// Float precision [default: f64 on cpu, f32 on gpu and for a GPT-2]; bf16: a GPT-2's weight
    /// matrices held in bf16, every sum in f32 (sample, eval and inspect, on the CPU)
    #[arg(long, value_enum, help_heading = "Device")]
    pub dtype: Option<Precision>,
    /// Which operations the models run on: fused (the speed layer's kernels: one autodiff node
    /// each, the CPU's own loops) or burn (each operation's formula in Burn's tensor operations);
    /// the same losses up to rounding. Also spelled --ops (ours for fused), for one release
    #[arg(long, alias = "ops", value_enum, default_value_t, help_heading = "Device")]
    pub kernels: Kernels,
}

impl DeviceArgs {
    /// The device of `kind` in `precision` (each `None`: its default), with the models' operations
    /// on `--kernels` from now on: the one place the kernels are chosen.
    pub fn open(&self, kind: Option<DeviceArg>, precision: Option<Precision>) -> anyhow::Result<Runtime> {
        if precision == Some(Precision::Bf16) && self.kernels == Kernels::Burn {
            anyhow::bail!(
                "--dtype bf16 is read by the fused kernels' products: drop --kernels burn, or use --dtype f32"
            );
        }
        let runtime = device::open(kind, precision)?;
        fast::use_kernels(self.kernels);
        Ok(runtime)
    }
}

impl SamplingArgs {
    /// The passage's length: `--num-tokens` or `--num-chars`, the same setting in a GPT-2's units
    /// or a character model's.
    pub fn passage_length(&self) -> usize {
        self.num_tokens.or(self.num_chars).unwrap_or(SampleOptions::reference().num_chars)
    }
}

/// Flags of `sample`.
#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Checkpoint directory written by `train --out`, a Hugging Face GPT-2 folder, or gpt2, gpt2-medium, gpt2-large, gpt2-xl (downloaded on first use)
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Seed of the Python-compatible generator used for the draws
    #[arg(long, value_name = "N", default_value_t = TrainConfig::default().seed)]
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
    /// Checkpoint directory written by `train --out`, a Hugging Face GPT-2 folder, or gpt2, gpt2-medium, gpt2-large, gpt2-xl (downloaded on first use)
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
    /// The text to run through the model: one document (a name, for names.txt), or a stretch of
    /// a text model's text
    #[arg(long, value_name = "TEXT")]
    pub text: String,
    /// Where to write attention.png and embeddings.png [default: DIR/inspect]
    #[arg(long, value_name = "OUT")]
    pub out: Option<PathBuf>,
    /// Device flags.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Parse the process's arguments. The help of each setting's flag ends with the reference's
/// value, read from [`TrainConfig::default`] and [`GPTConfig`]'s defaults.
pub fn parse() -> Result<Cli, clap::Error> {
    let mut references = crate::gpt::config::fields(&TrainConfig::default());
    references.extend(crate::gpt::config::fields(&GPTConfig::new(0)));
    let show = |mut cmd: clap::Command| {
        for (field, value) in &references {
            let id = flag_of(field).replace('-', "_");
            if cmd.get_arguments().any(|arg| arg.get_id() == id.as_str()) && !HELP_SAYS_DEFAULT.contains(&id.as_str()) {
                cmd = cmd.mut_arg(id, |arg| {
                    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                    arg.help(format!("{help} [reference: {value}]"))
                });
            }
        }
        cmd
    };
    let cmd = show(Cli::command()).mut_subcommand("train", show);
    Cli::from_arg_matches(&cmd.try_get_matches()?)
}

/// Flags whose help says their default itself: it depends on the device or the data set.
const HELP_SAYS_DEFAULT: [&str; 3] = ["dtype", "layout", "init_std"];

/// The flag of a setting, by its field name in [`TrainConfig`] or [`GPTConfig`]: `batch_size`
/// is `batch-size`, `num_steps` is `steps`, `precision` is `dtype`.
pub fn flag_of(field: &str) -> String {
    match field {
        "num_steps" => "steps".to_string(),
        "precision" => "dtype".to_string(),
        field => field.replace('_', "-"),
    }
}

impl TrainArgs {
    /// `config` with the values of the settings' flags given.
    pub fn apply(&self, config: &mut TrainConfig) {
        set(&mut config.seed, self.seed);
        set(&mut config.num_steps, self.steps);
        set(&mut config.lr, self.lr);
        set(&mut config.batch_size, self.batch_size);
        set(&mut config.precision, self.device.dtype);
        set(&mut config.warmup_steps, self.warmup_steps);
        set(&mut config.decay, self.decay);
        set(&mut config.min_lr, self.min_lr);
        set(&mut config.weight_decay, self.weight_decay);
        set(&mut config.grad_clip, self.grad_clip.map(Some));
        set(&mut config.dropout, self.dropout);
        set(&mut config.beta1, self.beta1);
        set(&mut config.beta2, self.beta2);
        set(&mut config.layout, self.layout);
        set(&mut config.eval_windows, self.eval_windows);
    }

    /// `config` with the values of the size flags given (the reference's standard deviation
    /// recorded as none, so that configurations compare equal to the presets').
    pub fn apply_sizes(&self, config: &mut GPTConfig) {
        set(&mut config.n_layer, self.n_layer);
        set(&mut config.n_embd, self.n_embd);
        set(&mut config.n_head, self.n_head);
        set(&mut config.block_size, self.block_size);
        if let Some(std) = self.init_std {
            config.init_std = Some(std).filter(|&std| std != crate::gpt::config::REFERENCE_INIT_STD);
        }
    }
}

/// `value` replaced by the flag's, when the flag was given.
fn set<T>(value: &mut T, flag: Option<T>) {
    if let Some(flag) = flag {
        *value = flag;
    }
}
