//! OpenAI's four GPT-2 models by name (`gpt2`, `gpt2-medium`, `gpt2-large`, `gpt2-xl`),
//! downloaded from Hugging Face's hub on first use into its own cache, where transformers finds
//! them too (and where a model transformers already fetched is found). A download cut short
//! resumes where it stopped; nothing is taken for a model until both its files are whole.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::program::hf::{CONFIG_FILE, WEIGHTS_FILE, WeightFile};

/// OpenAI's GPT-2 models, by the names transformers gives them, and their hub repositories.
pub const OPENAI_MODELS: [(&str, &str); 4] = [
    ("gpt2", "openai-community/gpt2"),
    ("gpt2-medium", "openai-community/gpt2-medium"),
    ("gpt2-large", "openai-community/gpt2-large"),
    ("gpt2-xl", "openai-community/gpt2-xl"),
];

/// The hub repository of one of OpenAI's models named as transformers names it (`gpt2`, ...).
pub fn openai_repo(name: &str) -> Option<&'static str> {
    OPENAI_MODELS.iter().find(|(n, _)| *n == name).map(|(_, repo)| *repo)
}

/// Hugging Face's cache of hub files: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub` (on every system, as Python's `huggingface_hub` has it).
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return Ok(dir.into());
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return Ok(PathBuf::from(home).join("hub"));
    }
    let home = std::env::home_dir().context("no home directory for Hugging Face's cache: set HF_HOME")?;
    Ok(home.join(".cache").join("huggingface").join("hub"))
}

/// The folder of one of OpenAI's models (`gpt2`, ...) in Hugging Face's cache, downloaded there
/// first when the cache lacks it. Transformers' name for the repository (`gpt2`) and the hub's
/// (`openai-community/gpt2`) are both looked for.
pub fn openai_model(name: &str) -> Result<PathBuf> {
    let repo = openai_repo(name).with_context(|| format!("{name} is not one of OpenAI's GPT-2 models"))?;
    let cache = cache_dir()?;
    for id in [name, repo] {
        if let Some(dir) = cached(&cache, id) {
            return Ok(dir);
        }
    }
    if std::env::var_os("HF_HUB_OFFLINE").is_some_and(|v| v != "0") {
        bail!("{name} is not in Hugging Face's cache ({}) and HF_HUB_OFFLINE is set", cache.display());
    }
    download(&cache, repo).map_err(|err| {
        anyhow::anyhow!(
            "downloading {name} from {} failed ({err:#}); run again to resume, or give --checkpoint a folder holding config.json and model.safetensors",
            endpoint()
        )
    })
}

/// A repository's root in the cache: `models--{owner}--{name}`.
fn repo_dir(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--")))
}

/// A repository's folder in the cache: `models--{owner}--{name}/snapshots/{commit}`, the commit
/// that `refs/main` names, when both of our files are there.
fn cached(cache: &Path, repo: &str) -> Option<PathBuf> {
    let root = repo_dir(cache, repo);
    let commit = fs::read_to_string(root.join("refs").join("main")).ok()?;
    let dir = root.join("snapshots").join(commit.trim());
    [CONFIG_FILE, WEIGHTS_FILE].iter().all(|f| dir.join(f).is_file()).then_some(dir)
}

/// The hub's address: `$HF_ENDPOINT` (a mirror, as Python's `huggingface_hub` reads it), else
/// huggingface.co.
pub fn endpoint() -> String {
    let given = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty());
    given.as_deref().unwrap_or("https://huggingface.co").trim_end_matches('/').to_string()
}

/// Download `config.json` and `model.safetensors` of `repo` into the cache's layout. Each file
/// is written beside its place as `.incomplete` and renamed when whole; `refs/main` is written
/// last, so an interrupted download is never taken for a model. The next run resumes an
/// `.incomplete` file where it stopped (an HTTP range), or starts it again where the server
/// cannot resume.
fn download(cache: &Path, repo: &str) -> Result<PathBuf> {
    let root = repo_dir(cache, repo);
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_connect(Some(Duration::from_secs(30))).build().into();
    // config.json, from the commit `main` names now: the folder, and the revision, of the weights
    let url = format!("{}/{repo}/resolve/main/{CONFIG_FILE}", endpoint());
    let response = agent.get(&url).call().with_context(|| format!("GET {url}"))?;
    let served = response.headers().get("x-repo-commit").and_then(|v| v.to_str().ok());
    // a folder's name: a commit's hex digits, or nothing a mirror could make a path of
    let served = served.filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric())).map(str::to_string);
    let commit = served.clone().unwrap_or_else(|| "main".to_string());
    let dir = root.join("snapshots").join(&commit);
    fetch(&agent, &url, &dir, CONFIG_FILE, Some(response))?;
    // without the commit (a mirror that does not say it), what a former run left may be of
    // another revision: not resumed
    if served.is_none() {
        let _ = fs::remove_file(dir.join(format!("{WEIGHTS_FILE}.incomplete")));
    }
    let url = format!("{}/{repo}/resolve/{commit}/{WEIGHTS_FILE}", endpoint());
    fetch(&agent, &url, &dir, WEIGHTS_FILE, None)?;
    // a server that gave no length may have closed early: the file's own header says its size
    if let Err(err) = weights_whole(&dir.join(WEIGHTS_FILE)) {
        let _ = fs::remove_file(dir.join(WEIGHTS_FILE));
        return Err(err);
    }
    fs::create_dir_all(root.join("refs"))?;
    crate::program::files::write_atomic(&root.join("refs").join("main"), commit.as_bytes())?;
    Ok(root.join("snapshots").join(commit))
}

