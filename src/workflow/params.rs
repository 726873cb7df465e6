//! A workflow parameter (Zadig's Param, spec/workflow.md §1.3) read through one typed struct.
//!
//! Definitions and tasks keep their `params` verbatim (`Vec<Value>`), so fields we do not model
//! and the seed's detail keys read back as written. Every reader — lint, execute, the engine,
//! task detail — decodes them as [`Param`] instead of digging in the JSON: a field of the wrong
//! type (`"is_credential": "true"`) is refused where it enters (lint: a 400 naming
//! `params[0].is_credential`, as Zadig's Go decoder refuses it), and is never read as a silent
//! default (a credential taken for plain text) anywhere else.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::validate::nullable;
use crate::wire::wire_enum;
use crate::workflow::inputs::read_at;

wire_enum! {
    /// A parameter's `type` (spec/workflow.md §1.3); absent or `null` is `string`.
    #[derive(Default)]
    pub enum ParamType {
        #[default]
        String = "string",
        Text = "text",
        Choice = "choice",
        Repo = "repo",
        MultiSelect = "multi-select",
        File = "file",
        Script = "script",
        Image = "image",
    }
}

impl ParamType {
    /// Whether a parameter of this type is exported to the jobs' environment (every type but
    /// a repository or a file, spec §1.3).
    pub fn is_exported(self) -> bool {
        !matches!(self, Self::Repo | Self::File)
    }
}

/// One parameter as read (never written back: the stored JSON stays as it was sent). Fields
/// have Zadig's Go types, `null` reading as absent; the rest is kept in `extra`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Param {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub description: String,
    #[serde(rename = "type", deserialize_with = "nullable")]
    pub kind: ParamType,
    /// The value (a `multi-select`'s choices joined with `,`).
    #[serde(deserialize_with = "nullable")]
    pub value: String,
    /// A `repo` parameter's Repository object.
    #[serde(deserialize_with = "nullable")]
    pub repo: Option<Map<String, Value>>,
    #[serde(deserialize_with = "nullable")]
    pub choice_option: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub choice_value: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub default: String,
    /// The value is a secret: masked in task detail and in job logs.
    #[serde(deserialize_with = "nullable")]
    pub is_credential: bool,
    /// `runtime`, `fixed` or `reference` (not interpreted).
    #[serde(deserialize_with = "nullable")]
    pub source: String,
    /// Every other field, as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Param {
    /// The stored parameters `params` (a task's or a definition's), typed; `Err` names the
    /// first field that does not decode (`params[1].choice_option[2]: invalid type …`).
    pub fn read_all(params: &[Value]) -> Result<Vec<Self>, String> {
        params
            .iter()
            .enumerate()
            .map(|(i, p)| read_at(p, &format!("params[{i}]")).map_err(|(f, e)| format!("{f}: {e}")))
            .collect()
    }

    /// Whether the stored parameter `v` is shown masked: a credential — or one that does not
    /// decode (stored before lint refused it, e.g. `"is_credential": "true"`), which may be a
    /// credential, so its value is not shown on a guess.
    pub fn is_secret(v: &Value) -> bool {
        serde_json::from_value::<Self>(v.clone()).map_or(true, |p| p.is_credential)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_round_trip() {
        crate::workflow::assert_wire_names(
            ParamType::ALL,
            |t| t as usize,
            ParamType::as_str,
            ParamType::parse,
        );
    }

    #[test]
    fn reads_typed_fields_and_keeps_the_rest() {
        let ps = Param::read_all(&[json!({"name": "v", "type": "choice", "value": "1",
            "choice_option": ["1", "2"], "is_credential": null, "repo": null, "required": true})])
        .unwrap();
        assert_eq!(ps[0].kind, ParamType::Choice);
        assert_eq!(ps[0].choice_option, ["1", "2"]);
        assert!(!ps[0].is_credential);
        assert!(ps[0].repo.is_none());
        assert_eq!(ps[0].extra["required"], json!(true));
        let ps = Param::read_all(&[json!({"name": "x"})]).unwrap();
        assert_eq!(ps[0].kind, ParamType::String);
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = |p: Value| Param::read_all(&[json!({"name": "a"}), p]).unwrap_err();
        assert!(
            err(json!({"name": "t", "is_credential": "true"}))
                .starts_with("params[1].is_credential:")
        );
        assert!(
            err(json!({"name": "c", "choice_option": ["a", "b", 3]}))
                .starts_with("params[1].choice_option[2]:")
        );
        assert!(err(json!({"name": "n", "type": "number"})).starts_with("params[1].type:"));
        assert!(err(json!({"name": "n", "value": 3})).starts_with("params[1].value:"));
        assert!(err(json!("p")).starts_with("params[1]:"));
    }

    #[test]
    fn secrets_and_undecodable_params_are_masked() {
        assert!(Param::is_secret(
            &json!({"name": "t", "is_credential": true})
        ));
        assert!(Param::is_secret(
            &json!({"name": "t", "is_credential": "true"})
        ));
        assert!(Param::is_secret(
            &json!({"name": "t", "choice_option": [1]})
        ));
        assert!(!Param::is_secret(
            &json!({"name": "t", "is_credential": false})
        ));
        assert!(!Param::is_secret(
            &json!({"name": "t", "is_credential": null})
        ));
    }
}
