//! The `warden.toml` model: one documented schema (see `docs/configuration.md`),
//! unknown keys rejected, relative paths resolved against the file's folder.
//!
//! Parsing is two steps, as in ripgrep: the raw TOML becomes [`RawConfig`]
//! (serde, `deny_unknown_fields`), then [`Config::from_raw`] checks what serde
//! cannot (unique upstream names, exactly one transport, bounded durations)
//! and resolves paths, so a [`Config`] cannot hold an invalid state.

mod duration;
mod raw;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use warden_core::{TenantId, UpstreamName};

pub use raw::{
    RawAdmin, RawApprovals, RawAudit, RawConfig, RawGateway, RawIdentity, RawOidc, RawPolicy,
    RawStorage, RawTasks, RawTenant, RawTls, RawToolLabel, RawUpstream, RawUpstreamAuth,
};

/// Tokens live at most this long, whatever the config says.
pub const TOKEN_TTL_CEILING: Duration = Duration::from_secs(24 * 3600);
/// Agent certificates live at most this long, whatever the config says.
pub const CERT_TTL_CEILING: Duration = Duration::from_secs(30 * 24 * 3600);

/// A configuration error, with the file it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("invalid config `{path}`: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// What toml/serde said, with the line.
        message: String,
    },
    /// The TOML parsed but breaks a rule.
    #[error("invalid config `{path}`: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Which rule and which key.
        message: String,
    },
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from.
    pub path: PathBuf,
    /// The agent-facing gateway.
    pub gateway: GatewayConfig,
    /// The admin API.
    pub admin: AdminConfig,
    /// Storage URL, with relative SQLite paths made absolute.
    pub storage_url: String,
    /// Policy directory and reload.
    pub policy: PolicyConfig,
    /// Tokens and identities.
    pub identity: IdentityConfig,
    /// Just-in-time task grants.
    pub tasks: TasksConfig,
    /// Held actions.
    pub approvals: ApprovalsConfig,
    /// The audit log's checkpoints.
    pub audit: AuditConfig,
    /// Traces.
    pub telemetry: TelemetryConfig,
    /// Where approval events are sent.
    pub webhooks: Vec<WebhookConfig>,
    /// Tenants served beside the default one, with their policy folders.
    pub tenants: BTreeMap<TenantId, PathBuf>,
    /// The upstream tool servers, in file order.
    pub upstreams: Vec<UpstreamConfig>,
}

/// `[audit]`.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The checkpoint signing key (absolute).
    pub key: PathBuf,
    /// The log's name in its checkpoints.
    pub origin: String,
    /// A checkpoint after this many new records…
    pub checkpoint_every: u64,
    /// …or this long after the last one.
    pub checkpoint_interval: Duration,
    /// Where records are streamed.
    pub sinks: Vec<SinkConfig>,
}

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP collector's base URL; none: no traces.
    pub otlp_endpoint: Option<String>,
    /// `service.name`.
    pub service_name: String,
    /// The share of requests traced.
    pub sample_ratio: f64,
}

/// An `[[audit.sinks]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Its name.
    pub name: String,
    /// Where records go.
    pub target: SinkTarget,
    /// How each record is written.
    pub format: SinkFormat,
    /// Records per write or POST.
    pub batch: u32,
}

/// Where a sink sends records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTarget {
    /// Appended to a file (absolute), one JSON object per line.
    File(PathBuf),
    /// POSTed as JSON lines, with an optional bearer token.
    Http {
        /// The endpoint.
        url: String,
        /// The token's place.
        token: Option<SecretSource>,
    },
}

/// A sink's line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkFormat {
    /// OCSF 1.3 events.
    Ocsf,
    /// `{"seq", "hash", "record"}`.
    Native,
}

/// `[approvals]`.
#[derive(Debug, Clone)]
pub struct ApprovalsConfig {
    /// How long an approval waits for its reviewers.
    pub ttl: Duration,
    /// How often expired approvals are recorded as such.
    pub sweep_interval: Duration,
}

/// Where a webhook's signing secret is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file (absolute).
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

