//! The TOML as written: serde types with defaults, unknown keys rejected.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warden_core::{TenantId, UpstreamName};

pub use crate::duration::HumanDuration;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[gateway]`.
    #[serde(default)]
    pub gateway: RawGateway,
    /// `[admin]`.
    #[serde(default)]
    pub admin: RawAdmin,
    /// `[storage]`.
    #[serde(default)]
    pub storage: RawStorage,
    /// `[policy]`.
    #[serde(default)]
    pub policy: RawPolicy,
    /// `[identity]`.
    #[serde(default)]
    pub identity: RawIdentity,
    /// `[tasks]`.
    #[serde(default)]
    pub tasks: RawTasks,
    /// `[approvals]`.
    #[serde(default)]
    pub approvals: RawApprovals,
    /// `[audit]`.
    #[serde(default)]
    pub audit: RawAudit,
    /// `[telemetry]`: OpenTelemetry traces.
    #[serde(default)]
    pub telemetry: RawTelemetry,
    /// `[[webhooks]]`: where approval events are sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<RawWebhook>,
    /// `[[tenants]]`: tenants served beside `identity.default_tenant`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<RawTenant>,
    /// `[[upstreams]]`.
    #[serde(default)]
    pub upstreams: Vec<RawUpstream>,
}

/// One `[[tenants]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    /// The tenant's name.
    pub name: TenantId,
    /// Its own policy folder (relative to the config file).
    pub policy_dir: PathBuf,
}

/// `[approvals]`: held actions.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprovals {
    /// How long an approval waits for its reviewers (expiry is a denial).
    /// Default `15m`, at most `24h`.
    #[serde(default = "approval_ttl")]
    pub ttl: HumanDuration,
    /// How often expired approvals are recorded as such. Default `5s`.
    #[serde(default = "sweep_interval")]
    pub sweep_interval: HumanDuration,
}

/// `[audit]`: the Merkle log's signed checkpoints.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// The Ed25519 key (PKCS#8 PEM) that signs checkpoints. Default
    /// `keys/audit.pem`.
    #[serde(default = "audit_key")]
    pub key: PathBuf,
    /// The log's name in its checkpoints. Default `<trust_domain>/audit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// A checkpoint after this many new records. Default 1000.
    #[serde(default = "checkpoint_every")]
    pub checkpoint_every: u64,
    /// …or this long after the last one, when there are new records.
    /// Default `10s`.
    #[serde(default = "checkpoint_interval")]
    pub checkpoint_interval: HumanDuration,
    /// `[[audit.sinks]]`: where records are streamed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<RawSink>,
}

/// `[telemetry]`: traces over OTLP/HTTP (JSON), one span per request and
/// one per phase.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// The collector's base URL (`http://127.0.0.1:4318`); spans go to
    /// `<endpoint>/v1/traces`. None: no traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans (default `warden`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The share of requests traced, 0 to 1 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<f64>,
}

/// One `[[audit.sinks]]` entry: records streamed to a file or an HTTP
/// endpoint, from a durable cursor.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// Its name (keys its cursor).
    pub name: String,
    /// A file the records are appended to (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// …or an endpoint they are POSTed to as JSON lines (`https://`, or
    /// `http://` to loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A file holding a bearer token for `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// An environment variable holding a bearer token for `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// `ocsf` (default) or `native`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Records per write or POST (default 500, at most 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
}

/// One `[[webhooks]]` entry: an HMAC-signed POST for approval events.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Its name (in audit records and logs).
    pub name: String,
    /// Where to POST (`https://`, or `http://` to loopback).
    pub url: String,
    /// A file holding the signing secret (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding the signing secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// The events to send (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// Only these tenants' events (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants: Option<Vec<TenantId>>,
    /// Deliveries tried before an event is given up (default 10, about
    /// 8.5 minutes of backoff; at most 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

/// `[tasks]`: just-in-time task grants.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTasks {
    /// Default `30m`.
    #[serde(default = "task_ttl")]
    pub default_ttl: HumanDuration,
    /// Default `8h`.
    #[serde(default = "max_task_ttl")]
    pub max_ttl: HumanDuration,
}

/// A tool's labels in config (`[upstreams.tools.NAME]`, or the upstream's
/// own `classification`, `effect` and `external` for all its tools).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawToolLabel {
    /// `read_only`, `persistent` or `destructive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// `public`, `internal`, `confidential` or `restricted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
    /// Whether it sends data outside the company.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<bool>,
}

/// `[gateway]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    /// Default `127.0.0.1:8080`.
    #[serde(default = "gateway_listen")]
    pub listen: SocketAddr,
    /// Default 1 MiB.
    #[serde(default = "max_body_bytes")]
    pub max_body_bytes: usize,
    /// Default 8 MiB.
    #[serde(default = "max_response_bytes")]
    pub max_response_bytes: usize,
    /// Default `30s`.
    #[serde(default = "upstream_timeout")]
    pub upstream_timeout: HumanDuration,
    /// `[gateway.tls]`: TLS and client certificates on the gateway listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawTls>,
    /// Default `true`: `warden serve` runs its threads under Linux's
    /// `SCHED_BATCH` policy.
    #[serde(default = "batch_scheduling")]
    pub batch_scheduling: bool,
}

