//! `train` of a GPT-2: fine-tuned from one (`--init-from gpt2`, or any GPT-2 folder), from scratch
//! on a text in GPT-2's tokens (`--tokenizer gpt2`), or resumed (`--resume DIR` of such a run).
//! The loop is the one microGPT's runs train in ([`Session`]); what differs is the data (GPT-2's
//! tokens), the model ([`GPT2`]) and what a run saves (a Hugging Face folder, which transformers
//! loads, with what a resume needs beside it: `gpt2_run`).
//! Deliberately left out: the line layout (a GPT-2 reads one text).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;

use super::gpt2::{folder, print_passage};
use super::{Outcome, run_to_end, sample_options, train_options};
use crate::device::{self, Precision, Runtime};
use crate::gpt::adam::Adam;
use crate::gpt::batch::{EvalSet, TrainSet, Windows};
use crate::gpt::bpe::Bpe;
use crate::gpt::config::{GPTConfig, Preset, TrainConfig};
use crate::gpt::data::{self, Layout};
use crate::gpt::gpt2::{GPT2, GPT2Config};
use crate::gpt::model::LanguageModel;
use crate::gpt::rng::PyRandom;
use crate::gpt::train::evaluate;
use crate::program::checkpoint;
use crate::program::cli::{TokenizerKind, TrainArgs};
use crate::program::datafile::DataFile;
use crate::program::gpt2_run::{self, Record};
use crate::program::hf;
use crate::program::session::{self, Saver, Session};
use crate::program::start::{self, Start};

/// Where a GPT-2 run starts.
pub enum GPT2Start {
    /// GPT-2's initialisation, drawn from the seed.
    Scratch,
    /// The weights of a Hugging Face folder (`--init-from`).
    From(PathBuf),
    /// A GPT-2 run saved by `train --out` (`--resume DIR`), continued exactly.
    Resume(PathBuf, Box<Record>),
}

/// Whether the flags ask for a GPT-2 run, and where it starts: `--resume` a GPT-2 run,
/// `--init-from` a GPT-2 (a Hugging Face folder, or OpenAI's model by name), a GPT-2 preset, or
/// `--tokenizer gpt2`.
pub fn start(args: &TrainArgs) -> Result<Option<GPT2Start>> {
    if let Some(dir) = &args.resume
        && !checkpoint::is_checkpoint(dir)
        && hf::is_model_folder(dir)
    {
        if !gpt2_run::is_run(dir) {
            bail!(
                "{} is a GPT-2's Hugging Face folder, not a run of `train --out` (it has no {}): fine-tune it with --init-from {}",
                dir.display(),
                gpt2_run::RECORD_FILE,
                dir.display()
            );
        }
        return Ok(Some(GPT2Start::Resume(dir.clone(), Box::new(gpt2_run::read_record(dir)?))));
    }
    let preset = args.preset.unwrap_or(Preset::Reference);
    let from = match &args.init_from {
        Some(spec) => folder(spec)?,
        None if preset == Preset::Gpt2FinetuneShakespeare => folder(Path::new("gpt2"))?,
        None => None,
    };
    let asked = args.tokenizer == Some(TokenizerKind::GPT2) || preset.is_gpt2();
    match from {
        Some(dir) if args.tokenizer == Some(TokenizerKind::Chars) => {
            bail!("--init-from {} is a GPT-2, which reads GPT-2's tokens: drop --tokenizer chars", dir.display())
        }
        Some(dir) => Ok(Some(GPT2Start::From(dir))),
        None if asked && args.init_from.is_some() => bail!(
            "--init-from {} is a model of characters; a GPT-2 run (--tokenizer gpt2 or a gpt2 preset) starts from scratch or from a GPT-2",
            args.init_from.as_deref().unwrap_or(Path::new("")).display()
        ),
        None if asked => Ok(Some(GPT2Start::Scratch)),
        None => Ok(None),
    }
}

