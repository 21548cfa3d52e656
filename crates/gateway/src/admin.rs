//! The admin API (JSON over HTTP). Every route but `/healthz` needs an admin
//! token (`warden token issue --admin NAME --role admin|auditor`); auditors
//! read, admins also change. Changes are audit records of their own.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use warden_audit::{AuditRecord, ChainHead, verify_chain};
use warden_core::{AgentName, AgentState, TenantId};
use warden_identity::{Operator, Role};
use warden_store::{NewAgent, StoreError};

use crate::Gateway;
use crate::auth::bearer;
use crate::mcp::exchange_now as now;

type Gw = State<Arc<Gateway>>;

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn store_error(e: &StoreError) -> Response {
    match e {
        StoreError::NotFound(_) => error(StatusCode::NOT_FOUND, &e.to_string()),
        StoreError::Conflict(_) => error(StatusCode::CONFLICT, &e.to_string()),
        _ => {
            tracing::error!("admin: {e}");
            error(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
        }
    }
}

/// The tenant an operator administers, if the gateway serves it.
fn scope(gw: &Gateway, op: &Operator) -> Result<TenantId, Response> {
    let tenant = op
        .tenant
        .clone()
        .unwrap_or_else(|| gw.config.identity.default_tenant.clone());
    if gw.served.contains(&tenant) {
        Ok(tenant)
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            &format!("tenant `{tenant}` is not served by this gateway"),
        ))
    }
}

fn operator(gw: &Gateway, headers: &HeaderMap, needed: Role) -> Result<Operator, Response> {
    let token = bearer(headers).map_err(|e| error(StatusCode::UNAUTHORIZED, &e.to_string()))?;
    let op = gw
        .identity
        .verifier
        .verify_admin(token)
        .map_err(|e| error(StatusCode::UNAUTHORIZED, &e.to_string()))?;
    if op.role < needed {
        return Err(error(
            StatusCode::FORBIDDEN,
            "this operation needs the admin role",
        ));
    }
    Ok(op)
}

pub(crate) fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/v1/agents", get(list_agents).post(create_agent))
        .route("/v1/agents/{name}", get(show_agent))
        .route("/v1/agents/{name}/{action}", post(change_agent))
        .route("/v1/audit", get(audit_entries))
        .route("/v1/audit/verify", get(audit_verify))
        .route("/v1/audit/search", get(audit_search))
        .route("/metrics", get(metrics))
        .route("/v1/policy", get(policy_status))
        .route("/v1/approvals", get(list_approvals))
        .route("/v1/approvals/{id}", get(show_approval))
        .route("/v1/approvals/{id}/{verdict}", post(review_approval))
        .with_state(gw.clone())
        .merge(crate::console::router(gw))
}

async fn list_agents(State(gw): Gw, headers: HeaderMap) -> Response {
    let tenant = match operator(&gw, &headers, Role::Auditor).and_then(|op| scope(&gw, &op)) {
        Ok(t) => t,
        Err(r) => return r,
    };
    match gw.store.list_agents(&tenant).await {
        Ok(agents) => Json(json!({ "agents": agents })).into_response(),
        Err(e) => store_error(&e),
    }
}

fn agent_name(name: &str) -> Result<AgentName, Response> {
    AgentName::new(name).map_err(|e| error(StatusCode::BAD_REQUEST, &e.to_string()))
}

async fn show_agent(State(gw): Gw, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let tenant = match operator(&gw, &headers, Role::Auditor).and_then(|op| scope(&gw, &op)) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let name = match agent_name(&name) {
        Ok(n) => n,
        Err(r) => return r,
    };
    match gw.store.agent(&tenant, &name).await {
        Ok(Some(agent)) => Json(agent).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, &format!("agent `{name}` not found")),
        Err(e) => store_error(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAgent {
    name: String,
    owner: Option<String>,
    purpose: Option<String>,
}

async fn create_agent(
    State(gw): Gw,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (op, tenant) = match operator(&gw, &headers, Role::Admin)
        .and_then(|op| scope(&gw, &op).map(|t| (op, t)))
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req: CreateAgent = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid request: {e}")),
    };
    let name = match agent_name(&req.name) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let new = NewAgent {
        tenant: tenant.clone(),
        name: name.clone(),
        owner: req.owner,
        purpose: req.purpose,
    };
    match gw.store.create_agent(new).await {
        Ok(agent) => {
            record_change(&gw, &op, &tenant, peer, &name, "create").await;
            (StatusCode::CREATED, Json(agent)).into_response()
        }
        Err(e) => store_error(&e),
    }
}

async fn change_agent(
    State(gw): Gw,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let (op, tenant) = match operator(&gw, &headers, Role::Admin)
        .and_then(|op| scope(&gw, &op).map(|t| (op, t)))
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let state = match action.as_str() {
        "suspend" => Some(AgentState::Suspended),
        "resume" => Some(AgentState::Active),
        "revoke" => Some(AgentState::Revoked),
        "retire" => Some(AgentState::Retired),
        "rotate" => None,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "unknown action: use suspend, resume, revoke, retire or rotate",
            );
        }
    };
    let name = match agent_name(&name) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let changed = match state {
        Some(state) => gw.store.set_agent_state(&tenant, &name, state).await,
        None => gw.store.rotate_agent(&tenant, &name).await,
    };
    match changed {
        Ok(agent) => {
            record_change(&gw, &op, &tenant, peer, &name, &action).await;
            Json(agent).into_response()
        }
        Err(e) => store_error(&e),
    }
}

