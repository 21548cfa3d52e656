//! Least privilege in depth, end to end: just-in-time task grants,
//! micro-segmentation (`connect`), session taint, held actions, and the
//! request's source in policy.

use std::time::Duration;

use serde_json::{Value, json};
use warden_core::{AgentName, Approval, Effect, TenantId};

use crate::harness::{Harness, Options, harness, harness_with, tenant};

fn tool_call(tool: &str, args: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": args}})
    .to_string()
}

fn message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn open_task(h: &Harness, id: &str, tools: &[&str], ttl: u64) -> String {
    h.create_task(&tenant(), id, "a", tools, now() + ttl).await;
    h.issuer
        .issue_for_task(
            &tenant(),
            &AgentName::new("a").unwrap(),
            None,
            Duration::from_secs(600),
            id,
        )
        .unwrap()
        .token
}

#[tokio::test]
async fn a_task_token_works_during_the_task_and_dies_with_it() {
    // No standing permission: only the task grants anything.
    let h = harness("").await;
    let call = tool_call("get_customer", json!({"id": "c-1"}));
    let (_, _, body) = h.post("/mcp/crm", Some(&h.token("a")), call.clone()).await;
    assert!(message(&body).contains("access denied"), "{body}");

    let token = open_task(&h, "t-ended", &["crm/get_customer"], 600).await;
    let (status, _, body) = h.post("/mcp/crm", Some(&token), call.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"].is_object(), "{body}");
    // Only the granted tool.
    let (_, _, body) = h
        .post(
            "/mcp/crm",
            Some(&token),
            tool_call(
                "update_customer",
                json!({"id": "c-1", "email": "x@example.com"}),
            ),
        )
        .await;
    assert!(message(&body).contains("access denied"), "{body}");
    // The decision names the task's grant and its purpose.
    let records = h.requests().await;
    let granted = records
        .iter()
        .find(|r| {
            r.decision.effect == Effect::Allow && r.action.as_deref() == Some("crm/get_customer")
        })
        .unwrap();
    assert_eq!(granted.decision.policies, ["task:t-ended"]);
    assert!(
        granted.decision.reasons[0].contains("task t-ended"),
        "the purpose is named"
    );
    // Ending the task refuses the very next request.
    h.store.end_task(&tenant(), "t-ended").await.unwrap();
    let before = h.crm.calls.get();
    let (status, _, body) = h.post("/mcp/crm", Some(&token), call.clone()).await;
    assert_eq!(status, 401, "{body}");
    assert!(message(&body).contains("has ended"), "{body}");
    assert_eq!(h.crm.calls.get(), before);

    // Expiry without `task end` also revokes.
    // (Expiry is in whole seconds: the task lives 3 to 4 s.)
    let token = open_task(&h, "t-short", &["crm/get_customer"], 4).await;
    assert_eq!(h.post("/mcp/crm", Some(&token), call.clone()).await.0, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (status, _, body) = h.post("/mcp/crm", Some(&token), call.clone()).await;
        if status != 200 || std::time::Instant::now() > deadline {
            break (status, body);
        }
    };
    assert_eq!(status, 401, "{body}");
    assert!(message(&body).contains("has expired"), "{body}");

    // A task token of another agent's task, or of an unknown task: refused.
    h.create_task(&tenant(), "t-b", "b", &["crm/get_customer"], now() + 600)
        .await;
    for task in ["t-b", "t-unknown"] {
        let forged = h
            .issuer
            .issue_for_task(
                &tenant(),
                &AgentName::new("a").unwrap(),
                None,
                Duration::from_secs(60),
                task,
            )
            .unwrap()
            .token;
        assert_eq!(
            h.post("/mcp/crm", Some(&forged), call.clone()).await.0,
            401,
            "{task}"
        );
    }
    // A task of another tenant with the same id is not this tenant's.
    h.create_task(
        &TenantId::new("other").unwrap(),
        "t-x",
        "a",
        &["crm/get_customer"],
        now() + 600,
    )
    .await;
    let cross = h
        .issuer
        .issue_for_task(
            &tenant(),
            &AgentName::new("a").unwrap(),
            None,
            Duration::from_secs(60),
            "t-x",
        )
        .unwrap()
        .token;
    assert_eq!(h.post("/mcp/crm", Some(&cross), call).await.0, 401);
}

#[tokio::test]
async fn connect_keeps_agents_to_the_upstreams_they_may_reach() {
    let h = harness_with(
        r#"permit(principal == Warden::Agent::"a", action == Warden::Action::"connect", resource == Warden::Upstream::"docs");
           @id("anything") permit(principal, action in Warden::Action::"call_tool", resource);"#,
        Options {
            connect_all: false,
            ..Options::default()
        },
    )
    .await;
    let token = h.token("a");
    let (status, _, body) = h
        .post(
            "/mcp/docs",
            Some(&token),
            tool_call("search", json!({"query": "vpn"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A tool permitted by policy, at an upstream the agent may not reach.
    let (_, _, body) = h
        .post(
            "/mcp/crm",
            Some(&token),
            tool_call("get_customer", json!({"id": "c-1"})),
        )
        .await;
    assert!(message(&body).contains("access denied"), "{body}");
    assert_eq!(h.crm.calls.get(), 0);
    let (_, _, body) = h
        .post(
            "/mcp/crm",
            Some(&token),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string(),
        )
        .await;
    assert!(message(&body).contains("access denied"), "{body}");
    // The federated endpoint shows only reachable upstreams.
    let (_, _, body) = h
        .post(
            "/mcp",
            Some(&token),
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}).to_string(),
        )
        .await;
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["docs.search"]);
    // Agent b reaches nothing.
    let (_, _, body) = h
        .post(
            "/mcp",
            Some(&h.token("b")),
            json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}).to_string(),
        )
        .await;
    assert_eq!(body["result"]["tools"], json!([]));
}