/// A `[[webhooks]]` entry.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Its name.
    pub name: String,
    /// Where to POST.
    pub url: String,
    /// The signing secret's place.
    pub secret: SecretSource,
    /// The events sent; none means all.
    pub events: Option<Vec<String>>,
    /// The tenants whose events are sent; none means all.
    pub tenants: Option<Vec<TenantId>>,
    /// Deliveries tried before an event is given up.
    pub max_attempts: u32,
}

impl WebhookConfig {
    /// Whether `event` of `tenant` goes to this webhook.
    pub fn wants(&self, event: &str, tenant: &str) -> bool {
        self.events
            .as_ref()
            .is_none_or(|e| e.iter().any(|x| x == event))
            && self
                .tenants
                .as_ref()
                .is_none_or(|t| t.iter().any(|x| x.as_str() == tenant))
    }
}

/// The approval events a webhook can ask for.
pub const APPROVAL_EVENTS: [&str; 4] = [
    "approval.created",
    "approval.reviewed",
    "approval.decided",
    "approval.executed",
];

/// `[tasks]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TasksConfig {
    /// Lifetime of a task when none is asked for.
    pub default_ttl: Duration,
    /// Longest task.
    pub max_ttl: Duration,
}

/// A tool's labels set in config; unset fields come from the upstream's
/// labels, then the tool's MCP annotations and the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolLabelConfig {
    /// `read_only`, `persistent` or `destructive`.
    pub effect: Option<String>,
    /// `public`, `internal`, `confidential` or `restricted`.
    pub classification: Option<String>,
    /// Whether it sends data outside the company.
    pub external: Option<bool>,
}

/// `[gateway]`.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Largest request body accepted (bytes); larger gets HTTP 413.
    pub max_body_bytes: usize,
    /// Default upstream timeout.
    pub upstream_timeout: Duration,
    /// Largest upstream response accepted (bytes).
    pub max_response_bytes: usize,
    /// TLS on the listener; none means plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Run the gateway's threads under `SCHED_BATCH` (Linux): a thread
    /// woken by another does not preempt it, so the audit writer takes
    /// the records of every request that is ready in one commit instead
    /// of interrupting the request threads for each one.
    pub batch_scheduling: bool,
}

/// `[gateway.tls]` with `enabled = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Whether a client certificate is required.
    pub client_auth: ClientAuth,
    /// Where the server certificate comes from.
    pub server_cert: ServerCert,
}

/// Whether clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every connection presents a certificate of Warden's CA.
    Required,
    /// A certificate is verified if presented; bearer tokens work without.
    Optional,
}

/// The gateway's server certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCert {
    /// Issued by Warden's CA at start, for these names and addresses.
    Issued {
        /// DNS names and IP addresses.
        hosts: Vec<String>,
    },
    /// Provided by the operator.
    Files {
        /// Certificate chain (PEM).
        cert: PathBuf,
        /// Private key (PEM).
        key: PathBuf,
    },
}

/// `[admin]`.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Where people reach it, without a trailing slash.
    pub public_url: String,
    /// The scrape token's file (absolute), if any.
    pub metrics_token_file: Option<PathBuf>,
}

/// Whether `url` may receive data: https, or plain http to loopback.
fn acceptable_url(url: &str) -> bool {
    url.starts_with("https://")
        || ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| url.starts_with(p))
}

