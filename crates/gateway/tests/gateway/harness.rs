//! A real stack on loopback: rmcp company servers as upstreams, Warden in
//! front of them on SQLite in a temporary directory, and rmcp clients.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use warden_audit::{AuditRecord, ChainEntry, ChainHead, RecordKind};
use warden_config::Config;
use warden_core::{AgentName, AgentState, TenantId, UpstreamName, UserName};
use warden_example::{HttpServer, Service, serve_http};
use warden_gateway::Gateway;
use warden_identity::{CaFiles, KeyRing, SigningKey, TokenIssuer};
use warden_store::{
    Agent, CertRecord, NewAgent, NewRecord, SecretRef, SqliteStore, Store, StoreError, Task, User,
};
use warden_vault::MasterKey;

pub const SCHEMA: &str = warden_policy::BASE_SCHEMA;

pub struct Harness {
    pub tls: bool,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub store: Arc<dyn Store>,
    pub issuer: TokenIssuer,
    pub key: Arc<SigningKey>,
    pub crm: HttpServer,
    pub docs: HttpServer,
    pub gateway: Arc<Gateway>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub config: Config,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Extra upstreams, as TOML `[[upstreams]]` entries.
pub struct Options {
    pub extra_upstreams: String,
    pub max_body_bytes: usize,
    pub upstream_timeout: &'static str,
    pub faults: Option<Faults>,
    /// `gateway.tls.client_auth`, turning TLS on.
    pub tls: Option<&'static str>,
    /// Extra `[identity]` lines.
    pub identity: String,
    /// The crm upstream's `auth` inline table.
    pub crm_auth: Option<&'static str>,
    /// The crm upstream's secret, stored before the gateway starts.
    pub crm_secret: Option<&'static str>,
    /// Add a policy that lets every agent connect to every upstream.
    pub connect_all: bool,
    /// Extra `[[upstreams]]`-level lines for the crm upstream (labels).
    pub crm_extra: &'static str,
    /// Candidate policies for shadow mode.
    pub shadow: Option<&'static str>,
    /// Further tenants and their policies.
    pub tenants: Vec<(&'static str, &'static str)>,
    /// Extra `[admin]` lines.
    pub admin: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            extra_upstreams: String::new(),
            max_body_bytes: 64 * 1024,
            upstream_timeout: "5s",
            faults: None,
            tls: None,
            identity: String::new(),
            crm_auth: None,
            crm_secret: None,
            connect_all: true,
            crm_extra: "",
            shadow: None,
            tenants: Vec::new(),
            admin: String::new(),
        }
    }
}

/// Switches that make the store fail, to prove the gateway fails closed.
#[derive(Clone, Default)]
pub struct Faults {
    pub agent_lookup: Arc<AtomicBool>,
    pub audit_append: Arc<AtomicBool>,
    pub approvals: Arc<AtomicBool>,
}

/// A real SQLite store with fault injection in front of it.
#[derive(Debug)]
struct FaultyStore {
    inner: SqliteStore,
    agent_lookup: Arc<AtomicBool>,
    audit_append: Arc<AtomicBool>,
    approvals: Arc<AtomicBool>,
}

fn injected() -> StoreError {
    StoreError::Database("injected fault".into())
}

