//! `warden audit verify|checkpoint|prove|consistency|export|public-key|tail`
//! (`query` and `explain` are in `explain.rs`).
//!
//! An export is a directory anyone can verify without the database:
//!
//! ```text
//! records.jsonl          {"seq":1,"prev_hash":"<hex>","hash":"<hex>","body":"<the record's exact JSON>"}
//! checkpoints/<size>.note  signed checkpoints (C2SP signed notes)
//! audit.pub              the log's public key (a note verifier key)
//! ```

use std::fs;
use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;
use warden_audit::merkle::{
    Hash, consistency_proof, inclusion_proof, leaf_hash, verify_consistency, verify_inclusion,
};
use warden_audit::{
    AuditRecord, ChainEntry, ChainHead, Checkpoint, LogError, LogReport, LogVerifier, NoteVerifier,
    check_entry, verify_checkpoint,
};
use warden_config::Config;
use warden_gateway::checkpoints;
use warden_store::{Store, StoredCheckpoint};

use crate::cli::{AuditCommand, Cli, ExportFormat};
use crate::context::{config, print_json, store};
use crate::{Failure, Outcome};

const PAGE: u32 = 1000;
/// The longest line of `records.jsonl` accepted (a record is far smaller).
const MAX_LINE: usize = 16 * 1024 * 1024;

pub async fn run(cli: &Cli, cmd: &AuditCommand) -> Outcome {
    if let AuditCommand::Verify {
        from: Some(dir),
        public_key,
        checkpoints,
        json,
    } = cmd
    {
        let Some(key) = public_key else {
            return Err(Failure::Invalid(anyhow!(
                "--from needs --public-key FILE: a key you trust, not the one in the export"
            )));
        };
        let verifier = read_public_key(key)?;
        return verify_export(dir, &verifier, checkpoints, *json);
    }
    let config = config(cli)?;
    if matches!(cmd, AuditCommand::PublicKey) {
        println!("{}", verifier_for(&config, None)?.to_vkey());
        return Ok(());
    }
    let store = store(&config).await?;
    let store = store.as_ref();
    match cmd {
        AuditCommand::Verify {
            public_key,
            checkpoints,
            json,
            ..
        } => {
            let verifier = verifier_for(&config, public_key.as_deref())?;
            verify(store, &verifier, checkpoints, *json).await
        }
        AuditCommand::Checkpoint { json } => checkpoint(&config, store, *json).await,
        AuditCommand::Prove { seq, size, json } => {
            prove(store, &verifier_for(&config, None)?, *seq, *size, *json).await
        }
        AuditCommand::Consistency { old, new, json } => {
            consistency(store, &verifier_for(&config, None)?, *old, *new, *json).await
        }
        AuditCommand::Export {
            out,
            format: ExportFormat::Ocsf,
        } => export_ocsf(store, out).await,
        AuditCommand::Export { out, .. } => export(store, &verifier_for(&config, None)?, out).await,
        AuditCommand::Tail {
            lines,
            follow,
            json,
        } => tail(store, *lines, *follow, *json).await,
        AuditCommand::Query(args) => super::explain::query(cli, &config, store, args).await,
        AuditCommand::Explain { id, json } => {
            super::explain::explain(cli, &config, store, id, *json).await
        }
        AuditCommand::PublicKey => Ok(()),
    }
}

/// The log's verifier key: `--public-key FILE`, else derived from the
/// config's signing key.
pub(crate) fn verifier_for(config: &Config, file: Option<&Path>) -> Result<NoteVerifier, Failure> {
    if let Some(file) = file {
        return read_public_key(file);
    }
    let signer =
        checkpoints::load_signer(&config.audit, false).map_err(|e| Failure::Invalid(anyhow!(e)))?;
    Ok(signer.verifier().clone())
}

fn read_public_key(file: &Path) -> Result<NoteVerifier, Failure> {
    let text = fs::read_to_string(file)
        .with_context(|| format!("cannot read the public key `{}`", file.display()))
        .map_err(Failure::Invalid)?;
    NoteVerifier::parse(text.trim())
        .with_context(|| format!("the public key `{}`", file.display()))
        .map_err(Failure::Invalid)
}

