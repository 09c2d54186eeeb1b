//! Data files in their two layouts, the character tokenizer and the train/held-out split.
//!
//! A data file is UTF-8 text. In the line layout (the reference's) it holds one document per
//! line ([`Dataset`]: names.txt by default, downloaded when absent as the reference does). In the
//! text layout it is one stream of characters ([`Text`]: a play, a book), whose first 90% trains
//! and whose last 10% is held out, as nanoGPT's `shakespeare_char` splits it. The data owns the
//! vocabulary: the sorted characters it holds, plus BOS. Deliberately left out: sub-word
//! tokenizers, streaming of files larger than memory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::gpt::rng::PyRandom;
use anyhow::{Context, Result, bail};

/// The data file used when `--data` is not given.
pub const DEFAULT_DATA: &str = "data/names.txt";
/// Where the reference downloads names.txt from.
pub const NAMES_URL: &str = "https://raw.githubusercontent.com/karpathy/makemore/refs/heads/master/names.txt";
/// Where nanoGPT's `shakespeare_char/prepare.py` downloads tinyshakespeare from.
pub const SHAKESPEARE_URL: &str =
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";
/// The text layout holds out the last tenth of the text, as nanoGPT does.
pub const TEXT_TRAIN_FRACTION: f64 = 0.9;

/// A text's tokens cut into its training part and its held-out last tenth.
pub fn split_text(tokens: &[usize]) -> (&[usize], &[usize]) {
    tokens.split_at((tokens.len() as f64 * TEXT_TRAIN_FRACTION) as usize)
}

/// How a data file is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One document per line, each wrapped in BOS and cut to block_size (the reference's).
    #[default]
    Lines,
    /// The whole file as one stream of characters: windows of block_size + 1 at random offsets.
    Text,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Lines => "lines",
            Layout::Text => "text",
        })
    }
}

/// The data sets the program knows by name: where each lives in `data/`, where it is
/// downloaded from when absent, and how it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Corpus {
    /// makemore's 32,033 names, one per line (the reference's data).
    Names,
    /// Karpathy's tinyshakespeare (1.1 MB of plays, nanoGPT's `shakespeare_char`), as one text.
    Shakespeare,
}

impl Corpus {
    /// Its name, as `--dataset` spells it (clap's name of the value).
    pub fn name(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value().expect("every data set is a value of --dataset").get_name().to_string()
    }

    /// Where the data set is kept.
    pub fn path(self) -> PathBuf {
        PathBuf::from(match self {
            Corpus::Names => DEFAULT_DATA,
            Corpus::Shakespeare => "data/shakespeare.txt",
        })
    }

    /// Where it is downloaded from when absent.
    pub fn url(self) -> &'static str {
        match self {
            Corpus::Names => NAMES_URL,
            Corpus::Shakespeare => SHAKESPEARE_URL,
        }
    }

    /// How it is read.
    pub fn layout(self) -> Layout {
        match self {
            Corpus::Names => Layout::Lines,
            Corpus::Shakespeare => Layout::Text,
        }
    }
}
/// The reference holds out this many of the last shuffled documents.
pub const VAL_DOCS: usize = 2000;

/// Read documents: one per line, surrounding whitespace stripped, blank lines skipped.
pub fn read_documents(path: &Path) -> Result<Vec<String>> {
    parse_documents(&read_bytes(path)?).with_context(|| format!("data file {}", path.display()))
}

/// Read a whole text file as it is (the text layout): every character, line breaks included.
pub fn read_text(path: &Path) -> Result<String> {
    parse_text(&read_bytes(path)?).with_context(|| format!("data file {}", path.display()))
}

pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    if path.is_dir() {
        bail!("data file {} is a directory: pass a text file", path.display());
    }
    std::fs::read(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow::anyhow!("data file {} not found: pass --data PATH to a text file", path.display())
        }
        _ => anyhow::anyhow!("cannot read data file {}: {err}", path.display()),
    })
}

/// UTF-8 text, refused when it is not UTF-8 or holds nothing but whitespace.
pub fn parse_text(bytes: &[u8]) -> Result<String> {
    let text = utf8(bytes)?;
    if text.trim().is_empty() {
        bail!("holds no text (it is empty or only whitespace)");
    }
    Ok(text.to_string())
}

fn utf8(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|err| {
        anyhow::anyhow!("is not UTF-8 text (invalid byte at offset {}): convert it to UTF-8", err.valid_up_to())
    })
}

/// Split UTF-8 text into documents; refuses text that is not UTF-8 or holds no document.
pub fn parse_documents(bytes: &[u8]) -> Result<Vec<String>> {
    let text = utf8(bytes)?;
    let docs: Vec<String> = text.lines().map(str::trim).filter(|line| !line.is_empty()).map(String::from).collect();
    if docs.is_empty() {
        bail!("holds no documents (it is empty or every line is blank): put one document per line");
    }
    Ok(docs)
}

