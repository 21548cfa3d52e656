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
use warden_core::{AgentName, AgentState, TenantId, UpstreamName};
use warden_store::{NewAgent, SqliteStore, Store, StoreError};

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

fn record(i: usize) -> Vec<u8> {
    format!(
        r#"{{"kind":"request","request_id":"r{i}","time":"2026-01-01T00:00:00Z","endpoint":"/mcp","decision":{{"effect":"deny"}}}}"#
    )
    .into_bytes()
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

async fn suite(store: Arc<dyn Store>) {
    agents(store.as_ref()).await;
    audit(store.clone()).await;
    catalogs(store.as_ref()).await;
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
async fn a_bad_url_is_a_clear_error() {
    let err = SqliteStore::open("sqlite:///nonexistent-dir/x/y.db")
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("storage error"), "{err}");
}
