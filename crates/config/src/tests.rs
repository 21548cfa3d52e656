use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/warden/warden.toml"))
}

#[test]
fn empty_file_gets_documented_defaults() {
    let c = parse("").expect("defaults are valid");
    assert_eq!(c.gateway.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:8081");
    assert_eq!(c.storage_url, "sqlite:///etc/warden/warden.db");
    assert_eq!(c.policy.dir, PathBuf::from("/etc/warden/policies"));
    assert_eq!(c.identity.default_tenant.as_str(), "default");
    assert_eq!(c.identity.token_ttl, Duration::from_secs(600));
    assert!(c.upstreams.is_empty());
}

#[test]
fn upstreams_of_both_kinds() {
    let c = parse(
        r#"
        [[upstreams]]
        name = "crm"
        url = "http://127.0.0.1:9000/mcp"
        timeout = "5s"

        [[upstreams]]
        name = "docs"
        command = ["./bin/docs-server", "--flag"]
        env = { LEVEL = "debug" }
        "#,
    )
    .expect("valid");
    assert_eq!(c.upstreams.len(), 2);
    assert!(matches!(
        c.upstream("crm").map(|u| &u.transport),
        Some(Transport::Http { .. })
    ));
    assert_eq!(
        c.upstream("crm").map(|u| u.timeout),
        Some(Duration::from_secs(5))
    );
    match c.upstream("docs").map(|u| &u.transport) {
        Some(Transport::Stdio {
            program, args, env, ..
        }) => {
            assert_eq!(program, &PathBuf::from("/etc/warden/./bin/docs-server"));
            assert_eq!(args, &vec!["--flag".to_owned()]);
            assert_eq!(env.get("LEVEL").map(String::as_str), Some("debug"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    for (text, needle) in [
        (
            "[gateway]\nlisten = \"127.0.0.1:1\"\nlistne = 1\n",
            "listne",
        ),
        ("colour = 1\n", "colour"),
        (
            "[[upstreams]]\nname = \"a\"\nurl = \"http://x\"\nurll = \"y\"\n",
            "urll",
        ),
    ] {
        let err = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn broken_rules_are_explained() {
    for (text, needle) in [
        (
            "[[upstreams]]\nname = \"a\"\n",
            "exactly one of `url` and `command`",
        ),
        (
            "[[upstreams]]\nname = \"a\"\nurl = \"http://x\"\ncommand = [\"y\"]\n",
            "exactly one",
        ),
        (
            "[[upstreams]]\nname = \"a\"\ncommand = []\n",
            "`command` is empty",
        ),
        (
            "[[upstreams]]\nname = \"a\"\nurl = \"ftp://x\"\n",
            "http://",
        ),
        (
            "[[upstreams]]\nname = \"a\"\nurl = \"http://x\"\n[[upstreams]]\nname = \"a\"\nurl = \"http://y\"\n",
            "defined twice",
        ),
        (
            "[[upstreams]]\nname = \"A.b\"\nurl = \"http://x\"\n",
            "invalid upstream name",
        ),
        ("[identity]\ntoken_ttl = \"2h\"\n", "token_ttl"),
        ("[identity]\nmax_token_ttl = \"48h\"\n", "at most 24h"),
        (
            "[identity]\ntoken_ttl = \"soon\"\n",
            "invalid duration `soon`",
        ),
        ("[storage]\nurl = \"mysql://x\"\n", "not supported"),
        ("[storage]\nurl = \"sqlite://:memory:\"\n", "in-memory"),
        (
            "[storage]\nurl = \"sqlite://x.db?mode=memory\"\n",
            "in-memory",
        ),
        ("[gateway]\nlisten = \"nowhere\"\n", "listen"),
    ] {
        let err = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(needle), "{text:?}: {err}");
        assert!(
            err.starts_with("invalid config `/etc/warden/warden.toml`"),
            "{err}"
        );
    }
}

#[test]
fn tls_oidc_and_upstream_credentials() {
    let c = parse(
        r#"
        [gateway]
        listen = "127.0.0.1:8443"
        [gateway.tls]
        enabled = true
        client_auth = "required"

        [identity]
        cert_ttl = "30m"
        [[identity.oidc]]
        issuer = "https://idp.example"
        audience = "warden"
        jwks_file = "idp.jwks.json"
        user_claim = "email"

        [[upstreams]]
        name = "crm"
        url = "http://127.0.0.1:9000/mcp"
        auth = { type = "header", header = "X-Api-Key", per_user = true }

        [[upstreams]]
        name = "tool"
        command = ["tool"]
        auth = { type = "env", var = "TOOL_KEY" }
        "#,
    )
    .expect("valid");
    let tls = c.gateway.tls.clone().expect("tls");
    assert_eq!(tls.client_auth, ClientAuth::Required);
    assert_eq!(
        tls.server_cert,
        ServerCert::Issued {
            hosts: vec!["localhost".into(), "127.0.0.1".into()]
        }
    );
    assert_eq!(c.identity.cert_ttl, Duration::from_secs(1800));
    assert_eq!(c.identity.delegated_token_ttl, Duration::from_secs(900));
    assert_eq!(c.identity.ca_dir, PathBuf::from("/etc/warden/keys/ca"));
    let idp = &c.identity.oidc[0];
    assert_eq!(
        idp.jwks,
        JwksSource::File("/etc/warden/idp.jwks.json".into())
    );
    assert_eq!(idp.tenant.as_str(), "default");
    assert_eq!(
        c.upstream("crm").unwrap().auth,
        Some(UpstreamAuth::Header {
            header: "x-api-key".into(),
            per_user: true
        })
    );
    // Disabled TLS is no TLS.
    let c = parse("[gateway.tls]\nenabled = false\n").unwrap();
    assert!(c.gateway.tls.is_none());
}

#[test]
fn bad_identity_and_credential_settings_are_refused() {
    for (bad, why) in [
        (
            "[gateway.tls]\nenabled = true\nclient_auth = \"maybe\"\n",
            "client_auth",
        ),
        ("[gateway.tls]\nenabled = true\ncert = \"c.pem\"\n", "key"),
        ("[identity]\ncert_ttl = \"48h\"\n", "cert_ttl"),
        ("[identity]\nmax_cert_ttl = \"90d\"\n", "max_cert_ttl"),
        (
            "[identity]\ndelegated_token_ttl = \"2h\"\n",
            "delegated_token_ttl",
        ),
        (
            "[[identity.oidc]]\nissuer = \"i\"\naudience = \"a\"\n",
            "jwks",
        ),
        (
            "[[identity.oidc]]\nissuer = \"warden\"\naudience = \"a\"\njwks_file = \"f\"\n",
            "own issuer",
        ),
        (
            "[[upstreams]]\nname = \"x\"\nurl = \"http://h/mcp\"\nauth = { type = \"env\", var = \"K\" }\n",
            "env on http",
        ),
        (
            "[[upstreams]]\nname = \"x\"\ncommand = [\"t\"]\nauth = { type = \"bearer\" }\n",
            "bearer on stdio",
        ),
        (
            "[[upstreams]]\nname = \"x\"\nurl = \"http://h/mcp\"\nauth = { type = \"header\", header = \"Host\" }\n",
            "host header",
        ),
        (
            "[[upstreams]]\nname = \"x\"\nurl = \"http://h/mcp\"\nauth = { type = \"oauth\", token_url = \"ftp://t\", client_id = \"c\" }\n",
            "token url",
        ),
        (
            "[[upstreams]]\nname = \"x\"\nurl = \"http://h/mcp\"\nauth = { type = \"magic\" }\n",
            "unknown type",
        ),
    ] {
        assert!(parse(bad).is_err(), "{why}");
    }
}

#[test]
fn tool_labels_and_task_limits() {
    let c = parse(
        r#"
        [tasks]
        max_ttl = "2h"
        [[upstreams]]
        name = "hr"
        url = "http://127.0.0.1:9000/mcp"
        classification = "confidential"
        [upstreams.tools.export]
        external = true
        effect = "persistent"
        "#,
    )
    .expect("valid");
    assert_eq!(c.tasks.max_ttl, Duration::from_secs(7200));
    assert_eq!(c.tasks.default_ttl, Duration::from_secs(1800));
    let hr = c.upstream("hr").unwrap();
    assert_eq!(hr.labels.classification.as_deref(), Some("confidential"));
    assert_eq!(hr.tool_labels["export"].external, Some(true));
    for bad in [
        "[[upstreams]]\nname = \"x\"\nurl = \"http://h/mcp\"\nclassification = \"secret\"\n",
        "[[upstreams]]\nname = \"x\"\nurl = \"http://h/mcp\"\n[upstreams.tools.t]\neffect = \"explosive\"\n",
        "[[upstreams]]\nname = \"x\"\nurl = \"http://h/mcp\"\n[upstreams.tools.t]\nsink = true\n",
        "[tasks]\ndefault_ttl = \"9h\"\n",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn tenants_have_their_own_policy_folders() {
    let c = parse("[[tenants]]\nname = \"acme\"\npolicy_dir = \"tenants/acme\"\n").unwrap();
    let acme = TenantId::new("acme").unwrap();
    assert_eq!(
        c.served_tenants(),
        [TenantId::new("default").unwrap(), acme.clone()]
    );
    assert_eq!(
        c.policy_dir(&acme),
        Some(Path::new("/etc/warden/tenants/acme"))
    );
    assert_eq!(
        c.policy_dir(&TenantId::new("default").unwrap()),
        Some(Path::new("/etc/warden/policies"))
    );
    assert_eq!(c.policy_dir(&TenantId::new("other").unwrap()), None);
    for bad in [
        "[[tenants]]\nname = \"default\"\npolicy_dir = \"p\"\n",
        "[[tenants]]\nname = \"a\"\npolicy_dir = \"p\"\n[[tenants]]\nname = \"a\"\npolicy_dir = \"q\"\n",
        "[[tenants]]\nname = \"Bad Name\"\npolicy_dir = \"p\"\n",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn approval_modes() {
    let c = parse("[[upstreams]]\nname = \"m\"\nurl = \"http://h/mcp\"\napproval = \"wait\"\napproval_timeout = \"2m\"\n").unwrap();
    assert_eq!(
        c.upstreams[0].approval,
        ApprovalMode::Wait(Duration::from_secs(120))
    );
    let c = parse("[[upstreams]]\nname = \"m\"\nurl = \"http://h/mcp\"\n").unwrap();
    assert_eq!(c.upstreams[0].approval, ApprovalMode::Defer);
    for bad in [
        "[[upstreams]]\nname = \"m\"\nurl = \"http://h/mcp\"\napproval = \"maybe\"\n",
        "[[upstreams]]\nname = \"m\"\nurl = \"http://h/mcp\"\napproval_timeout = \"1m\"\n",
        "[[upstreams]]\nname = \"m\"\nurl = \"http://h/mcp\"\napproval = \"wait\"\napproval_timeout = \"2h\"\n",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn approvals_and_webhooks() {
    let c = parse("").unwrap();
    assert_eq!(c.approvals.ttl, Duration::from_secs(900));
    assert!(c.webhooks.is_empty());
    assert_eq!(c.admin.public_url, "http://127.0.0.1:8081");
    let c = parse(
        r#"
        [admin]
        public_url = "https://warden.example.com/"
        [approvals]
        ttl = "30m"
        sweep_interval = "1s"
        [[webhooks]]
        name = "chat"
        url = "https://hooks.example.com/warden"
        secret_env = "CHAT_SECRET"
        events = ["approval.created", "approval.decided"]
        [[webhooks]]
        name = "local"
        url = "http://127.0.0.1:9000/hook"
        secret_file = "keys/hook.secret"
        tenants = ["acme"]
        "#,
    )
    .unwrap();
    assert_eq!(c.admin.public_url, "https://warden.example.com");
    assert_eq!(c.approvals.ttl, Duration::from_secs(1800));
    let chat = &c.webhooks[0];
    assert_eq!(chat.secret, SecretSource::Env("CHAT_SECRET".into()));
    assert!(chat.wants("approval.created", "any") && !chat.wants("approval.executed", "any"));
    let local = &c.webhooks[1];
    assert!(matches!(&local.secret, SecretSource::File(p) if p.ends_with("keys/hook.secret")));
    assert!(local.wants("approval.executed", "acme") && !local.wants("approval.executed", "b"));
    let hook = |extra: &str| {
        format!("[[webhooks]]\nname = \"h\"\nurl = \"https://h.example/x\"\n{extra}\n")
    };
    for bad in [
        "[approvals]\nttl = \"0s\"\n".to_owned(),
        "[approvals]\nttl = \"2d\"\n".to_owned(),
        "[approvals]\nsweep_interval = \"1ms\"\n".to_owned(),
        "[admin]\npublic_url = \"ftp://x\"\n".to_owned(),
        hook(""),
        hook("secret_env = \"A\"\nsecret_file = \"f\""),
        hook("secret_env = \"A\"\nevents = [\"approval.maybe\"]"),
        hook("secret_env = \"A\"\nmax_attempts = 0"),
        "[[webhooks]]\nname = \"h\"\nurl = \"http://hooks.example/x\"\nsecret_env = \"A\"\n"
            .to_owned(),
        format!(
            "{}{}",
            hook("secret_env = \"A\""),
            hook("secret_env = \"B\"")
        ),
    ] {
        assert!(parse(&bad).is_err(), "{bad}");
    }
}

#[test]
fn audit_checkpoints() {
    let c = parse("").unwrap();
    assert_eq!(c.audit.origin, "warden.local/audit");
    assert!(c.audit.key.ends_with("keys/audit.pem"));
    assert_eq!(c.audit.checkpoint_every, 1000);
    let c = parse("[audit]\norigin = \"acme.example/audit\"\ncheckpoint_every = 10\ncheckpoint_interval = \"1s\"\n").unwrap();
    assert_eq!(
        (c.audit.origin.as_str(), c.audit.checkpoint_every),
        ("acme.example/audit", 10)
    );
    for bad in [
        "[audit]\norigin = \"a b\"\n",
        "[audit]\norigin = \"a+b\"\n",
        "[audit]\ncheckpoint_every = 0\n",
        "[audit]\ncheckpoint_interval = \"1ms\"\n",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn audit_sinks() {
    let c = parse(
        "[[audit.sinks]]\nname = \"file\"\npath = \"logs/ocsf.jsonl\"\n\
         [[audit.sinks]]\nname = \"siem\"\nurl = \"https://siem.example/ingest\"\ntoken_env = \"SIEM_TOKEN\"\nformat = \"native\"\nbatch = 50\n",
    )
    .unwrap();
    assert_eq!(c.audit.sinks.len(), 2);
    let file = &c.audit.sinks[0];
    assert!(
        matches!(&file.target, SinkTarget::File(p) if p.ends_with("logs/ocsf.jsonl") && p.is_absolute())
    );
    assert_eq!((file.format, file.batch), (SinkFormat::Ocsf, 500));
    let siem = &c.audit.sinks[1];
    assert_eq!(
        siem.target,
        SinkTarget::Http {
            url: "https://siem.example/ingest".into(),
            token: Some(SecretSource::Env("SIEM_TOKEN".into()))
        }
    );
    assert_eq!((siem.format, siem.batch), (SinkFormat::Native, 50));
    for (bad, says) in [
        ("name = \"a\"\n", "exactly one of `path` and `url`"),
        (
            "name = \"a\"\npath = \"x\"\nurl = \"https://x\"\n",
            "exactly one",
        ),
        ("name = \"a\"\nurl = \"http://siem.example\"\n", "https://"),
        (
            "name = \"a\"\npath = \"x\"\ntoken_env = \"T\"\n",
            "only for `url`",
        ),
        (
            "name = \"a\"\nurl = \"https://x\"\ntoken_env = \"T\"\ntoken_file = \"f\"\n",
            "at most one",
        ),
        (
            "name = \"a\"\npath = \"x\"\nformat = \"cef\"\n",
            "`ocsf` or `native`",
        ),
        ("name = \"a\"\npath = \"x\"\nbatch = 0\n", "1 to 10000"),
        ("name = \"\"\npath = \"x\"\n", "unique"),
        ("name = \"a\"\npath = \"x\"\nretries = 3\n", "unknown field"),
    ] {
        let err = parse(&format!("[[audit.sinks]]\n{bad}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{bad}: {err}");
    }
    let dup = parse(
        "[[audit.sinks]]\nname = \"a\"\npath = \"x\"\n[[audit.sinks]]\nname = \"a\"\npath = \"y\"\n",
    );
    assert!(dup.unwrap_err().to_string().contains("unique"));
}

#[test]
fn telemetry() {
    let c = parse("").unwrap();
    assert_eq!(c.telemetry.otlp_endpoint, None);
    assert_eq!(
        (c.telemetry.service_name.as_str(), c.telemetry.sample_ratio),
        ("warden", 1.0)
    );
    let c = parse("[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/\"\nservice_name = \"gw-eu\"\nsample_ratio = 0.1\n").unwrap();
    assert_eq!(
        c.telemetry.otlp_endpoint.as_deref(),
        Some("http://127.0.0.1:4318")
    );
    assert_eq!(
        (c.telemetry.service_name.as_str(), c.telemetry.sample_ratio),
        ("gw-eu", 0.1)
    );
    for bad in [
        "otlp_endpoint = \"http://collector.example:4318\"",
        "otlp_endpoint = \"ftp://x\"",
        "sample_ratio = 1.5",
        "sample_ratio = -0.1",
        "service_name = \"\"",
        "endpoint = \"https://x\"",
    ] {
        assert!(parse(&format!("[telemetry]\n{bad}\n")).is_err(), "{bad}");
    }
}