/// `[gateway.tls]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Serve TLS (default `false`).
    #[serde(default)]
    pub enabled: bool,
    /// `required` or `optional` (default `optional`).
    #[serde(default = "client_auth")]
    pub client_auth: String,
    /// The server certificate chain (PEM); default: issued by Warden's CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// The server certificate's key (PEM), with `cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Names and addresses the CA-issued server certificate covers; default
    /// `localhost` and the listen address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

/// One `[[identity.oidc]]` entry: an OIDC identity provider whose user
/// tokens agents may exchange.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    /// Its `iss`.
    pub issuer: String,
    /// The `aud` its tokens carry for Warden.
    pub audience: String,
    /// Its JWKS as a file (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// Its JWKS URL, fetched at start and on an unknown key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// The tenant its users belong to; default `identity.default_tenant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    /// The claim that names the user; default `sub`.
    #[serde(default = "user_claim")]
    pub user_claim: String,
}

/// An upstream's credential, held by Warden (`warden secret set`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
pub enum RawUpstreamAuth {
    /// `Authorization: Bearer <secret>`.
    Bearer {
        /// Per-user secrets override the upstream's own (default `false`).
        #[serde(default)]
        per_user: bool,
    },
    /// `<header>: <secret>`.
    Header {
        /// The header name, e.g. `X-Api-Key`.
        header: String,
        /// Per-user secrets override the upstream's own.
        #[serde(default)]
        per_user: bool,
    },
    /// OAuth 2.0 client credentials: Warden fetches an access token from
    /// `token_url` with `client_id` and the secret, and sends it as a bearer.
    Oauth {
        /// The token endpoint.
        token_url: String,
        /// The client id.
        client_id: String,
        /// Scope to ask for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
    },
    /// For stdio upstreams: the secret in this environment variable.
    Env {
        /// The variable.
        var: String,
    },
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Default `127.0.0.1:8081`.
    #[serde(default = "admin_listen")]
    pub listen: SocketAddr,
    /// The URL people reach the admin listener at (links in webhooks and
    /// login links). Default `http://<listen>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// A file holding the bearer token Prometheus scrapes `/metrics` with
    /// (an operator token works too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_token_file: Option<PathBuf>,
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// Default `sqlite://warden.db` (relative to the config file).
    #[serde(default = "storage_url")]
    pub url: String,
}

/// `[policy]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Default `policies` (relative to the config file).
    #[serde(default = "policy_dir")]
    pub dir: PathBuf,
    /// Default `1s`.
    #[serde(default = "reload_interval")]
    pub reload_interval: HumanDuration,
    /// A candidate policy folder evaluated beside the live one, never
    /// enforced (shadow mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_dir: Option<PathBuf>,
}

/// `[identity]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// Default `warden`.
    #[serde(default = "issuer")]
    pub issuer: String,
    /// Default `warden-gateway`.
    #[serde(default = "audience")]
    pub audience: String,
    /// Default `warden.local`.
    #[serde(default = "trust_domain")]
    pub trust_domain: String,
    /// Default `default`.
    #[serde(default = "default_tenant")]
    pub default_tenant: TenantId,
    /// Default `keys/signing.pem` (relative to the config file).
    #[serde(default = "signing_key")]
    pub signing_key: PathBuf,
    /// Default `10m`.
    #[serde(default = "token_ttl")]
    pub token_ttl: HumanDuration,
    /// Default `1h`.
    #[serde(default = "max_token_ttl")]
    pub max_token_ttl: HumanDuration,
    /// Default `30s`.
    #[serde(default = "leeway")]
    pub leeway: HumanDuration,
    /// Default `keys/ca` (relative to the config file).
    #[serde(default = "ca_dir")]
    pub ca_dir: PathBuf,
    /// Default `1h`.
    #[serde(default = "cert_ttl")]
    pub cert_ttl: HumanDuration,
    /// Default `24h`.
    #[serde(default = "max_cert_ttl")]
    pub max_cert_ttl: HumanDuration,
    /// Default `15m`.
    #[serde(default = "delegated_token_ttl")]
    pub delegated_token_ttl: HumanDuration,
    /// Default `keys/master.key` (relative to the config file);
    /// `WARDEN_MASTER_KEY` takes precedence.
    #[serde(default = "master_key")]
    pub master_key: PathBuf,
    /// `[[identity.oidc]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oidc: Vec<RawOidc>,
}

