//! Cedar policies for Warden.
//!
//! [`PolicyEngine::build`] turns a policy folder ([`PolicySources`]) and the
//! upstreams' tool catalogs into a validated engine: the folder's Cedar schema
//! plus one generated action per tool (`Warden::Action::"crm/get_customer"`,
//! member of `Warden::Action::"call_tool"`, with `context.args` typed from the
//! tool's input schema). [`PolicyEngine::authorize`] returns a
//! [`warden_core::Decision`], never an error: default deny, and any
//! evaluation error denies.

mod args;
mod cases;
mod engine;
mod labels;
mod schema;
mod source;

pub use args::ArgType;
pub use cases::{CASE_TIME, CaseResult, CaseTarget, DecisionCase, parse_cases, run_cases};
pub use labels::{Classification, LabelOverride, Labels, ToolEffect, ToolLabel};

/// Warden's Cedar schema, as `warden init` writes it to `policies/warden.cedarschema`.
pub const BASE_SCHEMA: &str = include_str!("warden.cedarschema");
pub use engine::{
    AgentInfo, PolicyEngine, Request, RequestContext, SessionState, Target, TaskGrant,
};
pub use schema::{
    ACTION_CALL_TOOL, ACTION_CONNECT, ACTION_GET_PROMPT, ACTION_READ_RESOURCE, Catalogs,
    tool_action,
};
pub use source::{Diagnostic, PolicySources, SourceFile};
