//! Warden's identities: the certificate authority that gives every agent an
//! X.509 certificate with its SPIFFE id, the Ed25519 keys that sign access
//! tokens (rotating, published as a JWKS), issuing and verifying tokens
//! (certificate-bound per RFC 8705, delegated per RFC 8693), and verifying
//! the user tokens of Warden's own directory and of OIDC issuers.
//!
//! A token is a JWT (`alg: EdDSA`) with `iss`, `aud`, `sub`, `exp`, `iat`,
//! `nbf`, `jti` and `tenant`. An agent acting alone has `sub` = its SPIFFE id
//! (`spiffe://<trust-domain>/tenant/<tenant>/agent/<name>`); an agent acting
//! for a human has `sub` = the human and `act.sub` = the agent's SPIFFE id
//! (RFC 8693). Only EdDSA is accepted, so `alg: none` and algorithm
//! confusion are refused before any signature check.

mod admin;
pub mod ca;
mod key;
mod oidc;
mod password;
mod token;
mod user;

pub use admin::{Operator, Role};
pub use ca::{CaFiles, CertAuthority, CertError, CertIdentity, IssuedCert};
pub use key::{KeyError, KeyRing, RetiredKey, SigningKey, retired_path, rotate, write_atomic};
pub use oidc::{OidcIssuer, OidcSettings, peek_issuer};
pub use password::{
    MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS, PasswordError, hash_password, verify_password,
};
pub use token::{
    Actor, Claims, Confirmation, Issued, TokenError, TokenIssuer, TokenVerifier, VerifiedToken,
    spiffe_id,
};
pub use user::{UserRole, VerifiedUser};
