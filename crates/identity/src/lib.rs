//! Warden's access tokens: the Ed25519 signing key, issuing tokens, and
//! verifying them on every request.
//!
//! A token is a JWT (`alg: EdDSA`) with `iss`, `aud`, `sub`, `exp`, `iat`,
//! `nbf`, `jti` and `tenant`. An agent acting alone has `sub` = its SPIFFE id
//! (`spiffe://<trust-domain>/tenant/<tenant>/agent/<name>`); an agent acting
//! for a human has `sub` = the human and `act.sub` = the agent's SPIFFE id
//! (RFC 8693). Only EdDSA is accepted, so `alg: none` and algorithm
//! confusion are refused before any signature check.

mod admin;
mod key;
mod token;

pub use admin::{Operator, Role};
pub use key::{KeyError, SigningKey};
pub use token::{
    Actor, Claims, Issued, TokenError, TokenIssuer, TokenVerifier, VerifiedToken, spiffe_id,
};
