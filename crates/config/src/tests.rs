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
