//! Files the program keeps for a user: atomic writes and content digests.
//!
//! Everything written for a user to keep (the downloaded data, `checkpoint.json`, `metrics.csv`)
//! goes through [`write_atomic`]: a temporary file beside the target, flushed to the disk, then
//! renamed over it, so a reader sees the old file or the new one, never half of either.
//! [`sha256_hex`] is how a checkpoint recognises its data file and its own weight files.
//! One training run at a time holds a directory: [`lock`] takes an exclusive lock on `DIR/.lock`
//! for the whole run, and the operating system drops it with the process, however the process
//! ends.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Write `bytes` to `path` through a temporary file and a rename, so readers never see half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut file = fs::File::create(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))
    })
}

/// Write `path` through a temporary file that `write` fills, then flush it to the disk and rename
/// it over `path`; on failure the temporary file is removed and `path` left as it was.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = tmp_path(path);
    let written = write(&tmp).and_then(|()| {
        flush(&tmp)?;
        fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
    });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Flush a written file to the disk (opened for writing: Windows flushes no read-only handle).
pub fn flush(path: &Path) -> Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("cannot flush {}", path.display()))
}

/// `path` with `.tmp-PID` appended to its name: where a write goes before its rename.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Flush a directory's entries (new names, renames) to the disk; best effort.
pub fn sync_dir(dir: &Path) {
    if let Ok(file) = fs::File::open(dir) {
        let _ = file.sync_all();
    }
}

/// A name for a new file or folder in `dir` that nothing there has, nor a write of it in progress:
/// `{stem}{suffix}`, else `{stem}-1{suffix}`, `{stem}-2{suffix}`, ...
pub fn unused_name(dir: &Path, stem: &str, suffix: &str) -> String {
    std::iter::once(format!("{stem}{suffix}"))
        .chain((1..).map(|n| format!("{stem}-{n}{suffix}")))
        .find(|name| !dir.join(name).exists() && !tmp_path(&dir.join(name)).exists())
        .expect("an unused name exists")
}

/// SHA-256 of `bytes`, lower-case hex (what `sha256sum` prints).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// Bytes as lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a checkpoint records of one of its files: its size and SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

impl FileDigest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self { size: bytes.len() as u64, sha256: sha256_hex(bytes) }
    }

    /// The digest of the file at `path`, read a piece at a time (a model's weights need not fit
    /// in memory twice).
    pub fn of_file(path: &Path) -> Result<Self> {
        use sha2::Digest;
        let mut file = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let (mut hasher, mut buffer, mut size) = (sha2::Sha256::new(), vec![0; 1 << 20], 0u64);
        loop {
            let n = file.read(&mut buffer).with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            size += n as u64;
        }
        Ok(Self { size, sha256: hex(&hasher.finalize()) })
    }
}

const LOCK_FILE: &str = ".lock";

/// A directory held by one training run; the lock is released when this is dropped or the
/// process ends.
#[derive(Debug)]
pub struct DirLock {
    _file: fs::File,
}

/// Hold `dir` (created if needed) for one training run, or say which process holds it.
pub fn lock(dir: &Path) -> Result<DirLock> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create the output directory {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            // the holder's process id, for the message of a second run
            let _ = file.set_len(0).and_then(|()| write!(file, "{}", std::process::id())).and_then(|()| file.flush());
            Ok(DirLock { _file: file })
        }
        Err(fs::TryLockError::WouldBlock) => Err(in_use(dir, &mut file)),
        Err(fs::TryLockError::Error(err)) => bail!("cannot lock {}: {err}", path.display()),
    }
}

/// Fail as [`lock`] would when another run holds `dir`, without taking the lock or writing
/// anything (so that a refusal leaves the directory as it was).
pub fn check_not_held(dir: &Path) -> Result<()> {
    let Ok(mut file) = fs::File::open(dir.join(LOCK_FILE)) else { return Ok(()) };
    match file.try_lock() {
        Err(fs::TryLockError::WouldBlock) => Err(in_use(dir, &mut file)),
        _ => Ok(()), // free (released when `file` closes), or an error that `lock` will report
    }
}

/// "DIR is in use by another training run (process N)", read from the lock file.
fn in_use(dir: &Path, file: &mut fs::File) -> anyhow::Error {
    let mut holder = String::new();
    let _ = file.read_to_string(&mut holder);
    let holder = match holder.trim() {
        "" => String::new(),
        pid => format!(" (process {pid})"),
    };
    anyhow::anyhow!(
        "{} is in use by another training run{holder}: wait for it to end, or pass another --out",
        dir.display()
    )
}

/// Whether `err` comes from a full disk (also when a library kept only its message).
pub fn is_disk_full(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull) || {
            let text = cause.to_string();
            text.contains("No space left on device") || text.contains("not enough space on the disk")
        }
    })
}
