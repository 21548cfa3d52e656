//! The admin API: authenticated, role-based, and audited.

use serde_json::{Value, json};
use warden_identity::Role;

use crate::harness::harness;

#[tokio::test]
async fn the_admin_api_needs_an_admin_token_and_audits_changes() {
    let h = harness(r#"permit(principal, action in Warden::Action::"call_tool", resource);"#).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", h.admin);
    let health: Value = http
        .get(url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");

    // No token, an agent token, a garbage token: 401.
    for token in [None, Some(h.token("a")), Some("junk".to_owned())] {
        let mut req = http.get(url("/v1/agents"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().await.unwrap().status().as_u16(), 401);
    }
    let ttl = std::time::Duration::from_secs(60);
    let admin = h.issuer.issue_admin("ops", Role::Admin, ttl).unwrap().token;
    let auditor = h
        .issuer
        .issue_admin("eve", Role::Auditor, ttl)
        .unwrap()
        .token;

    let agents: Value = h.admin_json("/v1/agents", &auditor).await;
    assert_eq!(agents["agents"].as_array().unwrap().len(), 2);
    // Auditors read; only admins change.
    let denied = http
        .post(url("/v1/agents"))
        .bearer_auth(&auditor)
        .body(r#"{"name":"c"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status().as_u16(), 403);
    let created = http
        .post(url("/v1/agents"))
        .bearer_auth(&admin)
        .body(r#"{"name":"c","owner":"ops"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let dup = http
        .post(url("/v1/agents"))
        .bearer_auth(&admin)
        .body(r#"{"name":"c"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status().as_u16(), 409);
    let bad = http
        .post(url("/v1/agents"))
        .bearer_auth(&admin)
        .body(r#"{"name":"C D"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let unknown_field = http
        .post(url("/v1/agents"))
        .bearer_auth(&admin)
        .body(r#"{"name":"d","rolee":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_field.status().as_u16(), 400);

    let suspended: Value = http
        .post(url("/v1/agents/a/suspend"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(suspended["state"], "suspended");
    let (status, _, _) = h
        .post(
            "/mcp/docs",
            Some(&h.token("a")),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        )
        .await;
    assert_eq!(status, 401, "suspension through the API applies at once");

    // Rotation refuses the tokens issued before it, at once.
    let old = h.token("b");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let rotated = http
        .post(url("/v1/agents/b/rotate"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status().as_u16(), 200);
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let (status, _, body) = h.post("/mcp/docs", Some(&old), list).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(h.post("/mcp/docs", Some(&h.token("b")), list).await.0, 200);
    // Retirement is final.
    for (action, code) in [("retire", 200), ("resume", 409), ("dance", 404)] {
        let r = http
            .post(url(&format!("/v1/agents/c/{action}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), code, "{action}");
    }

    let audit: Value = h.admin_json("/v1/audit?limit=1000", &auditor).await;
    let methods: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["record"]["method"].as_str())
        .collect();
    for m in [
        "agent.create",
        "agent.suspend",
        "agent.rotate",
        "agent.retire",
    ] {
        assert!(methods.contains(&m), "{m} in {methods:?}");
    }
    let verify: Value = h.admin_json("/v1/audit/verify", &auditor).await;
    assert_eq!(verify["ok"], json!(true));
    let policy: Value = h.admin_json("/v1/policy", &auditor).await;
    assert_eq!(policy["policies"], 2, "the test policy and connect-all");
}

#[tokio::test]
async fn metrics_need_a_token_and_count_requests_by_phase() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("scrape.token");
    std::fs::write(&token_file, "scrape-token-0123456789\n").unwrap();
    let h = crate::harness::harness_with(
        r#"permit(principal == Warden::Agent::"a", action == Warden::Action::"crm/get_customer", resource);"#,
        crate::harness::Options {
            admin: format!("metrics_token_file = \"{}\"", token_file.display()),
            ..Default::default()
        },
    )
    .await;
    let call = |name: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}","arguments":{{"id":"c-1"}}}}}}"#
        )
    };
    h.post("/mcp/crm", Some(&h.token("a")), call("get_customer"))
        .await;
    h.post("/mcp/crm", Some(&h.token("a")), call("update_customer"))
        .await;
    h.post("/mcp/crm", Some("forged"), call("get_customer"))
        .await;
    h.records().await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/metrics", h.admin);
    for token in [
        None,
        Some("wrong-token-0123456789"),
        Some(h.token("a").as_str()),
    ] {
        let mut req = http.get(&url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().await.unwrap().status().as_u16(), 401);
    }
    let scrape = |token: String| {
        let req = http.get(&url).bearer_auth(token);
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let text = scrape("scrape-token-0123456789".into()).await;
    for line in [
        r#"warden_requests_total{decision="allow",upstream="crm",method="tools/call"} 1"#,
        r#"warden_requests_total{decision="deny",upstream="crm",method="tools/call"} 1"#,
        r#"warden_requests_total{decision="deny",upstream="",method="none"} 1"#,
        r#"warden_upstream_calls_total{upstream="crm",result="ok"} 1"#,
        r#"warden_phase_duration_seconds_count{phase="authenticate"} 3"#,
        r#"warden_phase_duration_seconds_count{phase="authorize"} 2"#,
        r#"warden_phase_duration_seconds_count{phase="audit_commit"} 1"#,
        r#"warden_phase_duration_seconds_count{phase="forward"} 1"#,
        r#"warden_approvals_pending{name="default"} 0"#,
        "warden_audit_queue_depth 0",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(text.contains("warden_audit_records "), "{text}");
    assert!(!text.contains("c-1"), "no arguments in metrics");
    // An operator token works too.
    let auditor = h
        .issuer
        .issue_admin("prom", Role::Auditor, std::time::Duration::from_secs(60))
        .unwrap()
        .token;
    assert!(scrape(auditor).await.contains("warden_requests_total"));
}
