//! GPT-2 against transformers and PyTorch, on the fixture `tests/reference/gpt2_model.py` made
//! (a small GPT2LMHeadModel with random weights, in both of Hugging Face's layouts): the logits,
//! the greedy continuation, the loss of a text, a few AdamW steps, the exported folder, and the
//! commands and their errors. Nothing is downloaded.

// f32 on the CPU backend, as a GPT-2 runs by default
#![cfg(feature = "cpu")]

mod common;

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, Int, Tensor, TensorData, bf16, f16};
use microgpt_burn::device::{self, DeviceArg, Precision};
use microgpt_burn::fast::{self, Kernels, with_kernels};
use microgpt_burn::gpt::adam::Adam;
use microgpt_burn::gpt::batch::{EvalSet, Windows};
use microgpt_burn::gpt::bpe::Bpe;
use microgpt_burn::gpt::data::Tokenize;
use microgpt_burn::gpt::gpt2::GPT2;
use microgpt_burn::gpt::model::LanguageModel;
use microgpt_burn::gpt::ops;
use microgpt_burn::gpt::rng::PyRandom;
use microgpt_burn::gpt::sample::{self, SampleOptions};
use microgpt_burn::gpt::train::{self, evaluate};
use microgpt_burn::program::hf;
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::Value;

use common::{microgpt, ok, one_line_error};

fn fixture(name: &str) -> PathBuf {
    common::reference("gpt2").join(name)
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap()
}

fn ids(value: &Value) -> Vec<usize> {
    value.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()
}

fn cpu_f32() -> Device {
    device::open(Some(DeviceArg::Cpu), Some(Precision::F32)).unwrap().device
}

fn tokens_of(ids: &[usize], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(ids.iter().map(|&i| i as i64).collect(), [1, ids.len()]), device)
}

