//! The console's HTML: plain server-rendered pages, no script at all. Every
//! value that reaches a page goes through [`escape`]; nothing here does I/O.

use std::fmt::Write as _;

use warden_approval::{Approval, State, Verdict};

/// HTML-escapes text for element content and quoted attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Seconds since the epoch as RFC 3339 (UTC).
pub(super) fn time(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// Who is signed in, as the pages show it.
#[derive(Debug)]
pub(super) struct Viewer<'a> {
    pub(super) user: &'a str,
    pub(super) tenant: &'a str,
    pub(super) role: &'a str,
    pub(super) csrf: &'a str,
}

/// A whole page around `body`.
pub(super) fn layout(title: &str, viewer: Option<&Viewer<'_>>, body: &str) -> String {
    let nav = viewer.map_or_else(String::new, |v| {
        let audit = if matches!(v.role, "admin" | "auditor") {
            r#" <a href="/console/audit">Audit</a>"#
        } else {
            ""
        };
        format!(
            r#"<nav><a href="/console/approvals">Pending</a> <a href="/console/approvals?all=true">All approvals</a>{audit}
<span class="who">{user} ({role}, tenant {tenant})</span>
<form method="post" action="/console/logout" class="inline"><input type="hidden" name="csrf" value="{csrf}"><button type="submit" id="logout">Sign out</button></form></nav>"#,
            user = escape(v.user),
            role = escape(v.role),
            tenant = escape(v.tenant),
            csrf = escape(v.csrf),
        )
    });
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Warden</title><link rel="stylesheet" href="/console/style.css"></head>
<body><header><strong>Warden</strong> console {nav}</header>
<main>
<h1>{title}</h1>
{body}
</main></body></html>
"#,
        title = escape(title),
    )
}

