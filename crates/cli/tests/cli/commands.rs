//! init, agent, token and policy commands.

use crate::{init, repo, warden};

#[test]
fn init_makes_a_working_directory_and_never_overwrites() {
    let (tmp, dir) = init();
    for f in [
        "warden.toml",
        "policies/warden.cedarschema",
        "policies/starter.cedar",
        "keys/signing.pem",
        "warden.db",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("keys/signing.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the signing key is private");
    }
    let before = std::fs::read(dir.join("keys/signing.pem")).unwrap();
    let again = warden(tmp.path(), &["init", dir.to_str().unwrap()]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.starts_with("warden: refusing to overwrite"),
        "{}",
        again.stderr
    );
    assert_eq!(std::fs::read(dir.join("keys/signing.pem")).unwrap(), before);
    // The fresh directory's policies are valid, with nothing permitted.
    let check = warden(&dir, &["policy", "check"]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(
        check.stdout.starts_with("ok: 0 policies"),
        "{}",
        check.stdout
    );
}

#[test]
fn config_errors_exit_3() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = warden(tmp.path(), &["agent", "list"]);
    assert_eq!(missing.code, 3);
    assert!(missing.stderr.starts_with("warden: "), "{}", missing.stderr);
    assert!(missing.stderr.contains("warden init"), "{}", missing.stderr);
    std::fs::write(
        tmp.path().join("warden.toml"),
        "[gateway]\nlisten = \"127.0.0.1:1\"\nbogus = true\n",
    )
    .unwrap();
    let unknown = warden(tmp.path(), &["agent", "list"]);
    assert_eq!(unknown.code, 3);
    assert!(unknown.stderr.contains("bogus"), "{}", unknown.stderr);
}

