//! Audit sinks: every record reaches a file and an HTTP endpoint as OCSF
//! events, in order, none lost while the endpoint fails, and requests never
//! wait for a sink.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::harness::{Options, harness_with};

/// An endpoint that refuses the first `fail` POSTs; the lines and the
/// `Authorization` headers it accepted.
#[derive(Clone, Default)]
struct Siem {
    lines: Arc<Mutex<Vec<Value>>>,
    auth: Arc<Mutex<Vec<String>>>,
    refused: Arc<Mutex<u32>>,
}

async fn siem(fail: u32) -> (Siem, String) {
    let s = Siem::default();
    let state = s.clone();
    let app = axum::Router::new().route(
        "/ingest",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let s = state.clone();
            async move {
                {
                    let mut refused = s.refused.lock().unwrap();
                    if *refused < fail {
                        *refused += 1;
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                }
                s.auth.lock().unwrap().push(
                    headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned(),
                );
                let mut lines = s.lines.lock().unwrap();
                for l in body.lines() {
                    lines.push(serde_json::from_str(l).unwrap());
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (s, url)
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["metadata"]["sequence"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn every_record_reaches_the_sinks_in_order_through_an_outage() {
    let (siem, url) = siem(2).await;
    let token_dir = tempfile::tempdir().unwrap();
    let token = token_dir.path().join("siem.token");
    std::fs::write(&token, "siem-token-123\n").unwrap();
    let h = harness_with(
        r#"permit(principal, action in Warden::Action::"call_tool", resource);"#,
        Options {
            extra_upstreams: format!(
                "[[audit.sinks]]\nname = \"file\"\npath = \"siem/ocsf.jsonl\"\nbatch = 2\n\
                 [[audit.sinks]]\nname = \"http\"\nurl = \"{url}\"\ntoken_file = \"{}\"\n",
                token.display()
            ),
            ..Default::default()
        },
    )
    .await;
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_customer","arguments":{"id":"c-1"}}}"#;
    // Requests are answered while the endpoint refuses.
    for _ in 0..5 {
        let started = Instant::now();
        let (status, _, body) = h.post("/mcp/crm", Some(&h.token("a")), call).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "held up by the sink"
        );
    }
    h.records().await;
    let head = h.store.audit_head().await.unwrap().seq;
    assert!(head >= 10, "{head}");
    let file = h.dir.path().join("siem/ocsf.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let in_file: Vec<Value> = std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let posted = siem.lines.lock().unwrap().clone();
        // A batch's cursor is saved after the sink has taken it: wait for
        // both, so that the durable cursors are checked once they can be.
        let cursors = (
            h.store.sink_cursor("file").await.unwrap(),
            h.store.sink_cursor("http").await.unwrap(),
        );
        if seqs(&in_file).len() as u64 >= head
            && seqs(&posted).len() as u64 >= head
            && cursors.0 >= head
            && cursors.1 >= head
        {
            let want: Vec<u64> = (1..=head).collect();
            assert_eq!(
                seqs(&in_file)[..head as usize],
                want[..],
                "file: in order, none twice"
            );
            assert_eq!(
                seqs(&posted)[..head as usize],
                want[..],
                "http: in order, none lost"
            );
            assert!(in_file.iter().all(|e| e["metadata"]["version"] == "1.3.0"));
            assert!(in_file.iter().any(|e| e["class_uid"] == 6003
                && e["api"]["operation"] == "tools/call"
                && e["disposition"] == "Allowed"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sinks lag: file {}, http {} of {head}, cursors {cursors:?}",
            in_file.len(),
            posted.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(*siem.refused.lock().unwrap(), 2, "the outage was retried");
    assert!(
        siem.auth
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer siem-token-123")
    );
    // The cursors are durable: read again, from the store.
    assert!(h.store.sink_cursor("file").await.unwrap() >= head);
    assert!(h.store.sink_cursor("http").await.unwrap() >= head);
}
