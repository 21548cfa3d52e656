//! `warden serve` as a process: it starts, answers, shuts down on SIGTERM,
//! and its logs never hold a token or an upstream secret.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::{free_port, init, wait_for_port, warden};

fn post(port: u16, token: &str, body: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let request = format!(
            "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response.split_whitespace().nth(1).unwrap().parse().unwrap()
    })
}

#[test]
fn serve_answers_and_never_logs_a_token() {
    let (_tmp, dir) = init();
    let (port, admin) = (free_port(), free_port());
    let config = std::fs::read_to_string(dir.join("warden.toml"))
        .unwrap()
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{admin}"));
    // A real upstream (the example company's crm, over HTTP) that needs a
    // credential Warden holds.
    let upstream_rt = tokio::runtime::Runtime::new().unwrap();
    let crm = upstream_rt
        .block_on(warden_example::serve_http(
            warden_example::Service::Crm,
            ([127, 0, 0, 1], 0).into(),
        ))
        .unwrap();
    let config = format!(
        "{config}\n[[upstreams]]\nname = \"crm\"\nurl = \"{}\"\nauth = {{ type = \"bearer\" }}\n",
        crm.url()
    );
    std::fs::write(dir.join("warden.toml"), config).unwrap();
    std::fs::write(
        dir.join("policies/bot.cedar"),
        r#"permit(principal == Warden::Agent::"bot", action == Warden::Action::"crm/get_customer", resource);
permit(principal == Warden::Agent::"bot", action == Warden::Action::"connect", resource);"#,
    )
    .unwrap();
    let secret = "sk-upstream-7f3a9c1e5b";
    let set = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["secret", "set", "crm", "--from-env", "CRM_SECRET"])
        .current_dir(&dir)
        .env("CRM_SECRET", secret)
        .output()
        .unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    assert_eq!(warden(&dir, &["agent", "create", "bot"]).code, 0);
    let token = warden(&dir, &["token", "issue", "--agent", "bot"])
        .stdout
        .trim()
        .to_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--log-format", "json"])
        .current_dir(&dir)
        .env("WARDEN_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_port(port);
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    assert_eq!(post(port, &token, list), 200);
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"crm.get_customer","arguments":{"id":"c-1"}}}"#;
    assert_eq!(post(port, &token, call), 200);
    assert_eq!(crm.calls.get(), 1);
    let seen = crm.credentials_seen.lock().unwrap().clone();
    assert!(
        seen.contains(&format!("authorization: Bearer {secret}")),
        "the upstream got Warden's credential: {seen:?}"
    );
    assert!(
        !seen.iter().any(|s| s.contains(&token)),
        "the agent's token is never forwarded"
    );
    let forged = format!("{token}x");
    assert_eq!(post(port, &forged, list), 401);
    // The gateway keeps the agent in memory between requests; a change made
    // by another process applies on the very next request all the same
    // (G9), each within far less than the time an agent is kept.
    assert_eq!(warden(&dir, &["agent", "suspend", "bot"]).code, 0);
    assert_eq!(post(port, &token, list), 401, "suspended");
    assert_eq!(warden(&dir, &["agent", "resume", "bot"]).code, 0);
    assert_eq!(post(port, &token, list), 200, "resumed");
    assert_eq!(warden(&dir, &["agent", "revoke", "bot"]).code, 0);
    assert_eq!(
        post(port, &token, list),
        401,
        "revocation from another process applies at once"
    );

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "warden serve should exit cleanly on SIGTERM: {status:?}"
    );
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(
        logs.contains(r#""agent.id":"bot""#),
        "the logs should show the requests: {logs}"
    );
    assert!(
        !logs.contains(secret),
        "an upstream secret leaked into the logs"
    );
    let signature = token.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature), "a token leaked into the logs");
    assert!(!logs.contains(&token[..40]), "a token leaked into the logs");
}
