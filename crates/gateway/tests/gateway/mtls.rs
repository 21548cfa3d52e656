//! Workload identity over real TLS on loopback: client certificates from
//! Warden's CA (mTLS), the token endpoint (certificate-bound tokens, token
//! exchange), certificate renewal, signing key rotation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use warden_core::{AgentName, AgentState, Effect, TenantId, UserName};
use warden_identity::ca::generate_agent_csr;
use warden_identity::{CaFiles, spiffe_id};
use warden_store::CertRecord;

use crate::harness::{Harness, Options, harness_with};

fn call(name: &str, args: Value) -> rmcp::model::CallToolRequestParams {
    rmcp::model::CallToolRequestParams::new(name.to_owned())
        .with_arguments(rmcp::model::object(args))
}

const POLICY: &str = r#"
permit(principal == Warden::Agent::"a", action == Warden::Action::"docs/search", resource);
permit(principal == Warden::Agent::"a", action == Warden::Action::"crm/get_customer", resource);
permit(principal == Warden::User::"alice", action == Warden::Action::"docs/search", resource);
"#;

async fn tls_harness(client_auth: &'static str, identity: &str) -> Harness {
    harness_with(
        POLICY,
        Options {
            tls: Some(client_auth),
            identity: identity.to_owned(),
            ..Options::default()
        },
    )
    .await
}

#[derive(Clone)]
struct AgentCert {
    cert_pem: String,
    key_pem: String,
    serial: String,
}

/// A certificate from the harness's CA for `agent` of `tenant`, as the CA
/// of trust domain `td` would sign it, recorded in the store if `record`.
async fn cert_with(
    h: &Harness,
    tenant: &str,
    agent: &str,
    td: &str,
    ttl: Duration,
    record: bool,
) -> AgentCert {
    let (ca, _) = CaFiles::in_dir(&h.dir.path().join("keys/ca"))
        .load(td)
        .unwrap();
    let (tenant, agent) = (
        TenantId::new(tenant).unwrap(),
        AgentName::new(agent).unwrap(),
    );
    let (key_pem, csr) = generate_agent_csr(&spiffe_id(td, &tenant, &agent)).unwrap();
    let cert = ca.sign_agent_csr(&csr, &tenant, &agent, ttl).unwrap();
    if record {
        h.store
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
    }
    AgentCert {
        cert_pem: cert.pem,
        key_pem,
        serial: cert.serial,
    }
}

async fn cert(h: &Harness, agent: &str) -> AgentCert {
    cert_with(
        h,
        "default",
        agent,
        "warden.local",
        Duration::from_secs(600),
        true,
    )
    .await
}

fn certified(c: &AgentCert) -> Arc<CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(c.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap();
    Arc::new(CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider()).unwrap())
}

/// A client certificate that can be replaced while the client runs.
#[derive(Debug)]
struct Swappable(Mutex<Option<Arc<CertifiedKey>>>);

impl ResolvesClientCert for Swappable {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.lock().unwrap().clone()
    }
    fn has_certs(&self) -> bool {
        self.0.lock().unwrap().is_some()
    }
}

