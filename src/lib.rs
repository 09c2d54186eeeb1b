//! microGPT on Burn: Karpathy's microGPT (a complete GPT trained from scratch on names, then
//! sampling new ones) with Burn's autodiff computing the gradients.
//!
//! One module per concept: `config` (architecture), `rng` (Python-compatible random numbers),
//! `data` (documents, tokenizer, batches), `model` (the GPT), `adam` (the optimizer), `train`
//! (the loop), `sample` (generation), `checkpoint` (saving and loading), `metrics` (CSV and
//! plot), `inspect` (predictions, attention and embeddings of a trained model), `device` (the
//! one place that knows the backends), `cli` and `commands` (the program).
//!
//! `examples/tiny.rs` trains the GPT on a few dozen words through this API in about 30 lines.

#![warn(missing_docs)]

pub mod adam;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod device;
pub mod inspect;
pub mod metrics;
pub mod model;
pub mod rng;
pub mod sample;
pub mod train;
