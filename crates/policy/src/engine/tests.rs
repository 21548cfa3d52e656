use serde_json::{Map, json};
use warden_core::UpstreamName;
use warden_mcp::{ToolCatalog, ToolDef};

use super::*;
use crate::{BASE_SCHEMA, SourceFile};
use crate::{Classification, Labels};

fn tool(name: &str, schema: Value) -> ToolDef {
    let def = json!({ "name": name, "inputSchema": schema });
    let Value::Object(def) = def else {
        unreachable!()
    };
    ToolDef::from_definition(def).unwrap()
}

fn catalogs() -> Catalogs {
    let mut c = Catalogs::new();
    c.insert(
        UpstreamName::new("crm").unwrap(),
        ToolCatalog {
            tools: vec![
                tool("get_customer", json!({"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]})),
                tool(
                    "refund",
                    json!({"type": "object", "properties": {"amount": {"type": "number"}, "note": {"type": "string"}}, "required": ["amount"]}),
                ),
            ],
        },
    );
    c.insert(
        UpstreamName::new("docs").unwrap(),
        ToolCatalog {
            tools: vec![tool(
                "search",
                json!({"type": "object", "properties": {"q": {"type": "string"}}}),
            )],
        },
    );
    c
}

fn sources(policies: &str) -> PolicySources {
    PolicySources {
        policies: vec![SourceFile {
            name: "test.cedar".into(),
            text: policies.into(),
        }],
        schemas: vec![SourceFile {
            name: "warden.cedarschema".into(),
            text: BASE_SCHEMA.into(),
        }],
    }
}

/// A context with nothing special about it.
fn ctx() -> &'static RequestContext {
    static CTX: std::sync::LazyLock<RequestContext> =
        std::sync::LazyLock::new(|| RequestContext::at(1_795_000_000));
    &CTX
}

fn engine(policies: &str) -> PolicyEngine {
    PolicyEngine::build(&sources(policies), &catalogs()).unwrap_or_else(|e| panic!("{e:?}"))
}

fn call<'a>(
    agent: &'a str,
    upstream: &'a str,
    tool: &'a str,
    args: &'a Map<String, Value>,
) -> Request<'a> {
    Request {
        agent,
        user: None,
        target: Target::Tool {
            upstream,
            tool,
            args,
        },
        context: ctx(),
    }
}

fn args(v: Value) -> Map<String, Value> {
    let Value::Object(m) = v else { unreachable!() };
    m
}

#[test]
fn the_two_documented_policy_shapes_work() {
    let e = engine(
        r#"
        @id("a-crm-get")
        @reason("support reads customers")
        permit(principal == Warden::Agent::"a", action == Warden::Action::"crm/get_customer", resource);
        permit(principal == Warden::Agent::"a", action in Warden::Action::"call_tool", resource in Warden::Upstream::"docs");
        "#,
    );
    let a = args(json!({"id": "c-1"}));
    let d = e.authorize(&call("a", "crm", "get_customer", &a));
    assert!(d.is_allow(), "{d:?}");
    assert_eq!(d.policies, vec!["a-crm-get".to_owned()]);
    assert_eq!(d.reasons, vec!["support reads customers".to_owned()]);
    let q = args(json!({"q": "vpn"}));
    let d = e.authorize(&call("a", "docs", "search", &q));
    assert_eq!(d.policies, vec!["test.cedar#1".to_owned()]);
    assert!(d.is_allow());
    // Default deny: another agent, another tool.
    assert!(!e.authorize(&call("b", "docs", "search", &q)).is_allow());
    let r = args(json!({"amount": 1}));
    let d = e.authorize(&call("a", "crm", "refund", &r));
    assert_eq!(d, Decision::deny(DEFAULT_DENY));
}

#[test]
fn argument_conditions_are_typed_and_enforced() {
    let e = engine(
        r#"permit(principal, action == Warden::Action::"crm/refund", resource)
           when { context.args.amount.lessThan(decimal("100.0")) };"#,
    );
    let small = args(json!({"amount": 99.99}));
    let big = args(json!({"amount": 100}));
    let wrong = args(json!({"amount": "1"}));
    assert!(e.authorize(&call("x", "crm", "refund", &small)).is_allow());
    assert!(!e.authorize(&call("x", "crm", "refund", &big)).is_allow());
    let d = e.authorize(&call("x", "crm", "refund", &wrong));
    assert!(!d.is_allow());
    assert!(
        d.reasons[0].contains("argument `amount` must be a number"),
        "{d:?}"
    );
    // Listing cannot know the amount: the tool is shown.
    let none = Map::new();
    assert!(e.may_list(&call("x", "crm", "refund", &none)));
    assert!(!e.may_list(&call("x", "crm", "get_customer", &none)));
}

