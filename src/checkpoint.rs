//! Checkpoints: everything needed to sample from, evaluate or resume a run.
//!
//! A checkpoint directory holds `checkpoint.json` (format version, step, model config,
//! vocabulary, run settings) and points to one weights folder `step-NNNNNN/` with the model in
//! Burn's format (`model.bpk`), the model as safetensors under the reference's weight names
//! (`model.safetensors`, loadable by PyTorch), and the optimizer state (`optimizer.bpk`).
//! A save writes a new weights folder completely, then swaps `checkpoint.json` by rename, then
//! removes the old folder: a crash at any point leaves the previous checkpoint whole.
//! Deliberately left out: keeping more than the latest checkpoint.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{ModuleSnapshot, SafetensorsStore};
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

/// The run settings a resume must keep to continue exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub seed: u64,
    pub num_steps: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub precision: Precision,
}

/// Contents of `checkpoint.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    pub format_version: u32,
    /// Steps completed.
    pub step: usize,
    pub config: GPTConfig,
    pub vocab: Tokenizer,
    pub run: RunSettings,
    /// The folder, inside the checkpoint directory, holding the weights of this step.
    pub weights: String,
    /// Held-out loss at this step, when it was evaluated.
    pub val_loss: Option<f64>,
    /// The data file trained on.
    #[serde(default)]
    pub data: Option<String>,
}

/// Write `bytes` to `path` through a temporary file and a rename, so readers never see half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let mut file = fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Save `model` and `optim` after `meta.step` steps into `dir`.
pub fn save(dir: &Path, model: &GPT, optim: &ModuleOptimizer, mut meta: Meta) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create checkpoint directory {}", dir.display()))?;
    let previous = read_meta(dir).ok().map(|m| m.weights);
    meta.weights = format!("step-{:06}", meta.step);
    let final_dir = dir.join(&meta.weights);
    let tmp_dir = tmp_path(&final_dir);
    if tmp_dir.exists() {
        fs::remove_dir_all(&tmp_dir)?;
    }
    fs::create_dir_all(&tmp_dir)?;

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
    sync_dir(&tmp_dir);

    if final_dir.exists() {
        fs::remove_dir_all(&final_dir)?; // a leftover of an earlier run at the same step
    }
    fs::rename(&tmp_dir, &final_dir)?;
    write_atomic(&dir.join(META_FILE), serde_json::to_string_pretty(&meta)?.as_bytes())?;
    sync_dir(dir);
    if let Some(old) = previous.filter(|old| *old != meta.weights) {
        let _ = fs::remove_dir_all(dir.join(old));
    }
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
        bail!("checkpoint directory {} does not exist: train with --out {} first", dir.display(), dir.display());
    }
    if !dir.is_dir() {
        bail!("checkpoint {} is not a directory: pass the directory given to --out", dir.display());
    }
    let path = dir.join(META_FILE);
    let text = fs::read_to_string(&path).map_err(|_| {
        anyhow::anyhow!("{} holds no checkpoint ({META_FILE} is missing): pass the directory given to --out", dir.display())
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
    pub meta: Meta,
    pub model: GPT,
    dir: PathBuf,
}

/// Load the model of the checkpoint in `dir` onto `device`.
pub fn load(dir: &Path, device: &burn::tensor::Device) -> Result<Loaded> {
    let meta = read_meta(dir)?;
    // the initial values are overwritten; any seed builds the right shapes
    let skeleton = GPT::init(&meta.config, &mut PyRandom::new(0), device);
    let path = dir.join(&meta.weights).join(MODEL_FILE);
    if !path.is_file() {
        bail!("{} is missing: the checkpoint is incomplete, save it again", path.display());
    }
    let model = catch_load(|| skeleton.try_load_file(&path)).map_err(|err| {
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
    /// The optimizer state saved with the weights.
    pub fn optimizer(&self) -> Result<ModuleOptimizer> {
        let path = self.dir.join(&self.meta.weights).join(OPTIMIZER_FILE);
        catch_load(|| Adam::reference().init().load(&path))
            .map_err(|err| anyhow::anyhow!("cannot load the optimizer state {} ({err}): the checkpoint is corrupted", path.display()))
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
