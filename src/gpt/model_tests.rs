//! The model's tests: its initial weights against CPython's draws, the KV cache against the
//! full pass, autodiff against finite differences, and the padding's place in the loss.

use super::*;
use crate::device;

/// Each matrix starts and ends at the draws CPython's `random.gauss(0, 0.08)` gives after
/// `random.seed(42)`, in the reference's order, row by row. Printed by:
/// `python3 -c "import random; random.seed(42); V,C,T=3,4,2; ..."`: for each (name, rows,
/// cols) of wte [3,4], wpe [2,4], lm_head [3,4], attn_wq..attn_wo [4,4], mlp_fc1 [16,4],
/// mlp_fc2 [4,16], draw rows*cols values and print the first and the last.
#[test]
fn init_draws_in_reference_order() {
    let expected = [
        ("wte", -0.011527226366234268, 0.09308469492793144),
        ("wpe", 0.052530920543893515, -0.008505863501662742),
        ("lm_head", 0.042542097632069543, -0.12116163133801118),
        ("layer0.attn_wq", -0.20959563377750814, 0.038279363012009474),
        ("layer0.attn_wk", -0.05015883721756799, -0.04256612386549701),
        ("layer0.attn_wv", 0.07623166058532613, 0.05994420954317401),
        ("layer0.attn_wo", -0.05787703925211254, 0.030483770236460175),
        ("layer0.mlp_fc1", 0.09815532397713762, 0.05598596973727886),
        ("layer0.mlp_fc2", 0.10192585920755581, -0.03480238435800685),
    ];
    let config = GPTConfig { n_embd: 4, n_head: 2, block_size: 2, ..GPTConfig::new(3) };
    let model = GPT::init(&config, &mut PyRandom::new(42), &device::cpu_f64());
    let weights = model.named_weights();
    assert_eq!(weights.len(), expected.len());
    for ((name, w), (want, first, last)) in weights.into_iter().zip(expected) {
        let values: Vec<f64> = w.into_data().iter::<f64>().collect();
        assert_eq!((name.as_str(), values[0], values[values.len() - 1]), (want, first, last));
    }
}

/// Logits from a cached, one-position-at-a-time pass equal the full causal pass.
#[test]
fn kv_cache_matches_full_forward() {
    let device = device::cpu_f64();
    let config = GPTConfig { n_layer: 2, n_embd: 8, n_head: 2, ..GPTConfig::new(11) };
    let model = GPT::init(&config, &mut PyRandom::new(3), &device);
    let ids = [10i64, 3, 7, 1, 0, 5];
    let idx = Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), &device);
    let full: Vec<f64> = model.forward(idx).into_data().iter::<f64>().collect();
    let mut cache = KvCache::new(model.n_layer());
    let mut stepped = Vec::new();
    for (pos, &id) in ids.iter().enumerate() {
        let one = Tensor::<2, Int>::from_data(TensorData::new(vec![id], [1, 1]), &device);
        let logits = model.forward_at(one, pos, Some(&mut cache));
        stepped.extend(logits.into_data().iter::<f64>());
    }
    assert_eq!(cache.len(), ids.len());
    assert_eq!(full.len(), stepped.len());
    for (a, b) in full.iter().zip(&stepped) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
}

/// Autodiff gradients of every weight against central finite differences, in f64, on a
/// padded batch of two documents (so the mask is exercised too).
#[test]
fn autodiff_gradients_match_finite_differences() {
    let device = device::cpu_f64();
    let config = GPTConfig { n_layer: 2, n_embd: 8, n_head: 2, block_size: 5, ..GPTConfig::new(7) };
    let model = GPT::init(&config, &mut PyRandom::new(5), &device.clone().autodiff());
    let ints = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [2, 5]), &device);
    let idx = ints(vec![6, 0, 3, 2, 5, 6, 1, 4, 0, 0]);
    let targets = ints(vec![0, 3, 2, 5, 6, 1, 4, 6, 0, 0]);
    let mask: Tensor<2> =
        Tensor::from_data(TensorData::new(vec![1.0f64, 1., 1., 1., 1., 1., 1., 1., 0., 0.], [2, 5]), &device);
    let loss_of = |m: &GPT| {
        let ad = |t: Tensor<2, Int>| Tensor::<2, Int>::from_data(t.into_data(), &m.devices()[0]);
        let mask = Tensor::<2>::from_data(mask.to_data(), &m.devices()[0]);
        m.loss(Batch {
            inputs: ad(idx.clone()),
            targets: ad(targets.clone()),
            mask: Some(mask),
            n_targets: 8,
            packed: None,
        })
    };

    let grads = loss_of(&model).backward();
    let analytic: Vec<Vec<f64>> = model
        .named_weights()
        .iter()
        .map(|(_, w)| w.grad(&grads).expect("every weight gets a gradient").into_data().iter::<f64>().collect())
        .collect();

    let base = model.valid();
    let h = 1e-5;
    let mut worst: f64 = 0.0;
    for (k, grad) in analytic.iter().enumerate() {
        let (name, w) = base.named_weights().swap_remove(k);
        let shape = w.dims();
        let values: Vec<f64> = w.into_data().iter::<f64>().collect();
        for (i, g) in grad.iter().enumerate() {
            let loss_at = |delta: f64| {
                let mut v = values.clone();
                v[i] += delta;
                let mut m = base.clone();
                *m.weights_mut().swap_remove(k).1 =
                    Param::from_tensor(Tensor::from_data(TensorData::new(v, shape), &device));
                loss_of(&m).into_scalar::<f64>()
            };
            let numeric = (loss_at(h) - loss_at(-h)) / (2.0 * h);
            let err = (numeric - g).abs();
            worst = worst.max(err);
            assert!(err < 1e-7, "{name}[{i}]: autodiff {g} vs finite differences {numeric}");
        }
    }
    assert!(worst > 0.0, "the check compared something");
}

