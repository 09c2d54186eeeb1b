//! What each subcommand does, from parsed flags to printed results: `train` (and the bare
//! reference run), `sample` and `eval`. The pieces themselves live in their own modules.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::module::Module;

use crate::adam::Adam;
use crate::checkpoint::{self, RunSettings};
use crate::cli::{EvalArgs, InspectArgs, SampleArgs, SamplingArgs, TrainArgs};
use crate::config::{GPTConfig, Preset};
use crate::data::{self, Batcher, Dataset};
use crate::device;
use crate::inspect;
use crate::model::GPT;
use crate::rng::PyRandom;
use crate::sample::{self, Novelty, SampleOptions};
use crate::train::{self, Progress, Session, TrainOptions};

/// How a command ended, for the exit code.
pub enum Outcome {
    /// Finished.
    Done,
    /// Stopped by Ctrl-C or SIGTERM after saving what there was to save.
    Interrupted,
}

/// The reference defaults, filled in where a flag was not given.
const DEFAULT_STEPS: usize = 1000;
const DEFAULT_LR: f64 = 0.01;
const DEFAULT_SEED: u64 = 42;

fn sample_options(args: &SamplingArgs) -> Result<SampleOptions> {
    let options = SampleOptions {
        num_samples: args.num_samples,
        temperature: args.temperature,
        top_k: args.top_k,
        prefix: args.prefix.clone(),
    };
    options.validate()?;
    Ok(options)
}

/// Where a resumed run's settings must agree with the flags given now.
fn check_same<T: PartialEq + std::fmt::Display>(flag: &str, given: Option<T>, saved: T) -> Result<T> {
    match given {
        Some(value) if value != saved => {
            bail!("--{flag} {value} differs from the checkpoint's {saved}: a resume continues the saved run as it was")
        }
        _ => Ok(saved),
    }
}

