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

pub use raw::{RawAdmin, RawConfig, RawGateway, RawIdentity, RawPolicy, RawStorage, RawUpstream};

/// Tokens live at most this long, whatever the config says.
pub const TOKEN_TTL_CEILING: Duration = Duration::from_secs(24 * 3600);

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
    /// The upstream tool servers, in file order.
    pub upstreams: Vec<UpstreamConfig>,
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
}

/// `[admin]`.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Listen address.
    pub listen: SocketAddr,
}

/// `[policy]`.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Folder with `*.cedar` policies and `*.cedarschema` schema files.
    pub dir: PathBuf,
    /// How often the folder is checked for changes.
    pub reload_interval: Duration,
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
        let upstreams =
            upstreams(raw.upstreams, &base, gateway.upstream_timeout.0).map_err(invalid)?;
        Ok(Self {
            path: path.to_owned(),
            gateway: GatewayConfig {
                listen: gateway.listen,
                max_body_bytes: gateway.max_body_bytes,
                upstream_timeout: gateway.upstream_timeout.0,
                max_response_bytes: gateway.max_response_bytes,
            },
            admin: AdminConfig {
                listen: raw.admin.listen,
            },
            storage_url: storage_url(&raw.storage.url, &base).map_err(invalid)?,
            policy: PolicyConfig {
                dir: base.join(raw.policy.dir),
                reload_interval: raw.policy.reload_interval.0,
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
            },
            upstreams,
        })
    }

    /// The upstream called `name`.
    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|u| u.name.as_str() == name)
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
        out.push(UpstreamConfig {
            name: u.name,
            transport,
            timeout,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
