//! The quickstart, end to end: its own config and policies, Warden spawning
//! and supervising the company servers over stdio, and the demo agent.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use warden_config::{Config, Transport};
use warden_core::{AgentName, TenantId};
use warden_example::DemoAuth;
use warden_gateway::Gateway;
use warden_identity::ca::generate_agent_csr;
use warden_identity::{CaFiles, KeyRing, SigningKey, TokenIssuer};
use warden_store::{CertRecord, NewAgent, SqliteStore, Store};

async fn quickstart() -> (
    tempfile::TempDir,
    Arc<Gateway>,
    String,
    TokenIssuer,
    Arc<dyn Store>,
) {
    warden_gateway::install_crypto_provider();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../quickstart");
    let mut config = Config::load(&example.join("warden.toml")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    config.storage_url = format!("sqlite://{}", tmp.path().join("warden.db").display());
    for u in &mut config.upstreams {
        if let Transport::Stdio { program, .. } = &mut u.transport {
            assert_eq!(program, &PathBuf::from("warden-example-mcp"));
            *program = PathBuf::from(env!("CARGO_BIN_EXE_warden-example-mcp"));
        }
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.storage_url).await.unwrap());
    let tenant = TenantId::new("default").unwrap();
    store
        .create_agent(NewAgent {
            tenant: tenant.clone(),
            name: AgentName::new("support-assistant").unwrap(),
            owner: Some("alice".into()),
            purpose: None,
        })
        .await
        .unwrap();
    config.identity.signing_key = tmp.path().join("signing.pem");
    config.identity.ca_dir = tmp.path().join("ca");
    config.audit.key = tmp.path().join("audit.pem");
    CaFiles::in_dir(&config.identity.ca_dir)
        .create(&config.identity.trust_domain)
        .unwrap();
    std::fs::write(
        &config.identity.signing_key,
        SigningKey::generate_pem().unwrap(),
    )
    .unwrap();
    let ring = Arc::new(KeyRing::load(&config.identity.signing_key).unwrap());
    let id = &config.identity;
    let issuer = TokenIssuer::new(
        ring,
        &id.issuer,
        &id.audience,
        &id.trust_domain,
        id.max_token_ttl,
    );
    let gateway = Gateway::start(config, store.clone()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}/mcp",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(warden_gateway::serve(
        gateway.clone(),
        listener,
        admin,
        std::future::pending(),
    ));
    (tmp, gateway, url, issuer, store)
}

