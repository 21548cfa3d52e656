//! Building a validated engine and answering requests with it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Effect as CedarEffect, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicyId, PolicySet, Response, RestrictedExpression, Schema, SchemaFragment,
    ValidationMode, Validator,
};
use serde_json::{Map, Value};
use warden_core::{Decision, Effect};

use crate::args::ArgType;
use crate::schema::{
    ACTION_GET_PROMPT, ACTION_READ_RESOURCE, Catalogs, tool_action, tool_fragment,
};
use crate::source::{Diagnostic, PolicySources, diagnostic};

/// What is asked: who, and what they want to do.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The agent's name (`Warden::Agent::"<name>"`).
    pub agent: &'a str,
    /// The human the agent acts for (`context.user`).
    pub user: Option<&'a str>,
    /// The target.
    pub target: Target<'a>,
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
}

/// Entity type names, parsed once.
#[derive(Debug, Clone)]
struct Types {
    agent: EntityTypeName,
    user: EntityTypeName,
    action: EntityTypeName,
    upstream: EntityTypeName,
    tool: EntityTypeName,
    resource: EntityTypeName,
    prompt: EntityTypeName,
}

impl Types {
    fn new() -> Result<Self, String> {
        let t = |s: &str| EntityTypeName::from_str(s).map_err(|e| e.to_string());
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

    fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

/// A validated policy set with its schema, ready to answer requests.
#[derive(Debug)]
pub struct PolicyEngine {
    schema: Schema,
    policies: PolicySet,
    slices: Slices,
    entities: Entities,
    arg_types: BTreeMap<String, ArgType>,
    types: Types,
    authorizer: Authorizer,
    version: String,
}

const DEFAULT_DENY: &str = "no policy permits this request";

impl PolicyEngine {
    /// Builds the schema (the folder's schema files plus one action per
    /// catalog tool), parses the policies and validates them strictly.
    /// Every problem found is returned, each with its file and line.
    pub fn build(sources: &PolicySources, catalogs: &Catalogs) -> Result<Self, Vec<Diagnostic>> {
        let types = Types::new().map_err(|m| {
            vec![Diagnostic {
                file: "warden".into(),
                position: None,
                message: m,
            }]
        })?;
        let (schema, arg_types) = build_schema(sources, catalogs)?;
        let (policies, origin) = parse_policies(sources)?;
        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        let errors: Vec<Diagnostic> = result
            .validation_errors()
            .map(|e| {
                match origin
                    .get(e.policy_id())
                    .and_then(|i| sources.policies.get(*i))
                {
                    Some(file) => diagnostic(file, e),
                    None => Diagnostic {
                        file: "policies".into(),
                        position: None,
                        message: e.to_string(),
                    },
                }
            })
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let entities = catalog_entities(&types, catalogs, &schema).map_err(|m| {
            vec![Diagnostic {
                file: "schema".into(),
                position: None,
                message: format!("tool entities: {m}"),
            }]
        })?;
        let slices = Slices::new(&policies, &types).map_err(|m| {
            vec![Diagnostic {
                file: "policies".into(),
                position: None,
                message: m,
            }]
        })?;
        Ok(Self {
            schema,
            slices,
            policies,
            entities,
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

    /// Decides a request. Default deny; any evaluation error denies. When
    /// the agent acts for a user, the user must be permitted too (G3).
    pub fn authorize(&self, request: &Request<'_>) -> Decision {
        let agent = self.decide(
            request,
            Principal::Agent,
            self.slices.of_agent(request.agent),
        );
        match request.user {
            Some(user) if agent.is_allow() => {
                let human = self.decide(request, Principal::User, self.slices.of_user(user));
                delegated(agent, human, user)
            }
            _ => agent,
        }
    }

    /// Decides with the whole policy set instead of the slices: the
    /// reference the slices are tested against.
    #[cfg(test)]
    fn authorize_unsliced(&self, request: &Request<'_>) -> Decision {
        let agent = self.decide(request, Principal::Agent, &self.policies);
        match request.user {
            Some(user) if agent.is_allow() => {
                let human = self.decide(request, Principal::User, &self.policies);
                delegated(agent, human, user)
            }
            _ => agent,
        }
    }

    fn decide(&self, request: &Request<'_>, who: Principal, policies: &PolicySet) -> Decision {
        match self.cedar_request(request, who, true) {
            Ok((req, entities)) => {
                let entities = entities.as_ref().unwrap_or(&self.entities);
                self.decision(&self.authorizer.is_authorized(&req, policies, entities))
            }
            Err(reason) => Decision::deny(reason),
        }
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
        self.may_list_as(
            request,
            Principal::Agent,
            self.slices.of_agent(request.agent),
        ) && request.user.is_none_or(|user| {
            self.may_list_as(request, Principal::User, self.slices.of_user(user))
        })
    }

    fn may_list_as(&self, request: &Request<'_>, who: Principal, policies: &PolicySet) -> bool {
        let Ok((req, _)) = self.cedar_request(request, who, false) else {
            return false;
        };
        let response = self
            .authorizer
            .is_authorized(&req, policies, &self.entities);
        if response.decision() == cedar_policy::Decision::Allow {
            return true;
        }
        let forbidden = response.diagnostics().reason().next().is_some();
        !forbidden
            && response.diagnostics().errors().any(|e| {
                let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = e;
                self.policies
                    .policy(e.policy_id())
                    .is_some_and(|p| p.effect() == CedarEffect::Permit)
            })
    }

    /// The Cedar request; `typed` builds `context.args` from the arguments
    /// and validates against the schema, otherwise `args` is empty.
    fn cedar_request(
        &self,
        request: &Request<'_>,
        who: Principal,
        typed: bool,
    ) -> Result<(cedar_policy::Request, Option<Entities>), String> {
        let t = &self.types;
        let principal = match (who, request.user) {
            (Principal::User, Some(user)) => Types::uid(&t.user, user),
            (Principal::User, None) => return Err("no user to decide for".into()),
            (Principal::Agent, _) => Types::uid(&t.agent, request.agent),
        };
        let mut context: Vec<(String, RestrictedExpression)> = Vec::with_capacity(2);
        let (action, resource, extra) = match request.target {
            Target::Tool {
                upstream,
                tool,
                args,
            } => {
                let id = tool_action(upstream, tool);
                let args = if typed {
                    let Some(ty) = self.arg_types.get(&id) else {
                        return Err(format!(
                            "tool `{tool}` is not in the catalog of upstream `{upstream}`"
                        ));
                    };
                    ty.to_cedar(&Value::Object(args.clone()), "")?
                } else {
                    RestrictedExpression::new_record([]).map_err(|e| e.to_string())?
                };
                context.push(("args".into(), args));
                (Types::uid(&t.action, &id), Types::uid(&t.tool, &id), None)
            }
            Target::Resource { upstream, uri } => {
                let entity = Types::uid(&t.resource, &format!("{upstream}/{uri}"));
                let extra = self.with_child(&entity, upstream)?;
                context.push((
                    "uri".into(),
                    RestrictedExpression::new_string(uri.to_owned()),
                ));
                (
                    Types::uid(&t.action, ACTION_READ_RESOURCE),
                    entity,
                    Some(extra),
                )
            }
            Target::Prompt { upstream, name } => {
                let entity = Types::uid(&t.prompt, &format!("{upstream}/{name}"));
                let extra = self.with_child(&entity, upstream)?;
                (
                    Types::uid(&t.action, ACTION_GET_PROMPT),
                    entity,
                    Some(extra),
                )
            }
        };
        if let Some(user) = request.user {
            context.push((
                "user".into(),
                RestrictedExpression::new_entity_uid(Types::uid(&t.user, user)),
            ));
        }
        // The context is built from the schema's own types, so it is not
        // validated again (that would cost more than the evaluation).
        let context =
            Context::from_pairs(context).map_err(|e| format!("invalid request context: {e}"))?;
        let req = cedar_policy::Request::new(principal, action, resource, context, None)
            .map_err(|e| format!("invalid request: {e}"))?;
        Ok((req, extra))
    }

    /// The catalog entities plus `child` (a resource or prompt) in `upstream`.
    fn with_child(&self, child: &EntityUid, upstream: &str) -> Result<Entities, String> {
        let parent = Types::uid(&self.types.upstream, upstream);
        let entity = Entity::new_no_attrs(child.clone(), HashSet::from([parent]));
        self.entities
            .clone()
            .add_entities([entity], Some(&self.schema))
            .map_err(|e| format!("invalid request entities: {e}"))
    }

    fn decision(&self, response: &Response) -> Decision {
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
                effect: Effect::Deny,
                policies,
                reasons: vec!["a policy failed to evaluate, so the request is denied".into()],
                errors,
            };
        }
        let reasons: Vec<String> = policies
            .iter()
            .filter_map(|id| {
                self.policies
                    .annotation(&PolicyId::new(id), "reason")
                    .map(str::to_owned)
            })
            .collect();
        match response.decision() {
            cedar_policy::Decision::Allow => Decision {
                effect: Effect::Allow,
                policies,
                reasons,
                errors,
            },
            cedar_policy::Decision::Deny if policies.is_empty() => Decision::deny(DEFAULT_DENY),
            cedar_policy::Decision::Deny => {
                let reasons = if reasons.is_empty() {
                    vec!["forbidden by policy".to_owned()]
                } else {
                    reasons
                };
                Decision {
                    effect: Effect::Deny,
                    policies,
                    reasons,
                    errors,
                }
            }
        }
    }
}

/// Whose rights a Cedar request asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Principal {
    /// The agent (`Warden::Agent`).
    Agent,
    /// The human it acts for (`Warden::User`).
    User,
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
            effect: Effect::Allow,
            policies,
            reasons,
            errors,
        };
    }
    let reasons = user
        .reasons
        .into_iter()
        .map(|r| format!("the user `{name}` may not do this: {r}"))
        .collect();
    Decision {
        effect: Effect::Deny,
        policies,
        reasons,
        errors,
    }
}

