//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Warden: a Zero Trust gateway and control plane for AI agents.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about, propagate_version = true)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        default_value = "warden.toml",
        env = "WARDEN_CONFIG"
    )]
    pub config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The tenant to act in (default: `identity.default_tenant`); it must
    /// be served (`[[tenants]]`).
    #[arg(long, global = true, env = "WARDEN_TENANT")]
    pub tenant: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a working directory: config, policies, signing key, database.
    Init(InitArgs),
    /// Run the gateway and the admin API.
    Serve,
    /// Manage agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Issue access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage the users of Warden's own directory.
    #[command(subcommand)]
    User(UserCommand),
    /// Rotate the token signing key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage Warden's certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Store upstream credentials (sealed at rest; never shown again).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Just-in-time task grants.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Held actions waiting for human approval.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Check policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Inspect and verify the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// `warden init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The directory to create (it may exist, but none of Warden's files may).
    pub dir: PathBuf,
    /// Copy `warden.toml` and `policies/` from this example directory.
    #[arg(long)]
    pub example: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `warden agent …`.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Register an agent (active).
    Create {
        /// The agent's name.
        name: String,
        /// Who is responsible for it.
        #[arg(long)]
        owner: Option<String>,
        /// What it is for.
        #[arg(long)]
        purpose: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List agents.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one agent.
    Show {
        /// The agent's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Suspend an agent: refused from its next request on.
    Suspend(AgentRef),
    /// Resume a suspended agent.
    Resume(AgentRef),
    /// Revoke an agent for good.
    Revoke(AgentRef),
    /// Retire an agent (planned end of service; final, like revoke).
    Retire(AgentRef),
    /// Rotate an agent's credentials: every token and certificate issued
    /// before now is refused from its next use on.
    Rotate(AgentRef),
    /// Issue a certificate for the agent, from its CSR (`--csr`) or with a
    /// key made here (`--out DIR` writes cert.pem, key.pem, ca.pem).
    Cert {
        /// The agent's name.
        name: String,
        /// The agent's certificate signing request (PEM).
        #[arg(long, conflicts_with = "out", required_unless_present = "out")]
        csr: Option<PathBuf>,
        /// Make a key pair here and write cert.pem, key.pem and ca.pem to DIR.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Lifetime, e.g. `1h` (default: `identity.cert_ttl`).
        #[arg(long)]
        ttl: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the certificates issued to an agent.
    Certs(AgentRef),
    /// Revoke one certificate of an agent by serial number.
    RevokeCert {
        /// The agent's name.
        name: String,
        /// The certificate's serial number (hex).
        serial: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `warden approvals …`.
#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// List approvals (pending ones unless `--all`).
    List {
        /// Every approval, decided ones too.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one approval: the exact payload, target, side effects, agent,
    /// user, task, risk, rationale and reviews.
    Show {
        /// The approval id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve, as a user with the approver role.
    Approve {
        /// The approval id.
        id: String,
        /// The approving user.
        #[arg(long = "as", value_name = "USER")]
        reviewer: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Withdraw a pending or approved (not yet executed) approval, as a user
    /// with the approver role.
    Cancel {
        /// The approval id.
        id: String,
        /// The user withdrawing it.
        #[arg(long = "as", value_name = "USER")]
        reviewer: String,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
    /// Deny, as a user with the approver role.
    Deny {
        /// The approval id.
        id: String,
        /// The denying user.
        #[arg(long = "as", value_name = "USER")]
        reviewer: String,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
}

/// `warden task …`.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Open a task: the agent may use `--allow` tools until it ends or
    /// expires; prints the task id and a token scoped to it.
    Start {
        /// The agent.
        #[arg(long)]
        agent: String,
        /// The user the agent acts for during the task.
        #[arg(long)]
        user: Option<String>,
        /// What the task is for (shown in decisions and the audit trail).
        #[arg(long)]
        purpose: String,
        /// A tool the task grants, `upstream.tool` (repeatable).
        #[arg(long = "allow", required = true)]
        allow: Vec<String>,
        /// Lifetime, e.g. `30m` (default: `tasks.default_ttl`).
        #[arg(long)]
        ttl: Option<String>,
        /// Print `{"id": …, "token": …, "expires_at": …}`.
        #[arg(long)]
        json: bool,
    },
    /// End a task: its grant and every token tied to it stop at once.
    End {
        /// The task id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A fresh token for an open task (tokens live at most
    /// `identity.max_token_ttl`).
    Token {
        /// The task id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the tasks.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `warden user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user to the directory.
    Create {
        /// The user's name.
        name: String,
        /// `approver`, `admin`, `auditor` or `member`.
        #[arg(long, default_value = "member")]
        role: String,
        /// A group the user belongs to (repeatable); approval thresholds
        /// may require reviewers from named groups.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace a user's groups (none: no groups).
    Groups {
        /// The user's name.
        name: String,
        /// The groups.
        groups: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set the user's web console password, read from standard input (one
    /// line, at least 12 characters); stored as an Argon2id hash.
    Password {
        /// The user's name.
        name: String,
        /// Remove the password instead (login links still work).
        #[arg(long)]
        clear: bool,
    },
    /// Print a one-time web console login link for the user.
    LoginLink {
        /// The user's name.
        name: String,
        /// How long the link works (at most 24h).
        #[arg(long, default_value = "15m")]
        ttl: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the directory's users.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: no new delegation for them.
    Disable(UserRef),
    /// Enable a disabled user.
    Enable(UserRef),
    /// Issue a user token (the `subject_token` of a token exchange).
    Token {
        /// The user's name.
        name: String,
        /// Lifetime (default: `identity.token_ttl`).
        #[arg(long)]
        ttl: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A user named on the command line.
#[derive(Debug, Args)]
pub struct UserRef {
    /// The user's name.
    pub name: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `warden key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// A new key signs from now on; the old one keeps verifying the tokens
    /// it signed until they expire. A running gateway picks it up.
    Rotate {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `warden ca …`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the CA (if `warden init` did not).
    Init,
    /// Replace the CA; the old one stays trusted (certificates it issued
    /// keep working until they expire) unless `--drop-previous`.
    Rotate {
        /// Trust only the new CA from now on.
        #[arg(long)]
        drop_previous: bool,
    },
    /// Print the trust bundle (PEM), for clients to trust the gateway.
    Bundle,
}

/// `warden secret …`.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store the credential of an upstream (or of one user for it), read
    /// from standard input or an environment variable.
    Set {
        /// The upstream.
        upstream: String,
        /// The user it is for (a per-user secret).
        #[arg(long)]
        user: Option<String>,
        /// Read the value from this environment variable instead of stdin.
        #[arg(long)]
        from_env: Option<String>,
    },
    /// List where secrets are stored (never their values).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a stored secret.
    Delete {
        /// The upstream.
        upstream: String,
        /// The user it is for.
        #[arg(long)]
        user: Option<String>,
    },
}

/// An agent named on the command line.
#[derive(Debug, Args)]
pub struct AgentRef {
    /// The agent's name.
    pub name: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `warden token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue an access token for an agent (optionally acting for a user), or
    /// an admin API token.
    Issue {
        /// The agent.
        #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
        agent: Option<String>,
        /// The human the agent acts for (RFC 8693 delegation).
        #[arg(long, requires = "agent")]
        user: Option<String>,
        /// An admin API token for this operator instead.
        #[arg(long)]
        admin: Option<String>,
        /// The operator's role (with --admin).
        #[arg(long, default_value = "admin", requires = "admin")]
        role: String,
        /// Lifetime, e.g. `10m`, `1h` (default: `identity.token_ttl`).
        #[arg(long)]
        ttl: Option<String>,
        /// Print `{"token": …, "expires_at": …}`.
        #[arg(long)]
        json: bool,
    },
}

/// `warden policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate the policy directory against the Cedar schema.
    Check {
        /// Ask the configured upstreams for their tool lists instead of
        /// using the catalogs Warden recorded.
        #[arg(long)]
        live: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the policy versions Warden has run, newest first.
    History {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put an earlier policy version back in the policy folder (a running
    /// gateway picks it up); it must still validate.
    Rollback {
        /// The version (or a unique prefix of at least 6 characters).
        #[arg(value_name = "VERSION")]
        target: String,
    },
    /// Run decision test cases (TOML `[[case]]` tables) against the
    /// policies: exit 1 if any case fails, 3 if the file is malformed.
    Test {
        /// The case file.
        file: PathBuf,
        /// Tool catalogs as JSON (`{"upstream": [tool definitions]}`)
        /// instead of the recorded ones.
        #[arg(long)]
        catalogs: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `warden audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify every record, the Merkle tree over them and every signed
    /// checkpoint; names the first problem.
    Verify {
        /// Verify an export (`warden audit export --out DIR`) instead of the
        /// database; needs no config.
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
        /// The log's public key (a note verifier key, as printed by
        /// `warden audit public-key`). Default: derived from `[audit] key`.
        /// Required with `--from`: trust a key you hold, not the export's.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// A checkpoint kept elsewhere (repeatable): the log must still
        /// hold its records unchanged, which catches records and
        /// checkpoints cut off the end together.
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign a checkpoint over every record now.
    Checkpoint {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// An inclusion proof: record SEQ is in the tree of a signed checkpoint.
    Prove {
        /// The record's sequence number.
        seq: u64,
        /// The checkpoint's tree size. Default: the latest checkpoint.
        #[arg(long)]
        size: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A consistency proof: the checkpoint of size OLD is a prefix of the
    /// one of size NEW (the log only grew).
    Consistency {
        /// The older checkpoint's tree size.
        old: u64,
        /// The newer checkpoint's tree size.
        new: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the records, the checkpoints and the public key to a directory,
    /// for verification without the database; or (`--format ocsf`) every
    /// record as an OCSF 1.3 event, one JSON object per line, for a SIEM.
    Export {
        /// The directory (created; must not hold an export already). With
        /// `--format ocsf`, `-` writes to standard output.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// `native` (records, checkpoints, key) or `ocsf` (`ocsf.jsonl`).
        #[arg(long, value_enum, default_value_t = ExportFormat::Native)]
        format: ExportFormat,
    },
    /// Print the log's public key (a note verifier key).
    PublicKey,
    /// Find records (newest first) by agent, user, tool, decision, kind,
    /// request or time, in the tenant (`--tenant`), from indexes.
    Query(AuditQueryArgs),
    /// Explain one record for a human: who, what, the decision and why,
    /// approval, risk, the upstream's outcome, and its integrity.
    Explain {
        /// A record's seq, or a request id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the newest records.
    Tail {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
        /// Keep printing new records.
        #[arg(short, long)]
        follow: bool,
        /// One JSON record per line.
        #[arg(long)]
        json: bool,
    },
}

/// What `warden audit export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Records, checkpoints and the public key: verifiable offline.
    Native,
    /// OCSF 1.3 events, one per line.
    Ocsf,
}

/// `warden audit query`.
#[derive(Debug, Args)]
pub struct AuditQueryArgs {
    /// The agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// The user the agent acted for (for admin records: the operator).
    #[arg(long)]
    pub user: Option<String>,
    /// The tool, `upstream/tool` or `upstream.tool`.
    #[arg(long)]
    pub tool: Option<String>,
    /// The decision.
    #[arg(long, value_parser = ["allow", "deny"])]
    pub decision: Option<String>,
    /// The kind of record.
    #[arg(long, value_parser = ["request", "outcome", "admin"])]
    pub kind: Option<String>,
    /// A request id (its request and outcome records).
    #[arg(long)]
    pub request: Option<String>,
    /// Records from this time: RFC 3339 (`2026-11-23T10:00:00Z`), a date
    /// (`2026-11-23`), or an age (`1h`, `30m`, `7days`).
    #[arg(long)]
    pub since: Option<String>,
    /// Records before this time (same forms).
    #[arg(long)]
    pub until: Option<String>,
    /// Records older than this seq (the next page).
    #[arg(long)]
    pub before: Option<u64>,
    /// How many.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub limit: u32,
    /// One JSON record per line.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    #[test]
    fn the_command_line_is_well_formed() {
        // Checks every subcommand's arguments (unique names, valid groups).
        Cli::command().debug_assert();
    }
}
