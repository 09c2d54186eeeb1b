//! A GPT-2 training run's folder (`train --out DIR` of a GPT-2): Hugging Face's `config.json` and
//! `model.safetensors` ([`hf::save`]), which transformers loads as they are, and beside them what
//! `--resume` needs: Adam's state (`optimizer.bpk`) and `training.json` (the step, the run's
//! settings, the data file's digest, and the size and SHA-256 of the two weight files).
//! A save writes each file aside and renames it over the old one, `training.json` last; a resume
//! checks both weight files against it, so a save cut short between two renames is refused by
//! name, never resumed from the weights of one step and the optimizer of another.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::adam::Adam;
use crate::checkpoint::{self, FileDigest};
use crate::config::TrainConfig;
use crate::data::DataFile;
use crate::files::write_atomic;
use crate::hf;
use crate::model::gpt2::Gpt2;

/// What a run records beside its Hugging Face files.
pub const RECORD_FILE: &str = "training.json";
/// Adam's state.
const OPTIMIZER_FILE: &str = "optimizer.bpk";
/// Bumped whenever `training.json` changes; a newer one is refused.
pub const FORMAT_VERSION: u32 = 1;

/// The contents of `training.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// [`FORMAT_VERSION`] of the program that wrote it.
    pub format_version: u32,
    /// Steps completed.
    pub step: usize,
    /// The run's settings, which a resume keeps.
    pub run: TrainConfig,
    /// The windows' length (`--block-size`; the model's context unless given).
    pub block_size: usize,
    /// The held-out loss at this step, when it was evaluated.
    pub val_loss: Option<f64>,
    /// The text trained on, as an absolute path, its size in bytes and its SHA-256.
    pub data: String,
    /// Size of the text in bytes.
    pub data_size: u64,
    /// SHA-256 of the text, lower-case hex.
    pub data_sha256: String,
    /// The size and SHA-256 of `model.safetensors` and `optimizer.bpk`.
    pub files: BTreeMap<String, FileDigest>,
    /// How often the run evaluated, kept by a resume that does not say otherwise.
    pub eval_every: Option<usize>,
    /// The GPT-2 the run started from (`--init-from`), as given.
    pub init_from: Option<String>,
}

/// Whether `dir` holds a GPT-2 run that `--resume` can continue.
pub fn is_run(dir: &Path) -> bool {
    dir.join(RECORD_FILE).is_file()
}

/// Read `training.json`.
pub fn read_record(dir: &Path) -> Result<Record> {
    let path = dir.join(RECORD_FILE);
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let record: Record =
        serde_json::from_str(&text).map_err(|err| anyhow::anyhow!("{} is damaged ({err})", path.display()))?;
    if record.format_version > FORMAT_VERSION {
        bail!(
            "{} has format version {}, newer than this program's {FORMAT_VERSION}: update microgpt",
            path.display(),
            record.format_version
        );
    }
    Ok(record)
}

/// Save the run: the model as Hugging Face's folder, Adam's state, then `training.json` naming
/// both by their digests.
pub fn save(dir: &Path, model: &Gpt2, optim: &ModuleOptimizer, mut record: Record) -> Result<()> {
    hf::save(dir, model)?;
    let state = optim.into_bytes().map_err(|err| anyhow::anyhow!("cannot save the optimizer state: {err}"))?;
    write_atomic(&dir.join(OPTIMIZER_FILE), &state)?;
    record.format_version = FORMAT_VERSION;
    record.files = BTreeMap::from([
        (hf::WEIGHTS_FILE.to_string(), FileDigest::of_file(&dir.join(hf::WEIGHTS_FILE))?),
        (OPTIMIZER_FILE.to_string(), FileDigest::of(&state)),
    ]);
    write_atomic(&dir.join(RECORD_FILE), serde_json::to_string_pretty(&record)?.as_bytes())
}

/// The run's model on `device` and Adam's state for the update `adam`, each file checked
/// against `training.json` first.
pub fn load(dir: &Path, record: &Record, device: &Device, adam: Adam) -> Result<(Gpt2, ModuleOptimizer)> {
    let check = |name: &str, digest: FileDigest| {
        if record.files.get(name) != Some(&digest) {
            bail!(
                "{} is not the file {RECORD_FILE} records (a save was cut short, or the file was changed): the run cannot be resumed; fine-tune its model further with --init-from {}",
                dir.join(name).display(),
                dir.display()
            );
        }
        Ok(())
    };
    check(hf::WEIGHTS_FILE, FileDigest::of_file(&dir.join(hf::WEIGHTS_FILE))?)?;
    let path = dir.join(OPTIMIZER_FILE);
    let state = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    check(OPTIMIZER_FILE, FileDigest::of(&state))?;
    let model = hf::load(dir, device)?;
    Ok((model, checkpoint::optimizer_from(&path, state, adam)?))
}

/// The text a run trained on: `given` (`--data`), else the file its record names; either must
/// still hold the bytes the run trained on.
pub fn text_of(record: &Record, given: Option<PathBuf>) -> Result<(PathBuf, DataFile)> {
    let path = given.unwrap_or_else(|| PathBuf::from(&record.data));
    if !path.is_file() {
        bail!(
            "the data file {} recorded in {RECORD_FILE} is gone: pass --data PATH to the text the run trained on",
            path.display()
        );
    }
    let file = DataFile::of(&path)?;
    if !file.holds(record.data_size, &record.data_sha256) {
        bail!("{} is not the text the run trained on (its size or SHA-256 differs)", path.display());
    }
    Ok((path, file))
}
