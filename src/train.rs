//! The training loop, flat and in the reference's order: learning rate, batch, forward, loss,
//! backward, Adam update, log; plus held-out evaluation, checkpoints, metrics, and a clean stop
//! on Ctrl-C or SIGTERM. A step's gradients (on a CPU, one part of the batch per core, side by
//! side; clipped in longer runs) are `gradients`'.
//! Deliberately left out: gradient accumulation over steps, mixed precision.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Tensor;
use indicatif::{ProgressBar, ProgressStyle};

use crate::batch::{EvalSet, TrainSet};
use crate::checkpoint::{self, InitFrom, Meta, RunSettings};
use crate::config::GPTConfig;
use crate::data::{Data, DataFile};
use crate::device::{read_scalar, read_values};
use crate::gradients;
use crate::metrics::{self, MetricsLog, Row};
use crate::model::GPT;
use crate::schedule::Decay;

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
    /// The settings a resume must keep.
    pub run: RunSettings,
    /// The data file, recorded in checkpoints.
    pub data: DataFile,
    /// Stop (and save) after this many steps, keeping the schedule of `run.num_steps`.
    pub stop_at: Option<usize>,
    /// Evaluate on the held-out documents every N steps (and always at the end).
    pub eval_every: Option<usize>,
    /// Print (and record in metrics.csv) the loss of every N-th step.
    pub log_every: usize,
    /// Read the losses back from the device every N steps, all N in one transfer (1 on the CPU,
    /// where a read costs nothing; more on a GPU, where every read waits for the device).
    pub sync_every: usize,
    /// Pad every batch to block_size (the same loss; one shape for a GPU to compile for).
    pub fixed_length: bool,
    /// Cut each step's batch into this many parts, trained side by side (one per CPU core; 1 on
    /// a GPU, which wants the whole batch at once). The same gradients up to rounding.
    pub parts: usize,
    /// Add the parts' gradients and clip them on the host (a CPU), not as tensor operations.
    pub grads_on_host: bool,
    /// Checkpoint directory, saved at the end and every `save_every` steps.
    pub out: Option<PathBuf>,
    /// Also save every N steps.
    pub save_every: Option<usize>,
    /// Bar, lines or quiet.
    pub progress: Progress,
    /// The checkpoint the initial weights came from (`--init-from`), recorded in checkpoints.
    pub init_from: Option<InitFrom>,
}

impl TrainOptions {
    /// `run` on `data` with nothing else: no stop, evaluation only at the end, every step logged
    /// and read back, batches padded to their longest document, nothing saved, no output.
    pub fn new(run: RunSettings, data: DataFile) -> Self {
        Self {
            run,
            data,
            stop_at: None,
            eval_every: None,
            log_every: 1,
            sync_every: 1,
            fixed_length: false,
            parts: 1,
            grads_on_host: false,
            out: None,
            save_every: None,
            progress: Progress::Quiet,
            init_from: None,
        }
    }
}

/// What a training session did.
#[derive(Debug)]
pub struct TrainReport {
    /// Steps completed in total (including those before a resume).
    pub step: usize,
    /// (step, loss) of every step, 1-based.
    pub losses: Vec<(usize, f64)>,
    /// Wall time of the training steps alone (no evaluation, no saving).
    pub train_time: Duration,
    /// Steps run by this session.
    pub steps_run: usize,
    /// Target tokens trained on by this session.
    pub tokens: usize,
    /// Stopped by Ctrl-C or SIGTERM.
    pub interrupted: bool,
    /// Held-out loss after the last step (not evaluated when interrupted).
    pub val_loss: Option<f64>,
    /// Reads of training losses from the device (each waits for the device).
    pub loss_reads: usize,
}

/// A Ctrl-C / SIGTERM flag, set by the handler and polled by the loop between steps.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    // a second installation (tests, library use) keeps the first handler; the loop still runs
    let _ = ctrlc::set_handler(move || handler_flag.store(true, Ordering::SeqCst));
    flag
}