/// Checks the `[[audit.sinks]]` entries.
fn sinks(raw: Vec<raw::RawSink>, base: &Path) -> Result<Vec<SinkConfig>, String> {
    let mut out: Vec<SinkConfig> = Vec::new();
    for s in raw {
        let name = s.name;
        if name.is_empty() || out.iter().any(|o| o.name == name) {
            return Err(format!(
                "audit sink names must be set and unique (`{name}`)"
            ));
        }
        let token = match (s.token_file, s.token_env) {
            (None, None) => None,
            (Some(f), None) => Some(SecretSource::File(base.join(f))),
            (None, Some(e)) if !e.is_empty() => Some(SecretSource::Env(e)),
            _ => {
                return Err(format!(
                    "audit sink `{name}`: set at most one of `token_file` and `token_env`"
                ));
            }
        };
        let target = match (s.path, s.url) {
            (Some(p), None) if token.is_none() => SinkTarget::File(base.join(p)),
            (Some(_), None) => {
                return Err(format!("audit sink `{name}`: a token is only for `url`"));
            }
            (None, Some(url)) if acceptable_url(&url) => SinkTarget::Http { url, token },
            (None, Some(_)) => {
                return Err(format!(
                    "audit sink `{name}`: the URL must be https:// (plain http only to loopback)"
                ));
            }
            _ => {
                return Err(format!(
                    "audit sink `{name}`: set exactly one of `path` and `url`"
                ));
            }
        };
        let format = match s.format.as_deref() {
            None | Some("ocsf") => SinkFormat::Ocsf,
            Some("native") => SinkFormat::Native,
            Some(other) => {
                return Err(format!(
                    "audit sink `{name}`: `format` is `ocsf` or `native`, not `{other}`"
                ));
            }
        };
        let batch = s.batch.unwrap_or(500);
        if !(1..=10_000).contains(&batch) {
            return Err(format!("audit sink `{name}`: `batch` must be 1 to 10000"));
        }
        out.push(SinkConfig {
            name,
            target,
            format,
            batch,
        });
    }
    Ok(out)
}

/// Checks the `[[webhooks]]` entries.
fn webhooks(raw: Vec<raw::RawWebhook>, base: &Path) -> Result<Vec<WebhookConfig>, String> {
    let mut out: Vec<WebhookConfig> = Vec::new();
    for w in raw {
        let name = w.name;
        if name.is_empty() || out.iter().any(|o| o.name == name) {
            return Err(format!("webhook names must be set and unique (`{name}`)"));
        }
        if !acceptable_url(&w.url) {
            return Err(format!(
                "webhook `{name}`: the URL must be https:// (plain http only to loopback)"
            ));
        }
        let secret = match (w.secret_file, w.secret_env) {
            (Some(f), None) => SecretSource::File(base.join(f)),
            (None, Some(e)) if !e.is_empty() => SecretSource::Env(e),
            _ => {
                return Err(format!(
                    "webhook `{name}`: set exactly one of `secret_file` and `secret_env`"
                ));
            }
        };
        if let Some(bad) = w
            .events
            .iter()
            .flatten()
            .find(|e| !APPROVAL_EVENTS.contains(&e.as_str()))
        {
            return Err(format!(
                "webhook `{name}`: unknown event `{bad}` (known: {})",
                APPROVAL_EVENTS.join(", ")
            ));
        }
        let max_attempts = w.max_attempts.unwrap_or(10);
        if !(1..=20).contains(&max_attempts) {
            return Err(format!("webhook `{name}`: `max_attempts` must be 1 to 20"));
        }
        out.push(WebhookConfig {
            max_attempts,
            name,
            url: w.url,
            secret,
            events: w.events,
            tenants: w.tenants,
        });
    }
    Ok(out)
}

/// `[policy]`.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Folder with `*.cedar` policies and `*.cedarschema` schema files.
    pub dir: PathBuf,
    /// How often the folder is checked for changes.
    pub reload_interval: Duration,
    /// The candidate folder evaluated in shadow mode, if any.
    pub shadow_dir: Option<PathBuf>,
}

/// `[identity]`.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// `iss` of the tokens Warden issues and accepts.
    pub issuer: String,
    /// `aud` of agent tokens.
    pub audience: String,
    /// SPIFFE trust domain of agent ids.
    pub trust_domain: String,
    /// The tenant that commands use when none is given.
    pub default_tenant: TenantId,
    /// PKCS#8 PEM Ed25519 key that signs tokens.
    pub signing_key: PathBuf,
    /// Default token lifetime.
    pub token_ttl: Duration,
    /// Longest token lifetime `token issue` grants.
    pub max_token_ttl: Duration,
    /// Clock skew allowed when checking `exp` and `nbf`.
    pub leeway: Duration,
    /// The CA folder: `ca.pem`, `ca.key`, `bundle.pem`.
    pub ca_dir: PathBuf,
    /// Default agent certificate lifetime.
    pub cert_ttl: Duration,
    /// Longest agent certificate lifetime.
    pub max_cert_ttl: Duration,
    /// Lifetime of delegated tokens from a token exchange.
    pub delegated_token_ttl: Duration,
    /// The master key file that seals upstream secrets.
    pub master_key: PathBuf,
    /// Trusted OIDC identity providers.
    pub oidc: Vec<OidcConfig>,
}

