//! Where a training run starts and where it saves: fresh from the seed, a saved run continued
//! exactly (`--resume`), or a saved model trained further as a new run (`--init-from`); the output
//! directory's rules (a run already there is refused unless `--overwrite`); the settings, data
//! and architecture each start implies, with a one-line refusal naming the flag that would change
//! a saved run; and, after a run diverged, the command that starts again from its checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;

use crate::device::{self, Precision, Runtime};
use crate::gpt::adam::Adam;
use crate::gpt::bpe::Bpe;
use crate::gpt::config::{GPTConfig, Preset, TrainConfig, first_difference};
use crate::gpt::data::Layout;
use crate::gpt::gpt2::GPT2Config;
use crate::program::checkpoint::{self, Architecture, Meta, Stored};
use crate::program::cli::{TokenizerKind, TrainArgs, flag_of};
use crate::program::hf;

mod advice;
mod training_data;
pub use advice::after_divergence;
pub use training_data::{data_path, load_data, load_tokens, recorded_data};

/// Why a resume refuses a flag that differs from the saved run.
pub const RESUME_KEEPS: &str = "a resume continues the saved run as it was";

/// Where a training run's weights come from.
pub enum Start {
    /// Drawn from the seed, as the reference does.
    Fresh,
    /// `--resume DIR`: the saved run, continued exactly as it was.
    Resume(PathBuf, Meta),
    /// `--init-from DIR`: the saved weights, trained further as a new run.
    InitFrom(PathBuf, Meta),
    /// `--init-from` a GPT-2's Hugging Face folder (or one of OpenAI's models by name, fetched
    /// into Hugging Face's cache): its weights, fine-tuned as a new run.
    Pretrained(PathBuf),
}

impl Start {
    /// The start the flags ask for, its checkpoint read. A GPT-2 run saved by an earlier version
    /// is rewritten as a checkpoint first ([`checkpoint::upgrade`]).
    pub fn of(args: &TrainArgs) -> Result<Self> {
        let start = match (&args.resume, &args.init_from) {
            (Some(dir), _) => {
                checkpoint::upgrade(dir)?;
                if !checkpoint::is_checkpoint(dir) && hf::is_model_folder(dir) {
                    bail!(
                        "{} is a GPT-2's Hugging Face folder, not a run of `train --out` (it has no checkpoint.json): fine-tune it with --init-from {}",
                        dir.display(),
                        dir.display()
                    );
                }
                Start::Resume(dir.clone(), checkpoint::read_meta(dir)?)
            }
            (None, Some(dir)) if checkpoint::is_checkpoint(dir) => {
                Start::InitFrom(dir.clone(), checkpoint::read_meta(dir)?)
            }
            (None, Some(spec)) => match hf::gpt2_folder(spec)? {
                Some(folder) => Start::Pretrained(folder),
                None => Start::InitFrom(spec.clone(), checkpoint::read_meta(spec)?),
            },
            (None, None) if args.preset == Some(Preset::Gpt2FinetuneShakespeare) => {
                Start::Pretrained(crate::program::hub::openai_model("gpt2")?)
            }
            (None, None) => Start::Fresh,
        };
        let (asked, flag) =
            (Start::Fresh.is_gpt2(args), if args.resume.is_some() { "--resume" } else { "--init-from" });
        match &start {
            Start::Fresh => {}
            _ if start.is_gpt2(args) && args.tokenizer == Some(TokenizerKind::Chars) => {
                bail!(
                    "{flag} {} is a GPT-2, which reads GPT-2's tokens: drop --tokenizer chars",
                    start.source().display()
                )
            }
            _ if asked && !start.is_gpt2(args) => bail!(
                "{flag} {} is a model of characters; a GPT-2 run (--tokenizer gpt2 or a gpt2 preset) starts from scratch or from a GPT-2",
                start.source().display()
            ),
            _ => {}
        }
        if start.is_gpt2(args) && args.layout == Some(Layout::Lines) {
            bail!("a GPT-2 trains on one text: --layout text (documents, one per line, are not built for it)");
        }
        Ok(start)
    }

    /// Whether the run trains a GPT-2: from one, or asked for (`--tokenizer gpt2`, a GPT-2 preset).
    pub fn is_gpt2(&self, args: &TrainArgs) -> bool {
        match self {
            Start::Fresh => args.tokenizer == Some(TokenizerKind::GPT2) || preset(args).row().gpt2,
            Start::Resume(_, meta) | Start::InitFrom(_, meta) => matches!(meta.config, Architecture::GPT2(_)),
            Start::Pretrained(_) => true,
        }
    }

    /// The checkpoint read, whether resumed or started from.
    pub fn checkpoint(&self) -> Option<(&Path, &Meta)> {
        match self {
            Start::Fresh | Start::Pretrained(_) => None,
            Start::Resume(dir, meta) | Start::InitFrom(dir, meta) => Some((dir, meta)),
        }
    }