/// transformers' logits [T, V] for the prompt's ids.
fn transformers_logits() -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(fixture("logits.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = file.tensor("logits").unwrap();
    let values = view.data().chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    (values, view.shape().to_vec())
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn logits_of(model: &GPT2, prompt: &[usize]) -> Vec<f32> {
    let logits = model.forward(tokens_of(prompt, &model.devices()[0]));
    logits.into_data().convert::<f32>().try_to_vec().unwrap()
}

/// Both layouts (save_pretrained's and the hub's) give transformers' logits within 1e-5, on
/// both kinds of operations.
#[test]
fn logits_are_transformers_in_both_layouts() {
    let (want, shape) = transformers_logits();
    let prompt = ids(&expected()["ids"]);
    assert_eq!(shape, [prompt.len(), Bpe::VOCAB_SIZE]);
    assert_eq!(prompt, Bpe::gpt2().unwrap().encode(expected()["prompt"].as_str().unwrap()), "the prompt's tokens");
    let spread = want.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
    assert!(spread > 5.0, "the fixture's logits are far from uniform: {spread}");
    for layout in ["saved", "hub"] {
        for kernels in [Kernels::Fused, Kernels::Burn] {
            let model = hf::load(&fixture(layout), &cpu_f32(), Precision::F32).unwrap();
            let diff = with_kernels(kernels, || max_diff(&logits_of(&model, &prompt), &want));
            assert!(diff < 1e-5, "{layout}, {kernels:?}: logits differ by {diff}");
        }
    }
}

/// Greedy sampling (top-k 1) through the key/value cache continues as transformers' `generate`.
#[test]
fn greedy_continuation_is_transformers_generate() {
    let expected = expected();
    let model = hf::load(&fixture("saved"), &cpu_f32(), Precision::F32).unwrap();
    let options = SampleOptions { top_k: Some(1), ..SampleOptions::reference() };
    let want = ids(&expected["greedy"]);
    let prompt = ids(&expected["continue_ids"]);
    let drawn =
        sample::continuation(&model, &prompt, want.len(), &options, None, &mut PyRandom::new(1), |_| Ok(())).unwrap();
    assert_eq!(drawn.tokens, want);
}

/// The mean loss of text.txt, tiled in windows of the context + 1, is transformers' own.
#[test]
fn the_loss_of_a_text_is_transformers() {
    let expected = expected();
    let model = hf::load(&fixture("hub"), &cpu_f32(), Precision::F32).unwrap();
    let text = std::fs::read_to_string(fixture("text.txt")).unwrap();
    let tokens = Bpe::gpt2().unwrap().encode(&text);
    let set = EvalSet::tiled(&tokens, model.block_size(), &model.devices()[0]);
    assert_eq!(set.count() as u64, expected["eval_windows"].as_u64().unwrap());
    let loss = evaluate(&model, &set).unwrap();
    let want = expected["eval_loss"].as_f64().unwrap();
    assert!((loss - want).abs() < 1e-5, "loss {loss}, transformers {want}");
}

/// A few steps of nanoGPT's fine-tuning (AdamW with weight decay on the matrices only, the
/// gradients clipped to norm 1) give PyTorch's losses within 1e-5, the update on the host and as
/// tensor operations.
#[test]
fn training_steps_are_pytorch_adamw() {
    let train = &expected()["train"];
    let number = |key: &str| train[key].as_f64().unwrap();
    let want: Vec<f64> = train["losses"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let text = std::fs::read_to_string(fixture("text.txt")).unwrap();
    let tokens = Bpe::gpt2().unwrap().encode(&text);
    for on_host in [true, false] {
        let device = cpu_f32().autodiff();
        let mut model = hf::load(&fixture("saved"), &device, Precision::F32).unwrap();
        let weights = train::weight_ids(&model);
        assert_eq!(weights.iter().filter(|w| w.rank == 1).count(), 2 * (4 + 4) + 2, "the vectors: biases and gains");
        let batch = Windows::new(&tokens, model.block_size(), &device).batch(&ids(&train["offsets"]));
        let adam = Adam {
            beta1: number("beta1"),
            beta2: number("beta2"),
            eps: number("eps"),
            weight_decay: number("weight_decay"),
            on_host,
        };
        let mut optim = adam.init();
        let mut losses = Vec::new();
        for _ in 0..train["steps"].as_u64().unwrap() {
            let loss = model.loss(batch.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            losses.push(device::read_scalar(loss.inner()).unwrap());
            let grads = train::clip_grad_norm(grads, &weights, number("grad_clip"), on_host);
            model = optim.step(number("lr"), model, grads);
        }
        losses.push(device::read_scalar(model.loss(batch.clone())).unwrap());
        let worst = losses.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-5, "host {on_host}: losses {losses:?}, PyTorch {want:?}");
        assert!(losses[3] < losses[0] - 0.1, "training lowers the loss: {losses:?}");
    }
}

/// An exported folder is save_pretrained's: the same weight names, shapes and metadata as
/// transformers writes, a config transformers reads; and it loads back to the same logits.
#[test]
fn an_exported_folder_is_save_pretrained_and_loads_back() {
    let model = hf::load(&fixture("hub"), &cpu_f32(), Precision::F32).unwrap();
    let dir = tempfile::tempdir().unwrap();
    hf::save(dir.path(), &model).unwrap();
    let header = |path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let mut tensors: Vec<(String, Vec<usize>, String)> = meta
            .tensors()
            .iter()
            .map(|(name, info)| (name.clone(), info.shape.clone(), format!("{:?}", info.dtype)))
            .collect();
        tensors.sort();
        (tensors, meta.metadata().clone())
    };
    assert_eq!(header(&dir.path().join("model.safetensors")), header(&fixture("saved/model.safetensors")));
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap()).unwrap();
    let theirs: Value = serde_json::from_str(&std::fs::read_to_string(fixture("saved/config.json")).unwrap()).unwrap();
    for key in ["model_type", "architectures", "vocab_size", "n_positions", "n_embd", "n_layer", "n_head"] {
        assert_eq!(config[key], theirs[key], "{key}");
    }
    let prompt = ids(&expected()["ids"]);
    let back = hf::load(dir.path(), &cpu_f32(), Precision::F32).unwrap();
    assert_eq!(logits_of(&back, &prompt), logits_of(&model, &prompt));
}

/// `sample` and `eval` on a save_pretrained folder, from the command line.
#[test]
fn sample_and_eval_run_on_a_hugging_face_folder() {
    let expected = expected();
    let dir = tempfile::tempdir().unwrap();
    let folder = fixture("saved");
    let folder = folder.to_str().unwrap();
    let prefix = expected["continue"].as_str().unwrap();
    let want = Bpe::gpt2().unwrap().decode(&ids(&expected["greedy"])).unwrap();
    let n = ids(&expected["greedy"]).len().to_string();
    let out = ok(
        dir.path(),
        &["sample", "--checkpoint", folder, "--prefix", prefix, "--num-tokens", &n, "--top-k", "1", "--device", "cpu"],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("{prefix}{want}"), "{out}");
    assert!(lines.last().unwrap().starts_with("speed: ") && out.contains(" tokens/s"), "{out}");

    let text = fixture("text.txt");
    let out = ok(dir.path(), &["eval", "--checkpoint", folder, "--data", text.to_str().unwrap(), "--device", "cpu"]);
    let loss: f64 = out.strip_prefix("loss: ").unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!((loss - expected["eval_loss"].as_f64().unwrap()).abs() < 1e-4, "{out}");
    let err = one_line_error(&microgpt(dir.path(), &["eval", "--checkpoint", folder]));
    assert!(err.contains("a GPT-2 folder records no text: pass --data FILE"), "{err}");
}

/// `--checkpoint gpt2` finds a model already in Hugging Face's cache (transformers' name for it,
/// `models--gpt2`) and downloads nothing; offline and absent, it says so in one line.
#[test]
fn an_openai_name_is_looked_up_in_hugging_faces_cache() {
    let cache = tempfile::tempdir().unwrap();
    let snapshot = cache.path().join("models--gpt2/snapshots/0123abc");
    std::fs::create_dir_all(&snapshot).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("hub").join(file), snapshot.join(file)).unwrap();
    }
    std::fs::create_dir_all(cache.path().join("models--gpt2/refs")).unwrap();
    std::fs::write(cache.path().join("models--gpt2/refs/main"), "0123abc").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |cache: &Path| {
        common::command(dir.path())
            .args(["sample", "--checkpoint", "gpt2", "--num-tokens", "3", "--device", "cpu"])
            .env("HF_HUB_CACHE", cache)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap()
    };
    let out = run(cache.path());
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(common::stdout(&out).lines().last().unwrap().starts_with("speed: "));
    let empty = tempfile::tempdir().unwrap();
    let err = one_line_error(&run(empty.path()));
    assert!(err.contains("gpt2 is not in Hugging Face's cache") && err.contains("HF_HUB_OFFLINE"), "{err}");
}

