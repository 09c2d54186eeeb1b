//! The settings' tests: presets, defaults, the first difference a resume names, old checkpoints.

use super::*;

#[test]
fn reference_has_4192_params_on_names() {
    let config = GPTConfig::preset(Preset::Reference, 27);
    assert_eq!(config.num_params(), 4192);
    // the counts the presets' docs and docs/USAGE.md give
    assert_eq!(GPTConfig::preset(Preset::Large, 27).num_params(), 10_643_712);
    assert_eq!(config.head_dim(), 4);
    config.validate().unwrap();
}

#[test]
fn presets_are_valid_and_grow() {
    let sizes: Vec<usize> = Preset::ALL[..4]
        .iter()
        .copied()
        .map(|p| {
            let c = GPTConfig::preset(p, 27);
            c.validate().unwrap();
            c.num_params()
        })
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
    for p in Preset::ALL {
        GPTConfig::preset(p, 66).validate().unwrap();
        let nanogpts = p.row().run != TrainConfig::default();
        assert_eq!(nanogpts, p.name().contains("shakespeare"), "{}", p.name());
        assert_eq!(p.row().gpt2, p.name().starts_with("gpt2"), "{}", p.name());
    }
    // nanoGPT's shakespeare_char sizes on its 65 characters (+ our BOS): 0.80M and 10.8M
    assert_eq!(
        GPTConfig::preset(Preset::ShakespeareCharCpu, 66).num_params(),
        4 * 12 * 128 * 128 + (2 * 66 + 64) * 128
    );
    assert_eq!(GPTConfig::preset(Preset::ShakespeareChar, 66).block_size, 256);
    assert_eq!(Preset::ShakespeareChar.name(), "shakespeare-char");
}

/// A checkpoint written before `init_std` existed reads as the reference's 0.08.
#[test]
fn configs_without_init_std_read_as_the_reference() {
    let old: GPTConfig =
        serde_json::from_str(r#"{"vocab_size":27,"n_layer":1,"n_embd":16,"n_head":4,"block_size":16}"#).unwrap();
    assert_eq!(old, GPTConfig::new(27));
    assert_eq!(old.init_std(), 0.08);
}

/// A resume names the first setting a flag would change, as the flag takes it.
#[test]
fn differences_are_named_as_typed() {
    let saved = Preset::ShakespeareCharCpu.row().run;
    assert_eq!(first_difference(&saved, &saved.clone()), None);
    let named = |wanted: TrainConfig| first_difference(&saved, &wanted).unwrap();
    let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(named(TrainConfig { grad_clip: None, ..saved.clone() }), s("grad_clip", "none", "1"));
    assert_eq!(named(TrainConfig { precision: Precision::F64, ..saved.clone() }), s("precision", "f64", "f32"));
    assert_eq!(named(TrainConfig { min_lr: 1e-5, ..saved.clone() }), s("min_lr", "0.00001", "0.0001"));
    assert_eq!(named(TrainConfig { decay: Decay::Linear, ..saved.clone() }), s("decay", "linear", "cosine"));
    // the first in the struct's order
    assert_eq!(named(TrainConfig { num_steps: 7, seed: 1, ..saved.clone() }), s("seed", "1", "42"));
    assert_eq!(named(TrainConfig { eval_windows: 7, lr: 1.0, ..saved.clone() }), s("lr", "1", "0.001"));
    let sizes = GPTConfig::new(27);
    assert_eq!(first_difference(&sizes, &GPTConfig { n_embd: 32, ..sizes.clone() }).unwrap().0, "n_embd");
}

/// A checkpoint written before a setting existed reads it as the reference's.
#[test]
fn settings_missing_from_old_checkpoints_read_as_the_references() {
    let old: TrainConfig =
        serde_json::from_str(r#"{"seed":7,"num_steps":50,"lr":0.02,"batch_size":4,"precision":"F64"}"#).unwrap();
    let reference = TrainConfig::default();
    assert_eq!(old, TrainConfig { seed: 7, num_steps: 50, lr: 0.02, batch_size: 4, ..reference });
    assert_eq!((old.beta1, old.beta2, old.eval_windows), (0.85, 0.99, 500));
}

#[test]
fn impossible_sizes_are_refused_with_the_flag_named() {
    let err = GPTConfig { n_embd: 18, ..GPTConfig::new(27) }.validate().unwrap_err();
    assert!(err.to_string().contains("not divisible by --n-head 4"), "{err}");
    let err = GPTConfig { n_layer: 0, ..GPTConfig::new(27) }.validate().unwrap_err();
    assert!(err.to_string().contains("--n-layer"), "{err}");
    let err = GPTConfig::new(1).validate().unwrap_err();
    assert!(err.to_string().contains("vocabulary"), "{err}");
}
