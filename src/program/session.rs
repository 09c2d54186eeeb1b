//! A training session: the loop (`crate::gpt::train`) with what the program does around it: the
//! session's options, the steps shown and recorded in metrics.csv, the losses read back from the
//! device in batches (`progress`), held-out evaluation and checkpoints on schedule, a clean stop
//! on Ctrl-C or SIGTERM, and the report of what was done.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use burn::optim::ModuleOptimizer;
use burn::tensor::Tensor;

use crate::gpt::batch::{EvalSet, TrainSet};
use crate::gpt::config::TrainConfig;
use crate::gpt::data::Tokenizer;
use crate::gpt::model::{GPT, LanguageModel};
use crate::gpt::train::{Split, Training, Watch, evaluate};
use crate::program::checkpoint::{self, Architecture, InitFrom, Meta, Stored};
use crate::program::datafile::DataFile;
use crate::program::metrics::{self, MetricsLog};
use crate::program::progress::{Progress, StepLog};

/// How one training session runs: the run's settings (which a checkpoint keeps) and how this
/// session carries them out (where it saves, what it shows, how the device is used).
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The run's settings, which a resume keeps.
    pub run: TrainConfig,
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
    pub cores: usize,
    /// Compute the batch in this many micro-batches one after another, their gradients added
    /// (gradient accumulation: the same step in less memory).
    pub micro_batches: usize,
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
    pub fn new(run: TrainConfig, data: DataFile) -> Self {
        Self {
            run,
            data,
            stop_at: None,
            eval_every: None,
            log_every: 1,
            sync_every: 1,
            fixed_length: false,
            cores: 1,
            micro_batches: 1,
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

/// Training stopped because its numbers stopped being finite: the loss, or the weights after an
/// update. The program adds what to do next (`start::after_divergence`).
#[derive(Debug)]
pub struct Diverged {
    /// What was found, and at which step.
    pub what: String,
    /// The step of the checkpoint this run saved (or resumed from) in its output directory.
    pub last_saved: Option<usize>,
}

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "training diverged: {}", self.what)
    }
}

impl std::error::Error for Diverged {}

/// A Ctrl-C / SIGTERM flag, set by the handler and polled by the loop between steps.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    // a second installation (tests, library use) keeps the first handler; the loop still runs
    let _ = ctrlc::set_handler(move || handler_flag.store(true, Ordering::SeqCst));
    flag
}

/// Where a session saves: a closure writing a checkpoint of the model, its optimizer, the step
/// and the last held-out loss into the output directory ([`checkpoint_of`]).
pub type Saver<'a, M> = Box<dyn FnMut(&M, &ModuleOptimizer, usize, Option<f64>) -> Result<()> + 'a>;

/// Everything a training session works on: microGPT's [`GPT`] or any other [`LanguageModel`].
pub struct Session<'a, M = GPT> {
    /// The model, on an autodiff device.
    pub model: M,
    /// Adam and its state.
    pub optim: ModuleOptimizer,
    /// Steps already done (0, or the step of a resumed checkpoint).
    pub step: usize,
    /// The training batches, on the model's autodiff device ([`TrainSet::of`]).
    pub train: TrainSet,
    /// The held-out set ([`EvalSet::held_out`]).
    pub val: EvalSet,
    /// How to run.
    pub options: &'a TrainOptions,
    /// Set by Ctrl-C or SIGTERM; the loop stops between steps.
    pub stop: Arc<AtomicBool>,
    /// The step whose checkpoint `options.out` already holds (a resume saving back where it
    /// read): that step is not saved again.
    pub saved: Option<usize>,
    /// Writes a checkpoint in `options.out` (when there is one).
    pub saver: Option<Saver<'a, M>>,
}

/// What the session does around each step of the loop ([`Training::run`]): show it, read the
/// losses back in batches, evaluate, save.
struct Watcher<'s, 'a, M> {
    options: &'a TrainOptions,
    val: &'s EvalSet,
    stop: &'s AtomicBool,
    saved: Option<usize>,
    saver: Option<Saver<'a, M>>,
    log: StepLog,
    report: TrainReport,
    last_val: Option<f64>,
    end: usize,
}

