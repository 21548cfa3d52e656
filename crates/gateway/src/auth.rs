//! Phase 1, authenticate: the bearer token is verified and the agent's
//! current state is read on every request, so suspension and revocation take
//! effect on the very next request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use warden_core::{AgentName, AgentState, TenantId, UserName};
use warden_identity::{TokenVerifier, VerifiedToken};
use warden_store::Store;

/// Who is asking, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant.
    pub tenant: TenantId,
    /// The agent.
    pub agent: AgentName,
    /// The human it acts for.
    pub user: Option<UserName>,
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

/// Verifies the token (through `cache`) and the agent's current state.
pub async fn authenticate(
    headers: &HeaderMap,
    verifier: &TokenVerifier,
    cache: &TokenCache,
    served_tenant: &TenantId,
    store: &dyn Store,
) -> Result<Principal, AuthError> {
    let token = bearer(headers)?;
    let verified = cache.verify(verifier, token)?;
    if &verified.tenant != served_tenant {
        return Err(AuthError::Token(format!(
            "tenant `{}` is not served by this gateway",
            verified.tenant
        )));
    }
    let agent = store
        .agent(&verified.tenant, &verified.agent)
        .await
        .map_err(|e| {
            tracing::error!("agent lookup failed: {e}");
            AuthError::Unavailable
        })?
        .ok_or_else(|| AuthError::Agent(format!("unknown agent `{}`", verified.agent)))?;
    match agent.state {
        AgentState::Active => Ok(Principal {
            tenant: verified.tenant,
            agent: verified.agent,
            user: verified.user,
        }),
        state => Err(AuthError::Agent(format!(
            "agent `{}` is {state}",
            agent.name
        ))),
    }
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
            vec![key],
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
            expires_at,
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
