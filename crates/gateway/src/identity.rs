//! The gateway's identity material: the token signing keys, the CA and its
//! trust bundle, the TLS server configuration, and the trusted OIDC issuers.
//! Key and CA files are watched: a rotation made by the CLI takes effect
//! without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::ServerConfig;
use warden_config::{Config, JwksSource, ServerCert, TlsConfig};
use warden_identity::{
    CaFiles, CertAuthority, KeyRing, OidcIssuer, OidcSettings, TokenIssuer, TokenVerifier,
    VerifiedUser, peek_issuer, retired_path,
};

use crate::tls::server_config;

/// Lifetime of the server certificate Warden's CA issues to the gateway.
const SERVER_CERT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The largest JWKS read from a file or URL.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// The CA with its trust bundle.
#[derive(Debug)]
pub(crate) struct LoadedCa {
    pub(crate) authority: CertAuthority,
    pub(crate) bundle_pem: String,
}

/// Identity material, shared by the request path and the watcher.
pub struct Identity {
    pub(crate) keys: Arc<KeyRing>,
    pub(crate) issuer: TokenIssuer,
    pub(crate) verifier: TokenVerifier,
    ca: RwLock<Option<Arc<LoadedCa>>>,
    oidc: Vec<OidcIssuer>,
    tls: Option<(TlsConfig, Arc<RwLock<Arc<ServerConfig>>>)>,
    signing_key: PathBuf,
    ca_files: CaFiles,
    trust_domain: String,
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("trust_domain", &self.trust_domain)
            .field("oidc", &self.oidc)
            .finish_non_exhaustive()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Identity {
    /// Loads the keys, the CA (required when TLS is on), the TLS
    /// configuration and the OIDC issuers' keys.
    pub async fn load(config: &Config) -> Result<Self, String> {
        let id = &config.identity;
        let keys = Arc::new(KeyRing::load(&id.signing_key).map_err(|e| e.to_string())?);
        let issuer = TokenIssuer::new(
            keys.clone(),
            &id.issuer,
            &id.audience,
            &id.trust_domain,
            id.max_token_ttl,
        );
        let verifier = TokenVerifier::new(
            keys.clone(),
            &id.issuer,
            &id.audience,
            &id.trust_domain,
            id.leeway,
        );
        let ca_files = CaFiles::in_dir(&id.ca_dir);
        let ca = if ca_files.exists() {
            Some(Arc::new(load_ca(&ca_files, &id.trust_domain)?))
        } else {
            None
        };
        let tls = match &config.gateway.tls {
            None => None,
            Some(tls) => {
                let ca = ca.as_ref().ok_or_else(|| {
                    format!(
                        "`gateway.tls` needs Warden's CA, and `{}` has none: create it with `warden ca init`",
                        id.ca_dir.display()
                    )
                })?;
                let server = build_tls(tls, ca)?;
                Some((tls.clone(), Arc::new(RwLock::new(Arc::new(server)))))
            }
        };
        let mut oidc = Vec::new();
        for o in &id.oidc {
            let jwks = read_jwks(&o.jwks).await?;
            let settings = OidcSettings {
                issuer: o.issuer.clone(),
                audience: o.audience.clone(),
                tenant: o.tenant.clone(),
                user_claim: o.user_claim.clone(),
                leeway_secs: id.leeway.as_secs(),
            };
            oidc.push(OidcIssuer::from_jwks(settings, &jwks).map_err(|e| e.to_string())?);
        }
        let this = Self {
            keys,
            issuer,
            verifier,
            ca: RwLock::new(ca),
            oidc,
            tls,
            signing_key: id.signing_key.clone(),
            ca_files,
            trust_domain: id.trust_domain.clone(),
            stamps: Mutex::new(Vec::new()),
        };
        let stamps = this.file_stamps();
        if let Ok(mut s) = this.stamps.lock() {
            *s = stamps;
        }
        Ok(this)
    }

    fn file_stamps(&self) -> Vec<Option<SystemTime>> {
        [
            self.signing_key.clone(),
            retired_path(&self.signing_key),
            self.ca_files.cert.clone(),
            self.ca_files.key.clone(),
            self.ca_files.bundle.clone(),
        ]
        .iter()
        .map(|p| modified(p))
        .collect()
    }

    /// Reloads what changed on disk. A broken file is reported and the
    /// material in force is kept.
    pub fn reload_if_changed(&self) {
        let now = self.file_stamps();
        let changed = self.stamps.lock().map(|s| *s != now).unwrap_or(false);
        if !changed {
            return;
        }
        if let Err(e) = self.keys.reload(&self.signing_key) {
            tracing::error!("signing keys not reloaded: {e}");
            return;
        }
        if self.ca_files.exists() {
            match load_ca(&self.ca_files, &self.trust_domain) {
                Ok(ca) => {
                    let ca = Arc::new(ca);
                    if let Some((tls, slot)) = &self.tls {
                        match build_tls(tls, &ca) {
                            Ok(server) => {
                                if let Ok(mut s) = slot.write() {
                                    *s = Arc::new(server);
                                }
                            }
                            Err(e) => {
                                tracing::error!("TLS configuration not reloaded: {e}");
                                return;
                            }
                        }
                    }
                    if let Ok(mut current) = self.ca.write() {
                        *current = Some(ca);
                    }
                }
                Err(e) => {
                    tracing::error!("CA not reloaded: {e}");
                    return;
                }
            }
        }
        tracing::info!(kid = %self.keys.active().kid(), "identity material reloaded");
        if let Ok(mut s) = self.stamps.lock() {
            *s = now;
        }
    }

    /// The CA, if there is one.
    pub(crate) fn ca(&self) -> Option<Arc<LoadedCa>> {
        self.ca.read().ok().and_then(|c| c.clone())
    }

    /// The live TLS server configuration, when TLS is on.
    pub(crate) fn tls(&self) -> Option<Arc<RwLock<Arc<ServerConfig>>>> {
        self.tls.as_ref().map(|(_, slot)| slot.clone())
    }

    /// Verifies a user token: Warden's own directory (by `iss`) or one of
    /// the trusted OIDC issuers. The caller checks the directory user.
    pub(crate) fn verify_user_token(&self, token: &str) -> Result<VerifiedUser, String> {
        let iss = peek_issuer(token).ok_or("the subject token is not a JWT with an issuer")?;
        if self.verifier.issuer() == Some(iss.as_str()) {
            return self.verifier.verify_user(token).map_err(|e| e.to_string());
        }
        self.oidc
            .iter()
            .find(|o| o.settings().issuer == iss)
            .ok_or_else(|| {
                format!(
                    "issuer `{}` is not trusted",
                    iss.chars().take(100).collect::<String>()
                )
            })?
            .verify(token)
            .map_err(|e| e.to_string())
    }
}

fn load_ca(files: &CaFiles, trust_domain: &str) -> Result<LoadedCa, String> {
    let (authority, bundle_pem) = files.load(trust_domain).map_err(|e| e.to_string())?;
    Ok(LoadedCa {
        authority,
        bundle_pem,
    })
}

fn build_tls(tls: &TlsConfig, ca: &LoadedCa) -> Result<ServerConfig, String> {
    let (chain, key) = match &tls.server_cert {
        ServerCert::Issued { hosts } => {
            let (cert, key) = ca
                .authority
                .issue_server(hosts, SERVER_CERT_TTL)
                .map_err(|e| e.to_string())?;
            (format!("{}{}", cert.pem, ca.authority.cert_pem()), key)
        }
        ServerCert::Files { cert, key } => {
            let read = |p: &Path| {
                std::fs::read_to_string(p).map_err(|e| format!("`{}`: {e}", p.display()))
            };
            (read(cert)?, read(key)?)
        }
    };
    server_config(&chain, &key, &ca.bundle_pem, tls.client_auth)
}

async fn read_jwks(source: &JwksSource) -> Result<String, String> {
    let text = match source {
        JwksSource::File(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("JWKS `{}`: {e}", path.display()))?
        }
        JwksSource::Url(url) => {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| e.to_string())?;
            let response = client
                .get(url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| format!("JWKS `{url}`: {e}"))?;
            let bytes = response
                .bytes()
                .await
                .map_err(|e| format!("JWKS `{url}`: {e}"))?;
            String::from_utf8(bytes.to_vec()).map_err(|_| format!("JWKS `{url}` is not UTF-8"))?
        }
    };
    if text.len() > MAX_JWKS_BYTES {
        return Err("JWKS larger than 1 MiB".into());
    }
    Ok(text)
}
