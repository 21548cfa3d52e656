//! The web console at `/console` on the admin listener: directory users
//! sign in (an Argon2id password, or a one-time link printed by
//! `warden user login-link`), see the approvals waiting for them, read the
//! exact call each one binds, and approve or deny it.
//!
//! Plain server-rendered HTML with no script. Sessions are an HttpOnly,
//! SameSite=Strict cookie (Secure unless the admin listener is on loopback
//! and reached over plain HTTP); every form carries a CSRF token (the session's, or before
//! sign-in a double-submit cookie), and cross-site posts are refused. Every
//! page is sent with a strict content security policy and is never cached.
//! Each request re-reads the user: a disabled user's session is over.

mod audit;
mod pages;
mod session;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use warden_approval::{Approval, Verdict};
use warden_audit::AuditRecord;
use warden_core::{Effect, TenantId, UserName};
use warden_store::User;

use crate::Gateway;
use crate::auth::now_secs;
use crate::review::{Decided, ReviewError};
use pages::{Notice, Viewer};
pub(crate) use session::ConsoleSessions;

/// The session cookie.
const SESSION_COOKIE: &str = "warden_console";
/// The pre-sign-in CSRF cookie.
const LOGIN_COOKIE: &str = "warden_login";
/// Form bodies are small.
const MAX_FORM_BYTES: usize = 8 * 1024;

/// A fresh 256-bit secret, base64url.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 (hex) under which a secret is kept.
pub fn secret_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

type Gw = State<Arc<Gateway>>;

pub(crate) fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/style.css", get(style))
        .route("/console/login", get(login_page).post(login))
        .route("/console/login/link", get(link_page).post(link_login))
        .route("/console/logout", axum::routing::post(logout))
        .route("/console/approvals", get(inbox))
        .route("/console/approvals/{id}", get(detail).post(decide))
        .route("/console/audit", get(audit::list))
        .route("/console/audit/{seq}", get(audit::record))
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(gw)
}

async fn secure_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Login links carry their token in the URL: it must not leak onward.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

fn cookie(gw: &Gateway, name: &str, value: &str, max_age: u64) -> HeaderValue {
    // Secure whenever people reach the console over HTTPS or from another
    // host; plain HTTP only for a loopback listener.
    let admin = &gw.config.admin;
    let secure = if admin.listen.ip().is_loopback() && !admin.public_url.starts_with("https://") {
        ""
    } else {
        "; Secure"
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=1; Max-Age=0"))
}

/// The value of cookie `name`, if sent.
fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Refuses a form posted from another site (browsers say so in
/// `Sec-Fetch-Site`; the CSRF token covers the others).
fn same_site(headers: &HeaderMap) -> Result<(), Response> {
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("cross-site" | "same-site") => Err(html(
            StatusCode::FORBIDDEN,
            pages::message("Refused", None, "cross-site form posts are refused"),
        )),
        _ => Ok(()),
    }
}

fn parse_form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    if body.len() > MAX_FORM_BYTES {
        return Err(html(
            StatusCode::PAYLOAD_TOO_LARGE,
            pages::message("Refused", None, "the form is too large"),
        ));
    }
    serde_urlencoded::from_bytes(body).map_err(|e| {
        html(
            StatusCode::BAD_REQUEST,
            pages::message("Bad request", None, &format!("invalid form: {e}")),
        )
    })
}

/// Who is signed in: the session and the user as the directory has it now.
struct SignedIn {
    session: session::Session,
    user: User,
}

impl SignedIn {
    fn viewer(&self) -> Viewer<'_> {
        Viewer {
            user: self.user.name.as_str(),
            tenant: self.user.tenant.as_str(),
            role: &self.user.role,
            csrf: &self.session.csrf,
        }
    }

    /// Approvers decide; admins and auditors may look.
    fn may_read(&self) -> bool {
        matches!(self.user.role.as_str(), "approver" | "admin" | "auditor")
    }

    /// Admins and auditors read the audit trail.
    fn may_audit(&self) -> bool {
        matches!(self.user.role.as_str(), "admin" | "auditor")
    }
}

