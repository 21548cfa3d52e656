//! `warden agent create|list|show|suspend|resume|revoke|retire|rotate`, and
//! the certificate commands (in `cert`).

use anyhow::{Context as _, anyhow};
use warden_core::{AgentName, AgentState};
use warden_store::{Agent, NewAgent, Store, StoreError};

use super::audit_change;
use crate::cli::{AgentCommand, Cli};
use crate::context::{config, print_json, store, tenant};
use crate::{Failure, Outcome};

pub fn name(raw: &str) -> Result<AgentName, Failure> {
    AgentName::new(raw).map_err(|e| Failure::Failed(anyhow!(e)))
}

fn show(agent: &Agent, json: bool) -> Outcome {
    if json {
        return print_json(agent);
    }
    println!("agent    {}", agent.name);
    println!("tenant   {}", agent.tenant);
    println!("state    {}", agent.state);
    println!("owner    {}", agent.owner.as_deref().unwrap_or("-"));
    println!("purpose  {}", agent.purpose.as_deref().unwrap_or("-"));
    println!("created  {}", agent.created_at);
    println!("updated  {}", agent.updated_at);
    Ok(())
}

async fn audit(store: &dyn Store, tenant: &str, agent: &AgentName, operation: &str) -> Outcome {
    audit_change(store, tenant, agent.as_str(), operation).await
}

pub async fn run(cli: &Cli, cmd: &AgentCommand) -> Outcome {
    let config = config(cli)?;
    let store = store(&config).await?;
    let tenant = tenant(cli, &config)?;
    match cmd {
        AgentCommand::Create {
            name: raw,
            owner,
            purpose,
            json,
        } => {
            let name = name(raw)?;
            let new = NewAgent {
                tenant: tenant.clone(),
                name: name.clone(),
                owner: owner.clone(),
                purpose: purpose.clone(),
            };
            let agent = store
                .create_agent(new)
                .await
                .context("cannot create the agent")?;
            audit(store.as_ref(), tenant.as_str(), &name, "agent.create").await?;
            if *json {
                print_json(&agent)
            } else {
                println!(
                    "created agent `{}` in tenant `{}`",
                    agent.name, agent.tenant
                );
                Ok(())
            }
        }
        AgentCommand::List { json } => {
            let agents = store
                .list_agents(&tenant)
                .await
                .context("cannot list agents")?;
            if *json {
                return print_json(&serde_json::json!({ "agents": agents }));
            }
            println!("{:<32} {:<10} {:<20} PURPOSE", "NAME", "STATE", "OWNER");
            for a in agents {
                println!(
                    "{:<32} {:<10} {:<20} {}",
                    a.name,
                    a.state,
                    a.owner.as_deref().unwrap_or("-"),
                    a.purpose.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        AgentCommand::Show { name: raw, json } => {
            let name = name(raw)?;
            let agent = store
                .agent(&tenant, &name)
                .await
                .context("cannot read the agent")?;
            let agent =
                agent.ok_or_else(|| anyhow!("agent `{name}` not found in tenant `{tenant}`"))?;
            show(&agent, *json)
        }
        AgentCommand::Rotate(r) => {
            let name = name(&r.name)?;
            let agent = store
                .rotate_agent(&tenant, &name)
                .await
                .context("cannot rotate the agent's credentials")?;
            audit(store.as_ref(), tenant.as_str(), &name, "agent.rotate").await?;
            if r.json {
                print_json(&agent)
            } else {
                println!(
                    "agent `{}`: every token and certificate issued before now is refused; issue new ones",
                    agent.name
                );
                Ok(())
            }
        }
        AgentCommand::Cert { .. } | AgentCommand::Certs(_) | AgentCommand::RevokeCert { .. } => {
            super::cert::run(&config, &tenant, store.as_ref(), cmd).await
        }
        AgentCommand::Suspend(r)
        | AgentCommand::Resume(r)
        | AgentCommand::Revoke(r)
        | AgentCommand::Retire(r) => {
            let (state, operation) = match cmd {
                AgentCommand::Suspend(_) => (AgentState::Suspended, "agent.suspend"),
                AgentCommand::Resume(_) => (AgentState::Active, "agent.resume"),
                AgentCommand::Retire(_) => (AgentState::Retired, "agent.retire"),
                _ => (AgentState::Revoked, "agent.revoke"),
            };
            let name = name(&r.name)?;
            let agent = match store.set_agent_state(&tenant, &name, state).await {
                Ok(a) => a,
                Err(e @ StoreError::Conflict(_)) => return Err(Failure::Denied(anyhow!(e))),
                Err(e) => return Err(anyhow!(e).into()),
            };
            audit(store.as_ref(), tenant.as_str(), &name, operation).await?;
            if r.json {
                print_json(&agent)
            } else {
                println!("agent `{}` is {}", agent.name, agent.state);
                Ok(())
            }
        }
    }
}