/// Checkpoints kept elsewhere, given with `--checkpoint`.
fn trusted_notes(files: &[PathBuf]) -> Result<Vec<String>, Failure> {
    files
        .iter()
        .map(|f| {
            fs::read_to_string(f)
                .with_context(|| format!("cannot read the checkpoint `{}`", f.display()))
                .map_err(Failure::Invalid)
        })
        .collect()
}

/// The outcome of a verification, printed the same way for the database
/// and an export.
fn report(
    result: Result<LogReport, LogError>,
    json: bool,
    what: &str,
    unsigned_note: bool,
) -> Outcome {
    match result {
        Ok(r) => {
            let signed = r.latest.as_ref().map_or(0, |c| c.size);
            let unsigned = r.records - signed;
            if json {
                return print_json(&json!({
                    "ok": true,
                    "records": r.records,
                    "head": hex::encode(r.head.hash),
                    "root": hex::encode(r.root),
                    "checkpoints": r.checkpoints,
                    "latest_checkpoint": signed,
                    "unsigned_records": unsigned,
                }));
            }
            println!(
                "ok: {} audit records in {what} verified (hash chain and Merkle tree), root {}",
                r.records,
                hex::encode(r.root)
            );
            match r.checkpoints {
                0 => println!("note: there is no signed checkpoint yet"),
                1 => println!("ok: 1 signed checkpoint verified; it covers records 1..={signed}"),
                n => println!(
                    "ok: {n} signed checkpoints verified; the latest covers records 1..={signed}"
                ),
            }
            if unsigned > 0 && unsigned_note {
                println!(
                    "note: the newest {unsigned} records are not in a checkpoint yet (`warden audit checkpoint` signs one)"
                );
            }
            Ok(())
        }
        Err(e) => {
            if json {
                let seq = match &e {
                    LogError::Chain(c) => Some(c.seq()),
                    LogError::Fields { seqs } => seqs.first().copied(),
                    _ => None,
                };
                print_json(&json!({ "ok": false, "first_bad_seq": seq, "error": e.to_string() }))?;
            }
            Err(Failure::Failed(anyhow!(e)))
        }
    }
}

async fn verify(
    store: &dyn Store,
    verifier: &NoteVerifier,
    trusted: &[PathBuf],
    json: bool,
) -> Outcome {
    let mut notes: Vec<String> = stored_checkpoints(store)
        .await?
        .into_iter()
        .map(|c| c.note)
        .collect();
    notes.extend(trusted_notes(trusted)?);
    let mut v = match LogVerifier::new(&notes, verifier) {
        Ok(v) => v,
        Err(e) => return report(Err(e), json, "the database", true),
    };
    let mut after = 0;
    let result = loop {
        let entries = store
            .audit_entries(after, PAGE)
            .await
            .context("cannot read the audit trail")?;
        if entries.is_empty() {
            break v.finish();
        }
        if let Some(e) = entries.iter().find_map(|e| v.push(e).err()) {
            break Err(e);
        }
        after = entries.last().map_or(after, |e| e.seq);
    };
    let result = match result {
        Ok(summary) => {
            // What the store keeps beside the records for its queries
            // (not covered by the chain) says what the records say.
            let seqs = store
                .audit_fields_mismatched(10)
                .await
                .context("cannot read the audit trail")?;
            if seqs.is_empty() {
                Ok(summary)
            } else {
                Err(LogError::Fields { seqs })
            }
        }
        Err(e) => Err(e),
    };
    report(result, json, "the database", true)
}

async fn stored_checkpoints(store: &dyn Store) -> Result<Vec<StoredCheckpoint>, Failure> {
    Ok(store
        .checkpoints()
        .await
        .context("cannot read the checkpoints")?)
}

