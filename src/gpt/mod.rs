//! The learner's floor: what a GPT is, read top to bottom.
//!
//! - [`model`]: microGPT, as microgpt.py's `gpt()`, what both models offer (`LanguageModel`), and
//!   the causal self-attention and key/value cache they share;
//! - [`gpt2`]: GPT-2, as nanoGPT's `model.py`;
//! - [`ops`]: every operation's formula in Burn's tensor operations (linear, rmsnorm, softmax,
//!   GELU, the loss's negative log-likelihood);
//! - [`train`]: the training loop (learning rate, batch, forward, loss, backward, gradient
//!   accumulation, clipping, the optimizer's step), the learning rate's schedule, the held-out loss;
//! - [`adam`]: the optimizer;
//! - [`sample`]: generation, one token at a time;
//! - [`data`]: documents or one text, the character tokenizer, the split; [`bpe`]: GPT-2's
//!   tokenizer; [`batch`]: batches on the device;
//! - [`config`]: the architecture and a run's settings, and their presets; [`rng`]: the
//!   reference's random numbers, bit for bit.
//!
//! May import: Burn, the backends (`crate::device`), and the speed layer (`crate::fast`) at its
//! three seams (`ops`, the loop's split over the cores, Adam's update on the host); never the
//! program (`crate::program`).

pub mod adam;
pub mod batch;
pub mod bpe;
pub mod config;
pub mod data;
pub mod gpt2;
pub mod model;
pub mod ops;
pub mod rng;
pub mod sample;
pub mod train;
