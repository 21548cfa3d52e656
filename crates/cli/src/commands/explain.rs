//! `warden audit query` and `warden audit explain`: finding records and
//! reading one as a human would ask about it — who, what, why, who approved,
//! what happened, and whether it is intact.

use anyhow::{Context as _, anyhow};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};
use warden_audit::{AuditRecord, ChainEntry, chain_hash, verify_checkpoint};
use warden_config::Config;
use warden_store::{AuditQuery, Store};

use crate::cli::{AuditQueryArgs, Cli};
use crate::context::{print_json, tenant};
use crate::{Failure, Outcome};

/// A time bound as the store compares it: `YYYY-MM-DDTHH:MM:SS`, UTC.
fn bound(flag: &str, text: &str, now: OffsetDateTime) -> Result<String, Failure> {
    let invalid = || {
        Failure::Invalid(anyhow!(
            "invalid {flag} `{text}`: give an RFC 3339 time (2026-11-23T10:00:00Z), a date (2026-11-23) or an age (1h, 30m, 7days)"
        ))
    };
    let at = if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        t
    } else if let Ok(d) = Date::parse(text, format_description!("[year]-[month]-[day]")) {
        PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc()
    } else {
        let age = humantime::parse_duration(text).map_err(|_| invalid())?;
        let age = time::Duration::try_from(age).map_err(|_| invalid())?;
        now.checked_sub(age).ok_or_else(invalid)?
    };
    if !(0..=9999).contains(&at.year()) {
        return Err(invalid());
    }
    Ok(AuditQuery::time_bound(at))
}

/// The tool as the records name it: `upstream/tool`.
fn action(tool: &str) -> String {
    if tool.contains('/') {
        tool.to_owned()
    } else {
        tool.replacen('.', "/", 1)
    }
}

/// The query the CLI runs in `tenant`: its records, and for the default
/// tenant also the requests no tenant was proven for.
fn scoped(cli: &Cli, config: &Config) -> Result<AuditQuery, Failure> {
    let tenant = tenant(cli, config)?;
    Ok(AuditQuery {
        unattributed: tenant == config.identity.default_tenant,
        tenant: Some(tenant.to_string()),
        ..AuditQuery::default()
    })
}

pub async fn query(cli: &Cli, config: &Config, store: &dyn Store, a: &AuditQueryArgs) -> Outcome {
    let now = OffsetDateTime::now_utc();
    let q = AuditQuery {
        agent: a.agent.clone(),
        user: a.user.clone(),
        action: a.tool.as_deref().map(action),
        effect: a.decision.clone(),
        kind: a.kind.clone(),
        request_id: a.request.clone(),
        since: a
            .since
            .as_deref()
            .map(|t| bound("--since", t, now))
            .transpose()?,
        until: a
            .until
            .as_deref()
            .map(|t| bound("--until", t, now))
            .transpose()?,
        before: a.before,
        limit: a.limit.clamp(1, 10_000),
        ..scoped(cli, config)?
    };
    let entries = store
        .query_audit(&q)
        .await
        .context("cannot query the audit trail")?;
    for e in &entries {
        super::audit::line(e, a.json);
    }
    if !a.json
        && entries.len() == q.limit as usize
        && let Some(last) = entries.last()
    {
        eprintln!("(more: --before {})", last.seq);
    }
    Ok(())
}

