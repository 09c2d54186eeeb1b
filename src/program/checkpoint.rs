//! Checkpoints: everything needed to sample from, evaluate or resume a run, of either model.
//!
//! A checkpoint directory holds `checkpoint.json` (format version, step, the architecture,
//! the vocabulary, run settings) and points to one weights folder `step-NNNNNN/` with the model
//! and the optimizer state (`optimizer.bpk`). microGPT's model is there in Burn's format
//! (`model.bpk`) and as safetensors under the reference's weight names (`model.safetensors`,
//! loadable by PyTorch); a GPT-2's is a Hugging Face folder (`config.json`, `model.safetensors`),
//! also linked at the top of the directory after each save, where transformers loads it
//! ([`Stored`] says which files each model writes).
//! `checkpoint.json` also records each weight file's size and SHA-256, checked on every load, so
//! a damaged file is named instead of loading as other weights.
//! A save writes a new weights folder completely, under a name no folder in the directory has
//! (`step-000200`, or `step-000200-1` when that one is taken), then swaps `checkpoint.json` by rename,
//! then removes every other weights folder: at every moment the directory holds one complete,
//! loadable checkpoint, and the folder `checkpoint.json` names is never touched.
//! One training run at a time holds a directory (`files::lock`). Readers (`sample`, `eval`) take
//! no lock: they only ever see whole checkpoints. A save that fails (a full disk) removes what it half wrote and says which
//! checkpoint is intact.
//! Deliberately left out: keeping more than the latest checkpoint.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::optim::ModuleOptimizer;
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};

use crate::device::Precision;
use crate::gpt::adam::Adam;
use crate::gpt::config::TrainConfig;
use crate::gpt::data::Tokenizer;
use crate::gpt::model::GPT;
pub use crate::program::files::{DirLock, FileDigest, check_not_held, lock};
use crate::program::files::{flush, is_disk_full, sync_dir, tmp_path, unused_name, write_atomic};

mod models;
pub use models::{Architecture, Stored, clear_old_layout, first_non_finite, is_old_gpt2_run, upgrade};

/// Bumped whenever the layout changes; newer checkpoints are refused with a clear message.
/// 2: the weight files' digests; 3: the longer runs' settings (warmup, decay, floor, weight
/// decay, clipping, dropout), which an older program must not ignore on resume; 4: the text
/// layout, Adam's betas and the held-out windows; 5: GPT-2's runs. A checkpoint is written with
/// the oldest version that reads it: microGPT's as 4, a GPT-2's as 5.
pub const FORMAT_VERSION: u32 = 5;
/// The version of microGPT's checkpoints, which programs before format 5 read as well.
const GPT_FORMAT_VERSION: u32 = 4;
/// The run settings (`TrainConfig`'s fields) that every format has recorded.
const RECORDED_SINCE_1: [&str; 5] = ["seed", "num_steps", "lr", "batch_size", "precision"];
/// The first format whose `checkpoint.json` records the weight files' digests (version 1 did
/// not: such checkpoints load unchecked).
const DIGESTS_SINCE: u32 = 2;
const META_FILE: &str = "checkpoint.json";
const OPTIMIZER_FILE: &str = "optimizer.bpk";
/// What a GPT-2 run recorded before its runs were checkpoints ([`upgrade`] converts it).
const OLD_GPT2_RECORD: &str = "training.json";

/// Contents of `checkpoint.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    /// [`FORMAT_VERSION`] of the program that wrote it.
    pub format_version: u32,
    /// Steps completed.
    pub step: usize,
    /// The architecture.
    pub config: Architecture,
    /// microGPT's vocabulary, so that sampling needs no data file (a GPT-2 reads GPT-2's tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<Tokenizer>,
    /// The windows' length of a GPT-2's run (`--block-size`; its context unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<usize>,
    /// The training run's settings, which a resume keeps.
    pub run: TrainConfig,
    /// The folder, inside the checkpoint directory, holding the weights of this step.
    pub weights: String,
    /// Held-out loss at this step, when it was evaluated.
    pub val_loss: Option<f64>,
    /// The data file trained on, as an absolute path.
    #[serde(default)]
    pub data: Option<String>,
    /// Size of the data file in bytes, to tell when it changed.
    #[serde(default)]
    pub data_size: Option<u64>,
    /// SHA-256 of the data file, lower-case hex.
    #[serde(default)]
    pub data_sha256: Option<String>,
    /// Size and SHA-256 of each file in the weights folder, checked whenever one is read
    /// (absent in checkpoints written before they were recorded: those load unchecked).
    #[serde(default)]
    pub files: BTreeMap<String, FileDigest>,
    /// The checkpoint this run's weights started from (`train --init-from`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<InitFrom>,
    /// How often the run evaluated (`--eval-every`, or its preset's), kept by a resume that
    /// does not say otherwise. Not a run setting: a resume may change it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_every: Option<usize>,
}

