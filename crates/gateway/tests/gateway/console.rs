//! The web console over real HTTP: sign-in (password, one-time link),
//! sessions and CSRF, the inbox and the detail page, deciding — and the
//! attacks on them.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::Value;
use warden_approval::State;
use warden_core::UserName;
use warden_store::LoginLink;

use crate::harness::{Harness, harness, tenant};

const POLICY: &str = r#"
@id("change-needs-approval") @approval("required") @reason("customer changes need an approver")
permit(principal == Warden::Agent::"a", action == Warden::Action::"crm/update_customer", resource);
"#;

const PASSWORD: &str = "correct horse battery staple";

fn update(args: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"update_customer","arguments":{args}}}}}"#
    )
}

async fn held(h: &Harness, args: &str) -> String {
    let (_, _, body) = h.post("/mcp/crm", Some(&h.token("a")), update(args)).await;
    body["result"]["_meta"]["warden/approval"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

async fn user(h: &Harness, name: &str, role: &str, password: Option<&str>) {
    let n = UserName::new(name).unwrap();
    h.store.create_user(&tenant(), &n, role).await.unwrap();
    if let Some(p) = password {
        let hash = warden_identity::hash_password(p).unwrap();
        h.store
            .set_user_password(&tenant(), &n, Some(&hash))
            .await
            .unwrap();
    }
}

/// A browser, minus the browser: cookies kept by hand, redirects not
/// followed (so that tests see them).
struct Browser {
    base: String,
    client: reqwest::Client,
    cookies: Vec<(String, String)>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .map_or("", |v| v.to_str().unwrap())
    }

    /// The first form's CSRF token.
    fn csrf(&self) -> String {
        let at = self.body.find(r#"name="csrf" value=""#).unwrap() + 19;
        self.body[at..].split('"').next().unwrap().to_owned()
    }
}

impl Browser {
    fn new(h: &Harness) -> Self {
        Self {
            base: format!("http://{}", h.admin),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, headers: &HeaderMap) {
        for c in headers.get_all(SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (pair, _) = c.split_once(';').unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !v.is_empty() {
                self.cookies.push((k.to_owned(), v.to_owned()));
            }
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.page(resp).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.post_with(path, form, &[]).await
    }

    async fn post_with(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        self.page(resp).await
    }

    async fn page(&mut self, resp: reqwest::Response) -> Page {
        let status = resp.status();
        let headers = resp.headers().clone();
        self.keep(&headers);
        Page {
            status,
            headers,
            body: resp.text().await.unwrap(),
        }
    }

    async fn sign_in(&mut self, user: &str, password: &str) -> Page {
        let form = self.get("/console/login").await;
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf = form.csrf();
        self.post(
            "/console/login",
            &[("csrf", &csrf), ("user", user), ("password", password)],
        )
        .await
    }
}

#[tokio::test]
async fn an_approver_signs_in_reads_the_exact_call_and_approves_it() {
    let h = harness(POLICY).await;
    user(&h, "bob", "approver", Some(PASSWORD)).await;
    let args = r#"{"id":"c-1","email":"new@example.com"}"#;
    let id = held(&h, args).await;

    let mut b = Browser::new(&h);
    // Not signed in: every page sends the browser to the sign-in form.
    for path in [
        "/console",
        "/console/approvals",
        &format!("/console/approvals/{id}"),
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), "/console/login");
    }
    let wrong = b.sign_in("bob", "not the password at all").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("wrong user name or password"));
    let unknown = b.sign_in("nobody", PASSWORD).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.body.contains("wrong user name or password"));

    let ok = b.sign_in("bob", PASSWORD).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(ok.location(), "/console/approvals");
    let set: Vec<&str> = ok
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("warden_console="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(session.contains(attribute), "{session}");
    }

    let inbox = b.get("/console/approvals").await;
    assert_eq!(inbox.status, 200);
    assert!(
        inbox.body.contains(&format!(r#"data-approval="{id}""#)),
        "{}",
        inbox.body
    );
    let csp = inbox.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(inbox.headers["x-frame-options"], "DENY");
    assert_eq!(inbox.headers["cache-control"], "no-store");

    let detail = b.get(&format!("/console/approvals/{id}")).await;
    assert_eq!(detail.status, 200);
    // The exact payload, the target, the side effects, the agent.
    assert!(
        detail
            .body
            .contains("&quot;email&quot;: &quot;new@example.com&quot;"),
        "{}",
        detail.body
    );
    assert!(
        detail
            .body
            .contains(r#"<td id="target">crm.update_customer</td>"#)
    );
    assert!(detail.body.contains(r#"<td id="agent">a</td>"#));
    assert!(detail.body.contains("customer changes need an approver"));
    let csrf = detail.csrf();

    // A form without the session's token, or from another site, changes nothing.
    let forged = b
        .post(
            &format!("/console/approvals/{id}"),
            &[("csrf", "forged"), ("verdict", "approve")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let cross = b
        .post_with(
            &format!("/console/approvals/{id}"),
            &[("csrf", &csrf), ("verdict", "approve")],
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let a = h.store.approval(&tenant(), &id).await.unwrap().unwrap();
    assert_eq!((a.state, a.reviews.len()), (State::Pending, 0));
    // A denial needs a reason.
    let no_reason = b
        .post(
            &format!("/console/approvals/{id}"),
            &[("csrf", &csrf), ("verdict", "deny"), ("reason", " ")],
        )
        .await;
    assert_eq!(no_reason.status, StatusCode::CONFLICT);
    assert!(no_reason.body.contains("a denial needs a reason"));

    let approved = b
        .post(
            &format!("/console/approvals/{id}"),
            &[
                ("csrf", &csrf),
                ("verdict", "approve"),
                ("reason", "checked with the customer"),
            ],
        )
        .await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    let a = h.store.approval(&tenant(), &id).await.unwrap().unwrap();
    assert_eq!(a.state, State::Approved);
    assert_eq!(a.reviews[0].reviewer, "bob");
    let after = b.get(approved.location()).await;
    assert!(after.body.contains("Your approval is recorded."));
    assert!(
        !after.body.contains(r#"id="approve""#),
        "decided: no more buttons"
    );
    // Approving twice is refused.
    let again = b
        .post(
            &format!("/console/approvals/{id}"),
            &[("csrf", &csrf), ("verdict", "approve")],
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    // The held call now runs, once.
    let (_, _, body) = h.post("/mcp/crm", Some(&h.token("a")), update(args)).await;
    assert_ne!(body["result"]["isError"], Value::Bool(true), "{body}");
    assert_eq!(h.crm.calls.get(), 1);

    // Sign-ins and the review are audit records.
    let records = h.records().await;
    let ops: Vec<(&str, warden_core::Effect)> = records
        .iter()
        .filter_map(|r| r.method.as_deref().map(|m| (m, r.decision.effect)))
        .filter(|(m, _)| m.starts_with("console.") || m.starts_with("approval."))
        .collect();
    use warden_core::Effect::{Allow, Deny};
    assert_eq!(
        ops,
        [
            ("console.login", Deny),
            ("console.login", Deny),
            ("console.login", Allow),
            ("approval.approve", Allow),
        ]
    );

    // Signing out ends the session on the server.
    let inbox = b.get("/console/approvals").await;
    let out = b.post("/console/logout", &[("csrf", &inbox.csrf())]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        b.get("/console/approvals").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_login_link_signs_in_once() {
    let h = harness(POLICY).await;
    user(&h, "bob", "approver", None).await;
    let token = warden_gateway::console::new_secret();
    h.store
        .create_login_link(&LoginLink {
            token_sha256: warden_gateway::console::secret_digest(&token),
            tenant: tenant(),
            user: UserName::new("bob").unwrap(),
            expires_at: u64::MAX / 2,
        })
        .await
        .unwrap();
    let mut b = Browser::new(&h);
    // Opening the link (as a mail scanner would) does not use it.
    for _ in 0..2 {
        let page = b.get(&format!("/console/login/link?token={token}")).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.headers["referrer-policy"], "no-referrer");
    }
    let page = b.get(&format!("/console/login/link?token={token}")).await;
    let csrf = page.csrf();
    let used = b
        .post("/console/login/link", &[("csrf", &csrf), ("token", &token)])
        .await;
    assert_eq!(used.status, StatusCode::SEE_OTHER, "{}", used.body);
    assert_eq!(b.get("/console/approvals").await.status, 200);

    let mut other = Browser::new(&h);
    let page = other
        .get(&format!("/console/login/link?token={token}"))
        .await;
    let csrf = page.csrf();
    let replay = other
        .post("/console/login/link", &[("csrf", &csrf), ("token", &token)])
        .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert!(replay.body.contains("unknown, expired or already used"));
    let tampered = other
        .post(
            "/console/login/link",
            &[("csrf", &csrf), ("token", &format!("{token}x"))],
        )
        .await;
    assert_eq!(tampered.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn hostile_sign_ins_and_sessions_are_refused() {
    let h = harness(POLICY).await;
    user(&h, "bob", "approver", Some(PASSWORD)).await;
    user(&h, "mo", "member", Some(PASSWORD)).await;
    let id = held(&h, r#"{"id":"c-9","email":"m@example.com"}"#).await;
    let mut b = Browser::new(&h);

    // A sign-in without the form's own token (login CSRF).
    let forged = b
        .post(
            "/console/login",
            &[("csrf", "x"), ("user", "bob"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    // Malformed and oversized forms.
    let garbage = b.post("/console/login", &[("nothing", "here")]).await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    let huge = "x".repeat(20_000);
    let big = b
        .post(
            "/console/login",
            &[("csrf", "x"), ("user", "bob"), ("password", &huge)],
        )
        .await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Hostile names are not reflected unescaped.
    let evil = b.sign_in("<script>alert(1)</script>", PASSWORD).await;
    assert_eq!(evil.status, StatusCode::UNAUTHORIZED);
    assert!(!evil.body.contains("<script>"));
    // A forged session cookie is no session.
    b.cookies.push(("warden_console".into(), "forged".into()));
    assert_eq!(
        b.get("/console/approvals").await.status,
        StatusCode::SEE_OTHER
    );

    // A member may sign in but sees no approvals.
    let mut member = Browser::new(&h);
    assert_eq!(
        member.sign_in("mo", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        member.get("/console/approvals").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        member.get(&format!("/console/approvals/{id}")).await.status,
        StatusCode::FORBIDDEN
    );

    // Unknown and tampered ids.
    let mut bob = Browser::new(&h);
    assert_eq!(
        bob.sign_in("bob", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    let detail = bob.get(&format!("/console/approvals/{id}")).await;
    let csrf = detail.csrf();
    for bad in [format!("{id}x"), "a%2Fb".into(), "%00".into()] {
        let page = bob.get(&format!("/console/approvals/{bad}")).await;
        assert!(
            matches!(page.status, StatusCode::NOT_FOUND),
            "{bad}: {}",
            page.status
        );
        let post = bob
            .post(
                &format!("/console/approvals/{bad}"),
                &[("csrf", &csrf), ("verdict", "approve")],
            )
            .await;
        assert_eq!(post.status, StatusCode::NOT_FOUND, "{bad}");
    }

    // Disabling the user ends the session at once.
    h.store
        .set_user_active(&tenant(), &UserName::new("bob").unwrap(), false)
        .await
        .unwrap();
    assert_eq!(
        bob.get("/console/approvals").await.status,
        StatusCode::SEE_OTHER
    );
    h.store
        .set_user_active(&tenant(), &UserName::new("bob").unwrap(), true)
        .await
        .unwrap();
    assert_eq!(
        bob.get("/console/approvals").await.status,
        StatusCode::SEE_OTHER
    );

    // Repeated failures lock the user, even against the right password.
    let mut guesser = Browser::new(&h);
    for _ in 0..5 {
        assert_eq!(
            guesser.sign_in("bob", "wrong password guess").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let locked = guesser.sign_in("bob", PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.body.contains("too many failed sign-ins"));
    let a = h.store.approval(&tenant(), &id).await.unwrap().unwrap();
    assert_eq!((a.state, a.reviews.len()), (State::Pending, 0));
}

#[tokio::test]
async fn auditors_explore_the_trail_and_see_each_records_integrity() {
    let h = harness(POLICY).await;
    user(&h, "ida", "auditor", Some(PASSWORD)).await;
    user(&h, "bob", "approver", Some(PASSWORD)).await;
    held(&h, r#"{"id":"c-1","email":"a@example.com"}"#).await;
    h.post("/mcp/crm", Some("forged-token"), update(r#"{"id":"c-2"}"#))
        .await;

    let mut bob = Browser::new(&h);
    bob.sign_in("bob", PASSWORD).await;
    assert_eq!(
        bob.get("/console/audit").await.status,
        StatusCode::FORBIDDEN
    );
    assert!(
        !bob.get("/console/approvals")
            .await
            .body
            .contains(r#"href="/console/audit""#)
    );

    let mut ida = Browser::new(&h);
    assert_eq!(
        ida.sign_in("ida", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    let all = ida.get("/console/audit").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert!(all.body.contains(r#"id="records""#), "{}", all.body);
    assert!(all.body.contains("held for human approval"), "{}", all.body);
    assert!(
        all.body.contains("unauthenticated"),
        "the default tenant sees refused strangers"
    );
    let denied = ida
        .get("/console/audit?agent=a&decision=deny&kind=request")
        .await;
    let rows = denied.body.matches("<tr data-seq=").count();
    assert_eq!(rows, 1, "{}", denied.body);
    let seq: u64 = denied
        .body
        .split(r#"<tr data-seq=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let bad = ida.get("/console/audit?decision=maybe").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body.contains("decision must be one of allow, deny"),
        "{}",
        bad.body
    );
    assert_eq!(
        ida.get("/console/audit?since=last+week").await.status,
        StatusCode::BAD_REQUEST
    );

    let page = ida.get(&format!("/console/audit/{seq}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for text in [
        "crm/update_customer",
        "change-needs-approval",
        "customer changes need an approver",
        "one approver",
        "[redacted: 3 chars]",
        "its hash holds",
        "holds</li>",
        "not in a signed checkpoint yet",
    ] {
        assert!(page.body.contains(text), "missing {text}: {}", page.body);
    }
    assert!(
        !page.body.contains("a@example.com"),
        "arguments are never shown"
    );
    let signer = warden_gateway::checkpoints::load_signer(&h.config.audit, false).unwrap();
    warden_gateway::checkpoints::checkpoint_now(h.store.as_ref(), &signer, 1)
        .await
        .unwrap();
    let signed = ida.get(&format!("/console/audit/{seq}")).await;
    assert!(
        signed.body.contains("signature verified"),
        "{}",
        signed.body
    );
    assert_eq!(
        ida.get("/console/audit/999999").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ida.get("/console/audit/abc").await.status,
        StatusCode::BAD_REQUEST
    );
}