/// The record `id` names (a seq or a request id) and the other records of
/// the same request, in order.
async fn find(
    cli: &Cli,
    config: &Config,
    store: &dyn Store,
    id: &str,
) -> Result<(ChainEntry, Vec<ChainEntry>), Failure> {
    let scope = scoped(cli, config)?;
    let request_id = if let Ok(seq) = id.parse::<u64>() {
        let entry = store
            .audit_entries(seq.saturating_sub(1), 1)
            .await
            .context("cannot read the audit trail")?
            .into_iter()
            .find(|e| e.seq == seq)
            .ok_or_else(|| Failure::Failed(anyhow!("there is no record {seq}")))?;
        let record: Value = serde_json::from_slice(&entry.body).unwrap_or(Value::Null);
        record
            .get("request_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Failure::Failed(anyhow!("record {seq} has no request id")))?
    } else {
        id.to_owned()
    };
    let mut related = store
        .query_audit(&AuditQuery {
            request_id: Some(request_id),
            limit: 100,
            ..scope
        })
        .await
        .context("cannot query the audit trail")?;
    related.reverse();
    let pick = match id.parse::<u64>() {
        Ok(seq) => related.iter().position(|e| e.seq == seq),
        Err(_) => (!related.is_empty()).then_some(0),
    };
    let Some(pick) = pick else {
        return Err(Failure::Failed(anyhow!(
            "there is no record `{id}` in this tenant"
        )));
    };
    let main = related.remove(pick);
    Ok((main, related))
}

/// Whether a record's own hash holds, and the checkpoint that covers it.
#[derive(Debug, serde::Serialize)]
struct Integrity {
    hash_ok: bool,
    hash: String,
    checkpoint: Option<u64>,
    checkpoint_signature_ok: Option<bool>,
}

/// The integrity of `e`.
async fn integrity(config: &Config, store: &dyn Store, e: &ChainEntry) -> Integrity {
    let hash_ok = chain_hash(e.seq, &e.prev_hash, &e.body) == e.hash;
    let covering = match store.checkpoints().await {
        Ok(all) => all.into_iter().find(|c| c.size >= e.seq),
        Err(_) => None,
    };
    let signed = match (
        &covering,
        crate::commands::audit::verifier_for(config, None).ok(),
    ) {
        (Some(c), Some(v)) => Some(verify_checkpoint(&c.note, &v).is_ok()),
        _ => None,
    };
    Integrity {
        hash_ok,
        hash: hex::encode(e.hash),
        checkpoint: covering.as_ref().map(|c| c.size),
        checkpoint_signature_ok: signed,
    }
}

pub async fn explain(
    cli: &Cli,
    config: &Config,
    store: &dyn Store,
    id: &str,
    json: bool,
) -> Outcome {
    let (main, related) = find(cli, config, store, id).await?;
    let integrity = integrity(config, store, &main).await;
    if json {
        let body = |e: &ChainEntry| serde_json::from_slice::<Value>(&e.body).unwrap_or(Value::Null);
        return print_json(&json!({
            "seq": main.seq,
            "record": body(&main),
            "related": related.iter().map(|e| json!({ "seq": e.seq, "record": body(e) })).collect::<Vec<_>>(),
            "integrity": integrity,
        }));
    }
    let r: AuditRecord = serde_json::from_slice(&main.body)
        .map_err(|e| anyhow!("record {} is not a valid audit record: {e}", main.seq))?;
    for line in explanation(main.seq, &r, &related, &integrity) {
        println!("{line}");
    }
    Ok(())
}

/// The explanation, line by line.
fn explanation(
    seq: u64,
    r: &AuditRecord,
    related: &[ChainEntry],
    integrity: &Integrity,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut row = |label: &str, text: String| out.push(format!("  {label:<10} {text}"));
    let kind = format!("{:?}", r.kind).to_lowercase();
    let header = format!(
        "record {seq} · {kind} · request {} · {}",
        r.request_id, r.time
    );
    let mut who = match (&r.agent, r.kind) {
        (Some(a), warden_audit::RecordKind::Admin) => {
            format!("{} on agent {a}", r.user.as_deref().unwrap_or("-"))
        }
        (Some(a), _) => format!("agent {a}"),
        (None, _) => "unauthenticated".to_owned(),
    };
    if let Some(t) = &r.tenant {
        who.push_str(&format!(" of tenant {t}"));
    }
    if r.kind != warden_audit::RecordKind::Admin
        && let Some(u) = &r.user
    {
        who.push_str(&format!(", acting for user {u}"));
    }
    if let Some(t) = &r.task {
        who.push_str(&format!(", task {t}"));
    }
    if let Some(s) = &r.source {
        who.push_str(&format!(", from {s}"));
    }
    row("who", who);
    let mut what = r.method.clone().unwrap_or_else(|| "-".into());
    if let Some(a) = &r.action {
        what.push_str(&format!(" → {a}"));
    }
    if let Some(u) = &r.upstream {
        what.push_str(&format!(" on upstream {u}"));
    }
    what.push_str(&format!(" (at {})", r.endpoint));
    row("what", what);
    if let Some(d) = &r.args_digest {
        let shown = r.args.as_ref().map(Value::to_string).unwrap_or_default();
        row("arguments", format!("sha256 {d} {shown}"));
    }
    let effect = format!("{:?}", r.decision.effect).to_uppercase();
    row("decision", effect);
    if !r.decision.policies.is_empty() {
        row("policies", r.decision.policies.join(", "));
    }
    for (i, reason) in r.decision.reasons.iter().enumerate() {
        row(if i == 0 { "why" } else { "" }, format!("· {reason}"));
    }
    for e in &r.decision.errors {
        row("error", e.clone());
    }
    let o = &r.decision.obligations;
    if let Some(a) = o.approval {
        let groups = if o.approver_groups.is_empty() {
            String::new()
        } else {
            format!(" from groups {}", o.approver_groups.join(", "))
        };
        let who = match a {
            warden_core::Approval::Required => "one approver",
            warden_core::Approval::Dual => "two distinct approvers",
        };
        row("requires", format!("{who}{groups}"));
    }
    if !o.redact.is_empty() {
        row("redacts", o.redact.join(", "));
    }
    if let Some(a) = &r.approval {
        let by = if r.reviewers.is_empty() {
            String::new()
        } else {
            format!(", approved by {}", r.reviewers.join(", "))
        };
        row("approval", format!("{a}{by}"));
    }
    if let Some(risk) = &r.risk {
        let why = if risk.reasons.is_empty() {
            String::new()
        } else {
            format!(": {}", risk.reasons.join("; "))
        };
        row("risk", format!("{} ({}){why}", risk.score, risk.level));
    }
    if let Some(s) = r.status {
        let err = r
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        row("answer", format!("HTTP {s}{err}"));
    }
    let outcome = |o: &warden_audit::Outcome| {
        let detail = o
            .detail
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        format!("{} in {} ms{detail}", o.result, o.latency_ms)
    };
    if let Some(o) = &r.outcome {
        row("outcome", outcome(o));
    }
    for e in related {
        if let Ok(other) = serde_json::from_slice::<AuditRecord>(&e.body) {
            let text = match &other.outcome {
                Some(o) => format!("{} (record {})", outcome(o), e.seq),
                None => format!("record {} ({:?})", e.seq, other.kind).to_lowercase(),
            };
            row(
                if other.outcome.is_some() {
                    "outcome"
                } else {
                    "related"
                },
                text,
            );
        }
    }
    if let Some(s) = &r.shadow {
        row(
            "shadow",
            format!(
                "candidate policies {} would {:?}: {}",
                s.version,
                s.decision.effect,
                s.decision.reasons.join("; ")
            )
            .to_lowercase(),
        );
    }
    let mut state = if integrity.hash_ok {
        format!("its hash holds ({})", integrity.hash)
    } else {
        "ITS HASH DOES NOT MATCH ITS CONTENT: run `warden audit verify`".to_owned()
    };
    match (integrity.checkpoint, integrity.checkpoint_signature_ok) {
        (Some(size), Some(true)) => state.push_str(&format!(
            "; covered by the signed checkpoint of size {size} (`warden audit prove {seq}`)"
        )),
        (Some(size), _) => state.push_str(&format!(
            "; the checkpoint of size {size} covers it, but its signature was not verified"
        )),
        (None, _) => state.push_str("; not in a signed checkpoint yet"),
    }
    row("integrity", state);
    let mut lines = vec![header];
    lines.extend(out);
    lines
}
