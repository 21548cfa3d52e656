//! What is asked, and its translation into a Cedar request: the principal,
//! action and resource, the context (arguments, time, source, session taint,
//! task, risk) and the few entities the request touches.
//!
//! The entities are built per request from precomputed parts (the tool and
//! its upstream, the action and its group) plus the principal, so the cost
//! of a decision does not grow with the number of tools, agents or tasks.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression,
};
use serde_json::{Map, Value};

use super::needs::Needs;
use crate::labels::{Classification, ToolLabel};
use crate::schema::{ACTION_CALL_TOOL, ACTION_CONNECT, ACTION_GET_PROMPT, ACTION_READ_RESOURCE};

/// What is asked: who, about what, in which circumstances.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The agent's name (`Warden::Agent::"<name>"`).
    pub agent: &'a str,
    /// The human the agent acts for (`context.user`, and the second
    /// principal of the decision).
    pub user: Option<&'a str>,
    /// The target.
    pub target: Target<'a>,
    /// The circumstances.
    pub context: &'a RequestContext,
}

/// What the request is for.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A tool call (`Warden::Action::"<upstream>/<tool>"`).
    Tool {
        /// The upstream.
        upstream: &'a str,
        /// The tool at the upstream.
        tool: &'a str,
        /// The arguments (`context.args`).
        args: &'a Map<String, Value>,
    },
    /// Reading a resource (`Warden::Action::"read_resource"`).
    Resource {
        /// The upstream.
        upstream: &'a str,
        /// The resource URI.
        uri: &'a str,
    },
    /// Getting a prompt (`Warden::Action::"get_prompt"`).
    Prompt {
        /// The upstream.
        upstream: &'a str,
        /// The prompt name.
        name: &'a str,
    },
    /// Reaching an upstream at all (`Warden::Action::"connect"`), decided
    /// before anything at it.
    Upstream {
        /// The upstream.
        upstream: &'a str,
    },
}

/// The agent's registered attributes (`principal.owner`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentInfo {
    /// Who is responsible for it.
    pub owner: Option<String>,
    /// What it is for.
    pub purpose: Option<String>,
}

/// An open task the request belongs to (`context.task`), with its grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskGrant {
    /// The task id.
    pub id: String,
    /// The agent the task is for (the grant names it).
    pub agent: String,
    /// What the task is for.
    pub purpose: String,
    /// When it ends (seconds since the epoch).
    pub expires_at: u64,
    /// The actions it grants the agent, `upstream/tool`.
    pub tools: Vec<String>,
}

/// What the agent's session has done so far (`context.session`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionState {
    /// The most sensitive data it has read.
    pub taint: Classification,
    /// Read-only tool calls so far.
    pub reads: u64,
    /// Tool calls so far.
    pub calls: u64,
}

/// The circumstances of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// Now, in seconds since the epoch (`context.now`).
    pub now: u64,
    /// The caller's address (`context.source_ip`).
    pub source_ip: IpAddr,
    /// Whether it presented a verified client certificate (`context.mtls`).
    pub mtls: bool,
    /// The agent's attributes.
    pub agent: AgentInfo,
    /// The task, if the request belongs to one.
    pub task: Option<TaskGrant>,
    /// The session's taint and counts.
    pub session: SessionState,
    /// The risk score (`context.risk.score`, 0-100).
    pub risk_score: i64,
}

impl RequestContext {
    /// A context at `now` from loopback, with nothing else known.
    pub fn at(now: u64) -> Self {
        Self {
            now,
            source_ip: IpAddr::from([127, 0, 0, 1]),
            mtls: false,
            agent: AgentInfo::default(),
            task: None,
            session: SessionState::default(),
            risk_score: 0,
        }
    }

    /// `context.risk.level` of the score.
    pub fn risk_level(&self) -> &'static str {
        match self.risk_score {
            i64::MIN..=29 => "low",
            30..=69 => "medium",
            _ => "high",
        }
    }
}

const WEEKDAYS: [&str; 7] = [
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
];

fn long(v: u64) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::try_from(v).unwrap_or(i64::MAX))
}

fn record(
    fields: impl IntoIterator<Item = (&'static str, RestrictedExpression)>,
) -> Result<RestrictedExpression, String> {
    RestrictedExpression::new_record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)))
        .map_err(|e| e.to_string())
}

/// Context fields, as Cedar takes them.
pub(crate) type Fields = Vec<(String, RestrictedExpression)>;