#[tokio::test]
async fn a_session_that_read_confidential_data_cannot_send_it_out() {
    let h = harness_with(
        r#"permit(principal == Warden::Agent::"a", action in Warden::Action::"call_tool", resource in Warden::Upstream::"crm");
           @id("no-exfiltration") @reason("this session has read confidential data")
           forbid(principal, action in Warden::Action::"call_tool", resource)
           when { resource.external && context.session.taint_level >= 2 };"#,
        Options {
            crm_extra: "[upstreams.tools.get_customer]\nclassification = \"confidential\"\n[upstreams.tools.update_customer]\nexternal = true\n",
            ..Options::default()
        },
    )
    .await;
    let client = h.client("/mcp/crm", &h.token("a")).await;
    let send = || {
        rmcp::model::CallToolRequestParams::new("update_customer").with_arguments(
            rmcp::model::object(json!({"id": "c-1", "email": "x@example.com"})),
        )
    };
    client.call_tool(send()).await.unwrap();
    client
        .call_tool(
            rmcp::model::CallToolRequestParams::new("get_customer")
                .with_arguments(rmcp::model::object(json!({"id": "c-1"}))),
        )
        .await
        .unwrap();
    let err = client.call_tool(send()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("this session has read confidential data"),
        "{err}"
    );
    // Another session starts clean.
    let other = h.client("/mcp/crm", &h.token("a")).await;
    other.call_tool(send()).await.unwrap();
    // A stateless client is tracked per identity: dropping the session
    // header does not clear the taint.
    let stateless = h.token("a");
    let read = tool_call("get_customer", json!({"id": "c-2"}));
    assert_eq!(h.post("/mcp/crm", Some(&stateless), read).await.0, 200);
    let (_, _, body) = h
        .post(
            "/mcp/crm",
            Some(&stateless),
            tool_call(
                "update_customer",
                json!({"id": "c-1", "email": "y@example.com"}),
            ),
        )
        .await;
    assert!(message(&body).contains("confidential"), "{body}");
    for c in [client, other] {
        c.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn an_action_that_needs_approval_is_held_not_run() {
    let h = harness(
        r#"@id("update-needs-approval") @approval("dual") @reason("customer changes need two approvers")
           permit(principal == Warden::Agent::"a", action == Warden::Action::"crm/update_customer", resource);"#,
    )
    .await;
    let (_, _, body) = h
        .post(
            "/mcp/crm",
            Some(&h.token("a")),
            tool_call(
                "update_customer",
                json!({"id": "c-1", "email": "x@example.com"}),
            ),
        )
        .await;
    assert_eq!(body["result"]["isError"], true, "{body}");
    assert!(
        body["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("held for human approval"),
        "{body}"
    );
    assert_eq!(h.crm.calls.get(), 0, "nothing ran");
    let records = h.requests().await;
    let held = records
        .iter()
        .find(|r| r.action.as_deref() == Some("crm/update_customer"))
        .unwrap();
    assert_eq!(held.decision.effect, Effect::Deny);
    assert_eq!(held.decision.obligations.approval, Some(Approval::Dual));
    assert_eq!(held.decision.policies, ["update-needs-approval"]);
    assert!(held.approval.is_some(), "the record names the approval");
}

#[tokio::test]
async fn the_source_address_is_in_the_context() {
    let h = harness(
        r#"permit(principal, action == Warden::Action::"docs/search", resource)
           when { context.source_ip.isLoopback() && !context.mtls };
           permit(principal, action == Warden::Action::"crm/get_customer", resource)
           when { context.source_ip.isInRange(ip("10.0.0.0/8")) };"#,
    )
    .await;
    let token = h.token("a");
    let (status, _, body) = h
        .post(
            "/mcp/docs",
            Some(&token),
            tool_call("search", json!({"query": "x"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"].is_object(), "{body}");
    let (_, _, body) = h
        .post(
            "/mcp/crm",
            Some(&token),
            tool_call("get_customer", json!({"id": "c-1"})),
        )
        .await;
    assert!(
        message(&body).contains("access denied"),
        "loopback is not 10/8: {body}"
    );
}

#[tokio::test]
async fn shadow_policies_are_evaluated_and_recorded_but_never_enforced() {
    let h = harness_with(
        r#"permit(principal == Warden::Agent::"a", action == Warden::Action::"docs/search", resource);"#,
        Options {
            shadow: Some(
                r#"@id("candidate-no-search") forbid(principal == Warden::Agent::"a", action == Warden::Action::"docs/search", resource);
                   permit(principal, action == Warden::Action::"connect", resource);
                   permit(principal == Warden::Agent::"b", action == Warden::Action::"docs/search", resource);"#,
            ),
            ..Options::default()
        },
    )
    .await;
    let search = tool_call("search", json!({"query": "vpn"}));
    // Live allows, the candidate would deny: allowed, and recorded.
    let (status, _, body) = h
        .post("/mcp/docs", Some(&h.token("a")), search.clone())
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"].is_object(), "{body}");
    assert_eq!(h.docs.calls.get(), 1);
    // Live denies, the candidate would allow (agent b): denied, and recorded.
    let (_, _, body) = h.post("/mcp/docs", Some(&h.token("b")), search).await;
    assert!(message(&body).contains("access denied"), "{body}");
    assert_eq!(h.docs.calls.get(), 1);
    let records = h.requests().await;
    let shadowed: Vec<(Option<&str>, Effect, Effect)> = records
        .iter()
        .filter_map(|r| {
            r.shadow
                .as_ref()
                .map(|s| (r.agent.as_deref(), r.decision.effect, s.decision.effect))
        })
        .collect();
    assert_eq!(
        shadowed,
        [
            (Some("a"), Effect::Allow, Effect::Deny),
            (Some("b"), Effect::Deny, Effect::Allow)
        ]
    );
    let admin = h
        .issuer
        .issue_admin(
            "ops",
            warden_identity::Role::Auditor,
            Duration::from_secs(60),
        )
        .unwrap()
        .token;
    let status = h.admin_json("/v1/policy", &admin).await;
    assert_eq!(status["shadow"]["differences"], 2, "{status}");
}
