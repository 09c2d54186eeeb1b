//! The subcommands on a GPT-2: `sample`, `eval` and `inspect` of a Hugging Face folder or of one
//! of OpenAI's models by name (its `train` is `gpt2_train`'s).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::module::Module;

use super::{Outcome, sample_options, show};
use crate::device::Precision;
use crate::gpt::batch::EvalSet;
use crate::gpt::bpe::Bpe;
use crate::gpt::data::{self, Tokenize};
use crate::gpt::gpt2::GPT2;
use crate::gpt::model::LanguageModel;
use crate::gpt::rng::PyRandom;
use crate::gpt::sample::{self, SampleOptions};
use crate::gpt::train::evaluate;
use crate::program::checkpoint;
use crate::program::cli::{DeviceArgs, EvalArgs, InspectArgs, SampleArgs};
use crate::program::gpt2_run;
use crate::program::hf;
use crate::program::inspect;

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
pub fn open(dir: &Path, flags: &DeviceArgs) -> Result<GPT2> {
    hf::read_config(dir)?;
    let runtime = flags.open(flags.device, Some(flags.dtype.unwrap_or(Precision::F32)))?;
    hf::load(dir, &runtime.device)
}

/// The prefix (or GPT-2's start of a document) continued by `--num-tokens` tokens, printed as it
/// is made ([`sample::passage`]).
pub(super) fn print_passage(model: &GPT2, options: &SampleOptions, rng: &mut PyRandom) -> Result<sample::Passage> {
    let passage = sample::passage(model, &Bpe::gpt2()?, options, rng, show)?;
    println!();
    Ok(passage)
}

/// `microgpt sample --checkpoint gpt2`: GPT-2 continues `--prefix` (or starts a document) for
/// `--num-tokens` tokens, printed as they come; then the speed.
pub fn sample(model: &GPT2, args: &SampleArgs) -> Result<Outcome> {
    let passage = print_passage(model, &sample_options(&args.sampling), &mut PyRandom::new(args.seed))?;
    let drawn = &passage.drawn;
    let (prompt_s, sample_s) = (drawn.prompt_time.as_secs_f64(), drawn.sample_time.as_secs_f64());
    println!(
        "speed: {:.1} tokens/s ({} tokens in {sample_s:.2} s; the prompt's {} in {prompt_s:.3} s)",
        drawn.tokens.len().saturating_sub(1) as f64 / sample_s.max(1e-9),
        drawn.tokens.len(),
        passage.prompt
    );
    Ok(Outcome::Done)
}

/// `microgpt eval --checkpoint gpt2 --data FILE`: the mean loss per token of the file in GPT-2's
/// tokens, every target once (windows of the context + 1 side by side); then the speed. Without
/// `--data`, a run's folder (`dir`) is evaluated on the held-out windows it evaluated on in
/// training, of the text it records.
pub fn eval(model: &GPT2, dir: &Path, args: &EvalArgs) -> Result<Outcome> {
    let device = &model.devices()[0];
    let (tokens, set, what) = match &args.data {
        Some(path) => {
            let tokens = Bpe::gpt2()?.encode(&data::read_text(path)?);
            let block_size = model.block_size().min(tokens.len().saturating_sub(1));
            if block_size == 0 {
                bail!("{} holds fewer than 2 tokens: evaluate on a longer text", path.display());
            }
            let set = EvalSet::tiled(&tokens, block_size, device);
            let what =
                format!("{} windows of {block_size} tokens side by side: the whole of {}", set.count(), path.display());
            (set.count() * block_size, set, what)
        }
        None if gpt2_run::is_run(dir) => {
            let record = gpt2_run::read_record(dir)?;
            let (path, _) = gpt2_run::text_of(&record, None)?;
            let tokens = Bpe::gpt2()?.encode(&data::read_text(&path)?);
            let (run, block_size) = (&record.run, record.block_size);
            let set =
                EvalSet::held_out_windows(data::split_text(&tokens).1, block_size, run.eval_windows, run.seed, device);
            let what = format!("{} windows: the held-out windows of {}", set.count(), path.display());
            (set.count() * block_size, set, what)
        }
        None => bail!("a GPT-2 folder records no text: pass --data FILE, the text to evaluate on"),
    };
    let clock = std::time::Instant::now();
    let loss = evaluate(model, &set)?;
    let secs = clock.elapsed().as_secs_f64();
    println!("loss: {loss:.4} ({what})");
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
pub fn inspect(model: &GPT2, args: &InspectArgs) -> Result<Outcome> {
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
    inspect::print_predictions(&seen, symbol, symbol, [4, 12, 70], "tokens");
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
