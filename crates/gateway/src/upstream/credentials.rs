//! Phase 7's credentials: the secrets Warden holds for upstreams, opened
//! from the store (sealed under the master key) and added to forwarded
//! requests. Agents never see them, and the agent's own token is never
//! forwarded. Opened secrets are cached briefly so a `warden secret set`
//! applies within seconds; OAuth access tokens until shortly before they
//! expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use warden_config::UpstreamAuth;
use warden_core::{TenantId, UpstreamName, UserName};
use warden_store::{SecretRef, Store};
use warden_vault::{MasterKey, Secret};

use super::CallError;

/// How long an opened secret is reused.
const SECRET_TTL: Duration = Duration::from_secs(2);
/// An OAuth access token is renewed this long before it expires.
const OAUTH_MARGIN: Duration = Duration::from_secs(30);
/// Cached entries at most.
const MAX_CACHED: usize = 10_000;

type SecretKey = (TenantId, UpstreamName, Option<UserName>);

/// Opens and caches upstream secrets.
pub struct Credentials {
    store: Arc<dyn Store>,
    master: Option<Arc<MasterKey>>,
    tenant: TenantId,
    http: reqwest::Client,
    secrets: Mutex<HashMap<SecretKey, (Instant, Option<Secret>)>>,
    oauth: Mutex<HashMap<(TenantId, UpstreamName), (Instant, Secret)>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct OauthToken {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

fn unavailable(message: impl Into<String>) -> CallError {
    CallError::Unavailable(message.into())
}

impl Credentials {
    /// Secrets opened with `master` (none: no upstream has a credential
    /// configured); calls that name no tenant use `tenant`'s.
    pub fn new(store: Arc<dyn Store>, master: Option<Arc<MasterKey>>, tenant: TenantId) -> Self {
        crate::install_crypto_provider();
        Self {
            store,
            master,
            tenant,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            secrets: Mutex::new(HashMap::new()),
            oauth: Mutex::new(HashMap::new()),
        }
    }

    /// The secret stored for `upstream` (and `user`), if any.
    async fn secret(
        &self,
        tenant: &TenantId,
        upstream: &UpstreamName,
        user: Option<&UserName>,
    ) -> Result<Option<Secret>, CallError> {
        let key = (tenant.clone(), upstream.clone(), user.cloned());
        if let Some((at, cached)) = self.secrets.lock().ok().and_then(|m| m.get(&key).cloned())
            && at.elapsed() < SECRET_TTL
        {
            return Ok(cached);
        }
        let at = SecretRef {
            tenant: tenant.clone(),
            upstream: upstream.clone(),
            user: user.cloned(),
        };
        let sealed = self.store.secret(&at).await.map_err(|e| {
            tracing::error!(upstream = %upstream, "secret lookup failed: {e}");
            unavailable("the upstream's credential is unavailable")
        })?;
        let opened = match sealed {
            None => None,
            Some(sealed) => {
                let master = self.master.as_ref().ok_or_else(|| {
                    unavailable("no master key to open the upstream's credential")
                })?;
                Some(master.open(&at.place(), &sealed).map_err(|e| {
                    tracing::error!(upstream = %upstream, "{e}");
                    unavailable("the upstream's credential does not open")
                })?)
            }
        };
        if let Ok(mut m) = self.secrets.lock() {
            if m.len() >= MAX_CACHED {
                m.clear();
            }
            m.insert(key, (Instant::now(), opened.clone()));
        }
        Ok(opened)
    }

    /// The secret for a call: the user's own if `per_user` and one is
    /// stored, else the upstream's. A configured credential with no secret
    /// stored fails the call (nothing is sent without it).
    async fn secret_for(
        &self,
        tenant: &TenantId,
        upstream: &UpstreamName,
        user: Option<&UserName>,
        per_user: bool,
    ) -> Result<Secret, CallError> {
        if per_user
            && let Some(user) = user
            && let Some(own) = self.secret(tenant, upstream, Some(user)).await?
        {
            return Ok(own);
        }
        self.secret(tenant, upstream, None).await?.ok_or_else(|| {
            unavailable(format!(
                "no credential stored for upstream `{upstream}` (warden secret set {upstream})"
            ))
        })
    }

    /// The header to add to an HTTP request to `upstream`.
    pub(crate) async fn header(
        &self,
        upstream: &UpstreamName,
        auth: &UpstreamAuth,
        tenant: Option<&TenantId>,
        user: Option<&UserName>,
    ) -> Result<Option<(HeaderName, HeaderValue)>, CallError> {
        let tenant = tenant.unwrap_or(&self.tenant);
        let (name, value) = match auth {
            UpstreamAuth::Bearer { per_user } => {
                let s = self.secret_for(tenant, upstream, user, *per_user).await?;
                (
                    http::header::AUTHORIZATION,
                    format!("Bearer {}", s.expose()),
                )
            }
            UpstreamAuth::Header { header, per_user } => {
                let s = self.secret_for(tenant, upstream, user, *per_user).await?;
                let name = HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| unavailable("invalid credential header name"))?;
                (name, s.expose().to_owned())
            }
            UpstreamAuth::Oauth {
                token_url,
                client_id,
                scope,
            } => {
                let token = self
                    .oauth_token(tenant, upstream, token_url, client_id, scope.as_deref())
                    .await?;
                (
                    http::header::AUTHORIZATION,
                    format!("Bearer {}", token.expose()),
                )
            }
            UpstreamAuth::Env { .. } => return Ok(None),
        };
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| unavailable("the stored credential is not a valid header value"))?;
        value.set_sensitive(true);
        Ok(Some((name, value)))
    }

    /// The environment variable for a stdio upstream's process.
    pub(crate) async fn env(
        &self,
        upstream: &UpstreamName,
        auth: &UpstreamAuth,
    ) -> Result<Option<(String, Secret)>, CallError> {
        let UpstreamAuth::Env { var } = auth else {
            return Ok(None);
        };
        // A stdio process is shared by every tenant: it runs with the
        // default tenant's secret.
        let s = self.secret_for(&self.tenant, upstream, None, false).await?;
        Ok(Some((var.clone(), s)))
    }

    async fn oauth_token(
        &self,
        tenant: &TenantId,
        upstream: &UpstreamName,
        token_url: &str,
        client_id: &str,
        scope: Option<&str>,
    ) -> Result<Secret, CallError> {
        let key = (tenant.clone(), upstream.clone());
        if let Some((until, token)) = self.oauth.lock().ok().and_then(|m| m.get(&key).cloned())
            && Instant::now() < until
        {
            return Ok(token);
        }
        let client_secret = self.secret_for(tenant, upstream, None, false).await?;
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let response = self
            .http
            .post(token_url)
            .basic_auth(client_id, Some(client_secret.expose()))
            .form(&form)
            .send()
            .await
            .map_err(|e| unavailable(format!("upstream token endpoint: {}", e.without_url())))?;
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "upstream token endpoint answered HTTP {}",
                response.status()
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|_| unavailable("upstream token endpoint: no answer"))?;
        let token: OauthToken = serde_json::from_slice(&body)
            .map_err(|_| unavailable("upstream token endpoint: malformed answer"))?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(300));
        let until = Instant::now()
            + lifetime
                .saturating_sub(OAUTH_MARGIN)
                .max(Duration::from_secs(5));
        let token = Secret::new(token.access_token);
        if let Ok(mut m) = self.oauth.lock() {
            m.insert(key, (until, token.clone()));
        }
        Ok(token)
    }
}
