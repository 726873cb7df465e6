//! Service variables (spec/environments.md §1.1, §1.3): Zadig's `ServiceVariableKV` list, the
//! keys a template reads, the merge rules of create/update, and the data a template is
//! executed with. Pure functions.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::gotemplate::Template;
use crate::validate::nullable;

/// Accepted variable `type`s.
pub const VAR_TYPES: &[&str] = &["string", "bool", "enum", "yaml"];

/// A service (or project global) variable: `{key, value, type, options, desc}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceVariableKV {
    pub key: String,
    /// A scalar for `string`/`enum`/`bool`; YAML text for `yaml`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub value: Value,
    /// `string` (default), `bool`, `enum` or `yaml`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// The allowed values of an `enum`.
    #[serde(default, deserialize_with = "nullable")]
    pub options: Vec<String>,
    #[serde(default)]
    pub desc: String,
}

/// A service variable as an environment holds it (Zadig's `RenderVariableKV`): the
/// template's variable with the environment's value, taken from the environment's global
/// variable of the same key when `use_global_variable` is set.
// Decoded through `RenderVariableKVFields` (not a doc comment: it would reach the OpenAPI
// document): a `#[serde(flatten)]`ed `kv` buffers its fields, and a type error in one would
// name only the item (`variable_kvs[0]`), not the field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(from = "RenderVariableKVFields")]
pub struct RenderVariableKV {
    #[serde(flatten)]
    pub kv: ServiceVariableKV,
    #[serde(default, deserialize_with = "nullable")]
    pub use_global_variable: bool,
    /// Kept as sent; reference variables are not resolved here.
    #[serde(default, deserialize_with = "nullable")]
    pub is_reference_variable: bool,
}

/// A project global variable's value in an environment (Zadig's `GlobalVariableKV`).
// Decoded through `GlobalVariableKVFields`, as `RenderVariableKV` is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(from = "GlobalVariableKVFields")]
pub struct GlobalVariableKV {
    #[serde(flatten)]
    pub kv: ServiceVariableKV,
    /// Kept as sent; this server does not maintain the list (docs/compatibility.md).
    #[serde(default, deserialize_with = "nullable")]
    pub related_services: Vec<String>,
}

/// Declares the plain-field (wire) form of a variable type that extends [`ServiceVariableKV`]
/// with `$own` fields, and its conversion into `$target`: the same JSON as the flattened type,
/// each field decoded in place so errors keep their path (`variable_kvs[0].key`). The
/// OpenAPI schema and serialisation stay those of `$target`.
macro_rules! variable_fields {
    ($name:ident => $target:ident { $($(#[$fattr:meta])* $field:ident: $ty:ty,)* }) => {
        #[derive(Deserialize)]
        struct $name {
            key: String,
            #[serde(default)]
            value: Value,
            #[serde(default, rename = "type")]
            kind: String,
            #[serde(default, deserialize_with = "nullable")]
            options: Vec<String>,
            #[serde(default)]
            desc: String,
            $($(#[$fattr])* $field: $ty,)*
        }

        impl From<$name> for $target {
            fn from(f: $name) -> Self {
                $target {
                    kv: ServiceVariableKV {
                        key: f.key,
                        value: f.value,
                        kind: f.kind,
                        options: f.options,
                        desc: f.desc,
                    },
                    $($field: f.$field,)*
                }
            }
        }
    };
}

variable_fields!(RenderVariableKVFields => RenderVariableKV {
    #[serde(default, deserialize_with = "nullable")]
    use_global_variable: bool,
    #[serde(default, deserialize_with = "nullable")]
    is_reference_variable: bool,
});

variable_fields!(GlobalVariableKVFields => GlobalVariableKV {
    #[serde(default, deserialize_with = "nullable")]
    related_services: Vec<String>,
});

impl ServiceVariableKV {
    fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => Some(String::new()),
            _ => None,
        }
    }
}

/// Check and normalise a caller's list (an empty `type` becomes `string`). Errors name the
/// item by its JSON path under `field` (`service_variable_kvs[1].value`).
pub fn normalise(field: &str, kvs: &mut [ServiceVariableKV]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for (i, kv) in kvs.iter_mut().enumerate() {
        let at = format!("{field}[{i}]");
        if kv.key.trim().is_empty() {
            return Err(format!("`{at}.key` is required"));
        }
        if kv.key.chars().count() > crate::validate::MAX_NAME_LEN {
            return Err(format!(
                "`{at}.key` is longer than {} characters",
                crate::validate::MAX_NAME_LEN
            ));
        }
        if !seen.insert(kv.key.clone()) {
            return Err(format!("`{at}.key`: duplicate key {:?}", kv.key));
        }
        if kv.kind.is_empty() {
            kv.kind = "string".to_string();
        }
        if !VAR_TYPES.contains(&kv.kind.as_str()) {
            return Err(format!(
                "`{at}.type` must be one of {}, got {:?}",
                VAR_TYPES.join(", "),
                kv.kind
            ));
        }
        exact(&kv.value)
            .and_then(|()| value_of(kv).map(drop))
            .map_err(|e| format!("`{at}.value`: {e}"))?;
    }
    Ok(())
}

/// A caller's number is kept as sent: JSON integers past 2^53 reach us as floats
/// (18446744073709551617 → 1.8446744073709552e19), another value once stored.
fn exact(value: &Value) -> Result<(), String> {
    match value {
        Value::Number(n)
            if n.is_f64()
                && n.as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.abs() >= 9_007_199_254_740_992.0) =>
        {
            Err(format!(
                "the number {n} is too large to be kept exactly: send the value as a string"
            ))
        }
        _ => Ok(()),
    }
}

/// The template data of one variable, checked against its type (Zadig's messages, spelling
/// included, for enum and bool).
fn value_of(kv: &ServiceVariableKV) -> Result<Value, String> {
    let Some(text) = kv.scalar_text() else {
        if kv.kind == "yaml" {
            return Err("a `yaml` variable's value is YAML text".to_string());
        }
        return Err(format!("a `{}` variable's value must be a scalar", kv.kind));
    };
    match kv.kind.as_str() {
        "bool" => match text.as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!(
                "invaild value for boolean, key: {}, value: {text}",
                kv.key
            )),
        },
        "enum" => {
            if kv.options.contains(&text) {
                Ok(Value::String(text))
            } else {
                Err(format!(
                    "invaild value for enum, key: {}, value: {text}, options: [{}]",
                    kv.key,
                    kv.options.join(" ")
                ))
            }
        }
        "yaml" => {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            let y: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(&text).map_err(|e| format!("not valid YAML: {e}"))?;
            serde_json::to_value(y).map_err(|e| format!("not usable as template data: {e}"))
        }
        _ => Ok(match &kv.value {
            Value::Null => Value::String(String::new()),
            v => v.clone(),
        }),
    }
}

