//! Looking inside a trained model: what it predicts at each position of a text, where its
//! attention heads look, and how it places the characters in its embedding space.
//!
//! [`inspect`] runs the text as training sees it (a document: BOS, then the characters, then
//! BOS; a text model's stretch of text: its characters, the last block_size + 1 of them) and
//! returns, per position, the five likeliest next characters, the probability and loss of the
//! character that actually follows, and every head's attention weights. [`embedding_pca`]
//! projects the token embeddings (`wte`) onto their first two principal components with Burn's
//! SVD. [`plot_attention`] and [`plot_embeddings`] draw them as PNGs.
//! Deliberately left out: gradients and saliency, the MLP's activations.

use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::{Int, Tensor, TensorData};
use plotters::prelude::*;

use crate::device::read_values;
use crate::gpt::data::{Layout, Tokenizer, doc_tokens};
use crate::gpt::model::{self, GPT, LanguageModel};
use crate::gpt::sample::probabilities;
use crate::program::metrics::{draw_png, plot_err};

/// How many of the likeliest next characters each position lists.
pub const TOP: usize = 5;
/// The attention picture draws at most this many positions (the last ones), so that a long
/// context stays readable.
pub const PICTURE_POSITIONS: usize = 32;

/// What the model says at one position.
#[derive(Clone, Debug)]
pub struct Prediction {
    /// The input token at this position.
    pub input: usize,
    /// The likeliest next tokens with their probabilities, likeliest first.
    pub top: Vec<(usize, f64)>,
    /// The token that actually follows, its probability, and its loss `-ln p`.
    pub target: usize,
    /// The probability the model gives to `target`.
    pub p_target: f64,
    /// `-ln p_target`, this position's loss.
    pub loss: f64,
    /// The whole next-token distribution (softmax of the logits, temperature 1).
    pub probs: Vec<f64>,
}

/// A text run through the model.
#[derive(Clone, Debug)]
pub struct Inspection {
    /// One prediction per position: after BOS, after each character.
    pub predictions: Vec<Prediction>,
    /// Mean of the positions' losses: the text's loss as `eval` computes it.
    pub mean_loss: f64,
    /// Attention weights, `[layer][head][query][key]`; zero above the diagonal.
    pub attention: Vec<Vec<Vec<Vec<f64>>>>,
    /// Tokens cut away because the model's block_size has no room for them: a document's last
    /// characters and closing BOS (as training cuts them), a text's first characters.
    pub cut: usize,
}

/// A token as a person reads it: BOS as `BOS`, a space as `␣`.
pub fn symbol(tokenizer: &Tokenizer, id: usize) -> String {
    match tokenizer.chars.get(id) {
        None => "BOS".to_string(),
        Some(' ') => "␣".to_string(),
        Some('\n') => "⏎".to_string(),
        Some(&ch) => ch.to_string(),
    }
}

/// Run `text` through `model` as training would see it: a document as `[BOS] + text + [BOS]`,
/// cut to block_size positions (the same rule as training); a stretch of a text as its
/// characters, the last block_size + 1 of them (`cut` says how many characters went).
pub fn inspect(model: &impl LanguageModel, tokenizer: &Tokenizer, text: &str, layout: Layout) -> Result<Inspection> {
    let ids = tokenizer.encode(text).map_err(|err| anyhow::anyhow!("--text {text:?}: {err}"))?;
    let block_size = model.block_size();
    let (tokens, cut) = match layout {
        Layout::Lines => (doc_tokens(tokenizer, text, block_size), (ids.len() + 1).saturating_sub(block_size)),
        Layout::Text => {
            if ids.len() < 2 {
                bail!("--text needs at least 2 characters: one to read and the next to predict");
            }
            let cut = ids.len().saturating_sub(block_size + 1);
            (ids[cut..].to_vec(), cut)
        }
    };
    inspect_tokens(model, &tokens, cut)
}

