//! The conformance suite every [`Store`] backend must pass, run here against
//! SQLite. A PostgreSQL backend runs the same `suite`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::sync::Arc;

use warden_audit::{ChainHead, verify_chain};
use warden_core::{AgentName, AgentState, TenantId, UpstreamName, UserName};
use warden_store::{
    AuditQuery, CertRecord, LoginLink, NewAgent, NewRecord, OutboxEvent, SecretRef, SqliteStore,
    Store, StoreError, Task,
};

fn tenant(t: &str) -> TenantId {
    TenantId::new(t).unwrap()
}

fn name(n: &str) -> AgentName {
    AgentName::new(n).unwrap()
}

fn new_agent(t: &str, n: &str) -> NewAgent {
    NewAgent {
        tenant: tenant(t),
        name: name(n),
        owner: Some("alice".into()),
        purpose: Some("tests".into()),
    }
}

fn record(i: usize) -> NewRecord {
    format!(
        r#"{{"kind":"request","request_id":"r{i}","time":"2026-01-01T00:00:00Z","endpoint":"/mcp","decision":{{"effect":"deny"}}}}"#
    )
    .into_bytes()
    .into()
}

async fn agents(store: &dyn Store) {
    let a = store.create_agent(new_agent("acme", "bot")).await.unwrap();
    assert_eq!(a.state, AgentState::Active);
    assert_eq!(a.owner.as_deref(), Some("alice"));
    assert!(matches!(
        store.create_agent(new_agent("acme", "bot")).await,
        Err(StoreError::Conflict(_))
    ));
    // The same name in another tenant is another agent.
    store
        .create_agent(new_agent("globex", "bot"))
        .await
        .unwrap();
    store
        .create_agent(new_agent("acme", "alpha"))
        .await
        .unwrap();
    let names: Vec<String> = store
        .list_agents(&tenant("acme"))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name.to_string())
        .collect();
    assert_eq!(names, vec!["alpha", "bot"]);

    let s = store
        .set_agent_state(&tenant("acme"), &name("bot"), AgentState::Suspended)
        .await
        .unwrap();
    assert_eq!(s.state, AgentState::Suspended);
    assert_eq!(
        store
            .agent(&tenant("globex"), &name("bot"))
            .await
            .unwrap()
            .unwrap()
            .state,
        AgentState::Active
    );
    store
        .set_agent_state(&tenant("acme"), &name("bot"), AgentState::Revoked)
        .await
        .unwrap();
    assert!(matches!(
        store
            .set_agent_state(&tenant("acme"), &name("bot"), AgentState::Active)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .set_agent_state(&tenant("acme"), &name("ghost"), AgentState::Active)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        store
            .agent(&tenant("nobody"), &name("bot"))
            .await
            .unwrap()
            .is_none()
    );
}

async fn audit(store: Arc<dyn Store>) {
    assert_eq!(store.audit_head().await.unwrap(), ChainHead::default());
    let seqs = store
        .append_audit(vec![record(1), record(2)])
        .await
        .unwrap();
    assert_eq!(seqs, vec![1, 2]);
    // Concurrent appends form one chain without gaps.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append_audit(vec![record(10 + i), record(100 + i)])
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let entries = store.audit_entries(0, 1000).await.unwrap();
    assert_eq!(entries.len(), 34);
    let report = verify_chain(entries, ChainHead::default()).unwrap();
    assert_eq!(report.head, store.audit_head().await.unwrap());
    let page = store.audit_entries(30, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![31, 32]);
}