    /// The directory or folder the weights come from (empty for a fresh start).
    fn source(&self) -> &Path {
        match self {
            Start::Fresh => Path::new(""),
            Start::Resume(dir, _) | Start::InitFrom(dir, _) | Start::Pretrained(dir) => dir,
        }
    }

    /// Why the checkpoint's model must be kept, for the message of a flag that differs.
    fn keeps_because(&self) -> &'static str {
        match self {
            Start::InitFrom(..) | Start::Pretrained(_) => "--init-from keeps the checkpoint's model",
            _ => RESUME_KEEPS,
        }
    }
}

/// The directory this run saves in, refused when it holds another run that it would replace
/// (unless `--overwrite`), and the step whose checkpoint it already holds when a resume saves
/// back where it read (that step is not saved again). Nothing in it is touched here.
pub fn output_dir(args: &TrainArgs, start: &Start) -> Result<(Option<PathBuf>, Option<usize>)> {
    let resumed = match start {
        Start::Resume(dir, meta) => Some((dir, meta.step)),
        _ => None,
    };
    let out = args.out.clone().or_else(|| resumed.map(|(dir, _)| dir.clone()));
    if args.save_every.is_some() && out.is_none() {
        bail!("--save-every needs --out DIR: the directory to save checkpoints in");
    }
    let Some(dir) = &out else { return Ok((None, None)) };
    checkpoint::check_not_held(dir)?; // a run writing there now: say so, whatever else
    let saved = resumed.filter(|(resumed, _)| same_dir(resumed, dir)).map(|(_, step)| step);
    if saved.is_none()
        && !args.overwrite
        && let Some(what) = checkpoint::run_in(dir)
    {
        bail!(
            "{} already holds a training run ({what}): continue it with --resume {}, pass another --out, or add --overwrite to replace it",
            dir.display(),
            dir.display()
        );
    }
    Ok((out, saved))
}

