//! Warden's certificate authority: X.509 certificates for agents (one URI
//! SAN, `spiffe://<trust-domain>/tenant/<tenant>/agent/<name>`), signed from
//! the agent's own CSR, and server certificates for the gateway listener.
//!
//! The CA key is ECDSA P-256. A *trust bundle* holds every CA certificate
//! that is still trusted (the current one and, after a rotation, the
//! previous ones), so certificates issued before a rotation keep working
//! until they expire.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use warden_core::{AgentName, TenantId};

use crate::spiffe_id;

/// A PEM input larger than this is refused unread.
pub const MAX_PEM_BYTES: usize = 64 * 1024;

/// Why a certificate could not be issued or read. Safe to show to callers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Not PEM, or not the expected object.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// The CSR is malformed or its signature is wrong.
    #[error("invalid certificate signing request: {0}")]
    Csr(String),
    /// The CSR names an identity other than the one being certified.
    #[error("the certificate signing request is for another identity: {0}")]
    Identity(String),
    /// The certificate does not carry a valid agent identity.
    #[error("certificate identity: {0}")]
    Subject(String),
    /// The lifetime asked for is above the maximum.
    #[error("certificate lifetime {asked:?} is above the maximum {max:?}")]
    TooLong {
        /// Asked.
        asked: Duration,
        /// Allowed.
        max: Duration,
    },
    /// Signing failed.
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// A certificate just issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// PEM of the certificate.
    pub pem: String,
    /// DER of the certificate.
    pub der: Vec<u8>,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Start of validity (seconds since the epoch).
    pub not_before: u64,
    /// End of validity (seconds since the epoch).
    pub not_after: u64,
    /// SHA-256 of the DER, base64url (RFC 8705 `x5t#S256`).
    pub thumbprint: String,
}

/// The certificate authority: its certificate and key.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    trust_domain: String,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

/// A fresh CA: (certificate PEM, private key PEM), valid ten years.
pub fn generate_ca(trust_domain: &str) -> Result<(String, String), CertError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| CertError::Sign(e.to_string()))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let now = OffsetDateTime::now_utc();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("Warden CA {trust_domain} {}", now.unix_timestamp()),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Warden");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(3650);
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = false;
    let cert = params
        .self_signed(&key)
        .map_err(|e| CertError::Sign(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A fresh P-256 key pair and a CSR for `spiffe_id`: (key PEM, CSR PEM).
/// For agents that let Warden's CLI make their key.
pub fn generate_agent_csr(spiffe_id: &str) -> Result<(String, String), CertError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| CertError::Sign(e.to_string()))?;
    let uri = spiffe_id
        .to_owned()
        .try_into()
        .map_err(|e: rcgen::Error| CertError::Sign(e.to_string()))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(uri)];
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| CertError::Sign(e.to_string()))?;
    Ok((key.serialize_pem(), csr))
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive, and never starting with a zero byte (DER minimal encoding).
    if let Some(first) = bytes.first_mut() {
        *first = (*first & 0x7f) | 0x40;
    }
    SerialNumber::from_slice(&bytes)
}

fn unix(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp()).unwrap_or(0)
}

/// SHA-256 of a certificate's DER, base64url without padding (`x5t#S256`).
pub fn thumbprint(der: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

fn check_len(pem: &str) -> Result<(), CertError> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(CertError::Pem(format!("larger than {MAX_PEM_BYTES} bytes")));
    }
    Ok(())
}

