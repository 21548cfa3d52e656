//! Secrets at rest: upstream credentials are sealed with ChaCha20-Poly1305
//! under a 256-bit master key before they reach the database, and opened
//! only to be injected into a forwarded request.
//!
//! Each sealed value is `nonce (12 bytes) || ciphertext || tag`, with the
//! value's place (for example `default/crm/`) as associated data, so a
//! sealed value moved to another upstream, user or tenant no longer opens.
//! [`Secret`] never shows its value in `Debug` output.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The environment variable that holds the master key (base64), taking
/// precedence over the key file.
pub const MASTER_KEY_ENV: &str = "WARDEN_MASTER_KEY";

/// Why a secret could not be sealed or opened. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// The master key is malformed.
    #[error("invalid master key: {0}")]
    Key(String),
    /// The sealed value does not open under this key and place: wrong key,
    /// tampered, or moved.
    #[error("a sealed secret does not open: wrong master key, or tampered")]
    Open,
    /// The system random source failed.
    #[error("no randomness available")]
    Random,
}

/// A secret value. `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, to inject into a request. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// The master key.
pub struct MasterKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A fresh random key, base64-encoded (what a key file holds).
    pub fn generate_base64() -> Result<String, VaultError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| VaultError::Random)?;
        Ok(B64.encode(bytes))
    }

    /// The key from its base64 text (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, VaultError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| VaultError::Key(format!("not base64: {e}")))?;
        if bytes.len() != 32 {
            return Err(VaultError::Key(format!(
                "expected 32 bytes, found {}",
                bytes.len()
            )));
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| VaultError::Key("rejected by the cipher".into()))?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// Seals `secret` for `place`.
    pub fn seal(&self, place: &str, secret: &Secret) -> Result<Vec<u8>, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| VaultError::Random)?;
        let mut data = secret.0.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(place.as_bytes()),
                &mut data,
            )
            .map_err(|_| VaultError::Random)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&data);
        Ok(sealed)
    }

    /// Opens a value sealed for `place`.
    pub fn open(&self, place: &str, sealed: &[u8]) -> Result<Secret, VaultError> {
        let (nonce, data) = sealed.split_at_checked(NONCE_LEN).ok_or(VaultError::Open)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::Open)?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(place.as_bytes()), &mut data)
            .map_err(|_| VaultError::Open)?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| VaultError::Open)?;
        Ok(Secret(text))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, reason = "test code")]
    use super::*;

    #[test]
    fn sealed_secrets_open_only_under_the_same_key_and_place() {
        let key = MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap();
        let secret = Secret::new("sk-live-123");
        let sealed = key.seal("default/crm/", &secret).unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"sk-live-123"));
        assert_eq!(key.open("default/crm/", &sealed).unwrap(), secret);
        assert_eq!(key.open("default/hr/", &sealed), Err(VaultError::Open));
        let other = MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap();
        assert_eq!(other.open("default/crm/", &sealed), Err(VaultError::Open));
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert_eq!(
                key.open("default/crm/", &t),
                Err(VaultError::Open),
                "byte {i}"
            );
        }
        assert_eq!(
            key.open("default/crm/", &sealed[..5]),
            Err(VaultError::Open)
        );
        assert_eq!(format!("{secret:?}"), "Secret(<11 bytes>)");
    }

    #[test]
    fn malformed_master_keys_are_refused() {
        assert!(MasterKey::from_base64("").is_err());
        assert!(MasterKey::from_base64("not base64!").is_err());
        assert!(MasterKey::from_base64(&B64.encode([0u8; 16])).is_err());
        assert!(MasterKey::from_base64(&format!(" {}\n", B64.encode([7u8; 32]))).is_ok());
    }
}
