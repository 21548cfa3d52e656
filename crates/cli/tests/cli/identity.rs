//! Identity commands: certificates, users, key and CA rotation, secrets,
//! and the agent lifecycle, each one an audit record.

use std::path::Path;
use std::process::Command;

use crate::{Run, init, warden};

/// Runs `warden ARGS` in `dir` with extra environment variables.
fn warden_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(dir)
        .env_remove("WARDEN_CONFIG")
        .env("WARDEN_LOG", "error")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.stderr);
}

fn operations(dir: &Path) -> Vec<String> {
    let tail = warden(dir, &["audit", "tail", "-n", "200", "--json"]);
    ok(&tail);
    tail.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|r| r["record"]["method"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn agent_certificates_from_a_csr_or_a_key_made_here() {
    let (tmp, dir) = init();
    ok(&warden(&dir, &["agent", "create", "bot"]));
    // --out: a key made here, the certificate and the CA.
    let out = tmp.path().join("bot-creds");
    let run = warden(
        &dir,
        &[
            "agent",
            "cert",
            "bot",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    );
    ok(&run);
    let issued = run.json();
    assert_eq!(
        issued["spiffe_id"],
        "spiffe://warden.local/tenant/default/agent/bot"
    );
    for f in ["cert.pem", "key.pem", "ca.pem"] {
        assert!(out.join(f).exists(), "{f}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(out.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the agent's key is private");
    }
    let der = pem::parse(std::fs::read_to_string(out.join("cert.pem")).unwrap())
        .unwrap()
        .into_contents();
    let who = warden_identity::ca::cert_identity(&der, "warden.local").unwrap();
    assert_eq!(who.agent.as_str(), "bot");
    // --csr: the agent's own key never leaves it.
    let (tenant, agent) = (
        warden_core::TenantId::new("default").unwrap(),
        warden_core::AgentName::new("bot").unwrap(),
    );
    let (_key, csr) = warden_identity::ca::generate_agent_csr(&warden_identity::spiffe_id(
        "warden.local",
        &tenant,
        &agent,
    ))
    .unwrap();
    std::fs::write(tmp.path().join("bot.csr"), &csr).unwrap();
    let run = warden(
        &dir,
        &[
            "agent",
            "cert",
            "bot",
            "--csr",
            tmp.path().join("bot.csr").to_str().unwrap(),
        ],
    );
    ok(&run);
    assert!(
        run.stdout.starts_with("-----BEGIN CERTIFICATE-----"),
        "{}",
        run.stdout
    );
    // A CSR for another identity, and garbage: refused (exit 2), clearly.
    let other = warden_core::AgentName::new("root").unwrap();
    let (_k, foreign) = warden_identity::ca::generate_agent_csr(&warden_identity::spiffe_id(
        "warden.local",
        &tenant,
        &other,
    ))
    .unwrap();
    std::fs::write(tmp.path().join("foreign.csr"), foreign).unwrap();
    std::fs::write(
        tmp.path().join("garbage.csr"),
        "-----BEGIN CERTIFICATE REQUEST-----\nnope\n",
    )
    .unwrap();
    for (file, why) in [
        ("foreign.csr", "another identity"),
        ("garbage.csr", "certificate signing request"),
    ] {
        let run = warden(
            &dir,
            &[
                "agent",
                "cert",
                "bot",
                "--csr",
                tmp.path().join(file).to_str().unwrap(),
            ],
        );
        assert_eq!(run.code, 2, "{file}: {}", run.stderr);
        assert!(run.stderr.contains(why), "{file}: {}", run.stderr);
    }
    // Longer than allowed, or for an agent that is not active: refused.
    let run = warden(
        &dir,
        &[
            "agent",
            "cert",
            "bot",
            "--out",
            out.to_str().unwrap(),
            "--ttl",
            "30d",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    ok(&warden(&dir, &["agent", "suspend", "bot"]));
    let run = warden(
        &dir,
        &["agent", "cert", "bot", "--out", out.to_str().unwrap()],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    ok(&warden(&dir, &["agent", "resume", "bot"]));
    // Both certificates are listed; one is revoked by serial.
    let certs = warden(&dir, &["agent", "certs", "bot", "--json"]);
    ok(&certs);
    let list = certs.json()["certificates"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    let serial = issued["serial"].as_str().unwrap();
    ok(&warden(&dir, &["agent", "revoke-cert", "bot", serial]));
    let run = warden(&dir, &["agent", "revoke-cert", "bot", "00ff"]);
    assert_eq!(run.code, 1);
    let certs = warden(&dir, &["agent", "certs", "bot", "--json"]).json();
    let revoked = certs["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["serial"] == serial)
        .unwrap()
        .clone();
    assert!(revoked["revoked_at"].is_string());
    let ops = operations(&dir);
    assert_eq!(
        ops.iter().filter(|o| *o == "agent.cert.issue").count(),
        2,
        "{ops:?}"
    );
    assert!(ops.contains(&"agent.cert.revoke".to_owned()));
}

#[test]
fn the_lifecycle_rotates_retires_and_audits_every_step() {
    let (_tmp, dir) = init();
    ok(&warden(&dir, &["agent", "create", "bot"]));
    ok(&warden(&dir, &["agent", "suspend", "bot"]));
    ok(&warden(&dir, &["agent", "resume", "bot"]));
    ok(&warden(&dir, &["agent", "rotate", "bot"]));
    let shown = warden(&dir, &["agent", "show", "bot", "--json"]).json();
    assert!(shown["rotated_at"].is_u64(), "{shown}");
    ok(&warden(&dir, &["agent", "retire", "bot"]));
    let run = warden(&dir, &["agent", "resume", "bot"]);
    assert_eq!(run.code, 2, "a retired agent stays retired: {}", run.stderr);
    let run = warden(&dir, &["token", "issue", "--agent", "bot"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let ops = operations(&dir);
    for op in [
        "agent.create",
        "agent.suspend",
        "agent.resume",
        "agent.rotate",
        "agent.retire",
    ] {
        assert!(ops.contains(&op.to_owned()), "{op} in {ops:?}");
    }
    ok(&warden(&dir, &["audit", "verify"]));
}

#[test]
fn directory_users_get_tokens_until_disabled() {
    let (_tmp, dir) = init();
    ok(&warden(
        &dir,
        &["user", "create", "alice", "--role", "approver"],
    ));
    let run = warden(&dir, &["user", "create", "alice"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let run = warden(&dir, &["user", "create", "bob", "--role", "root"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("unknown role"), "{}", run.stderr);
    let users = warden(&dir, &["user", "list", "--json"]).json();
    assert_eq!(users["users"][0]["role"], "approver");
    let token = warden(&dir, &["user", "token", "alice", "--json"]).json();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token["token"].as_str().unwrap().split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (claims["sub"].as_str(), claims["aud"].as_str()),
        (Some("alice"), Some("warden-gateway-user"))
    );
    ok(&warden(&dir, &["user", "disable", "alice"]));
    let run = warden(&dir, &["user", "token", "alice"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let ops = operations(&dir);
    assert!(
        ops.contains(&"user.create".to_owned()) && ops.contains(&"user.disable".to_owned()),
        "{ops:?}"
    );
}

/// Runs `warden ARGS` in `dir` with `input` on standard input.
fn warden_with_input(dir: &std::path::Path, args: &[&str], input: &str) -> crate::Run {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(dir)
        .env_remove("WARDEN_CONFIG")
        .env("WARDEN_LOG", "error")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    crate::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn console_credentials_and_groups_of_directory_users() {
    let (_tmp, dir) = init();
    let created = warden(
        &dir,
        &[
            "user", "create", "bob", "--role", "approver", "--group", "ops", "--group", "finance",
            "--group", "ops", "--json",
        ],
    )
    .json();
    assert_eq!(created["groups"], serde_json::json!(["finance", "ops"]));
    assert_eq!(created["has_password"], false);
    let run = warden(&dir, &["user", "create", "eve", "--group", "bad group"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("invalid group"), "{}", run.stderr);

    let short = warden_with_input(&dir, &["user", "password", "bob"], "short\n");
    assert_eq!(short.code, 1);
    assert!(short.stderr.contains("12 to 1024"), "{}", short.stderr);
    ok(&warden_with_input(
        &dir,
        &["user", "password", "bob"],
        "a long enough password\n",
    ));
    let users = warden(&dir, &["user", "list", "--json"]).json();
    assert_eq!(users["users"][0]["has_password"], true);
    // The hash never leaves the store.
    assert!(!users.to_string().contains("argon2"), "{users}");
    let unknown = warden_with_input(
        &dir,
        &["user", "password", "nobody"],
        "a long enough password\n",
    );
    assert_eq!(unknown.code, 1);

    let groups = warden(&dir, &["user", "groups", "bob", "--json"]).json();
    assert_eq!(groups["groups"], serde_json::json!([]));

    let link = warden(&dir, &["user", "login-link", "bob", "--json"]).json();
    let url = link["url"].as_str().unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:8081/console/login/link?token="),
        "{url}"
    );
    let token = url.split("token=").nth(1).unwrap();
    assert!(token.len() >= 43, "256 bits: {token}");
    let other = warden(&dir, &["user", "login-link", "bob", "--json"]).json();
    assert_ne!(other["url"], link["url"], "every link is new");
    assert_eq!(
        warden(&dir, &["user", "login-link", "bob", "--ttl", "48h"]).code,
        1
    );
    assert_eq!(warden(&dir, &["user", "login-link", "nobody"]).code, 1);
    ok(&warden(&dir, &["user", "disable", "bob"]));
    assert_eq!(warden(&dir, &["user", "login-link", "bob"]).code, 2);
    let ops = operations(&dir);
    for op in ["user.password.set", "user.groups", "user.login_link"] {
        assert!(ops.contains(&op.to_owned()), "{op}: {ops:?}");
    }
}

#[test]
fn signing_keys_and_the_ca_rotate() {
    let (_tmp, dir) = init();
    ok(&warden(&dir, &["agent", "create", "bot"]));
    let before = warden(&dir, &["token", "issue", "--agent", "bot"]).stdout;
    let kid = |token: &str| {
        jsonwebtoken::decode_header(token.trim())
            .unwrap()
            .kid
            .unwrap()
    };
    let old = kid(&before);
    let rotated = warden(&dir, &["key", "rotate", "--json"]);
    ok(&rotated);
    let new = rotated.json()["kid"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    let after = warden(&dir, &["token", "issue", "--agent", "bot"]).stdout;
    assert_eq!(kid(&after), new);
    let retired = std::fs::read_to_string(dir.join("keys/signing.pem.retired.json")).unwrap();
    assert!(
        retired.contains(&old),
        "the old key keeps verifying: {retired}"
    );
    // The CA: the bundle keeps the old CA until it is dropped.
    let count = |dir: &Path| {
        let b = warden(dir, &["ca", "bundle"]);
        ok(&b);
        b.stdout.matches("BEGIN CERTIFICATE").count()
    };
    assert_eq!(count(&dir), 1);
    ok(&warden(&dir, &["ca", "rotate"]));
    assert_eq!(count(&dir), 2);
    ok(&warden(&dir, &["ca", "rotate", "--drop-previous"]));
    assert_eq!(count(&dir), 1);
    let run = warden(&dir, &["ca", "init"]);
    assert_eq!(run.code, 1, "never replaced by init: {}", run.stderr);
    let ops = operations(&dir);
    assert!(
        ops.contains(&"key.rotate".to_owned()) && ops.contains(&"ca.rotate".to_owned()),
        "{ops:?}"
    );
}

#[test]
fn secrets_are_sealed_and_never_printed() {
    let (_tmp, dir) = init();
    let config = std::fs::read_to_string(dir.join("warden.toml")).unwrap();
    std::fs::write(
        dir.join("warden.toml"),
        format!("{config}\n[[upstreams]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/mcp\"\nauth = {{ type = \"bearer\" }}\n"),
    )
    .unwrap();
    let secret = "sk-live-abcdef0123456789";
    let run = warden_env(
        &dir,
        &["secret", "set", "crm", "--from-env", "CRM_KEY"],
        &[("CRM_KEY", secret)],
    );
    ok(&run);
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));
    let run = warden_env(
        &dir,
        &["secret", "set", "crm", "--user", "alice", "--from-env", "K"],
        &[("K", "alice-own-key")],
    );
    ok(&run);
    let list = warden(&dir, &["secret", "list", "--json"]);
    ok(&list);
    assert!(!list.stdout.contains(secret));
    assert_eq!(list.json()["secrets"].as_array().unwrap().len(), 2);
    // Not in the database in clear, nor in the audit trail.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds the secret",
                path.display()
            );
        }
    }
    let tail = warden(&dir, &["audit", "tail", "-n", "50", "--json"]);
    assert!(!tail.stdout.contains(secret));
    assert!(operations(&dir).contains(&"secret.set".to_owned()));
    // With the wrong master key, nothing is stored.
    let run = warden_env(
        &dir,
        &["secret", "set", "crm", "--from-env", "K"],
        &[("K", "x"), ("WARDEN_MASTER_KEY", "not-a-key")],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    // Unknown upstreams and empty values are refused.
    let run = warden_env(
        &dir,
        &["secret", "set", "nope", "--from-env", "K"],
        &[("K", "x")],
    );
    assert_eq!(run.code, 1);
    let run = warden_env(
        &dir,
        &["secret", "set", "crm", "--from-env", "K"],
        &[("K", "")],
    );
    assert_eq!(run.code, 1);
    ok(&warden(
        &dir,
        &["secret", "delete", "crm", "--user", "alice"],
    ));
    assert_eq!(
        warden(&dir, &["secret", "delete", "crm", "--user", "alice"]).code,
        1
    );
}

#[test]
fn commands_act_in_the_tenant_they_are_given() {
    let (_tmp, dir) = init();
    let config = std::fs::read_to_string(dir.join("warden.toml")).unwrap();
    std::fs::create_dir_all(dir.join("tenants/acme")).unwrap();
    std::fs::copy(
        dir.join("policies/warden.cedarschema"),
        dir.join("tenants/acme/warden.cedarschema"),
    )
    .unwrap();
    std::fs::write(
        dir.join("warden.toml"),
        format!("{config}\n[[tenants]]\nname = \"acme\"\npolicy_dir = \"tenants/acme\"\n"),
    )
    .unwrap();
    ok(&warden(
        &dir,
        &["--tenant", "acme", "agent", "create", "bot"],
    ));
    let acme = warden(&dir, &["--tenant", "acme", "agent", "list", "--json"]).json();
    assert_eq!(acme["agents"][0]["tenant"], "acme");
    let default = warden(&dir, &["agent", "list", "--json"]).json();
    assert_eq!(default["agents"], serde_json::json!([]), "nothing crosses");
    let token = warden(
        &dir,
        &["--tenant", "acme", "token", "issue", "--agent", "bot"],
    );
    ok(&token);
    // Not an agent of the default tenant.
    assert_eq!(warden(&dir, &["token", "issue", "--agent", "bot"]).code, 1);
    let run = warden(&dir, &["--tenant", "globex", "agent", "list"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("not served"), "{}", run.stderr);
    let check = warden(&dir, &["--tenant", "acme", "policy", "check"]);
    assert_eq!(check.code, 0, "{}", check.stderr);
}
