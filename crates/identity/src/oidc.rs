//! Users vouched for by an OIDC identity provider: its ID or access tokens,
//! verified against its JWKS (read from a file, for tests and air-gapped
//! sites, or fetched by the caller). Only asymmetric keys are used: a JWKS
//! `oct` key, `alg: none` or an `alg` other than the key's own are refused.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;
use warden_core::{TenantId, UserName};

use crate::VerifiedUser;
use crate::token::{MAX_TOKEN_BYTES, TokenError, map_jwt_error};

/// How one OIDC issuer is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// `iss` of its tokens.
    pub issuer: String,
    /// `aud` its tokens must carry for Warden.
    pub audience: String,
    /// The tenant its users belong to.
    pub tenant: TenantId,
    /// The claim that names the user (default `sub`).
    pub user_claim: String,
    /// Clock skew allowed, in seconds.
    pub leeway_secs: u64,
}

struct OidcKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// A trusted OIDC issuer and its keys.
pub struct OidcIssuer {
    settings: OidcSettings,
    keys: Vec<OidcKey>,
}

impl std::fmt::Debug for OidcIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcIssuer")
            .field("issuer", &self.settings.issuer)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

fn algorithm_of(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        // Symmetric (`oct`) and unknown keys are never trusted.
        _ => return None,
    };
    let Some(declared) = jwk.common.key_algorithm else {
        return Some(by_type);
    };
    let declared = Algorithm::try_from(declared).ok()?;
    let family_matches = matches!(
        (declared, by_type),
        (
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512,
            Algorithm::RS256
        ) | (Algorithm::ES256, Algorithm::ES256)
            | (Algorithm::ES384, Algorithm::ES384)
            | (Algorithm::EdDSA, Algorithm::EdDSA)
    );
    family_matches.then_some(declared)
}

impl OidcIssuer {
    /// The issuer with the signing keys of `jwks` (JSON). Keys Warden does
    /// not use for signatures (`oct`, encryption-only) are skipped; a JWKS
    /// with no usable key is an error.
    pub fn from_jwks(settings: OidcSettings, jwks: &str) -> Result<Self, TokenError> {
        let set: JwkSet = serde_json::from_str(jwks)
            .map_err(|e| TokenError::Invalid(format!("JWKS of `{}`: {e}", settings.issuer)))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let is_signing = jwk
                .common
                .public_key_use
                .as_ref()
                .is_none_or(|u| *u == jsonwebtoken::jwk::PublicKeyUse::Signature);
            let Some(alg) = algorithm_of(jwk).filter(|_| is_signing) else {
                continue;
            };
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| TokenError::Invalid(format!("JWKS of `{}`: {e}", settings.issuer)))?;
            keys.push(OidcKey {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            });
        }
        if keys.is_empty() {
            return Err(TokenError::Invalid(format!(
                "JWKS of `{}` holds no usable signing key",
                settings.issuer
            )));
        }
        Ok(Self { settings, keys })
    }

    /// The settings.
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Verifies a token of this issuer and names its user.
    pub fn verify(&self, token: &str) -> Result<VerifiedUser, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let header = decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let key = self
            .keys
            .iter()
            .find(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                (None, _) => self.keys.len() == 1,
                (Some(_), None) => false,
            })
            .ok_or_else(|| TokenError::Invalid("unknown signing key".into()))?;
        if header.alg != key.alg {
            return Err(TokenError::Invalid(format!(
                "algorithm `{:?}` is not the key's",
                header.alg
            )));
        }
        let mut validation = Validation::new(key.alg);
        validation.leeway = self.settings.leeway_secs;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        let data = decode::<Value>(token, &key.key, &validation).map_err(map_jwt_error)?;
        let name = data
            .claims
            .get(&self.settings.user_claim)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                TokenError::Invalid(format!("missing claim `{}`", self.settings.user_claim))
            })?;
        let user = UserName::new(name).map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok(VerifiedUser {
            tenant: self.settings.tenant.clone(),
            user,
            role: None,
            issuer: self.settings.issuer.clone(),
        })
    }
}

/// The `iss` of a token, unverified: which issuer to verify it with.
pub fn peek_issuer(token: &str) -> Option<String> {
    use base64::Engine as _;
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.get("iss")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests;
