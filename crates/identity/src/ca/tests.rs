use super::*;

fn ca() -> CertAuthority {
    let (cert, key) = generate_ca("td.test").unwrap();
    CertAuthority::from_pem(&cert, &key, "td.test").unwrap()
}

fn names() -> (TenantId, AgentName) {
    (
        TenantId::new("acme").unwrap(),
        AgentName::new("bot").unwrap(),
    )
}

#[test]
fn a_csr_for_the_agent_becomes_a_certificate_carrying_its_spiffe_id() {
    let ca = ca();
    let (tenant, agent) = names();
    let id = spiffe_id("td.test", &tenant, &agent);
    let (_key, csr) = generate_agent_csr(&id).unwrap();
    let cert = ca
        .sign_agent_csr(&csr, &tenant, &agent, Duration::from_secs(3600))
        .unwrap();
    let who = cert_identity(&cert.der, "td.test").unwrap();
    assert_eq!((who.tenant, who.agent), (tenant, agent));
    assert_eq!(who.serial, cert.serial);
    assert_eq!(who.not_after, cert.not_after);
    assert_eq!(who.thumbprint, cert.thumbprint);
    assert!(cert.not_after - cert.not_before <= 3660);
    // The same certificate read in another trust domain is refused.
    assert!(matches!(
        cert_identity(&cert.der, "other.test"),
        Err(CertError::Subject(_))
    ));
}

#[test]
fn a_csr_with_no_identity_is_certified_for_the_named_agent() {
    let ca = ca();
    let (tenant, agent) = names();
    let key = KeyPair::generate().unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let cert = ca
        .sign_agent_csr(&csr, &tenant, &agent, Duration::from_secs(60))
        .unwrap();
    assert_eq!(cert_identity(&cert.der, "td.test").unwrap().agent, agent);
}

#[test]
fn a_csr_for_another_identity_is_refused() {
    let ca = ca();
    let (tenant, agent) = names();
    let other = spiffe_id("td.test", &tenant, &AgentName::new("other").unwrap());
    let (_k, csr) = generate_agent_csr(&other).unwrap();
    assert!(matches!(
        ca.sign_agent_csr(&csr, &tenant, &agent, Duration::from_secs(60)),
        Err(CertError::Identity(_))
    ));
    // Another tenant, same agent name.
    let foreign = spiffe_id("td.test", &TenantId::new("evil").unwrap(), &agent);
    let (_k, csr) = generate_agent_csr(&foreign).unwrap();
    assert!(matches!(
        ca.sign_agent_csr(&csr, &tenant, &agent, Duration::from_secs(60)),
        Err(CertError::Identity(_))
    ));
    // A DNS name instead.
    let key = KeyPair::generate().unwrap();
    let csr = CertificateParams::new(vec!["bot.example".to_owned()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    assert!(matches!(
        ca.sign_agent_csr(&csr, &tenant, &agent, Duration::from_secs(60)),
        Err(CertError::Identity(_))
    ));
}

#[test]
fn garbage_and_tampered_csrs_are_refused() {
    let ca = ca();
    let (tenant, agent) = names();
    let ttl = Duration::from_secs(60);
    for bad in [
        "",
        "not pem",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    ] {
        assert!(
            matches!(
                ca.sign_agent_csr(bad, &tenant, &agent, ttl),
                Err(CertError::Csr(_))
            ),
            "{bad:?}"
        );
    }
    let huge = "A".repeat(MAX_PEM_BYTES + 1);
    assert!(matches!(
        ca.sign_agent_csr(&huge, &tenant, &agent, ttl),
        Err(CertError::Pem(_))
    ));
    // Flip a byte inside the signed part: the signature no longer verifies.
    let id = spiffe_id("td.test", &tenant, &agent);
    let (_k, csr) = generate_agent_csr(&id).unwrap();
    let der = pem::parse(&csr).unwrap().into_contents();
    let mut tampered = der.clone();
    let i = tampered.len() / 2;
    tampered[i] ^= 0x01;
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", tampered));
    assert!(ca.sign_agent_csr(&pem, &tenant, &agent, ttl).is_err());
}

#[test]
fn only_agent_ids_of_the_trust_domain_parse() {
    assert!(parse_agent_id("spiffe://td.test/tenant/acme/agent/bot", "td.test").is_ok());
    for bad in [
        "spiffe://td.test/tenant/acme/agent/bot/x",
        "spiffe://td.test/tenant/acme/user/bot",
        "spiffe://other/tenant/acme/agent/bot",
        "https://td.test/tenant/acme/agent/bot",
        "spiffe://td.test",
        "spiffe://td.test/tenant//agent/bot",
        "spiffe://td.test/tenant/acme/agent/../x",
    ] {
        assert!(parse_agent_id(bad, "td.test").is_err(), "{bad}");
    }
}

#[test]
fn server_certificates_name_their_hosts() {
    let ca = ca();
    let (cert, key) = ca
        .issue_server(
            &["localhost".into(), "127.0.0.1".into()],
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(key.contains("PRIVATE KEY"));
    let bundle = parse_cert_bundle(&format!("{}{}", cert.pem, ca.cert_pem())).unwrap();
    assert_eq!(bundle.len(), 2);
    assert!(parse_cert_bundle("nothing here").is_err());
}

#[test]
fn ca_files_rotate_keeping_the_previous_ca_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let files = CaFiles::in_dir(&dir.path().join("ca"));
    assert!(!files.exists());
    files.create("td.test").unwrap();
    assert!(files.create("td.test").is_err(), "never replaced by create");
    let (first, bundle) = files.load("td.test").unwrap();
    assert_eq!(parse_cert_bundle(&bundle).unwrap().len(), 1);
    files.rotate("td.test", false).unwrap();
    let (second, bundle) = files.load("td.test").unwrap();
    assert_ne!(first.cert_pem(), second.cert_pem());
    let certs = parse_cert_bundle(&bundle).unwrap();
    assert_eq!(certs.len(), 2);
    assert!(bundle.starts_with(second.cert_pem()));
    files.rotate("td.test", true).unwrap();
    let (_, bundle) = files.load("td.test").unwrap();
    assert_eq!(parse_cert_bundle(&bundle).unwrap().len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the CA key is private");
    }
}