async fn record_change(
    gw: &Gateway,
    op: &Operator,
    tenant: &TenantId,
    peer: SocketAddr,
    agent: &AgentName,
    action: &str,
) {
    let operation = format!("agent.{action}");
    let rec = AuditRecord::admin(
        now(),
        tenant.as_str(),
        &op.name,
        Some(peer.to_string()),
        agent.as_str(),
        &operation,
    );
    if let Err(e) = gw.audit.write(&rec).await {
        tracing::error!("admin change not audited: {e}");
    }
}

#[derive(Deserialize)]
struct Page {
    after: Option<u64>,
    limit: Option<u32>,
}

async fn audit_entries(State(gw): Gw, headers: HeaderMap, Query(page): Query<Page>) -> Response {
    let tenant = match operator(&gw, &headers, Role::Auditor).and_then(|op| scope(&gw, &op)) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let is_default = tenant == gw.config.identity.default_tenant;
    let limit = page.limit.unwrap_or(100).min(1000);
    match gw.store.audit_entries(page.after.unwrap_or(0), limit).await {
        Ok(entries) => {
            let next = entries.last().map(|e| e.seq);
            // An operator sees their tenant's records; the default tenant's
            // also sees the records of requests no tenant was proven for.
            let records: Vec<Value> = entries
                .iter()
                .filter_map(|e| {
                    let record: Value = serde_json::from_slice(&e.body).unwrap_or(Value::Null);
                    let owner = record.get("tenant").and_then(Value::as_str);
                    let visible = match owner {
                        Some(t) => t == tenant.as_str(),
                        None => is_default,
                    };
                    visible.then(
                        || json!({ "seq": e.seq, "hash": hex::encode(e.hash), "record": record }),
                    )
                })
                .collect();
            // `next` is the `after` of the following page (entries of
            // other tenants are skipped, so a page may hold fewer).
            Json(json!({ "entries": records, "next": next })).into_response()
        }
        Err(e) => store_error(&e),
    }
}

/// SHA-256 of a bearer token, to compare without leaking its length or
/// content through timing.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// `GET /metrics`: the scrape token (`[admin] metrics_token_file`) or an
/// operator token.
async fn metrics(State(gw): Gw, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let scraper = match (&gw.metrics_token, bearer) {
        (Some(want), Some(got)) => digest(got) == *want,
        _ => false,
    };
    if !scraper && let Err(r) = operator(&gw, &headers, Role::Auditor) {
        return r;
    }
    let m = &gw.metrics;
    let head = gw.store.audit_head().await.map_or(0, |h| h.seq);
    m.audit_records.set(i64::try_from(head).unwrap_or(i64::MAX));
    m.audit_queue
        .set(i64::try_from(gw.audit.pending()).unwrap_or(i64::MAX));
    if let Ok(Some(c)) = gw.store.latest_checkpoint().await {
        m.checkpoint_size
            .set(i64::try_from(c.size).unwrap_or(i64::MAX));
    }
    for tenant in &gw.served {
        if let Ok(open) = gw.store.list_approvals(tenant, true).await {
            m.approvals_pending
                .get_or_create(&crate::metrics::Metrics::name(tenant.as_str()))
                .set(i64::try_from(open.len()).unwrap_or(i64::MAX));
        }
    }
    for sink in &gw.sinks {
        let label = crate::metrics::Metrics::name(&sink.name);
        let delivered = sink.delivered.load(std::sync::atomic::Ordering::Relaxed);
        m.sink_lag
            .get_or_create(&label)
            .set(i64::try_from(head.saturating_sub(delivered)).unwrap_or(i64::MAX));
        m.sink_failures.get_or_create(&label).set(
            i64::try_from(sink.failures.load(std::sync::atomic::Ordering::Relaxed))
                .unwrap_or(i64::MAX),
        );
    }
    match m.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        ),
    }
}