/// Mean loss per target token over every document or window of `set` (no gradients).
pub fn evaluate(model: &GPT, set: &EvalSet) -> Result<f64> {
    let mut total = 0.0;
    let mut count = 0;
    for batch in set.batches() {
        let n_targets = batch.n_targets;
        total += read_scalar(model.batch_loss(batch))? * n_targets as f64;
        count += n_targets;
    }
    Ok(total / count as f64)
}

/// Everything a training session works on.
pub struct Session<'a> {
    /// The model, on an autodiff device.
    pub model: GPT,
    /// Adam and its state.
    pub optim: ModuleOptimizer,
    /// Steps already done (0, or the step of a resumed checkpoint).
    pub step: usize,
    /// The model's architecture.
    pub config: &'a GPTConfig,
    /// The documents or the text, and their split.
    pub data: &'a Data,
    /// How to run.
    pub options: &'a TrainOptions,
    /// Set by Ctrl-C or SIGTERM; the loop stops between steps.
    pub stop: Arc<AtomicBool>,
    /// The step whose checkpoint `options.out` already holds (a resume saving back where it
    /// read): that step is not saved again.
    pub saved: Option<usize>,
}

/// What is due after a step, besides reading the losses when `sync_every` of them wait.
struct Due {
    last: bool,
    eval: bool,
    save: bool,
    stopping: bool,
}

impl Due {
    fn any(&self) -> bool {
        self.last || self.eval || self.save || self.stopping
    }
}