/// A folder of another architecture, a missing or truncated weight file, weights that are not
/// the config's: one line each, no panic.
#[test]
fn bad_folders_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let folder = |name: &str, config: &str, weights: Option<&[u8]>| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("config.json"), config).unwrap();
        if let Some(bytes) = weights {
            std::fs::write(path.join("model.safetensors"), bytes).unwrap();
        }
        path
    };
    let config = std::fs::read_to_string(fixture("saved/config.json")).unwrap();
    let weights = std::fs::read(fixture("saved/model.safetensors")).unwrap();
    let cases = [
        (folder("llama", &config.replace("\"gpt2\"", "\"llama\""), Some(&weights)), "describes a \"llama\" model"),
        (folder("missing", &config, None), "cannot open"),
        (folder("truncated", &config, Some(&weights[..weights.len() / 2])), "damaged or truncated"),
        (
            folder("deeper", &config.replace("\"n_layer\": 2", "\"n_layer\": 3"), Some(&weights)),
            "has no weight transformer.h.2",
        ),
        (folder("wider", &config.replace("\"n_embd\": 8", "\"n_embd\": 16"), Some(&weights)), "has shape"),
        (folder("not-json", "{", Some(&weights)), "is not JSON"),
        (folder("pickled", &config, None), "pytorch_model.bin, PyTorch's pickle"),
        (folder("no-shards", &config, None), "names no weight files"),
        (folder("ints", &config, Some(&retyped(&weights, Dtype::I32))), "is I32; f32, f64, f16 and bf16 weights load"),
    ];
    std::fs::write(dir.path().join("pickled/pytorch_model.bin"), b"PK").unwrap();
    std::fs::write(dir.path().join("no-shards/model.safetensors.index.json"), r#"{"weight_map": {}}"#).unwrap();
    for (path, want) in cases {
        for command in ["sample", "eval"] {
            let mut args = vec![command, "--checkpoint", path.to_str().unwrap(), "--device", "cpu"];
            if command == "eval" {
                args.extend(["--data", "text.txt"]);
            }
            let err = one_line_error(&microgpt(dir.path(), &args));
            assert!(err.contains(want), "{command} {}: {err}", path.display());
        }
    }
}

/// A safetensors file's numbers (f32) written as `dtype`, rounded to the nearest; `keep` picks
/// the tensors written (all when it says yes to all).
fn written_as(bytes: &[u8], dtype: Dtype, keep: impl Fn(&str) -> bool) -> Vec<u8> {
    let file = SafeTensors::deserialize(bytes).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| keep(name))
        .map(|(name, view)| {
            let values = view.data().chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()));
            let data: Vec<u8> = match dtype {
                Dtype::F32 | Dtype::I32 => view.data().to_vec(), // I32: the same bytes, called integers
                Dtype::BF16 => values.flat_map(|v| bf16::from_f32(v).to_le_bytes()).collect(),
                Dtype::F16 => values.flat_map(|v| f16::from_f32(v).to_le_bytes()).collect(),
                Dtype::F64 => values.flat_map(|v| f64::from(v).to_le_bytes()).collect(),
                _ => unreachable!(),
            };
            (name, view.shape().to_vec(), data)
        })
        .collect();
    let views = tensors.iter().map(|(n, s, d)| (n.as_str(), TensorView::new(dtype, s.clone(), d).unwrap()));
    safetensors::serialize(views, None).unwrap()
}

fn retyped(bytes: &[u8], dtype: Dtype) -> Vec<u8> {
    written_as(bytes, dtype, |_| true)
}

/// The weights of the GPT-2 in `dir`, by name, as f32.
fn weights_of(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let model = hf::load(dir, &cpu_f32(), Precision::F32).unwrap();
    model.tensors().into_iter().map(|(name, data)| (name, data.convert::<f32>().try_to_vec::<f32>().unwrap())).collect()
}

/// f16 and bf16 weights load as the nearest f32 of each (what PyTorch's `.float()` gives); weights
/// split into shards with `model.safetensors.index.json`, as `save_pretrained` splits a large
/// model, load as the one file does.
#[test]
fn half_precision_and_sharded_weights_load() {
    let bytes = std::fs::read(fixture("saved/model.safetensors")).unwrap();
    let want = weights_of(&fixture("saved"));
    let root = tempfile::tempdir().unwrap();
    let folder = |name: &str| {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(fixture("saved/config.json"), dir.join("config.json")).unwrap();
        dir
    };
    let bf16_nearest = |v: f32| bf16::from_f32(v).to_f32();
    let f16_nearest = |v: f32| f16::from_f32(v).to_f32();
    let rounded: [(Dtype, &dyn Fn(f32) -> f32); 2] = [(Dtype::BF16, &bf16_nearest), (Dtype::F16, &f16_nearest)];
    for (dtype, round) in rounded {
        let dir = folder(&format!("{dtype:?}"));
        std::fs::write(dir.join("model.safetensors"), retyped(&bytes, dtype)).unwrap();
        let got = weights_of(&dir);
        assert_eq!(got.len(), want.len());
        for ((name, got), (_, exact)) in got.iter().zip(&want) {
            let nearest: Vec<f32> = exact.iter().map(|&v| round(v)).collect();
            assert_eq!(got, &nearest, "{dtype:?} {name}");
            assert_ne!(got, exact, "{dtype:?} {name}: the test's weights must need rounding");
        }
    }

    let dir = folder("sharded");
    let first = |name: &str| name.contains(".h.0.") || name.contains("wte");
    std::fs::write(dir.join("model-00001-of-00002.safetensors"), written_as(&bytes, Dtype::F32, first)).unwrap();
    std::fs::write(dir.join("model-00002-of-00002.safetensors"), written_as(&bytes, Dtype::F32, |n| !first(n)))
        .unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let map: serde_json::Map<String, Value> = file
        .names()
        .into_iter()
        .map(|n| (n.to_string(), format!("model-0000{}-of-00002.safetensors", if first(n) { 1 } else { 2 }).into()))
        .collect();
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    assert_eq!(weights_of(&dir), want);
}

