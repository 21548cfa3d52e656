//! The agent-facing MCP endpoint (Streamable HTTP): `/mcp/{upstream}` and the
//! federated `/mcp`. Every request runs the phases in order, failing closed:
//!
//! 1. authenticate (certificate and/or token, agent state) → 401
//! 2. route (upstream, session, protocol version) → 404 / 400
//! 3. read and parse the body (size limit, JSON-RPC) → 413 / 400
//! 4. classify (method, tool, arguments) → 400
//! 5. score the context (time, source, session taint, task) and authorize
//!    (Cedar: `connect` to the upstream, then the action) → "access denied"
//! 6. audit, durably, before anything is forwarded → 503 if the log fails
//! 7. forward, answer, and record the upstream's outcome
//!
//! Exactly one request record is written for every request, on every path.

mod exchange;
mod hold;
mod ops;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use warden_mcp::{ErrorCode, Message, classify, is_supported_version, parse_message};
use warden_policy::RequestContext;

use crate::Gateway;
use crate::sessions::SessionCheck;
use crate::tls::Peer;
pub(crate) use exchange::{Exchange, now_rfc3339 as exchange_now};

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

/// Where a request goes.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// `/mcp/{upstream}`: one upstream, names unchanged.
    One(Arc<crate::upstream::Upstream>),
    /// `/mcp`: every upstream, names prefixed `upstream.`.
    Federated,
}

pub(crate) async fn post_federated(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(gw, None, peer, headers, body).await
}

pub(crate) async fn post_upstream(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(upstream): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(gw, Some(upstream), peer, headers, body).await
}

/// GET opens a server-to-client event stream in MCP; Warden offers none.
pub(crate) async fn get_stream(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    let mut ex = Exchange::new(&gw, "GET /mcp".into(), &peer);
    if let Err(response) = ex.authenticate(&headers).await {
        return response;
    }
    ex.reject(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        ErrorCode::InvalidRequest,
        "this gateway offers no server event stream",
    )
    .await
}

/// DELETE ends a session.
pub(crate) async fn delete_session(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    let mut ex = Exchange::new(&gw, "DELETE /mcp".into(), &peer);
    let principal = match ex.authenticate(&headers).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let id = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok());
    match id {
        Some(id) if gw.sessions.close(id, &principal) => {
            ex.accepted(StatusCode::NO_CONTENT, "session ended").await
        }
        _ => {
            ex.reject(
                StatusCode::NOT_FOUND,
                None,
                ErrorCode::InvalidRequest,
                "unknown session",
            )
            .await
        }
    }
}