/// `microgpt` and `microgpt train`: train, evaluate, sample. `extras` adds what the bare
/// reference run leaves out (the novelty report).
pub fn train(args: &TrainArgs, extras: bool) -> Result<Outcome> {
    let sampling = sample_options(&args.sampling)?;
    if args.save_every.is_some() && args.out.is_none() && args.resume.is_none() {
        bail!("--save-every needs --out DIR: the directory to save checkpoints in");
    }
    let resume = match &args.resume {
        Some(dir) => Some(checkpoint::read_meta(dir)?),
        None => None,
    };

    // settings: the flags, or the checkpoint's when resuming
    let run = match &resume {
        Some(meta) => RunSettings {
            seed: check_same("seed", args.seed, meta.run.seed)?,
            num_steps: check_same("steps", args.steps, meta.run.num_steps)?,
            lr: check_same("lr", args.lr, meta.run.lr)?,
            batch_size: check_same("batch-size", args.batch_size, meta.run.batch_size)?,
            precision: meta.run.precision,
        },
        None => RunSettings {
            seed: args.seed.unwrap_or(DEFAULT_SEED),
            num_steps: args.steps.unwrap_or(DEFAULT_STEPS),
            lr: args.lr.unwrap_or(DEFAULT_LR),
            batch_size: args.batch_size.unwrap_or(1),
            precision: device::Precision::F64, // replaced below by the device's
        },
    };
    let dtype = match &resume {
        Some(meta) => Some(check_same("dtype", args.device.dtype, meta.run.precision)?),
        None => args.device.dtype,
    };
    let runtime = device::open(args.device.device, dtype)?;
    let run = RunSettings {
        precision: runtime.precision,
        ..run
    };

    // data: the reference's shuffle is the generator's first use
    let (data_path, recorded) = match (&resume, &args.resume) {
        (Some(meta), Some(dir)) if args.data.is_none() => {
            let (path, file) = recorded_data(meta, dir)?;
            (path, Some(file))
        }
        _ => (data::resolve_data_path(args.data.as_deref(), &args.data_url)?, None),
    };
    let docs = data::read_documents(&data_path)?;
    let data_file = match recorded {
        Some(file) => file,
        None => data::DataFile::of(&data_path)?,
    };
    let mut rng = PyRandom::new(run.seed);
    let dataset = Dataset::new(docs, &mut rng)?;
    dataset
        .tokenizer
        .encode(&sampling.prefix)
        .map_err(|err| anyhow::anyhow!("--prefix {:?}: {err}", sampling.prefix))?;
    println!("num docs: {}", dataset.docs.len());
    println!("vocab size: {}", dataset.tokenizer.vocab_size());

    // model: drawn from the generator even when resuming, so that sampling draws stay aligned
    let config = match &resume {
        Some(meta) => {
            if meta.vocab != dataset.tokenizer {
                bail!(
                    "the vocabulary of {} differs from the checkpoint's: pass the --data the checkpoint was trained on",
                    data_path.display()
                );
            }
            if args.data.is_some() && !same_data(meta, &data_file) {
                bail!(
                    "--data {} is not the file the checkpoint was trained on (its size or SHA-256 differs): a resume continues the saved run as it was",
                    data_path.display()
                );
            }
            check_same_sizes(args, &meta.config)?;
            meta.config.clone()
        }
        None => model_config(args, dataset.tokenizer.vocab_size())?,
    };
    // one run per output directory, held until this process ends
    let out = args.out.clone().or_else(|| args.resume.clone());
    let _lock = out.as_deref().map(checkpoint::lock).transpose()?;
    let cut = data::count_cut(&dataset.docs, config.block_size);
    if cut > 0 {
        eprintln!(
            "warning: {cut} documents are longer than block_size {} allows; they are cut, as the reference does",
            config.block_size
        );
    }
    let ad_device = runtime.device.clone().autodiff();
    let mut model = GPT::init(&config, &mut rng, &ad_device);
    let adam = Adam::reference_for(runtime.kind);
    let mut optim = adam.clone().init();
    let mut step = 0;
    if let (Some(meta), Some(dir)) = (&resume, &args.resume) {
        let loaded = checkpoint::load(dir, &ad_device)?;
        optim = loaded.optimizer(adam)?;
        model = loaded.model;
        step = meta.step;
    }
    println!("num params: {}", model.num_params());

    let options = TrainOptions {
        run: run.clone(),
        data: data_file,
        stop_at: args.stop_at,
        eval_every: args.eval_every,
        log_every: args.log_every,
        sync_every: args
            .sync_every
            .unwrap_or_else(|| device::default_sync_every(runtime.kind)),
        fixed_length: device::is_gpu(runtime.kind),
        out,
        save_every: args.save_every,
        progress: Progress::detect(args.quiet),
    };
    let session = Session {
        model,
        optim,
        step,
        config: &config,
        data: &dataset,
        options: &options,
        stop: train::interrupt_flag(),
    };
    let (model, _optim, report) = session.run()?;
    if report.interrupted {
        match &options.out {
            Some(dir) => eprintln!(
                "interrupted at step {}: checkpoint saved to {}; continue with --resume {}",
                report.step,
                dir.display(),
                dir.display()
            ),
            None => eprintln!(
                "interrupted at step {} (nothing saved: pass --out DIR to keep checkpoints)",
                report.step
            ),
        }
        return Ok(Outcome::Interrupted);
    }

    // results: held-out loss, speed, samples
    let model = model.valid();
    println!(
        "val loss: {:.4}",
        report
            .val_loss
            .expect("a finished session evaluates the held-out documents")
    );
    if report.steps_run > 0 {
        let secs = report.train_time.as_secs_f64();
        println!(
            "train time: {secs:.3} s ({:.1} steps/s, {:.0} tokens/s)",
            report.steps_run as f64 / secs,
            report.tokens as f64 / secs
        );
    }
    println!("--- inference (new, hallucinated names) ---");
    let samples = sample::sample(&model, &dataset.tokenizer, &sampling, &mut rng)?;
    print_samples(&samples);
    if extras {
        print_novelty(&samples, &dataset);
    }
    Ok(Outcome::Done)
}

/// `sample  1: kamon`, the reference's format.
fn print_samples(samples: &[String]) {
    for (i, s) in samples.iter().enumerate() {
        println!("sample {:2}: {s}", i + 1);
    }
}

fn print_novelty(samples: &[String], dataset: &Dataset) {
    let n = Novelty::of(samples, dataset.train_docs(), dataset.val_docs());
    println!(
        "samples: {} in the training set, {} in the held-out set, {} new",
        n.in_train, n.in_val, n.new
    );
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
    config.validate()?;
    Ok(config)
}

/// A resume keeps the checkpoint's architecture: size flags, if given, must equal it.
fn check_same_sizes(args: &TrainArgs, saved: &GPTConfig) -> Result<()> {
    if let Some(preset) = args.preset {
        let wanted = GPTConfig::preset(preset, saved.vocab_size);
        if wanted != *saved {
            let name = |p: Preset| format!("{p:?}").to_lowercase();
            let saved_name = Preset::ALL
                .into_iter()
                .find(|&p| GPTConfig::preset(p, saved.vocab_size) == *saved)
                .map(name)
                .unwrap_or_else(|| "custom sizes".to_string());
            bail!(
                "--preset {} differs from the checkpoint's {saved_name} ({}): a resume continues the saved run as it was",
                name(preset),
                saved.describe()
            );
        }
    }
    check_same("n-layer", args.n_layer, saved.n_layer)?;
    check_same("n-embd", args.n_embd, saved.n_embd)?;
    check_same("n-head", args.n_head, saved.n_head)?;
    check_same("block-size", args.block_size, saved.block_size)?;
    Ok(())
}

