//! The subcommands on a GPT-2: `sample`, `eval` and `inspect` of a Hugging Face folder or of one
//! of OpenAI's models by name, and `train` of a GPT-2, fine-tuned from one (`--init-from gpt2`) or
//! from scratch on a text in GPT-2's tokens (`--tokenizer gpt2`). The training loop is the one
//! microGPT's runs train in ([`Session`]); what differs is the data (GPT-2's tokens), the model
//! ([`Gpt2`]) and what a run saves (a Hugging Face folder, which transformers loads).
//! Deliberately left out: resuming a GPT-2 run (its optimizer state is not saved), and the
//! line layout (a GPT-2 reads one text).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::module::Module;

use super::{Outcome, print_results, sample_options, train_options, with_advice};
use crate::adam::Adam;
use crate::batch::{EvalSet, TrainSet, Windows};
use crate::bpe::Bpe;
use crate::checkpoint;
use crate::cli::{DeviceArgs, EvalArgs, InspectArgs, SampleArgs, TokenizerKind, TrainArgs};
use crate::config::{GPTConfig, Preset};
use crate::data::{self, DataFile, Layout};
use crate::device::{self, Precision};
use crate::hf;
use crate::inspect;
use crate::model::LanguageModel;
use crate::model::gpt2::{Gpt2, Gpt2Config};
use crate::rng::PyRandom;
use crate::sample::{self, SampleOptions};
use crate::start::{self, Start};
use crate::train::{self, Saver, Session};

/// The GPT-2 that `--checkpoint` names, if it names one: a Hugging Face folder (`config.json`
/// and `model.safetensors`), or one of OpenAI's models by name (`gpt2`, ...), downloaded into
/// Hugging Face's cache on first use. A directory of `train --out` is not one.
pub fn folder(spec: &Path) -> Result<Option<PathBuf>> {
    if checkpoint::is_checkpoint(spec) {
        return Ok(None);
    }
    if hf::is_model_folder(spec) {
        return Ok(Some(spec.to_path_buf()));
    }
    match spec.to_str().filter(|name| !spec.exists() && hf::openai_repo(name).is_some()) {
        Some(name) => Ok(Some(hf::openai_model(name)?)),
        None => Ok(None),
    }
}

/// The GPT-2 in a Hugging Face folder on the device the flags ask for (f32 unless they ask
/// otherwise). A bad `config.json` is reported before the device opens.
pub fn open(dir: &Path, flags: &DeviceArgs) -> Result<Gpt2> {
    hf::read_config(dir)?;
    let runtime = device::open(flags.device, Some(flags.dtype.unwrap_or(Precision::F32)))?;
    Ok(hf::load(dir, &runtime.device)?.with_ops(flags.ops))
}

/// `--prefix` in GPT-2's tokens (`<|endoftext|>`, GPT-2's start of a document, when empty),
/// checked against the model's vocabulary.
fn prompt(options: &SampleOptions, bpe: &Bpe, vocab_size: usize) -> Result<Vec<usize>> {
    let prompt = if options.prefix.is_empty() { vec![Bpe::EOT] } else { bpe.encode(&options.prefix) };
    if let Some(&id) = prompt.iter().find(|&&id| id >= vocab_size) {
        bail!("--prefix holds token {id}, beyond this model's vocab_size {vocab_size}");
    }
    Ok(prompt)
}

