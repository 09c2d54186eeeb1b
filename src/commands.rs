//! What each subcommand does, from parsed flags to printed results: `train` (and the bare
//! reference run), `sample`, `eval` and `inspect`. The pieces themselves live in their own
//! modules; `train` reads as its phases: settings, data, model, the run, the results.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;

use crate::adam::Adam;
use crate::batch::{Batcher, EvalSet};
use crate::checkpoint::{self, InitFrom, Meta, RunSettings};
use crate::cli::{EvalArgs, InspectArgs, SampleArgs, SamplingArgs, TrainArgs};
use crate::config::{GPTConfig, Preset, Recipe};
use crate::data::{self, Data, DataFile, Dataset, Layout, Named, Text, Tokenizer};
use crate::device::{self, Runtime};
use crate::inspect;
use crate::model::GPT;
use crate::rng::PyRandom;
use crate::sample::{self, Novelty, SampleOptions};
use crate::schedule::Decay;
use crate::train::{self, Progress, Session, TrainOptions, TrainReport};

/// How a command ended, for the exit code.
pub enum Outcome {
    /// Finished.
    Done,
    /// Stopped by Ctrl-C or SIGTERM after saving what there was to save.
    Interrupted,
}

/// What `train` prints after the samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// The reference's output and nothing more (the bare `microgpt` run).
    Reference,
    /// Also makemore's novelty check: how many samples are training, held-out or new documents.
    WithNovelty,
}

/// The reference defaults, filled in where a flag was not given.
const DEFAULT_STEPS: usize = 1000;
const DEFAULT_LR: f64 = 0.01;
const DEFAULT_SEED: u64 = 42;

/// The sampling flags; clap has checked their ranges, `sample::sample` checks them again for
/// callers of the library.
fn sample_options(args: &SamplingArgs) -> SampleOptions {
    SampleOptions {
        num_samples: args.num_samples,
        num_chars: args.num_chars,
        temperature: args.temperature,
        top_k: args.top_k,
        prefix: args.prefix.clone(),
    }
}

/// Where a training run's weights come from.
enum Start {
    /// Drawn from the seed, as the reference does.
    Fresh,
    /// `--resume DIR`: the saved run, continued exactly as it was.
    Resume(PathBuf, Meta),
    /// `--init-from DIR`: the saved weights, trained further as a new run.
    InitFrom(PathBuf, Meta),
}

impl Start {
    fn of(args: &TrainArgs) -> Result<Self> {
        Ok(match (&args.resume, &args.init_from) {
            (Some(dir), _) => Start::Resume(dir.clone(), checkpoint::read_meta(dir)?),
            (None, Some(dir)) => Start::InitFrom(dir.clone(), checkpoint::read_meta(dir)?),
            (None, None) => Start::Fresh,
        })
    }

    /// The checkpoint read, whether resumed or started from.
    fn checkpoint(&self) -> Option<(&Path, &Meta)> {
        match self {
            Start::Fresh => None,
            Start::Resume(dir, meta) | Start::InitFrom(dir, meta) => Some((dir, meta)),
        }
    }

    /// Why the checkpoint's model sizes must be kept, for the message of a flag that differs.
    fn keeps_sizes_because(&self) -> &'static str {
        match self {
            Start::InitFrom(..) => "--init-from keeps the checkpoint's model",
            _ => "a resume continues the saved run as it was",
        }
    }
}

/// Where a saved run's value must agree with the flag given now: the saved value, or why not.
fn check_same<T: PartialEq + std::fmt::Display>(flag: &str, given: Option<T>, saved: T, because: &str) -> Result<T> {
    match given {
        Some(value) if value != saved => bail!("--{flag} {value} differs from the checkpoint's {saved}: {because}"),
        _ => Ok(saved),
    }
}