impl CertAuthority {
    /// The CA from its certificate and private key (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str, trust_domain: &str) -> Result<Self, CertError> {
        check_len(cert_pem)?;
        check_len(key_pem)?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| CertError::Pem(e.to_string()))?;
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| CertError::Pem(e.to_string()))?;
        Ok(Self {
            issuer,
            cert_pem: cert_pem.to_owned(),
            trust_domain: trust_domain.to_owned(),
        })
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs `csr_pem` for the agent `agent` of `tenant`, valid `ttl`.
    ///
    /// The CSR's signature must verify (the agent holds the key) and it may
    /// name no identity or exactly this agent's SPIFFE id; the certificate
    /// gets only what Warden decides (one URI SAN, client-auth, not a CA),
    /// whatever else the CSR asks for.
    pub fn sign_agent_csr(
        &self,
        csr_pem: &str,
        tenant: &TenantId,
        agent: &AgentName,
        ttl: Duration,
    ) -> Result<IssuedCert, CertError> {
        check_len(csr_pem)?;
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CertError::Csr(e.to_string()))?;
        let expected = spiffe_id(&self.trust_domain, tenant, agent);
        for san in &csr.params.subject_alt_names {
            match san {
                SanType::URI(uri) if uri.as_str() == expected => {}
                SanType::URI(uri) => {
                    return Err(CertError::Identity(format!(
                        "it names `{}`, not `{expected}`",
                        uri.as_str().chars().take(200).collect::<String>()
                    )));
                }
                _ => {
                    return Err(CertError::Identity(format!(
                        "it names a non-URI identity; only `{expected}` may be asked for"
                    )));
                }
            }
        }
        let uri = expected
            .clone()
            .try_into()
            .map_err(|e: rcgen::Error| CertError::Sign(e.to_string()))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.is_ca = IsCa::ExplicitNoCa;
        self.sign(params, &csr.public_key, ttl)
    }

    /// A server certificate for `hosts` (DNS names or IP addresses):
    /// (certificate PEM, key PEM).
    pub fn issue_server(
        &self,
        hosts: &[String],
        ttl: Duration,
    ) -> Result<(IssuedCert, String), CertError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CertError::Sign(e.to_string()))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Warden gateway");
        for host in hosts {
            let san = match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    host.clone()
                        .try_into()
                        .map_err(|e: rcgen::Error| CertError::Sign(e.to_string()))?,
                ),
            };
            params.subject_alt_names.push(san);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.is_ca = IsCa::ExplicitNoCa;
        let cert = self.sign(params, &key, ttl)?;
        Ok((cert, key.serialize_pem()))
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        public_key: &impl rcgen::PublicKeyData,
        ttl: Duration,
    ) -> Result<IssuedCert, CertError> {
        let now = OffsetDateTime::now_utc();
        // A minute of back-dating absorbs small clock differences.
        params.not_before = now - time::Duration::seconds(BACKDATE_SECS.cast_signed());
        params.not_after = now + ttl;
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(public_key, &self.issuer)
            .map_err(|e| CertError::Sign(e.to_string()))?;
        Ok(IssuedCert {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            serial: hex::encode(serial.to_bytes()),
            not_before: unix(params.not_before),
            not_after: unix(params.not_after),
            thumbprint: thumbprint(cert.der()),
        })
    }
}

/// Every certificate in a PEM bundle (DER), in order.
pub fn parse_cert_bundle(pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    if pem.len() > MAX_PEM_BYTES * 16 {
        return Err(CertError::Pem("bundle too large".into()));
    }
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(CertError::Pem("no certificate found".into()));
    }
    Ok(certs)
}

/// The agent identity a client certificate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The tenant.
    pub tenant: TenantId,
    /// The agent.
    pub agent: AgentName,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Start of validity (seconds since the epoch).
    pub not_before: u64,
    /// End of validity (seconds since the epoch).
    pub not_after: u64,
    /// `x5t#S256` of the certificate.
    pub thumbprint: String,
}

