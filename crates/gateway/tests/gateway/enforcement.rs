//! Allowed calls pass, denied calls never reach the upstream, lists are
//! filtered, and every request leaves exactly one request record.

use std::collections::HashMap;
use std::time::Duration;

use rmcp::ServiceError;
use rmcp::model::{
    CallToolRequestParams, GetPromptRequestParams, ReadResourceRequestParams, object,
};
use serde_json::json;
use warden_audit::{ChainHead, RecordKind, verify_chain};
use warden_core::Effect;

use crate::harness::harness;

const POLICIES: &str = r#"
@id("a-reads-customers")
@reason("support reads customers")
permit(principal == Warden::Agent::"a", action == Warden::Action::"crm/get_customer", resource)
when { context.args.id like "c-*" };

@id("a-uses-docs")
permit(principal == Warden::Agent::"a", action in Warden::Action::"call_tool", resource in Warden::Upstream::"docs");

@id("a-reads-handbook")
permit(principal == Warden::Agent::"a", action == Warden::Action::"read_resource", resource in Warden::Upstream::"docs")
when { context.uri like "docs://handbook/*" };

@id("a-summarizes")
permit(principal == Warden::Agent::"a", action == Warden::Action::"get_prompt", resource == Warden::Prompt::"crm/summarize_customer");
"#;

fn text(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

fn call(name: &str, args: serde_json::Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name.to_owned()).with_arguments(object(args))
}

#[tokio::test]
async fn an_allowed_call_passes_and_a_denied_call_never_reaches_the_upstream() {
    let h = harness(POLICIES).await;
    let client = h.client("/mcp/crm", &h.token("a")).await;

    let ok = client
        .call_tool(call("get_customer", json!({"id": "c-1001"})))
        .await
        .unwrap();
    assert!(text(&ok).contains("Ada Lovelace"), "{ok:?}");
    assert_eq!(h.crm.calls.get(), 1);

    // The argument condition fails: denied, and the upstream never hears of it.
    let err = client
        .call_tool(call("get_customer", json!({"id": "x-1"})))
        .await
        .unwrap_err();
    let ServiceError::McpError(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.code.0, -32001);
    assert_eq!(e.message, "access denied: no policy permits this request");
    assert!(e.data.unwrap()["request_id"].is_string());
    // No policy at all for update_customer.
    let err = client
        .call_tool(call(
            "update_customer",
            json!({"id": "c-1", "email": "x@y"}),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::McpError(ref e) if e.code.0 == -32001),
        "{err:?}"
    );
    assert_eq!(
        h.crm.calls.get(),
        1,
        "denied calls must not reach the upstream"
    );

    // Another agent gets nothing.
    let b = h.client("/mcp/crm", &h.token("b")).await;
    assert!(
        b.call_tool(call("get_customer", json!({"id": "c-1001"})))
            .await
            .is_err()
    );
    assert_eq!(h.crm.calls.get(), 1);

    let records = h.requests().await;
    let calls: Vec<_> = records
        .iter()
        .filter(|r| r.method.as_deref() == Some("tools/call"))
        .collect();
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[0].decision.effect, Effect::Allow);
    assert_eq!(
        calls[0].decision.policies,
        vec!["a-reads-customers".to_owned()]
    );
    assert_eq!(
        calls[0].decision.reasons,
        vec!["support reads customers".to_owned()]
    );
    assert!(calls[0].args_digest.as_ref().is_some_and(|d| d.len() == 64));
    assert!(calls[1..].iter().all(|r| r.decision.effect == Effect::Deny));
    client.cancel().await.unwrap();
    b.cancel().await.unwrap();
}