/// Run `tokens` (at least 2, at most block_size + 1) through `model`: a prediction at each
/// position but the last, whose next token is the last. `cut` is recorded as given.
pub fn inspect_tokens(model: &impl LanguageModel, tokens: &[usize], cut: usize) -> Result<Inspection> {
    let n = tokens.len() - 1;
    let device = model.devices()[0].clone();
    let inputs: Vec<i64> = tokens[..n].iter().map(|&t| t as i64).collect();
    let idx = Tensor::<2, Int>::from_data(TensorData::new(inputs, [1, n]), &device);
    let (logits, attention) = model::with_attention(|| model.forward(idx)); // [1, n, V], [1, H, n, n] per layer
    let logits = read_values(logits)?;
    let vocab = logits.len() / n;

    let predictions: Vec<Prediction> = (0..n)
        .map(|pos| {
            let probs = probabilities(&logits[pos * vocab..(pos + 1) * vocab], 1.0, None);
            let mut order: Vec<usize> = (0..vocab).collect();
            let likeliest = |a: &usize, b: &usize| probs[*b].total_cmp(&probs[*a]).then(a.cmp(b));
            let top = TOP.min(vocab);
            order.select_nth_unstable_by(top - 1, likeliest); // the TOP likeliest first, unsorted
            order[..top].sort_by(likeliest);
            let target = tokens[pos + 1];
            Prediction {
                input: tokens[pos],
                top: order[..top].iter().map(|&id| (id, probs[id])).collect(),
                target,
                p_target: probs[target],
                loss: -probs[target].ln(),
                probs,
            }
        })
        .collect();
    let mean_loss = predictions.iter().map(|p| p.loss).sum::<f64>() / n as f64;

    let attention = attention
        .into_iter()
        .map(|att| {
            let heads = att.dims()[1];
            let values = read_values(att)?; // [1, H, n, n]
            Ok((0..heads)
                .map(|h| (0..n).map(|q| values[(h * n + q) * n..(h * n + q + 1) * n].to_vec()).collect())
                .collect())
        })
        .collect::<Result<_>>()?;
    Ok(Inspection { predictions, mean_loss, attention, cut })
}

/// The token embeddings projected onto their first two principal components: one point per
/// token, in token order.
pub fn embedding_pca(model: &GPT) -> Result<Vec<[f64; 2]>> {
    let wte = model.wte(); // [V, C]
    let [v, c] = wte.dims();
    if c < 2 {
        bail!("the embeddings have {c} channel; a plane needs 2");
    }
    let centered = wte.clone() - wte.mean_dim(0); // [V, C]
    // centered = U S Vt; the rows of Vt are the principal directions, U S the coordinates
    let (u, s, _vt) = burn::linalg::svd::<2, 1>(centered, 100);
    let coords = u.slice([0..v, 0..2]) * s.narrow(0, 0, 2).unsqueeze::<2>(); // [V, 2]
    let values = read_values(coords)?;
    Ok(values.chunks(2).map(|p| [p[0], p[1]]).collect())
}

/// The table of `seen`'s predictions, a position a line: its input, the five likeliest next
/// tokens (each written by `top`), the token that follows, its probability and loss; columns
/// `widths` wide (position, token, the five), `unit` what the tokens are; then the mean loss.
pub fn print_predictions(
    seen: &Inspection,
    top: impl Fn(usize) -> String,
    symbol: impl Fn(usize) -> String,
    [pos_w, sym_w, top_w]: [usize; 3],
    unit: &str,
) {
    let head = format!("five likeliest next {unit}");
    println!(
        "{:>pos_w$}  {:<sym_w$}  {head:<top_w$}  {:<sym_w$} {:>8} {:>7}",
        "pos", "input", "next", "p(next)", "loss"
    );
    for (pos, p) in seen.predictions.iter().enumerate() {
        let five: Vec<String> = p.top.iter().map(|&(id, prob)| format!("{} {prob:.3}", top(id))).collect();
        let (input, next, five) = (symbol(p.input), symbol(p.target), five.join("  "));
        println!("{pos:>pos_w$}  {input:<sym_w$}  {five:<top_w$}  {next:<sym_w$} {:>8.4} {:>7.4}", p.p_target, p.loss);
    }
    println!("mean loss: {:.4} ({} positions)", seen.mean_loss, seen.predictions.len());
}

/// The colour of an attention weight in 0..=1: white to dark blue.
fn weight_colour(w: f64) -> RGBColor {
    let w = w.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * w).round() as u8;
    RGBColor(lerp(255.0, 8.0), lerp(255.0, 48.0), lerp(255.0, 107.0))
}

