//! The Warden gateway: the agent-facing MCP endpoint, the admin API, and the
//! machinery behind them (upstream clients, the live policy engine, the
//! audit writer, sessions).
//!
//! [`Gateway::start`] wires the parts from a [`Config`]; [`Gateway::router`]
//! and [`Gateway::admin_router`] are the two HTTP surfaces; [`serve`] runs
//! both until shutdown.

#![allow(
    clippy::result_large_err,
    reason = "handlers return early with an axum `Response`, as axum intends"
)]

mod admin;
mod audit_log;
mod auth;
pub mod checkpoints;
pub mod console;
mod identity;
mod mcp;
mod metrics;
pub mod notify;
mod oauth;
mod policy_handle;
pub mod review;
pub mod sched;
mod sessions;
mod sinks;
mod taint;
mod tls;
mod upstream;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use warden_config::Config;
use warden_core::UpstreamName;
use warden_mcp::ToolCatalog;
use warden_policy::{Catalogs, Diagnostic};
use warden_store::Store;
use warden_vault::{MASTER_KEY_ENV, MasterKey};

pub use audit_log::{AuditError, AuditLog};
pub use auth::{AuthError, Principal};
pub use identity::Identity;
pub use policy_handle::{PolicyHandle, labels_of};
pub use tls::{Peer, TlsListener};
pub use upstream::{CallError, Credentials, Upstream};

/// How long startup waits for each upstream's tool list.
const CATALOG_TIMEOUT: Duration = Duration::from_secs(10);
/// Federated resource URIs remembered at most.
const MAX_RESOURCE_INDEX: usize = 50_000;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The policies do not validate (exit code 3).
    #[error("invalid policies:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Policy(Vec<Diagnostic>),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// The running gateway's shared state.