/// The sign-in form. `tenants` are offered when there are several.
pub(super) fn login(tenants: &[String], csrf: &str, error: Option<&str>) -> String {
    let mut body = String::new();
    if let Some(e) = error {
        let _ = write!(body, r#"<p class="error" role="alert">{}</p>"#, escape(e));
    }
    body.push_str(r#"<form method="post" action="/console/login" class="card">"#);
    let _ = write!(
        body,
        r#"<input type="hidden" name="csrf" value="{}">"#,
        escape(csrf)
    );
    if tenants.len() > 1 {
        body.push_str(r#"<label>Tenant <select name="tenant" id="tenant">"#);
        for t in tenants {
            let _ = write!(body, r#"<option>{}</option>"#, escape(t));
        }
        body.push_str("</select></label>");
    }
    body.push_str(
        r#"<label>User <input name="user" id="user" autocomplete="username" required maxlength="64"></label>
<label>Password <input name="password" id="password" type="password" autocomplete="current-password" required maxlength="1024"></label>
<button type="submit" id="sign-in">Sign in</button></form>
<p class="hint">No password? An administrator can print a one-time link: <code>warden user login-link NAME</code>.</p>"#,
    );
    layout("Sign in", None, &body)
}

/// The page a login link opens: one button, so that a link preview or a
/// mail scanner fetching the URL does not use it up.
pub(super) fn link_confirm(token: &str, csrf: &str) -> String {
    let body = format!(
        r#"<form method="post" action="/console/login/link" class="card">
<input type="hidden" name="csrf" value="{}"><input type="hidden" name="token" value="{}">
<p>This one-time link signs you in once.</p>
<button type="submit" id="use-link">Sign in</button></form>"#,
        escape(csrf),
        escape(token)
    );
    layout("Sign in with a link", None, &body)
}

/// A short message page.
pub(super) fn message(title: &str, viewer: Option<&Viewer<'_>>, text: &str) -> String {
    layout(
        title,
        viewer,
        &format!(
            r#"<p class="error" role="alert">{}</p><p><a href="/console">Back</a></p>"#,
            escape(text)
        ),
    )
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Pending => "pending",
        State::Approved => "approved",
        State::Denied => "denied",
        State::Expired => "expired",
        State::Cancelled => "cancelled",
        State::Executed => "executed",
    }
}

fn approvals_of(a: &Approval) -> usize {
    a.reviews
        .iter()
        .filter(|r| r.verdict == Verdict::Approve)
        .count()
}

/// The inbox: approvals, newest first.
pub(super) fn inbox(viewer: &Viewer<'_>, list: &[Approval], all: bool) -> String {
    let mut body = String::new();
    if list.is_empty() {
        body.push_str(r#"<p id="empty">Nothing is waiting for a decision.</p>"#);
        return layout(
            if all {
                "All approvals"
            } else {
                "Pending approvals"
            },
            Some(viewer),
            &body,
        );
    }
    body.push_str(
        r#"<table id="inbox"><thead><tr><th>Requested</th><th>Agent</th><th>For user</th><th>Action</th><th>Side effects</th><th>Approvals</th><th>State</th><th>Expires</th></tr></thead><tbody>"#,
    );
    for a in list {
        let r = &a.request;
        let _ = write!(
            body,
            r#"<tr data-approval="{id}"><td><a href="/console/approvals/{id}">{created}</a></td><td>{agent}</td><td>{user}</td><td><code>{upstream}.{tool}</code></td><td>{effects}</td><td>{got}/{needed}</td><td class="state-{state}">{state}</td><td>{expires}</td></tr>"#,
            id = escape(&a.id),
            created = time(a.created_at),
            agent = escape(&r.agent),
            user = escape(r.user.as_deref().unwrap_or("-")),
            upstream = escape(&r.upstream),
            tool = escape(&r.tool),
            effects = escape(&r.side_effects),
            got = approvals_of(a),
            needed = a.needed(),
            state = state_name(a.state),
            expires = time(a.expires_at),
        );
    }
    body.push_str("</tbody></table>");
    layout(
        if all {
            "All approvals"
        } else {
            "Pending approvals"
        },
        Some(viewer),
        &body,
    )
}

/// One line of the audit explorer.
#[derive(Debug, Clone)]
pub(super) struct AuditRow {
    pub(super) seq: u64,
    pub(super) time: String,
    pub(super) kind: String,
    pub(super) agent: String,
    pub(super) action: String,
    pub(super) decision: String,
    pub(super) reason: String,
}

/// A record's integrity as the explorer checked it.
#[derive(Debug, Clone)]
pub(super) struct AuditIntegrity {
    pub(super) hash_ok: bool,
    pub(super) hash: String,
    pub(super) link_ok: bool,
    pub(super) checkpoint: Option<u64>,
    pub(super) checkpoint_signed: bool,
}

fn audit_table(rows: &[AuditRow], id: &str) -> String {
    let mut body = format!(
        r#"<table id="{id}"><thead><tr><th>Seq</th><th>Time</th><th>Kind</th><th>Agent</th><th>Action</th><th>Decision</th><th>Reason</th></tr></thead><tbody>"#
    );
    for r in rows {
        let _ = write!(
            body,
            r#"<tr data-seq="{seq}"><td><a href="/console/audit/{seq}">{seq}</a></td><td>{time}</td><td>{kind}</td><td>{agent}</td><td><code>{action}</code></td><td class="decision-{decision}">{decision}</td><td>{reason}</td></tr>"#,
            seq = r.seq,
            time = escape(&r.time),
            kind = escape(&r.kind),
            agent = escape(&r.agent),
            action = escape(&r.action),
            decision = escape(&r.decision),
            reason = escape(&r.reason),
        );
    }
    body.push_str("</tbody></table>");
    body
}

/// The audit explorer: the filter form and the matching records.
pub(super) fn audit_list(
    viewer: &Viewer<'_>,
    f: &super::audit::Filters,
    rows: &[AuditRow],
    older: Option<&str>,
    error: Option<&str>,
) -> String {
    let select = |name: &str, current: &str, options: &[&str]| {
        let mut s = format!(r#"<select name="{name}" id="f-{name}"><option value="">any</option>"#);
        for o in options {
            let selected = if *o == current { " selected" } else { "" };
            let _ = write!(s, r#"<option value="{o}"{selected}>{o}</option>"#);
        }
        s.push_str("</select>");
        s
    };
    let input = |name: &str, value: &str, hint: &str| {
        format!(
            r#"<label>{name} <input name="{name}" id="f-{name}" value="{value}" placeholder="{hint}"></label>"#,
            value = escape(value),
        )
    };
    let mut body = format!(
        r#"<form method="get" action="/console/audit" id="filters">{agent} {user} {tool} <label>decision {decision}</label> <label>kind {kind}</label> {since} {until} <button type="submit" id="search">Search</button></form>"#,
        agent = input("agent", &f.agent, "agent name"),
        user = input("user", &f.user, "user name"),
        tool = input("tool", &f.tool, "upstream/tool"),
        decision = select("decision", &f.decision, &["allow", "deny"]),
        kind = select("kind", &f.kind, &["request", "outcome", "admin"]),
        since = input("since", &f.since, "YYYY-MM-DD"),
        until = input("until", &f.until, "YYYY-MM-DD"),
    );
    if let Some(e) = error {
        let _ = write!(body, r#"<p class="error" id="error">{}</p>"#, escape(e));
    } else if rows.is_empty() {
        body.push_str(r#"<p id="empty">No record matches.</p>"#);
    } else {
        body.push_str(&audit_table(rows, "records"));
        if let Some(link) = older {
            let _ = write!(
                body,
                r#"<p><a href="{}" id="older">Older records</a></p>"#,
                escape(link)
            );
        }
    }
    layout("Audit trail", Some(viewer), &body)
}

/// One record explained, with its related records and integrity.
pub(super) fn audit_record(
    viewer: &Viewer<'_>,
    seq: u64,
    r: &warden_audit::AuditRecord,
    rows: &[(&'static str, String)],
    related: &[AuditRow],
    integrity: &AuditIntegrity,
) -> String {
    let mut body = format!(
        r#"<p>Record {seq} · {kind} · request <code>{id}</code> · {time}</p><table id="explanation"><tbody>"#,
        kind = escape(&format!("{:?}", r.kind).to_lowercase()),
        id = escape(&r.request_id),
        time = escape(&r.time),
    );
    for (label, text) in rows {
        let _ = write!(
            body,
            r#"<tr><th>{}</th><td>{}</td></tr>"#,
            escape(label),
            escape(text)
        );
    }
    body.push_str("</tbody></table>");
    if !related.is_empty() {
        body.push_str("<h2>Same request</h2>");
        body.push_str(&audit_table(related, "related"));
    }
    let check = |ok: bool| if ok { "holds" } else { "BROKEN" };
    let checkpoint = match (integrity.checkpoint, integrity.checkpoint_signed) {
        (Some(size), true) => format!(
            "covered by the signed checkpoint of size {size} (signature verified; <code>warden audit prove {seq}</code> proves inclusion)"
        ),
        (Some(size), false) => {
            format!("the checkpoint of size {size} covers it, but its signature does NOT verify")
        }
        (None, _) => "not in a signed checkpoint yet".to_owned(),
    };
    let _ = write!(
        body,
        r#"<h2>Integrity</h2><ul id="integrity"><li class="{h}">its hash {hash_state} (<code>{hash}</code>)</li><li class="{l}">its link to record {prev} {link_state}</li><li>{checkpoint}</li></ul>"#,
        h = if integrity.hash_ok { "ok" } else { "bad" },
        l = if integrity.link_ok { "ok" } else { "bad" },
        hash_state = check(integrity.hash_ok),
        hash = escape(&integrity.hash),
        prev = seq.saturating_sub(1),
        link_state = check(integrity.link_ok),
    );
    layout(&format!("Audit record {seq}"), Some(viewer), &body)
}

/// What the detail page says after an action.
#[derive(Debug, Default)]
pub(super) struct Notice<'a> {
    pub(super) ok: Option<&'a str>,
    pub(super) error: Option<&'a str>,
}

/// One approval: the exact call it binds, who asked, and the review forms.
pub(super) fn detail(
    viewer: &Viewer<'_>,
    a: &Approval,
    can_review: bool,
    notice: &Notice<'_>,
) -> String {
    let r = &a.request;
    let mut body = String::new();
    if let Some(ok) = notice.ok {
        let _ = write!(body, r#"<p class="ok" role="status">{}</p>"#, escape(ok));
    }
    if let Some(e) = notice.error {
        let _ = write!(body, r#"<p class="error" role="alert">{}</p>"#, escape(e));
    }
    // The exact payload: the canonical JSON that was hashed, laid out for
    // reading (the same values, the same order).
    let payload = serde_json::from_str::<serde_json::Value>(&r.arguments)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| r.arguments.clone());
    let row = |body: &mut String, key: &str, id: &str, value: &str| {
        let _ = write!(
            body,
            r#"<tr><th scope="row">{key}</th><td id="{id}">{}</td></tr>"#,
            escape(value)
        );
    };
    let _ = write!(
        body,
        r#"<p class="state state-{state}" id="state">{state}: {got} of {needed} approval{s}</p><table class="facts">"#,
        state = state_name(a.state),
        got = approvals_of(a),
        needed = a.needed(),
        s = if a.needed() == 1 { "" } else { "s" },
    );
    row(
        &mut body,
        "Target",
        "target",
        &format!("{}.{}", r.upstream, r.tool),
    );
    row(&mut body, "Side effects", "side-effects", &r.side_effects);
    row(&mut body, "Agent", "agent", &r.agent);
    row(
        &mut body,
        "Acting for user",
        "user",
        r.user.as_deref().unwrap_or("nobody (the agent acts alone)"),
    );
    row(
        &mut body,
        "Task",
        "task",
        r.task.as_deref().unwrap_or("none"),
    );
    row(&mut body, "Risk score", "risk", &r.risk.to_string());
    row(&mut body, "Tenant", "tenant", &r.tenant);
    row(&mut body, "Requested", "created", &time(a.created_at));
    row(&mut body, "Expires", "expires", &time(a.expires_at));
    row(
        &mut body,
        "Policy version",
        "policy-version",
        &r.policy_version,
    );
    row(&mut body, "Policies", "policies", &r.policies.join(", "));
    row(
        &mut body,
        "Why it is held",
        "reasons",
        &r.reasons.join("; "),
    );
    row(&mut body, "Tool definition", "tool-digest", &r.tool_digest);
    row(&mut body, "Approval id", "approval-id", &a.id);
    body.push_str("</table>");
    body.push_str(r#"<h2>Agent's stated rationale</h2>"#);
    let _ = write!(
        body,
        r#"<p class="claim">The agent's own claim, not verified by Warden.</p><blockquote id="rationale">{}</blockquote>"#,
        escape(r.rationale.as_deref().unwrap_or("(none given)"))
    );
    let _ = write!(
        body,
        r#"<h2>Exact arguments</h2><pre id="payload">{}</pre><p class="hint">SHA-256 of the canonical JSON: <code id="payload-sha256">{}</code>. Only a call with exactly these arguments can run under this approval, once.</p>"#,
        escape(&payload),
        escape(&r.arguments_sha256),
    );
    if !a.reviews.is_empty() {
        body.push_str(r#"<h2>Reviews</h2><ul id="reviews">"#);
        for review in &a.reviews {
            let _ = write!(
                body,
                "<li>{} <strong>{}</strong> at {}{}</li>",
                escape(&review.reviewer),
                match review.verdict {
                    Verdict::Approve => "approved",
                    Verdict::Deny => "denied",
                },
                time(review.at),
                review
                    .reason
                    .as_deref()
                    .map(|why| format!(": {}", escape(why)))
                    .unwrap_or_default(),
            );
        }
        body.push_str("</ul>");
    }
    if a.state == State::Pending && can_review {
        let _ = write!(
            body,
            r#"<h2>Decide</h2><div class="decide">
<form method="post" action="/console/approvals/{id}" class="card">
<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="verdict" value="approve">
<label>Reason (optional) <input name="reason" id="approve-reason" maxlength="1000"></label>
<button type="submit" id="approve" class="approve">Approve</button></form>
<form method="post" action="/console/approvals/{id}" class="card">
<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="verdict" value="deny">
<label>Reason (required) <input name="reason" id="deny-reason" required maxlength="1000"></label>
<button type="submit" id="deny" class="deny">Deny</button></form></div>"#,
            id = escape(&a.id),
            csrf = escape(viewer.csrf),
        );
    } else if a.state == State::Pending {
        body.push_str(r#"<p class="hint">Only approvers of this tenant can decide.</p>"#);
    }
    layout("Approval", Some(viewer), &body)
}

/// The console's style sheet (served from `/console/style.css`, so that the
/// content security policy needs no inline styles).
pub(super) const STYLE: &str = "\
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}\
header{background:#1d232a;color:#fff;padding:.6em 1.2em;display:flex;gap:1em;align-items:center}\
header a{color:#cfe3ff;margin-right:1em}header nav{display:flex;gap:.8em;align-items:center;flex:1}\
.who{margin-left:auto;color:#bbb}main{max-width:960px;margin:1.5em auto;padding:0 1em}\
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:.4em .6em;border-bottom:1px solid #e3e6ea;vertical-align:top}\
.facts th{width:12em;color:#555}pre{background:#fff;border:1px solid #d5d9de;padding:1em;overflow:auto;white-space:pre-wrap;word-break:break-word}\
.card{background:#fff;border:1px solid #d5d9de;padding:1em;margin:.6em 0;display:flex;flex-direction:column;gap:.6em;max-width:28em}\
.decide{display:flex;gap:1em;flex-wrap:wrap}.inline{display:inline}\
button{font:inherit;padding:.4em 1em;cursor:pointer}.approve{background:#1f7a3a;color:#fff;border:0}.deny{background:#a32020;color:#fff;border:0}\
.error{color:#a32020;font-weight:600}.ok{color:#1f7a3a;font-weight:600}.hint,.claim{color:#666;font-size:.9em}\
blockquote{background:#fffbe6;border-left:4px solid #e0c200;margin:0;padding:.6em 1em}\
.state{font-weight:600}.state-pending{color:#9a6700}.state-approved,.state-executed{color:#1f7a3a}.state-denied,.state-expired,.state-cancelled{color:#a32020}\
";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use warden_approval::Request;
    use warden_core::Approval as Required;

    fn approval(arguments: &str, rationale: &str) -> Approval {
        Approval::new(
            "a-1".into(),
            Request {
                tenant: "acme".into(),
                agent: "mailer".into(),
                user: Some("alice".into()),
                task: None,
                upstream: "mail".into(),
                tool: "send".into(),
                tool_digest: "d".into(),
                arguments: arguments.into(),
                arguments_sha256: "00".into(),
                policy_version: "v1".into(),
                policies: vec!["p".into()],
                reasons: vec!["sending mail needs approval".into()],
                risk: 0,
                rationale: Some(rationale.into()),
                side_effects: "persistent".into(),
            },
            Required::Required,
            0,
            900,
        )
    }

    fn viewer() -> Viewer<'static> {
        Viewer {
            user: "bob",
            tenant: "acme",
            role: "approver",
            csrf: "tok\"en",
        }
    }

    #[test]
    fn hostile_values_are_escaped_everywhere() {
        let evil = r#"<script>alert(1)</script>"#;
        let a = approval(
            r#"{"body":"<img src=x onerror=alert(1)>","to":"a@b.c"}"#,
            evil,
        );
        for page in [
            detail(&viewer(), &a, true, &Notice::default()),
            inbox(&viewer(), std::slice::from_ref(&a), false),
            message(evil, Some(&viewer()), evil),
            login(&[evil.into(), "x".into()], evil, Some(evil)),
            link_confirm(evil, evil),
        ] {
            assert!(!page.contains("<script>"), "{page}");
            assert!(!page.contains("<img"), "{page}");
            assert!(!page.contains("tok\"en"), "{page}");
        }
        let page = detail(&viewer(), &a, true, &Notice::default());
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(page.contains(r#"value="tok&quot;en""#));
    }

    #[test]
    fn the_detail_page_shows_the_exact_payload_and_forms_only_to_reviewers() {
        let a = approval(r#"{"body":"hi","to":"a@b.c"}"#, "customer asked");
        let page = detail(&viewer(), &a, true, &Notice::default());
        assert!(page.contains("&quot;to&quot;: &quot;a@b.c&quot;"), "{page}");
        assert!(page.contains(r#"id="approve""#) && page.contains(r#"id="deny""#));
        assert!(page.contains("not verified"));
        let read_only = detail(&viewer(), &a, false, &Notice::default());
        assert!(!read_only.contains(r#"id="approve""#));
        let mut done = a;
        done.state = State::Executed;
        assert!(!detail(&viewer(), &done, true, &Notice::default()).contains(r#"id="approve""#));
    }

    #[test]
    fn the_audit_pages_escape_what_agents_control() {
        let evil = "<img src=x onerror=alert(1)>";
        let row = AuditRow {
            seq: 7,
            time: evil.into(),
            kind: "request".into(),
            agent: evil.into(),
            action: evil.into(),
            decision: "deny".into(),
            reason: evil.into(),
        };
        let filters = super::super::audit::Filters {
            agent: evil.into(),
            ..Default::default()
        };
        let list = audit_list(
            &viewer(),
            &filters,
            std::slice::from_ref(&row),
            Some("/console/audit?before=7&agent=\"x"),
            None,
        );
        assert!(!list.contains("<img"), "{list}");
        assert!(
            list.contains(r#"href="/console/audit?before=7&amp;agent=&quot;x""#),
            "{list}"
        );
        let mut r = warden_audit::AuditRecord::request(evil.into(), evil.into(), None);
        r.request_id = evil.into();
        let integrity = AuditIntegrity {
            hash_ok: false,
            hash: "00".into(),
            link_ok: true,
            checkpoint: None,
            checkpoint_signed: false,
        };
        let page = audit_record(
            &viewer(),
            7,
            &r,
            &[("who", evil.into())],
            &[row],
            &integrity,
        );
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("its hash BROKEN"), "{page}");
        assert!(page.contains("its link to record 6 holds"), "{page}");
    }
}