/// Characters to token ids and back. Ids `0..n` are the sorted characters; BOS is `n`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tokenizer {
    /// The characters, sorted; a character's id is its index.
    pub chars: Vec<char>,
}

impl Tokenizer {
    /// The vocabulary of `docs`: every character that occurs, sorted.
    pub fn from_documents(docs: &[String]) -> Self {
        let set: BTreeSet<char> = docs.iter().flat_map(|d| d.chars()).collect();
        Self { chars: set.into_iter().collect() }
    }

    /// The vocabulary of a text: every character that occurs, sorted (line breaks included).
    pub fn from_text(text: &str) -> Self {
        let set: BTreeSet<char> = text.chars().collect();
        Self { chars: set.into_iter().collect() }
    }

    /// The first character of `other`'s vocabulary that this one lacks, if any.
    pub fn first_missing(&self, other: &Tokenizer) -> Option<char> {
        other.chars.iter().copied().find(|ch| self.chars.binary_search(ch).is_err())
    }

    /// Id of the begin/end-of-sequence token.
    pub fn bos(&self) -> usize {
        self.chars.len()
    }

    /// Number of tokens: the characters and BOS.
    pub fn vocab_size(&self) -> usize {
        self.chars.len() + 1
    }

    /// Ids of a text's characters; names the first character outside the vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<usize>> {
        text.chars()
            .map(|ch| {
                self.chars
                    .binary_search(&ch)
                    .map_err(|_| anyhow::anyhow!("character {ch:?} is not in the vocabulary of the training data"))
            })
            .collect()
    }

    /// Text of token ids; BOS decodes to nothing.
    pub fn decode(&self, ids: &[usize]) -> String {
        ids.iter().filter_map(|&id| self.chars.get(id)).collect()
    }
}

/// Text to token ids and back: what writing a passage asks of a tokenizer, the characters of a
/// run trained here ([`Tokenizer`]) or GPT-2's byte-level BPE (`crate::gpt::bpe::Bpe`).
pub trait Tokenize {
    /// The ids of `text`; an error names what the vocabulary cannot write.
    fn encode(&self, text: &str) -> Result<Vec<usize>>;
    /// The bytes of `ids`' text: UTF-8, though a token may hold part of a character.
    fn decode_bytes(&self, ids: &[usize]) -> Result<Vec<u8>>;
    /// The text of `ids`, U+FFFD where a character is cut.
    fn decode(&self, ids: &[usize]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }
    /// The token a passage starts from when it has no prefix (not printed): the start of a line,
    /// or GPT-2's start of a document.
    fn passage_start(&self) -> usize;
    /// The ids a passage may draw, `0..drawable()`: not a character model's BOS (a text has
    /// none), not a GPT-2's padding ids (nanoGPT's vocabulary of 50,304).
    fn drawable(&self) -> usize;
}

impl Tokenize for Tokenizer {
    fn encode(&self, text: &str) -> Result<Vec<usize>> {
        Tokenizer::encode(self, text)
    }

    fn decode_bytes(&self, ids: &[usize]) -> Result<Vec<u8>> {
        Ok(Tokenizer::decode(self, ids).into_bytes())
    }

    /// A line break (a passage starts a line, as nanoGPT's `sample.py`), else a space, else the
    /// first character.
    fn passage_start(&self) -> usize {
        ['\n', ' '].iter().find_map(|ch| self.chars.binary_search(ch).ok()).unwrap_or(0)
    }

    fn drawable(&self) -> usize {
        self.bos()
    }
}

/// The shuffled documents, their tokenizer and the train/held-out split.
pub struct Dataset {
    /// Documents in shuffled order.
    pub docs: Vec<String>,
    /// The vocabulary of all documents.
    pub tokenizer: Tokenizer,
    /// The first `n_train` documents train; the rest are held out.
    pub n_train: usize,
}

impl Dataset {
    /// Shuffle `docs` with `rng` (the reference's first draw) and hold out the last ones:
    /// 2,000 as the reference does, or a tenth of a smaller file.
    pub fn new(mut docs: Vec<String>, rng: &mut PyRandom) -> Result<Self> {
        if docs.len() < 2 {
            bail!("the data holds {} document; training needs at least 2 (one to train on, one held out)", docs.len());
        }
        rng.shuffle(&mut docs);
        let n_val = VAL_DOCS.min(docs.len() / 10).max(1);
        let tokenizer = Tokenizer::from_documents(&docs);
        Ok(Self { n_train: docs.len() - n_val, docs, tokenizer })
    }

    /// The documents trained on.
    pub fn train_docs(&self) -> &[String] {
        &self.docs[..self.n_train]
    }

    /// The held-out documents.
    pub fn val_docs(&self) -> &[String] {
        &self.docs[self.n_train..]
    }
}

