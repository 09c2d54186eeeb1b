//! GPT-2 as Hugging Face keeps it: a folder of `config.json` and `model.safetensors`, read into
//! [`GPT2`] and written from it; OpenAI's four models by name come from the hub ([`hub`]).
//!
//! Both layouts of the weights load: the hub's (names without a prefix, each layer's
//! `attn.bias` mask buffer present) and `save_pretrained`'s (names under `transformer.`, the
//! tied `lm_head.weight` absent). A GPT-2 is written in `save_pretrained`'s layout, which
//! `GPT2LMHeadModel.from_pretrained` loads. Weights in the file may be f32 or f64 (a run in f64
//! saves them so), f16 or bf16 (read into f32, or held in bf16: `--dtype bf16`), in one file or in shards
//! (`model.safetensors.index.json`). PyTorch's pickled
//! `pytorch_model.bin` is refused with the line that converts it.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{DType, Device, TensorData, bf16, f16};
use safetensors::Dtype;
use safetensors::tensor::{Metadata, TensorInfo};
use serde_json::{Value, json};

use crate::device::Precision;
use crate::gpt::gpt2::{GPT2, GPT2Config};
use crate::program::hub;

/// The model's description in a Hugging Face folder.
pub const CONFIG_FILE: &str = "config.json";
/// The weights in a Hugging Face folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The list of a folder's weight files, where `save_pretrained` split them into shards.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// Whether `dir` is a Hugging Face model folder (it has a `config.json`).
pub fn is_model_folder(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
}

/// The GPT-2 that `spec` names, if it names one: a Hugging Face folder (`config.json` and
/// `model.safetensors`), or one of OpenAI's models by name (`gpt2`, ...), downloaded into Hugging
/// Face's cache on first use. (A checkpoint directory, which a GPT-2's run also makes, is read
/// as one before this is asked.)
pub fn gpt2_folder(spec: &Path) -> Result<Option<PathBuf>> {
    if is_model_folder(spec) {
        return Ok(Some(spec.to_path_buf()));
    }
    match spec.to_str().filter(|name| !spec.exists() && hub::openai_repo(name).is_some()) {
        Some(name) => Ok(Some(hub::openai_model(name)?)),
        None => Ok(None),
    }
}

/// The shapes in a folder's `config.json`; anything but a GPT-2 is refused.
pub fn read_config(dir: &Path) -> Result<GPT2Config> {
    let path = dir.join(CONFIG_FILE);
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let json: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let model_type = json.get("model_type").and_then(Value::as_str).unwrap_or("none");
    if model_type != "gpt2" {
        bail!("{} describes a {model_type:?} model; only GPT-2 (model_type \"gpt2\") loads", path.display());
    }
    let activation = json.get("activation_function").and_then(Value::as_str).unwrap_or("gelu_new");
    if !["gelu_new", "gelu_pytorch_tanh"].contains(&activation) {
        bail!("{}: activation_function {activation:?}; only GPT-2's own, gelu_new, is built", path.display());
    }
    for flag in ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"] {
        if json.get(flag).and_then(Value::as_bool) == Some(true) {
            bail!("{}: {flag} is true; only OpenAI's GPT-2 (false) is built", path.display());
        }
    }
    if json
        .get("n_inner")
        .is_some_and(|n| !n.is_null() && n.as_u64() != json.get("n_embd").and_then(Value::as_u64).map(|c| 4 * c))
    {
        bail!("{}: n_inner is not 4 × n_embd; only GPT-2's MLP is built", path.display());
    }
    let config: GPT2Config =
        serde_json::from_value(json).with_context(|| format!("{} lacks GPT-2's sizes", path.display()))?;
    config.validate().with_context(|| path.display().to_string())?;
    Ok(config)
}

