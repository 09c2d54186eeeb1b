//! microGPT on Burn: Karpathy's microGPT (a complete GPT trained from scratch on names, then
//! sampling new ones) with Burn's autodiff computing the gradients, and GPT-2 on the same code.
//!
//! The tree is the architecture, four floors; none imports the program but the program itself,
//! and the backends import none of the others:
//!
//! - [`gpt`], the learner's floor: the two models, attention, every operation's formula, the loss,
//!   the optimizer, the training loop, sampling, the data and its tokenizers. What a GPT is.
//! - [`fast`], the speed layer: fused kernels with their backward passes, the CPU's loops, a
//!   step's batch split over the cores, Adam's update in one pass. The GPT reaches it at three
//!   seams, one call each: `gpt::ops` (each operation's kernel), the loop's split over the cores
//!   (`fast::cores`), Adam's update on the host (`fast::adam`); nothing there changes a number
//!   beyond rounding.
//! - [`program`], the `microgpt` program: flags, commands, where a run starts and saves,
//!   checkpoints, Hugging Face's files, progress, metrics, inspection.
//! - [`device`], the backends: the one place that knows Burn's CPU and GPU backends.
//!
//! `gpt` imports nothing of `program` (tested: `tests/floors.rs`). `examples/tiny.rs` trains the
//! GPT on a few dozen words through `gpt` alone in about 30 lines.

#![warn(missing_docs)]

pub mod device;
pub mod fast;
pub mod gpt;
pub mod program;
