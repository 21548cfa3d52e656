//! Tenants (G7): each has its own policies, agents, tasks, secrets and
//! audit view, and nothing crosses — the tests try.

use std::time::Duration;

use serde_json::{Value, json};
use warden_core::{AgentName, TenantId, UpstreamName};
use warden_store::{NewAgent, SecretRef};
use warden_vault::{MasterKey, Secret};

use crate::harness::{Harness, Options, harness_with};

fn acme() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn call(tool: &str, args: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}})
        .to_string()
}

fn token(h: &Harness, tenant: &TenantId, agent: &str) -> String {
    h.issuer
        .issue(
            tenant,
            &AgentName::new(agent).unwrap(),
            None,
            Duration::from_secs(600),
        )
        .unwrap()
        .token
}

fn denied(body: &Value) -> bool {
    body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("access denied"))
}

async fn put_secret(h: &Harness, tenant: &TenantId, value: &str) {
    let master = MasterKey::from_base64(
        &std::fs::read_to_string(h.dir.path().join("keys/master.key")).unwrap(),
    )
    .unwrap();
    let at = SecretRef {
        tenant: tenant.clone(),
        upstream: UpstreamName::new("crm").unwrap(),
        user: None,
    };
    let sealed = master.seal(&at.place(), &Secret::new(value)).unwrap();
    h.store.put_secret(&at, sealed).await.unwrap();
}

#[tokio::test]
async fn tenants_have_their_own_policies_agents_tasks_secrets_and_audit() {
    let h = harness_with(
        r#"permit(principal == Warden::Agent::"a", action == Warden::Action::"docs/search", resource);"#,
        Options {
            tenants: vec![(
                "acme",
                r#"permit(principal == Warden::Agent::"a", action == Warden::Action::"crm/get_customer", resource);"#,
            )],
            crm_auth: Some(r#"{ type = "bearer" }"#),
            crm_secret: Some("sk-default"),
            ..Options::default()
        },
    )
    .await;
    h.store
        .create_agent(NewAgent {
            tenant: acme(),
            name: AgentName::new("a").unwrap(),
            owner: None,
            purpose: None,
        })
        .await
        .unwrap();
    put_secret(&h, &acme(), "sk-acme").await;
    let default_a = h.token("a");
    let acme_a = token(&h, &acme(), "a");
    let search = call("search", json!({"query": "vpn"}));
    let customer = call("get_customer", json!({"id": "c-1"}));

    // Each tenant's policies, for an agent of the same name.
    assert_eq!(
        h.post("/mcp/docs", Some(&default_a), search.clone())
            .await
            .0,
        200
    );
    assert!(denied(
        &h.post("/mcp/docs", Some(&acme_a), search.clone()).await.2
    ));
    assert!(denied(
        &h.post("/mcp/crm", Some(&default_a), customer.clone())
            .await
            .2
    ));
    let (status, _, body) = h.post("/mcp/crm", Some(&acme_a), customer.clone()).await;
    assert_eq!(status, 200, "{body}");
    // ... with each tenant's own upstream credential.
    let seen = h.crm.credentials_seen.lock().unwrap().clone();
    assert_eq!(
        seen.last().map(String::as_str),
        Some("authorization: Bearer sk-acme")
    );
    assert!(
        seen.contains(&"authorization: Bearer sk-default".to_owned()),
        "the default tenant's own secret listed the tools at start: {seen:?}"
    );

    // A tenant the gateway does not serve is refused.
    let globex = token(&h, &TenantId::new("globex").unwrap(), "a");
    assert_eq!(
        h.post("/mcp/docs", Some(&globex), search.clone()).await.0,
        401
    );

    // Suspending default's `a` leaves acme's `a` alone.
    h.set_state("a", warden_core::AgentState::Suspended).await;
    assert_eq!(
        h.post("/mcp/docs", Some(&default_a), search.clone())
            .await
            .0,
        401
    );
    assert_eq!(
        h.post("/mcp/crm", Some(&acme_a), customer.clone()).await.0,
        200
    );

    // A task of the default tenant cannot be used from acme, even with the
    // same agent name and task id.
    h.create_task(
        &crate::harness::tenant(),
        "t-1",
        "a",
        &["crm/update_customer"],
        4_000_000_000,
    )
    .await;
    let cross = h
        .issuer
        .issue_for_task(
            &acme(),
            &AgentName::new("a").unwrap(),
            None,
            Duration::from_secs(60),
            "t-1",
        )
        .unwrap()
        .token;
    let (status, _, body) = h
        .post(
            "/mcp/crm",
            Some(&cross),
            call(
                "update_customer",
                json!({"id": "c-1", "email": "x@example.com"}),
            ),
        )
        .await;
    assert_eq!(status, 401, "{body}");

    // Each tenant's operator sees only their tenant.
    let ttl = Duration::from_secs(60);
    let acme_ops = h
        .issuer
        .issue_admin_for(Some(&acme()), "acme-ops", warden_identity::Role::Admin, ttl)
        .unwrap()
        .token;
    let agents = h.admin_json("/v1/agents", &acme_ops).await;
    let names: Vec<&str> = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme"]);
    let audit = h.admin_json("/v1/audit?limit=1000", &acme_ops).await;
    let tenants: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["record"]["tenant"].as_str().unwrap_or("-"))
        .collect();
    assert!(!tenants.is_empty());
    assert!(tenants.iter().all(|t| *t == "acme"), "{tenants:?}");
    let default_ops = h
        .issuer
        .issue_admin("ops", warden_identity::Role::Auditor, ttl)
        .unwrap()
        .token;
    let audit = h.admin_json("/v1/audit?limit=1000", &default_ops).await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["record"]["tenant"] != "acme"),
        "the default tenant's operator sees no acme record"
    );
    // An operator of a tenant the gateway does not serve gets nothing.
    let stranger = h
        .issuer
        .issue_admin_for(
            Some(&TenantId::new("globex").unwrap()),
            "x",
            warden_identity::Role::Admin,
            ttl,
        )
        .unwrap()
        .token;
    let r = reqwest::Client::new()
        .get(format!("http://{}/v1/agents", h.admin))
        .bearer_auth(stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