/// `[BOS] + ids + [BOS]`, cut to `block_size + 1` tokens as the reference does.
pub fn doc_tokens(tokenizer: &Tokenizer, doc: &str, block_size: usize) -> Vec<usize> {
    let bos = tokenizer.bos();
    let mut tokens = Vec::with_capacity(doc.len() + 2);
    tokens.push(bos);
    tokens.extend(tokenizer.encode(doc).expect("documents only hold vocabulary characters"));
    tokens.push(bos);
    tokens.truncate(block_size + 1);
    tokens
}

/// Number of documents whose tokens exceed `block_size + 1`, for the one warning.
pub fn count_cut(docs: &[String], block_size: usize) -> usize {
    docs.iter().filter(|d| d.chars().count() + 1 > block_size).count()
}

/// One text as a stream of tokens, split in two: the first 90% trains, the last 10% is held out.
/// Every position is a target; there is no BOS and no padding.
pub struct Text {
    /// The token ids of the whole text.
    pub tokens: Vec<usize>,
    /// The vocabulary.
    pub tokenizer: Tokenizer,
    /// The first `n_train` tokens train; the rest are held out.
    pub n_train: usize,
}

impl Text {
    /// Encode `text` with `tokenizer` (its own vocabulary when `None`) and split it.
    pub fn new(text: &str, tokenizer: Option<Tokenizer>) -> Result<Self> {
        let tokenizer = tokenizer.unwrap_or_else(|| Tokenizer::from_text(text));
        let tokens = tokenizer.encode(text)?;
        if u32::try_from(tokens.len()).is_err() {
            bail!("the text holds {} characters; texts of more than {} are not supported", tokens.len(), u32::MAX);
        }
        let n_train = (tokens.len() as f64 * TEXT_TRAIN_FRACTION) as usize;
        Ok(Self { tokens, tokenizer, n_train })
    }

    /// Refuse a text whose held-out tenth (or training part) cannot hold one window of
    /// `block_size` + 1 characters, naming both remedies.
    pub fn check_windows(&self, block_size: usize) -> Result<()> {
        let shortest = self.val_tokens().len().min(self.train_tokens().len());
        if shortest < block_size + 1 {
            bail!(
                "the text is {} characters; its held-out last tenth ({} characters) is shorter than one window of block_size + 1 = {}: use a text of at least {} characters or a smaller --block-size",
                self.tokens.len(),
                self.val_tokens().len(),
                block_size + 1,
                shortest_text(block_size + 1)
            );
        }
        Ok(())
    }

    /// The tokens trained on.
    pub fn train_tokens(&self) -> &[usize] {
        &self.tokens[..self.n_train]
    }

    /// The held-out tokens.
    pub fn val_tokens(&self) -> &[usize] {
        &self.tokens[self.n_train..]
    }
}

/// The fewest characters whose held-out tenth holds `window` of them.
fn shortest_text(window: usize) -> usize {
    // about window / 0.1; rounding puts the answer within a few characters of that
    let near = (window as f64 / (1.0 - TEXT_TRAIN_FRACTION)) as usize;
    (near.saturating_sub(16)..)
        .find(|&n| n - (n as f64 * TEXT_TRAIN_FRACTION) as usize >= window)
        .expect("some length holds it")
}

/// A data file read in its layout.
pub enum Data {
    /// One document per line.
    Lines(Dataset),
    /// One stream of characters.
    Text(Text),
}

impl Data {
    /// The data file at `path` read in `layout`: its documents shuffled by `rng`, or its text; in
    /// `tokenizer`'s ids when one is given, which must hold every character of it, else in the
    /// vocabulary of its own characters.
    pub fn read(path: &Path, layout: Layout, tokenizer: Option<Tokenizer>, rng: &mut PyRandom) -> Result<Self> {
        Ok(match layout {
            Layout::Lines => {
                let dataset = Dataset::new(read_documents(path)?, rng)?;
                match tokenizer {
                    Some(tokenizer) => Data::Lines(dataset).with_tokenizer(tokenizer)?,
                    None => Data::Lines(dataset),
                }
            }
            Layout::Text => Data::Text(Text::new(&read_text(path)?, tokenizer)?),
        })
    }

    /// The vocabulary.
    pub fn tokenizer(&self) -> &Tokenizer {
        match self {
            Data::Lines(d) => &d.tokenizer,
            Data::Text(t) => &t.tokenizer,
        }
    }

    /// The same data in the ids of `tokenizer`, which must hold every character of it (a run
    /// from `--init-from` speaks its checkpoint's vocabulary).
    pub fn with_tokenizer(self, tokenizer: Tokenizer) -> Result<Self> {
        Ok(match self {
            Data::Lines(d) => Data::Lines(Dataset { tokenizer, ..d }),
            Data::Text(t) => {
                let text = t.tokenizer.decode(&t.tokens);
                Data::Text(Text { tokens: tokenizer.encode(&text)?, tokenizer, n_train: t.n_train })
            }
        })
    }
}

#[cfg(test)]
#[path = "data_tests.rs"]
mod tests;
