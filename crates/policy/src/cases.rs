//! Decision test cases: who asks for what in which circumstances, and the
//! decision policy must give. A case file is TOML (`[[case]]` tables);
//! `warden policy test FILE` runs one against the live policies, and the
//! committed corpus (`tests/corpus/`) runs through the library and the CLI.
//!
//! ```toml
//! [[case]]
//! name = "support reads a customer by id"
//! agent = "support-assistant"
//! tool = "crm.get_customer"
//! args = { id = "c-1001" }
//! expect = "allow"
//! policies = ["support-crm-read"]
//!
//! [[case]]
//! name = "no mail out after reading customer data"
//! agent = "support-assistant"
//! tool = "mail.send"
//! args = { to = "bob@example.com", subject = "s", body = "b" }
//! context = { taint = "confidential" }
//! expect = "deny"
//! reasons_contain = "confidential"
//! ```

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{Map, Value};
use warden_core::{Approval, Decision, Effect};

use crate::{Classification, PolicyEngine, Request, RequestContext, Target, TaskGrant};

/// The circumstances a case sets; everything else is a plain request at
/// 2026-11-23 10:00 UTC (a Monday) from loopback.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContext {
    unix: Option<u64>,
    source_ip: Option<IpAddr>,
    mtls: Option<bool>,
    owner: Option<String>,
    purpose: Option<String>,
    taint: Option<String>,
    reads: Option<u64>,
    calls: Option<u64>,
    risk: Option<i64>,
    task: Option<RawTask>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    id: String,
    purpose: Option<String>,
    tools: Vec<String>,
    expires_at: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    agent: String,
    user: Option<String>,
    tool: Option<String>,
    resource: Option<String>,
    prompt: Option<String>,
    upstream: Option<String>,
    #[serde(default)]
    args: Map<String, Value>,
    #[serde(default)]
    context: RawContext,
    expect: String,
    policies: Option<Vec<String>>,
    reasons_contain: Option<String>,
    approval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default, rename = "case")]
    cases: Vec<RawCase>,
}

/// What a case asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseTarget {
    /// `upstream/tool` with its arguments.
    Tool(String, String),
    /// A resource of an upstream.
    Resource(String, String),
    /// A prompt of an upstream.
    Prompt(String, String),
    /// Reaching the upstream (`connect`).
    Upstream(String),
}

/// One decision test case.
#[derive(Debug, Clone)]
pub struct DecisionCase {
    /// Its name.
    pub name: String,
    /// The agent.
    pub agent: String,
    /// The user it acts for.
    pub user: Option<String>,
    /// What it asks for.
    pub target: CaseTarget,
    /// The tool arguments.
    pub args: Map<String, Value>,
    /// The circumstances.
    pub context: RequestContext,
    /// The effect expected.
    pub expect: Effect,
    /// The determining policies expected, exactly (sorted), if given.
    pub policies: Option<Vec<String>>,
    /// Text one of the reasons must contain, if given.
    pub reasons_contain: Option<String>,
    /// The approval obligation expected, if given.
    pub approval: Option<Approval>,
}

/// A case's outcome.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// The decision the engine gave.
    pub decision: Decision,
    /// What differed from the expectation; empty when it passed.
    pub problems: Vec<String>,
}

