//! Warden as an MCP client of its upstreams: Streamable HTTP or a supervised
//! stdio process. Warden keeps one MCP session per upstream, initialises it
//! lazily, re-initialises it when the upstream forgets it, and gives every
//! request its own id.

mod credentials;
mod http;
mod stdio;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use warden_config::{Transport, UpstreamAuth, UpstreamConfig};
use warden_core::{TenantId, UpstreamName, UserName};

pub use credentials::Credentials;
use warden_mcp::ToolCatalog;
use warden_mcp::catalog::parse_tools_page;

/// The protocol version Warden asks its upstreams for.
pub(crate) const UPSTREAM_PROTOCOL: &str = "2025-11-25";
/// Pages of a list Warden follows at most.
const MAX_PAGES: usize = 100;

/// A JSON-RPC error object an upstream returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    /// The code.
    pub code: i64,
    /// The message.
    pub message: String,
    /// Extra data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// Why a call to an upstream failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The upstream answered with a JSON-RPC error.
    #[error("upstream error {}: {}", .0.code, .0.message)]
    Rpc(RpcError),
    /// It could not be reached, or its process is down.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// It did not answer in time.
    #[error("timed out")]
    Timeout,
    /// It answered something that is not a JSON-RPC response.
    #[error("invalid response: {0}")]
    Invalid(String),
    /// It forgot Warden's session (HTTP 404): initialise again.
    #[error("session expired")]
    SessionExpired,
}

impl CallError {
    /// The short outcome name for audit records.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Rpc(_) => "error",
            Self::Unavailable(_) | Self::SessionExpired => "unavailable",
            Self::Timeout => "timeout",
            Self::Invalid(_) => "invalid_response",
        }
    }
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<RpcError>,
    #[serde(default)]
    method: Option<String>,
}

/// A parsed message from an upstream.
pub(crate) enum Incoming {
    /// The response to request `id`.
    Response(u64, Result<Box<RawValue>, CallError>),
    /// A request from the upstream (`id`, method): Warden answers "not supported".
    Request(Value, String),
    /// Anything else (notifications, foreign ids).
    Other,
}

/// Reads one message an upstream sent.
pub(crate) fn parse_incoming(bytes: &[u8]) -> Result<Incoming, CallError> {
    let wire: WireResponse = serde_json::from_slice(bytes)
        .map_err(|e| CallError::Invalid(format!("not a JSON-RPC message: {e}")))?;
    match (wire.id, wire.method) {
        (Some(id), Some(method)) => Ok(Incoming::Request(id, method)),
        (Some(Value::Number(n)), None) => {
            let Some(id) = n.as_u64() else {
                return Ok(Incoming::Other);
            };
            let outcome = match (wire.result, wire.error) {
                (Some(result), None) => Ok(result),
                (None, Some(error)) => Err(CallError::Rpc(error)),
                _ => Err(CallError::Invalid(
                    "a response needs exactly one of `result` and `error`".into(),
                )),
            };
            Ok(Incoming::Response(id, outcome))
        }
        _ => Ok(Incoming::Other),
    }
}

/// The `notifications/initialized` message.
pub(crate) fn initialized_notification() -> Vec<u8> {
    br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec()
}

/// An `initialize` request with `id`.
pub(crate) fn initialize_request(id: u64) -> Vec<u8> {
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": UPSTREAM_PROTOCOL,
            "capabilities": {},
            "clientInfo": { "name": "warden", "version": env!("CARGO_PKG_VERSION") }
        }
    });
    body.to_string().into_bytes()
}

/// A request with `id`, `method` and `params`.
pub(crate) fn request_body(id: u64, method: &str, params: Option<&Value>) -> Vec<u8> {
    /// Written straight from borrowed parts (no map built, no copy of the
    /// arguments): it is on every call's path.
    #[derive(Serialize)]
    struct Request<'a> {
        jsonrpc: &'static str,
        id: u64,
        method: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        params: Option<&'a Value>,
    }
    // Cannot fail: every key is a string.
    serde_json::to_vec(&Request {
        jsonrpc: "2.0",
        id,
        method,
        params,
    })
    .unwrap_or_default()
}

