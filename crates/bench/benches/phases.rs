//! Micro-benchmarks of each phase of the request path, on the same policy
//! set and store as `warden-bench`: `cargo bench -p warden-bench`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark code"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use warden_audit::{AuditRecord, RecordKind};
use warden_bench::setup::{POLICY_AGENTS, agent, policies, tool_of};
use warden_bench::upstream::TOOLS;
use warden_core::{AgentName, Decision, TenantId};
use warden_identity::{KeyRing, SigningKey, TokenIssuer, TokenVerifier};
use warden_mcp::{Message, ToolCatalog, ToolDef, classify, parse_message};
use warden_policy::{
    Catalogs, PolicyEngine, PolicySources, Request, RequestContext, SourceFile, Target,
};
use warden_store::{NewAgent, SqliteStore, Store};

const CALL: &[u8] = br#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"lookup_3","arguments":{"id":"c-42","limit":5}}}"#;

fn tokens(c: &mut Criterion) {
    let key = Arc::new(SigningKey::from_pem(&SigningKey::generate_pem().unwrap()).unwrap());
    let ring = Arc::new(KeyRing::single(key));
    let issuer = TokenIssuer::new(
        ring.clone(),
        "warden",
        "gw",
        "td",
        Duration::from_secs(3600),
    );
    let verifier = TokenVerifier::new(ring, "warden", "gw", "td", Duration::from_secs(30));
    let token = issuer
        .issue(
            &TenantId::new("default").unwrap(),
            &AgentName::new("agent-1").unwrap(),
            None,
            Duration::from_secs(600),
        )
        .unwrap()
        .token;
    c.bench_function("token/verify (EdDSA + claims)", |b| {
        b.iter(|| verifier.verify(black_box(&token)).unwrap())
    });
}

fn codec(c: &mut Criterion) {
    c.bench_function("jsonrpc/parse + classify tools/call", |b| {
        b.iter(|| {
            let Ok(Message::Request { method, params, .. }) = parse_message(black_box(CALL)) else {
                panic!()
            };
            classify(&method, params.as_deref()).unwrap()
        })
    });
}