async fn catalogs(store: &dyn Store) {
    let crm = UpstreamName::new("crm").unwrap();
    store.save_catalog(&crm, "[]").await.unwrap();
    store.save_catalog(&crm, r#"[{"name":"x"}]"#).await.unwrap();
    assert_eq!(
        store.catalogs().await.unwrap(),
        vec![(crm, r#"[{"name":"x"}]"#.to_owned())]
    );
}

async fn lifecycle(store: &dyn Store) {
    store.create_agent(new_agent("acme", "rot")).await.unwrap();
    let a = store
        .agent(&tenant("acme"), &name("rot"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.rotated_at, None);
    assert!(!a.predates_rotation(0));
    let a = store
        .rotate_agent(&tenant("acme"), &name("rot"))
        .await
        .unwrap();
    let at = a.rotated_at.unwrap();
    assert!(a.predates_rotation(at - 1));
    assert!(!a.predates_rotation(at));
    assert!(matches!(
        store.rotate_agent(&tenant("acme"), &name("ghost")).await,
        Err(StoreError::NotFound(_))
    ));
    // Retired is final, like revoked.
    store
        .set_agent_state(&tenant("acme"), &name("rot"), AgentState::Retired)
        .await
        .unwrap();
    assert!(matches!(
        store
            .set_agent_state(&tenant("acme"), &name("rot"), AgentState::Active)
            .await,
        Err(StoreError::Conflict(_))
    ));
}

async fn certs(store: &dyn Store) {
    let cert = |serial: &str, t: &str, nb: u64| CertRecord {
        serial: serial.into(),
        tenant: tenant(t),
        agent: name("bot"),
        not_before: nb,
        not_after: nb + 3600,
        thumbprint: format!("tp-{serial}"),
        revoked_at: None,
    };
    store.record_cert(cert("01", "acme", 100)).await.unwrap();
    store.record_cert(cert("02", "acme", 200)).await.unwrap();
    store.record_cert(cert("03", "globex", 300)).await.unwrap();
    assert!(
        store.record_cert(cert("01", "acme", 1)).await.is_err(),
        "serials are unique"
    );
    assert_eq!(
        store.cert("02").await.unwrap(),
        Some(cert("02", "acme", 200))
    );
    assert_eq!(store.cert("ff").await.unwrap(), None);
    let listed: Vec<String> = store
        .list_certs(&tenant("acme"), &name("bot"))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.serial)
        .collect();
    assert_eq!(listed, ["02", "01"]);
    let revoked = store.revoke_cert(&tenant("acme"), "01").await.unwrap();
    assert!(revoked.revoked_at.is_some());
    // Revoking again keeps the first time.
    let again = store.revoke_cert(&tenant("acme"), "01").await.unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at);
    // Another tenant's certificate cannot be revoked from here.
    assert!(matches!(
        store.revoke_cert(&tenant("acme"), "03").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        store
            .cert("03")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
}

async fn users(store: &dyn Store) {
    let alice = UserName::new("alice").unwrap();
    let u = store
        .create_user(&tenant("acme"), &alice, "approver")
        .await
        .unwrap();
    assert_eq!((u.role.as_str(), u.active), ("approver", true));
    assert!(matches!(
        store.create_user(&tenant("acme"), &alice, "member").await,
        Err(StoreError::Conflict(_))
    ));
    store
        .create_user(&tenant("globex"), &alice, "member")
        .await
        .unwrap();
    assert_eq!(store.list_users(&tenant("acme")).await.unwrap().len(), 1);
    let off = store
        .set_user_active(&tenant("acme"), &alice, false)
        .await
        .unwrap();
    assert!(!off.active);
    assert!(
        store
            .user(&tenant("globex"), &alice)
            .await
            .unwrap()
            .unwrap()
            .active
    );
    assert_eq!(
        store
            .user(&tenant("acme"), &UserName::new("bob").unwrap())
            .await
            .unwrap(),
        None
    );
    credentials(store, &alice).await;
}

/// Groups, password hashes and one-time login links.
async fn credentials(store: &dyn Store, alice: &UserName) {
    let acme = tenant("acme");
    let bob = UserName::new("bob").unwrap();
    assert!(
        store
            .user(&acme, alice)
            .await
            .unwrap()
            .unwrap()
            .groups
            .is_empty()
    );
    let grouped = store
        .set_user_groups(&acme, alice, &["finance".into(), "security".into()])
        .await
        .unwrap();
    assert_eq!(grouped.groups, ["finance", "security"]);
    assert!(!grouped.has_password);
    assert_eq!(store.user_password(&acme, alice).await.unwrap(), None);
    store
        .set_user_password(&acme, alice, Some("$argon2id$hash"))
        .await
        .unwrap();
    assert_eq!(
        store.user_password(&acme, alice).await.unwrap().as_deref(),
        Some("$argon2id$hash")
    );
    assert!(
        store
            .user(&acme, alice)
            .await
            .unwrap()
            .unwrap()
            .has_password
    );
    // Another tenant's alice is another user.
    assert_eq!(
        store.user_password(&tenant("globex"), alice).await.unwrap(),
        None
    );
    assert!(matches!(
        store.set_user_password(&acme, &bob, Some("x")).await,
        Err(StoreError::NotFound(_))
    ));
    store.set_user_password(&acme, alice, None).await.unwrap();
    assert_eq!(store.user_password(&acme, alice).await.unwrap(), None);

    let link = LoginLink {
        token_sha256: "ab".repeat(32),
        tenant: acme.clone(),
        user: alice.clone(),
        expires_at: 1_000,
    };
    store.create_login_link(&link).await.unwrap();
    // Expired links sign nobody in; a live one signs in exactly once.
    assert_eq!(
        store
            .use_login_link(&link.token_sha256, 1_000)
            .await
            .unwrap(),
        None
    );
    let live = LoginLink {
        token_sha256: "cd".repeat(32),
        expires_at: 2_000,
        ..link
    };
    store.create_login_link(&live).await.unwrap();
    assert_eq!(store.use_login_link("ef", 10).await.unwrap(), None);
    assert_eq!(
        store.use_login_link(&live.token_sha256, 10).await.unwrap(),
        Some((acme.clone(), alice.clone()))
    );
    assert_eq!(
        store.use_login_link(&live.token_sha256, 11).await.unwrap(),
        None
    );
}

async fn secrets(store: &dyn Store) {
    let at = |t: &str, u: Option<&str>| SecretRef {
        tenant: tenant(t),
        upstream: UpstreamName::new("crm").unwrap(),
        user: u.map(|u| UserName::new(u).unwrap()),
    };
    store
        .put_secret(&at("acme", None), vec![1, 2])
        .await
        .unwrap();
    store
        .put_secret(&at("acme", Some("alice")), vec![3])
        .await
        .unwrap();
    store.put_secret(&at("acme", None), vec![4]).await.unwrap();
    assert_eq!(
        store.secret(&at("acme", None)).await.unwrap(),
        Some(vec![4])
    );
    assert_eq!(
        store.secret(&at("acme", Some("alice"))).await.unwrap(),
        Some(vec![3])
    );
    assert_eq!(store.secret(&at("globex", None)).await.unwrap(), None);
    assert_eq!(
        store.list_secrets(&tenant("acme")).await.unwrap(),
        vec![at("acme", None), at("acme", Some("alice"))]
    );
    assert!(store.delete_secret(&at("acme", None)).await.unwrap());
    assert!(!store.delete_secret(&at("acme", None)).await.unwrap());
    assert_ne!(at("acme", None).place(), at("acme", Some("alice")).place());
}

async fn tasks(store: &dyn Store) {
    let task = |t: &str, id: &str| Task {
        id: id.into(),
        tenant: tenant(t),
        agent: name("bot"),
        user: Some(UserName::new("alice").unwrap()),
        purpose: "refund ticket 42".into(),
        tools: vec!["crm/refund".into(), "crm/get_customer".into()],
        created_at: "2026-11-23T10:00:00Z".into(),
        expires_at: 2_000_000_000,
        ended_at: None,
    };
    store.create_task(task("acme", "t1")).await.unwrap();
    assert!(matches!(
        store.create_task(task("acme", "t1")).await,
        Err(StoreError::Conflict(_))
    ));
    store.create_task(task("globex", "t1")).await.unwrap();
    let got = store.task(&tenant("acme"), "t1").await.unwrap().unwrap();
    assert_eq!(got, task("acme", "t1"));
    assert!(got.is_open(1_999_999_999));
    assert!(!got.is_open(2_000_000_000), "expired at its time");
    let ended = store.end_task(&tenant("acme"), "t1").await.unwrap();
    assert!(ended.ended_at.is_some() && !ended.is_open(0));
    assert!(matches!(
        store.end_task(&tenant("acme"), "t1").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.end_task(&tenant("acme"), "nope").await,
        Err(StoreError::NotFound(_))
    ));
    // The other tenant's task of the same id is untouched.
    assert!(
        store
            .task(&tenant("globex"), "t1")
            .await
            .unwrap()
            .unwrap()
            .ended_at
            .is_none()
    );
    assert_eq!(store.list_tasks(&tenant("acme")).await.unwrap().len(), 1);
}

async fn bundles(store: &dyn Store) {
    assert!(store.save_bundle("v1", "{\"a\":1}").await.unwrap());
    assert!(
        !store.save_bundle("v1", "{\"a\":1}").await.unwrap(),
        "kept once"
    );
    assert!(store.save_bundle("v2", "{\"a\":2}").await.unwrap());
    let versions: Vec<String> = store
        .bundles()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.0)
        .collect();
    assert_eq!(versions, ["v2", "v1"], "newest first");
    assert_eq!(
        store.bundle("v1").await.unwrap().as_deref(),
        Some("{\"a\":1}")
    );
    assert_eq!(store.bundle("v3").await.unwrap(), None);
}

async fn approvals(store: &dyn Store) {
    use warden_approval::{Approval, Request, Reviewer, State, Verdict};
    let request = |tenant: &str, args: &str| Request {
        tenant: tenant.into(),
        agent: "bot".into(),
        user: None,
        task: None,
        upstream: "mail".into(),
        tool: "send".into(),
        tool_digest: "d".into(),
        arguments: args.into(),
        arguments_sha256: format!("sha-{args}"),
        policy_version: "v".into(),
        policies: vec![],
        reasons: vec![],
        risk: 0,
        rationale: None,
        side_effects: "persistent".into(),
    };
    let a = Approval::new(
        "ap-1".into(),
        request("acme", "x"),
        warden_core::Approval::Required,
        100,
        900,
    );
    store.create_approval(&a).await.unwrap();
    assert!(store.create_approval(&a).await.is_err(), "ids are unique");
    store
        .create_approval(&Approval::new(
            "ap-2".into(),
            request("globex", "x"),
            warden_core::Approval::Required,
            100,
            900,
        ))
        .await
        .unwrap();
    assert_eq!(
        store.approval(&tenant("acme"), "ap-1").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        store.approval(&tenant("acme"), "ap-2").await.unwrap(),
        None,
        "another tenant's"
    );
    assert_eq!(
        store
            .find_approval(&request("acme", "x"))
            .await
            .unwrap()
            .map(|f| f.id),
        Some("ap-1".into())
    );
    assert_eq!(
        store.find_approval(&request("acme", "y")).await.unwrap(),
        None
    );
    // Two writers start from the same revision: exactly one wins.
    let approver = Reviewer {
        name: "ann".into(),
        is_approver: true,
        tenant: "acme".into(),
        groups: Vec::new(),
    };
    let mut first = a.clone();
    first
        .review(&approver, Verdict::Approve, None, 110)
        .unwrap();
    let mut second = a.clone();
    second.cancel().unwrap();
    assert!(store.update_approval(&first, a.revision).await.unwrap());
    assert!(
        !store.update_approval(&second, a.revision).await.unwrap(),
        "stale revision"
    );
    let stored = store
        .approval(&tenant("acme"), "ap-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, State::Approved);
    assert_eq!(
        store
            .list_approvals(&tenant("acme"), true)
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        store
            .list_approvals(&tenant("acme"), false)
            .await
            .unwrap()
            .len(),
        1
    );
    // Overdue: open (pending or approved) approvals of every tenant whose
    // time is up, soonest first; decided ones are not.
    assert!(store.overdue_approvals(999, 10).await.unwrap().is_empty());
    let overdue: Vec<String> = store
        .overdue_approvals(1_000, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(overdue, ["ap-1", "ap-2"]);
    let mut done = stored.clone();
    done.claim_execution(120).unwrap();
    assert!(store.update_approval(&done, stored.revision).await.unwrap());
    let overdue = store.overdue_approvals(1_000, 10).await.unwrap();
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0].id, "ap-2");
}

/// The delivery queue: due in order, retried later, delivered or failed once.
async fn outbox(store: &dyn Store) {
    let event = |target: &str, body: &str| OutboxEvent {
        target: target.into(),
        tenant: tenant("acme"),
        body: body.into(),
    };
    assert!(store.due_events(100, 10).await.unwrap().is_empty());
    store
        .enqueue_events(&[event("chat", "1"), event("ticket", "2")], 100)
        .await
        .unwrap();
    let due = store.due_events(100, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!((due[0].body.as_str(), due[0].attempts), ("1", 0));
    assert_eq!(store.due_events(100, 1).await.unwrap().len(), 1);
    store.event_retry(due[0].seq, 130, "503").await.unwrap();
    store.event_delivered(due[1].seq, 101).await.unwrap();
    assert!(store.due_events(129, 10).await.unwrap().is_empty());
    let again = store.due_events(130, 10).await.unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 1));
    store
        .event_failed(again[0].seq, 131, "gave up")
        .await
        .unwrap();
    assert!(store.due_events(10_000, 10).await.unwrap().is_empty());
}

/// Checkpoints: one per size, smallest first, the latest at hand.
async fn checkpoints(store: &dyn Store) {
    use warden_store::StoredCheckpoint;
    assert_eq!(store.latest_checkpoint().await.unwrap(), None);
    let cp = |size: u64, note: &str| StoredCheckpoint {
        size,
        time: 100 + size,
        note: note.into(),
        compact: vec![[size as u8; 32]; size.count_ones() as usize],
    };
    store.save_checkpoint(&cp(5, "five")).await.unwrap();
    store.save_checkpoint(&cp(3, "three")).await.unwrap();
    store.save_checkpoint(&cp(5, "another five")).await.unwrap();
    store.save_checkpoint(&cp(0, "empty")).await.unwrap();
    let all = store.checkpoints().await.unwrap();
    assert_eq!(
        all.iter().map(|c| c.note.as_str()).collect::<Vec<_>>(),
        ["empty", "three", "five"]
    );
    assert_eq!(all[2], cp(5, "five"), "kept as written, the first one wins");
    assert_eq!(
        store.latest_checkpoint().await.unwrap(),
        Some(cp(5, "five"))
    );
}

async fn sink_cursors(store: &dyn Store) {
    assert_eq!(store.sink_cursor("siem").await.unwrap(), 0);
    store.set_sink_cursor("siem", 42).await.unwrap();
    store.set_sink_cursor("file", 7).await.unwrap();
    store.set_sink_cursor("siem", 43).await.unwrap();
    assert_eq!(store.sink_cursor("siem").await.unwrap(), 43);
    assert_eq!(store.sink_cursor("file").await.unwrap(), 7);
}

async fn suite(store: Arc<dyn Store>) {
    sink_cursors(store.as_ref()).await;
    checkpoints(store.as_ref()).await;
    outbox(store.as_ref()).await;
    approvals(store.as_ref()).await;
    bundles(store.as_ref()).await;
    tasks(store.as_ref()).await;
    agents(store.as_ref()).await;
    audit(store.clone()).await;
    catalogs(store.as_ref()).await;
    lifecycle(store.as_ref()).await;
    certs(store.as_ref()).await;
    users(store.as_ref()).await;
    secrets(store.as_ref()).await;
}

#[tokio::test]
async fn sqlite_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("w.db").display());
    suite(Arc::new(SqliteStore::open(&url).await.unwrap())).await;
    // Reopening keeps everything and does not migrate twice.
    let again = SqliteStore::open(&url).await.unwrap();
    assert_eq!(again.audit_head().await.unwrap().seq, 34);
}

