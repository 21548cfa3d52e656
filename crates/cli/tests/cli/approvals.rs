//! `warden approvals`: humans decide on held actions from the command line.

use warden_approval::{Approval, Request};

use crate::{init, warden};

fn held(id: &str, user: Option<&str>) -> Approval {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Approval::new(
        id.into(),
        Request {
            tenant: "default".into(),
            agent: "bot".into(),
            user: user.map(str::to_owned),
            task: None,
            upstream: "mail".into(),
            tool: "send".into(),
            tool_digest: "d1".into(),
            arguments: r#"{"to":"bob@example.com"}"#.into(),
            arguments_sha256: "abc".into(),
            policy_version: "v1".into(),
            policies: vec!["mail-needs-approval".into()],
            reasons: vec!["mail needs an approver".into()],
            risk: 0,
            rationale: Some("the customer asked".into()),
            side_effects: "persistent, sends data outside the company".into(),
        },
        warden_core::Approval::Required,
        now,
        900,
    )
}

#[test]
fn approvers_decide_and_nobody_else() {
    let (_tmp, dir) = init();
    let url = format!("sqlite://{}", dir.join("warden.db").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = warden_store::SqliteStore::open(&url).await.unwrap();
        use warden_store::Store as _;
        store
            .create_approval(&held("ap-1", Some("carol")))
            .await
            .unwrap();
        store.create_approval(&held("ap-2", None)).await.unwrap();
        store.create_approval(&held("ap-3", None)).await.unwrap();
    });
    for (user, role) in [("ann", "approver"), ("carol", "approver"), ("mo", "member")] {
        assert_eq!(
            warden(&dir, &["user", "create", user, "--role", role]).code,
            0
        );
    }
    // Withdrawn before anyone decides: members may not, approvers may.
    assert_eq!(
        warden(
            &dir,
            &["approvals", "cancel", "ap-3", "--as", "mo", "--reason", "x"]
        )
        .code,
        2
    );
    let run = warden(
        &dir,
        &[
            "approvals",
            "cancel",
            "ap-3",
            "--as",
            "ann",
            "--reason",
            "duplicate",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("Cancelled"), "{}", run.stdout);
    assert_eq!(
        warden(
            &dir,
            &[
                "approvals",
                "cancel",
                "ap-3",
                "--as",
                "ann",
                "--reason",
                "again"
            ]
        )
        .code,
        2
    );
    let list = warden(&dir, &["approvals", "list", "--json"]).json();
    assert_eq!(list["approvals"].as_array().unwrap().len(), 2);
    let show = warden(&dir, &["approvals", "show", "ap-1"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(
        show.stdout.contains(r#"{"to":"bob@example.com"}"#),
        "the exact payload: {}",
        show.stdout
    );
    assert!(
        show.stdout.contains("the customer asked"),
        "{}",
        show.stdout
    );
    // A member, the delegating user alone, and unknown users are refused.
    let run = warden(&dir, &["approvals", "approve", "ap-1", "--as", "mo"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = warden(&dir, &["approvals", "approve", "ap-1", "--as", "carol"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("acts for"), "{}", run.stderr);
    assert_eq!(
        warden(&dir, &["approvals", "approve", "ap-1", "--as", "nobody"]).code,
        1
    );
    let run = warden(
        &dir,
        &[
            "approvals",
            "approve",
            "ap-1",
            "--as",
            "ann",
            "--reason",
            "fine",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("Approved"), "{}", run.stdout);
    // Decided: no second decision.
    assert_eq!(
        warden(
            &dir,
            &[
                "approvals",
                "deny",
                "ap-1",
                "--as",
                "carol",
                "--reason",
                "no"
            ]
        )
        .code,
        2
    );
    // A denial needs a reason; then it ends the approval.
    assert_eq!(
        warden(
            &dir,
            &["approvals", "deny", "ap-2", "--as", "ann", "--reason", " "]
        )
        .code,
        1
    );
    assert_eq!(
        warden(
            &dir,
            &[
                "approvals",
                "deny",
                "ap-2",
                "--as",
                "ann",
                "--reason",
                "not now"
            ]
        )
        .code,
        0
    );
    assert_eq!(warden(&dir, &["approvals", "show", "nope"]).code, 1);
    let pending = warden(&dir, &["approvals", "list", "--json"]).json();
    assert_eq!(pending["approvals"].as_array().unwrap().len(), 0);
    let tail = warden(&dir, &["audit", "tail", "-n", "20", "--json"]).stdout;
    assert!(
        tail.contains("approval.approve") && tail.contains("approval.deny"),
        "{tail}"
    );
}