#[async_trait]
impl Store for FaultyStore {
    async fn create_agent(&self, agent: NewAgent) -> Result<Agent, StoreError> {
        self.inner.create_agent(agent).await
    }
    async fn create_agents(&self, agents: Vec<NewAgent>) -> Result<(), StoreError> {
        self.inner.create_agents(agents).await
    }
    async fn agent(
        &self,
        tenant: &TenantId,
        name: &AgentName,
    ) -> Result<Option<Agent>, StoreError> {
        if self.agent_lookup.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.agent(tenant, name).await
    }
    async fn list_agents(&self, tenant: &TenantId) -> Result<Vec<Agent>, StoreError> {
        self.inner.list_agents(tenant).await
    }
    async fn set_agent_state(
        &self,
        tenant: &TenantId,
        name: &AgentName,
        state: AgentState,
    ) -> Result<Agent, StoreError> {
        self.inner.set_agent_state(tenant, name, state).await
    }
    async fn append_audit(&self, records: Vec<NewRecord>) -> Result<Vec<u64>, StoreError> {
        if self.audit_append.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.append_audit(records).await
    }
    async fn audit_entries(&self, after: u64, limit: u32) -> Result<Vec<ChainEntry>, StoreError> {
        self.inner.audit_entries(after, limit).await
    }
    async fn audit_head(&self) -> Result<ChainHead, StoreError> {
        self.inner.audit_head().await
    }
    async fn save_catalog(&self, upstream: &UpstreamName, catalog: &str) -> Result<(), StoreError> {
        self.inner.save_catalog(upstream, catalog).await
    }
    async fn catalogs(&self) -> Result<Vec<(UpstreamName, String)>, StoreError> {
        self.inner.catalogs().await
    }
    async fn rotate_agent(&self, tenant: &TenantId, name: &AgentName) -> Result<Agent, StoreError> {
        self.inner.rotate_agent(tenant, name).await
    }
    async fn record_cert(&self, cert: CertRecord) -> Result<(), StoreError> {
        self.inner.record_cert(cert).await
    }
    async fn cert(&self, serial: &str) -> Result<Option<CertRecord>, StoreError> {
        if self.agent_lookup.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.cert(serial).await
    }
    async fn list_certs(
        &self,
        tenant: &TenantId,
        agent: &AgentName,
    ) -> Result<Vec<CertRecord>, StoreError> {
        self.inner.list_certs(tenant, agent).await
    }
    async fn revoke_cert(&self, tenant: &TenantId, serial: &str) -> Result<CertRecord, StoreError> {
        self.inner.revoke_cert(tenant, serial).await
    }
    async fn create_user(
        &self,
        tenant: &TenantId,
        name: &UserName,
        role: &str,
    ) -> Result<User, StoreError> {
        self.inner.create_user(tenant, name, role).await
    }
    async fn user(&self, tenant: &TenantId, name: &UserName) -> Result<Option<User>, StoreError> {
        self.inner.user(tenant, name).await
    }
    async fn list_users(&self, tenant: &TenantId) -> Result<Vec<User>, StoreError> {
        self.inner.list_users(tenant).await
    }
    async fn set_user_active(
        &self,
        tenant: &TenantId,
        name: &UserName,
        active: bool,
    ) -> Result<User, StoreError> {
        self.inner.set_user_active(tenant, name, active).await
    }
    async fn set_user_groups(
        &self,
        tenant: &TenantId,
        name: &UserName,
        groups: &[String],
    ) -> Result<User, StoreError> {
        self.inner.set_user_groups(tenant, name, groups).await
    }
    async fn set_user_password(
        &self,
        tenant: &TenantId,
        name: &UserName,
        hash: Option<&str>,
    ) -> Result<(), StoreError> {
        self.inner.set_user_password(tenant, name, hash).await
    }
    async fn user_password(
        &self,
        tenant: &TenantId,
        name: &UserName,
    ) -> Result<Option<String>, StoreError> {
        self.inner.user_password(tenant, name).await
    }
    async fn create_login_link(&self, link: &warden_store::LoginLink) -> Result<(), StoreError> {
        self.inner.create_login_link(link).await
    }
    async fn use_login_link(
        &self,
        token_sha256: &str,
        now: u64,
    ) -> Result<Option<(TenantId, UserName)>, StoreError> {
        self.inner.use_login_link(token_sha256, now).await
    }
    async fn enqueue_events(
        &self,
        events: &[warden_store::OutboxEvent],
        now: u64,
    ) -> Result<(), StoreError> {
        self.inner.enqueue_events(events, now).await
    }
    async fn due_events(
        &self,
        now: u64,
        limit: u32,
    ) -> Result<Vec<warden_store::OutboxItem>, StoreError> {
        self.inner.due_events(now, limit).await
    }
    async fn event_delivered(&self, seq: u64, now: u64) -> Result<(), StoreError> {
        self.inner.event_delivered(seq, now).await
    }
    async fn event_retry(&self, seq: u64, next_at: u64, error: &str) -> Result<(), StoreError> {
        self.inner.event_retry(seq, next_at, error).await
    }
    async fn event_failed(&self, seq: u64, now: u64, error: &str) -> Result<(), StoreError> {
        self.inner.event_failed(seq, now, error).await
    }
    async fn overdue_approvals(
        &self,
        now: u64,
        limit: u32,
    ) -> Result<Vec<warden_approval::Approval>, StoreError> {
        self.inner.overdue_approvals(now, limit).await
    }
    async fn index_audit(&self, limit: u32) -> Result<u32, StoreError> {
        self.inner.index_audit(limit).await
    }
    async fn query_audit(
        &self,
        q: &warden_store::AuditQuery,
    ) -> Result<Vec<ChainEntry>, StoreError> {
        self.inner.query_audit(q).await
    }
    async fn audit_fields_mismatched(&self, limit: u32) -> Result<Vec<u64>, StoreError> {
        self.inner.audit_fields_mismatched(limit).await
    }
    async fn sink_cursor(&self, name: &str) -> Result<u64, StoreError> {
        self.inner.sink_cursor(name).await
    }
    async fn set_sink_cursor(&self, name: &str, seq: u64) -> Result<(), StoreError> {
        self.inner.set_sink_cursor(name, seq).await
    }
    async fn save_checkpoint(&self, c: &warden_store::StoredCheckpoint) -> Result<(), StoreError> {
        self.inner.save_checkpoint(c).await
    }
    async fn checkpoints(&self) -> Result<Vec<warden_store::StoredCheckpoint>, StoreError> {
        self.inner.checkpoints().await
    }
    async fn latest_checkpoint(
        &self,
    ) -> Result<Option<warden_store::StoredCheckpoint>, StoreError> {
        self.inner.latest_checkpoint().await
    }
    async fn create_task(&self, task: Task) -> Result<(), StoreError> {
        self.inner.create_task(task).await
    }
    async fn task(&self, tenant: &TenantId, id: &str) -> Result<Option<Task>, StoreError> {
        if self.agent_lookup.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.task(tenant, id).await
    }
    async fn list_tasks(&self, tenant: &TenantId) -> Result<Vec<Task>, StoreError> {
        self.inner.list_tasks(tenant).await
    }
    async fn end_task(&self, tenant: &TenantId, id: &str) -> Result<Task, StoreError> {
        self.inner.end_task(tenant, id).await
    }
    async fn create_approval(&self, a: &warden_approval::Approval) -> Result<(), StoreError> {
        if self.approvals.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.create_approval(a).await
    }
    async fn approval(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<warden_approval::Approval>, StoreError> {
        self.inner.approval(tenant, id).await
    }
    async fn list_approvals(
        &self,
        tenant: &TenantId,
        pending_only: bool,
    ) -> Result<Vec<warden_approval::Approval>, StoreError> {
        self.inner.list_approvals(tenant, pending_only).await
    }
    async fn find_approval(
        &self,
        b: &warden_approval::Request,
    ) -> Result<Option<warden_approval::Approval>, StoreError> {
        if self.approvals.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.find_approval(b).await
    }
    async fn update_approval(
        &self,
        a: &warden_approval::Approval,
        revision: u64,
    ) -> Result<bool, StoreError> {
        self.inner.update_approval(a, revision).await
    }
    async fn save_bundle(&self, version: &str, bundle: &str) -> Result<bool, StoreError> {
        self.inner.save_bundle(version, bundle).await
    }
    async fn bundles(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.inner.bundles().await
    }
    async fn bundle(&self, version: &str) -> Result<Option<String>, StoreError> {
        self.inner.bundle(version).await
    }
    async fn put_secret(&self, at: &SecretRef, sealed: Vec<u8>) -> Result<(), StoreError> {
        self.inner.put_secret(at, sealed).await
    }
    async fn secret(&self, at: &SecretRef) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.secret(at).await
    }
    async fn delete_secret(&self, at: &SecretRef) -> Result<bool, StoreError> {
        self.inner.delete_secret(at).await
    }
    async fn list_secrets(&self, tenant: &TenantId) -> Result<Vec<SecretRef>, StoreError> {
        self.inner.list_secrets(tenant).await
    }
}

