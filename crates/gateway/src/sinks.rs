//! Streaming the audit trail to a SIEM: each `[[audit.sinks]]` entry is a
//! task that reads committed records after its durable cursor, writes them
//! as JSON lines (OCSF events or native records) to a file or POSTs them to
//! an endpoint, and moves the cursor only once the batch was accepted.
//!
//! Off the request path: the sink reads the store, so a slow or failing
//! sink never holds a request back, and its buffer is one batch. Nothing is
//! dropped: a failure is retried (backoff up to a minute, logged with the
//! sink's lag) until it succeeds; a crash between delivery and the cursor's
//! move repeats that batch (at least once — `metadata.uid`, the seq,
//! deduplicates).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use warden_audit::{AuditRecord, ChainEntry};
use warden_config::{SecretSource, SinkConfig, SinkFormat, SinkTarget};
use warden_store::Store;

/// How often an idle sink looks for new records.
const POLL: Duration = Duration::from_millis(250);
/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// A sink's progress, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct SinkState {
    /// Its name.
    pub name: String,
    /// The last seq delivered.
    pub delivered: AtomicU64,
    /// Failed deliveries so far.
    pub failures: AtomicU64,
}

/// Reads a sink's bearer token.
fn token(name: &str, source: &SecretSource) -> Result<String, String> {
    let text = match source {
        SecretSource::File(p) => std::fs::read_to_string(p).map_err(|e| {
            format!(
                "audit sink `{name}`: cannot read the token `{}`: {e}",
                p.display()
            )
        })?,
        SecretSource::Env(v) => {
            std::env::var(v).map_err(|_| format!("audit sink `{name}`: `{v}` is not set"))?
        }
    };
    let token = text.trim().to_owned();
    if token.is_empty() || token.chars().any(char::is_control) {
        return Err(format!(
            "audit sink `{name}`: the token is empty or malformed"
        ));
    }
    Ok(token)
}

/// Where a sink writes, ready.
enum Out {
    File(std::path::PathBuf),
    Http {
        client: reqwest::Client,
        url: String,
        token: Option<String>,
    },
}

/// Starts every configured sink (a missing token stops the start); their
/// states, for metrics.
pub(crate) fn start(
    sinks: &[SinkConfig],
    store: &Arc<dyn Store>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<Arc<SinkState>>, String> {
    let mut states = Vec::new();
    for sink in sinks {
        let out = match &sink.target {
            SinkTarget::File(path) => Out::File(path.clone()),
            SinkTarget::Http { url, token: t } => Out::Http {
                client: reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(POST_TIMEOUT)
                    .build()
                    .map_err(|e| format!("audit sink `{}`: {e}", sink.name))?,
                url: url.clone(),
                token: t.as_ref().map(|s| token(&sink.name, s)).transpose()?,
            },
        };
        let state = Arc::new(SinkState {
            name: sink.name.clone(),
            ..SinkState::default()
        });
        states.push(state.clone());
        tokio::spawn(run(sink.clone(), out, store.clone(), state, stop.clone()));
    }
    Ok(states)
}

async fn run(
    sink: SinkConfig,
    out: Out,
    store: Arc<dyn Store>,
    state: Arc<SinkState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let wait = match step(&sink, &out, store.as_ref(), &state).await {
            Ok(true) => {
                backoff = Duration::from_secs(1);
                continue;
            }
            Ok(false) => POLL,
            Err(e) => {
                state.failures.fetch_add(1, Ordering::Relaxed);
                let lag = match store.audit_head().await {
                    Ok(h) => h
                        .seq
                        .saturating_sub(state.delivered.load(Ordering::Relaxed)),
                    Err(_) => 0,
                };
                tracing::warn!(sink = %sink.name, lag, retry_in = ?backoff, "audit sink delivery failed: {e}");
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Delivers the next batch; whether there was one.
async fn step(
    sink: &SinkConfig,
    out: &Out,
    store: &dyn Store,
    state: &SinkState,
) -> Result<bool, String> {
    let cursor = store
        .sink_cursor(&sink.name)
        .await
        .map_err(|e| e.to_string())?;
    state.delivered.store(cursor, Ordering::Relaxed);
    let entries = store
        .audit_entries(cursor, sink.batch)
        .await
        .map_err(|e| e.to_string())?;
    let Some(last) = entries.last().map(|e| e.seq) else {
        return Ok(false);
    };
    let mut body = Vec::with_capacity(entries.len() * 1024);
    for e in &entries {
        serde_json::to_writer(&mut body, &line(sink.format, e)).map_err(|e| e.to_string())?;
        body.push(b'\n');
    }
    deliver(out, body).await?;
    store
        .set_sink_cursor(&sink.name, last)
        .await
        .map_err(|e| e.to_string())?;
    state.delivered.store(last, Ordering::Relaxed);
    Ok(true)
}

/// One entry as a line of the sink's format. A body that is not a valid
/// record (tampered) still goes out, marked, never skipped.
fn line(format: SinkFormat, e: &ChainEntry) -> serde_json::Value {
    let record = serde_json::from_slice::<AuditRecord>(&e.body);
    match (format, record) {
        (SinkFormat::Ocsf, Ok(r)) => {
            warden_audit::ocsf::to_ocsf(e.seq, &e.hash, &r, env!("CARGO_PKG_VERSION"))
        }
        (SinkFormat::Native, Ok(r)) => {
            json!({ "seq": e.seq, "hash": hex::encode(e.hash), "record": r })
        }
        (_, Err(err)) => json!({
            "seq": e.seq, "hash": hex::encode(e.hash),
            "error": format!("not a valid audit record: {err}"),
            "body": String::from_utf8_lossy(&e.body),
        }),
    }
}

async fn deliver(out: &Out, body: Vec<u8>) -> Result<(), String> {
    match out {
        Out::File(path) => {
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let io = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await
                .map_err(io)?;
            file.write_all(&body).await.map_err(io)?;
            file.sync_data().await.map_err(io)
        }
        Out::Http { client, url, token } => {
            let mut req = client
                .post(url)
                .header("content-type", "application/x-ndjson")
                .body(body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.map_err(|e| format!("POST {url}: {e}"))?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(format!("POST {url}: HTTP {}", resp.status()))
            }
        }
    }
}
