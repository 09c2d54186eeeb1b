//! What a checkpoint holds of each model: its architecture as `checkpoint.json` records it, the
//! files of its weights folder ([`Stored`]: Burn's and the reference's for microGPT, a Hugging Face
//! folder for a GPT-2), and the rewriting of a GPT-2 run saved by an earlier version.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::module::{Module, ModuleVisitor, Param};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Bytes, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{
    FORMAT_VERSION, FileDigest, InitFrom, META_FILE, Meta, OLD_GPT2_RECORD, OPTIMIZER_FILE, catch_load, check_file,
    is_checkpoint, lock, read_checked,
};
use crate::device::{self, Precision};
use crate::gpt::config::GPTConfig;
use crate::gpt::data::Tokenizer;
use crate::gpt::gpt2::{GPT2, GPT2Config};
use crate::gpt::model::{GPT, LanguageModel};
use crate::gpt::rng::PyRandom;
use crate::program::files::{flush, sync_dir, tmp_path, unused_name, write_atomic, write_atomic_with};
use crate::program::hf;

/// The model a checkpoint holds: microGPT's or a GPT-2 (whose config has `n_positions`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Architecture {
    /// microGPT's shapes.
    GPT(GPTConfig),
    /// A GPT-2's, as its `config.json` writes them.
    GPT2(GPT2Config),
}

