//! `warden approvals list|show|approve|deny`: humans decide on held actions.

use anyhow::{Context as _, anyhow};
use serde_json::json;
use warden_approval::{Approval, Verdict};
use warden_core::{TenantId, UserName};
use warden_gateway::review::{ReviewError, operation, review_record, reviewer_of};
use warden_store::{NewRecord, Store};

use super::unix_now;
use crate::cli::{ApprovalsCommand, Cli};
use crate::context::{config, print_json, store, tenant};
use crate::{Failure, Outcome};

async fn load(store: &dyn Store, tenant: &TenantId, id: &str) -> Result<Approval, Failure> {
    store
        .approval(tenant, id)
        .await
        .context("cannot read the approval")?
        .ok_or_else(|| anyhow!("approval `{id}` not found in tenant `{tenant}`").into())
}

fn print_one(a: &Approval) {
    let r = &a.request;
    println!("approval   {}", a.id);
    println!(
        "state      {:?} ({} approver(s) needed)",
        a.state,
        a.needed()
    );
    if !a.groups.is_empty() {
        println!(
            "groups     one approver from each of: {} (missing: {})",
            a.groups.join(", "),
            a.missing_groups().join(", ")
        );
    }
    println!("agent      {}", r.agent);
    println!("user       {}", r.user.as_deref().unwrap_or("-"));
    println!("task       {}", r.task.as_deref().unwrap_or("-"));
    println!(
        "target     {}.{} (tool digest {})",
        r.upstream, r.tool, r.tool_digest
    );
    println!("effects    {}", r.side_effects);
    println!("payload    {}", r.arguments);
    println!("sha256     {}", r.arguments_sha256);
    println!(
        "policies   {} ({})",
        r.policies.join(", "),
        r.reasons.join("; ")
    );
    println!("risk       {}", r.risk);
    println!(
        "rationale  {} (the agent's claim)",
        r.rationale.as_deref().unwrap_or("-")
    );
    println!("expires    {}", a.expires_at);
    for review in &a.reviews {
        println!(
            "review     {} {:?} {}",
            review.reviewer,
            review.verdict,
            review.reason.as_deref().unwrap_or("")
        );
    }
}

pub async fn run(cli: &Cli, cmd: &ApprovalsCommand) -> Outcome {
    let config = config(cli)?;
    let store = store(&config).await?;
    let tenant = tenant(cli, &config)?;
    match cmd {
        ApprovalsCommand::List { all, json } => {
            let list = store
                .list_approvals(&tenant, !*all)
                .await
                .context("cannot list approvals")?;
            if *json {
                return print_json(&json!({ "approvals": list }));
            }
            println!(
                "{:<38} {:<10} {:<16} {:<28} PAYLOAD",
                "ID", "STATE", "AGENT", "TARGET"
            );
            for a in list {
                let r = &a.request;
                println!(
                    "{:<38} {:<10} {:<16} {:<28} {}",
                    a.id,
                    format!("{:?}", a.state).to_lowercase(),
                    r.agent,
                    format!("{}.{}", r.upstream, r.tool),
                    r.arguments.chars().take(60).collect::<String>()
                );
            }
            Ok(())
        }
        ApprovalsCommand::Show { id, json } => {
            let a = load(store.as_ref(), &tenant, id).await?;
            if *json {
                return print_json(&a);
            }
            print_one(&a);
            Ok(())
        }
        ApprovalsCommand::Approve {
            id,
            reviewer,
            reason,
        } => {
            decide(
                &config,
                store.as_ref(),
                &tenant,
                id,
                reviewer,
                Verdict::Approve,
                reason.clone(),
            )
            .await
        }
        ApprovalsCommand::Cancel {
            id,
            reviewer,
            reason,
        } => cancel(&config, store.as_ref(), &tenant, id, reviewer, reason).await,
        ApprovalsCommand::Deny {
            id,
            reviewer,
            reason,
        } => {
            if reason.trim().is_empty() {
                return Err(anyhow!("a denial needs a --reason").into());
            }
            decide(
                &config,
                store.as_ref(),
                &tenant,
                id,
                reviewer,
                Verdict::Deny,
                Some(reason.clone()),
            )
            .await
        }
    }
}

/// Records a review; retried when another reviewer changed it first.
async fn decide(
    config: &warden_config::Config,
    store: &dyn Store,
    tenant: &TenantId,
    id: &str,
    reviewer: &str,
    verdict: Verdict,
    reason: Option<String>,
) -> Outcome {
    let name = UserName::new(reviewer).map_err(|e| anyhow!(e))?;
    let user = store
        .user(tenant, &name)
        .await
        .context("cannot read the user")?
        .ok_or_else(|| anyhow!("user `{name}` not found in tenant `{tenant}`"))?;
    let who = reviewer_of(&user);
    let a = match warden_gateway::review::review(
        store,
        tenant,
        id,
        &who,
        verdict,
        reason.clone(),
        unix_now(),
    )
    .await
    {
        Ok(a) => a,
        Err(ReviewError::Refused(e)) => return Err(Failure::Denied(anyhow!(e))),
        Err(e) => return Err(anyhow!(e).into()),
    };
    let rec = review_record(
        &a,
        name.as_str(),
        operation(verdict),
        reason.as_deref(),
        None,
    );
    store
        .append_audit(vec![NewRecord::of(&rec).context("audit record")?])
        .await
        .context("the review was recorded but could not be audited")?;
    warden_gateway::notify::enqueue(store, config, &a, unix_now()).await;
    println!("approval `{id}` is now {:?}", a.state);
    Ok(())
}

/// Withdraws an approval that has not run, as an approver of the tenant.
async fn cancel(
    config: &warden_config::Config,
    store: &dyn Store,
    tenant: &TenantId,
    id: &str,
    reviewer: &str,
    reason: &str,
) -> Outcome {
    if reason.trim().is_empty() {
        return Err(anyhow!("a cancellation needs a --reason").into());
    }
    let name = UserName::new(reviewer).map_err(|e| anyhow!(e))?;
    let user = store
        .user(tenant, &name)
        .await
        .context("cannot read the user")?
        .ok_or_else(|| anyhow!("user `{name}` not found in tenant `{tenant}`"))?;
    if !reviewer_of(&user).is_approver {
        return Err(Failure::Denied(anyhow!(
            "`{name}` is not an approver of tenant `{tenant}`"
        )));
    }
    let mut a = load(store, tenant, id).await?;
    let revision = a.revision;
    a.cancel().map_err(|e| Failure::Denied(anyhow!(e)))?;
    if !store
        .update_approval(&a, revision)
        .await
        .context("cannot record the cancellation")?
    {
        return Err(anyhow!("approval `{id}` changed meanwhile; try again").into());
    }
    let rec = review_record(&a, name.as_str(), "approval.cancel", Some(reason), None);
    store
        .append_audit(vec![NewRecord::of(&rec).context("audit record")?])
        .await
        .context("the cancellation was recorded but could not be audited")?;
    warden_gateway::notify::enqueue(store, config, &a, unix_now()).await;
    println!("approval `{id}` is now {:?}", a.state);
    Ok(())
}