impl Session<'_> {
    /// Train from `self.step` to the end (or `stop_at`, or an interrupt).
    pub fn run(mut self) -> Result<(GPT, ModuleOptimizer, TrainReport)> {
        let opts = self.options;
        let run = &opts.run;
        let end = opts.stop_at.unwrap_or(run.num_steps).min(run.num_steps);
        let schedule = run.schedule();
        let device = self.model.devices()[0].clone();
        let weights = self.model.weight_ids();
        let (train, val) = self.batchers();
        let mut log = StepLog::new(opts, self.step, end, self.open_metrics()?);
        let mut report = TrainReport::from_step(self.step);
        let mut last_val = None;
        let mut clock = Instant::now();
        while self.step < end {
            if self.stop.load(Ordering::SeqCst) {
                report.interrupted = true;
                break;
            }
            // learning rate: a pure function of the step
            let lr = schedule.at(self.step);

            // forward, backward, update
            let parts = train.batch(self.step, run.batch_size, run.seed, opts.parts);
            report.tokens += parts.iter().map(|b| b.n_targets).sum::<usize>();
            let dropout = (run.dropout > 0.0).then(|| {
                // each step's masks from the seed and the step, so that a resume draws the same
                device.seed(run.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.step as u64);
                run.dropout
            });
            let (loss, parts) = gradients::loss_and_gradients(&self.model, parts, dropout);
            let grads = gradients::combine(parts, &weights, run.grad_clip, opts.grads_on_host);
            self.model = self.optim.step(lr, self.model, grads);
            self.step += 1;
            report.steps_run += 1;

            // log: the loss stays on the device until a read of many steps at once (a read
            // waits for the device); evaluating and saving read first, as they wait anyway
            log.push(self.step, lr, loss, report.tokens, report.train_time + clock.elapsed());
            let due = self.due(end);
            if !(log.full() || due.any()) {
                continue;
            }
            let losses = self.read_losses(&mut log, &mut report, &mut clock)?;

            // evaluation and checkpoint
            let val_loss = if due.eval { Some(evaluate(&self.model.valid(), &val)?) } else { None };
            last_val = val_loss.or(last_val);
            log.show(&losses, val_loss, report.train_time)?;
            report.losses.extend(losses);
            if due.save {
                self.save(last_val)?;
            }
            clock = Instant::now();
        }
        // an interrupt can land between the last read and the check at the top of the loop
        let losses = self.read_losses(&mut log, &mut report, &mut clock)?;
        log.show(&losses, None, report.train_time)?;
        report.losses.extend(losses);
        log.finish();
        self.finish(report, last_val, &val)
    }

    /// The training batches (on the autodiff device) and the held-out ones (without autodiff).
    fn batchers(&self) -> (TrainSet, EvalSet) {
        let device = self.model.devices()[0].clone();
        let (run, block_size, fixed) = (&self.options.run, self.config.block_size, self.options.fixed_length);
        let train = TrainSet::of(self.data, block_size, fixed, &device);
        let val = EvalSet::held_out(self.data, block_size, run.eval_windows, run.seed, fixed, &device.inner());
        (train, val)
    }

    /// `metrics.csv` in the output directory, kept up to the current step.
    fn open_metrics(&self) -> Result<Option<MetricsLog>> {
        let Some(dir) = &self.options.out else { return Ok(None) };
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the output directory {}", dir.display()))?;
        Ok(Some(MetricsLog::open(&dir.join("metrics.csv"), self.step)?))
    }

    fn due(&self, end: usize) -> Due {
        let opts = self.options;
        let last = self.step == end;
        Due {
            last,
            eval: opts.eval_every.is_some_and(|n| self.step.is_multiple_of(n)),
            save: opts.save_every.is_some_and(|n| self.step.is_multiple_of(n)) && !last,
            stopping: self.stop.load(Ordering::SeqCst),
        }
    }

    /// The losses waiting on the device, in one read, checked to be finite; the read counts as
    /// training time (it waits for the steps to finish).
    fn read_losses(
        &self,
        log: &mut StepLog,
        report: &mut TrainReport,
        clock: &mut Instant,
    ) -> Result<Vec<(usize, f64)>> {
        let losses = log.read()?;
        report.loss_reads += usize::from(!losses.is_empty());
        report.train_time += clock.elapsed();
        *clock = Instant::now();
        self.check_finite(&losses, log, report.train_time)?;
        Ok(losses)
    }

    /// The held-out loss after the last step, and the final save.
    fn finish(
        mut self,
        mut report: TrainReport,
        last_val: Option<f64>,
        val: &EvalSet,
    ) -> Result<(GPT, ModuleOptimizer, TrainReport)> {
        let opts = self.options;
        report.step = self.step;
        let mut last_val = last_val;
        if !report.interrupted {
            let evaluated_now = opts.eval_every.is_some_and(|n| self.step.is_multiple_of(n)) && report.steps_run > 0;
            if !evaluated_now {
                last_val = Some(evaluate(&self.model.valid(), val)?);
            }
            report.val_loss = last_val;
        }
        if opts.out.is_some() && (report.steps_run > 0 || report.interrupted) {
            self.save(last_val)?;
        }
        Ok((self.model, self.optim, report))
    }

    /// Stop at the first loss that is NaN or infinite, naming its step, after printing and
    /// recording every step before it.
    fn check_finite(&self, losses: &[(usize, f64)], log: &mut StepLog, train_time: Duration) -> Result<()> {
        let Some(bad) = losses.iter().position(|(_, loss)| !loss.is_finite()) else { return Ok(()) };
        log.show(&losses[..bad], None, train_time)?;
        log.abandon();
        let (step, loss) = losses[bad];
        bail!(divergence_message(&format!("loss is {loss} at step {step}"), self.options, self.last_saved()))
    }

    /// Save a checkpoint of the current step, unless it is saved already, and redraw loss.png.
    fn save(&mut self, val_loss: Option<f64>) -> Result<()> {
        let Some(dir) = &self.options.out else { return Ok(()) };
        if self.saved == Some(self.step) {
            return Ok(());
        }
        // an update can overflow the weights while the step's loss (computed before it) is
        // finite: such weights are no checkpoint to keep, and the run has diverged
        if let Some(name) = checkpoint::first_non_finite(&self.model.valid())? {
            let what = format!("its weights are not finite at step {} ({name} holds NaN or infinity)", self.step);
            bail!(divergence_message(&what, self.options, self.last_saved()));
        }
        let data = &self.options.data;
        let meta = Meta {
            format_version: checkpoint::FORMAT_VERSION,
            step: self.step,
            config: self.config.clone(),
            vocab: self.data.tokenizer().clone(),
            run: self.options.run.clone(),
            weights: String::new(),
            val_loss,
            data: Some(data.path.display().to_string()),
            data_size: Some(data.size),
            data_sha256: Some(data.sha256.clone()),
            files: Default::default(),
            init_from: self.options.init_from.clone(),
            eval_every: self.options.eval_every,
        };
        checkpoint::save(dir, &self.model, &self.optim, meta)?;
        self.saved = Some(self.step);
        metrics::read(&dir.join("metrics.csv"))
            .and_then(|rows| metrics::plot(&rows, &dir.join("loss.png")))
            .map_err(|err| checkpoint::explain_write_error(err, dir, "draw loss.png"))
    }

    /// Step of the checkpoint this run saved (or resumed from) in its output directory, if any;
    /// not one of an earlier run that `--overwrite` is replacing.
    fn last_saved(&self) -> Option<usize> {
        self.options.out.as_ref().and(self.saved)
    }
}

