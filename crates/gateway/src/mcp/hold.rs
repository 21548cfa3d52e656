//! Phase 6, hold for approval: a tool call whose policies carry
//! `@approval` does not run. Warden records an approval that binds the exact
//! call (agent, user, task, upstream, tool, tool digest, the canonical JSON of
//! the arguments and its SHA-256, policy version, risk, the agent's stated
//! rationale) and answers at once with a tool error naming it ("defer"). The
//! same call retried after the approval — byte for byte the same canonical
//! arguments, by the same agent and user — runs exactly once: the approval
//! moves from approved to executed by an atomic compare-and-swap in the
//! store before anything is forwarded. Any other arguments make a new
//! approval. Policy is evaluated again on the retry (a suspended agent never
//! gets there). A changed tool definition, another task or another policy
//! version needs a new approval.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use warden_approval::{Approval, Request as Binding, State};
use warden_config::ApprovalMode;
use warden_core::{Approval as Required, Decision, Effect};
use warden_mcp::catalog::canonical_json;
use warden_mcp::{ErrorCode, Id, success_response};
use warden_policy::PolicyEngine;

use super::Exchange;
use super::exchange::json_response;
use super::ops::Caller;

/// The longest rationale kept.
const MAX_RATIONALE: usize = 500;

/// What a held call is.
pub(super) struct Held<'a> {
    pub(super) upstream: &'a str,
    pub(super) tool: &'a str,
    pub(super) arguments: &'a Map<String, Value>,
    pub(super) meta: Option<&'a Map<String, Value>>,
    pub(super) required: Required,
    /// Groups that must each count an approver.
    pub(super) groups: Vec<String>,
    pub(super) mode: ApprovalMode,
}

/// How often a waiting call looks at its approval.
const POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// What to do with a held call.
pub(super) enum Verdict {
    /// Run it: its approval moved to executed (the decision says which).
    Run(Decision),
    /// Answered already (held, or refused).
    Answered(Response),
}

fn binding(engine: &PolicyEngine, who: &Caller, held: &Held<'_>, decision: &Decision) -> Binding {
    let arguments = canonical_json(&Value::Object(held.arguments.clone()));
    let label = engine.tool_label(held.upstream, held.tool);
    let rationale = held
        .meta
        .and_then(|m| m.get("rationale"))
        .and_then(Value::as_str)
        .map(|r| r.chars().take(MAX_RATIONALE).collect());
    Binding {
        tenant: who.tenant.to_string(),
        agent: who.agent.to_string(),
        user: who.user.as_ref().map(ToString::to_string),
        task: who.task.as_ref().map(|t| t.id.clone()),
        upstream: held.upstream.to_owned(),
        tool: held.tool.to_owned(),
        tool_digest: engine
            .tool_digest(held.upstream, held.tool)
            .unwrap_or_default()
            .to_owned(),
        arguments_sha256: hex::encode(Sha256::digest(arguments.as_bytes())),
        arguments,
        policy_version: engine.version().to_owned(),
        policies: decision.policies.clone(),
        reasons: decision.reasons.clone(),
        risk: who.context.risk_score,
        rationale,
        side_effects: label.map_or_else(
            || "unknown".to_owned(),
            |l| {
                format!(
                    "{}{}",
                    l.effect.as_str(),
                    if l.external {
                        ", sends data outside the company"
                    } else {
                        ""
                    }
                )
            },
        ),
    }
}

/// The tool error that tells the agent its call is held.
fn held_answer(id: &Id, approval: &Approval) -> Response {
    let groups = if approval.groups.is_empty() {
        String::new()
    } else {
        format!(", one from each of: {}", approval.groups.join(", "))
    };
    let text = format!(
        "held for human approval: approval `{}` ({} approver{} needed{groups}, expires at {}). Retry the same call with the same arguments once it is approved; other arguments need a new approval.",
        approval.id,
        approval.needed(),
        if approval.needed() == 1 { "" } else { "s" },
        approval.expires_at
    );
    let result = json!({
        "content": [{ "type": "text", "text": text }],
        "isError": true,
        "_meta": { "warden/approval": {
            "id": approval.id, "state": approval.state, "expires_at": approval.expires_at,
        }},
    });
    let raw = serde_json::value::to_raw_value(&result).unwrap_or_default();
    json_response(StatusCode::OK, success_response(id, &raw))
}