/// The signed-in user, or a redirect to the sign-in page.
async fn signed_in(gw: &Gateway, headers: &HeaderMap) -> Result<SignedIn, Response> {
    let to_login = || see_other("/console/login");
    let cookie = read_cookie(headers, SESSION_COOKIE).ok_or_else(to_login)?;
    let session = gw.console.get(cookie, now_secs()).ok_or_else(to_login)?;
    let user = match gw.store.user(&session.tenant, &session.user).await {
        Ok(Some(u)) if u.active && gw.served.contains(&u.tenant) => u,
        Ok(_) => {
            gw.console.remove(cookie);
            return Err(to_login());
        }
        Err(e) => {
            tracing::error!("console: {e}");
            return Err(html(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::message("Unavailable", None, "storage unavailable"),
            ));
        }
    };
    Ok(SignedIn { session, user })
}

fn check_csrf(me: &SignedIn, sent: &str) -> Result<(), Response> {
    if same_secret(&me.session.csrf, sent) {
        Ok(())
    } else {
        Err(html(
            StatusCode::FORBIDDEN,
            pages::message(
                "Refused",
                Some(&me.viewer()),
                "the form has expired or did not come from this console; reload the page",
            ),
        ))
    }
}

async fn home(State(gw): Gw, headers: HeaderMap) -> Response {
    match signed_in(&gw, &headers).await {
        Ok(_) => see_other("/console/approvals"),
        Err(r) => r,
    }
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        pages::STYLE,
    )
        .into_response()
}

fn served_names(gw: &Gateway) -> Vec<String> {
    gw.served.iter().map(ToString::to_string).collect()
}

/// A page with a fresh pre-sign-in CSRF cookie.
fn with_login_cookie(
    gw: &Gateway,
    status: StatusCode,
    page: impl FnOnce(&str) -> String,
) -> Response {
    let token = new_secret();
    let mut response = html(status, page(&token));
    response
        .headers_mut()
        .append(header::SET_COOKIE, cookie(gw, LOGIN_COOKIE, &token, 3600));
    response
}

async fn login_page(State(gw): Gw, headers: HeaderMap) -> Response {
    if signed_in(&gw, &headers).await.is_ok() {
        return see_other("/console/approvals");
    }
    let tenants = served_names(&gw);
    with_login_cookie(&gw, StatusCode::OK, |csrf| {
        pages::login(&tenants, csrf, None)
    })
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: String,
    tenant: Option<String>,
    user: String,
    password: String,
}

/// An Argon2id hash nobody's password matches, verified for unknown users
/// so that a wrong name costs as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| warden_identity::hash_password(&new_secret()).unwrap_or_default())
}

fn login_csrf(headers: &HeaderMap, sent: &str) -> bool {
    read_cookie(headers, LOGIN_COOKIE).is_some_and(|c| same_secret(c, sent))
}

async fn login(
    State(gw): Gw,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = same_site(&headers) {
        return r;
    }
    let form: LoginForm = match parse_form(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let tenants = served_names(&gw);
    let again = |status: StatusCode, error: &str| {
        with_login_cookie(&gw, status, |csrf| {
            pages::login(&tenants, csrf, Some(error))
        })
    };
    if !login_csrf(&headers, &form.csrf) {
        return again(
            StatusCode::FORBIDDEN,
            "the sign-in form expired; please try again",
        );
    }
    let tenant = match form.tenant.as_deref().filter(|t| !t.is_empty()) {
        None => gw.config.identity.default_tenant.clone(),
        Some(t) => match TenantId::new(t) {
            Ok(t) if gw.served.contains(&t) => t,
            _ => return again(StatusCode::UNAUTHORIZED, "wrong user name or password"),
        },
    };
    let now = now_secs();
    if let Some(wait) = gw.console.locked(&tenant, &form.user, now) {
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("too many failed sign-ins; try again in {wait} s"),
        );
    }
    let name = UserName::new(form.user.as_str()).ok();
    let (user, hash) = match &name {
        Some(n) => match (
            gw.store.user(&tenant, n).await,
            gw.store.user_password(&tenant, n).await,
        ) {
            (Ok(u), Ok(h)) => (u, h),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("console: {e}");
                return again(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable");
            }
        },
        None => (None, None),
    };
    let Ok(_permit) = gw.console.hashing.acquire().await else {
        return again(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    };
    let password = form.password;
    let known = hash.is_some();
    let matches = tokio::task::spawn_blocking(move || {
        let hash = hash.as_deref().unwrap_or_else(|| decoy_hash());
        warden_identity::verify_password(&password, hash)
    })
    .await
    .unwrap_or(false);
    let user = user.filter(|u| known && matches && u.active);
    let Some(user) = user else {
        gw.console.failed(&tenant, &form.user, now);
        audit_sign_in(&gw, &tenant, &form.user, peer, "console.login", false).await;
        return again(StatusCode::UNAUTHORIZED, "wrong user name or password");
    };
    gw.console.succeeded(&tenant, user.name.as_str());
    start_session(&gw, user, peer, "console.login").await
}

async fn start_session(gw: &Gateway, user: User, peer: SocketAddr, how: &str) -> Response {
    let Some(value) = gw
        .console
        .create(user.tenant.clone(), user.name.clone(), now_secs())
    else {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::message("Unavailable", None, "too many sessions; try again later"),
        );
    };
    audit_sign_in(gw, &user.tenant, user.name.as_str(), peer, how, true).await;
    let mut response = see_other("/console/approvals");
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        cookie(gw, SESSION_COOKIE, &value, 8 * 3600),
    );
    h.append(header::SET_COOKIE, cookie(gw, LOGIN_COOKIE, "", 0));
    response
}

