//! microGPT on Burn: Karpathy's microGPT (a complete GPT trained from scratch on names, then
//! sampling new ones) with Burn's autodiff computing the gradients.
//!
//! One module per concept, each importing only those listed before it:
//! `rng` (Python-compatible random numbers), `device` (the one place that knows the backends),
//! `files` (atomic writes, digests), `data` (documents or one text, tokenizer, split), `bpe`
//! (GPT-2's tokenizer), `schedule`
//! (the learning rate), `config` (the architecture and the run's settings, their presets),
//! `batch` (batches on the device: documents or windows of a text; evaluation sets), `host`
//! (what the host loops share), `ops` (the model's operations, each one autodiff node with its
//! backward pass and its CPU loop), `model` (the GPT), `adam` (the optimizer), `gradients` (a
//! step's gradients: the batch in one part per core, added and clipped), `checkpoint` (saving
//! and loading), `metrics` (CSV and plot), `sample` (generation), `inspect` (predictions,
//! attention and embeddings of a trained model), `progress` (what a run shows while it trains),
//! `train` (the loop), and the program: `cli` (flags), `start` (where a run starts and saves)
//! and `commands` (what each subcommand does).
//!
//! `examples/tiny.rs` trains the GPT on a few dozen words through this API in about 30 lines.

#![warn(missing_docs)]

pub mod adam;
pub mod batch;
pub mod bpe;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod device;
pub mod files;
pub mod gpt2_run;
pub mod gradients;
pub mod hf;
pub mod host;
pub mod inspect;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod progress;
pub mod rng;
pub mod sample;
pub mod schedule;
pub mod start;
pub mod train;
