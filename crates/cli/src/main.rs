//! `warden`: the Zero Trust gateway for AI agents.
//!
//! Exit codes: 0 ok, 1 failure, 2 denied, 3 invalid config or policy.
//! Errors go to stderr as `warden: <message>`.

mod cli;
mod commands;
mod context;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

/// mimalloc: the request path allocates and frees many small objects
/// across threads; glibc's allocator spent a tenth of the gateway's core on
/// them (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A command's failure, with the exit code it maps to.
#[derive(Debug)]
pub enum Failure {
    /// Exit 1.
    Failed(anyhow::Error),
    /// Exit 2.
    Denied(anyhow::Error),
    /// Exit 3.
    Invalid(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Failed(e)
    }
}

/// A command's result.
pub type Outcome = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` starts its logging once it has read `[telemetry]`.
    if !matches!(cli.command, cli::Command::Serve) {
        context::init_logging(&cli, None);
    }
    // Before the runtime starts, so that its threads inherit the policy;
    // `serve` says whether it is in effect once its logging runs.
    if matches!(cli.command, cli::Command::Serve)
        && context::config(&cli).is_ok_and(|c| c.gateway.batch_scheduling)
    {
        let _ = warden_gateway::sched::use_batch_scheduling();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warden: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (code, e) = match failure {
                Failure::Failed(e) => (1, e),
                Failure::Denied(e) => (2, e),
                Failure::Invalid(e) => (3, e),
            };
            let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
            eprintln!("warden: {}", chain.join(": "));
            ExitCode::from(code)
        }
    }
}
