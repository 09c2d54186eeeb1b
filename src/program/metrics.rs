//! Training metrics on disk: `metrics.csv` (one row per logged step) and `loss.png` (train and
//! held-out loss against step). Deliberately left out: TensorBoard or web dashboards.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

const HEADER: &str = "step,train_loss,val_loss,lr,tokens_per_s,elapsed_s";

/// One row of `metrics.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Steps done (1-based).
    pub step: usize,
    /// This step's training loss.
    pub train_loss: f64,
    /// The held-out loss, when evaluated at this step.
    pub val_loss: Option<f64>,
    /// The learning rate of this step.
    pub lr: f64,
    /// Training speed so far, target tokens per second.
    pub tokens_per_s: f64,
    /// Training time so far (no evaluation, no saving).
    pub elapsed_s: f64,
}

/// Appends rows to `metrics.csv`; a resumed run keeps the rows up to its step.
pub struct MetricsLog {
    file: File,
}

impl MetricsLog {
    /// Open `path` for a run starting after `from_step` steps, dropping rows past it.
    pub fn open(path: &Path, from_step: usize) -> Result<Self> {
        let kept: Vec<Row> = read(path).unwrap_or_default().into_iter().filter(|r| r.step <= from_step).collect();
        let mut text = format!("{HEADER}\n");
        for row in &kept {
            text.push_str(&format_row(row));
        }
        crate::program::files::write_atomic(path, text.as_bytes())?;
        let file =
            OpenOptions::new().append(true).open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self { file })
    }

    /// Append one row.
    pub fn append(&mut self, row: &Row) -> Result<()> {
        self.file.write_all(format_row(row).as_bytes()).context("cannot write metrics.csv")
    }
}

fn format_row(row: &Row) -> String {
    let val = row.val_loss.map(|v| format!("{v:.6}")).unwrap_or_default();
    format!("{},{:.6},{},{:.6e},{:.1},{:.3}\n", row.step, row.train_loss, val, row.lr, row.tokens_per_s, row.elapsed_s)
}

/// Read the rows of a `metrics.csv`.
pub fn read(path: &Path) -> Result<Vec<Row>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut rows = Vec::new();
    for line in BufReader::new(file).lines().skip(1) {
        let line = line?;
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 6 {
            continue;
        }
        let num = |s: &str| s.parse::<f64>().ok();
        if let (Ok(step), Some(train_loss), Some(lr), Some(tokens_per_s), Some(elapsed_s)) =
            (f[0].parse(), num(f[1]), num(f[3]), num(f[4]), num(f[5]))
        {
            rows.push(Row { step, train_loss, val_loss: num(f[2]), lr, tokens_per_s, elapsed_s });
        }
    }
    Ok(rows)
}

/// Draw train and held-out loss against step into a PNG.
pub fn plot(rows: &[Row], path: &Path) -> Result<()> {
    let err = plot_err(path);
    let train: Vec<(f64, f64)> = rows.iter().map(|r| (r.step as f64, r.train_loss)).collect();
    let val: Vec<(f64, f64)> = rows.iter().filter_map(|r| r.val_loss.map(|v| (r.step as f64, v))).collect();
    let max_step = rows.iter().map(|r| r.step).max().unwrap_or(1).max(1) as f64;
    let losses = train.iter().chain(&val).map(|p| p.1).filter(|v| v.is_finite());
    let (lo, hi) = losses.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo.is_finite() { (lo * 0.95, hi * 1.05) } else { (0.0, 1.0) };

    draw_png(path, (900, 540), |root| {
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("microgpt loss", ("sans-serif", 26))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..max_step, lo..hi)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("loss (nats per token)")
            .label_style(("sans-serif", 16))
            .draw()
            .map_err(&err)?;
        chart
            .draw_series(LineSeries::new(train.clone(), BLUE.mix(0.3).stroke_width(1)))
            .map_err(&err)?
            .label("train loss")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.mix(0.3).stroke_width(2)));
        // the per-step loss of one document is noisy: a moving mean shows the trend
        let window = (train.len() / 20).clamp(1, 100);
        let smooth: Vec<(f64, f64)> = (0..train.len())
            .map(|i| {
                let from = i.saturating_sub(window - 1);
                let mean = train[from..=i].iter().map(|p| p.1).sum::<f64>() / (i - from + 1) as f64;
                (train[i].0, mean)
            })
            .collect();
        chart
            .draw_series(LineSeries::new(smooth, BLUE.stroke_width(2)))
            .map_err(&err)?
            .label(format!("train loss, mean of {window} logged steps"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        if !val.is_empty() {
            chart
                .draw_series(LineSeries::new(val.clone(), RED.stroke_width(2)))
                .map_err(&err)?
                .label("val loss")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
            chart.draw_series(val.iter().map(|&p| Circle::new(p, 3, RED.filled()))).map_err(&err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(("sans-serif", 16))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(&err)?;
        Ok(())
    })
}

/// The error of a drawing into `path`.
pub(crate) fn plot_err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> anyhow::Error + '_ {
    move |err| anyhow::anyhow!("cannot draw {}: {err:?}", path.display())
}

/// Draw a `size` PNG into `path` with `draw` (DejaVu Sans as "sans-serif"). The picture is drawn
/// beside and then renamed: a failed drawing (a full disk) leaves no partial file.
pub(crate) fn draw_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    static FONT: std::sync::Once = std::sync::Once::new();
    FONT.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
    let tmp = path.with_extension("tmp.png");
    let drawn = (|| {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        draw(root.clone())?;
        root.present().map_err(plot_err(path))
    })();
    if let Err(err) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(err);
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
