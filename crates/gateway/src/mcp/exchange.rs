//! One request's passage through the gateway, and its audit record.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument as _;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_audit::{AuditRecord, Outcome, RecordKind};
use warden_core::Decision;
use warden_mcp::{ErrorCode, Id, error_response};

use crate::Gateway;
use crate::auth::{AuthError, Principal, authenticate};
use crate::metrics::Phase;
use crate::tls::Peer;

/// A request in flight: the gateway, its record, and when it started.
pub(crate) struct Exchange {
    gw: Arc<Gateway>,
    peer: Peer,
    pub(crate) rec: AuditRecord,
    pub(crate) started: Instant,
}

pub(crate) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl Exchange {
    pub(crate) fn new(gw: &Arc<Gateway>, endpoint: String, peer: &Peer) -> Self {
        let rec = AuditRecord::request(now_rfc3339(), endpoint, Some(peer.source()));
        Self {
            gw: gw.clone(),
            peer: peer.clone(),
            rec,
            started: Instant::now(),
        }
    }

    /// The gateway serving this request.
    pub(crate) fn gateway(&self) -> Arc<Gateway> {
        self.gw.clone()
    }

    fn data(&self) -> serde_json::Value {
        json!({ "request_id": self.rec.request_id })
    }

    /// Phase 1: authenticate, or answer 401 (audited).
    pub(crate) async fn authenticate(
        &mut self,
        headers: &HeaderMap,
    ) -> Result<Principal, Response> {
        let gw = self.gw.clone();
        let started = Instant::now();
        let result = authenticate(
            headers,
            &self.peer,
            &gw.identity.verifier,
            &gw.tokens,
            &gw.served,
            gw.store.as_ref(),
        )
        .instrument(tracing::info_span!("authenticate"))
        .await;
        gw.metrics.phase(Phase::Authenticate, started.elapsed());
        match result {
            Ok(p) => {
                self.rec.tenant = Some(p.tenant.to_string());
                self.rec.agent = Some(p.agent.to_string());
                self.rec.user = p.user.as_ref().map(ToString::to_string);
                self.rec.task = p.task.as_ref().map(|t| t.id.clone());
                Ok(p)
            }
            Err(e) => Err(self.unauthorized(e).await),
        }
    }

    async fn unauthorized(&mut self, e: AuthError) -> Response {
        let (status, message) = match &e {
            AuthError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "authentication is unavailable; try again later".to_owned(),
            ),
            other => (
                StatusCode::UNAUTHORIZED,
                format!("unauthenticated: {other}"),
            ),
        };
        let challenge = e.challenge();
        let mut response = self
            .reject(status, None, ErrorCode::AccessDenied, &message)
            .await;
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        response
    }

    /// Reads the body within the configured limit, or answers 413 / 400.
    pub(crate) async fn read_body(
        &mut self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Bytes, Response> {
        let max = self.gw.config.gateway.max_body_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_large = format!("request body larger than {max} bytes");
        if declared.is_some_and(|n| n > max as u64) {
            return Err(self
                .reject(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    None,
                    ErrorCode::InvalidRequest,
                    &too_large,
                )
                .await);
        }
        match axum::body::to_bytes(body, max).await {
            Ok(bytes) => Ok(bytes),
            Err(e) => {
                let is_limit = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                    || e.to_string().contains("length limit");
                if is_limit {
                    Err(self
                        .reject(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            None,
                            ErrorCode::InvalidRequest,
                            &too_large,
                        )
                        .await)
                } else {
                    Err(self
                        .reject(
                            StatusCode::BAD_REQUEST,
                            None,
                            ErrorCode::InvalidRequest,
                            "cannot read the request body",
                        )
                        .await)
                }
            }
        }
    }

    /// Refuses the request: writes the record (deny) and answers with a
    /// JSON-RPC error. The record is written even if the answer is an error
    /// of Warden's own; a failing audit log is logged, and the refusal stands.
    pub(crate) async fn reject(
        &mut self,
        status: StatusCode,
        id: Option<&Id>,
        code: ErrorCode,
        message: &str,
    ) -> Response {
        self.rec.decision = Decision::deny(message);
        self.rec.status = Some(status.as_u16());
        self.rec.error = Some(message.to_owned());
        if let Err(e) = self.gw.audit.write(&self.rec).await {
            tracing::error!(request_id = %self.rec.request_id, "{e}");
        }
        self.log();
        json_response(
            status,
            error_response(id, code, message, Some(&self.data())),
        )
    }

    /// Refuses a request that policy denied: HTTP 200 with a JSON-RPC error
    /// that gives the policy's stated reasons and nothing internal.
    pub(crate) async fn denied(&mut self, id: &Id, decision: Decision) -> Response {
        let reasons = if decision.errors.is_empty() {
            decision.reasons.clone()
        } else {
            vec!["policy evaluation failed".to_owned()]
        };
        let message = format!("access denied: {}", reasons.join("; "));
        self.rec.decision = decision;
        self.rec.status = Some(200);
        self.rec.error = Some(message.clone());
        if let Err(e) = self.gw.audit.write(&self.rec).await {
            tracing::error!(request_id = %self.rec.request_id, "{e}");
        }
        self.log();
        json_response(
            StatusCode::OK,
            error_response(
                Some(id),
                ErrorCode::AccessDenied,
                &message,
                Some(&self.data()),
            ),
        )
    }

    /// Accepts a message that needs no upstream (notifications, DELETE).
    pub(crate) async fn accepted(&mut self, status: StatusCode, reason: &str) -> Response {
        self.rec.decision = Decision::allow(Vec::new(), vec![reason.into()]);
        self.rec.status = Some(status.as_u16());
        if let Err(e) = self.gw.audit.write(&self.rec).await {
            tracing::error!(request_id = %self.rec.request_id, "{e}");
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                error_response(
                    None,
                    ErrorCode::InternalError,
                    "audit log unavailable",
                    Some(&self.data()),
                ),
            );
        }
        self.log();
        status.into_response()
    }

    /// Phase 6: makes the allow decision durable before anything is
    /// forwarded. If the audit log fails, the request is refused (503).
    pub(crate) async fn commit(&mut self, id: &Id, decision: Decision) -> Result<(), Response> {
        self.rec.decision = decision;
        self.rec.status = Some(200);
        let started = Instant::now();
        let written = self
            .gw
            .audit
            .write(&self.rec)
            .instrument(tracing::info_span!("audit_commit"))
            .await;
        self.gw.metrics.phase(Phase::AuditCommit, started.elapsed());
        match written {
            Ok(_) => {
                self.log();
                Ok(())
            }
            Err(e) => {
                tracing::error!(request_id = %self.rec.request_id, "refusing the request: {e}");
                self.rec.status = Some(503);
                self.log();
                Err(json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    error_response(
                        Some(id),
                        ErrorCode::InternalError,
                        "audit log unavailable; the request was not forwarded",
                        Some(&self.data()),
                    ),
                ))
            }
        }
    }

    /// Records what the upstream did (after the request record, which is
    /// committed by then): the record becomes the outcome record in place,
    /// the request's fields kept, rather than a copy of it. Only the
    /// request id is read from it afterwards.
    pub(crate) async fn outcome(&mut self, result: &str, detail: Option<String>) {
        let latency_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let rec = &mut self.rec;
        rec.kind = RecordKind::Outcome;
        rec.time = now_rfc3339();
        rec.outcome = Some(Outcome {
            result: result.to_owned(),
            latency_ms,
            detail: detail.map(|d| d.chars().take(500).collect()),
        });
        self.gw.audit.write_later(&self.rec).await;
        self.log_outcome(result, latency_ms);
    }

    fn log(&self) {
        let allowed = self.rec.decision.effect == warden_core::Effect::Allow;
        self.gw.metrics.request(
            allowed,
            self.rec.upstream.as_deref(),
            self.rec.method.as_deref(),
        );
        let span = tracing::Span::current();
        if let Some(a) = &self.rec.agent {
            span.record("agent", a.as_str());
        }
        if let Some(m) = &self.rec.method {
            span.record("method", m.chars().take(64).collect::<String>().as_str());
        }
        span.record("decision", if allowed { "allow" } else { "deny" });
        span.record("status", self.rec.status.unwrap_or(0));
        tracing::info!(
            request_id = %self.rec.request_id,
            agent.id = self.rec.agent.as_deref().unwrap_or("-"),
            method = self.rec.method.as_deref().unwrap_or("-"),
            action = self.rec.action.as_deref().unwrap_or("-"),
            decision = ?self.rec.decision.effect,
            status = self.rec.status.unwrap_or(0),
            "request"
        );
    }

    fn log_outcome(&self, result: &str, latency_ms: u64) {
        self.gw
            .metrics
            .outcome(self.rec.upstream.as_deref().unwrap_or(""), result);
        tracing::info!(request_id = %self.rec.request_id, upstream = self.rec.upstream.as_deref().unwrap_or("-"), result, latency_ms, "upstream outcome");
    }

    /// An upstream failure, as the agent sees it (no internals).
    pub(crate) async fn upstream_failed(
        &mut self,
        id: &Id,
        upstream: &str,
        error: &crate::upstream::CallError,
    ) -> Response {
        use crate::upstream::CallError;
        self.outcome(error.outcome(), Some(error.to_string())).await;
        let data = self.data();
        match error {
            CallError::Rpc(rpc) => {
                let mut body = json!({ "jsonrpc": "2.0", "id": id, "error": rpc });
                if rpc.data.is_none()
                    && let Some(error) = body.get_mut("error").and_then(Value::as_object_mut)
                {
                    error.insert("data".into(), data);
                }
                json_response(
                    StatusCode::OK,
                    serde_json::to_vec(&body).unwrap_or_default(),
                )
            }
            CallError::Timeout => json_response(
                StatusCode::GATEWAY_TIMEOUT,
                error_response(
                    Some(id),
                    ErrorCode::UpstreamTimeout,
                    &format!("upstream `{upstream}` did not answer in time"),
                    Some(&data),
                ),
            ),
            CallError::Invalid(_) => json_response(
                StatusCode::BAD_GATEWAY,
                error_response(
                    Some(id),
                    ErrorCode::UpstreamUnavailable,
                    &format!("upstream `{upstream}` sent an invalid response"),
                    Some(&data),
                ),
            ),
            CallError::Unavailable(_) | CallError::SessionExpired => json_response(
                StatusCode::BAD_GATEWAY,
                error_response(
                    Some(id),
                    ErrorCode::UpstreamUnavailable,
                    &format!("upstream `{upstream}` is unavailable"),
                    Some(&data),
                ),
            ),
        }
    }
}