/// Fine-tuning in micro-batches (`--grad-accum`, as nanoGPT's recipe runs on a smaller GPU)
/// takes the steps the whole batch takes, up to f32 rounding.
#[test]
fn fine_tuning_in_micro_batches_takes_the_same_steps() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("text.txt"), dir.path().join("text.txt")).unwrap();
    let folder = fixture("saved");
    let args = ["train", "--init-from", folder.to_str().unwrap(), "--data", "text.txt", "--block-size", "16"];
    let args = [&args[..], &["--steps", "6", "--batch-size", "4", "--lr", "0.003", "--device", "cpu"]].concat();
    let whole = common::step_losses(&ok(dir.path(), &args));
    let accumulated = common::step_losses(&ok(dir.path(), &[&args[..], &["--grad-accum", "4"]].concat()));
    assert_eq!(whole.len(), 6);
    for (a, b) in accumulated.iter().zip(&whole) {
        assert!((a - b).abs() < 2e-4, "{accumulated:?} vs {whole:?}");
    }
    assert!(whole[5] < whole[0] - 0.05, "{whole:?}");
}

/// The numbers after `prefix` on the line that starts with it.
fn number_after(out: &str, prefix: &str) -> f64 {
    let line = out.lines().find_map(|l| l.split_once(prefix).map(|(_, rest)| rest)).unwrap_or_else(|| panic!("{out}"));
    line.split(|c: char| !(c.is_ascii_digit() || c == '.')).find(|s| !s.is_empty()).unwrap().parse().unwrap()
}

/// `train --init-from` a save_pretrained folder fine-tunes it: the held-out loss falls, and
/// `--out` holds a Hugging Face folder that loads (in save_pretrained's layout, which
/// transformers reads) with weights other than the ones it started from.
#[test]
fn fine_tuning_a_hugging_face_folder_lowers_its_loss_and_saves_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("text.txt"), dir.path().join("text.txt")).unwrap();
    let folder = fixture("saved");
    let args = [
        "train",
        "--init-from",
        folder.to_str().unwrap(),
        "--data",
        "text.txt",
        "--block-size",
        "16",
        "--steps",
        "8",
        "--batch-size",
        "4",
        "--lr",
        "0.003",
        "--out",
        "tuned",
        "--device",
        "cpu",
        "--quiet",
    ];
    let out = ok(dir.path(), &args);
    let before = number_after(&out, "val loss ");
    let after = number_after(&out, "val loss: ");
    assert!(after < before - 0.05, "{out}");
    assert!(out.contains("--- inference"), "{out}");
    let tuned = hf::load(&dir.path().join("tuned"), &cpu_f32(), Precision::F32).unwrap();
    let prompt = ids(&expected()["ids"]);
    let original = hf::load(&folder, &cpu_f32(), Precision::F32).unwrap();
    assert_ne!(logits_of(&tuned, &prompt), logits_of(&original, &prompt));
    // the same file layout transformers wrote
    let names = |path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        let mut names: Vec<String> =
            safetensors::SafeTensors::deserialize(&bytes).unwrap().names().iter().map(|n| n.to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(names(&dir.path().join("tuned/model.safetensors")), names(&folder.join("model.safetensors")));
    // and it samples
    let out = ok(dir.path(), &["sample", "--checkpoint", "tuned", "--num-tokens", "5", "--device", "cpu"]);
    assert!(out.lines().last().unwrap().starts_with("speed: "), "{out}");
}

/// `train --tokenizer gpt2` trains a GPT-2 from scratch on a text in GPT-2's tokens: from about
/// ln 50257 (GPT-2's initialisation is near uniform), the loss falls.
#[test]
fn a_gpt2_trains_from_scratch_in_gpt2_tokens() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("text.txt"), common::shakespeare_start(20_000)).unwrap();
    let args = [
        "train",
        "--tokenizer",
        "gpt2",
        "--data",
        "text.txt",
        "--n-layer",
        "1",
        "--n-embd",
        "16",
        "--n-head",
        "2",
        "--block-size",
        "16",
        "--steps",
        "40",
        "--batch-size",
        "8",
        "--lr",
        "0.01",
        "--device",
        "cpu",
        "--num-tokens",
        "10",
    ];
    let out = ok(dir.path(), &args);
    assert!(out.contains("model: GPT-2, n_layer 1, n_embd 16, n_head 2, block_size 16"), "{out}");
    let losses = common::step_losses(&out);
    assert_eq!(losses.len(), 40);
    assert!((losses[0] - (50257f64).ln()).abs() < 0.1, "starts near ln 50257: {}", losses[0]);
    assert!(losses[39] < losses[0] - 2.0, "{losses:?}");
}