impl<M: LanguageModel + Sync> Session<'_, M> {
    /// Train from `self.step` to the end (or `stop_at`, or an interrupt).
    pub fn run(self) -> Result<(M, ModuleOptimizer, TrainReport)> {
        let (opts, run) = (self.options, &self.options.run);
        let end = opts.stop_at.unwrap_or(run.num_steps).min(run.num_steps);
        let steps = (self.step, end, run.num_steps);
        let metrics = open_metrics(opts, self.step)?;
        let mut watch = Watcher {
            options: opts,
            val: &self.val,
            stop: &self.stop,
            saved: self.saved,
            saver: self.saver,
            log: StepLog::new(opts.progress, steps, opts.log_every, opts.sync_every, metrics),
            report: TrainReport::from_step(self.step),
            last_val: None,
            end,
        };
        let split = Split { cores: opts.cores, micro_batches: opts.micro_batches, on_host: opts.grads_on_host };
        let training =
            Training { model: self.model, optim: self.optim, step: self.step, end, run, train: &self.train, split };
        let (model, optim, step) = training.run(&mut watch)?;
        // an interrupt can land between the last read and the check at the top of the loop
        let losses = watch.read_losses()?;
        watch.log.show(&losses, None)?;
        watch.report.losses.extend(losses);
        watch.log.finish();
        // the loop ends before `end` only when Ctrl-C or SIGTERM stopped it
        let report = &mut watch.report;
        (report.interrupted, report.train_time, report.loss_reads) =
            (step < end, watch.log.train_time(), watch.log.reads());
        watch.finish(model, optim, step)
    }
}

impl<M: LanguageModel + Sync> Watch<M> for Watcher<'_, '_, M> {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Log, evaluate, save: the loss stays on the device until `sync_every` of them are read at
    /// once; evaluating and saving read first, as they wait for the device anyway.
    fn after_step(
        &mut self,
        model: &M,
        optim: &ModuleOptimizer,
        step: usize,
        lr: f64,
        loss: Tensor<1>,
        tokens: usize,
    ) -> Result<()> {
        let opts = self.options;
        self.report.steps_run += 1;
        self.report.tokens += tokens;
        self.log.push(step, lr, loss, self.report.tokens);
        let eval = opts.eval_every.is_some_and(|n| step.is_multiple_of(n));
        let save = opts.save_every.is_some_and(|n| step.is_multiple_of(n)) && step < self.end;
        if self.log.full() || eval || save || step == self.end || self.stopping() {
            let losses = self.read_losses()?;
            let val_loss = if eval { Some(evaluate(&model.valid(), self.val)?) } else { None };
            self.last_val = val_loss.or(self.last_val);
            self.log.show(&losses, val_loss)?;
            self.report.losses.extend(losses);
            if save {
                self.save(model, optim, step)?;
            }
            self.log.restart_clock();
        }
        Ok(())
    }
}

/// `metrics.csv` in the output directory, kept up to `step`, and the directory.
fn open_metrics(options: &TrainOptions, step: usize) -> Result<Option<(MetricsLog, PathBuf)>> {
    let Some(dir) = &options.out else { return Ok(None) };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the output directory {}", dir.display()))?;
    Ok(Some((MetricsLog::open(&dir.join("metrics.csv"), step)?, dir.clone())))
}

impl<M: LanguageModel + Sync> Watcher<'_, '_, M> {
    /// The losses waiting on the device, in one read; the first that is NaN or infinite stops
    /// the run, after every step before it is shown.
    fn read_losses(&mut self) -> Result<Vec<(usize, f64)>> {
        let losses = self.log.read()?;
        let Some(bad) = losses.iter().position(|(_, loss)| !loss.is_finite()) else { return Ok(losses) };
        self.log.show(&losses[..bad], None)?;
        self.log.abandon();
        let (step, loss) = losses[bad];
        Err(self.diverged(format!("loss is {loss} at step {step}")).into())
    }

    fn diverged(&self, what: String) -> Diverged {
        Diverged { what, last_saved: self.options.out.as_ref().and(self.saved) }
    }

    /// The held-out loss after the last step, and the final save.
    fn finish(mut self, model: M, optim: ModuleOptimizer, step: usize) -> Result<(M, ModuleOptimizer, TrainReport)> {
        let opts = self.options;
        self.report.step = step;
        if !self.report.interrupted {
            let evaluated_now = opts.eval_every.is_some_and(|n| step.is_multiple_of(n)) && self.report.steps_run > 0;
            if !evaluated_now {
                self.last_val = Some(evaluate(&model.valid(), self.val)?);
            }
            self.report.val_loss = self.last_val;
        }
        if opts.out.is_some() && (self.report.steps_run > 0 || self.report.interrupted) {
            self.save(&model, &optim, step)?;
        }
        Ok((model, optim, self.report))
    }