#[tokio::test]
async fn a_change_to_an_agent_is_seen_at_once_by_every_store_on_the_file() {
    // Two stores on one file: the gateway and a `warden agent suspend` run
    // by an operator, each with the agents it keeps in memory (G9).
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("w.db").display());
    let gateway = SqliteStore::open(&url).await.unwrap();
    let operator = SqliteStore::open(&url).await.unwrap();
    let (t, a) = (tenant("acme"), name("bot"));
    operator
        .create_agent(new_agent("acme", "bot"))
        .await
        .unwrap();
    for (state, expected) in [
        (None, AgentState::Active),
        (Some(AgentState::Suspended), AgentState::Suspended),
        (Some(AgentState::Active), AgentState::Active),
        (Some(AgentState::Revoked), AgentState::Revoked),
    ] {
        if let Some(state) = state {
            operator.set_agent_state(&t, &a, state).await.unwrap();
        }
        // Read twice: the second read is from memory.
        for _ in 0..2 {
            let seen = gateway.agent(&t, &a).await.unwrap().unwrap();
            assert_eq!(seen.state, expected);
        }
    }
    let before = gateway.agent(&t, &a).await.unwrap().unwrap().rotated_at;
    operator.rotate_agent(&t, &a).await.unwrap();
    assert_ne!(
        gateway.agent(&t, &a).await.unwrap().unwrap().rotated_at,
        before
    );
    // An agent created by the other store is found at once, though its
    // absence was read before.
    assert!(gateway.agent(&t, &name("new")).await.unwrap().is_none());
    operator
        .create_agent(new_agent("acme", "new"))
        .await
        .unwrap();
    assert!(gateway.agent(&t, &name("new")).await.unwrap().is_some());

    // An edit around the store (by hand, in SQL) changes no epoch: the kept
    // agent is used at most `KEEP_AT_MOST` (1 s) longer.
    assert_eq!(
        gateway
            .agent(&t, &name("new"))
            .await
            .unwrap()
            .unwrap()
            .state,
        AgentState::Active
    );
    let read = std::time::Instant::now();
    let conn = rusqlite::Connection::open(dir.path().join("w.db")).unwrap();
    conn.execute(
        "UPDATE agents SET state = 'suspended' WHERE name = 'new'",
        [],
    )
    .unwrap();
    let kept = gateway
        .agent(&t, &name("new"))
        .await
        .unwrap()
        .unwrap()
        .state;
    // (Unless this machine stalled past the limit in between.)
    if read.elapsed() < std::time::Duration::from_millis(800) {
        assert_eq!(kept, AgentState::Active, "the agent is kept in memory");
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        gateway
            .agent(&t, &name("new"))
            .await
            .unwrap()
            .unwrap()
            .state,
        AgentState::Suspended
    );
}

