//! Audit records as OCSF 1.3 events, for a SIEM.
//!
//! | Warden record | OCSF class |
//! |---|---|
//! | request or outcome (a call through the gateway) | API Activity (6003) |
//! | admin: a grant (`task.start`, `approval.approve`, `agent.resume`, `user.enable`, `user.groups`) | User Access Management (3005), Assign Privileges |
//! | admin: a revocation (`task.end`, `agent.suspend`, `agent.revoke`, `agent.retire`, `agent.cert.revoke`, `user.disable`, `approval.cancel`, `approval.expire`) | User Access Management (3005), Revoke Privileges |
//! | any other admin change | API Activity (6003) on the service `warden-admin` |
//!
//! Detection Finding (2004) is for detections, which records do not carry
//! yet. Every event keeps the record's seq (`metadata.uid`,
//! `metadata.sequence`, for deduplication), its request id
//! (`metadata.correlation_uid`) and, under `unmapped.warden`, what OCSF has
//! no place for: the chain hash, the determining policies and reasons, the
//! argument digest and redacted arguments, task, risk, approval, reviewers.
//! Pure: no I/O.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_core::Effect;

use crate::{AuditRecord, RecordKind};

/// The OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.3.0";

const API_ACTIVITY: u32 = 6003;
const USER_ACCESS: u32 = 3005;

/// Grants, as User Access Management "Assign Privileges".
const GRANTS: &[&str] = &[
    "task.start",
    "approval.approve",
    "agent.resume",
    "user.enable",
    "user.groups",
];
/// Revocations, as "Revoke Privileges".
const REVOCATIONS: &[&str] = &[
    "task.end",
    "agent.suspend",
    "agent.revoke",
    "agent.retire",
    "agent.cert.revoke",
    "user.disable",
    "approval.cancel",
    "approval.expire",
];

/// The OCSF event of record `seq` (whose chain hash is `hash`);
/// `product_version` is Warden's version.
pub fn to_ocsf(seq: u64, hash: &[u8; 32], r: &AuditRecord, product_version: &str) -> Value {
    let operation = r.method.as_deref().unwrap_or("");
    let (class_uid, activity_id, activity_name) = match r.kind {
        RecordKind::Admin if GRANTS.contains(&operation) => {
            (USER_ACCESS, 1, "Assign Privileges".to_owned())
        }
        RecordKind::Admin if REVOCATIONS.contains(&operation) => {
            (USER_ACCESS, 2, "Revoke Privileges".to_owned())
        }
        RecordKind::Admin => {
            let (id, name) = admin_activity(operation);
            (API_ACTIVITY, id, name.to_owned())
        }
        RecordKind::Request | RecordKind::Outcome => {
            let (id, name) = call_activity(operation);
            (API_ACTIVITY, id, name)
        }
    };
    let (category_uid, category_name, class_name) = if class_uid == USER_ACCESS {
        (3, "Identity & Access Management", "User Access Management")
    } else {
        (6, "Application Activity", "API Activity")
    };
    let allowed = r.decision.effect == Effect::Allow;
    let succeeded = match &r.outcome {
        Some(o) => o.result == "ok",
        None => allowed && r.error.is_none(),
    };
    let severity_id = match (r.kind, allowed, &r.agent) {
        (RecordKind::Request, false, None) => 3,
        (RecordKind::Request, false, Some(_)) => 2,
        _ => 1,
    };
    let mut e = Map::new();
    let mut put = |k: &str, v: Value| {
        e.insert(k.to_owned(), v);
    };
    put("category_uid", json!(category_uid));
    put("category_name", json!(category_name));
    put("class_uid", json!(class_uid));
    put("class_name", json!(class_name));
    put("activity_id", json!(activity_id));
    put("activity_name", json!(activity_name));
    put(
        "type_uid",
        json!(u64::from(class_uid) * 100 + u64::from(activity_id)),
    );
    put("type_name", json!(format!("{class_name}: {activity_name}")));
    put("time", json!(epoch_ms(&r.time)));
    put("severity_id", json!(severity_id));
    put(
        "severity",
        json!(match severity_id {
            1 => "Informational",
            2 => "Low",
            _ => "Medium",
        }),
    );
    put("status_id", json!(if succeeded { 1 } else { 2 }));
    put(
        "status",
        json!(if succeeded { "Success" } else { "Failure" }),
    );
    if let Some(detail) = r
        .error
        .clone()
        .or_else(|| r.decision.reasons.last().cloned())
    {
        put("status_detail", json!(detail));
    }
    if r.kind == RecordKind::Request {
        put("disposition_id", json!(if allowed { 1 } else { 2 }));
        put(
            "disposition",
            json!(if allowed { "Allowed" } else { "Blocked" }),
        );
    }
    if let Some(o) = &r.outcome {
        put("duration", json!(o.latency_ms));
    }
    put(
        "metadata",
        json!({
            "version": OCSF_VERSION,
            "product": { "name": "Warden", "vendor_name": "Warden", "version": product_version },
            "uid": seq.to_string(),
            "sequence": seq,
            "correlation_uid": r.request_id,
            "log_name": "warden-audit",
            "original_time": r.time,
            "tenant_uid": r.tenant,
        }),
    );
    let actor = actor(r);
    if class_uid == USER_ACCESS {
        let (name, type_id, kind) = subject(r);
        put("actor", actor);
        put(
            "user",
            json!({ "name": name, "type_id": type_id, "type": kind }),
        );
        put("privileges", json!([operation]));
    } else {
        put("actor", actor);
        let service = match r.kind {
            RecordKind::Admin => "warden-admin",
            _ => r.upstream.as_deref().unwrap_or("warden"),
        };
        let mut response = Map::new();
        if let Some(s) = r.status {
            response.insert("code".into(), json!(s));
        }
        if let Some(err) = &r.error {
            response.insert("error_message".into(), json!(err));
        }
        put(
            "api",
            json!({
                "operation": if operation.is_empty() { r.endpoint.as_str() } else { operation },
                "service": { "name": service },
                "request": { "uid": r.request_id },
                "response": response,
            }),
        );
        let resource = match (&r.action, &r.resource) {
            (Some(action), resource) => Some(json!({
                "name": action, "type": "MCP tool", "uid": resource,
            })),
            (None, Some(resource)) => Some(json!({ "name": resource, "type": "Warden object" })),
            (None, None) => None,
        };
        if let Some(res) = resource {
            put("resources", json!([res]));
        }
        put("src_endpoint", endpoint(r.source.as_deref()));
    }
    put("unmapped", json!({ "warden": warden_fields(seq, hash, r) }));
    Value::Object(e)
}

