//! Issuing and verifying access tokens.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use warden_core::{AgentName, TenantId, UserName};

use crate::KeyRing;

/// Tokens longer than this are refused unread.
pub(crate) const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The SPIFFE id of an agent.
pub fn spiffe_id(trust_domain: &str, tenant: &TenantId, agent: &AgentName) -> String {
    format!("spiffe://{trust_domain}/tenant/{tenant}/agent/{agent}")
}

/// The acting party (RFC 8693 `act`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The agent's SPIFFE id.
    pub sub: String,
    /// A further actor: refused (chains deeper than agent → user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

/// The claims of a Warden access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The agent's SPIFFE id, or the human an agent acts for.
    pub sub: String,
    /// The agent, when acting for a human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// The tenant.
    pub tenant: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Unique id.
    pub jti: String,
    /// The certificate the token is bound to (RFC 8705).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// The just-in-time task the token is scoped to: it is refused once the
    /// task has ended or expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
}

/// A token's proof-of-possession confirmation (RFC 8705 §3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// SHA-256 thumbprint of the client certificate, base64url.
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

/// A token just issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issued {
    /// The compact JWT.
    pub token: String,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
    /// The token id.
    pub jti: String,
}

/// Why a token was refused. The messages are safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Larger than the limit.
    #[error("token too large")]
    TooLarge,
    /// Not a JWT, wrong `alg`, unknown `kid`, bad signature, bad claims.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Past `exp`.
    #[error("token expired")]
    Expired,
    /// Not yet valid.
    #[error("token not yet valid")]
    Immature,
    /// Wrong audience.
    #[error("token audience is not this gateway")]
    Audience,
    /// Wrong issuer.
    #[error("token issuer is not trusted")]
    Issuer,
    /// The subject is not an agent of the token's tenant in this trust domain.
    #[error("token subject is not an agent of tenant `{0}`")]
    Subject(String),
    /// The TTL asked for is above the maximum.
    #[error("token lifetime {asked:?} is above the maximum {max:?}")]
    TooLong {
        /// Asked.
        asked: Duration,
        /// Allowed.
        max: Duration,
    },
}

/// Signs tokens.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    pub(crate) keys: Arc<KeyRing>,
    pub(crate) issuer: String,
    pub(crate) audience: String,
    trust_domain: String,
    pub(crate) max_ttl: Duration,
}

impl TokenIssuer {
    /// An issuer; `max_ttl` caps every token.
    pub fn new(
        keys: Arc<KeyRing>,
        issuer: &str,
        audience: &str,
        trust_domain: &str,
        max_ttl: Duration,
    ) -> Self {
        Self {
            keys,
            issuer: issuer.into(),
            audience: audience.into(),
            trust_domain: trust_domain.into(),
            max_ttl,
        }
    }

    /// Issues a token for `agent` of `tenant`, acting for `user` if given.
    pub fn issue(
        &self,
        tenant: &TenantId,
        agent: &AgentName,
        user: Option<&UserName>,
        ttl: Duration,
    ) -> Result<Issued, TokenError> {
        self.issue_bound(tenant, agent, user, ttl, None)
    }

    /// Issues a token as [`issue`](Self::issue) does, bound to the client
    /// certificate with thumbprint `x5t_s256` when given: the gateway then
    /// accepts it only over a connection presenting that certificate.
    pub fn issue_bound(
        &self,
        tenant: &TenantId,
        agent: &AgentName,
        user: Option<&UserName>,
        ttl: Duration,
        x5t_s256: Option<&str>,
    ) -> Result<Issued, TokenError> {
        self.issue_claims(tenant, agent, user, ttl, x5t_s256, None)
    }

    /// Issues a token scoped to the task `task` (of `agent`, acting for
    /// `user` if given).
    pub fn issue_for_task(
        &self,
        tenant: &TenantId,
        agent: &AgentName,
        user: Option<&UserName>,
        ttl: Duration,
        task: &str,
    ) -> Result<Issued, TokenError> {
        self.issue_claims(tenant, agent, user, ttl, None, Some(task))
    }

