//! The Warden under test: a working directory with a realistic policy set
//! (one policy per permitted agent with argument conditions, plus forbids),
//! many registered agents, and the full pipeline, served in-process.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use warden_config::Config;
use warden_core::{AgentName, TenantId};
use warden_identity::{KeyRing, SigningKey, TokenIssuer};
use warden_store::{NewAgent, SqliteStore, Store};

use crate::upstream::TOOLS;

/// Agents that policies name (the rest are registered, with no policy).
pub const POLICY_AGENTS: usize = 200;

/// The name of agent `i`.
pub fn agent(i: usize) -> String {
    format!("agent-{i}")
}

/// The tool agent `i` calls.
pub fn tool_of(i: usize) -> String {
    format!("lookup_{}", i % TOOLS)
}

/// The benchmark's policy set: one permit per named agent, with argument
/// conditions, and two forbids for everyone.
pub fn policies() -> String {
    let mut out = String::new();
    for i in 0..POLICY_AGENTS {
        out.push_str(&format!(
            "@id(\"p{i}\")\npermit(principal == Warden::Agent::\"{}\", action in [Warden::Action::\"bench/{}\", Warden::Action::\"bench/lookup_{}\"], resource)\nwhen {{ context.args.limit <= 100 && context.args.id like \"c-*\" }};\n",
            agent(i),
            tool_of(i),
            (i + 1) % TOOLS,
        ));
    }
    out.push_str("@id(\"reach\")\npermit(principal, action == Warden::Action::\"connect\", resource == Warden::Upstream::\"bench\");\n");
    out.push_str("@id(\"no-bulk\")\nforbid(principal, action in Warden::Action::\"call_tool\", resource) when { context.args.limit > 1000 };\n");
    out.push_str("@id(\"no-admin-ids\")\nforbid(principal, action in Warden::Action::\"call_tool\", resource) when { context.args.id like \"admin-*\" };\n");
    out
}

/// Writes the working directory and registers `agents` agents.
pub async fn prepare(dir: &Path, upstream: &str, agents: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("policies"))?;
    std::fs::write(
        dir.join("policies/warden.cedarschema"),
        warden_policy::BASE_SCHEMA,
    )?;
    std::fs::write(dir.join("policies/bench.cedar"), policies())?;
    std::fs::write(dir.join("signing.pem"), SigningKey::generate_pem()?)?;
    let config = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[storage]\nurl = \"sqlite://warden.db\"\n[policy]\ndir = \"policies\"\n[identity]\nsigning_key = \"signing.pem\"\nmax_token_ttl = \"24h\"\n[[upstreams]]\nname = \"bench\"\nurl = \"{upstream}\"\n"
    );
    std::fs::write(dir.join("warden.toml"), config)?;
    let config = Config::load(&dir.join("warden.toml"))?;
    let store = SqliteStore::open(&config.storage_url).await?;
    let tenant = TenantId::new("default")?;
    let batch: Vec<NewAgent> = (0..agents)
        .map(|i| {
            Ok(NewAgent {
                tenant: tenant.clone(),
                name: AgentName::new(agent(i))?,
                owner: None,
                purpose: Some("bench".into()),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    store
        .create_agents(batch)
        .await
        .context("registering agents")?;
    Ok(())
}

/// Tokens for the agents that policies permit, one per connection.
pub fn tokens(dir: &Path, count: usize) -> anyhow::Result<Vec<(String, String)>> {
    let config = Config::load(&dir.join("warden.toml"))?;
    let id = &config.identity;
    let issuer = TokenIssuer::new(
        Arc::new(KeyRing::load(&id.signing_key)?),
        &id.issuer,
        &id.audience,
        &id.trust_domain,
        id.max_token_ttl,
    );
    let tenant = TenantId::new("default")?;
    (0..count)
        .map(|i| {
            let i = i % POLICY_AGENTS;
            let token = issuer
                .issue(
                    &tenant,
                    &AgentName::new(agent(i))?,
                    None,
                    Duration::from_secs(3600),
                )?
                .token;
            Ok((token, tool_of(i)))
        })
        .collect()
}

/// Applies `gateway.batch_scheduling` to the calling thread (and so to
/// the threads it starts), as `warden serve` does.
pub fn scheduling(dir: &Path) -> anyhow::Result<()> {
    let config = Config::load(&dir.join("warden.toml"))?;
    if config.gateway.batch_scheduling {
        warden_gateway::sched::use_batch_scheduling().map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(())
}

/// Runs the gateway from `dir` until the process ends.
pub async fn serve(dir: &Path) -> anyhow::Result<()> {
    let config = Config::load(&dir.join("warden.toml"))?;
    let store: Arc<dyn Store> = warden_store::open(&config.storage_url).await?;
    let gateway = warden_gateway::Gateway::start(config, store).await?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let admin = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    println!("listening {}", listener.local_addr()?);
    warden_gateway::serve(gateway, listener, admin, std::future::pending()).await?;
    Ok(())
}