    /// Save a checkpoint of `step`, unless it is saved already, and redraw loss.png.
    fn save(&mut self, model: &M, optim: &ModuleOptimizer, step: usize) -> Result<()> {
        let options = self.options;
        let Some(dir) = &options.out else { return Ok(()) };
        if self.saved == Some(step) {
            return Ok(());
        }
        // an update can overflow the weights while the step's loss (computed before it) is
        // finite: such weights are no checkpoint to keep, and the run has diverged
        if let Some(name) = checkpoint::first_non_finite(&model.valid())? {
            let what = format!("its weights are not finite at step {step} ({name} holds NaN or infinity)");
            return Err(self.diverged(what).into());
        }
        if let Some(saver) = &mut self.saver {
            saver(model, optim, step, self.last_val)?;
        }
        self.saved = Some(step);
        metrics::read(&dir.join("metrics.csv"))
            .and_then(|rows| metrics::plot(&rows, &dir.join("loss.png")))
            .map_err(|err| checkpoint::explain_write_error(err, dir, "draw loss.png"))
    }
}

/// The checkpoint of a run of the model `config` describes ([`checkpoint::save`]), with the
/// session's settings, data file and start; `vocab` and `block_size` as [`Meta`] records them.
pub fn checkpoint_of<'a, M: Stored>(
    config: Architecture,
    vocab: Option<Tokenizer>,
    block_size: Option<usize>,
    options: &'a TrainOptions,
) -> Saver<'a, M> {
    Box::new(move |model, optim, step, val_loss| {
        let (dir, data) = (options.out.as_ref().expect("a saver saves in --out"), &options.data);
        let meta = Meta {
            format_version: checkpoint::FORMAT_VERSION,
            step,
            config: config.clone(),
            vocab: vocab.clone(),
            block_size,
            run: options.run.clone(),
            weights: String::new(),
            val_loss,
            data: Some(data.path.display().to_string()),
            data_size: Some(data.size),
            data_sha256: Some(data.sha256.clone()),
            files: Default::default(),
            init_from: options.init_from.clone(),
            eval_every: options.eval_every,
        };
        checkpoint::save(dir, model, optim, meta)
    })
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

// f64 on the flex CPU backend
#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;

    /// Losses are read `sync_every` at a time, yet every step's loss is reported, in order, and
    /// equal to what reading every step gives.
    #[test]
    fn losses_are_read_in_batches_of_steps() {
        use crate::device;
        use crate::gpt::adam::Adam;
        use crate::gpt::rng::PyRandom;
        use crate::program::datafile::DataFile;
        let docs: Vec<String> = ["anna", "bob", "carla", "dave", "eve", "fran", "gus", "hal", "ida", "jo", "kim"]
            .iter()
            .map(|d| d.to_string())
            .collect();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), docs.join("\n")).unwrap();
        let run = |sync_every: usize| {
            let mut rng = PyRandom::new(1);
            let data = crate::gpt::data::Data::Lines(crate::gpt::data::Dataset::new(docs.clone(), &mut rng).unwrap());
            let config = crate::gpt::config::GPTConfig::new(data.tokenizer().vocab_size());
            let run = TrainConfig { seed: 1, num_steps: 100, batch_size: 2, ..TrainConfig::default() };
            let options = TrainOptions { sync_every, ..TrainOptions::new(run, DataFile::of(file.path()).unwrap()) };
            let device = device::cpu_f64().autodiff();
            let (train, val) = crate::gpt::batch::sets(&data, config.block_size, &options.run, false, &device);
            let session = Session {
                model: GPT::init(&config, &mut rng, &device),
                optim: Adam::reference().init(),
                step: 0,
                train,
                val,
                options: &options,
                stop: Default::default(),
                saved: None,
                saver: None,
            };
            session.run().unwrap().2
        };
        let (every, batched) = (run(1), run(30));
        assert_eq!(every.loss_reads, 100);
        assert_eq!(batched.loss_reads, 4, "30, 60, 90 and the last step");
        assert_eq!(batched.losses.iter().map(|l| l.0).collect::<Vec<_>>(), (1..=100).collect::<Vec<_>>());
        assert_eq!(batched.losses, every.losses);
    }
}