#[test]
fn forbid_wins_and_hides_the_tool() {
    let e = engine(
        r#"permit(principal, action in Warden::Action::"call_tool", resource);
           @reason("no refunds on weekends")
           forbid(principal, action == Warden::Action::"crm/refund", resource);"#,
    );
    let r = args(json!({"amount": 1}));
    let d = e.authorize(&call("x", "crm", "refund", &r));
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.reasons, vec!["no refunds on weekends".to_owned()]);
    assert!(!e.may_list(&call("x", "crm", "refund", &Map::new())));
    assert!(e.may_list(&call("x", "docs", "search", &Map::new())));
}

#[test]
fn an_evaluation_error_denies_even_when_another_permit_allows() {
    // `note` is optional; reading it without `has` fails at run time.
    // Strict validation rejects that, so build the engine around it: the
    // error comes from an overflow instead.
    let e = engine(
        r#"permit(principal, action == Warden::Action::"crm/refund", resource);
           permit(principal, action == Warden::Action::"crm/refund", resource)
           when { 9223372036854775807 + 1 > 0 };"#,
    );
    let r = args(json!({"amount": 1}));
    let d = e.authorize(&call("x", "crm", "refund", &r));
    assert_eq!(d.effect, Effect::Deny, "{d:?}");
    assert_eq!(d.errors.len(), 1);
}

#[test]
fn unknown_tools_and_delegation_context() {
    let e = engine(
        r#"permit(principal, action == Warden::Action::"docs/search", resource)
           when { context has user && context.user == Warden::User::"alice" };"#,
    );
    let q = args(json!({}));
    assert!(!e.authorize(&call("x", "docs", "search", &q)).is_allow());
    let with_alice = Request {
        user: Some("alice"),
        ..call("x", "docs", "search", &q)
    };
    assert!(e.authorize(&with_alice).is_allow());
    let d = e.authorize(&call("x", "docs", "delete_everything", &q));
    assert!(d.reasons[0].contains("not in the catalog"), "{d:?}");
}

#[test]
fn resources_and_prompts_have_their_own_actions() {
    let e = engine(
        r#"permit(principal, action == Warden::Action::"read_resource", resource in Warden::Upstream::"docs")
           when { context.uri like "docs://public/*" };
           permit(principal == Warden::Agent::"a", action == Warden::Action::"get_prompt", resource == Warden::Prompt::"crm/summary");"#,
    );
    let r = |uri| Request {
        agent: "a",
        user: None,
        context: ctx(),
        target: Target::Resource {
            upstream: "docs",
            uri,
        },
    };
    assert!(e.authorize(&r("docs://public/handbook")).is_allow());
    assert!(!e.authorize(&r("docs://private/salaries")).is_allow());
    let p = |name| Request {
        agent: "a",
        user: None,
        context: ctx(),
        target: Target::Prompt {
            upstream: "crm",
            name,
        },
    };
    assert!(e.authorize(&p("summary")).is_allow());
    assert!(!e.may_list(&p("other")));
}

#[test]
fn bad_policies_are_reported_with_file_and_line() {
    let cases = [
        ("permit(principal, action, resource)\n", "test.cedar:1:"),
        (
            "\n\npermit(principal, action == Warden::Action::\"crm/nope\", resource);",
            "test.cedar:3:",
        ),
        (
            "permit(principal, action == Warden::Action::\"docs/search\", resource) when { context.args.nope == 1 };",
            "test.cedar:1:",
        ),
        (
            "permit(principal == Warden::Robot::\"x\", action, resource);",
            "test.cedar:1:",
        ),
    ];
    for (text, prefix) in cases {
        let errors = PolicyEngine::build(&sources(text), &catalogs()).expect_err(text);
        let shown = errors[0].to_string();
        assert!(shown.starts_with(prefix), "{text}: {shown}");
    }
    let errors = PolicyEngine::build(&sources("@id(\"x\") permit(principal, action, resource);\n@id(\"x\") permit(principal, action, resource);"), &catalogs())
        .expect_err("duplicate ids");
    assert!(errors[0].message.contains("x"), "{errors:?}");
    let no_schema = PolicySources {
        schemas: vec![],
        ..sources("")
    };
    assert!(PolicyEngine::build(&no_schema, &catalogs()).is_err());
}