/// One `[[upstreams]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// The upstream's name.
    pub name: UpstreamName,
    /// MCP Streamable HTTP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Program and arguments of a stdio MCP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Environment for `command`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Per-call timeout; default `gateway.upstream_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// The credential Warden adds when forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RawUpstreamAuth>,
    /// Labels of all its tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// Classification of all its tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
    /// Whether all its tools send data outside the company.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<bool>,
    /// Per-tool labels, by the tool's name at the upstream.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, RawToolLabel>,
    /// How an agent waits for a held call: `defer` (default) or `wait`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// With `approval = "wait"`: how long the call is held open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout: Option<HumanDuration>,
}

macro_rules! defaults {
    ($($f:ident: $t:ty = $e:expr;)*) => { $(fn $f() -> $t { $e })* };
}

defaults! {
    gateway_listen: SocketAddr = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
    admin_listen: SocketAddr = SocketAddr::from((Ipv4Addr::LOCALHOST, 8081));
    max_body_bytes: usize = 1 << 20;
    max_response_bytes: usize = 8 << 20;
    batch_scheduling: bool = true;
    upstream_timeout: HumanDuration = HumanDuration(Duration::from_secs(30));
    storage_url: String = "sqlite://warden.db".into();
    policy_dir: PathBuf = "policies".into();
    reload_interval: HumanDuration = HumanDuration(Duration::from_secs(1));
    issuer: String = "warden".into();
    audience: String = "warden-gateway".into();
    trust_domain: String = "warden.local".into();
    default_tenant: TenantId = TenantId::new("default").unwrap_or_else(|_| unreachable_tenant());
    signing_key: PathBuf = "keys/signing.pem".into();
    token_ttl: HumanDuration = HumanDuration(Duration::from_secs(600));
    max_token_ttl: HumanDuration = HumanDuration(Duration::from_secs(3600));
    leeway: HumanDuration = HumanDuration(Duration::from_secs(30));
    ca_dir: PathBuf = "keys/ca".into();
    cert_ttl: HumanDuration = HumanDuration(Duration::from_secs(3600));
    max_cert_ttl: HumanDuration = HumanDuration(Duration::from_secs(24 * 3600));
    delegated_token_ttl: HumanDuration = HumanDuration(Duration::from_secs(900));
    master_key: PathBuf = "keys/master.key".into();
    client_auth: String = "optional".into();
    task_ttl: HumanDuration = HumanDuration(Duration::from_secs(1800));
    max_task_ttl: HumanDuration = HumanDuration(Duration::from_secs(8 * 3600));
    user_claim: String = "sub".into();
    approval_ttl: HumanDuration = HumanDuration(Duration::from_secs(15 * 60));
    sweep_interval: HumanDuration = HumanDuration(Duration::from_secs(5));
    audit_key: PathBuf = "keys/audit.pem".into();
    checkpoint_every: u64 = 1000;
    checkpoint_interval: HumanDuration = HumanDuration(Duration::from_secs(10));
}

#[allow(
    clippy::panic,
    reason = "`default` is a valid tenant name, checked by a unit test"
)]
fn unreachable_tenant() -> TenantId {
    panic!("`default` is a valid tenant name")
}

impl Default for RawGateway {
    fn default() -> Self {
        Self {
            listen: gateway_listen(),
            max_body_bytes: max_body_bytes(),
            max_response_bytes: max_response_bytes(),
            upstream_timeout: upstream_timeout(),
            tls: None,
            batch_scheduling: batch_scheduling(),
        }
    }
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: admin_listen(),
            public_url: None,
            metrics_token_file: None,
        }
    }
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            key: audit_key(),
            origin: None,
            checkpoint_every: checkpoint_every(),
            checkpoint_interval: checkpoint_interval(),
            sinks: Vec::new(),
        }
    }
}

impl Default for RawApprovals {
    fn default() -> Self {
        Self {
            ttl: approval_ttl(),
            sweep_interval: sweep_interval(),
        }
    }
}

impl Default for RawTasks {
    fn default() -> Self {
        Self {
            default_ttl: task_ttl(),
            max_ttl: max_task_ttl(),
        }
    }
}

impl Default for RawStorage {
    fn default() -> Self {
        Self { url: storage_url() }
    }
}

impl Default for RawPolicy {
    fn default() -> Self {
        Self {
            dir: policy_dir(),
            reload_interval: reload_interval(),
            shadow_dir: None,
        }
    }
}

impl Default for RawIdentity {
    fn default() -> Self {
        Self {
            issuer: issuer(),
            audience: audience(),
            trust_domain: trust_domain(),
            default_tenant: default_tenant(),
            signing_key: signing_key(),
            token_ttl: token_ttl(),
            max_token_ttl: max_token_ttl(),
            leeway: leeway(),
            ca_dir: ca_dir(),
            cert_ttl: cert_ttl(),
            max_cert_ttl: max_cert_ttl(),
            delegated_token_ttl: delegated_token_ttl(),
            master_key: master_key(),
            oidc: Vec::new(),
        }
    }
}
