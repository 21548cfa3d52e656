//! Guarantee G10 at the gateway: bad input gets a clear error, is audited,
//! and never panics or reaches an upstream.

use serde_json::json;

use crate::harness::{Options, harness, harness_with};

const POLICY: &str = r#"permit(principal, action in Warden::Action::"call_tool", resource);"#;

#[tokio::test]
async fn malformed_and_hostile_bodies_get_clear_errors() {
    let h = harness(POLICY).await;
    let token = h.token("a");
    let cases: Vec<(&str, String, u16, i64)> = vec![
        ("not json", "{nope".into(), 400, -32700),
        ("empty", String::new(), 400, -32700),
        ("binary", String::from_utf8_lossy(&[0xff, 0xfe, 0x00, 0x01]).into_owned(), 400, -32700),
        ("no method", r#"{"jsonrpc":"2.0","id":1}"#.into(), 400, -32600),
        ("wrong version", r#"{"jsonrpc":"1.0","id":1,"method":"tools/list"}"#.into(), 400, -32600),
        ("null id", r#"{"jsonrpc":"2.0","id":null,"method":"tools/list"}"#.into(), 400, -32600),
        ("batch", r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#.into(), 400, -32600),
        ("array params", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}"#.into(), 400, -32602),
        ("no tool name", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#.into(), 400, -32602),
        ("deep nesting", format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"search","arguments":{{"q":{}{}}}}}}}"#, "[".repeat(5000), "]".repeat(5000)), 400, -32602),
        ("unsupported method", r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage"}"#.into(), 200, -32601),
        ("unknown tool", r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"rm_rf","arguments":{}}}"#.into(), 200, -32001),
        ("wrong argument type", r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"search","arguments":{"query":42}}}"#.into(), 200, -32001),
    ];
    for (what, body, status, code) in &cases {
        let (got, headers, json) = h.post("/mcp/docs", Some(&token), body.clone()).await;
        assert_eq!(got, *status, "{what}: {json}");
        assert_eq!(json["error"]["code"], *code, "{what}: {json}");
        assert_eq!(
            headers.get("content-type").unwrap(),
            "application/json",
            "{what}"
        );
        assert!(json["error"]["data"]["request_id"].is_string(), "{what}");
    }
    // The id survives when it can be read.
    let (_, _, json) = h
        .post(
            "/mcp/docs",
            Some(&token),
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"rm_rf"}}"#,
        )
        .await;
    assert_eq!(json["id"], 9);
    assert_eq!(h.docs.calls.get(), 0);
    // Every one was audited.
    let records = h.requests().await;
    assert_eq!(records.len(), cases.len() + 1);
}

#[tokio::test]
async fn oversized_unknown_and_unsupported_requests() {
    let h = harness_with(
        POLICY,
        Options {
            max_body_bytes: 4096,
            ..Options::default()
        },
    )
    .await;
    let token = h.token("a");
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search", "arguments": {"query": "x".repeat(10_000)}}});
    let (status, _, json) = h.post("/mcp/docs", Some(&token), big.to_string()).await;
    assert_eq!(status, 413, "{json}");
    // Chunked, so no Content-Length to check up front.
    let stream =
        futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let (status, _, _) = h
        .post(
            "/mcp/docs",
            Some(&token),
            reqwest::Body::wrap_stream(stream),
        )
        .await;
    assert_eq!(status, 413);
    let (status, _, json) = h
        .post(
            "/mcp/nosuch",
            Some(&token),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        )
        .await;
    assert_eq!(status, 404, "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown upstream `nosuch`")
    );
    let client = reqwest::Client::new();
    let get = client
        .get(h.url("/mcp/docs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 405);
    let bad_version = client
        .post(h.url("/mcp/docs"))
        .bearer_auth(&token)
        .header("mcp-protocol-version", "1999-01-01")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_version.status().as_u16(), 400);
    let notification = h
        .post(
            "/mcp/docs",
            Some(&token),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        )
        .await;
    assert_eq!(notification.0, 202);
    let statuses: Vec<u16> = h.requests().await.iter().filter_map(|r| r.status).collect();
    for expected in [413, 404, 405, 400, 202] {
        assert!(
            statuses.contains(&expected),
            "{expected} not audited: {statuses:?}"
        );
    }
}

#[tokio::test]
async fn upstreams_that_are_down_or_silent_get_502_and_504() {
    // A port nobody listens on, and a server that accepts and never answers.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let extra = format!(
        "[[upstreams]]\nname = \"down\"\nurl = \"http://{closed}/mcp\"\n[[upstreams]]\nname = \"slow\"\nurl = \"http://{silent_addr}/mcp\"\ntimeout = \"300ms\"\n"
    );
    let policies = r#"permit(principal, action in Warden::Action::"call_tool", resource);"#;
    let h = harness_with(
        policies,
        Options {
            extra_upstreams: extra,
            ..Options::default()
        },
    )
    .await;
    let token = h.token("a");
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let (status, _, json) = h.post("/mcp/down", Some(&token), list).await;
    assert_eq!(status, 502, "{json}");
    assert_eq!(json["error"]["code"], -32010);
    assert_eq!(json["error"]["message"], "upstream `down` is unavailable");
    let (status, _, json) = h.post("/mcp/slow", Some(&token), list).await;
    assert_eq!(status, 504, "{json}");
    assert_eq!(json["error"]["code"], -32011);
    // The federated list still answers with what is up.
    let (status, _, json) = h.post("/mcp", Some(&token), list).await;
    assert_eq!(status, 200, "{json}");
    assert!(
        json["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "docs.search")
    );
    let records = h.records().await;
    let outcomes: Vec<&str> = records
        .iter()
        .filter_map(|r| r.outcome.as_ref())
        .map(|o| o.result.as_str())
        .collect();
    assert!(
        outcomes.contains(&"unavailable") && outcomes.contains(&"timeout"),
        "{outcomes:?}"
    );
}