/// The data file a checkpoint was trained on, at the absolute path it records, which must
/// still hold the same bytes: that path, and the file as it is now (read and hashed once).
fn recorded_data(meta: &checkpoint::Meta, dir: &Path) -> Result<(PathBuf, data::DataFile)> {
    let meta_path = dir.join("checkpoint.json");
    let path = meta
        .data
        .as_deref()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(data::DEFAULT_DATA));
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
fn same_data(meta: &checkpoint::Meta, file: &data::DataFile) -> bool {
    match (meta.data_size, &meta.data_sha256) {
        (Some(size), Some(sha256)) => file.holds(size, sha256),
        _ => true,
    }
}

/// `microgpt sample --checkpoint DIR`.
pub fn sample(args: &SampleArgs) -> Result<Outcome> {
    let options = sample_options(&args.sampling)?;
    let meta = checkpoint::read_meta(&args.checkpoint)?;
    let runtime = device::open(args.device.device, args.device.dtype)?;
    let loaded = checkpoint::load(&args.checkpoint, &runtime.device)?;
    let mut rng = PyRandom::new(args.seed);
    let samples = sample::sample(&loaded.model, &meta.vocab, &options, &mut rng)?;
    print_samples(&samples);
    Ok(Outcome::Done)
}

/// `microgpt eval --checkpoint DIR [--data PATH]`.
pub fn eval(args: &EvalArgs) -> Result<Outcome> {
    let meta = checkpoint::read_meta(&args.checkpoint)?;
    let runtime = device::open(args.device.device, args.device.dtype)?;
    let loaded = checkpoint::load(&args.checkpoint, &runtime.device)?;
    let (docs, what) = match &args.data {
        Some(path) => (
            data::read_documents(path)?,
            format!("every document of {}", path.display()),
        ),
        None => {
            let (path, _) = recorded_data(&meta, &args.checkpoint)?;
            let dataset = Dataset::new(data::read_documents(&path)?, &mut PyRandom::new(meta.run.seed))?;
            (
                dataset.val_docs().to_vec(),
                format!("the held-out documents of {}", path.display()),
            )
        }
    };
    for doc in &docs {
        meta.vocab.encode(doc).map_err(|err| {
            anyhow::anyhow!("document {doc:?}: {err}; evaluate on data with the checkpoint's characters")
        })?;
    }
    let batcher = Batcher::new(&meta.vocab, &docs, meta.config.block_size, &runtime.device);
    let loss = train::evaluate(&loaded.model, &batcher)?;
    println!("loss: {loss:.4} ({} documents: {what})", docs.len());
    Ok(Outcome::Done)
}

/// `microgpt inspect --checkpoint DIR --text TEXT [--out OUT]`.
pub fn inspect(args: &InspectArgs) -> Result<Outcome> {
    let meta = checkpoint::read_meta(&args.checkpoint)?;
    let runtime = device::open(args.device.device, args.device.dtype)?;
    let loaded = checkpoint::load(&args.checkpoint, &runtime.device)?;
    let (model, vocab) = (&loaded.model, &meta.vocab);
    let seen = inspect::inspect(model, vocab, &args.text)?;
    if seen.cut > 0 {
        eprintln!(
            "warning: --text is {} characters, more than block_size {} leaves room for: its last {} tokens (the end included) are cut, as training cuts them",
            args.text.chars().count(),
            meta.config.block_size,
            seen.cut
        );
    }

    println!(
        "{:>3}  {:<5}  {:<53}  {:<5} {:>8} {:>7}",
        "pos", "input", "five likeliest next characters", "next", "p(next)", "loss"
    );
    for (pos, p) in seen.predictions.iter().enumerate() {
        let top: Vec<String> = p
            .top
            .iter()
            .map(|&(id, prob)| format!("{:>3} {prob:.3}", inspect::symbol(vocab, id)))
            .collect();
        println!(
            "{pos:>3}  {:<5}  {:<53}  {:<5} {:>8.4} {:>7.4}",
            inspect::symbol(vocab, p.input),
            top.join("  "),
            inspect::symbol(vocab, p.target),
            p.p_target,
            p.loss
        );
    }
    println!(
        "mean loss: {:.4} ({} positions)",
        seen.mean_loss,
        seen.predictions.len()
    );

    let out = args.out.clone().unwrap_or_else(|| args.checkpoint.join("inspect"));
    std::fs::create_dir_all(&out).map_err(|err| anyhow::anyhow!("cannot create {}: {err}", out.display()))?;
    inspect::plot_attention(&seen, vocab, &out.join("attention.png"))?;
    inspect::plot_embeddings(&inspect::embedding_pca(model)?, vocab, &out.join("embeddings.png"))?;
    println!(
        "pictures: {} and {}",
        out.join("attention.png").display(),
        out.join("embeddings.png").display()
    );
    Ok(Outcome::Done)
}
