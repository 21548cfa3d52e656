//! Phases 5-7 per MCP operation: authorize, audit durably, forward, filter.

use std::sync::Arc;

use axum::response::Response;
use futures_util::future::join_all;
use http::{HeaderValue, StatusCode};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use warden_core::{Decision, Effect};
use warden_mcp::catalog::canonical_object;
use warden_mcp::classify::CallTool;
use warden_mcp::{ErrorCode, Id, Operation, negotiate_version, split_federated, success_response};
use warden_policy::{PolicyEngine, Request, RequestContext, Target, tool_action};

use super::exchange::json_response;
use super::hold::{Held, Verdict, hold};
use super::{Exchange, Route, SESSION_HEADER};
use crate::Gateway;
use crate::auth::Principal;
use crate::upstream::{CallError, Upstream};

/// An authenticated caller and the circumstances of its request.
#[derive(Debug)]
pub(crate) struct Caller {
    pub(crate) principal: Principal,
    pub(crate) context: RequestContext,
    /// Where its session's taint is tracked.
    pub(crate) session_key: String,
}

impl std::ops::Deref for Caller {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.principal
    }
}

/// A list kind: method, result key, the key naming each item.
struct ListKind {
    method: &'static str,
    key: &'static str,
    item: &'static str,
}

const RESOURCES: ListKind = ListKind {
    method: "resources/list",
    key: "resources",
    item: "uri",
};
const TEMPLATES: ListKind = ListKind {
    method: "resources/templates/list",
    key: "resourceTemplates",
    item: "uriTemplate",
};
const PROMPTS: ListKind = ListKind {
    method: "prompts/list",
    key: "prompts",
    item: "name",
};

fn allow(reason: &str) -> Decision {
    Decision::allow(Vec::new(), vec![reason.to_owned()])
}

fn ok(id: &Id, result: &Value) -> Response {
    let raw = RawValue::from_string(result.to_string()).unwrap_or_else(|_| empty_object());
    json_response(StatusCode::OK, success_response(id, &raw))
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_default()
}

pub(super) async fn run(
    mut ex: Exchange,
    gw: &Arc<Gateway>,
    who: &Caller,
    route: &Route,
    id: Id,
    op: Operation,
) -> Response {
    let Some(engine) = gw.policy_for(&who.tenant).and_then(|p| p.engine()) else {
        return ex
            .reject(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(&id),
                ErrorCode::InternalError,
                "policy engine unavailable",
            )
            .await;
    };
    match op {
        Operation::Initialize { protocol_version } => {
            Box::pin(initialize(ex, gw, who, &id, protocol_version.as_deref())).await
        }
        Operation::Ping => match ex.commit(&id, allow("ping")).await {
            Ok(()) => ok(&id, &json!({})),
            Err(r) => r,
        },
        Operation::ListTools => Box::pin(list_tools(ex, gw, who, route, &id)).await,
        Operation::CallTool(call) => Box::pin(call_tool(ex, &engine, who, route, &id, call)).await,
        Operation::ListResources => Box::pin(list(ex, gw, who, route, &id, &RESOURCES)).await,
        Operation::ListResourceTemplates => {
            Box::pin(list(ex, gw, who, route, &id, &TEMPLATES)).await
        }
        Operation::ListPrompts => Box::pin(list(ex, gw, who, route, &id, &PROMPTS)).await,
        Operation::ReadResource { uri } => {
            Box::pin(read_resource(ex, gw, &engine, who, route, &id, uri)).await
        }
        Operation::GetPrompt { name, arguments } => {
            Box::pin(get_prompt(ex, &engine, who, route, &id, &name, arguments)).await
        }
        Operation::Unsupported { method } => {
            let message = format!(
                "method `{}` is not supported by the gateway",
                method.chars().take(64).collect::<String>()
            );
            ex.reject(
                StatusCode::OK,
                Some(&id),
                ErrorCode::MethodNotFound,
                &message,
            )
            .await
        }
    }
}