/// `url` into `dir/file`, through `dir/file.incomplete`: resumed from the bytes a former run left
/// there, unless `response` is the answer already asked for from the start.
fn fetch(agent: &ureq::Agent, url: &str, dir: &Path, file: &str, response: Option<Response>) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (path, part) = (dir.join(file), dir.join(format!("{file}.incomplete")));
    let have = fs::metadata(&part).map_or(0, |m| m.len());
    let response = match response {
        Some(response) => response,
        None if have > 0 => {
            match agent.get(url).header("Range", format!("bytes={have}-")).call() {
                Err(ureq::Error::StatusCode(416)) => agent.get(url).call(), // nothing past it: again
                answer => answer,
            }
            .with_context(|| format!("GET {url}"))?
        }
        None => agent.get(url).call().with_context(|| format!("GET {url}"))?,
    };
    // 206: the rest of the file, after the bytes we have; anything else: the whole file
    let from = match response.status().as_u16() {
        206 if rest_after(&response, have) => have,
        206 => {
            let _ = fs::remove_file(&part); // the next run starts the file anew
            bail!("the server sent another part of {file} than the one after the {have} bytes already here");
        }
        _ => 0,
    };
    if from > 0 {
        eprintln!("resuming {url} at {from} bytes, into {}", path.display());
    } else {
        eprintln!("downloading {url} to {}", path.display());
    }
    write_body(response, &part, from)?;
    fs::rename(&part, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// Whether a downloaded weight file is whole: its header read, and its tensors' bytes there.
fn weights_whole(path: &Path) -> Result<()> {
    let mut file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    WeightFile::header(&mut file).map(|_| ()).map_err(|why| anyhow::anyhow!("the file arrived incomplete ({why})"))
}

/// Whether a 206 answer's `Content-Range` (`bytes FIRST-LAST/SIZE`) is the rest of the file after
/// the `have` bytes of the `.incomplete` one: from there to its end.
fn rest_after(response: &Response, have: u64) -> bool {
    let range = response.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
    let parse = |range: &str| -> Option<(u64, u64, u64)> {
        let (span, size) = range.strip_prefix("bytes ")?.split_once('/')?;
        let (first, last) = span.split_once('-')?;
        Some((first.parse().ok()?, last.parse().ok()?, size.parse().ok()?))
    };
    parse(range).is_some_and(|(first, last, size)| first == have && first <= last && last.checked_add(1) == Some(size))
}

type Response = ureq::http::Response<ureq::Body>;

/// A response's body into the file `path` from byte `from` on (what is there before it kept), with
/// a progress bar, checked against its announced length.
fn write_body(response: Response, path: &Path, from: u64) -> Result<()> {
    let total = response.body().content_length().map(|n| from.saturating_add(n));
    let bar = indicatif::ProgressBar::new(total.unwrap_or(0)).with_style(
        indicatif::ProgressStyle::with_template("{bytes}/{total_bytes} {wide_bar} {bytes_per_sec}, {eta}")
            .expect("a valid template"),
    );
    let mut reader = response.into_body().into_reader();
    let mut out = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(from == 0)
        .append(from > 0)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let (mut buffer, mut got) = (vec![0; 1 << 20], from);
    bar.set_position(got);
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        out.write_all(&buffer[..n]).with_context(|| format!("cannot write {}", path.display()))?;
        got += n as u64;
        bar.set_position(got);
    }
    bar.finish_and_clear();
    if let Some(total) = total.filter(|&t| t != got) {
        bail!("the connection closed after {got} of {total} bytes");
    }
    out.sync_all()?;
    Ok(())
}
