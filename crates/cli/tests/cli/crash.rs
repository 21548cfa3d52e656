//! The crash test: `kill -9` the gateway in the middle of a load of
//! concurrent calls. After a restart the audit log verifies (chain, tree,
//! checkpoints) and every call the upstream received has its record (G5:
//! a call is forwarded only after its record is durable).

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use sqlx::{Connection as _, SqliteConnection};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{free_port, init, wait_for_port, warden};

fn serve(dir: &std::path::Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("serve")
        .current_dir(dir)
        .env("WARDEN_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port);
    child
}

/// One `tools/call` on a fresh connection; its HTTP status, or none when
/// the gateway is gone.
async fn call(port: u16, token: &str, id: &str) -> Option<u16> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"crm.get_customer","arguments":{{"id":"{id}"}}}}}}"#
    );
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

fn digest(id: &str) -> String {
    hex::encode(Sha256::digest(format!(r#"{{"id":"{id}"}}"#).as_bytes()))
}

#[test]
fn kill_9_under_load_loses_no_record_and_the_log_still_verifies() {
    let (_tmp, dir) = init();
    let (port, admin) = (free_port(), free_port());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let crm = rt
        .block_on(warden_example::serve_http(
            warden_example::Service::Crm,
            ([127, 0, 0, 1], 0).into(),
        ))
        .unwrap();
    let config = std::fs::read_to_string(dir.join("warden.toml"))
        .unwrap()
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{admin}"))
        .replace("checkpoint_every = 1000", "checkpoint_every = 40")
        .replace(
            "checkpoint_interval = \"10s\"",
            "checkpoint_interval = \"200ms\"",
        );
    assert!(config.contains("checkpoint_every = 40"), "{config}");
    std::fs::write(
        dir.join("warden.toml"),
        format!(
            "{config}\n[[upstreams]]\nname = \"crm\"\nurl = \"{}\"\n",
            crm.url()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("policies/bot.cedar"),
        r#"permit(principal == Warden::Agent::"bot", action == Warden::Action::"crm/get_customer", resource);
permit(principal == Warden::Agent::"bot", action == Warden::Action::"connect", resource);"#,
    )
    .unwrap();
    assert_eq!(warden(&dir, &["agent", "create", "bot"]).code, 0);
    let token = warden(&dir, &["token", "issue", "--agent", "bot"])
        .stdout
        .trim()
        .to_owned();

    let mut child = serve(&dir, port);
    let running = Arc::new(AtomicBool::new(true));
    let answered = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let (token, running, answered) = (token.clone(), running.clone(), answered.clone());
            rt.spawn(async move {
                let mut n = 0;
                while running.load(Ordering::SeqCst) {
                    n += 1;
                    match call(port, &token, &format!("c-{w}-{n}")).await {
                        Some(200) => {
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        Some(status) => panic!("call refused with {status}"),
                        None => break,
                    }
                }
            })
        })
        .collect();
    // Let the load run (and checkpoints be signed), then kill -9 mid-flight.
    let start = Instant::now();
    while answered.load(Ordering::SeqCst) < 150 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the load did not run"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // ... and at least one checkpoint signed while it runs.
    let url = format!("sqlite://{}", dir.join("warden.db").display());
    rt.block_on(async {
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        loop {
            let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM checkpoints")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            if n >= 1 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no checkpoint signed under load"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    child.kill().unwrap();
    child.wait().unwrap();
    running.store(false, Ordering::SeqCst);
    for w in workers {
        rt.block_on(w).unwrap();
    }
    let received = crm.calls.customers_read();
    assert!(received.len() >= 150, "{}", received.len());

    // Restart: it serves again, and a clean stop signs a last checkpoint.
    let mut child = serve(&dir, port);
    assert_eq!(rt.block_on(call(port, &token, "after-restart")), Some(200));
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());

    let verify = warden(&dir, &["audit", "verify", "--json"]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    let report = verify.json();
    assert!(report["checkpoints"].as_u64().unwrap() >= 2, "{report}");
    assert_eq!(report["unsigned_records"], 0, "{report}");

    // Every call the upstream received has its durable record.
    let recorded: HashSet<String> = rt.block_on(async {
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        let bodies: Vec<Vec<u8>> = sqlx::query_scalar("SELECT body FROM audit")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        bodies
            .iter()
            .filter_map(|b| {
                let r: serde_json::Value = serde_json::from_slice(b).unwrap();
                (r["decision"]["effect"] == "allow")
                    .then(|| r["args_digest"].as_str().map(str::to_owned))
                    .flatten()
            })
            .collect()
    });
    let received = crm.calls.customers_read();
    eprintln!(
        "killed after {} answers; the upstream received {}; {} allowed records",
        answered.load(Ordering::SeqCst),
        received.len(),
        recorded.len()
    );
    let missing: Vec<&String> = received
        .iter()
        .filter(|id| !recorded.contains(&digest(id)))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} calls reached the upstream without an audit record: {missing:?}",
        missing.len(),
        received.len()
    );
}