async fn audit_sign_in(
    gw: &Gateway,
    tenant: &TenantId,
    user: &str,
    peer: SocketAddr,
    operation: &str,
    ok: bool,
) {
    // A name that is not a valid user name is recorded by its digest.
    let who = UserName::new(user).map_or_else(
        |_| format!("invalid:{}", &secret_digest(user)[..16]),
        |n| n.to_string(),
    );
    let mut rec = AuditRecord::admin(
        crate::mcp::exchange_now(),
        tenant.as_str(),
        &format!("user:{who}"),
        Some(peer.to_string()),
        &format!("user:{who}"),
        operation,
    );
    if !ok {
        rec.decision.effect = Effect::Deny;
        rec.decision.reasons = vec!["sign-in refused".into()];
    }
    if let Err(e) = gw.audit.write(&rec).await {
        tracing::error!("console sign-in not audited: {e}");
    }
}

#[derive(Deserialize)]
struct LinkQuery {
    token: String,
}

async fn link_page(State(gw): Gw, Query(q): Query<LinkQuery>) -> Response {
    with_login_cookie(&gw, StatusCode::OK, |csrf| {
        pages::link_confirm(&q.token, csrf)
    })
}

#[derive(Deserialize)]
struct LinkForm {
    csrf: String,
    token: String,
}

