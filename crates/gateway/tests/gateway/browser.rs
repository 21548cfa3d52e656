//! The console in a real browser (Debian's `chromium`, driven by
//! `playwright-core` from `tests/browser`): an agent's call, made with the
//! official MCP SDK, waits for approval; a human signs in, sees the exact
//! payload, approves; the call completes, once.
//!
//! Needs `/usr/bin/chromium` (or `CHROMIUM`) and `npm ci` in `tests/browser`.
//! Without them the test says so and passes, unless
//! `WARDEN_BROWSER_TESTS=required` (as `.ci/run` sets), where it fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rmcp::model::{CallToolRequestParams, object};
use serde_json::json;
use warden_approval::State;
use warden_core::UserName;

use crate::harness::{Options, harness_with, tenant};

const POLICY: &str = r#"
@id("change-needs-approval") @approval("required") @reason("customer changes need an approver")
permit(principal == Warden::Agent::"a", action == Warden::Action::"crm/update_customer", resource);
"#;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The browser and the driver, or why not.
fn browser_parts() -> Result<(PathBuf, PathBuf), String> {
    let chromium = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.exists() {
        return Err(format!("no browser at {}", chromium.display()));
    }
    let dir = repo_root().join("tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        return Err(format!(
            "no playwright-core: run `npm ci` in {}",
            dir.display()
        ));
    }
    Ok((chromium, dir))
}

#[tokio::test]
async fn an_approver_approves_a_held_call_in_a_real_browser() {
    let (chromium, dir) = match browser_parts() {
        Ok(p) => p,
        Err(why) => {
            assert_ne!(
                std::env::var("WARDEN_BROWSER_TESTS").as_deref(),
                Ok("required"),
                "the browser test is required here: {why}"
            );
            eprintln!("SKIPPED: the browser test needs a browser: {why}");
            return;
        }
    };
    let h = Arc::new(
        harness_with(
            POLICY,
            Options {
                crm_extra: "approval = \"wait\"\napproval_timeout = \"60s\"\n",
                ..Default::default()
            },
        )
        .await,
    );
    let password = "correct horse battery staple";
    let bob = UserName::new("bob").unwrap();
    h.store
        .create_user(&tenant(), &bob, "approver")
        .await
        .unwrap();
    let hash = warden_identity::hash_password(password).unwrap();
    h.store
        .set_user_password(&tenant(), &bob, Some(&hash))
        .await
        .unwrap();

    // The agent, through the official SDK: its call waits for a human.
    let client = h.client("/mcp/crm", &h.token("a")).await;
    let call = tokio::spawn(async move {
        let result = client
            .call_tool(
                CallToolRequestParams::new("update_customer").with_arguments(object(json!({
                    "id": "c-7", "email": "new@example.com"
                }))),
            )
            .await;
        (result, client)
    });
    let id = loop {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if let Some(a) = h
            .store
            .list_approvals(&tenant(), true)
            .await
            .unwrap()
            .first()
        {
            break a.id.clone();
        }
    };
    assert_eq!(h.crm.calls.get(), 0);

    let shots = repo_root().join("target/browser-screenshots");
    let out = tokio::process::Command::new("node")
        .arg("console.mjs")
        .current_dir(&dir)
        .env("CONSOLE_URL", format!("http://{}", h.admin))
        .env("CONSOLE_USER", "bob")
        .env("CONSOLE_PASSWORD", password)
        .env("APPROVAL_ID", &id)
        .env("EXPECT_PAYLOAD", r#""email": "new@example.com""#)
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", &chromium)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser run failed:\n{stdout}\n{stderr}"
    );
    eprintln!("browser: {stdout} (screenshots in {})", shots.display());

    // The held call completed, and ran exactly once.
    let (result, client) = tokio::time::timeout(std::time::Duration::from_secs(30), call)
        .await
        .expect("the held call completes")
        .unwrap();
    let result = result.unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert_eq!(h.crm.calls.get(), 1);
    let a = h.store.approval(&tenant(), &id).await.unwrap().unwrap();
    assert_eq!(a.state, State::Executed);
    assert_eq!(a.reviews[0].reviewer, "bob");
    assert_eq!(
        a.reviews[0].reason.as_deref(),
        Some("checked in the browser test")
    );
    client.cancel().await.unwrap();
}
