//! The result of authorization, with the reasons that explain it.

use serde::{Deserialize, Serialize};

/// Allow or deny. Anything that is not an explicit allow is a deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The request may proceed.
    Allow,
    /// The request is refused.
    Deny,
}

/// An authorization decision and why it was made.
///
/// A `Decision` never hides an error: policy evaluation errors are kept in
/// `errors` and always make the effect [`Effect::Deny`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Allow or deny.
    pub effect: Effect,
    /// The ids of the policies that determined the decision: the permits that
    /// allowed, or the forbids that denied. Empty for a default deny.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Human-readable reasons, from `@reason` annotations or from Warden.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Evaluation errors; any error means deny.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Decision {
    /// A deny that no policy produced: authentication failed, the request was
    /// malformed, or no policy permitted it.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            effect: Effect::Deny,
            policies: Vec::new(),
            reasons: vec![reason.into()],
            errors: Vec::new(),
        }
    }

    /// Whether the request may proceed.
    pub fn is_allow(&self) -> bool {
        self.effect == Effect::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_carries_its_reason() {
        let d = Decision::deny("no policy permits this");
        assert!(!d.is_allow());
        assert_eq!(d.reasons, vec!["no policy permits this".to_owned()]);
    }
}