pub async fn harness(policies: &str) -> Harness {
    harness_with(policies, Options::default()).await
}

pub async fn harness_with(policies: &str, options: Options) -> Harness {
    warden_gateway::install_crypto_provider();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let crm = serve_http(Service::Crm, any).await.unwrap();
    let docs = serve_http(Service::Docs, any).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/warden.cedarschema"), SCHEMA).unwrap();
    std::fs::write(dir.path().join("policies/test.cedar"), policies).unwrap();
    let mut tenants_toml = String::new();
    for (name, policies) in &options.tenants {
        let tdir = dir.path().join("tenants").join(name);
        std::fs::create_dir_all(&tdir).unwrap();
        std::fs::write(tdir.join("warden.cedarschema"), SCHEMA).unwrap();
        std::fs::write(tdir.join("test.cedar"), policies).unwrap();
        std::fs::write(
            tdir.join("connect.cedar"),
            "permit(principal, action == Warden::Action::\"connect\", resource);\n",
        )
        .unwrap();
        tenants_toml.push_str(&format!(
            "[[tenants]]\nname = \"{name}\"\npolicy_dir = \"tenants/{name}\"\n"
        ));
    }
    if let Some(candidate) = options.shadow {
        let shadow = dir.path().join("candidate");
        std::fs::create_dir_all(&shadow).unwrap();
        std::fs::write(shadow.join("warden.cedarschema"), SCHEMA).unwrap();
        std::fs::write(shadow.join("candidate.cedar"), candidate).unwrap();
    }
    if options.connect_all {
        // Every agent may reach every upstream; tests of `connect` turn this off.
        std::fs::write(
            dir.path().join("policies/connect.cedar"),
            "@id(\"connect-all\") permit(principal, action == Warden::Action::\"connect\", resource);\n",
        )
        .unwrap();
    }
    let config_text = format!(
        r#"
        [gateway]
        listen = "127.0.0.1:0"
        max_body_bytes = {max}
        upstream_timeout = "{timeout}"
        {tls}
        [identity]
        {identity}
        {tenants_toml}
        [admin]
        listen = "127.0.0.1:0"
        {admin}
        [storage]
        url = "sqlite://warden.db"
        [policy]
        dir = "policies"
        reload_interval = "100ms"
        {shadow}
        [audit]
        # Checkpoints are signed when a test asks, not by the clock.
        checkpoint_interval = "1h"
        [[upstreams]]
        name = "crm"
        url = "{crm}"
        {crm_auth}
        {crm_extra}
        [[upstreams]]
        name = "docs"
        url = "{docs}"
        {extra}
        "#,
        max = options.max_body_bytes,
        timeout = options.upstream_timeout,
        crm = crm.url(),
        docs = docs.url(),
        extra = options.extra_upstreams,
        tls = options.tls.map_or_else(String::new, |auth| format!(
            "[gateway.tls]\nenabled = true\nclient_auth = \"{auth}\"\nhosts = [\"localhost\", \"127.0.0.1\"]"
        )),
        identity = options.identity,
        crm_auth = options.crm_auth.map_or_else(String::new, |a| format!("auth = {a}")),
        crm_extra = options.crm_extra,
        shadow = if options.shadow.is_some() { "shadow_dir = \"candidate\"" } else { "" },
        admin = options.admin,
    );
    let tls = options.tls.is_some();
    let config = Config::parse(&config_text, &dir.path().join("warden.toml")).unwrap();
    let pem = SigningKey::generate_pem().unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::write(&config.identity.signing_key, &pem).unwrap();
    CaFiles::in_dir(&config.identity.ca_dir)
        .create(&config.identity.trust_domain)
        .unwrap();
    std::fs::write(
        &config.identity.master_key,
        MasterKey::generate_base64().unwrap(),
    )
    .unwrap();
    let key = Arc::new(SigningKey::from_pem(&pem).unwrap());
    let sqlite = SqliteStore::open(&config.storage_url).await.unwrap();
    let store: Arc<dyn Store> = match options.faults {
        Some(f) => Arc::new(FaultyStore {
            inner: sqlite,
            agent_lookup: f.agent_lookup,
            audit_append: f.audit_append,
            approvals: f.approvals,
        }),
        None => Arc::new(sqlite),
    };
    for name in ["a", "b"] {
        store
            .create_agent(NewAgent {
                tenant: tenant(),
                name: AgentName::new(name).unwrap(),
                owner: None,
                purpose: None,
            })
            .await
            .unwrap();
    }
    let id = &config.identity;
    let issuer = TokenIssuer::new(
        Arc::new(KeyRing::single(key.clone())),
        &id.issuer,
        &id.audience,
        &id.trust_domain,
        id.max_token_ttl,
    );
    if let Some(secret) = options.crm_secret {
        let master =
            MasterKey::from_base64(&std::fs::read_to_string(&config.identity.master_key).unwrap())
                .unwrap();
        let at = warden_store::SecretRef {
            tenant: tenant(),
            upstream: UpstreamName::new("crm").unwrap(),
            user: None,
        };
        let sealed = master
            .seal(&at.place(), &warden_vault::Secret::new(secret))
            .unwrap();
        store.put_secret(&at, sealed).await.unwrap();
    }
    let (gateway, addr, admin, stop) = run(&config, store.clone()).await;
    Harness {
        config,
        stop: Some(stop),
        tls,
        dir,
        addr,
        admin,
        store,
        issuer,
        key,
        crm,
        docs,
        gateway,
    }
}

