//! The components' schemas: property overrides and required names from [`super::tables`]
//! (which fields take `null` is computed afterwards, [`super::nullable`]).

use serde_json::{Map, Value, json};

use super::name_schema;
use super::tables::{REQUIRED_NAMES, property_overrides};

/// The property `field` of component `schema`, when both exist.
fn property<'a>(
    schemas: &'a mut Map<String, Value>,
    schema: &str,
    field: &str,
) -> Option<&'a mut Map<String, Value>> {
    schemas
        .get_mut(schema)?
        .get_mut("properties")?
        .get_mut(field)?
        .as_object_mut()
}

/// Apply the tables to `/components/schemas`.
pub(super) fn finish(doc: &mut Value) {
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    apply_overrides(schemas);
    require_names(schemas);
}

/// The property overrides; a field utoipa made nullable (an `Option`) stays nullable unless it
/// is a required name.
fn apply_overrides(schemas: &mut Map<String, Value>) {
    for (schema, field, over) in property_overrides() {
        if let Some(p) = property(schemas, schema, field)
            && let Value::Object(over) = over
        {
            let nullable = p
                .get("type")
                .and_then(Value::as_array)
                .is_some_and(|t| t.contains(&json!("null")));
            if over.contains_key("oneOf") {
                // A union replaces utoipa's single type.
                p.retain(|k, _| k == "description");
            }
            p.extend(over);
            let required = REQUIRED_NAMES
                .iter()
                .any(|(s, f)| *s == schema && f.contains(&field));
            if nullable
                && !required
                && let Some(Value::String(t)) = p.get("type").cloned()
            {
                p.insert("type".into(), json!([t, "null"]));
            }
        }
    }
}

/// [`REQUIRED_NAMES`] fields are required, not nullable, and (plain strings) non-blank names.
fn require_names(schemas: &mut Map<String, Value>) {
    for (schema, fields) in REQUIRED_NAMES {
        for field in *fields {
            if let Some(p) = property(schemas, schema, field)
                && let Some(Value::Array(types)) = p.get("type").cloned()
                && let Some(t) = types.iter().find(|t| *t != "null")
            {
                // `null` is refused like an absent value.
                p.insert("type".into(), t.clone());
            }
            if let Some(p) = property(schemas, schema, field)
                && p.get("type") == Some(&json!("string"))
                && !p.contains_key("enum")
                && !p.contains_key("pattern")
            {
                p.extend(name_schema().as_object().cloned().unwrap_or_default());
            }
        }
        if let Some(s) = schemas.get_mut(*schema).and_then(Value::as_object_mut) {
            let mut req: Vec<Value> = s
                .get("required")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for field in *fields {
                if !req.contains(&json!(field)) {
                    req.push(json!(field));
                }
            }
            s.insert("required".into(), Value::Array(req));
        }
    }
}
