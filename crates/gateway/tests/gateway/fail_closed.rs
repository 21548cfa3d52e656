//! Guarantees G5 and G6: when the store fails, nothing is forwarded.

use std::sync::atomic::Ordering;

use rmcp::model::{CallToolRequestParams, object};
use serde_json::json;

use crate::harness::{Faults, Options, harness_with};

const POLICY: &str = r#"permit(principal, action in Warden::Action::"call_tool", resource);"#;
const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"vpn"}}}"#;

#[tokio::test]
async fn no_durable_audit_record_means_no_forwarding() {
    let faults = Faults::default();
    let h = harness_with(
        POLICY,
        Options {
            faults: Some(faults.clone()),
            ..Options::default()
        },
    )
    .await;
    let client = h.client("/mcp/docs", &h.token("a")).await;
    let search =
        || CallToolRequestParams::new("search").with_arguments(object(json!({"query": "vpn"})));
    client.call_tool(search()).await.unwrap();
    assert_eq!(h.docs.calls.get(), 1);

    faults.audit_append.store(true, Ordering::SeqCst);
    let err = client.call_tool(search()).await.unwrap_err();
    assert!(err.to_string().contains("audit log unavailable"), "{err}");
    let (status, _, body) = h.post("/mcp/docs", Some(&h.token("a")), CALL).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        h.docs.calls.get(),
        1,
        "nothing is forwarded without a durable record"
    );

    faults.audit_append.store(false, Ordering::SeqCst);
    client.call_tool(search()).await.unwrap();
    assert_eq!(h.docs.calls.get(), 2);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn an_unreadable_agent_state_means_no_authentication() {
    let faults = Faults::default();
    let h = harness_with(
        POLICY,
        Options {
            faults: Some(faults.clone()),
            ..Options::default()
        },
    )
    .await;
    faults.agent_lookup.store(true, Ordering::SeqCst);
    let (status, headers, body) = h.post("/mcp/docs", Some(&h.token("a")), CALL).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        headers
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("temporarily_unavailable")
    );
    assert_eq!(h.docs.calls.get(), 0);
}

#[tokio::test]
async fn unavailable_approvals_mean_a_held_call_never_runs() {
    let faults = Faults::default();
    let h = harness_with(
        r#"@approval("required") permit(principal, action == Warden::Action::"crm/update_customer", resource);"#,
        Options {
            faults: Some(faults.clone()),
            ..Options::default()
        },
    )
    .await;
    faults.approvals.store(true, Ordering::SeqCst);
    let update = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"update_customer","arguments":{"id":"c-1","email":"x@example.com"}}}"#;
    let (status, _, body) = h.post("/mcp/crm", Some(&h.token("a")), update).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("approvals are unavailable"),
        "{body}"
    );
    assert_eq!(h.crm.calls.get(), 0, "nothing runs without its approval");
}
