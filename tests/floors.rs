//! The tree is the architecture, and the docs describe the code that is there: the learner's
//! floor (`src/gpt`) imports nothing of the program, the speed layer nothing of the program, the
//! backends nothing above them; every Rust name the README and docs/ cite exists in `src/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The lines of code of a file (comments and doc comments left out), numbered from 1.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.split("//").next().unwrap_or("").to_string()))
        .filter(|(_, code)| !code.trim().is_empty())
        .collect()
}

/// Each place in the files under `src/{floor}` whose code names one of the `above` floors.
fn imports_from_above(floor: &str, above: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for path in rust_files(&root().join("src").join(floor)) {
        for (n, code) in code_lines(&path) {
            for name in above {
                if code.contains(&format!("crate::{name}")) || code.contains(&format!("microgpt_burn::{name}")) {
                    found.push(format!("{}:{n}: {}", path.display(), code.trim()));
                }
            }
        }
    }
    found
}

/// The learner's floor imports nothing of the program; the speed layer nothing of the program;
/// the backends nothing of the floors above them.
#[test]
fn each_floor_imports_only_the_floors_below_it() {
    assert_eq!(imports_from_above("gpt", &["program"]), Vec::<String>::new(), "the GPT imports the program");
    assert_eq!(imports_from_above("fast", &["program"]), Vec::<String>::new(), "the speed layer imports the program");
    let above = ["gpt", "fast", "program"];
    assert_eq!(imports_from_above("device", &above), Vec::<String>::new(), "the backends import a floor above");
    // and the check itself can fail: the program does import the GPT
    assert!(!imports_from_above("program", &["gpt"]).is_empty());
}

/// The names each file under `src/` defines: functions, types, traits, modules, constants, and
/// the words that open a line of code (enum variants, struct fields); and its own name.
fn defined_names() -> Vec<(PathBuf, BTreeSet<String>)> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut files = Vec::new();
    for path in rust_files(&root().join("src")) {
        let mut names = BTreeSet::new();
        for (_, code) in code_lines(&path) {
            let words: Vec<&str> = code.split_whitespace().collect();
            for pair in words.windows(2) {
                if ["fn", "struct", "enum", "trait", "mod", "type", "const", "static"].contains(&pair[0]) {
                    names.insert(ident(pair[1]));
                }
            }
            let first = words.iter().find(|w| !["pub", "pub(crate)", "pub(super)"].contains(w));
            if let Some(first) = first {
                names.insert(ident(first));
            }
        }
        files.push((path, names));
    }
    files
}

/// The module a file is: its stem, or its folder's name for a `mod.rs`.
fn module_of(path: &Path) -> String {
    match path.file_stem().unwrap().to_string_lossy().as_ref() {
        "mod" => path.parent().unwrap().file_name().unwrap().to_string_lossy().to_string(),
        stem => stem.to_string(),
    }
}

/// Whether `path`'s parts name things that are there: after a module, a name its file defines
/// (or one of its folder's modules); after a type, a name defined where the type or an `impl` of
/// it is; any name defined somewhere after that.
fn resolves(path: &[&str], files: &[(PathBuf, BTreeSet<String>)]) -> Result<(), String> {
    let anywhere = |name: &str| files.iter().any(|(_, names)| names.contains(name));
    let (first, rest) = (path[0], &path[1..]);
    let homes: Vec<&(PathBuf, BTreeSet<String>)> = files
        .iter()
        .filter(|(p, names)| {
            let text = std::fs::read_to_string(p).unwrap();
            module_of(p) == first
                || p.parent().is_some_and(|d| d.file_name().is_some_and(|d| d == first))
                || (names.contains(first)
                    && (text.contains(&format!("struct {first}"))
                        || text.contains(&format!("enum {first}"))
                        || text.contains(&format!("trait {first}"))))
                || text.contains(&format!("for {first} {{"))
                || text.contains(&format!("impl {first} {{"))
        })
        .collect();
    let second = rest[0];
    let in_home = homes.iter().any(|(p, names)| names.contains(second) || module_of(p) == second);
    if !in_home {
        return Err(format!("{second} is not defined in {first}"));
    }
    match rest[1..].iter().find(|p| !anywhere(p)) {
        Some(part) => Err(format!("{part} is not defined in src/")),
        None => Ok(()),
    }
}

/// The Rust paths cited in backticks in `text` (`a::b`, `a::b::C`, `T::f()`) whose first part
/// is a name of this crate.
fn cited_paths(text: &str, ours: &BTreeSet<String>) -> Vec<String> {
    let mut paths = Vec::new();
    for (i, span) in text.split('`').enumerate() {
        if i % 2 == 0 {
            continue; // outside backticks
        }
        let span = span.trim_end_matches("()");
        let parts: Vec<&str> = span.split("::").collect();
        let is_path = parts.len() >= 2
            && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'));
        let first = parts[0].trim_start_matches("crate");
        if is_path && (ours.contains(parts[0]) || first.is_empty() || parts[0] == "microgpt_burn") {
            paths.push(span.to_string());
        }
    }
    paths
}

/// Every `a::b` the README and docs/ cite, whose first part is one of this crate's modules or
/// types, names things that exist: each later part is defined in `src/`. Burn's and std's names
/// (`Tensor::matmul`, ...) are not this crate's and are not checked.
#[test]
fn every_rust_name_the_docs_cite_exists() {
    let files = defined_names();
    // the crate's own modules and types: what a citation of ours starts with
    let mut ours: BTreeSet<String> = files.iter().map(|(p, _)| module_of(p)).collect();
    for (path, _) in &files {
        for (_, code) in code_lines(path) {
            let words: Vec<&str> = code.split_whitespace().collect();
            for pair in words.windows(2) {
                if ["struct", "enum", "trait", "type"].contains(&pair[0]) {
                    ours.insert(pair[1].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
                }
            }
        }
    }
    let mut docs = vec![root().join("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    docs.extend(pages);
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for path in cited_paths(&text, &ours) {
            checked += 1;
            let parts: Vec<&str> = path.split("::").filter(|p| *p != "crate" && *p != "microgpt_burn").collect();
            if parts.len() < 2 {
                continue;
            }
            if let Err(why) = resolves(&parts, &files) {
                missing.push(format!("{}: `{path}`: {why}", doc.display()));
            }
        }
    }
    assert!(checked > 20, "the docs cite {checked} of the crate's names: the check finds them");
    assert_eq!(missing, Vec::<String>::new());
}
