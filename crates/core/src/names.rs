//! Newtypes for the names Warden trusts only after validation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// A name that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} `{value}`: {rule}")]
pub struct NameError {
    kind: &'static str,
    value: String,
    rule: &'static str,
}

/// Checks `value` against Warden's name rule: 1 to `max` characters from
/// `[a-z0-9]` and `extra`, starting with a letter or a digit.
fn check(
    kind: &'static str,
    value: &str,
    extra: &[char],
    max: usize,
    rule: &'static str,
) -> Result<(), NameError> {
    let shown: String = value.chars().take(80).collect();
    let err = || NameError {
        kind,
        value: shown.clone(),
        rule,
    };
    let mut chars = value.chars();
    let first = chars.next().ok_or_else(err)?;
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) || value.len() > max {
        return Err(err());
    }
    if chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(&c)) {
        Ok(())
    } else {
        Err(err())
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $extra:expr, $max:literal, $rule:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `value` and wraps it.
            pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
                let value = value.into();
                check($kind, &value, $extra, $max, $rule)?;
                Ok(Self(value))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::new(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A tenant: every object belongs to exactly one.
    TenantId, "tenant", &['-', '_'], 63, "use 1-63 characters from a-z, 0-9, `-`, `_`"
);
name_type!(
    /// An agent's name, unique within its tenant.
    AgentName, "agent name", &['-', '_', '.'], 63, "use 1-63 characters from a-z, 0-9, `-`, `_`, `.`"
);
name_type!(
    /// An upstream's name. It cannot hold a `.`, which separates the upstream
    /// from the tool in federated tool names (`crm.get_customer`).
    UpstreamName, "upstream name", &['-', '_'], 63, "use 1-63 characters from a-z, 0-9, `-`, `_`"
);
name_type!(
    /// A human user's name (Warden directory user or OIDC subject).
    UserName, "user name", &['-', '_', '.', '@'], 128, "use 1-128 characters from a-z, 0-9, `-`, `_`, `.`, `@`"
);

/// The id of one request through the gateway: a UUIDv7, so ids sort by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(uuid::Uuid);

impl RequestId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The lifecycle state of an agent. Only an `Active` agent is let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// May authenticate.
    Active,
    /// Temporarily refused; `resume` makes it active again.
    Suspended,
    /// Refused for good; a revoked agent is never resumed.
    Revoked,
    /// Taken out of service as planned; like revoked, final.
    Retired,
}

impl AgentState {
    /// The state's lowercase name, as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Revoked => "revoked",
            Self::Retired => "retired",
        }
    }

    /// Revoked and retired agents never change state again.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Revoked | Self::Retired)
    }
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AgentState {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "revoked" => Ok(Self::Revoked),
            "retired" => Ok(Self::Retired),
            other => Err(NameError {
                kind: "agent state",
                value: other.chars().take(80).collect(),
                rule: "expected `active`, `suspended`, `revoked` or `retired`",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_documented_alphabet() {
        assert!(AgentName::new("support-bot.v2").is_ok());
        assert!(UpstreamName::new("crm_eu-1").is_ok());
        assert!(UserName::new("alice@example.com").is_ok());
    }

    #[test]
    fn names_reject_everything_else() {
        for bad in ["", "-x", "A", "a b", "a/b", "é", &"a".repeat(64)] {
            assert!(AgentName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            UpstreamName::new("crm.eu").is_err(),
            "dots separate federated names"
        );
        let err = AgentName::new("Bad Name").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid agent name `Bad Name`: use 1-63 characters from a-z, 0-9, `-`, `_`, `.`")
        );
    }

    #[test]
    fn names_validate_when_deserialized() {
        let ok: Result<AgentName, _> = serde_json::from_str("\"bot\"");
        assert!(ok.is_ok());
        let bad: Result<AgentName, _> = serde_json::from_str("\"../etc\"");
        assert!(bad.is_err());
    }

    #[test]
    fn agent_state_round_trips() {
        for s in [
            AgentState::Active,
            AgentState::Suspended,
            AgentState::Revoked,
        ] {
            assert_eq!(s.as_str().parse::<AgentState>().ok(), Some(s));
        }
        assert!("quarantined?".parse::<AgentState>().is_err());
    }
}
