//! `warden audit verify|tail`.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use serde_json::json;
use warden_audit::{AuditRecord, ChainEntry, ChainHead, verify_chain};
use warden_store::Store;

use crate::cli::{AuditCommand, Cli};
use crate::context::{config, print_json, store};
use crate::{Failure, Outcome};

const PAGE: u32 = 1000;

pub async fn run(cli: &Cli, cmd: &AuditCommand) -> Outcome {
    let config = config(cli)?;
    let store = store(&config).await?;
    match cmd {
        AuditCommand::Verify { json } => verify(store.as_ref(), *json).await,
        AuditCommand::Tail {
            lines,
            follow,
            json,
        } => tail(store.as_ref(), *lines, *follow, *json).await,
    }
}

async fn verify(store: &dyn Store, json: bool) -> Outcome {
    let mut head = ChainHead::default();
    let mut total = 0u64;
    loop {
        let entries = store
            .audit_entries(head.seq, PAGE)
            .await
            .context("cannot read the audit trail")?;
        if entries.is_empty() {
            break;
        }
        match verify_chain(entries, head) {
            Ok(report) => {
                total += report.entries;
                head = report.head;
            }
            Err(e) => {
                if json {
                    print_json(
                        &json!({ "ok": false, "first_bad_seq": e.seq(), "error": e.to_string() }),
                    )?;
                }
                return Err(Failure::Failed(anyhow!(e)));
            }
        }
    }
    if json {
        return print_json(
            &json!({ "ok": true, "records": total, "head": hex::encode(head.hash) }),
        );
    }
    println!(
        "ok: {total} audit records verified, chain head {}",
        hex::encode(head.hash)
    );
    Ok(())
}

fn line(entry: &ChainEntry, json: bool) {
    if json {
        let record: serde_json::Value =
            serde_json::from_slice(&entry.body).unwrap_or(serde_json::Value::Null);
        println!("{}", json!({ "seq": entry.seq, "record": record }));
        return;
    }
    match serde_json::from_slice::<AuditRecord>(&entry.body) {
        Ok(r) => {
            let what = r.action.as_deref().or(r.method.as_deref()).unwrap_or("-");
            let decision = match (&r.outcome, r.decision.effect) {
                (Some(o), _) => format!("outcome={} {}ms", o.result, o.latency_ms),
                (None, effect) => format!("{effect:?}").to_lowercase(),
            };
            // A record about an approval says last what became of it.
            let reasons = &r.decision.reasons;
            let why = r
                .error
                .clone()
                .or_else(|| {
                    if r.approval.is_some() {
                        reasons.last().cloned()
                    } else {
                        reasons.first().cloned()
                    }
                })
                .unwrap_or_default();
            println!(
                "{:>6} {} {:<7} {:<20} {:<28} {:<14} {}",
                entry.seq,
                r.time,
                format!("{:?}", r.kind).to_lowercase(),
                r.agent.as_deref().unwrap_or("-"),
                what,
                decision,
                why
            );
        }
        Err(e) => println!("{:>6} <unreadable record: {e}>", entry.seq),
    }
}

async fn tail(store: &dyn Store, lines: u32, follow: bool, json: bool) -> Outcome {
    let head = store
        .audit_head()
        .await
        .context("cannot read the audit trail")?;
    let mut after = head.seq.saturating_sub(u64::from(lines));
    loop {
        let entries = store
            .audit_entries(after, PAGE)
            .await
            .context("cannot read the audit trail")?;
        for e in &entries {
            line(e, json);
            after = e.seq;
        }
        if !follow {
            return Ok(());
        }
        if entries.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
