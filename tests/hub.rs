//! `--checkpoint gpt2` downloading OpenAI's model into Hugging Face's cache, against a stand-in
//! for the hub on this machine (`HF_ENDPOINT`, as a mirror is given) that answers as
//! huggingface.co does: `config.json` with the commit it was served from, the weights behind a
//! redirect, byte ranges for a resumed download. The files served are the GPT-2 fixture's.

#![cfg(feature = "cpu")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const COMMIT: &str = "607a30d783dfa663caf39e06633721c8d4cfcd7e";

/// What the stand-in serves and how it behaves; changed between runs.
#[derive(Default)]
struct Behaviour {
    /// Close the connection halfway through the weights.
    cut: AtomicBool,
    /// Ignore `Range` and send the whole file, as a server that cannot resume.
    no_ranges: AtomicBool,
    /// Answer a range with a part from the file's start (a server that errs).
    wrong_range: AtomicBool,
    /// Answer a range with less than the rest of the file (a server that caps its answers).
    short_range: AtomicBool,
    /// Send the weights without a `Content-Length` (the connection's end ends them).
    no_length: AtomicBool,
    /// Every request's path and `Range` header, in order.
    requests: Mutex<Vec<(String, Option<String>)>>,
}

/// The stand-in hub: its address, and its behaviour to change and inspect.
struct Hub {
    url: String,
    behaviour: Arc<Behaviour>,
}

impl Hub {
    fn start() -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let behaviour = Arc::new(Behaviour::default());
        let (shared, base) = (behaviour.clone(), url.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let _ = answer(stream.unwrap(), &shared, &base); // a client gone mid-answer is fine
            }
        });
        Hub { url, behaviour }
    }

    /// The ranges asked of the weights' file.
    fn ranges(&self) -> Vec<String> {
        let requests = self.behaviour.requests.lock().unwrap();
        requests.iter().filter(|(path, _)| path.starts_with("/cdn/")).filter_map(|(_, range)| range.clone()).collect()
    }
}

fn hub_file(name: &str) -> Vec<u8> {
    std::fs::read(common::reference("gpt2").join("hub").join(name)).unwrap()
}

/// One request, one answer, and the connection closed.
fn answer(mut stream: TcpStream, behaviour: &Behaviour, base: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_string());
        }
    }
    behaviour.requests.lock().unwrap().push((path.clone(), range.clone()));
    let head = |status: &str, headers: &[(&str, String)]| {
        let mut text = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (name, value) in headers {
            text += &format!("{name}: {value}\r\n");
        }
        text + "\r\n"
    };
    match path.as_str() {
        "/openai-community/gpt2/resolve/main/config.json" => {
            let body = hub_file("config.json");
            let len = body.len().to_string();
            stream
                .write_all(head("200 OK", &[("x-repo-commit", COMMIT.into()), ("Content-Length", len)]).as_bytes())?;
            stream.write_all(&body)
        }
        // the weights of the commit config.json came from, as the program asks for them
        p if p == format!("/openai-community/gpt2/resolve/{COMMIT}/model.safetensors") => {
            let to = format!("{base}/cdn/model.safetensors");
            let headers = [("x-repo-commit", COMMIT.into()), ("Location", to), ("Content-Length", "0".into())];
            stream.write_all(head("302 Found", &headers).as_bytes())
        }
        "/cdn/model.safetensors" => {
            let body = hub_file("model.safetensors");
            let from = range
                .filter(|_| !behaviour.no_ranges.load(Ordering::SeqCst))
                .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse::<usize>().ok());
            let (status, rest, mut headers) = match from {
                Some(from) => {
                    let from = if behaviour.wrong_range.load(Ordering::SeqCst) { 0 } else { from };
                    let end = if behaviour.short_range.load(Ordering::SeqCst) { body.len() - 10 } else { body.len() };
                    let range = format!("bytes {from}-{}/{}", end - 1, body.len());
                    ("206 Partial Content", &body[from..end], vec![("Content-Range", range)])
                }
                None => ("200 OK", &body[..], vec![]),
            };
            if !behaviour.no_length.load(Ordering::SeqCst) {
                headers.push(("Content-Length", rest.len().to_string()));
            }
            stream.write_all(head(status, &headers).as_bytes())?;
            let sent = if behaviour.cut.load(Ordering::SeqCst) { &rest[..rest.len() / 2] } else { rest };
            stream.write_all(sent)
        }
        _ => stream.write_all(head("404 Not Found", &[("Content-Length", "0".into())]).as_bytes()),
    }
}

