//! Console passwords: Argon2id (RFC 9106) PHC strings, with the parameters
//! OWASP recommends (19 MiB, 2 passes, 1 lane). Verification takes tens of
//! milliseconds on purpose: callers run it off the async executor.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted (hashing cost must not be the attacker's).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password was not set.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Too short or too long.
    #[error("a password needs {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} bytes")]
    Length,
    /// The hasher failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

fn hasher() -> Argon2<'static> {
    // 19 MiB, t = 2, p = 1: valid constants, so the fallback never runs.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a new password into a PHC string (`$argon2id$v=19$...`).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::Length);
    }
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (constant time). A
/// malformed hash or an oversized password never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    // Only Argon2id hashes are Warden's.
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn a_password_verifies_and_nothing_else_does() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("", &hash));
        // Salted: the same password hashes differently.
        assert_ne!(hash, hash_password("correct horse battery").unwrap());
    }

    #[test]
    fn bad_passwords_and_hashes_are_refused() {
        assert!(matches!(hash_password("short"), Err(PasswordError::Length)));
        assert!(matches!(
            hash_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)),
            Err(PasswordError::Length)
        ));
        for hash in [
            "",
            "garbage",
            "$argon2id$",
            "$pbkdf2-sha256$i=1$c2FsdA$aGFzaA",
        ] {
            assert!(!verify_password("correct horse battery", hash), "{hash}");
        }
        let hash = hash_password("correct horse battery").unwrap();
        assert!(!verify_password(&"x".repeat(MAX_PASSWORD_BYTES + 1), &hash));
    }
}