/// `prompt` continued by `n` tokens, decoded; and the speed line.
fn passage(model: &Gpt2, options: &SampleOptions, n: usize, rng: &mut PyRandom) -> Result<(String, String)> {
    options.validate()?;
    let bpe = Bpe::gpt2()?;
    let vocab = model.config().vocab_size;
    let prompt = prompt(options, &bpe, vocab)?;
    // a padded vocabulary (nanoGPT's 50304) has ids GPT-2's tokenizer lacks: never drawn
    let unused = (vocab > Bpe::VOCAB_SIZE).then_some(Bpe::VOCAB_SIZE);
    let drawn = sample::continuation(model, &prompt, n, options, unused, rng)?;
    let (prompt_s, sample_s) = (drawn.prompt_time.as_secs_f64(), drawn.sample_time.as_secs_f64());
    let speed = format!(
        "speed: {:.1} tokens/s ({} tokens in {sample_s:.2} s; the prompt's {} in {prompt_s:.3} s)",
        drawn.tokens.len().saturating_sub(1) as f64 / sample_s.max(1e-9),
        drawn.tokens.len(),
        prompt.len()
    );
    Ok((format!("{}{}", options.prefix, bpe.decode(&drawn.tokens)?), speed))
}

/// `microgpt sample --checkpoint gpt2`: GPT-2 continues `--prefix` (or starts a document) for
/// `--num-tokens` tokens; then the speed.
pub fn sample(model: &Gpt2, args: &SampleArgs) -> Result<Outcome> {
    let options = sample_options(&args.sampling);
    let (text, speed) = passage(model, &options, options.num_chars, &mut PyRandom::new(args.seed))?;
    println!("{text}");
    println!("{speed}");
    Ok(Outcome::Done)
}

/// `microgpt eval --checkpoint gpt2 --data FILE`: the mean loss per token of the file in GPT-2's
/// tokens, every target once (windows of the context + 1 side by side); then the speed.
pub fn eval(model: &Gpt2, args: &EvalArgs) -> Result<Outcome> {
    let Some(path) = &args.data else {
        bail!("a GPT-2 records no data set: pass --data FILE, the text to evaluate on");
    };
    let tokens = Bpe::gpt2()?.encode(&data::read_text(path)?);
    let block_size = model.block_size().min(tokens.len().saturating_sub(1));
    if block_size == 0 {
        bail!("{} holds fewer than 2 tokens: evaluate on a longer text", path.display());
    }
    let set = EvalSet::tiled(&tokens, block_size, &model.devices()[0]);
    let clock = std::time::Instant::now();
    let loss = train::evaluate(model, &set)?;
    let secs = clock.elapsed().as_secs_f64();
    println!(
        "loss: {loss:.4} ({} windows of {block_size} tokens side by side: the whole of {})",
        set.count(),
        path.display()
    );
    let tokens = set.count() * block_size;
    println!("speed: {:.0} tokens/s ({tokens} tokens in {secs:.2} s)", tokens as f64 / secs);
    Ok(Outcome::Done)
}

/// A GPT-2 token as a person reads it: its text, a space as `␣`, a line break as `⏎` (a token
/// that holds part of a character shows U+FFFD).
fn token_symbol(bpe: &Bpe, id: usize) -> String {
    bpe.decode(&[id]).map_or_else(|_| format!("<{id}>"), |t| t.replace(' ', "␣").replace('\n', "⏎"))
}

