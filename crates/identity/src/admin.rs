//! Tokens for the admin API: `aud` = `<audience>-admin`, `sub` = the
//! operator's name, `role` = admin or auditor. Signed by the same key.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, decode, decode_header};
use serde::{Deserialize, Serialize};

use crate::token::{TokenError, map_jwt_error};
use crate::{Issued, TokenIssuer, TokenVerifier};

/// What an operator may do through the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read agents and the audit trail.
    Auditor,
    /// Everything.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Self::Admin),
            "auditor" => Ok(Self::Auditor),
            other => Err(format!(
                "unknown role `{other}`: expected `admin` or `auditor`"
            )),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct AdminClaims {
    iss: String,
    aud: String,
    sub: String,
    role: Role,
    /// The tenant the operator administers; absent means the default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    exp: u64,
    iat: u64,
    nbf: u64,
    jti: String,
}

/// A verified operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// Their name.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// The tenant they administer; `None` means the gateway's default one.
    pub tenant: Option<warden_core::TenantId>,
}

fn admin_audience(audience: &str) -> String {
    format!("{audience}-admin")
}

impl TokenIssuer {
    /// Issues an admin API token for `name` with `role`.
    pub fn issue_admin(&self, name: &str, role: Role, ttl: Duration) -> Result<Issued, TokenError> {
        self.issue_admin_for(None, name, role, ttl)
    }

    /// Issues an admin API token for `name` with `role` in `tenant` (the
    /// default tenant when `None`).
    pub fn issue_admin_for(
        &self,
        tenant: Option<&warden_core::TenantId>,
        name: &str,
        role: Role,
        ttl: Duration,
    ) -> Result<Issued, TokenError> {
        let stamp = self.stamp(ttl)?;
        let claims = AdminClaims {
            iss: self.issuer.clone(),
            aud: admin_audience(&self.audience),
            sub: name.to_owned(),
            role,
            tenant: tenant.map(ToString::to_string),
            exp: stamp.exp,
            iat: stamp.iat,
            nbf: stamp.iat,
            jti: stamp.jti.clone(),
        };
        self.sign(&claims, stamp)
    }
}

impl TokenVerifier {
    /// Verifies an admin API token.
    pub fn verify_admin(&self, token: &str) -> Result<Operator, TokenError> {
        let claims: AdminClaims = self.verify_for_audience(token, admin_audience)?;
        let tenant = claims
            .tenant
            .map(warden_core::TenantId::new)
            .transpose()
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok(Operator {
            name: claims.sub,
            role: claims.role,
            tenant,
        })
    }

    /// Verifies a token whose audience is this verifier's, mapped by
    /// `audience` (admin and user tokens never pass as agent tokens).
    pub(crate) fn verify_for_audience<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        audience: fn(&str) -> String,
    ) -> Result<T, TokenError> {
        let key = self.key_for(token)?;
        let mut validation = self.validation.clone();
        let audiences = self
            .validation
            .aud
            .iter()
            .flatten()
            .map(|a| audience(a))
            .collect::<Vec<_>>();
        validation.set_audience(&audiences);
        decode::<T>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(map_jwt_error)
    }

    pub(crate) fn key_for(&self, token: &str) -> Result<DecodingKey, TokenError> {
        if token.len() > crate::token::MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let header = decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid(format!(
                "algorithm `{:?}` is not accepted",
                header.alg
            )));
        }
        header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.decoding(kid))
            .ok_or_else(|| TokenError::Invalid("unknown signing key".into()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::SigningKey;

    #[test]
    fn admin_and_agent_tokens_do_not_mix() {
        let key = Arc::new(SigningKey::from_pem(&SigningKey::generate_pem().unwrap()).unwrap());
        let ring = Arc::new(crate::KeyRing::single(key));
        let issuer = TokenIssuer::new(
            ring.clone(),
            "warden",
            "gw",
            "td",
            Duration::from_secs(3600),
        );
        let verifier = TokenVerifier::new(ring, "warden", "gw", "td", Duration::from_secs(5));
        let admin = issuer
            .issue_admin("ops", Role::Auditor, Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            verifier.verify_admin(&admin.token).unwrap(),
            Operator {
                name: "ops".into(),
                role: Role::Auditor,
                tenant: None,
            }
        );
        assert!(
            verifier.verify(&admin.token).is_err(),
            "an admin token is not an agent token"
        );
        let tenant = warden_core::TenantId::new("default").unwrap();
        let agent = warden_core::AgentName::new("bot").unwrap();
        let agent_token = issuer
            .issue(&tenant, &agent, None, Duration::from_secs(60))
            .unwrap();
        assert!(
            verifier.verify_admin(&agent_token.token).is_err(),
            "an agent token is not an admin token"
        );
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().is_err());
    }
}