/// `sample --checkpoint gpt2` (greedy, 4 tokens) with the cache and hub given.
fn sample_gpt2(dir: &Path, cache: &Path, endpoint: &str) -> Output {
    common::command(dir)
        .args(["sample", "--checkpoint", "gpt2", "--prefix", "Hello", "--num-tokens", "4", "--top-k", "1"])
        .env("HF_HUB_CACHE", cache)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap()
}

/// The snapshot folder the download writes to.
fn snapshot(cache: &Path) -> PathBuf {
    cache.join("models--openai-community--gpt2/snapshots").join(COMMIT)
}

/// A failed run's last stderr line, checked to be an error and no panic.
fn last_error(out: &Output) -> String {
    let err = common::stderr(out);
    assert!(!out.status.success(), "expected a failure: {err}");
    assert!(!err.contains("panicked"), "a panic: {err}");
    err.lines().last().unwrap().to_string()
}

/// Cut halfway, the download fails in a line and leaves no model (no `refs/main`, the weights
/// only as `.incomplete`); the next run resumes from those bytes with a range, then samples as
/// the same model read from a folder does; the run after downloads nothing.
#[test]
fn a_model_by_name_is_downloaded_into_the_cache_and_resumed_when_cut() {
    let (dir, cache, hub) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), Hub::start());
    let weights = hub_file("model.safetensors");

    hub.behaviour.cut.store(true, Ordering::SeqCst);
    let err = last_error(&sample_gpt2(dir.path(), cache.path(), &hub.url));
    assert!(
        err.starts_with("error: downloading gpt2 from http://127.0.0.1:") && err.contains("run again to resume"),
        "{err}"
    );
    let root = cache.path().join("models--openai-community--gpt2");
    assert!(!root.join("refs/main").exists(), "an interrupted download must not be taken for a model");
    assert!(!snapshot(cache.path()).join("model.safetensors").exists());
    let part = std::fs::read(snapshot(cache.path()).join("model.safetensors.incomplete")).unwrap();
    assert!(!part.is_empty() && part.len() < weights.len() && weights.starts_with(&part), "{}", part.len());

    hub.behaviour.cut.store(false, Ordering::SeqCst);
    let out = sample_gpt2(dir.path(), cache.path(), &hub.url);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(hub.ranges(), [format!("bytes={}-", part.len())], "resumed where it stopped");
    assert!(common::stderr(&out).contains("resuming"), "{}", common::stderr(&out));
    assert_eq!(std::fs::read(snapshot(cache.path()).join("model.safetensors")).unwrap(), weights);
    assert_eq!(std::fs::read_to_string(root.join("refs/main")).unwrap(), COMMIT);
    assert!(!snapshot(cache.path()).join("model.safetensors.incomplete").exists());

    let folder = common::reference("gpt2").join("hub");
    let from_folder = common::command(dir.path())
        .args(["sample", "--checkpoint", folder.to_str().unwrap(), "--prefix", "Hello", "--num-tokens", "4"])
        .args(["--top-k", "1"])
        .output()
        .unwrap();
    let first_line = |out: &Output| common::stdout(out).lines().next().unwrap().to_string();
    assert_eq!(first_line(&out), first_line(&from_folder));

    let served = hub.behaviour.requests.lock().unwrap().len();
    let again = sample_gpt2(dir.path(), cache.path(), &hub.url);
    assert!(again.status.success(), "{}", common::stderr(&again));
    assert_eq!(hub.behaviour.requests.lock().unwrap().len(), served, "a cached model is not downloaded again");
    assert_eq!(first_line(&again), first_line(&out));
}