/// `microgpt inspect --checkpoint gpt2 --text TEXT`: GPT-2's predictions along TEXT in its tokens
/// (the last n_positions + 1 of them), and every head's attention over the last positions.
pub fn inspect(model: &Gpt2, args: &InspectArgs) -> Result<Outcome> {
    let bpe = Bpe::gpt2()?;
    let ids = bpe.encode(&args.text);
    if ids.len() < 2 {
        bail!("--text is {} of GPT-2's tokens: it needs 2, one to read and the next to predict", ids.len());
    }
    let vocab = model.config().vocab_size;
    if let Some(&id) = ids.iter().find(|&&id| id >= vocab) {
        bail!("--text holds token {id}, beyond this model's vocab_size {vocab}");
    }
    let cut = ids.len().saturating_sub(model.block_size() + 1);
    if cut > 0 {
        eprintln!(
            "warning: --text is {} tokens, more than a window of n_positions + 1 = {}: its first {cut} are left out",
            ids.len(),
            model.block_size() + 1
        );
    }
    let seen = inspect::inspect_tokens(model, &ids[cut..], cut)?;
    let symbol = |id| token_symbol(&bpe, id);
    println!(
        "{:>4}  {:<12}  {:<70}  {:<12} {:>8} {:>7}",
        "pos", "input", "five likeliest next tokens", "next", "p(next)", "loss"
    );
    for (pos, p) in seen.predictions.iter().enumerate() {
        let top: Vec<String> = p.top.iter().map(|&(id, prob)| format!("{} {prob:.3}", symbol(id))).collect();
        println!(
            "{pos:>4}  {:<12}  {:<70}  {:<12} {:>8.4} {:>7.4}",
            symbol(p.input),
            top.join("  "),
            symbol(p.target),
            p.p_target,
            p.loss
        );
    }
    println!("mean loss: {:.4} ({} positions)", seen.mean_loss, seen.predictions.len());
    // beside a folder of the user's; in the working directory for a model of Hugging Face's cache
    let out = args.out.clone().unwrap_or_else(|| match args.checkpoint.is_dir() {
        true => args.checkpoint.join("inspect"),
        false => PathBuf::from("inspect"),
    });
    std::fs::create_dir_all(&out).map_err(|err| anyhow::anyhow!("cannot create {}: {err}", out.display()))?;
    inspect::plot_attention(&seen, symbol, &out.join("attention.png"))?;
    println!(
        "picture: {} (50,257 embeddings make no readable picture: none drawn)",
        out.join("attention.png").display()
    );
    Ok(Outcome::Done)
}

/// Where a GPT-2 run starts.
pub enum Gpt2Start {
    /// GPT-2's initialisation, drawn from the seed.
    Scratch,
    /// The weights of a Hugging Face folder (`--init-from`).
    From(PathBuf),
}

/// Whether the flags ask for a GPT-2 run, and where it starts: `--init-from` a GPT-2 (a
/// Hugging Face folder, or OpenAI's model by name), a GPT-2 preset, or `--tokenizer gpt2`.
pub fn start(args: &TrainArgs) -> Result<Option<Gpt2Start>> {
    if let Some(dir) = &args.resume
        && !checkpoint::is_checkpoint(dir)
        && hf::is_model_folder(dir)
    {
        bail!(
            "{} is a GPT-2's Hugging Face folder: a GPT-2 run cannot be resumed (its optimizer state is not saved); fine-tune it further with --init-from {}",
            dir.display(),
            dir.display()
        );
    }
    let preset = args.preset.unwrap_or(Preset::Reference);
    let from = match &args.init_from {
        Some(spec) => folder(spec)?,
        None if preset == Preset::Gpt2FinetuneShakespeare => folder(Path::new("gpt2"))?,
        None => None,
    };
    let asked = args.tokenizer == Some(TokenizerKind::Gpt2) || preset.is_gpt2();
    match from {
        Some(dir) if args.tokenizer == Some(TokenizerKind::Chars) => {
            bail!("--init-from {} is a GPT-2, which reads GPT-2's tokens: drop --tokenizer chars", dir.display())
        }
        Some(dir) => Ok(Some(Gpt2Start::From(dir))),
        None if asked && args.init_from.is_some() => bail!(
            "--init-from {} is a model of characters; a GPT-2 run (--tokenizer gpt2 or a gpt2 preset) starts from scratch or from a GPT-2",
            args.init_from.as_deref().unwrap_or(Path::new("")).display()
        ),
        None if asked => Ok(Some(Gpt2Start::Scratch)),
        None => Ok(None),
    }
}