/// What a GPT-2 run cannot do is refused in one line.
#[test]
fn gpt2_runs_refuse_what_they_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("text.txt"), dir.path().join("text.txt")).unwrap();
    let folder = fixture("saved");
    let folder = folder.to_str().unwrap();
    // a model of characters, which no GPT-2 run starts from or continues
    let chars = ["train", "--data", "text.txt", "--layout", "text", "--steps", "1", "--n-embd", "8", "--out", "chars"];
    ok(dir.path(), &[&chars[..], &["--num-chars", "1", "--device", "cpu"]].concat());
    let cases: [(&[&str], &str); 6] = [
        (
            &["--resume", folder],
            "not a run of `train --out` (it has no checkpoint.json): fine-tune it with --init-from",
        ),
        (&["--tokenizer", "gpt2", "--layout", "lines"], "trains on one text"),
        (&["--init-from", folder, "--tokenizer", "chars"], "drop --tokenizer chars"),
        (&["--init-from", folder, "--n-layer", "3"], "--n-layer 3 differs from the checkpoint's 2: --init-from keeps"),
        (&["--init-from", "chars", "--tokenizer", "gpt2"], "--init-from chars is a model of characters; a GPT-2 run"),
        (&["--resume", "chars", "--tokenizer", "gpt2"], "--resume chars is a model of characters; a GPT-2 run"),
    ];
    for (flags, want) in cases {
        let mut args = vec!["train", "--data", "text.txt", "--device", "cpu"];
        args.extend(flags);
        let err = one_line_error(&microgpt(dir.path(), &args));
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// A GPT-2 run saved with `--out` resumes exactly: stopped halfway and resumed, in its own
/// directory or into another, it takes the whole run's steps and ends with its weights, byte for
/// byte, read from its checkpoint (not the Hugging Face files at the top, which a user may
/// change). A run saved by an earlier version (`training.json`) is rewritten as a checkpoint and
/// resumes exactly too. A flag that differs from the run's, a weight file that is not the one
/// `checkpoint.json` records and a text that changed are refused in one line.
#[test]
fn a_gpt2_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(fixture("text.txt"), d.join("text.txt")).unwrap();
    let folder = fixture("saved");
    let args = ["train", "--init-from", folder.to_str().unwrap(), "--data", "text.txt", "--block-size", "16"];
    let args = [&args[..], &["--steps", "6", "--batch-size", "4", "--lr", "0.003", "--eval-every", "2"]].concat();
    let args = [&args[..], &["--eval-windows", "40"]].concat();
    let out = ok(d, &[&args[..], &["--out", "whole"]].concat());
    let whole = common::step_losses(&out);
    // `eval` of the run's folder without --data: its held-out windows, its own val loss
    let eval = ok(d, &["eval", "--checkpoint", "whole"]);
    assert!(
        eval.starts_with(&format!("loss: {:.4} (40 windows: the held-out windows of ", common::val_loss(&out))),
        "{eval}"
    );
    ok(d, &[&args[..], &["--out", "half", "--stop-at", "3"]].concat());
    let meta = common::read_json(&d.join("half/checkpoint.json"));
    assert_eq!((meta["step"].as_u64(), meta["block_size"].as_u64()), (Some(3), Some(16)));
    assert_eq!(meta["run"]["layout"], "text", "a GPT-2 reads one text");
    assert_eq!(meta["config"]["n_layer"], 2, "GPT-2's shapes, as config.json writes them");
    let bytes = |run: &str| std::fs::read(d.join(run).join("model.safetensors")).unwrap();
    assert_eq!(bytes("half"), std::fs::read(d.join("half/step-000003/model.safetensors")).unwrap());
    // the top-level files are a copy of the checkpoint's, never read back: written over in place
    // (as save_pretrained(DIR) does), they leave the checkpoint whole
    std::fs::write(d.join("half/model.safetensors"), bytes("whole")).unwrap();
    let resumed = common::step_losses(&ok(d, &["train", "--resume", "half"]));
    assert_eq!(resumed, whole[3..], "the steps after the third, as the whole run took them");
    assert_eq!(bytes("half"), bytes("whole"), "the same weights, byte for byte");
    // the resumed folder is still one transformers and this program load
    ok(d, &["sample", "--checkpoint", "half", "--num-tokens", "3"]);

    ok(d, &[&args[..], &["--out", "again", "--stop-at", "3"]].concat());
    // resumed into another directory, which then holds the whole run
    let resumed = common::step_losses(&ok(d, &["train", "--resume", "again", "--out", "elsewhere"]));
    assert_eq!((resumed, bytes("elsewhere")), (whole[3..].to_vec(), bytes("whole")));
    // saved by an earlier version: the weights and Adam's state beside training.json
    let old = common::read_json(&d.join("again/checkpoint.json"));
    std::fs::create_dir(d.join("old")).unwrap();
    for (from, to) in [("config.json", "config.json"), ("model.safetensors", "model.safetensors")] {
        std::fs::copy(d.join("again/step-000003").join(from), d.join("old").join(to)).unwrap();
    }
    std::fs::copy(d.join("again/step-000003/optimizer.bpk"), d.join("old/optimizer-000003.bpk")).unwrap();
    let files = &old["files"];
    let record = serde_json::json!({
        "format_version": 1, "step": 3, "run": old["run"], "block_size": 16, "val_loss": old["val_loss"],
        "data": old["data"], "data_size": old["data_size"], "data_sha256": old["data_sha256"],
        "optimizer": "optimizer-000003.bpk", "eval_every": 2, "init_from": folder.to_str().unwrap(),
        "files": { "model.safetensors": files["model.safetensors"], "optimizer-000003.bpk": files["optimizer.bpk"] },
    });
    std::fs::write(d.join("old/training.json"), record.to_string()).unwrap();
    // a save cut short after it replaced the model: the one training.json names is aside
    std::fs::rename(d.join("old/model.safetensors"), d.join("old/model.safetensors.previous")).unwrap();
    std::fs::write(d.join("old/model.safetensors"), bytes("whole")).unwrap();
    std::fs::write(d.join("old/optimizer-000002.bpk"), "Adam's state of a save before").unwrap();
    let err = one_line_error(&microgpt(d, &["eval", "--checkpoint", "old"]));
    let convert = "or make it a checkpoint first with `microgpt train --resume old --stop-at 1`";
    assert!(err.contains("saved by an earlier version: pass --data FILE") && err.contains(convert), "{err}");
    let out = microgpt(d, &["train", "--resume", "old", "--stop-at", "1", "--num-tokens", "1"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stderr.contains("a GPT-2 run of an earlier version, rewritten as a checkpoint"));
    assert!(common::step_losses(&stdout).is_empty(), "no step past the third: {stdout}");
    assert_eq!(common::step_losses(&ok(d, &["train", "--resume", "old"])), whole[3..]);
    assert_eq!(bytes("old"), bytes("whole"));
    for gone in ["training.json", "optimizer-000003.bpk", "optimizer-000002.bpk", "model.safetensors.previous"] {
        assert!(!d.join("old").join(gone).exists(), "{gone}");
    }
    let meta = common::read_json(&d.join("old/checkpoint.json"));
    assert_eq!((meta["step"].as_u64(), &meta["init_from"]["dir"]), (Some(6), &Value::from(folder.to_str().unwrap())));

    let refusals: [(&[&str], &str); 3] = [
        (
            &["--lr", "0.01"],
            "--lr 0.01 differs from the checkpoint's 0.003: a resume continues the saved run as it was",
        ),
        (&["--block-size", "8"], "--block-size 8 differs from the checkpoint's 16: a resume continues"),
        (&["--n-layer", "3"], "--n-layer 3 differs from the checkpoint's 2: a resume continues"),
    ];
    for (flags, want) in refusals {
        let err = one_line_error(&microgpt(d, &[&["train", "--resume", "again"][..], flags].concat()));
        assert!(err.contains(want), "{flags:?}: {err}");
    }
    std::fs::write(d.join("text.txt"), "another text entirely ".repeat(40)).unwrap();
    let err = one_line_error(&microgpt(d, &["train", "--resume", "again"]));
    assert!(err.contains("has changed since training"), "{err}");
    std::fs::copy(fixture("text.txt"), d.join("text.txt")).unwrap();
    std::fs::copy(d.join("whole/model.safetensors"), d.join("again/step-000003/model.safetensors")).unwrap();
    let err = one_line_error(&microgpt(d, &["train", "--resume", "again"]));
    assert!(err.contains("again/step-000003/model.safetensors is damaged: its size or SHA-256 differs"), "{err}");
    // a new run over it (--overwrite) keeps one checkpoint, its own
    ok(d, &[&args[..], &["--out", "again", "--overwrite", "--stop-at", "1"]].concat());
    assert_eq!(common::read_json(&d.join("again/checkpoint.json"))["step"], 1);
    let mut names: Vec<String> =
        std::fs::read_dir(d.join("again")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let kept =
        [".lock", "checkpoint.json", "config.json", "loss.png", "metrics.csv", "model.safetensors", "step-000001"];
    assert_eq!(names, kept, "{names:?}");
    // a run in f64 saves its weights in f64 and resumes in f64, exactly, without saying so again
    let f64_run = [&args[..], &["--dtype", "f64", "--num-chars", "1"]].concat();
    let whole = common::step_losses(&ok(d, &[&f64_run[..], &["--out", "f64-whole"]].concat()));
    ok(d, &[&f64_run[..], &["--out", "f64", "--stop-at", "2"]].concat());
    let resumed = common::step_losses(&ok(d, &["train", "--resume", "f64", "--num-chars", "1"]));
    assert_eq!(resumed, whole[2..]);
    assert_eq!(bytes("f64"), bytes("f64-whole"), "the same f64 weights, byte for byte");
    let saved = bytes("f64");
    let header = SafeTensors::deserialize(&saved).unwrap();
    assert_eq!(header.tensor("transformer.wte.weight").unwrap().dtype(), Dtype::F64);
}

/// `inspect` on a GPT-2 reads its text in GPT-2's tokens: a row per position, whose mean loss is
/// the model's loss on that window, and the attention picture.
#[test]
fn inspect_reads_a_gpt2_in_its_tokens() {
    let text = expected()["prompt"].as_str().unwrap().to_string();
    let prompt = ids(&expected()["ids"]);
    let model = hf::load(&fixture("saved"), &cpu_f32(), Precision::F32).unwrap();
    let seen = microgpt_burn::program::inspect::inspect_tokens(&model, &prompt, 0).unwrap();
    assert_eq!(seen.predictions.len(), prompt.len() - 1);
    assert_eq!(seen.attention.len(), 2, "two layers");
    let batch = Windows::new(&prompt, prompt.len() - 1, &model.devices()[0]).batch(&[0]);
    let loss = device::read_scalar(model.loss(batch)).unwrap();
    assert!((seen.mean_loss - loss).abs() < 1e-5, "{} vs {loss}", seen.mean_loss);

    let dir = tempfile::tempdir().unwrap();
    let folder = fixture("saved");
    let out = ok(
        dir.path(),
        &["inspect", "--checkpoint", folder.to_str().unwrap(), "--text", &text, "--out", "pics", "--device", "cpu"],
    );
    assert_eq!(
        out.lines().filter(|l| l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit())).count(),
        prompt.len() - 1,
        "{out}"
    );
    assert!(out.contains(&format!("mean loss: {:.4}", seen.mean_loss)), "{out}");
    assert!(dir.path().join("pics/attention.png").is_file());
}

/// `--dtype bf16`: a GPT-2's matrices are held in bf16 (the position embeddings, the biases and
/// the gains in f32), read straight from an f32 file or a bf16 one; the text's loss is within 1%
/// of f32's, and greedy sampling chooses f32's tokens wherever f32's best two logits are further
/// apart than bf16 moves any logit.
#[test]
fn bf16_weights_keep_the_loss_and_the_greedy_choices() {
    let exact = hf::load(&fixture("saved"), &cpu_f32(), Precision::F32).unwrap();
    let model = hf::load(&fixture("saved"), &cpu_f32(), Precision::Bf16).unwrap();
    let matrices = |m: &GPT2| -> Vec<(String, TensorData)> {
        let all = m.tensors().into_iter();
        all.filter(|(name, data)| data.shape().num_dims() == 2 && name != "wpe.weight").collect()
    };
    for (name, data) in model.tensors() {
        let bf16 = matrices(&model).iter().any(|(m, _)| *m == name);
        assert_eq!(data.dtype(), if bf16 { DType::BF16 } else { DType::F32 }, "{name}");
    }
    // a bf16 file: its matrices are held as the file's numbers, bit for bit
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("saved/config.json"), dir.path().join("config.json")).unwrap();
    let bytes = std::fs::read(fixture("saved/model.safetensors")).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), retyped(&bytes, Dtype::BF16)).unwrap();
    let from_bf16 = hf::load(dir.path(), &cpu_f32(), Precision::Bf16).unwrap();
    assert_eq!(matrices(&from_bf16), matrices(&model), "the same bf16 numbers from an f32 file and a bf16 one");

    let text = std::fs::read_to_string(fixture("text.txt")).unwrap();
    let set = EvalSet::tiled(&Bpe::gpt2().unwrap().encode(&text), exact.block_size(), &cpu_f32());
    let (want, got) = (evaluate(&exact, &set).unwrap(), evaluate(&model, &set).unwrap());
    assert!((got - want).abs() < 0.01 * want && got != want, "bf16 loss {got}, f32 {want}");

    let options = SampleOptions { top_k: Some(1), ..SampleOptions::reference() };
    let prompt = ids(&expected()["continue_ids"]);
    let n = exact.block_size() - prompt.len();
    let greedy = |m: &GPT2| {
        sample::continuation(m, &prompt, n, &options, None, &mut PyRandom::new(1), |_| Ok(())).unwrap().tokens
    };
    let (want, got) = (greedy(&exact), greedy(&model));
    let seq = [&prompt[..], &want[..n - 1]].concat();
    let (logits, moved) = (logits_of(&exact, &seq), max_diff(&logits_of(&model, &seq), &logits_of(&exact, &seq)));
    assert!(moved > 0.0, "bf16 weights change the logits");
    let vocab = Bpe::VOCAB_SIZE;
    let mut compared = 0;
    for (i, row) in logits.chunks_exact(vocab).skip(prompt.len() - 1).enumerate() {
        let mut sorted = row.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        if sorted[0] - sorted[1] <= 2.0 * moved {
            break; // near a tie: from here on bf16 may choose otherwise
        }
        assert_eq!(
            got[i],
            want[i],
            "token {i}: f32's best leads by {}, bf16 moves a logit {moved}",
            sorted[0] - sorted[1]
        );
        compared += 1;
    }
    assert!(compared >= 3, "only {compared} tokens before a near tie: {want:?}");
}

