//! A small company's MCP servers, written with the official Rust MCP SDK
//! (`rmcp`): what the quickstart puts behind Warden, and the real upstream
//! the integration tests call through it.
//!
//! | service | tools                                      | also                         |
//! |---------|--------------------------------------------|------------------------------|
//! | docs    | `search` (read-only)                       | resources `docs://…`         |
//! | crm     | `get_customer` (personal data), `update_customer` (persistent) | prompt `summarize_customer` |
//! | hr      | `get_salary` (confidential)                |                              |
//! | mail    | `send` (persistent, leaves the company)    |                              |
//!
//! Every tool call increments a shared counter, so tests can prove that a
//! denied call never reached the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation, ListPromptsResult,
    ListResourcesResult, PaginatedRequestParams, Prompt, PromptArgument, PromptMessage,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, Role, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;

/// Which part of the company a server plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Documentation search and pages.
    Docs,
    /// Customer records.
    Crm,
    /// Salaries.
    Hr,
    /// Outgoing mail.
    Mail,
}

impl std::str::FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "docs" => Ok(Self::Docs),
            "crm" => Ok(Self::Crm),
            "hr" => Ok(Self::Hr),
            "mail" => Ok(Self::Mail),
            other => Err(format!(
                "unknown service `{other}`: use docs, crm, hr or mail"
            )),
        }
    }
}

/// Counts tool calls that reached the server, and keeps the customer ids
/// that `get_customer` was asked for (to match calls with audit records).
#[derive(Debug, Clone, Default)]
pub struct CallCounter(Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>);

impl CallCounter {
    /// Calls so far.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// The ids `get_customer` received, in order.
    pub fn customers_read(&self) -> Vec<String> {
        self.1.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SearchArgs {
    /// Words to look for.
    query: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct CustomerArgs {
    /// Customer id, e.g. `c-1001`.
    id: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct UpdateCustomerArgs {
    /// Customer id.
    id: String,
    /// New e-mail address.
    email: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SalaryArgs {
    /// Employee id, e.g. `e-7`.
    employee: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SendArgs {
    /// Recipient address.
    to: String,
    /// Subject line.
    subject: String,
    /// Message text.
    body: String,
}

const PAGES: &[(&str, &str, &str)] = &[
    (
        "docs://handbook/vpn",
        "VPN setup",
        "Install the client, then sign in with your company account.",
    ),
    (
        "docs://handbook/expenses",
        "Expenses",
        "Submit receipts within 30 days.",
    ),
    (
        "docs://internal/roadmap",
        "Roadmap",
        "Confidential: the 2027 plan.",
    ),
];

/// One company server.
#[derive(Debug, Clone)]
pub struct Company {
    service: Service,
    calls: CallCounter,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Company {
    /// A server playing `service`, counting calls in `calls`.
    pub fn new(service: Service, calls: CallCounter) -> Self {
        let mut tool_router = Self::tool_router();
        let keep: &[&str] = match service {
            Service::Docs => &["search"],
            Service::Crm => &["get_customer", "update_customer"],
            Service::Hr => &["get_salary"],
            Service::Mail => &["send"],
        };
        let all: Vec<String> = tool_router
            .list_all()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        for name in all {
            if !keep.contains(&name.as_str()) {
                tool_router.remove_route(&name);
            }
        }
        Self {
            service,
            calls,
            tool_router,
        }
    }

    #[tool(
        description = "Search the company documentation.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn search(&self, Parameters(args): Parameters<SearchArgs>) -> String {
        self.calls.hit();
        let q = args.query.to_lowercase();
        let hits: Vec<String> = PAGES
            .iter()
            .filter(|(uri, title, text)| {
                uri.contains("handbook")
                    && (title.to_lowercase().contains(&q) || text.to_lowercase().contains(&q))
            })
            .map(|(uri, title, _)| format!("{title} <{uri}>"))
            .collect();
        if hits.is_empty() {
            format!("no page matches `{}`", args.query)
        } else {
            hits.join("\n")
        }
    }

    #[tool(
        description = "Read a customer record (name, e-mail, phone).",
        annotations(read_only_hint = true)
    )]
    async fn get_customer(&self, Parameters(args): Parameters<CustomerArgs>) -> String {
        self.calls.hit();
        if let Ok(mut ids) = self.calls.1.lock() {
            ids.push(args.id.clone());
        }
        format!(
            r#"{{"id":"{}","name":"Ada Lovelace","email":"ada@example.com","phone":"+44 20 7946 0018"}}"#,
            args.id
        )
    }

    #[tool(
        description = "Change a customer's e-mail address.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true
        )
    )]
    async fn update_customer(&self, Parameters(args): Parameters<UpdateCustomerArgs>) -> String {
        self.calls.hit();
        format!("customer {} now has e-mail {}", args.id, args.email)
    }

    #[tool(
        description = "Read an employee's salary (confidential).",
        annotations(read_only_hint = true)
    )]
    async fn get_salary(&self, Parameters(args): Parameters<SalaryArgs>) -> String {
        self.calls.hit();
        format!(r#"{{"employee":"{}","salary_eur":86000}}"#, args.employee)
    }

    #[tool(
        description = "Send an e-mail outside the company.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = true
        )
    )]
    async fn send(&self, Parameters(args): Parameters<SendArgs>) -> String {
        self.calls.hit();
        format!(
            "sent `{}` to {} ({} bytes)",
            args.subject,
            args.to,
            args.body.len()
        )
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Company {
    fn get_info(&self) -> ServerConfig {
        let caps = ServerCapabilities::builder().enable_tools();
        let caps = match self.service {
            Service::Docs => caps.enable_resources().build(),
            Service::Crm => caps.enable_prompts().build(),
            Service::Hr | Service::Mail => caps.build(),
        };
        ServerConfig::new(caps).with_server_info(Implementation::new(
            format!("company-{:?}", self.service).to_lowercase(),
            "0.1.0",
        ))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(
            PAGES
                .iter()
                .map(|(uri, title, _)| Resource::new(*uri, *title).with_mime_type("text/plain"))
                .collect(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.calls.hit();
        match PAGES.iter().find(|(uri, _, _)| *uri == request.uri) {
            Some((_, _, text)) => Ok(ReadResourceResult::new(vec![ResourceContents::text(
                *text,
                request.uri,
            )])
            .into()),
            None => Err(ErrorData::resource_not_found(
                format!("no page {}", request.uri),
                None,
            )),
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(vec![
            Prompt::new(
                "summarize_customer",
                Some("Summarize a customer's record"),
                Some(vec![
                    PromptArgument::new("id")
                        .with_description("customer id")
                        .with_required(true),
                ]),
            ),
            Prompt::new("draft_apology", Some("Draft an apology e-mail"), None),
        ]))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        self.calls.hit();
        let id = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("id"))
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_owned();
        let text = match request.name.as_str() {
            "summarize_customer" => format!("Summarize customer {id} in two sentences."),
            "draft_apology" => "Draft a short apology for the delay.".to_owned(),
            _ => return Err(ErrorData::invalid_params("unknown prompt", None)),
        };
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]).into())
    }
}

