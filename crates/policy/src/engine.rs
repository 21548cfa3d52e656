//! Building a validated engine and answering requests with it.

mod needs;
mod request;
mod slices;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use cedar_policy::{
    Authorizer, Effect as CedarEffect, Entities, Entity, EntityUid, PolicyId, PolicySet, Response,
    RestrictedExpression, Schema, SchemaFragment, ValidationMode, Validator,
};
use serde_json::Value;
use warden_core::{Approval, Decision, Effect, Obligations};

pub use request::{AgentInfo, Request, RequestContext, SessionState, Target, TaskGrant};

use self::needs::Needs;
use self::request::{IpCache, Parts, Types, common_context, context, entities, principal_entity};
use self::slices::{Cut, Slice, Slices};
use crate::args::ArgType;
use crate::labels::{Labels, ToolLabel};
use crate::schema::{
    ACTION_CONNECT, ACTION_GET_PROMPT, ACTION_READ_RESOURCE, Catalogs, tool_action, tool_fragment,
};
use crate::source::{Diagnostic, PolicySources, diagnostic};

/// A validated policy set with its schema, ready to answer requests.
#[derive(Debug)]
pub struct PolicyEngine {
    schema: Schema,
    policies: PolicySet,
    slices: Slices,
    /// Decisions of cuts that read no context (see [`Cut::fixed`]).
    fixed: Mutex<HashMap<String, Decision>>,
    /// The entities of tool calls and `connect`, per principal.
    entity_sets: Mutex<HashMap<String, EntitySet>>,
    parts: Parts,
    ips: IpCache,
    arg_types: BTreeMap<String, ArgType>,
    types: Types,
    authorizer: Authorizer,
    version: String,
}

const DEFAULT_DENY: &str = "no policy permits this request";

/// Fixed decisions kept at most; the cache is emptied when full.
const MAX_FIXED: usize = 100_000;

/// Entity sets kept at most; the cache is emptied when full.
const MAX_ENTITY_SETS: usize = 100_000;

/// A request's entities, and the agent attributes they were built from.
type EntitySet = (Option<AgentInfo>, Arc<Entities>);

/// The action id of a target, and the id of its resource.
fn action_and_resource(target: Target<'_>) -> (String, String) {
    match target {
        Target::Tool { upstream, tool, .. } => {
            let id = tool_action(upstream, tool);
            (id.clone(), id)
        }
        Target::Resource { upstream, uri } => {
            (ACTION_READ_RESOURCE.to_owned(), format!("{upstream}/{uri}"))
        }
        Target::Prompt { upstream, name } => {
            (ACTION_GET_PROMPT.to_owned(), format!("{upstream}/{name}"))
        }
        Target::Upstream { upstream } => (ACTION_CONNECT.to_owned(), upstream.to_owned()),
    }
}

fn one(file: &str, message: impl Into<String>) -> Vec<Diagnostic> {
    vec![Diagnostic {
        file: file.into(),
        position: None,
        message: message.into(),
    }]
}

impl PolicyEngine {
    /// Builds the schema (the folder's schema files plus one action per
    /// catalog tool), parses the policies and validates them strictly.
    /// Every problem found is returned, each with its file and line.
    pub fn build(sources: &PolicySources, catalogs: &Catalogs) -> Result<Self, Vec<Diagnostic>> {
        Self::build_with(sources, catalogs, &Labels::default())
    }

    /// As [`build`](Self::build), with the tools' labels overridden by
    /// `labels` (from config).
    pub fn build_with(
        sources: &PolicySources,
        catalogs: &Catalogs,
        labels: &Labels,
    ) -> Result<Self, Vec<Diagnostic>> {
        let types = Types::new().map_err(|m| one("warden", m))?;
        let (schema, arg_types) = build_schema(sources, catalogs)?;
        let (policies, origin) = parse_policies(sources)?;
        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        let mut errors: Vec<Diagnostic> = result
            .validation_errors()
            .map(|e| {
                match origin
                    .get(e.policy_id())
                    .and_then(|i| sources.policies.get(*i))
                {
                    Some(file) => diagnostic(file, e),
                    None => one("policies", e.to_string()).remove(0),
                }
            })
            .collect();
        errors.extend(check_annotations(&policies, &origin, sources));
        if !errors.is_empty() {
            return Err(errors);
        }
        let upstreams: Vec<String> = catalogs.keys().map(ToString::to_string).collect();
        let tools: Vec<(String, String, ToolLabel, String)> = catalogs
            .iter()
            .flat_map(|(upstream, catalog)| {
                catalog.tools.iter().map(move |tool| {
                    (
                        upstream.to_string(),
                        tool.name.clone(),
                        labels.label(upstream.as_str(), tool),
                        tool.digest(),
                    )
                })
            })
            .collect();
        let parts = Parts::new(&types, &upstreams, &tools)
            .map_err(|m| one("schema", format!("tool entities: {m}")))?;
        let slices = Slices::new(&policies, &types).map_err(|m| one("policies", m))?;
        Ok(Self {
            schema,
            slices,
            fixed: Mutex::new(HashMap::new()),
            entity_sets: Mutex::new(HashMap::new()),
            policies,
            parts,
            ips: IpCache::default(),
            arg_types,
            types,
            authorizer: Authorizer::new(),
            version: sources.version(),
        })
    }

