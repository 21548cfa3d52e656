//! The agent-facing identity endpoints on the gateway listener:
//!
//! - `POST /oauth/token` (form-encoded, RFC 6749 conventions):
//!   - `grant_type=client_credentials`, authenticated by the agent's client
//!     certificate: an access token bound to that certificate (RFC 8705).
//!   - `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`
//!     (RFC 8693): the agent (certificate and/or its own token, as a bearer
//!     header or `actor_token`) presents a user's token as `subject_token`
//!     and gets a short-lived delegated token, `sub` = the user and
//!     `act.sub` = the agent.
//! - `POST /identity/renew`: a CSR for the same identity, over mTLS with
//!   the current certificate, returns a fresh certificate (PEM chain).
//! - `GET /.well-known/jwks.json`: the token signing public keys.
//!
//! Every grant and refusal is an audit record, written before the answer.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::json;
use warden_audit::AuditRecord;
use warden_core::Decision;
use warden_identity::ca::cert_identity;
use warden_store::CertRecord;

use crate::Gateway;
use crate::auth::{AuthError, Principal, authenticate};
use crate::mcp::exchange_now as now;
use crate::tls::Peer;

/// The largest token request or CSR read.
pub(crate) const MAX_FORM_BYTES: usize = 64 * 1024;

const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const SUBJECT_TYPES: &[&str] = &[
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
    TYPE_ACCESS_TOKEN,
];

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    subject_token: Option<String>,
    subject_token_type: Option<String>,
    actor_token: Option<String>,
    actor_token_type: Option<String>,
    requested_token_type: Option<String>,
}

/// An OAuth error answer (RFC 6749 §5.2).
struct OauthError {
    status: StatusCode,
    code: &'static str,
    description: String,
}

impl OauthError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
        }
    }

    fn request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn from_auth(e: &AuthError) -> Self {
        match e {
            AuthError::Unavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "authentication is unavailable; try again later",
            ),
            other => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                other.to_string(),
            ),
        }
    }

    fn response(&self) -> Response {
        let mut r = (
            self.status,
            Json(json!({ "error": self.code, "error_description": self.description })),
        )
            .into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

/// The audit record of one identity request.
fn record(peer: &Peer, endpoint: &str, method: &str) -> AuditRecord {
    let mut rec = AuditRecord::request(now(), endpoint.into(), Some(peer.source()));
    rec.method = Some(method.into());
    rec
}

/// Writes `rec` with the result, then answers; if the record cannot be
/// written, nothing is granted.
async fn finish(
    gw: &Gateway,
    mut rec: AuditRecord,
    result: Result<Response, OauthError>,
) -> Response {
    match &result {
        Ok(r) => {
            rec.status = Some(r.status().as_u16());
            rec.decision = Decision::allow(Vec::new(), vec!["credential issued".into()]);
        }
        Err(e) => {
            rec.status = Some(e.status.as_u16());
            rec.error = Some(e.description.chars().take(500).collect());
            rec.decision = Decision::deny(e.code);
        }
    }
    if let Err(e) = gw.audit.write(&rec).await {
        tracing::error!("identity request not audited: {e}");
        return OauthError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the audit log is unavailable; nothing was issued",
        )
        .response();
    }
    result.unwrap_or_else(|e| e.response())
}

fn note_principal(rec: &mut AuditRecord, p: &Principal) {
    rec.tenant = Some(p.tenant.to_string());
    rec.agent = Some(p.agent.to_string());
    rec.user = p.user.as_ref().map(ToString::to_string);
}

async fn authenticate_agent(
    gw: &Gateway,
    headers: &HeaderMap,
    peer: &Peer,
) -> Result<Principal, OauthError> {
    authenticate(
        headers,
        peer,
        &gw.identity.verifier,
        &gw.tokens,
        &gw.served,
        gw.store.as_ref(),
    )
    .await
    .map_err(|e| OauthError::from_auth(&e))
}

fn thumbprint(peer: &Peer) -> Option<String> {
    peer.cert
        .as_ref()
        .and_then(|c| c.as_ref().as_ref().ok())
        .map(|c| c.thumbprint.clone())
}

fn token_response(token: &str, expires_at: u64, issued_type: Option<&str>) -> Response {
    let expires_in = expires_at.saturating_sub(crate::auth::now_secs());
    let mut body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": expires_in,
    });
    if let (Some(t), Some(map)) = (issued_type, body.as_object_mut()) {
        map.insert("issued_token_type".into(), t.into());
    }
    let mut r = Json(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) async fn token(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut rec = record(&peer, "/oauth/token", "token");
    let result = grant(&gw, &peer, headers, &body, &mut rec).await;
    finish(&gw, rec, result).await
}

async fn grant(
    gw: &Gateway,
    peer: &Peer,
    mut headers: HeaderMap,
    body: &[u8],
    rec: &mut AuditRecord,
) -> Result<Response, OauthError> {
    let form = parse_form(&headers, body)?;
    let grant_type = form
        .grant_type
        .as_deref()
        .ok_or_else(|| OauthError::request("missing `grant_type`"))?;
    rec.method = Some(format!("token.{}", grant_label(grant_type)));
    match grant_type {
        GRANT_CLIENT_CREDENTIALS => {
            let Some(tp) = thumbprint(peer) else {
                return Err(OauthError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "client_credentials needs the agent's client certificate (mTLS)",
                ));
            };
            headers.remove(header::AUTHORIZATION);
            let p = authenticate_agent(gw, &headers, peer).await?;
            note_principal(rec, &p);
            let id = &gw.config.identity;
            let issued = gw
                .identity
                .issuer
                .issue_bound(&p.tenant, &p.agent, None, id.token_ttl, Some(&tp))
                .map_err(|e| OauthError::request(e.to_string()))?;
            Ok(token_response(&issued.token, issued.expires_at, None))
        }
        GRANT_TOKEN_EXCHANGE => exchange(gw, peer, headers, form, rec).await,
        _ => Err(OauthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "supported: client_credentials and token-exchange",
        )),
    }
}

