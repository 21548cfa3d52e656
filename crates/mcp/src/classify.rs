//! What an MCP request asks for, read from its method and params.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::jsonrpc::{ErrorCode, ParseError};

/// The operation an agent's request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// `initialize`: answered by Warden itself.
    Initialize {
        /// The version the client asked for.
        protocol_version: Option<String>,
    },
    /// `ping`: answered by Warden itself.
    Ping,
    /// `tools/list`.
    ListTools,
    /// `tools/call`.
    CallTool(CallTool),
    /// `resources/list`.
    ListResources,
    /// `resources/templates/list`.
    ListResourceTemplates,
    /// `resources/read`.
    ReadResource {
        /// The resource URI.
        uri: String,
    },
    /// `prompts/list`.
    ListPrompts,
    /// `prompts/get`.
    GetPrompt {
        /// The prompt name.
        name: String,
        /// The prompt arguments.
        arguments: Map<String, Value>,
    },
    /// Any other method: Warden does not forward what it cannot classify.
    Unsupported {
        /// The method.
        method: String,
    },
}

/// A parsed `tools/call`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CallTool {
    /// The tool name as the agent wrote it.
    pub name: String,
    /// The arguments (an empty object when absent).
    #[serde(default)]
    pub arguments: Map<String, Value>,
    /// `_meta` (progress token and the like), forwarded as is.
    #[serde(default, rename = "_meta", skip_serializing_if = "Option::is_none")]
    pub meta: Option<Map<String, Value>>,
}

impl CallTool {
    /// The params to forward under `name`: exactly what Warden authorized,
    /// re-serialized so that duplicate keys or other parser differentials
    /// cannot smuggle different arguments past the check.
    pub fn forward_params(&self, name: &str) -> Value {
        let mut params = Map::new();
        params.insert("name".into(), Value::String(name.to_owned()));
        params.insert("arguments".into(), Value::Object(self.arguments.clone()));
        if let Some(meta) = &self.meta {
            params.insert("_meta".into(), Value::Object(meta.clone()));
        }
        Value::Object(params)
    }
}

#[derive(Deserialize)]
struct InitializeParams {
    #[serde(rename = "protocolVersion")]
    protocol_version: Option<String>,
}

#[derive(Deserialize)]
struct ReadResourceParams {
    uri: String,
}

#[derive(Deserialize)]
struct GetPromptParams {
    name: String,
    #[serde(default)]
    arguments: Map<String, Value>,
}

/// Longest tool or prompt name accepted.
const MAX_NAME_LEN: usize = 256;
/// Longest resource URI accepted.
const MAX_URI_LEN: usize = 4096;

/// Classifies a request by `method` and `params`.
pub fn classify(method: &str, params: Option<&RawValue>) -> Result<Operation, ParseError> {
    Ok(match method {
        "initialize" => {
            let p: InitializeParams = parse(method, params)?;
            Operation::Initialize {
                protocol_version: p.protocol_version,
            }
        }
        "ping" => Operation::Ping,
        "tools/list" => Operation::ListTools,
        "tools/call" => {
            let call: CallTool = parse(method, params)?;
            check_name(&call.name, "tool name")?;
            Operation::CallTool(call)
        }
        "resources/list" => Operation::ListResources,
        "resources/templates/list" => Operation::ListResourceTemplates,
        "resources/read" => {
            let p: ReadResourceParams = parse(method, params)?;
            if p.uri.is_empty() || p.uri.len() > MAX_URI_LEN || p.uri.chars().any(char::is_control)
            {
                return Err(invalid_params("invalid resource `uri`"));
            }
            Operation::ReadResource { uri: p.uri }
        }
        "prompts/list" => Operation::ListPrompts,
        "prompts/get" => {
            let p: GetPromptParams = parse(method, params)?;
            check_name(&p.name, "prompt name")?;
            Operation::GetPrompt {
                name: p.name,
                arguments: p.arguments,
            }
        }
        other => Operation::Unsupported {
            method: other.to_owned(),
        },
    })
}

/// Splits a federated name `upstream.tool` at the first dot. Upstream names
/// hold no dots, so the split is unambiguous.
pub fn split_federated(name: &str) -> Option<(&str, &str)> {
    name.split_once('.')
        .filter(|(u, t)| !u.is_empty() && !t.is_empty())
}

fn parse<'a, T: Deserialize<'a>>(
    method: &str,
    params: Option<&'a RawValue>,
) -> Result<T, ParseError> {
    let raw = params.map_or("{}", RawValue::get);
    serde_json::from_str(raw)
        .map_err(|e| invalid_params(&format!("invalid params for `{method}`: {e}")))
}

fn check_name(name: &str, what: &str) -> Result<(), ParseError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(invalid_params(&format!("invalid {what}")));
    }
    Ok(())
}

fn invalid_params(message: &str) -> ParseError {
    ParseError {
        code: ErrorCode::InvalidParams,
        message: message.to_owned(),
        id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn tool_calls_are_parsed_and_canonicalised() {
        let p = raw(
            r#"{"name":"get_customer","arguments":{"id":"c-1","id":"c-2"},"_meta":{"progressToken":1}}"#,
        );
        let Operation::CallTool(call) = classify("tools/call", Some(&p)).unwrap() else {
            panic!()
        };
        assert_eq!(call.name, "get_customer");
        // The last duplicate wins here, and exactly that value is forwarded.
        assert_eq!(call.arguments["id"], "c-2");
        let fwd = call.forward_params("crm_get");
        assert_eq!(fwd["name"], "crm_get");
        assert_eq!(fwd["arguments"], serde_json::json!({"id": "c-2"}));
        assert_eq!(fwd["_meta"]["progressToken"], 1);
    }

    #[test]
    fn bad_params_are_invalid_params() {
        for (method, params) in [
            ("tools/call", r#"{}"#),
            ("tools/call", r#"{"name":""}"#),
            ("tools/call", r#"{"name":"x","arguments":[1]}"#),
            ("tools/call", r#"{"name":"x","name":"y"}"#),
            ("tools/call", r#"[1,2]"#),
            ("resources/read", r#"{"uri":""}"#),
            ("resources/read", r#"{"uri":"a\u0000b"}"#),
            ("prompts/get", r#"{"name":7}"#),
        ] {
            let err = classify(method, Some(&raw(params))).expect_err(params);
            assert_eq!(err.code, ErrorCode::InvalidParams, "{params}");
        }
        assert!(classify("tools/call", None).is_err());
    }

    #[test]
    fn other_methods_are_unsupported() {
        assert_eq!(
            classify("sampling/createMessage", None).unwrap(),
            Operation::Unsupported {
                method: "sampling/createMessage".into()
            }
        );
        assert_eq!(classify("tools/list", None).unwrap(), Operation::ListTools);
    }

    #[test]
    fn federated_names_split_at_the_first_dot() {
        assert_eq!(
            split_federated("crm.get_customer"),
            Some(("crm", "get_customer"))
        );
        assert_eq!(
            split_federated("docs.v2.search"),
            Some(("docs", "v2.search"))
        );
        assert_eq!(split_federated("nodot"), None);
        assert_eq!(split_federated(".x"), None);
        assert_eq!(split_federated("x."), None);
    }
}
