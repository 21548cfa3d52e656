//! Tokens of the users in Warden's own directory: `aud` = `<audience>-user`,
//! `sub` = the user's name, `tenant`, `role`. An agent presents one in a
//! token exchange (RFC 8693) to act for that user.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use warden_core::{TenantId, UserName};

use crate::token::TokenError;
use crate::{Issued, TokenIssuer, TokenVerifier};

/// A directory user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserRole {
    /// Decides on held actions.
    Approver,
    /// Administers Warden.
    Admin,
    /// Reads and verifies the audit trail.
    Auditor,
    /// A person agents act for, with no Warden duties.
    Member,
}

impl std::str::FromStr for UserRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "approver" => Ok(Self::Approver),
            "admin" => Ok(Self::Admin),
            "auditor" => Ok(Self::Auditor),
            "member" => Ok(Self::Member),
            other => Err(format!(
                "unknown role `{other}`: expected `approver`, `admin`, `auditor` or `member`"
            )),
        }
    }
}

impl std::fmt::Display for UserRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Approver => "approver",
            Self::Admin => "admin",
            Self::Auditor => "auditor",
            Self::Member => "member",
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct UserClaims {
    iss: String,
    aud: String,
    sub: String,
    tenant: String,
    role: UserRole,
    exp: u64,
    iat: u64,
    nbf: u64,
    jti: String,
}

/// A user whose token verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUser {
    /// The tenant.
    pub tenant: TenantId,
    /// The user.
    pub user: UserName,
    /// The role, for Warden's directory users.
    pub role: Option<UserRole>,
    /// Who vouched for the user: Warden's issuer or an OIDC issuer.
    pub issuer: String,
}

pub(crate) fn user_audience(audience: &str) -> String {
    format!("{audience}-user")
}

impl TokenIssuer {
    /// Issues a user token for `user` of `tenant`.
    pub fn issue_user(
        &self,
        tenant: &TenantId,
        user: &UserName,
        role: UserRole,
        ttl: Duration,
    ) -> Result<Issued, TokenError> {
        let stamp = self.stamp(ttl)?;
        let claims = UserClaims {
            iss: self.issuer.clone(),
            aud: user_audience(&self.audience),
            sub: user.to_string(),
            tenant: tenant.to_string(),
            role,
            exp: stamp.exp,
            iat: stamp.iat,
            nbf: stamp.iat,
            jti: stamp.jti.clone(),
        };
        self.sign(&claims, stamp)
    }
}

impl TokenVerifier {
    /// Verifies a user token of Warden's directory (the caller still checks
    /// that the user exists and is active).
    pub fn verify_user(&self, token: &str) -> Result<VerifiedUser, TokenError> {
        let c: UserClaims = self.verify_for_audience(token, user_audience)?;
        Ok(VerifiedUser {
            tenant: TenantId::new(&c.tenant).map_err(|e| TokenError::Invalid(e.to_string()))?,
            user: UserName::new(&c.sub).map_err(|e| TokenError::Invalid(e.to_string()))?,
            role: Some(c.role),
            issuer: c.iss,
        })
    }

    /// The `iss` this verifier accepts.
    pub fn issuer(&self) -> Option<&str> {
        self.validation
            .iss
            .as_ref()?
            .iter()
            .next()
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::KeyRing;

    #[test]
    fn user_agent_and_admin_tokens_do_not_mix() {
        let ring = Arc::new(KeyRing::generate().unwrap());
        let issuer = TokenIssuer::new(
            ring.clone(),
            "warden",
            "gw",
            "td",
            Duration::from_secs(3600),
        );
        let verifier = TokenVerifier::new(ring, "warden", "gw", "td", Duration::from_secs(5));
        let tenant = TenantId::new("acme").unwrap();
        let alice = UserName::new("alice").unwrap();
        let t = issuer
            .issue_user(&tenant, &alice, UserRole::Member, Duration::from_secs(60))
            .unwrap();
        let v = verifier.verify_user(&t.token).unwrap();
        assert_eq!(
            (v.tenant, v.user, v.role),
            (tenant.clone(), alice, Some(UserRole::Member))
        );
        assert!(verifier.verify(&t.token).is_err(), "not an agent token");
        assert!(
            verifier.verify_admin(&t.token).is_err(),
            "not an admin token"
        );
        let agent = warden_core::AgentName::new("bot").unwrap();
        let a = issuer
            .issue(&tenant, &agent, None, Duration::from_secs(60))
            .unwrap();
        assert!(
            verifier.verify_user(&a.token).is_err(),
            "an agent token is not a user token"
        );
        assert_eq!(verifier.issuer(), Some("warden"));
        assert_eq!("approver".parse::<UserRole>(), Ok(UserRole::Approver));
        assert!("root".parse::<UserRole>().is_err());
    }
}
