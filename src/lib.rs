//! microGPT on Burn: Karpathy's microGPT (a complete GPT trained from scratch on names, then
//! sampling new ones) with Burn's autodiff computing the gradients.
//!
//! One module per concept, each importing only those listed before it:
//! `rng` (Python-compatible random numbers), `device` (the one place that knows the backends),
//! `files` (atomic writes, digests), `data` (documents or one text, tokenizer, split), `schedule`
//! (the learning rate), `config` (architecture and presets), `batch` (batches on the device:
//! documents or windows of a text), `kernels` (a step's heaviest operations as one autodiff node each,
//! with their backward passes; the CPU's own loops), `model` (the GPT), `adam` (the optimizer), `gradients` (a step's gradients: the batch in one
//! part per core, added and clipped), `checkpoint` (saving and loading), `metrics` (CSV and plot), `sample`
//! (generation), `inspect` (predictions, attention and embeddings of a trained model), `train`
//! (the loop), and the program: `cli` (flags) and `commands` (what each subcommand does).
//!
//! `examples/tiny.rs` trains the GPT on a few dozen words through this API in about 30 lines.

#![warn(missing_docs)]

pub mod adam;
pub mod batch;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod device;
pub mod files;
pub mod gradients;
pub mod inspect;
pub mod kernels;
pub mod metrics;
pub mod model;
pub mod rng;
pub mod sample;
pub mod schedule;
pub mod train;
