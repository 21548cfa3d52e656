//! JSON-RPC 2.0 messages as MCP uses them.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A request id: a string or an integer (MCP forbids `null`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    /// An integer id.
    Number(i64),
    /// A string id.
    String(String),
}

/// The standard JSON-RPC error codes and Warden's own (-32000 to -32099 are
/// reserved for the implementation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// -32700: the body is not JSON.
    ParseError,
    /// -32600: JSON, but not a valid request.
    InvalidRequest,
    /// -32601: the method is unknown or not offered.
    MethodNotFound,
    /// -32602: the params are malformed.
    InvalidParams,
    /// -32603: Warden failed.
    InternalError,
    /// -32001: policy or authentication refused the request.
    AccessDenied,
    /// -32002: the resource does not exist (MCP's code).
    ResourceNotFound,
    /// -32010: the upstream could not be reached or answered badly.
    UpstreamUnavailable,
    /// -32011: the upstream did not answer in time.
    UpstreamTimeout,
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> i64 {
        match self {
            Self::ParseError => -32700,
            Self::InvalidRequest => -32600,
            Self::MethodNotFound => -32601,
            Self::InvalidParams => -32602,
            Self::InternalError => -32603,
            Self::AccessDenied => -32001,
            Self::ResourceNotFound => -32002,
            Self::UpstreamUnavailable => -32010,
            Self::UpstreamTimeout => -32011,
        }
    }
}

/// A message an agent sent.
#[derive(Debug, Clone)]
pub enum Message {
    /// A request: an answer is owed.
    Request {
        /// Its id.
        id: Id,
        /// The method.
        method: String,
        /// The params, untouched.
        params: Option<Box<RawValue>>,
    },
    /// A notification: no answer.
    Notification {
        /// The method.
        method: String,
        /// The params, untouched.
        params: Option<Box<RawValue>>,
    },
    /// A response to a request the server sent (Warden sends none, so it is
    /// acknowledged and dropped).
    Response {
        /// Its id.
        id: Id,
    },
}

impl Message {
    /// The request id, when there is one.
    pub fn id(&self) -> Option<&Id> {
        match self {
            Self::Request { id, .. } | Self::Response { id } => Some(id),
            Self::Notification { .. } => None,
        }
    }
}

/// Why a message was refused, with the JSON-RPC code to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// -32700 or -32600.
    pub code: ErrorCode,
    /// Safe to show to the agent.
    pub message: String,
    /// The id, when it could be read.
    pub id: Option<Id>,
}

/// A field that is present (even as `null`) or absent.
#[derive(Default)]
struct Present<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Present<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|raw| Present(Some(raw)))
    }
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(default, borrow)]
    jsonrpc: Present<'a>,
    #[serde(default, borrow)]
    id: Present<'a>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<Box<RawValue>>,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

/// Longest method name accepted.
const MAX_METHOD_LEN: usize = 256;

/// Parses one JSON-RPC message from an agent. Batches are refused: MCP
/// 2025-06-18 removed them and no official SDK sends them.
pub fn parse_message(body: &[u8]) -> Result<Message, ParseError> {
    let invalid = |message: &str, id: Option<Id>| ParseError {
        code: ErrorCode::InvalidRequest,
        message: message.to_owned(),
        id,
    };
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        // Reject before parsing: a huge batch is never worth the work.
        return Err(invalid("batch requests are not supported", None));
    }
    let wire: Wire<'_> = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            invalid(
                "invalid JSON-RPC message: expected an object with `jsonrpc`, `method` and `id`",
                None,
            )
        } else {
            ParseError {
                code: ErrorCode::ParseError,
                message: format!("parse error: {e}"),
                id: None,
            }
        }
    })?;
    let id = match wire.id.0 {
        None => None,
        Some(raw) => match serde_json::from_str::<Id>(raw.get()) {
            Ok(id) => Some(id),
            Err(_) => {
                return Err(invalid(
                    "invalid JSON-RPC message: `id` must be a string or an integer",
                    None,
                ));
            }
        },
    };
    if wire.jsonrpc.0.map(RawValue::get) != Some("\"2.0\"") {
        return Err(invalid(
            "invalid JSON-RPC message: `jsonrpc` must be \"2.0\"",
            id,
        ));
    }
    match (wire.method, id) {
        (Some(method), id) if method.is_empty() || method.len() > MAX_METHOD_LEN => {
            Err(invalid("invalid JSON-RPC message: bad `method`", id))
        }
        (Some(_), _) if wire.result.is_some() || wire.error.is_some() => Err(invalid(
            "invalid JSON-RPC message: a request cannot carry `result` or `error`",
            None,
        )),
        (Some(method), Some(id)) => Ok(Message::Request {
            id,
            method,
            params: wire.params,
        }),
        (Some(method), None) => Ok(Message::Notification {
            method,
            params: wire.params,
        }),
        (None, Some(id)) if wire.result.is_some() != wire.error.is_some() => {
            Ok(Message::Response { id })
        }
        (None, id) => Err(invalid("invalid JSON-RPC message: missing `method`", id)),
    }
}