/// The products read a bf16 matrix as f32's product reads its numbers widened to f32: a few rows
/// (a sampled token's) against a [in, out] weight and a transposed one, and many rows (gemm).
#[test]
fn bf16_products_are_those_of_the_widened_numbers() {
    let device = cpu_f32();
    let mut rng = PyRandom::new(5);
    let mut draw = |shape: [usize; 2], dtype: DType| {
        let values: Vec<f32> = (0..shape[0] * shape[1]).map(|_| rng.gauss(0.0, 1.0) as f32).collect();
        Tensor::<2>::from_data(TensorData::new(values, shape), (&device, dtype))
    };
    for (m, k, n) in [(1, 300, 257), (3, 300, 257), (40, 64, 48)] {
        let (x, w, wt) = (draw([m, k], DType::F32), draw([k, n], DType::BF16), draw([n, k], DType::BF16));
        assert_eq!(w.dtype(), DType::BF16);
        let close = |a: Tensor<2>, b: Tensor<2>| {
            let (a, b) = (a.into_data().try_to_vec::<f32>().unwrap(), b.into_data().try_to_vec::<f32>().unwrap());
            let scale = b.iter().fold(1.0f32, |s, v| s.max(v.abs()));
            max_diff(&a, &b) < 1e-5 * scale
        };
        let widened = w.clone().cast(DType::F32);
        assert!(close(fast::matmul::matmul(x.clone(), w), x.clone().matmul(widened)), "{m}x{k} by {k}x{n}");
        let widened = wt.clone().cast(DType::F32);
        assert!(close(fast::matmul::linear(x.clone(), wt), x.matmul(widened.transpose())), "{m}x{k} by ({n}x{k})ᵀ");
    }
}