pub struct Gateway {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    identity: Arc<Identity>,
    tokens: auth::TokenCache,
    policy: Arc<PolicyHandle>,
    policies: BTreeMap<warden_core::TenantId, Arc<PolicyHandle>>,
    served: Vec<warden_core::TenantId>,
    upstreams: BTreeMap<String, Arc<Upstream>>,
    audit: AuditLog,
    sessions: sessions::Sessions,
    console: console::ConsoleSessions,
    deliveries: Option<Arc<notify::Deliveries>>,
    audit_signer: Arc<warden_audit::NoteSigner>,
    /// Set at shutdown: stops the checkpointer and the audit sinks.
    background_stop: tokio::sync::watch::Sender<bool>,
    /// The audit sinks' progress.
    sinks: Vec<Arc<sinks::SinkState>>,
    metrics: metrics::Metrics,
    /// SHA-256 of the Prometheus scrape token, if one is configured.
    metrics_token: Option<[u8; 32]>,
    taints: taint::Taints,
    resources: RwLock<HashMap<String, UpstreamName>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("upstreams", &self.upstreams.keys())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Connects the upstreams, loads their tool catalogs (live, else the
    /// recorded ones), builds and validates the policies, and starts the
    /// audit writer and the policy watcher.
    pub async fn start(config: Config, store: Arc<dyn Store>) -> Result<Arc<Self>, StartError> {
        install_crypto_provider();
        let identity = Arc::new(Identity::load(&config).await.map_err(StartError::Other)?);
        let needs_secrets = config.upstreams.iter().any(|u| u.auth.is_some());
        let master = master_key(&config.identity.master_key, needs_secrets)?;
        let credentials = Arc::new(Credentials::new(
            store.clone(),
            master,
            config.identity.default_tenant.clone(),
        ));
        let mut upstreams = BTreeMap::new();
        for u in &config.upstreams {
            let upstream = Upstream::new(
                u,
                config.gateway.max_response_bytes,
                Some(credentials.clone()),
            )
            .map_err(StartError::Other)?;
            upstreams.insert(u.name.to_string(), Arc::new(upstream));
        }
        let catalogs = load_catalogs(&upstreams, store.as_ref()).await;
        let mut policies = BTreeMap::new();
        let labels = labels_of(&config);
        for tenant in config.served_tenants() {
            let Some(dir) = config.policy_dir(&tenant) else {
                continue;
            };
            let is_default = tenant == config.identity.default_tenant;
            let handle = PolicyHandle::new(
                dir.to_owned(),
                catalogs.clone(),
                store.clone(),
                labels.clone(),
                config.policy.shadow_dir.clone().filter(|_| is_default),
            )
            .map_err(|d| {
                if is_default {
                    StartError::Policy(d)
                } else {
                    StartError::Policy(
                        d.into_iter()
                            .map(|mut x| {
                                x.file = format!("tenant `{tenant}`: {}", x.file);
                                x
                            })
                            .collect(),
                    )
                }
            })?;
            let handle = Arc::new(handle);
            handle.record_bundle().await;
            handle.watch(config.policy.reload_interval);
            policies.insert(tenant, handle);
        }
        let policy = policies
            .get(&config.identity.default_tenant)
            .cloned()
            .ok_or_else(|| StartError::Other("no policies for the default tenant".into()))?;
        let served = config.served_tenants();
        for (name, catalog) in &catalogs {
            if let Err(e) = store
                .save_catalog(name, &catalog.to_json().to_string())
                .await
            {
                tracing::warn!(upstream = %name, "cannot record the tool catalog: {e}");
            }
        }
        watch_identity(&identity, config.policy.reload_interval);
        let audit = AuditLog::start(store.clone());
        let audit_signer =
            Arc::new(checkpoints::load_signer(&config.audit, true).map_err(StartError::Other)?);
        let (background_stop, stopped) = tokio::sync::watch::channel(false);
        let sinks =
            sinks::start(&config.audit.sinks, &store, &stopped).map_err(StartError::Other)?;
        checkpoints::run(store.clone(), audit_signer.clone(), &config.audit, stopped);
        let deliveries = notify::Deliveries::start(&config, store.clone(), audit.clone())
            .map_err(StartError::Other)?;
        let sweep = config.approvals.sweep_interval;
        let metrics_token = match &config.admin.metrics_token_file {
            Some(path) => {
                let token = std::fs::read_to_string(path).map_err(|e| {
                    StartError::Other(format!(
                        "cannot read the metrics token `{}`: {e}",
                        path.display()
                    ))
                })?;
                let token = token.trim();
                if token.len() < 16 {
                    return Err(StartError::Other(
                        "the metrics token needs at least 16 characters".into(),
                    ));
                }
                Some(admin::digest(token))
            }
            None => None,
        };
        let gateway = Arc::new(Self {
            metrics: metrics::Metrics::new(),
            metrics_token,
            audit,
            deliveries,
            audit_signer,
            background_stop,
            sinks,
            config: Arc::new(config),
            store,
            identity,
            tokens: auth::TokenCache::default(),
            policy,
            policies,
            served,
            upstreams,
            sessions: sessions::Sessions::default(),
            console: console::ConsoleSessions::default(),
            taints: taint::Taints::default(),
            resources: RwLock::new(HashMap::new()),
        });
        review::sweep_expired(&gateway, sweep);
        Ok(gateway)
    }

    /// Queues the event of an approval's latest transition for the
    /// webhooks, and has it delivered soon.
    pub(crate) async fn approval_changed(&self, a: &warden_approval::Approval) {
        if let Some(d) = &self.deliveries {
            notify::enqueue(self.store.as_ref(), &self.config, a, auth::now_secs()).await;
            d.wake();
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The default tenant's live policies.
    pub fn policy(&self) -> &Arc<PolicyHandle> {
        &self.policy
    }

    /// The live policies of `tenant`, if it is served.
    pub fn policy_for(&self, tenant: &warden_core::TenantId) -> Option<Arc<PolicyHandle>> {
        self.policies.get(tenant).cloned()
    }

    /// The identity material in force.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The agent-facing routes: `/mcp`, `/mcp/{upstream}`, the token
    /// endpoint, certificate renewal and the JWKS.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/oauth/token", post(oauth::token))
            .route("/identity/renew", post(oauth::renew))
            .route("/.well-known/jwks.json", get(oauth::jwks))
            .route(
                "/mcp",
                post(mcp::post_federated)
                    .get(mcp::get_stream)
                    .delete(mcp::delete_session),
            )
            .route(
                "/mcp/{upstream}",
                post(mcp::post_upstream)
                    .get(mcp::get_stream)
                    .delete(mcp::delete_session),
            )
            .with_state(self.clone())
    }

    /// The admin API routes.
    pub fn admin_router(self: &Arc<Self>) -> Router {
        admin::router(self.clone())
    }

    /// Waits until every queued outcome record is committed, or `limit`
    /// passes; whether the queue is empty.
    pub async fn settle_audit(&self, limit: std::time::Duration) -> bool {
        self.audit.settle(limit).await
    }

    /// Stops the stdio upstream processes, lets the queued outcome records
    /// land, and signs a last checkpoint that covers them.
    pub async fn shutdown(&self) {
        for u in self.upstreams.values() {
            u.shutdown().await;
        }
        if !self.settle_audit(SHUTDOWN_AUDIT_WAIT).await {
            tracing::error!(
                pending = self.audit.pending(),
                "outcome records still queued at shutdown"
            );
        }
        let _ = self.background_stop.send(true);
        if let Err(e) =
            checkpoints::checkpoint_now(self.store.as_ref(), &self.audit_signer, auth::now_secs())
                .await
        {
            tracing::error!("last audit checkpoint refused: {e}");
        }
    }

    fn remember_resource(&self, uri: &str, upstream: &UpstreamName) {
        if let Ok(mut map) = self.resources.write() {
            if map.len() >= MAX_RESOURCE_INDEX {
                map.clear();
            }
            map.insert(uri.to_owned(), upstream.clone());
        }
    }

    fn resource_upstream(&self, uri: &str) -> Option<Arc<Upstream>> {
        let name = self.resources.read().ok()?.get(uri)?.clone();
        self.upstreams.get(name.as_str()).cloned()
    }
}

/// How long shutdown waits for queued outcome records to be committed.
const SHUTDOWN_AUDIT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Makes ring rustls's process-wide crypto provider (for HTTPS upstreams),
/// unless one is installed already.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The master key: `WARDEN_MASTER_KEY`, else the key file. Required when
/// an upstream has a credential.
fn master_key(
    path: &std::path::Path,
    required: bool,
) -> Result<Option<Arc<MasterKey>>, StartError> {
    let text = match std::env::var(MASTER_KEY_ENV) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(StartError::Other(format!(
                    "cannot read the master key `{}`: {e}",
                    path.display()
                )));
            }
        },
    };
    match text {
        Some(t) => MasterKey::from_base64(&t)
            .map(|k| Some(Arc::new(k)))
            .map_err(|e| StartError::Other(e.to_string())),
        None if required => Err(StartError::Other(format!(
            "an upstream has a credential, and there is no master key: set {MASTER_KEY_ENV} or create `{}` (warden init does)",
            path.display()
        ))),
        None => Ok(None),
    }
}