/// Serves `service` over stdio until stdin closes.
pub async fn serve_stdio(service: Service) -> anyhow::Result<()> {
    use rmcp::ServiceExt;
    let running = Company::new(service, CallCounter::default())
        .serve(rmcp::transport::stdio())
        .await?;
    running.waiting().await?;
    Ok(())
}

/// A company server on Streamable HTTP at `/mcp` (rmcp's default session
/// mode: SSE answers and `Mcp-Session-Id`).
#[derive(Debug)]
pub struct HttpServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Tool calls that reached it.
    pub calls: CallCounter,
    /// The `Authorization` and `X-Api-Key` headers it received, in order
    /// (to prove which credentials a gateway forwards).
    pub credentials_seen: Arc<std::sync::Mutex<Vec<String>>>,
    cancel: tokio_util::sync::CancellationToken,
}

impl HttpServer {
    /// The MCP endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Stops the server.
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts `service` on Streamable HTTP at `addr` (port 0 picks one).
pub async fn serve_http(service: Service, addr: SocketAddr) -> anyhow::Result<HttpServer> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let calls = CallCounter::default();
    let cancel = tokio_util::sync::CancellationToken::new();
    let for_service = calls.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(Company::new(service, for_service.clone())),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_cancellation_token(cancel.child_token()),
    );
    let credentials_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = credentials_seen.clone();
    let app = axum::Router::new()
        .nest_service("/mcp", mcp)
        .layer(axum::middleware::map_request(
            move |req: axum::extract::Request| {
                let seen = seen.clone();
                async move {
                    for name in ["authorization", "x-api-key"] {
                        if let Some(v) = req.headers().get(name).and_then(|v| v.to_str().ok())
                            && let Ok(mut s) = seen.lock()
                        {
                            s.push(format!("{name}: {v}"));
                        }
                    }
                    req
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let stop = cancel.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled_owned().await })
            .await;
    });
    Ok(HttpServer {
        addr,
        calls,
        credentials_seen,
        cancel,
    })
}

/// What the quickstart's demo client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoReport {
    /// Tool names the agent was shown.
    pub tools: Vec<String>,
    /// Each call: (what, result or error text, allowed). A call held for
    /// approval or refused is not allowed.
    pub calls: Vec<(String, String, bool)>,
}

/// What one call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// It ran; the tool's text.
    Ran(String),
    /// Held for human approval (the tool error naming the approval).
    Held(String),
    /// Refused (the reason).
    Refused(String),
}

impl CallOutcome {
    /// A label and the text.
    pub fn describe(&self) -> (&'static str, &str) {
        match self {
            Self::Ran(t) => ("ALLOWED", t),
            Self::Held(t) => ("HELD   ", t),
            Self::Refused(t) => ("DENIED ", t),
        }
    }
}