#[tokio::test]
async fn a_bad_url_is_a_clear_error() {
    let err = SqliteStore::open("sqlite:///nonexistent-dir/x/y.db")
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("storage error"), "{err}");
    // SQLite's words for the database, not the index's boot file.
    assert!(!err.to_string().contains("index"), "{err}");
}

/// A record with the fields that queries filter on: tenant (`""`: none),
/// agent, user (`""`: none), action, effect, time, kind, request id.
fn rec_json([tenant, agent, user, action, effect, time, kind, id]: [&str; 8]) -> serde_json::Value {
    let mut r = serde_json::json!({
        "kind": kind, "request_id": id, "time": time, "endpoint": "/mcp",
        "agent": agent, "action": action, "decision": { "effect": effect },
    });
    if !tenant.is_empty() {
        r["tenant"] = tenant.into();
    }
    if !user.is_empty() {
        r["user"] = user.into();
    }
    r
}

/// That record as a bare body: the indexer reads its fields from the JSON.
fn rec(fields: [&str; 8]) -> NewRecord {
    serde_json::to_vec(&rec_json(fields)).unwrap().into()
}

/// That record as the gateway writes it: serialized from the record
/// itself, with its fields for the indexer to copy.
fn rec_typed(fields: [&str; 8]) -> NewRecord {
    typed(rec_json(fields))
}

fn typed(json: serde_json::Value) -> NewRecord {
    let record: warden_audit::AuditRecord = serde_json::from_value(json).unwrap();
    NewRecord::of(&record).unwrap()
}