async fn initialize(
    mut ex: Exchange,
    gw: &Arc<Gateway>,
    who: &Caller,
    id: &Id,
    asked: Option<&str>,
) -> Response {
    if let Err(r) = ex.commit(id, allow("session initialised")).await {
        return r;
    }
    let version = negotiate_version(asked);
    let session = gw.sessions.open(who);
    let result = json!({
        "protocolVersion": version,
        "capabilities": { "tools": {}, "resources": {}, "prompts": {} },
        "serverInfo": { "name": "warden", "version": env!("CARGO_PKG_VERSION") },
        "instructions": "Warden verifies, authorizes and audits every call; tools you may not use are not listed."
    });
    let mut response = ok(id, &result);
    if let Ok(v) = HeaderValue::from_str(&session) {
        response.headers_mut().insert(SESSION_HEADER, v);
    }
    response
}

/// The upstreams a route reaches that the caller may connect to (a
/// one-upstream route was checked by [`refused_upstream`] already).
fn targets(gw: &Gateway, engine: &PolicyEngine, who: &Caller, route: &Route) -> Vec<Arc<Upstream>> {
    match route {
        Route::One(u) => vec![u.clone()],
        Route::Federated => gw
            .upstreams
            .values()
            .filter(|u| connect(engine, who, u.name().as_str()).is_allow())
            .cloned()
            .collect(),
    }
}

/// Whether the caller may reach `upstream` at all (`connect`).
fn connect(engine: &PolicyEngine, who: &Caller, upstream: &str) -> Decision {
    engine.authorize(&request(who, Target::Upstream { upstream }))
}

/// The upstream and local name of `name` on `route`.
fn resolve<'a>(gw: &Gateway, route: &Route, name: &'a str) -> Option<(Arc<Upstream>, &'a str)> {
    match route {
        Route::One(u) => Some((u.clone(), name)),
        Route::Federated => {
            let (upstream, local) = split_federated(name)?;
            gw.upstreams.get(upstream).map(|u| (u.clone(), local))
        }
    }
}

fn public_name(route: &Route, upstream: &str, name: &str) -> String {
    match route {
        Route::One(_) => name.to_owned(),
        Route::Federated => format!("{upstream}.{name}"),
    }
}

async fn list_tools(
    mut ex: Exchange,
    gw: &Arc<Gateway>,
    who: &Caller,
    route: &Route,
    id: &Id,
) -> Response {
    let Some(engine) = gw.policy_for(&who.tenant).and_then(|p| p.engine()) else {
        return engine_unavailable(ex, id).await;
    };
    if let Some(denied) = refused_upstream(&engine, who, route) {
        return ex.denied(id, denied).await;
    }
    if let Err(r) = ex.commit(id, allow("tools/list, filtered by policy")).await {
        return r;
    }
    let upstreams = targets(gw, &engine, who, route);
    let results = join_all(upstreams.iter().map(|u| u.list_tools())).await;
    let mut tools = Vec::new();
    let mut failures = Vec::new();
    let (mut shown, mut total) = (0, 0);
    for (upstream, result) in upstreams.iter().zip(results) {
        let catalog = match result {
            Ok(c) => c,
            Err(e) => {
                if let Route::One(_) = route {
                    return ex.upstream_failed(id, upstream.name().as_str(), &e).await;
                }
                tracing::warn!(upstream = %upstream.name(), "tools/list failed: {e}");
                failures.push(format!("{}: {e}", upstream.name()));
                continue;
            }
        };
        for handle in gw.policies.values() {
            handle
                .update_catalog(upstream.name(), catalog.clone())
                .await;
        }
        let Some(engine) = gw.policy_for(&who.tenant).and_then(|p| p.engine()) else {
            continue;
        };
        let none = Map::new();
        for tool in &catalog.tools {
            total += 1;
            let target = Target::Tool {
                upstream: upstream.name().as_str(),
                tool: &tool.name,
                args: &none,
            };
            if engine.may_list(&request(who, target)) {
                shown += 1;
                let mut def = tool.definition.clone();
                def.insert(
                    "name".into(),
                    Value::String(public_name(route, upstream.name().as_str(), &tool.name)),
                );
                tools.push(Value::Object(def));
            }
        }
    }
    let mut detail = format!("{shown} of {total} tools listed");
    if !failures.is_empty() {
        detail.push_str(&format!("; unavailable: {}", failures.join(", ")));
    }
    ex.outcome("ok", Some(detail)).await;
    ok(id, &json!({ "tools": tools }))
}