/// A server that answers a range with the whole file: the download starts again and the file is
/// whole, not the old bytes with the whole file after them.
#[test]
fn a_server_that_cannot_resume_starts_the_file_again() {
    let (dir, cache, hub) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), Hub::start());
    hub.behaviour.cut.store(true, Ordering::SeqCst);
    last_error(&sample_gpt2(dir.path(), cache.path(), &hub.url));
    hub.behaviour.cut.store(false, Ordering::SeqCst);
    hub.behaviour.no_ranges.store(true, Ordering::SeqCst);
    let out = sample_gpt2(dir.path(), cache.path(), &hub.url);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(hub.ranges().len(), 1, "a range was asked for");
    assert_eq!(std::fs::read(snapshot(cache.path()).join("model.safetensors")).unwrap(), hub_file("model.safetensors"));
}

/// A server that answers a range with another part of the file, or with less than its rest:
/// refused, the part already here thrown away, and the next run downloads the file whole.
#[test]
fn a_wrong_range_is_refused_and_the_file_started_again() {
    for wrong in ["wrong_range", "short_range"] {
        let (dir, cache, hub) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), Hub::start());
        hub.behaviour.cut.store(true, Ordering::SeqCst);
        last_error(&sample_gpt2(dir.path(), cache.path(), &hub.url));
        hub.behaviour.cut.store(false, Ordering::SeqCst);
        let flag = if wrong == "wrong_range" { &hub.behaviour.wrong_range } else { &hub.behaviour.short_range };
        flag.store(true, Ordering::SeqCst);
        let err = last_error(&sample_gpt2(dir.path(), cache.path(), &hub.url));
        assert!(err.contains("the server sent another part of model.safetensors"), "{wrong}: {err}");
        assert!(!snapshot(cache.path()).join("model.safetensors.incomplete").exists(), "{wrong}");
        assert!(!cache.path().join("models--openai-community--gpt2/refs/main").exists(), "{wrong}");
        flag.store(false, Ordering::SeqCst);
        let out = sample_gpt2(dir.path(), cache.path(), &hub.url);
        assert!(out.status.success(), "{wrong}: {}", common::stderr(&out));
        let weights = std::fs::read(snapshot(cache.path()).join("model.safetensors")).unwrap();
        assert_eq!(weights, hub_file("model.safetensors"), "{wrong}");
    }
}

/// A server that sends no length and closes early: what arrived is not taken for the model (its
/// own header says it is short), and the next run downloads it whole.
#[test]
fn weights_cut_short_without_a_length_are_not_kept() {
    let (dir, cache, hub) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), Hub::start());
    hub.behaviour.no_length.store(true, Ordering::SeqCst);
    hub.behaviour.cut.store(true, Ordering::SeqCst);
    let err = last_error(&sample_gpt2(dir.path(), cache.path(), &hub.url));
    assert!(err.contains("the file arrived incomplete"), "{err}");
    assert!(!snapshot(cache.path()).join("model.safetensors").exists());
    assert!(!cache.path().join("models--openai-community--gpt2/refs/main").exists());
    hub.behaviour.cut.store(false, Ordering::SeqCst);
    let out = sample_gpt2(dir.path(), cache.path(), &hub.url);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(std::fs::read(snapshot(cache.path()).join("model.safetensors")).unwrap(), hub_file("model.safetensors"));
}

/// No hub at the address: one line that says what failed and what to do.
#[test]
fn an_unreachable_hub_is_one_line() {
    let (dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let err = common::one_line_error(&sample_gpt2(dir.path(), cache.path(), "http://127.0.0.1:9"));
    assert!(
        err.contains("downloading gpt2 from http://127.0.0.1:9 failed") && err.contains("--checkpoint a folder"),
        "{err}"
    );
    assert!(!cache.path().join("models--openai-community--gpt2/refs/main").exists());
}
