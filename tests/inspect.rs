//! `microgpt inspect`: the values behind its table and pictures, checked against the model's
//! own sampling and evaluation paths, and the command seen from outside.

// the models here are f64, on the CPU backend
#![cfg(feature = "cpu")]

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use microgpt_burn::device;
use microgpt_burn::gpt::batch::{Batcher, EvalSet};
use microgpt_burn::gpt::config::GPTConfig;
use microgpt_burn::gpt::data::{Layout, Tokenizer};
use microgpt_burn::gpt::model::{GPT, KvCache, LanguageModel};
use microgpt_burn::gpt::rng::PyRandom;
use microgpt_burn::gpt::sample::probabilities;
use microgpt_burn::gpt::train::evaluate;
use microgpt_burn::program::inspect::{self, TOP};

use common::{microgpt, ok, stderr};

/// A two-layer model with random weights over the letters of a few names.
fn model() -> (GPT, Tokenizer) {
    let docs: Vec<String> = ["emma", "olivia", "ava", "isabella", "sophia"].iter().map(|s| s.to_string()).collect();
    let tokenizer = Tokenizer::from_documents(&docs);
    let config =
        GPTConfig { n_layer: 2, n_embd: 12, n_head: 3, block_size: 8, ..GPTConfig::new(tokenizer.vocab_size()) };
    (GPT::init(&config, &mut PyRandom::new(9), &device::cpu_f64()), tokenizer)
}

#[test]
fn attention_rows_are_causal_distributions() {
    let (model, tokenizer) = model();
    let seen = inspect::inspect(&model, &tokenizer, "olivia", Layout::Lines).unwrap();
    assert_eq!(seen.attention.len(), 2, "one entry per layer");
    for layer in &seen.attention {
        assert_eq!(layer.len(), 3, "one entry per head");
        for head in layer {
            assert_eq!(head.len(), 7, "BOS and six characters");
            for (q, row) in head.iter().enumerate() {
                assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12, "row {q} sums to {}", row.iter().sum::<f64>());
                assert!(row[q + 1..].iter().all(|&w| w == 0.0), "row {q} looks ahead: {row:?}");
                assert!(row[..=q].iter().all(|&w| w > 0.0));
            }
        }
    }
}

#[test]
fn predictions_are_the_distribution_sampling_draws_from() {
    let (model, tokenizer) = model();
    let text = "ava";
    let seen = inspect::inspect(&model, &tokenizer, text, Layout::Lines).unwrap();
    let bos = tokenizer.bos();
    let tokens: Vec<usize> = std::iter::once(bos).chain(tokenizer.encode(text).unwrap()).chain([bos]).collect();
    assert_eq!(seen.predictions.len(), tokens.len() - 1);

    // sampling feeds one token at a time against the KV cache, then softmax(logits / 1.0)
    let device = device::cpu_f64();
    let mut cache = KvCache::new(model.n_layer());
    for (pos, p) in seen.predictions.iter().enumerate() {
        assert_eq!(p.input, tokens[pos]);
        assert_eq!(p.target, tokens[pos + 1]);
        let one = Tensor::<2, Int>::from_data(TensorData::new(vec![tokens[pos] as i64], [1, 1]), &device);
        let logits = device::read_values(model.forward_at(one, pos, Some(&mut cache))).unwrap();
        let drawn_from = probabilities(&logits, 1.0, None);
        for (a, b) in p.probs.iter().zip(&drawn_from) {
            assert!((a - b).abs() < 1e-12, "position {pos}: {a} vs {b}");
        }
        assert!((p.probs.iter().sum::<f64>() - 1.0).abs() < 1e-12);

        // the five listed are the five largest, likeliest first
        assert_eq!(p.top.len(), TOP);
        let mut sorted = p.probs.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let listed: Vec<f64> = p.top.iter().map(|&(_, prob)| prob).collect();
        assert_eq!(listed, sorted[..TOP]);
        assert!(p.top.iter().all(|&(id, prob)| p.probs[id] == prob));
        assert_eq!(p.p_target, p.probs[p.target]);
        assert!((p.loss + p.p_target.ln()).abs() < 1e-15);
    }
}

