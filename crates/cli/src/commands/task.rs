//! `warden task start|end|token|list`: just-in-time task grants.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use serde_json::json;
use warden_config::Config;
use warden_core::{AgentName, AgentState, UserName};
use warden_mcp::ToolCatalog;
use warden_store::{Store, StoreError, Task};

use super::{audit_change, now, rfc3339, unix_now};
use crate::cli::{Cli, TaskCommand};
use crate::context::{config, duration, issuer, print_json, store, tenant};
use crate::{Failure, Outcome};

/// The longest task purpose.
const MAX_PURPOSE: usize = 200;

/// `upstream.tool` (or `upstream/tool`) as an action id, if the recorded
/// catalogs have it.
async fn granted_tool(store: &dyn Store, config: &Config, raw: &str) -> Result<String, Failure> {
    let (upstream, tool) = raw
        .split_once('.')
        .or_else(|| raw.split_once('/'))
        .ok_or_else(|| anyhow!("`--allow {raw}`: name a tool as `upstream.tool`"))?;
    if config.upstream(upstream).is_none() {
        return Err(anyhow!("`--allow {raw}`: no upstream `{upstream}` in the config").into());
    }
    let catalogs = store
        .catalogs()
        .await
        .context("cannot read the tool catalogs")?;
    let catalog = catalogs
        .iter()
        .find(|(name, _)| name.as_str() == upstream)
        .and_then(|(_, text)| serde_json::from_str(text).ok())
        .and_then(|v| ToolCatalog::from_json(v).ok())
        .ok_or_else(|| {
            anyhow!("no tool catalog recorded for `{upstream}` (run `warden serve` or `warden policy check --live` once)")
        })?;
    if !catalog.tools.iter().any(|t| t.name == tool) {
        return Err(anyhow!("`--allow {raw}`: upstream `{upstream}` has no tool `{tool}`").into());
    }
    Ok(warden_policy::tool_action(upstream, tool))
}

fn print_task(task: &Task, token: Option<(&str, u64)>, json: bool) -> Outcome {
    if json {
        let mut out = json!({
            "id": task.id, "agent": task.agent, "user": task.user, "purpose": task.purpose,
            "tools": task.tools, "expires_at": rfc3339(task.expires_at),
            "ended_at": task.ended_at,
        });
        if let (Some((t, exp)), Some(map)) = (token, out.as_object_mut()) {
            map.insert("token".into(), t.into());
            map.insert("token_expires_at".into(), rfc3339(exp).into());
        }
        return print_json(&out);
    }
    match token {
        Some((t, _)) => println!("{t}"),
        None => println!(
            "task `{}`: {}",
            task.id,
            task.ended_at.as_deref().map_or("open", |_| "ended")
        ),
    }
    Ok(())
}

pub async fn run(cli: &Cli, cmd: &TaskCommand) -> Outcome {
    let config = config(cli)?;
    let store = store(&config).await?;
    let tenant = tenant(cli, &config)?;
    let token_for = |task: &Task| -> Result<(String, u64), Failure> {
        let remaining = Duration::from_secs(task.expires_at.saturating_sub(unix_now()));
        let ttl = remaining.min(config.identity.max_token_ttl);
        let issued = issuer(&config)?
            .issue_for_task(&task.tenant, &task.agent, task.user.as_ref(), ttl, &task.id)
            .map_err(|e| anyhow!(e))?;
        Ok((issued.token, issued.expires_at))
    };
    match cmd {
        TaskCommand::Start {
            agent,
            user,
            purpose,
            allow,
            ttl,
            json,
        } => {
            let agent = AgentName::new(agent).map_err(|e| anyhow!(e))?;
            let user = user
                .as_deref()
                .map(UserName::new)
                .transpose()
                .map_err(|e| anyhow!(e))?;
            let purpose = purpose.trim();
            if purpose.is_empty()
                || purpose.chars().count() > MAX_PURPOSE
                || purpose.chars().any(char::is_control)
            {
                return Err(
                    anyhow!("--purpose must be 1 to {MAX_PURPOSE} printable characters").into(),
                );
            }
            let ttl = duration("--ttl", ttl.as_deref(), config.tasks.default_ttl)?;
            if ttl > config.tasks.max_ttl || ttl.is_zero() {
                return Err(anyhow!(
                    "--ttl {} is above `tasks.max_ttl` ({})",
                    humantime::format_duration(ttl),
                    humantime::format_duration(config.tasks.max_ttl)
                )
                .into());
            }
            let record = store
                .agent(&tenant, &agent)
                .await
                .context("cannot read the agent")?
                .ok_or_else(|| anyhow!("agent `{agent}` not found in tenant `{tenant}`"))?;
            if record.state != AgentState::Active {
                return Err(Failure::Denied(anyhow!(
                    "agent `{agent}` is {}; no task started",
                    record.state
                )));
            }
            let mut tools = Vec::new();
            for raw in allow {
                let tool = granted_tool(store.as_ref(), &config, raw).await?;
                if !tools.contains(&tool) {
                    tools.push(tool);
                }
            }
            let task = Task {
                id: uuid::Uuid::now_v7().to_string(),
                tenant: tenant.clone(),
                agent,
                user,
                purpose: purpose.to_owned(),
                tools,
                created_at: now(),
                expires_at: unix_now().saturating_add(ttl.as_secs()),
                ended_at: None,
            };
            store
                .create_task(task.clone())
                .await
                .context("cannot record the task")?;
            audit_change(
                store.as_ref(),
                tenant.as_str(),
                &format!("task:{}", task.id),
                "task.start",
            )
            .await?;
            let (token, exp) = token_for(&task)?;
            print_task(&task, Some((&token, exp)), *json)
        }
        TaskCommand::End { id, json } => {
            let task = match store.end_task(&tenant, id).await {
                Ok(t) => t,
                Err(e @ StoreError::Conflict(_)) => return Err(Failure::Denied(anyhow!(e))),
                Err(e) => return Err(anyhow!(e).into()),
            };
            audit_change(
                store.as_ref(),
                tenant.as_str(),
                &format!("task:{}", task.id),
                "task.end",
            )
            .await?;
            print_task(&task, None, *json)
        }
        TaskCommand::Token { id, json } => {
            let task = store
                .task(&tenant, id)
                .await
                .context("cannot read the task")?
                .ok_or_else(|| anyhow!("task `{id}` not found in tenant `{tenant}`"))?;
            if !task.is_open(unix_now()) {
                return Err(Failure::Denied(anyhow!("task `{id}` has ended or expired")));
            }
            let (token, exp) = token_for(&task)?;
            print_task(&task, Some((&token, exp)), *json)
        }
        TaskCommand::List { json } => {
            let tasks = store
                .list_tasks(&tenant)
                .await
                .context("cannot list tasks")?;
            if *json {
                return print_json(&json!({ "tasks": tasks }));
            }
            let now = unix_now();
            println!(
                "{:<38} {:<20} {:<8} {:<22} PURPOSE",
                "ID", "AGENT", "STATE", "EXPIRES"
            );
            for t in tasks {
                let state = if t.ended_at.is_some() {
                    "ended"
                } else if t.is_open(now) {
                    "open"
                } else {
                    "expired"
                };
                println!(
                    "{:<38} {:<20} {:<8} {:<22} {}",
                    t.id,
                    t.agent,
                    state,
                    rfc3339(t.expires_at),
                    t.purpose
                );
            }
            Ok(())
        }
    }
}
