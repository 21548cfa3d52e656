//! Audit records explain a decision without holding the data: redacted
//! arguments (and what `@redact` hides), the task, the risk, the
//! determining policies and reasons, the reviewers of an approved call; the
//! admin API finds them by filters.

use std::time::Duration;

use serde_json::{Value, json};
use warden_audit::RecordKind;
use warden_core::AgentName;
use warden_identity::Role;

use crate::harness::{Harness, harness, tenant};

const POLICY: &str = r#"
@id("support-updates") @reason("support keeps customer records current") @redact("email")
permit(principal == Warden::Agent::"a", action == Warden::Action::"crm/update_customer", resource);
@id("changes-need-approval") @approval("required")
permit(principal == Warden::Agent::"b", action == Warden::Action::"crm/update_customer", resource);
"#;

fn update(args: &Value) -> String {
    json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": { "name": "update_customer", "arguments": args } })
    .to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn last_request(h: &Harness) -> warden_audit::AuditRecord {
    h.requests()
        .await
        .into_iter()
        .rev()
        .find(|r| r.action.as_deref() == Some("crm/update_customer"))
        .unwrap()
}

#[tokio::test]
async fn a_record_explains_the_decision_without_the_data() {
    let h = harness(POLICY).await;
    let email = "ada.secret-address@example.com";
    let (status, _, body) = h
        .post(
            "/mcp/crm",
            Some(&h.token("a")),
            update(&json!({ "id": "c-1", "email": email })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"].is_object(), "{body}");
    let r = last_request(&h).await;
    assert_eq!(
        r.args,
        Some(json!({ "id": "[redacted: 3 chars]", "email": "[redacted by policy]" }))
    );
    assert_eq!(r.args_digest.as_deref().map(str::len), Some(64));
    assert_eq!(r.decision.policies, ["support-updates"]);
    assert!(
        r.decision
            .reasons
            .contains(&"support keeps customer records current".to_owned())
    );
    let risk = r.risk.unwrap();
    assert_eq!((risk.score, risk.level.as_str()), (0, "low"));
    assert_eq!(r.task, None);
    // The value itself is nowhere in the trail.
    for e in h.entries().await {
        assert!(
            !String::from_utf8_lossy(&e.body).contains("secret-address"),
            "record {} holds the argument",
            e.seq
        );
    }

    // Under a task, the record names it.
    h.create_task(
        &tenant(),
        "t-42",
        "a",
        &["crm/update_customer"],
        now() + 600,
    )
    .await;
    let token = h
        .issuer
        .issue_for_task(
            &tenant(),
            &AgentName::new("a").unwrap(),
            None,
            Duration::from_secs(600),
            "t-42",
        )
        .unwrap()
        .token;
    let (status, _, _) = h
        .post(
            "/mcp/crm",
            Some(&token),
            update(&json!({ "id": "c-2", "email": "x@y.z" })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(last_request(&h).await.task.as_deref(), Some("t-42"));
}

#[tokio::test]
async fn an_approved_call_names_its_reviewers() {
    let h = harness(POLICY).await;
    let call = update(&json!({ "id": "c-1", "email": "new@example.com" }));
    let (_, _, body) = h.post("/mcp/crm", Some(&h.token("b")), call.clone()).await;
    let id = body["result"]["_meta"]["warden/approval"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let held = last_request(&h).await;
    assert_eq!(held.approval.as_deref(), Some(id.as_str()));
    assert!(held.reviewers.is_empty());
    h.approve_as(&id, "ann").await;
    let (status, _, body) = h.post("/mcp/crm", Some(&h.token("b")), call).await;
    assert_eq!(status, 200, "{body}");
    let ran = last_request(&h).await;
    assert_eq!(ran.reviewers, ["ann"]);
    assert_eq!(ran.approval.as_deref(), Some(id.as_str()));
    let outcome = h
        .records()
        .await
        .into_iter()
        .find(|r| r.kind == RecordKind::Outcome && r.request_id == ran.request_id)
        .unwrap();
    assert_eq!(outcome.reviewers, ["ann"]);
}

#[tokio::test]
async fn the_admin_api_finds_records_by_filters() {
    let h = harness(POLICY).await;
    for (agent, id) in [("a", "c-1"), ("b", "c-2"), ("a", "c-3")] {
        h.post(
            "/mcp/crm",
            Some(&h.token(agent)),
            update(&json!({ "id": id, "email": "e@example.com" })),
        )
        .await;
    }
    // A tool no policy permits.
    let denied = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "get_customer", "arguments": { "id": "c-9" } } });
    h.post("/mcp/crm", Some(&h.token("a")), denied.to_string())
        .await;
    h.records().await;
    let auditor = h
        .issuer
        .issue_admin("eve", Role::Auditor, Duration::from_secs(60))
        .unwrap()
        .token;
    let seqs = |v: &Value| -> Vec<String> {
        v["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|e| {
                let r = &e["record"];
                format!(
                    "{}:{}:{}",
                    r["agent"].as_str().unwrap_or("-"),
                    r["action"].as_str().unwrap_or("-"),
                    r["decision"]["effect"].as_str().unwrap_or("-")
                )
            })
            .collect()
    };
    let a_requests = h
        .admin_json(
            "/v1/audit/search?agent=a&tool=crm.update_customer&kind=request",
            &auditor,
        )
        .await;
    assert_eq!(
        seqs(&a_requests),
        ["a:crm/update_customer:allow", "a:crm/update_customer:allow"]
    );
    let denials = h
        .admin_json(
            "/v1/audit/search?decision=deny&kind=request&agent=a",
            &auditor,
        )
        .await;
    assert_eq!(seqs(&denials), ["a:crm/get_customer:deny"]);
    let held = h
        .admin_json("/v1/audit/search?agent=b&kind=request", &auditor)
        .await;
    assert_eq!(
        seqs(&held),
        ["b:crm/update_customer:deny"],
        "held: a denial"
    );
    let page = h
        .admin_json("/v1/audit/search?agent=a&limit=1", &auditor)
        .await;
    let next = page["next_before"].as_u64().unwrap();
    let more = h
        .admin_json(
            &format!("/v1/audit/search?agent=a&limit=1&before={next}"),
            &auditor,
        )
        .await;
    assert!(more["entries"][0]["seq"].as_u64().unwrap() < next);
    let since = h
        .admin_json(
            "/v1/audit/search?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z",
            &auditor,
        )
        .await;
    assert_eq!(seqs(&since), Vec::<String>::new());

    let http = reqwest::Client::new();
    for bad in [
        "since=yesterday",
        "decision=maybe",
        "kind=other",
        "before=-1",
    ] {
        let status = http
            .get(format!("http://{}/v1/audit/search?{bad}", h.admin))
            .bearer_auth(&auditor)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, 400, "{bad}");
    }
    let anonymous = http
        .get(format!("http://{}/v1/audit/search", h.admin))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(anonymous, 401);
}