/// A TLS client trusting the harness's CA bundle, presenting `cert`.
fn client_with(h: &Harness, resolver: Arc<Swappable>, fresh_connections: bool) -> reqwest::Client {
    let bundle = std::fs::read_to_string(h.dir.path().join("keys/ca/bundle.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(bundle.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_cert_resolver(resolver);
    let mut b = reqwest::Client::builder().use_preconfigured_tls(tls);
    if fresh_connections {
        b = b.pool_max_idle_per_host(0);
    }
    b.build().unwrap()
}

fn client(h: &Harness, cert: Option<&AgentCert>) -> reqwest::Client {
    client_with(
        h,
        Arc::new(Swappable(Mutex::new(cert.map(certified)))),
        false,
    )
}

/// A raw `tools/call`; the HTTP status and JSON body.
async fn tool_call(
    h: &Harness,
    client: &reqwest::Client,
    token: Option<&str>,
    path: &str,
    tool: &str,
    args: Value,
) -> Result<(u16, Value), reqwest::Error> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": args}});
    let mut req = client
        .post(h.url(path))
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .map_or_else(
            || serde_json::from_str(&text),
            |d| serde_json::from_str(d.trim()),
        )
        .unwrap_or(Value::Null);
    Ok((status, value))
}

async fn search(h: &Harness, client: &reqwest::Client, token: Option<&str>) -> (u16, Value) {
    tool_call(
        h,
        client,
        token,
        "/mcp/docs",
        "search",
        json!({"query": "vpn"}),
    )
    .await
    .unwrap()
}

/// POSTs a form to the token endpoint.
async fn token_request(
    h: &Harness,
    client: &reqwest::Client,
    bearer: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = client.post(h.url("/oauth/token")).form(form);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

fn error_of(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .or_else(|| body["error_description"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn an_agent_certificate_alone_authenticates_over_mtls() {
    let h = tls_harness("required", "").await;
    let a = cert(&h, "a").await;
    let https = client(&h, Some(&a));
    let (status, body) = search(&h, &https, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"].is_object(), "{body}");
    // A tool the policy does not permit is denied and never forwarded.
    let before = h.crm.calls.get();
    let (_, body) = tool_call(
        &h,
        &https,
        None,
        "/mcp/crm",
        "update_customer",
        json!({"id": "c-1", "email": "x@example.com"}),
    )
    .await
    .unwrap();
    assert!(error_of(&body).contains("access denied"), "{body}");
    assert_eq!(h.crm.calls.get(), before);
    // The official SDK as the client, over the same mTLS.
    let config = StreamableHttpClientTransportConfig::with_uri(h.url("/mcp/docs"));
    let sdk = ()
        .serve(StreamableHttpClientTransport::with_client(
            https.clone(),
            config,
        ))
        .await
        .unwrap();
    sdk.call_tool(call("search", json!({"query": "vpn"})))
        .await
        .unwrap();
    sdk.cancel().await.unwrap();
    // The audit names the agent from its certificate.
    let records = h.requests().await;
    assert!(
        records
            .iter()
            .any(|r| r.agent.as_deref() == Some("a") && r.decision.effect == Effect::Allow)
    );
}

#[tokio::test]
async fn bad_certificates_are_refused_and_audited() {
    let h = tls_harness("required", "").await;
    let https = |c: Option<&AgentCert>| client(&h, c);
    // No certificate: the handshake fails, and the refusal is audited.
    assert!(search_result(&h, &https(None)).await.is_err());
    // A certificate from another CA: the handshake fails.
    let other = tempfile::tempdir().unwrap();
    let files = CaFiles::in_dir(other.path());
    files.create("warden.local").unwrap();
    let (foreign_ca, _) = files.load("warden.local").unwrap();
    let (tenant, agent) = (
        TenantId::new("default").unwrap(),
        AgentName::new("a").unwrap(),
    );
    let (key_pem, csr) = generate_agent_csr(&spiffe_id("warden.local", &tenant, &agent)).unwrap();
    let foreign = foreign_ca
        .sign_agent_csr(&csr, &tenant, &agent, Duration::from_secs(600))
        .unwrap();
    let foreign = AgentCert {
        cert_pem: foreign.pem,
        key_pem,
        serial: foreign.serial,
    };
    assert!(search_result(&h, &https(Some(&foreign))).await.is_err());
    // Expired: the handshake fails.
    let short = cert_with(
        &h,
        "default",
        "a",
        "warden.local",
        Duration::from_secs(1),
        true,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Validity starts a minute back; wait out the one second of life.
    assert!(search_result(&h, &https(Some(&short))).await.is_err());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let tls_refusals = h
            .requests()
            .await
            .iter()
            .filter(|r| r.endpoint == "tls")
            .count();
        if tls_refusals >= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refused handshakes are audited: {tls_refusals}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Chain-valid certificates with the wrong identity: 401 with the reason.
    for (c, why) in [
        (
            cert_with(
                &h,
                "default",
                "a",
                "evil.example",
                Duration::from_secs(600),
                true,
            )
            .await,
            "trust domain",
        ),
        (
            cert_with(
                &h,
                "other",
                "a",
                "warden.local",
                Duration::from_secs(600),
                true,
            )
            .await,
            "tenant",
        ),
        (
            cert_with(
                &h,
                "default",
                "a",
                "warden.local",
                Duration::from_secs(600),
                false,
            )
            .await,
            "not issued by this Warden",
        ),
        (
            cert_with(
                &h,
                "default",
                "ghost",
                "warden.local",
                Duration::from_secs(600),
                true,
            )
            .await,
            "unknown agent",
        ),
    ] {
        let (status, body) = search(&h, &https(Some(&c)), None).await;
        assert_eq!(status, 401, "{why}: {body}");
        assert!(error_of(&body).contains(why), "{why}: {body}");
    }
    assert_eq!(
        h.docs.calls.get(),
        0,
        "nothing refused reached the upstream"
    );
}

async fn search_result(
    h: &Harness,
    client: &reqwest::Client,
) -> Result<(u16, Value), reqwest::Error> {
    tool_call(
        h,
        client,
        None,
        "/mcp/docs",
        "search",
        json!({"query": "vpn"}),
    )
    .await
}

#[tokio::test]
async fn revocation_suspension_and_rotation_apply_on_the_next_request() {
    let h = tls_harness("required", "").await;
    let a = cert(&h, "a").await;
    let https = client(&h, Some(&a));
    assert_eq!(search(&h, &https, None).await.0, 200);
    // Revoking the serial refuses the very next request on the same connection.
    let tenant = TenantId::new("default").unwrap();
    h.store.revoke_cert(&tenant, &a.serial).await.unwrap();
    let (status, body) = search(&h, &https, None).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("revoked"), "{body}");
    // A fresh certificate works; suspending the agent refuses it.
    let b = cert(&h, "a").await;
    let https = client(&h, Some(&b));
    assert_eq!(search(&h, &https, None).await.0, 200);
    h.set_state("a", AgentState::Suspended).await;
    assert_eq!(search(&h, &https, None).await.0, 401);
    h.set_state("a", AgentState::Active).await;
    assert_eq!(search(&h, &https, None).await.0, 200);
    // Rotating the agent's credentials refuses certificates issued before.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let agent = AgentName::new("a").unwrap();
    h.store.rotate_agent(&tenant, &agent).await.unwrap();
    let (status, body) = search(&h, &https, None).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("rotated"), "{body}");
}

#[tokio::test]
async fn certificate_bound_tokens_are_useless_without_their_certificate() {
    let h = tls_harness("optional", "").await;
    let a = cert(&h, "a").await;
    let with_a = client(&h, Some(&a));
    let (status, body) =
        token_request(&h, &with_a, None, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let bound = body["access_token"].as_str().unwrap().to_owned();
    // With its certificate: accepted.
    assert_eq!(search(&h, &with_a, Some(&bound)).await.0, 200);
    // Stolen and replayed without a certificate: refused.
    let no_cert = client(&h, None);
    let (status, body) = search(&h, &no_cert, Some(&bound)).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("bound"), "{body}");
    // Replayed over another agent's certificate: refused.
    let b = cert(&h, "b").await;
    let with_b = client(&h, Some(&b));
    let (status, _) = search(&h, &with_b, Some(&bound)).await;
    assert_eq!(status, 401);
    // Even over another certificate of the same agent: refused.
    let a2 = cert(&h, "a").await;
    assert_eq!(
        search(&h, &client(&h, Some(&a2)), Some(&bound)).await.0,
        401
    );
    // client_credentials without a certificate: invalid_client.
    let (status, body) =
        token_request(&h, &no_cert, None, &[("grant_type", "client_credentials")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // An unbound agent token with a certificate of another agent: refused.
    let plain = h.token("a");
    assert_eq!(search(&h, &with_b, Some(&plain)).await.0, 401);
    // An unbound token alone still works when certificates are optional.
    assert_eq!(search(&h, &no_cert, Some(&plain)).await.0, 200);
    // The JWKS names the signing key.
    let jwks: Value = no_cert
        .get(h.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], h.key.kid());
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    // Every grant and refusal is in the audit trail.
    let records = h.requests().await;
    let grants: Vec<_> = records
        .iter()
        .filter(|r| r.endpoint == "/oauth/token")
        .map(|r| (r.method.clone().unwrap_or_default(), r.decision.effect))
        .collect();
    assert!(
        grants.contains(&("token.client_credentials".into(), Effect::Allow)),
        "{grants:?}"
    );
    assert!(
        grants.contains(&("token.client_credentials".into(), Effect::Deny)),
        "{grants:?}"
    );
}

const OIDC_ISSUER: &str = "https://idp.example";

/// An identity provider: an Ed25519 key whose JWKS is a file.
fn idp(dir: &std::path::Path) -> (jsonwebtoken::EncodingKey, String) {
    let pem = warden_identity::SigningKey::generate_pem().unwrap();
    let key = Arc::new(warden_identity::SigningKey::from_pem(&pem).unwrap());
    let jwks = warden_identity::KeyRing::single(key.clone()).jwks();
    let path = dir.join("idp-jwks.json");
    std::fs::write(&path, jwks.to_string()).unwrap();
    let encoding = jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
    (encoding, key.kid().to_owned())
}

fn idp_token(key: &(jsonwebtoken::EncodingKey, String), user: &str, iss: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(key.1.clone());
    let claims = json!({"iss": iss, "aud": "warden", "sub": user, "exp": now + 300, "iat": now});
    jsonwebtoken::encode(&header, &claims, &key.0).unwrap()
}

#[tokio::test]
async fn token_exchange_delegates_and_the_user_bounds_the_agent() {
    let jwks_dir = tempfile::tempdir().unwrap();
    let key = idp(jwks_dir.path());
    let h = tls_harness(
        "optional",
        &format!(
            "delegated_token_ttl = \"5m\"\n[[identity.oidc]]\nissuer = \"{OIDC_ISSUER}\"\naudience = \"warden\"\njwks_file = \"{}\"\n",
            jwks_dir.path().join("idp-jwks.json").display()
        ),
    )
    .await;
    let a = cert(&h, "a").await;
    let with_a = client(&h, Some(&a));
    let exchange = |subject: String| {
        vec![
            (
                "grant_type".to_owned(),
                "urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
            ),
            ("subject_token".to_owned(), subject),
            (
                "subject_token_type".to_owned(),
                "urn:ietf:params:oauth:token-type:jwt".to_owned(),
            ),
        ]
    };
    let post = |client: reqwest::Client, bearer: Option<String>, form: Vec<(String, String)>| {
        let url = h.url("/oauth/token");
        async move {
            let mut req = client.post(url).form(&form);
            if let Some(t) = bearer {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    // An OIDC user (JWKS from a file), the agent by its certificate.
    let (status, body) = post(
        with_a.clone(),
        None,
        exchange(idp_token(&key, "alice", OIDC_ISSUER)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert!(body["expires_in"].as_u64().unwrap() <= 300);
    let delegated = body["access_token"].as_str().unwrap().to_owned();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            delegated.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(
        claims["act"]["sub"],
        "spiffe://warden.local/tenant/default/agent/a"
    );
    assert!(
        claims["cnf"]["x5t#S256"].is_string(),
        "bound to the agent's certificate"
    );
    // alice may search, and so may the agent: allowed, audited with both.
    assert_eq!(search(&h, &with_a, Some(&delegated)).await.0, 200);
    // The agent may read customers, alice may not: denied (G3).
    let before = h.crm.calls.get();
    let (_, body) = tool_call(
        &h,
        &with_a,
        Some(&delegated),
        "/mcp/crm",
        "get_customer",
        json!({"id": "c-1"}),
    )
    .await
    .unwrap();
    assert!(error_of(&body).contains("access denied"), "{body}");
    assert_eq!(h.crm.calls.get(), before, "never forwarded");
    let records = h.requests().await;
    let denied = records
        .iter()
        .find(|r| r.action.as_deref() == Some("crm/get_customer"))
        .unwrap();
    assert_eq!(denied.user.as_deref(), Some("alice"));
    assert!(
        denied.decision.reasons[0].contains("the user `alice` may not"),
        "{denied:?}"
    );
    // bob (another OIDC user) has no rights at all.
    let (_, body) = post(
        with_a.clone(),
        None,
        exchange(idp_token(&key, "bob", OIDC_ISSUER)),
    )
    .await;
    let for_bob = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        search(&h, &with_a, Some(&for_bob)).await.1["error"]["code"],
        -32001
    );

    // A directory user, the agent by its own token as `actor_token`.
    let tenant = TenantId::new("default").unwrap();
    let carol = UserName::new("carol").unwrap();
    h.store
        .create_user(&tenant, &carol, "member")
        .await
        .unwrap();
    let carol_token = h
        .issuer
        .issue_user(
            &tenant,
            &carol,
            warden_identity::UserRole::Member,
            Duration::from_secs(60),
        )
        .unwrap()
        .token;
    let no_cert = client(&h, None);
    let mut form = exchange(carol_token.clone());
    form.push(("actor_token".into(), h.token("a")));
    form.push((
        "actor_token_type".into(),
        "urn:ietf:params:oauth:token-type:access_token".into(),
    ));
    let (status, body) = post(no_cert.clone(), None, form).await;
    assert_eq!(status, 200, "{body}");

    // Refusals, each with a clear OAuth error.
    h.store
        .set_user_active(&tenant, &carol, false)
        .await
        .unwrap();
    let (status, body) = post(no_cert.clone(), Some(h.token("a")), exchange(carol_token)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "disabled user"
    );
    let (status, body) = post(
        no_cert.clone(),
        Some(h.token("a")),
        exchange(idp_token(&key, "alice", "https://evil.example")),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "unknown issuer"
    );
    let (status, _) = post(
        no_cert.clone(),
        Some(h.token("a")),
        exchange("garbage".into()),
    )
    .await;
    assert_eq!(status, 400, "garbage subject");
    let (status, body) = post(
        no_cert.clone(),
        Some(h.token_for_user("a", "alice")),
        exchange(idp_token(&key, "bob", OIDC_ISSUER)),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("deeper"),
        "{body}"
    );
    let (status, body) = post(
        no_cert.clone(),
        None,
        exchange(idp_token(&key, "alice", OIDC_ISSUER)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "no actor"
    );
    let (status, body) = post(
        no_cert.clone(),
        None,
        vec![("grant_type".into(), "password".into())],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let resp = no_cert
        .post(h.url("/oauth/token"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "JSON is not a form");
    let huge = "x".repeat(100_000);
    let (status, _) = post(no_cert.clone(), None, vec![("grant_type".into(), huge)]).await;
    assert!(status == 400 || status == 413, "{status}");
    // A user of another tenant cannot be acted for.
    let other = TenantId::new("other").unwrap();
    let dave = UserName::new("dave").unwrap();
    h.store.create_user(&other, &dave, "member").await.unwrap();
    let dave_token = h
        .issuer
        .issue_user(
            &other,
            &dave,
            warden_identity::UserRole::Member,
            Duration::from_secs(60),
        )
        .unwrap()
        .token;
    let (status, body) = post(no_cert, Some(h.token("a")), exchange(dave_token)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

#[tokio::test]
async fn renewal_keeps_a_long_running_client_working() {
    let h = tls_harness("required", "cert_ttl = \"4s\"\nmax_cert_ttl = \"1h\"").await;
    // The agent's first certificate lives four seconds.
    let first = cert_with(
        &h,
        "default",
        "a",
        "warden.local",
        Duration::from_secs(4),
        true,
    )
    .await;
    let resolver = Arc::new(Swappable(Mutex::new(Some(certified(&first)))));
    let https = client_with(&h, resolver.clone(), true);
    let started = std::time::Instant::now();
    let mut renewals = 0;
    let mut renewed = started;
    // Eight seconds of calls, renewing 1.2 s after the last certificate
    // (a third of its life, as a slow machine may take a while per call).
    while started.elapsed() < Duration::from_secs(8) {
        let (status, body) = search(&h, &https, None).await;
        assert_eq!(status, 200, "after {:?}: {body}", started.elapsed());
        if renewed.elapsed() > Duration::from_millis(1200) {
            // A new key each time; the CSR names the same identity.
            let tenant = TenantId::new("default").unwrap();
            let agent = AgentName::new("a").unwrap();
            let (key, csr) =
                generate_agent_csr(&spiffe_id("warden.local", &tenant, &agent)).unwrap();
            let resp = https
                .post(h.url("/identity/renew"))
                .body(csr)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let chain = resp.text().await.unwrap();
            assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "leaf and CA");
            *resolver.0.lock().unwrap() = Some(certified(&AgentCert {
                cert_pem: chain,
                key_pem: key,
                serial: String::new(),
            }));
            renewals += 1;
            renewed = std::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(renewals >= 4, "{renewals}");
    // A CSR for another identity is refused, and so is garbage.
    let other = spiffe_id(
        "warden.local",
        &TenantId::new("default").unwrap(),
        &AgentName::new("b").unwrap(),
    );
    let (_, csr) = generate_agent_csr(&other).unwrap();
    for body in [csr, "not a csr".to_owned(), "A".repeat(70_000)] {
        let resp = https
            .post(h.url("/identity/renew"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
    }
    let certs = h
        .store
        .list_certs(
            &TenantId::new("default").unwrap(),
            &AgentName::new("a").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        certs.len(),
        1 + renewals as usize,
        "every renewal is recorded"
    );
    let records = h.requests().await;
    assert!(
        records
            .iter()
            .any(|r| r.method.as_deref() == Some("certificate.renew")
                && r.decision.effect == Effect::Deny)
    );
}

#[tokio::test]
async fn a_rotated_signing_key_takes_effect_without_a_restart() {
    let h = tls_harness("optional", "").await;
    let https = client(&h, None);
    let old_token = h.token("a");
    let path = h.dir.path().join("keys/signing.pem");
    let new_kid = warden_identity::rotate(&path, Duration::from_secs(3600)).unwrap();
    let ring = Arc::new(warden_identity::KeyRing::load(&path).unwrap());
    let issuer = warden_identity::TokenIssuer::new(
        ring,
        "warden",
        "warden-gateway",
        "warden.local",
        Duration::from_secs(3600),
    );
    let new_token = issuer
        .issue(
            &TenantId::new("default").unwrap(),
            &AgentName::new("a").unwrap(),
            None,
            Duration::from_secs(60),
        )
        .unwrap()
        .token;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while search(&h, &https, Some(&new_token)).await.0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new key was never picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        search(&h, &https, Some(&old_token)).await.0,
        200,
        "the old key still verifies"
    );
    let jwks: Value = https
        .get(h.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [new_kid.as_str(), h.key.kid()]);
    // Tokens from the gateway's token endpoint are signed with the new key.
    let a = cert(&h, "a").await;
    let (_, body) = token_request(
        &h,
        &client(&h, Some(&a)),
        None,
        &[("grant_type", "client_credentials")],
    )
    .await;
    let header = jsonwebtoken::decode_header(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));
    // An unknown kid is refused.
    let stranger = warden_identity::SigningKey::from_pem(
        &warden_identity::SigningKey::generate_pem().unwrap(),
    )
    .unwrap();
    let forged = warden_identity::TokenIssuer::new(
        Arc::new(warden_identity::KeyRing::single(Arc::new(stranger))),
        "warden",
        "warden-gateway",
        "warden.local",
        Duration::from_secs(3600),
    )
    .issue(
        &TenantId::new("default").unwrap(),
        &AgentName::new("a").unwrap(),
        None,
        Duration::from_secs(60),
    )
    .unwrap()
    .token;
    let (status, body) = search(&h, &https, Some(&forged)).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("unknown signing key"), "{body}");
}
