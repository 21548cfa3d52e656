//! The Ed25519 key that signs tokens.

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::{DecodingKey, EncodingKey};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
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

/// A public key that no longer signs but still verifies the tokens it signed
/// until they have all expired.
#[derive(Clone)]
pub struct RetiredKey {
    kid: String,
    public: [u8; 32],
    decoding: DecodingKey,
    /// Verifies until this time (seconds since the epoch).
    until: u64,
}

impl std::fmt::Debug for RetiredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetiredKey")
            .field("kid", &self.kid)
            .field("until", &self.until)
            .finish_non_exhaustive()
    }
}

/// One entry of the retired-keys file (a JWKS with an `until` member).
#[derive(Debug, Serialize, Deserialize)]
struct RetiredJwk {
    kty: String,
    crv: String,
    x: String,
    kid: String,
    until: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RetiredSet {
    keys: Vec<RetiredJwk>,
}

/// The signing keys: the active one, which signs, and the retired ones,
/// which still verify until the tokens they signed have expired. Replaced
/// whole when the key files change (rotation without a restart).
#[derive(Debug)]
pub struct KeyRing {
    keys: RwLock<Keys>,
}

#[derive(Debug, Clone)]
struct Keys {
    active: Arc<SigningKey>,
    retired: Vec<RetiredKey>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl KeyRing {
    /// A ring with a fresh key (for tests and benchmarks).
    pub fn generate() -> Result<Self, KeyError> {
        let key = SigningKey::from_pem(&SigningKey::generate_pem()?)?;
        Ok(Self::single(Arc::new(key)))
    }

    /// A ring with one active key and no retired ones.
    pub fn single(active: Arc<SigningKey>) -> Self {
        Self::new(active, Vec::new())
    }

    fn new(active: Arc<SigningKey>, retired: Vec<RetiredKey>) -> Self {
        Self {
            keys: RwLock::new(Keys { active, retired }),
        }
    }

    /// The ring from the active key's PEM and the retired-keys JSON (empty
    /// when there is none).
    pub fn from_parts(active_pem: &str, retired_json: &str) -> Result<Self, KeyError> {
        let active = Arc::new(SigningKey::from_pem(active_pem)?);
        let retired = parse_retired(retired_json)?;
        Ok(Self::new(active, retired))
    }

    /// Reads the active key at `path` and the retired keys beside it
    /// (`<path>.retired.json`, if present).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let (pem, retired) = read_files(path)?;
        Self::from_parts(&pem, &retired)
    }

    /// Reads the files again and replaces the ring's keys.
    pub fn reload(&self, path: &Path) -> Result<(), KeyError> {
        let fresh = Self::load(path)?;
        let keys = fresh.snapshot();
        if let Ok(mut current) = self.keys.write() {
            *current = keys;
        }
        Ok(())
    }

    fn snapshot(&self) -> Keys {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The key that signs.
    pub fn active(&self) -> Arc<SigningKey> {
        self.snapshot().active
    }

    /// The key that verifies tokens with `kid`, if it is trusted now.
    pub fn decoding(&self, kid: &str) -> Option<DecodingKey> {
        let keys = self.keys.read().ok()?;
        if keys.active.kid() == kid {
            return Some(keys.active.decoding().clone());
        }
        let now = crate::token::now_secs();
        keys.retired
            .iter()
            .find(|k| k.kid == kid && now <= k.until)
            .map(|k| k.decoding.clone())
    }

    /// The public keys as a JWKS (RFC 7517), for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        let keys = self.snapshot();
        let now = crate::token::now_secs();
        let jwk = |kid: &str, public: &[u8]| {
            serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                "kid": kid, "x": b64(public),
            })
        };
        let mut list = vec![jwk(keys.active.kid(), &keys.active.public_key())];
        list.extend(
            keys.retired
                .iter()
                .filter(|k| now <= k.until)
                .map(|k| jwk(&k.kid, &k.public)),
        );
        serde_json::json!({ "keys": list })
    }
}