/// One MCP request, in a trace span of its own (its phases are child
/// spans; see `Exchange`). The span carries ids and the decision, never
/// arguments or credentials.
async fn handle(
    gw: Arc<Gateway>,
    upstream: Option<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Response {
    use tracing::Instrument as _;
    let span = tracing::info_span!(
        "request",
        otel.name = "mcp request",
        otel.kind = "server",
        request_id = tracing::field::Empty,
        endpoint = tracing::field::Empty,
        agent = tracing::field::Empty,
        method = tracing::field::Empty,
        decision = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    handle_in_span(gw, upstream, peer, headers, body)
        .instrument(span)
        .await
}

async fn handle_in_span(
    gw: Arc<Gateway>,
    upstream: Option<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let endpoint = upstream.as_ref().map_or_else(
        || "/mcp".to_owned(),
        |u| format!("/mcp/{}", u.chars().take(64).collect::<String>()),
    );
    let mut ex = Exchange::new(&gw, endpoint, &peer);
    let span = tracing::Span::current();
    span.record("request_id", ex.rec.request_id.as_str());
    span.record("endpoint", ex.rec.endpoint.as_str());

    // 1. Authenticate.
    let principal = match ex.authenticate(&headers).await {
        Ok(p) => p,
        Err(response) => return response,
    };

    // 2. Route.
    let route = match upstream {
        None => Route::Federated,
        Some(name) => match gw.upstreams.get(name.as_str()) {
            Some(u) => {
                ex.rec.upstream = Some(name);
                Route::One(u.clone())
            }
            None => {
                let message = format!(
                    "unknown upstream `{}`",
                    name.chars().take(64).collect::<String>()
                );
                return ex
                    .reject(
                        StatusCode::NOT_FOUND,
                        None,
                        ErrorCode::InvalidRequest,
                        &message,
                    )
                    .await;
            }
        },
    };
    if let Some(v) = headers.get(VERSION_HEADER)
        && !v.to_str().is_ok_and(is_supported_version)
    {
        {
            return ex
                .reject(
                    StatusCode::BAD_REQUEST,
                    None,
                    ErrorCode::InvalidRequest,
                    "unsupported MCP-Protocol-Version",
                )
                .await;
        }
    }
    let session = headers
        .get(SESSION_HEADER)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    if gw.sessions.check(session, &principal) == SessionCheck::Unknown {
        return ex
            .reject(
                StatusCode::NOT_FOUND,
                None,
                ErrorCode::InvalidRequest,
                "unknown or expired session",
            )
            .await;
    }

    // 3. Read and parse.
    let bytes = match ex.read_body(&headers, body).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let message = match parse_message(&bytes) {
        Ok(m) => m,
        Err(e) => {
            return ex
                .reject(StatusCode::BAD_REQUEST, e.id.as_ref(), e.code, &e.message)
                .await;
        }
    };
    let (id, method, params) = match message {
        Message::Notification { method, .. } => {
            ex.rec.method = Some(method.chars().take(256).collect());
            return ex
                .accepted(StatusCode::ACCEPTED, "notification accepted, not forwarded")
                .await;
        }
        Message::Response { .. } => {
            return ex
                .accepted(StatusCode::ACCEPTED, "response accepted, not forwarded")
                .await;
        }
        Message::Request { id, method, params } => (id, method, params),
    };
    ex.rec.method = Some(method.clone());

    // 4. Classify.
    let op = match classify(&method, params.as_deref()) {
        Ok(op) => op,
        Err(e) => {
            return ex
                .reject(StatusCode::BAD_REQUEST, Some(&id), e.code, &e.message)
                .await;
        }
    };

    // 5-7. Score the context, authorize, audit, forward: per operation.
    let session_key = crate::taint::session_key(session, &principal);
    let context = RequestContext {
        now: crate::auth::now_secs(),
        source_ip: peer.addr.ip(),
        mtls: principal.mtls,
        agent: principal.info.clone(),
        task: principal.task.clone(),
        session: gw.taints.state(&session_key),
        risk_score: 0,
    };
    let caller = ops::Caller {
        principal,
        context,
        session_key,
    };
    // Boxed, as are the operations' own phases (see `ops`): an async
    // fn's future holds each future it awaits, inline and more than once,
    // so unboxed the request's future grew to 134 KB (release build),
    // copied whole at every level that moved it (`memmove` was 4.9% of the
    // gateway's samples).
    Box::pin(ops::run(ex, &gw, &caller, &route, id, op)).await
}

#[cfg(test)]
mod tests {
    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, C, D, Fut>(_: impl FnOnce(A, B, C, D) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    fn future_size5<A, B, C, D, E, Fut>(_: impl FnOnce(A, B, C, D, E) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    fn future_size6<A, B, C, D, E, F, Fut>(_: impl FnOnce(A, B, C, D, E, F) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Every level that moves a request's future copies all of it, so it
    /// must stay small: with the phases' futures nested inline it was
    /// 15 KB in a test build and 134 KB in a release build, and `memmove`
    /// the gateway's costliest function; boxed, 3 KB in a test build (3.9 KB
    /// in a release build). The operations' own future is checked too: it
    /// is boxed whole, so its size is copied once per request.
    #[test]
    fn a_requests_future_stays_small() {
        const LIMIT: usize = 8 * 1024;
        for (name, size) in [
            ("handle", future_size5(super::handle)),
            ("post_upstream", future_size5(super::post_upstream)),
            ("post_federated", future_size(super::post_federated)),
            ("ops::run", future_size6(super::ops::run)),
        ] {
            assert!(
                size <= LIMIT,
                "the future of `{name}` is {size} bytes, more than {LIMIT}: box the phases it awaits"
            );
        }
    }
}
