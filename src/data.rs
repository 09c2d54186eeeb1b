//! Documents, the character tokenizer and the train/held-out split.
//!
//! A data file is UTF-8 text with one document per line (names.txt by default, downloaded when
//! absent as the reference does). The data set owns the vocabulary: the sorted characters of
//! all documents, plus BOS. Deliberately left out: sub-word tokenizers, streaming of files larger than
//! memory.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::files::{sha256_hex, write_atomic};
use crate::rng::PyRandom;
use anyhow::{Context, Result, bail};

/// The data file used when `--data` is not given.
pub const DEFAULT_DATA: &str = "data/names.txt";
/// The reference holds out this many of the last shuffled documents.
pub const VAL_DOCS: usize = 2000;

/// Read documents: one per line, surrounding whitespace stripped, blank lines skipped.
pub fn read_documents(path: &Path) -> Result<Vec<String>> {
    if path.is_dir() {
        bail!("data file {} is a directory: pass a text file with one document per line", path.display());
    }
    let bytes = std::fs::read(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!(
            "data file {} not found: pass --data PATH to a text file with one document per line",
            path.display()
        ),
        _ => anyhow::anyhow!("cannot read data file {}: {err}", path.display()),
    })?;
    parse_documents(&bytes).with_context(|| format!("data file {}", path.display()))
}

/// Split UTF-8 text into documents; refuses text that is not UTF-8 or holds no document.
pub fn parse_documents(bytes: &[u8]) -> Result<Vec<String>> {
    let text = std::str::from_utf8(bytes).map_err(|err| {
        anyhow::anyhow!("is not UTF-8 text (invalid byte at offset {}): convert it to UTF-8", err.valid_up_to())
    })?;
    let docs: Vec<String> = text.lines().map(str::trim).filter(|line| !line.is_empty()).map(String::from).collect();
    if docs.is_empty() {
        bail!("holds no documents (it is empty or every line is blank): put one document per line");
    }
    Ok(docs)
}

/// A data file as a checkpoint records it: where it is and what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct DataFile {
    /// Absolute path, so that a checkpoint finds it from any working directory.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, lower-case hex (what `sha256sum` prints).
    pub sha256: String,
}

impl DataFile {
    /// Describe the file at `path` (which must exist).
    pub fn of(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read data file {}", path.display()))?;
        let path = std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
        Ok(Self { path, size: bytes.len() as u64, sha256: sha256_hex(&bytes) })
    }

    /// Whether the file at `path` still holds what `self` describes: `Ok(false)` when it changed.
    pub fn unchanged_at(&self, path: &Path) -> Result<bool> {
        Ok(Self::of(path)?.holds(self.size, &self.sha256))
    }

    /// Whether this file's bytes are the ones of that size and SHA-256 (as a checkpoint records them).
    pub fn holds(&self, size: u64, sha256: &str) -> bool {
        self.size == size && self.sha256 == sha256
    }
}

/// Make sure the default data file exists, downloading it from `url` when it does not.
pub fn ensure_default_data(path: &Path, url: &str) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    eprintln!("downloading {url} to {}", path.display());
    download(url, path).map_err(|err| {
        anyhow::anyhow!(
            "{} is missing and downloading it failed ({err:#}): put names.txt at {} or pass --data PATH",
            path.display(),
            path.display()
        )
    })
}

fn download(url: &str, path: &Path) -> Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(60))).build().into();
    let mut body = Vec::new();
    agent.get(url).call()?.into_body().into_reader().read_to_end(&mut body)?;
    parse_documents(&body).context("the downloaded file")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(path, &body)
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

/// Resolve the data path: `--data` when given, else the default file (downloaded if absent).
pub fn resolve_data_path(data: Option<&Path>, url: &str) -> Result<PathBuf> {
    match data {
        Some(path) => Ok(path.to_path_buf()),
        None => {
            let path = PathBuf::from(DEFAULT_DATA);
            ensure_default_data(&path, url)?;
            Ok(path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_stripped_and_blank_lines_skipped() {
        let docs = parse_documents(b"  anna \n\n\tbob\r\n   \nzoe").unwrap();
        assert_eq!(docs, ["anna", "bob", "zoe"]);
    }

    #[test]
    fn empty_blank_and_non_utf8_files_are_refused() {
        assert!(parse_documents(b"").unwrap_err().to_string().contains("no documents"));
        assert!(parse_documents(b" \n\n \n").unwrap_err().to_string().contains("no documents"));
        let err = parse_documents(b"ok\n\xff\xfe").unwrap_err().to_string();
        assert!(err.contains("not UTF-8") && err.contains("offset 3"), "{err}");
    }

    #[test]
    fn tokenizer_sorts_characters_and_puts_bos_last() {
        let docs = vec!["héllo".to_string(), "a-b".to_string()];
        let tok = Tokenizer::from_documents(&docs);
        assert_eq!(tok.chars, ['-', 'a', 'b', 'h', 'l', 'o', 'é']);
        assert_eq!(tok.bos(), 7);
        let ids = tok.encode("hé").unwrap();
        assert_eq!(tok.decode(&ids), "hé");
        assert!(tok.encode("x").unwrap_err().to_string().contains("'x'"));
    }

    #[test]
    fn data_files_are_recorded_by_absolute_path_size_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.txt");
        std::fs::write(&path, "abc").unwrap();
        let file = DataFile::of(&path).unwrap();
        assert!(file.path.is_absolute());
        assert_eq!(file.size, 3);
        // sha256("abc"), as sha256sum prints it
        assert_eq!(file.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(file.unchanged_at(&path).unwrap());
        std::fs::write(&path, "abd").unwrap();
        assert!(!file.unchanged_at(&path).unwrap());
    }

    #[test]
    fn long_documents_are_cut_to_block_size() {
        let tok = Tokenizer::from_documents(&["abcdef".to_string()]);
        assert_eq!(doc_tokens(&tok, "abcdef", 4), [6, 0, 1, 2, 3]);
        assert_eq!(doc_tokens(&tok, "ab", 4), [6, 0, 1, 6]);
    }
}