/// The negotiated version in an `initialize` result.
pub(crate) fn negotiated_version(result: &RawValue) -> String {
    #[derive(Deserialize)]
    struct Init {
        #[serde(rename = "protocolVersion")]
        protocol_version: Option<String>,
    }
    serde_json::from_str::<Init>(result.get())
        .ok()
        .and_then(|i| i.protocol_version)
        .unwrap_or_else(|| UPSTREAM_PROTOCOL.to_owned())
}

enum Conn {
    Http(http::HttpConn),
    Stdio(stdio::StdioConn),
}

/// One upstream.
pub struct Upstream {
    name: UpstreamName,
    conn: Conn,
    timeout: Duration,
    next_id: AtomicU64,
    auth: Option<(UpstreamAuth, Arc<Credentials>)>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// An upstream from its config; nothing is started until the first call.
    /// `credentials` open the secret of an upstream with `auth` configured.
    pub fn new(
        config: &UpstreamConfig,
        max_response_bytes: usize,
        credentials: Option<Arc<Credentials>>,
    ) -> Result<Self, String> {
        crate::install_crypto_provider();
        let conn = match &config.transport {
            Transport::Http { url } => Conn::Http(http::HttpConn::new(url, max_response_bytes)?),
            Transport::Stdio {
                program,
                args,
                env,
                cwd,
            } => Conn::Stdio(stdio::StdioConn::new(
                config.name.clone(),
                program.clone(),
                args.clone(),
                env.clone(),
                cwd.clone(),
                max_response_bytes,
            )),
        };
        let auth = match (&config.auth, credentials) {
            (None, _) => None,
            (Some(auth), Some(c)) => Some((auth.clone(), c)),
            (Some(_), None) => {
                return Err(format!(
                    "upstream `{}` has a credential but no secrets store",
                    config.name
                ));
            }
        };
        Ok(Self {
            name: config.name.clone(),
            conn,
            timeout: config.timeout,
            next_id: AtomicU64::new(1),
            auth,
        })
    }

    /// The upstream's name.
    pub fn name(&self) -> &UpstreamName {
        &self.name
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `method` with `params` and returns the result, within the
    /// timeout, with the upstream's own credential.
    pub async fn call(
        &self,
        method: &str,
        params: Option<&Value>,
    ) -> Result<Box<RawValue>, CallError> {
        self.call_as(method, params, None, None).await
    }

    /// As [`call`](Self::call), for `tenant` and `user`: with the tenant's
    /// credential, or the user's own when the upstream takes per-user
    /// secrets and one is stored.
    pub async fn call_as(
        &self,
        method: &str,
        params: Option<&Value>,
        tenant: Option<&TenantId>,
        user: Option<&UserName>,
    ) -> Result<Box<RawValue>, CallError> {
        let work = async {
            let (header, env) = match &self.auth {
                None => (None, None),
                Some((auth, creds)) => (
                    creds.header(&self.name, auth, tenant, user).await?,
                    creds.env(&self.name, auth).await?,
                ),
            };
            self.call_once_or_reinit(method, params, header.as_ref(), env.as_ref())
                .await
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout),
        }
    }

    async fn call_once_or_reinit(
        &self,
        method: &str,
        params: Option<&Value>,
        header: Option<&http::Credential>,
        env: Option<&(String, warden_vault::Secret)>,
    ) -> Result<Box<RawValue>, CallError> {
        for _ in 0..2 {
            let result = match &self.conn {
                Conn::Http(c) => c.call(|| self.id(), method, params, header).await,
                Conn::Stdio(c) => c.call(|| self.id(), method, params, env).await,
            };
            match result {
                Err(CallError::SessionExpired) => {
                    tracing::info!(upstream = %self.name, "upstream session expired, initialising again");
                    continue;
                }
                other => return other,
            }
        }
        Err(CallError::Unavailable(
            "the upstream keeps dropping its session".into(),
        ))
    }