/// `microgpt` and `microgpt train`: train, evaluate, sample.
pub fn train(args: &TrainArgs, report: Report) -> Result<Outcome> {
    let sampling = sample_options(&args.sampling);
    let start = Start::of(args)?;
    let (out, saved) = output_dir(args, &start)?;
    let (run, runtime) = settings(args, &start)?;

    // data: the reference's shuffle is the generator's first use
    let mut rng = PyRandom::new(run.seed);
    let (data, data_file) = load_data(args, &start, run.layout, &mut rng)?;
    match &data {
        Data::Lines(dataset) => println!("num docs: {}", dataset.docs.len()),
        Data::Text(text) => println!(
            "num chars: {} ({} train, {} held out)",
            text.tokens.len(),
            text.train_tokens().len(),
            text.val_tokens().len()
        ),
    }
    println!("vocab size: {}", data.tokenizer().vocab_size());

    // model: drawn from the generator even when loaded, so that sampling draws stay aligned
    let config = architecture(args, &start, &data)?;
    check_fits(&data, &config, &sampling)?;
    let _lock = out.as_deref().map(checkpoint::lock).transpose()?; // one run per directory
    let (model, optim, step) = initial_state(&config, &start, &runtime, &run, &mut rng)?;
    println!("num params: {}", model.num_params());
    if let Start::InitFrom(dir, meta) = &start {
        let val = EvalSet::held_out(&data, config.block_size, run.eval_windows, run.seed, false, &runtime.device);
        let before = train::evaluate(&model.valid(), &val)?;
        println!("init from {} (step {}): val loss {before:.4} before training", dir.display(), meta.step);
    }

    // the run
    let options = train_options(args, run, data_file, out, &start, &runtime)?;
    let stop = train::interrupt_flag();
    let session = Session { model, optim, step, config: &config, data: &data, options: &options, stop, saved };
    let (model, _optim, trained) = session.run()?;
    if trained.interrupted {
        say_interrupted(&trained, &options);
        return Ok(Outcome::Interrupted);
    }

    // results: held-out loss, speed, samples
    print_results(&trained);
    match &data {
        Data::Lines(dataset) => {
            println!("--- inference (new, hallucinated names) ---");
            let samples = sample::sample(&model.valid(), &dataset.tokenizer, &sampling, &mut rng)?;
            print_samples(&samples);
            if report == Report::WithNovelty {
                print_novelty(&samples, dataset);
            }
        }
        Data::Text(text) => print_passage(&model.valid(), &text.tokenizer, &sampling, &mut rng)?,
    }
    Ok(Outcome::Done)
}

/// Refuse, before training, what the model cannot hold: a prefix longer than its context, a
/// text without room for one window; warn once of the documents that block_size cuts.
fn check_fits(data: &Data, config: &GPTConfig, sampling: &SampleOptions) -> Result<()> {
    match data {
        Data::Lines(dataset) => {
            sampling.prefix_tokens(&dataset.tokenizer, config.block_size)?;
            let cut = data::count_cut(&dataset.docs, config.block_size);
            if cut > 0 {
                eprintln!(
                    "warning: {cut} documents are longer than block_size {} allows; they are cut, as the reference does",
                    config.block_size
                );
            }
        }
        Data::Text(text) => {
            text.check_windows(config.block_size)?;
            sampling.prefix_ids(&text.tokenizer)?;
        }
    }
    Ok(())
}

/// `--- inference (a passage of 500 characters) ---` and the passage.
fn print_passage(model: &GPT, tokenizer: &Tokenizer, sampling: &SampleOptions, rng: &mut PyRandom) -> Result<()> {
    println!("--- inference (a passage of {} characters) ---", sampling.num_chars);
    println!("{}", sample::passage(model, tokenizer, sampling, rng)?);
    Ok(())
}