    /// The policy version: a digest of the folder's files.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// How many policies are loaded.
    pub fn policy_count(&self) -> usize {
        self.policies.num_of_policies()
    }

    /// The ids of every action in the schema (folder plus generated).
    pub fn schema_actions(&self) -> Vec<String> {
        self.schema.actions().map(ToString::to_string).collect()
    }

    /// The digest of a tool's definition in the catalogs.
    pub fn tool_digest(&self, upstream: &str, tool: &str) -> Option<&str> {
        self.parts
            .tools
            .get(&tool_action(upstream, tool))
            .map(|t| t.digest.as_str())
    }

    /// The labels of a tool in the catalogs.
    pub fn tool_label(&self, upstream: &str, tool: &str) -> Option<ToolLabel> {
        self.parts
            .tools
            .get(&tool_action(upstream, tool))
            .map(|t| t.label)
    }

    /// Decides a request. Default deny; any evaluation error denies. When
    /// the agent acts for a user, the user must be permitted too (G3). A
    /// request of an open task also gets the task's grant.
    pub fn authorize(&self, request: &Request<'_>) -> Decision {
        match self.fields(request) {
            Ok(fields) => self.authorize_with(request, &fields),
            Err(e) => Decision::deny(e),
        }
    }

    /// Decides `connect` to the target's upstream, then the request itself
    /// (the first denial wins), building the request's context once.
    pub fn authorize_with_reach(&self, request: &Request<'_>) -> Decision {
        let fields = match self.fields(request) {
            Ok(f) => f,
            Err(e) => return Decision::deny(e),
        };
        let upstream = match request.target {
            Target::Tool { upstream, .. }
            | Target::Resource { upstream, .. }
            | Target::Prompt { upstream, .. }
            | Target::Upstream { upstream } => upstream,
        };
        let reach = Request {
            target: Target::Upstream { upstream },
            ..*request
        };
        // A tool call's arguments are typed first: arguments of the wrong
        // type deny before anything is decided.
        if let Target::Tool {
            upstream,
            tool,
            args,
        } = request.target
            && let Err(e) = self.typed_args(upstream, tool, args, &fields)
        {
            return Decision::deny(e);
        }
        let connect = self.authorize_with(&reach, &fields);
        if !connect.is_allow() || matches!(request.target, Target::Upstream { .. }) {
            return connect;
        }
        self.authorize_with(request, &fields)
    }

    /// What every decision of `request` shares, built as it is needed.
    fn fields(&self, request: &Request<'_>) -> Result<Shared, String> {
        Ok(Shared {
            user: request.user.map(|u| Types::uid(&self.types.user, u)),
            args: RefCell::new(None),
            contexts: RefCell::new(Vec::new()),
            agent: RefCell::new(None),
        })
    }

    /// A tool call's arguments typed from the tool's input schema (`context.args`),
    /// once per request.
    fn typed_args(
        &self,
        upstream: &str,
        tool: &str,
        args: &serde_json::Map<String, Value>,
        fields: &Shared,
    ) -> Result<RestrictedExpression, String> {
        if let Some(a) = fields.args.borrow().as_ref() {
            return Ok(a.clone());
        }
        let id = tool_action(upstream, tool);
        let ty = self
            .arg_types
            .get(&id)
            .ok_or_else(|| not_in_catalog(upstream, tool))?;
        let typed = ty.object_to_cedar(args, "")?;
        *fields.args.borrow_mut() = Some(typed.clone());
        Ok(typed)
    }