fn watch_identity(identity: &Arc<Identity>, every: Duration) {
    let weak = Arc::downgrade(identity);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(identity) = weak.upgrade() else {
                return;
            };
            identity.reload_if_changed();
        }
    });
}

async fn load_catalogs(upstreams: &BTreeMap<String, Arc<Upstream>>, store: &dyn Store) -> Catalogs {
    let recorded: HashMap<UpstreamName, String> = store
        .catalogs()
        .await
        .unwrap_or_default()
        .into_iter()
        .collect();
    let live = futures_util::future::join_all(upstreams.values().map(|u| async move {
        (
            u.clone(),
            tokio::time::timeout(CATALOG_TIMEOUT, u.list_tools()).await,
        )
    }))
    .await;
    let mut catalogs = Catalogs::new();
    for (upstream, result) in live {
        let name = upstream.name().clone();
        let catalog = match result {
            Ok(Ok(catalog)) => Some(catalog),
            Ok(Err(e)) => {
                tracing::warn!(upstream = %name, "cannot list tools: {e}; using the recorded catalog");
                None
            }
            Err(_) => {
                tracing::warn!(upstream = %name, "tools/list timed out; using the recorded catalog");
                None
            }
        };
        let catalog = catalog.or_else(|| {
            let text = recorded.get(&name)?;
            let value = serde_json::from_str(text).ok()?;
            ToolCatalog::from_json(value).ok()
        });
        match catalog {
            Some(c) => {
                catalogs.insert(name, c);
            }
            None => {
                tracing::warn!(upstream = %name, "no tool catalog: its tools are denied until it answers")
            }
        }
    }
    catalogs
}

/// Serves the gateway and the admin API on the two listeners until
/// `shutdown` resolves.
pub async fn serve(
    gateway: Arc<Gateway>,
    gateway_listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let app = gateway
        .router()
        .into_make_service_with_connect_info::<Peer>();
    let admin = gateway
        .admin_router()
        .into_make_service_with_connect_info::<SocketAddr>();
    let tls = gateway.identity.tls();
    let a = async {
        match tls {
            None => {
                axum::serve(gateway_listener, app)
                    .with_graceful_shutdown(wait(rx.clone()))
                    .await
            }
            Some(config) => {
                let listener = TlsListener::spawn(
                    gateway_listener,
                    config,
                    gateway.config.identity.trust_domain.clone(),
                    refused_handshake(&gateway),
                )?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(wait(rx.clone()))
                    .await
            }
        }
    };
    let b = axum::serve(admin_listener, admin).with_graceful_shutdown(wait(rx.clone()));
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let (ra, rb) = tokio::join!(a, async { b.await });
    gateway.shutdown().await;
    ra.and(rb)
}

/// Audits a refused TLS handshake (wrong CA, expired certificate, ...).
fn refused_handshake(gateway: &Arc<Gateway>) -> tls::OnRefused {
    let weak = Arc::downgrade(gateway);
    Arc::new(move |addr: SocketAddr, reason: String| {
        tracing::warn!(source = %addr, "{reason}");
        let Some(gw) = weak.upgrade() else {
            return;
        };
        let mut rec = mcp::Exchange::new(&gw, "tls".into(), &Peer { addr, cert: None }).rec;
        rec.status = None;
        rec.error = Some(reason.chars().take(500).collect());
        rec.decision = warden_core::Decision::deny("TLS handshake refused");
        tokio::spawn(async move {
            gw.audit.write_later(&rec).await;
        });
    })
}
