//! What a training run shows while it trains: a progress bar in a terminal, else a line per
//! logged step, and the rows of `metrics.csv`. A step's loss stays on the device until
//! `sync_every` of them are read back in one transfer (each read waits for the device: on a GPU
//! that is the cost, on a CPU nothing); every step's line is still shown, in order. The clock of
//! training time runs here too: it counts the reads (they wait for the steps) but not evaluation
//! or saving.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use burn::tensor::Tensor;
use indicatif::{ProgressBar, ProgressStyle};

use crate::device::read_values;
use crate::program::checkpoint;
use crate::program::metrics::{MetricsLog, Row};

/// How training reports progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A progress bar (when stdout is a terminal).
    Bar,
    /// One `step ... | loss ...` line per logged step (logs, pipes).
    Lines,
    /// Nothing until the results.
    Quiet,
}

impl Progress {
    /// A bar in a terminal, plain lines otherwise, nothing when quiet.
    pub fn detect(quiet: bool) -> Self {
        if quiet {
            Progress::Quiet
        } else if std::io::stdout().is_terminal() {
            Progress::Bar
        } else {
            Progress::Lines
        }
    }
}

/// A step's loss, still on the device.
struct PendingLoss {
    step: usize,
    lr: f64,
    loss: Tensor<1>,
    /// Target tokens trained on up to this step, and the training time then.
    tokens: usize,
    elapsed: Duration,
}

/// The step lines, the progress bar, `metrics.csv`, the losses waiting on the device and the
/// training clock.
pub struct StepLog {
    progress: Progress,
    /// The run's last step, and the step this session stops at.
    num_steps: usize,
    end: usize,
    log_every: usize,
    sync_every: usize,
    pending: Vec<PendingLoss>,
    bar: Option<ProgressBar>,
    /// `metrics.csv`, and the output directory it is in.
    metrics: Option<(MetricsLog, PathBuf)>,
    /// Training time up to `since`, and when the clock last started.
    train_time: Duration,
    since: Instant,
    reads: usize,
}

impl StepLog {
    /// The log of a run at `step` of `num_steps`, stopping at `end`, that shows every
    /// `log_every`-th step and reads losses `sync_every` at a time; its clock starts.
    pub fn new(
        progress: Progress,
        (step, end, num_steps): (usize, usize, usize),
        log_every: usize,
        sync_every: usize,
        metrics: Option<(MetricsLog, PathBuf)>,
    ) -> Self {
        let bar = (progress == Progress::Bar).then(|| {
            let bar = ProgressBar::new(num_steps as u64).with_position(step as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {pos:>5}/{len} steps | {msg} | {elapsed} < {eta}")
                    .expect("the progress template is valid"),
            );
            bar
        });
        Self {
            progress,
            num_steps,
            end,
            log_every,
            sync_every,
            pending: Vec::with_capacity(sync_every),
            bar,
            metrics,
            train_time: Duration::ZERO,
            since: Instant::now(),
            reads: 0,
        }
    }

    /// Keep step `step`'s loss, still on the device.
    pub fn push(&mut self, step: usize, lr: f64, loss: Tensor<1>, tokens: usize) {
        let elapsed = self.train_time + self.since.elapsed();
        self.pending.push(PendingLoss { step, lr, loss, tokens, elapsed });
    }

    /// Whether `sync_every` losses are waiting.
    pub fn full(&self) -> bool {
        self.pending.len() >= self.sync_every
    }

    /// The waiting losses as (step, loss), in one read from the device; the clock stops.
    pub fn read(&mut self) -> Result<Vec<(usize, f64)>> {
        let losses = if self.pending.is_empty() {
            Vec::new()
        } else {
            let losses: Vec<Tensor<1>> = self.pending.iter().map(|p| p.loss.clone()).collect();
            let values = read_values(Tensor::cat(losses, 0))?; // [n]
            self.reads += 1;
            self.pending.iter().map(|p| p.step).zip(values).collect()
        };
        self.train_time += self.since.elapsed();
        self.since = Instant::now();
        Ok(losses)
    }

    /// Start the clock again (after evaluating or saving).
    pub fn restart_clock(&mut self) {
        self.since = Instant::now();
    }

    /// Training time so far, up to the last read.
    pub fn train_time(&self) -> Duration {
        self.train_time
    }

    /// How many times losses were read from the device.
    pub fn reads(&self) -> usize {
        self.reads
    }

    /// Show the steps just read (the held-out loss goes with the last of them): their lines,
    /// the bar, the metrics rows.
    pub fn show(&mut self, losses: &[(usize, f64)], val_loss: Option<f64>) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let train_time = self.train_time;
        for (i, (p, &(_, loss))) in pending.iter().zip(losses).enumerate() {
            let val_loss = if i + 1 == losses.len() { val_loss } else { None };
            if p.step % self.log_every != 0 && p.step != self.end && val_loss.is_none() {
                continue;
            }
            let elapsed = if i + 1 == losses.len() { train_time } else { p.elapsed.min(train_time) };
            let tokens_per_s = p.tokens as f64 / elapsed.as_secs_f64().max(1e-9);
            let line = format!(
                "step {:4} / {:4} | loss {loss:.4}{}",
                p.step,
                self.num_steps,
                val_loss.map(|v| format!(" | val loss {v:.4}")).unwrap_or_default()
            );
            match (&self.bar, self.progress) {
                (Some(bar), _) => {
                    if val_loss.is_some() {
                        bar.println(&line);
                    }
                    bar.set_message(format!("loss {loss:.4} | lr {:.2e} | {tokens_per_s:.0} tok/s", p.lr));
                    bar.set_position(p.step as u64);
                }
                (None, Progress::Lines) => println!("{line}"),
                _ => {}
            }
            if let Some((metrics, dir)) = self.metrics.as_mut() {
                let row = Row {
                    step: p.step,
                    train_loss: loss,
                    val_loss,
                    lr: p.lr,
                    tokens_per_s,
                    elapsed_s: elapsed.as_secs_f64(),
                };
                metrics.append(&row).map_err(|err| checkpoint::explain_write_error(err, dir, "write metrics.csv"))?;
            }
        }
        Ok(())
    }

    /// Leave the bar where it stopped (the run failed).
    pub fn abandon(&self) {
        self.bar.as_ref().inspect(|b| b.abandon());
    }

    /// Clear the bar (the run ended).
    pub fn finish(&self) {
        self.bar.as_ref().inspect(|b| b.finish_and_clear());
    }
}
