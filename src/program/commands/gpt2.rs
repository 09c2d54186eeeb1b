//! A GPT-2's own phases of each command: its text in GPT-2's tokens, its model drawn by GPT-2's
//! initialisation or read from a Hugging Face folder, its speed lines. Where a run starts, the
//! session, the checkpoints and the opening of `--checkpoint` are the ones microGPT's commands use.
//! Deliberately left out: the line layout (a GPT-2 reads one text).

use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::module::Module;

use super::{Outcome, print_passage, run_to_end, say_init_from, show, train_options};
use crate::device::Runtime;
use crate::fast;
use crate::gpt::batch::{EvalSet, TrainSet, Windows};
use crate::gpt::bpe::Bpe;
use crate::gpt::config::TrainConfig;
use crate::gpt::data::{self, Tokenize};
use crate::gpt::gpt2::GPT2;
use crate::gpt::model::LanguageModel;
use crate::gpt::rng::PyRandom;
use crate::gpt::sample::{self, SampleOptions};
use crate::gpt::train::evaluate;
use crate::program::checkpoint::{self, Architecture, Meta};
use crate::program::cli::{EvalArgs, InspectArgs, TrainArgs};
use crate::program::hf;
use crate::program::inspect;
use crate::program::session::{self, Session};
use crate::program::start::{self, Start};

/// `microgpt train` of a GPT-2 from `start`, saving in `out` (which holds the step `saved`
/// already), with the run's settings on `runtime`: fine-tuned from a GPT-2, from scratch on a
/// text in GPT-2's tokens, or resumed.
pub fn train(
    args: &TrainArgs,
    start: &Start,
    (out, saved): (Option<PathBuf>, Option<usize>),
    run: TrainConfig,
    runtime: &Runtime,
    sampling: &SampleOptions,
) -> Result<Outcome> {
    // data: the text in GPT-2's tokens, the last tenth held out
    let (tokens, path, file) = start::load_tokens(args, start)?;
    let (train_tokens, val_tokens) = data::split_text(&tokens);
    println!("num tokens: {} ({} train, {} held out), GPT-2's", tokens.len(), train_tokens.len(), val_tokens.len());
    let (config, block_size) = start::gpt2_architecture(args, start)?;
    if val_tokens.len().min(train_tokens.len()) <= block_size {
        bail!(
            "{} holds {} tokens: its held-out tenth cannot hold one window of block_size + 1 = {}; use a longer text or a smaller --block-size",
            path.display(),
            tokens.len(),
            block_size + 1
        );
    }

    // model and optimizer: GPT-2's initialisation draws from the device's generator
    let _lock = checkpoint::hold(out.as_deref(), args.overwrite)?; // one run per directory
    let device = runtime.device.clone().autodiff();
    device.seed(run.seed);
    let (model, optim, step) = start::initial_state(start, runtime, &run, |device| match start {
        Start::Pretrained(dir) => hf::load(dir, device, run.precision),
        _ => GPT2::random(&config, device),
    })?;
    let c = model.config();
    println!("model: GPT-2, n_layer {}, n_embd {}, n_head {}, block_size {block_size}", c.n_layer, c.n_embd, c.n_head);
    println!("num params: {}", model.num_params());
    let val = EvalSet::held_out_windows(val_tokens, block_size, run.eval_windows, run.seed, &runtime.device);
    say_init_from(start, &model, &val)?;

    // the run: microGPT's session, saving a checkpoint whose weights folder is a Hugging Face one
    let options = train_options(args, run, file, out, start, runtime)?;
    let stop = session::interrupt_flag();
    let architecture = Architecture::GPT2(model.config().clone());
    let saver = options.out.is_some().then(|| session::checkpoint_of(architecture, None, Some(block_size), &options));
    let train = TrainSet::Windows(Windows::new(train_tokens, block_size, &device));
    let session = Session { model, optim, step, train, val, options: &options, stop, saved, saver };
    let Some(model) = run_to_end(session)? else { return Ok(Outcome::Interrupted) };
    print_passage(&model.valid(), &Bpe::gpt2()?, sampling, &mut PyRandom::new(options.run.seed), "tokens")?;
    Ok(Outcome::Done)
}

/// `microgpt sample --checkpoint gpt2`: GPT-2 continues `--prefix` (or starts a document) for
/// `--num-tokens` tokens, printed as they come; then the speed.
pub fn sample(model: &GPT2, options: &SampleOptions, rng: &mut PyRandom) -> Result<Outcome> {
    let bpe = Bpe::gpt2()?;
    let passage = fast::cores::on_the_pool(|| sample::passage(model, &bpe, options, rng, show))?;
    println!();
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
/// `--data`, a run's checkpoint (`meta`) is evaluated on the held-out windows it evaluated on in
/// training, of the text it records.
pub fn eval(model: &GPT2, meta: Option<&Meta>, args: &EvalArgs) -> Result<Outcome> {
    let device = &model.devices()[0];
    let (path, held_out) = match (&args.data, meta) {
        (Some(path), _) => (path.clone(), None),
        (None, Some(meta)) => (start::recorded_data(meta, &args.checkpoint)?.0, Some(meta)),
        (None, None) if checkpoint::is_old_gpt2_run(&args.checkpoint) => bail!(
            "{dir} is a GPT-2 run saved by an earlier version: pass --data FILE, or make it a checkpoint first with `microgpt train --resume {dir} --stop-at 1`",
            dir = args.checkpoint.display()
        ),
        (None, None) => bail!("a GPT-2 folder records no text: pass --data FILE, the text to evaluate on"),
    };
    let tokens = Bpe::gpt2()?.encode(&data::read_text(&path)?);
    let (set, block_size, what) = match held_out {
        Some(meta) => {
            let (run, block_size) = (&meta.run, meta.block_size());
            let set =
                EvalSet::held_out_windows(data::split_text(&tokens).1, block_size, run.eval_windows, run.seed, device);
            let what = format!("{} windows: the held-out windows of {}", set.count(), path.display());
            (set, block_size, what)
        }
        None => {
            let block_size = model.block_size().min(tokens.len().saturating_sub(1));
            if block_size == 0 {
                bail!("{} holds fewer than 2 tokens: evaluate on a longer text", path.display());
            }
            let set = EvalSet::tiled(&tokens, block_size, device);
            let what =
                format!("{} windows of {block_size} tokens side by side: the whole of {}", set.count(), path.display());
            (set, block_size, what)
        }
    };
    let clock = std::time::Instant::now();
    let loss = evaluate(model, &set)?;
    let (secs, tokens) = (clock.elapsed().as_secs_f64(), set.count() * block_size);
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