/// IP address expressions, made once per address: Cedar parses the name of
/// its `ip` extension function each time one is made.
#[derive(Debug, Default)]
pub(crate) struct IpCache(std::sync::Mutex<HashMap<IpAddr, RestrictedExpression>>);

/// Addresses remembered at most; the cache is emptied when full.
const MAX_CACHED_IPS: usize = 10_000;

impl IpCache {
    fn get(&self, ip: IpAddr) -> RestrictedExpression {
        if let Some(e) = self.0.lock().ok().and_then(|m| m.get(&ip).cloned()) {
            return e;
        }
        let e = RestrictedExpression::new_ip(ip.to_string());
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= MAX_CACHED_IPS {
                m.clear();
            }
            m.insert(ip, e.clone());
        }
        e
    }
}

/// The context fields every action has.
pub(crate) fn common_context(
    ctx: &RequestContext,
    user: Option<&EntityUid>,
    ips: &IpCache,
    needs: Needs,
) -> Result<Fields, String> {
    let mut fields = Vec::new();
    if needs.has("now") {
        let day = ctx.now / 86_400;
        let weekday = WEEKDAYS
            .get(usize::try_from(day % 7).unwrap_or(0))
            .copied()
            .unwrap_or("thursday");
        fields.push((
            "now".to_owned(),
            record([
                ("unix", long(ctx.now)),
                ("hour", long(ctx.now % 86_400 / 3_600)),
                ("minute", long(ctx.now % 3_600 / 60)),
                (
                    "weekday",
                    RestrictedExpression::new_string(weekday.to_owned()),
                ),
            ])?,
        ));
    }
    if needs.has("source_ip") {
        fields.push(("source_ip".to_owned(), ips.get(ctx.source_ip)));
    }
    if needs.has("mtls") {
        fields.push(("mtls".to_owned(), RestrictedExpression::new_bool(ctx.mtls)));
    }
    if needs.has("session") {
        fields.push((
            "session".to_owned(),
            record([
                (
                    "taint",
                    RestrictedExpression::new_string(ctx.session.taint.as_str().to_owned()),
                ),
                (
                    "taint_level",
                    RestrictedExpression::new_long(ctx.session.taint.level()),
                ),
                ("reads", long(ctx.session.reads)),
                ("calls", long(ctx.session.calls)),
            ])?,
        ));
    }
    if needs.has("risk") {
        fields.push((
            "risk".to_owned(),
            record([
                ("score", RestrictedExpression::new_long(ctx.risk_score)),
                (
                    "level",
                    RestrictedExpression::new_string(ctx.risk_level().to_owned()),
                ),
            ])?,
        ));
    }
    if let Some(task) = &ctx.task
        && needs.has("task")
    {
        fields.push((
            "task".to_owned(),
            record([
                ("id", RestrictedExpression::new_string(task.id.clone())),
                (
                    "purpose",
                    RestrictedExpression::new_string(task.purpose.clone()),
                ),
                ("expires_at", long(task.expires_at)),
            ])?,
        ));
    }
    if let Some(user) = user
        && needs.has("user")
    {
        fields.push((
            "user".to_owned(),
            RestrictedExpression::new_entity_uid(user.clone()),
        ));
    }
    Ok(fields)
}

/// Entity type names, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Types {
    pub(crate) agent: EntityTypeName,
    pub(crate) user: EntityTypeName,
    pub(crate) action: EntityTypeName,
    pub(crate) upstream: EntityTypeName,
    pub(crate) tool: EntityTypeName,
    pub(crate) resource: EntityTypeName,
    pub(crate) prompt: EntityTypeName,
}

impl Types {
    pub(crate) fn new() -> Result<Self, String> {
        let t = |s: &str| s.parse::<EntityTypeName>().map_err(|e| e.to_string());
        Ok(Self {
            agent: t("Warden::Agent")?,
            user: t("Warden::User")?,
            action: t("Warden::Action")?,
            upstream: t("Warden::Upstream")?,
            tool: t("Warden::Tool")?,
            resource: t("Warden::Resource")?,
            prompt: t("Warden::Prompt")?,
        })
    }

    pub(crate) fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

/// A tool's labels, and the entities a call to it touches but the
/// principal (the tool, its upstream, its action and the action's group).
#[derive(Debug, Clone)]
pub(crate) struct ToolEntry {
    pub(crate) label: ToolLabel,
    pub(crate) base: Entities,
    pub(crate) digest: String,
}

/// The precomputed entities: per tool, per upstream, and the actions.
#[derive(Debug, Default)]
pub(crate) struct Parts {
    pub(crate) tools: HashMap<String, ToolEntry>,
    pub(crate) upstreams: HashMap<String, Entity>,
    pub(crate) actions: HashMap<String, Vec<Entity>>,
    /// Per upstream: the upstream and the `connect` action.
    pub(crate) connect: HashMap<String, Entities>,
}

impl Parts {
    /// `action` and the groups it belongs to.
    pub(crate) fn action(&self, action: &str) -> impl Iterator<Item = Entity> + '_ {
        self.actions.get(action).into_iter().flatten().cloned()
    }

