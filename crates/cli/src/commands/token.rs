//! `warden token issue`.

use anyhow::{Context as _, anyhow};
use serde_json::json;
use warden_audit::AuditRecord;
use warden_core::{AgentName, AgentState, UserName};
use warden_identity::{Issued, Role};
use warden_store::NewRecord;

use super::{now, rfc3339};
use crate::cli::{Cli, TokenCommand};
use crate::context::{config, duration, issuer, operator, print_json, store, tenant};
use crate::{Failure, Outcome};

pub fn print(issued: &Issued, json: bool) -> Outcome {
    let expires_at = rfc3339(issued.expires_at);
    if json {
        print_json(&json!({ "token": issued.token, "expires_at": expires_at, "id": issued.jti }))
    } else {
        println!("{}", issued.token);
        Ok(())
    }
}

pub async fn run(cli: &Cli, cmd: &TokenCommand) -> Outcome {
    let TokenCommand::Issue {
        agent,
        user,
        admin,
        role,
        ttl,
        json,
    } = cmd;
    let config = config(cli)?;
    let ttl = duration("--ttl", ttl.as_deref(), config.identity.token_ttl)?;
    let issuer = issuer(&config)?;
    if let Some(operator_name) = admin {
        let role: Role = role.parse().map_err(|e: String| anyhow!(e))?;
        let scope = tenant(cli, &config)?;
        let scope = (scope != config.identity.default_tenant).then_some(scope);
        let issued = issuer
            .issue_admin_for(scope.as_ref(), operator_name, role, ttl)
            .map_err(|e| anyhow!(e))?;
        return print(&issued, *json);
    }
    let raw = agent
        .as_deref()
        .ok_or_else(|| anyhow!("--agent is required"))?;
    let agent = AgentName::new(raw).map_err(|e| anyhow!(e))?;
    let user = user
        .as_deref()
        .map(UserName::new)
        .transpose()
        .map_err(|e| anyhow!(e))?;
    let tenant = &tenant(cli, &config)?;
    let store = store(&config).await?;
    let record = store
        .agent(tenant, &agent)
        .await
        .context("cannot read the agent")?;
    let record = record.ok_or_else(|| anyhow!("agent `{agent}` not found in tenant `{tenant}` (create it with `warden agent create {agent}`)"))?;
    if record.state != AgentState::Active {
        return Err(Failure::Denied(anyhow!(
            "agent `{agent}` is {}; no token issued",
            record.state
        )));
    }
    let issued = issuer
        .issue(tenant, &agent, user.as_ref(), ttl)
        .map_err(|e| anyhow!(e))?;
    let rec = AuditRecord::admin(
        now(),
        tenant.as_str(),
        &operator(),
        None,
        agent.as_str(),
        "token.issue",
    );
    store
        .append_audit(vec![NewRecord::of(&rec).context("audit record")?])
        .await
        .context("the token could not be audited")?;
    print(&issued, *json)
}