impl CaseResult {
    /// Whether the decision met every expectation.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The default time of a case: 2026-11-23 10:00 UTC, a Monday.
pub const CASE_TIME: u64 = 1_795_428_000;

fn split(what: &str, name: &str, raw: &str) -> Result<(String, String), String> {
    raw.split_once('.')
        .or_else(|| raw.split_once('/'))
        .map(|(u, t)| (u.to_owned(), t.to_owned()))
        .ok_or_else(|| format!("case `{name}`: {what} `{raw}` must be `upstream.name`"))
}

fn case(raw: RawCase) -> Result<DecisionCase, String> {
    let name = raw.name;
    let target = match (raw.tool, raw.resource, raw.prompt, raw.upstream) {
        (Some(t), None, None, None) => {
            let (u, t) = split("tool", &name, &t)?;
            CaseTarget::Tool(u, t)
        }
        (None, Some(r), None, Some(u)) => CaseTarget::Resource(u, r),
        (None, None, Some(p), None) => {
            let (u, p) = split("prompt", &name, &p)?;
            CaseTarget::Prompt(u, p)
        }
        (None, None, None, Some(u)) => CaseTarget::Upstream(u),
        _ => {
            return Err(format!(
                "case `{name}`: give `tool`, `prompt`, `upstream` (connect), or `resource` with `upstream`"
            ));
        }
    };
    let expect = match raw.expect.as_str() {
        "allow" => Effect::Allow,
        "deny" => Effect::Deny,
        other => {
            return Err(format!(
                "case `{name}`: expect `{other}`: use `allow` or `deny`"
            ));
        }
    };
    let c = raw.context;
    let mut context = RequestContext::at(c.unix.unwrap_or(CASE_TIME));
    if let Some(ip) = c.source_ip {
        context.source_ip = ip;
    }
    context.mtls = c.mtls.unwrap_or(false);
    context.agent.owner = c.owner;
    context.agent.purpose = c.purpose;
    if let Some(t) = c.taint {
        context.session.taint = t
            .parse::<Classification>()
            .map_err(|e| format!("case `{name}`: {e}"))?;
    }
    context.session.reads = c.reads.unwrap_or(0);
    context.session.calls = c.calls.unwrap_or(0);
    context.risk_score = c.risk.unwrap_or(0);
    context.task = c.task.map(|t| TaskGrant {
        id: t.id,
        agent: raw.agent.clone(),
        purpose: t.purpose.unwrap_or_default(),
        expires_at: t.expires_at.unwrap_or(CASE_TIME + 3600),
        tools: t.tools,
    });
    let approval = raw
        .approval
        .map(|a| a.parse::<Approval>())
        .transpose()
        .map_err(|e| format!("case `{name}`: {e}"))?;
    Ok(DecisionCase {
        name,
        agent: raw.agent,
        user: raw.user,
        target,
        args: raw.args,
        context,
        expect,
        policies: raw.policies.map(|mut p| {
            p.sort();
            p
        }),
        reasons_contain: raw.reasons_contain,
        approval,
    })
}

/// Parses a case file; an error names the line or the case.
pub fn parse_cases(text: &str) -> Result<Vec<DecisionCase>, String> {
    let file: RawFile = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
    if file.cases.is_empty() {
        return Err("no `[[case]]` in the file".into());
    }
    file.cases.into_iter().map(case).collect()
}

/// Runs the cases against `engine`.
pub fn run_cases(engine: &PolicyEngine, cases: &[DecisionCase]) -> Vec<CaseResult> {
    cases.iter().map(|c| run_case(engine, c)).collect()
}

fn run_case(engine: &PolicyEngine, c: &DecisionCase) -> CaseResult {
    let target = match &c.target {
        CaseTarget::Tool(upstream, tool) => Target::Tool {
            upstream,
            tool,
            args: &c.args,
        },
        CaseTarget::Resource(upstream, uri) => Target::Resource { upstream, uri },
        CaseTarget::Prompt(upstream, name) => Target::Prompt { upstream, name },
        CaseTarget::Upstream(upstream) => Target::Upstream { upstream },
    };
    let decision = engine.authorize(&Request {
        agent: &c.agent,
        user: c.user.as_deref(),
        target,
        context: &c.context,
    });
    let mut problems = Vec::new();
    if decision.effect != c.expect {
        problems.push(format!(
            "expected {:?}, got {:?} ({})",
            c.expect,
            decision.effect,
            decision.reasons.join("; ")
        ));
    }
    if let Some(p) = &c.policies
        && *p != decision.policies
    {
        problems.push(format!(
            "expected policies {p:?}, got {:?}",
            decision.policies
        ));
    }
    if let Some(text) = &c.reasons_contain
        && !decision.reasons.iter().any(|r| r.contains(text.as_str()))
    {
        problems.push(format!(
            "no reason contains `{text}`: {:?}",
            decision.reasons
        ));
    }
    if c.approval.is_some() && c.approval != decision.obligations.approval {
        problems.push(format!(
            "expected approval {:?}, got {:?}",
            c.approval, decision.obligations.approval
        ));
    }
    CaseResult {
        name: c.name.clone(),
        decision,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_case_files_are_refused_with_their_line() {
        let err = parse_cases("[[case]]\nname = \"x\"\nagent = 3\n").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        let err = parse_cases(
            "[[case]]\nname = \"x\"\nagent = \"a\"\nexpect = \"maybe\"\ntool = \"a.b\"\n",
        )
        .unwrap_err();
        assert!(err.contains("maybe"), "{err}");
        let err =
            parse_cases("[[case]]\nname = \"x\"\nagent = \"a\"\nexpect = \"allow\"\n").unwrap_err();
        assert!(err.contains("give `tool`"), "{err}");
        let err = parse_cases("[[case]]\nname = \"x\"\nagent = \"a\"\nexpect = \"allow\"\ntool = \"a.b\"\nbogus = 1\n")
            .unwrap_err();
        assert!(err.contains("bogus"), "{err}");
        assert!(parse_cases("").is_err());
        let err = parse_cases(
            "[[case]]\nname = \"x\"\nagent = \"a\"\nexpect = \"deny\"\ntool = \"nodot\"\n",
        )
        .unwrap_err();
        assert!(err.contains("upstream.name"), "{err}");
    }
}