impl TrainReport {
    fn from_step(step: usize) -> Self {
        Self {
            step,
            losses: Vec::new(),
            train_time: Duration::ZERO,
            steps_run: 0,
            tokens: 0,
            interrupted: false,
            val_loss: None,
            loss_reads: 0,
        }
    }
}

/// A step's loss, still on the device.
struct PendingLoss {
    step: usize,
    lr: f64,
    loss: Tensor<1>,
    /// Target tokens trained on up to this step, and the wall time then.
    tokens: usize,
    elapsed: Duration,
}

/// The step lines, the progress bar and `metrics.csv`. Losses wait on the device and are read
/// `sync_every` at a time in one transfer; every step's line is still printed, in order.
struct StepLog<'a> {
    opts: &'a TrainOptions,
    end: usize,
    pending: Vec<PendingLoss>,
    bar: Option<ProgressBar>,
    metrics: Option<MetricsLog>,
}

impl<'a> StepLog<'a> {
    fn new(opts: &'a TrainOptions, step: usize, end: usize, metrics: Option<MetricsLog>) -> Self {
        let bar = (opts.progress == Progress::Bar).then(|| {
            let bar = ProgressBar::new(opts.run.num_steps as u64).with_position(step as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {pos:>5}/{len} steps | {msg} | {elapsed} < {eta}")
                    .expect("the progress template is valid"),
            );
            bar
        });
        Self { opts, end, pending: Vec::with_capacity(opts.sync_every), bar, metrics }
    }

    fn push(&mut self, step: usize, lr: f64, loss: Tensor<1>, tokens: usize, elapsed: Duration) {
        self.pending.push(PendingLoss { step, lr, loss, tokens, elapsed });
    }

    /// Whether `sync_every` losses are waiting.
    fn full(&self) -> bool {
        self.pending.len() >= self.opts.sync_every
    }

