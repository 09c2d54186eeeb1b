//! A GPT-2 training run's folder (`train --out DIR` of a GPT-2): Hugging Face's `config.json` and
//! `model.safetensors` ([`hf::save`]), which transformers loads as they are, and beside them what
//! `--resume` needs: Adam's state (`optimizer-NNNNNN.bpk`) and `training.json` (the step, the
//! run's settings, the data file's digest, and the size and SHA-256 of the model and Adam's
//! state of that step).
//! A save never touches the pair `training.json` names until the new pair is whole: Adam's state
//! goes under a new name, the model it replaces is kept as `model.safetensors.previous` (a hard
//! link: no second copy on the disk), then `training.json` names the new pair, then the old one
//! goes. A resume after a save cut short at any moment finds the pair `training.json` names
//! (putting the previous model back where it was replaced) and continues from that step.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::gpt::adam::Adam;
use crate::gpt::config::TrainConfig;
use crate::gpt::gpt2::GPT2;
use crate::program::checkpoint::{self, FileDigest};
use crate::program::datafile::DataFile;
use crate::program::files::{unused_name, write_atomic};
use crate::program::hf;

/// What a run records beside its Hugging Face files.
pub const RECORD_FILE: &str = "training.json";
/// The model `training.json` names, while a save replaces it.
const PREVIOUS_MODEL: &str = "model.safetensors.previous";
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
    /// The file of Adam's state at this step.
    #[serde(default = "first_optimizer_file")]
    pub optimizer: String,
    /// The size and SHA-256 of `model.safetensors` and of Adam's state.
    pub files: BTreeMap<String, FileDigest>,
    /// How often the run evaluated, kept by a resume that does not say otherwise.
    pub eval_every: Option<usize>,
    /// The GPT-2 the run started from (`--init-from`), as given.
    pub init_from: Option<String>,
}

/// Where the first records (format 1, before Adam's state had a name per step) kept it.
fn first_optimizer_file() -> String {
    "optimizer.bpk".into()
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

/// Save the run at `record.step`: Adam's state under a new name, the model (the one it replaces
/// kept aside), then `training.json` naming both by their digests, then what the pair before left.
pub fn save(dir: &Path, model: &GPT2, optim: &ModuleOptimizer, mut record: Record) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let state = optim.into_bytes().map_err(|err| anyhow::anyhow!("cannot save the optimizer state: {err}"))?;
    let optimizer = unused_name(dir, &format!("optimizer-{:06}", record.step), ".bpk");
    write_atomic(&dir.join(&optimizer), &state)?;
    let (current, previous) = (dir.join(hf::WEIGHTS_FILE), dir.join(PREVIOUS_MODEL));
    if is_run(dir) && current.is_file() {
        match fs::remove_file(&previous) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(err).with_context(|| format!("cannot remove {}", previous.display()));
            }
            _ => {}
        }
        if fs::hard_link(&current, &previous).is_err() {
            // no hard links here: a copy, written aside (never into a file linked to the model)
            crate::program::files::write_atomic_with(&previous, |tmp| Ok(fs::copy(&current, tmp).map(|_| ())?))?;
        }
    }
    hf::save(dir, model)?;
    record.format_version = FORMAT_VERSION;
    record.files = BTreeMap::from([
        (hf::WEIGHTS_FILE.to_string(), FileDigest::of_file(&current)?),
        (optimizer.clone(), FileDigest::of(&state)),
    ]);
    record.optimizer = optimizer;
    write_atomic(&dir.join(RECORD_FILE), serde_json::to_string_pretty(&record)?.as_bytes())?;
    // the pair before, no longer named, and what saves cut short left
    clear_leftovers(dir, Some(&record.optimizer));
    Ok(())
}

/// Begin a new run in `dir` (held): what an earlier run there kept for its resume goes, so that
/// a save of the new one cut short is never taken for the old run.
pub fn start_over(dir: &Path) -> Result<()> {
    let record = dir.join(RECORD_FILE);
    if record.is_file() {
        fs::remove_file(&record).with_context(|| format!("cannot remove {}", record.display()))?;
    }
    clear_leftovers(dir, None);
    Ok(())
}

/// Remove the previous model and every leftover ([`is_leftover`]) of `dir` but `keep`; best
/// effort (a file that stays is only disk space).
fn clear_leftovers(dir: &Path, keep: Option<&str>) {
    let _ = fs::remove_file(dir.join(PREVIOUS_MODEL));
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if Some(name.as_str()) != keep && is_leftover(&name) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether a file of a run's folder is one a save wrote and no longer needs: Adam's state of
/// another step, or a file written aside (`NAME.tmp-PID`, or safetensors' `.tmpXXXXXX`).
fn is_leftover(name: &str) -> bool {
    let ours = ["optimizer-", hf::WEIGHTS_FILE, hf::CONFIG_FILE, RECORD_FILE].iter().any(|p| name.starts_with(p));
    let aside = name
        .strip_prefix(".tmp")
        .is_some_and(|rest| rest.len() == 6 && rest.bytes().all(|b| b.is_ascii_alphanumeric()));
    let optimizer = (name.starts_with("optimizer-") && name.ends_with(".bpk")) || name == first_optimizer_file();
    optimizer || (ours && name.contains(".tmp-")) || aside
}

/// The run's model on `device` and Adam's state for the update `adam`, as `training.json` names
/// them (each file checked against it; the model a cut-short save replaced put back first).
pub fn load(dir: &Path, record: &Record, device: &Device, adam: Adam) -> Result<(GPT2, ModuleOptimizer)> {
    let refuse = |name: &str| {
        anyhow::anyhow!(
            "{} is not the file {RECORD_FILE} records (the file was changed): the run cannot be resumed; fine-tune its model further with --init-from {}",
            dir.join(name).display(),
            dir.display()
        )
    };
    let (current, previous) = (dir.join(hf::WEIGHTS_FILE), dir.join(PREVIOUS_MODEL));
    let model_digest = record.files.get(hf::WEIGHTS_FILE);
    if Some(&FileDigest::of_file(&current)?) != model_digest {
        // a save cut short after it replaced the model: the one training.json names is aside
        if !previous.is_file() || Some(&FileDigest::of_file(&previous)?) != model_digest {
            return Err(refuse(hf::WEIGHTS_FILE));
        }
        fs::rename(&previous, &current).with_context(|| format!("cannot restore {}", current.display()))?;
    }
    let path = dir.join(&record.optimizer);
    let state = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if record.files.get(&record.optimizer) != Some(&FileDigest::of(&state)) {
        return Err(refuse(&record.optimizer));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a save clears away: Adam's states and the files written aside; never the model, the
    /// config, the record, the metrics or a file of the user's.
    #[test]
    fn leftovers_are_only_what_saves_write() {
        for name in ["optimizer-000005.bpk", "optimizer-000005-1.bpk", "optimizer.bpk", "model.safetensors.tmp-42"] {
            assert!(is_leftover(name), "{name}");
        }
        for name in ["training.json.tmp-7", "config.json.tmp-7", "optimizer-000005.bpk.tmp-9", ".tmpAb12Cd"] {
            assert!(is_leftover(name), "{name}");
        }
        let kept = ["model.safetensors", "config.json", "training.json", "metrics.csv", "loss.png", ".lock"];
        for name in kept.into_iter().chain(["notes.txt", "model.safetensors.previous", ".tmp", ".tmpdir-long"]) {
            assert!(!is_leftover(name), "{name}");
        }
    }
}