fn parse_retired(json: &str) -> Result<Vec<RetiredKey>, KeyError> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let set: RetiredSet =
        serde_json::from_str(json).map_err(|e| KeyError::Invalid(format!("retired keys: {e}")))?;
    set.keys
        .into_iter()
        .map(|k| {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&k.x)
                .map_err(|e| KeyError::Invalid(format!("retired key `{}`: {e}", k.kid)))?;
            let public: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                KeyError::Invalid(format!("retired key `{}` is not an Ed25519 key", k.kid))
            })?;
            if k.kty != "OKP" || k.crv != "Ed25519" {
                return Err(KeyError::Invalid(format!(
                    "retired key `{}` is not an Ed25519 key",
                    k.kid
                )));
            }
            Ok(RetiredKey {
                kid: k.kid,
                public,
                decoding: DecodingKey::from_ed_der(&public),
                until: k.until,
            })
        })
        .collect()
}

/// The retired-keys file of the key at `path`.
pub fn retired_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".retired.json");
    PathBuf::from(name)
}

fn read_files(path: &Path) -> Result<(String, String), KeyError> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| KeyError::Invalid(format!("cannot read `{}`: {e}", path.display())))?;
    let retired = match std::fs::read_to_string(retired_path(path)) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(KeyError::Invalid(format!("cannot read retired keys: {e}"))),
    };
    Ok((pem, retired))
}

/// Rotates the signing key at `path`: a new key signs from now on; the old
/// one moves to the retired keys and verifies for `keep` more (the longest
/// token lifetime plus leeway), and retired keys past their time are
/// dropped. Returns the new key's id. The files are replaced atomically.
pub fn rotate(path: &Path, keep: Duration) -> Result<String, KeyError> {
    let (pem, retired_json) = read_files(path)?;
    let old = SigningKey::from_pem(&pem)?;
    let now = crate::token::now_secs();
    let mut set: RetiredSet = if retired_json.trim().is_empty() {
        RetiredSet::default()
    } else {
        serde_json::from_str(&retired_json)
            .map_err(|e| KeyError::Invalid(format!("retired keys: {e}")))?
    };
    set.keys.retain(|k| k.until >= now);
    set.keys.push(RetiredJwk {
        kty: "OKP".into(),
        crv: "Ed25519".into(),
        x: b64(&old.public_key()),
        kid: old.kid().to_owned(),
        until: now.saturating_add(keep.as_secs()),
    });
    let new_pem = SigningKey::generate_pem()?;
    let new = SigningKey::from_pem(&new_pem)?;
    let json = serde_json::to_string_pretty(&set).map_err(|e| KeyError::Invalid(e.to_string()))?;
    write_atomic(&retired_path(path), json.as_bytes())?;
    write_atomic(path, new_pem.as_bytes())?;
    Ok(new.kid().to_owned())
}

/// Writes `bytes` to a temporary file beside `path` (mode 0600) and renames
/// it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    use std::io::Write as _;
    let io =
        |e: std::io::Error| KeyError::Invalid(format!("cannot write `{}`: {e}", path.display()));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
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

    #[test]
    fn a_rotated_key_keeps_verifying_until_its_time_and_the_new_one_signs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.pem");
        std::fs::write(&path, SigningKey::generate_pem().unwrap()).unwrap();
        let ring = KeyRing::load(&path).unwrap();
        let old = ring.active().kid().to_owned();
        let new = rotate(&path, Duration::from_secs(600)).unwrap();
        assert_ne!(old, new);
        ring.reload(&path).unwrap();
        assert_eq!(ring.active().kid(), new);
        assert!(ring.decoding(&old).is_some());
        assert!(ring.decoding(&new).is_some());
        assert!(ring.decoding("nope").is_none());
        let jwks = ring.jwks();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, [new.as_str(), old.as_str()]);
        // A second rotation with no keeping time: the first key's time is
        // up and the second one retires at once.
        let newest = rotate(&path, Duration::ZERO).unwrap();
        ring.reload(&path).unwrap();
        assert_eq!(ring.active().kid(), newest);
        assert!(ring.decoding(&old).is_some(), "still within its 600 s");
    }

    #[test]
    fn a_corrupt_retired_file_is_refused() {
        let pem = SigningKey::generate_pem().unwrap();
        assert!(KeyRing::from_parts(&pem, "").is_ok());
        assert!(KeyRing::from_parts(&pem, "{").is_err());
        let bad = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"k","until":1}]}"#;
        assert!(KeyRing::from_parts(&pem, bad).is_err());
        let rsa = r#"{"keys":[{"kty":"RSA","crv":"Ed25519","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","kid":"k","until":1}]}"#;
        assert!(KeyRing::from_parts(&pem, rsa).is_err());
    }
}