    /// Builds the parts for `labels` (per `upstream/tool`).
    pub(crate) fn new(
        types: &Types,
        upstreams: &[String],
        tools: &[(String, String, ToolLabel, String)],
    ) -> Result<Self, String> {
        let call_tool = Types::uid(&types.action, ACTION_CALL_TOOL);
        let group = Entity::new_no_attrs(call_tool.clone(), HashSet::new());
        let mut parts = Self::default();
        for action in [ACTION_READ_RESOURCE, ACTION_GET_PROMPT, ACTION_CONNECT] {
            let uid = Types::uid(&types.action, action);
            parts.actions.insert(
                action.to_owned(),
                vec![Entity::new_no_attrs(uid, HashSet::new())],
            );
        }
        let connect =
            Entity::new_no_attrs(Types::uid(&types.action, ACTION_CONNECT), HashSet::new());
        for upstream in upstreams {
            let uid = Types::uid(&types.upstream, upstream);
            let entity = Entity::new_no_attrs(uid, HashSet::new());
            parts.connect.insert(
                upstream.clone(),
                entities(vec![entity.clone(), connect.clone()])?,
            );
            parts.upstreams.insert(upstream.clone(), entity);
        }
        for (upstream, tool, label, digest) in tools {
            let id = crate::tool_action(upstream, tool);
            let parent = Types::uid(&types.upstream, upstream);
            let attrs = HashMap::from([
                (
                    "effect".to_owned(),
                    RestrictedExpression::new_string(label.effect.as_str().to_owned()),
                ),
                (
                    "classification".to_owned(),
                    RestrictedExpression::new_string(label.classification.as_str().to_owned()),
                ),
                (
                    "classification_level".to_owned(),
                    RestrictedExpression::new_long(label.classification.level()),
                ),
                (
                    "external".to_owned(),
                    RestrictedExpression::new_bool(label.external),
                ),
            ]);
            let entity = Entity::new(Types::uid(&types.tool, &id), attrs, HashSet::from([parent]))
                .map_err(|e| e.to_string())?;
            let upstream_entity = parts
                .upstreams
                .get(upstream)
                .cloned()
                .ok_or_else(|| format!("tool `{id}` of an unknown upstream"))?;
            let action = Entity::new_no_attrs(
                Types::uid(&types.action, &id),
                HashSet::from([call_tool.clone()]),
            );
            let base = entities(vec![entity, upstream_entity, action.clone(), group.clone()])?;
            parts.tools.insert(
                id.clone(),
                ToolEntry {
                    label: *label,
                    base,
                    digest: digest.clone(),
                },
            );
            parts.actions.insert(id, vec![action, group.clone()]);
        }
        Ok(parts)
    }
}

/// The principal's entity: an agent with its attributes, or a user.
pub(crate) fn principal_entity(
    uid: EntityUid,
    agent: Option<&AgentInfo>,
) -> Result<Entity, String> {
    let Some(info) = agent else {
        return Ok(Entity::new_no_attrs(uid, HashSet::new()));
    };
    let mut attrs = HashMap::from([(
        "state".to_owned(),
        RestrictedExpression::new_string("active".to_owned()),
    )]);
    if let Some(owner) = &info.owner {
        attrs.insert(
            "owner".to_owned(),
            RestrictedExpression::new_string(owner.clone()),
        );
    }
    if let Some(purpose) = &info.purpose {
        attrs.insert(
            "purpose".to_owned(),
            RestrictedExpression::new_string(purpose.clone()),
        );
    }
    Entity::new(uid, attrs, HashSet::new()).map_err(|e| e.to_string())
}

/// The entities of one request, with their hierarchy.
pub(crate) fn entities(list: Vec<Entity>) -> Result<Entities, String> {
    Entities::from_entities(list, None).map_err(|e| format!("invalid request entities: {e}"))
}

/// The Cedar context from its fields.
pub(crate) fn context(fields: Vec<(String, RestrictedExpression)>) -> Result<Context, String> {
    Context::from_pairs(fields).map_err(|e| format!("invalid request context: {e}"))
}