    /// The context of a decision: the fields `needs` names, and the
    /// target's own (`args`, `uri`); built once per request and needs.
    fn context_of(
        &self,
        request: &Request<'_>,
        fields: &Shared,
        needs: Needs,
        extra: Extra<'_>,
    ) -> Result<cedar_policy::Context, String> {
        let key = (needs.bits(), extra.tag());
        if let Some((_, c)) = fields.contexts.borrow().iter().find(|(k, _)| *k == key) {
            return Ok(c.clone());
        }
        let mut pairs = common_context(request.context, fields.user.as_ref(), &self.ips, needs)?;
        match extra {
            Extra::Args(args) if needs.has("args") => pairs.push(("args".into(), args)),
            Extra::NoArgs if needs.has("args") => pairs.push((
                "args".into(),
                RestrictedExpression::new_record([]).map_err(|e| e.to_string())?,
            )),
            Extra::Uri(uri) if needs.has("uri") => pairs.push((
                "uri".into(),
                RestrictedExpression::new_string(uri.to_owned()),
            )),
            _ => {}
        }
        let built = context(pairs)?;
        fields.contexts.borrow_mut().push((key, built.clone()));
        Ok(built)
    }

    /// The agent as a Cedar entity, built once per request.
    fn agent_entity(&self, request: &Request<'_>, fields: &Shared) -> Result<Entity, String> {
        if let Some(e) = fields.agent.borrow().as_ref() {
            return Ok(e.clone());
        }
        let uid = Types::uid(&self.types.agent, request.agent);
        let built = principal_entity(uid, Some(&request.context.agent))?;
        *fields.agent.borrow_mut() = Some(built.clone());
        Ok(built)
    }

    fn authorize_with(&self, request: &Request<'_>, fields: &Shared) -> Decision {
        let (action, _) = action_and_resource(request.target);
        let slice =
            match self
                .slices
                .agent(request.agent, request.context.task.as_ref(), &self.schema)
            {
                Ok(s) => s,
                Err(e) => return Decision::deny(e),
            };
        let agent = match self.cut(&slice, &action) {
            Ok(cut) => self.decide(request, Principal::Agent, &cut, fields),
            Err(e) => return Decision::deny(e),
        };
        match request.user {
            Some(user) if agent.is_allow() => {
                let human = match self.cut(&self.slices.user(user), &action) {
                    Ok(cut) => self.decide(request, Principal::User, &cut, fields),
                    Err(e) => Decision::deny(e),
                };
                delegated(agent, human, user)
            }
            _ => agent,
        }
    }

    /// `slice` cut to the policies that can apply to `action`.
    fn cut(&self, slice: &Slice<'_>, action: &str) -> Result<Arc<Cut>, String> {
        self.slices.cut(slice, action, || {
            match self.parts.actions.get(action) {
                // The action first, then its groups, as the request's
                // entities give them to Cedar.
                Some(list) => list.iter().map(|e| e.uid()).collect(),
                None => vec![Types::uid(&self.types.action, action)],
            }
        })
    }

    /// Decides with the whole policy set instead of the slices: the
    /// reference the slices are tested against.
    #[cfg(test)]
    fn authorize_unsliced(&self, request: &Request<'_>) -> Decision {
        let Ok(fields) = self.fields(request) else {
            return Decision::deny("no context");
        };
        let all = Cut {
            key: "all".into(),
            set: self.policies.clone(),
            fixed: false,
            needs: Needs::ALL,
        };
        let agent = self.decide(request, Principal::Agent, &all, &fields);
        match request.user {
            Some(user) if agent.is_allow() => {
                let human = self.decide(request, Principal::User, &all, &fields);
                delegated(agent, human, user)
            }
            _ => agent,
        }
    }

