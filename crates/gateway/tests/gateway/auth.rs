//! Guarantees G2 and G9: no unauthenticated request reaches an upstream, and
//! suspension or revocation takes effect on the very next request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rmcp::model::{CallToolRequestParams, object};
use serde_json::json;
use warden_core::{AgentName, AgentState, TenantId};
use warden_identity::{SigningKey, TokenIssuer};

use crate::harness::{Harness, harness};

const POLICY: &str = r#"permit(principal, action in Warden::Action::"call_tool", resource);"#;

fn search() -> CallToolRequestParams {
    CallToolRequestParams::new("search").with_arguments(object(json!({"query": "vpn"})))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Tokens that must all be refused.
fn bad_tokens(h: &Harness) -> Vec<(&'static str, String)> {
    let good = h.token("a");
    let parts: Vec<&str> = good.split('.').collect();
    let claims = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        f(&mut c);
        B64.encode(c.to_string())
    };
    let header = |alg: &str| {
        B64.encode(format!(
            r#"{{"alg":"{alg}","typ":"JWT","kid":"{}"}}"#,
            h.key.kid()
        ))
    };
    let other_key =
        std::sync::Arc::new(SigningKey::from_pem(&SigningKey::generate_pem().unwrap()).unwrap());
    let tenant = TenantId::new("default").unwrap();
    let agent = AgentName::new("a").unwrap();
    let forged = TokenIssuer::new(
        std::sync::Arc::new(warden_identity::KeyRing::single(other_key.clone())),
        "warden",
        "warden-gateway",
        "warden.local",
        Duration::from_secs(3600),
    )
    .issue(&tenant, &agent, None, Duration::from_secs(60))
    .unwrap()
    .token;
    let wrong_audience = TokenIssuer::new(
        std::sync::Arc::new(warden_identity::KeyRing::single(h.key.clone())),
        "warden",
        "someone-else",
        "warden.local",
        Duration::from_secs(3600),
    )
    .issue(&tenant, &agent, None, Duration::from_secs(60))
    .unwrap()
    .token;
    let other_tenant = h
        .issuer
        .issue(
            &TenantId::new("globex").unwrap(),
            &agent,
            None,
            Duration::from_secs(60),
        )
        .unwrap()
        .token;
    let unknown_agent = h
        .issuer
        .issue(
            &tenant,
            &AgentName::new("ghost").unwrap(),
            None,
            Duration::from_secs(60),
        )
        .unwrap()
        .token;
    vec![
        ("forged signature", forged),
        ("wrong audience", wrong_audience),
        ("other tenant", other_tenant),
        ("unknown agent", unknown_agent),
        ("alg none", format!("{}.{}.", header("none"), parts[1])),
        (
            "alg HS256",
            format!("{}.{}.{}", header("HS256"), parts[1], parts[2]),
        ),
        (
            "edited claims",
            format!(
                "{}.{}.{}",
                parts[0],
                claims(&|c| c["sub"] = "spiffe://warden.local/tenant/default/agent/b".into()),
                parts[2]
            ),
        ),
        ("garbage", "not-a-token".into()),
        ("oversized", "A".repeat(10_000)),
    ]
}

/// A token whose `exp` is an hour ago, signed with the gateway's real key.
fn expired_token(h: &Harness) -> String {
    let claims = json!({
        "iss": "warden", "aud": "warden-gateway", "sub": "spiffe://warden.local/tenant/default/agent/a",
        "tenant": "default", "exp": now() - 3600, "iat": now() - 7200, "nbf": now() - 7200, "jti": "old"
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(h.key.kid().to_owned());
    let pem = std::fs::read_to_string(h.dir.path().join("keys/signing.pem")).unwrap();
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn bad_credentials_are_refused_with_401_and_never_forwarded() {
    let h = harness(POLICY).await;
    let mut cases = bad_tokens(&h);
    cases.push(("expired", expired_token(&h)));
    for (what, token) in &cases {
        let (status, headers, body) = h
            .post("/mcp/docs", Some(token), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"x"}}}"#)
            .await;
        assert_eq!(status, 401, "{what}: {body}");
        let challenge = headers.get("www-authenticate").unwrap().to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"warden\""),
            "{what}: {challenge}"
        );
        assert_eq!(body["error"]["code"], -32001, "{what}");
        // The SDK client cannot even initialise with it.
        assert!(h.try_client("/mcp/docs", token).await.is_err(), "{what}");
    }
    let (status, headers, _) = h
        .post(
            "/mcp/docs",
            None,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        headers.get("www-authenticate").unwrap(),
        "Bearer realm=\"warden\""
    );
    assert_eq!(h.docs.calls.get(), 0);
    let refused = h
        .requests()
        .await
        .iter()
        .filter(|r| r.status == Some(401))
        .count();
    assert_eq!(refused, 2 * cases.len() + 1, "every refusal is audited");
}

#[tokio::test]
async fn suspension_and_revocation_apply_on_the_next_request() {
    let h = harness(POLICY).await;
    let client = h.client("/mcp/docs", &h.token("a")).await;
    client.call_tool(search()).await.unwrap();
    h.set_state("a", AgentState::Suspended).await;
    let err = client.call_tool(search()).await.unwrap_err();
    assert!(
        err.auth_challenge()
            .is_some_and(|c| c.contains("suspended")),
        "{err:?}"
    );
    h.set_state("a", AgentState::Active).await;
    client.call_tool(search()).await.unwrap();
    h.set_state("a", AgentState::Revoked).await;
    assert!(client.call_tool(search()).await.is_err());
    assert!(h.try_client("/mcp/docs", &h.token("a")).await.is_err());
    assert_eq!(h.docs.calls.get(), 2);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn sessions_are_bound_to_the_agent_that_opened_them() {
    let h = harness(POLICY).await;
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (status, headers, body) = h.post("/mcp/docs", Some(&h.token("a")), init).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["protocolVersion"], "2025-06-18");
    let session = headers
        .get("mcp-session-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let send = |token: String, session: String| {
        let url = h.url("/mcp/docs");
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("mcp-session-id", session)
                .body(list)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(send(h.token("a"), session.clone()).await, 200);
    assert_eq!(
        send(h.token("b"), session.clone()).await,
        404,
        "another agent cannot ride the session"
    );
    assert_eq!(send(h.token("a"), "made-up".into()).await, 404);
    let delete = reqwest::Client::new()
        .delete(h.url("/mcp/docs"))
        .bearer_auth(h.token("a"))
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status().as_u16(), 204);
    assert_eq!(send(h.token("a"), session).await, 404);
}