/// One heat map per layer and head (rows: layers, columns: heads), query positions down, key
/// positions across, both labelled with their tokens (`symbol`); one colour scale, drawn on the right.
/// Past [`PICTURE_POSITIONS`] positions, only the last ones are drawn (their queries against
/// their keys), as the title says.
pub fn plot_attention(inspection: &Inspection, symbol: impl Fn(usize) -> String, path: &Path) -> Result<()> {
    let err = plot_err(path);
    let all = inspection.predictions.len();
    let first = all.saturating_sub(PICTURE_POSITIONS);
    let labels: Vec<String> = inspection.predictions[first..].iter().map(|p| symbol(p.input)).collect();
    let n = labels.len();
    let title = match first {
        0 => "attention weights (query position down, key position across)".to_string(),
        _ => format!("attention weights of the last {n} of {all} positions (query down, key across)"),
    };
    let layers = inspection.attention.len();
    let heads = inspection.attention.first().map_or(0, Vec::len);
    let cell = (220 / n.max(1)).clamp(10, 28) as i32;
    let margin = 34; // room for the query labels left of each panel
    let (panel_w, panel_h) = (cell * n as i32 + margin + 16, cell * n as i32 + 56);
    let legend_w = 90;
    let width = (10 + panel_w * heads as i32 + legend_w) as u32;
    let height = (panel_h * layers as i32 + 60).max(320) as u32;
    draw_png(path, (width, height), |root| {
        root.fill(&WHITE).map_err(&err)?;
        root.draw_text(&title, &("sans-serif", 20).into_font().color(&BLACK), (12, 10)).map_err(&err)?;
        let font = ("sans-serif", (cell - 2).clamp(9, 15)).into_font();
        for (l, layer) in inspection.attention.iter().enumerate() {
            for (h, weights) in layer.iter().enumerate() {
                let x0 = 10 + h as i32 * panel_w + margin;
                let y0 = 44 + l as i32 * panel_h + 22;
                root.draw_text(&format!("layer {l}, head {h}"), &font.color(&BLACK), (x0, y0 - 20)).map_err(&err)?;
                for (q, row) in weights[first..].iter().enumerate() {
                    for (k, &w) in row[first..].iter().enumerate() {
                        let (x, y) = (x0 + k as i32 * cell, y0 + q as i32 * cell);
                        root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], weight_colour(w).filled()))
                            .map_err(&err)?;
                    }
                }
                root.draw(&Rectangle::new([(x0, y0), (x0 + cell * n as i32, y0 + cell * n as i32)], BLACK))
                    .map_err(&err)?;
                let small = ("sans-serif", (cell / 2).clamp(7, 12)).into_font().color(&BLACK);
                for (i, label) in labels.iter().enumerate() {
                    // key labels under the panel, query labels left of it, both centred
                    let (w, h) = root.estimate_text_size(label, &small).map_err(&err)?;
                    let (w, h) = (w as i32, h as i32);
                    let centre = i as i32 * cell + cell / 2;
                    root.draw_text(label, &small, (x0 + centre - w / 2, y0 + cell * n as i32 + 3)).map_err(&err)?;
                    root.draw_text(label, &small, (x0 - w - 4, y0 + centre - h / 2)).map_err(&err)?;
                }
            }
        }
        // the colour scale
        let (lx, ly, lh) = (10 + panel_w * heads as i32 + 20, 66, 200);
        for i in 0..lh {
            let w = 1.0 - i as f64 / (lh - 1) as f64;
            root.draw(&Rectangle::new([(lx, ly + i), (lx + 20, ly + i + 1)], weight_colour(w).filled()))
                .map_err(&err)?;
        }
        root.draw(&Rectangle::new([(lx, ly), (lx + 20, ly + lh)], BLACK)).map_err(&err)?;
        for (text, y) in [("1.0", ly), ("0.5", ly + lh / 2), ("0.0", ly + lh)] {
            root.draw_text(text, &font.color(&BLACK), (lx + 26, y - 6)).map_err(&err)?;
        }
        root.draw_text("weight", &font.color(&BLACK), (lx - 6, ly - 20)).map_err(&err)?;
        Ok(())
    })
}

/// The embeddings' first two principal components, each point labelled with its character.
pub fn plot_embeddings(points: &[[f64; 2]], tokenizer: &Tokenizer, path: &Path) -> Result<()> {
    let err = plot_err(path);
    let range = |i: usize| {
        let (lo, hi) =
            points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p[i]), hi.max(p[i])));
        let pad = ((hi - lo) * 0.08).max(1e-6);
        (lo - pad)..(hi + pad)
    };
    draw_png(path, (720, 620), |root| {
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("token embeddings (wte), first two principal components", ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(range(0), range(1))
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("PC 1")
            .y_desc("PC 2")
            .x_label_formatter(&|v| format!("{:.1}", if v.abs() < 1e-9 { 0.0 } else { *v }))
            .y_label_formatter(&|v| format!("{:.1}", if v.abs() < 1e-9 { 0.0 } else { *v }))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(&err)?;
        chart
            .draw_series(points.iter().enumerate().map(|(id, &[x, y])| {
                let colour = if id == tokenizer.bos() { RED } else { BLUE };
                EmptyElement::at((x, y))
                    + Circle::new((0, 0), 3, colour.filled())
                    + Text::new(symbol(tokenizer, id), (5, -8), ("sans-serif", 17).into_font().color(&colour))
            }))
            .map_err(&err)?;
        Ok(())
    })
}