/// The queries over a few records, made by `make` (bare bodies, or
/// records with their fields: the answers are the same).
async fn audit_queries(store: &dyn Store, make: fn([&str; 8]) -> NewRecord) {
    let rec = make;
    store
        .append_audit(vec![
            rec([
                "acme",
                "a",
                "ada",
                "crm/get",
                "allow",
                "2026-11-01T10:00:00Z",
                "request",
                "r1",
            ]),
            rec([
                "acme",
                "a",
                "ada",
                "crm/get",
                "allow",
                "2026-11-01T10:00:00.5Z",
                "outcome",
                "r1",
            ]),
            rec([
                "acme",
                "b",
                "",
                "mail/send",
                "deny",
                "2026-11-02T10:00:00Z",
                "request",
                "r2",
            ]),
            rec([
                "other",
                "a",
                "ada",
                "crm/get",
                "allow",
                "2026-11-03T10:00:00Z",
                "request",
                "r3",
            ]),
            rec([
                "",
                "x",
                "",
                "",
                "deny",
                "2026-11-04T10:00:00Z",
                "request",
                "r4",
            ]),
            rec([
                "acme",
                "a",
                "",
                "mail/send",
                "deny",
                "2026-11-05T10:00:00Z",
                "request",
                "r5",
            ]),
        ])
        .await
        .unwrap();
    let acme = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            tenant: Some("acme".into()),
            limit: 100,
            ..AuditQuery::default()
        };
        f(&mut q);
        q
    };
    let seqs = |q: AuditQuery| async move {
        store
            .query_audit(&q)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        seqs(acme(|_| ())).await,
        [6, 3, 2, 1],
        "newest first, one tenant"
    );
    assert_eq!(seqs(acme(|q| q.unattributed = true)).await, [6, 5, 3, 2, 1]);
    assert_eq!(seqs(acme(|q| q.agent = Some("a".into()))).await, [6, 2, 1]);
    assert_eq!(seqs(acme(|q| q.user = Some("ada".into()))).await, [2, 1]);
    assert_eq!(
        seqs(acme(|q| q.action = Some("mail/send".into()))).await,
        [6, 3]
    );
    assert_eq!(seqs(acme(|q| q.effect = Some("deny".into()))).await, [6, 3]);
    assert_eq!(
        seqs(acme(|q| q.effect = Some("allow".into()))).await,
        [2, 1]
    );
    assert_eq!(
        seqs(acme(|q| {
            q.effect = Some("deny".into());
            q.unattributed = true;
        }))
        .await,
        [6, 5, 3]
    );
    assert_eq!(
        seqs(acme(|q| q.effect = Some("Deny".into()))).await,
        Vec::<u64>::new(),
        "effects are compared exactly"
    );
    assert_eq!(
        seqs(AuditQuery {
            effect: Some("deny".into()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await,
        [6, 5, 3],
        "every tenant's"
    );
    assert_eq!(seqs(acme(|q| q.kind = Some("outcome".into()))).await, [2]);
    assert_eq!(
        seqs(acme(|q| q.request_id = Some("r1".into()))).await,
        [2, 1]
    );
    assert_eq!(
        seqs(acme(|q| q.request_id = Some("r3".into()))).await,
        Vec::<u64>::new(),
        "another tenant's"
    );
    // Time bounds compare by the second: 10:00:00.5 is within [10:00:00, 10:00:01).
    let day1 = |q: &mut AuditQuery| {
        q.since = Some("2026-11-01T10:00:00".into());
        q.until = Some("2026-11-01T10:00:01".into());
    };
    assert_eq!(seqs(acme(day1)).await, [2, 1]);
    assert_eq!(
        seqs(acme(|q| q.since = Some("2026-11-02T00:00:00".into()))).await,
        [6, 3]
    );
    assert_eq!(
        seqs(acme(|q| {
            q.before = Some(3);
            q.limit = 1;
        }))
        .await,
        [2],
        "paging"
    );
    // A body that is not JSON (tampered) is indexed by its seq alone and
    // breaks no query.
    store
        .append_audit(vec![b"not json".to_vec().into()])
        .await
        .unwrap();
    assert_eq!(
        seqs(acme(|q| q.unattributed = true)).await,
        [7, 6, 5, 3, 2, 1]
    );
    assert_eq!(
        store.index_audit(100).await.unwrap(),
        0,
        "a query indexes what is missing"
    );
    let all = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    assert_eq!(seqs(all).await.len(), 7);
}

#[tokio::test]
async fn audit_queries_are_served_from_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("w.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    // As the gateway writes them: the indexer copies their fields.
    audit_queries(&store, rec_typed).await;
    let filters: [fn(&mut AuditQuery); 12] = [
        |_| (),
        |q| q.agent = Some("a".into()),
        |q| q.user = Some("u".into()),
        |q| q.action = Some("crm/get".into()),
        |q| q.effect = Some("deny".into()),
        |q| q.effect = Some("allow".into()),
        |q| {
            q.unattributed = true;
            q.effect = Some("deny".into());
        },
        |q| q.since = Some("2026-11-01T00:00:00".into()),
        |q| q.request_id = Some("r1".into()),
        |q| {
            q.unattributed = true;
            q.agent = Some("a".into());
        },
        |q| {
            q.user = Some("u".into());
            q.agent = Some("a".into());
        },
        |q| {
            q.unattributed = true;
            q.user = Some("u".into());
        },
    ];
    for (i, f) in filters.iter().enumerate() {
        let mut q = AuditQuery {
            tenant: Some("acme".into()),
            limit: 50,
            ..AuditQuery::default()
        };
        f(&mut q);
        let plan = store.audit_query_plan(&q).await.unwrap().join(" | ");
        assert!(plan.contains("INDEX audit_by_"), "filter {i}: {plan}");
        assert!(!plan.contains("SCAN "), "filter {i} scans: {plan}");
        if q.effect.as_deref() == Some("deny") {
            // Only the denied records' index serves it.
            assert!(
                plan.contains("INDEX audit_by_effect_deny"),
                "filter {i}: {plan}"
            );
        }
        if q.user.is_some() && q.agent.is_none() {
            // The index of the rows that have a user serves it.
            assert!(
                plan.contains("INDEX audit_by_user_set"),
                "filter {i}: {plan}"
            );
        }
    }
    // An index file made before the by-user and by-effect indexes became
    // partial has the full ones replaced when it is opened.
    drop(store);
    let conn = rusqlite::Connection::open(index_file(&dir.path().join("w.db"))).unwrap();
    conn.execute_batch(
        "DROP INDEX audit_by_user_set; CREATE INDEX audit_by_user ON audit_index (tenant, user);
         DROP INDEX audit_by_effect_deny;
         CREATE INDEX audit_by_effect ON audit_index (tenant, effect)",
    )
    .unwrap();
    drop(conn);
    let reopened = SqliteStore::open(&url).await.unwrap();
    let conn = rusqlite::Connection::open(index_file(&dir.path().join("w.db"))).unwrap();
    let indexes: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index'
             AND (name LIKE 'audit_by_user%' OR name LIKE 'audit_by_effect%') ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(indexes, ["audit_by_effect_deny", "audit_by_user_set"]);
    let by_user = AuditQuery {
        tenant: Some("acme".into()),
        user: Some("ada".into()),
        limit: 50,
        ..AuditQuery::default()
    };
    let found = reopened.query_audit(&by_user).await.unwrap();
    assert_eq!(found.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 1]);
    let plan = reopened
        .audit_query_plan(&by_user)
        .await
        .unwrap()
        .join(" | ");
    assert!(plan.contains("INDEX audit_by_user_set"), "{plan}");
}

/// The query index's own file, beside the database `db`.
fn index_file(db: &std::path::Path) -> std::path::PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-index");
    p.into()
}