/// Where a run's initial weights came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InitFrom {
    /// The checkpoint directory (or a GPT-2's Hugging Face folder), as an absolute path.
    pub dir: String,
    /// The step of the checkpoint loaded (none for a Hugging Face folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
}

/// Whether `dir` holds a training run that a new run saving there would replace: a checkpoint,
/// or the metrics of one. Says which, for the message.
pub fn run_in(dir: &Path) -> Option<String> {
    if let Ok(meta) = read_meta(dir) {
        return Some(format!("the checkpoint of step {}", meta.step));
    }
    [META_FILE, "metrics.csv", OLD_GPT2_RECORD]
        .iter()
        .find(|name| dir.join(name).exists())
        .map(|name| format!("its {name}"))
}

/// Hold `out` for this run (one run per directory); a new run replacing another there
/// (`--overwrite`) first clears what a GPT-2 run of the earlier layout kept for its resume.
pub fn hold(out: Option<&Path>, overwrite: bool) -> Result<Option<DirLock>> {
    let Some(dir) = out else { return Ok(None) };
    let held = lock(dir)?;
    if overwrite {
        clear_old_layout(dir);
    }
    Ok(Some(held))
}

/// One line for a write into `dir` that failed: for a full disk, where, and which checkpoint
/// is intact.
pub fn explain_write_error(err: anyhow::Error, dir: &Path, what: &str) -> anyhow::Error {
    if !is_disk_full(&err) {
        return err;
    }
    let intact = match read_meta(dir) {
        Ok(meta) => format!(
            "the checkpoint of step {} in {} is intact; free some space and continue with --resume {}",
            meta.step,
            dir.display(),
            dir.display()
        ),
        Err(_) => format!("no earlier checkpoint is in {}", dir.display()),
    };
    anyhow::anyhow!("the disk is full: cannot {what} in {}; {intact}", dir.display())
}

/// Save `model` and `optim` after `meta.step` steps into `dir`. On failure nothing half
/// written stays, and the previous checkpoint is untouched.
pub fn save<M: Stored>(dir: &Path, model: &M, optim: &ModuleOptimizer, mut meta: Meta) -> Result<()> {
    let step = meta.step;
    let failed = |err| explain_write_error(err, dir, &format!("save step {step}"));
    fs::create_dir_all(dir).with_context(|| format!("cannot create checkpoint directory {}", dir.display()))?;
    // step-000200, else step-000200-1, ... (an earlier run here, or a save that crashed, left one)
    meta.weights = unused_name(dir, &format!("step-{step:06}"), "");
    let final_dir = dir.join(&meta.weights);
    let tmp_dir = tmp_path(&final_dir);
    match write_weights(&tmp_dir, model, optim) {
        Ok(files) => meta.files = files,
        Err(err) => {
            let _ = fs::remove_dir_all(&tmp_dir);
            return Err(failed(err));
        }
    }
    if let Err(err) = fs::rename(&tmp_dir, &final_dir) {
        let _ = fs::remove_dir_all(&tmp_dir);
        return Err(failed(anyhow::Error::from(err).context(format!("cannot rename {}", tmp_dir.display()))));
    }
    sync_dir(dir); // the new folder's name, before the pointer to it
    meta.format_version = match meta.config {
        Architecture::GPT(_) => GPT_FORMAT_VERSION,
        Architecture::GPT2(_) => FORMAT_VERSION,
    };
    let json = serde_json::to_string_pretty(&meta)?;
    if let Err(err) = write_atomic(&dir.join(META_FILE), json.as_bytes()) {
        let _ = fs::remove_dir_all(&final_dir); // a new name: never the folder the pointer names
        return Err(failed(err));
    }
    sync_dir(dir);
    remove_other_weights(dir, &meta.weights);
    if let Err(err) = M::publish(dir, &final_dir) {
        // the checkpoint is whole: what failed is only its copy beside it
        eprintln!("warning: step {step} is saved, but not beside it ({err:#}): {} holds it", final_dir.display());
    }
    Ok(())
}

