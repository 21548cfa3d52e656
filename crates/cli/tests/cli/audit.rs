//! `warden audit verify` catches every kind of tampering, names the first bad
//! record and exits 1; checkpoints, proofs and an offline export.

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
        ok.stdout
            .starts_with("ok: 6 audit records in the database verified"),
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

/// `audit verify` exits 1 saying `message`, and `--json` names `seq`.
fn refused(dir: &Path, seq: u64, message: &str) {
    let run = warden(dir, &["audit", "verify"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains(message), "{}", run.stderr);
    let json = warden(dir, &["audit", "verify", "--json"]);
    assert_eq!(json.json()["first_bad_seq"], seq);
}

fn broken(dir: &Path, seq: u64) {
    refused(dir, seq, &format!("broken at seq {seq}"));
}

#[tokio::test]
async fn a_modified_record_is_caught() {
    let (_t, dir) = with_records();
    sql(&dir, &["UPDATE audit SET body = CAST(replace(CAST(body AS TEXT), 'agent.create', 'agent.delete') AS BLOB) WHERE seq = 3"]).await;
    broken(&dir, 3);
}

#[tokio::test]
async fn changed_query_fields_beside_a_record_are_caught() {
    // The record verifies; what the store keeps beside it for queries (not
    // covered by the chain) would misfile it, and survive a rebuilt index.
    let (_t, dir) = with_records();
    sql(
        &dir,
        &["UPDATE audit SET rec_agent = 'someone-else' WHERE seq = 4"],
    )
    .await;
    refused(&dir, 4, "the query fields stored beside record(s) 4 differ");
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

/// Signs a checkpoint; its note.
fn checkpoint(dir: &Path) -> String {
    let run = warden(dir, &["audit", "checkpoint", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json()["note"].as_str().unwrap().to_owned()
}

fn hash(text: &serde_json::Value) -> [u8; 32] {
    hex::decode(text.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

#[test]
fn checkpoints_prove_inclusion_and_consistency() {
    use warden_audit::merkle::{leaf_hash, verify_consistency, verify_inclusion};
    let (_t, dir) = with_records();
    let first = checkpoint(&dir);
    assert!(first.contains("\n6\n"), "{first}");
    assert_eq!(warden(&dir, &["agent", "create", "d"]).code, 0);
    let second = checkpoint(&dir);
    assert!(second.contains("\n7\n"), "{second}");
    // Nothing new: no new checkpoint.
    let again = warden(&dir, &["audit", "checkpoint", "--json"]).json();
    assert_eq!(again["new"], false);

    let ok = warden(&dir, &["audit", "verify", "--json"]).json();
    assert_eq!(ok["ok"], true);
    assert_eq!(ok["checkpoints"], 2);
    assert_eq!(ok["latest_checkpoint"], 7);

    // The proof verifies on its own: leaf = SHA-256(0x00 ‖ record).
    let proof = warden(&dir, &["audit", "prove", "3", "--json"]).json();
    assert_eq!(proof["tree_size"], 7);
    let leaf = leaf_hash(proof["record"].as_str().unwrap().as_bytes());
    assert_eq!(leaf, hash(&proof["leaf_hash"]));
    let path: Vec<[u8; 32]> = proof["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(hash)
        .collect();
    verify_inclusion(&leaf, 2, 7, &path, &hash(&proof["root"])).unwrap();
    assert!(verify_inclusion(&leaf, 3, 7, &path, &hash(&proof["root"])).is_err());
    let old = warden(&dir, &["audit", "prove", "3", "--size", "6", "--json"]).json();
    assert_eq!(old["tree_size"], 6);

    let c = warden(&dir, &["audit", "consistency", "6", "7", "--json"]).json();
    let path: Vec<[u8; 32]> = c["proof"].as_array().unwrap().iter().map(hash).collect();
    let (r6, r7) = (hash(&c["old"]["root"]), hash(&c["new"]["root"]));
    verify_consistency(6, 7, &r6, &r7, &path).unwrap();
    assert!(verify_consistency(6, 7, &r7, &r6, &path).is_err());

    // Bad requests: clear errors.
    let beyond = warden(&dir, &["audit", "prove", "8"]);
    assert_eq!(beyond.code, 1);
    assert!(
        beyond.stderr.contains("not in the checkpoint of size 7"),
        "{}",
        beyond.stderr
    );
    let no_such = warden(&dir, &["audit", "prove", "1", "--size", "5"]);
    assert!(
        no_such
            .stderr
            .contains("no checkpoint of size 5; the checkpoints have sizes: 6, 7"),
        "{}",
        no_such.stderr
    );
    let backwards = warden(&dir, &["audit", "consistency", "7", "6"]);
    assert_eq!(backwards.code, 3, "{}", backwards.stderr);
}

#[tokio::test]
async fn records_cut_off_the_end_are_caught_by_a_checkpoint() {
    let (_t, dir) = with_records();
    checkpoint(&dir);
    sql(&dir, &["DELETE FROM audit WHERE seq = 6"]).await;
    let run = warden(&dir, &["audit", "verify"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("checkpoint at size 6 covers records the log does not have"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn records_and_checkpoints_cut_off_together_are_caught_by_a_kept_checkpoint() {
    let (t, dir) = with_records();
    let kept = t.path().join("kept.note");
    std::fs::write(&kept, checkpoint(&dir)).unwrap();
    sql(
        &dir,
        &[
            "DELETE FROM audit WHERE seq >= 5",
            "DELETE FROM checkpoints",
        ],
    )
    .await;
    // Without the kept checkpoint the shortened log looks whole…
    assert_eq!(warden(&dir, &["audit", "verify"]).code, 0);
    // …with it, not.
    let run = warden(
        &dir,
        &["audit", "verify", "--checkpoint", kept.to_str().unwrap()],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("size 6 covers records"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_forged_or_edited_checkpoint_is_caught() {
    let (_t, dir) = with_records();
    checkpoint(&dir);
    // An edited size: the signature no longer verifies.
    sql(&dir, &["UPDATE checkpoints SET note = replace(note, char(10) || '6' || char(10), char(10) || '5' || char(10))"]).await;
    let run = warden(&dir, &["audit", "verify"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("checkpoint #0 is refused: not signed by the key"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_record_changed_after_its_checkpoint_is_caught_even_when_the_chain_is_rewritten() {
    let (_t, dir) = with_records();
    checkpoint(&dir);
    // The forger rewrites record 6 and its hash: the chain is whole again,
    // but the signed root is not the tree's.
    let url = format!("sqlite://{}", dir.join("warden.db").display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    let (prev, body): (Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT prev_hash, body FROM audit WHERE seq = 6")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let body = String::from_utf8(body)
        .unwrap()
        .replace("token.issue", "token.check");
    let hash = chain_hash(6, &prev.try_into().unwrap(), body.as_bytes());
    sqlx::query("UPDATE audit SET body = ?, hash = ? WHERE seq = 6")
        .bind(body.as_bytes())
        .bind(&hash[..])
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let run = warden(&dir, &["audit", "verify"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("checkpoint at size 6 does not match the records"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_export_verifies_offline_and_its_tampering_is_caught() {
    let (t, dir) = with_records();
    checkpoint(&dir);
    assert_eq!(warden(&dir, &["agent", "create", "d"]).code, 0);
    let out = t.path().join("export");
    let run = warden(&dir, &["audit", "export", "--out", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(warden(&dir, &["audit", "export", "--out", out.to_str().unwrap()]).code != 0);
    let key = t.path().join("trusted.pub");
    let printed = warden(&dir, &["audit", "public-key"]).stdout;
    std::fs::write(&key, &printed).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("audit.pub")).unwrap(),
        printed
    );

    // No config, no database: from another directory.
    let elsewhere = tempfile::tempdir().unwrap();
    let verify = |extra: &[&str]| {
        let mut args = vec!["audit", "verify", "--from", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        warden(elsewhere.path(), &args)
    };
    let ok = verify(&["--public-key", key.to_str().unwrap(), "--json"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(ok.json()["records"], 7);
    assert_eq!(ok.json()["checkpoints"], 1);
    let missing = verify(&[]);
    assert_eq!(missing.code, 3);
    assert!(
        missing.stderr.contains("--public-key"),
        "{}",
        missing.stderr
    );

    // Another key: every checkpoint is refused.
    let (_t2, other) = init();
    let other_key = t.path().join("other.pub");
    std::fs::write(&other_key, warden(&other, &["audit", "public-key"]).stdout).unwrap();
    let run = verify(&["--public-key", other_key.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("refused"), "{}", run.stderr);

    let records = out.join("records.jsonl");
    let original = std::fs::read_to_string(&records).unwrap();
    let check = |text: &str, expect: &str| {
        std::fs::write(&records, text).unwrap();
        let run = verify(&["--public-key", key.to_str().unwrap()]);
        assert_eq!(run.code, 1, "{expect}: {}", run.stdout);
        assert!(run.stderr.contains(expect), "{expect}: {}", run.stderr);
    };
    let lines: Vec<&str> = original.lines().collect();
    // Edited, removed, duplicated, reordered, truncated, malformed.
    check(
        &original.replacen("agent.create", "agent.delete", 1),
        "broken at seq 1",
    );
    check(
        &format!("{}\n{}\n", lines[..2].join("\n"), lines[3..].join("\n")),
        "broken at seq 4",
    );
    check(
        &format!("{}\n{}\n", lines[..3].join("\n"), lines[2..].join("\n")),
        "broken at seq 3",
    );
    let mut swapped = lines.clone();
    swapped.swap(3, 4);
    check(&format!("{}\n", swapped.join("\n")), "broken at seq 5");
    check(
        &format!("{}\n", lines[..5].join("\n")),
        "covers records the log does not have",
    );
    check(
        &format!("{}\n{{not json\n", lines[..2].join("\n")),
        "records.jsonl:3: not an exported record",
    );
    check(
        &original.replacen("\"hash\":\"", "\"hash\":\"zz", 1),
        "records.jsonl:1: `hash` is not hex",
    );
    std::fs::write(&records, &original).unwrap();
    assert_eq!(verify(&["--public-key", key.to_str().unwrap()]).code, 0);
}

#[tokio::test]
async fn a_record_changed_before_its_checkpoint_is_never_signed() {
    let (_t, dir) = with_records();
    checkpoint(&dir);
    assert_eq!(warden(&dir, &["agent", "create", "d"]).code, 0);
    sql(&dir, &["UPDATE audit SET body = CAST(replace(CAST(body AS TEXT), 'agent.create', 'agent.delete') AS BLOB) WHERE seq = 7"]).await;
    let run = warden(&dir, &["audit", "checkpoint"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("not checkpointed: audit chain broken at seq 7"),
        "{}",
        run.stderr
    );
    let latest = warden(&dir, &["audit", "prove", "1", "--json"]).json();
    assert_eq!(
        latest["tree_size"], 6,
        "no checkpoint covers the changed record"
    );
}

#[test]
fn query_filters_and_explain_reads_a_record() {
    let (_t, dir) = with_records();
    let lines = |args: &[&str]| {
        let mut all = vec!["audit", "query", "--json"];
        all.extend_from_slice(args);
        let run = warden(&dir, &all);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.stdout
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(&[]), [6, 5, 4, 3, 2, 1], "newest first");
    assert_eq!(lines(&["--agent", "b"]), [4, 3]);
    assert_eq!(lines(&["--kind", "admin", "-n", "2"]), [6, 5]);
    assert_eq!(lines(&["--before", "5", "-n", "2"]), [4, 3]);
    assert_eq!(lines(&["--since", "1h"]).len(), 6);
    assert_eq!(lines(&["--until", "2000-01-01"]), Vec::<u64>::new());
    assert_eq!(lines(&["--decision", "deny"]), Vec::<u64>::new());
    let bad = warden(&dir, &["audit", "query", "--since", "last tuesday"]);
    assert_eq!(bad.code, 3, "{}", bad.stderr);
    assert!(bad.stderr.contains("invalid --since"), "{}", bad.stderr);
    let other_tenant = warden(&dir, &["--tenant", "nope", "audit", "query"]);
    assert_ne!(other_tenant.code, 0);

    let text = warden(&dir, &["audit", "explain", "3"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.starts_with("record 3 · admin · request "),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("on agent b of tenant default"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("agent.create"), "{}", text.stdout);
    assert!(text.stdout.contains("its hash holds"), "{}", text.stdout);
    assert!(
        text.stdout.contains("not in a signed checkpoint yet"),
        "{}",
        text.stdout
    );
    checkpoint(&dir);
    let json = warden(&dir, &["audit", "explain", "3", "--json"]).json();
    assert_eq!(json["integrity"]["checkpoint"], 6);
    assert_eq!(json["integrity"]["checkpoint_signature_ok"], true);
    let id = json["record"]["request_id"].as_str().unwrap().to_owned();
    let by_id = warden(&dir, &["audit", "explain", &id, "--json"]).json();
    assert_eq!(by_id["seq"], 3);
    let missing = warden(&dir, &["audit", "explain", "999"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("there is no record 999"),
        "{}",
        missing.stderr
    );
    let unknown = warden(&dir, &["audit", "explain", "no-such-request"]);
    assert!(
        unknown
            .stderr
            .contains("there is no record `no-such-request`"),
        "{}",
        unknown.stderr
    );
}

#[tokio::test]
async fn explain_says_when_a_record_was_changed() {
    let (_t, dir) = with_records();
    sql(&dir, &["UPDATE audit SET body = CAST(replace(CAST(body AS TEXT), 'agent.create', 'agent.delete') AS BLOB) WHERE seq = 3"]).await;
    let text = warden(&dir, &["audit", "explain", "3"]);
    assert!(
        text.stdout.contains("ITS HASH DOES NOT MATCH ITS CONTENT"),
        "{}",
        text.stdout
    );
}

#[test]
fn records_export_as_ocsf_events() {
    let (t, dir) = with_records();
    let out = t.path().join("siem");
    let run = warden(
        &dir,
        &[
            "audit",
            "export",
            "--format",
            "ocsf",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(out.join("ocsf.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 6);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["metadata"]["sequence"], i as u64 + 1);
        assert_eq!(e["metadata"]["version"], "1.3.0");
        assert_eq!(
            e["class_uid"], 6003,
            "agent.create and token.issue are API activity: {e}"
        );
        assert_eq!(e["actor"]["user"]["type"], "Admin");
    }
    assert_eq!(events[0]["activity_name"], "Create");
    let again = warden(
        &dir,
        &[
            "audit",
            "export",
            "--format",
            "ocsf",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_ne!(again.code, 0, "never overwrites");
    let stdout = warden(&dir, &["audit", "export", "--format", "ocsf", "--out", "-"]);
    assert_eq!(stdout.code, 0);
    assert_eq!(stdout.stdout, text);
}