    /// The waiting losses as (step, loss), in one read from the device.
    fn read(&mut self) -> Result<Vec<(usize, f64)>> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let losses: Vec<Tensor<1>> = self.pending.iter().map(|p| p.loss.clone()).collect();
        let values = read_values(Tensor::cat(losses, 0))?; // [n]
        Ok(self.pending.iter().map(|p| p.step).zip(values).collect())
    }

    /// Print the lines of the steps just read (the held-out loss goes with the last of them),
    /// move the bar, append the metrics rows.
    fn show(&mut self, losses: &[(usize, f64)], val_loss: Option<f64>, train_time: Duration) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let opts = self.opts;
        for (i, (p, &(_, loss))) in pending.iter().zip(losses).enumerate() {
            let val_loss = if i + 1 == losses.len() { val_loss } else { None };
            if p.step % opts.log_every != 0 && p.step != self.end && val_loss.is_none() {
                continue;
            }
            let elapsed = if i + 1 == losses.len() { train_time } else { p.elapsed.min(train_time) };
            let tokens_per_s = p.tokens as f64 / elapsed.as_secs_f64().max(1e-9);
            let line = format!(
                "step {:4} / {:4} | loss {loss:.4}{}",
                p.step,
                opts.run.num_steps,
                val_loss.map(|v| format!(" | val loss {v:.4}")).unwrap_or_default()
            );
            match (&self.bar, opts.progress) {
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
            if let Some((metrics, dir)) = self.metrics.as_mut().zip(opts.out.as_ref()) {
                metrics
                    .append(&Row {
                        step: p.step,
                        train_loss: loss,
                        val_loss,
                        lr: p.lr,
                        tokens_per_s,
                        elapsed_s: elapsed.as_secs_f64(),
                    })
                    .map_err(|err| checkpoint::explain_write_error(err, dir, "write metrics.csv"))?;
            }
        }
        Ok(())
    }

    fn abandon(&self) {
        self.bar.as_ref().inspect(|b| b.abandon());
    }

    fn finish(&self) {
        self.bar.as_ref().inspect(|b| b.finish_and_clear());
    }
}

/// What to do after a divergence: with a checkpoint, start a new run from it at a tenth of the
/// learning rate over the steps that were left (a resume must keep its settings, so it cannot
/// lower the rate); without one, run again at a tenth of it.
fn divergence_message(what: &str, opts: &TrainOptions, saved: Option<usize>) -> String {
    let (lr, num_steps) = (opts.run.lr, opts.run.num_steps);
    let lower = short(lr / 10.0);
    let advice = match (&opts.out, saved) {
        (Some(dir), Some(saved)) => {
            let steps = num_steps.saturating_sub(saved).max(1);
            format!(
                "the last good checkpoint (step {saved}) is in {dir}: continue from it at a lower learning rate with `train --init-from {dir} --data {data} --lr {lower} --steps {steps}{rest} --out NEW_DIR` (--lr {} now)",
                short(lr),
                dir = dir.display(),
                data = opts.data.path.display(),
                rest = other_settings(&opts.run, steps),
            )
        }
        _ => format!("lower the learning rate (--lr {} now, try {lower})", short(lr)),
    };
    format!("training diverged: {what}; {advice}")
}

/// The flags that repeat a run's settings other than its steps and rates, for a new run of
/// `steps` steps from its checkpoint: those that differ from the defaults (the floor a tenth,
/// as the rate; the warmup shorter than the new run).
fn other_settings(run: &RunSettings, steps: usize) -> String {
    let mut flags = Vec::new();
    let reference = RunSettings::new(run.seed, steps, run.lr, 1, run.precision);
    if run.layout != reference.layout {
        flags.push(format!("--layout {}", run.layout));
    }
    if run.batch_size != 1 {
        flags.push(format!("--batch-size {}", run.batch_size));
    }
    if run.warmup_steps > 0 {
        flags.push(format!("--warmup-steps {}", run.warmup_steps.min(steps - 1)));
    }
    if run.decay != Decay::Linear {
        flags.push(format!("--decay {}", run.decay));
    }
    if run.min_lr > 0.0 {
        flags.push(format!("--min-lr {}", short(run.min_lr / 10.0)));
    }
    if run.weight_decay > 0.0 {
        flags.push(format!("--weight-decay {}", short(run.weight_decay)));
    }
    if let Some(clip) = run.grad_clip {
        flags.push(format!("--grad-clip {}", short(clip)));
    }
    if run.dropout > 0.0 {
        flags.push(format!("--dropout {}", short(run.dropout)));
    }
    if (run.beta1, run.beta2) != (reference.beta1, reference.beta2) {
        flags.push(format!("--beta1 {} --beta2 {}", short(run.beta1), short(run.beta2)));
    }
    if run.layout == crate::data::Layout::Text && run.eval_windows != reference.eval_windows {
        flags.push(format!("--eval-windows {}", run.eval_windows));
    }
    flags.iter().map(|f| format!(" {f}")).collect()
}