async fn list(
    mut ex: Exchange,
    gw: &Arc<Gateway>,
    who: &Caller,
    route: &Route,
    id: &Id,
    kind: &ListKind,
) -> Response {
    let Some(engine) = gw.policy_for(&who.tenant).and_then(|p| p.engine()) else {
        return engine_unavailable(ex, id).await;
    };
    if let Some(denied) = refused_upstream(&engine, who, route) {
        return ex.denied(id, denied).await;
    }
    if let Err(r) = ex
        .commit(id, allow(&format!("{}, filtered by policy", kind.method)))
        .await
    {
        return r;
    }
    let upstreams = targets(gw, &engine, who, route);
    let results = join_all(upstreams.iter().map(|u| u.list_all(kind.method, kind.key))).await;
    let mut items = Vec::new();
    let (mut shown, mut total) = (0, 0);
    for (upstream, result) in upstreams.iter().zip(results) {
        let list = match result {
            Ok(l) => l,
            // An upstream without the capability answers -32601: it has none.
            Err(CallError::Rpc(e)) if e.code == -32601 => continue,
            Err(e) => {
                if let Route::One(_) = route {
                    return ex.upstream_failed(id, upstream.name().as_str(), &e).await;
                }
                tracing::warn!(upstream = %upstream.name(), "{} failed: {e}", kind.method);
                continue;
            }
        };
        let name = upstream.name().as_str();
        for mut item in list {
            total += 1;
            let Some(key) = item
                .get(kind.item)
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                continue;
            };
            let target = if kind.key == "prompts" {
                Target::Prompt {
                    upstream: name,
                    name: &key,
                }
            } else {
                Target::Resource {
                    upstream: name,
                    uri: &key,
                }
            };
            if !engine.may_list(&request(who, target)) {
                continue;
            }
            shown += 1;
            if kind.key == "prompts" {
                if let Some(obj) = item.as_object_mut() {
                    obj.insert(
                        kind.item.into(),
                        Value::String(public_name(route, name, &key)),
                    );
                }
            } else if let (Route::Federated, "resources") = (route, kind.key) {
                gw.remember_resource(&key, upstream.name());
            }
            items.push(item);
        }
    }
    ex.outcome(
        "ok",
        Some(format!("{shown} of {total} {} listed", kind.key)),
    )
    .await;
    ok(id, &json!({ kind.key: items }))
}

fn request<'a>(who: &'a Caller, target: Target<'a>) -> Request<'a> {
    Request {
        agent: who.agent.as_str(),
        user: who.user.as_ref().map(|u| u.as_str()),
        target,
        context: &who.context,
    }
}

async fn engine_unavailable(mut ex: Exchange, id: &Id) -> Response {
    ex.reject(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(id),
        ErrorCode::InternalError,
        "policy engine unavailable",
    )
    .await
}

/// The refusal of a one-upstream route the caller may not connect to.
fn refused_upstream(engine: &PolicyEngine, who: &Caller, route: &Route) -> Option<Decision> {
    let Route::One(u) = route else {
        return None;
    };
    let decision = connect(engine, who, u.name().as_str());
    (!decision.is_allow()).then_some(decision)
}

async fn call_tool(
    mut ex: Exchange,
    engine: &PolicyEngine,
    who: &Caller,
    route: &Route,
    id: &Id,
    call: CallTool,
) -> Response {
    let gw = ex.gateway();
    let Some((upstream, tool)) = resolve(&gw, route, &call.name) else {
        let message = format!(
            "unknown tool `{}`",
            call.name.chars().take(128).collect::<String>()
        );
        return ex
            .reject(StatusCode::OK, Some(id), ErrorCode::InvalidParams, &message)
            .await;
    };
    let name = upstream.name().as_str();
    let action = tool_action(name, tool);
    ex.rec.upstream = Some(name.to_owned());
    ex.rec.resource = Some(format!("Warden::Tool::{action:?}"));
    ex.rec.action = Some(action);
    ex.rec.args_digest = Some(digest(&call.arguments));
    let target = Target::Tool {
        upstream: name,
        tool,
        args: &call.arguments,
    };
    let params = call.forward_params(tool);
    Box::pin(decide_and_forward(
        ex,
        engine,
        who,
        target,
        &upstream,
        id,
        "tools/call",
        &params,
    ))
    .await
}