#[tokio::test]
async fn lists_show_only_what_the_agent_may_use() {
    let h = harness(POLICIES).await;
    let a = h.client("/mcp/crm", &h.token("a")).await;
    let names: Vec<String> = a
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, vec!["get_customer"]);
    let b = h.client("/mcp/crm", &h.token("b")).await;
    assert!(b.list_all_tools().await.unwrap().is_empty());

    // Federated: every permitted tool of every upstream, prefixed.
    let fed = h.client("/mcp", &h.token("a")).await;
    let mut names: Vec<String> = fed
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, vec!["crm.get_customer", "docs.search"]);
    let result = fed
        .call_tool(call("docs.search", json!({"query": "vpn"})))
        .await
        .unwrap();
    assert!(text(&result).contains("VPN setup"), "{result:?}");
    let result = fed
        .call_tool(call("crm.get_customer", json!({"id": "c-7"})))
        .await
        .unwrap();
    assert!(text(&result).contains("c-7"));
    assert!(
        fed.call_tool(call(
            "crm.update_customer",
            json!({"id": "c-7", "email": "e"})
        ))
        .await
        .is_err()
    );
    assert!(fed.call_tool(call("nosuch.tool", json!({}))).await.is_err());
    assert_eq!(h.crm.calls.get(), 1);
    assert_eq!(h.docs.calls.get(), 1);

    // Resources and prompts are filtered and checked too.
    let resources: Vec<String> = fed
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(
        resources,
        vec!["docs://handbook/vpn", "docs://handbook/expenses"]
    );
    let page = fed
        .read_resource(ReadResourceRequestParams::new("docs://handbook/vpn"))
        .await
        .unwrap();
    assert_eq!(page.contents.len(), 1);
    let docs = h.client("/mcp/docs", &h.token("a")).await;
    assert!(
        docs.read_resource(ReadResourceRequestParams::new("docs://internal/roadmap"))
            .await
            .is_err()
    );
    let prompts: Vec<String> = fed
        .list_all_prompts()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(prompts, vec!["crm.summarize_customer"]);
    let prompt = fed
        .get_prompt(
            GetPromptRequestParams::new("crm.summarize_customer")
                .with_arguments(object(json!({"id": "c-1"}))),
        )
        .await
        .unwrap();
    assert_eq!(prompt.messages.len(), 1);
    assert!(
        fed.get_prompt(GetPromptRequestParams::new("crm.draft_apology"))
            .await
            .is_err()
    );
    for c in [a, b, fed, docs] {
        c.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn exactly_one_request_record_per_request_and_the_chain_verifies() {
    let h = harness(POLICIES).await;
    let client = h.client("/mcp/crm", &h.token("a")).await;
    client
        .call_tool(call("get_customer", json!({"id": "c-1"})))
        .await
        .unwrap();
    let _ = client
        .call_tool(call("update_customer", json!({"id": "c-1", "email": "e"})))
        .await;
    client.cancel().await.unwrap();
    let _ = h.post("/mcp/crm", None, "{}").await;
    let _ = h.post("/mcp/crm", Some(&h.token("a")), "{not json").await;

    let records = h.records().await;
    let mut per_request: HashMap<&str, usize> = HashMap::new();
    for r in records.iter().filter(|r| r.kind == RecordKind::Request) {
        *per_request.entry(r.request_id.as_str()).or_default() += 1;
    }
    assert!(per_request.values().all(|n| *n == 1), "{per_request:?}");
    // The forwarded call has its outcome, after its request record.
    let allowed = records
        .iter()
        .find(|r| r.action.as_deref() == Some("crm/get_customer") && r.kind == RecordKind::Request)
        .unwrap();
    let outcome = records
        .iter()
        .find(|r| r.kind == RecordKind::Outcome && r.request_id == allowed.request_id)
        .unwrap();
    assert_eq!(outcome.outcome.as_ref().unwrap().result, "ok");
    // The denied call has none.
    let denied = records
        .iter()
        .find(|r| r.action.as_deref() == Some("crm/update_customer"))
        .unwrap();
    assert!(
        !records
            .iter()
            .any(|r| r.kind == RecordKind::Outcome && r.request_id == denied.request_id)
    );
    assert!(records.iter().any(|r| r.status == Some(401)));
    assert!(records.iter().any(|r| r.status == Some(400)));
    verify_chain(h.entries().await, ChainHead::default()).unwrap();
}

#[tokio::test]
async fn policies_reload_atomically_and_invalid_sets_are_refused() {
    let h = harness("").await;
    let client = h.client("/mcp/docs", &h.token("a")).await;
    assert!(
        client
            .call_tool(call("search", json!({"query": "vpn"})))
            .await
            .is_err()
    );
    h.write_policy(r#"permit(principal == Warden::Agent::"a", action == Warden::Action::"docs/search", resource);"#);
    let mut allowed = false;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if client
            .call_tool(call("search", json!({"query": "vpn"})))
            .await
            .is_ok()
        {
            allowed = true;
            break;
        }
    }
    assert!(allowed, "the new policy was not picked up");
    // A broken set (unknown action) is refused; the old one stays in force.
    h.write_policy(r#"permit(principal, action == Warden::Action::"docs/nope", resource);"#);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        client
            .call_tool(call("search", json!({"query": "vpn"})))
            .await
            .is_ok()
    );
    // Both sets that were in force are kept in the history; the broken one
    // is not.
    let versions = h.store.bundles().await.unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_policy_that_fails_to_evaluate_denies() {
    let h = harness(
        r#"permit(principal, action == Warden::Action::"docs/search", resource);
           permit(principal, action == Warden::Action::"docs/search", resource) when { 9223372036854775807 + 1 > 0 };"#,
    )
    .await;
    let client = h.client("/mcp/docs", &h.token("a")).await;
    let err = client
        .call_tool(call("search", json!({"query": "vpn"})))
        .await
        .unwrap_err();
    let ServiceError::McpError(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.message, "access denied: policy evaluation failed");
    assert_eq!(h.docs.calls.get(), 0);
    let records = h.requests().await;
    let r = records
        .iter()
        .find(|r| r.action.as_deref() == Some("docs/search"))
        .unwrap();
    assert_eq!(r.decision.effect, Effect::Deny);
    assert_eq!(r.decision.errors.len(), 1);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn delegation_is_visible_to_policy_and_audit() {
    let h = harness(
        r#"permit(principal == Warden::Agent::"a", action == Warden::Action::"docs/search", resource)
           when { context has user && context.user == Warden::User::"alice" };
           permit(principal == Warden::User::"alice", action == Warden::Action::"docs/search", resource);"#,
    )
    .await;
    let alone = h.client("/mcp/docs", &h.token("a")).await;
    assert!(
        alone
            .call_tool(call("search", json!({"query": "x"})))
            .await
            .is_err()
    );
    let for_alice = h.client("/mcp/docs", &h.token_for_user("a", "alice")).await;
    for_alice
        .call_tool(call("search", json!({"query": "x"})))
        .await
        .unwrap();
    let for_bob = h.client("/mcp/docs", &h.token_for_user("a", "bob")).await;
    assert!(
        for_bob
            .call_tool(call("search", json!({"query": "x"})))
            .await
            .is_err()
    );
    let records = h.requests().await;
    let allowed = records
        .iter()
        .find(|r| r.decision.effect == Effect::Allow && r.action.is_some())
        .unwrap();
    assert_eq!(
        (allowed.agent.as_deref(), allowed.user.as_deref()),
        (Some("a"), Some("alice"))
    );
    for c in [alone, for_alice, for_bob] {
        c.cancel().await.unwrap();
    }
}