fn grant_label(grant_type: &str) -> &'static str {
    match grant_type {
        GRANT_CLIENT_CREDENTIALS => "client_credentials",
        GRANT_TOKEN_EXCHANGE => "exchange",
        _ => "unsupported",
    }
}

fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<TokenForm, OauthError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(OauthError::request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    if body.len() > MAX_FORM_BYTES {
        return Err(OauthError::request("request too large"));
    }
    serde_urlencoded::from_bytes(body)
        .map_err(|e| OauthError::request(format!("malformed form: {e}")))
}

async fn exchange(
    gw: &Gateway,
    peer: &Peer,
    mut headers: HeaderMap,
    form: TokenForm,
    rec: &mut AuditRecord,
) -> Result<Response, OauthError> {
    let subject = form
        .subject_token
        .as_deref()
        .ok_or_else(|| OauthError::request("missing `subject_token`"))?;
    let subject_type = form.subject_token_type.as_deref().unwrap_or_default();
    if !SUBJECT_TYPES.contains(&subject_type) {
        return Err(OauthError::request(
            "`subject_token_type` must be a JWT, ID token or access token type",
        ));
    }
    if form
        .requested_token_type
        .as_deref()
        .is_some_and(|t| t != TYPE_ACCESS_TOKEN)
    {
        return Err(OauthError::request("only access tokens can be requested"));
    }
    if let Some(actor) = &form.actor_token {
        if form.actor_token_type.as_deref() != Some(TYPE_ACCESS_TOKEN) {
            return Err(OauthError::request(
                "`actor_token_type` must be the access token type",
            ));
        }
        if headers.contains_key(header::AUTHORIZATION) {
            return Err(OauthError::request(
                "give the actor as a bearer header or as `actor_token`, not both",
            ));
        }
        let value = HeaderValue::from_str(&format!("Bearer {actor}"))
            .map_err(|_| OauthError::request("malformed `actor_token`"))?;
        headers.insert(header::AUTHORIZATION, value);
    }
    let agent = authenticate_agent(gw, &headers, peer).await?;
    note_principal(rec, &agent);
    if agent.user.is_some() {
        return Err(OauthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the actor is already acting for a user: delegation chains deeper than agent → user are refused",
        ));
    }
    let user = gw
        .identity
        .verify_user_token(subject)
        .map_err(|e| OauthError::new(StatusCode::BAD_REQUEST, "invalid_grant", e))?;
    rec.user = Some(user.user.to_string());
    if user.tenant != agent.tenant {
        return Err(OauthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the user belongs to another tenant",
        ));
    }
    if user.role.is_some() {
        // Warden's own directory: the user must still exist and be active.
        let known = gw.store.user(&user.tenant, &user.user).await.map_err(|e| {
            tracing::error!("user lookup failed: {e}");
            OauthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the user directory is unavailable",
            )
        })?;
        if !known.is_some_and(|u| u.active) {
            return Err(OauthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                format!("user `{}` is unknown or disabled", user.user),
            ));
        }
    }
    let issued = gw
        .identity
        .issuer
        .issue_bound(
            &agent.tenant,
            &agent.agent,
            Some(&user.user),
            gw.config.identity.delegated_token_ttl,
            thumbprint(peer).as_deref(),
        )
        .map_err(|e| OauthError::request(e.to_string()))?;
    Ok(token_response(
        &issued.token,
        issued.expires_at,
        Some(TYPE_ACCESS_TOKEN),
    ))
}

pub(crate) async fn renew(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    mut headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut rec = record(&peer, "/identity/renew", "certificate.renew");
    let result = async {
        if peer.cert.is_none() {
            return Err(OauthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "renewal needs the current client certificate (mTLS)",
            ));
        }
        headers.remove(header::AUTHORIZATION);
        let p = authenticate_agent(&gw, &headers, &peer).await?;
        note_principal(&mut rec, &p);
        let ca = gw.identity.ca().ok_or_else(|| {
            OauthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "no CA",
            )
        })?;
        if body.len() > MAX_FORM_BYTES {
            return Err(OauthError::request("CSR too large"));
        }
        let csr =
            std::str::from_utf8(&body).map_err(|_| OauthError::request("CSR is not PEM text"))?;
        let cert = ca
            .authority
            .sign_agent_csr(csr, &p.tenant, &p.agent, gw.config.identity.cert_ttl)
            .map_err(|e| OauthError::request(e.to_string()))?;
        let who = cert_identity(&cert.der, &gw.config.identity.trust_domain)
            .map_err(|e| OauthError::request(e.to_string()))?;
        gw.store
            .record_cert(CertRecord {
                serial: cert.serial.clone(),
                tenant: who.tenant,
                agent: who.agent,
                not_before: cert.not_before,
                not_after: cert.not_after,
                thumbprint: cert.thumbprint.clone(),
                revoked_at: None,
            })
            .await
            .map_err(|e| {
                tracing::error!("certificate not recorded: {e}");
                OauthError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the certificate could not be recorded",
                )
            })?;
        rec.resource = Some(format!("certificate:{}", cert.serial));
        let mut r = format!("{}{}", cert.pem, ca.authority.cert_pem()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/pem-certificate-chain"),
        );
        Ok(r)
    }
    .await;
    finish(&gw, rec, result).await
}

pub(crate) async fn jwks(State(gw): State<Arc<Gateway>>) -> Response {
    let mut r = Json(gw.identity.keys.jwks()).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    r
}