async fn read_resource(
    mut ex: Exchange,
    gw: &Arc<Gateway>,
    engine: &PolicyEngine,
    who: &Caller,
    route: &Route,
    id: &Id,
    uri: String,
) -> Response {
    let upstream = match route {
        Route::One(u) => Some(u.clone()),
        Route::Federated => gw.resource_upstream(&uri),
    };
    let Some(upstream) = upstream else {
        let message = "unknown resource; list resources first";
        return ex
            .reject(
                StatusCode::OK,
                Some(id),
                ErrorCode::ResourceNotFound,
                message,
            )
            .await;
    };
    let name = upstream.name().as_str();
    ex.rec.upstream = Some(name.to_owned());
    ex.rec.action = Some(warden_policy::ACTION_READ_RESOURCE.to_owned());
    ex.rec.resource = Some(format!("Warden::Resource::{:?}", format!("{name}/{uri}")));
    let target = Target::Resource {
        upstream: name,
        uri: &uri,
    };
    let params = json!({ "uri": uri });
    Box::pin(decide_and_forward(
        ex,
        engine,
        who,
        target,
        &upstream,
        id,
        "resources/read",
        &params,
    ))
    .await
}

async fn get_prompt(
    mut ex: Exchange,
    engine: &PolicyEngine,
    who: &Caller,
    route: &Route,
    id: &Id,
    name: &str,
    arguments: Map<String, Value>,
) -> Response {
    let gw = ex.gateway();
    let Some((upstream, prompt)) = resolve(&gw, route, name) else {
        return ex
            .reject(
                StatusCode::OK,
                Some(id),
                ErrorCode::InvalidParams,
                "unknown prompt",
            )
            .await;
    };
    let up = upstream.name().as_str();
    ex.rec.upstream = Some(up.to_owned());
    ex.rec.action = Some(warden_policy::ACTION_GET_PROMPT.to_owned());
    ex.rec.resource = Some(format!("Warden::Prompt::{:?}", format!("{up}/{prompt}")));
    ex.rec.args_digest = Some(digest(&arguments));
    let target = Target::Prompt {
        upstream: up,
        name: prompt,
    };
    let params = json!({ "name": prompt, "arguments": arguments });
    Box::pin(decide_and_forward(
        ex,
        engine,
        who,
        target,
        &upstream,
        id,
        "prompts/get",
        &params,
    ))
    .await
}

/// SHA-256 (hex) of the canonical JSON of arguments.
fn digest(arguments: &Map<String, Value>) -> String {
    hex::encode(Sha256::digest(canonical_object(arguments)))
}