    fn decide(
        &self,
        request: &Request<'_>,
        who: Principal,
        cut: &Cut,
        fields: &Shared,
    ) -> Decision {
        // A cut of scope-only policies decides the same for the same
        // principal and resource, whatever the context: it is kept.
        let kept = cut.fixed.then(|| {
            let (_, resource) = action_and_resource(request.target);
            let name = match who {
                Principal::Agent => request.agent,
                Principal::User => request.user.unwrap_or_default(),
            };
            key(&[&cut.key, who.name(), name, &resource])
        });
        if let Some(key) = &kept
            && let Some(d) = self.fixed.lock().ok().and_then(|m| m.get(key).cloned())
        {
            return d;
        }
        let decision = match self.cedar_request(request, who, true, fields, cut.needs) {
            Ok((req, entities)) => self.decision(
                &self.authorizer.is_authorized(&req, &cut.set, &entities),
                &cut.set,
            ),
            Err(reason) => return Decision::deny(reason),
        };
        if let Some(key) = kept
            && let Ok(mut m) = self.fixed.lock()
        {
            if m.len() >= MAX_FIXED {
                m.clear();
            }
            m.insert(key, decision.clone());
        }
        decision
    }

    /// Whether `request`'s target belongs in the agent's lists
    /// (`tools/list`, ...). For tools the arguments are unknown, so a tool is
    /// listed when some permit might allow it: the decision with empty
    /// arguments is allow, or no forbid denied it and a permit failed only
    /// because it reads arguments. Calls are still decided one by one.
    pub fn may_list(&self, request: &Request<'_>) -> bool {
        let Target::Tool { .. } = request.target else {
            return self.authorize(request).is_allow();
        };
        let Ok(fields) = self.fields(request) else {
            return false;
        };
        let (action, _) = action_and_resource(request.target);
        let Ok(slice) =
            self.slices
                .agent(request.agent, request.context.task.as_ref(), &self.schema)
        else {
            return false;
        };
        let Ok(cut) = self.cut(&slice, &action) else {
            return false;
        };
        self.may_list_as(request, Principal::Agent, &cut, &fields)
            && request.user.is_none_or(|user| {
                self.cut(&self.slices.user(user), &action)
                    .is_ok_and(|cut| self.may_list_as(request, Principal::User, &cut, &fields))
            })
    }

    fn may_list_as(
        &self,
        request: &Request<'_>,
        who: Principal,
        cut: &Cut,
        fields: &Shared,
    ) -> bool {
        let Ok((req, entities)) = self.cedar_request(request, who, false, fields, cut.needs) else {
            return false;
        };
        let policies = &cut.set;
        let response = self.authorizer.is_authorized(&req, policies, &entities);
        if response.decision() == cedar_policy::Decision::Allow {
            return true;
        }
        let forbidden = response.diagnostics().reason().next().is_some();
        !forbidden
            && response.diagnostics().errors().any(|e| {
                let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = e;
                policies
                    .policy(e.policy_id())
                    .is_some_and(|p| p.effect() == CedarEffect::Permit)
            })
    }

