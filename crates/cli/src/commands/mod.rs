//! One module per command group.

mod agent;
mod audit;
mod init;
mod policy;
mod serve;
mod token;

use crate::Outcome;
use crate::cli::{Cli, Command};

pub async fn run(cli: Cli) -> Outcome {
    match &cli.command {
        Command::Init(args) => init::run(args).await,
        Command::Serve => serve::run(&cli).await,
        Command::Agent(cmd) => agent::run(&cli, cmd).await,
        Command::Token(cmd) => token::run(&cli, cmd).await,
        Command::Policy(cmd) => policy::run(&cli, cmd).await,
        Command::Audit(cmd) => audit::run(&cli, cmd).await,
    }
}

/// Now, RFC 3339 UTC.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
