//! What one audit record says.

use serde::{Deserialize, Serialize};
use warden_core::Decision;

/// What the record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A request through the gateway: written, durably, before forwarding.
    Request,
    /// What the upstream did with a forwarded request (same `request_id`).
    Outcome,
    /// A change made by an operator (agent created, suspended, ...).
    Admin,
}

/// One audit record. Fields that do not apply are absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Kind of record.
    pub kind: RecordKind,
    /// The request (or operation) id.
    pub request_id: String,
    /// When, in RFC 3339 UTC.
    pub time: String,
    /// The tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The agent, once authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The human the agent acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The peer address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The HTTP route or the admin operation.
    pub endpoint: String,
    /// The JSON-RPC method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The Cedar action, e.g. `crm/get_customer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The Cedar resource, e.g. `Warden::Tool::"crm/get_customer"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// SHA-256 (hex) of the canonical JSON of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_digest: Option<String>,
    /// The arguments redacted ([`crate::redact_args`]): their shape, numbers
    /// and booleans; every string replaced by its length; fields a policy
    /// names in `@redact` hidden whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    /// The task the request ran under (its id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The agent's risk when the request was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    /// The decision and its reasons.
    pub decision: Decision,
    /// HTTP status returned to the agent (for a request record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The error returned to the agent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For outcome records: what happened upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The approval that held, or let through, this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// The humans whose approval let this request run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviewers: Vec<String>,
    /// Where a candidate policy version, evaluated in shadow mode, would
    /// have decided otherwise (never enforced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowDecision>,
}

/// An agent's risk as a decision saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Risk {
    /// 0 (none) to 100.
    pub score: i64,
    /// `low`, `medium` or `high`.
    pub level: String,
    /// What raised it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// A shadow policy version's different decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowDecision {
    /// The candidate's version.
    pub version: String,
    /// What it decided.
    pub decision: Decision,
}

/// What the upstream did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// `ok`, `error` (a JSON-RPC error or `isError` result), `unavailable`,
    /// `timeout` or `invalid_response`.
    pub result: String,
    /// Milliseconds from forwarding to answer.
    pub latency_ms: u64,
    /// The upstream's error, trimmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditRecord {
    /// A request record at `endpoint` from `source`, not yet decided
    /// (its decision says so until the request is authorized).
    pub fn request(time: String, endpoint: String, source: Option<String>) -> Self {
        Self {
            kind: RecordKind::Request,
            request_id: warden_core::RequestId::new().to_string(),
            time,
            tenant: None,
            agent: None,
            user: None,
            source,
            endpoint,
            method: None,
            upstream: None,
            action: None,
            resource: None,
            args_digest: None,
            args: None,
            task: None,
            risk: None,
            decision: Decision::deny("not authorized yet"),
            status: None,
            error: None,
            outcome: None,
            approval: None,
            reviewers: Vec::new(),
            shadow: None,
        }
    }

    /// A record of an operator's change: `operator` did `operation` (e.g.
    /// `agent.suspend`) to `agent` of `tenant`, at `time` (RFC 3339).
    pub fn admin(
        time: String,
        tenant: &str,
        operator: &str,
        source: Option<String>,
        agent: &str,
        operation: &str,
    ) -> Self {
        Self {
            kind: RecordKind::Admin,
            request_id: warden_core::RequestId::new().to_string(),
            time,
            tenant: Some(tenant.to_owned()),
            agent: Some(agent.to_owned()),
            user: Some(operator.to_owned()),
            source,
            endpoint: "admin".into(),
            method: Some(operation.to_owned()),
            upstream: None,
            action: None,
            resource: None,
            args_digest: None,
            args: None,
            task: None,
            risk: None,
            decision: Decision::allow(Vec::new(), vec![format!("operator `{operator}`")]),
            status: None,
            error: None,
            outcome: None,
            approval: None,
            reviewers: Vec::new(),
            shadow: None,
        }
    }
}