/// One trusted OIDC identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// Its `iss`.
    pub issuer: String,
    /// The `aud` its tokens carry for Warden.
    pub audience: String,
    /// Where its keys are.
    pub jwks: JwksSource,
    /// The tenant of its users.
    pub tenant: TenantId,
    /// The claim naming the user.
    pub user_claim: String,
}

/// Where an OIDC provider's JWKS is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A file.
    File(PathBuf),
    /// A URL.
    Url(String),
}

/// How Warden authenticates to an upstream, with a secret it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAuth {
    /// `Authorization: Bearer <secret>`.
    Bearer {
        /// Per-user secrets override the upstream's own.
        per_user: bool,
    },
    /// `<header>: <secret>`.
    Header {
        /// Header name (lowercase).
        header: String,
        /// Per-user secrets override the upstream's own.
        per_user: bool,
    },
    /// OAuth 2.0 client credentials; the secret is the client secret.
    Oauth {
        /// The token endpoint.
        token_url: String,
        /// The client id.
        client_id: String,
        /// Scope to ask for.
        scope: Option<String>,
    },
    /// The secret in an environment variable of a stdio upstream.
    Env {
        /// The variable.
        var: String,
    },
}

/// One `[[upstreams]]` entry.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Name: `/mcp/{name}`, and the prefix of federated tool names.
    pub name: UpstreamName,
    /// How Warden reaches it.
    pub transport: Transport,
    /// Timeout of one call.
    pub timeout: Duration,
    /// The credential Warden adds when forwarding.
    pub auth: Option<UpstreamAuth>,
    /// Labels of all its tools.
    pub labels: ToolLabelConfig,
    /// Labels of single tools, by name at the upstream.
    pub tool_labels: BTreeMap<String, ToolLabelConfig>,
    /// How agents wait for its held calls.
    pub approval: ApprovalMode,
}

/// How an agent waits for a held call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalMode {
    /// The call returns at once with a tool error naming the approval; the
    /// agent retries it after approval.
    Defer,
    /// The call is held open until it is decided, or this long.
    Wait(Duration),
}