/// A number as a person would type it: `0.01`, `1e300`.
fn short(x: f64) -> String {
    // seven significant digits: a tenth of 1e150 is 1e149, not 9.99999999999999e148
    let x: f64 = format!("{x:.6e}").parse().expect("a formatted float parses");
    if (1e-4..1e5).contains(&x.abs()) { format!("{x}") } else { format!("{x:e}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Losses are read `sync_every` at a time, yet every step's loss is reported, in order, and
    /// equal to what reading every step gives.
    #[cfg(feature = "cpu")] // f64 on the flex CPU backend
    #[test]
    fn losses_are_read_in_batches_of_steps() {
        use crate::adam::Adam;
        use crate::data::DataFile;
        use crate::device;
        use crate::rng::PyRandom;
        let docs: Vec<String> = ["anna", "bob", "carla", "dave", "eve", "fran", "gus", "hal", "ida", "jo", "kim"]
            .iter()
            .map(|d| d.to_string())
            .collect();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), docs.join("\n")).unwrap();
        let run = |sync_every: usize| {
            let mut rng = PyRandom::new(1);
            let data = Data::Lines(crate::data::Dataset::new(docs.clone(), &mut rng).unwrap());
            let config = GPTConfig::new(data.tokenizer().vocab_size());
            let run = RunSettings::new(1, 100, 0.01, 2, device::Precision::F64);
            let options = TrainOptions { sync_every, ..TrainOptions::new(run, DataFile::of(file.path()).unwrap()) };
            let session = Session {
                model: GPT::init(&config, &mut rng, &device::cpu_f64().autodiff()),
                optim: Adam::reference().init(),
                step: 0,
                config: &config,
                data: &data,
                options: &options,
                stop: Default::default(),
                saved: None,
            };
            session.run().unwrap().2
        };
        let (every, batched) = (run(1), run(30));
        assert_eq!(every.loss_reads, 100);
        assert_eq!(batched.loss_reads, 4, "30, 60, 90 and the last step");
        assert_eq!(batched.losses.iter().map(|l| l.0).collect::<Vec<_>>(), (1..=100).collect::<Vec<_>>());
        assert_eq!(batched.losses, every.losses);
    }

    /// The divergence advice repeats what the run set beyond its steps and rate.
    #[test]
    fn the_advice_repeats_the_runs_other_settings() {
        let mut run = RunSettings::new(42, 2000, 1e-3, 1, crate::device::Precision::F32);
        assert_eq!(other_settings(&run, 500), "");
        (run.batch_size, run.warmup_steps, run.decay, run.min_lr) = (12, 100, Decay::Cosine, 1e-4);
        (run.weight_decay, run.grad_clip, run.dropout) = (0.1, Some(1.0), 0.2);
        assert_eq!(
            other_settings(&run, 50),
            " --batch-size 12 --warmup-steps 49 --decay cosine --min-lr 1e-5 --weight-decay 0.1 --grad-clip 1 --dropout 0.2"
        );
        (run.layout, run.beta1, run.eval_windows) = (crate::data::Layout::Text, 0.9, 100);
        assert_eq!(
            other_settings(&run, 50),
            " --layout text --batch-size 12 --warmup-steps 49 --decay cosine --min-lr 1e-5 --weight-decay 0.1 --grad-clip 1 --dropout 0.2 --beta1 0.9 --beta2 0.99 --eval-windows 100"
        );
    }

    #[test]
    fn numbers_are_short_as_typed() {
        assert_eq!(short(1e150 / 10.0), "1e149");
        assert_eq!(short(0.01 / 10.0), "0.001");
        assert_eq!(short(3e-3), "0.003");
        assert_eq!(short(0.1 + 0.2), "0.3");
    }
}
