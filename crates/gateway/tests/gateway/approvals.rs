//! Held actions (G4): payload-bound, single-use, reviewed by humans, and the
//! attacks on them — payload swap, replay, double execution, expiry.

use serde_json::Value;
use warden_approval::{Approval, Reviewer, State, Verdict};
use warden_core::AgentState;

use crate::harness::{Harness, harness, tenant};

const POLICY: &str = r#"
@id("change-needs-approval") @approval("required") @reason("customer changes need an approver")
permit(principal == Warden::Agent::"a", action == Warden::Action::"crm/update_customer", resource);
"#;

fn update(args: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"update_customer","arguments":{args}}}}}"#
    )
}

/// The approval id a held answer names.
fn held_id(body: &Value) -> String {
    assert_eq!(body["result"]["isError"], true, "{body}");
    body["result"]["_meta"]["warden/approval"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

async fn approve(h: &Harness, id: &str, reviewer: &str) -> Approval {
    let mut a = h.store.approval(&tenant(), id).await.unwrap().unwrap();
    let revision = a.revision;
    let who = Reviewer {
        name: reviewer.into(),
        is_approver: true,
        tenant: "default".into(),
        groups: Vec::new(),
    };
    a.review(&who, Verdict::Approve, Some("ok".into()), now())
        .unwrap();
    assert!(h.store.update_approval(&a, revision).await.unwrap());
    a
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_held_call_runs_once_after_approval_with_exactly_its_payload() {
    let h = harness(POLICY).await;
    let token = h.token("a");
    let args = r#"{"id":"c-1","email":"new@example.com"}"#;
    let (status, _, body) = h.post("/mcp/crm", Some(&token), update(args)).await;
    assert_eq!(status, 200);
    let id = held_id(&body);
    assert_eq!(h.crm.calls.get(), 0, "held, not run");
    let stored = h.store.approval(&tenant(), &id).await.unwrap().unwrap();
    assert_eq!(stored.state, State::Pending);
    assert_eq!(
        stored.request.arguments,
        r#"{"email":"new@example.com","id":"c-1"}"#
    );
    assert_eq!(stored.request.policies, ["change-needs-approval"]);
    assert!(!stored.request.tool_digest.is_empty());
    // Retrying before approval: the same approval, still held.
    let (_, _, body) = h.post("/mcp/crm", Some(&token), update(args)).await;
    assert_eq!(held_id(&body), id);
    approve(&h, &id, "ann").await;
    // A different payload is not covered: a new approval.
    let (_, _, body) = h
        .post(
            "/mcp/crm",
            Some(&token),
            update(r#"{"id":"c-1","email":"evil@attacker.test"}"#),
        )
        .await;
    assert_ne!(
        held_id(&body),
        id,
        "the payload swap needs its own approval"
    );
    assert_eq!(h.crm.calls.get(), 0);
    // The same payload with its keys reordered: the same canonical form, runs.
    let (status, _, body) = h
        .post(
            "/mcp/crm",
            Some(&token),
            update(r#"{"email":"new@example.com","id":"c-1"}"#),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        body["result"].is_object() && body["result"]["isError"] != true,
        "{body}"
    );
    assert_eq!(h.crm.calls.get(), 1);
    assert_eq!(
        h.store
            .approval(&tenant(), &id)
            .await
            .unwrap()
            .unwrap()
            .state,
        State::Executed
    );
    // Replayed after execution: held again under a new approval, not run.
    let (_, _, body) = h.post("/mcp/crm", Some(&token), update(args)).await;
    assert_ne!(held_id(&body), id);
    assert_eq!(h.crm.calls.get(), 1);
    // The records name the approval.
    let records = h.requests().await;
    let ran = records
        .iter()
        .find(|r| {
            r.approval.as_deref() == Some(id.as_str())
                && r.decision.effect == warden_core::Effect::Allow
        })
        .unwrap();
    assert!(
        ran.decision
            .reasons
            .iter()
            .any(|r| r.contains("approved by ann")),
        "{ran:?}"
    );
}

#[tokio::test]
async fn concurrent_retries_execute_exactly_once() {
    let h = harness(POLICY).await;
    let token = h.token("a");
    let args = r#"{"id":"c-2","email":"x@example.com"}"#;
    let (_, _, body) = h.post("/mcp/crm", Some(&token), update(args)).await;
    let id = held_id(&body);
    approve(&h, &id, "ann").await;
    let tries = (0..8).map(|_| h.post("/mcp/crm", Some(&token), update(args)));
    let answers = futures_util::future::join_all(tries).await;
    let ran = answers
        .iter()
        .filter(|(_, _, b)| b["result"].is_object() && b["result"]["isError"] != true)
        .count();
    assert_eq!(ran, 1, "{answers:?}");
    assert_eq!(h.crm.calls.get(), 1, "exactly one upstream call");
}

#[tokio::test]
async fn an_expired_approval_or_a_suspended_agent_runs_nothing() {
    let h = harness(POLICY).await;
    let token = h.token("a");
    let args = r#"{"id":"c-3","email":"y@example.com"}"#;
    let (_, _, body) = h.post("/mcp/crm", Some(&token), update(args)).await;
    let id = held_id(&body);
    let mut a = approve(&h, &id, "ann").await;
    // Suspended: refused before any approval is looked at.
    h.set_state("a", AgentState::Suspended).await;
    assert_eq!(h.post("/mcp/crm", Some(&token), update(args)).await.0, 401);
    h.set_state("a", AgentState::Active).await;
    // Its time runs out: the retry is held under a new approval.
    let revision = a.revision;
    a.expires_at = now() - 1;
    a.revision += 1;
    assert!(h.store.update_approval(&a, revision).await.unwrap());
    let (_, _, body) = h.post("/mcp/crm", Some(&token), update(args)).await;
    assert_ne!(held_id(&body), id);
    assert_eq!(h.crm.calls.get(), 0);
    assert_eq!(
        h.store
            .approval(&tenant(), &id)
            .await
            .unwrap()
            .unwrap()
            .state,
        State::Expired
    );
}

#[tokio::test]
async fn approvers_decide_through_the_admin_api() {
    let h = harness(POLICY).await;
    let token = h.token("a");
    let args = r#"{"id":"c-4","email":"z@example.com"}"#;
    let (_, _, body) = h.post("/mcp/crm", Some(&token), update(args)).await;
    let id = held_id(&body);
    for (name, role) in [("ann", "approver"), ("mo", "member")] {
        h.store
            .create_user(&tenant(), &warden_core::UserName::new(name).unwrap(), role)
            .await
            .unwrap();
    }
    let user_token = |name: &str, role| {
        h.issuer
            .issue_user(
                &tenant(),
                &warden_core::UserName::new(name).unwrap(),
                role,
                std::time::Duration::from_secs(60),
            )
            .unwrap()
            .token
    };
    let ann = user_token("ann", warden_identity::UserRole::Approver);
    let mo = user_token("mo", warden_identity::UserRole::Member);
    // Approvers and operators read the inbox; agents do not.
    let inbox = h.admin_json("/v1/approvals", &ann).await;
    assert_eq!(inbox["approvals"][0]["id"], id.as_str());
    assert_eq!(
        inbox["approvals"][0]["request"]["arguments"],
        r#"{"email":"z@example.com","id":"c-4"}"#
    );
    let post = |path: String, bearer: String, body: &'static str| {
        let url = format!("http://{}{path}", h.admin);
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(bearer)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let approve = format!("/v1/approvals/{id}/approve");
    assert_eq!(
        post(approve.clone(), token.clone(), "").await,
        401,
        "an agent token"
    );
    assert_eq!(post(approve.clone(), mo.clone(), "").await, 409, "a member");
    assert_eq!(
        post(format!("/v1/approvals/{id}/deny"), ann.clone(), "{}").await,
        400,
        "a denial needs a reason"
    );
    assert_eq!(
        post("/v1/approvals/nope/approve".into(), ann.clone(), "").await,
        404
    );
    assert_eq!(
        post(
            approve.clone(),
            ann.clone(),
            r#"{"reason":"checked with the customer"}"#
        )
        .await,
        200
    );
    assert_eq!(post(approve, ann.clone(), "").await, 409, "decided already");
    let (status, _, body) = h.post("/mcp/crm", Some(&token), update(args)).await;
    assert_eq!(status, 200);
    assert!(body["result"]["isError"] != true, "{body}");
    assert_eq!(h.crm.calls.get(), 1);
    let records = h.records().await;
    assert!(
        records
            .iter()
            .any(|r| r.method.as_deref() == Some("approval.approve")
                && r.approval.as_deref() == Some(id.as_str())
                && r.user.as_deref() == Some("user:ann"))
    );
}

#[tokio::test]
async fn in_wait_mode_the_call_is_held_open_until_it_is_decided() {
    let h = crate::harness::harness_with(
        POLICY,
        crate::harness::Options {
            crm_extra: "approval = \"wait\"\napproval_timeout = \"6s\"\n",
            ..Default::default()
        },
    )
    .await;
    let h = std::sync::Arc::new(h);
    let token = h.token("a");
    // Approved while the call waits: the same call completes, once.
    let args = r#"{"id":"c-5","email":"w@example.com"}"#;
    let call = {
        let (h, token) = (h.clone(), token.clone());
        tokio::spawn(async move { h.post("/mcp/crm", Some(&token), update(args)).await })
    };
    let id = loop {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if let Some(a) = h
            .store
            .list_approvals(&tenant(), true)
            .await
            .unwrap()
            .first()
        {
            break a.id.clone();
        }
    };
    assert_eq!(h.crm.calls.get(), 0);
    approve(&h, &id, "ann").await;
    let (status, _, body) = call.await.unwrap();
    assert_eq!(status, 200);
    assert!(
        body["result"].is_object() && body["result"]["isError"] != true,
        "{body}"
    );
    assert_eq!(h.crm.calls.get(), 1);
    // Denied while it waits: refused, with the reviewer's reason.
    let args = r#"{"id":"c-6","email":"d@example.com"}"#;
    let call = {
        let (h, token) = (h.clone(), token.clone());
        tokio::spawn(async move { h.post("/mcp/crm", Some(&token), update(args)).await })
    };
    let id = loop {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if let Some(a) = h
            .store
            .list_approvals(&tenant(), true)
            .await
            .unwrap()
            .first()
        {
            break a.id.clone();
        }
    };
    let mut a = h.store.approval(&tenant(), &id).await.unwrap().unwrap();
    let revision = a.revision;
    let bob = Reviewer {
        name: "bob".into(),
        is_approver: true,
        tenant: "default".into(),
        groups: Vec::new(),
    };
    a.review(&bob, Verdict::Deny, Some("wrong customer".into()), now())
        .unwrap();
    assert!(h.store.update_approval(&a, revision).await.unwrap());
    let (_, _, body) = call.await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("wrong customer"), "{body}");
    // Nobody decides in time: the held answer, and nothing ran.
    let (_, _, body) = h
        .post(
            "/mcp/crm",
            Some(&token),
            update(r#"{"id":"c-7","email":"t@example.com"}"#),
        )
        .await;
    held_id(&body);
    assert_eq!(h.crm.calls.get(), 1);
}

#[tokio::test]
async fn an_approval_does_not_cover_another_policy_version() {
    let h = harness(POLICY).await;
    let token = h.token("a");
    let args = r#"{"id":"c-8","email":"v@example.com"}"#;
    let (_, _, body) = h.post("/mcp/crm", Some(&token), update(args)).await;
    let id = held_id(&body);
    approve(&h, &id, "ann").await;
    // The policies change (same rule, another version) before the retry.
    let before = h.gateway.policy().engine().unwrap().version().to_owned();
    h.write_policy(&format!("{POLICY}\n// reviewed\n"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while h.gateway.policy().engine().unwrap().version() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the new policies were not loaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, _, body) = h.post("/mcp/crm", Some(&token), update(args)).await;
    assert_ne!(held_id(&body), id, "a new approval for the new version");
    assert_eq!(
        h.crm.calls.get(),
        0,
        "not run under a policy version nobody approved it for"
    );
}

#[tokio::test]
async fn a_threshold_waits_for_an_approver_from_the_named_group() {
    let h = harness(
        r#"
@id("change-needs-finance") @approval("required") @approvers("finance")
permit(principal == Warden::Agent::"a", action == Warden::Action::"crm/update_customer", resource);
"#,
    )
    .await;
    let token = h.token("a");
    let args = r#"{"id":"c-8","email":"g@example.com"}"#;
    let (_, _, body) = h.post("/mcp/crm", Some(&token), update(args)).await;
    let text = body["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("one from each of: finance"), "{text}");
    let id = held_id(&body);
    let mut tokens = Vec::new();
    for (name, groups) in [("ann", vec![]), ("fin", vec!["finance".to_owned()])] {
        let n = warden_core::UserName::new(name).unwrap();
        h.store
            .create_user(&tenant(), &n, "approver")
            .await
            .unwrap();
        h.store
            .set_user_groups(&tenant(), &n, &groups)
            .await
            .unwrap();
        tokens.push(
            h.issuer
                .issue_user(
                    &tenant(),
                    &n,
                    warden_identity::UserRole::Approver,
                    std::time::Duration::from_secs(60),
                )
                .unwrap()
                .token,
        );
    }
    let approve = |bearer: String| {
        let url = format!("http://{}/v1/approvals/{id}/approve", h.admin);
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .bearer_auth(bearer)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Approval>().await.unwrap()
        }
    };
    // An approver outside finance: recorded, still pending, nothing runs.
    let a = approve(tokens[0].clone()).await;
    assert_eq!(a.state, State::Pending);
    assert_eq!(a.missing_groups(), ["finance"]);
    let (_, _, body) = h.post("/mcp/crm", Some(&token), update(args)).await;
    assert_eq!(held_id(&body), id);
    assert_eq!(h.crm.calls.get(), 0);
    // The finance approver completes it; the call runs once.
    let a = approve(tokens[1].clone()).await;
    assert_eq!(a.state, State::Approved);
    assert_eq!(a.reviews[1].groups, ["finance"]);
    let (_, _, body) = h.post("/mcp/crm", Some(&token), update(args)).await;
    assert!(body["result"]["isError"] != true, "{body}");
    assert_eq!(h.crm.calls.get(), 1);
}
