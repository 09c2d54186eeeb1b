//! What each subcommand does, from parsed flags to printed results: `train` (and the bare
//! reference run), `sample`, `eval` and `inspect`, on either model. The pieces live in their own
//! modules (where a run starts: `start`; the session around the loop: `session`; the checkpoints
//! of both models: `checkpoint`); here each command reads as its phases, chooses the model once
//! (where the run starts, or what `--checkpoint` holds), and hands a GPT-2's own phases (its
//! text in GPT-2's tokens, its speed lines) to `gpt2`.

use std::io::Write;
use std::path::Path;

use anyhow::{Result, bail};
use burn::module::Module;

use crate::device::{self, Precision, Runtime};
use crate::gpt::batch::{self, EvalSet};
use crate::gpt::config::{GPTConfig, TrainConfig};
use crate::gpt::data::{self, Data, Dataset, Layout, Tokenize, Tokenizer};
use crate::gpt::gpt2::GPT2;
use crate::gpt::model::{GPT, LanguageModel};
use crate::gpt::rng::PyRandom;
use crate::gpt::sample::{self, Novelty, SampleOptions};
use crate::gpt::train::evaluate;
use crate::program::checkpoint::{self, Architecture, InitFrom, Loaded, Meta};
use crate::program::cli::{DeviceArgs, EvalArgs, InspectArgs, SampleArgs, SamplingArgs, TrainArgs};
use crate::program::datafile::DataFile;
use crate::program::hf;
use crate::program::inspect;
use crate::program::progress::Progress;
use crate::program::session::{self, Diverged, Session, TrainOptions, TrainReport};
use crate::program::start::{self, Start};

mod gpt2;

/// How a command ended, for the exit code.
pub enum Outcome {
    /// Finished.
    Done,
    /// Stopped by Ctrl-C or SIGTERM after saving what there was to save.
    Interrupted,
}

/// The sampling flags; clap has checked their ranges, `sample::sample` checks them again for
/// callers of the library.
pub(crate) fn sample_options(args: &SamplingArgs) -> SampleOptions {
    SampleOptions {
        num_samples: args.num_samples,
        num_chars: args.passage_length(),
        temperature: args.temperature,
        top_k: args.top_k,
        prefix: args.prefix.clone(),
    }
}

/// `microgpt` and `microgpt train`: train, evaluate, sample; with `novelty`, also makemore's
/// report of how many samples are training, held-out or new documents (the bare reference run
/// prints the reference's output and nothing more).
pub fn train(args: &TrainArgs, novelty: bool) -> Result<Outcome> {
    let sampling = sample_options(&args.sampling);
    let start = Start::of(args)?;
    let (out, saved) = start::output_dir(args, &start)?;
    let (run, runtime) = start::settings(args, &start)?;
    if start.is_gpt2(args) {
        return gpt2::train(args, &start, (out, saved), run, &runtime, &sampling);
    }

    // data: the reference's shuffle is the generator's first use
    let mut rng = PyRandom::new(run.seed);
    let (data, data_file) = start::load_data(args, &start, run.layout, &mut rng)?;
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
    let config = start::architecture(args, &start, data.tokenizer().vocab_size())?;
    check_fits(&data, &config, &sampling)?;
    let _lock = checkpoint::hold(out.as_deref(), args.overwrite)?; // one run per directory
    let drawn = GPT::init(&config, &mut rng, &runtime.device.clone().autodiff());
    let (model, optim, step) = start::initial_state(&start, &runtime, &run, |_| Ok(drawn))?;
    println!("num params: {}", model.num_params());
    if let Start::InitFrom(..) = &start {
        let val = EvalSet::held_out(&data, config.block_size, run.eval_windows, run.seed, false, &runtime.device);
        say_init_from(&start, &model, &val)?;
    }

    // the run
    let options = train_options(args, run, data_file, out, &start, &runtime)?;
    let stop = session::interrupt_flag();
    let device = model.devices()[0].clone();
    let (train, val) = batch::sets(&data, config.block_size, &options.run, options.fixed_length, &device);
    let architecture = Architecture::GPT(config.clone());
    let vocab = Some(data.tokenizer().clone());
    let saver = options.out.is_some().then(|| session::checkpoint_of(architecture, vocab, None, &options));
    let session = Session { model, optim, step, train, val, options: &options, stop, saved, saver };
    let Some(model) = run_to_end(session)? else { return Ok(Outcome::Interrupted) };

    // samples
    match &data {
        Data::Lines(dataset) => {
            println!("--- inference (new, hallucinated names) ---");
            let samples = sample::sample(&model.valid(), &dataset.tokenizer, &sampling, &mut rng)?;
            print_samples(&samples);
            if novelty {
                print_novelty(&samples, dataset);
            }
        }
        Data::Text(text) => print_passage(&model.valid(), &text.tokenizer, &sampling, &mut rng, "characters")?,
    }
    Ok(Outcome::Done)
}