/// Milliseconds since the epoch of an RFC 3339 time (0 if unreadable).
fn epoch_ms(time: &str) -> i64 {
    OffsetDateTime::parse(time, &Rfc3339)
        .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
        .unwrap_or(0)
}

/// API Activity's activity for an admin operation.
fn admin_activity(operation: &str) -> (u32, &'static str) {
    let last = operation.rsplit('.').next().unwrap_or("");
    match last {
        "create" | "issue" | "init" | "start" | "token" | "login_link" => (1, "Create"),
        "rotate" | "set" | "rollback" | "clear" | "reviewed" | "decided" | "executed" | "deny" => {
            (3, "Update")
        }
        "delete" => (4, "Delete"),
        _ => (99, "Other"),
    }
}

/// API Activity's activity for an MCP method.
fn call_activity(method: &str) -> (u32, String) {
    match method {
        "initialize"
        | "tools/list"
        | "resources/list"
        | "resources/templates/list"
        | "resources/read"
        | "prompts/list"
        | "prompts/get"
        | "ping" => (2, "Read".to_owned()),
        "" => (99, "Other".to_owned()),
        other => (99, other.to_owned()),
    }
}

/// Who acted: the agent (or the operator of an admin change), with the
/// determining policies as authorizations.
fn actor(r: &AuditRecord) -> Value {
    let decision = if r.decision.effect == Effect::Allow {
        "Allowed"
    } else {
        "Denied"
    };
    let authorizations: Vec<Value> = if r.decision.policies.is_empty() {
        vec![json!({ "decision": decision })]
    } else {
        r.decision
            .policies
            .iter()
            .map(|p| json!({ "decision": decision, "policy": { "uid": p, "name": p } }))
            .collect()
    };
    let user = match r.kind {
        RecordKind::Admin => json!({
            "name": r.user.as_deref().unwrap_or("unknown"),
            "type_id": 2, "type": "Admin",
        }),
        _ => match &r.agent {
            Some(a) => json!({ "name": a, "uid": a, "type_id": 99, "type": "Agent" }),
            None => json!({ "name": "unauthenticated", "type_id": 0, "type": "Unknown" }),
        },
    };
    json!({ "user": user, "authorizations": authorizations })
}