#[test]
fn no_policies_means_deny() {
    let e = engine("");
    let q = args(json!({}));
    assert_eq!(
        e.authorize(&call("x", "docs", "search", &q)),
        Decision::deny(DEFAULT_DENY)
    );
    assert!(!e.may_list(&call("x", "docs", "search", &q)));
    assert_eq!(e.policy_count(), 0);
}

#[test]
fn slices_decide_exactly_as_the_whole_set() {
    let mut text = String::new();
    for i in 0..30 {
        text.push_str(&format!(
            "@id(\"p{i}\") permit(principal == Warden::Agent::\"agent-{i}\", action == Warden::Action::\"crm/refund\", resource) when {{ context.args.amount.lessThan(decimal(\"{i}.0\")) }};\n"
        ));
    }
    text.push_str("@id(\"f\") forbid(principal, action, resource) when { context has user && context.user == Warden::User::\"mallory\" };\n");
    text.push_str(
        "@id(\"docs\") permit(principal, action == Warden::Action::\"docs/search\", resource);\n",
    );
    text.push_str("@id(\"in\") permit(principal in Warden::Agent::\"agent-3\", action == Warden::Action::\"crm/get_customer\", resource);\n");
    text.push_str("@id(\"alice-refund\") permit(principal == Warden::User::\"alice\", action == Warden::Action::\"crm/refund\", resource) when { context.args.amount.lessThan(decimal(\"10.0\")) };\n");
    // Action groups and `connect`, scope-only and with conditions.
    text.push_str("@id(\"no-tools-5\") forbid(principal == Warden::Agent::\"agent-5\", action in Warden::Action::\"call_tool\", resource);\n");
    text.push_str("@id(\"reach-crm\") permit(principal, action == Warden::Action::\"connect\", resource == Warden::Upstream::\"crm\");\n");
    text.push_str("@id(\"reach-2\") permit(principal == Warden::Agent::\"agent-2\", action == Warden::Action::\"connect\", resource) when { context.mtls };\n");
    text.push_str("@id(\"no-reach-7\") forbid(principal == Warden::Agent::\"agent-7\", action in [Warden::Action::\"connect\", Warden::Action::\"docs/search\"], resource);\n");
    let e = engine(&text);
    let mut mtls = ctx().clone();
    mtls.mtls = true;
    let mut reached = 0;
    for agent in (0..35).map(|i| format!("agent-{i}")) {
        for user in [None, Some("alice"), Some("mallory")] {
            for context in [ctx(), &mtls] {
                for upstream in ["crm", "docs"] {
                    let r = Request {
                        agent: &agent,
                        user,
                        context,
                        target: Target::Upstream { upstream },
                    };
                    // Twice: the second may come from the kept decisions.
                    for _ in 0..2 {
                        let sliced = e.authorize(&r);
                        assert_eq!(
                            sliced,
                            e.authorize_unsliced(&r),
                            "{agent} {user:?} {upstream}"
                        );
                        reached += usize::from(sliced.is_allow());
                    }
                }
            }
        }
    }
    assert!(
        reached > 100,
        "the comparison must cover allows too: {reached}"
    );
    let mut allowed = 0;
    for agent in (0..35).map(|i| format!("agent-{i}")) {
        for user in [None, Some("alice"), Some("mallory")] {
            for amount in [0, 5, 29, 40] {
                let refund = args(json!({"amount": amount}));
                let id = args(json!({"id": "c-1"}));
                let q = args(json!({"q": "x"}));
                for (upstream, tool, a) in [
                    ("crm", "refund", &refund),
                    ("crm", "get_customer", &id),
                    ("docs", "search", &q),
                ] {
                    let r = Request {
                        agent: &agent,
                        user,
                        context: ctx(),
                        target: Target::Tool {
                            upstream,
                            tool,
                            args: a,
                        },
                    };
                    let sliced = e.authorize(&r);
                    assert_eq!(
                        sliced,
                        e.authorize_unsliced(&r),
                        "{agent} {user:?} {tool} {amount}"
                    );
                    allowed += usize::from(sliced.is_allow());
                }
            }
        }
    }
    assert!(
        allowed > 100,
        "the comparison must cover allows too: {allowed}"
    );
}