/// How the demo agent proves who it is.
#[derive(Debug, Clone)]
pub enum DemoAuth {
    /// A bearer token (over HTTPS if `ca` names the CA bundle to trust).
    Token {
        /// The access token.
        token: String,
        /// The CA bundle (PEM) for an `https://` URL.
        ca: Option<String>,
    },
    /// The agent's certificate (mTLS): the demo asks Warden's token endpoint
    /// for a token bound to it (`client_credentials`) and uses that.
    Certificate {
        /// The CA bundle (PEM).
        ca: String,
        /// The agent's certificate (PEM).
        cert: String,
        /// The agent's private key (PEM).
        key: String,
    },
}

/// An HTTP client trusting `ca` and presenting `identity` (cert, key).
fn tls_client(ca: &str, identity: Option<(&str, &str)>) -> anyhow::Result<reqwest::Client> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let tls = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain =
                CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<_, _>>()?;
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(key.as_bytes())?)?
        }
    };
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()?)
}

/// A bound token from Warden's token endpoint, over mTLS.
async fn client_credentials(client: &reqwest::Client, mcp_url: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(mcp_url)?;
    url.set_path("/oauth/token");
    let resp = client
        .post(url)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    let status = resp.status();
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await?)?;
    match body.get("access_token").and_then(|t| t.as_str()) {
        Some(token) if status.is_success() => Ok(token.to_owned()),
        _ => anyhow::bail!("the token endpoint answered {status}: {body}"),
    }
}

/// Connects to Warden at `url` as an agent would (the official SDK's
/// client), with a bearer token or with its certificate.
async fn connect(
    url: &str,
    auth: &DemoAuth,
) -> anyhow::Result<rmcp::service::RunningService<rmcp::RoleClient, ()>> {
    use rmcp::ServiceExt;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let (http, token) = match auth {
        DemoAuth::Token { token, ca: None } => (reqwest::Client::new(), token.clone()),
        DemoAuth::Token {
            token,
            ca: Some(ca),
        } => (tls_client(ca, None)?, token.clone()),
        DemoAuth::Certificate { ca, cert, key } => {
            let http = tls_client(ca, Some((cert, key)))?;
            let token = client_credentials(&http, url).await?;
            (http, token)
        }
    };
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token);
    Ok(
        ().serve(StreamableHttpClientTransport::with_client(http, config))
            .await?,
    )
}

async fn call_on(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    tool: &str,
    args: serde_json::Value,
) -> CallOutcome {
    use rmcp::model::{CallToolRequestParams, object};
    match client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(object(args)))
        .await
    {
        Ok(result) => {
            let text = result
                .content
                .first()
                .and_then(|c| c.as_text())
                .map(|t| t.text.clone())
                .unwrap_or_default();
            match result.is_error {
                Some(true) if text.starts_with("held for human approval") => {
                    CallOutcome::Held(text)
                }
                Some(true) => CallOutcome::Refused(text),
                _ => CallOutcome::Ran(text),
            }
        }
        Err(e) => CallOutcome::Refused(e.to_string()),
    }
}

/// One tool call through Warden, in a session of its own.
pub async fn call(
    url: &str,
    auth: &DemoAuth,
    tool: &str,
    args: serde_json::Value,
) -> anyhow::Result<CallOutcome> {
    let client = connect(url, auth).await?;
    let outcome = call_on(&client, tool, args).await;
    client.cancel().await?;
    Ok(outcome)
}

/// Connects to Warden at `url` as an agent would (the official SDK's
/// client), lists the tools and makes a few calls: some that policy allows,
/// one it holds for human approval, and some that it denies.
pub async fn demo(url: &str, auth: &DemoAuth) -> anyhow::Result<DemoReport> {
    let client = connect(url, auth).await?;
    let tools = client
        .list_all_tools()
        .await?
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    let to_bob =
        serde_json::json!({"to": "bob@example.com", "subject": "Your ticket", "body": "Fixed."});
    let attempts = [
        ("docs.search", serde_json::json!({"query": "vpn"})),
        ("mail.send", to_bob.clone()),
        ("crm.get_customer", serde_json::json!({"id": "c-1001"})),
        // The session has now read a customer record (confidential).
        ("mail.send", to_bob),
        ("hr.get_salary", serde_json::json!({"employee": "e-7"})),
        (
            "mail.send",
            serde_json::json!({"to": "someone@competitor.test", "subject": "Customer list", "body": "..."}),
        ),
        (
            "crm.update_customer",
            serde_json::json!({"id": "c-1001", "email": "new@example.com"}),
        ),
    ];
    let mut calls = Vec::new();
    for (name, args) in attempts {
        let what = format!("{name} {args}");
        let outcome = call_on(&client, name, args).await;
        let (label, text) = outcome.describe();
        calls.push((
            format!("{} {what}", label.trim()),
            text.to_owned(),
            matches!(outcome, CallOutcome::Ran(_)),
        ));
    }
    client.cancel().await?;
    Ok(DemoReport { tools, calls })
}