/// How an upstream is reached.
#[derive(Debug, Clone)]
pub enum Transport {
    /// MCP Streamable HTTP at this URL.
    Http {
        /// The MCP endpoint URL.
        url: String,
    },
    /// An MCP server that Warden spawns and speaks to over stdio.
    Stdio {
        /// Program (resolved against the config folder when it holds a `/`).
        program: PathBuf,
        /// Arguments.
        args: Vec<String>,
        /// Extra environment variables.
        env: BTreeMap<String, String>,
        /// Working folder: the config folder.
        cwd: PathBuf,
    },
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text`, as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        Self::from_raw(raw, path)
    }

    /// Validates `raw` and resolves its paths against `path`'s folder.
    pub fn from_raw(raw: RawConfig, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let base = base_dir(path);
        let gateway = raw.gateway;
        let identity = raw.identity;
        if identity.max_token_ttl.0 > TOKEN_TTL_CEILING {
            return Err(invalid(
                "`identity.max_token_ttl` may be at most 24h".into(),
            ));
        }
        if identity.token_ttl.0 > identity.max_token_ttl.0 || identity.token_ttl.0.is_zero() {
            return Err(invalid(
                "`identity.token_ttl` must be above zero and at most `identity.max_token_ttl`"
                    .into(),
            ));
        }
        if gateway.max_body_bytes == 0 || gateway.max_response_bytes == 0 {
            return Err(invalid(
                "`gateway.max_body_bytes` and `gateway.max_response_bytes` must be above zero"
                    .into(),
            ));
        }
        check_identity_durations(&identity).map_err(invalid)?;
        let tls = gateway
            .tls
            .map(|t| tls(t, gateway.listen, &base))
            .transpose()
            .map_err(invalid)?
            .flatten();
        let oidc = oidc(
            identity.oidc,
            &identity.issuer,
            &identity.default_tenant,
            &base,
        )
        .map_err(invalid)?;
        let upstreams =
            upstreams(raw.upstreams, &base, gateway.upstream_timeout.0).map_err(invalid)?;
        let mut tenants = BTreeMap::new();
        for t in raw.tenants {
            if t.name == identity.default_tenant || tenants.contains_key(&t.name) {
                return Err(invalid(format!(
                    "tenant `{}` is defined twice (the default tenant uses `policy.dir`)",
                    t.name
                )));
            }
            tenants.insert(t.name, base.join(t.policy_dir));
        }
        if raw.tasks.default_ttl.0 > raw.tasks.max_ttl.0 || raw.tasks.default_ttl.0.is_zero() {
            return Err(invalid(
                "`tasks.default_ttl` must be above zero and at most `tasks.max_ttl`".into(),
            ));
        }
        let approvals = ApprovalsConfig {
            ttl: raw.approvals.ttl.0,
            sweep_interval: raw.approvals.sweep_interval.0,
        };
        if approvals.ttl.is_zero() || approvals.ttl > Duration::from_secs(24 * 3600) {
            return Err(invalid(
                "`approvals.ttl` must be above zero and at most 24h".into(),
            ));
        }
        if approvals.sweep_interval < Duration::from_millis(100) {
            return Err(invalid(
                "`approvals.sweep_interval` must be at least 100ms".into(),
            ));
        }
        let webhooks = webhooks(raw.webhooks, &base).map_err(invalid)?;
        let origin = raw
            .audit
            .origin
            .clone()
            .unwrap_or_else(|| format!("{}/audit", identity.trust_domain));
        if origin.is_empty() || origin.chars().any(|c| c.is_whitespace() || c == '+') {
            return Err(invalid(format!(
                "`audit.origin` must be a name without spaces or `+`, not `{origin}`"
            )));
        }
        if raw.audit.checkpoint_every == 0
            || raw.audit.checkpoint_interval.0 < Duration::from_millis(100)
        {
            return Err(invalid(
                "`audit.checkpoint_every` must be above zero and `audit.checkpoint_interval` at least 100ms"
                    .into(),
            ));
        }
        let audit = AuditConfig {
            key: base.join(&raw.audit.key),
            origin,
            checkpoint_every: raw.audit.checkpoint_every,
            checkpoint_interval: raw.audit.checkpoint_interval.0,
            sinks: sinks(raw.audit.sinks.clone(), &base).map_err(invalid)?,
        };
        let telemetry = TelemetryConfig {
            otlp_endpoint: match raw.telemetry.otlp_endpoint.clone() {
                Some(u) if acceptable_url(&u) => Some(u.trim_end_matches('/').to_owned()),
                Some(u) => {
                    return Err(invalid(format!(
                        "`telemetry.otlp_endpoint` must be https:// (plain http only to loopback), not `{u}`"
                    )));
                }
                None => None,
            },
            service_name: raw
                .telemetry
                .service_name
                .clone()
                .unwrap_or_else(|| "warden".into()),
            sample_ratio: raw.telemetry.sample_ratio.unwrap_or(1.0),
        };
        if !(0.0..=1.0).contains(&telemetry.sample_ratio) || telemetry.service_name.is_empty() {
            return Err(invalid(
                "`telemetry.sample_ratio` must be 0 to 1 and `telemetry.service_name` set".into(),
            ));
        }
        if let Some(url) = raw
            .admin
            .public_url
            .as_ref()
            .filter(|u| !(u.starts_with("https://") || u.starts_with("http://")))
        {
            return Err(invalid(format!(
                "`admin.public_url` must be an http(s) URL, not `{url}`"
            )));
        }
        Ok(Self {
            path: path.to_owned(),
            gateway: GatewayConfig {
                listen: gateway.listen,
                max_body_bytes: gateway.max_body_bytes,
                upstream_timeout: gateway.upstream_timeout.0,
                max_response_bytes: gateway.max_response_bytes,
                batch_scheduling: gateway.batch_scheduling,
                tls,
            },
            admin: AdminConfig {
                listen: raw.admin.listen,
                public_url: raw
                    .admin
                    .public_url
                    .map(|u| u.trim_end_matches('/').to_owned())
                    .unwrap_or_else(|| format!("http://{}", raw.admin.listen)),
                metrics_token_file: raw.admin.metrics_token_file.map(|f| base.join(f)),
            },
            approvals,
            audit,
            telemetry,
            webhooks,
            storage_url: storage_url(&raw.storage.url, &base).map_err(invalid)?,
            policy: PolicyConfig {
                dir: base.join(raw.policy.dir),
                reload_interval: raw.policy.reload_interval.0,
                shadow_dir: raw.policy.shadow_dir.map(|d| base.join(d)),
            },
            identity: IdentityConfig {
                issuer: identity.issuer,
                audience: identity.audience,
                trust_domain: identity.trust_domain,
                default_tenant: identity.default_tenant,
                signing_key: base.join(identity.signing_key),
                token_ttl: identity.token_ttl.0,
                max_token_ttl: identity.max_token_ttl.0,
                leeway: identity.leeway.0,
                ca_dir: base.join(identity.ca_dir),
                cert_ttl: identity.cert_ttl.0,
                max_cert_ttl: identity.max_cert_ttl.0,
                delegated_token_ttl: identity.delegated_token_ttl.0,
                master_key: base.join(identity.master_key),
                oidc,
            },
            tasks: TasksConfig {
                default_ttl: raw.tasks.default_ttl.0,
                max_ttl: raw.tasks.max_ttl.0,
            },
            tenants,
            upstreams,
        })
    }

    /// Every tenant served: the default one first.
    pub fn served_tenants(&self) -> Vec<TenantId> {
        std::iter::once(self.identity.default_tenant.clone())
            .chain(self.tenants.keys().cloned())
            .collect()
    }

    /// The policy folder of `tenant`, if it is served.
    pub fn policy_dir(&self, tenant: &TenantId) -> Option<&Path> {
        if tenant == &self.identity.default_tenant {
            return Some(&self.policy.dir);
        }
        self.tenants.get(tenant).map(PathBuf::as_path)
    }

    /// The upstream called `name`.
    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|u| u.name.as_str() == name)
    }
}

fn check_identity_durations(identity: &RawIdentity) -> Result<(), String> {
    if identity.max_cert_ttl.0 > CERT_TTL_CEILING {
        return Err("`identity.max_cert_ttl` may be at most 30 days".into());
    }
    if identity.cert_ttl.0 > identity.max_cert_ttl.0 || identity.cert_ttl.0.is_zero() {
        return Err(
            "`identity.cert_ttl` must be above zero and at most `identity.max_cert_ttl`".into(),
        );
    }
    if identity.delegated_token_ttl.0 > identity.max_token_ttl.0
        || identity.delegated_token_ttl.0.is_zero()
    {
        return Err("`identity.delegated_token_ttl` must be above zero and at most `identity.max_token_ttl`".into());
    }
    Ok(())
}

fn tls(raw: RawTls, listen: SocketAddr, base: &Path) -> Result<Option<TlsConfig>, String> {
    if !raw.enabled {
        return Ok(None);
    }
    let client_auth = match raw.client_auth.as_str() {
        "required" => ClientAuth::Required,
        "optional" => ClientAuth::Optional,
        other => {
            return Err(format!(
                "`gateway.tls.client_auth` `{other}`: expected `required` or `optional`"
            ));
        }
    };
    let server_cert = match (raw.cert, raw.key) {
        (Some(cert), Some(key)) => {
            if !raw.hosts.is_empty() {
                return Err("`gateway.tls.hosts` applies only to the certificate Warden issues, not to `cert`".into());
            }
            ServerCert::Files {
                cert: base.join(cert),
                key: base.join(key),
            }
        }
        (None, None) => {
            let mut hosts = raw.hosts;
            if hosts.is_empty() {
                hosts.push("localhost".into());
                if !listen.ip().is_unspecified() {
                    hosts.push(listen.ip().to_string());
                }
            }
            ServerCert::Issued { hosts }
        }
        _ => return Err("`gateway.tls.cert` and `gateway.tls.key` go together".into()),
    };
    Ok(Some(TlsConfig {
        client_auth,
        server_cert,
    }))
}

fn oidc(
    raw: Vec<RawOidc>,
    own_issuer: &str,
    default_tenant: &TenantId,
    base: &Path,
) -> Result<Vec<OidcConfig>, String> {
    let mut out: Vec<OidcConfig> = Vec::with_capacity(raw.len());
    for o in raw {
        if o.issuer == own_issuer || out.iter().any(|x| x.issuer == o.issuer) {
            return Err(format!(
                "`identity.oidc` issuer `{}` is defined twice (or is Warden's own issuer)",
                o.issuer
            ));
        }
        let jwks = match (o.jwks_file, o.jwks_url) {
            (Some(file), None) => JwksSource::File(base.join(file)),
            (None, Some(url)) if url.starts_with("https://") || url.starts_with("http://") => {
                JwksSource::Url(url)
            }
            (None, Some(url)) => {
                return Err(format!(
                    "`identity.oidc` `jwks_url` `{url}` is not an http(s) URL"
                ));
            }
            _ => {
                return Err(format!(
                    "`identity.oidc` issuer `{}`: set exactly one of `jwks_file` and `jwks_url`",
                    o.issuer
                ));
            }
        };
        out.push(OidcConfig {
            issuer: o.issuer,
            audience: o.audience,
            jwks,
            tenant: o.tenant.unwrap_or_else(|| default_tenant.clone()),
            user_claim: o.user_claim,
        });
    }
    Ok(out)
}

const EFFECTS: &[&str] = &["read_only", "persistent", "destructive"];
const CLASSIFICATIONS: &[&str] = &["public", "internal", "confidential", "restricted"];

fn label(what: &str, raw: RawToolLabel) -> Result<ToolLabelConfig, String> {
    if let Some(e) = raw.effect.as_deref().filter(|e| !EFFECTS.contains(e)) {
        return Err(format!(
            "{what}: effect `{e}`: expected one of {}",
            EFFECTS.join(", ")
        ));
    }
    if let Some(c) = raw
        .classification
        .as_deref()
        .filter(|c| !CLASSIFICATIONS.contains(c))
    {
        return Err(format!(
            "{what}: classification `{c}`: expected one of {}",
            CLASSIFICATIONS.join(", ")
        ));
    }
    Ok(ToolLabelConfig {
        effect: raw.effect,
        classification: raw.classification,
        external: raw.external,
    })
}

fn upstream_auth(
    name: &UpstreamName,
    raw: RawUpstreamAuth,
    stdio: bool,
) -> Result<UpstreamAuth, String> {
    let auth = match raw {
        RawUpstreamAuth::Bearer { per_user } => UpstreamAuth::Bearer { per_user },
        RawUpstreamAuth::Header { header, per_user } => {
            if http::HeaderName::from_bytes(header.as_bytes()).is_err()
                || matches!(
                    header.to_ascii_lowercase().as_str(),
                    "host" | "content-length" | "transfer-encoding" | "connection"
                )
            {
                return Err(format!(
                    "upstream `{name}`: `auth.header` `{header}` is not a header Warden can set"
                ));
            }
            UpstreamAuth::Header {
                header: header.to_ascii_lowercase(),
                per_user,
            }
        }
        RawUpstreamAuth::Oauth {
            token_url,
            client_id,
            scope,
        } => {
            if !(token_url.starts_with("https://") || token_url.starts_with("http://")) {
                return Err(format!(
                    "upstream `{name}`: `auth.token_url` must be an http(s) URL"
                ));
            }
            UpstreamAuth::Oauth {
                token_url,
                client_id,
                scope,
            }
        }
        RawUpstreamAuth::Env { var } => {
            if var.is_empty() || var.contains(['=', '\0']) {
                return Err(format!(
                    "upstream `{name}`: `auth.var` is not a variable name"
                ));
            }
            UpstreamAuth::Env { var }
        }
    };
    match (&auth, stdio) {
        (UpstreamAuth::Env { .. }, false) => Err(format!(
            "upstream `{name}`: `auth.type = \"env\"` applies only to `command` upstreams"
        )),
        (UpstreamAuth::Env { .. }, true) | (_, false) => Ok(auth),
        (_, true) => Err(format!(
            "upstream `{name}`: a `command` upstream takes only `auth.type = \"env\"`"
        )),
    }
}

