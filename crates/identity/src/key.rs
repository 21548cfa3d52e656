//! The Ed25519 key that signs tokens.

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::{DecodingKey, EncodingKey};
use sha2::{Digest, Sha256};

/// A key that could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The PEM is not a PKCS#8 Ed25519 private key.
    #[error("invalid signing key: {0}")]
    Invalid(String),
}

/// Warden's token signing key, with its key id.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public: [u8; 32],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key, as PKCS#8 PEM.
    pub fn generate_pem() -> Result<String, KeyError> {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        key.to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| KeyError::Invalid(e.to_string()))
    }

    /// Reads a PKCS#8 PEM Ed25519 private key.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        let public = key.verifying_key().to_bytes();
        let encoding = EncodingKey::from_ed_pem(pem.as_bytes())
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        let kid = hex::encode(Sha256::digest(public))
            .chars()
            .take(16)
            .collect();
        Ok(Self {
            kid,
            encoding,
            decoding: DecodingKey::from_ed_der(&public),
            public,
        })
    }

    /// The key id (`kid`): the first 16 hex digits of SHA-256 of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    pub(crate) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_garbage_does_not() {
        let pem = SigningKey::generate_pem().unwrap();
        let key = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(key.kid().len(), 16);
        assert!(!format!("{key:?}").contains("PRIVATE"));
        assert!(
            SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
        assert!(SigningKey::from_pem("").is_err());
    }
}
