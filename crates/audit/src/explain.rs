//! A record explained for a human, as labelled rows: who, what, the
//! arguments (digest and redacted form), the decision, its policies and
//! reasons, what it obliged, the approval and its reviewers, the risk, the
//! answer, the upstream's outcome, a shadow decision. The CLI prints the
//! rows, the console renders them; both add the related records and the
//! record's integrity, which need the store.

use crate::{AuditRecord, Outcome, RecordKind};

/// The rows explaining `r`, in order; a row with an empty label continues
/// the one above.
pub fn rows(r: &AuditRecord) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut who = match (&r.agent, r.kind) {
        (Some(a), RecordKind::Admin) => {
            format!("{} on agent {a}", r.user.as_deref().unwrap_or("-"))
        }
        (None, RecordKind::Admin) => format!(
            "{} on {}",
            r.user.as_deref().unwrap_or("-"),
            r.resource.as_deref().unwrap_or("-")
        ),
        (Some(a), _) => format!("agent {a}"),
        (None, _) => "unauthenticated".to_owned(),
    };
    if let Some(t) = &r.tenant {
        who.push_str(&format!(" of tenant {t}"));
    }
    if r.kind != RecordKind::Admin
        && let Some(u) = &r.user
    {
        who.push_str(&format!(", acting for user {u}"));
    }
    if let Some(t) = &r.task {
        who.push_str(&format!(", task {t}"));
    }
    if let Some(s) = &r.source {
        who.push_str(&format!(", from {s}"));
    }
    out.push(("who", who));
    let mut what = r.method.clone().unwrap_or_else(|| "-".into());
    if let Some(a) = &r.action {
        what.push_str(&format!(" → {a}"));
    }
    if let Some(u) = &r.upstream {
        what.push_str(&format!(" on upstream {u}"));
    }
    what.push_str(&format!(" (at {})", r.endpoint));
    out.push(("what", what));
    if let Some(d) = &r.args_digest {
        let shown = r.args.as_ref().map(|a| format!(" {a}")).unwrap_or_default();
        out.push(("arguments", format!("sha256 {d}{shown}")));
    }
    out.push((
        "decision",
        format!("{:?}", r.decision.effect).to_uppercase(),
    ));
    if !r.decision.policies.is_empty() {
        out.push(("policies", r.decision.policies.join(", ")));
    }
    for (i, reason) in r.decision.reasons.iter().enumerate() {
        out.push((if i == 0 { "why" } else { "" }, format!("· {reason}")));
    }
    for e in &r.decision.errors {
        out.push(("error", e.clone()));
    }
    let o = &r.decision.obligations;
    if let Some(a) = o.approval {
        let groups = if o.approver_groups.is_empty() {
            String::new()
        } else {
            format!(" from groups {}", o.approver_groups.join(", "))
        };
        let who = match a {
            warden_core::Approval::Required => "one approver",
            warden_core::Approval::Dual => "two distinct approvers",
        };
        out.push(("requires", format!("{who}{groups}")));
    }
    if !o.redact.is_empty() {
        out.push(("redacts", o.redact.join(", ")));
    }
    if let Some(a) = &r.approval {
        let by = if r.reviewers.is_empty() {
            String::new()
        } else {
            format!(", approved by {}", r.reviewers.join(", "))
        };
        out.push(("approval", format!("{a}{by}")));
    }
    if let Some(risk) = &r.risk {
        let why = if risk.reasons.is_empty() {
            String::new()
        } else {
            format!(": {}", risk.reasons.join("; "))
        };
        out.push(("risk", format!("{} ({}){why}", risk.score, risk.level)));
    }
    if let Some(s) = r.status {
        let err = r
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        out.push(("answer", format!("HTTP {s}{err}")));
    }
    if let Some(o) = &r.outcome {
        out.push(("outcome", outcome(o)));
    }
    if let Some(s) = &r.shadow {
        out.push((
            "shadow",
            format!(
                "candidate policies {} would {}: {}",
                s.version,
                format!("{:?}", s.decision.effect).to_lowercase(),
                s.decision.reasons.join("; ")
            ),
        ));
    }
    out
}

/// An upstream outcome in words.
pub fn outcome(o: &Outcome) -> String {
    let detail = o
        .detail
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    format!("{} in {} ms{detail}", o.result, o.latency_ms)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use warden_core::Decision;

    use super::*;

    #[test]
    fn a_call_is_explained_row_by_row() {
        let mut r = AuditRecord::request(
            "2026-11-23T10:00:00Z".into(),
            "/mcp".into(),
            Some("10.0.0.1:1".into()),
        );
        r.agent = Some("bot".into());
        r.tenant = Some("acme".into());
        r.user = Some("alice".into());
        r.method = Some("tools/call".into());
        r.action = Some("mail/send".into());
        r.upstream = Some("mail".into());
        r.args_digest = Some("ab".into());
        r.args = Some(serde_json::json!({ "to": "[redacted: 5 chars]" }));
        r.decision = Decision::allow(vec!["p1".into()], vec!["ok".into(), "approved".into()]);
        r.approval = Some("ap-1".into());
        r.reviewers = vec!["carol".into()];
        let rows = rows(&r);
        let get = |l: &str| {
            rows.iter()
                .find(|(k, _)| *k == l)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(
            get("who"),
            "agent bot of tenant acme, acting for user alice, from 10.0.0.1:1"
        );
        assert_eq!(
            get("what"),
            "tools/call → mail/send on upstream mail (at /mcp)"
        );
        assert_eq!(
            get("arguments"),
            r#"sha256 ab {"to":"[redacted: 5 chars]"}"#
        );
        assert_eq!(get("decision"), "ALLOW");
        assert_eq!(get("why"), "· ok");
        assert!(rows.contains(&("", "· approved".into())));
        assert_eq!(get("approval"), "ap-1, approved by carol");
    }
}