fn base_dir(path: &Path) -> PathBuf {
    let parent = path.parent().unwrap_or(Path::new(""));
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    std::path::absolute(parent).unwrap_or_else(|_| parent.to_owned())
}

fn storage_url(url: &str, base: &Path) -> Result<String, String> {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return Err(format!(
            "`storage.url` `{url}` is not supported: use `sqlite://PATH`"
        ));
    };
    if rest.is_empty() {
        return Err("`storage.url` names no database file".into());
    }
    let (file, query) = rest
        .split_once('?')
        .map_or((rest, None), |(f, q)| (f, Some(q)));
    if file.contains(":memory:") || q_is_memory(rest) {
        return Err("`storage.url` names an in-memory database, which would lose the audit trail: use a file".into());
    }
    let file = base.join(file).display().to_string();
    Ok(match query {
        Some(q) => format!("sqlite://{file}?{q}"),
        None => format!("sqlite://{file}"),
    })
}

fn q_is_memory(url_rest: &str) -> bool {
    url_rest
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|p| p == "mode=memory"))
}

fn upstreams(
    raw: Vec<RawUpstream>,
    base: &Path,
    default_timeout: Duration,
) -> Result<Vec<UpstreamConfig>, String> {
    let mut out: Vec<UpstreamConfig> = Vec::with_capacity(raw.len());
    for u in raw {
        if out.iter().any(|o| o.name == u.name) {
            return Err(format!("upstream `{}` is defined twice", u.name));
        }
        let transport = match (u.url, u.command) {
            (Some(url), None) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!(
                        "upstream `{}`: `url` must start with http:// or https://",
                        u.name
                    ));
                }
                if !u.env.is_empty() {
                    return Err(format!(
                        "upstream `{}`: `env` applies only to `command` upstreams",
                        u.name
                    ));
                }
                Transport::Http { url }
            }
            (None, Some(command)) => {
                let mut parts = command.into_iter();
                let Some(program) = parts.next().filter(|p| !p.is_empty()) else {
                    return Err(format!("upstream `{}`: `command` is empty", u.name));
                };
                let program = if program.contains('/') {
                    base.join(program)
                } else {
                    PathBuf::from(program)
                };
                Transport::Stdio {
                    program,
                    args: parts.collect(),
                    env: u.env,
                    cwd: base.to_owned(),
                }
            }
            _ => {
                return Err(format!(
                    "upstream `{}`: set exactly one of `url` and `command`",
                    u.name
                ));
            }
        };
        let timeout = u.timeout.map_or(default_timeout, |t| t.0);
        let stdio = matches!(transport, Transport::Stdio { .. });
        let auth = u
            .auth
            .map(|a| upstream_auth(&u.name, a, stdio))
            .transpose()?;
        let labels = label(
            &format!("upstream `{}`", u.name),
            RawToolLabel {
                effect: u.effect,
                classification: u.classification,
                external: u.external,
            },
        )?;
        let tool_labels = u
            .tools
            .into_iter()
            .map(|(tool, l)| {
                Ok((
                    tool.clone(),
                    label(&format!("tool `{}.{tool}`", u.name), l)?,
                ))
            })
            .collect::<Result<_, String>>()?;
        let approval = match (u.approval.as_deref(), u.approval_timeout) {
            (None | Some("defer"), None) => ApprovalMode::Defer,
            (Some("wait"), t) => {
                let t = t.map_or(Duration::from_secs(300), |t| t.0);
                if t.is_zero() || t > Duration::from_secs(3600) {
                    return Err(format!(
                        "upstream `{}`: `approval_timeout` must be above zero and at most 1h",
                        u.name
                    ));
                }
                ApprovalMode::Wait(t)
            }
            (Some("defer"), Some(_)) => {
                return Err(format!(
                    "upstream `{}`: `approval_timeout` applies only to `approval = \"wait\"`",
                    u.name
                ));
            }
            (other, _) => {
                return Err(format!(
                    "upstream `{}`: `approval` `{}`: expected `wait` or `defer`",
                    u.name,
                    other.unwrap_or("")
                ));
            }
        };
        out.push(UpstreamConfig {
            name: u.name,
            transport,
            timeout,
            auth,
            labels,
            tool_labels,
            approval,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