#[test]
fn mean_loss_is_what_eval_computes_for_the_text() {
    let (model, tokenizer) = model();
    for text in ["emma", "isabella", "sophiaolivia"] {
        let seen = inspect::inspect(&model, &tokenizer, text, Layout::Lines).unwrap();
        let batcher = Batcher::new(&tokenizer, &[text.to_string()], model.block_size(), &device::cpu_f64());
        let eval = evaluate(&model, &EvalSet::Documents(Box::new(batcher))).unwrap();
        assert!((seen.mean_loss - eval).abs() < 1e-12, "{text}: inspect {} vs eval {eval}", seen.mean_loss);
    }
    // a text longer than block_size 8 is cut as training cuts it: 8 positions
    let seen = inspect::inspect(&model, &tokenizer, "sophiaolivia", Layout::Lines).unwrap();
    assert_eq!(seen.predictions.len(), 8);
    assert_eq!(seen.cut, 5, "four characters and the closing BOS");
}

#[test]
fn embeddings_are_projected_on_their_principal_components() {
    let (model, tokenizer) = model();
    let points = inspect::embedding_pca(&model).unwrap();
    assert_eq!(points.len(), tokenizer.vocab_size());
    let n = points.len() as f64;
    let mean = |i: usize| points.iter().map(|p| p[i]).sum::<f64>() / n;
    let var = |i: usize| points.iter().map(|p| p[i] * p[i]).sum::<f64>() / n;
    assert!(mean(0).abs() < 1e-10 && mean(1).abs() < 1e-10, "centred");
    assert!(var(0) >= var(1) && var(1) > 0.0, "the first component carries the most variance");
    let dot = points.iter().map(|p| p[0] * p[1]).sum::<f64>();
    assert!(dot.abs() < 1e-10, "the components are uncorrelated: {dot}");

    // no other direction carries more variance than the first component
    let wte = device::read_values(model.wte()).unwrap();
    let c = wte.len() / points.len();
    let centred: Vec<Vec<f64>> = (0..points.len())
        .map(|r| (0..c).map(|j| wte[r * c + j] - (0..points.len()).map(|q| wte[q * c + j]).sum::<f64>() / n).collect())
        .collect();
    let mut rng = PyRandom::new(1);
    for _ in 0..50 {
        let dir: Vec<f64> = (0..c).map(|_| rng.gauss(0.0, 1.0)).collect();
        let norm = dir.iter().map(|x| x * x).sum::<f64>().sqrt();
        let v = centred
            .iter()
            .map(|row| (row.iter().zip(&dir).map(|(a, b)| a * b).sum::<f64>() / norm).powi(2))
            .sum::<f64>()
            / n;
        assert!(v <= var(0) + 1e-12, "a random direction has variance {v} > {}", var(0));
    }
}

/// Width and height from a PNG's header.
fn png_size(path: &std::path::Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is a PNG", path.display());
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn inspect_prints_the_table_and_draws_the_pictures() {
    let dir = common::scratch_with_names();
    let d = dir.path();
    ok(d, &["train", "--steps", "30", "--out", "ck", "--quiet", "--num-samples", "0", "--n-layer", "2"]);
    let out = ok(d, &["inspect", "--checkpoint", "ck", "--text", "emma"]);
    let rows: Vec<&str> =
        out.lines().filter(|l| l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit())).collect();
    assert_eq!(rows.len(), 5, "BOS and four characters: {out}");
    assert!(rows[0].contains("BOS") && rows[4].split_whitespace().nth(1) == Some("a"), "{out}");
    let mean: f64 =
        out.lines().find_map(|l| l.strip_prefix("mean loss: ")).unwrap().split(' ').next().unwrap().parse().unwrap();

    // the same number as eval on a file holding the text
    std::fs::write(d.join("one.txt"), "emma\n").unwrap();
    let eval = ok(d, &["eval", "--checkpoint", "ck", "--data", "one.txt"]);
    assert_eq!(eval.strip_prefix("loss: ").unwrap().split(' ').next().unwrap(), format!("{mean:.4}"));

    // two layers of four heads: a 4 x 2 grid of panels
    let (w, h) = png_size(&d.join("ck/inspect/attention.png"));
    assert!(w > h, "four heads across, two layers down: {w} x {h}");
    png_size(&d.join("ck/inspect/embeddings.png"));
    ok(d, &["inspect", "--checkpoint", "ck", "--text", "ann", "--out", "pics"]);
    assert!(d.join("pics/attention.png").is_file() && d.join("pics/embeddings.png").is_file());

    // characters outside the vocabulary: one line; longer than block_size: cut with a warning
    let err = common::one_line_error(&microgpt(d, &["inspect", "--checkpoint", "ck", "--text", "Zoe"]));
    assert!(err.contains("'Z' is not in the vocabulary"), "{err}");
    let long = microgpt(d, &["inspect", "--checkpoint", "ck", "--text", "abcdefghijklmnopqrst"]);
    assert!(long.status.success(), "{}", stderr(&long));
    assert!(stderr(&long).contains("more than block_size 16"), "{}", stderr(&long));
}