    /// The Cedar request and its entities; `typed` builds `context.args`
    /// from the arguments, otherwise `args` is empty (for lists).
    fn cedar_request(
        &self,
        request: &Request<'_>,
        who: Principal,
        typed: bool,
        fields: &Shared,
        needs: Needs,
    ) -> Result<(cedar_policy::Request, Arc<Entities>), String> {
        let t = &self.types;
        let (principal, name, info) = match (who, request.user) {
            (Principal::User, Some(user)) => (Types::uid(&t.user, user), user, None),
            (Principal::User, None) => return Err("no user to decide for".into()),
            (Principal::Agent, _) => (
                Types::uid(&t.agent, request.agent),
                request.agent,
                Some(&request.context.agent),
            ),
        };
        let principal_entity = || match info {
            Some(_) => self.agent_entity(request, fields),
            None => principal_entity(principal.clone(), None),
        };
        let shared = fields;
        let mut list = Vec::new();
        let (action, resource, context) = match request.target {
            Target::Tool {
                upstream,
                tool,
                args,
            } => {
                let id = tool_action(upstream, tool);
                let entry = self
                    .parts
                    .tools
                    .get(&id)
                    .ok_or_else(|| not_in_catalog(upstream, tool))?;
                let extra = if typed {
                    Extra::Args(self.typed_args(upstream, tool, args, shared)?)
                } else {
                    Extra::NoArgs
                };
                let context = self.context_of(request, shared, needs, extra)?;
                let entities = self.kept_entities(&id, who, name, info, || {
                    entry
                        .base
                        .clone()
                        .add_entities([principal_entity()?], None)
                        .map_err(|e| format!("invalid request entities: {e}"))
                })?;
                let req = cedar_policy::Request::new(
                    principal.clone(),
                    Types::uid(&t.action, &id),
                    Types::uid(&t.tool, &id),
                    context,
                    None,
                )
                .map_err(|e| format!("invalid request: {e}"))?;
                return Ok((req, entities));
            }
            Target::Resource { upstream, uri } => {
                let uid = Types::uid(&t.resource, &format!("{upstream}/{uri}"));
                list.extend(self.child(&uid, upstream));
                list.extend(self.parts.action(ACTION_READ_RESOURCE));
                let context = self.context_of(request, shared, needs, Extra::Uri(uri))?;
                (Types::uid(&t.action, ACTION_READ_RESOURCE), uid, context)
            }
            Target::Prompt { upstream, name } => {
                let uid = Types::uid(&t.prompt, &format!("{upstream}/{name}"));
                list.extend(self.child(&uid, upstream));
                list.extend(self.parts.action(ACTION_GET_PROMPT));
                let context = self.context_of(request, shared, needs, Extra::None)?;
                (Types::uid(&t.action, ACTION_GET_PROMPT), uid, context)
            }
            Target::Upstream { upstream } => {
                let context = self.context_of(request, shared, needs, Extra::None)?;
                let entities = match self.parts.connect.get(upstream) {
                    Some(base) => {
                        let id = format!("{ACTION_CONNECT}\u{0}{upstream}");
                        self.kept_entities(&id, who, name, info, || {
                            base.clone()
                                .add_entities([principal_entity()?], None)
                                .map_err(|e| format!("invalid request entities: {e}"))
                        })?
                    }
                    None => {
                        let mut list: Vec<Entity> = self.parts.action(ACTION_CONNECT).collect();
                        list.push(principal_entity()?);
                        Arc::new(entities(list)?)
                    }
                };
                let req = cedar_policy::Request::new(
                    principal.clone(),
                    Types::uid(&t.action, ACTION_CONNECT),
                    Types::uid(&t.upstream, upstream),
                    context,
                    None,
                )
                .map_err(|e| format!("invalid request: {e}"))?;
                return Ok((req, entities));
            }
        };
        // The context and entities are built from the schema's own types, so
        // they are not validated again (that would cost more than the
        // evaluation).
        list.push(principal_entity()?);
        let req = cedar_policy::Request::new(principal, action, resource, context, None)
            .map_err(|e| format!("invalid request: {e}"))?;
        Ok((req, Arc::new(entities(list)?)))
    }

    /// The entities of a call to `target` (a tool, or `connect` to an
    /// upstream) by one principal: built once, then kept while the
    /// principal's attributes stay the same (an agent's are compared on
    /// every use).
    fn kept_entities(
        &self,
        target: &str,
        who: Principal,
        name: &str,
        info: Option<&AgentInfo>,
        build: impl FnOnce() -> Result<Entities, String>,
    ) -> Result<Arc<Entities>, String> {
        let key = key(&[who.name(), name, target]);
        if let Some(hit) = self.entity_sets.lock().ok().and_then(|m| {
            m.get(&key)
                .filter(|(kept, _)| kept.as_ref() == info)
                .map(|(_, e)| e.clone())
        }) {
            return Ok(hit);
        }
        let built = Arc::new(build()?);
        if let Ok(mut m) = self.entity_sets.lock() {
            if m.len() >= MAX_ENTITY_SETS {
                m.clear();
            }
            m.insert(key, (info.cloned(), built.clone()));
        }
        Ok(built)
    }

    /// A resource or prompt entity in `upstream`, and the upstream.
    fn child(&self, uid: &EntityUid, upstream: &str) -> Vec<Entity> {
        let parent = Types::uid(&self.types.upstream, upstream);
        let mut list = vec![Entity::new_no_attrs(uid.clone(), HashSet::from([parent]))];
        list.extend(self.parts.upstreams.get(upstream).cloned());
        list
    }