/// A success response carrying `result` as raw JSON.
pub fn success_response(id: &Id, result: &RawValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(result.get().len() + 48);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    write_id(&mut out, id);
    out.extend_from_slice(b",\"result\":");
    out.extend_from_slice(result.get().as_bytes());
    out.push(b'}');
    out
}

/// An error response. `id` is `null` when the request's id is unknown.
pub fn error_response(
    id: Option<&Id>,
    code: ErrorCode,
    message: &str,
    data: Option<&serde_json::Value>,
) -> Vec<u8> {
    let mut error = serde_json::json!({ "code": code.code(), "message": message });
    if let (Some(data), Some(obj)) = (data, error.as_object_mut()) {
        obj.insert("data".into(), data.clone());
    }
    let body = serde_json::json!({ "jsonrpc": "2.0", "id": id, "error": error });
    serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32603,\"message\":\"internal error\"}}".to_vec())
}

fn write_id(out: &mut Vec<u8>, id: &Id) {
    match id {
        Id::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Id::String(s) => {
            let quoted = serde_json::to_string(s).unwrap_or_else(|_| "null".into());
            out.extend_from_slice(quoted.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> ParseError {
        parse_message(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn requests_and_notifications() {
        let m = parse_message(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"cursor":"x"}}"#,
        )
        .unwrap();
        match m {
            Message::Request { id, method, params } => {
                assert_eq!(id, Id::Number(7));
                assert_eq!(method, "tools/list");
                assert_eq!(params.unwrap().get(), r#"{"cursor":"x"}"#);
            }
            other => panic!("{other:?}"),
        }
        let m =
            parse_message(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(m, Message::Notification { .. }));
        let m = parse_message(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert!(matches!(m, Message::Response { id: Id::String(_) }));
    }

    #[test]
    fn hostile_input_gets_the_right_code() {
        assert_eq!(err("").code, ErrorCode::ParseError);
        assert_eq!(err("{").code, ErrorCode::ParseError);
        assert_eq!(err("\u{0}").code, ErrorCode::ParseError);
        assert_eq!(err("nope").code, ErrorCode::ParseError);
        assert_eq!(err("[]").code, ErrorCode::InvalidRequest);
        assert_eq!(
            err("[{\"jsonrpc\":\"2.0\"}]").code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(err("{}").code, ErrorCode::InvalidRequest);
        assert_eq!(
            err(r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#).code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            err(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#).code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            err(r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#).code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            err(r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#).code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            err(r#"{"jsonrpc":"2.0","id":1,"method":7}"#).code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            err(r#"{"jsonrpc":"2.0","id":1,"method":""}"#).code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            err(r#"{"jsonrpc":"2.0","id":1}"#).code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            err(r#"{"jsonrpc":"2.0","id":1,"method":"x","result":1}"#).code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(err("\"just a string\"").code, ErrorCode::InvalidRequest);
        let long = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"{}"}}"#,
            "m".repeat(300)
        );
        assert_eq!(err(&long).code, ErrorCode::InvalidRequest);
        // Deep nesting is skipped over as raw params; reading it hits
        // serde_json's recursion limit instead of the stack.
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{{"a":{}{}}}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let Ok(Message::Request { params, method, .. }) = parse_message(deep.as_bytes()) else {
            panic!()
        };
        assert!(crate::classify(&method, params.as_deref()).is_err());
    }

    #[test]
    fn the_id_survives_a_bad_request() {
        let e = err(r#"{"jsonrpc":"1.0","id":"abc","method":"x"}"#);
        assert_eq!(e.id, Some(Id::String("abc".into())));
    }

    #[test]
    fn responses_are_well_formed_json() {
        let raw = RawValue::from_string("{\"ok\":true}".into()).unwrap();
        let ok = success_response(&Id::String("q\"x".into()), &raw);
        let v: serde_json::Value = serde_json::from_slice(&ok).unwrap();
        assert_eq!(v["id"], "q\"x");
        assert_eq!(v["result"]["ok"], true);
        let e = error_response(
            None,
            ErrorCode::ParseError,
            "parse error",
            Some(&serde_json::json!({"a": 1})),
        );
        let v: serde_json::Value = serde_json::from_slice(&e).unwrap();
        assert_eq!(v["id"], serde_json::Value::Null);
        assert_eq!(v["error"]["code"], -32700);
        assert_eq!(v["error"]["data"]["a"], 1);
    }
}