async fn checkpoint(config: &Config, store: &dyn Store, json: bool) -> Outcome {
    let signer =
        checkpoints::load_signer(&config.audit, false).map_err(|e| Failure::Invalid(anyhow!(e)))?;
    let made = checkpoints::checkpoint_now(store, &signer, unix_now())
        .await
        .map_err(|e| anyhow!(e))?;
    let latest = match &made {
        Some(c) => c.note.clone(),
        None => store
            .latest_checkpoint()
            .await
            .context("cannot read the checkpoints")?
            .map(|c| c.note)
            .unwrap_or_default(),
    };
    if json {
        return print_json(&json!({ "new": made.is_some(), "note": latest }));
    }
    if latest.is_empty() {
        println!("the log is empty: nothing to checkpoint");
    } else {
        print!("{latest}");
    }
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The leaf hashes of records 1..=`size`, checking their chain.
async fn leaves(store: &dyn Store, size: u64) -> Result<Vec<Hash>, Failure> {
    let mut head = ChainHead::default();
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    while head.seq < size {
        let want = u32::try_from((size - head.seq).min(u64::from(PAGE))).unwrap_or(PAGE);
        let entries = store
            .audit_entries(head.seq, want)
            .await
            .context("cannot read the audit trail")?;
        if entries.is_empty() {
            return Err(Failure::Failed(anyhow!(
                "the log ends at seq {}, before the checkpoint's size {size}",
                head.seq
            )));
        }
        for e in &entries {
            check_entry(&mut head, e).map_err(|e| anyhow!(e))?;
            out.push(leaf_hash(&e.body));
        }
    }
    Ok(out)
}

/// The stored checkpoint of `size` (the latest when `None`), verified.
async fn signed_checkpoint(
    store: &dyn Store,
    verifier: &NoteVerifier,
    size: Option<u64>,
) -> Result<Checkpoint, Failure> {
    let all = stored_checkpoints(store).await?;
    let found = match size {
        None => all.last(),
        Some(n) => all.iter().find(|c| c.size == n),
    };
    let Some(found) = found else {
        let sizes: Vec<String> = all.iter().map(|c| c.size.to_string()).collect();
        return Err(Failure::Failed(match size {
            None => anyhow!("there is no checkpoint yet (`warden audit checkpoint` signs one)"),
            Some(n) => anyhow!(
                "there is no checkpoint of size {n}; the checkpoints have sizes: {}",
                if sizes.is_empty() {
                    "none".to_owned()
                } else {
                    sizes.join(", ")
                }
            ),
        }));
    };
    verify_checkpoint(&found.note, verifier)
        .with_context(|| format!("the checkpoint of size {}", found.size))
        .map_err(Failure::Failed)
}

fn hexes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

async fn prove(
    store: &dyn Store,
    verifier: &NoteVerifier,
    seq: u64,
    size: Option<u64>,
    json: bool,
) -> Outcome {
    let checkpoint = signed_checkpoint(store, verifier, size).await?;
    if seq == 0 || seq > checkpoint.size {
        return Err(Failure::Failed(anyhow!(
            "record {seq} is not in the checkpoint of size {} (it covers records 1..={}){}",
            checkpoint.size,
            checkpoint.size,
            if size.is_none() {
                "; `warden audit checkpoint` signs a newer one"
            } else {
                ""
            }
        )));
    }
    let leaves = leaves(store, checkpoint.size).await?;
    let index = seq - 1;
    let proof = inclusion_proof(&leaves, index).map_err(|e| anyhow!(e))?;
    let leaf = leaves
        .get(usize::try_from(index).unwrap_or(usize::MAX))
        .copied()
        .ok_or_else(|| anyhow!("record {seq} is missing"))?;
    verify_inclusion(&leaf, index, checkpoint.size, &proof, &checkpoint.root)
        .map_err(|e| anyhow!("the proof does not verify: {e}"))?;
    let record = store
        .audit_entries(index, 1)
        .await
        .context("cannot read the audit trail")?
        .into_iter()
        .next()
        .map(|e| String::from_utf8_lossy(&e.body).into_owned())
        .unwrap_or_default();
    if json {
        return print_json(&json!({
            "seq": seq,
            "leaf_index": index,
            "tree_size": checkpoint.size,
            "leaf_hash": hex::encode(leaf),
            "root": hex::encode(checkpoint.root),
            "proof": hexes(&proof),
            "record": record,
            "checkpoint": checkpoint.note,
        }));
    }
    println!(
        "record {seq} is leaf {index} of the tree of {} records",
        checkpoint.size
    );
    println!("leaf hash  {}", hex::encode(leaf));
    println!("root       {}", hex::encode(checkpoint.root));
    println!("proof      ({} hashes, leaf to root)", proof.len());
    for p in &proof {
        println!("  {}", hex::encode(p));
    }
    println!("verified against the signed checkpoint:");
    print!("{}", checkpoint.note);
    Ok(())
}

async fn consistency(
    store: &dyn Store,
    verifier: &NoteVerifier,
    old: u64,
    new: u64,
    json: bool,
) -> Outcome {
    if old > new {
        return Err(Failure::Invalid(anyhow!(
            "OLD ({old}) must not be larger than NEW ({new})"
        )));
    }
    let older = signed_checkpoint(store, verifier, Some(old)).await?;
    let newer = signed_checkpoint(store, verifier, Some(new)).await?;
    let leaves = leaves(store, new).await?;
    let proof = consistency_proof(&leaves, old).map_err(|e| anyhow!(e))?;
    verify_consistency(old, new, &older.root, &newer.root, &proof)
        .map_err(|e| anyhow!("the checkpoints are not consistent: {e}"))?;
    if json {
        return print_json(&json!({
            "old": { "size": old, "root": hex::encode(older.root), "checkpoint": older.note },
            "new": { "size": new, "root": hex::encode(newer.root), "checkpoint": newer.note },
            "proof": hexes(&proof),
        }));
    }
    println!(
        "the tree of {old} records ({}) is a prefix of the tree of {new} records ({})",
        hex::encode(older.root),
        hex::encode(newer.root)
    );
    println!("proof      ({} hashes)", proof.len());
    for p in &proof {
        println!("  {}", hex::encode(p));
    }
    Ok(())
}

/// One line of `records.jsonl`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportedEntry {
    seq: u64,
    prev_hash: String,
    hash: String,
    /// The record's exact bytes (JSON, so valid UTF-8).
    body: String,
}

