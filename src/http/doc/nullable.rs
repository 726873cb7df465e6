//! Which request-body fields take `null`, computed from the document itself.
//!
//! The body decoder reads a `null` in a typed field as the field's zero value
//! ([`crate::null_as_zero`]), and the handlers then check that value like any other. So a
//! property of a schema that a request body reaches takes `null` exactly when its zero value
//! (`""`, `false`, `0`, `[]`, `{}`) is valid under the property's own schema — a closed value
//! list without `""`, a pattern, a minimum length or count, a required member or a minimum
//! above 0 refuses the zero value, so it refuses `null` too. Required names
//! ([`super::tables::REQUIRED_NAMES`]) are never nullable. Free-form values (a schema with no
//! type, or a bare `object`) are left as they are: they keep `null` as `null` and the handler
//! decides.
//!
//! A schema shared with responses becomes nullable there too, which only widens what a
//! response may hold.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::tables::REQUIRED_NAMES;

/// Mark the nullable properties of every schema a request body reaches.
pub(super) fn mark(doc: &mut Value) {
    let reached = request_schemas(doc);
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let snapshot = schemas.clone();
    for name in &reached {
        let Some(props) = schemas
            .get_mut(name)
            .and_then(|s| s.get_mut("properties"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let required = REQUIRED_NAMES
            .iter()
            .find(|(s, _)| s == name)
            .map_or(&[][..], |(_, f)| f);
        for (field, p) in props.iter_mut() {
            if !required.contains(&field.as_str()) && takes_zero(&snapshot, p) {
                make_nullable(p);
            }
        }
    }
}

/// The component schemas reachable from a request body, transitively.
fn request_schemas(doc: &Value) -> BTreeSet<String> {
    let mut todo: Vec<&Value> = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for item in paths.values().filter_map(Value::as_object) {
            for op in item.values() {
                if let Some(content) = op
                    .pointer("/requestBody/content")
                    .and_then(Value::as_object)
                {
                    todo.extend(content.values().filter_map(|c| c.get("schema")));
                }
            }
        }
    }
    let schemas = doc.pointer("/components/schemas");
    let mut seen = BTreeSet::new();
    while let Some(v) = todo.pop() {
        match v {
            Value::Object(m) => {
                if let Some(name) = m.get("$ref").and_then(Value::as_str).and_then(ref_name)
                    && seen.insert(name.to_string())
                    && let Some(s) = schemas.and_then(|s| s.get(name))
                {
                    todo.push(s);
                }
                todo.extend(m.values());
            }
            Value::Array(a) => todo.extend(a),
            _ => {}
        }
    }
    seen
}

fn ref_name(r: &str) -> Option<&str> {
    r.strip_prefix("#/components/schemas/")
}

/// Whether the zero value of the property's type is valid under its schema.
fn takes_zero(schemas: &Map<String, Value>, p: &Value) -> bool {
    let Some(p) = p.as_object() else {
        return false;
    };
    if let Some(name) = p.get("$ref").and_then(Value::as_str).and_then(ref_name) {
        return schemas.get(name).is_some_and(|s| takes_zero(schemas, s));
    }
    if let Some(branches) = p.get("oneOf").and_then(Value::as_array) {
        return branches.iter().any(|b| takes_zero(schemas, b));
    }
    let zero_in_enum = |zero: Value| {
        p.get("enum")
            .and_then(Value::as_array)
            .is_none_or(|e| e.contains(&zero))
    };
    let at_most_zero = |k: &str| p.get(k).and_then(Value::as_f64).is_none_or(|n| n <= 0.0);
    match p.get("type") {
        Some(Value::String(t)) => match t.as_str() {
            "string" => {
                zero_in_enum(json!("")) && at_most_zero("minLength") && !p.contains_key("pattern")
            }
            "boolean" => zero_in_enum(json!(false)),
            "integer" | "number" => {
                zero_in_enum(json!(0))
                    && at_most_zero("minimum")
                    && p.get("exclusiveMinimum").is_none()
                    && p.get("maximum")
                        .and_then(Value::as_f64)
                        .is_none_or(|m| m >= 0.0)
            }
            "array" => at_most_zero("minItems"),
            // A struct or a map reads `{}`; a bare `object` is a free-form value.
            "object" => {
                (p.contains_key("properties") || p.contains_key("additionalProperties"))
                    && p.get("required")
                        .and_then(Value::as_array)
                        .is_none_or(Vec::is_empty)
                    && at_most_zero("minProperties")
            }
            _ => false,
        },
        // Already nullable (or a list of types): nothing to add.
        _ => false,
    }
}

/// `type: T` → `type: [T, "null"]`; a `$ref` or a `oneOf` gains a `{type: null}` branch.
fn make_nullable(p: &mut Value) {
    let Some(p) = p.as_object_mut() else {
        return;
    };
    if let Some(Value::String(t)) = p.get("type").cloned() {
        p.insert("type".into(), json!([t, "null"]));
    } else if let Some(r) = p.remove("$ref") {
        p.insert("oneOf".into(), json!([{"$ref": r}, {"type": "null"}]));
    } else if let Some(Value::Array(branches)) = p.get_mut("oneOf")
        && !branches.contains(&json!({"type": "null"}))
    {
        branches.push(json!({"type": "null"}));
    }
}
