//! Upstreams that Warden spawns and speaks to over stdio (newline-delimited
//! JSON-RPC), supervised: a process that exits fails its pending calls and is
//! started again on the next call.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, mpsc, oneshot};
use warden_core::UpstreamName;

use warden_vault::Secret;

use super::{
    CallError, Incoming, initialize_request, initialized_notification, parse_incoming, request_body,
};

/// The least time between two starts of the process.
const RESTART_DELAY: Duration = Duration::from_millis(500);
/// Variables a spawned server inherits from Warden; everything else must be
/// configured in `env` (Warden's own secrets never leak to upstreams).
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "RUST_LOG"];

type Pending = Arc<StdMutex<HashMap<u64, oneshot::Sender<Result<Box<RawValue>, CallError>>>>>;

struct Process {
    stdin: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    dead: Arc<AtomicBool>,
    child: Mutex<Child>,
}

/// Removes a pending entry when its call ends early (timeout, cancel).
struct PendingGuard<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&self.id);
        }
    }
}

impl Process {
    async fn request(&self, id: u64, body: Vec<u8>) -> Result<Box<RawValue>, CallError> {
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .map_err(|_| CallError::Unavailable("upstream state poisoned".into()))?
            .insert(id, tx);
        let _guard = PendingGuard {
            pending: &self.pending,
            id,
        };
        self.stdin
            .send(body)
            .await
            .map_err(|_| CallError::Unavailable("the upstream process has exited".into()))?;
        rx.await
            .map_err(|_| CallError::Unavailable("the upstream process has exited".into()))?
    }
}

pub(crate) struct StdioConn {
    name: UpstreamName,
    program: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: PathBuf,
    max: usize,
    process: Mutex<Option<Arc<Process>>>,
    last_start: StdMutex<Option<Instant>>,
}

impl StdioConn {
    pub(crate) fn new(
        name: UpstreamName,
        program: PathBuf,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: PathBuf,
        max: usize,
    ) -> Self {
        Self {
            name,
            program,
            args,
            env,
            cwd,
            max,
            process: Mutex::new(None),
            last_start: StdMutex::new(None),
        }
    }

    pub(crate) async fn call(
        &self,
        next_id: impl Fn() -> u64,
        method: &str,
        params: Option<&Value>,
        secret_env: Option<&(String, Secret)>,
    ) -> Result<Box<RawValue>, CallError> {
        let process = self.process(&next_id, secret_env).await?;
        let id = next_id();
        process.request(id, request_body(id, method, params)).await
    }

    pub(crate) async fn shutdown(&self) {
        if let Some(p) = self.process.lock().await.take() {
            p.dead.store(true, Ordering::Release);
            let _ = p.child.lock().await.kill().await;
        }
    }

    async fn process(
        &self,
        next_id: &impl Fn() -> u64,
        secret_env: Option<&(String, Secret)>,
    ) -> Result<Arc<Process>, CallError> {
        let mut slot = self.process.lock().await;
        if let Some(p) = slot.as_ref().filter(|p| !p.dead.load(Ordering::Acquire)) {
            return Ok(p.clone());
        }
        if let Some(old) = slot.take() {
            let status = old.child.lock().await.try_wait().ok().flatten();
            tracing::warn!(upstream = %self.name, ?status, "upstream process exited; starting it again");
        }
        let wait = self
            .last_start
            .lock()
            .ok()
            .and_then(|l| *l)
            .map(|t| RESTART_DELAY.saturating_sub(t.elapsed()));
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            tokio::time::sleep(wait).await;
        }
        if let Ok(mut l) = self.last_start.lock() {
            *l = Some(Instant::now());
        }
        let process = Arc::new(self.spawn(secret_env)?);
        let id = next_id();
        process.request(id, initialize_request(id)).await?;
        process
            .stdin
            .send(initialized_notification())
            .await
            .map_err(|_| CallError::Unavailable("the upstream process has exited".into()))?;
        *slot = Some(process.clone());
        Ok(process)
    }

    fn spawn(&self, secret_env: Option<&(String, Secret)>) -> Result<Process, CallError> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env_clear()
            .envs(
                INHERITED_ENV
                    .iter()
                    .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v))),
            )
            .envs(&self.env)
            .envs(secret_env.map(|(k, v)| (k, v.expose())))
            .current_dir(&self.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| {
            CallError::Unavailable(format!("cannot start `{}`: {e}", self.program.display()))
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(CallError::Unavailable(
                "the upstream process has no stdio".into(),
            ));
        };
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
        let pending: Pending = Arc::default();
        let dead = Arc::new(AtomicBool::new(false));
        tokio::spawn(async move {
            let mut stdin = stdin;
            while let Some(mut msg) = rx.recv().await {
                msg.push(b'\n');
                if stdin.write_all(&msg).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(read_stdout(
            stdout,
            tx.clone(),
            pending.clone(),
            dead.clone(),
            self.max,
            self.name.clone(),
        ));
        let name = self.name.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(upstream = %name, "upstream stderr: {}", line.chars().take(1000).collect::<String>());
            }
        });
        tracing::info!(upstream = %self.name, program = %self.program.display(), "started upstream process");
        Ok(Process {
            stdin: tx,
            pending,
            dead,
            child: Mutex::new(child),
        })
    }
}

async fn read_stdout(
    mut stdout: tokio::process::ChildStdout,
    stdin: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    dead: Arc<AtomicBool>,
    max: usize,
    name: UpstreamName,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let reason = loop {
        let n = match stdout.read(&mut chunk).await {
            Ok(0) => break "the upstream process closed its output".to_owned(),
            Ok(n) => n,
            Err(e) => break format!("reading the upstream process failed: {e}"),
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            dispatch(line, &stdin, &pending, &name).await;
        }
        if buf.len() > max {
            break format!("the upstream sent a message larger than {max} bytes");
        }
    };
    if dead.swap(true, Ordering::AcqRel) {
        tracing::debug!(upstream = %name, "{reason} (shut down)");
    } else {
        tracing::warn!(upstream = %name, "{reason}");
    }
    let waiting: Vec<_> = pending
        .lock()
        .map(|mut p| p.drain().collect())
        .unwrap_or_default();
    for (_, tx) in waiting {
        let _ = tx.send(Err(CallError::Unavailable(reason.clone())));
    }
}

async fn dispatch(
    line: &[u8],
    stdin: &mpsc::Sender<Vec<u8>>,
    pending: &Pending,
    name: &UpstreamName,
) {
    match parse_incoming(line) {
        Ok(Incoming::Response(id, result)) => {
            let tx = pending.lock().ok().and_then(|mut p| p.remove(&id));
            if let Some(tx) = tx {
                let _ = tx.send(result);
            }
        }
        Ok(Incoming::Request(id, method)) => {
            // Warden offers upstreams no client features (sampling, roots, ...).
            let reply = serde_json::json!({
                "jsonrpc": "2.0", "id": id,
                "error": { "code": -32601, "message": format!("`{method}` is not supported by the gateway") }
            });
            let _ = stdin.send(reply.to_string().into_bytes()).await;
        }
        Ok(Incoming::Other) => {}
        Err(e) => tracing::warn!(upstream = %name, "ignoring a bad message from the upstream: {e}"),
    }
}