/// Every row of the query index of the database `db`, in order.
fn index_rows(db: &std::path::Path) -> Vec<Vec<Option<String>>> {
    let conn = rusqlite::Connection::open(index_file(db)).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT seq, request_id, tenant, agent, user, action, effect, time, kind
             FROM audit_index ORDER BY seq",
        )
        .unwrap();
    stmt.query_map([], |r| {
        (0..9)
            .map(|i| {
                r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                    rusqlite::types::Value::Null => None,
                    rusqlite::types::Value::Integer(n) => Some(n.to_string()),
                    rusqlite::types::Value::Text(t) => Some(t),
                    other => Some(format!("{other:?}")),
                })
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// `n` well-formed records for tenant `acme`, agent `f`.
fn filler(n: usize) -> Vec<NewRecord> {
    (0..n)
        .map(|i| {
            rec([
                "acme",
                "f",
                "",
                "crm/get",
                "allow",
                "2026-11-08T10:00:00Z",
                "request",
                &format!("f{i}"),
            ])
        })
        .collect()
}

/// A store on a file of its own: the directory (kept alive by the caller),
/// the database's path and the store.
async fn store_on_file() -> (tempfile::TempDir, std::path::PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let store = SqliteStore::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    (dir, db, store)
}

/// Waits (up to a minute, for slow machines) until the query index of `db`
/// has `n` rows, with no query asking; its rows then.
async fn indexed(db: &std::path::Path, n: usize) -> Vec<Vec<Option<String>>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let rows = index_rows(db);
        if rows.len() >= n || std::time::Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_indexer_keeps_the_query_index_complete() {
    let (_dir, db, store) = store_on_file().await;
    audit_queries(&store, rec).await;
    let odd = [
        // Escapes, a field of another type, a null decision, an empty
        // object, an array, duplicate keys, not UTF-8.
        br#"{"kind":"request","request_id":"r\u00e9\n\"q\"","tenant":"acme","agent":"a\\b","time":"2026-11-06T10:00:00Z","decision":{"effect":"allow"}}"#.to_vec(),
        br#"{"kind":"request","request_id":7,"tenant":"acme","decision":{}}"#.to_vec(),
        br#"{"tenant":"acme","decision":null,"action":"x/y"}"#.to_vec(),
        b"{}".to_vec(),
        b"[1,2]".to_vec(),
        br#"{"tenant":"acme","tenant":"other"}"#.to_vec(),
        vec![0xff, 0xfe],
    ];
    for body in &odd {
        store.append_audit(vec![body.clone().into()]).await.unwrap();
    }
    // The store's indexer indexes them with a thousand more, with no query
    // asking.
    store.append_audit(filler(1000)).await.unwrap();
    let total = 7 + odd.len() + 1000;
    let written = indexed(&db, total).await;
    assert_eq!(written.len(), total, "every record indexed by the indexer");
    let seqs: Vec<u64> = written
        .iter()
        .map(|w| w[0].as_deref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>(), "none skipped");
    // The same rows as a catch-up from scratch makes (the indexer's steps
    // and a query's catch-up are one code path; here in one step of all).
    let index = rusqlite::Connection::open(index_file(&db)).unwrap();
    index.execute("DELETE FROM audit_index", []).unwrap();
    while store.index_audit(100_000).await.unwrap() > 0 {}
    let caught_up = index_rows(&db);
    assert_eq!(written, caught_up);
    assert_eq!(written[7][1].as_deref(), Some("r\u{e9}\n\"q\""));
    assert_eq!(written[7][3].as_deref(), Some("a\\b"));
    // An index left behind (here: its newest rows removed) is caught up by
    // the indexer, so no record is ever left out of queries.
    index
        .execute("DELETE FROM audit_index WHERE seq > 3", [])
        .unwrap();
    store.append_audit(filler(1000)).await.unwrap();
    let after = indexed(&db, total + 1000).await;
    assert_eq!(after.len(), total + 1000);
    assert_eq!(after[..total], caught_up[..]);
}

#[tokio::test]
async fn records_written_with_their_fields_are_indexed_as_their_bodies_read() {
    let (_dir, db, store) = store_on_file().await;
    // Records as the gateway writes them, of every shape the index reads:
    // no tenant, no agent, user or action, an empty action, escapes and
    // other scripts, each kind and effect; and a NUL in a field, which is
    // left to the body.
    let fields = [
        ["acme", "b", "bo", "crm/put", "allow", "request", "w1"],
        ["acme", "b", "", "crm/put", "deny", "outcome", "w1"],
        ["", "y", "", "", "deny", "request", "w2"],
        [
            "t\u{e9}",
            "a\"b\\c",
            "\u{65e5}\u{672c}",
            "m/\n\t\u{1}\u{7f}\u{2028}",
            "allow",
            "request",
            "w\u{1f600}",
        ],
        [
            "acme",
            "nul\u{0}agent",
            "",
            "crm/get",
            "allow",
            "request",
            "w4",
        ],
    ];
    let mut shapes: Vec<serde_json::Value> = fields
        .iter()
        .zip(1..)
        .map(|([t, a, u, act, e, k, id], i)| {
            let time = format!("2026-11-09T10:00:0{i}.5Z");
            rec_json([t, a, u, act, e, &time, k, id])
        })
        .collect();
    shapes.push(serde_json::json!({"kind": "admin", "request_id": "op1",
        "time": "2026-11-09T11:00:00Z", "endpoint": "agent suspend", "tenant": "acme",
        "decision": {"effect": "allow"}}));
    shapes.push(serde_json::json!({"kind": "request", "request_id": "w3",
        "time": "2026-11-09T11:00:01Z", "endpoint": "/mcp", "decision": {"effect": "deny"}}));
    // Each one with its fields, and some as bare bodies between them.
    let mut batch = Vec::new();
    for (i, shape) in shapes.iter().enumerate() {
        batch.push(typed(shape.clone()));
        if i % 2 == 0 {
            batch.push(serde_json::to_vec(shape).unwrap().into());
        }
    }
    let total = batch.len();
    store.append_audit(batch).await.unwrap();
    // Indexed in steps of three, each taking records of both kinds.
    let index = rusqlite::Connection::open(index_file(&db)).unwrap();
    index.execute("DELETE FROM audit_index", []).unwrap();
    while store.index_audit(3).await.unwrap() > 0 {}
    let copied = index_rows(&db);
    assert_eq!(copied.len(), total, "every record indexed, none skipped");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let with_fields: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit WHERE rec_tenant IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        with_fields,
        shapes.len() as i64 - 1,
        "all but the NUL one carried fields"
    );
    assert_eq!(copied[0][2].as_deref(), Some("acme"));
    assert_eq!(
        store.audit_fields_mismatched(100).await.unwrap(),
        Vec::<u64>::new(),
        "every record's fields say what its body says"
    );
    // The same index, rebuilt with every record read from its body.
    conn.execute(
        "UPDATE audit SET rec_request = NULL, rec_tenant = NULL, rec_agent = NULL,
             rec_user = NULL, rec_action = NULL, rec_effect = NULL, rec_time = NULL,
             rec_kind = NULL",
        [],
    )
    .unwrap();
    index.execute("DELETE FROM audit_index", []).unwrap();
    while store.index_audit(100_000).await.unwrap() > 0 {}
    assert_eq!(index_rows(&db), copied);
}

#[tokio::test]
async fn a_record_reaches_only_the_tenant_its_body_names() {
    let (_dir, db, store) = store_on_file().await;
    let fields = [
        "acme",
        "a",
        "",
        "crm/get",
        "allow",
        "2026-11-09T10:00:00Z",
        "request",
    ];
    let [t, a, u, act, e, time, k] = fields;
    store
        .append_audit(vec![
            rec_typed([t, a, u, act, e, time, k, "r1"]),
            rec_typed([t, a, u, act, e, time, k, "r2"]),
        ])
        .await
        .unwrap();
    // The index fields beside the records are not covered by the chain:
    // someone with the database changes one record's tenant and agent
    // there, and the index is rebuilt from them.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE audit SET rec_tenant = 'other', rec_agent = 'copied' WHERE seq = 2",
        [],
    )
    .unwrap();
    let index = rusqlite::Connection::open(index_file(&db)).unwrap();
    index.execute("DELETE FROM audit_index", []).unwrap();
    while store.index_audit(100_000).await.unwrap() > 0 {}
    let rows = index_rows(&db);
    assert_eq!(
        rows[1][2..4],
        [Some("other".into()), Some("copied".into())],
        "the step copied the fields, it did not read the body"
    );
    // The other tenant's query does not get acme's record; acme's does
    // not find it either (`warden audit verify` passes: the body is intact).
    let of = |tenant: &str, unattributed: bool| AuditQuery {
        tenant: Some(tenant.into()),
        unattributed,
        limit: 100,
        ..AuditQuery::default()
    };
    for unattributed in [false, true] {
        assert!(
            store
                .query_audit(&of("other", unattributed))
                .await
                .unwrap()
                .is_empty(),
            "another tenant's record reached a query"
        );
    }
    let acme = store.query_audit(&of("acme", false)).await.unwrap();
    assert_eq!(acme.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
    // Verification finds it (`warden audit verify` fails on it).
    assert_eq!(store.audit_fields_mismatched(10).await.unwrap(), [2]);
    // Each field is compared, a null against a value too.
    for (column, value) in [
        ("rec_tenant", "''"),
        ("rec_request", "'r9'"),
        ("rec_user", "'u'"),
        ("rec_action", "'crm/put'"),
        ("rec_effect", "'deny'"),
        ("rec_time", "'2026-11-09T10:00:01Z'"),
        ("rec_kind", "'outcome'"),
        ("rec_agent", "NULL"),
    ] {
        conn.execute(
            &format!("UPDATE audit SET rec_tenant = 'acme', rec_agent = 'a', {column} = {value} WHERE seq = 2"),
            [],
        )
        .unwrap();
        assert_eq!(
            store.audit_fields_mismatched(10).await.unwrap(),
            [2],
            "{column}"
        );
    }
    conn.execute("UPDATE audit SET rec_tenant = 'acme', rec_agent = 'a', rec_request = 'r2', rec_user = NULL, rec_action = 'crm/get', rec_effect = 'allow', rec_time = '2026-11-09T10:00:00Z', rec_kind = 'request' WHERE seq = 2", []).unwrap();
    assert_eq!(
        store.audit_fields_mismatched(10).await.unwrap(),
        Vec::<u64>::new(),
        "put back as they were"
    );
}

#[tokio::test]
async fn appends_never_wait_for_the_query_index() {
    let (_dir, db, store) = store_on_file().await;
    store.append_audit(filler(10)).await.unwrap();
    // Another process holds the index file's write lock; records are still
    // committed at once (the index lives beside the database, and the
    // audit writer never touches it).
    let mut index = rusqlite::Connection::open(index_file(&db)).unwrap();
    let held = index
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let started = std::time::Instant::now();
    for _ in 0..20 {
        store.append_audit(filler(100)).await.unwrap();
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "appends waited {:?} for the index's lock (its busy timeout is 10 s)",
        started.elapsed()
    );
    held.rollback().unwrap();
    // Once the lock is let go, the index catches up by itself.
    assert_eq!(indexed(&db, 2010).await.len(), 2010);
}

/// The index's writes are not synced: within one boot a store that stopped
/// however abruptly left them whole in the page cache, and the next store
/// keeps the index; after the machine itself stopped, the file may hold
/// only some of its pages (here: two rows lost while its state still says
/// all five are indexed, or pages of nothing), and a query through it
/// would miss records. It is removed and rebuilt from the records.
#[tokio::test]
async fn an_index_written_before_the_machine_stopped_is_rebuilt_from_the_records() {
    use std::os::unix::fs::MetadataExt as _;
    let (_dir, db, store) = store_on_file().await;
    let url = format!("sqlite://{}", db.display());
    let all = AuditQuery {
        tenant: Some("acme".into()),
        agent: Some("f".into()),
        limit: 100,
        ..AuditQuery::default()
    };
    store.append_audit(filler(5)).await.unwrap();
    assert_eq!(store.query_audit(&all).await.unwrap().len(), 5);
    let inode = std::fs::metadata(index_file(&db)).unwrap().ino();
    drop(store);
    let mut boot = db.as_os_str().to_owned();
    boot.push("-index-boot");
    let boot = std::path::PathBuf::from(boot);
    let this_boot = std::fs::read_to_string(&boot).unwrap();
    assert_eq!(this_boot.len(), 36, "the boot noted: {this_boot:?}");

    // Same boot: kept as it is.
    let store = SqliteStore::open(&url).await.unwrap();
    assert_eq!(std::fs::metadata(index_file(&db)).unwrap().ino(), inode);
    assert_eq!(store.query_audit(&all).await.unwrap().len(), 5);
    drop(store);

    // Torn: rows 2 and 3 never reached the disk, the state row did.
    let conn = rusqlite::Connection::open(index_file(&db)).unwrap();
    conn.execute("DELETE FROM audit_index WHERE seq IN (2, 3)", [])
        .unwrap();
    drop(conn);
    std::fs::write(&boot, "0d2c5a7e-another-boot").unwrap();
    let store = SqliteStore::open(&url).await.unwrap();
    let found = store.query_audit(&all).await.unwrap();
    assert_eq!(
        found.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [5, 4, 3, 2, 1],
        "a query went through a torn index"
    );
    assert_eq!(std::fs::read_to_string(&boot).unwrap(), this_boot);
    drop(store);

    // Pages of nothing: the store still opens, and finds every record.
    std::fs::write(index_file(&db), vec![0xa5_u8; 8192]).unwrap();
    std::fs::write(&boot, "").unwrap();
    let store = SqliteStore::open(&url).await.unwrap();
    assert_eq!(store.query_audit(&all).await.unwrap().len(), 5);
    assert_eq!(indexed(&db, 5).await.len(), 5);
}

#[tokio::test]
async fn an_index_built_for_another_audit_trail_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let url = format!("sqlite://{}", db.display());
    let by_agent = |agent: &str| AuditQuery {
        tenant: Some("acme".into()),
        agent: Some(agent.into()),
        limit: 100,
        ..AuditQuery::default()
    };
    let one = |agent: &str, id: &str| {
        rec([
            "acme",
            agent,
            "",
            "crm/get",
            "allow",
            "2026-11-08T10:00:00Z",
            "request",
            id,
        ])
    };
    {
        let store = SqliteStore::open(&url).await.unwrap();
        store
            .append_audit((0..5).map(|i| one("old", &format!("o{i}"))).collect())
            .await
            .unwrap();
        assert_eq!(store.query_audit(&by_agent("old")).await.unwrap().len(), 5);
    }
    // The database is replaced (say, restored from a backup of another
    // installation) while its index file stays: its seqs 1..5 now name
    // other records.
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(std::path::PathBuf::from(p));
    }
    assert!(index_file(&db).exists());
    let store = SqliteStore::open(&url).await.unwrap();
    store
        .append_audit((0..7).map(|i| one("new", &format!("n{i}"))).collect())
        .await
        .unwrap();
    assert!(
        store
            .query_audit(&by_agent("old"))
            .await
            .unwrap()
            .is_empty(),
        "a query found records through another trail's index"
    );
    let found = store.query_audit(&by_agent("new")).await.unwrap();
    assert_eq!(found.len(), 7);
    assert!(
        found
            .iter()
            .all(|e| String::from_utf8_lossy(&e.body).contains(r#""agent":"new""#))
    );
}

#[tokio::test]
async fn the_wal_file_stays_bounded_under_continuous_appends() {
    let (_dir, db, store) = store_on_file().await;
    let store = Arc::new(store);
    // 16 appenders at once, never letting the writer idle, write about
    // 7,000 WAL pages (28 MiB): a WAL that is never started again from its
    // beginning grows to that size.
    let pad = "x".repeat(3500);
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = store.clone();
        let pad = pad.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..440 {
                let body = format!(
                    r#"{{"kind":"request","request_id":"w{t}-{i}","tenant":"acme","decision":{{"effect":"allow"}},"pad":"{pad}"}}"#
                );
                store
                    .append_audit(vec![body.into_bytes().into()])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let size = std::fs::metadata(&wal).unwrap().len();
    // 2,048 pages of 4 KiB and their frame headers, with room for the
    // commits that land while a checkpoint is refused.
    let bound = 3_000 * (4096 + 24);
    assert!(
        size <= bound,
        "the WAL grew to {size} bytes (bound {bound}) instead of starting again"
    );
    let head = store.audit_head().await.unwrap();
    assert_eq!(head.seq, 16 * 440);
}

#[tokio::test]
async fn records_changed_by_hand_are_read_back_for_the_verifier_to_name() {
    use warden_audit::VerifyError;
    let (_dir, db, store) = store_on_file().await;
    store
        .append_audit((1..=6).map(record).collect())
        .await
        .unwrap();
    let sound = store.audit_entries(0, 100).await.unwrap();
    assert!(verify_chain(sound.clone(), ChainHead::default()).is_ok());
    assert_eq!(
        store.audit_entries(2, 2).await.unwrap(),
        sound[2..4].to_vec()
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    // A body rewritten, a hash cut short, an empty one: each is read, and
    // the chain names the first.
    conn.execute(
        "UPDATE audit SET body = CAST('tampered' AS BLOB) WHERE seq = 5",
        [],
    )
    .unwrap();
    conn.execute("UPDATE audit SET hash = x'0102' WHERE seq = 4", [])
        .unwrap();
    conn.execute("UPDATE audit SET prev_hash = x'' WHERE seq = 6", [])
        .unwrap();
    let read = store.audit_entries(0, 100).await.unwrap();
    assert_eq!(read.len(), 6);
    assert_eq!(read[4].body, b"tampered");
    assert_eq!(read[3].hash, [0xff; 32]);
    assert_eq!(read[5].prev_hash, [0xff; 32]);
    assert_eq!(
        verify_chain(read.clone(), ChainHead::default()).unwrap_err(),
        VerifyError::Hash { seq: 4 }
    );
    assert!(matches!(
        verify_chain(
            read[4..].to_vec(),
            ChainHead {
                seq: 4,
                hash: sound[3].hash
            }
        ),
        Err(VerifyError::Hash { seq: 5 })
    ));
}

#[tokio::test]
async fn an_index_kept_in_the_database_moves_to_a_file_of_its_own() {
    let (_dir, db, store) = store_on_file().await;
    store.append_audit(filler(50)).await.unwrap();
    assert_eq!(indexed(&db, 50).await.len(), 50);
    drop(store);
    // The stopped store's threads end within their next tick.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // The database as schema 11 left it: the index inside it (its rows
    // marked, to tell a copy from a new indexing), no index file, and no
    // index fields beside the records (schema 13).
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "ATTACH DATABASE ?1 AS old",
        [index_file(&db).to_string_lossy().as_ref()],
    )
    .unwrap();
    conn.execute_batch(
        "CREATE TABLE main.audit_index (
            seq INTEGER PRIMARY KEY, request_id TEXT, tenant TEXT NOT NULL, agent TEXT,
            user TEXT, action TEXT, effect TEXT, time TEXT, kind TEXT) STRICT;
         CREATE INDEX main.audit_by_agent ON audit_index (tenant, agent);
         INSERT INTO main.audit_index
            SELECT seq, request_id, tenant, 'copied', user, action, effect, time, kind
            FROM old.audit_index;
         DETACH DATABASE old;
         ALTER TABLE audit DROP COLUMN rec_request;
         ALTER TABLE audit DROP COLUMN rec_tenant;
         ALTER TABLE audit DROP COLUMN rec_agent;
         ALTER TABLE audit DROP COLUMN rec_user;
         ALTER TABLE audit DROP COLUMN rec_action;
         ALTER TABLE audit DROP COLUMN rec_effect;
         ALTER TABLE audit DROP COLUMN rec_time;
         ALTER TABLE audit DROP COLUMN rec_kind;
         PRAGMA user_version = 11;",
    )
    .unwrap();
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = index_file(&db).into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(std::path::PathBuf::from(p));
    }
    let store = SqliteStore::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows = index_rows(&db);
    assert_eq!(rows.len(), 50);
    assert!(rows.iter().all(|r| r[3].as_deref() == Some("copied")));
    let left: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'audit_by_%' OR name = 'audit_index'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "the database keeps no index of its own");
    // The moved index is current: new records are indexed after it.
    store.append_audit(filler(5)).await.unwrap();
    assert_eq!(indexed(&db, 55).await.len(), 55);
}

