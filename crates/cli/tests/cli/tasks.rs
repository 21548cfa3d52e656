//! `warden task`: just-in-time grants from the command line.

use crate::{init, warden};

#[test]
fn tasks_start_end_and_refuse_bad_grants() {
    let (_tmp, dir) = init();
    // A real upstream, so that its tool catalog can be recorded.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let crm = rt
        .block_on(warden_example::serve_http(
            warden_example::Service::Crm,
            ([127, 0, 0, 1], 0).into(),
        ))
        .unwrap();
    let config = std::fs::read_to_string(dir.join("warden.toml"))
        .unwrap()
        .replace("max_ttl = \"8h\"", "max_ttl = \"2h\"");
    assert!(config.contains("max_ttl = \"2h\""));
    std::fs::write(
        dir.join("warden.toml"),
        format!(
            "{config}\n[[upstreams]]\nname = \"crm\"\nurl = \"{}\"\n",
            crm.url()
        ),
    )
    .unwrap();
    let check = warden(&dir, &["policy", "check", "--live"]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert_eq!(warden(&dir, &["agent", "create", "bot"]).code, 0);

    let start = |extra: &[&str]| {
        let mut args = vec![
            "task",
            "start",
            "--agent",
            "bot",
            "--purpose",
            "refund ticket 42",
        ];
        args.extend_from_slice(extra);
        warden(&dir, &args)
    };
    let run = start(&[
        "--allow",
        "crm.get_customer",
        "--allow",
        "crm/update_customer",
        "--ttl",
        "30m",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let task = run.json();
    let id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(
        task["tools"],
        serde_json::json!(["crm/get_customer", "crm/update_customer"])
    );
    let token = task["token"].as_str().unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["task"], id.as_str());

    // Bad grants are refused, clearly.
    for (extra, code, why) in [
        (vec!["--allow", "crm.drop_tables"], 1, "has no tool"),
        (vec!["--allow", "erp.anything"], 1, "no upstream"),
        (vec!["--allow", "nodot"], 1, "upstream.tool"),
        (
            vec!["--allow", "crm.get_customer", "--ttl", "3h"],
            1,
            "max_ttl",
        ),
    ] {
        let run = start(&extra);
        assert_eq!(run.code, code, "{extra:?}: {}", run.stderr);
        assert!(run.stderr.contains(why), "{extra:?}: {}", run.stderr);
    }
    assert_eq!(warden(&dir, &["agent", "suspend", "bot"]).code, 0);
    let run = start(&["--allow", "crm.get_customer"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(warden(&dir, &["agent", "resume", "bot"]).code, 0);

    let run = warden(&dir, &["task", "token", &id, "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let list = warden(&dir, &["task", "list", "--json"]).json();
    assert_eq!(list["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(warden(&dir, &["task", "end", &id]).code, 0);
    assert_eq!(warden(&dir, &["task", "end", &id]).code, 2, "ended once");
    assert_eq!(
        warden(&dir, &["task", "token", &id]).code,
        2,
        "no token for an ended task"
    );
    assert_eq!(warden(&dir, &["task", "end", "nope"]).code, 1);
    let tail = warden(&dir, &["audit", "tail", "-n", "50", "--json"]).stdout;
    assert!(
        tail.contains("task.start") && tail.contains("task.end"),
        "{tail}"
    );
}
