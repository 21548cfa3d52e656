//! The policy set cut per principal, and the just-in-time grants of open
//! tasks.
//!
//! A request from agent `a` can only be decided by policies whose principal
//! is unconstrained or could be `a`, so `a`'s slice holds those and leaves
//! out policies naming other agents or users (`principal ==
//! Warden::Agent::"b"`); the same for users. A task's grant is one permit,
//! generated while the task is open, added to its agent's slice and used only
//! for that task's requests. Evaluation cost follows the principal's own
//! policies, not the size of the set or the number of tasks.
//!
//! Each slice is cut once more per action ([`Cut`]): a policy whose action
//! scope cannot match the action (`action == A`, `action in [G]` where the
//! action is neither `A` nor in `G`) is left out, since Cedar would find its
//! scope false before reading its condition. `connect` is then decided by the
//! few policies about `connect`, a tool by the policies about that tool. A
//! cut's policies keep no action scope: the cut already matched it.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use cedar_policy::{
    ActionConstraint, EntityUid, Policy, PolicyId, PolicySet, PrincipalConstraint,
    ResourceConstraint, Schema, ValidationMode, Validator,
};

use super::needs::Needs;
use super::request::{TaskGrant, Types};

/// Grant sets kept at most; the cache is emptied when full.
const MAX_GRANT_SETS: usize = 50_000;

/// Cuts kept at most; the cache is emptied when full.
const MAX_CUTS: usize = 50_000;

#[derive(Debug)]
pub(crate) struct Slices {
    common: PolicySet,
    by_agent: HashMap<String, PolicySet>,
    by_user: HashMap<String, PolicySet>,
    grants: Mutex<HashMap<String, Arc<PolicySet>>>,
    cuts: Mutex<HashMap<String, Arc<Cut>>>,
    /// Every loaded policy without its action scope
    /// ([`without_action_scope`]), made once at load: a cut of the loaded
    /// slices takes these instead of rewriting its policies again.
    unscoped: HashMap<PolicyId, Policy>,
}

/// A principal's slice (or a task's grant set) and the name it is cached
/// under: agents without policies of their own share `common`.
pub(crate) struct Slice<'a> {
    pub(crate) key: String,
    pub(crate) set: SliceSet<'a>,
}

/// A slice's policies, borrowed from the engine or a task's grant set.
pub(crate) enum SliceSet<'a> {
    Borrowed(&'a PolicySet),
    Grant(Arc<PolicySet>),
}

impl SliceSet<'_> {
    fn get(&self) -> &PolicySet {
        match self {
            Self::Borrowed(s) => s,
            Self::Grant(s) => s,
        }
    }
}

/// The policies of one slice whose action scope can match one action.
#[derive(Debug)]
pub(crate) struct Cut {
    /// The slice and action it was cut for (the key of cached decisions).
    pub(crate) key: String,
    pub(crate) set: PolicySet,
    /// Every policy in it is scope alone (no `when`/`unless`), with a
    /// principal and a resource that are unconstrained or `==`: the
    /// decision then depends on the principal and the resource and on
    /// nothing else (no context, attribute or hierarchy), and can be kept.
    pub(crate) fixed: bool,
    /// The context fields its policies read.
    pub(crate) needs: Needs,
}

/// Whether `policy`'s action scope can match the action whose uid and
/// groups are `within` (the action first).
fn may_apply(policy: &Policy, within: &[EntityUid]) -> bool {
    match policy.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(uid) => within.first() == Some(&uid),
        ActionConstraint::In(list) => list.iter().any(|uid| within.contains(uid)),
    }
}

/// `policy` as it decides within a cut: with `action` for its action
/// scope, which [`may_apply`] has found to match the one action the cut is
/// for (a cut is only ever used for that action). Cedar would evaluate the
/// scope again on every request, building the set of an `action in [...]`
/// each time, or walking the action's groups; the decision, its
/// determining policies and their annotations are the same. A policy that
/// cannot be rewritten (a template's link) is kept as it is.
fn without_action_scope(policy: &Policy) -> Policy {
    if !policy.is_static() || matches!(policy.action_constraint(), ActionConstraint::Any) {
        return policy.clone();
    }
    policy
        .to_json()
        .ok()
        .and_then(|mut json| {
            *json.get_mut("action")? = serde_json::json!({ "op": "All" });
            Policy::from_json(Some(policy.id().clone()), json).ok()
        })
        .unwrap_or_else(|| policy.clone())
}

/// Whether `policy` decides from the principal's and resource's uids alone.
fn is_fixed(policy: &Policy) -> bool {
    !policy.has_non_scope_constraint()
        && matches!(
            policy.principal_constraint(),
            PrincipalConstraint::Any | PrincipalConstraint::Eq(_)
        )
        && matches!(
            policy.resource_constraint(),
            ResourceConstraint::Any | ResourceConstraint::Eq(_)
        )
}