/// Whether two paths name one directory (`ck` and `./ck`).
pub fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The preset the flags name (the reference's when none).
fn preset(args: &TrainArgs) -> Preset {
    args.preset.unwrap_or(Preset::Reference)
}

/// The run's settings and the device: a resume's saved settings (a flag given must agree with
/// them), else the preset's with the flags over them.
pub fn settings(args: &TrainArgs, start: &Start) -> Result<(TrainConfig, Runtime)> {
    if args.device.dtype == Some(Precision::Bf16) {
        bail!("--dtype bf16 is for sample, eval and inspect: training keeps its weights in f32 or f64");
    }
    let config = match start {
        Start::Resume(_, meta) => resumed(args, &meta.run)?,
        _ => {
            let mut config = preset(args).row().run;
            if let (None, Some(named)) = (&args.data, args.dataset) {
                config.layout = named.layout();
            }
            args.apply(&mut config);
            if start.is_gpt2(args) {
                config.layout = Layout::Text; // a GPT-2 reads one text
            }
            config.validate()?;
            check_micro_batches(args, &config)?;
            config
        }
    };
    let kind = args.device.device.unwrap_or_else(device::default_device);
    let precision = match (start, args.device.dtype) {
        (Start::Resume(..), _) => config.precision, // as given, or refused above
        (_, Some(given)) => given,
        (_, None) if device::is_gpu(kind) => Precision::F32, // a GPU's only precision
        (_, None) if start.is_gpt2(args) => Precision::F32,  // GPT-2's own, on the CPU too
        (_, None) => config.precision,
    };
    let runtime = args.device.open(Some(kind), Some(precision))?;
    Ok((TrainConfig { precision: runtime.precision, ..config }, runtime))
}

/// A resumed run's settings: the saved ones, which a flag given must equal.
pub fn resumed(args: &TrainArgs, saved: &TrainConfig) -> Result<TrainConfig> {
    let mut wanted = saved.clone();
    args.apply(&mut wanted);
    refuse_change(saved, &wanted, RESUME_KEEPS)?;
    check_micro_batches(args, saved)?;
    Ok(saved.clone())
}

/// Refuse more micro-batches (`--grad-accum`) than the batch has rows.
fn check_micro_batches(args: &TrainArgs, run: &TrainConfig) -> Result<()> {
    if args.grad_accum > run.batch_size {
        bail!(
            "--grad-accum {} is more than the batch's {} rows (--batch-size): a micro-batch holds one row at least",
            args.grad_accum,
            run.batch_size
        );
    }
    Ok(())
}

/// Refuse a configuration `wanted` that differs from the checkpoint's `saved`, naming the flag.
fn refuse_change<T: serde::Serialize>(saved: &T, wanted: &T, why: &str) -> Result<()> {
    match first_difference(saved, wanted) {
        Some((field, given, saved)) => {
            bail!("--{} {given} differs from the checkpoint's {saved}: {why}", flag_of(&field))
        }
        None => Ok(()),
    }
}

/// The architecture: a loaded checkpoint's (size flags, if given, must equal it), or the
/// preset's with the flags that override it.
pub fn architecture(args: &TrainArgs, start: &Start, vocab_size: usize) -> Result<GPTConfig> {
    let Some((saved, _)) = start.checkpoint().and_then(|(_, meta)| meta.gpt()) else {
        let mut config = GPTConfig::preset(preset(args), vocab_size);
        args.apply_sizes(&mut config);
        config.validate()?;
        return Ok(config);
    };
    if let Some(preset) = args.preset
        && GPTConfig::preset(preset, saved.vocab_size) != *saved
    {
        let saved_name = Preset::ALL
            .into_iter()
            .find(|&p| GPTConfig::preset(p, saved.vocab_size) == *saved)
            .map_or_else(|| "custom sizes".to_string(), Preset::name);
        bail!(
            "--preset {} differs from the checkpoint's {saved_name} ({}): {}",
            preset.name(),
            saved.describe(),
            start.keeps_because()
        );
    }
    // compared with the standard deviation spelled out, as the flag gives it
    let spelled_out = |c: &GPTConfig| GPTConfig { init_std: Some(c.init_std()), ..c.clone() };
    let mut wanted = saved.clone();
    args.apply_sizes(&mut wanted);
    refuse_change(&spelled_out(saved), &spelled_out(&wanted), start.keeps_because())?;
    Ok(saved.clone())
}

/// A GPT-2 run's architecture and the length of its windows: a checkpoint's or a Hugging Face
/// folder's (a size flag must equal it; `--block-size` up to its context, a resume's equal to its
/// own), or the preset's sizes with the flags over them, the windows as long as the context.
pub fn gpt2_architecture(args: &TrainArgs, start: &Start) -> Result<(GPT2Config, usize)> {
    let config = match start {
        Start::Fresh => {
            let mut sizes = GPTConfig::preset(args.preset.unwrap_or(Preset::Gpt2ShakespeareCpu), Bpe::VOCAB_SIZE);
            args.apply_sizes(&mut sizes);
            let (n_layer, n_embd, n_head, n_positions) = (sizes.n_layer, sizes.n_embd, sizes.n_head, sizes.block_size);
            let config =
                GPT2Config { vocab_size: Bpe::VOCAB_SIZE, n_positions, n_embd, n_layer, n_head, ..GPT2Config::gpt2() };
            config.validate()?;
            return Ok((config, n_positions));
        }
        Start::Pretrained(dir) => hf::read_config(dir)?,
        Start::Resume(dir, meta) | Start::InitFrom(dir, meta) => match &meta.config {
            Architecture::GPT2(config) => config.clone(),
            Architecture::GPT(_) => bail!("{} holds microGPT's model, not a GPT-2", dir.display()),
        },
    };
    let sizes = [("n-layer", args.n_layer, config.n_layer), ("n-embd", args.n_embd, config.n_embd)];
    for (flag, given, saved) in sizes.into_iter().chain([("n-head", args.n_head, config.n_head)]) {
        if let Some(given) = given.filter(|&given| given != saved) {
            bail!("--{flag} {given} differs from the checkpoint's {saved}: {}", start.keeps_because());
        }
    }
    let block_size = match start {
        Start::Resume(_, meta) => {
            let saved = meta.block_size();
            if let Some(given) = args.block_size.filter(|&given| given != saved) {
                bail!("--block-size {given} differs from the checkpoint's {saved}: {RESUME_KEEPS}");
            }
            saved
        }
        _ => args.block_size.unwrap_or(config.n_positions),
    };
    if block_size > config.n_positions {
        bail!("--block-size {block_size} is beyond the model's {} positions", config.n_positions);
    }
    Ok((config, block_size))
}

/// The model, the optimizer and the steps done: `fresh`'s model (drawn, or a Hugging Face
/// folder's) with a fresh Adam; a resumed checkpoint's weights, Adam state and step; or an
/// `--init-from` checkpoint's weights with a fresh Adam at step 0. A new run keeps no Adam state:
/// its moments and bias correction belong to the old schedule, and microGPT's Adam starts each
/// schedule from zero moments.
pub fn initial_state<M: Stored>(
    start: &Start,
    runtime: &Runtime,
    run: &TrainConfig,
    fresh: impl FnOnce(&Device) -> Result<M>,
) -> Result<(M, ModuleOptimizer, usize)> {
    let ad_device = runtime.device.clone().autodiff();
    let adam = Adam::of(run).on_host(!device::is_gpu(runtime.kind));
    // the weights of the checkpoint whose settings were read, not of one saved since
    let load = |dir: &Path, meta: &Meta| {
        let loaded = checkpoint::load::<M>(dir, &ad_device, run.precision)?;
        if loaded.meta.weights != meta.weights {
            bail!("{} changed while it was read (a run saved a newer checkpoint there): try again", dir.display());
        }
        Ok(loaded)
    };
    Ok(match start {
        Start::Fresh | Start::Pretrained(_) => (fresh(&ad_device)?, adam.init(), 0),
        Start::Resume(dir, meta) => {
            let loaded = load(dir, meta)?;
            let optim = loaded.optimizer(adam)?;
            (loaded.model, optim, meta.step)
        }
        Start::InitFrom(dir, meta) => (load(dir, meta)?.model, adam.init(), 0),
    })
}