    fn decision(&self, response: &Response, set: &PolicySet) -> Decision {
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        let mut policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        policies.sort();
        if !errors.is_empty() {
            return Decision {
                policies,
                reasons: vec!["a policy failed to evaluate, so the request is denied".into()],
                errors,
                ..Decision::deny("")
            };
        }
        // `PolicySet::annotation` parses its key on every call; reading the
        // policy's annotations directly does not.
        let annotation = |id: &String, key: &str| -> Option<String> {
            set.policy(&PolicyId::new(id))?
                .annotations()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_owned())
        };
        let reasons: Vec<String> = policies
            .iter()
            .filter_map(|id| annotation(id, "reason"))
            .collect();
        match response.decision() {
            cedar_policy::Decision::Allow => {
                let mut obligations = Obligations::default();
                for id in &policies {
                    // Validated at load; a grant carries none.
                    obligations.approval = obligations
                        .approval
                        .max(annotation(id, "approval").and_then(|a| a.parse::<Approval>().ok()));
                    if let Some(r) = annotation(id, "redact") {
                        obligations = obligations.merge(Obligations {
                            redact: vec![r],
                            ..Obligations::default()
                        });
                    }
                    if let Some(g) = annotation(id, "approvers") {
                        obligations = obligations.merge(Obligations {
                            approver_groups: approver_groups(&g).unwrap_or_default(),
                            ..Obligations::default()
                        });
                    }
                }
                Decision {
                    obligations,
                    ..Decision::allow(policies, reasons)
                }
            }
            cedar_policy::Decision::Deny if policies.is_empty() => Decision::deny(DEFAULT_DENY),
            cedar_policy::Decision::Deny => Decision {
                policies,
                reasons: if reasons.is_empty() {
                    vec!["forbidden by policy".to_owned()]
                } else {
                    reasons
                },
                ..Decision::deny("")
            },
        }
    }
}

/// The groups of an `@approvers("finance, security")` annotation: names
/// of letters, digits, `-`, `_` and `.`, separated by commas.
fn approver_groups(value: &str) -> Result<Vec<String>, String> {
    let groups: Vec<String> = value.split(',').map(|g| g.trim().to_owned()).collect();
    if groups.iter().any(|g| {
        g.is_empty()
            || g.len() > 64
            || !g
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    }) {
        return Err(format!(
            "`@approvers(\"{value}\")` must list group names separated by commas"
        ));
    }
    Ok(groups)
}

/// Refuses `@approval` values other than `required` and `dual`, an
/// `@approval` on a forbid (it would never apply), and `@approvers` that is
/// malformed or without `@approval`.
fn check_annotations(
    policies: &PolicySet,
    origin: &HashMap<PolicyId, usize>,
    sources: &PolicySources,
) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    for policy in policies.policies() {
        let file = origin
            .get(policy.id())
            .and_then(|i| sources.policies.get(*i))
            .map_or_else(|| "policies".to_owned(), |f| f.name.clone());
        if let Some(value) = policy.annotation("approval") {
            if let Err(e) = value.parse::<Approval>() {
                errors.push(one(&file, format!("policy `{}`: {e}", policy.id())).remove(0));
            } else if let Some(Err(e)) = policy.annotation("approvers").map(approver_groups) {
                errors.push(one(&file, format!("policy `{}`: {e}", policy.id())).remove(0));
            } else if policy.effect() == CedarEffect::Forbid {
                errors.push(
                    one(
                        &file,
                        format!(
                            "policy `{}`: `@approval` applies to permits only",
                            policy.id()
                        ),
                    )
                    .remove(0),
                );
            }
        }
        if policy.annotation("approvers").is_some() && policy.annotation("approval").is_none() {
            errors.push(
                one(
                    &file,
                    format!(
                        "policy `{}`: `@approvers` needs `@approval(\"required\")` or `@approval(\"dual\")`",
                        policy.id()
                    ),
                )
                .remove(0),
            );
        }
    }
    errors
}

/// Whose rights a Cedar request asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Principal {
    /// The agent (`Warden::Agent`).
    Agent,
    /// The human it acts for (`Warden::User`).
    User,
}

impl Principal {
    fn name(self) -> &'static str {
        match self {
            Self::Agent => "Agent",
            Self::User => "User",
        }
    }
}

/// A key of the kept decisions and entities: `parts` joined by NULs (which
/// no name holds).
fn key(parts: &[&str]) -> String {
    let mut key = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push('\0');
        }
        key.push_str(part);
    }
    key
}

/// A delegated request's decision: allowed only if the agent's and the
/// user's decisions both allow; the user's refusal is named as such.
fn delegated(agent: Decision, user: Decision, name: &str) -> Decision {
    let mut policies = agent.policies;
    policies.extend(user.policies);
    policies.sort();
    policies.dedup();
    let mut errors = agent.errors;
    errors.extend(user.errors);
    if user.effect == Effect::Allow {
        let mut reasons = agent.reasons;
        reasons.extend(user.reasons);
        return Decision {
            errors,
            obligations: agent.obligations.merge(user.obligations),
            ..Decision::allow(policies, reasons)
        };
    }
    let reasons = user
        .reasons
        .into_iter()
        .map(|r| format!("the user `{name}` may not do this: {r}"))
        .collect();
    Decision {
        policies,
        reasons,
        errors,
        ..Decision::deny("")
    }
}