#[test]
fn a_cut_s_policies_keep_no_action_scope_and_decide_as_written() {
    // The cut for a tool matched each policy's action scope once; its
    // policies are evaluated without it (a list, a group, `==`), keep their
    // ids and annotations, and decide as the whole set does.
    let e = engine(
        r#"@id("list") @reason("listed") permit(principal == Warden::Agent::"a", action in [Warden::Action::"crm/refund", Warden::Action::"crm/get_customer"], resource);
           @id("group") forbid(principal, action in Warden::Action::"call_tool", resource) when { context.mtls };
           @id("eq") permit(principal == Warden::Agent::"b", action == Warden::Action::"crm/get_customer", resource);"#,
    );
    let a = e.slices.agent("a", None, &e.schema).unwrap();
    let cut = e.cut(&a, "crm/get_customer").unwrap();
    assert_eq!(cut.set.num_of_policies(), 2);
    for p in cut.set.policies() {
        assert_eq!(
            p.action_constraint(),
            cedar_policy::ActionConstraint::Any,
            "{p}"
        );
    }
    let listed = cut.set.policy(&PolicyId::new("list")).unwrap();
    assert_eq!(listed.annotation("reason"), Some("listed"));
    let b = e.slices.agent("b", None, &e.schema).unwrap();
    let ids: Vec<String> = e
        .cut(&b, "crm/refund")
        .unwrap()
        .set
        .policies()
        .map(|p| p.id().to_string())
        .collect();
    assert_eq!(ids, ["group"]);
    let mut mtls = ctx().clone();
    mtls.mtls = true;
    let (id, amount, q) = (
        args(json!({"id": "c-1"})),
        args(json!({"amount": 5})),
        args(json!({"q": "x"})),
    );
    let mut allowed = 0;
    for agent in ["a", "b", "c"] {
        for context in [ctx(), &mtls] {
            for (upstream, tool, a) in [
                ("crm", "get_customer", &id),
                ("crm", "refund", &amount),
                ("docs", "search", &q),
            ] {
                let r = Request {
                    context,
                    ..call(agent, upstream, tool, a)
                };
                let sliced = e.authorize(&r);
                assert_eq!(
                    sliced,
                    e.authorize_unsliced(&r),
                    "{agent} {tool} {}",
                    context.mtls
                );
                allowed += usize::from(sliced.is_allow());
            }
        }
    }
    // a: get_customer and refund; b: get_customer; only without mTLS.
    assert_eq!(allowed, 3);
    let r = call("a", "crm", "refund", &amount);
    assert_eq!(e.authorize(&r).reasons, ["listed"]);
}

#[test]
fn a_delegated_request_needs_both_the_agent_and_the_user_g3() {
    let e = engine(
        r#"@id("bot-refund") @reason("the bot handles refunds")
           permit(principal == Warden::Agent::"bot", action == Warden::Action::"crm/refund", resource);
           @id("alice-small") @reason("alice may refund small amounts")
           permit(principal == Warden::User::"alice", action == Warden::Action::"crm/refund", resource)
           when { context.args.amount.lessThan(decimal("100.0")) };
           @id("bob-search")
           permit(principal == Warden::User::"bob", action == Warden::Action::"docs/search", resource);"#,
    );
    let small = args(json!({"amount": 5}));
    let big = args(json!({"amount": 500}));
    let as_user = |agent, user, a| Request {
        user: Some(user),
        ..call(agent, "crm", "refund", a)
    };
    // Both permitted.
    let d = e.authorize(&as_user("bot", "alice", &small));
    assert!(d.is_allow(), "{d:?}");
    assert_eq!(d.policies, ["alice-small", "bot-refund"]);
    // The agent may, but the user may not: denied, and the reason says so.
    let d = e.authorize(&as_user("bot", "alice", &big));
    assert_eq!(d.effect, Effect::Deny);
    assert!(
        d.reasons[0].starts_with("the user `alice` may not do this"),
        "{d:?}"
    );
    let d = e.authorize(&as_user("bot", "bob", &small));
    assert_eq!(d.effect, Effect::Deny, "bob has no refund rights");
    // The user may, but the agent may not.
    assert!(!e.authorize(&as_user("other", "alice", &small)).is_allow());
    // Acting alone, only the agent's rights count.
    assert!(e.authorize(&call("bot", "crm", "refund", &big)).is_allow());
    // Lists follow the same rule.
    assert!(e.may_list(&as_user("bot", "alice", &small)));
    assert!(!e.may_list(&as_user("bot", "bob", &small)));
    // A user principal never stands in for an agent: a user's permit does
    // not let an agent of the same name act.
    let q = args(json!({}));
    assert!(!e.authorize(&call("bob", "docs", "search", &q)).is_allow());
}