/// `microgpt train` of a GPT-2; saved with `--out` as a Hugging Face folder that `--resume`
/// continues.
pub fn train(args: &TrainArgs, from: GPT2Start) -> Result<Outcome> {
    if args.layout == Some(Layout::Lines) {
        bail!("a GPT-2 trains on one text: --layout text (documents, one per line, are not built for it)");
    }
    let resumed = match &from {
        GPT2Start::Resume(dir, record) => Some((dir.as_path(), record.as_ref())),
        _ => None,
    };
    // a resume holds its folder from here on: nothing else may save there while it reads
    let resume_lock = resumed.map(|(dir, _)| checkpoint::lock(dir)).transpose()?;
    let (out, saved, run, runtime) = match resumed {
        Some((dir, record)) => {
            let (run, runtime) = resumed_run(args, dir, record)?;
            (Some(dir.to_path_buf()), Some(record.step), run, runtime)
        }
        None => {
            let mut args = args.clone();
            args.device.dtype.get_or_insert(Precision::F32); // GPT-2's precision, on the CPU too
            let (out, saved) = start::output_dir(&args, &Start::Fresh)?;
            let (run, runtime) = start::settings(&args, &Start::Fresh)?;
            (out, saved, TrainConfig { layout: Layout::Text, ..run }, runtime) // a GPT-2 reads one text
        }
    };

    // data: the text in GPT-2's tokens, the last tenth held out
    let (path, file) = match resumed {
        Some((_, record)) => recorded_text(args, record)?,
        None => start::data_path(args).and_then(|path| Ok((path.clone(), DataFile::of(&path)?)))?,
    };
    let tokens = Bpe::gpt2()?.encode(&data::read_text(&path)?);
    let (train_tokens, val_tokens) = data::split_text(&tokens);
    println!("num tokens: {} ({} train, {} held out), GPT-2's", tokens.len(), train_tokens.len(), val_tokens.len());

    // model and optimizer
    let device = runtime.device.clone().autodiff();
    device.seed(run.seed);
    let adam = Adam::of(&run).on_host(!device::is_gpu(runtime.kind));
    let (model, optim, step) = initial_state(args, &from, adam, &device)?;
    let block_size = match resumed {
        Some((_, record)) => record.block_size,
        None => args.block_size.unwrap_or(model.block_size()),
    };
    if block_size > model.block_size() {
        bail!("--block-size {block_size} is beyond the model's {} positions", model.block_size());
    }
    if val_tokens.len().min(train_tokens.len()) <= block_size {
        bail!(
            "{} holds {} tokens: its held-out tenth cannot hold one window of block_size + 1 = {}; use a longer text or a smaller --block-size",
            path.display(),
            tokens.len(),
            block_size + 1
        );
    }
    let c = model.config();
    println!("model: GPT-2, n_layer {}, n_embd {}, n_head {}, block_size {block_size}", c.n_layer, c.n_embd, c.n_head);
    println!("num params: {}", model.num_params());
    let val = EvalSet::held_out_windows(val_tokens, block_size, run.eval_windows, run.seed, &runtime.device);
    if let GPT2Start::From(dir) = &from {
        let before = evaluate(&model.valid(), &val)?;
        println!("init from {}: val loss {before:.4} before training", dir.display());
    }

    // the run: microGPT's loop; a save writes the Hugging Face folder and what a resume needs
    let mut options = train_options(args, run, file, out, &Start::Fresh, &runtime)?;
    if let Some((_, record)) = resumed.filter(|_| options.eval_every.is_none()) {
        options.eval_every = record.eval_every; // a resume keeps the run's schedule
    }
    let _lock = match resume_lock {
        Some(lock) => Some(lock),
        None => {
            let lock = options.out.as_deref().map(checkpoint::lock).transpose()?; // one run per directory
            if let Some(dir) = &options.out {
                gpt2_run::start_over(dir)?; // a run replaced (--overwrite) is no longer one to resume
            }
            lock
        }
    };
    let init_from = match (&from, resumed) {
        (_, Some((_, record))) => record.init_from.clone(),
        (GPT2Start::From(dir), _) => Some(dir.display().to_string()),
        _ => None,
    };
    let record = Record {
        format_version: 0, // set by the save
        step,
        run: options.run.clone(),
        block_size,
        val_loss: None,
        data: options.data.path.display().to_string(),
        data_size: options.data.size,
        data_sha256: options.data.sha256.clone(),
        optimizer: String::new(), // named by the save
        files: Default::default(),
        eval_every: options.eval_every,
        init_from,
    };
    let saver = options.out.clone().map(|dir| saver(dir, record));
    let train = TrainSet::Windows(Windows::new(train_tokens, block_size, &device));
    let stop = session::interrupt_flag();
    let session = Session { model, optim, step, train, val, options: &options, stop, saved, saver };
    let Some(model) = run_to_end(session)? else { return Ok(Outcome::Interrupted) };
    let sampling = sample_options(&args.sampling);
    println!("--- inference (a passage of {} tokens) ---", sampling.num_chars);
    print_passage(&model.valid(), &sampling, &mut PyRandom::new(options.run.seed))?;
    Ok(Outcome::Done)
}