/// Decides what happens to a held call.
pub(super) async fn hold(
    ex: &mut Exchange,
    engine: &PolicyEngine,
    who: &Caller,
    held: &Held<'_>,
    decision: Decision,
    id: &Id,
) -> Verdict {
    let gw = ex.gateway();
    let binding = binding(engine, who, held, &decision);
    let now = crate::auth::now_secs();
    let found = match gw.store.find_approval(&binding).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("approval lookup failed: {e}");
            return unavailable(ex, id).await;
        }
    };
    // An approval covers the call only as it was bound: the same task, the
    // same tool definition (a changed tool is not what was approved) and the
    // same policy version; otherwise the call needs a new approval.
    let found = found.filter(|a| {
        a.request.task == binding.task
            && a.request.tool_digest == binding.tool_digest
            && a.request.policy_version == binding.policy_version
            && a.groups == held.groups
    });
    if let Some(mut approval) = found {
        let revision = approval.revision;
        if approval.expire(now) {
            crate::review::record_expiry(&gw, &approval, revision).await;
        }
        match approval.state {
            State::Approved => {
                let decision = match claim(ex, approval.clone(), decision, now).await {
                    Ok(run) => return Verdict::Run(run),
                    Err(d) => d,
                };
                // Another retry claimed it first: it ran once already.
                return used(ex, decision, &approval, id).await;
            }
            State::Pending => {
                return pending(ex, decision, approval, held.mode, &who.tenant, id).await;
            }
            // Denied, expired, cancelled or executed: a new approval.
            _ => {}
        }
    }
    let approval = Approval::new(
        uuid::Uuid::now_v7().to_string(),
        binding,
        held.required,
        now,
        gw.config.approvals.ttl.as_secs(),
    )
    .with_groups(held.groups.clone());
    if let Err(e) = gw.store.create_approval(&approval).await {
        tracing::error!("approval not recorded: {e}");
        return unavailable(ex, id).await;
    }
    gw.approval_changed(&approval).await;
    pending(ex, decision, approval, held.mode, &who.tenant, id).await
}

/// A pending approval: answer at once (defer), or hold the call open until
/// it is decided or the wait times out.
async fn pending(
    ex: &mut Exchange,
    decision: Decision,
    approval: Approval,
    mode: ApprovalMode,
    tenant: &warden_core::TenantId,
    id: &Id,
) -> Verdict {
    let ApprovalMode::Wait(limit) = mode else {
        return Verdict::Answered(held_record(ex, decision, &approval, id).await);
    };
    let gw = ex.gateway();
    let deadline = tokio::time::Instant::now() + limit;
    let mut current = approval;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        let Ok(Some(mut latest)) = gw.store.approval(tenant, &current.id).await else {
            continue;
        };
        let revision = latest.revision;
        let now = crate::auth::now_secs();
        if latest.expire(now) {
            crate::review::record_expiry(&gw, &latest, revision).await;
        }
        match latest.state {
            State::Pending => current = latest,
            State::Approved => {
                return match claim(ex, latest.clone(), decision, now).await {
                    Ok(run) => Verdict::Run(run),
                    Err(d) => used(ex, d, &latest, id).await,
                };
            }
            _ => {
                let mut refused = decision;
                refused.effect = Effect::Deny;
                let why: Vec<String> = latest
                    .reviews
                    .iter()
                    .filter_map(|r| r.reason.clone())
                    .collect();
                refused.reasons.push(format!(
                    "approval `{}` was {:?}{}",
                    latest.id,
                    latest.state,
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", why.join("; "))
                    }
                ));
                ex.rec.approval = Some(latest.id.clone());
                return Verdict::Answered(ex.denied(id, refused).await);
            }
        }
    }
    // Not decided in time: the agent may retry the same call later.
    Verdict::Answered(held_record(ex, decision, &current, id).await)
}

/// Another call claimed the approval first: it ran once already.
async fn used(ex: &mut Exchange, decision: Decision, approval: &Approval, id: &Id) -> Verdict {
    let mut refused = decision;
    refused.effect = Effect::Deny;
    refused.reasons.push(format!(
        "approval `{}` has been used; a new call needs a new approval",
        approval.id
    ));
    ex.rec.approval = Some(approval.id.clone());
    Verdict::Answered(ex.denied(id, refused).await)
}

/// The store failed: nothing runs.
async fn unavailable(ex: &mut Exchange, id: &Id) -> Verdict {
    Verdict::Answered(
        ex.reject(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(id),
            ErrorCode::InternalError,
            "approvals are unavailable; nothing was run",
        )
        .await,
    )
}

/// Claims the single execution of an approved approval by compare-and-swap;
/// the decision to run with, or back when another call claimed it first.
async fn claim(
    ex: &mut Exchange,
    mut approval: Approval,
    decision: Decision,
    now: u64,
) -> Result<Decision, Decision> {
    let revision = approval.revision;
    if approval.claim_execution(now).is_err()
        || !matches!(
            ex.gateway()
                .store
                .update_approval(&approval, revision)
                .await,
            Ok(true)
        )
    {
        return Err(decision);
    }
    ex.gateway().approval_changed(&approval).await;
    let reviewers: Vec<&str> = approval
        .reviews
        .iter()
        .map(|r| r.reviewer.as_str())
        .collect();
    let mut run = decision;
    run.reasons.push(format!(
        "approved by {} (approval `{}`), executing once",
        reviewers.join(", "),
        approval.id
    ));
    ex.rec.reviewers = reviewers.iter().map(|r| (*r).to_owned()).collect();
    ex.rec.approval = Some(approval.id);
    Ok(run)
}

/// Records the hold (a denial that names the approval) and answers.
async fn held_record(
    ex: &mut Exchange,
    decision: Decision,
    approval: &Approval,
    id: &Id,
) -> Response {
    let mut held = decision;
    held.effect = Effect::Deny;
    held.reasons
        .push(format!("held for human approval `{}`", approval.id));
    ex.rec.approval = Some(approval.id.clone());
    match ex.commit(id, held).await {
        Ok(()) => held_answer(id, approval),
        Err(r) => r,
    }
}