#[test]
fn agents_have_a_lifecycle_and_json_output() {
    let (_tmp, dir) = init();
    let created = warden(
        &dir,
        &[
            "agent",
            "create",
            "support-bot",
            "--owner",
            "alice",
            "--purpose",
            "answers",
            "--json",
        ],
    );
    assert_eq!(created.code, 0, "{}", created.stderr);
    let agent = created.json();
    assert_eq!(agent["name"], "support-bot");
    assert_eq!(agent["state"], "active");
    assert_eq!(agent["owner"], "alice");
    assert_eq!(warden(&dir, &["agent", "create", "support-bot"]).code, 1);
    assert_eq!(warden(&dir, &["agent", "create", "Bad Name"]).code, 1);
    let list = warden(&dir, &["agent", "list", "--json"]).json();
    assert_eq!(list["agents"].as_array().unwrap().len(), 1);

    let token = warden(
        &dir,
        &[
            "token",
            "issue",
            "--agent",
            "support-bot",
            "--user",
            "alice",
            "--ttl",
            "5m",
            "--json",
        ],
    );
    assert_eq!(token.code, 0, "{}", token.stderr);
    let token = token.json();
    assert_eq!(token["token"].as_str().unwrap().split('.').count(), 3);
    assert!(token["expires_at"].as_str().unwrap().ends_with('Z'));
    let plain = warden(&dir, &["token", "issue", "--agent", "support-bot"]);
    assert_eq!(plain.stdout.trim().split('.').count(), 3);
    let too_long = warden(
        &dir,
        &["token", "issue", "--agent", "support-bot", "--ttl", "5h"],
    );
    assert_eq!(too_long.code, 1);
    assert!(too_long.stderr.contains("maximum"), "{}", too_long.stderr);
    assert_eq!(
        warden(&dir, &["token", "issue", "--agent", "ghost"]).code,
        1
    );

    assert_eq!(warden(&dir, &["agent", "suspend", "support-bot"]).code, 0);
    let refused = warden(&dir, &["token", "issue", "--agent", "support-bot"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("suspended"));
    assert_eq!(warden(&dir, &["agent", "resume", "support-bot"]).code, 0);
    let revoked = warden(&dir, &["agent", "revoke", "support-bot", "--json"]).json();
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(
        warden(&dir, &["agent", "resume", "support-bot"]).code,
        2,
        "a revoked agent stays revoked"
    );
    let shown = warden(&dir, &["agent", "show", "support-bot"]);
    assert!(
        shown.stdout.contains("state    revoked"),
        "{}",
        shown.stdout
    );
    assert_eq!(warden(&dir, &["agent", "show", "nobody"]).code, 1);

    let admin = warden(
        &dir,
        &[
            "token", "issue", "--admin", "ops", "--role", "auditor", "--json",
        ],
    );
    assert_eq!(admin.code, 0, "{}", admin.stderr);
}

#[test]
fn policy_check_names_file_and_line_and_exits_3() {
    let (_tmp, dir) = init();
    std::fs::write(
        dir.join("policies/broken.cedar"),
        "// ok\npermit(principal, action, resource);\n\npermit(principal,, action, resource);\n",
    )
    .unwrap();
    let run = warden(&dir, &["policy", "check"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("broken.cedar:4:"), "{}", run.stderr);
    std::fs::write(dir.join("policies/broken.cedar"), "permit(principal == Warden::Agent::\"a\", action == Warden::Action::\"crm/nope\", resource);\n").unwrap();
    let run = warden(&dir, &["policy", "check", "--json"]);
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains("broken.cedar:1:"), "{}", run.stderr);
    assert!(run.stderr.contains("unrecognized action"), "{}", run.stderr);
    assert_eq!(run.json()["ok"], false);
}

#[test]
fn the_init_template_is_the_documented_default() {
    // Every example config must parse; the template is one of them.
    let template =
        std::fs::read_to_string(repo().join("crates/cli/templates/warden.toml")).unwrap();
    let parsed =
        warden_config::Config::parse(&template, std::path::Path::new("/x/warden.toml")).unwrap();
    let defaults =
        warden_config::Config::parse("", std::path::Path::new("/x/warden.toml")).unwrap();
    assert_eq!(
        format!("{:?}", parsed.gateway),
        format!("{:?}", defaults.gateway)
    );
    assert_eq!(
        format!("{:?}", parsed.identity),
        format!("{:?}", defaults.identity)
    );
    assert_eq!(parsed.storage_url, defaults.storage_url);
}

#[test]
fn policy_versions_are_kept_and_can_be_rolled_back() {
    let (_tmp, dir) = init();
    let check = warden(&dir, &["policy", "check", "--json"]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    let first = check.json()["version"].as_str().unwrap().to_owned();
    let starter = std::fs::read_to_string(dir.join("policies/starter.cedar")).unwrap();
    std::fs::write(
        dir.join("policies/extra.cedar"),
        "@id(\"reach\") permit(principal, action == Warden::Action::\"connect\", resource);\n",
    )
    .unwrap();
    let check = warden(&dir, &["policy", "check", "--json"]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    let second = check.json()["version"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    let history = warden(&dir, &["policy", "history", "--json"]).json();
    let versions: Vec<(&str, bool)> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap(),
                v["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(versions, [(second.as_str(), true), (first.as_str(), false)]);
    // Too short or unknown: refused.
    assert_eq!(warden(&dir, &["policy", "rollback", "abc"]).code, 1);
    assert_eq!(warden(&dir, &["policy", "rollback", "ffffffffff"]).code, 1);
    let run = warden(&dir, &["policy", "rollback", &first[..8]]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !dir.join("policies/extra.cedar").exists(),
        "the later file is gone"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("policies/starter.cedar")).unwrap(),
        starter
    );
    let check = warden(&dir, &["policy", "check", "--json"]);
    assert_eq!(check.json()["version"], first.as_str());
    let tail = warden(&dir, &["audit", "tail", "-n", "10", "--json"]).stdout;
    assert!(tail.contains("policy.rollback"), "{tail}");
}