/// The directory this run saves in, refused when it holds another run that it would replace
/// (unless `--overwrite`), and the step whose checkpoint it already holds when a resume saves
/// back where it read (that step is not saved again). Nothing in it is touched here.
fn output_dir(args: &TrainArgs, start: &Start) -> Result<(Option<PathBuf>, Option<usize>)> {
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

/// Refuse a schedule that cannot run: a warmup as long as the run, a floor above the peak.
fn check_schedule(run: &RunSettings) -> Result<()> {
    if run.warmup_steps >= run.num_steps {
        bail!(
            "--warmup-steps {} leaves no step to decay over in --steps {}: warm up for fewer steps",
            run.warmup_steps,
            run.num_steps
        );
    }
    if run.min_lr > run.lr {
        bail!("--min-lr {} is above --lr {}: the decay ends below where it starts", run.min_lr, run.lr);
    }
    if run.lr * run.weight_decay >= 1.0 {
        bail!(
            "--weight-decay {} at --lr {} would scale every weight by {} a step: keep lr * weight decay below 1",
            run.weight_decay,
            run.lr,
            1.0 - run.lr * run.weight_decay
        );
    }
    Ok(())
}

/// Whether two paths name one directory (`ck` and `./ck`).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The training recipe of `--preset`, when it has one (the Shakespeare presets).
fn recipe(args: &TrainArgs) -> Option<Recipe> {
    args.preset.and_then(Preset::recipe)
}

/// The data set trained on when `--data` is not given: `--dataset`, else the preset's, else names.
fn named_data(args: &TrainArgs) -> Named {
    args.dataset.or(recipe(args).map(|r| r.dataset)).unwrap_or(Named::Names)
}

/// A setting of a new run: its flag, else the preset's recipe, else the reference's value.
fn pick<T>(flag: Option<T>, recipe: Option<&Recipe>, of_recipe: impl Fn(&Recipe) -> T, reference: T) -> T {
    flag.or_else(|| recipe.map(of_recipe)).unwrap_or(reference)
}

/// The run settings (the flags, or the checkpoint's when resuming) and the device.
fn settings(args: &TrainArgs, start: &Start) -> Result<(RunSettings, Runtime)> {
    let because = start.keeps_sizes_because();
    let (run, dtype) = match start {
        Start::Resume(_, meta) => {
            let saved = &meta.run;
            let run = RunSettings {
                seed: check_same("seed", args.seed, saved.seed, because)?,
                num_steps: check_same("steps", args.steps, saved.num_steps, because)?,
                lr: check_same("lr", args.lr, saved.lr, because)?,
                batch_size: check_same("batch-size", args.batch_size, saved.batch_size, because)?,
                precision: saved.precision,
                warmup_steps: check_same("warmup-steps", args.warmup_steps, saved.warmup_steps, because)?,
                decay: check_same("decay", args.decay, saved.decay, because)?,
                min_lr: check_same("min-lr", args.min_lr, saved.min_lr, because)?,
                weight_decay: check_same("weight-decay", args.weight_decay, saved.weight_decay, because)?,
                grad_clip: match (args.grad_clip, saved.grad_clip) {
                    (Some(given), saved) if Some(given) != saved => bail!(
                        "--grad-clip {given} differs from the checkpoint's {}: {because}",
                        saved.map_or("none".to_string(), |s| s.to_string())
                    ),
                    (_, saved) => saved,
                },
                dropout: check_same("dropout", args.dropout, saved.dropout, because)?,
                beta1: check_same("beta1", args.beta1, saved.beta1, because)?,
                beta2: check_same("beta2", args.beta2, saved.beta2, because)?,
                layout: check_same("layout", args.layout, saved.layout, because)?,
                eval_windows: check_same("eval-windows", args.eval_windows, saved.eval_windows, because)?,
            };
            (run, Some(check_same("dtype", args.device.dtype, saved.precision, because)?))
        }
        _ => {
            // the flags, else the preset's recipe, else the reference's
            let recipe = recipe(args);
            let r = recipe.as_ref();
            let mut run = RunSettings::new(
                args.seed.unwrap_or(DEFAULT_SEED),
                pick(args.steps, r, |r| r.steps, DEFAULT_STEPS),
                pick(args.lr, r, |r| r.lr, DEFAULT_LR),
                pick(args.batch_size, r, |r| r.batch_size, 1),
                device::Precision::F64, // replaced below by the device's
            );
            run.warmup_steps = pick(args.warmup_steps, r, |r| r.warmup_steps, 0);
            run.decay = pick(args.decay, r, |r| r.decay, Decay::default());
            run.min_lr = pick(args.min_lr, r, |r| r.min_lr, 0.0);
            run.weight_decay = pick(args.weight_decay, r, |r| r.weight_decay, 0.0);
            run.grad_clip = args.grad_clip.or(r.map(|r| r.grad_clip));
            run.dropout = pick(args.dropout, r, |r| r.dropout, 0.0);
            run.beta1 = pick(args.beta1, r, |r| r.beta1, run.beta1);
            run.beta2 = pick(args.beta2, r, |r| r.beta2, run.beta2);
            run.layout = args.layout.unwrap_or(match (&args.data, &recipe) {
                (None, _) => named_data(args).layout(),
                (Some(_), Some(_)) => Layout::Text, // the Shakespeare presets read their --data as a text
                (Some(_), None) => Layout::Lines,
            });
            run.eval_windows = args.eval_windows.unwrap_or(checkpoint::DEFAULT_EVAL_WINDOWS);
            check_schedule(&run)?;
            (run, args.device.dtype.or(recipe.map(|r| r.precision)))
        }
    };
    let runtime = device::open(args.device.device, dtype)?;
    let run = RunSettings { precision: runtime.precision, ..run };
    Ok((run, runtime))
}

/// The data in `layout` (documents shuffled by `rng`, or one text), and the data file as
/// checkpoints record it. A resume without `--data` or `--dataset` reads the file its checkpoint
/// records (hashed once); with either, the file named must hold the same bytes. A run from
/// `--init-from` speaks the checkpoint's vocabulary, which must hold every character of the new
/// data.
fn load_data(args: &TrainArgs, start: &Start, layout: Layout, rng: &mut PyRandom) -> Result<(Data, DataFile)> {
    let (path, recorded) = match start {
        Start::Resume(dir, meta) if args.data.is_none() && args.dataset.is_none() => {
            let (path, file) = recorded_data(meta, dir)?;
            (path, Some(file))
        }
        _ => {
            let named = named_data(args);
            let url = args.data_url.as_deref().unwrap_or(named.url());
            (data::resolve_data_path(args.data.as_deref(), named, url)?, None)
        }
    };
    let mut read = || -> Result<Data> {
        Ok(match layout {
            Layout::Lines => Data::Lines(Dataset::new(data::read_documents(&path)?, rng)?),
            Layout::Text => Data::Text(Text::new(&data::read_text(&path)?, None)?),
        })
    };
    let mut data = match start {
        Start::InitFrom(dir, meta) => {
            let data = read()?;
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
        _ => read()?,
    };
    let named_by_flag = recorded.is_none();
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
        if named_by_flag && !same_data(meta, &file) {
            let given = match args.dataset.filter(|_| args.data.is_none()) {
                Some(named) => format!("--dataset {} ({})", named.name(), path.display()),
                None => format!("--data {}", path.display()),
            };
            bail!(
                "{given} is not the file the checkpoint was trained on (its size or SHA-256 differs): a resume continues the saved run as it was"
            );
        }
    }
    Ok((data, file))
}

/// The architecture: a loaded checkpoint's (size flags, if given, must equal it), or the
/// preset's with the flags that override it.
fn architecture(args: &TrainArgs, start: &Start, data: &Data) -> Result<GPTConfig> {
    match start.checkpoint() {
        Some((_, meta)) => {
            check_same_sizes(args, &meta.config, start.keeps_sizes_because())?;
            Ok(meta.config.clone())
        }
        None => model_config(args, data.tokenizer().vocab_size()),
    }
}

/// The model, the optimizer and the steps done: drawn fresh; a resumed checkpoint's weights,
/// Adam state and step; or an `--init-from` checkpoint's weights with a fresh Adam at step 0.
/// A new run keeps no Adam state: its moments and bias correction belong to the old schedule,
/// and microGPT's Adam starts each schedule from zero moments.
fn initial_state(
    config: &GPTConfig,
    start: &Start,
    runtime: &Runtime,
    run: &RunSettings,
    rng: &mut PyRandom,
) -> Result<(GPT, ModuleOptimizer, usize)> {
    let ad_device = runtime.device.clone().autodiff();
    let model = GPT::init(config, rng, &ad_device);
    let adam = Adam::reference()
        .betas(run.beta1, run.beta2)
        .on_host(!device::is_gpu(runtime.kind))
        .weight_decay(run.weight_decay);
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

/// How the session runs, from the flags.
fn train_options(
    args: &TrainArgs,
    run: RunSettings,
    data: DataFile,
    out: Option<PathBuf>,
    start: &Start,
    runtime: &Runtime,
) -> Result<TrainOptions> {
    let init_from = match start {
        Start::InitFrom(dir, meta) => {
            Some(InitFrom { dir: std::path::absolute(dir)?.display().to_string(), step: meta.step })
        }
        _ => None,
    };
    Ok(TrainOptions {
        stop_at: args.stop_at,
        eval_every: args.eval_every.or(recipe(args).map(|r| r.eval_every)).or(match start {
            Start::Resume(_, meta) => meta.eval_every, // a resume keeps the run's schedule
            _ => None,
        }),
        log_every: args.log_every,
        sync_every: args.sync_every.unwrap_or_else(|| device::default_sync_every(runtime.kind)),
        fixed_length: device::is_gpu(runtime.kind),
        parts: device::batch_parts(runtime.kind),
        grads_on_host: !device::is_gpu(runtime.kind),
        out,
        save_every: args.save_every,
        progress: Progress::detect(args.quiet),
        init_from,
        ..TrainOptions::new(run, data)
    })
}

fn say_interrupted(trained: &TrainReport, options: &TrainOptions) {
    match &options.out {
        Some(dir) => eprintln!(
            "interrupted at step {}: checkpoint saved to {}; continue with --resume {}",
            trained.step,
            dir.display(),
            dir.display()
        ),
        None => eprintln!("interrupted at step {} (nothing saved: pass --out DIR to keep checkpoints)", trained.step),
    }
}

/// `val loss: 2.3689` and the training speed.
fn print_results(trained: &TrainReport) {
    let val_loss = trained.val_loss.expect("a finished session evaluates the held-out documents");
    println!("val loss: {val_loss:.4}");
    if trained.steps_run > 0 {
        let secs = trained.train_time.as_secs_f64();
        println!(
            "train time: {secs:.3} s ({:.1} steps/s, {:.0} tokens/s)",
            trained.steps_run as f64 / secs,
            trained.tokens as f64 / secs
        );
    }
}

/// `sample  1: kamon`, the reference's format.
fn print_samples(samples: &[String]) {
    for (i, s) in samples.iter().enumerate() {
        println!("sample {:2}: {s}", i + 1);
    }
}

fn print_novelty(samples: &[String], dataset: &Dataset) {
    let n = Novelty::of(samples, dataset.train_docs(), dataset.val_docs());
    println!("samples: {} in the training set, {} in the held-out set, {} new", n.in_train, n.in_val, n.new);
}

/// The architecture from the preset and the flags that override it.
fn model_config(args: &TrainArgs, vocab_size: usize) -> Result<GPTConfig> {
    let mut config = GPTConfig::preset(args.preset.unwrap_or(Preset::Reference), vocab_size);
    if let Some(n) = args.n_layer {
        config.n_layer = n;
    }
    if let Some(n) = args.n_embd {
        config.n_embd = n;
    }
    if let Some(n) = args.n_head {
        config.n_head = n;
    }
    if let Some(n) = args.block_size {
        config.block_size = n;
    }
    if let Some(std) = args.init_std {
        // the reference's value is the default: recorded as none, so that presets compare equal
        config.init_std = Some(std).filter(|&std| std != crate::config::REFERENCE_INIT_STD);
    }
    config.validate()?;
    Ok(config)
}

/// A loaded checkpoint keeps its architecture: size flags, if given, must equal it.
fn check_same_sizes(args: &TrainArgs, saved: &GPTConfig, because: &str) -> Result<()> {
    if let Some(preset) = args.preset {
        let wanted = GPTConfig::preset(preset, saved.vocab_size);
        if wanted != *saved {
            let name = |p: Preset| p.name();
            let saved_name = Preset::ALL
                .into_iter()
                .find(|&p| GPTConfig::preset(p, saved.vocab_size) == *saved)
                .map(name)
                .unwrap_or_else(|| "custom sizes".to_string());
            bail!(
                "--preset {} differs from the checkpoint's {saved_name} ({}): {because}",
                name(preset),
                saved.describe()
            );
        }
    }
    check_same("n-layer", args.n_layer, saved.n_layer, because)?;
    check_same("n-embd", args.n_embd, saved.n_embd, because)?;
    check_same("n-head", args.n_head, saved.n_head, because)?;
    check_same("block-size", args.block_size, saved.block_size, because)?;
    check_same("init-std", args.init_std, saved.init_std(), because)?;
    Ok(())
}

/// The data file a checkpoint was trained on, at the absolute path it records, which must
/// still hold the same bytes: that path, and the file as it is now (read and hashed once).
fn recorded_data(meta: &Meta, dir: &Path) -> Result<(PathBuf, DataFile)> {
    let meta_path = dir.join("checkpoint.json");
    let path = meta.data.as_deref().map(PathBuf::from).unwrap_or_else(|| PathBuf::from(data::DEFAULT_DATA));
    if !path.is_file() {
        bail!(
            "the data file {} recorded in {} is gone: pass --data PATH to the file the model was trained on",
            path.display(),
            meta_path.display()
        );
    }
    let file = data::DataFile::of(&path)?;
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

/// `microgpt sample --checkpoint DIR`.
pub fn sample(args: &SampleArgs) -> Result<Outcome> {
    let options = sample_options(&args.sampling);
    checkpoint::read_meta(&args.checkpoint)?; // a bad checkpoint is reported before the device opens
    let runtime = device::open(args.device.device, args.device.dtype)?;
    let loaded = checkpoint::load(&args.checkpoint, &runtime.device)?;
    let meta = &loaded.meta; // what was loaded: a run may have saved a newer one since
    let mut rng = PyRandom::new(args.seed);
    match meta.run.layout {
        Layout::Lines => print_samples(&sample::sample(&loaded.model, &meta.vocab, &options, &mut rng)?),
        Layout::Text => println!("{}", sample::passage(&loaded.model, &meta.vocab, &options, &mut rng)?),
    }
    Ok(Outcome::Done)
}

/// `microgpt eval --checkpoint DIR [--data PATH]`.
pub fn eval(args: &EvalArgs) -> Result<Outcome> {
    checkpoint::read_meta(&args.checkpoint)?; // a bad checkpoint is reported before the device opens
    let runtime = device::open(args.device.device, args.device.dtype)?;
    let loaded = checkpoint::load(&args.checkpoint, &runtime.device)?;
    let meta = &loaded.meta; // what was loaded: a run may have saved a newer one since
    let (vocab, block_size) = (&meta.vocab, meta.config.block_size);
    let (set, what) = match (meta.run.layout, &args.data) {
        (Layout::Lines, Some(path)) => {
            let docs = data::read_documents(path)?;
            for doc in &docs {
                vocab.encode(doc).map_err(|err| {
                    anyhow::anyhow!("document {doc:?}: {err}; evaluate on data with the checkpoint's characters")
                })?;
            }
            let what = format!("{} documents: every document of {}", docs.len(), path.display());
            (EvalSet::Documents(Box::new(Batcher::new(vocab, &docs, block_size, &runtime.device))), what)
        }
        (Layout::Lines, None) => {
            let (path, _) = recorded_data(meta, &args.checkpoint)?;
            let dataset = Dataset::new(data::read_documents(&path)?, &mut PyRandom::new(meta.run.seed))?;
            let what = format!("{} documents: the held-out documents of {}", dataset.val_docs().len(), path.display());
            (EvalSet::Documents(Box::new(Batcher::new(vocab, dataset.val_docs(), block_size, &runtime.device))), what)
        }
        (Layout::Text, Some(path)) => {
            let text = data::read_text(path)?;
            let tokens = vocab.encode(&text).map_err(|err| {
                anyhow::anyhow!("{}: {err}; evaluate on text in the checkpoint's characters", path.display())
            })?;
            if tokens.len() <= block_size {
                bail!(
                    "{} holds {} characters, fewer than one window of block_size + 1 = {}: evaluate on a longer text",
                    path.display(),
                    tokens.len(),
                    block_size + 1
                );
            }
            let set = EvalSet::tiled(&tokens, block_size, &runtime.device);
            let what = format!("{} windows of {block_size} side by side: the whole of {}", set.count(), path.display());
            (set, what)
        }
        (Layout::Text, None) => {
            let (path, _) = recorded_data(meta, &args.checkpoint)?;
            let data = Data::Text(Text::new(&data::read_text(&path)?, Some(vocab.clone()))?);
            let run = &meta.run;
            let set = EvalSet::held_out(&data, block_size, run.eval_windows, run.seed, false, &runtime.device);
            let what = format!("{} windows: the held-out windows of {}", set.count(), path.display());
            (set, what)
        }
    };
    let loss = train::evaluate(&loaded.model, &set)?;
    println!("loss: {loss:.4} ({what})");
    Ok(Outcome::Done)
}

/// `microgpt inspect --checkpoint DIR --text TEXT [--out OUT]`.
pub fn inspect(args: &InspectArgs) -> Result<Outcome> {
    checkpoint::read_meta(&args.checkpoint)?; // a bad checkpoint is reported before the device opens
    let runtime = device::open(args.device.device, args.device.dtype)?;
    let loaded = checkpoint::load(&args.checkpoint, &runtime.device)?;
    let meta = &loaded.meta; // what was loaded: a run may have saved a newer one since
    let (model, vocab) = (&loaded.model, &meta.vocab);
    let layout = meta.run.layout;
    let seen = inspect::inspect(model, vocab, &args.text, layout)?;
    if seen.cut > 0 {
        let (length, block_size) = (args.text.chars().count(), meta.config.block_size);
        match layout {
            Layout::Lines => eprintln!(
                "warning: --text is {length} characters, more than block_size {block_size} leaves room for: its last {} tokens (the end included) are cut, as training cuts them",
                seen.cut
            ),
            Layout::Text => eprintln!(
                "warning: --text is {length} characters, more than a window of block_size + 1 = {}: its first {} are left out",
                block_size + 1,
                seen.cut
            ),
        }
    }

    println!(
        "{:>3}  {:<5}  {:<53}  {:<5} {:>8} {:>7}",
        "pos", "input", "five likeliest next characters", "next", "p(next)", "loss"
    );
    for (pos, p) in seen.predictions.iter().enumerate() {
        let top: Vec<String> =
            p.top.iter().map(|&(id, prob)| format!("{:>3} {prob:.3}", inspect::symbol(vocab, id))).collect();
        println!(
            "{pos:>3}  {:<5}  {:<53}  {:<5} {:>8.4} {:>7.4}",
            inspect::symbol(vocab, p.input),
            top.join("  "),
            inspect::symbol(vocab, p.target),
            p.p_target,
            p.loss
        );
    }
    println!("mean loss: {:.4} ({} positions)", seen.mean_loss, seen.predictions.len());

    let out = args.out.clone().unwrap_or_else(|| args.checkpoint.join("inspect"));
    std::fs::create_dir_all(&out).map_err(|err| anyhow::anyhow!("cannot create {}: {err}", out.display()))?;
    inspect::plot_attention(&seen, vocab, &out.join("attention.png"))?;
    inspect::plot_embeddings(&inspect::embedding_pca(model)?, vocab, &out.join("embeddings.png"))?;
    println!("pictures: {} and {}", out.join("attention.png").display(), out.join("embeddings.png").display());
    Ok(Outcome::Done)
}