/// The variables `tpl` reads that are not in `kvs`, as new KVs: a key used with sub-fields or
/// ranged over is `yaml` with an empty value, any other `string` with `""`.
pub fn extracted(tpl: &Template, kvs: &[ServiceVariableKV]) -> Vec<ServiceVariableKV> {
    tpl.root_keys()
        .into_iter()
        .filter(|(k, _)| !kvs.iter().any(|kv| &kv.key == k))
        .map(|(key, structured)| ServiceVariableKV {
            key,
            value: Value::String(String::new()),
            kind: if structured { "yaml" } else { "string" }.to_string(),
            options: Vec::new(),
            desc: String::new(),
        })
        .collect()
}

/// `kvs` with the variables `tpl` reads appended when new (existing keys are never changed,
/// keys no longer used are kept: spec §1.3).
pub fn merged(tpl: &Template, mut kvs: Vec<ServiceVariableKV>) -> Vec<ServiceVariableKV> {
    let new = extracted(tpl, &kvs);
    kvs.extend(new);
    kvs
}

/// Apply `overrides` to `kvs` by key: a known key takes the override's value (and its type,
/// options and description when given), an unknown one is added.
pub fn overridden(
    mut kvs: Vec<ServiceVariableKV>,
    overrides: &[ServiceVariableKV],
) -> Vec<ServiceVariableKV> {
    for o in overrides {
        match kvs.iter_mut().find(|kv| kv.key == o.key) {
            Some(kv) => {
                kv.value = o.value.clone();
                if !o.kind.is_empty() {
                    kv.kind = o.kind.clone();
                    kv.options = o.options.clone();
                }
                if !o.desc.is_empty() {
                    kv.desc = o.desc.clone();
                }
            }
            None => kvs.push(ServiceVariableKV {
                kind: if o.kind.is_empty() {
                    "string".into()
                } else {
                    o.kind.clone()
                },
                ..o.clone()
            }),
        }
    }
    kvs
}

/// S5: the stored KVs with the values, types, options and descriptions of the input KVs of the
/// same key; unknown input keys are ignored, stored keys not sent are kept.
pub fn updated(
    mut stored: Vec<ServiceVariableKV>,
    input: &[ServiceVariableKV],
) -> Vec<ServiceVariableKV> {
    for kv in &mut stored {
        if let Some(i) = input.iter().find(|i| i.key == kv.key) {
            kv.value = i.value.clone();
            kv.desc = i.desc.clone();
            kv.kind = if i.kind.is_empty() {
                "string".into()
            } else {
                i.kind.clone()
            };
            kv.options = i.options.clone();
        }
    }
    stored
}

/// The template data of `kvs` with `$T-Project$`/`$T-Service$` replaced in string values.
pub fn data(
    kvs: &[ServiceVariableKV],
    project: &str,
    service: &str,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for kv in kvs {
        let v = value_of(kv).map_err(|e| format!("variable `{}`: {e}", kv.key))?;
        out.insert(kv.key.clone(), replace_names(v, project, service));
    }
    Ok(out)
}