fn build_schema(
    sources: &PolicySources,
    catalogs: &Catalogs,
) -> Result<(Schema, BTreeMap<String, ArgType>), Vec<Diagnostic>> {
    if sources.schemas.is_empty() {
        return Err(vec![Diagnostic {
            file: "policies".into(),
            position: None,
            message: "no `*.cedarschema` file: the policy folder needs Warden's Cedar schema"
                .into(),
        }]);
    }
    let mut fragments = Vec::new();
    let mut errors = Vec::new();
    for file in &sources.schemas {
        match SchemaFragment::from_cedarschema_str(&file.text) {
            Ok((fragment, _warnings)) => fragments.push(fragment),
            Err(e) => errors.push(diagnostic(file, &e)),
        }
    }
    let (generated, arg_types) = tool_fragment(catalogs);
    match SchemaFragment::from_json_value(generated) {
        Ok(fragment) => fragments.push(fragment),
        Err(e) => errors.push(Diagnostic {
            file: "schema".into(),
            position: None,
            message: format!("the actions generated from the tool catalogs do not fit: {e}"),
        }),
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let schema = Schema::from_schema_fragments(fragments).map_err(|e| {
        let mut message = e.to_string();
        if let Some(help) = miette::Diagnostic::help(&e) {
            message.push_str(&format!(" (help: {help})"));
        }
        vec![Diagnostic {
            file: "schema".into(),
            position: None,
            message,
        }]
    })?;
    Ok((schema, arg_types))
}

/// Parses every policy file; ids come from `@id("…")` or `<file>#<n>`.
fn parse_policies(
    sources: &PolicySources,
) -> Result<(PolicySet, HashMap<PolicyId, usize>), Vec<Diagnostic>> {
    let mut set = PolicySet::new();
    let mut origin = HashMap::new();
    let mut errors = Vec::new();
    for (index, file) in sources.policies.iter().enumerate() {
        let parsed = match PolicySet::from_str(&file.text) {
            Ok(p) => p,
            Err(e) => {
                errors.extend(e.iter().map(|pe| diagnostic(file, pe)));
                continue;
            }
        };
        if parsed.templates().next().is_some() {
            errors.push(Diagnostic {
                file: file.name.clone(),
                position: None,
                message: "policy templates are not supported in policy files".into(),
            });
        }
        for (n, policy) in parsed.policies().enumerate() {
            let id = policy
                .annotation("id")
                .map_or_else(|| format!("{}#{n}", file.name), str::to_owned);
            let id = PolicyId::new(id);
            if let Err(e) = set.add(policy.new_id(id.clone())) {
                errors.push(Diagnostic {
                    file: file.name.clone(),
                    position: None,
                    message: e.to_string(),
                });
                continue;
            }
            origin.insert(id, index);
        }
    }
    if errors.is_empty() {
        Ok((set, origin))
    } else {
        Err(errors)
    }
}

fn not_in_catalog(upstream: &str, tool: &str) -> String {
    format!("tool `{tool}` is not in the catalog of upstream `{upstream}`")
}

/// What the decisions of one request share, built once: the common context
/// fields, the context with the tool's arguments and the agent's entity.
struct Shared {
    user: Option<EntityUid>,
    /// `context.args`, typed.
    args: RefCell<Option<RestrictedExpression>>,
    /// The contexts built so far, by needs and target fields.
    contexts: RefCell<Vec<((u16, u8), cedar_policy::Context)>>,
    agent: RefCell<Option<Entity>>,
}

/// A target's own context fields.
enum Extra<'a> {
    None,
    /// A tool call's typed arguments.
    Args(RestrictedExpression),
    /// A tool listed, its arguments unknown: `args` is empty.
    NoArgs,
    /// A resource's URI.
    Uri(&'a str),
}

impl Extra<'_> {
    fn tag(&self) -> u8 {
        match self {
            Self::None => 0,
            Self::Args(_) => 1,
            Self::NoArgs => 2,
            Self::Uri(_) => 3,
        }
    }
}

#[cfg(test)]
mod tests;
