//! One module per command group.

mod agent;
mod approvals;
mod audit;
mod cert;
mod explain;
mod init;
mod keys;
mod policy;
mod secret;
mod serve;
mod task;
mod token;
mod user;

use crate::Outcome;
use crate::cli::{Cli, Command};

pub async fn run(cli: Cli) -> Outcome {
    match &cli.command {
        Command::Init(args) => init::run(args).await,
        Command::Serve => serve::run(&cli).await,
        Command::Agent(cmd) => agent::run(&cli, cmd).await,
        Command::Token(cmd) => token::run(&cli, cmd).await,
        Command::User(cmd) => user::run(&cli, cmd).await,
        Command::Task(cmd) => task::run(&cli, cmd).await,
        Command::Approvals(cmd) => approvals::run(&cli, cmd).await,
        Command::Key(cmd) => keys::run_key(&cli, cmd).await,
        Command::Ca(cmd) => keys::run_ca(&cli, cmd).await,
        Command::Secret(cmd) => secret::run(&cli, cmd).await,
        Command::Policy(cmd) => policy::run(&cli, cmd).await,
        Command::Audit(cmd) => audit::run(&cli, cmd).await,
    }
}

/// Now, in seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `unix` (seconds since the epoch) in RFC 3339 UTC; the number itself if
/// it is out of range.
pub fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// Now, RFC 3339 UTC.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Appends an operator's change to the audit trail: `operation` on
/// `subject` (an agent's name, or `user:NAME`, `upstream:NAME`, ...).
pub async fn audit_change(
    store: &dyn warden_store::Store,
    tenant: &str,
    subject: &str,
    operation: &str,
) -> crate::Outcome {
    use anyhow::Context as _;
    let mut rec = warden_audit::AuditRecord::admin(
        now(),
        tenant,
        &crate::context::operator(),
        None,
        subject,
        operation,
    );
    if subject.contains(':') {
        rec.agent = None;
        rec.resource = Some(subject.to_owned());
    }
    let record = warden_store::NewRecord::of(&rec).context("cannot serialize the audit record")?;
    store
        .append_audit(vec![record])
        .await
        .context("the change was made but could not be audited")?;
    Ok(())
}
