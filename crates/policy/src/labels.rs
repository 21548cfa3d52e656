//! What a tool does and what data it touches: its effect (from the MCP tool
//! annotations, overridable in config), its data classification, and
//! whether it sends data outside the company. These become the attributes
//! of its `Warden::Tool` entity.

use std::collections::HashMap;

use serde_json::Value;
use warden_mcp::ToolDef;

/// What calling a tool does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolEffect {
    /// Reads only (`readOnlyHint: true`).
    ReadOnly,
    /// Creates or changes something, additively (`destructiveHint: false`).
    Persistent,
    /// May delete or overwrite (MCP's default for a tool that is not
    /// read-only).
    Destructive,
}

impl ToolEffect {
    /// The attribute value: `read_only`, `persistent` or `destructive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read_only",
            Self::Persistent => "persistent",
            Self::Destructive => "destructive",
        }
    }

    /// The effect the MCP annotations declare.
    pub fn from_annotations(tool: &ToolDef) -> Self {
        let annotations = tool.definition.get("annotations");
        let flag = |name: &str| {
            annotations
                .and_then(|a| a.get(name))
                .and_then(Value::as_bool)
        };
        match (flag("readOnlyHint"), flag("destructiveHint")) {
            (Some(true), _) => Self::ReadOnly,
            (_, Some(false)) => Self::Persistent,
            _ => Self::Destructive,
        }
    }
}

impl std::str::FromStr for ToolEffect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read_only" => Ok(Self::ReadOnly),
            "persistent" => Ok(Self::Persistent),
            "destructive" => Ok(Self::Destructive),
            other => Err(format!(
                "unknown effect `{other}`: expected `read_only`, `persistent` or `destructive`"
            )),
        }
    }
}

/// How sensitive data is, lowest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Classification {
    /// Anyone may see it.
    Public,
    /// Inside the company (the default).
    #[default]
    Internal,
    /// A need to know.
    Confidential,
    /// The most sensitive.
    Restricted,
}

impl Classification {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Internal => "internal",
            Self::Confidential => "confidential",
            Self::Restricted => "restricted",
        }
    }

    /// 0 (public) to 3 (restricted), for comparisons in policy.
    pub fn level(self) -> i64 {
        match self {
            Self::Public => 0,
            Self::Internal => 1,
            Self::Confidential => 2,
            Self::Restricted => 3,
        }
    }
}

impl std::str::FromStr for Classification {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(Self::Public),
            "internal" => Ok(Self::Internal),
            "confidential" => Ok(Self::Confidential),
            "restricted" => Ok(Self::Restricted),
            other => Err(format!(
                "unknown classification `{other}`: expected `public`, `internal`, `confidential` or `restricted`"
            )),
        }
    }
}

/// A tool's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ToolLabel {
    /// What it does.
    pub effect: ToolEffect,
    /// The data it returns or touches.
    pub classification: Classification,
    /// Whether it sends data outside the company (mail, webhooks, ...).
    pub external: bool,
}

/// Labels set in config, for an upstream (its tools' default) or one tool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelOverride {
    /// Instead of the annotations' effect.
    pub effect: Option<ToolEffect>,
    /// Instead of `internal`.
    pub classification: Option<Classification>,
    /// Instead of `false`.
    pub external: Option<bool>,
}

/// Every label override in config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    /// Per upstream, for all of its tools.
    pub upstreams: HashMap<String, LabelOverride>,
    /// Per tool, `upstream/tool`; wins over the upstream's.
    pub tools: HashMap<String, LabelOverride>,
}

impl Labels {
    /// The labels of `tool` at `upstream`.
    pub fn label(&self, upstream: &str, tool: &ToolDef) -> ToolLabel {
        let up = self.upstreams.get(upstream).copied().unwrap_or_default();
        let own = self
            .tools
            .get(&crate::tool_action(upstream, &tool.name))
            .copied()
            .unwrap_or_default();
        ToolLabel {
            effect: own
                .effect
                .or(up.effect)
                .unwrap_or_else(|| ToolEffect::from_annotations(tool)),
            classification: own.classification.or(up.classification).unwrap_or_default(),
            external: own.external.or(up.external).unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tool(annotations: Value) -> ToolDef {
        let def =
            json!({"name": "t", "inputSchema": {"type": "object"}, "annotations": annotations});
        let Value::Object(def) = def else {
            unreachable!()
        };
        ToolDef::from_definition(def).unwrap()
    }

    #[test]
    fn effects_follow_the_mcp_annotations_and_their_defaults() {
        assert_eq!(
            ToolEffect::from_annotations(&tool(json!({"readOnlyHint": true}))),
            ToolEffect::ReadOnly
        );
        assert_eq!(
            ToolEffect::from_annotations(&tool(json!({"destructiveHint": false}))),
            ToolEffect::Persistent
        );
        assert_eq!(
            ToolEffect::from_annotations(&tool(json!({}))),
            ToolEffect::Destructive,
            "MCP assumes destructive unless told otherwise"
        );
    }

    #[test]
    fn config_overrides_tool_over_upstream_over_annotations() {
        let mut labels = Labels::default();
        labels.upstreams.insert(
            "hr".into(),
            LabelOverride {
                classification: Some(Classification::Confidential),
                ..LabelOverride::default()
            },
        );
        labels.tools.insert(
            "hr/t".into(),
            LabelOverride {
                classification: Some(Classification::Restricted),
                external: Some(true),
                ..LabelOverride::default()
            },
        );
        let read_only = tool(json!({"readOnlyHint": true}));
        let l = labels.label("hr", &read_only);
        assert_eq!(l.classification, Classification::Restricted);
        assert!(l.external);
        assert_eq!(l.effect, ToolEffect::ReadOnly);
        let l = labels.label("crm", &read_only);
        assert_eq!(l.classification, Classification::Internal);
        assert!(!l.external);
        assert!(Classification::Restricted > Classification::Confidential);
        assert!("secret".parse::<Classification>().is_err());
    }
}
