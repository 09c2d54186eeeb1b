//! The data a run trains on: the file (a resume's recorded one, checked to hold the same bytes;
//! else `--data` or the data set), read in its layout and in the checkpoint's vocabulary, or in
//! GPT-2's tokens.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::{Start, preset};
use crate::gpt::bpe::Bpe;
use crate::gpt::data::{self, Corpus, Data, Layout};
use crate::gpt::rng::PyRandom;
use crate::program::checkpoint::Meta;
use crate::program::cli::TrainArgs;
use crate::program::datafile::{self, DataFile};

/// The data set trained on when `--data` is not given: `--dataset`, else the preset's.
fn named_data(args: &TrainArgs) -> Corpus {
    args.dataset.unwrap_or(preset(args).row().dataset)
}

/// The data file a new run trains on: `--data`, else the data set's (downloaded when absent).
pub fn data_path(args: &TrainArgs) -> Result<PathBuf> {
    let named = named_data(args);
    datafile::resolve_data_path(args.data.as_deref(), named, args.data_url.as_deref().unwrap_or(named.url()))
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
    let vocab = start.checkpoint().and_then(|(dir, meta)| Some((dir, meta, meta.gpt()?.1)));
    let mut data = match (start, vocab) {
        (Start::InitFrom(..), Some((dir, _, vocab))) => {
            let data = Data::read(&path, layout, None, rng)?;
            if let Some(ch) = vocab.first_missing(data.tokenizer()) {
                bail!(
                    "{} holds the character {ch:?}, which the model in {} has no token for: --init-from needs data written in the checkpoint's {} characters",
                    path.display(),
                    dir.display(),
                    vocab.chars.len()
                );
            }
            data.with_tokenizer(vocab.clone())?
        }
        _ => Data::read(&path, layout, None, rng)?,
    };
    let file = match recorded {
        Some(file) => file,
        None => DataFile::of(&path)?,
    };
    if let (Start::Resume(..), Some((_, meta, vocab))) = (start, vocab) {
        // a run from --init-from speaks its checkpoint's vocabulary, which may hold more
        // characters than its data: resumed, it speaks it again
        if vocab != data.tokenizer() && vocab.first_missing(data.tokenizer()).is_none() {
            data = data.with_tokenizer(vocab.clone())?;
        }
        if vocab != data.tokenizer() {
            bail!(
                "the vocabulary of {} differs from the checkpoint's: pass the --data the checkpoint was trained on",
                path.display()
            );
        }
        same_bytes(args, meta, &path, &file)?;
    }
    Ok((data, file))
}

/// A GPT-2 run's text in GPT-2's tokens, its path, and the file as checkpoints record it, found
/// as [`load_data`] finds a text.
pub fn load_tokens(args: &TrainArgs, start: &Start) -> Result<(Vec<usize>, PathBuf, DataFile)> {
    let (path, file) = match start {
        Start::Resume(dir, meta) if args.data.is_none() && args.dataset.is_none() => recorded_data(meta, dir)?,
        _ => {
            let path = data_path(args)?;
            let file = DataFile::of(&path)?;
            (path, file)
        }
    };
    if let Start::Resume(_, meta) = start {
        same_bytes(args, meta, &path, &file)?;
    }
    Ok((Bpe::gpt2()?.encode(&data::read_text(&path)?), path, file))
}

/// Refuse a resume's `--data` or `--dataset` unless it holds the bytes of the checkpoint's,
/// else the run would change.
fn same_bytes(args: &TrainArgs, meta: &Meta, path: &Path, file: &DataFile) -> Result<()> {
    let given = match (&args.data, args.dataset) {
        (Some(_), _) => Some(format!("--data {}", path.display())),
        (None, Some(named)) => Some(format!("--dataset {} ({})", named.name(), path.display())),
        (None, None) => None,
    };
    if let Some(given) = given
        && !same_data(meta, file)
    {
        bail!(
            "{given} is not the file the checkpoint was trained on (its size or SHA-256 differs): a resume continues the saved run as it was"
        );
    }
    Ok(())
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