impl Slices {
    pub(crate) fn new(policies: &PolicySet, types: &Types) -> Result<Self, String> {
        let mut common = Vec::new();
        let mut agents: HashMap<String, Vec<Policy>> = HashMap::new();
        let mut users: HashMap<String, Vec<Policy>> = HashMap::new();
        for policy in policies.policies() {
            match policy.principal_constraint() {
                PrincipalConstraint::Eq(uid) if uid.type_name() == &types.agent => {
                    agents
                        .entry(uid.id().unescaped().to_owned())
                        .or_default()
                        .push(policy.clone());
                }
                PrincipalConstraint::Eq(uid) if uid.type_name() == &types.user => {
                    users
                        .entry(uid.id().unescaped().to_owned())
                        .or_default()
                        .push(policy.clone());
                }
                _ => common.push(policy.clone()),
            }
        }
        let common_set = PolicySet::from_policies(common.clone()).map_err(|e| e.to_string())?;
        let slice = |specific: HashMap<String, Vec<Policy>>| {
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
            grants: Mutex::new(HashMap::new()),
            cuts: Mutex::new(HashMap::new()),
            unscoped: policies
                .policies()
                .map(|p| (p.id().clone(), without_action_scope(p)))
                .collect(),
        })
    }

    fn of_agent(&self, agent: &str) -> &PolicySet {
        self.by_agent.get(agent).unwrap_or(&self.common)
    }

    /// The agent's slice: its own policies and the common ones, plus the
    /// task's grant when the request carries one.
    pub(crate) fn agent<'a>(
        &'a self,
        agent: &str,
        task: Option<&TaskGrant>,
        schema: &Schema,
    ) -> Result<Slice<'a>, String> {
        if let Some(task) = task {
            let (key, set) = self.with_grant(agent, task, schema)?;
            return Ok(Slice {
                key: super::key(&["g", &key]),
                set: SliceSet::Grant(set),
            });
        }
        Ok(match self.by_agent.get(agent) {
            Some(set) => Slice {
                key: super::key(&["a", agent]),
                set: SliceSet::Borrowed(set),
            },
            None => Slice {
                key: "common".to_owned(),
                set: SliceSet::Borrowed(&self.common),
            },
        })
    }

    /// The user's slice: their own policies and the common ones.
    pub(crate) fn user(&self, user: &str) -> Slice<'_> {
        match self.by_user.get(user) {
            Some(set) => Slice {
                key: super::key(&["u", user]),
                set: SliceSet::Borrowed(set),
            },
            None => Slice {
                key: "common".to_owned(),
                set: SliceSet::Borrowed(&self.common),
            },
        }
    }

    /// `slice` cut to the policies that can apply to `action` (its uid and
    /// groups from `within`, asked only when the cut is not cached yet).
    pub(crate) fn cut(
        &self,
        slice: &Slice<'_>,
        action: &str,
        within: impl FnOnce() -> Vec<EntityUid>,
    ) -> Result<Arc<Cut>, String> {
        let key = super::key(&[&slice.key, action]);
        if let Some(cut) = self.cuts.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(cut);
        }
        let within = within();
        // A task's grant set holds a policy that was not loaded (and whose
        // id a loaded one might share): its policies are rewritten here.
        let loaded = matches!(slice.set, SliceSet::Borrowed(_));
        let policies: Vec<Policy> = slice
            .set
            .get()
            .policies()
            .filter(|p| may_apply(p, &within))
            .map(|p| match self.unscoped.get(p.id()) {
                Some(unscoped) if loaded => unscoped.clone(),
                _ => without_action_scope(p),
            })
            .collect();
        let fixed = policies.iter().all(is_fixed);
        let needs = Needs::of(&policies);
        let set = PolicySet::from_policies(policies).map_err(|e| e.to_string())?;
        let cut = Arc::new(Cut {
            key: key.clone(),
            set,
            fixed,
            needs,
        });
        if let Ok(mut cuts) = self.cuts.lock() {
            if cuts.len() >= MAX_CUTS {
                cuts.clear();
            }
            cuts.insert(key, cut.clone());
        }
        Ok(cut)
    }

    /// The agent's slice plus the task's grant, built (and validated) once
    /// per task; with the key it is cached under.
    fn with_grant(
        &self,
        agent: &str,
        task: &TaskGrant,
        schema: &Schema,
    ) -> Result<(String, Arc<PolicySet>), String> {
        // Tasks never change their tools, but a key over all of the grant
        // means a cached set can only ever be the same grant.
        let key = format!(
            "{agent}\u{0}{}\u{0}{}\u{0}{}",
            task.agent,
            task.id,
            task.tools.join("\u{0}")
        );
        if let Some(set) = self.grants.lock().ok().and_then(|g| g.get(&key).cloned()) {
            return Ok((key, set));
        }
        let grant = grant_policy(task)?;
        let alone = PolicySet::from_policies([grant.clone()]).map_err(|e| e.to_string())?;
        let check = Validator::new(schema.clone()).validate(&alone, ValidationMode::Strict);
        if let Some(e) = check.validation_errors().next() {
            return Err(format!("the grant of task `{}` is invalid: {e}", task.id));
        }
        let mut set = self.of_agent(agent).clone();
        set.add(grant).map_err(|e| e.to_string())?;
        let set = Arc::new(set);
        if let Ok(mut grants) = self.grants.lock() {
            if grants.len() >= MAX_GRANT_SETS {
                grants.clear();
            }
            grants.insert(key.clone(), set.clone());
        }
        Ok((key, set))
    }
}

/// Escapes `s` for a Cedar string literal.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The task's grant: a permit for its agent, its tools, and requests that
/// carry the task.
pub(crate) fn grant_policy(task: &TaskGrant) -> Result<Policy, String> {
    if task.tools.is_empty() {
        return Err(format!("task `{}` grants no tool", task.id));
    }
    let actions: Vec<String> = task
        .tools
        .iter()
        .map(|t| format!("Warden::Action::{}", quoted(t)))
        .collect();
    let id = format!("task:{}", task.id);
    let text = format!(
        "@id({id}) @reason({reason}) permit(principal == Warden::Agent::{agent}, action in [{actions}], resource) when {{ context has task && context.task.id == {task_id} }};",
        id = quoted(&id),
        reason = quoted(&format!("task `{}`: {}", task.id, task.purpose)),
        agent = quoted(&task.agent),
        actions = actions.join(", "),
        task_id = quoted(&task.id),
    );
    Policy::from_str(&text)
        .map(|p| p.new_id(PolicyId::new(id)))
        .map_err(|e| format!("the grant of task `{}` does not parse: {e}", task.id))
}
