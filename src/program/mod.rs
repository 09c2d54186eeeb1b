//! The `microgpt` program, around the GPT: what a user types and what stays on disk.
//!
//! - [`cli`]: the flags; [`commands`]: what each subcommand does, phase by phase;
//! - [`start`]: where a run starts (fresh, resumed, from another checkpoint) and saves;
//! - [`session`]: a training session around the loop: progress, evaluation, saving, Ctrl-C;
//! - [`checkpoint`]: the checkpoints of both models, one save protocol;
//!   [`hf`]: Hugging Face's folders (GPT-2's weights); [`hub`]: OpenAI's models, downloaded;
//!   [`files`]: crash-safe writes and digests; [`datafile`]: the data files on disk and their
//!   download;
//! - [`progress`]: what a run shows while it trains; [`metrics`]: metrics.csv and loss.png;
//! - [`inspect`]: predictions, attention and embeddings of a trained model.
//!
//! May import every floor below it: `crate::gpt`, `crate::fast`, `crate::device`.

pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod datafile;
pub mod files;
pub mod hf;
pub mod hub;
pub mod inspect;
pub mod metrics;
pub mod progress;
pub mod session;
pub mod start;
