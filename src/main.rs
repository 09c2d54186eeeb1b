//! The `microgpt` program: parse the command line, dispatch, and turn every error into one
//! line on stderr with a non-zero exit code.

use std::process::ExitCode;

use microgpt_burn::program::checkpoint;
use microgpt_burn::program::cli::{self, Command};
use microgpt_burn::program::commands::{self, Outcome};

/// Panics are bugs (here or in a backend): say so in one line, without a backtrace unless
/// RUST_BACKTRACE asks for one. Panics of Burn's worker threads are caught and returned by
/// Burn as errors, which `main` then reports; they print nothing here. Nor do those of the
/// thread that decodes a checkpoint: they are a damaged file, reported as one line.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some(checkpoint::LOADER_THREAD) {
            return;
        }
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            return default(info);
        }
        if std::thread::current().name() != Some("main") {
            return;
        }
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("error: internal error{at}: {}", message.lines().next().unwrap_or(""));
    }));
}

/// glibc's allocator hands every buffer of 32 MB or more back to the system when it is freed, and
/// trims the heap's free top; the next one of those sizes is then new memory, every page of it
/// faulted in and zeroed by the kernel. A forward pass frees and allocates such buffers at every
/// layer (GPT-2's activations, logits and attention weights), so keep what is freed for reuse:
/// GPT-2 124M's evaluation runs about 20% faster (docs/PERFORMANCE.md), the peak memory the same.
/// Other allocators (macOS, Windows, musl) are left as they are.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: called first in main, before any other thread exists; mallopt only sets
    // allocator parameters (a refused value leaves the default)
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20); // the largest glibc takes
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

/// Rust ignores SIGPIPE, so that printing into a closed pipe (`microgpt sample | head -3`) is an
/// error, which `println!` turns into a panic. A Unix program ends quietly there instead: give
/// SIGPIPE its default action back. What a run saved is whole either way (files are written
/// aside and renamed).
#[cfg(unix)]
fn end_quietly_on_closed_pipes() {
    // SAFETY: called first in main, before any other thread exists; sets one signal's action
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    #[cfg(unix)]
    end_quietly_on_closed_pipes();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    keep_freed_memory();
    install_panic_hook();
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            // clap's first paragraph, on one line (the usage and tips that follow are noise here)
            let text = err.to_string();
            let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            eprintln!("{}", first.join(" "));
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        None => commands::train(&cli.train, false), // the reference's output and nothing more
        Some(Command::Train(args)) => commands::train(args, true),
        Some(Command::Sample(args)) => commands::sample(args),
        Some(Command::Eval(args)) => commands::eval(args),
        Some(Command::Inspect(args)) => commands::inspect(args),
    };
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