fn hash_field(name: &str, text: &str) -> anyhow::Result<Hash> {
    let bytes = hex::decode(text).map_err(|e| anyhow!("`{name}` is not hex: {e}"))?;
    Hash::try_from(bytes.as_slice()).map_err(|_| anyhow!("`{name}` is not 32 bytes"))
}

async fn export(store: &dyn Store, verifier: &NoteVerifier, out: &Path) -> Outcome {
    let records_path = out.join("records.jsonl");
    if records_path.exists() {
        return Err(Failure::Failed(anyhow!(
            "refusing to overwrite the export in `{}`",
            out.display()
        )));
    }
    let notes_dir = out.join("checkpoints");
    fs::create_dir_all(&notes_dir)
        .with_context(|| format!("cannot create `{}`", notes_dir.display()))?;
    // The checkpoints first: every record they cover is then in the export.
    let stored = stored_checkpoints(store).await?;
    for c in &stored {
        let path = notes_dir.join(format!("{}.note", c.size));
        fs::write(&path, &c.note).with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    let pub_path = out.join("audit.pub");
    fs::write(&pub_path, format!("{}\n", verifier.to_vkey()))
        .with_context(|| format!("cannot write `{}`", pub_path.display()))?;
    let tmp = out.join("records.jsonl.tmp");
    let file =
        fs::File::create(&tmp).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    let mut w = BufWriter::new(file);
    let mut after = 0;
    loop {
        let entries = store
            .audit_entries(after, PAGE)
            .await
            .context("cannot read the audit trail")?;
        if entries.is_empty() {
            break;
        }
        for e in &entries {
            let line = ExportedEntry {
                seq: e.seq,
                prev_hash: hex::encode(e.prev_hash),
                hash: hex::encode(e.hash),
                body: String::from_utf8(e.body.clone())
                    .map_err(|_| anyhow!("record {} is not UTF-8 JSON", e.seq))?,
            };
            serde_json::to_writer(&mut w, &line).context("cannot write the export")?;
            w.write_all(b"\n").context("cannot write the export")?;
            after = e.seq;
        }
    }
    let file = w
        .into_inner()
        .map_err(|e| anyhow!("cannot write the export: {e}"))?;
    file.sync_all().context("cannot write the export")?;
    fs::rename(&tmp, &records_path).context("cannot write the export")?;
    println!(
        "exported {after} records and {} checkpoints to `{}` (public key in audit.pub)",
        stored.len(),
        out.display()
    );
    println!(
        "verify with: warden audit verify --from {} --public-key <a copy of audit.pub you trust>",
        out.display()
    );
    Ok(())
}

/// Every record as an OCSF event, one per line, to `DIR/ocsf.jsonl` or
/// (`-`) standard output.
async fn export_ocsf(store: &dyn Store, out: &Path) -> Outcome {
    let to_stdout = out.as_os_str() == "-";
    let path = out.join("ocsf.jsonl");
    let mut w: Box<dyn std::io::Write> = if to_stdout {
        Box::new(BufWriter::new(std::io::stdout().lock()))
    } else {
        if path.exists() {
            return Err(Failure::Failed(anyhow!(
                "refusing to overwrite `{}`",
                path.display()
            )));
        }
        fs::create_dir_all(out).with_context(|| format!("cannot create `{}`", out.display()))?;
        Box::new(BufWriter::new(
            fs::File::create(&path)
                .with_context(|| format!("cannot write `{}`", path.display()))?,
        ))
    };
    let version = env!("CARGO_PKG_VERSION");
    let (mut after, mut unreadable) = (0, 0u64);
    loop {
        let entries = store
            .audit_entries(after, PAGE)
            .await
            .context("cannot read the audit trail")?;
        if entries.is_empty() {
            break;
        }
        for e in &entries {
            after = e.seq;
            let Ok(record) = serde_json::from_slice::<AuditRecord>(&e.body) else {
                // Not silently: counted, and `audit verify` names it.
                unreadable += 1;
                continue;
            };
            let event = warden_audit::ocsf::to_ocsf(e.seq, &e.hash, &record, version);
            serde_json::to_writer(&mut w, &event).context("cannot write the export")?;
            w.write_all(b"\n").context("cannot write the export")?;
        }
    }
    w.flush().context("cannot write the export")?;
    if unreadable > 0 {
        return Err(Failure::Failed(anyhow!(
            "{unreadable} records are not valid audit records and were not exported: run `warden audit verify`"
        )));
    }
    if !to_stdout {
        println!(
            "exported {after} records as OCSF {} events to `{}`",
            warden_audit::ocsf::OCSF_VERSION,
            path.display()
        );
    }
    Ok(())
}

fn verify_export(dir: &Path, verifier: &NoteVerifier, trusted: &[PathBuf], json: bool) -> Outcome {
    let mut notes = Vec::new();
    let notes_dir = dir.join("checkpoints");
    let mut paths: Vec<PathBuf> = match fs::read_dir(&notes_dir) {
        Ok(read) => read
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot read `{}`", notes_dir.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(Failure::Failed(
                anyhow!(e).context(format!("cannot read `{}`", notes_dir.display())),
            ));
        }
    };
    paths.sort();
    for p in paths
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "note"))
    {
        notes
            .push(fs::read_to_string(p).with_context(|| format!("cannot read `{}`", p.display()))?);
    }
    notes.extend(trusted_notes(trusted)?);
    let records_path = dir.join("records.jsonl");
    let file = fs::File::open(&records_path)
        .with_context(|| format!("cannot read `{}`", records_path.display()))
        .map_err(Failure::Invalid)?;
    let result = (|| -> Result<Result<LogReport, LogError>, anyhow::Error> {
        let mut v = match LogVerifier::new(&notes, verifier) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            let n = std::io::Read::take(&mut reader, MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .with_context(|| format!("cannot read `{}`", records_path.display()))?;
            if n == 0 {
                break;
            }
            number += 1;
            let at = || format!("{}:{number}", records_path.display());
            if line.len() > MAX_LINE {
                bail!("{}: the line is longer than {MAX_LINE} bytes", at());
            }
            let parsed: ExportedEntry = serde_json::from_slice(&line)
                .with_context(|| format!("{}: not an exported record", at()))?;
            let entry = ChainEntry {
                seq: parsed.seq,
                prev_hash: hash_field("prev_hash", &parsed.prev_hash).context(at())?,
                hash: hash_field("hash", &parsed.hash).context(at())?,
                body: parsed.body.into_bytes(),
            };
            if let Err(e) = v.push(&entry) {
                return Ok(Err(e));
            }
        }
        Ok(v.finish())
    })()
    .map_err(Failure::Failed)?;
    report(result, json, &format!("`{}`", dir.display()), false)
}

pub(crate) fn line(entry: &ChainEntry, json: bool) {
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