fn engine(policy_text: &str) -> PolicyEngine {
    let tools = (0..TOOLS)
        .map(|i| {
            let def = json!({"name": format!("lookup_{i}"), "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}, "limit": {"type": "integer"}}, "required": ["id", "limit"]}});
            let Value::Object(def) = def else { unreachable!() };
            ToolDef::from_definition(def).unwrap()
        })
        .collect();
    let mut catalogs = Catalogs::new();
    catalogs.insert(
        warden_core::UpstreamName::new("bench").unwrap(),
        ToolCatalog { tools },
    );
    let sources = PolicySources {
        policies: vec![SourceFile {
            name: "bench.cedar".into(),
            text: policy_text.into(),
        }],
        schemas: vec![SourceFile {
            name: "warden.cedarschema".into(),
            text: warden_policy::BASE_SCHEMA.into(),
        }],
    };
    PolicyEngine::build(&sources, &catalogs).unwrap()
}

fn policy(c: &mut Criterion) {
    let big = engine(&policies());
    let empty = engine("");
    let Value::Object(args) = json!({"id": "c-42", "limit": 5}) else {
        unreachable!()
    };
    let name = agent(7);
    let tool = tool_of(7);
    let context = RequestContext::at(1_795_428_000);
    let request = Request {
        agent: &name,
        user: None,
        target: Target::Tool {
            upstream: "bench",
            tool: &tool,
            args: &args,
        },
        context: &context,
    };
    assert!(big.authorize(&request).is_allow());
    c.bench_function(
        &format!(
            "policy/authorize, {} policies, sliced per agent",
            POLICY_AGENTS + 2
        ),
        |b| b.iter(|| -> Decision { big.authorize(black_box(&request)) }),
    );
    assert!(big.authorize_with_reach(&request).is_allow());
    c.bench_function(
        "policy/authorize_with_reach, connect then the tool (as the gateway decides a call)",
        |b| b.iter(|| -> Decision { big.authorize_with_reach(black_box(&request)) }),
    );
    c.bench_function(
        "policy/authorize, no policies (request building floor)",
        |b| b.iter(|| -> Decision { empty.authorize(black_box(&request)) }),
    );
}

/// Decision cost with 20,000 open task grants over 10,000 agents in 100
/// tenants (each tenant its own engine, as the gateway runs them) against
/// the cost with none: grants are cut per task, so the cost stays flat.
fn task_grants(c: &mut Criterion) {
    const AGENTS: usize = 10_000;
    const TASKS: usize = 20_000;
    const TENANTS: usize = 100;
    let engines: Vec<PolicyEngine> = (0..TENANTS).map(|_| engine(&policies())).collect();
    let e = &engines[0];
    let Value::Object(args) = json!({"id": "c-42", "limit": 5}) else {
        unreachable!()
    };
    let names: Vec<String> = (0..AGENTS).map(|i| format!("worker-{i}")).collect();
    let contexts: Vec<RequestContext> = (0..TASKS)
        .map(|t| {
            let mut ctx = RequestContext::at(1_795_428_000);
            ctx.task = Some(warden_policy::TaskGrant {
                id: format!("task-{t}"),
                agent: names[t % AGENTS].clone(),
                purpose: format!("ticket {t}"),
                expires_at: 1_795_431_600,
                tools: vec![format!("bench/{}", tool_of(t)), "bench/lookup_0".into()],
            });
            ctx
        })
        .collect();
    let tools: Vec<String> = (0..TASKS).map(tool_of).collect();
    let engine_of = |t: usize| &engines[t % AGENTS % TENANTS];
    let request = |t: usize| Request {
        agent: &names[t % AGENTS],
        user: None,
        target: Target::Tool {
            upstream: "bench",
            tool: &tools[t],
            args: &args,
        },
        context: &contexts[t],
    };
    // Every grant is built once (as the first request of each task does).
    for t in 0..TASKS {
        assert!(engine_of(t).authorize(&request(t)).is_allow(), "task {t}");
    }
    let plain = RequestContext::at(1_795_428_000);
    let name = agent(7);
    let tool = tool_of(7);
    let without = Request {
        agent: &name,
        user: None,
        target: Target::Tool {
            upstream: "bench",
            tool: &tool,
            args: &args,
        },
        context: &plain,
    };
    c.bench_function("policy/authorize, no task grants", |b| {
        b.iter(|| -> Decision { e.authorize(black_box(&without)) })
    });
    // The same agents, tenants and rotation without their tasks: what the
    // grants add, apart from the memory a spread of agents touches.
    let untasked = |t: usize| Request {
        context: &plain,
        ..request(t)
    };
    let mut u = 0;
    c.bench_function(
        "policy/authorize, no task grants, the same 10,000 agents in 100 tenants",
        |b| {
            b.iter(|| -> Decision {
                u = (u + 7919) % TASKS;
                engine_of(u).authorize(black_box(&untasked(u)))
            })
        },
    );
    let mut t = 0;
    c.bench_function(
        "policy/authorize with a task, 20,000 grants over 10,000 agents in 100 tenants",
        |b| {
            b.iter(|| -> Decision {
                t = (t + 7919) % TASKS;
                engine_of(t).authorize(black_box(&request(t)))
            })
        },
    );
}

fn record(i: u64) -> warden_store::NewRecord {
    let rec = AuditRecord {
        kind: RecordKind::Request,
        request_id: format!("01a2-{i}"),
        time: "2026-11-23T00:00:00Z".into(),
        tenant: Some("default".into()),
        agent: Some("agent-7".into()),
        user: None,
        source: Some("127.0.0.1:5555".into()),
        endpoint: "/mcp/bench".into(),
        method: Some("tools/call".into()),
        upstream: Some("bench".into()),
        action: Some("bench/lookup_7".into()),
        resource: Some("Warden::Tool::\"bench/lookup_7\"".into()),
        args_digest: Some("ab".repeat(32)),
        args: Some(json!({ "id": "[redacted: 4 chars]", "limit": 5 })),
        task: None,
        risk: Some(warden_audit::Risk {
            score: 0,
            level: "low".into(),
            reasons: Vec::new(),
        }),
        decision: Decision::deny("x"),
        status: Some(200),
        error: None,
        outcome: None,
        approval: None,
        reviewers: Vec::new(),
        shadow: None,
    };
    warden_store::NewRecord::of(&rec).unwrap()
}

fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("w.db").display());
    let store = rt.block_on(SqliteStore::open(&url)).unwrap();
    let tenant = TenantId::new("default").unwrap();
    let agents = (0..1000)
        .map(|i| NewAgent {
            tenant: tenant.clone(),
            name: AgentName::new(agent(i)).unwrap(),
            owner: None,
            purpose: None,
        })
        .collect();
    rt.block_on(store.create_agents(agents)).unwrap();
    let name = AgentName::new(agent(7)).unwrap();
    c.bench_function("store/agent lookup (SQLite, per request)", |b| {
        b.to_async(&rt)
            .iter(|| async { store.agent(&tenant, &name).await.unwrap() })
    });
    let mut n = 0u64;
    c.bench_function("audit/append 1 record per commit (fsync each)", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let body = record(n);
            async { store.append_audit(vec![body]).await.unwrap() }
        })
    });
    c.bench_function("audit/append 16 records per commit (group commit)", |b| {
        b.to_async(&rt).iter_batched(
            || (0..16).map(record).collect::<Vec<_>>(),
            |bodies| async { store.append_audit(bodies).await.unwrap() },
            BatchSize::SmallInput,
        )
    });
}

criterion_group! {
    name = phases;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    targets = tokens, codec, policy, task_grants, store
}
criterion_main!(phases);
