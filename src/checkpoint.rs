//! Checkpoints: everything needed to sample from, evaluate or resume a run.
//!
//! A checkpoint directory holds `checkpoint.json` (format version, step, model config,
//! vocabulary, run settings) and points to one weights folder `step-NNNNNN/` with the model in
//! Burn's format (`model.bpk`), the model as safetensors under the reference's weight names
//! (`model.safetensors`, loadable by PyTorch), and the optimizer state (`optimizer.bpk`).
//! A save writes a new weights folder completely, then swaps `checkpoint.json` by rename, then
//! removes the old folder: a crash at any point leaves the previous checkpoint whole.
//! One training run at a time holds a directory: [`lock`] takes an exclusive lock on
//! `DIR/.lock` for the whole run, and the operating system drops it with the process, however
//! the process ends. Readers (`sample`, `eval`) take no lock: they only ever see whole
//! checkpoints. A save that fails (a full disk) removes what it half wrote and says which
//! checkpoint is intact.
//! Deliberately left out: keeping more than the latest checkpoint.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use crate::adam::Adam;
use crate::config::GPTConfig;
use crate::data::Tokenizer;
use crate::device::Precision;
use crate::model::GPT;
use crate::rng::PyRandom;

/// Bumped whenever the layout changes; newer checkpoints are refused with a clear message.
pub const FORMAT_VERSION: u32 = 1;
const META_FILE: &str = "checkpoint.json";
const MODEL_FILE: &str = "model.bpk";
const SAFETENSORS_FILE: &str = "model.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.bpk";
const LOCK_FILE: &str = ".lock";

/// The run settings a resume must keep to continue exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// Seed of the Python-compatible generator.
    pub seed: u64,
    /// Steps of the whole run (the learning-rate schedule spans them).
    pub num_steps: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// Documents per step.
    pub batch_size: usize,
    /// Float precision of the weights.
    pub precision: Precision,
}

/// Contents of `checkpoint.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    /// [`FORMAT_VERSION`] of the program that wrote it.
    pub format_version: u32,
    /// Steps completed.
    pub step: usize,
    /// The architecture.
    pub config: GPTConfig,
    /// The vocabulary, so that sampling needs no data file.
    pub vocab: Tokenizer,
    /// The settings a resume keeps.
    pub run: RunSettings,
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
}

/// A directory held by one training run; the lock is released when this is dropped or the
/// process ends.
#[derive(Debug)]
pub struct DirLock {
    _file: fs::File,
}

/// Hold `dir` (created if needed) for one training run, or say which process holds it.
pub fn lock(dir: &Path) -> Result<DirLock> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create the output directory {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            // the holder's process id, for the message of a second run
            let _ = file
                .set_len(0)
                .and_then(|()| write!(file, "{}", std::process::id()))
                .and_then(|()| file.flush());
            Ok(DirLock { _file: file })
        }
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (process {pid})"),
            };
            bail!(
                "{} is in use by another training run{holder}: wait for it to end, or pass another --out",
                dir.display()
            )
        }
        Err(fs::TryLockError::Error(err)) => bail!("cannot lock {}: {err}", path.display()),
    }
}

/// Whether `err` comes from a full disk (also when a library kept only its message).
pub fn is_disk_full(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull)
            || {
                let text = cause.to_string();
                text.contains("No space left on device") || text.contains("not enough space on the disk")
            }
    })
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

/// Write `bytes` to `path` through a temporary file and a rename, so readers never see half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let written = (|| {
        let mut file = fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Save `model` and `optim` after `meta.step` steps into `dir`. On failure nothing half
