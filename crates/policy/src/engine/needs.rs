//! Which fields of the context a set of policies reads, so that a request's
//! context holds those and no others: building a Cedar context costs more
//! than deciding with a few policies, and most policies read one or two
//! fields (`context.args`, `context.mtls`, ...).
//!
//! The analysis is conservative: a policy reads `context.X` or asks
//! `context has X`; wherever `context` appears otherwise (compared whole,
//! or in a form this walk does not know), the policy needs every field.
//! A field left out that a policy did read would only make that policy
//! fail to evaluate, and an evaluation error denies.

use cedar_policy::Policy;
use serde_json::Value;

/// A set of top-level context fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Needs(u16);

/// The context fields Warden gives, in bit order.
const FIELDS: [&str; 9] = [
    "now",
    "source_ip",
    "mtls",
    "session",
    "risk",
    "task",
    "user",
    "args",
    "uri",
];

impl Needs {
    /// Every field.
    pub(crate) const ALL: Self = Self((1 << FIELDS.len()) - 1);

    /// Whether `field` is needed.
    pub(crate) fn has(self, field: &str) -> bool {
        FIELDS
            .iter()
            .position(|f| *f == field)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }

    /// The bits, to tell needs apart.
    pub(crate) fn bits(self) -> u16 {
        self.0
    }

    fn add(&mut self, field: &str) {
        match FIELDS.iter().position(|f| *f == field) {
            Some(i) => self.0 |= 1 << i,
            // Not a field Warden gives: reading it fails whatever is
            // built, but keep everything rather than guess.
            None => *self = Self::ALL,
        }
    }

    /// The union of the fields `policies` read.
    pub(crate) fn of<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> Self {
        let mut needs = Self::default();
        for policy in policies {
            match policy.to_json() {
                Ok(est) => walk(&est, &mut needs),
                Err(_) => return Self::ALL,
            }
            if needs == Self::ALL {
                break;
            }
        }
        needs
    }
}

fn is_context(v: &Value) -> bool {
    v.get("Var").and_then(Value::as_str) == Some("context")
}

/// Adds to `needs` what the policy (in Cedar's JSON form) reads of the
/// context.
fn walk(v: &Value, needs: &mut Needs) {
    match v {
        Value::Object(map) => {
            if is_context(v) {
                // `context` itself, not one of its fields.
                *needs = Needs::ALL;
                return;
            }
            for (key, value) in map {
                let field = (key == "." || key == "has")
                    .then(|| {
                        let left = value.get("left")?;
                        let attr = value.get("attr")?.as_str()?;
                        is_context(left).then_some(attr)
                    })
                    .flatten();
                match field {
                    Some(attr) => needs.add(attr),
                    None => walk(value, needs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, needs)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn needs(text: &str) -> Needs {
        Needs::of([&Policy::from_str(text).unwrap()])
    }

    #[test]
    fn the_fields_a_policy_reads_are_found_and_nothing_is_guessed() {
        let none = needs("permit(principal, action, resource);");
        assert_eq!(none, Needs::default());
        let n = needs(
            r#"permit(principal, action, resource) when { context.args.limit <= 100 && context has task };"#,
        );
        assert!(n.has("args") && n.has("task"));
        assert!(!n.has("now") && !n.has("mtls") && !n.has("user"));
        let n = needs(
            r#"forbid(principal, action, resource) unless { context.mtls || context.now.hour < 18 };"#,
        );
        assert!(n.has("mtls") && n.has("now") && !n.has("args"));
        // `context` used whole, or a field Warden does not give: everything.
        for whole in [
            r#"permit(principal, action, resource) when { context == {} };"#,
            r#"permit(principal, action, resource) when { context.other == 1 };"#,
            r#"permit(principal, action, resource) when { [context].contains(context) };"#,
            r#"permit(principal, action, resource) when { context["args"] == {} && context has session.taint };"#,
        ] {
            let n = needs(whole);
            assert!(
                n == Needs::ALL || (n.has("args") && n.has("session")),
                "{whole}: {n:?}"
            );
        }
        assert_eq!(
            needs(r#"permit(principal, action, resource) when { context == {} };"#),
            Needs::ALL
        );
    }
}
