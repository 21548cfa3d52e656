//! Phase 1, authenticate: the client certificate (mTLS) and/or the bearer
//! token are verified, and the agent's current state and credentials are
//! read on every request, so suspension, revocation, rotation and a revoked
//! certificate take effect on the very next request.
//!
//! - A certificate alone identifies its agent.
//! - A token alone identifies its agent (and user), unless it is bound to a
//!   certificate (`cnf.x5t#S256`, RFC 8705): then the connection must
//!   present that very certificate.
//! - Both must name the same agent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use warden_core::{AgentName, AgentState, TenantId, UserName};
use warden_identity::{CertIdentity, TokenVerifier, VerifiedToken, ca};
use warden_store::Store;

use crate::tls::Peer;
use warden_policy::{AgentInfo, TaskGrant};

/// Who is asking, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant.
    pub tenant: TenantId,
    /// The agent.
    pub agent: AgentName,
    /// The human it acts for.
    pub user: Option<UserName>,
    /// Whether a verified client certificate was presented.
    pub mtls: bool,
    /// The agent's registered attributes.
    pub info: AgentInfo,
    /// The open task the token is scoped to.
    pub task: Option<TaskGrant>,
}

/// Why authentication failed. `Display` is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// The token is bad.
    #[error("{0}")]
    Token(String),
    /// The agent is unknown, suspended or revoked.
    #[error("{0}")]
    Agent(String),
    /// The client certificate is unusable.
    #[error("client certificate refused: {0}")]
    Cert(String),
    /// The store could not be read (fail closed).
    #[error("authentication unavailable")]
    Unavailable,
}

impl AuthError {
    /// The `WWW-Authenticate` challenge (RFC 6750).
    pub fn challenge(&self) -> String {
        match self {
            Self::Missing => r#"Bearer realm="warden""#.to_owned(),
            Self::Unavailable => {
                r#"Bearer realm="warden", error="temporarily_unavailable""#.to_owned()
            }
            other => {
                let description = other.to_string().replace(['"', '\\'], "'");
                format!(
                    r#"Bearer realm="warden", error="invalid_token", error_description="{description}""#
                )
            }
        }
    }
}

/// The bearer token of `headers`, if any.
pub fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    let value = value
        .to_str()
        .map_err(|_| AuthError::Token("malformed authorization header".into()))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(AuthError::Token("malformed authorization header".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}

/// Tokens whose signature and claims were verified, until they expire: the
/// signature is checked once per token, not once per request. The agent's
/// state is still read on every request.
#[derive(Debug, Default)]
pub struct TokenCache {
    verified: Mutex<HashMap<String, VerifiedToken>>,
}

/// Cached tokens at most; the cache is emptied when full.
const MAX_CACHED_TOKENS: usize = 100_000;

impl TokenCache {
    fn verify(&self, verifier: &TokenVerifier, token: &str) -> Result<VerifiedToken, AuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Some(hit) = self
            .verified
            .lock()
            .ok()
            .and_then(|m| m.get(token).cloned())
            && now <= hit.expires_at.saturating_add(verifier.leeway_secs())
        {
            return Ok(hit);
        }
        let verified = verifier
            .verify(token)
            .map_err(|e| AuthError::Token(e.to_string()))?;
        if let Ok(mut map) = self.verified.lock() {
            if map.len() >= MAX_CACHED_TOKENS {
                map.clear();
            }
            map.insert(token.to_owned(), verified.clone());
        }
        Ok(verified)
    }
}

