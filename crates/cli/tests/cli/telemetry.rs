//! `warden serve` with `[telemetry]`: a request becomes a trace over
//! OTLP/HTTP — one span for the request and one per phase, children of it —
//! and no span carries a token or an argument.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{free_port, init, wait_for_port, warden};

/// Every span the collector received, flattened.
fn spans(bodies: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for b in bodies {
        for rs in b["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let mut s = s.clone();
                    s["service"] = rs["resource"]["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|a| a["key"] == "service.name")
                        .map_or(Value::Null, |a| a["value"]["stringValue"].clone());
                    out.push(s);
                }
            }
        }
    }
    out
}

fn attribute(span: &Value, key: &str) -> Value {
    span["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["key"] == key)
        .map_or(Value::Null, |a| a["value"].clone())
}

#[test]
fn a_request_is_a_trace_with_one_span_per_phase() {
    warden_gateway::install_crypto_provider();
    let (_tmp, dir) = init();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A collector: OTLP/HTTP with JSON bodies.
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let raw: Arc<Mutex<String>> = Arc::default();
    let collector = {
        let (received, raw) = (received.clone(), raw.clone());
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/v1/traces",
                axum::routing::post(move |body: String| {
                    let (received, raw) = (received.clone(), raw.clone());
                    async move {
                        raw.lock().unwrap().push_str(&body);
                        received
                            .lock()
                            .unwrap()
                            .push(serde_json::from_str(&body).unwrap());
                        "{}"
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            addr
        })
    };
    let crm = rt
        .block_on(warden_example::serve_http(
            warden_example::Service::Crm,
            ([127, 0, 0, 1], 0).into(),
        ))
        .unwrap();
    let (port, admin) = (free_port(), free_port());
    let config = std::fs::read_to_string(dir.join("warden.toml"))
        .unwrap()
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{admin}"));
    std::fs::write(
        dir.join("warden.toml"),
        format!(
            "{config}\n[telemetry]\notlp_endpoint = \"http://{collector}\"\nservice_name = \"warden-test\"\n\n[[upstreams]]\nname = \"crm\"\nurl = \"{}\"\n",
            crm.url()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("policies/bot.cedar"),
        r#"permit(principal == Warden::Agent::"bot", action == Warden::Action::"crm/get_customer", resource);
permit(principal == Warden::Agent::"bot", action == Warden::Action::"connect", resource);"#,
    )
    .unwrap();
    assert_eq!(warden(&dir, &["agent", "create", "bot"]).code, 0);
    let token = warden(&dir, &["token", "issue", "--agent", "bot"])
        .stdout
        .trim()
        .to_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("serve")
        .current_dir(&dir)
        .env("WARDEN_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port);
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"crm.get_customer","arguments":{"id":"c-secret-77"}}}"#;
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/mcp"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(call)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status.as_u16(), 200);
    // A clean stop flushes the batched spans.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let all = spans(&received.lock().unwrap());
        if all.iter().any(|s| s["name"] == "forward") || Instant::now() > deadline {
            break all;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let call_span = spans
        .iter()
        .find(|s| {
            s["name"] == "mcp request" && attribute(s, "method")["stringValue"] == "tools/call"
        })
        .unwrap_or_else(|| panic!("no request span: {spans:#?}"));
    assert_eq!(call_span["service"], "warden-test");
    assert_eq!(call_span["kind"], 2, "a server span");
    assert_eq!(attribute(call_span, "agent")["stringValue"], "bot");
    assert_eq!(attribute(call_span, "decision")["stringValue"], "allow");
    let request_id = attribute(call_span, "request_id")["stringValue"].clone();
    assert!(request_id.is_string());
    for phase in ["authenticate", "authorize", "audit_commit", "forward"] {
        let child = spans
            .iter()
            .find(|s| s["name"] == phase && s["traceId"] == call_span["traceId"])
            .unwrap_or_else(|| panic!("no {phase} span in the trace: {spans:#?}"));
        assert_eq!(child["parentSpanId"], call_span["spanId"], "{phase}");
    }
    let raw = raw.lock().unwrap();
    assert!(
        !raw.contains("c-secret-77"),
        "an argument reached the traces"
    );
    assert!(!raw.contains(&token[..40]), "a token reached the traces");
}
