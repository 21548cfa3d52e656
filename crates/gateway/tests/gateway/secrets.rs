//! Upstream credentials stay in Warden (G8): sealed at rest, added when
//! forwarding, never shown to the agent, never in the audit trail or the
//! database in clear; the agent's own token is never forwarded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use warden_core::{TenantId, UpstreamName, UserName};
use warden_store::SecretRef;
use warden_vault::{MasterKey, Secret};

use crate::harness::{Harness, Options, harness_with};

const POLICY: &str = r#"
permit(principal == Warden::Agent::"a", action == Warden::Action::"crm/get_customer", resource);
permit(principal == Warden::User::"alice", action == Warden::Action::"crm/get_customer", resource);
permit(principal == Warden::User::"bob", action == Warden::Action::"crm/get_customer", resource);
"#;

/// A harness whose crm upstream takes `auth`, with `secret` stored (the
/// gateway lists the upstream's tools with it at start).
async fn with_auth(auth: &'static str, secret: &'static str) -> Harness {
    harness_with(
        POLICY,
        Options {
            crm_auth: Some(auth),
            crm_secret: Some(secret),
            ..Options::default()
        },
    )
    .await
}

async fn put(h: &Harness, user: Option<&str>, value: &str) {
    let master = MasterKey::from_base64(
        &std::fs::read_to_string(h.dir.path().join("keys/master.key")).unwrap(),
    )
    .unwrap();
    let at = SecretRef {
        tenant: TenantId::new("default").unwrap(),
        upstream: UpstreamName::new("crm").unwrap(),
        user: user.map(|u| UserName::new(u).unwrap()),
    };
    let sealed = master.seal(&at.place(), &Secret::new(value)).unwrap();
    h.store.put_secret(&at, sealed).await.unwrap();
}

async fn get_customer(h: &Harness, token: &str) -> (u16, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "get_customer", "arguments": {"id": "c-1"}}});
    let (status, _, value) = h.post("/mcp/crm", Some(token), body.to_string()).await;
    (status, value)
}

fn seen(h: &Harness) -> Vec<String> {
    h.crm.credentials_seen.lock().unwrap().clone()
}

/// Every byte Warden keeps: the database files and the audit records.
async fn everything_stored(h: &Harness) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(h.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("warden.db") {
            all.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    for r in h.records().await {
        all.push_str(&serde_json::to_string(&r).unwrap());
    }
    all
}

#[tokio::test]
async fn the_upstream_gets_warden_s_credential_and_never_the_agent_s_token() {
    let h = with_auth(r#"{ type = "bearer" }"#, "sk-crm-0001").await;
    let token = h.token("a");
    let (status, body) = get_customer(&h, &token).await;
    assert_eq!(status, 200, "{body}");
    let seen = seen(&h);
    assert!(
        seen.iter()
            .all(|s| s == "authorization: Bearer sk-crm-0001"),
        "{seen:?}"
    );
    assert!(!seen.is_empty());
    assert!(
        !seen.iter().any(|s| s.contains(&token)),
        "the agent's token is never forwarded"
    );
    // The secret appears nowhere the agent or an auditor can read.
    assert!(!body.to_string().contains("sk-crm-0001"));
    let stored = everything_stored(&h).await;
    assert!(
        !stored.contains("sk-crm-0001"),
        "sealed at rest, absent from the audit trail"
    );
    let admin = h
        .issuer
        .issue_admin("ops", warden_identity::Role::Admin, Duration::from_secs(60))
        .unwrap()
        .token;
    for path in ["/v1/agents", "/v1/audit?limit=1000", "/v1/policy"] {
        let text = reqwest::Client::new()
            .get(format!("http://{}{path}", h.admin))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!text.contains("sk-crm-0001"), "{path}");
    }
    // A new secret applies within seconds, without a restart.
    put(&h, None, "sk-crm-0002").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    get_customer(&h, &token).await;
    assert_eq!(
        h.crm
            .credentials_seen
            .lock()
            .unwrap()
            .last()
            .map(String::as_str),
        Some("authorization: Bearer sk-crm-0002")
    );
    // The secret deleted: nothing is sent without it (fail closed).
    let calls = h.crm.calls.get();
    let at = SecretRef {
        tenant: TenantId::new("default").unwrap(),
        upstream: UpstreamName::new("crm").unwrap(),
        user: None,
    };
    assert!(h.store.delete_secret(&at).await.unwrap());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = get_customer(&h, &token).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["message"], "upstream `crm` is unavailable");
    assert_eq!(h.crm.calls.get(), calls);
    // The operator learns why from the audit trail.
    let records = h.records().await;
    let outcome = records
        .iter()
        .rev()
        .find_map(|r| r.outcome.as_ref())
        .unwrap();
    assert!(
        outcome
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("no credential stored"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn per_user_secrets_are_used_for_that_user_only() {
    let h = with_auth(
        r#"{ type = "header", header = "X-Api-Key", per_user = true }"#,
        "team-key",
    )
    .await;
    put(&h, Some("alice"), "alice-key").await;
    let alone = get_customer(&h, &h.token("a")).await;
    assert_eq!(alone.0, 200, "{alone:?}");
    let as_alice = get_customer(&h, &h.token_for_user("a", "alice")).await;
    assert_eq!(as_alice.0, 200, "{as_alice:?}");
    let as_bob = get_customer(&h, &h.token_for_user("a", "bob")).await;
    assert_eq!(as_bob.0, 200, "{as_bob:?}");
    let keys: Vec<String> = seen(&h)
        .into_iter()
        .filter(|s| s.starts_with("x-api-key"))
        .collect();
    // Each call initialises its upstream session with the same key it uses.
    assert!(
        keys.contains(&"x-api-key: alice-key".to_owned()),
        "{keys:?}"
    );
    assert_eq!(
        keys.last().map(String::as_str),
        Some("x-api-key: team-key"),
        "bob has none of his own"
    );
    assert!(keys.iter().filter(|k| k.contains("alice")).count() >= 1);
}

#[tokio::test]
async fn oauth_client_credentials_are_exchanged_and_cached() {
    // The upstream's authorization server: checks the client's basic
    // credentials and hands out access tokens.
    let issued = Arc::new(Mutex::new(0u32));
    let count = issued.clone();
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move |headers: http::HeaderMap, body: String| {
            let count = count.clone();
            async move {
                use base64::Engine as _;
                let expected = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("warden-client:client-secret-9")
                );
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                if auth != Some(expected.as_str()) || !body.contains("grant_type=client_credentials") {
                    return (http::StatusCode::UNAUTHORIZED, "{}".to_owned());
                }
                let n = {
                    let mut c = count.lock().unwrap();
                    *c += 1;
                    *c
                };
                (http::StatusCode::OK, json!({"access_token": format!("at-{n}"), "token_type": "Bearer", "expires_in": 3600}).to_string())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let auth: &'static str = Box::leak(
        format!(r#"{{ type = "oauth", token_url = "http://{addr}/token", client_id = "warden-client" }}"#)
            .into_boxed_str(),
    );
    let h = with_auth(auth, "client-secret-9").await;
    for _ in 0..3 {
        assert_eq!(get_customer(&h, &h.token("a")).await.0, 200);
    }
    assert_eq!(*issued.lock().unwrap(), 1, "one access token, cached");
    assert!(
        seen(&h).iter().all(|s| s == "authorization: Bearer at-1"),
        "{:?}",
        seen(&h)
    );
    assert!(!everything_stored(&h).await.contains("client-secret-9"));
}