type Call<'c> = dyn Fn(&'static str, &'static str, &'static str, &'static Map<String, Value>) -> Request<'c>
    + 'c;

fn at<'c>(ctx: &'c RequestContext) -> Box<Call<'c>> {
    Box::new(move |agent, upstream, tool, args| Request {
        agent,
        user: None,
        target: Target::Tool {
            upstream,
            tool,
            args,
        },
        context: ctx,
    })
}

fn leak(v: Value) -> &'static Map<String, Value> {
    Box::leak(Box::new(args(v)))
}

#[test]
fn time_source_mtls_and_the_agent_s_attributes_are_in_the_context() {
    let e = engine(
        r#"permit(principal, action == Warden::Action::"docs/search", resource)
           when { context.now.hour >= 9 && context.now.hour < 18 && context.now.weekday != "sunday" };
           permit(principal, action == Warden::Action::"crm/get_customer", resource)
           when { context.mtls && context.source_ip.isInRange(ip("10.0.0.0/8")) };
           permit(principal, action == Warden::Action::"crm/refund", resource)
           when { principal has owner && principal.owner == "alice" && principal.state == "active" };"#,
    );
    let q = leak(json!({"q": "x"}));
    // 2026-11-23 is a Monday; 10:00 and 20:00 UTC.
    let monday_10 = RequestContext::at(1_795_428_000);
    let monday_20 = RequestContext::at(1_795_464_000);
    let sunday_10 = RequestContext::at(1_795_341_600);
    assert!(
        e.authorize(&at(&monday_10)("a", "docs", "search", q))
            .is_allow()
    );
    assert!(
        !e.authorize(&at(&monday_20)("a", "docs", "search", q))
            .is_allow()
    );
    assert!(
        !e.authorize(&at(&sunday_10)("a", "docs", "search", q))
            .is_allow()
    );
    let id = leak(json!({"id": "c-1"}));
    let mut inside = RequestContext::at(1_795_428_000);
    inside.source_ip = "10.1.2.3".parse().unwrap();
    assert!(
        !e.authorize(&at(&inside)("a", "crm", "get_customer", id))
            .is_allow(),
        "no mTLS"
    );
    inside.mtls = true;
    assert!(
        e.authorize(&at(&inside)("a", "crm", "get_customer", id))
            .is_allow()
    );
    inside.source_ip = "192.168.1.1".parse().unwrap();
    assert!(
        !e.authorize(&at(&inside)("a", "crm", "get_customer", id))
            .is_allow(),
        "outside"
    );
    let refund = leak(json!({"amount": 5}));
    let mut owned = RequestContext::at(1_795_428_000);
    assert!(
        !e.authorize(&at(&owned)("a", "crm", "refund", refund))
            .is_allow()
    );
    owned.agent.owner = Some("alice".into());
    assert!(
        e.authorize(&at(&owned)("a", "crm", "refund", refund))
            .is_allow()
    );
}