    /// Every tool, following `nextCursor`.
    pub async fn list_tools(&self) -> Result<ToolCatalog, CallError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = cursor.as_ref().map(|c| json!({ "cursor": c }));
            let result = self.call("tools/list", params.as_ref()).await?;
            let (page, next) =
                parse_tools_page(&result).map_err(|e| CallError::Invalid(e.to_string()))?;
            tools.extend(page);
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(ToolCatalog { tools }),
            }
        }
        Err(CallError::Invalid(format!(
            "more than {MAX_PAGES} pages of tools"
        )))
    }

    /// Every item of a list method (`resources/list`, ...) under `key`.
    pub async fn list_all(&self, method: &str, key: &str) -> Result<Vec<Value>, CallError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = cursor.as_ref().map(|c| json!({ "cursor": c }));
            let result = self.call(method, params.as_ref()).await?;
            let mut page: serde_json::Map<String, Value> = serde_json::from_str(result.get())
                .map_err(|e| CallError::Invalid(format!("{method} result: {e}")))?;
            match page.remove(key) {
                Some(Value::Array(list)) => items.extend(list),
                _ => {
                    return Err(CallError::Invalid(format!(
                        "{method} result has no `{key}` list"
                    )));
                }
            }
            match page.remove("nextCursor") {
                Some(Value::String(next)) if !next.is_empty() => cursor = Some(next),
                _ => return Ok(items),
            }
        }
        Err(CallError::Invalid(format!(
            "more than {MAX_PAGES} pages of {key}"
        )))
    }

    /// Stops a stdio process, if any.
    pub async fn shutdown(&self) {
        if let Conn::Stdio(c) = &self.conn {
            c.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_messages_are_classified() {
        let r = parse_incoming(br#"{"jsonrpc":"2.0","id":3,"result":{"ok":1}}"#).unwrap();
        assert!(matches!(r, Incoming::Response(3, Ok(_))));
        let r =
            parse_incoming(br#"{"jsonrpc":"2.0","id":4,"error":{"code":-32602,"message":"bad"}}"#)
                .unwrap();
        assert!(matches!(
            r,
            Incoming::Response(4, Err(CallError::Rpc(RpcError { code: -32602, .. })))
        ));
        let r = parse_incoming(br#"{"jsonrpc":"2.0","id":5}"#).unwrap();
        assert!(matches!(
            r,
            Incoming::Response(5, Err(CallError::Invalid(_)))
        ));
        let r = parse_incoming(br#"{"jsonrpc":"2.0","id":"x","method":"roots/list"}"#).unwrap();
        assert!(matches!(r, Incoming::Request(_, _)));
        let r = parse_incoming(br#"{"jsonrpc":"2.0","method":"notifications/progress"}"#).unwrap();
        assert!(matches!(r, Incoming::Other));
        assert!(parse_incoming(b"not json").is_err());
        assert!(parse_incoming(br#"{"id":1,"error":{"code":"x"}}"#).is_err());
    }

    #[test]
    fn requests_to_upstreams_are_exact_json_rpc() {
        let params = json!({"name": "t", "arguments": {"b": [1, "\u{2028}\"x"], "a": null}});
        let body = request_body(7, "tools/call", Some(&params));
        assert_eq!(
            String::from_utf8(body.clone()).unwrap_or_default(),
            "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"t\",\"arguments\":{\"b\":[1,\"\u{2028}\\\"x\"],\"a\":null}}}"
        );
        let parsed: Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(parsed["params"], params, "the arguments pass exactly");
        assert_eq!(
            request_body(8, "ping", None),
            br#"{"jsonrpc":"2.0","id":8,"method":"ping"}"#.to_vec()
        );
    }
}
