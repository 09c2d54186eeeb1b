//! Where a training run starts and where it saves: fresh from the seed, a saved run continued
//! exactly (`--resume`), or a saved model trained further as a new run (`--init-from`); the output
//! directory's rules (a run already there is refused unless `--overwrite`); the settings, data
//! and architecture each start implies, with a one-line refusal naming the flag that would change
//! a saved run; and, after a run diverged, the command that starts again from its checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::optim::ModuleOptimizer;

use crate::device::{self, Precision, Runtime};
use crate::gpt::adam::Adam;
use crate::gpt::config::{GPTConfig, Preset, TrainConfig, first_difference};
use crate::gpt::data::{self, Corpus, Data, Layout};
use crate::gpt::model::GPT;
use crate::gpt::rng::PyRandom;
use crate::program::checkpoint::{self, Meta};
use crate::program::cli::{TrainArgs, flag_of};
use crate::program::datafile::{self, DataFile};

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
}

impl Start {
    /// The start the flags ask for, its checkpoint read.
    pub fn of(args: &TrainArgs) -> Result<Self> {
        Ok(match (&args.resume, &args.init_from) {
            (Some(dir), _) => Start::Resume(dir.clone(), checkpoint::read_meta(dir)?),
            (None, Some(dir)) => Start::InitFrom(dir.clone(), checkpoint::read_meta(dir)?),
            (None, None) => Start::Fresh,
        })
    }

    /// The checkpoint read, whether resumed or started from.
    pub fn checkpoint(&self) -> Option<(&Path, &Meta)> {
        match self {
            Start::Fresh => None,
            Start::Resume(dir, meta) | Start::InitFrom(dir, meta) => Some((dir, meta)),
        }
    }

