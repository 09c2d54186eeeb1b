//! The training loop, flat and in the reference's order: learning rate, batch, forward, loss,
//! backward, Adam update, log; plus held-out evaluation, checkpoints, metrics, and a clean stop
//! on Ctrl-C or SIGTERM. Deliberately left out: gradient accumulation, mixed precision,
//! learning-rate warmup (the reference decays linearly from the first step).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use indicatif::{ProgressBar, ProgressStyle};

use crate::checkpoint::{self, Meta, RunSettings};
use crate::config::GPTConfig;
use crate::data::{Batcher, Dataset};
use crate::device::read_scalar;
use crate::metrics::{self, MetricsLog, Row};
use crate::model::GPT;

/// The learning rate of step `step` (0-based): linear decay from `lr` to zero over `num_steps`.
pub fn lr_at(lr: f64, step: usize, num_steps: usize) -> f64 {
    lr * (1.0 - step as f64 / num_steps as f64)
}

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

/// Run settings of one training session.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub run: RunSettings,
    /// The data file, recorded in checkpoints.
    pub data: PathBuf,
    /// Stop (and save) after this many steps, keeping the schedule of `run.num_steps`.
    pub stop_at: Option<usize>,
    /// Evaluate on the held-out documents every N steps (and always at the end).
    pub eval_every: Option<usize>,
    /// Read the loss back from the device every N steps (1: every step, as the reference).
    pub log_every: usize,
    /// Checkpoint directory, saved at the end and every `save_every` steps.
    pub out: Option<PathBuf>,
    pub save_every: Option<usize>,
    pub progress: Progress,
}

/// What a training session did.
#[derive(Debug)]
pub struct TrainReport {
    /// Steps completed in total (including those before a resume).
    pub step: usize,
    /// (step, loss) of every logged step, 1-based.
    pub losses: Vec<(usize, f64)>,
    /// Wall time of the training steps alone (no evaluation, no saving).
    pub train_time: Duration,
    pub steps_run: usize,
    pub tokens: usize,
    /// Stopped by Ctrl-C or SIGTERM.
    pub interrupted: bool,
    /// Held-out loss after the last step (not evaluated when interrupted).
    pub val_loss: Option<f64>,
}

/// A Ctrl-C / SIGTERM flag, set by the handler and polled by the loop between steps.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    // a second installation (tests, library use) keeps the first handler; the loop still runs
    let _ = ctrlc::set_handler(move || handler_flag.store(true, Ordering::SeqCst));
    flag
}

/// Mean loss per target token over every document of `batcher` (no gradients).
pub fn evaluate(model: &GPT, batcher: &Batcher) -> Result<f64> {
    const CHUNK: usize = 512;
    let mut total = 0.0;
    let mut count = 0;
    let mut start = 0;
    while start < batcher.len() {
        let size = CHUNK.min(batcher.len() - start);
        let batch = batcher.batch(start, size);
        let logits = model.forward(batch.inputs);
        let mean = GPT::loss(logits, batch.targets, batch.mask.map(|m| (m, batch.n_targets)));
        total += read_scalar(mean)? * batch.n_targets as f64;
        count += batch.n_targets;
        start += size;
    }
    Ok(total / count as f64)
}

/// Everything a training session works on.
pub struct Session<'a> {
    pub model: GPT,
    pub optim: ModuleOptimizer,
    /// Steps already done (0, or the step of a resumed checkpoint).
    pub step: usize,
    pub config: &'a GPTConfig,
    pub data: &'a Dataset,
    pub options: &'a TrainOptions,
    pub stop: Arc<AtomicBool>,
}

