//! A fast MCP upstream: stateless Streamable HTTP, JSON answers, twenty
//! `lookup_N` tools whose calls answer about 1 KiB.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// Tools the upstream offers.
pub const TOOLS: usize = 20;

fn tools() -> Value {
    let tools: Vec<Value> = (0..TOOLS)
        .map(|i| {
            json!({
                "name": format!("lookup_{i}"),
                "description": "Look a record up.",
                "inputSchema": {
                    "type": "object",
                    "properties": { "id": { "type": "string" }, "limit": { "type": "integer" } },
                    "required": ["id", "limit"]
                },
                "annotations": { "readOnlyHint": true }
            })
        })
        .collect();
    json!({ "tools": tools })
}

/// The text of every call result: about 1 KiB of JSON-RPC in all.
fn payload() -> String {
    "x".repeat(900)
}

async fn handle(body: Bytes) -> Response {
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "bad json").into_response();
    };
    let Some(id) = msg.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match msg.get("method").and_then(Value::as_str) {
        Some("initialize") => json!({
            "protocolVersion": msg.pointer("/params/protocolVersion").and_then(Value::as_str).unwrap_or("2025-06-18"),
            "capabilities": { "tools": {} },
            "serverInfo": { "name": "bench-upstream", "version": "1" }
        }),
        Some("tools/list") => tools(),
        Some("tools/call") => {
            json!({ "content": [{ "type": "text", "text": payload() }], "isError": false })
        }
        Some("ping") => json!({}),
        _ => {
            let body = json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32601, "message": "no such method" } });
            return json_response(body.to_string());
        }
    };
    json_response(json!({ "jsonrpc": "2.0", "id": id, "result": result }).to_string())
}

fn json_response(body: String) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Serves until the process ends.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening {}", listener.local_addr()?);
    axum::serve(listener, Router::new().route("/mcp", post(handle))).await?;
    Ok(())
}