#[tokio::test]
async fn the_quickstart_allows_and_denies_what_its_policies_say_and_survives_a_crash() {
    let (_tmp, gateway, url, issuer, gateway_store) = quickstart().await;
    let engine = gateway.policy().engine().unwrap();
    assert_eq!(
        engine.policy_count(),
        9,
        "the quickstart policies validate against the live catalogs"
    );
    let token = issuer
        .issue(
            &TenantId::new("default").unwrap(),
            &AgentName::new("support-assistant").unwrap(),
            None,
            Duration::from_secs(300),
        )
        .unwrap()
        .token;
    let ca = std::fs::read_to_string(_tmp.path().join("ca/bundle.pem")).unwrap();
    let by_token = DemoAuth::Token {
        token: token.clone(),
        ca: Some(ca.clone()),
    };
    let report = warden_example::demo(&url, &by_token).await.unwrap();
    // With the agent's certificate instead (mTLS, a bound token): the same.
    let (authority, _) = CaFiles::in_dir(&_tmp.path().join("ca"))
        .load("warden.local")
        .unwrap();
    let tenant = TenantId::new("default").unwrap();
    let agent = AgentName::new("support-assistant").unwrap();
    let (key, csr) =
        generate_agent_csr(&warden_identity::spiffe_id("warden.local", &tenant, &agent)).unwrap();
    let cert = authority
        .sign_agent_csr(&csr, &tenant, &agent, Duration::from_secs(300))
        .unwrap();
    gateway_store
        .record_cert(CertRecord {
            serial: cert.serial.clone(),
            tenant,
            agent,
            not_before: cert.not_before,
            not_after: cert.not_after,
            thumbprint: cert.thumbprint.clone(),
            revoked_at: None,
        })
        .await
        .unwrap();
    let by_cert = DemoAuth::Certificate {
        ca,
        cert: cert.pem,
        key,
    };
    let mtls = warden_example::demo(&url, &by_cert).await.unwrap();
    let outcomes = |r: &warden_example::DemoReport| {
        (
            r.tools.clone(),
            r.calls.iter().map(|c| c.2).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        outcomes(&mtls),
        outcomes(&report),
        "the certificate's agent has the same rights"
    );
    let mut tools = report.tools.clone();
    tools.sort();
    assert_eq!(tools, vec!["crm.get_customer", "docs.search", "mail.send"]);
    let allowed: Vec<bool> = report.calls.iter().map(|c| c.2).collect();
    assert_eq!(
        allowed,
        vec![true, false, true, false, false, false, false],
        "{:#?}",
        report.calls
    );
    assert!(
        report.calls[1].0.starts_with("HELD mail.send")
            && report.calls[1].1.contains("held for human approval"),
        "mail waits for a human: {:?}",
        report.calls[1]
    );
    assert!(
        report.calls[3]
            .1
            .contains("this session has read confidential data"),
        "the same mail, after reading a customer record: {}",
        report.calls[3].1
    );
    assert!(
        report.calls[4].1.contains("salaries are confidential"),
        "{}",
        report.calls[4].1
    );
    assert!(
        report.calls[5]
            .1
            .contains("mail may only go to company addresses"),
        "{}",
        report.calls[5].1
    );

    // A crashed stdio upstream is started again on the next call.
    // Kill the docs server behind Warden's back.
    let killed = std::process::Command::new("pkill")
        .args(["-P", &std::process::id().to_string(), "-f", "service docs"])
        .status()
        .unwrap();
    assert!(killed.success(), "no docs server to kill");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ok = false;
    for _ in 0..60 {
        if warden_example::demo(&url, &by_token)
            .await
            .is_ok_and(|r| r.calls[0].2)
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(ok, "the docs server was not restarted");
    gateway.shutdown().await;
}

#[tokio::test]
async fn the_quickstart_holds_mail_until_an_approver_consents_then_sends_it_once() {
    use warden_example::CallOutcome;
    let (tmp, gateway, url, issuer, store) = quickstart().await;
    let tenant = TenantId::new("default").unwrap();
    let token = issuer
        .issue(
            &tenant,
            &AgentName::new("support-assistant").unwrap(),
            None,
            Duration::from_secs(300),
        )
        .unwrap()
        .token;
    let auth = DemoAuth::Token {
        token,
        ca: Some(std::fs::read_to_string(tmp.path().join("ca/bundle.pem")).unwrap()),
    };
    let mail =
        || serde_json::json!({"to": "bob@example.com", "subject": "Your ticket", "body": "Fixed."});
    let CallOutcome::Held(text) = warden_example::call(&url, &auth, "mail.send", mail())
        .await
        .unwrap()
    else {
        panic!("mail.send was not held");
    };
    let pending = store.list_approvals(&tenant, true).await.unwrap();
    assert_eq!(pending.len(), 1);
    let id = pending[0].id.clone();
    assert!(text.contains(&id), "{text}");
    assert_eq!(
        pending[0].request.side_effects,
        "persistent, sends data outside the company"
    );

    let carol = warden_core::UserName::new("carol").unwrap();
    let user = store
        .create_user(&tenant, &carol, "approver")
        .await
        .unwrap();
    warden_gateway::review::review(
        store.as_ref(),
        &tenant,
        &id,
        &warden_gateway::review::reviewer_of(&user),
        warden_approval::Verdict::Approve,
        None,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .await
    .unwrap();
    // The same call, retried: sent, once.
    let sent = warden_example::call(&url, &auth, "mail.send", mail())
        .await
        .unwrap();
    assert!(
        matches!(sent, CallOutcome::Ran(ref t) if t.contains("bob@example.com")),
        "{sent:?}"
    );
    assert_eq!(
        store.approval(&tenant, &id).await.unwrap().unwrap().state,
        warden_approval::State::Executed
    );
    let again = warden_example::call(&url, &auth, "mail.send", mail())
        .await
        .unwrap();
    assert!(
        matches!(again, CallOutcome::Held(ref t) if !t.contains(&id)),
        "a replay needs a new approval: {again:?}"
    );
    gateway.shutdown().await;
}