impl Session<'_> {
    /// Train from `self.step` to the end (or `stop_at`, or an interrupt).
    pub fn run(mut self) -> Result<(GPT, ModuleOptimizer, TrainReport)> {
        let opts = self.options;
        let run = &opts.run;
        let device = self.model.devices()[0].clone();
        let block_size = self.config.block_size;
        let train = Batcher::new(&self.data.tokenizer, self.data.train_docs(), block_size, &device);
        let val = Batcher::new(&self.data.tokenizer, self.data.val_docs(), block_size, &device.clone().inner());
        let end = opts.stop_at.unwrap_or(run.num_steps).min(run.num_steps);
        let mut metrics_log = match &opts.out {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create the output directory {}", dir.display()))?;
                Some(MetricsLog::open(&dir.join("metrics.csv"), self.step)?)
            }
            None => None,
        };
        let bar = (opts.progress == Progress::Bar).then(|| {
            let bar = ProgressBar::new(run.num_steps as u64).with_position(self.step as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {pos:>5}/{len} steps | {msg} | {elapsed} < {eta}")
                    .expect("the progress template is valid"),
            );
            bar
        });

        let mut report = TrainReport {
            step: self.step,
            losses: Vec::new(),
            train_time: Duration::ZERO,
            steps_run: 0,
            tokens: 0,
            interrupted: false,
            val_loss: None,
        };
        let mut last_val = None;
        let mut clock = Instant::now();
        while self.step < end {
            if self.stop.load(Ordering::SeqCst) {
                report.interrupted = true;
                break;
            }
            let step = self.step;

            // learning rate: a pure function of the step
            let lr = lr_at(run.lr, step, run.num_steps);

            // forward, backward, update
            let batch = train.batch(step * run.batch_size, run.batch_size);
            let logits = self.model.forward(batch.inputs); // [B, T, V]
            let loss = GPT::loss(logits, batch.targets, batch.mask.map(|m| (m, batch.n_targets)));
            let grads = GradientsParams::from_grads(loss.backward(), &self.model);
            self.model = self.optim.step(lr, self.model, grads);
            self.step += 1;
            report.steps_run += 1;
            report.tokens += batch.n_targets;

            // log: reading the loss waits for the device, so only on steps that log, evaluate
            // or save (evaluating and saving wait for it anyway)
            let last = self.step == end;
            let eval_now = opts.eval_every.is_some_and(|n| self.step % n == 0);
            let save_now = opts.save_every.is_some_and(|n| self.step % n == 0) && !last;
            if self.step % opts.log_every != 0 && !last && !eval_now && !save_now {
                continue;
            }
            let loss = read_scalar(loss)?;
            report.train_time += clock.elapsed();
            if !loss.is_finite() {
                bar.inspect(|b| b.abandon());
                bail!(divergence_message(step + 1, loss, run.lr, opts, self.last_saved()));
            }
            report.losses.push((self.step, loss));
            let tokens_per_s = report.tokens as f64 / report.train_time.as_secs_f64();

            // evaluation and checkpoint
            let val_loss = if eval_now { Some(evaluate(&self.model.valid(), &val)?) } else { None };
            if val_loss.is_some() {
                last_val = val_loss;
            }
            let line = format!(
                "step {:4} / {:4} | loss {loss:.4}{}",
                self.step,
                run.num_steps,
                val_loss.map(|v| format!(" | val loss {v:.4}")).unwrap_or_default()
            );
            match (&bar, opts.progress) {
                (Some(bar), _) => {
                    if val_loss.is_some() {
                        bar.println(&line);
                    }
                    bar.set_message(format!("loss {loss:.4} | lr {lr:.2e} | {tokens_per_s:.0} tok/s"));
                    bar.set_position(self.step as u64);
                }
                (None, Progress::Lines) => println!("{line}"),
                _ => {}
            }
            if let Some(log) = metrics_log.as_mut() {
                log.append(&Row {
                    step: self.step,
                    train_loss: loss,
                    val_loss,
                    lr,
                    tokens_per_s,
                    elapsed_s: report.train_time.as_secs_f64(),
                })?;
            }
            if save_now {
                self.save(last_val)?;
            }
            clock = Instant::now();
        }
        bar.inspect(|b| b.finish_and_clear());
        report.step = self.step;
        if !report.interrupted {
            let evaluated_now = opts.eval_every.is_some_and(|n| self.step % n == 0) && report.steps_run > 0;
            if !evaluated_now {
                last_val = Some(evaluate(&self.model.valid(), &val)?);
            }
            report.val_loss = last_val;
        }
        if opts.out.is_some() && (report.steps_run > 0 || report.interrupted) {
            self.save(last_val)?;
        }
        Ok((self.model, self.optim, report))
    }

    /// Save a checkpoint of the current step, and redraw loss.png.
    fn save(&self, val_loss: Option<f64>) -> Result<()> {
        let Some(dir) = &self.options.out else { return Ok(()) };
        let meta = Meta {
            format_version: checkpoint::FORMAT_VERSION,
            step: self.step,
            config: self.config.clone(),
            vocab: self.data.tokenizer.clone(),
            run: self.options.run.clone(),
            weights: String::new(),
            val_loss,
            data: Some(self.options.data.display().to_string()),
        };
        checkpoint::save(dir, &self.model, &self.optim, meta)?;
        let rows = metrics::read(&dir.join("metrics.csv"))?;
        metrics::plot(&rows, &dir.join("loss.png"))
    }

    /// Step of the checkpoint on disk, if any.
    fn last_saved(&self) -> usize {
        self.options
            .out
            .as_ref()
            .and_then(|dir| checkpoint::read_meta(dir).ok())
            .map(|m| m.step)
            .unwrap_or(0)
    }
}

fn divergence_message(step: usize, loss: f64, lr: f64, opts: &TrainOptions, saved: usize) -> String {
    let kept = match (&opts.out, saved) {
        (Some(dir), s) if s > 0 => format!("; the last good checkpoint (step {s}) is in {}", dir.display()),
        _ => String::new(),
    };
    format!(
        "training diverged: loss is {loss} at step {step}; lower the learning rate (--lr {} now, try {}){kept}",
        short(lr),
        short(lr / 10.0)
    )
}

/// A number as a person would type it: `0.01`, `1e300`.
fn short(x: f64) -> String {
    if (1e-4..1e5).contains(&x.abs()) { format!("{x}") } else { format!("{x:e}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr_decays_linearly_to_zero() {
        assert_eq!(lr_at(0.01, 0, 1000), 0.01);
        assert!((lr_at(0.01, 500, 1000) - 0.005).abs() < 1e-15);
        assert!((lr_at(0.01, 999, 1000) - 0.00001).abs() < 1e-15);
    }
}
