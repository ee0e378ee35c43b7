//! The `robo-assets` binary: parses the command line, wires resources, runs one command.
//!
//! Exit codes: 0 success, 1 a run failed or something broke, 2 bad input (unknown asset,
//! malformed or out-of-range key, missing upstream, bad configuration), 130 canceled.

mod app;
mod cli;
mod commands;
mod config;
mod progress;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, LogFormat};

/// Bad input: the message says what was wrong and what is valid; exit code 2.
#[derive(Debug)]
pub struct UserError(pub String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// Shorthand for a user error.
pub fn user_error(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError(message.into()))
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything worked.
    Success,
    /// A run ended with failed steps.
    Failure,
    /// The user canceled (Ctrl-C).
    Canceled,
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("warn,robo_assets=info,engine=info,lineage=info,resources=info,assets=info")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).with_target(false).init(),
    }
}

/// `robo-assets … | head` closes stdout early: end quietly, as a Unix tool does on SIGPIPE,
/// instead of printing a panic (Rust ignores SIGPIPE, so `println!` panics on a closed pipe).
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime starts");
    match runtime.block_on(commands::run(cli)) {
        Ok(ExitStatus::Success) => ExitCode::SUCCESS,
        Ok(ExitStatus::Failure) => ExitCode::from(1),
        Ok(ExitStatus::Canceled) => ExitCode::from(130),
        Err(err) => {
            let user = err.downcast_ref::<UserError>().is_some();
            eprintln!("error: {err:#}");
            ExitCode::from(if user { 2 } else { 1 })
        }
    }
}
