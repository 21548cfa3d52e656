//! Tool arguments as an audit record keeps them: enough to explain a
//! decision, never the data. The shape is kept (keys, nesting, array
//! lengths), numbers, booleans and null are kept (policies compare them:
//! `amount > 1000`), every string becomes `"[redacted: N chars]"`, and a
//! field a policy names in `@redact("field")` (a top-level key, or a dotted
//! path `a.b`) becomes `"[redacted by policy]"` whatever it holds. Bounded:
//! deep nesting, long arrays and objects with many keys are cut, and say so.
//! The exact arguments are bound by the record's digest instead.

use serde_json::{Map, Value};

/// Nesting kept.
const MAX_DEPTH: usize = 8;
/// Array elements kept.
const MAX_ITEMS: usize = 16;
/// Object keys kept.
const MAX_KEYS: usize = 64;
/// Characters of a key kept.
const MAX_KEY_CHARS: usize = 64;

/// `args` redacted; `hide` are the fields named by `@redact`.
pub fn redact_args(args: &Map<String, Value>, hide: &[String]) -> Value {
    let hide: Vec<Vec<&str>> = hide
        .iter()
        .flat_map(|h| h.split(','))
        .map(|h| h.trim().split('.').collect())
        .filter(|p: &Vec<&str>| p.iter().all(|s| !s.is_empty()))
        .collect();
    object(args, &hide, 0)
}

fn object(map: &Map<String, Value>, hide: &[Vec<&str>], depth: usize) -> Value {
    let mut out = Map::new();
    for (key, value) in map.iter().take(MAX_KEYS) {
        let here: Vec<Vec<&str>> = hide
            .iter()
            .filter(|p| p.first() == Some(&key.as_str()))
            .map(|p| p.get(1..).unwrap_or_default().to_vec())
            .collect();
        let name: String = key.chars().take(MAX_KEY_CHARS).collect();
        let kept = if here.iter().any(Vec::is_empty) {
            Value::String("[redacted by policy]".into())
        } else {
            redact(value, &here, depth + 1)
        };
        out.insert(name, kept);
    }
    if map.len() > MAX_KEYS {
        out.insert(
            "…".into(),
            Value::String(format!("[{} more keys]", map.len() - MAX_KEYS)),
        );
    }
    Value::Object(out)
}

fn redact(value: &Value, hide: &[Vec<&str>], depth: usize) -> Value {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => value.clone(),
        Value::String(s) => Value::String(format!("[redacted: {} chars]", s.chars().count())),
        _ if depth >= MAX_DEPTH => Value::String("[nested too deep]".into()),
        Value::Array(items) => {
            let mut out: Vec<Value> = items
                .iter()
                .take(MAX_ITEMS)
                .map(|v| redact(v, hide, depth + 1))
                .collect();
            if items.len() > MAX_ITEMS {
                out.push(Value::String(format!(
                    "[{} more items]",
                    items.len() - MAX_ITEMS
                )));
            }
            Value::Array(out)
        }
        Value::Object(map) => object(map, hide, depth),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use serde_json::json;

    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn strings_become_lengths_and_numbers_stay() {
        let a = args(json!({
            "to": "ada@example.com", "amount": 120.5, "urgent": true, "cc": null,
            "lines": ["a", "bb"], "meta": { "ticket": "T-1", "n": 3 }
        }));
        assert_eq!(
            redact_args(&a, &[]),
            json!({
                "to": "[redacted: 15 chars]", "amount": 120.5, "urgent": true, "cc": null,
                "lines": ["[redacted: 1 chars]", "[redacted: 2 chars]"],
                "meta": { "ticket": "[redacted: 3 chars]", "n": 3 }
            })
        );
    }

    #[test]
    fn fields_named_by_policy_are_hidden_whole() {
        let a = args(json!({ "iban": 12345678, "meta": { "salary": 90000, "n": 1 }, "x": 1 }));
        let r = redact_args(&a, &["iban".into(), "meta.salary, nope".into()]);
        assert_eq!(
            r,
            json!({ "iban": "[redacted by policy]", "meta": { "salary": "[redacted by policy]", "n": 1 }, "x": 1 })
        );
    }

    #[test]
    fn hostile_shapes_are_bounded() {
        let mut deep = json!("leaf");
        for _ in 0..100 {
            deep = json!({ "d": deep });
        }
        let wide: Map<String, Value> = (0..1000).map(|i| (format!("k{i}"), json!(i))).collect();
        let long = args(json!({ "list": (0..1000).collect::<Vec<_>>(), "deep": deep }));
        let r = redact_args(&long, &[]);
        assert_eq!(r["list"].as_array().unwrap().len(), MAX_ITEMS + 1);
        assert!(r.to_string().contains("[nested too deep]"));
        let r = redact_args(&wide, &[]);
        assert_eq!(r.as_object().unwrap().len(), MAX_KEYS + 1);
        let key = "k".repeat(10_000);
        let r = redact_args(&args(json!({ key: 1 })), &[]);
        assert_eq!(
            r.as_object().unwrap().keys().next().unwrap().len(),
            MAX_KEY_CHARS
        );
    }
}