/// The policy set cut per principal: a request from agent `a` can only be
/// decided by policies whose principal is unconstrained or could be `a`, so
/// `a`'s slice holds those and leaves out policies naming other agents or
/// users (`principal == Warden::Agent::"b"`); the same for users. Evaluation
/// cost then follows the principal's own policies, not the size of the set.
#[derive(Debug)]
struct Slices {
    common: PolicySet,
    by_agent: HashMap<String, PolicySet>,
    by_user: HashMap<String, PolicySet>,
}

impl Slices {
    fn new(policies: &PolicySet, types: &Types) -> Result<Self, String> {
        let mut common = Vec::new();
        let mut agents: HashMap<String, Vec<cedar_policy::Policy>> = HashMap::new();
        let mut users: HashMap<String, Vec<cedar_policy::Policy>> = HashMap::new();
        for policy in policies.policies() {
            match policy.principal_constraint() {
                cedar_policy::PrincipalConstraint::Eq(uid) if uid.type_name() == &types.agent => {
                    agents
                        .entry(uid.id().unescaped().to_owned())
                        .or_default()
                        .push(policy.clone());
                }
                cedar_policy::PrincipalConstraint::Eq(uid) if uid.type_name() == &types.user => {
                    users
                        .entry(uid.id().unescaped().to_owned())
                        .or_default()
                        .push(policy.clone());
                }
                _ => common.push(policy.clone()),
            }
        }
        let common_set = PolicySet::from_policies(common.clone()).map_err(|e| e.to_string())?;
        let slice = |specific: HashMap<String, Vec<cedar_policy::Policy>>| {
            specific
                .into_iter()
                .map(|(name, own)| {
                    let set = PolicySet::from_policies(common.iter().cloned().chain(own))
                        .map_err(|e| e.to_string())?;
                    Ok((name, set))
                })
                .collect::<Result<HashMap<_, _>, String>>()
        };
        Ok(Self {
            by_agent: slice(agents)?,
            by_user: slice(users)?,
            common: common_set,
        })
    }

    fn of_agent(&self, agent: &str) -> &PolicySet {
        self.by_agent.get(agent).unwrap_or(&self.common)
    }

    fn of_user(&self, user: &str) -> &PolicySet {
        self.by_user.get(user).unwrap_or(&self.common)
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

/// Upstream and tool entities (tools are children of their upstream).
fn catalog_entities(
    types: &Types,
    catalogs: &Catalogs,
    schema: &Schema,
) -> Result<Entities, String> {
    let mut entities = Vec::new();
    for (upstream, catalog) in catalogs {
        let parent = Types::uid(&types.upstream, upstream.as_str());
        entities.push(Entity::new_no_attrs(parent.clone(), HashSet::new()));
        for tool in &catalog.tools {
            let uid = Types::uid(&types.tool, &tool_action(upstream.as_str(), &tool.name));
            entities.push(Entity::new_no_attrs(uid, HashSet::from([parent.clone()])));
        }
    }
    Entities::from_entities(entities, Some(schema)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
