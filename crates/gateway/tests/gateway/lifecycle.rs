//! An approval's life beyond one request: webhook events for every
//! transition (HMAC-signed, retried), expiry recorded by the sweeper, and a
//! pending approval surviving a restart.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use warden_approval::{Reviewer, State, Verdict};
use warden_audit::RecordKind;

use crate::harness::{Harness, Options, harness_with, tenant};

const POLICY: &str = r#"
@id("change-needs-approval") @approval("required") @reason("customer changes need an approver")
permit(principal == Warden::Agent::"a", action == Warden::Action::"crm/update_customer", resource);
"#;

const SECRET: &str = "webhook-secret-0123456789";

fn update(args: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"update_customer","arguments":{args}}}}}"#
    )
}

async fn held(h: &Harness, args: &str) -> String {
    let (_, _, body) = h.post("/mcp/crm", Some(&h.token("a")), update(args)).await;
    body["result"]["_meta"]["warden/approval"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

async fn approve(h: &Harness, id: &str) {
    h.approve_as(id, "ann").await;
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A webhook receiver that fails its first `fail_first` deliveries.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    answered: Arc<Mutex<u32>>,
}

async fn receiver(fail_first: u32) -> (Receiver, String) {
    let r = Receiver::default();
    let state = r.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let mut n = state.answered.lock().unwrap();
                *n += 1;
                if *n <= fail_first {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                state.got.lock().unwrap().push((headers, body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, url)
}

impl Receiver {
    /// The events received so far: (type, state, body), after checking
    /// each signature.
    fn events(&self) -> Vec<(String, String, Value)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(headers, body)| {
                let h = |k: &str| headers[k].to_str().unwrap().to_owned();
                let (id, ts) = (h("warden-webhook-id"), h("warden-webhook-timestamp"));
                let expected = warden_gateway::notify::signature(
                    SECRET.as_bytes(),
                    &id,
                    ts.parse().unwrap(),
                    body,
                );
                assert_eq!(h("warden-signature"), expected, "signed");
                let v: Value = serde_json::from_str(body).unwrap();
                assert_eq!(v["id"], id.as_str());
                (
                    v["type"].as_str().unwrap().to_owned(),
                    v["approval"]["state"].as_str().unwrap().to_owned(),
                    v,
                )
            })
            .collect()
    }

    async fn wait_for(&self, n: usize) -> Vec<(String, String, Value)> {
        for _ in 0..100 {
            if self.got.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.events()
    }
}

async fn with_webhook(url: &str, secret_dir: &std::path::Path) -> Harness {
    with_webhook_tries(url, secret_dir, 10).await
}

async fn with_webhook_tries(url: &str, secret_dir: &std::path::Path, tries: u32) -> Harness {
    let secret = secret_dir.join("hook.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let extra = format!(
        "[approvals]\nsweep_interval = \"200ms\"\n[[webhooks]]\nname = \"chat\"\nurl = \"{url}\"\nsecret_file = \"{}\"\nmax_attempts = {tries}\n",
        secret.display()
    );
    harness_with(
        POLICY,
        Options {
            extra_upstreams: extra,
            ..Default::default()
        },
    )
    .await
}

#[tokio::test]
async fn every_transition_is_a_signed_webhook_event_retried_until_delivered() {
    let (r, url) = receiver(1).await;
    let secrets = tempfile::tempdir().unwrap();
    let h = with_webhook(&url, secrets.path()).await;
    let args = r#"{"id":"c-1","email":"new@example.com"}"#;
    let id = held(&h, args).await;
    // The first delivery fails (503); the retry a second later lands.
    let events = r.wait_for(1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(*r.answered.lock().unwrap(), 2, "one failure, one retry");
    let (kind, state, body) = &events[0];
    assert_eq!(
        (kind.as_str(), state.as_str()),
        ("approval.created", "pending")
    );
    assert_eq!(body["approval"]["id"], id.as_str());
    assert_eq!(body["approval"]["upstream"], "crm");
    assert!(
        body["console_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/console/approvals/{id}"))
    );
    // The arguments stay in Warden: only their digest travels.
    assert!(!body.to_string().contains("new@example.com"), "{body}");

    approve(&h, &id).await;
    // Reviewed through the store directly, so no event yet; through the
    // admin API or the console there is one (see below). Execute it.
    let (_, _, answer) = h.post("/mcp/crm", Some(&h.token("a")), update(args)).await;
    assert_ne!(answer["result"]["isError"], true, "{answer}");
    let events = r.wait_for(2).await;
    assert_eq!(events[1].0, "approval.executed");
    assert_eq!(events[1].1, "executed");

    // A decision through the admin API is an event too.
    let id2 = held(&h, r#"{"id":"c-2","email":"x@example.com"}"#).await;
    h.store
        .create_user(
            &tenant(),
            &warden_core::UserName::new("bob").unwrap(),
            "approver",
        )
        .await
        .unwrap();
    let bob = h
        .issuer
        .issue_user(
            &tenant(),
            &warden_core::UserName::new("bob").unwrap(),
            warden_identity::UserRole::Approver,
            std::time::Duration::from_secs(60),
        )
        .unwrap()
        .token;
    let status = reqwest::Client::new()
        .post(format!("http://{}/v1/approvals/{id2}/deny", h.admin))
        .bearer_auth(bob)
        .body(r#"{"reason":"not this customer"}"#)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let events = r.wait_for(4).await;
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|(k, s, _)| (k.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("approval.created", "pending"),
            ("approval.executed", "executed"),
            ("approval.created", "pending"),
            ("approval.decided", "denied"),
        ]
    );
    assert_eq!(
        events[3].2["approval"]["reviews"][0]["reason"],
        "not this customer"
    );
}

#[tokio::test]
async fn an_event_never_delivered_is_given_up_loudly_not_silently() {
    let (r, url) = receiver(u32::MAX).await;
    let secrets = tempfile::tempdir().unwrap();
    let h = with_webhook_tries(&url, secrets.path(), 2).await;
    held(&h, r#"{"id":"c-5","email":"f@example.com"}"#).await;
    // The failure is recorded, then the event marked failed: wait for both.
    let mut failures = Vec::new();
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        failures = h
            .records()
            .await
            .into_iter()
            .filter(|r| r.method.as_deref() == Some("webhook.failed"))
            .collect();
        let due = h.store.due_events(u64::MAX / 2, 10).await.unwrap();
        if !failures.is_empty() && due.is_empty() {
            break;
        }
    }
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].agent.as_deref(), Some("webhook:chat"));
    assert!(
        failures[0].decision.reasons[0].contains("after 2 attempts"),
        "{:?}",
        failures[0].decision.reasons
    );
    assert_eq!(*r.answered.lock().unwrap(), 2);
    // Kept in the outbox as failed, not retried any more.
    assert!(
        h.store
            .due_events(u64::MAX / 2, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_expired_approval_is_recorded_once_as_a_denial_and_announced() {
    let (r, url) = receiver(0).await;
    let secrets = tempfile::tempdir().unwrap();
    let h = with_webhook(&url, secrets.path()).await;
    let id = held(&h, r#"{"id":"c-3","email":"e@example.com"}"#).await;
    let mut a = h.store.approval(&tenant(), &id).await.unwrap().unwrap();
    let revision = a.revision;
    a.expires_at = now() - 1;
    a.revision += 1;
    assert!(h.store.update_approval(&a, revision).await.unwrap());
    // The sweeper (every 200 ms here) records it.
    let events = r.wait_for(2).await;
    assert_eq!(events[1].0, "approval.decided");
    assert_eq!(events[1].1, "expired");
    let stored = h.store.approval(&tenant(), &id).await.unwrap().unwrap();
    assert_eq!(stored.state, State::Expired);
    // Exactly one audit record of the expiry, a denial naming the approval.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let expiries: Vec<_> = h
        .records()
        .await
        .into_iter()
        .filter(|r| r.kind == RecordKind::Admin && r.method.as_deref() == Some("approval.expire"))
        .collect();
    assert_eq!(expiries.len(), 1, "{expiries:?}");
    assert_eq!(expiries[0].approval.as_deref(), Some(id.as_str()));
    assert_eq!(expiries[0].decision.effect, warden_core::Effect::Deny);
    // Approving it now is refused.
    let mut late = stored.clone();
    let ann = Reviewer {
        name: "ann".into(),
        is_approver: true,
        tenant: "default".into(),
        groups: Vec::new(),
    };
    assert!(late.review(&ann, Verdict::Approve, None, now()).is_err());
}

#[tokio::test]
async fn a_pending_approval_survives_a_restart_and_runs_once() {
    let mut h = harness_with(POLICY, Options::default()).await;
    let args = r#"{"id":"c-4","email":"r@example.com"}"#;
    let id = held(&h, args).await;
    h.restart().await;
    let a = h.store.approval(&tenant(), &id).await.unwrap().unwrap();
    assert_eq!(a.state, State::Pending, "kept across the restart");
    // Still held after the restart: the same approval.
    assert_eq!(held(&h, args).await, id);
    approve(&h, &id).await;
    h.restart().await;
    let (_, _, answer) = h.post("/mcp/crm", Some(&h.token("a")), update(args)).await;
    assert_ne!(answer["result"]["isError"], true, "{answer}");
    assert_eq!(h.crm.calls.get(), 1);
    // And once only, across restarts.
    h.restart().await;
    assert_ne!(held(&h, args).await, id, "a replay needs a new approval");
    assert_eq!(h.crm.calls.get(), 1);
}