/// `--dtype bf16` from the command line: `eval` within 1% of f32's loss, `sample` runs; where it
/// has no meaning (training, a GPU, Burn's formulas, microGPT's model) it is refused in one line.
#[test]
fn bf16_runs_from_the_command_line_and_is_refused_where_it_has_no_meaning() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(fixture("text.txt"), d.join("text.txt")).unwrap();
    let folder = fixture("saved");
    let folder = folder.to_str().unwrap();
    let eval = |dtype: &str| {
        let out = ok(d, &["eval", "--checkpoint", folder, "--data", "text.txt", "--dtype", dtype, "--device", "cpu"]);
        number_after(&out, "loss: ")
    };
    let (f32_loss, bf16_loss) = (eval("f32"), eval("bf16"));
    assert!((bf16_loss - f32_loss).abs() < 0.01 * f32_loss, "bf16 {bf16_loss}, f32 {f32_loss}");
    // bf16 opens the CPU when no --device is given
    let out = ok(d, &["sample", "--checkpoint", folder, "--num-tokens", "5", "--top-k", "1", "--dtype", "bf16"]);
    assert!(out.lines().last().unwrap().starts_with("speed: "), "{out}");

    let chars = ["train", "--data", "text.txt", "--layout", "text", "--steps", "1", "--n-embd", "8", "--out", "chars"];
    ok(d, &[&chars[..], &["--num-chars", "1", "--device", "cpu"]].concat());
    let cases: [(&[&str], &str); 4] = [
        (&["train", "--init-from", folder, "--data", "text.txt"], "--dtype bf16 is for sample, eval and inspect"),
        (&["eval", "--checkpoint", folder, "--device", "gpu"], "--dtype bf16 holds a GPT-2's weights for the CPU"),
        (&["eval", "--checkpoint", folder, "--kernels", "burn"], "drop --kernels burn"),
        (&["eval", "--checkpoint", "chars"], "holds microGPT's model; use f32 or f64"),
    ];
    for (flags, want) in cases {
        let args = [flags, &["--dtype", "bf16"]].concat();
        let err = one_line_error(&microgpt(d, &args));
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// In f32 the CPU's own loss loops (the exps vectorized, the logits' rows changed in place) give
/// Burn's log-likelihoods, their masked mean and both gradients within f32's rounding, for rows
/// as long as a vocabulary of 1,000 tokens; without autodiff (evaluation) too.
#[test]
fn the_f32_loss_loops_are_burns_formula_within_rounding() {
    let ad = cpu_f32().autodiff();
    let values: Vec<f32> = (0..6000).map(|i| (i * 7919 % 1000) as f32 / 125.0 - 4.0).collect();
    let ids: Vec<i64> = (0..6).map(|i| i * 397 % 1000).collect();
    let logits = || Tensor::<3>::from_data(TensorData::new(values.clone(), [2, 3, 1000]), &ad).require_grad();
    let targets = Tensor::<3, Int>::from_data(TensorData::new(ids, [2, 3, 1]), &ad);
    let mask = Tensor::<3>::from_data(TensorData::new(vec![1f32, 1., 0., 1., 0., 1.], [2, 3, 1]), &ad);
    let weights = Tensor::<3>::from_data(TensorData::new(vec![0.5f32, -1., 2., 1., 0.25, -3.], [2, 3, 1]), &ad);
    let run = |kernels| {
        with_kernels(kernels, || {
            let (rows, mean) = (logits(), logits());
            let nll = ops::nll(rows.clone(), targets.clone());
            let loss = ops::mean_nll(mean.clone(), targets.clone(), Some((mask.clone(), 4)));
            let (row_grads, mean_grads) = ((nll.clone() * weights.clone()).sum().backward(), loss.backward());
            let untracked = ops::nll(rows.clone().inner(), targets.clone().inner());
            [
                nll.inner(),
                loss.inner().reshape([1, 1, 1]),
                rows.grad(&row_grads).unwrap(),
                mean.grad(&mean_grads).unwrap(),
                untracked,
            ]
            .map(|t| t.into_data().try_into_vec::<f32>().unwrap())
        })
    };
    let (ours, burns) = (run(Kernels::Fused), run(Kernels::Burn));
    for (what, (a, b)) in
        ["losses", "mean", "row gradients", "mean's gradients", "evaluation"].iter().zip(ours.iter().zip(&burns))
    {
        assert_eq!(a.len(), b.len());
        let diff = max_diff(a, b);
        assert!(diff < 1e-5, "{what} differ by {diff}");
        assert!(a.iter().any(|&x| x != 0.0), "{what} are all 0");
    }
}