#[tokio::test]
async fn a_batch_that_fails_leaves_nothing_and_the_next_one_lands() {
    let (_dir, db, store) = store_on_file().await;
    store.append_audit(filler(2)).await.unwrap();
    // The database refuses the batch's third record (as a full disk or a
    // damaged page would refuse a write).
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON audit WHEN NEW.seq = 5
         BEGIN SELECT RAISE(ABORT, 'refused'); END;",
    )
    .unwrap();
    let err = store.append_audit(filler(4)).await.unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    assert_eq!(
        store.audit_head().await.unwrap().seq,
        2,
        "half a batch landed"
    );
    conn.execute_batch("DROP TRIGGER refuse").unwrap();
    let seqs = store.append_audit(filler(3)).await.unwrap();
    assert_eq!(seqs, [3, 4, 5]);
    let all = store.audit_entries(0, 100).await.unwrap();
    assert_eq!(all.len(), 5);
    assert!(verify_chain(all, ChainHead::default()).is_ok());
}

/// Queues `bodies` and returns where the result arrives.
fn queue(
    store: &SqliteStore,
    bodies: Vec<NewRecord>,
) -> std::sync::mpsc::Receiver<Result<Vec<u64>, StoreError>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let queued = store.queue_audit(
        bodies,
        Box::new(move |result| {
            let _ = tx.send(result);
        }),
    );
    assert!(queued.is_ok(), "the SQLite store queues records");
    rx
}

#[tokio::test]
async fn queued_records_land_in_order_with_the_appends_around_them() {
    let (_dir, _db, store) = store_on_file().await;
    // Queued, then appended: the queued record comes first in the chain,
    // and it is answered by the time the append behind it returns.
    let later = queue(&store, filler(1));
    assert_eq!(store.append_audit(filler(1)).await.unwrap(), [2]);
    assert_eq!(later.try_recv().expect("answered").unwrap(), [1]);
    // Queued alone, it still lands, with nobody appending behind it.
    let alone = queue(&store, filler(2));
    let result =
        tokio::task::spawn_blocking(move || alone.recv_timeout(std::time::Duration::from_secs(60)))
            .await
            .unwrap()
            .expect("committed without any other append");
    assert_eq!(result.unwrap(), [3, 4]);
    let all = store.audit_entries(0, 100).await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(verify_chain(all, ChainHead::default()).is_ok());
}
