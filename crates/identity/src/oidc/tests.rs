use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{EncodingKey, Header, encode};

use super::*;
use crate::token::now_secs;

struct Idp {
    encoding: EncodingKey,
    jwks: String,
}

/// An ES256 identity provider with key id `k1`.
fn idp() -> Idp {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = key.public_key_raw();
    assert_eq!(raw[0], 4, "uncompressed point");
    let (x, y) = raw[1..].split_at(32);
    let jwks = serde_json::json!({ "keys": [
        { "kty": "oct", "k": "c2VjcmV0", "kid": "sym" },
        { "kty": "EC", "crv": "P-256", "x": B64.encode(x), "y": B64.encode(y), "kid": "k1", "use": "sig" }
    ]})
    .to_string();
    Idp {
        encoding: EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
        jwks,
    }
}

fn settings() -> OidcSettings {
    OidcSettings {
        issuer: "https://idp.test".into(),
        audience: "warden".into(),
        tenant: TenantId::new("acme").unwrap(),
        user_claim: "preferred_username".into(),
        leeway_secs: 5,
    }
}

fn claims() -> Value {
    let now = now_secs();
    serde_json::json!({
        "iss": "https://idp.test", "aud": "warden", "sub": "00u1",
        "preferred_username": "alice", "exp": now + 60, "iat": now
    })
}

fn sign(idp: &Idp, claims: &Value, kid: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    encode(&header, claims, &idp.encoding).unwrap()
}

#[test]
fn a_token_of_the_issuer_names_its_user_in_the_issuers_tenant() {
    let idp = idp();
    let issuer = OidcIssuer::from_jwks(settings(), &idp.jwks).unwrap();
    let token = sign(&idp, &claims(), "k1");
    let user = issuer.verify(&token).unwrap();
    assert_eq!(user.user.as_str(), "alice");
    assert_eq!(user.tenant.as_str(), "acme");
    assert_eq!(user.role, None);
    assert_eq!(peek_issuer(&token).as_deref(), Some("https://idp.test"));
}

#[test]
fn wrong_claims_keys_and_algorithms_are_refused() {
    let idp = idp();
    let issuer = OidcIssuer::from_jwks(settings(), &idp.jwks).unwrap();
    let now = now_secs();
    let mut c = claims();
    c["exp"] = (now - 60).into();
    assert_eq!(
        issuer.verify(&sign(&idp, &c, "k1")),
        Err(TokenError::Expired)
    );
    let mut c = claims();
    c["aud"] = "someone-else".into();
    assert_eq!(
        issuer.verify(&sign(&idp, &c, "k1")),
        Err(TokenError::Audience)
    );
    let mut c = claims();
    c["iss"] = "https://evil.test".into();
    assert_eq!(
        issuer.verify(&sign(&idp, &c, "k1")),
        Err(TokenError::Issuer)
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("preferred_username");
    assert!(issuer.verify(&sign(&idp, &c, "k1")).is_err());
    // Unknown kid.
    assert!(issuer.verify(&sign(&idp, &claims(), "k2")).is_err());
    // Another key with the right kid: bad signature.
    let other = self::idp();
    assert!(issuer.verify(&sign(&other, &claims(), "k1")).is_err());
    // HS256 with the symmetric key of the JWKS, or naming the EC key.
    for kid in ["sym", "k1"] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.into());
        let t = encode(&header, &claims(), &EncodingKey::from_secret(b"secret")).unwrap();
        assert!(issuer.verify(&t).is_err(), "{kid}");
    }
    // alg: none.
    let payload = B64.encode(claims().to_string());
    let none = format!("{}.{payload}.", B64.encode(r#"{"alg":"none","kid":"k1"}"#));
    assert!(issuer.verify(&none).is_err());
    // Oversized.
    assert_eq!(issuer.verify(&"a".repeat(9000)), Err(TokenError::TooLarge));
}

#[test]
fn a_jwks_without_signing_keys_is_refused() {
    for bad in [
        "",
        "{}",
        r#"{"keys":[]}"#,
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#,
    ] {
        assert!(OidcIssuer::from_jwks(settings(), bad).is_err(), "{bad}");
    }
}
