//! The generated half of the Cedar schema: one action per upstream tool.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use warden_core::UpstreamName;
use warden_mcp::ToolCatalog;

use crate::args::ArgType;

/// The action group every tool action belongs to.
pub const ACTION_CALL_TOOL: &str = "call_tool";
/// The action for `resources/read` (and listing resources).
pub const ACTION_READ_RESOURCE: &str = "read_resource";
/// The action for `prompts/get` (and listing prompts).
pub const ACTION_GET_PROMPT: &str = "get_prompt";
/// The action of reaching an upstream at all, decided before anything at it.
pub const ACTION_CONNECT: &str = "connect";

/// Every upstream's tool catalog.
pub type Catalogs = BTreeMap<UpstreamName, ToolCatalog>;

/// The action id of a tool: `upstream/tool`.
pub fn tool_action(upstream: &str, tool: &str) -> String {
    // Built on every decision: no formatting machinery.
    let mut id = String::with_capacity(upstream.len() + 1 + tool.len());
    id.push_str(upstream);
    id.push('/');
    id.push_str(tool);
    id
}

/// The JSON schema fragment declaring one action per tool, with the tool's
/// argument types, and the typed `args` of each action.
pub(crate) fn tool_fragment(catalogs: &Catalogs) -> (Value, BTreeMap<String, ArgType>) {
    let mut actions = Map::new();
    let mut arg_types = BTreeMap::new();
    for (upstream, catalog) in catalogs {
        for tool in &catalog.tools {
            let action = tool_action(upstream.as_str(), &tool.name);
            let args = ArgType::from_input_schema(&tool.input_schema);
            actions.insert(
                action.clone(),
                json!({
                    "memberOf": [{ "id": ACTION_CALL_TOOL }],
                    "appliesTo": {
                        "principalTypes": ["Agent", "User"],
                        "resourceTypes": ["Tool"],
                        "context": {
                            "type": "Record",
                            "attributes": {
                                "args": args.to_schema_json(),
                                "user": { "type": "Entity", "name": "User", "required": false },
                                "now": { "type": "Now" },
                                "source_ip": { "type": "Extension", "name": "ipaddr" },
                                "mtls": { "type": "Boolean" },
                                "session": { "type": "SessionInfo" },
                                "risk": { "type": "RiskInfo" },
                                "task": { "type": "TaskInfo", "required": false }
                            }
                        }
                    }
                }),
            );
            arg_types.insert(action, args);
        }
    }
    (
        json!({ "Warden": { "entityTypes": {}, "actions": actions } }),
        arg_types,
    )
}