/// `microgpt train` of a GPT-2: fine-tuning OpenAI's (or any GPT-2 folder's) weights, or a
/// GPT-2 from scratch, on a text in GPT-2's tokens; saved with `--out` as a Hugging Face folder.
pub fn train(args: &TrainArgs, from: Gpt2Start) -> Result<Outcome> {
    if args.layout == Some(Layout::Lines) {
        bail!("a GPT-2 trains on one text: --layout text (documents, one per line, are not built for it)");
    }
    let mut args = args.clone();
    args.device.dtype.get_or_insert(Precision::F32); // GPT-2's precision, on the CPU too
    let args = &args;
    let (out, _) = start::output_dir(args, &Start::Fresh)?;
    let (run, runtime) = start::settings(args, &Start::Fresh)?;

    // data: the text in GPT-2's tokens, the last tenth held out
    let path = start::data_path(args)?;
    let tokens = Bpe::gpt2()?.encode(&data::read_text(&path)?);
    let n_train = (tokens.len() as f64 * data::TEXT_TRAIN_FRACTION) as usize;
    let (train_tokens, val_tokens) = tokens.split_at(n_train);
    println!("num tokens: {} ({} train, {} held out), GPT-2's", tokens.len(), train_tokens.len(), val_tokens.len());

    // model
    let device = runtime.device.clone().autodiff();
    device.seed(run.seed);
    let model = match &from {
        Gpt2Start::From(dir) => {
            let sizes = [("n-layer", args.n_layer), ("n-embd", args.n_embd), ("n-head", args.n_head)];
            if let Some((flag, _)) = sizes.iter().find(|(_, given)| given.is_some()) {
                bail!("--{flag}: --init-from keeps the model's sizes");
            }
            hf::load(dir, &device)?
        }
        Gpt2Start::Scratch => {
            let mut sizes = GPTConfig::preset(args.preset.unwrap_or(Preset::Gpt2ShakespeareCpu), Bpe::VOCAB_SIZE);
            args.apply_sizes(&mut sizes);
            let (n_layer, n_embd, n_head, n_positions) = (sizes.n_layer, sizes.n_embd, sizes.n_head, sizes.block_size);
            let config =
                Gpt2Config { vocab_size: Bpe::VOCAB_SIZE, n_positions, n_embd, n_layer, n_head, ..Gpt2Config::gpt2() };
            Gpt2::random(&config, &device)?
        }
    };
    let model = model.with_ops(args.device.ops);
    let block_size = args.block_size.unwrap_or(model.block_size());
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
    if let Gpt2Start::From(dir) = &from {
        let before = train::evaluate(&model.valid(), &val)?;
        println!("init from {}: val loss {before:.4} before training", dir.display());
    }

    // the run: microGPT's loop; a save writes the Hugging Face folder
    let options = train_options(args, run, DataFile::of(&path)?, out, &Start::Fresh, &runtime)?;
    let _lock = options.out.as_deref().map(checkpoint::lock).transpose()?; // one run per directory
    let train = TrainSet::Windows(Windows::new(train_tokens, block_size, &device));
    let optim = Adam::of(&options.run).on_host(!device::is_gpu(runtime.kind)).init();
    let saver: Option<Saver<Gpt2>> =
        options.out.clone().map(|dir| Box::new(move |model: &Gpt2, _: &_, _, _| hf::save(&dir, model)) as Saver<Gpt2>);
    let stop = train::interrupt_flag();
    let session = Session { model, optim, step: 0, train, val, options: &options, stop, saved: None, saver };
    let (model, _optim, trained) = session.run().map_err(|err| with_advice(err, &options))?;
    if trained.interrupted {
        match &options.out {
            Some(dir) => eprintln!("interrupted at step {}: the model saved to {}", trained.step, dir.display()),
            None => eprintln!("interrupted at step {} (nothing saved: pass --out DIR to keep the model)", trained.step),
        }
        return Ok(Outcome::Interrupted);
    }
    print_results(&trained);
    let sampling = sample_options(&args.sampling);
    println!("--- inference (a passage of {} tokens) ---", sampling.num_chars);
    let (text, _) = passage(&model.valid(), &sampling, sampling.num_chars, &mut PyRandom::new(options.run.seed))?;
    println!("{text}");
    Ok(Outcome::Done)
}
