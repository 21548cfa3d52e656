//! Upstreams over MCP Streamable HTTP (JSON or SSE answers).

use std::sync::Arc;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{Mutex, RwLock};
use warden_mcp::sse::SseDecoder;

use super::{
    CallError, Incoming, initialize_request, initialized_notification, negotiated_version,
    parse_incoming, request_body,
};

/// A header carrying the upstream credential.
pub(crate) type Credential = (http::HeaderName, http::HeaderValue);

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

#[derive(Debug)]
struct Session {
    id: Option<String>,
    version: String,
}

pub(crate) struct HttpConn {
    client: reqwest::Client,
    url: reqwest::Url,
    max: usize,
    session: RwLock<Option<Arc<Session>>>,
    init: Mutex<()>,
}

impl HttpConn {
    pub(crate) fn new(url: &str, max: usize) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        let url = reqwest::Url::parse(url).map_err(|e| format!("invalid upstream url: {e}"))?;
        Ok(Self {
            client,
            url,
            max,
            session: RwLock::new(None),
            init: Mutex::new(()),
        })
    }

    pub(crate) async fn call(
        &self,
        next_id: impl Fn() -> u64,
        method: &str,
        params: Option<&Value>,
        auth: Option<&Credential>,
    ) -> Result<Box<RawValue>, CallError> {
        let session = self.session(&next_id, auth).await?;
        let id = next_id();
        match self
            .post(Some(&session), id, request_body(id, method, params), auth)
            .await
        {
            Err(CallError::SessionExpired) => {
                let mut current = self.session.write().await;
                if current.as_ref().is_some_and(|s| Arc::ptr_eq(s, &session)) {
                    *current = None;
                }
                Err(CallError::SessionExpired)
            }
            other => other.map(|(_, result)| result),
        }
    }

    async fn session(
        &self,
        next_id: &impl Fn() -> u64,
        auth: Option<&Credential>,
    ) -> Result<Arc<Session>, CallError> {
        if let Some(s) = self.session.read().await.clone() {
            return Ok(s);
        }
        let _guard = self.init.lock().await;
        if let Some(s) = self.session.read().await.clone() {
            return Ok(s);
        }
        let id = next_id();
        let (session_id, result) = self.post(None, id, initialize_request(id), auth).await?;
        let session = Arc::new(Session {
            id: session_id,
            version: negotiated_version(&result),
        });
        self.notify(&session, initialized_notification(), auth)
            .await?;
        *self.session.write().await = Some(session.clone());
        Ok(session)
    }

    fn request(
        &self,
        session: Option<&Session>,
        body: Vec<u8>,
        auth: Option<&Credential>,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .post(self.url.clone())
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some((name, value)) = auth {
            req = req.header(name, value);
        }
        if let Some(s) = session {
            if let Some(id) = &s.id {
                req = req.header(SESSION_HEADER, id);
            }
            req = req.header(VERSION_HEADER, &s.version);
        }
        req
    }

    async fn notify(
        &self,
        session: &Session,
        body: Vec<u8>,
        auth: Option<&Credential>,
    ) -> Result<(), CallError> {
        let resp = self
            .request(Some(session), body, auth)
            .send()
            .await
            .map_err(unavailable)?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(CallError::Unavailable(format!(
                "upstream answered HTTP {} to a notification",
                resp.status()
            )))
        }
    }

    async fn post(
        &self,
        session: Option<&Session>,
        id: u64,
        body: Vec<u8>,
        auth: Option<&Credential>,
    ) -> Result<(Option<String>, Box<RawValue>), CallError> {
        let mut resp = self
            .request(session, body, auth)
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND && session.is_some_and(|s| s.id.is_some()) {
            return Err(CallError::SessionExpired);
        }
        let session_id = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let is_sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/event-stream")
            });
        if is_sse && status.is_success() {
            return self.read_sse(&mut resp, id).await.map(|r| (session_id, r));
        }
        let body = self.read_body(&mut resp).await?;
        match parse_incoming(&body) {
            Ok(Incoming::Response(rid, result)) if rid == id => result.map(|r| (session_id, r)),
            _ if !status.is_success() => Err(CallError::Unavailable(format!(
                "upstream answered HTTP {status}"
            ))),
            Ok(_) => Err(CallError::Invalid(
                "the response does not answer the request".into(),
            )),
            Err(e) => Err(e),
        }
    }

    async fn read_body(&self, resp: &mut reqwest::Response) -> Result<Vec<u8>, CallError> {
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unavailable)? {
            if body.len() + chunk.len() > self.max {
                return Err(CallError::Invalid(format!(
                    "response larger than {} bytes",
                    self.max
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn read_sse(
        &self,
        resp: &mut reqwest::Response,
        id: u64,
    ) -> Result<Box<RawValue>, CallError> {
        let mut decoder = SseDecoder::new(self.max);
        while let Some(chunk) = resp.chunk().await.map_err(unavailable)? {
            for event in decoder
                .push(&chunk)
                .map_err(|e| CallError::Invalid(e.to_string()))?
            {
                if event.data.trim().is_empty() {
                    continue;
                }
                if let Incoming::Response(rid, result) = parse_incoming(event.data.as_bytes())?
                    && rid == id
                {
                    return result;
                }
            }
        }
        Err(CallError::Invalid(
            "the event stream ended before the response".into(),
        ))
    }
}

/// The error without the URL, which may carry credentials.
fn unavailable(e: reqwest::Error) -> CallError {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    CallError::Unavailable(message)
}