fn unavailable(e: &warden_store::StoreError) -> AuthError {
    tracing::error!("credential lookup failed: {e}");
    AuthError::Unavailable
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks a presented certificate against the time and Warden's records
/// (issued here, not revoked, the served tenant).
async fn check_cert(
    cert: &Result<CertIdentity, String>,
    served: &[TenantId],
    store: &dyn Store,
) -> Result<CertIdentity, AuthError> {
    let cert = cert.as_ref().map_err(|e| AuthError::Cert(e.clone()))?;
    if !served.contains(&cert.tenant) {
        return Err(AuthError::Cert(format!(
            "tenant `{}` is not served by this gateway",
            cert.tenant
        )));
    }
    if now_secs() > cert.not_after {
        return Err(AuthError::Cert("certificate expired".into()));
    }
    let record = store
        .cert(&cert.serial)
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or_else(|| AuthError::Cert("certificate not issued by this Warden".into()))?;
    if record.revoked_at.is_some() {
        return Err(AuthError::Cert("certificate revoked".into()));
    }
    if record.tenant != cert.tenant || record.agent != cert.agent {
        return Err(AuthError::Cert(
            "certificate does not match its record".into(),
        ));
    }
    Ok(cert.clone())
}

/// Verifies the certificate and/or token (the token through `cache`) and
/// the agent's current state and credential rotation.
pub async fn authenticate(
    headers: &HeaderMap,
    peer: &Peer,
    verifier: &TokenVerifier,
    cache: &TokenCache,
    served: &[TenantId],
    store: &dyn Store,
) -> Result<Principal, AuthError> {
    let cert = match &peer.cert {
        Some(c) => Some(check_cert(c, served, store).await?),
        None => None,
    };
    let token = match bearer(headers) {
        Ok(t) => Some(cache.verify(verifier, t)?),
        Err(AuthError::Missing) if cert.is_some() => None,
        Err(e) => return Err(e),
    };
    if let Some(t) = &token {
        if !served.contains(&t.tenant) {
            return Err(AuthError::Token(format!(
                "tenant `{}` is not served by this gateway",
                t.tenant
            )));
        }
        match (&t.bound_to, &cert) {
            (Some(_), None) => {
                return Err(AuthError::Token(
                    "token is bound to a client certificate, and none was presented".into(),
                ));
            }
            (Some(tp), Some(c)) if *tp != c.thumbprint => {
                return Err(AuthError::Token(
                    "token is bound to another client certificate".into(),
                ));
            }
            _ => {}
        }
        if let Some(c) = &cert
            && (c.agent != t.agent || c.tenant != t.tenant)
        {
            return Err(AuthError::Token(format!(
                "token names agent `{}`, the certificate `{}`",
                t.agent, c.agent
            )));
        }
    }
    let (tenant, name, user) = match (&token, &cert) {
        (Some(t), _) => (&t.tenant, &t.agent, t.user.clone()),
        (None, Some(c)) => (&c.tenant, &c.agent, None),
        (None, None) => return Err(AuthError::Missing),
    };
    let agent = store
        .agent(tenant, name)
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or_else(|| AuthError::Agent(format!("unknown agent `{name}`")))?;
    if agent.state != AgentState::Active {
        return Err(AuthError::Agent(format!(
            "agent `{}` is {}",
            agent.name, agent.state
        )));
    }
    if token
        .as_ref()
        .is_some_and(|t| agent.predates_rotation(t.issued_at))
    {
        return Err(AuthError::Token(
            "token issued before the agent's credentials were rotated".into(),
        ));
    }
    if cert
        .as_ref()
        .is_some_and(|c| agent.predates_rotation(c.not_before.saturating_add(ca::BACKDATE_SECS)))
    {
        return Err(AuthError::Cert(
            "certificate issued before the agent's credentials were rotated".into(),
        ));
    }
    let task = match token.as_ref().and_then(|t| t.task.as_deref()) {
        Some(id) => Some(open_task(store, tenant, name, user.as_ref(), id).await?),
        None => None,
    };
    Ok(Principal {
        tenant: tenant.clone(),
        agent: name.clone(),
        user,
        mtls: cert.is_some(),
        info: AgentInfo {
            owner: agent.owner,
            purpose: agent.purpose,
        },
        task,
    })
}

/// The open task `id` that a token is scoped to, as its grant: it must
/// exist, be open, and be for this agent and user.
async fn open_task(
    store: &dyn Store,
    tenant: &TenantId,
    agent: &AgentName,
    user: Option<&UserName>,
    id: &str,
) -> Result<TaskGrant, AuthError> {
    let task = store
        .task(tenant, id)
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or_else(|| {
            AuthError::Token(format!(
                "unknown task `{}`",
                id.chars().take(64).collect::<String>()
            ))
        })?;
    if &task.agent != agent || task.user.as_ref() != user {
        return Err(AuthError::Token("the token does not match its task".into()));
    }
    if task.ended_at.is_some() {
        return Err(AuthError::Token(format!("task `{}` has ended", task.id)));
    }
    if now_secs() >= task.expires_at {
        return Err(AuthError::Token(format!("task `{}` has expired", task.id)));
    }
    Ok(TaskGrant {
        id: task.id,
        agent: task.agent.to_string(),
        purpose: task.purpose,
        expires_at: task.expires_at,
        tools: task.tools,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn bearer_tokens_are_read_strictly() {
        assert_eq!(bearer(&headers("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(&headers("bearer  abc ")), Ok("abc"));
        assert_eq!(bearer(&HeaderMap::new()), Err(AuthError::Missing));
        assert_eq!(bearer(&headers("Basic abc")), Err(AuthError::Missing));
        assert_eq!(bearer(&headers("Bearer ")), Err(AuthError::Missing));
        assert!(matches!(
            bearer(&headers("Bearer")),
            Err(AuthError::Token(_))
        ));
    }

    #[test]
    fn the_cache_never_serves_an_expired_token() {
        use std::sync::Arc;
        let key = Arc::new(
            warden_identity::SigningKey::from_pem(
                &warden_identity::SigningKey::generate_pem().unwrap(),
            )
            .unwrap(),
        );
        let verifier = TokenVerifier::new(
            Arc::new(warden_identity::KeyRing::single(key)),
            "warden",
            "gw",
            "td",
            std::time::Duration::from_secs(30),
        );
        let cache = TokenCache::default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let cached = |expires_at: u64| VerifiedToken {
            tenant: TenantId::new("t").unwrap(),
            agent: AgentName::new("a").unwrap(),
            user: None,
            jti: "j".into(),
            issued_at: expires_at - 60,
            expires_at,
            bound_to: None,
            task: None,
        };
        // A live entry is served without verifying the (fake) token again...
        cache
            .verified
            .lock()
            .unwrap()
            .insert("fresh".into(), cached(now + 60));
        assert!(cache.verify(&verifier, "fresh").is_ok());
        // ...but past expiry plus leeway, the token is verified again and refused.
        cache
            .verified
            .lock()
            .unwrap()
            .insert("stale".into(), cached(now - 31));
        assert!(matches!(
            cache.verify(&verifier, "stale"),
            Err(AuthError::Token(_))
        ));
    }

    #[test]
    fn challenges_follow_rfc6750() {
        assert_eq!(AuthError::Missing.challenge(), r#"Bearer realm="warden""#);
        let c = AuthError::Token("token \"expired\"".into()).challenge();
        assert_eq!(
            c,
            r#"Bearer realm="warden", error="invalid_token", error_description="token 'expired'""#
        );
    }
}
