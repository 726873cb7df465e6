//! The size limits of [`crate::limits`], stated on every schema a request body reaches.

use serde_json::{Map, Value, json};

/// What the document says about the size limits, once (`info.description`).
const SIZE_LIMITS_NOTE: &str = " Every string and array of a request body is bounded by the key it \
sits under (`maxLength`, `maxItems`); the server counts string lengths in UTF-8 bytes, so \
`maxLength` is exact for ASCII text and a non-ASCII string may be refused below it.";

/// State the size limits of [`crate::limits`] on every schema a request body reaches.
///
/// The server checks every string and array of a body by the JSON key it sits under
/// ([`crate::limits::document`]: [`crate::limits::string_limit`] and
/// [`crate::limits::array_limit`]), wherever it sits; the same functions give the limit of each
/// property here, so the document and the server cannot drift. An existing tighter bound (a name
/// ≤ [`crate::validate::MAX_NAME_LEN`]) is kept. Free-form objects (`{"type": "object"}`) and map values (their
/// key is the client's) state nothing.
///
/// The server's string limits are in UTF-8 bytes; JSON Schema's `maxLength` counts characters.
/// The byte limit is stated as `maxLength`: exact for ASCII (a string of N ASCII characters is N
/// bytes), looser than the server for other text. Components shared with responses are bounded
/// too, which holds: the server returns what it accepted, under the same keys.
pub(super) fn state(doc: &mut Value) {
    let mut pending: Vec<String> = Vec::new();
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for op in item.values_mut() {
                let Some(content) = op
                    .pointer_mut("/requestBody/content")
                    .and_then(Value::as_object_mut)
                else {
                    continue;
                };
                for media in content.values_mut() {
                    if let Some(schema) = media.get_mut("schema") {
                        schema_refs(schema, &mut pending);
                        limit_schema(schema, "");
                    }
                }
            }
        }
    }
    if let Some(Value::String(d)) = doc.pointer_mut("/info/description")
        && !d.ends_with(SIZE_LIMITS_NOTE)
    {
        d.push_str(SIZE_LIMITS_NOTE);
    }
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let mut done = std::collections::BTreeSet::new();
    while let Some(name) = pending.pop() {
        if !done.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = schemas.get_mut(&name) {
            schema_refs(schema, &mut pending);
            limit_schema(schema, "");
        }
    }
}

/// The components a schema refers to, anywhere in it.
fn schema_refs(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                out.push(name.to_string());
            }
            map.values().for_each(|v| schema_refs(v, out));
        }
        Value::Array(list) => list.iter().for_each(|v| schema_refs(v, out)),
        _ => {}
    }
}

/// Bound a schema that sits under `key` (`""` at the top of a body or a component), and its
/// properties (each under its own name), items (under the array's key, as the server checks
/// them) and union variants.
fn limit_schema(schema: &mut Value, key: &str) {
    let Some(s) = schema.as_object_mut() else {
        return;
    };
    let has_type = |s: &Map<String, Value>, t: &str| match s.get("type") {
        Some(Value::String(x)) => x == t,
        Some(Value::Array(xs)) => xs.iter().any(|x| x == t),
        _ => false,
    };
    if has_type(s, "string") && !s.contains_key("enum") && !s.contains_key("const") {
        cap(s, "maxLength", crate::limits::string_limit(key));
    }
    if has_type(s, "array") {
        cap(s, "maxItems", crate::limits::array_limit(key));
        if let Some(items) = s.get_mut("items") {
            limit_schema(items, key);
        }
    }
    if let Some(props) = s.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, prop) in props.iter_mut() {
            limit_schema(prop, name);
        }
    }
    for union in ["allOf", "oneOf", "anyOf"] {
        if let Some(Value::Array(variants)) = s.get_mut(union) {
            for v in variants {
                limit_schema(v, key);
            }
        }
    }
}

/// Set `bound` (`maxLength`, `maxItems`) to `limit` unless it is already tighter.
fn cap(s: &mut Map<String, Value>, bound: &str, limit: usize) {
    let limit = limit as u64;
    let current = s.get(bound).and_then(Value::as_u64);
    s.insert(bound.into(), json!(current.map_or(limit, |c| c.min(limit))));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{MAX_ITEMS, MAX_JOBS, MAX_STRING_BYTES, MAX_TEXT_BYTES, MAX_URL_BYTES};

    #[test]
    fn request_schemas_state_the_size_limits_by_key() {
        let mut doc = json!({
            "paths": {"/x": {"post": {"requestBody": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Body"}}}}}}},
            "components": {"schemas": {
                "Body": {"type": "object", "properties": {
                    "description": {"type": ["string", "null"]},
                    "name": {"type": "string", "maxLength": 256},
                    "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                    "labels": {"oneOf": [
                        {"type": "array", "items": {"type": "string"}}, {"type": "string"}]},
                }},
                "Job": {"type": "object", "properties": {"hook_address": {"type": "string"},
                    "kind": {"type": "string", "enum": ["a"]}}},
                "Unused": {"type": "object", "properties": {"description": {"type": "string"}}},
            }},
        });
        state(&mut doc);
        let s = &doc["components"]["schemas"];
        let body = &s["Body"]["properties"];
        assert_eq!(body["description"]["maxLength"], MAX_TEXT_BYTES);
        assert_eq!(body["name"]["maxLength"], 256, "a tighter bound stays");
        assert_eq!(body["jobs"]["maxItems"], MAX_JOBS);
        assert_eq!(body["labels"]["oneOf"][0]["maxItems"], MAX_ITEMS);
        assert_eq!(
            body["labels"]["oneOf"][0]["items"]["maxLength"],
            MAX_STRING_BYTES
        );
        assert_eq!(body["labels"]["oneOf"][1]["maxLength"], MAX_STRING_BYTES);
        let job = &s["Job"]["properties"];
        assert_eq!(job["hook_address"]["maxLength"], MAX_URL_BYTES);
        assert!(
            job["kind"].get("maxLength").is_none(),
            "closed lists stay as they are"
        );
        assert!(
            s["Unused"]["properties"]["description"]
                .get("maxLength")
                .is_none(),
            "only what a request body reaches"
        );
    }
}
