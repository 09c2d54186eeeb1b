//! The `microgpt` program: parse the command line, dispatch, and turn every error into one
//! line on stderr with a non-zero exit code.

use std::process::ExitCode;

use clap::Parser;
use microgpt_burn::cli::{Cli, Command};
use microgpt_burn::commands::{self, Outcome};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
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
        None => commands::train(&cli.train, false),
        Some(Command::Train(args)) => commands::train(args, true),
        Some(Command::Sample(args)) => commands::sample(args),
        Some(Command::Eval(args)) => commands::eval(args),
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
