//! The data files on disk: a data set known by name ([`Corpus`]), found in `data/` or downloaded
//! when absent, and a data file as a checkpoint records it ([`DataFile`]: its path, size and
//! SHA-256). What a file holds once read (documents or one text, the tokenizer, the split) is
//! `crate::gpt::data`'s.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::gpt::data::{Corpus, Layout, parse_documents, parse_text};
use crate::program::files::{sha256_hex, write_atomic};

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

/// Make sure a named data set's file exists, downloading it from `url` when it does not.
pub fn ensure_named(named: Corpus, url: &str) -> Result<PathBuf> {
    let path = named.path();
    if path.exists() {
        return Ok(path);
    }
    eprintln!("downloading {url} to {}", path.display());
    download(url, &path, named.layout()).map_err(|err| {
        anyhow::anyhow!(
            "{} is missing and downloading it failed ({err:#}): put the file at {} or pass --data PATH",
            path.display(),
            path.display()
        )
    })?;
    Ok(path)
}

fn download(url: &str, path: &Path, layout: Layout) -> Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(60))).build().into();
    let mut body = Vec::new();
    agent.get(url).call()?.into_body().into_reader().read_to_end(&mut body)?;
    match layout {
        Layout::Lines => parse_documents(&body).map(drop),
        Layout::Text => parse_text(&body).map(drop),
    }
    .context("the downloaded file")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(path, &body)
}

/// Resolve the data path: `--data` when given, else the named data set's file (downloaded from
/// `url` when absent).
pub fn resolve_data_path(data: Option<&Path>, named: Corpus, url: &str) -> Result<PathBuf> {
    match data {
        Some(path) => Ok(path.to_path_buf()),
        None => ensure_named(named, url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