/// `GET /v1/audit/search`: filters, all optional.
#[derive(Deserialize)]
struct Search {
    agent: Option<String>,
    user: Option<String>,
    /// `upstream/tool` (or `upstream.tool`).
    tool: Option<String>,
    /// `allow` or `deny`.
    decision: Option<String>,
    /// `request`, `outcome` or `admin`.
    kind: Option<String>,
    request: Option<String>,
    /// RFC 3339.
    since: Option<String>,
    until: Option<String>,
    before: Option<u64>,
    limit: Option<u32>,
}

/// The operator's tenant's records matching the filters, newest first,
/// from the store's indexes; `next_before` pages on.
async fn audit_search(State(gw): Gw, headers: HeaderMap, Query(s): Query<Search>) -> Response {
    let tenant = match operator(&gw, &headers, Role::Auditor).and_then(|op| scope(&gw, &op)) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let time = |name: &str, v: &Option<String>| -> Result<Option<String>, Response> {
        v.as_deref()
            .map(|t| {
                warden_store::AuditQuery::parse_time_bound(t).ok_or_else(|| {
                    error(
                        StatusCode::BAD_REQUEST,
                        &format!("`{name}` must be an RFC 3339 time or a date (YYYY-MM-DD)"),
                    )
                })
            })
            .transpose()
    };
    let one_of = |name: &str, v: &Option<String>, allowed: &[&str]| -> Result<(), Response> {
        match v {
            Some(x) if !allowed.contains(&x.as_str()) => Err(error(
                StatusCode::BAD_REQUEST,
                &format!("`{name}` must be one of {}", allowed.join(", ")),
            )),
            _ => Ok(()),
        }
    };
    let checked = one_of("decision", &s.decision, &["allow", "deny"])
        .and_then(|()| one_of("kind", &s.kind, &["request", "outcome", "admin"]))
        .and_then(|()| Ok((time("since", &s.since)?, time("until", &s.until)?)));
    let (since, until) = match checked {
        Ok(bounds) => bounds,
        Err(r) => return r,
    };
    let limit = s.limit.unwrap_or(100).clamp(1, 1000);
    let query = warden_store::AuditQuery {
        unattributed: tenant == gw.config.identity.default_tenant,
        tenant: Some(tenant.to_string()),
        request_id: s.request,
        agent: s.agent,
        user: s.user,
        action: s.tool.map(|t| {
            if t.contains('/') {
                t
            } else {
                t.replacen('.', "/", 1)
            }
        }),
        effect: s.decision,
        kind: s.kind,
        since,
        until,
        before: s.before,
        limit,
    };
    match gw.store.query_audit(&query).await {
        Ok(entries) => {
            let next = (entries.len() == limit as usize)
                .then(|| entries.last().map(|e| e.seq))
                .flatten();
            let records: Vec<Value> = entries
                .iter()
                .map(|e| {
                    let record: Value = serde_json::from_slice(&e.body).unwrap_or(Value::Null);
                    json!({ "seq": e.seq, "hash": hex::encode(e.hash), "record": record })
                })
                .collect();
            Json(json!({ "entries": records, "next_before": next })).into_response()
        }
        Err(e) => store_error(&e),
    }
}

async fn audit_verify(State(gw): Gw, headers: HeaderMap) -> Response {
    if let Err(r) = operator(&gw, &headers, Role::Auditor) {
        return r;
    }
    let mut head = ChainHead::default();
    let mut total = 0;
    loop {
        let entries = match gw.store.audit_entries(head.seq, 1000).await {
            Ok(e) => e,
            Err(e) => return store_error(&e),
        };
        if entries.is_empty() {
            return Json(json!({ "ok": true, "entries": total, "head": hex::encode(head.hash) }))
                .into_response();
        }
        match verify_chain(entries, head) {
            Ok(report) => {
                total += report.entries;
                head = report.head;
            }
            Err(e) => {
                return (
                    StatusCode::CONFLICT,
                    Json(json!({ "ok": false, "first_bad_seq": e.seq(), "error": e.to_string() })),
                )
                    .into_response();
            }
        }
    }
}