/// Phases 5-7 for one target: authorize, commit the record, forward.
#[allow(
    clippy::too_many_arguments,
    reason = "the phases' inputs, passed through once"
)]
async fn decide_and_forward(
    mut ex: Exchange,
    engine: &PolicyEngine,
    who: &Caller,
    target: Target<'_>,
    upstream: &Upstream,
    id: &Id,
    method: &str,
    params: &Value,
) -> Response {
    // `connect` to the upstream, then the action itself.
    let started = std::time::Instant::now();
    let decision = tracing::info_span!("authorize")
        .in_scope(|| engine.authorize_with_reach(&request(who, target)));
    ex.gateway()
        .metrics
        .phase(crate::metrics::Phase::Authorize, started.elapsed());
    explain(&mut ex, &decision, who, target);
    shadow(&mut ex, &decision, who, target);
    if !decision.is_allow() {
        return ex.denied(id, decision).await;
    }
    let decision = match (decision.obligations.approval, target) {
        (None, _) => decision,
        (
            Some(required),
            Target::Tool {
                upstream,
                tool,
                args,
            },
        ) => {
            let held = Held {
                upstream,
                tool,
                arguments: args,
                meta: params.get("_meta").and_then(Value::as_object),
                required,
                groups: {
                    let mut g = decision.obligations.approver_groups.clone();
                    g.sort();
                    g.dedup();
                    g
                },
                mode: ex
                    .gateway()
                    .config
                    .upstream(upstream)
                    .map_or(warden_config::ApprovalMode::Defer, |u| u.approval),
            };
            match Box::pin(hold(&mut ex, engine, who, &held, decision, id)).await {
                Verdict::Run(d) => d,
                Verdict::Answered(response) => return response,
            }
        }
        (Some(_), _) => {
            // Only tool calls can be held; anything else that needs approval
            // does not run.
            let mut refused = decision;
            refused.effect = Effect::Deny;
            refused
                .reasons
                .push("only tool calls can wait for approval: this was not run".into());
            return ex.denied(id, refused).await;
        }
    };
    if let Err(r) = ex.commit(id, decision).await {
        return r;
    }
    let label = match target {
        Target::Tool { upstream, tool, .. } => engine.tool_label(upstream, tool),
        _ => None,
    };
    Box::pin(forward(ex, upstream, id, method, params, who, label)).await
}

/// What the record keeps to explain the decision: the redacted arguments
/// (hiding what `@redact` names) and the risk the decision saw.
fn explain(ex: &mut Exchange, decision: &Decision, who: &Caller, target: Target<'_>) {
    if let Target::Tool { args, .. } = target {
        ex.rec.args = Some(warden_audit::redact_args(
            args,
            &decision.obligations.redact,
        ));
    }
    ex.rec.risk = Some(warden_audit::Risk {
        score: who.context.risk_score,
        level: who.context.risk_level().to_owned(),
        reasons: Vec::new(),
    });
}

/// Shadow mode: the candidate policies decide too; where they differ, the
/// record says so. Never enforced.
fn shadow(ex: &mut Exchange, live: &Decision, who: &Caller, target: Target<'_>) {
    let gw = ex.gateway();
    let Some(handle) = gw.policy_for(&who.tenant) else {
        return;
    };
    let Some(candidate) = handle.shadow() else {
        return;
    };
    let decision = candidate.authorize_with_reach(&request(who, target));
    if decision.effect != live.effect {
        handle.count_difference();
        tracing::info!(
            request_id = %ex.rec.request_id,
            live = ?live.effect,
            shadow = ?decision.effect,
            "shadow policies decide otherwise"
        );
        ex.rec.shadow = Some(warden_audit::ShadowDecision {
            version: candidate.version().to_owned(),
            decision,
        });
    }
}

/// Phase 7: forward, answer, record the outcome (and, for a tool call, what
/// the session has now read).
async fn forward(
    mut ex: Exchange,
    upstream: &Upstream,
    id: &Id,
    method: &str,
    params: &Value,
    who: &Caller,
    label: Option<warden_policy::ToolLabel>,
) -> Response {
    let started = std::time::Instant::now();
    let result = tracing::Instrument::instrument(
        upstream.call_as(method, Some(params), Some(&who.tenant), who.user.as_ref()),
        tracing::info_span!("forward", upstream = upstream.name().as_str()),
    )
    .await;
    ex.gateway()
        .metrics
        .phase(crate::metrics::Phase::Forward, started.elapsed());
    if let (Ok(_), Some(label)) = (&result, label) {
        ex.gateway().taints.record(&who.session_key, label);
    }
    match result {
        Ok(result) => {
            #[derive(serde::Deserialize)]
            struct ToolResult {
                #[serde(rename = "isError", default)]
                is_error: bool,
            }
            let is_error = method == "tools/call"
                && serde_json::from_str::<ToolResult>(result.get()).is_ok_and(|r| r.is_error);
            ex.outcome(if is_error { "tool_error" } else { "ok" }, None)
                .await;
            json_response(StatusCode::OK, success_response(id, &result))
        }
        Err(e) => ex.upstream_failed(id, upstream.name().as_str(), &e).await,
    }
}
