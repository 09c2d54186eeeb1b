//! Sampling new documents from a trained model, the reference's way: start from BOS, divide the
//! logits by the temperature, softmax, draw with Python's `choices`, stop at BOS or after
//! `block_size` positions. Each new token runs the model on one position against a key/value
//! cache. A model trained on a text writes a passage instead ([`passage`]): it continues a
//! prompt for a given number of characters, its context the last `block_size` of them, as
//! nanoGPT's `generate` crops it. Also: makemore's cheap quality check (how many samples are
//! training documents, held-out documents, or new). Deliberately left out: beam search,
//! nucleus sampling.

use std::collections::HashSet;

use anyhow::{Result, bail};
use burn::tensor::{Int, Tensor, TensorData};

use crate::device;
use crate::gpt::data::{Tokenize, Tokenizer};
use crate::gpt::model::{KvCache, LanguageModel};
use crate::gpt::rng::PyRandom;

/// How to sample.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    /// How many documents to draw.
    pub num_samples: usize,
    /// How many characters a passage has (a model trained on a text).
    pub num_chars: usize,
    /// Logits are divided by it before the softmax: below 1 sharpens, above 1 flattens.
    pub temperature: f64,
    /// Keep only the `k` most likely tokens at each draw (`None`: all, as the reference).
    pub top_k: Option<usize>,
    /// Text every sample starts with (after BOS).
    pub prefix: String,
}

impl SampleOptions {
    /// The reference's: 20 samples at temperature 0.5, no top-k, no prefix.
    pub fn reference() -> Self {
        Self { num_samples: 20, num_chars: 500, temperature: 0.5, top_k: None, prefix: String::new() }
    }

    /// Refuse a temperature or top-k that cannot sample.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            bail!("--temperature must be a finite number above 0 (got {})", self.temperature);
        }
        if self.top_k == Some(0) {
            bail!("--top-k must be at least 1");
        }
        Ok(())
    }

    /// The prefix as token ids, checked against the vocabulary: the one check of `--prefix` a
    /// passage needs, made before training as well as before sampling.
    pub fn prefix_ids(&self, tokenizer: &impl Tokenize) -> Result<Vec<usize>> {
        tokenizer.encode(&self.prefix).map_err(|err| anyhow::anyhow!("--prefix {:?}: {err}", self.prefix))
    }

    /// [`SampleOptions::prefix_ids`], also checked against the model's context: what a
    /// document needs, as it may not run past block_size.
    pub fn prefix_tokens(&self, tokenizer: &Tokenizer, block_size: usize) -> Result<Vec<usize>> {
        let prefix = self.prefix_ids(tokenizer)?;
        if prefix.len() >= block_size {
            bail!(
                "--prefix is {} characters long; the model's block_size {block_size} leaves no room to continue it",
                prefix.len()
            );
        }
        Ok(prefix)
    }
}

