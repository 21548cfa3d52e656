//! `warden audit verify` catches every kind of tampering, names the first bad
//! record and exits 1.

use std::path::Path;

use sqlx::{Connection, SqliteConnection};
use warden_audit::chain_hash;

use crate::{init, warden};

/// A directory with a few audit records (agent creations, token issues).
fn with_records() -> (tempfile::TempDir, std::path::PathBuf) {
    let (tmp, dir) = init();
    for name in ["a", "b", "c"] {
        assert_eq!(warden(&dir, &["agent", "create", name]).code, 0);
        assert_eq!(warden(&dir, &["token", "issue", "--agent", name]).code, 0);
    }
    let ok = warden(&dir, &["audit", "verify"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(
        ok.stdout.starts_with("ok: 6 audit records verified"),
        "{}",
        ok.stdout
    );
    (tmp, dir)
}

async fn sql(dir: &Path, statements: &[&str]) {
    let url = format!("sqlite://{}", dir.join("warden.db").display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    for s in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*s))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

fn broken(dir: &Path, seq: u64) {
    let run = warden(dir, &["audit", "verify"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr.contains(&format!("broken at seq {seq}")),
        "{}",
        run.stderr
    );
    let json = warden(dir, &["audit", "verify", "--json"]);
    assert_eq!(json.json()["first_bad_seq"], seq);
}

#[tokio::test]
async fn a_modified_record_is_caught() {
    let (_t, dir) = with_records();
    sql(&dir, &["UPDATE audit SET body = CAST(replace(CAST(body AS TEXT), 'agent.create', 'agent.delete') AS BLOB) WHERE seq = 3"]).await;
    broken(&dir, 3);
}

#[tokio::test]
async fn a_removed_record_is_caught() {
    let (_t, dir) = with_records();
    sql(&dir, &["DELETE FROM audit WHERE seq = 4"]).await;
    broken(&dir, 5);
}

#[tokio::test]
async fn reordered_records_are_caught() {
    let (_t, dir) = with_records();
    sql(
        &dir,
        &[
            "UPDATE audit SET seq = -2 WHERE seq = 2",
            "UPDATE audit SET seq = 2 WHERE seq = 3",
            "UPDATE audit SET seq = 3 WHERE seq = -2",
        ],
    )
    .await;
    broken(&dir, 2);
}

#[tokio::test]
async fn an_inserted_record_is_caught_even_with_a_valid_hash() {
    let (_t, dir) = with_records();
    // The forger knows the algorithm: the new record links to seq 2 and its
    // hash is right, so the break shows at the record after it.
    let url = format!("sqlite://{}", dir.join("warden.db").display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    let prev: Vec<u8> = sqlx::query_scalar("SELECT hash FROM audit WHERE seq = 2")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let prev: [u8; 32] = prev.try_into().unwrap();
    let body = br#"{"kind":"admin","request_id":"forged","time":"2026-01-01T00:00:00Z","endpoint":"admin","decision":{"effect":"allow"}}"#.to_vec();
    let hash = chain_hash(3, &prev, &body);
    for s in [
        "UPDATE audit SET seq = -seq WHERE seq >= 3",
        "UPDATE audit SET seq = -seq + 1 WHERE seq < 0",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(s))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::query("INSERT INTO audit (seq, prev_hash, hash, body) VALUES (3, ?, ?, ?)")
        .bind(&prev[..])
        .bind(&hash[..])
        .bind(&body)
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    broken(&dir, 4);
}

#[test]
fn tail_prints_the_newest_records() {
    let (_t, dir) = with_records();
    let tail = warden(&dir, &["audit", "tail", "-n", "2"]);
    assert_eq!(tail.code, 0);
    assert_eq!(tail.stdout.lines().count(), 2);
    assert!(tail.stdout.contains("token.issue"), "{}", tail.stdout);
    let json = warden(&dir, &["audit", "tail", "-n", "3", "--json"]);
    let lines: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["seq"], 6);
}
