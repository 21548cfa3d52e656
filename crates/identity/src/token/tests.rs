use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use super::*;
use crate::SigningKey;

const TD: &str = "warden.local";

fn key() -> Arc<SigningKey> {
    Arc::new(SigningKey::from_pem(&SigningKey::generate_pem().unwrap()).unwrap())
}

fn pair() -> (TokenIssuer, TokenVerifier) {
    let k = Arc::new(KeyRing::single(key()));
    (
        TokenIssuer::new(
            k.clone(),
            "warden",
            "warden-gateway",
            TD,
            Duration::from_secs(3600),
        ),
        TokenVerifier::new(k, "warden", "warden-gateway", TD, Duration::from_secs(5)),
    )
}

fn tenant() -> TenantId {
    TenantId::new("default").unwrap()
}

fn agent() -> AgentName {
    AgentName::new("bot").unwrap()
}

/// Re-signs `claims` with `key`, so that only the claims are wrong.
fn signed(claims: &serde_json::Value, key: &SigningKey) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid().to_owned());
    encode(&header, claims, key.encoding()).unwrap()
}

fn claims(issuer: &TokenIssuer) -> serde_json::Value {
    let now = now_secs();
    serde_json::json!({
        "iss": issuer.issuer, "aud": issuer.audience, "sub": spiffe_id(TD, &tenant(), &agent()),
        "tenant": "default", "exp": now + 60, "iat": now, "nbf": now, "jti": "j"
    })
}

#[test]
fn issued_tokens_verify() {
    let (issuer, verifier) = pair();
    let t = issuer
        .issue(&tenant(), &agent(), None, Duration::from_secs(600))
        .unwrap();
    let v = verifier.verify(&t.token).unwrap();
    assert_eq!(v.agent, agent());
    assert_eq!(v.tenant, tenant());
    assert_eq!(v.user, None);
    assert_eq!(v.jti, t.jti);
    let alice = UserName::new("alice").unwrap();
    let t = issuer
        .issue(&tenant(), &agent(), Some(&alice), Duration::from_secs(60))
        .unwrap();
    let v = verifier.verify(&t.token).unwrap();
    assert_eq!((v.agent, v.user), (agent(), Some(alice)));
    let body: serde_json::Value =
        serde_json::from_slice(&B64.decode(t.token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(body["sub"], "alice");
    assert_eq!(
        body["act"]["sub"],
        "spiffe://warden.local/tenant/default/agent/bot"
    );
}

#[test]
fn ttl_is_capped() {
    let (issuer, _) = pair();
    assert!(matches!(
        issuer.issue(&tenant(), &agent(), None, Duration::from_secs(7200)),
        Err(TokenError::TooLong { .. })
    ));
}

#[test]
fn expired_future_wrong_audience_and_issuer_are_refused() {
    let (issuer, verifier) = pair();
    let k = issuer.keys.active();
    let mut c = claims(&issuer);
    c["exp"] = (now_secs() - 60).into();
    assert_eq!(verifier.verify(&signed(&c, &k)), Err(TokenError::Expired));
    let mut c = claims(&issuer);
    c["nbf"] = (now_secs() + 600).into();
    assert_eq!(verifier.verify(&signed(&c, &k)), Err(TokenError::Immature));
    let mut c = claims(&issuer);
    c["aud"] = "someone-else".into();
    assert_eq!(verifier.verify(&signed(&c, &k)), Err(TokenError::Audience));
    let mut c = claims(&issuer);
    c["iss"] = "evil".into();
    assert_eq!(verifier.verify(&signed(&c, &k)), Err(TokenError::Issuer));
    let mut c = claims(&issuer);
    c.as_object_mut().unwrap().remove("exp");
    assert!(matches!(
        verifier.verify(&signed(&c, &k)),
        Err(TokenError::Invalid(_))
    ));
}

#[test]
fn subjects_must_be_agents_of_the_tenant() {
    let (issuer, verifier) = pair();
    let k = issuer.keys.active();
    for sub in [
        "spiffe://warden.local/tenant/other/agent/bot",
        "spiffe://evil.example/tenant/default/agent/bot",
        "spiffe://warden.local/tenant/default/agent/Bad Name",
        "bot",
    ] {
        let mut c = claims(&issuer);
        c["sub"] = sub.into();
        assert!(verifier.verify(&signed(&c, &k)).is_err(), "{sub}");
    }
    let mut c = claims(&issuer);
    c["sub"] = "alice".into();
    c["act"] = serde_json::json!({"sub": "spiffe://warden.local/tenant/default/agent/bot", "act": {"sub": "x"}});
    assert!(
        verifier.verify(&signed(&c, &k)).is_err(),
        "deep chains are refused"
    );
}

#[test]
fn forged_and_confused_tokens_are_refused() {
    let (issuer, verifier) = pair();
    let t = issuer
        .issue(&tenant(), &agent(), None, Duration::from_secs(60))
        .unwrap()
        .token;
    let parts: Vec<&str> = t.split('.').collect();
    // Another key with the same kid cannot sign.
    let (other, _) = pair();
    let forged = signed(&claims(&issuer), &other.keys.active());
    assert!(verifier.verify(&forged).is_err());
    // Changed payload, original signature.
    let mut c = claims(&issuer);
    c["sub"] = "spiffe://warden.local/tenant/default/agent/root".into();
    let tampered = format!("{}.{}.{}", parts[0], B64.encode(c.to_string()), parts[2]);
    assert_eq!(
        verifier.verify(&tampered),
        Err(TokenError::Invalid("bad signature".into()))
    );
    // alg: none, and HS256 keyed with the public key.
    for alg in ["none", "HS256", "RS256"] {
        let header = B64.encode(format!(
            r#"{{"alg":"{alg}","typ":"JWT","kid":"{}"}}"#,
            issuer.keys.active().kid()
        ));
        let token = format!("{header}.{}.", parts[1]);
        assert!(verifier.verify(&token).is_err(), "{alg}");
        let token = format!("{header}.{}.{}", parts[1], parts[2]);
        assert!(verifier.verify(&token).is_err(), "{alg}");
    }
    // Garbage and oversized input.
    for junk in [
        "",
        "a.b.c",
        "....",
        "Bearer x",
        &"A".repeat(9000),
        "eyJ.eyJ.x",
    ] {
        assert!(verifier.verify(junk).is_err(), "{junk}");
    }
    // No kid.
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = None;
    let nokid = encode(&header, &claims(&issuer), issuer.keys.active().encoding()).unwrap();
    assert!(verifier.verify(&nokid).is_err());
}