fn labelled() -> PolicyEngine {
    let mut labels = Labels::default();
    labels.tools.insert(
        "crm/get_customer".into(),
        crate::LabelOverride {
            classification: Some(Classification::Confidential),
            ..Default::default()
        },
    );
    labels.tools.insert(
        "crm/refund".into(),
        crate::LabelOverride {
            external: Some(true),
            ..Default::default()
        },
    );
    PolicyEngine::build_with(
        &sources(
            r#"permit(principal, action in Warden::Action::"call_tool", resource);
               @id("no-exfiltration") @reason("this session has read confidential data")
               forbid(principal, action in Warden::Action::"call_tool", resource)
               when { resource.external && context.session.taint_level >= 2 };
               @id("no-destructive") forbid(principal, action in Warden::Action::"call_tool", resource)
               when { resource.effect == "destructive" && context.risk.level != "low" };"#,
        ),
        &catalogs(),
        &labels,
    )
    .unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn a_session_tainted_by_confidential_data_cannot_send_it_out() {
    let e = labelled();
    assert_eq!(
        e.tool_label("crm", "get_customer").unwrap().classification,
        Classification::Confidential
    );
    let refund = leak(json!({"amount": 5}));
    let clean = RequestContext::at(1_795_428_000);
    assert!(
        e.authorize(&at(&clean)("a", "crm", "refund", refund))
            .is_allow()
    );
    let mut tainted = clean.clone();
    tainted.session.taint = Classification::Confidential;
    let d = e.authorize(&at(&tainted)("a", "crm", "refund", refund));
    assert_eq!(d.policies, ["no-exfiltration"]);
    assert_eq!(d.reasons, ["this session has read confidential data"]);
    // Reading more is still fine; only the external sink is closed.
    let id = leak(json!({"id": "c-1"}));
    assert!(
        e.authorize(&at(&tainted)("a", "crm", "get_customer", id))
            .is_allow()
    );
    // The risk record is there: high risk stops destructive tools.
    let mut risky = clean.clone();
    risky.risk_score = 80;
    assert!(
        !e.authorize(&at(&risky)("a", "crm", "refund", refund))
            .is_allow()
    );
}

#[test]
fn approval_and_redaction_obligations_are_carried_in_the_decision() {
    let e = engine(
        r#"@id("refund") @approval("required") @redact("note")
           permit(principal, action == Warden::Action::"crm/refund", resource);
           @id("big-refund") @approval("dual") @approvers("finance, security")
           permit(principal, action == Warden::Action::"crm/refund", resource)
           when { context.args.amount.greaterThan(decimal("100.0")) };
           permit(principal, action == Warden::Action::"docs/search", resource);"#,
    );
    let small = leak(json!({"amount": 5}));
    let big = leak(json!({"amount": 500}));
    let d = e.authorize(&call("a", "crm", "refund", small));
    assert_eq!(
        d.obligations.approval,
        Some(warden_core::Approval::Required)
    );
    assert_eq!(d.obligations.redact, ["note"]);
    let d = e.authorize(&call("a", "crm", "refund", big));
    assert_eq!(
        d.obligations.approval,
        Some(warden_core::Approval::Dual),
        "the strictest"
    );
    assert_eq!(d.obligations.approver_groups, ["finance", "security"]);
    let q = leak(json!({}));
    assert!(
        e.authorize(&call("a", "docs", "search", q))
            .obligations
            .is_empty()
    );
    // Bad annotations are load errors.
    for bad in [
        r#"@approval("maybe") permit(principal, action, resource);"#,
        r#"@approval("required") forbid(principal, action, resource);"#,
        r#"@approvers("finance") permit(principal, action, resource);"#,
        r#"@approval("required") @approvers("fin ance,") permit(principal, action, resource);"#,
    ] {
        let errors = PolicyEngine::build(&sources(bad), &catalogs()).unwrap_err();
        assert!(errors[0].message.contains("@approv"), "{errors:?}");
    }
}

fn task(agent: &str, tools: &[&str]) -> TaskGrant {
    TaskGrant {
        id: "t-1".into(),
        agent: agent.into(),
        purpose: "refund \"ticket\" 42".into(),
        expires_at: 1_795_430_000,
        tools: tools.iter().map(|t| (*t).to_owned()).collect(),
    }
}

#[test]
fn a_task_grants_its_tools_to_its_agent_only_while_it_is_carried() {
    let e = engine(
        r#"@id("no-big") @reason("no refunds above 100")
           forbid(principal, action == Warden::Action::"crm/refund", resource)
           when { context.args.amount.greaterThan(decimal("100.0")) };"#,
    );
    let small = leak(json!({"amount": 5}));
    let big = leak(json!({"amount": 500}));
    let plain = RequestContext::at(1_795_428_000);
    assert!(
        !e.authorize(&at(&plain)("a", "crm", "refund", small))
            .is_allow()
    );
    let mut with_task = plain.clone();
    with_task.task = Some(task("a", &["crm/refund"]));
    let d = e.authorize(&at(&with_task)("a", "crm", "refund", small));
    assert!(d.is_allow(), "{d:?}");
    assert_eq!(d.policies, ["task:t-1"]);
    assert!(d.reasons[0].contains("refund \"ticket\" 42"), "{d:?}");
    // The grant's cut, like a loaded slice's, holds no action scope.
    let granted = e
        .slices
        .agent("a", with_task.task.as_ref(), &e.schema)
        .unwrap();
    let cut = e.cut(&granted, "crm/refund").unwrap();
    assert_eq!(cut.set.num_of_policies(), 2);
    assert!(
        cut.set
            .policies()
            .all(|p| p.action_constraint() == cedar_policy::ActionConstraint::Any)
    );
    // Forbids still win over a grant.
    assert_eq!(
        e.authorize(&at(&with_task)("a", "crm", "refund", big))
            .policies,
        ["no-big"]
    );
    // Only the granted tools, only for the task's agent.
    let id = leak(json!({"id": "c-1"}));
    assert!(
        !e.authorize(&at(&with_task)("a", "crm", "get_customer", id))
            .is_allow()
    );
    assert!(
        !e.authorize(&at(&with_task)("b", "crm", "refund", small))
            .is_allow()
    );
    // A grant of an unknown tool denies, with the reason.
    let mut bad = plain.clone();
    bad.task = Some(task("a", &["crm/drop_tables"]));
    let d = e.authorize(&at(&bad)("a", "crm", "refund", small));
    assert!(!d.is_allow());
    assert!(d.reasons[0].contains("invalid"), "{d:?}");
}

#[test]
fn connect_decides_which_upstreams_an_agent_reaches() {
    let e = engine(
        r#"permit(principal == Warden::Agent::"a", action == Warden::Action::"connect", resource == Warden::Upstream::"crm");
           permit(principal, action == Warden::Action::"connect", resource)
           when { context.mtls };"#,
    );
    let plain = RequestContext::at(1_795_428_000);
    let connect = |agent, upstream, ctx| Request {
        agent,
        user: None,
        target: Target::Upstream { upstream },
        context: ctx,
    };
    assert!(e.authorize(&connect("a", "crm", &plain)).is_allow());
    assert!(!e.authorize(&connect("a", "docs", &plain)).is_allow());
    assert!(!e.authorize(&connect("b", "crm", &plain)).is_allow());
    let mut mtls = plain.clone();
    mtls.mtls = true;
    assert!(e.authorize(&connect("b", "docs", &mtls)).is_allow());
}

#[test]
fn a_call_is_decided_as_connect_then_the_tool_on_one_context() {
    // As the gateway decides a call: `connect` reads the context, the tool
    // reads its arguments, and a delegated call needs the user too (G3).
    let e = engine(
        r#"permit(principal, action == Warden::Action::"connect", resource) when { context.mtls };
           permit(principal == Warden::Agent::"bot", action == Warden::Action::"crm/refund", resource)
           when { context.args.amount.lessThan(decimal("100.0")) };
           permit(principal == Warden::User::"alice", action == Warden::Action::"crm/refund", resource)
           when { context.args.amount.lessThan(decimal("10.0")) };"#,
    );
    let mut mtls = ctx().clone();
    mtls.mtls = true;
    let small = args(json!({"amount": 5}));
    let medium = args(json!({"amount": 50}));
    let big = args(json!({"amount": 500}));
    let over_mtls = |a, user| Request {
        context: &mtls,
        user,
        ..call("bot", "crm", "refund", a)
    };
    // connect denies without mTLS, whatever the tool's policy says.
    let d = e.authorize_with_reach(&call("bot", "crm", "refund", &small));
    assert_eq!(d, Decision::deny(DEFAULT_DENY));
    assert!(e.authorize_with_reach(&over_mtls(&small, None)).is_allow());
    assert!(e.authorize_with_reach(&over_mtls(&medium, None)).is_allow());
    assert!(!e.authorize_with_reach(&over_mtls(&big, None)).is_allow());
    // For alice: both must allow the same arguments.
    assert!(
        e.authorize_with_reach(&over_mtls(&small, Some("alice")))
            .is_allow()
    );
    let d = e.authorize_with_reach(&over_mtls(&medium, Some("alice")));
    assert!(
        d.reasons[0].starts_with("the user `alice` may not do this"),
        "{d:?}"
    );
    // Arguments of the wrong type deny before anything is decided.
    let wrong = args(json!({"amount": "5"}));
    let d = e.authorize_with_reach(&over_mtls(&wrong, None));
    assert!(
        d.reasons[0].contains("argument `amount` must be a number"),
        "{d:?}"
    );
}

#[test]
fn decisions_are_kept_only_where_no_policy_reads_the_request() {
    let e = engine(
        r#"permit(principal, action == Warden::Action::"connect", resource == Warden::Upstream::"docs");
           forbid(principal == Warden::Agent::"b", action == Warden::Action::"connect", resource == Warden::Upstream::"docs");
           permit(principal == Warden::Agent::"a", action == Warden::Action::"connect", resource == Warden::Upstream::"crm")
           when { context.mtls };
           permit(principal, action == Warden::Action::"docs/search", resource);
           permit(principal == Warden::Agent::"a", action == Warden::Action::"crm/get_customer", resource)
           when { context.args.id like "c-*" };"#,
    );
    let plain = ctx().clone();
    let mut mtls = plain.clone();
    mtls.mtls = true;
    let connect = |agent, upstream, context| Request {
        agent,
        user: None,
        target: Target::Upstream { upstream },
        context,
    };
    // `connect` is decided by the policies about `connect` alone.
    let a = e.slices.agent("a", None, &e.schema).unwrap();
    assert_eq!(e.cut(&a, "connect").unwrap().set.num_of_policies(), 2);
    assert!(!e.cut(&a, "connect").unwrap().fixed);
    let c = e.slices.agent("c", None, &e.schema).unwrap();
    assert!(e.cut(&c, "connect").unwrap().fixed);
    assert_eq!(e.cut(&c, "docs/search").unwrap().set.num_of_policies(), 1);
    // Kept decisions are the principal's own: b's refusal is not c's,
    // c's permission is not b's, in either order.
    for _ in 0..3 {
        assert!(e.authorize(&connect("c", "docs", &plain)).is_allow());
        assert!(!e.authorize(&connect("b", "docs", &plain)).is_allow());
        assert!(!e.authorize(&connect("c", "crm", &plain)).is_allow());
    }
    // A cut with a condition is decided again every time.
    for _ in 0..3 {
        assert!(!e.authorize(&connect("a", "crm", &plain)).is_allow());
        assert!(e.authorize(&connect("a", "crm", &mtls)).is_allow());
    }
    let good = args(json!({"id": "c-1"}));
    let bad = args(json!({"id": "x-1"}));
    for _ in 0..3 {
        let ok = Request {
            context: &mtls,
            ..call("a", "crm", "get_customer", &good)
        };
        let refused = Request {
            context: &mtls,
            ..call("a", "crm", "get_customer", &bad)
        };
        assert!(e.authorize_with_reach(&ok).is_allow());
        assert!(!e.authorize_with_reach(&refused).is_allow());
        assert!(
            !e.authorize_with_reach(&call("a", "crm", "get_customer", &good))
                .is_allow()
        );
    }
}

#[test]
fn kept_entities_follow_the_agent_s_attributes() {
    // The entities of a call are kept per agent and tool; a changed
    // attribute must be seen on the very next decision.
    let e = engine(
        r#"permit(principal, action == Warden::Action::"connect", resource)
           when { principal has owner && principal.owner == "alice" };
           permit(principal, action == Warden::Action::"docs/search", resource)
           when { principal has owner && principal.owner == "alice" };"#,
    );
    let q = args(json!({"q": "x"}));
    let owned_by = |owner: Option<&str>| {
        let mut c = ctx().clone();
        c.agent.owner = owner.map(str::to_owned);
        c
    };
    for owner in [Some("alice"), Some("bob"), None, Some("alice"), Some("bob")] {
        let context = owned_by(owner);
        let r = Request {
            context: &context,
            ..call("bot", "docs", "search", &q)
        };
        assert_eq!(
            e.authorize_with_reach(&r).is_allow(),
            owner == Some("alice"),
            "{owner:?}"
        );
    }
}

#[test]
fn conditions_on_attributes_that_do_not_exist_are_load_errors() {
    for bad in [
        r#"permit(principal, action == Warden::Action::"crm/refund", resource) when { context.args.currency == "EUR" };"#,
        r#"permit(principal, action, resource) when { resource.owner == "x" };"#,
        r#"permit(principal, action, resource) when { context.session.secret == 1 };"#,
        r#"permit(principal, action, resource) when { principal.owner == "x" };"#,
    ] {
        assert!(
            PolicyEngine::build(&sources(bad), &catalogs()).is_err(),
            "{bad}"
        );
    }
}