/// Reads the agent identity of a (chain-verified) client certificate: it
/// must carry exactly one URI SAN, an agent SPIFFE id in `trust_domain`.
pub fn cert_identity(der: &[u8], trust_domain: &str) -> Result<CertIdentity, CertError> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| CertError::Subject(format!("unreadable certificate: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| CertError::Subject(format!("bad subject alternative names: {e}")))?
        .ok_or_else(|| CertError::Subject("no SPIFFE id (no subject alternative name)".into()))?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    let [uri] = uris.as_slice() else {
        return Err(CertError::Subject(format!(
            "expected exactly one URI SAN, found {}",
            uris.len()
        )));
    };
    let (tenant, agent) = parse_agent_id(uri, trust_domain)?;
    let validity = cert.validity();
    Ok(CertIdentity {
        tenant,
        agent,
        serial: hex::encode(cert.raw_serial()),
        not_before: u64::try_from(validity.not_before.timestamp()).unwrap_or(0),
        not_after: u64::try_from(validity.not_after.timestamp()).unwrap_or(0),
        thumbprint: thumbprint(der),
    })
}

/// Splits `spiffe://<trust_domain>/tenant/<t>/agent/<a>` into its tenant and
/// agent; anything else (another trust domain, extra segments) is refused.
pub fn parse_agent_id(uri: &str, trust_domain: &str) -> Result<(TenantId, AgentName), CertError> {
    let shown = || uri.chars().take(200).collect::<String>();
    let rest = uri
        .strip_prefix("spiffe://")
        .ok_or_else(|| CertError::Subject(format!("`{}` is not a SPIFFE id", shown())))?;
    let (domain, path) = rest
        .split_once('/')
        .ok_or_else(|| CertError::Subject(format!("`{}` is not an agent id", shown())))?;
    if domain != trust_domain {
        return Err(CertError::Subject(format!(
            "trust domain `{}` is not `{trust_domain}`",
            domain.chars().take(100).collect::<String>()
        )));
    }
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["tenant", tenant, "agent", agent] => {
            let tenant = TenantId::new(*tenant).map_err(|e| CertError::Subject(e.to_string()))?;
            let agent = AgentName::new(*agent).map_err(|e| CertError::Subject(e.to_string()))?;
            Ok((tenant, agent))
        }
        _ => Err(CertError::Subject(format!(
            "`{}` is not an agent id",
            shown()
        ))),
    }
}

/// Seconds a certificate's validity starts before the moment it is issued.
pub const BACKDATE_SECS: u64 = 60;

/// The CA's files in its folder: `ca.pem` (the current CA certificate),
/// `ca.key` (its key, mode 0600) and `bundle.pem` (every trusted CA
/// certificate: the current one first, then those it replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// `ca.pem`.
    pub cert: PathBuf,
    /// `ca.key`.
    pub key: PathBuf,
    /// `bundle.pem`.
    pub bundle: PathBuf,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CertError + '_ {
    move |e| CertError::Pem(format!("`{}`: {e}", path.display()))
}

impl CaFiles {
    /// The files in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join("ca.pem"),
            key: dir.join("ca.key"),
            bundle: dir.join("bundle.pem"),
        }
    }

    /// Whether the CA exists.
    pub fn exists(&self) -> bool {
        self.cert.exists() && self.key.exists()
    }

    /// Creates a fresh CA; refuses to replace one.
    pub fn create(&self, trust_domain: &str) -> Result<(), CertError> {
        if self.cert.exists() || self.key.exists() {
            return Err(CertError::Sign(format!(
                "a CA exists already in `{}`",
                self.cert.parent().unwrap_or(Path::new(".")).display()
            )));
        }
        self.write_new(trust_domain, "")
    }

    /// Replaces the CA with a fresh one. The old CA certificate stays in the
    /// trust bundle (certificates it issued keep working until they expire)
    /// unless `drop_previous`.
    pub fn rotate(&self, trust_domain: &str, drop_previous: bool) -> Result<(), CertError> {
        let previous = if drop_previous {
            String::new()
        } else {
            std::fs::read_to_string(&self.bundle).map_err(io(&self.bundle))?
        };
        self.write_new(trust_domain, &previous)
    }

    fn write_new(&self, trust_domain: &str, previous: &str) -> Result<(), CertError> {
        if let Some(dir) = self.cert.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let (cert, key) = generate_ca(trust_domain)?;
        let write = |path: &Path, text: &str| {
            crate::write_atomic(path, text.as_bytes()).map_err(|e| CertError::Pem(e.to_string()))
        };
        write(&self.key, &key)?;
        write(&self.cert, &cert)?;
        write(&self.bundle, &format!("{cert}{previous}"))
    }

    /// The CA and the trust bundle (PEM).
    pub fn load(&self, trust_domain: &str) -> Result<(CertAuthority, String), CertError> {
        let cert = std::fs::read_to_string(&self.cert).map_err(io(&self.cert))?;
        let key = std::fs::read_to_string(&self.key).map_err(io(&self.key))?;
        let bundle = match std::fs::read_to_string(&self.bundle) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => cert.clone(),
            Err(e) => return Err(io(&self.bundle)(e)),
        };
        parse_cert_bundle(&bundle)?;
        Ok((CertAuthority::from_pem(&cert, &key, trust_domain)?, bundle))
    }
}

#[cfg(test)]
mod tests;