/// Whether `name` is one of the names [`save`] gives: `step-NNNNNN`, `step-NNNNNN-K`, either
/// with a `.tmp-PID` of a save in progress. A user's own `step-notes/` is none of them.
fn is_weights_folder(name: &str) -> bool {
    let name = name
        .split_once(".tmp-")
        .map_or(name, |(base, pid)| if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) { base } else { "" });
    let Some(rest) = name.strip_prefix("step-") else { return false };
    let (step, again) = rest.split_once('-').unwrap_or((rest, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    step.len() >= 6 && digits(step) && digits(again)
}

/// Remove every weights folder of `dir` but `keep`: the previous checkpoint, and what saves
/// that crashed left behind. Best effort: a folder that stays is only disk space.
fn remove_other_weights(dir: &Path, keep: &str) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if is_weights_folder(&name) && name != keep && entry.path().is_dir() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The weight files of a checkpoint and Adam's state, into a new folder `tmp_dir`; their digests.
fn write_weights<M: Stored>(
    tmp_dir: &Path,
    model: &M,
    optim: &ModuleOptimizer,
) -> Result<BTreeMap<String, FileDigest>> {
    if tmp_dir.exists() {
        fs::remove_dir_all(tmp_dir)?;
    }
    fs::create_dir_all(tmp_dir).with_context(|| format!("cannot create {}", tmp_dir.display()))?;
    model.write(tmp_dir)?;
    optim
        .save(tmp_dir.join(OPTIMIZER_FILE))
        .map_err(|err| anyhow::anyhow!("cannot save the optimizer state: {err}"))?;
    sync_dir(tmp_dir);
    M::FILES
        .into_iter()
        .chain([OPTIMIZER_FILE])
        .map(|name| {
            let path = tmp_dir.join(name);
            // on the disk before checkpoint.json names them, a power cut included
            flush(&path)?;
            Ok((name.to_string(), FileDigest::of_file(&path)?))
        })
        .collect()
}

/// Whether `dir` holds a checkpoint of `train --out` (its `checkpoint.json`).
pub fn is_checkpoint(dir: &Path) -> bool {
    dir.join(META_FILE).is_file()
}

/// Read and check `checkpoint.json`.
pub fn read_meta(dir: &Path) -> Result<Meta> {
    if !dir.exists() {
        bail!("checkpoint directory {} does not exist: train with --out {} first", dir.display(), dir.display());
    }
    if !dir.is_dir() {
        bail!("checkpoint {} is not a directory: pass the directory given to --out", dir.display());
    }
    let path = dir.join(META_FILE);
    let text = fs::read_to_string(&path).map_err(|_| {
        anyhow::anyhow!(
            "{} holds no checkpoint ({META_FILE} is missing): pass the directory given to --out",
            dir.display()
        )
    })?;
    let version: serde_json::Value = serde_json::from_str(&text)
        .map_err(|err| anyhow::anyhow!("{} is corrupted ({err}): save the checkpoint again", path.display()))?;
    match version.get("format_version").and_then(|v| v.as_u64()) {
        Some(v) if v > FORMAT_VERSION as u64 => bail!(
            "{} has format version {v}, newer than this program's {FORMAT_VERSION}: upgrade microgpt",
            path.display()
        ),
        Some(_) => {}
        None => bail!("{} has no format_version: it is not a microgpt checkpoint", path.display()),
    }
    // settings every format has recorded (a missing later one reads as the reference's): a
    // checkpoint without one is damaged, not older
    let run = version.get("run").and_then(|run| run.as_object());
    if let Some(missing) = run.and_then(|run| RECORDED_SINCE_1.into_iter().find(|key| !run.contains_key(*key))) {
        bail!("{} is corrupted (its run settings lack {missing}): save the checkpoint again", path.display());
    }
    let meta: Meta = serde_json::from_value(version)
        .map_err(|err| anyhow::anyhow!("{} is corrupted ({err}): save the checkpoint again", path.display()))?;
    meta.config.validate().with_context(|| format!("{} holds an impossible model config", path.display()))?;
    if let Architecture::GPT2(config) = &meta.config
        && !(1..=config.n_positions).contains(&meta.block_size())
    {
        bail!(
            "{} is corrupted (block_size {} is beyond the model's positions): save the checkpoint again",
            path.display(),
            meta.block_size()
        );
    }
    match (&meta.config, &meta.vocab) {
        (Architecture::GPT(config), Some(vocab)) if config.vocab_size != vocab.vocab_size() => bail!(
            "{} is inconsistent: vocab_size {} but {} characters in the vocabulary",
            path.display(),
            config.vocab_size,
            vocab.chars.len()
        ),
        (Architecture::GPT(_), None) => {
            bail!("{} is corrupted (it has no vocabulary): save the checkpoint again", path.display())
        }
        _ => {}
    }
    Ok(meta)
}

/// A loaded checkpoint.
pub struct Loaded<M = GPT> {
    /// Its `checkpoint.json`.
    pub meta: Meta,
    /// The weights, on the device asked for.
    pub model: M,
    dir: PathBuf,
}

/// Load the model of the checkpoint in `dir` onto `device`, in `precision` ([`Stored::read`]).
/// A training run may replace the checkpoint while it is read; the newer one is read then.
pub fn load<M: Stored>(dir: &Path, device: &Device, precision: Precision) -> Result<Loaded<M>> {
    let mut attempt = 0;
    loop {
        let meta = read_meta(dir)?;
        match load_weights(dir, meta.clone(), device, precision) {
            Err(_) if attempt < 3 && read_meta(dir).is_ok_and(|now| now.weights != meta.weights) => attempt += 1,
            loaded => return loaded,
        }
    }
}

/// The weights `meta` names, checked against their recorded digests, loaded onto `device` and
/// checked to be finite numbers.
fn load_weights<M: Stored>(dir: &Path, meta: Meta, device: &Device, precision: Precision) -> Result<Loaded<M>> {
    let model = M::read(&dir.join(&meta.weights), &meta, device, precision)?;
    if let Some(name) = first_non_finite(&model)? {
        bail!(
            "the model in {} (step {}) is broken: its weights are not finite ({name} holds NaN or infinity) in this precision; train again from an earlier checkpoint or at a lower --lr",
            dir.display(),
            meta.step
        );
    }
    Ok(Loaded { meta, model, dir: dir.to_path_buf() })
}

/// Refuse the weight file at `path` unless it is the one `meta` recorded (read a piece at a time).
fn check_file(meta: &Meta, path: &Path) -> Result<()> {
    checked(meta, path, || FileDigest::of_file(path)).map(|_| ())
}

/// The bytes of the weight file at `path`, which must be the ones `meta` recorded for it.
fn read_checked(meta: &Meta, path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    checked(meta, path, || {
        bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(FileDigest::of(&bytes))
    })?;
    Ok(bytes)
}

/// Refuse the weight file at `path` unless `digest` of it is the one `meta` recorded.
fn checked(meta: &Meta, path: &Path, digest: impl FnOnce() -> Result<FileDigest>) -> Result<()> {
    if !path.is_file() {
        bail!("{} is missing: the checkpoint is incomplete, save it again", path.display());
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let now = digest()?;
    if meta.format_version < DIGESTS_SINCE {
        return Ok(()); // written before digests were recorded
    }
    let Some(recorded) = meta.files.get(name.as_ref()) else {
        bail!(
            "{} records no digest of {name}: the checkpoint is corrupted, save it again",
            dir_of(path).join(META_FILE).display()
        );
    };
    if *recorded != now {
        bail!(
            "{} is damaged: its size or SHA-256 differs from what checkpoint.json records ({} bytes, sha256 {}): restore the file or train again",
            path.display(),
            recorded.size,
            recorded.sha256
        );
    }
    Ok(())
}

/// The checkpoint directory of a weight file (`DIR/step-N/model.bpk` -> `DIR`).
fn dir_of(path: &Path) -> &Path {
    path.parent().and_then(Path::parent).unwrap_or(Path::new("."))
}

impl<M> Loaded<M> {
    /// The optimizer state saved with the weights, for the update `adam`.
    pub fn optimizer(&self, adam: Adam) -> Result<ModuleOptimizer> {
        let path = self.dir.join(&self.meta.weights).join(OPTIMIZER_FILE);
        optimizer_from(&path, read_checked(&self.meta, &path)?, adam)
    }
}

/// The optimizer state in `bytes` (read from `path`), for the update `adam`; malformed bytes are
/// one line naming `path`.
pub fn optimizer_from(path: &Path, bytes: Vec<u8>, adam: Adam) -> Result<ModuleOptimizer> {
    catch_load(move || adam.init().from_bytes(Bytes::from_bytes_vec(bytes))).map_err(|err| {
        anyhow::anyhow!("cannot load the optimizer state {} ({err}): the checkpoint is corrupted", path.display())
    })
}

/// The name of the thread that decodes a checkpoint's files: its panics are malformed input,
/// reported as one line, and the program's panic hook prints nothing for it (`src/main.rs`).
pub const LOADER_THREAD: &str = "checkpoint-load";

/// Run a loader that may panic on malformed input (Burn's record decoders do) on a thread of
/// its own ([`LOADER_THREAD`]), and turn a panic into an error, with the process's panic hook
/// left as it is.
fn catch_load<T, E>(load: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, String>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let thread = std::thread::Builder::new().name(LOADER_THREAD.into()).spawn(load);
    match thread.map_err(|err| format!("cannot start a thread to read it: {err}"))?.join() {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(err.to_string()),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "malformed data".into())),
    }
}

#[cfg(test)]
mod tests;