async fn link_login(
    State(gw): Gw,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = same_site(&headers) {
        return r;
    }
    let form: LinkForm = match parse_form(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let refused = |text: &str| {
        html(
            StatusCode::UNAUTHORIZED,
            pages::message("Sign-in refused", None, text),
        )
    };
    if !login_csrf(&headers, &form.csrf) {
        return refused("the sign-in form expired; open the link again");
    }
    let used = gw
        .store
        .use_login_link(&secret_digest(&form.token), now_secs())
        .await;
    let (tenant, name) = match used {
        Ok(Some(x)) => x,
        Ok(None) => return refused("this link is unknown, expired or already used"),
        Err(e) => {
            tracing::error!("console: {e}");
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::message("Unavailable", None, "storage unavailable"),
            );
        }
    };
    match gw.store.user(&tenant, &name).await {
        Ok(Some(user)) if user.active && gw.served.contains(&tenant) => {
            start_session(&gw, user, peer, "console.login_link").await
        }
        _ => refused("this user cannot sign in"),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(State(gw): Gw, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let me = match signed_in(&gw, &headers).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let form: CsrfForm = match parse_form(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&me, &form.csrf) {
        return r;
    }
    if let Some(c) = read_cookie(&headers, SESSION_COOKIE) {
        gw.console.remove(c);
    }
    let mut response = see_other("/console/login");
    response
        .headers_mut()
        .append(header::SET_COOKIE, cookie(&gw, SESSION_COOKIE, "", 0));
    response
}

fn forbidden(me: &SignedIn) -> Response {
    html(
        StatusCode::FORBIDDEN,
        pages::message(
            "Not allowed",
            Some(&me.viewer()),
            "your role cannot see approvals (approver, admin or auditor needed)",
        ),
    )
}

#[derive(Deserialize)]
struct InboxQuery {
    all: Option<bool>,
}

/// What an approval looks like now (an expired one says so, even before
/// the sweeper has recorded it).
fn as_of(mut a: Approval, now: u64) -> Approval {
    a.expire(now);
    a
}

async fn inbox(State(gw): Gw, headers: HeaderMap, Query(q): Query<InboxQuery>) -> Response {
    let me = match signed_in(&gw, &headers).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    if !me.may_read() {
        return forbidden(&me);
    }
    let all = q.all.unwrap_or(false);
    match gw.store.list_approvals(&me.user.tenant, !all).await {
        Ok(list) => {
            let now = now_secs();
            let list: Vec<Approval> = list
                .into_iter()
                .map(|a| as_of(a, now))
                .filter(|a| all || a.state == warden_approval::State::Pending)
                .collect();
            html(StatusCode::OK, pages::inbox(&me.viewer(), &list, all))
        }
        Err(e) => {
            tracing::error!("console: {e}");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::message("Unavailable", Some(&me.viewer()), "storage unavailable"),
            )
        }
    }
}

#[derive(Deserialize)]
struct DetailQuery {
    done: Option<String>,
}

async fn show(
    gw: &Gateway,
    me: &SignedIn,
    id: &str,
    notice: &Notice<'_>,
    status: StatusCode,
) -> Response {
    match gw.store.approval(&me.user.tenant, id).await {
        Ok(Some(a)) => html(
            status,
            pages::detail(
                &me.viewer(),
                &as_of(a, now_secs()),
                me.user.role == "approver",
                notice,
            ),
        ),
        Ok(None) => html(
            StatusCode::NOT_FOUND,
            pages::message(
                "Not found",
                Some(&me.viewer()),
                "no such approval in your tenant",
            ),
        ),
        Err(e) => {
            tracing::error!("console: {e}");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::message("Unavailable", Some(&me.viewer()), "storage unavailable"),
            )
        }
    }
}

async fn detail(
    State(gw): Gw,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Response {
    let me = match signed_in(&gw, &headers).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    if !me.may_read() {
        return forbidden(&me);
    }
    let ok = match q.done.as_deref() {
        Some("approved") => Some("Your approval is recorded."),
        Some("denied") => Some("Your denial is recorded."),
        _ => None,
    };
    show(&gw, &me, &id, &Notice { ok, error: None }, StatusCode::OK).await
}

#[derive(Deserialize)]
struct DecideForm {
    csrf: String,
    verdict: String,
    reason: Option<String>,
}

async fn decide(
    State(gw): Gw,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = same_site(&headers) {
        return r;
    }
    let me = match signed_in(&gw, &headers).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let form: DecideForm = match parse_form(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&me, &form.csrf) {
        return r;
    }
    let failed = |status: StatusCode, error: String| {
        let gw = gw.clone();
        let me = &me;
        let id = id.clone();
        async move {
            show(
                &gw,
                me,
                &id,
                &Notice {
                    ok: None,
                    error: Some(&error),
                },
                status,
            )
            .await
        }
    };
    let verdict = match form.verdict.as_str() {
        "approve" => Verdict::Approve,
        "deny" => Verdict::Deny,
        _ => return failed(StatusCode::BAD_REQUEST, "unknown verdict".into()).await,
    };
    let reason = form
        .reason
        .map(|r| r.trim().chars().take(1000).collect::<String>())
        .filter(|r| !r.is_empty());
    let decided = Decided {
        reviewer: crate::review::reviewer_of(&me.user),
        verdict,
        reason,
        source: Some(peer.to_string()),
    };
    match crate::review::decide(&gw, &me.user.tenant, &id, decided).await {
        Ok(_) => see_other(&format!(
            "/console/approvals/{}?done={}",
            id,
            match verdict {
                Verdict::Approve => "approved",
                Verdict::Deny => "denied",
            }
        )),
        Err(ReviewError::NotFound(_)) => {
            failed(StatusCode::NOT_FOUND, "no such approval".into()).await
        }
        Err(e @ (ReviewError::Refused(_) | ReviewError::Busy(_) | ReviewError::Invalid(_))) => {
            failed(StatusCode::CONFLICT, e.to_string()).await
        }
        Err(ReviewError::Store(e)) => {
            tracing::error!("console: {e}");
            failed(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable".into(),
            )
            .await
        }
    }
}