/// `softmax(logits / temperature)` in f64 on the host, as the reference computes it.
pub fn probabilities(logits: &[f64], temperature: f64, top_k: Option<usize>) -> Vec<f64> {
    let mut scaled: Vec<f64> = logits.iter().map(|l| l / temperature).collect();
    if let Some(k) = top_k.filter(|&k| k < scaled.len()) {
        let mut order = scaled.clone(); // the k-th largest, found without sorting them all
        let kth = *order.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a)).1;
        for v in scaled.iter_mut().filter(|v| **v < kth) {
            *v = f64::NEG_INFINITY;
        }
    }
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scaled.iter().map(|v| (v - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.iter().map(|e| e / total).collect()
}

/// Draw one document: token ids after BOS (and after the prefix), without the final BOS.
pub fn sample_one(
    model: &impl LanguageModel,
    tokenizer: &Tokenizer,
    prefix: &[usize],
    options: &SampleOptions,
    rng: &mut PyRandom,
) -> Result<Vec<usize>> {
    let device = model.devices()[0].clone();
    let block_size = model.block_size();
    let bos = tokenizer.bos();
    let mut cache = KvCache::new(model.n_layer());
    let mut seq: Vec<usize> = std::iter::once(bos).chain(prefix.iter().copied()).collect();
    seq.truncate(block_size);
    // feed the prompt (BOS and the prefix) at once, then one token at a time
    let mut fed = 0;
    let mut out = seq[1..].to_vec();
    while seq.len() <= block_size {
        let new: Vec<i64> = seq[fed..].iter().map(|&t| t as i64).collect();
        let t = new.len();
        let idx = Tensor::<2, Int>::from_data(TensorData::new(new, [1, t]), &device);
        let logits = model.forward_at(idx, fed, Some(&mut cache)); // [1, t, V]
        fed = seq.len();
        let last = device::read_values(logits.slice([0..1, t - 1..t]))?; // [V]
        let probs = probabilities(&last, options.temperature, options.top_k);
        let token = rng.choices(&probs).map_err(|err| {
            anyhow::anyhow!("cannot sample: {err} (the model's outputs overflow: its training diverged)")
        })?;
        if token == bos || seq.len() == block_size {
            if token != bos {
                out.push(token);
            }
            break;
        }
        seq.push(token);
        out.push(token);
    }
    Ok(out)
}

/// Draw `options.num_samples` documents.
pub fn sample(
    model: &impl LanguageModel,
    tokenizer: &Tokenizer,
    options: &SampleOptions,
    rng: &mut PyRandom,
) -> Result<Vec<String>> {
    options.validate()?;
    let prefix = options.prefix_tokens(tokenizer, model.block_size())?;
    (0..options.num_samples)
        .map(|_| Ok(tokenizer.decode(&sample_one(model, tokenizer, &prefix, options, rng)?)))
        .collect()
}

/// A passage: its text (the prefix and what followed) and how it was drawn.
#[derive(Debug)]
pub struct Passage {
    /// The prefix and the tokens drawn after it, decoded.
    pub text: String,
    /// The tokens drawn and their times.
    pub drawn: Continuation,
    /// The prompt's length in tokens: the prefix's, or the one token a passage starts from.
    pub prompt: usize,
}

/// A passage from a model of a text or a GPT-2: the prefix (or the tokenizer's start, not
/// printed) continued by `options.num_chars` tokens ([`continuation`]), never one the tokenizer
/// cannot write. `show` is given the text as it is made: the prefix, then each token's text once
/// its bytes are whole characters (a character cut between tokens waits for its rest); the pieces
/// make up `text`.
pub fn passage(
    model: &impl LanguageModel,
    tokenizer: &impl Tokenize,
    options: &SampleOptions,
    rng: &mut PyRandom,
    mut show: impl FnMut(&str),
) -> Result<Passage> {
    options.validate()?;
    let prefix = options.prefix_ids(tokenizer)?;
    if let Some(&id) = prefix.iter().find(|&&id| id >= model.vocab_size()) {
        bail!("--prefix holds token {id}, beyond this model's vocab_size {}", model.vocab_size());
    }
    let start = if prefix.is_empty() { vec![tokenizer.passage_start()] } else { prefix };
    let drawable = tokenizer.drawable().min(model.vocab_size());
    show(&options.prefix);
    let (mut text, mut stream) = (options.prefix.clone(), TextStream::default());
    let drawn = continuation(model, &start, options.num_chars, options, Some(drawable), rng, |token| {
        let piece = stream.push(&tokenizer.decode_bytes(&[token])?);
        show(&piece);
        text.push_str(&piece);
        Ok(())
    })?;
    let rest = stream.finish();
    show(&rest);
    text.push_str(&rest);
    Ok(Passage { text, drawn, prompt: start.len() })
}

/// Bytes to text as they come, each character once it is whole: the same text as
/// `String::from_utf8_lossy` of all the bytes at once (U+FFFD for each byte run that is no
/// character).
#[derive(Default)]
pub struct TextStream {
    /// The first bytes of a character whose rest has not come yet.
    pending: Vec<u8>,
}

impl TextStream {
    /// The text `bytes` complete, after what came before.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut text = String::new();
        loop {
            let err = match std::str::from_utf8(&self.pending) {
                Ok(whole) => {
                    text.push_str(whole);
                    self.pending.clear();
                    return text;
                }
                Err(err) => err,
            };
            let valid = err.valid_up_to();
            text.push_str(std::str::from_utf8(&self.pending[..valid]).expect("valid up to here"));
            match err.error_len() {
                None => {
                    self.pending.drain(..valid); // a character begun: wait for its rest
                    return text;
                }
                Some(bad) => {
                    text.push(char::REPLACEMENT_CHARACTER);
                    self.pending.drain(..valid + bad);
                }
            }
        }
    }

    /// A character begun and never ended, as U+FFFD; nothing when the text ended whole.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

/// The tokens drawn after a prompt, and how long the prompt and the draws took.
#[derive(Debug)]
pub struct Continuation {
    /// The new tokens, without the prompt.
    pub tokens: Vec<usize>,
    /// Running the model on the prompt (its first position's logits included).
    pub prompt_time: std::time::Duration,
    /// Everything after: one position a token.
    pub sample_time: std::time::Duration,
}

/// `n` tokens drawn after `prompt` (at least one token), only among the ids below `drawable`
/// (none: any), each handed to `each` as soon as it is drawn. While the sequence
/// fits the context, each token runs the model on one position against the key/value cache;
/// beyond `block_size` the context is the last `block_size` tokens, run anew for each one (their
/// positions shift, so their cached keys no longer hold), as nanoGPT's `generate` crops it.
pub fn continuation(
    model: &impl LanguageModel,
    prompt: &[usize],
    n: usize,
    options: &SampleOptions,
    drawable: Option<usize>,
    rng: &mut PyRandom,
    mut each: impl FnMut(usize) -> Result<()>,
) -> Result<Continuation> {
    assert!(!prompt.is_empty(), "a continuation starts from at least one token");
    let device = model.devices()[0].clone();
    let block_size = model.block_size();
    let mut cache = KvCache::new(model.n_layer());
    let (mut seq, mut fed) = (prompt.to_vec(), 0);
    let clock = std::time::Instant::now();
    let mut prompt_time = None;
    for _ in 0..n {
        let fits = seq.len() <= block_size;
        let (ids, pos0) = if fits {
            (&seq[fed..], fed) // the new tokens, against the cache
        } else {
            (&seq[seq.len() - block_size..], 0) // the last block_size, anew
        };
        let t = ids.len();
        let idx =
            Tensor::<2, Int>::from_data(TensorData::new(ids.iter().map(|&i| i as i64).collect(), [1, t]), &device);
        let logits = model.forward_at(idx, pos0, fits.then_some(&mut cache)); // [1, t, V]
        fed = seq.len();
        let mut last = device::read_values(logits.slice([0..1, t - 1..t]))?; // [V]
        prompt_time.get_or_insert(clock.elapsed());
        if let Some(drawable) = drawable {
            let from = drawable.min(last.len());
            last[from..].fill(f64::NEG_INFINITY);
        }
        let probs = probabilities(&last, options.temperature, options.top_k);
        let token = rng.choices(&probs).map_err(|err| {
            anyhow::anyhow!("cannot sample: {err} (the model's outputs overflow: its training diverged)")
        })?;
        seq.push(token);
        each(token)?;
    }
    let prompt_time = prompt_time.unwrap_or_default();
    let tokens = seq.split_off(prompt.len());
    Ok(Continuation { tokens, prompt_time, sample_time: clock.elapsed() - prompt_time })
}

/// How many samples are training documents, held-out documents, or new (makemore's check).
#[derive(Debug, PartialEq, Eq)]
pub struct Novelty {
    /// Samples that are training documents.
    pub in_train: usize,
    /// Samples that are held-out documents.
    pub in_val: usize,
    /// Samples found in neither.
    pub new: usize,
}

impl Novelty {
    /// Count `samples` against the training and held-out documents.
    pub fn of(samples: &[String], train: &[String], val: &[String]) -> Self {
        let train: HashSet<&str> = train.iter().map(String::as_str).collect();
        let val: HashSet<&str> = val.iter().map(String::as_str).collect();
        let mut novelty = Novelty { in_train: 0, in_val: 0, new: 0 };
        for s in samples {
            if train.contains(s.as_str()) {
                novelty.in_train += 1;
            } else if val.contains(s.as_str()) {
                novelty.in_val += 1;
            } else {
                novelty.new += 1;
            }
        }
        novelty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_sum_to_one_and_top_k_cuts() {
        let p = probabilities(&[1.0, 2.0, 3.0], 0.5, None);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p[2] > p[1] && p[1] > p[0]);
        let p = probabilities(&[1.0, 2.0, 3.0], 1.0, Some(2));
        assert_eq!(p[0], 0.0);
        assert!((p[1] + p[2] - 1.0).abs() < 1e-12);
    }

    /// A passage has the characters asked for, starts with its prefix, repeats for a seed, and
    /// runs past block_size (where the cache gives way to the last block_size characters).
    #[cfg(feature = "cpu")]
    #[test]
    fn passages_have_their_length_and_run_past_the_context() {
        use crate::gpt::config::GPTConfig;
        use crate::gpt::model::GPT;
        let tokenizer = Tokenizer::from_text("ab c\nd");
        let config = GPTConfig { n_embd: 8, n_head: 2, block_size: 6, ..GPTConfig::new(tokenizer.vocab_size()) };
        let model = GPT::init(&config, &mut PyRandom::new(1), &device::cpu_f64());
        let options =
            SampleOptions { num_chars: 40, prefix: "ab".into(), temperature: 1.0, ..SampleOptions::reference() };
        let draw = |seed| passage(&model, &tokenizer, &options, &mut PyRandom::new(seed), |_| {}).unwrap().text;
        let text = draw(3);
        // shown as it is made: the prefix, then one piece a character, making up the text
        let mut pieces = Vec::new();
        let shown = passage(&model, &tokenizer, &options, &mut PyRandom::new(3), |s| pieces.push(s.to_string()));
        assert_eq!(shown.unwrap().text, text);
        assert_eq!(pieces.concat(), text);
        assert_eq!((pieces[0].as_str(), pieces.len()), ("ab", 1 + 40 + 1), "{pieces:?}");
        assert!(text.starts_with("ab"), "{text:?}");
        assert_eq!(text.chars().count(), 42, "{text:?}");
        assert_eq!(text, draw(3));
        assert_ne!(text, draw(4));
        assert_eq!(tokenizer.passage_start(), tokenizer.encode("\n").unwrap()[0]);
        let err = passage(
            &model,
            &tokenizer,
            &SampleOptions { prefix: "xyz".into(), ..options.clone() },
            &mut PyRandom::new(1),
            |_| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("'x'"), "{err}");
    }

    /// Bytes cut anywhere, invalid runs and a character left unfinished included, stream as the
    /// whole decodes.
    #[test]
    fn text_streams_whole_characters_as_the_whole_decodes() {
        let mut bytes = "héllo, 世界 🦀!".as_bytes().to_vec();
        bytes.splice(3..3, [0xff, 0xe4, 0xb8]); // an invalid byte, then a character begun and cut off
        bytes.extend_from_slice(&[0xf0, 0x9f]); // and one the text ends inside
        let whole = String::from_utf8_lossy(&bytes).into_owned();
        for size in 1..=4 {
            let mut stream = TextStream::default();
            let mut text: String = bytes.chunks(size).map(|piece| stream.push(piece)).collect();
            text.push_str(&stream.finish());
            assert_eq!(text, whole, "pieces of {size} bytes");
        }
        let mut stream = TextStream::default();
        assert_eq!((stream.push(&[0xe4, 0xb8]), stream.push(&[0x96])), (String::new(), "世".to_string()));
    }

    #[test]
    fn novelty_counts_train_val_and_new() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let n = Novelty::of(&s(&["ann", "bob", "zed", "ann"]), &s(&["ann"]), &s(&["bob"]));
        assert_eq!(n, Novelty { in_train: 2, in_val: 1, new: 1 });
    }
}
