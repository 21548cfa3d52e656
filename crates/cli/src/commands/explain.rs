//! `warden audit query` and `warden audit explain`: finding records and
//! reading one as a human would ask about it — who, what, why, who approved,
//! what happened, and whether it is intact.

use anyhow::{Context as _, anyhow};
use serde_json::{Value, json};
use time::OffsetDateTime;
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
    if let Some(bound) = AuditQuery::parse_time_bound(text) {
        return Ok(bound);
    }
    let age = humantime::parse_duration(text).map_err(|_| invalid())?;
    let age = time::Duration::try_from(age).map_err(|_| invalid())?;
    let at = now.checked_sub(age).ok_or_else(invalid)?;
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
    let kind = format!("{:?}", r.kind).to_lowercase();
    let mut lines = vec![format!(
        "record {seq} · {kind} · request {} · {}",
        r.request_id, r.time
    )];
    let mut row = |label: &str, text: String| lines.push(format!("  {label:<10} {text}"));
    for (label, text) in warden_audit::explain::rows(r) {
        row(label, text);
    }
    for e in related {
        if let Ok(other) = serde_json::from_slice::<AuditRecord>(&e.body) {
            match &other.outcome {
                Some(o) => row(
                    "outcome",
                    format!("{} (record {})", warden_audit::explain::outcome(o), e.seq),
                ),
                None => row(
                    "related",
                    format!("record {} ({:?})", e.seq, other.kind).to_lowercase(),
                ),
            }
        }
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
    lines
}