/// Packing the real positions of a padded batch changes nothing but the work: the same loss
/// and the same gradient for every weight as the padded grid under its mask.
#[test]
fn packed_batches_give_the_masked_loss_and_gradients() {
    use crate::gpt::batch::Batcher;
    use crate::gpt::data::Tokenizer;
    let device = device::cpu_f64().autodiff();
    let docs: Vec<String> = ["anna", "bo", "christopher", "eve", "x"].iter().map(|d| d.to_string()).collect();
    let tokenizer = Tokenizer::from_documents(&docs);
    let config =
        GPTConfig { n_layer: 2, n_embd: 8, n_head: 2, block_size: 8, ..GPTConfig::new(tokenizer.vocab_size()) };
    let model = GPT::init(&config, &mut PyRandom::new(4), &device);
    let batcher = Batcher::new(&tokenizer, &docs, config.block_size, &device);
    let batch = batcher.batch(1, 4);
    assert!(batch.packed.is_some() && batch.mask.is_some(), "a padded batch");
    let masked = model.loss(Batch { packed: None, ..batch.clone() });
    let packed = model.loss(batch);
    let grads = |loss: &Tensor<1>| {
        let g = loss.backward();
        model
            .named_weights()
            .iter()
            .map(|(_, w)| w.grad(&g).unwrap().into_data().iter::<f64>().collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let (gm, gp) = (grads(&masked), grads(&packed));
    let (lm, lp) = (masked.into_scalar::<f64>(), packed.into_scalar::<f64>());
    assert!((lm - lp).abs() < 1e-12, "loss {lm} vs {lp}");
    // the two paths add in other orders (other matrix shapes); measured: 1.2e-9 at most,
    // against gradients of 1e-2: a padding that leaked in would show at 1e-3 and above
    for (a, b) in gm.iter().flatten().zip(gp.iter().flatten()) {
        assert!((a - b).abs() < 1e-7, "gradient {a} vs {b}");
    }
}

/// A padded batch's loss is the token-weighted mean of its documents' own losses: the
/// padding changes nothing, whether the rows are sliced or gathered around the end.
#[test]
fn padding_is_masked_out_of_the_loss() {
    use crate::gpt::batch::Batcher;
    use crate::gpt::data::Tokenizer;
    let device = device::cpu_f64();
    let docs: Vec<String> = ["anna", "bo", "christopher", "eve"].iter().map(|d| d.to_string()).collect();
    let tokenizer = Tokenizer::from_documents(&docs);
    let config = GPTConfig { block_size: 8, ..GPTConfig::new(tokenizer.vocab_size()) };
    let model = GPT::init(&config, &mut PyRandom::new(11), &device);
    let batcher = Batcher::new(&tokenizer, &docs, config.block_size, &device);
    let loss = |start: usize, size: usize| {
        let b = batcher.batch(start, size);
        let n = b.n_targets;
        (model.loss(Batch { packed: None, ..b }).into_scalar::<f64>(), n) // on the padded grid
    };
    let singles: Vec<(f64, usize)> = (0..docs.len()).map(|i| loss(i, 1)).collect();
    assert_eq!(singles.iter().map(|s| s.1).collect::<Vec<_>>(), [5, 3, 8, 4], "christopher is cut to block_size");
    for (start, size) in [(0, 4), (1, 2), (3, 3)] {
        let (batched, n) = loss(start, size);
        let rows: Vec<usize> = (start..start + size).map(|i| i % docs.len()).collect();
        let expected = rows.iter().map(|&r| singles[r].0 * singles[r].1 as f64).sum::<f64>() / n as f64;
        assert!((batched - expected).abs() < 1e-12, "rows {rows:?}: {batched} vs {expected}");
    }
}