    fn issue_claims(
        &self,
        tenant: &TenantId,
        agent: &AgentName,
        user: Option<&UserName>,
        ttl: Duration,
        x5t_s256: Option<&str>,
        task: Option<&str>,
    ) -> Result<Issued, TokenError> {
        let stamp = self.stamp(ttl)?;
        let agent_id = spiffe_id(&self.trust_domain, tenant, agent);
        let (sub, act) = match user {
            Some(user) => (
                user.to_string(),
                Some(Actor {
                    sub: agent_id,
                    act: None,
                }),
            ),
            None => (agent_id, None),
        };
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub,
            act,
            tenant: tenant.to_string(),
            exp: stamp.exp,
            iat: stamp.iat,
            nbf: stamp.iat,
            jti: stamp.jti.clone(),
            cnf: x5t_s256.map(|t| Confirmation {
                x5t_s256: t.to_owned(),
            }),
            task: task.map(str::to_owned),
        };
        self.sign(&claims, stamp)
    }

    /// The trust domain of agent ids.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The longest lifetime this issuer grants.
    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    /// Checks `ttl` against the maximum and stamps a new token's times and id.
    pub(crate) fn stamp(&self, ttl: Duration) -> Result<Stamp, TokenError> {
        if ttl > self.max_ttl || ttl.is_zero() {
            return Err(TokenError::TooLong {
                asked: ttl,
                max: self.max_ttl,
            });
        }
        let now = now_secs();
        Ok(Stamp {
            iat: now,
            exp: now + ttl.as_secs(),
            jti: uuid::Uuid::new_v4().to_string(),
        })
    }

    /// Signs `claims` (EdDSA, with this key's `kid`).
    pub(crate) fn sign(&self, claims: &impl Serialize, stamp: Stamp) -> Result<Issued, TokenError> {
        let key = self.keys.active();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid().to_owned());
        let token = encode(&header, claims, key.encoding())
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok(Issued {
            token,
            expires_at: stamp.exp,
            jti: stamp.jti,
        })
    }
}

/// The issue time, expiry and id of a token being made.
pub(crate) struct Stamp {
    pub(crate) iat: u64,
    pub(crate) exp: u64,
    pub(crate) jti: String,
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The tenant.
    pub tenant: TenantId,
    /// The agent.
    pub agent: AgentName,
    /// The human the agent acts for.
    pub user: Option<UserName>,
    /// The token id.
    pub jti: String,
    /// Issue time.
    pub issued_at: u64,
    /// Expiry.
    pub expires_at: u64,
    /// The thumbprint of the certificate the token is bound to.
    pub bound_to: Option<String>,
    /// The task the token is scoped to.
    pub task: Option<String>,
}

/// Verifies tokens: signature (EdDSA only, known `kid`), `exp`/`nbf` with
/// leeway, issuer, audience, and a subject that is an agent of the token's
/// tenant in this trust domain.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    pub(crate) keys: Arc<KeyRing>,
    pub(crate) validation: Validation,
    trust_domain: String,
}

impl TokenVerifier {
    /// A verifier trusting `keys`.
    pub fn new(
        keys: Arc<KeyRing>,
        issuer: &str,
        audience: &str,
        trust_domain: &str,
        leeway: Duration,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = leeway.as_secs();
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        Self {
            keys,
            validation,
            trust_domain: trust_domain.into(),
        }
    }

    /// The trust domain of agent ids.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The allowed clock skew, in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.validation.leeway
    }

    /// Verifies `token`.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let key = self.key_for(token)?;
        let data = decode::<Claims>(token, &key, &self.validation).map_err(map_jwt_error)?;
        self.subject(data.claims)
    }

    fn subject(&self, claims: Claims) -> Result<VerifiedToken, TokenError> {
        let tenant =
            TenantId::new(&claims.tenant).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let (agent_id, user) = match &claims.act {
            None => (claims.sub.as_str(), None),
            Some(Actor { act: Some(_), .. }) => {
                return Err(TokenError::Invalid(
                    "delegation chains deeper than agent → user are refused".into(),
                ));
            }
            Some(Actor { sub, act: None }) => {
                let user =
                    UserName::new(&claims.sub).map_err(|e| TokenError::Invalid(e.to_string()))?;
                (sub.as_str(), Some(user))
            }
        };
        let prefix = format!("spiffe://{}/tenant/{tenant}/agent/", self.trust_domain);
        let agent = agent_id
            .strip_prefix(&prefix)
            .and_then(|name| AgentName::new(name).ok())
            .ok_or_else(|| TokenError::Subject(tenant.to_string()))?;
        Ok(VerifiedToken {
            tenant,
            agent,
            user,
            jti: claims.jti,
            issued_at: claims.iat,
            expires_at: claims.exp,
            bound_to: claims.cnf.map(|c| c.x5t_s256),
            task: claims.task,
        })
    }
}

pub(crate) fn map_jwt_error(e: jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::Immature,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidSignature => TokenError::Invalid("bad signature".into()),
        ErrorKind::MissingRequiredClaim(c) => TokenError::Invalid(format!("missing claim `{c}`")),
        _ => TokenError::Invalid(e.to_string()),
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
