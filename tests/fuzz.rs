//! Property tests: random and mutated bytes fed to the data loader and the checkpoint reader
//! must give documents or an error, never a panic, and a changed weight file is always refused
//! by name. The case count is bounded for CI (PROPTEST_CASES overrides it).
// checkpoints here are f64, which needs a CPU backend (a GPU-only build has none)
#![cfg(feature = "cpu")]

use std::path::Path;
use std::sync::OnceLock;

use microgpt_burn::device::{self, Precision};
use microgpt_burn::gpt::adam::Adam;
use microgpt_burn::gpt::config::{GPTConfig, TrainConfig};
use microgpt_burn::gpt::data::{self, Tokenizer};
use microgpt_burn::gpt::model::GPT;
use microgpt_burn::gpt::rng::PyRandom;
use microgpt_burn::program::checkpoint::{self, Architecture, Meta};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_data_loader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(docs) = data::parse_documents(&bytes) {
            prop_assert!(!docs.is_empty());
            prop_assert!(docs.iter().all(|d| !d.is_empty() && d.trim() == d));
            let tokenizer = Tokenizer::from_documents(&docs);
            for doc in &docs {
                let tokens = data::doc_tokens(&tokenizer, doc, 16);
                prop_assert!(tokens.len() <= 17 && tokens[0] == tokenizer.bos());
            }
        }
    }

    #[test]
    fn mostly_valid_text_loads(lines in proptest::collection::vec("[a-zé日 ,.!-]{0,20}", 0..20)) {
        let text = lines.join("\n");
        match data::parse_documents(text.as_bytes()) {
            Ok(docs) => prop_assert_eq!(docs.len(), lines.iter().filter(|l| !l.trim().is_empty()).count()),
            Err(err) => prop_assert!(err.to_string().contains("no documents")),
        }
    }
}

/// The bytes of a small valid checkpoint: (checkpoint.json, model.bpk, optimizer.bpk).
fn valid_checkpoint() -> &'static (Vec<u8>, Vec<u8>, Vec<u8>) {
    static FILES: OnceLock<(Vec<u8>, Vec<u8>, Vec<u8>)> = OnceLock::new();
    FILES.get_or_init(|| {
        let device = device::cpu_f64();
        let vocab = Tokenizer::from_documents(&["abc".to_string()]);
        let config = GPTConfig { n_embd: 8, n_head: 2, block_size: 4, ..GPTConfig::new(vocab.vocab_size()) };
        let model = GPT::init(&config, &mut PyRandom::new(1), &device.autodiff());
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta {
            format_version: checkpoint::FORMAT_VERSION,
            step: 1,
            config: Architecture::GPT(config),
            vocab: Some(vocab),
            block_size: None,
            run: TrainConfig { seed: 1, num_steps: 2, ..TrainConfig::default() },
            weights: String::new(),
            val_loss: None,
            data: None,
            data_size: None,
            data_sha256: None,
            files: Default::default(),
            init_from: None,
            eval_every: None,
        };
        checkpoint::save(dir.path(), &model, &Adam::reference().init(), meta).unwrap();
        let read = |p: &str| std::fs::read(dir.path().join(p)).unwrap();
        (read("checkpoint.json"), read("step-000001/model.bpk"), read("step-000001/optimizer.bpk"))
    })
}

/// Write a checkpoint from (possibly mutated) files and load it fully. A panic inside fails
/// the test (proptest reports it), so an `Err` is the only way to refuse.
fn load(dir: &Path, meta: &[u8], model: &[u8], optimizer: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("step-000001"))?;
    std::fs::write(dir.join("checkpoint.json"), meta)?;
    std::fs::write(dir.join("step-000001/model.bpk"), model)?;
    std::fs::write(dir.join("step-000001/optimizer.bpk"), optimizer)?;
    let loaded = checkpoint::load::<GPT>(dir, &device::cpu_f64(), Precision::F64)?;
    loaded.optimizer(Adam::reference())?;
    Ok(())
}

/// Flip, cut or splice bytes at proptest-chosen places.
fn mutate(bytes: &[u8], edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for &(at, value) in edits {
        if !out.is_empty() {
            let i = at % out.len();
            out[i] ^= value | 1;
        }
    }
    if let Some(cut) = cut {
        out.truncate(cut % (bytes.len() + 1));
    }
    out
}

#[test]
fn the_valid_checkpoint_loads() {
    let (meta, model, optim) = valid_checkpoint();
    let dir = tempfile::tempdir().unwrap();
    load(dir.path(), meta, model, optim).unwrap();
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn changed_weights_are_refused_by_name(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8), cut in proptest::option::of(any::<usize>())) {
        let (meta, model, optim) = valid_checkpoint();
        let dir = tempfile::tempdir().unwrap();
        let changed = mutate(model, &edits, cut);
        let loaded = load(dir.path(), meta, &changed, optim);
        if changed == *model {
            prop_assert!(loaded.is_ok(), "{loaded:?}");
        } else {
            let err = format!("{:#}", loaded.unwrap_err());
            prop_assert!(err.contains("model.bpk is damaged"), "{err}");
        }
    }

    #[test]
    fn changed_optimizer_state_is_refused_by_name(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8), cut in proptest::option::of(any::<usize>())) {
        let (meta, model, optim) = valid_checkpoint();
        let dir = tempfile::tempdir().unwrap();
        let changed = mutate(optim, &edits, cut);
        let loaded = load(dir.path(), meta, model, &changed);
        if changed == *optim {
            prop_assert!(loaded.is_ok(), "{loaded:?}");
        } else {
            let err = format!("{:#}", loaded.unwrap_err());
            prop_assert!(err.contains("optimizer.bpk is damaged"), "{err}");
        }
    }

    /// Metadata that still parses may load (a changed digit of the loss, say), but never with
    /// digests other than the saved ones; random bytes never load; nothing panics.
    #[test]
    fn mutated_or_random_metadata_is_refused_or_harmless(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4), cut in proptest::option::of(any::<usize>()), random in proptest::collection::vec(any::<u8>(), 0..64)) {
        let (meta, model, optim) = valid_checkpoint();
        let dir = tempfile::tempdir().unwrap();
        let changed = mutate(meta, &edits, cut);
        if load(dir.path(), &changed, model, optim).is_ok() {
            let files = |json: &[u8]| serde_json::from_slice::<serde_json::Value>(json).unwrap().get("files").cloned();
            let read = |files: &serde_json::Value| (files["model.bpk"].clone(), files["optimizer.bpk"].clone());
            // an edit may rename the key only together with the version: a version-1
            // checkpoint has none, and loads unchecked
            if let Some(now) = files(&changed) {
                prop_assert_eq!(read(&now), read(&files(meta).unwrap()));
            }
        }
        prop_assert!(load(dir.path(), &random, model, optim).is_err());
    }
}
