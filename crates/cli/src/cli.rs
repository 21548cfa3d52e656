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
}

/// `warden audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the whole hash chain; names the first bad record.
    Verify {
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