async fn policy_status(State(gw): Gw, headers: HeaderMap) -> Response {
    let tenant = match operator(&gw, &headers, Role::Auditor).and_then(|op| scope(&gw, &op)) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Some(handle) = gw.policy_for(&tenant) else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "policy engine unavailable");
    };
    match handle.engine() {
        Some(engine) => {
            let mut status =
                json!({ "version": engine.version(), "policies": engine.policy_count() });
            if let (Some((version, differences)), Some(map)) =
                (handle.shadow_status(), status.as_object_mut())
            {
                map.insert(
                    "shadow".into(),
                    json!({ "version": version, "differences": differences }),
                );
            }
            Json(status).into_response()
        }
        None => error(StatusCode::SERVICE_UNAVAILABLE, "policy engine unavailable"),
    }
}

/// Who may read approvals: an operator (auditor or admin) or a directory
/// user with the approver role; the tenant they see.
async fn approval_reader(gw: &Gateway, headers: &HeaderMap) -> Result<TenantId, Response> {
    if let Ok(op) = operator(gw, headers, Role::Auditor) {
        return scope(gw, &op);
    }
    approver(gw, headers).await.map(|(tenant, _)| tenant)
}

/// The approver a user token names: an active directory user of a served
/// tenant (whether they hold the approver role is the state machine's
/// question, so that a member gets a clear refusal).
async fn approver(
    gw: &Gateway,
    headers: &HeaderMap,
) -> Result<(TenantId, warden_approval::Reviewer), Response> {
    let token = bearer(headers).map_err(|e| error(StatusCode::UNAUTHORIZED, &e.to_string()))?;
    let verified = gw
        .identity
        .verifier
        .verify_user(token)
        .map_err(|e| error(StatusCode::UNAUTHORIZED, &e.to_string()))?;
    if !gw.served.contains(&verified.tenant) {
        return Err(error(StatusCode::FORBIDDEN, "tenant not served"));
    }
    let user = gw
        .store
        .user(&verified.tenant, &verified.user)
        .await
        .map_err(|e| store_error(&e))?
        .filter(|u| u.active)
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "unknown or disabled user"))?;
    Ok((verified.tenant, crate::review::reviewer_of(&user)))
}

#[derive(Deserialize)]
struct ApprovalQuery {
    all: Option<bool>,
}

async fn list_approvals(
    State(gw): Gw,
    headers: HeaderMap,
    Query(q): Query<ApprovalQuery>,
) -> Response {
    let tenant = match approval_reader(&gw, &headers).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    match gw
        .store
        .list_approvals(&tenant, !q.all.unwrap_or(false))
        .await
    {
        Ok(list) => Json(json!({ "approvals": list })).into_response(),
        Err(e) => store_error(&e),
    }
}

async fn show_approval(State(gw): Gw, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let tenant = match approval_reader(&gw, &headers).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    match gw.store.approval(&tenant, &id).await {
        Ok(Some(a)) => Json(a).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "approval not found"),
        Err(e) => store_error(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    reason: Option<String>,
}

async fn review_approval(
    State(gw): Gw,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((id, verdict)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let (tenant, reviewer) = match approver(&gw, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let verdict = match verdict.as_str() {
        "approve" => warden_approval::Verdict::Approve,
        "deny" => warden_approval::Verdict::Deny,
        _ => return error(StatusCode::NOT_FOUND, "use approve or deny"),
    };
    let review: ReviewBody = if body.is_empty() {
        ReviewBody { reason: None }
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid request: {e}")),
        }
    };
    let reason = review
        .reason
        .map(|r| r.chars().take(1000).collect::<String>());
    let decided = crate::review::Decided {
        reviewer,
        verdict,
        reason,
        source: Some(peer.to_string()),
    };
    match crate::review::decide(&gw, &tenant, &id, decided).await {
        Ok(a) => Json(a).into_response(),
        Err(crate::review::ReviewError::NotFound(_)) => {
            error(StatusCode::NOT_FOUND, "approval not found")
        }
        Err(crate::review::ReviewError::Refused(e)) => error(StatusCode::CONFLICT, &e.to_string()),
        Err(crate::review::ReviewError::Invalid(m)) => error(StatusCode::BAD_REQUEST, &m),
        Err(crate::review::ReviewError::Busy(m)) => error(StatusCode::CONFLICT, &m),
        Err(crate::review::ReviewError::Store(e)) => store_error(&e),
    }
}