/// The GPT-2 in folder `dir` on `device`, its weights in the device's float type whatever the
/// file's; in `Precision::Bf16`, its matrices (every weight of two dimensions but the position
/// embeddings, of which a token reads one row) in bf16, each read from the file straight into
/// bf16 (an f32 file a piece at a time), never whole in f32.
pub fn load(dir: &Path, device: &Device, precision: Precision) -> Result<GPT2> {
    let config = read_config(dir)?;
    let files = weight_files(dir)?.into_iter().map(|path| WeightFile::open(&path)).collect::<Result<Vec<_>>>()?;
    // save_pretrained's names are under `transformer.`; the hub's are bare
    let prefixed = files.iter().any(|f| f.header.offset_keys().iter().any(|n| n.starts_with("transformer.")));
    let prefix = if prefixed { "transformer." } else { "" };
    GPT2::from_tensors(&config, device, |name, shape| {
        let key = format!("{prefix}{name}");
        let Some((file, info)) = files.iter().find_map(|f| Some((f, f.header.info(&key)?))) else {
            bail!("{} has no weight {key}: not the GPT-2 its config.json describes", dir.display());
        };
        let bf16 = precision == Precision::Bf16 && shape.len() == 2 && name != "wpe.weight";
        file.read(&key, info, bf16)
    })
}

/// One weight file, its header read: where each tensor's bytes lie. A tensor is read when it is
/// asked for, into the memory that holds it (gpt2-xl's file is 6.4 GB).
pub(super) struct WeightFile {
    path: PathBuf,
    file: fs::File,
    header: Metadata,
    /// Where the tensors' bytes start: after the header's length and the header.
    data_start: u64,
}

impl WeightFile {
    /// The file at `path` with its header, refused unless the header describes the whole file.
    fn open(path: &Path) -> Result<Self> {
        let mut file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let (header, data_start) = Self::header(&mut file)
            .map_err(|why| anyhow::anyhow!("{} is damaged or truncated ({why}): download it again", path.display()))?;
        Ok(Self { path: path.to_path_buf(), file, header, data_start })
    }

    /// The header of a safetensors file (8 bytes of its length, then JSON), checked as
    /// `SafeTensors::deserialize` checks it: the tensors one after another, filling the file.
    pub(super) fn header(file: &mut fs::File) -> Result<(Metadata, u64), String> {
        let len = file.metadata().map_err(|err| err.to_string())?.len();
        let mut n = [0; 8];
        file.read_exact(&mut n).map_err(|_| "no header".to_string())?;
        let n = u64::from_le_bytes(n);
        if n.saturating_add(8) > len {
            return Err(format!("a header of {n} bytes in a file of {len}"));
        }
        let mut header = vec![0; n as usize];
        file.read_exact(&mut header).map_err(|err| err.to_string())?;
        let header: Metadata = serde_json::from_slice(&header).map_err(|err| err.to_string())?;
        let end = 8 + n + header.data_len() as u64;
        if end != len {
            return Err(format!("its header describes {end} bytes, the file holds {len}"));
        }
        Ok((header, 8 + n))
    }

    /// The tensor `key` (`info` in the header): f32 and f64 as they are, f16 and bf16 in f32;
    /// with `bf16`, in bf16.
    fn read(&self, key: &str, info: &TensorInfo, bf16: bool) -> Result<TensorData> {
        let (start, end) = info.data_offsets;
        let shape = info.shape.clone();
        let dtype = match info.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F64 => DType::F64, // a run in f64 saves its weights whole
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => bail!("{}: weight {key} is {other:?}; f32, f64, f16 and bf16 weights load", self.path.display()),
        };
        let mut reader = &self.file;
        reader
            .seek(SeekFrom::Start(self.data_start + start as u64))
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        let mut reader = reader.take((end - start) as u64);
        let cannot = |err: std::io::Error| anyhow::anyhow!("cannot read {} ({err})", self.path.display());
        if bf16 && dtype != DType::BF16 {
            // a piece at a time: the tensor is never whole in its file's type
            let nearest: fn(&[u8]) -> bf16 = match dtype {
                DType::F32 => |b| bf16::from_f32(f32::from_le_bytes(b.try_into().expect("4 bytes"))),
                DType::F64 => |b| bf16::from_f64(f64::from_le_bytes(b.try_into().expect("8 bytes"))),
                _ => |b| bf16::from_f32(f16::from_le_bytes(b.try_into().expect("2 bytes")).to_f32()),
            };
            let (width, piece_len) = (dtype.size(), 1 << 16);
            let count = (end - start) / width;
            let (mut numbers, mut piece) = (Vec::with_capacity(count), vec![0; width * piece_len]);
            while numbers.len() < count {
                let bytes = &mut piece[..width * (count - numbers.len()).min(piece_len)];
                reader.read_exact(bytes).map_err(cannot)?;
                numbers.extend(bytes.chunks_exact(width).map(nearest));
            }
            return Ok(TensorData::new(numbers, shape));
        }
        let mut bytes = Vec::with_capacity(end - start);
        reader.read_to_end(&mut bytes).map_err(cannot)?;
        let data = TensorData::from_bytes_vec(bytes, shape, dtype);
        Ok(match dtype {
            DType::F16 | DType::BF16 if !bf16 => data.convert::<f32>(),
            _ => data,
        })
    }
}