/// The model, Adam and the steps done: a resumed run's, a GPT-2 folder's weights with a fresh
/// Adam, or GPT-2's initialisation of the preset's sizes (the flags over them).
fn initial_state(
    args: &TrainArgs,
    from: &GPT2Start,
    adam: Adam,
    device: &Device,
) -> Result<(GPT2, ModuleOptimizer, usize)> {
    let sizes = [("n-layer", args.n_layer), ("n-embd", args.n_embd), ("n-head", args.n_head)];
    if let Some((flag, _)) = sizes.iter().find(|(_, given)| given.is_some()) {
        match from {
            GPT2Start::From(_) => bail!("--{flag}: --init-from keeps the model's sizes"),
            GPT2Start::Resume(..) => bail!("--{flag}: {}", start::RESUME_KEEPS),
            GPT2Start::Scratch => {}
        }
    }
    Ok(match from {
        GPT2Start::Resume(dir, record) => {
            let (model, optim) = gpt2_run::load(dir, record, device, adam)?;
            (model, optim, record.step)
        }
        GPT2Start::From(dir) => (hf::load(dir, device)?, adam.init(), 0),
        GPT2Start::Scratch => {
            let mut sizes = GPTConfig::preset(args.preset.unwrap_or(Preset::Gpt2ShakespeareCpu), Bpe::VOCAB_SIZE);
            args.apply_sizes(&mut sizes);
            let (n_layer, n_embd, n_head, n_positions) = (sizes.n_layer, sizes.n_embd, sizes.n_head, sizes.block_size);
            let config =
                GPT2Config { vocab_size: Bpe::VOCAB_SIZE, n_positions, n_embd, n_layer, n_head, ..GPT2Config::gpt2() };
            (GPT2::random(&config, device)?, adam.init(), 0)
        }
    })
}

/// A session's save into `dir`: the run's folder at that step ([`gpt2_run::save`]).
fn saver<'a>(dir: PathBuf, record: Record) -> Saver<'a, GPT2> {
    Box::new(move |model: &GPT2, optim: &ModuleOptimizer, step, val_loss| {
        let record = Record { step, val_loss, ..record.clone() };
        gpt2_run::save(&dir, model, optim, record)
            .map_err(|err| checkpoint::explain_write_error(err, &dir, &format!("save step {step}")))
    })
}

/// A resumed GPT-2 run (its folder held) saves back in its own folder (the step it holds is not
/// saved again), with its saved settings, which a flag given must equal; on the device the flags
/// ask for.
fn resumed_run(args: &TrainArgs, dir: &Path, record: &Record) -> Result<(TrainConfig, Runtime)> {
    if args.out.as_deref().is_some_and(|out| !start::same_dir(out, dir)) {
        bail!("a GPT-2 run resumes in its own folder: drop --out (or copy {} and resume the copy)", dir.display());
    }
    let now = gpt2_run::read_record(dir)?;
    if (now.step, &now.optimizer) != (record.step, &record.optimizer) {
        bail!("{} changed while it was read (a run saved there): try again", dir.display());
    }
    if let Some(given) = args.block_size.filter(|&b| b != record.block_size) {
        bail!("--block-size {given} differs from the run's {}: {}", record.block_size, start::RESUME_KEEPS);
    }
    let run = start::resumed(args, &record.run)?;
    let runtime = args.device.open(args.device.device, Some(run.precision))?;
    Ok((run, runtime))
}

/// The text a resumed run trained on: `--data` (or `--dataset`) if given, else the file its
/// record names; either must still hold the same bytes.
fn recorded_text(args: &TrainArgs, record: &Record) -> Result<(PathBuf, DataFile)> {
    let given = (args.data.is_some() || args.dataset.is_some()).then(|| start::data_path(args)).transpose()?;
    gpt2_run::text_of(record, given)
}