/// written stays, and the previous checkpoint is untouched.
pub fn save(dir: &Path, model: &GPT, optim: &ModuleOptimizer, mut meta: Meta) -> Result<()> {
    let step = meta.step;
    fs::create_dir_all(dir).with_context(|| format!("cannot create checkpoint directory {}", dir.display()))?;
    let previous = read_meta(dir).ok().map(|m| m.weights);
    meta.weights = format!("step-{step:06}");
    let final_dir = dir.join(&meta.weights);
    let tmp_dir = tmp_path(&final_dir);
    let written = write_weights(&tmp_dir, model, optim);
    if let Err(err) = written {
        let _ = fs::remove_dir_all(&tmp_dir);
        return Err(explain_write_error(err, dir, &format!("save step {step}")));
    }

    if final_dir.exists() {
        fs::remove_dir_all(&final_dir)?; // a leftover of an earlier run at the same step
    }
    fs::rename(&tmp_dir, &final_dir)?;
    let json = serde_json::to_string_pretty(&meta)?;
    if let Err(err) = write_atomic(&dir.join(META_FILE), json.as_bytes()) {
        if previous.as_deref() != Some(meta.weights.as_str()) {
            let _ = fs::remove_dir_all(&final_dir);
        }
        return Err(explain_write_error(err, dir, &format!("save step {step}")));
    }
    sync_dir(dir);
    if let Some(old) = previous.filter(|old| *old != meta.weights) {
        let _ = fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

/// The three weight files of a checkpoint, into a new folder `tmp_dir`.
fn write_weights(tmp_dir: &Path, model: &GPT, optim: &ModuleOptimizer) -> Result<()> {
    if tmp_dir.exists() {
        fs::remove_dir_all(tmp_dir)?;
    }
    fs::create_dir_all(tmp_dir).with_context(|| format!("cannot create {}", tmp_dir.display()))?;
    let weights = model.clone().valid();
    weights
        .clone()
        .save_file(tmp_dir.join(MODEL_FILE))
        .map_err(|err| anyhow::anyhow!("cannot save the model: {err}"))?;
    // the reference's names: blocks are `layer0.attn_wq`, not `layer.0.attn_wq`
    let mut store = SafetensorsStore::from_file(tmp_dir.join(SAFETENSORS_FILE))
        .with_key_remapping(r"^layer\.(\d+)\.", "layer$1.")
        .overwrite(true);
    weights
        .save_into(&mut store)
        .map_err(|err| anyhow::anyhow!("cannot save the safetensors weights: {err}"))?;
    optim
        .save(tmp_dir.join(OPTIMIZER_FILE))
        .map_err(|err| anyhow::anyhow!("cannot save the optimizer state: {err}"))?;
    sync_dir(tmp_dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(file) = fs::File::open(dir) {
        let _ = file.sync_all();
    }
}

/// Read and check `checkpoint.json`.
pub fn read_meta(dir: &Path) -> Result<Meta> {
    if !dir.exists() {
        bail!(
            "checkpoint directory {} does not exist: train with --out {} first",
            dir.display(),
            dir.display()
        );
    }
    if !dir.is_dir() {
        bail!(
            "checkpoint {} is not a directory: pass the directory given to --out",
            dir.display()
        );
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
        None => bail!(
            "{} has no format_version: it is not a microgpt checkpoint",
            path.display()
        ),
    }
    let meta: Meta = serde_json::from_value(version)
        .map_err(|err| anyhow::anyhow!("{} is corrupted ({err}): save the checkpoint again", path.display()))?;
    meta.config
        .validate()
        .with_context(|| format!("{} holds an impossible model config", path.display()))?;
    if meta.config.vocab_size != meta.vocab.vocab_size() {
        bail!(
            "{} is inconsistent: vocab_size {} but {} characters in the vocabulary",
            path.display(),
            meta.config.vocab_size,
            meta.vocab.chars.len()
        );
    }
    Ok(meta)
}

/// A loaded checkpoint.
pub struct Loaded {
    /// Its `checkpoint.json`.
    pub meta: Meta,
    /// The weights, on the device asked for.
    pub model: GPT,
    dir: PathBuf,
}

/// Load the model of the checkpoint in `dir` onto `device`. A training run may replace the
/// checkpoint while it is read; the newer one is read then.
pub fn load(dir: &Path, device: &burn::tensor::Device) -> Result<Loaded> {
    let mut attempt = 0;
    loop {
        let meta = read_meta(dir)?;
        match load_meta(dir, meta.clone(), device) {
            Err(_) if attempt < 3 && read_meta(dir).is_ok_and(|now| now.weights != meta.weights) => attempt += 1,
            loaded => return loaded,
        }
    }
}

fn load_meta(dir: &Path, meta: Meta, device: &burn::tensor::Device) -> Result<Loaded> {
    // the initial values are overwritten; any seed builds the right shapes
    let skeleton = GPT::init(&meta.config, &mut PyRandom::new(0), device);
    let path = dir.join(&meta.weights).join(MODEL_FILE);
    if !path.is_file() {
        bail!(
            "{} is missing: the checkpoint is incomplete, save it again",
            path.display()
        );
    }
    // read the whole file now: Burn's file loader maps it lazily, and a training run may
    // delete this folder (after saving a newer one) while the weights are still unread
    let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let model = catch_load(|| {
        // in the device's precision: an f64 checkpoint on the GPU (f32) is cast, not loaded as f64
        burn::store::ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
            .and_then(|record| skeleton.try_load_record(record.cast_to_module_dtype()))
    })
    .map_err(|err| {
        anyhow::anyhow!(
            "cannot load {} ({err}): the weights are truncated, corrupted or do not match checkpoint.json",
            path.display()
        )
    })?;
    Ok(Loaded {
        meta,
        model,
        dir: dir.to_path_buf(),
    })
}

impl Loaded {
    /// The optimizer state saved with the weights, for the update `adam`.
    pub fn optimizer(&self, adam: Adam) -> Result<ModuleOptimizer> {
        let path = self.dir.join(&self.meta.weights).join(OPTIMIZER_FILE);
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        catch_load(|| adam.init().from_bytes(Bytes::from_bytes_vec(bytes))).map_err(|err| {
            anyhow::anyhow!(
                "cannot load the optimizer state {} ({err}): the checkpoint is corrupted",
                path.display()
            )
        })
    }
}

/// Run a loader that may panic on malformed input; turn a panic into an error.
fn catch_load<T, E: std::fmt::Display>(load: impl FnOnce() -> Result<T, E>) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(load));
    std::panic::set_hook(hook);
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(err.to_string()),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "malformed data".into())),
    }
}