    /// Why the checkpoint's model must be kept, for the message of a flag that differs.
    fn keeps_because(&self) -> &'static str {
        match self {
            Start::InitFrom(..) => "--init-from keeps the checkpoint's model",
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

/// The data set trained on when `--data` is not given: `--dataset`, else the preset's.
fn named_data(args: &TrainArgs) -> Corpus {
    args.dataset.unwrap_or(preset(args).dataset())
}

/// The data file a new run trains on: `--data`, else the data set's (downloaded when absent).
pub fn data_path(args: &TrainArgs) -> Result<PathBuf> {
    let named = named_data(args);
    datafile::resolve_data_path(args.data.as_deref(), named, args.data_url.as_deref().unwrap_or(named.url()))
}

/// The run's settings and the device: a resume's saved settings (a flag given must agree with
/// them), else the preset's with the flags over them.
pub fn settings(args: &TrainArgs, start: &Start) -> Result<(TrainConfig, Runtime)> {
    let config = match start {
        Start::Resume(_, meta) => resumed(args, &meta.run)?,
        _ => {
            let mut config = preset(args).train_config();
            if let (None, Some(named)) = (&args.data, args.dataset) {
                config.layout = named.layout();
            }
            args.apply(&mut config);
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
    let Some((_, meta)) = start.checkpoint() else {
        let mut config = GPTConfig::preset(preset(args), vocab_size);
        args.apply_sizes(&mut config);
        config.validate()?;
        return Ok(config);
    };
    let saved = &meta.config;
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
    let spelled_out = |c: &GPTConfig| c.clone().with_init_std(Some(c.init_std()));
    let mut wanted = saved.clone();
    args.apply_sizes(&mut wanted);
    refuse_change(&spelled_out(saved), &spelled_out(&wanted), start.keeps_because())?;
    Ok(saved.clone())
}

/// The data in `layout` (documents shuffled by `rng`, or one text), and the data file as
/// checkpoints record it. A resume without `--data` or `--dataset` reads the file its checkpoint
/// records (hashed once); with either, the file named must hold the same bytes. A run from
/// `--init-from` speaks the checkpoint's vocabulary, which must hold every character of the new
/// data.
pub fn load_data(args: &TrainArgs, start: &Start, layout: Layout, rng: &mut PyRandom) -> Result<(Data, DataFile)> {
    let (path, recorded) = match start {
        Start::Resume(dir, meta) if args.data.is_none() && args.dataset.is_none() => {
            let (path, file) = recorded_data(meta, dir)?;
            (path, Some(file))
        }
        _ => (data_path(args)?, None),
    };
    let mut data = match start {
        Start::InitFrom(dir, meta) => {
            let data = Data::read(&path, layout, None, rng)?;
            if let Some(ch) = meta.vocab.first_missing(data.tokenizer()) {
                bail!(
                    "{} holds the character {ch:?}, which the model in {} has no token for: --init-from needs data written in the checkpoint's {} characters",
                    path.display(),
                    dir.display(),
                    meta.vocab.chars.len()
                );
            }
            data.with_tokenizer(meta.vocab.clone())?
        }
        _ => Data::read(&path, layout, None, rng)?,
    };
    let file = match recorded {
        Some(file) => file,
        None => DataFile::of(&path)?,
    };
    if let Start::Resume(_, meta) = start {
        // a run from --init-from speaks its checkpoint's vocabulary, which may hold more
        // characters than its data: resumed, it speaks it again
        if meta.vocab != *data.tokenizer() && meta.vocab.first_missing(data.tokenizer()).is_none() {
            data = data.with_tokenizer(meta.vocab.clone())?;
        }
        if meta.vocab != *data.tokenizer() {
            bail!(
                "the vocabulary of {} differs from the checkpoint's: pass the --data the checkpoint was trained on",
                path.display()
            );
        }
        // --data or --dataset: the same bytes as the checkpoint's, else the run would change
        let given = match (&args.data, args.dataset) {
            (Some(_), _) => Some(format!("--data {}", path.display())),
            (None, Some(named)) => Some(format!("--dataset {} ({})", named.name(), path.display())),
            (None, None) => None,
        };
        if let Some(given) = given
            && !same_data(meta, &file)
        {
            bail!(
                "{given} is not the file the checkpoint was trained on (its size or SHA-256 differs): a resume continues the saved run as it was"
            );
        }
    }
    Ok((data, file))
}

/// The data file a checkpoint was trained on, at the absolute path it records, which must
/// still hold the same bytes: that path, and the file as it is now (read and hashed once).
pub fn recorded_data(meta: &Meta, dir: &Path) -> Result<(PathBuf, DataFile)> {
    let meta_path = dir.join("checkpoint.json");
    let path = meta.data.as_deref().map(PathBuf::from).unwrap_or_else(|| PathBuf::from(data::DEFAULT_DATA));
    if !path.is_file() {
        bail!(
            "the data file {} recorded in {} is gone: pass --data PATH to the file the model was trained on",
            path.display(),
            meta_path.display()
        );
    }
    let file = DataFile::of(&path)?;
    if !same_data(meta, &file) {
        bail!(
            "the data file {} has changed since training (its size or SHA-256 differs from {}): pass --data PATH to the file the model was trained on",
            path.display(),
            meta_path.display()
        );
    }
    Ok((path, file))
}

/// Whether `file` holds the bytes the checkpoint was trained on (true when it recorded none).
fn same_data(meta: &Meta, file: &DataFile) -> bool {
    match (meta.data_size, &meta.data_sha256) {
        (Some(size), Some(sha256)) => file.holds(size, sha256),
        _ => true,
    }
}

/// The model, the optimizer and the steps done: drawn fresh; a resumed checkpoint's weights,
/// Adam state and step; or an `--init-from` checkpoint's weights with a fresh Adam at step 0.
/// A new run keeps no Adam state: its moments and bias correction belong to the old schedule,
/// and microGPT's Adam starts each schedule from zero moments.
pub fn initial_state(
    config: &GPTConfig,
    start: &Start,
    runtime: &Runtime,
    run: &TrainConfig,
    rng: &mut PyRandom,
) -> Result<(GPT, ModuleOptimizer, usize)> {
    let ad_device = runtime.device.clone().autodiff();
    let model = GPT::init(config, rng, &ad_device);
    let adam = Adam::of(run).on_host(!device::is_gpu(runtime.kind));
    // the weights of the checkpoint whose settings were read, not of one saved since
    let load = |dir: &Path, meta: &Meta| {
        let loaded = checkpoint::load(dir, &ad_device)?;
        if loaded.meta.weights != meta.weights {
            bail!("{} changed while it was read (a run saved a newer checkpoint there): try again", dir.display());
        }
        Ok(loaded)
    };
    Ok(match start {
        Start::Fresh => (model, adam.init(), 0),
        Start::Resume(dir, meta) => {
            let loaded = load(dir, meta)?;
            let optim = loaded.optimizer(adam)?;
            (loaded.model, optim, meta.step)
        }
        Start::InitFrom(dir, meta) => (load(dir, meta)?.model, adam.init(), 0),
    })
}

/// What to do after a divergence: with a checkpoint in `out` (of step `saved`), start a new run
/// from it at a tenth of the learning rate over the steps that were left (a resume must keep its
/// settings, so it cannot lower the rate); without one, run again at a tenth of it.
pub fn after_divergence(run: &TrainConfig, data: &Path, out: Option<&Path>, saved: Option<usize>) -> String {
    let (lr, num_steps) = (run.lr, run.num_steps);
    let lower = short(lr / 10.0);
    match (out, saved) {
        (Some(dir), Some(saved)) => {
            let steps = num_steps.saturating_sub(saved).max(1);
            format!(
                "the last good checkpoint (step {saved}) is in {dir}: continue from it at a lower learning rate with `train --init-from {dir} --data {data} --lr {lower} --steps {steps}{rest} --out NEW_DIR` (--lr {} now)",
                short(lr),
                dir = dir.display(),
                data = data.display(),
                rest = other_settings(run, steps),
            )
        }
        _ => format!("lower the learning rate (--lr {} now, try {lower})", short(lr)),
    }
}

/// The flags that repeat a run's settings other than its steps and rates, for a new run of
/// `steps` steps from its checkpoint: those that differ from the reference's (the floor a tenth,
/// as the rate; the warmup shorter than the new run).
fn other_settings(run: &TrainConfig, steps: usize) -> String {
    let mut flags = Vec::new();
    let reference = TrainConfig::default();
    if run.layout != reference.layout {
        flags.push(format!("--layout {}", run.layout));
    }
    if run.batch_size != reference.batch_size {
        flags.push(format!("--batch-size {}", run.batch_size));
    }
    if run.warmup_steps > 0 {
        flags.push(format!("--warmup-steps {}", run.warmup_steps.min(steps - 1)));
    }
    if run.decay != reference.decay {
        flags.push(format!("--decay {}", run.decay));
    }
    if run.min_lr > 0.0 {
        flags.push(format!("--min-lr {}", short(run.min_lr / 10.0)));
    }
    if run.weight_decay > 0.0 {
        flags.push(format!("--weight-decay {}", short(run.weight_decay)));
    }
    if let Some(clip) = run.grad_clip {
        flags.push(format!("--grad-clip {}", short(clip)));
    }
    if run.dropout > 0.0 {
        flags.push(format!("--dropout {}", short(run.dropout)));
    }
    if (run.beta1, run.beta2) != (reference.beta1, reference.beta2) {
        flags.push(format!("--beta1 {} --beta2 {}", short(run.beta1), short(run.beta2)));
    }
    if run.layout == Layout::Text && run.eval_windows != reference.eval_windows {
        flags.push(format!("--eval-windows {}", run.eval_windows));
    }
    flags.iter().map(|f| format!(" {f}")).collect()
}

/// A number as a person would type it: `0.01`, `1e300`.
fn short(x: f64) -> String {
    // seven significant digits: a tenth of 1e150 is 1e149, not 9.99999999999999e148
    let x: f64 = format!("{x:.6e}").parse().expect("a formatted float parses");
    if (1e-4..1e5).contains(&x.abs()) { format!("{x}") } else { format!("{x:e}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::train::Decay;

    /// The divergence advice repeats what the run set beyond its steps and rate.
    #[test]
    fn the_advice_repeats_the_runs_other_settings() {
        let mut run = TrainConfig { num_steps: 2000, lr: 1e-3, precision: Precision::F32, ..TrainConfig::default() };
        assert_eq!(other_settings(&run, 500), "");
        (run.batch_size, run.warmup_steps, run.decay, run.min_lr) = (12, 100, Decay::Cosine, 1e-4);
        (run.weight_decay, run.grad_clip, run.dropout) = (0.1, Some(1.0), 0.2);
        assert_eq!(
            other_settings(&run, 50),
            " --batch-size 12 --warmup-steps 49 --decay cosine --min-lr 1e-5 --weight-decay 0.1 --grad-clip 1 --dropout 0.2"
        );
        (run.layout, run.beta1, run.eval_windows) = (Layout::Text, 0.9, 100);
        assert_eq!(
            other_settings(&run, 50),
            " --layout text --batch-size 12 --warmup-steps 49 --decay cosine --min-lr 1e-5 --weight-decay 0.1 --grad-clip 1 --dropout 0.2 --beta1 0.9 --beta2 0.99 --eval-windows 100"
        );
        let advice = after_divergence(&run, Path::new("d.txt"), Some(Path::new("ck")), Some(1990));
        assert!(advice.contains("train --init-from ck --data d.txt --lr 0.0001 --steps 10 --layout text"), "{advice}");
        assert_eq!(
            after_divergence(&run, Path::new("d.txt"), None, None),
            "lower the learning rate (--lr 0.001 now, try 0.0001)"
        );
    }

    #[test]
    fn numbers_are_short_as_typed() {
        assert_eq!(short(1e150 / 10.0), "1e149");
        assert_eq!(short(0.01 / 10.0), "0.001");
        assert_eq!(short(3e-3), "0.003");
        assert_eq!(short(0.1 + 0.2), "0.3");
    }
}