/// `init from DIR (step N): val loss 2.1234 before training`, for a run that starts from saved weights.
pub(crate) fn say_init_from<M: LanguageModel>(start: &Start, model: &M, val: &EvalSet) -> Result<()> {
    let from = match start {
        Start::InitFrom(dir, meta) => format!("{} (step {})", dir.display(), meta.step),
        Start::Pretrained(dir) => dir.display().to_string(),
        _ => return Ok(()),
    };
    println!("init from {from}: val loss {:.4} before training", evaluate(&model.valid(), val)?);
    Ok(())
}

/// Run `session` to its end, then print its held-out loss and speed: the trained model; `None`
/// when Ctrl-C or SIGTERM stopped it (after saying how to continue). A divergence comes back with
/// the command that starts again from the last checkpoint.
pub(crate) fn run_to_end<M: LanguageModel + Sync>(session: Session<'_, M>) -> Result<Option<M>> {
    let options = session.options;
    let (model, _optim, trained) = session.run().map_err(|err| with_advice(err, options))?;
    if trained.interrupted {
        say_interrupted(&trained, options);
        return Ok(None);
    }
    print_results(&trained);
    Ok(Some(model))
}

/// A divergence, with the command that starts again from the last checkpoint.
fn with_advice(err: anyhow::Error, options: &TrainOptions) -> anyhow::Error {
    match err.downcast_ref::<Diverged>() {
        Some(diverged) => {
            let (out, saved) = (options.out.as_deref(), diverged.last_saved);
            let advice = start::after_divergence(&options.run, &options.data.path, out, saved);
            anyhow::anyhow!("{diverged}; {advice}")
        }
        None => err,
    }
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

/// `--- inference (a passage of 500 characters) ---` and the passage, as it is made.
pub(crate) fn print_passage(
    model: &impl LanguageModel,
    tokenizer: &impl Tokenize,
    sampling: &SampleOptions,
    rng: &mut PyRandom,
    unit: &str,
) -> Result<()> {
    println!("--- inference (a passage of {} {unit}) ---", sampling.num_chars);
    sample::passage(model, tokenizer, sampling, rng, show)?;
    println!();
    Ok(())
}

/// Print `text` at once, flushed, in a terminal and in a pipe alike: a passage as it is made, as
/// transformers' `TextStreamer` writes it.
pub(crate) fn show(text: &str) {
    print!("{text}");
    let _ = std::io::stdout().flush(); // a closed pipe ends the program (`main`)
}

/// How the session runs, from the flags and the device.
pub(crate) fn train_options(
    args: &TrainArgs,
    run: TrainConfig,
    data: DataFile,
    out: Option<std::path::PathBuf>,
    start: &Start,
    runtime: &Runtime,
) -> Result<TrainOptions> {
    let absolute = |dir: &Path| Ok::<_, std::io::Error>(std::path::absolute(dir)?.display().to_string());
    let init_from = match start {
        Start::Fresh => None,
        Start::Resume(_, meta) => meta.init_from.clone(), // a resume keeps where the run began
        Start::InitFrom(dir, meta) => Some(InitFrom { dir: absolute(dir)?, step: Some(meta.step) }),
        Start::Pretrained(dir) => Some(InitFrom { dir: absolute(dir)?, step: None }),
    };
    let gpu = device::is_gpu(runtime.kind);
    Ok(TrainOptions {
        stop_at: args.stop_at,
        eval_every: args.eval_every.or(args.preset.and_then(|p| p.row().eval_every)).or(match start {
            Start::Resume(_, meta) => meta.eval_every, // a resume keeps the run's schedule
            _ => None,
        }),
        log_every: args.log_every,
        sync_every: args.sync_every.unwrap_or_else(|| device::default_sync_every(runtime.kind)),
        fixed_length: gpu,
        cores: device::cores(runtime.kind),
        micro_batches: args.grad_accum,
        grads_on_host: !gpu,
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

/// What `--checkpoint` names, loaded: microGPT's checkpoint, or a GPT-2 (a checkpoint of its run,
/// a Hugging Face folder, or one of OpenAI's models by name).
#[allow(clippy::upper_case_acronyms)] // the models' own names, as `GPT` and `GPT2` spell them
enum Opened {
    GPT(Loaded<GPT>),
    GPT2(GPT2, Option<Meta>),
}

/// The model `spec` names on the device the flags ask for (a GPT-2 in f32 unless they ask
/// otherwise). A bad checkpoint or `config.json` is reported before the device opens; what is
/// loaded is what its `meta` says, even when a run saves a newer checkpoint there meanwhile.
fn open(spec: &Path, flags: &DeviceArgs) -> Result<Opened> {
    let gpt2_dtype = Some(flags.dtype.unwrap_or(Precision::F32));
    if !checkpoint::is_checkpoint(spec)
        && let Some(dir) = hf::gpt2_folder(spec)?
    {
        hf::read_config(&dir)?;
        let runtime = flags.open(flags.device, gpt2_dtype)?;
        return Ok(Opened::GPT2(hf::load(&dir, &runtime.device, runtime.precision)?, None));
    }
    Ok(match checkpoint::read_meta(spec)?.config {
        Architecture::GPT(_) if flags.dtype == Some(Precision::Bf16) => {
            bail!("--dtype bf16 is for a GPT-2's weights: {} holds microGPT's model; use f32 or f64", spec.display())
        }
        Architecture::GPT(_) => {
            let runtime = flags.open(flags.device, flags.dtype)?;
            Opened::GPT(checkpoint::load(spec, &runtime.device, runtime.precision)?)
        }
        Architecture::GPT2(_) => {
            let runtime = flags.open(flags.device, gpt2_dtype)?;
            let loaded = checkpoint::load::<GPT2>(spec, &runtime.device, runtime.precision)?;
            Opened::GPT2(loaded.model, Some(loaded.meta))
        }
    })
}

/// microGPT's vocabulary, which every checkpoint of it records ([`checkpoint::read_meta`]).
fn vocab_of(meta: &Meta) -> &Tokenizer {
    meta.vocab.as_ref().expect("a checkpoint of microGPT records its vocabulary")
}

/// `microgpt sample --checkpoint DIR`.
pub fn sample(args: &SampleArgs) -> Result<Outcome> {
    let options = sample_options(&args.sampling);
    let mut rng = PyRandom::new(args.seed);
    let loaded = match open(&args.checkpoint, &args.device)? {
        Opened::GPT(loaded) => loaded,
        Opened::GPT2(model, _) => return gpt2::sample(&model, &options, &mut rng),
    };
    let (model, vocab) = (&loaded.model, vocab_of(&loaded.meta));
    match loaded.meta.run.layout {
        Layout::Lines => print_samples(&sample::sample(model, vocab, &options, &mut rng)?),
        Layout::Text => {
            sample::passage(model, vocab, &options, &mut rng, show)?;
            println!();
        }
    }
    Ok(Outcome::Done)
}

/// `microgpt eval --checkpoint DIR [--data PATH]`.
pub fn eval(args: &EvalArgs) -> Result<Outcome> {
    let loaded = match open(&args.checkpoint, &args.device)? {
        Opened::GPT(loaded) => loaded,
        Opened::GPT2(model, meta) => return gpt2::eval(&model, meta.as_ref(), args),
    };
    let meta = &loaded.meta;
    let (vocab, block_size, device) = (vocab_of(meta), meta.block_size(), &loaded.model.devices()[0]);
    let (set, what) = match &args.data {
        Some(path) => EvalSet::whole_file(path, meta.run.layout, vocab, block_size, device)?,
        None => {
            let (path, _) = start::recorded_data(meta, &args.checkpoint)?;
            EvalSet::held_out_of_file(&path, &meta.run, vocab, block_size, device)?
        }
    };
    let loss = evaluate(&loaded.model, &set)?;
    println!("loss: {loss:.4} ({what})");
    Ok(Outcome::Done)
}

/// `microgpt inspect --checkpoint DIR --text TEXT [--out OUT]`.
pub fn inspect(args: &InspectArgs) -> Result<Outcome> {
    let loaded = match open(&args.checkpoint, &args.device)? {
        Opened::GPT(loaded) => loaded,
        Opened::GPT2(model, _) => return gpt2::inspect(&model, args),
    };
    let meta = &loaded.meta;
    let (model, vocab) = (&loaded.model, vocab_of(meta));
    let layout = meta.run.layout;
    let seen = inspect::inspect(model, vocab, &args.text, layout)?;
    if seen.cut > 0 {
        let (length, block_size) = (args.text.chars().count(), meta.block_size());
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

    let symbol = |id| inspect::symbol(vocab, id);
    inspect::print_predictions(&seen, |id| format!("{:>3}", symbol(id)), symbol, [3, 5, 53], "characters");

    let out = args.out.clone().unwrap_or_else(|| args.checkpoint.join("inspect"));
    std::fs::create_dir_all(&out).map_err(|err| anyhow::anyhow!("cannot create {}: {err}", out.display()))?;
    inspect::plot_attention(&seen, symbol, &out.join("attention.png"))?;
    inspect::plot_embeddings(&inspect::embedding_pca(model)?, vocab, &out.join("embeddings.png"))?;
    println!("pictures: {} and {}", out.join("attention.png").display(), out.join("embeddings.png").display());
    Ok(Outcome::Done)
}
