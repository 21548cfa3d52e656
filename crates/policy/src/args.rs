//! Tool arguments as Cedar sees them: a Cedar type derived from the tool's
//! JSON Schema, and the conversion of an agent's arguments to that type.
//!
//! | JSON Schema                        | Cedar                |
//! |------------------------------------|----------------------|
//! | `string` (also `enum` of strings)  | `String`             |
//! | `integer`                          | `Long`               |
//! | `number`                           | `decimal` (4 places) |
//! | `boolean`                          | `Bool`               |
//! | `array` of T                       | `Set<T>`             |
//! | `object` with `properties`         | record               |
//!
//! Properties not in `required` are optional (`has` checks them). A property
//! whose schema has no Cedar form (`$ref`, `anyOf`, untyped, too deep) is left
//! out of the type and of the context, so a policy cannot name it: strict
//! validation rejects such a policy instead of letting it guess.

use std::collections::BTreeMap;

use cedar_policy::RestrictedExpression;
use serde_json::{Map, Value, json};

/// Nesting deeper than this is not typed.
const MAX_DEPTH: usize = 8;
/// Largest magnitude a Cedar `decimal` holds (i64 / 10^4).
const DECIMAL_LIMIT: f64 = 922_337_203_685_477.0;

/// The Cedar type of an argument.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgType {
    /// `String`.
    String,
    /// `Long`.
    Long,
    /// `decimal`.
    Decimal,
    /// `Bool`.
    Bool,
    /// `Set<T>`.
    Set(Box<ArgType>),
    /// A record: attribute → (type, required).
    Record(BTreeMap<String, (ArgType, bool)>),
}

impl ArgType {
    /// The record type of a tool's `inputSchema` (an empty record when the
    /// schema declares no properties).
    pub fn from_input_schema(schema: &Value) -> Self {
        record_of(schema, 0).unwrap_or_else(|| Self::Record(BTreeMap::new()))
    }

    /// This type in Cedar's JSON schema format.
    pub fn to_schema_json(&self) -> Value {
        match self {
            Self::String => json!({ "type": "String" }),
            Self::Long => json!({ "type": "Long" }),
            Self::Decimal => json!({ "type": "Extension", "name": "decimal" }),
            Self::Bool => json!({ "type": "Boolean" }),
            Self::Set(element) => json!({ "type": "Set", "element": element.to_schema_json() }),
            Self::Record(attrs) => {
                let attributes: Map<String, Value> = attrs
                    .iter()
                    .map(|(name, (ty, required))| {
                        let mut t = ty.to_schema_json();
                        if let Some(obj) = t.as_object_mut() {
                            obj.insert("required".into(), Value::Bool(*required));
                        }
                        (name.clone(), t)
                    })
                    .collect();
                json!({ "type": "Record", "attributes": attributes })
            }
        }
    }

