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

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use cedar_policy::{
    Policy, PolicyId, PolicySet, PrincipalConstraint, Schema, ValidationMode, Validator,
};

use super::request::{TaskGrant, Types};

/// Grant sets kept at most; the cache is emptied when full.
const MAX_GRANT_SETS: usize = 50_000;

#[derive(Debug)]
pub(crate) struct Slices {
    common: PolicySet,
    by_agent: HashMap<String, PolicySet>,
    by_user: HashMap<String, PolicySet>,
    grants: Mutex<HashMap<String, Arc<PolicySet>>>,
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
        })
    }

    pub(crate) fn of_agent(&self, agent: &str) -> &PolicySet {
        self.by_agent.get(agent).unwrap_or(&self.common)
    }

    pub(crate) fn of_user(&self, user: &str) -> &PolicySet {
        self.by_user.get(user).unwrap_or(&self.common)
    }

    /// The agent's slice plus the task's grant, built (and validated) once
    /// per task.
    pub(crate) fn with_grant(
        &self,
        agent: &str,
        task: &TaskGrant,
        schema: &Schema,
    ) -> Result<Arc<PolicySet>, String> {
        // Tasks never change their tools, but a key over all of the grant
        // means a cached set can only ever be the same grant.
        let key = format!(
            "{agent}\u{0}{}\u{0}{}\u{0}{}",
            task.agent,
            task.id,
            task.tools.join("\u{0}")
        );
        if let Some(set) = self.grants.lock().ok().and_then(|g| g.get(&key).cloned()) {
            return Ok(set);
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
            grants.insert(key, set.clone());
        }
        Ok(set)
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