impl<'de> Deserialize<'de> for Architecture {
    fn deserialize<D: serde::Deserializer<'de>>(from: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(from)?;
        let parsed = match value.get("n_positions") {
            Some(_) => serde_json::from_value(value).map(Architecture::GPT2),
            None => serde_json::from_value(value).map(Architecture::GPT),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

impl Architecture {
    /// Refuse shapes no model has.
    pub fn validate(&self) -> Result<()> {
        match self {
            Architecture::GPT(config) => config.validate(),
            Architecture::GPT2(config) => config.validate(),
        }
    }
}

impl Meta {
    /// microGPT's shapes and vocabulary, or `None` for a GPT-2.
    pub fn gpt(&self) -> Option<(&GPTConfig, &Tokenizer)> {
        match (&self.config, &self.vocab) {
            (Architecture::GPT(config), Some(vocab)) => Some((config, vocab)),
            _ => None,
        }
    }

    /// The length of the windows the run trained on: its context, or a GPT-2 run's `--block-size`.
    pub fn block_size(&self) -> usize {
        match &self.config {
            Architecture::GPT(config) => config.block_size,
            Architecture::GPT2(config) => self.block_size.unwrap_or(config.n_positions),
        }
    }
}

/// A model as a checkpoint's weights folder holds it: which files, written and read how.
pub trait Stored: LanguageModel + Sized {
    /// The weight files it writes in a weights folder (Adam's state goes beside them).
    const FILES: [&'static str; 2];
    /// Write the weight files into the new weights folder `folder`.
    fn write(&self, folder: &Path) -> Result<()>;
    /// The model in the weights folder `folder` that `meta` names, on `device`, in `precision`
    /// (the device's, or `bf16` for a GPT-2's matrices); each file read is checked against the
    /// digest `checkpoint.json` records for it first.
    fn read(folder: &Path, meta: &Meta, device: &Device, precision: Precision) -> Result<Self>;
    /// After a save of `folder` into `dir`: what the directory shows beside the checkpoint.
    fn publish(_dir: &Path, _folder: &Path) -> Result<()> {
        Ok(())
    }
}

impl Stored for GPT {
    const FILES: [&'static str; 2] = ["model.bpk", "model.safetensors"];

    fn write(&self, folder: &Path) -> Result<()> {
        let weights = self.clone().valid();
        weights
            .clone()
            .save_file(folder.join(Self::FILES[0]))
            .map_err(|err| anyhow::anyhow!("cannot save the model: {err}"))?;
        // the reference's names: blocks are `layer0.attn_wq`, not `layer.0.attn_wq`
        let mut store = SafetensorsStore::from_file(folder.join(Self::FILES[1]))
            .with_key_remapping(r"^layer\.(\d+)\.", "layer$1.")
            .overwrite(true);
        weights.save_into(&mut store).map_err(|err| anyhow::anyhow!("cannot save the safetensors weights: {err}"))
    }

    fn read(folder: &Path, meta: &Meta, device: &Device, _: Precision) -> Result<Self> {
        let Some((config, _)) = meta.gpt() else { bail!("{} holds a GPT-2, not microGPT's model", folder.display()) };
        // the initial values are overwritten; any seed builds the right shapes
        let skeleton = GPT::init(config, &mut PyRandom::new(0), device);
        let path = folder.join(Self::FILES[0]);
        // read the whole file now: Burn's file loader maps it lazily, and a training run may
        // delete this folder (after saving a newer one) while the weights are still unread
        let bytes = read_checked(meta, &path)?;
        catch_load(move || {
            // in the device's precision: an f64 checkpoint on the GPU (f32) is cast, not loaded as f64
            burn::store::ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
                .and_then(|record| skeleton.try_load_record(record.cast_to_module_dtype()))
        })
        .map_err(|err| {
            anyhow::anyhow!(
                "cannot load {} ({err}): the weights are truncated, corrupted or do not match checkpoint.json",
                path.display()
            )
        })
    }
}

impl Stored for GPT2 {
    const FILES: [&'static str; 2] = [hf::CONFIG_FILE, hf::WEIGHTS_FILE];

    fn write(&self, folder: &Path) -> Result<()> {
        hf::save(folder, self)
    }

    fn read(folder: &Path, meta: &Meta, device: &Device, precision: Precision) -> Result<Self> {
        for name in Self::FILES {
            check_file(meta, &folder.join(name))?;
        }
        hf::load(folder, device, precision)
    }

    /// The weights folder's Hugging Face files at the top of the directory too, each a copy
    /// replaced by a rename: transformers' `from_pretrained(DIR)` loads the latest checkpoint, and
    /// a model written over them (`save_pretrained(DIR)`) leaves the checkpoint's own files whole.
    fn publish(dir: &Path, folder: &Path) -> Result<()> {
        for name in Self::FILES {
            write_atomic_with(&dir.join(name), |tmp| {
                fs::copy(folder.join(name), tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
                Ok(())
            })?;
        }
        // what a save killed in the middle of this left (`model.safetensors.tmp-PID`)
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = Self::FILES.iter().find_map(|file| name.strip_prefix(file)?.strip_prefix(".tmp-"));
            if pid.is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// Whether `dir` holds a GPT-2 run of the earlier layout that [`upgrade`] has not rewritten yet.
pub fn is_old_gpt2_run(dir: &Path) -> bool {
    dir.join(OLD_GPT2_RECORD).is_file() && !is_checkpoint(dir)
}

/// Make a GPT-2 run saved by an earlier version (`training.json`, and Adam's state and the model
/// at the top of the directory) a checkpoint of this format, if `dir` holds one: its files linked
/// into a weights folder, then `checkpoint.json` written, then what only the old layout needed
/// removed. `train --resume` does it; `sample`, `eval` and `inspect` read such a run as the
/// Hugging Face folder it also is.
pub fn upgrade(dir: &Path) -> Result<()> {
    let path = dir.join(OLD_GPT2_RECORD);
    if !path.is_file() {
        return Ok(());
    }
    let _lock = lock(dir)?;
    if is_checkpoint(dir) {
        clear_old_layout(dir); // an upgrade cut short after checkpoint.json, or a run saved over one
        return Ok(());
    }
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let damaged = |what: String| anyhow::anyhow!("{} is damaged ({what})", path.display());
    let old: serde_json::Value = serde_json::from_str(&text).map_err(|err| damaged(err.to_string()))?;
    if old.get("format_version").and_then(serde_json::Value::as_u64).is_none_or(|v| v > 1) {
        bail!(
            "{} is not the record of a GPT-2 run this program saved: resume it with the program that saved it",
            path.display()
        );
    }
    fn field<T: serde::de::DeserializeOwned>(old: &serde_json::Value, name: &str) -> Result<T, String> {
        serde_json::from_value(old.get(name).cloned().unwrap_or_default()).map_err(|err| format!("{name}: {err}"))
    }
    let files: BTreeMap<String, FileDigest> = field(&old, "files").map_err(damaged)?;
    let optimizer: String = field(&old, "optimizer").unwrap_or_else(|_| "optimizer.bpk".into());
    // the model the record names: a save cut short left it aside
    let (mut model, config) = (dir.join(hf::WEIGHTS_FILE), dir.join(hf::CONFIG_FILE));
    if files.get(hf::WEIGHTS_FILE) != FileDigest::of_file(&model).ok().as_ref() {
        model = dir.join("model.safetensors.previous");
    }
    for (file, name) in [(&model, hf::WEIGHTS_FILE), (&dir.join(&optimizer), optimizer.as_str())] {
        if files.get(name) != FileDigest::of_file(file).ok().as_ref() {
            bail!(
                "{} is not the file {OLD_GPT2_RECORD} records (the file was changed): the run cannot be resumed; fine-tune its model further with --init-from {}",
                dir.join(name).display(),
                dir.display()
            );
        }
    }
    let step: usize = field(&old, "step").map_err(damaged)?;
    let weights = unused_name(dir, &format!("step-{step:06}"), "");
    let (tmp, folder) = (tmp_path(&dir.join(&weights)), dir.join(&weights));
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut digests = BTreeMap::new();
    for (from, name) in
        [(&model, hf::WEIGHTS_FILE), (&config, hf::CONFIG_FILE), (&dir.join(&optimizer), OPTIMIZER_FILE)]
    {
        if fs::hard_link(from, tmp.join(name)).is_err() {
            fs::copy(from, tmp.join(name)).with_context(|| format!("cannot copy {}", from.display()))?;
            flush(&tmp.join(name))?;
        }
        digests.insert(name.to_string(), FileDigest::of_file(from)?);
    }
    sync_dir(&tmp);
    fs::rename(&tmp, &folder).with_context(|| format!("cannot rename {}", tmp.display()))?;
    sync_dir(dir);
    let init_from: Option<String> = field(&old, "init_from").map_err(damaged)?;
    let meta = Meta {
        format_version: FORMAT_VERSION,
        step,
        config: Architecture::GPT2(hf::read_config(dir)?),
        vocab: None,
        block_size: field(&old, "block_size").map_err(damaged)?,
        run: field(&old, "run").map_err(damaged)?,
        weights,
        val_loss: field(&old, "val_loss").map_err(damaged)?,
        data: field(&old, "data").map_err(damaged)?,
        data_size: field(&old, "data_size").map_err(damaged)?,
        data_sha256: field(&old, "data_sha256").map_err(damaged)?,
        files: digests,
        init_from: init_from.map(|dir| InitFrom { dir, step: None }),
        eval_every: field(&old, "eval_every").map_err(damaged)?,
    };
    write_atomic(&dir.join(META_FILE), serde_json::to_string_pretty(&meta)?.as_bytes())?;
    sync_dir(dir);
    GPT2::publish(dir, &folder)?;
    clear_old_layout(dir);
    eprintln!("{}: a GPT-2 run of an earlier version, rewritten as a checkpoint ({META_FILE})", dir.display());
    Ok(())
}

/// Remove what only a GPT-2 run of the earlier layout needed (its `training.json`, Adam's states
/// `optimizer-NNNNNN.bpk`, the model a save kept aside, the files its saves wrote aside), once
/// `checkpoint.json` holds the run, or a new run replaces it (`--overwrite`). Best effort: a file
/// that stays is only disk space.
pub fn clear_old_layout(dir: &Path) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let record = [OLD_GPT2_RECORD, "model.safetensors.previous"].contains(&name.as_str())
            || name.starts_with("training.json.tmp-");
        let optimizer = name.starts_with("optimizer") && name.contains(".bpk");
        let aside = name
            .strip_prefix(".tmp")
            .is_some_and(|rest| rest.len() == 6 && rest.bytes().all(|b| b.is_ascii_alphanumeric()));
        if record || optimizer || aside {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The name of the first weight of `model` that holds a NaN or an infinity, if any (reads every
/// weight back from the device): its path in the module, as `wte` or `layer.0.attn_wq`.
pub fn first_non_finite(model: &impl Module) -> Result<Option<String>> {
    #[derive(Default)]
    struct Find {
        path: Vec<String>,
        found: Option<Result<String>>,
    }
    impl ModuleVisitor for Find {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.found.is_none() {
                match device::read_values(param.val()) {
                    Ok(values) if values.iter().all(|x| x.is_finite()) => {}
                    Ok(_) => self.found = Some(Ok(self.path.join("."))),
                    Err(err) => self.found = Some(Err(err)),
                }
            }
        }
    }
    let mut find = Find::default();
    model.visit(&mut find);
    find.found.transpose()
}