    /// Converts an argument value to a Cedar value of this type. Attributes
    /// the type does not know are dropped; a value of the wrong type is an
    /// error (and the request is denied).
    pub fn to_cedar(&self, value: &Value, path: &str) -> Result<RestrictedExpression, String> {
        let mismatch = |want: &str| format!("argument `{path}` must be {want}");
        match (self, value) {
            (Self::String, Value::String(s)) => Ok(RestrictedExpression::new_string(s.clone())),
            (Self::Bool, Value::Bool(b)) => Ok(RestrictedExpression::new_bool(*b)),
            (Self::Long, Value::Number(n)) => long(n)
                .map(RestrictedExpression::new_long)
                .ok_or_else(|| mismatch("an integer")),
            (Self::Decimal, Value::Number(n)) => decimal(n)
                .map(RestrictedExpression::new_decimal)
                .ok_or_else(|| mismatch("a number with at most 4 decimal places")),
            (Self::Set(element), Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| element.to_cedar(item, &format!("{path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(RestrictedExpression::new_set),
            (Self::Record(attrs), Value::Object(obj)) => record(attrs, obj, path),
            (Self::String, _) => Err(mismatch("a string")),
            (Self::Bool, _) => Err(mismatch("a boolean")),
            (Self::Long, _) => Err(mismatch("an integer")),
            (Self::Decimal, _) => Err(mismatch("a number")),
            (Self::Set(_), _) => Err(mismatch("an array")),
            (Self::Record(_), _) => Err(mismatch("an object")),
        }
    }

    /// [`to_cedar`](Self::to_cedar) of an object (a tool call's arguments),
    /// from the map itself.
    pub fn object_to_cedar(
        &self,
        obj: &Map<String, Value>,
        path: &str,
    ) -> Result<RestrictedExpression, String> {
        match self {
            Self::Record(attrs) => record(attrs, obj, path),
            _ => self.to_cedar(&Value::Object(obj.clone()), path),
        }
    }
}

fn record(
    attrs: &BTreeMap<String, (ArgType, bool)>,
    obj: &Map<String, Value>,
    path: &str,
) -> Result<RestrictedExpression, String> {
    let mut fields = Vec::with_capacity(attrs.len());
    for (name, (ty, required)) in attrs {
        match obj.get(name) {
            Some(Value::Null) | None if !required => {}
            Some(v) => fields.push((name.clone(), ty.to_cedar(v, &join(path, name))?)),
            None => return Err(format!("argument `{}` is required", join(path, name))),
        }
    }
    RestrictedExpression::new_record(fields).map_err(|e| e.to_string())
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// The JSON Schema `type`, allowing `["T", "null"]`.
fn schema_type(schema: &Value) -> Option<&str> {
    match schema.get("type")? {
        Value::String(t) => Some(t),
        Value::Array(types) => {
            let mut non_null = types
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null");
            let first = non_null.next()?;
            non_null.next().is_none().then_some(first)
        }
        _ => None,
    }
}

fn type_of(schema: &Value, depth: usize) -> Option<ArgType> {
    if depth > MAX_DEPTH {
        return None;
    }
    let ty = match schema_type(schema) {
        Some(t) => t,
        None if schema
            .get("enum")
            .and_then(Value::as_array)
            .is_some_and(|e| e.iter().all(Value::is_string)) =>
        {
            "string"
        }
        None => return None,
    };
    match ty {
        "string" => Some(ArgType::String),
        "integer" => Some(ArgType::Long),
        "number" => Some(ArgType::Decimal),
        "boolean" => Some(ArgType::Bool),
        "array" => type_of(schema.get("items")?, depth + 1).map(|t| ArgType::Set(Box::new(t))),
        "object" => record_of(schema, depth),
        _ => None,
    }
}

fn record_of(schema: &Value, depth: usize) -> Option<ArgType> {
    let properties = schema.get("properties").and_then(Value::as_object);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut attrs = BTreeMap::new();
    for (name, prop) in properties.into_iter().flatten() {
        if let Some(ty) = type_of(prop, depth + 1) {
            let nullable =
                matches!(prop.get("type"), Some(Value::Array(t)) if t.iter().any(|x| x == "null"));
            attrs.insert(
                name.clone(),
                (ty, required.contains(&name.as_str()) && !nullable),
            );
        }
    }
    Some(ArgType::Record(attrs))
}

fn long(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    #[allow(
        clippy::cast_possible_truncation,
        reason = "checked to be integral and in range first"
    )]
    (f.fract() == 0.0 && f.abs() < 9.0e18).then_some(f as i64)
}

fn decimal(n: &serde_json::Number) -> Option<String> {
    if let Some(i) = n.as_i64() {
        return (i.unsigned_abs() as f64 <= DECIMAL_LIMIT).then(|| format!("{i}.0"));
    }
    let f = n.as_f64()?;
    if !f.is_finite() || f.abs() > DECIMAL_LIMIT {
        return None;
    }
    let text = format!("{f:.4}");
    // Refuse values that 4 decimal places would round: a policy must see
    // exactly what the upstream will get.
    let back: f64 = text.parse().ok()?;
    (back == f)
        .then(|| text.trim_end_matches('0').trim_end_matches('.').to_owned())
        .map(|t| if t.contains('.') { t } else { format!("{t}.0") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "id": { "type": "string" },
                "limit": { "type": "integer" },
                "amount": { "type": "number" },
                "urgent": { "type": ["boolean", "null"] },
                "tags": { "type": "array", "items": { "type": "string" } },
                "kind": { "enum": ["a", "b"] },
                "addr": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] },
                "anything": { "anyOf": [{ "type": "string" }, { "type": "integer" }] }
            },
            "required": ["id", "urgent"]
        })
    }

    #[test]
    fn json_schema_becomes_a_cedar_record() {
        let ty = ArgType::from_input_schema(&schema());
        let ArgType::Record(attrs) = &ty else {
            panic!()
        };
        assert_eq!(attrs["id"], (ArgType::String, true));
        assert_eq!(attrs["limit"], (ArgType::Long, false));
        assert_eq!(attrs["amount"], (ArgType::Decimal, false));
        assert_eq!(
            attrs["urgent"],
            (ArgType::Bool, false),
            "nullable means optional"
        );
        assert_eq!(
            attrs["tags"],
            (ArgType::Set(Box::new(ArgType::String)), false)
        );
        assert_eq!(attrs["kind"], (ArgType::String, false));
        assert!(
            !attrs.contains_key("anything"),
            "untypeable properties are left out"
        );
        let cedar = ty.to_schema_json();
        assert_eq!(
            cedar["attributes"]["amount"],
            json!({"type": "Extension", "name": "decimal", "required": false})
        );
        assert_eq!(
            ArgType::from_input_schema(&json!({})),
            ArgType::Record(BTreeMap::new())
        );
    }

    #[test]
    fn arguments_convert_or_fail_clearly() {
        let ty = ArgType::from_input_schema(&schema());
        let v = ty
            .to_cedar(
                &json!({"id": "c-1", "amount": 12.5, "limit": 3, "tags": ["x"], "urgent": null, "extra": {"__entity": 1}, "anything": 1}),
                "",
            )
            .unwrap();
        let expected: RestrictedExpression =
            r#"{"amount": decimal("12.5"), "id": "c-1", "limit": 3, "tags": ["x"]}"#
                .parse()
                .unwrap();
        assert_eq!(v, expected);
        for (args, needle) in [
            (json!({}), "argument `id` is required"),
            (json!({"id": 1}), "argument `id` must be a string"),
            (
                json!({"id": "x", "limit": 1.5}),
                "argument `limit` must be an integer",
            ),
            (
                json!({"id": "x", "amount": 0.00001}),
                "at most 4 decimal places",
            ),
            (
                json!({"id": "x", "amount": 1e300}),
                "at most 4 decimal places",
            ),
            (
                json!({"id": "x", "tags": ["a", 2]}),
                "argument `tags[1]` must be a string",
            ),
            (
                json!({"id": "x", "addr": {}}),
                "argument `addr.city` is required",
            ),
        ] {
            let err = ty
                .to_cedar(&args, "")
                .map(|_| ())
                .expect_err(&args.to_string());
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn decimals_are_exact() {
        let n = |v: Value| match v {
            Value::Number(n) => decimal(&n),
            _ => None,
        };
        assert_eq!(n(json!(100)).as_deref(), Some("100.0"));
        assert_eq!(n(json!(99.99)).as_deref(), Some("99.99"));
        assert_eq!(n(json!(-0.5)).as_deref(), Some("-0.5"));
        assert_eq!(n(json!(1.23456)), None);
    }
}