fn replace_names(v: Value, project: &str, service: &str) -> Value {
    match v {
        Value::String(s) => Value::String(system_names(&s, project, service)),
        Value::Array(a) => Value::Array(
            a.into_iter()
                .map(|x| replace_names(x, project, service))
                .collect(),
        ),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, x)| (k, replace_names(x, project, service)))
                .collect(),
        ),
        other => other,
    }
}

/// Replace Zadig's template names `$T-Project$` and `$T-Service$`.
pub fn system_names(s: &str, project: &str, service: &str) -> String {
    s.replace("$T-Project$", project)
        .replace("$T-Service$", service)
}

/// `variable_yaml`: the variables as one YAML mapping, in list order.
pub fn variable_yaml(kvs: &[ServiceVariableKV]) -> Result<String, String> {
    if kvs.is_empty() {
        return Ok(String::new());
    }
    let mut m = serde_yaml_ng::Mapping::new();
    for kv in kvs {
        let v = value_of(kv).map_err(|e| format!("variable `{}`: {e}", kv.key))?;
        let y = serde_yaml_ng::to_value(v).map_err(|e| e.to_string())?;
        m.insert(serde_yaml_ng::Value::String(kv.key.clone()), y);
    }
    serde_yaml_ng::to_string(&m).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kv(key: &str, value: Value, kind: &str) -> ServiceVariableKV {
        ServiceVariableKV {
            key: key.into(),
            value,
            kind: kind.into(),
            ..Default::default()
        }
    }

    #[test]
    fn extraction_and_merge_keep_caller_values_first() {
        let t = Template::parse("{{.port}} {{.res.cpu}} {{.name}}").unwrap();
        let kvs = merged(&t, vec![kv("name", json!("web"), "string")]);
        let keys: Vec<(&str, &str)> = kvs
            .iter()
            .map(|k| (k.key.as_str(), k.kind.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![("name", "string"), ("port", "string"), ("res", "yaml")]
        );
        assert_eq!(kvs[0].value, json!("web"));
    }

    #[test]
    fn numbers_past_2_53_are_refused_not_rounded() {
        let big: Value = serde_json::from_str("18446744073709551617").unwrap();
        let mut kvs = vec![kv("n", big, "string")];
        let e = normalise("kvs", &mut kvs).unwrap_err();
        assert!(e.starts_with("`kvs[0].value`: the number"), "{e}");
        let mut fine = vec![
            kv("n", json!(9_007_199_254_740_993_u64), "string"),
            kv("f", json!(1.5), "string"),
        ];
        normalise("kvs", &mut fine).unwrap();
    }

    #[test]
    fn types_are_checked() {
        let mut bad = vec![kv("b", json!("yes"), "bool")];
        assert!(
            normalise("kvs", &mut bad)
                .unwrap_err()
                .contains("invaild value for boolean")
        );
        let mut e = vec![ServiceVariableKV {
            options: vec!["a".into()],
            ..kv("e", json!("z"), "enum")
        }];
        let msg = normalise("kvs", &mut e).unwrap_err();
        assert!(
            msg.contains("kvs[0].value") && msg.contains("options: [a]"),
            "{msg}"
        );
        let mut t = vec![kv("x", json!(1), "")];
        normalise("kvs", &mut t).unwrap();
        assert_eq!(t[0].kind, "string");
        let mut y = vec![kv("y", json!("a: [1"), "yaml")];
        assert!(
            normalise("kvs", &mut y)
                .unwrap_err()
                .contains("kvs[0].value")
        );
        let mut d = vec![kv("k", json!(1), "string"), kv("k", json!(2), "string")];
        assert!(normalise("kvs", &mut d).unwrap_err().contains("kvs[1].key"));
    }

    #[test]
    fn data_and_yaml() {
        let kvs = vec![
            kv("n", json!("$T-Service$-x"), "string"),
            kv("m", json!("cpu: 1\nlist: [a]"), "yaml"),
            kv("on", json!(true), "bool"),
        ];
        let d = data(&kvs, "p", "svc").unwrap();
        assert_eq!(
            Value::Object(d),
            json!({"n": "svc-x", "m": {"cpu": 1, "list": ["a"]}, "on": true})
        );
        let y = variable_yaml(&kvs).unwrap();
        assert!(y.starts_with("n: $T-Service$-x\nm:\n"), "{y}");
    }

    #[test]
    fn update_ignores_unknown_keys() {
        let stored = vec![kv("a", json!("1"), "string"), kv("b", json!("2"), "string")];
        let out = updated(stored, &[kv("a", json!("9"), ""), kv("zz", json!("x"), "")]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].value, json!("9"));
        assert_eq!(out[1].value, json!("2"));
        let o = overridden(out, &[kv("c", json!("3"), "")]);
        assert_eq!(o[2].kind, "string");
    }
}