/// Starts a gateway on `store` and serves it on two fresh loopback ports.
async fn run(
    config: &Config,
    store: Arc<dyn Store>,
) -> (
    Arc<Gateway>,
    SocketAddr,
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
) {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let gateway = Gateway::start(config.clone(), store).await.unwrap();
    let listener = tokio::net::TcpListener::bind(any).await.unwrap();
    let admin_listener = tokio::net::TcpListener::bind(any).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin = admin_listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(warden_gateway::serve(
        gateway.clone(),
        listener,
        admin_listener,
        async move {
            let _ = stopped.await;
        },
    ));
    (gateway, addr, admin, stop)
}

pub fn tenant() -> TenantId {
    TenantId::new("default").unwrap()
}

impl Harness {
    /// Stops the gateway and starts a new one on the same database file,
    /// opened afresh, as a restarted process would (new ports).
    pub async fn restart(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.gateway.shutdown().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&self.config.storage_url).await.unwrap());
        let (gateway, addr, admin, stop) = run(&self.config, store.clone()).await;
        (self.gateway, self.addr, self.admin, self.store) = (gateway, addr, admin, store);
        self.stop = Some(stop);
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    pub fn token(&self, agent: &str) -> String {
        self.issuer
            .issue(
                &tenant(),
                &AgentName::new(agent).unwrap(),
                None,
                Duration::from_secs(600),
            )
            .unwrap()
            .token
    }

    pub fn token_for_user(&self, agent: &str, user: &str) -> String {
        let user = UserName::new(user).unwrap();
        self.issuer
            .issue(
                &tenant(),
                &AgentName::new(agent).unwrap(),
                Some(&user),
                Duration::from_secs(600),
            )
            .unwrap()
            .token
    }

    pub async fn client(&self, path: &str, token: &str) -> RunningService<RoleClient, ()> {
        self.try_client(path, token).await.unwrap()
    }

    pub async fn try_client(
        &self,
        path: &str,
        token: &str,
    ) -> Result<RunningService<RoleClient, ()>, rmcp::service::ClientInitializeError> {
        let config = StreamableHttpClientTransportConfig::with_uri(self.url(path))
            .auth_header(token.to_owned());
        ().serve(StreamableHttpClientTransport::from_config(config))
            .await
    }

    /// A raw JSON-RPC POST (for what the SDK would never send).
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let mut req = reqwest::Client::new()
            .post(self.url(path))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, headers, json)
    }

    pub async fn set_state(&self, agent: &str, state: AgentState) {
        self.store
            .set_agent_state(&tenant(), &AgentName::new(agent).unwrap(), state)
            .await
            .unwrap();
    }

    /// Every entry of the trail, once the queued outcome records have landed.
    pub async fn entries(&self) -> Vec<ChainEntry> {
        // Outcome records are queued after the answer: let them land.
        assert!(
            self.gateway.settle_audit(Duration::from_secs(30)).await,
            "outcome records still queued after 30 s"
        );
        self.store.audit_entries(0, 100_000).await.unwrap()
    }

    pub async fn records(&self) -> Vec<AuditRecord> {
        self.entries()
            .await
            .iter()
            .map(|e| serde_json::from_slice(&e.body).unwrap())
            .collect()
    }

    pub async fn requests(&self) -> Vec<AuditRecord> {
        self.records()
            .await
            .into_iter()
            .filter(|r| r.kind == RecordKind::Request)
            .collect()
    }

    /// Records an open task of `agent` in `tenant`, granting `tools`.
    pub async fn create_task(
        &self,
        tenant: &TenantId,
        id: &str,
        agent: &str,
        tools: &[&str],
        expires_at: u64,
    ) {
        self.store
            .create_task(Task {
                id: id.into(),
                tenant: tenant.clone(),
                agent: AgentName::new(agent).unwrap(),
                user: None,
                purpose: format!("task {id}"),
                tools: tools.iter().map(|t| (*t).to_owned()).collect(),
                created_at: "2026-11-23T00:00:00Z".into(),
                expires_at,
                ended_at: None,
            })
            .await
            .unwrap();
    }

    /// `reviewer` (an approver of the default tenant) approves `id` in the
    /// store, as the console or the CLI would.
    pub async fn approve_as(&self, id: &str, reviewer: &str) {
        let mut a = self.store.approval(&tenant(), id).await.unwrap().unwrap();
        let revision = a.revision;
        let who = warden_approval::Reviewer {
            name: reviewer.into(),
            is_approver: true,
            tenant: "default".into(),
            groups: Vec::new(),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        a.review(&who, warden_approval::Verdict::Approve, None, now)
            .unwrap();
        assert!(self.store.update_approval(&a, revision).await.unwrap());
    }

    /// GETs an admin API path with `token`; the JSON answer.
    pub async fn admin_json(&self, path: &str, token: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("http://{}{path}", self.admin))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policies/test.cedar")
    }

    /// Replaces the policy file at once (written aside, then renamed), as a
    /// deployment would, so that the watcher never reads half a file.
    pub fn write_policy(&self, text: &str) {
        let aside = self.dir.path().join("policies/.test.cedar.new");
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, self.policy_path()).unwrap();
    }
}