/// A folder's weight files: `model.safetensors`, or the shards its `model.safetensors.index.json`
/// names (as `save_pretrained` splits a large model).
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let (single, index) = (dir.join(WEIGHTS_FILE), dir.join(INDEX_FILE));
    if single.is_file() || !index.is_file() {
        if !single.is_file() && dir.join("pytorch_model.bin").is_file() {
            bail!(
                "{} holds pytorch_model.bin, PyTorch's pickle, which is not read here: save it as model.safetensors with transformers' `GPT2LMHeadModel.from_pretrained(DIR).save_pretrained(DIR)`",
                dir.display()
            );
        }
        return Ok(vec![single]);
    }
    let text = fs::read_to_string(&index).with_context(|| format!("cannot read {}", index.display()))?;
    let json: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", index.display()))?;
    let map = json.get("weight_map").and_then(Value::as_object);
    let mut shards: Vec<&str> = map.into_iter().flatten().filter_map(|(_, file)| file.as_str()).collect();
    shards.sort_unstable();
    shards.dedup();
    if shards.is_empty() || shards.iter().any(|f| f.contains(['/', '\\'])) {
        bail!("{} names no weight files (its weight_map)", index.display());
    }
    Ok(shards.into_iter().map(|f| dir.join(f)).collect())
}

/// Write `model` into `dir` as `save_pretrained` writes a `GPT2LMHeadModel` (atomically, file by
/// file: a reader sees the old file or the new one): transformers' `from_pretrained(dir)` loads
/// it.
pub fn save(dir: &Path, model: &GPT2) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // f32, as OpenAI's; a model computing in f64 (`--dtype f64`) keeps all its digits, so that its
    // run resumes exactly (transformers reads f64 weights too)
    let tensors: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = model
        .tensors()
        .into_iter()
        .map(|(name, data)| {
            let shape = data.shape().as_slice().to_vec();
            let (dtype, bytes) = match data.dtype() {
                DType::F64 => (Dtype::F64, data.into_bytes().to_vec()),
                _ => (Dtype::F32, data.convert::<f32>().into_bytes().to_vec()),
            };
            (format!("transformer.{name}"), shape, dtype, bytes)
        })
        .collect();
    let views = tensors.iter().map(|(name, shape, dtype, bytes)| {
        (name.as_str(), safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).expect("sizes agree"))
    });
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    // beside the file first, then renamed over it: a save that fails or is cut short leaves the
    // model saved before it whole
    let path = dir.join(WEIGHTS_FILE);
    crate::program::files::write_atomic_with(&path, |tmp| {
        Ok(safetensors::serialize_to_file(views, Some(metadata), tmp)?)
    })
    .with_context(|| format!("cannot write {}", path.display()))?;
    let c = model.config();
    let config = json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "vocab_size": c.vocab_size,
        "n_positions": c.n_positions,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "layer_norm_epsilon": c.layer_norm_epsilon,
        "bos_token_id": crate::gpt::bpe::Bpe::EOT,
        "eos_token_id": crate::gpt::bpe::Bpe::EOT,
        "tie_word_embeddings": true,
    });
    crate::program::files::write_atomic(&dir.join(CONFIG_FILE), format!("{config:#}\n").as_bytes())
}
