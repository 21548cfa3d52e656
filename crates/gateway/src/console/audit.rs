//! The audit explorer: the tenant's records, filtered like `warden audit
//! query` and served from the same indexes; one record explained, with its
//! related records and its integrity (its hash, its link to the record
//! before, the signed checkpoint that covers it). For admins and auditors.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use warden_audit::{AuditRecord, ChainEntry, chain_hash, verify_checkpoint};
use warden_store::AuditQuery;

use super::pages::{self, AuditIntegrity, AuditRow};
use super::{Gw, SignedIn, html, signed_in};
use crate::Gateway;

/// Records per page.
const PAGE: u32 = 50;

/// The explorer's filters, as the form sends them (empty: none).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub(super) struct Filters {
    #[serde(default)]
    pub(super) agent: String,
    #[serde(default)]
    pub(super) user: String,
    #[serde(default)]
    pub(super) tool: String,
    #[serde(default)]
    pub(super) decision: String,
    #[serde(default)]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) since: String,
    #[serde(default)]
    pub(super) until: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) before: Option<u64>,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// The query the filters mean in `me`'s tenant, or what is wrong with them.
fn query(gw: &Gateway, me: &SignedIn, f: &Filters) -> Result<AuditQuery, String> {
    let one_of = |name: &str, v: &str, allowed: &[&str]| match some(v) {
        Some(x) if !allowed.contains(&x.as_str()) => {
            Err(format!("{name} must be one of {}", allowed.join(", ")))
        }
        other => Ok(other),
    };
    let bound = |name: &str, v: &str| match some(v) {
        None => Ok(None),
        Some(t) => AuditQuery::parse_time_bound(&t)
            .map(Some)
            .ok_or_else(|| format!("{name} must be a date (YYYY-MM-DD) or an RFC 3339 time")),
    };
    Ok(AuditQuery {
        unattributed: me.user.tenant == gw.config.identity.default_tenant,
        tenant: Some(me.user.tenant.to_string()),
        agent: some(&f.agent),
        user: some(&f.user),
        action: some(&f.tool).map(|t| {
            if t.contains('/') {
                t
            } else {
                t.replacen('.', "/", 1)
            }
        }),
        effect: one_of("decision", &f.decision, &["allow", "deny"])?,
        kind: one_of("kind", &f.kind, &["request", "outcome", "admin"])?,
        since: bound("since", &f.since)?,
        until: bound("until", &f.until)?,
        before: f.before,
        limit: PAGE,
        ..AuditQuery::default()
    })
}

fn row(e: &ChainEntry) -> AuditRow {
    match serde_json::from_slice::<AuditRecord>(&e.body) {
        Ok(r) => {
            let reason = r
                .error
                .clone()
                .or_else(|| r.decision.reasons.last().cloned())
                .unwrap_or_default();
            AuditRow {
                seq: e.seq,
                time: r.time,
                kind: format!("{:?}", r.kind).to_lowercase(),
                agent: r.agent.unwrap_or_default(),
                action: r.action.or(r.method).unwrap_or_default(),
                decision: format!("{:?}", r.decision.effect).to_lowercase(),
                reason,
            }
        }
        Err(_) => AuditRow {
            seq: e.seq,
            time: String::new(),
            kind: "unreadable".into(),
            agent: String::new(),
            action: String::new(),
            decision: String::new(),
            reason: "not a valid audit record: run `warden audit verify`".into(),
        },
    }
}

fn unavailable(me: &SignedIn) -> Response {
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::message("Unavailable", Some(&me.viewer()), "storage unavailable"),
    )
}

fn not_allowed(me: &SignedIn) -> Response {
    html(
        StatusCode::FORBIDDEN,
        pages::message(
            "Not allowed",
            Some(&me.viewer()),
            "your role cannot read the audit trail (admin or auditor needed)",
        ),
    )
}

pub(super) async fn list(State(gw): Gw, headers: HeaderMap, Query(f): Query<Filters>) -> Response {
    let me = match signed_in(&gw, &headers).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    if !me.may_audit() {
        return not_allowed(&me);
    }
    let q = match query(&gw, &me, &f) {
        Ok(q) => q,
        Err(e) => {
            return html(
                StatusCode::BAD_REQUEST,
                pages::audit_list(&me.viewer(), &f, &[], None, Some(&e)),
            );
        }
    };
    match gw.store.query_audit(&q).await {
        Ok(entries) => {
            let rows: Vec<AuditRow> = entries.iter().map(row).collect();
            let next = (entries.len() == PAGE as usize)
                .then(|| entries.last().map(|e| e.seq))
                .flatten();
            let older = next.map(|before| {
                let page = Filters {
                    before: Some(before),
                    ..f.clone()
                };
                format!(
                    "/console/audit?{}",
                    serde_urlencoded::to_string(&page).unwrap_or_default()
                )
            });
            html(
                StatusCode::OK,
                pages::audit_list(&me.viewer(), &f, &rows, older.as_deref(), None),
            )
        }
        Err(e) => {
            tracing::error!("console: {e}");
            unavailable(&me)
        }
    }
}

pub(super) async fn record(State(gw): Gw, headers: HeaderMap, Path(seq): Path<u64>) -> Response {
    let me = match signed_in(&gw, &headers).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    if !me.may_audit() {
        return not_allowed(&me);
    }
    let not_found = || {
        html(
            StatusCode::NOT_FOUND,
            pages::message(
                "Not found",
                Some(&me.viewer()),
                "no such record in your tenant",
            ),
        )
    };
    let entries = match gw.store.audit_entries(seq.saturating_sub(2), 2).await {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("console: {e}");
            return unavailable(&me);
        }
    };
    let Some(entry) = entries.iter().find(|e| e.seq == seq) else {
        return not_found();
    };
    let Ok(r) = serde_json::from_slice::<AuditRecord>(&entry.body) else {
        return not_found();
    };
    let visible = match &r.tenant {
        Some(t) => t == me.user.tenant.as_str(),
        None => me.user.tenant == gw.config.identity.default_tenant,
    };
    if !visible {
        return not_found();
    }
    let previous = entries.iter().find(|e| e.seq + 1 == seq);
    let link_ok = match previous {
        Some(p) => p.hash == entry.prev_hash,
        None => seq == 1 && entry.prev_hash == warden_audit::GENESIS,
    };
    let covering = match gw.store.checkpoints().await {
        Ok(all) => all.into_iter().find(|c| c.size >= seq),
        Err(_) => None,
    };
    let integrity = AuditIntegrity {
        hash_ok: chain_hash(entry.seq, &entry.prev_hash, &entry.body) == entry.hash,
        hash: hex::encode(entry.hash),
        link_ok,
        checkpoint: covering.as_ref().map(|c| c.size),
        checkpoint_signed: covering
            .as_ref()
            .is_some_and(|c| verify_checkpoint(&c.note, gw.audit_signer.verifier()).is_ok()),
    };
    let related: Vec<AuditRow> = match gw
        .store
        .query_audit(&AuditQuery {
            tenant: r.tenant.clone().or(Some(String::new())),
            request_id: Some(r.request_id.clone()),
            limit: 20,
            ..AuditQuery::default()
        })
        .await
    {
        Ok(list) => list.iter().filter(|e| e.seq != seq).map(row).collect(),
        Err(_) => Vec::new(),
    };
    html(
        StatusCode::OK,
        pages::audit_record(
            &me.viewer(),
            seq,
            &r,
            &warden_audit::explain::rows(&r),
            &related,
            &integrity,
        ),
    )
}