/// The subject of an admin change: an agent, or `user:NAME`.
fn subject(r: &AuditRecord) -> (String, u32, &'static str) {
    if let Some(a) = &r.agent {
        return (a.clone(), 99, "Agent");
    }
    match r.resource.as_deref().and_then(|s| s.split_once(':')) {
        Some(("user", name)) => (name.to_owned(), 1, "User"),
        Some((_, name)) => (name.to_owned(), 99, "Other"),
        None => (r.resource.clone().unwrap_or_default(), 0, "Unknown"),
    }
}

/// `ip:port` (or `[v6]:port`) as an OCSF endpoint.
fn endpoint(source: Option<&str>) -> Value {
    match source.and_then(|s| s.parse::<std::net::SocketAddr>().ok()) {
        Some(addr) => json!({ "ip": addr.ip().to_string(), "port": addr.port() }),
        None => match source {
            Some(s) => json!({ "name": s }),
            None => json!({ "name": "unknown" }),
        },
    }
}

fn warden_fields(seq: u64, hash: &[u8; 32], r: &AuditRecord) -> Value {
    let mut w = Map::new();
    w.insert("seq".into(), json!(seq));
    w.insert("hash".into(), json!(hex::encode(hash)));
    w.insert("kind".into(), json!(r.kind));
    w.insert("endpoint".into(), json!(r.endpoint));
    w.insert("decision".into(), json!(r.decision));
    let optional = [
        (
            "on_behalf_of",
            r.user
                .as_ref()
                .filter(|_| r.kind != RecordKind::Admin)
                .map(|u| json!(u)),
        ),
        ("task", r.task.as_ref().map(|t| json!(t))),
        ("args_digest", r.args_digest.as_ref().map(|d| json!(d))),
        ("args", r.args.clone()),
        ("risk", r.risk.as_ref().map(|x| json!(x))),
        ("approval", r.approval.as_ref().map(|a| json!(a))),
        ("outcome", r.outcome.as_ref().map(|o| json!(o))),
        ("shadow", r.shadow.as_ref().map(|s| json!(s))),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            w.insert(k.into(), v);
        }
    }
    if !r.reviewers.is_empty() {
        w.insert("reviewers".into(), json!(r.reviewers));
    }
    Value::Object(w)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
    use warden_core::Decision;

    use super::*;
    use crate::{Outcome, Risk};

    fn call(effect: Effect) -> AuditRecord {
        let mut r = AuditRecord::request(
            "2026-11-23T10:00:00.250Z".into(),
            "/mcp".into(),
            Some("10.0.0.7:5555".into()),
        );
        r.tenant = Some("acme".into());
        r.agent = Some("support-bot".into());
        r.user = Some("alice".into());
        r.method = Some("tools/call".into());
        r.upstream = Some("crm".into());
        r.action = Some("crm/update_customer".into());
        r.resource = Some("Warden::Tool::\"crm/update_customer\"".into());
        r.args_digest = Some("ab".repeat(32));
        r.args = Some(json!({ "id": "[redacted: 3 chars]" }));
        r.risk = Some(Risk {
            score: 0,
            level: "low".into(),
            reasons: vec![],
        });
        r.status = Some(200);
        r.decision = match effect {
            Effect::Allow => Decision::allow(vec!["support".into()], vec!["support edits".into()]),
            Effect::Deny => Decision::deny("no policy permits this request"),
        };
        r
    }

    /// What every OCSF event must have, and API Activity's required
    /// attributes.
    fn assert_base(e: &Value) {
        for k in [
            "category_uid",
            "class_uid",
            "activity_id",
            "type_uid",
            "time",
            "severity_id",
            "metadata",
        ] {
            assert!(e.get(k).is_some(), "missing {k}: {e}");
        }
        assert_eq!(
            e["type_uid"].as_u64().unwrap(),
            e["class_uid"].as_u64().unwrap() * 100 + e["activity_id"].as_u64().unwrap()
        );
        assert_eq!(e["metadata"]["version"], OCSF_VERSION);
        assert_eq!(e["metadata"]["product"]["name"], "Warden");
        if e["class_uid"] == 6003 {
            for k in ["actor", "api", "src_endpoint"] {
                assert!(e.get(k).is_some(), "API Activity needs {k}: {e}");
            }
        } else {
            assert!(
                e.get("user").is_some(),
                "User Access Management needs user: {e}"
            );
        }
    }

    #[test]
    fn an_allowed_call_is_api_activity() {
        let e = to_ocsf(7, &[1; 32], &call(Effect::Allow), "0.1.0");
        assert_base(&e);
        assert_eq!(e["class_uid"], 6003);
        assert_eq!(e["activity_id"], 99);
        assert_eq!(e["activity_name"], "tools/call");
        assert_eq!(e["time"], 1_795_428_000_250_i64);
        assert_eq!(e["disposition"], "Allowed");
        assert_eq!(e["status_id"], 1);
        assert_eq!(e["actor"]["user"]["name"], "support-bot");
        assert_eq!(e["actor"]["authorizations"][0]["policy"]["uid"], "support");
        assert_eq!(e["api"]["service"]["name"], "crm");
        assert_eq!(e["resources"][0]["name"], "crm/update_customer");
        assert_eq!(e["src_endpoint"], json!({ "ip": "10.0.0.7", "port": 5555 }));
        assert_eq!(e["metadata"]["uid"], "7");
        assert_eq!(e["metadata"]["tenant_uid"], "acme");
        assert_eq!(e["unmapped"]["warden"]["on_behalf_of"], "alice");
        assert_eq!(e["unmapped"]["warden"]["hash"], hex::encode([1; 32]));
        assert_eq!(e["unmapped"]["warden"]["args"]["id"], "[redacted: 3 chars]");
    }

    #[test]
    fn a_denial_is_blocked_and_an_outcome_has_its_duration() {
        let e = to_ocsf(8, &[0; 32], &call(Effect::Deny), "0.1.0");
        assert_base(&e);
        assert_eq!(
            (e["disposition_id"].clone(), e["status_id"].clone()),
            (json!(2), json!(2))
        );
        assert_eq!(e["severity"], "Low");
        let mut anonymous = call(Effect::Deny);
        anonymous.agent = None;
        assert_eq!(to_ocsf(9, &[0; 32], &anonymous, "x")["severity"], "Medium");
        let mut o = call(Effect::Allow);
        o.kind = RecordKind::Outcome;
        o.outcome = Some(Outcome {
            result: "upstream_error".into(),
            latency_ms: 12,
            detail: None,
        });
        let e = to_ocsf(10, &[0; 32], &o, "x");
        assert_base(&e);
        assert_eq!(
            (e["duration"].clone(), e["status"].clone()),
            (json!(12), json!("Failure"))
        );
        assert!(e.get("disposition").is_none());
    }

    #[test]
    fn grants_and_revocations_are_user_access_management() {
        let grant = AuditRecord::admin(
            "2026-11-23T10:00:00Z".into(),
            "acme",
            "ops",
            None,
            "bot",
            "task.start",
        );
        let e = to_ocsf(1, &[0; 32], &grant, "x");
        assert_base(&e);
        assert_eq!(
            (e["class_uid"].clone(), e["activity_id"].clone()),
            (json!(3005), json!(1))
        );
        assert_eq!(e["user"]["name"], "bot");
        assert_eq!(e["actor"]["user"]["name"], "ops");
        let mut revoke = AuditRecord::admin(
            "2026-11-23T10:00:00Z".into(),
            "acme",
            "ops",
            None,
            "x",
            "user.disable",
        );
        revoke.agent = None;
        revoke.resource = Some("user:carol".into());
        let e = to_ocsf(2, &[0; 32], &revoke, "x");
        assert_eq!(
            (e["activity_id"].clone(), e["user"]["name"].clone()),
            (json!(2), json!("carol"))
        );
        assert_eq!(e["user"]["type"], "User");
        let other = AuditRecord::admin(
            "2026-11-23T10:00:00Z".into(),
            "acme",
            "ops",
            None,
            "bot",
            "agent.create",
        );
        let e = to_ocsf(3, &[0; 32], &other, "x");
        assert_base(&e);
        assert_eq!(
            (e["class_uid"].clone(), e["activity_name"].clone()),
            (json!(6003), json!("Create"))
        );
        assert_eq!(e["api"]["service"]["name"], "warden-admin");
    }

    #[test]
    fn odd_records_still_make_valid_events() {
        let mut r = AuditRecord::request("not a time".into(), "tls".into(), Some("garbage".into()));
        r.method = None;
        let e = to_ocsf(4, &[0; 32], &r, "x");
        assert_base(&e);
        assert_eq!(e["time"], 0);
        assert_eq!(e["src_endpoint"]["name"], "garbage");
        assert_eq!(e["api"]["operation"], "tls");
    }
}
